-- 04_bad_input: every invalid call raises a precise SQLSTATE and a message
-- naming the field and the rule, and writes nothing; injection-shaped
-- strings are stored verbatim, as data.
\i sql/include/setup.sql
-- nrows(): the number of rows of every table of the extension.
CREATE FUNCTION pg_temp.nrows() RETURNS text LANGUAGE sql AS $$
SELECT format('projects=%s batches=%s photos=%s jobs=%s summaries=%s items=%s',
              (SELECT count(*) FROM moverz_batch.projects),
              (SELECT count(*) FROM moverz_batch.batches),
              (SELECT count(*) FROM moverz_batch.photos),
              (SELECT count(*) FROM moverz_batch.inventory_sync_jobs),
              (SELECT count(*) FROM moverz_batch.inventory_summaries),
              (SELECT count(*) FROM moverz_batch.inventory_items))
$$;
-- cb(assets): try create_batch(project :p, 'r04_alice', assets).
CREATE TABLE pg_temp.ctx (p uuid, pb uuid, b uuid);
CREATE FUNCTION pg_temp.cb(assets jsonb) RETURNS text LANGUAGE sql AS $$
SELECT pg_temp.try(format('SELECT moverz_batch.create_batch(%L, %L, %L)', (SELECT p FROM pg_temp.ctx), 'r04_alice', assets))
$$;
-- asset(filename, url): one asset object (NULL arguments make JSON nulls).
CREATE FUNCTION pg_temp.a1(filename text, url text) RETURNS jsonb LANGUAGE sql AS $$
SELECT jsonb_build_array(jsonb_build_object('filename', filename, 'url', url))
$$;

SELECT moverz_batch.create_project('r04_alice', 'Alice') AS p \gset
SELECT moverz_batch.create_project('r04_bob', 'Bob') AS pb \gset
SELECT moverz_batch.create_batch(:'p', 'r04_alice', '[{"filename": "ok.jpg", "url": "https://x.example/ok.jpg"}]') AS b \gset
INSERT INTO pg_temp.ctx VALUES (:'p', :'pb', :'b');
SELECT pg_temp.nrows() AS before \gset

-- A bad call is a real error: the statement fails.
SELECT moverz_batch.create_batch(:'p', 'r04_alice', '[]');

-- assets as a whole.
SELECT what, pg_temp.try(format('SELECT moverz_batch.create_batch(%L, %L, %s)', :'p', 'r04_alice', arg)) AS result
  FROM (VALUES ('SQL NULL', 'NULL'), ('JSON null', '''null''::jsonb'), ('object', '''{"filename": "a.jpg"}'''),
               ('string', '''"a.jpg"'''), ('number', '''42'''), ('boolean', '''true'''), ('empty array', '''[]''')) AS t(what, arg);

-- The elements.
SELECT what, pg_temp.cb(assets::jsonb) AS result FROM (VALUES
    ('number element', '[1]'),
    ('null element', '[null]'),
    ('array element', '[["a.jpg", "https://x.example/a.jpg"]]'),
    ('string element', '["https://x.example/a.jpg"]'),
    ('second element bad', '[{"filename": "a.jpg", "url": "https://x.example/a.jpg"}, 7]'),
    ('missing filename', '[{"url": "https://x.example/a.jpg"}]'),
    ('null filename', '[{"filename": null, "url": "https://x.example/a.jpg"}]'),
    ('number filename', '[{"filename": 12, "url": "https://x.example/a.jpg"}]'),
    ('empty filename', '[{"filename": "", "url": "https://x.example/a.jpg"}]'),
    ('blank filename', '[{"filename": "   ", "url": "https://x.example/a.jpg"}]'),
    ('control char in filename', '[{"filename": "a\nb.jpg", "url": "https://x.example/a.jpg"}]'),
    ('missing url', '[{"filename": "a.jpg"}]'),
    ('null url', '[{"filename": "a.jpg", "url": null}]'),
    ('object url', '[{"filename": "a.jpg", "url": {"href": "https://x.example/a.jpg"}}]'),
    ('empty url', '[{"filename": "a.jpg", "url": ""}]'),
    ('file: url', '[{"filename": "a.jpg", "url": "file:///etc/passwd"}]'),
    ('javascript: url', '[{"filename": "a.jpg", "url": "javascript:alert(1)"}]'),
    ('javascript: disguised', '[{"filename": "a.jpg", "url": "javascript://x.example/%0Aalert(1)"}]'),
    ('data: url', '[{"filename": "a.jpg", "url": "data:image/png;base64,iVBORw0KGgo="}]'),
    ('ftp: url', '[{"filename": "a.jpg", "url": "ftp://x.example/a.jpg"}]'),
    ('no scheme', '[{"filename": "a.jpg", "url": "x.example/a.jpg"}]'),
    ('scheme-relative', '[{"filename": "a.jpg", "url": "//x.example/a.jpg"}]'),
    ('no host', '[{"filename": "a.jpg", "url": "https://"}]'),
    ('empty host', '[{"filename": "a.jpg", "url": "https:///a.jpg"}]'),
    ('one slash', '[{"filename": "a.jpg", "url": "http:/x.example/a.jpg"}]'),
    ('space in url', '[{"filename": "a.jpg", "url": "https://x.example/my photo.jpg"}]'),
    ('leading space', '[{"filename": "a.jpg", "url": " https://x.example/a.jpg"}]'),
    ('trailing newline', '[{"filename": "a.jpg", "url": "https://x.example/a.jpg\n"}]'),
    ('tab in url', '[{"filename": "a.jpg", "url": "https://x.example/a\tb.jpg"}]'),
    ('number roomType', '[{"filename": "a.jpg", "url": "https://x.example/a.jpg", "roomType": 3}]'),
    ('unknown roomType', '[{"filename": "a.jpg", "url": "https://x.example/a.jpg", "roomType": "spaceship"}]'),
    ('roomType wrong case', '[{"filename": "a.jpg", "url": "https://x.example/a.jpg", "roomType": "Kitchen"}]'),
    ('empty roomType', '[{"filename": "a.jpg", "url": "https://x.example/a.jpg", "roomType": ""}]'),
    ('number filePath', '[{"filename": "a.jpg", "url": "https://x.example/a.jpg", "filePath": 1}]')
  ) AS t(what, assets);
-- Lengths are in bytes: 255 accepted (checked below), 256 rejected, also
-- when made of 2-byte characters; url 2048 accepted, 2049 rejected.
SELECT what, pg_temp.cb(assets) AS result FROM (VALUES
    ('filename 256 bytes', pg_temp.a1(repeat('f', 252) || '.jpg', 'https://x.example/a.jpg')),
    ('filename 128 x é', pg_temp.a1(repeat('é', 128), 'https://x.example/a.jpg')),
    ('url 2049 bytes', pg_temp.a1('a.jpg', 'https://x.example/' || repeat('u', 2049 - 18))),
    ('url 5000 bytes', pg_temp.a1('a.jpg', 'https://x.example/' || repeat('u', 5000 - 18))),
    ('filePath 1025 bytes', jsonb_build_array(jsonb_build_object('filename', 'a.jpg', 'url', 'https://x.example/a.jpg', 'filePath', repeat('p', 1025))))
  ) AS t(what, assets);
-- The URL rule at its edges (written out in C since 0.4.0; the rule is the
-- case-insensitive ^https?://[^/?#\s@]*[a-z0-9\]][^\s]*$): a host part up
-- to the first / ? # or @ with a letter, digit or ']' in it, no white space.
SELECT url, pg_temp.try(format('SELECT moverz_batch_internal.check_assets(%L)', pg_temp.a1('a.jpg', url))) AS result
  FROM (VALUES ('HTTPS://X.EXAMPLE/A.JPG'), ('http://x'), ('http://[::1]/a.jpg'),
               ('https://user@x.example/a.jpg'), ('https://x.example?q=a&b=@c'), ('http://x.example#top'),
               ('http://@x.example/a.jpg'), ('http://-/a.jpg'), ('http://./a1.jpg'), ('http://?x'),
               ('https:x.example/a.jpg'), ('httpss://x.example/a.jpg'), ('https://x.example/a' || chr(11) || 'b'))
       AS t(url);
-- The room-type format, a CHECK on room_types and on photos: a lower-case
-- letter, then up to 63 lower-case letters, digits or underscores.
BEGIN;
SELECT what, pg_temp.try(format('INSERT INTO moverz_batch.room_types VALUES (%L, %L)', rt, 'test')) AS result
  FROM (VALUES ('64 characters', 'r' || repeat('x', 63)), ('65 characters', 'r' || repeat('x', 64)),
               ('digits and underscores', 'wine_cellar_2'), ('digit first', '2nd_room'),
               ('upper case', 'Attic'), ('non-ASCII letter', 'grenié'), ('empty', '')) AS t(what, rt);
ROLLBACK;
-- The first broken element is reported, the first broken rule of it.
SELECT pg_temp.cb('[{"filename": "a.jpg", "url": "https://x.example/a.jpg"}, {"filename": "b.jpg", "url": "https://x.example/b.jpg"}, {"filename": "", "url": "ftp://x"}, {"url": "x"}]') AS third_of_four;

-- More photos than moverz_batch.max_batch_size: 54000, before any element
-- is looked at.
SELECT pg_temp.cb((SELECT jsonb_agg(jsonb_build_object('filename', format('p%s.jpg', i), 'url', format('https://x.example/p%s.jpg', i)))
                     FROM generate_series(1, 1001) AS i)) AS photos_1001;
SELECT pg_temp.cb((SELECT jsonb_agg(i) FROM generate_series(1, 1001) AS i)) AS junk_1001;
SET moverz_batch.max_batch_size = 2;
SELECT pg_temp.cb('[{"filename": "1.jpg", "url": "https://x.example/1.jpg"}, {"filename": "2.jpg", "url": "https://x.example/2.jpg"}, {"filename": "3.jpg", "url": "https://x.example/3.jpg"}]') AS photos_3_max_2;
SELECT pg_temp.try('SET moverz_batch.max_batch_size = 0') AS zero, pg_temp.try('SET moverz_batch.max_batch_size = ''many''') AS not_a_number;
RESET moverz_batch.max_batch_size;
SELECT current_setting('moverz_batch.max_batch_size') AS max_batch_size;

-- The other arguments of create_batch.
SELECT what, pg_temp.try(format('SELECT moverz_batch.create_batch(%s, %s, ''[{"filename": "a.jpg", "url": "https://x.example/a.jpg"}]''%s)',
                                project, user_id, rest)) AS result
  FROM (VALUES
    ('unknown project', quote_literal(gen_random_uuid()), '''r04_alice''', ''),
    ('another user''s project', quote_literal(:'pb'), '''r04_alice''', ''),
    ('null project', 'NULL', '''r04_alice''', ''),
    ('null user_id', quote_literal(:'p'), 'NULL', ''),
    ('empty user_id', quote_literal(:'p'), '''''', ''),
    ('blank user_id', quote_literal(:'p'), ''' ''', ''),
    ('user_id 256 bytes', quote_literal(:'p'), quote_literal(repeat('u', 256)), ''),
    ('unknown priority', quote_literal(:'p'), '''r04_alice''', ', ''URGENT'''),
    ('lower-case priority', quote_literal(:'p'), '''r04_alice''', ', ''high'''),
    ('null priority', quote_literal(:'p'), '''r04_alice''', ', NULL'),
    ('empty idempotency_key', quote_literal(:'p'), '''r04_alice''', ', ''NORMAL'', '''''),
    ('idempotency_key 256 bytes', quote_literal(:'p'), '''r04_alice''', ', ''NORMAL'', ' || quote_literal(repeat('k', 256)))
  ) AS t(what, project, user_id, rest);
-- Unknown and another user's project: the very same error (no leak).
SELECT pg_temp.try(format('SELECT moverz_batch.create_batch(%L, %L, %L)', :'pb', 'r04_alice', pg_temp.a1('a.jpg', 'https://x.example/a.jpg')))
     = pg_temp.try(format('SELECT moverz_batch.create_batch(%L, %L, %L)', gen_random_uuid(), 'r04_alice', pg_temp.a1('a.jpg', 'https://x.example/a.jpg')))
       AS same_error;

-- The other functions.
SELECT what, pg_temp.try(q) AS result FROM (VALUES
    ('batch_progress unknown batch', format('SELECT moverz_batch.batch_progress(%L)', gen_random_uuid())),
    ('batch_progress null batch', 'SELECT moverz_batch.batch_progress(NULL)'),
    ('batch_progress negative limit', format('SELECT moverz_batch.batch_progress(%L, -1)', :'b')),
    ('batch_progress negative offset', format('SELECT moverz_batch.batch_progress(%L, 10, -1)', :'b')),
    ('batch_progress null offset', format('SELECT moverz_batch.batch_progress(%L, 10, NULL)', :'b')),
    ('retry_batch unknown batch', format('SELECT moverz_batch.retry_batch(%L)', gen_random_uuid())),
    ('retry_batch null batch', 'SELECT moverz_batch.retry_batch(NULL)'),
    ('sync_inventory unknown batch', format('SELECT moverz_batch.sync_inventory(%L)', gen_random_uuid())),
    ('sync_inventory null batch', 'SELECT moverz_batch.sync_inventory(NULL)'),
    ('project_inventory unknown project', format('SELECT moverz_batch.project_inventory(%L)', gen_random_uuid())),
    ('create_project null user_id', 'SELECT moverz_batch.create_project(NULL, ''n'')'),
    ('create_project empty user_id', 'SELECT moverz_batch.create_project('''', ''n'')'),
    ('create_project null name', 'SELECT moverz_batch.create_project(''r04_alice'', NULL)'),
    ('create_project blank name', 'SELECT moverz_batch.create_project(''r04_alice'', '' '')'),
    ('create_project name 201 bytes', format('SELECT moverz_batch.create_project(''r04_alice'', %L)', repeat('n', 201))),
    ('cancel_batch unknown batch', format('SELECT moverz_batch.cancel_batch(%L)', gen_random_uuid())),
    ('cancel_batch null batch', 'SELECT moverz_batch.cancel_batch(NULL)'),
    ('retry_photo unknown photo', format('SELECT moverz_batch.retry_photo(%L)', gen_random_uuid())),
    ('retry_photo null photo', 'SELECT moverz_batch.retry_photo(NULL)'),
    ('retry_photo with a batch id', format('SELECT moverz_batch.retry_photo(%L)', :'b')),
    ('purge null interval', 'SELECT moverz_batch.purge(NULL)'),
    ('purge negative interval', 'SELECT moverz_batch.purge(''-1 second'')'),
    ('purge not an interval', 'SELECT moverz_batch.purge(''soon'')')
  ) AS t(what, q);
-- An unknown inventory job is not an error: nothing to run.
SELECT moverz_batch_internal.run_inventory_job(-42) AS unknown_job;

-- Nothing was written by any of the calls above.
SELECT pg_temp.nrows() = :'before' AS nothing_written;

-- The limits themselves are accepted.
SELECT moverz_batch.create_batch(:'p', 'r04_alice', jsonb_build_array(
    jsonb_build_object('filename', repeat('f', 251) || '.jpg', 'url', 'https://x.example/' || repeat('u', 2048 - 18),
                       'filePath', repeat('p', 1024)),
    jsonb_build_object('filename', repeat('é', 127) || '.', 'url', 'HTTPS://X.EXAMPLE:8443/A.JPG'),
    jsonb_build_object('filename', 'b.jpg', 'url', 'http://[2001:db8::1]/b.jpg', 'filePath', NULL, 'roomType', 'other'))) AS lim \gset
SELECT position, octet_length(filename) AS filename_bytes, octet_length(url) AS url_bytes, octet_length(file_path) AS file_path_bytes, room_type
  FROM moverz_batch.photos WHERE batch_id = :'lim' ORDER BY position;
SET moverz_batch.max_batch_size = 2;
SELECT moverz_batch.create_batch(:'p', 'r04_alice', '[{"filename": "1.jpg", "url": "https://x.example/1.jpg"}, {"filename": "2.jpg", "url": "https://x.example/2.jpg"}]') AS two \gset
RESET moverz_batch.max_batch_size;
SELECT count(*) AS photos_at_max_2 FROM moverz_batch.photos WHERE batch_id = :'two';

-- Injection-shaped strings are data: stored and returned verbatim.
SELECT $j$[{"filename": "Robert'); DROP TABLE moverz_batch.photos;--.jpg", "url": "https://x.example/a.jpg?id=1%27%20OR%20%271%27=%271"},
  {"filename": "\"; DELETE FROM moverz_batch.batches; --", "url": "https://x.example/b.jpg?q=1';DROP%20TABLE%20moverz_batch.batches;--", "filePath": "../../etc/passwd"},
  {"filename": "$$; SELECT pg_sleep(10); $$ %s %L \\x00 \u00e9", "url": "https://x.example/<script>alert(1)</script>"}]$j$ AS evil \gset
SELECT moverz_batch.create_batch(:'p', 'r04_alice', :'evil', 'LOW', 'k''; DROP TABLE moverz_batch.projects; --') AS evil_b \gset
SELECT position, filename, url, file_path, checksum = md5(filename || ':' || url) AS checksum_ok
  FROM moverz_batch.photos WHERE batch_id = :'evil_b' ORDER BY position;
SELECT (SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object('filename', filename, 'url', url, 'filePath', file_path)) ORDER BY position)
          FROM moverz_batch.photos WHERE batch_id = :'evil_b') = :'evil'::jsonb AS stored_verbatim,
       (SELECT array_agg(e ->> 'filename' ORDER BY o) FROM jsonb_array_elements(moverz_batch.batch_progress(:'evil_b') -> 'photos') WITH ORDINALITY AS x(e, o))
       = (SELECT array_agg(e ->> 'filename' ORDER BY o) FROM jsonb_array_elements(:'evil'::jsonb) WITH ORDINALITY AS x(e, o)) AS progress_verbatim,
       (SELECT idempotency_key FROM moverz_batch.batches WHERE id = :'evil_b') AS idempotency_key;
SELECT moverz_batch.create_batch(:'p', 'r04_alice', :'evil', 'LOW', 'k''; DROP TABLE moverz_batch.projects; --') = :'evil_b' AS replay_same_batch;
SELECT pg_temp.cb('[{"filename": "a.jpg", "url": "https://x.example/a.jpg", "roomType": "kitchen''; DROP TABLE moverz_batch.room_types; --"}]') AS evil_room_type;
SELECT to_regclass('moverz_batch.photos') IS NOT NULL AS photos_table, to_regclass('moverz_batch.batches') IS NOT NULL AS batches_table,
       to_regclass('moverz_batch.projects') IS NOT NULL AS projects_table, (SELECT count(*) FROM moverz_batch.room_types) AS room_types;

DELETE FROM moverz_batch.projects WHERE user_id IN ('r04_alice', 'r04_bob');
SELECT count(*) AS leftover_batches FROM moverz_batch.batches WHERE user_id IN ('r04_alice', 'r04_bob');
