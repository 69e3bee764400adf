-- 10_copies_in_flight: a photo submitted again while its first copy still
-- waits or is in flight in another open batch of the same project is not
-- sent (nor paid) a second time: it waits for that copy and takes its
-- outcome (issue #20).  Also: a cancel of the first batch sends the waiting
-- copies on their own, a retry of a copy that took a failure analyses it,
-- and a copy created while the first one's write-back is being committed
-- (held open in another session) takes the analysis at once.
--
-- Not wrapped in one transaction: the race needs two sessions (dblink).
-- Everything is created under user "tap_copies" and deleted at the end
-- (and at the start, after an interrupted run).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(27);

DELETE FROM moverz_batch.projects WHERE user_id = 'tap_copies';
SELECT moverz_batch.create_project('tap_copies', 'copies') AS p \gset
SELECT moverz_batch.create_project('tap_copies', 'another project') AS p2 \gset

-- mk(project, urls): a batch of one photo per URL (the file name is the URL's
-- last segment).
CREATE FUNCTION pg_temp.mk(p uuid, VARIADIC urls text[]) RETURNS uuid LANGUAGE sql AS $$
SELECT moverz_batch.create_batch(p, 'tap_copies',
    (SELECT jsonb_agg(jsonb_build_object('filename', regexp_replace(u, '^.*/', ''), 'url', u) ORDER BY o)
       FROM unnest(urls) WITH ORDINALITY AS t(u, o)))
$$;
-- ph(batch, position): the photo's id.
CREATE FUNCTION pg_temp.ph(b uuid, pos int) RETURNS uuid LANGUAGE sql AS $$
SELECT id FROM moverz_batch.photos WHERE batch_id = b AND position = pos
$$;
-- st(photo): status, and "copy" when it waits for (or took the outcome of)
-- another photo.
CREATE FUNCTION pg_temp.st(ph uuid) RETURNS text LANGUAGE sql AS $$
SELECT status || CASE WHEN duplicate_of IS NOT NULL THEN ' copy' ELSE '' END FROM moverz_batch.photos WHERE id = ph
$$;
-- claimed(token): the photos of this test's user that one claim takes.
CREATE FUNCTION pg_temp.claimed(tok bigint) RETURNS uuid[] LANGUAGE sql AS $$
SELECT coalesce(array_agg(c.id ORDER BY c.id), '{}') FROM moverz_batch_internal.claim_photos(0, tok, 100, 60000) AS c
$$;
-- answer(token, photo, http_status): complete_photos with one result of
-- the photo's current attempt (a sofa when 200).
CREATE FUNCTION pg_temp.answer(tok bigint, ph uuid, http int) RETURNS int LANGUAGE sql AS $$
SELECT c.done FROM moverz_batch_internal.complete_photos(tok,
    (SELECT jsonb_build_array(jsonb_build_object('id', p.id, 'batch_id', p.batch_id, 'user_id', p.user_id,
                                                 'attempt', p.attempts, 'http_status', http, 'latency_ms', 20,
                                                 'body', CASE WHEN http = 200
                                                              THEN '{"items": [{"label": "sofa", "quantity": 1, "volume_m3": 2}]}'::jsonb
                                                              ELSE '{"error": "bad image"}'::jsonb END))
       FROM moverz_batch.photos p WHERE p.id = ph), 1, 1000, 'test-ai') AS c
$$;

-- 1. The first copy still PENDING: the second waits, is never claimed, and
--    takes the analysis when the first is written back.
SELECT pg_temp.mk(:'p', 'https://c.example/sofa.jpg') AS b1 \gset
SELECT pg_temp.mk(:'p', 'https://c.example/sofa.jpg', 'https://c.example/desk.jpg') AS b2 \gset
SELECT is(pg_temp.st(pg_temp.ph(:'b2', 0)), 'PENDING copy', 'a photo still pending in another batch makes a waiting copy');
SELECT is((SELECT duplicate_of FROM moverz_batch.photos WHERE id = pg_temp.ph(:'b2', 0)), pg_temp.ph(:'b1', 0),
          'the copy points at the first one');
SELECT is(pg_temp.st(pg_temp.ph(:'b2', 1)), 'PENDING', 'a new photo of the same batch is not a copy');
SELECT is(pg_temp.claimed(11), (SELECT array_agg(x ORDER BY x) FROM unnest(ARRAY[pg_temp.ph(:'b1', 0), pg_temp.ph(:'b2', 1)]) AS x),
          'the claim sends the first copy and the new photo, never the waiting copy');
SELECT is(pg_temp.answer(11, pg_temp.ph(:'b1', 0), 200), 1, 'the first copy is written back');
SELECT is(pg_temp.st(pg_temp.ph(:'b2', 0)), 'DONE copy', 'the waiting copy takes its outcome');
SELECT is((SELECT analysis FROM moverz_batch.photos WHERE id = pg_temp.ph(:'b2', 0)),
          (SELECT analysis FROM moverz_batch.photos WHERE id = pg_temp.ph(:'b1', 0)), '... and its analysis');
SELECT is(pg_temp.answer(11, pg_temp.ph(:'b2', 1), 200), 1, 'the other photo of the second batch is written back');
SELECT is((SELECT status::text FROM moverz_batch.batches WHERE id = :'b2'), 'COMPLETED', 'the second batch completes');
SELECT is((SELECT count(*)::int FROM moverz_batch.ai_metrics WHERE meta ->> 'batchId' IN (:'b1', :'b2')), 2,
          'two photos analysed (paid) for three submitted');

-- 2. The first copy in flight (claimed): same.  The same photo in another
--    project is not a copy.
SELECT pg_temp.mk(:'p', 'https://c.example/bed.jpg') AS b3 \gset
SELECT is(cardinality(pg_temp.claimed(12)), 1, 'the first copy is claimed');
SELECT pg_temp.mk(:'p', 'https://c.example/bed.jpg') AS b4 \gset
SELECT pg_temp.mk(:'p2', 'https://c.example/bed.jpg') AS b5 \gset
SELECT is(pg_temp.st(pg_temp.ph(:'b4', 0)), 'PENDING copy', 'a photo in flight in another batch makes a waiting copy');
SELECT is(pg_temp.st(pg_temp.ph(:'b5', 0)), 'PENDING', 'the same photo in another project is analysed on its own');
SELECT is(pg_temp.answer(12, pg_temp.ph(:'b3', 0), 400), 0, 'the first copy is answered 400 ...');
SELECT is(pg_temp.st(pg_temp.ph(:'b3', 0)), 'ERROR', '... and fails for good');
SELECT is(pg_temp.st(pg_temp.ph(:'b4', 0)), 'ERROR copy', 'its copy takes the failure');
SELECT is(moverz_batch.retry_batch(:'b4'), 1, 'the copy''s batch is retried');
SELECT is(pg_temp.st(pg_temp.ph(:'b4', 0)), 'PENDING', '... and the copy is analysed on its own this time');

-- 3. A cancel of the first batch sends its waiting copies on their own.
SELECT pg_temp.mk(:'p', 'https://c.example/lamp.jpg') AS b6 \gset
SELECT pg_temp.mk(:'p', 'https://c.example/lamp.jpg') AS b7 \gset
SELECT is(pg_temp.st(pg_temp.ph(:'b7', 0)), 'PENDING copy', 'a waiting copy');
SELECT is(moverz_batch.cancel_batch(:'b6'), 1, 'the first batch is cancelled');
SELECT is(pg_temp.st(pg_temp.ph(:'b7', 0)), 'PENDING', 'the copy no longer waits');

-- 3b. The same photo twice in the new batch, while waiting elsewhere: both
--     copies wait for the first one, and both settle with it.
SELECT pg_temp.mk(:'p', 'https://c.example/rug.jpg') AS b10 \gset
SELECT pg_temp.mk(:'p', 'https://c.example/rug.jpg', 'https://c.example/rug.jpg') AS b11 \gset
SELECT is((SELECT array_agg(duplicate_of) FROM moverz_batch.photos WHERE batch_id = :'b11'),
          ARRAY[pg_temp.ph(:'b10', 0), pg_temp.ph(:'b10', 0)], 'both copies wait for the photo of the other batch');
SELECT ok((SELECT pg_temp.ph(:'b10', 0) = ANY (x.c) AND NOT pg_temp.ph(:'b11', 0) = ANY (x.c)
                   AND NOT pg_temp.ph(:'b11', 1) = ANY (x.c)
              FROM (SELECT pg_temp.claimed(14) AS c) AS x),
          'the claim sends the rug once: neither copy');
SELECT pg_temp.answer(14, pg_temp.ph(:'b10', 0), 200) \g /dev/null
SELECT is((SELECT string_agg(status::text, ',') || ' ' || (SELECT status FROM moverz_batch.batches WHERE id = :'b11')
             FROM moverz_batch.photos WHERE batch_id = :'b11'), 'DONE,DONE COMPLETED',
          'both copies take its analysis, and their batch completes');

-- 4. The race: the first copy's write-back has updated it but not yet
--    committed when the second batch is created.  create_batch waits for
--    it, then takes the analysis at once (before: the second copy was
--    sent and paid again).
DELETE FROM moverz_batch.photos WHERE user_id = 'tap_copies' AND status IN ('PENDING', 'PROCESSING');
SELECT format('dbname=%s host=%s port=%s user=%s application_name=tap_copies', current_database(),
              split_part(current_setting('unix_socket_directories'), ',', 1),
              current_setting('port'), current_user) AS conn \gset
SELECT dblink_connect(c, :'conn') FROM unnest(ARRAY['w', 'c']) AS c \g /dev/null
SELECT dblink_exec(c, 'SET statement_timeout = ''60s''') FROM unnest(ARRAY['w', 'c']) AS c \g /dev/null
SELECT pid AS w_pid FROM dblink('w', 'SELECT pg_backend_pid()') AS t(pid int) \gset
SELECT pid AS c_pid FROM dblink('c', 'SELECT pg_backend_pid()') AS t(pid int) \gset
SELECT pg_temp.mk(:'p', 'https://c.example/chair.jpg') AS b8 \gset
SELECT is(cardinality(pg_temp.claimed(13)), 1, 'the first copy is claimed');
SELECT dblink_exec('w', 'BEGIN') \g /dev/null
SELECT * FROM dblink('w', format('SELECT done FROM moverz_batch_internal.complete_photos(13, %L, 1, 1000, %L)',
    (SELECT jsonb_build_array(jsonb_build_object('id', id, 'batch_id', batch_id, 'user_id', user_id, 'attempt', attempts,
                                                 'http_status', 200, 'latency_ms', 20,
                                                 'body', '{"items": [{"label": "chair", "quantity": 4, "volume_m3": 0.3}]}'::jsonb))
       FROM moverz_batch.photos WHERE id = pg_temp.ph(:'b8', 0)), 'test-ai')) AS t(done int) \g /dev/null
SELECT dblink_send_query('c', format('SELECT moverz_batch.create_batch(%L, %L, %L)', :'p', 'tap_copies',
    '[{"filename": "chair.jpg", "url": "https://c.example/chair.jpg"}]')) \g /dev/null
\ir include/blocked.sql
SELECT ok(pg_temp.blocked(:c_pid, :w_pid), 'create_batch waits for the write-back in progress');
SELECT dblink_exec('w', 'COMMIT') \g /dev/null
SELECT r AS b9 FROM dblink_get_result('c') AS t(r uuid) \gset
SELECT 1 FROM dblink_get_result('c') AS t(r uuid) \g /dev/null
SELECT is(pg_temp.st(pg_temp.ph(:'b9', 0)) || ' ' || (SELECT status FROM moverz_batch.batches WHERE id = :'b9'),
          'DONE copy COMPLETED', 'then its photo takes the analysis at once, never sent');

SELECT dblink_disconnect(c) FROM unnest(ARRAY['w', 'c']) AS c \g /dev/null
DELETE FROM moverz_batch.projects WHERE user_id = 'tap_copies';
DELETE FROM moverz_batch.ai_metrics WHERE meta ->> 'userId' = 'tap_copies';

SELECT * FROM finish();
