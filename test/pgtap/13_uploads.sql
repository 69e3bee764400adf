-- 13_uploads: the SQL side of direct uploads (issue #21), in one rolled-back
-- transaction: request_uploads' rules (each naming the element), store_upload
-- (token, once, size, magic numbers), uploads in create_batch (checksum =
-- SHA-256 of the bytes, duplicates by content, never the same upload twice,
-- nothing written on error), the claim handing out the bytes within a byte
-- budget, and the bytes going with their photo.
BEGIN;
SELECT plan(32);
SET LOCAL client_min_messages = warning;
SELECT ok(moverz_batch.pause_processing(), 'paused (in this transaction only)');

-- err(sql): the error of sql as '<sqlstate>: <message>', or 'ok'.
CREATE FUNCTION pg_temp.err(p_sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text;
    msg text;
BEGIN
    EXECUTE p_sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RETURN st || ': ' || msg;
END
$$;

-- png(n, seed): n bytes that start as a PNG; jpeg(n): as a JPEG.
CREATE FUNCTION pg_temp.png(n int, seed int) RETURNS bytea LANGUAGE sql AS $$
SELECT '\x89504e470d0a1a0a'::bytea || decode(repeat(lpad(to_hex(seed % 256), 2, '0'), n - 8), 'hex')
$$;

CREATE TEMP TABLE t AS SELECT moverz_batch.create_project('tap-up', 'p') AS project,
                              moverz_batch.create_project('tap-up-2', 'q') AS other;

-- request_uploads: the rules, each naming the element
SELECT is(pg_temp.err($$SELECT moverz_batch.request_uploads((SELECT project FROM t), 'tap-up', '[]')$$),
          '22023: files must be a non-empty JSON array of {"filename", "contentType", "size"} objects', 'files: not empty');
SELECT is(pg_temp.err($$SELECT moverz_batch.request_uploads((SELECT project FROM t), 'tap-up',
              '[{"filename": "a.png", "contentType": "image/png", "size": 10}, {"contentType": "image/png", "size": 10}]')$$),
          '22023: files[1].filename is required and must be a string', 'files[i].filename required');
SELECT is(pg_temp.err($$SELECT moverz_batch.request_uploads((SELECT project FROM t), 'tap-up',
              '[{"filename": "a.png", "contentType": "image/png", "size": 0}]')$$),
          '22023: files[0].size must be the file''s size in bytes, a positive integer', 'files[i].size positive');
SELECT is(pg_temp.err($$SELECT moverz_batch.request_uploads((SELECT project FROM t), 'tap-up',
              '[{"filename": "a.png", "contentType": "image/png", "size": 1.5}]')$$),
          '22023: files[0].size must be the file''s size in bytes, a positive integer', 'files[i].size an integer');
SELECT is(pg_temp.err($$SELECT moverz_batch.request_uploads((SELECT project FROM t), 'tap-up',
              '[{"filename": "a.png", "contentType": "image/png", "size": 99999999}]')$$),
          '54000: files[0].size 99999999 is more than the 5242880 bytes a photo may have', 'files[i].size within max_upload_bytes');
SELECT is(pg_temp.err($$SELECT moverz_batch.request_uploads((SELECT other FROM t), 'tap-up',
              '[{"filename": "a.png", "contentType": "image/png", "size": 10}]')$$),
          'P0002: project_id ' || (SELECT other FROM t) || ': no such project for this user', 'another user''s project');
SELECT is((SELECT count(*) FROM moverz_batch.uploads WHERE user_id = 'tap-up'), 0::bigint, 'nothing written by the refusals');

-- three uploads, stored through their tokens
CREATE TEMP TABLE u AS
SELECT (e ->> 'uploadId')::uuid AS id, substring(e ->> 'url' FROM 'token=(.*)$') AS token, (i - 1)::int AS i
  FROM jsonb_array_elements(moverz_batch.request_uploads((SELECT project FROM t), 'tap-up',
           '[{"filename": "a.png", "contentType": "image/png", "size": 100},
             {"filename": "b.png", "contentType": "image/png", "size": 200},
             {"filename": "a-again.png", "contentType": "image/png", "size": 100},
             {"filename": "c.jpg", "contentType": "image/jpeg", "size": 300}]')) WITH ORDINALITY AS x(e, i);
SET LOCAL moverz_batch.max_batch_size = 5;
SELECT matches(pg_temp.err($$SELECT moverz_batch.request_uploads((SELECT project FROM t), 'tap-up',
              '[{"filename": "e.png", "contentType": "image/png", "size": 10}, {"filename": "f.png", "contentType": "image/png", "size": 10}]')$$),
          '^53400: user_id ''tap-up'': 4 uploads wait for a batch, 2 more would exceed moverz_batch.max_batch_size \(5\)$',
          'at most max_batch_size uploads waiting for a batch per user');
RESET moverz_batch.max_batch_size;
SELECT is(pg_temp.err(format($$SELECT moverz_batch.store_upload(%L, %L, pg_temp.png(100, 1))$$,
                             (SELECT id FROM u WHERE i = 0), repeat('0', 64))),
          '42501: upload ' || (SELECT id FROM u WHERE i = 0) || ': no such upload, or a wrong token', 'a wrong token');
SELECT is(pg_temp.err(format($$SELECT moverz_batch.store_upload(%L, %L, pg_temp.png(300, 1))$$,
                             (SELECT id FROM u WHERE i = 3), (SELECT token FROM u WHERE i = 3))),
          '22023: upload ' || (SELECT id FROM u WHERE i = 3) || ': the bytes are not an image/jpeg image (they are image/png)',
          'the bytes must be of the announced type');
SELECT is((SELECT moverz_batch.store_upload(id, token, pg_temp.png(100, 1)) ->> 'sha256' FROM u WHERE i = 0),
          encode(sha256(pg_temp.png(100, 1)), 'hex'), 'store_upload: the SHA-256 of the bytes');
SELECT is(pg_temp.err(format($$SELECT moverz_batch.store_upload(%L, %L, pg_temp.png(100, 1))$$,
                             (SELECT id FROM u WHERE i = 0), (SELECT token FROM u WHERE i = 0))),
          '55006: upload ' || (SELECT id FROM u WHERE i = 0) || ': its file was already uploaded (an upload URL is for one upload)',
          'once only');
SELECT is(pg_temp.err(format($$SELECT moverz_batch.store_upload(%L, %L, pg_temp.png(201, 2))$$,
                             (SELECT id FROM u WHERE i = 1), (SELECT token FROM u WHERE i = 1))),
          '54000: upload ' || (SELECT id FROM u WHERE i = 1) || ': 201 bytes, more than the 200 announced', 'at most the size announced');
SELECT ok((SELECT bool_and(moverz_batch.store_upload(id, token, CASE i WHEN 1 THEN pg_temp.png(150, 2)
                                                                   ELSE pg_temp.png(100, 1) END) ? 'sha256')
             FROM u WHERE i IN (1, 2)), 'the two others stored (one with the first''s bytes)');
SELECT is((SELECT size FROM moverz_batch.uploads WHERE id = (SELECT id FROM u WHERE i = 1)), 150,
          'the size becomes the bytes''');

-- create_batch with uploads
SELECT is(pg_temp.err(format($$SELECT moverz_batch.create_batch(%L, 'tap-up', %L)$$, (SELECT project FROM t),
              jsonb_build_array(jsonb_build_object('uploadId', (SELECT id FROM u WHERE i = 3))))),
          '22023: assets[0].uploadId ' || (SELECT id FROM u WHERE i = 3) || ': the upload was never completed (no file was sent to its URL)',
          'an upload never completed');
SELECT is(pg_temp.err(format($$SELECT moverz_batch.create_batch(%L, 'tap-up', %L)$$, (SELECT project FROM t),
              jsonb_build_array(jsonb_build_object('uploadId', (SELECT id FROM u WHERE i = 0)),
                                jsonb_build_object('uploadId', (SELECT id FROM u WHERE i = 0))))),
          '22023: assets[0].uploadId ' || (SELECT id FROM u WHERE i = 0) || ': the upload was already used (an upload is one photo)',
          'the same upload twice in one batch');
SELECT is(pg_temp.err(format($$SELECT moverz_batch.create_batch(%L, 'tap-up', %L)$$, (SELECT project FROM t),
              jsonb_build_array(jsonb_build_object('uploadId', (SELECT id FROM u WHERE i = 0)),
                                jsonb_build_object('uploadId', upper((SELECT id FROM u WHERE i = 0)::text))))),
          '22023: assets[0].uploadId ' || (SELECT id FROM u WHERE i = 0) || ': the upload was already used (an upload is one photo)',
          'the same upload twice, in another case');
SELECT is(pg_temp.err(format($$SELECT moverz_batch.create_batch(%L, 'tap-up', %L)$$, (SELECT project FROM t),
              jsonb_build_array(jsonb_build_object('uploadId', (SELECT id FROM u WHERE i = 0), 'url', 'https://x.example/a.png')))),
          '22023: assets[0] must have a url or an uploadId, not both', 'a url or an uploadId');
SELECT is((SELECT count(*) FROM moverz_batch.photos WHERE user_id = 'tap-up'), 0::bigint, 'nothing written by the refusals');

ALTER TABLE t ADD COLUMN batch uuid;
UPDATE t SET batch = moverz_batch.create_batch(project, 'tap-up',
    (SELECT jsonb_agg(jsonb_build_object('uploadId', id) ORDER BY i) FROM u WHERE i < 3)
    || '[{"filename": "d.jpg", "url": "https://img.example.com/d.jpg"}]');
SELECT is((SELECT string_agg(format('%s %s %s %s', p.filename, p.checksum = encode(sha256(pg_temp.png(100, 1)), 'hex'),
                                    p.duplicate_of IS NOT NULL, p.url IS NULL), ', ' ORDER BY p.position)
             FROM moverz_batch.photos p WHERE p.batch_id = (SELECT batch FROM t)),
          'a.png t f t, b.png f f t, a-again.png t t t, d.jpg f f f',
          'the photos: checksum = the bytes'' SHA-256, the same bytes under another name a duplicate, a URL photo beside');
SELECT is((SELECT count(*) FROM moverz_batch.uploads WHERE photo_id IS NOT NULL AND user_id = 'tap-up'), 3::bigint,
          'each upload is now a photo');

-- the claim: the bytes, within the budget
SELECT is((SELECT string_agg(format('%s:%s:%s', c.filename, c.media_type, length(c.image)), ',')
             FROM moverz_batch_internal.claim_photos(0, 1, 10, 60000, 0, 120, false) c),
          NULL, 'paused: nothing claimed');
SELECT ok(moverz_batch.resume_processing(), 'resumed');
UPDATE moverz_batch.photos SET next_attempt_at = now() WHERE batch_id = (SELECT batch FROM t);
SELECT is((SELECT string_agg(format('%s:%s:%s', c.filename, c.media_type, length(c.image)), ',')
             FROM moverz_batch_internal.claim_photos(0, 1, 10, 60000, 0, 120, false) c),
          'a.png:image/png:100', 'a budget of 120 bytes: the first upload only, with its bytes and type');
SELECT is((SELECT string_agg(c.filename, ',') FROM moverz_batch_internal.claim_photos(0, 1, 10, 60000, 0, 50, false) c),
          NULL, 'a budget of 50 bytes, photos in flight: none');
SELECT is((SELECT string_agg(format('%s:%s', c.filename, length(c.image)), ',')
             FROM moverz_batch_internal.claim_photos(0, 1, 10, 60000, 0, 50, true) c),
          'b.png:150', 'nothing in flight: the next one goes alone, whatever its size');
SELECT is((SELECT string_agg(format('%s:%s', c.filename, coalesce(c.image::text, 'no bytes')), ',')
             FROM moverz_batch_internal.claim_photos(0, 1, 10, 60000, 0, 0, false) c),
          'd.jpg:no bytes', 'a URL photo costs no bytes (the duplicate is never claimed)');

-- a photo that merely names an upload (not the one it became) does not take
-- it along when deleted
UPDATE moverz_batch.photos SET url = NULL, upload_id = (SELECT id FROM u WHERE i = 3)
 WHERE batch_id = (SELECT batch FROM t) AND filename = 'd.jpg';
DELETE FROM moverz_batch.photos WHERE batch_id = (SELECT batch FROM t) AND filename = 'd.jpg';
SELECT is((SELECT count(*) FROM moverz_batch.uploads WHERE id = (SELECT id FROM u WHERE i = 3)), 1::bigint,
          'deleting a photo that names another upload leaves that upload');

-- the bytes go with their photo
DELETE FROM moverz_batch.batches WHERE id = (SELECT batch FROM t);
SELECT is((SELECT count(*) FROM moverz_batch.uploads WHERE user_id = 'tap-up'), 1::bigint,
          'deleting the batch deleted its uploads (the one never completed stays until it expires)');
SELECT is((SELECT count(*) FROM moverz_batch_internal.upload_bytes b
            WHERE b.upload_id IN (SELECT id FROM u)), 0::bigint, 'and their bytes');

SELECT * FROM finish();
ROLLBACK;
