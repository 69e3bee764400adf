-- Guards of issue #20.  Image URLs the AI provider would fetch from inside
-- the operator's network are refused by create_batch (src/url_policy.c),
-- unless moverz_batch.allowed_image_hosts lists the host; a rejected value is
-- echoed 64 characters at most; an answer for a photo that is gone writes no
-- metric; the daily photo quota per user.
BEGIN;
SET client_min_messages = warning;
SELECT plan(36);

SELECT moverz_batch.create_project('url-user', 'urls') AS p \gset

CREATE TEMP TABLE refused (url text, rule text) ON COMMIT DROP;
INSERT INTO refused VALUES
  ('http://localhost/a.jpg', 'must not name localhost'),
  ('http://LOCALHOST.:8080/a.jpg', 'must not name localhost'),
  ('http://api.localhost/a.jpg', 'must not name localhost'),
  ('http://127.0.0.1/a.jpg', 'must not name a loopback, private, link-local or reserved address'),
  ('http://10.1.2.3/a.jpg', 'must not name a loopback, private, link-local or reserved address'),
  ('http://172.16.0.9/a.jpg', 'must not name a loopback, private, link-local or reserved address'),
  ('http://192.168.1.1:80/a.jpg', 'must not name a loopback, private, link-local or reserved address'),
  ('http://169.254.169.254/latest/meta-data/', 'must not name a loopback, private, link-local or reserved address'),
  ('http://100.64.0.1/a.jpg', 'must not name a loopback, private, link-local or reserved address'),
  ('http://0.0.0.0/a.jpg', 'must not name a loopback, private, link-local or reserved address'),
  ('http://[::1]/a.jpg', 'must not name a loopback, private, link-local or reserved address'),
  ('http://[fe80::1]/a.jpg', 'must not name a loopback, private, link-local or reserved address'),
  ('http://[fd00::5]:8000/a.jpg', 'must not name a loopback, private, link-local or reserved address'),
  ('http://[::ffff:127.0.0.1]/a.jpg', 'must not name a loopback, private, link-local or reserved address'),
  ('http://2130706433/a.jpg', 'must write an IPv4 address as a.b.c.d (not in hex, octal, decimal or short form)'),
  ('http://0x7f000001/a.jpg', 'must write an IPv4 address as a.b.c.d (not in hex, octal, decimal or short form)'),
  ('http://0177.0.0.1/a.jpg', 'must write an IPv4 address as a.b.c.d (not in hex, octal, decimal or short form)'),
  ('http://127.1/a.jpg', 'must write an IPv4 address as a.b.c.d (not in hex, octal, decimal or short form)'),
  ('https://user:secret@img.example.com/a.jpg', 'must not carry a user name or password (user:password@)'),
  ('http://127.0.0.1\x/a.jpg', 'must not name a loopback, private, link-local or reserved address'),
  ('http://%31%32%37.0.0.1/a.jpg', 'must name its host in plain ASCII (no percent-encoding; an international name in its xn-- form)'),
  ('http://１２７.0.0.1/a.jpg', 'must name its host in plain ASCII (no percent-encoding; an international name in its xn-- form)'),
  ('http://0x' || repeat('0', 300) || '7f000001/a.jpg', 'must name a host of at most 255 bytes');
SELECT throws_ok(format($$SELECT moverz_batch.create_batch(%L, 'url-user', %L)$$, :'p',
                        jsonb_build_array(jsonb_build_object('filename', 'a.jpg', 'url', url))),
                 '22023', 'assets[0].url ' || rule, 'refused: ' || url)
  FROM refused ORDER BY url;

SELECT lives_ok(format($$SELECT moverz_batch.create_batch(%L, 'url-user', '[
    {"filename": "a.jpg", "url": "https://img.example.com/a.jpg"},
    {"filename": "b.jpg", "url": "http://93.184.216.34:8080/b.jpg"},
    {"filename": "c.jpg", "url": "https://[2001:db8::1]/c.jpg"},
    {"filename": "d.jpg", "url": "https://10.example.com/d.jpg"},
    {"filename": "e.jpg", "url": "https://cafe.example/e.jpg"}]')$$, :'p'),
                'public names, public IP literals and names that only look numeric are accepted');

SET LOCAL moverz_batch.allowed_image_hosts = 'images.internal, 10.0.0.5';
SELECT lives_ok(format($$SELECT moverz_batch.create_batch(%L, 'url-user', '[
    {"filename": "a.jpg", "url": "http://10.0.0.5/a.jpg"},
    {"filename": "b.jpg", "url": "http://IMAGES.internal:9000/b.jpg"}]')$$, :'p'),
                'allowed_image_hosts lets the hosts it lists through');
SELECT throws_ok(format($$SELECT moverz_batch.create_batch(%L, 'url-user',
                   '[{"filename": "a.jpg", "url": "http://10.0.0.6/a.jpg"}]')$$, :'p'),
                 '22023', NULL, '... and no other');
RESET moverz_batch.allowed_image_hosts;

-- a rejected value is echoed 64 characters at most
SELECT throws_ok(format($$SELECT moverz_batch.create_batch(%L, 'url-user',
                   '[{"filename": "a.jpg", "url": "https://img.example.com/a.jpg"}]', %L)$$, :'p', repeat('H', 100000)),
                 '22023', 'priority must be one of HIGH, NORMAL, LOW (got ''' || repeat('H', 64) || '''…)',
                 'a 100 kB priority is echoed 64 characters long');
SELECT throws_ok(format($$SELECT moverz_batch.create_batch(%L, 'url-user', %L)$$, :'p',
                        jsonb_build_array(jsonb_build_object('filename', 'a.jpg', 'url', 'https://img.example.com/a.jpg',
                                                             'roomType', repeat('r', 100000)))),
                 '22023', 'assets[0].roomType "' || repeat('r', 64) || '"… is not an accepted room type',
                 'a 100 kB roomType is echoed 64 bytes long');

-- an answer for a photo that is gone is no call of this install
SELECT is((SELECT done FROM moverz_batch_internal.complete_photos(1, jsonb_build_array(jsonb_build_object(
              'id', gen_random_uuid(), 'batch_id', gen_random_uuid(), 'user_id', 'gone', 'attempt', 1,
              'http_status', 200, 'latency_ms', 5, 'body', '{"items": []}'::jsonb)), 3, 100, 'moverz-ai')), 0,
          'complete_photos: an answer for an unknown photo changes nothing');
SELECT is((SELECT count(*) FROM moverz_batch.ai_metrics WHERE meta->>'userId' = 'gone'), 0::bigint,
          '... and writes no ai_metrics row');

-- the daily photo quota per user (moverz_batch.max_photos_per_user_per_day)
SELECT moverz_batch.create_project('quota-user', 'quota') AS q \gset
SET LOCAL moverz_batch.max_photos_per_user_per_day = 5;
SELECT lives_ok(format($$SELECT moverz_batch.create_batch(%L, 'quota-user', '[
    {"filename": "a.jpg", "url": "https://img.example.com/q/a.jpg"},
    {"filename": "b.jpg", "url": "https://img.example.com/q/b.jpg"},
    {"filename": "c.jpg", "url": "https://img.example.com/q/c.jpg"}]')$$, :'q'), 'quota 5: a batch of 3 goes');
SELECT throws_ok(format($$SELECT moverz_batch.create_batch(%L, 'quota-user', '[
    {"filename": "d.jpg", "url": "https://img.example.com/q/d.jpg"},
    {"filename": "e.jpg", "url": "https://img.example.com/q/e.jpg"},
    {"filename": "f.jpg", "url": "https://img.example.com/q/f.jpg"}]')$$, :'q'),
                 '53400', 'user_id ''quota-user'': 3 photos in the last 24 hours, 3 more would exceed the quota of 5 (moverz_batch.max_photos_per_user_per_day)',
                 'a batch of 3 more is refused, naming the quota');
SELECT is((SELECT count(*) FROM moverz_batch.batches WHERE user_id = 'quota-user'), 1::bigint, '... and writes nothing');
SELECT lives_ok(format($$SELECT moverz_batch.create_batch(%L, 'quota-user', '[
    {"filename": "g.jpg", "url": "https://img.example.com/q/g.jpg"},
    {"filename": "h.jpg", "url": "https://img.example.com/q/h.jpg"}]')$$, :'q'), 'a batch of 2 still fits');
SELECT is((SELECT photos_last_24h || '/' || quota || '/' || remaining FROM moverz_batch.user_photo_quota
            WHERE user_id = 'quota-user'), '5/5/0', 'user_photo_quota shows it');
SELECT moverz_batch.create_project('quota-user-2', 'quota') AS q2 \gset
SELECT lives_ok(format($$SELECT moverz_batch.create_batch(%L, 'quota-user-2',
                   '[{"filename": "z.jpg", "url": "https://img.example.com/q/z.jpg"}]')$$, :'q2'),
                'another user has a quota of their own');
RESET moverz_batch.max_photos_per_user_per_day;

SELECT * FROM finish();
ROLLBACK;
