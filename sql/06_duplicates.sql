-- 06_duplicates: duplicate photos (same checksum = md5(filename:url) in one
-- project).  Within a batch, a later copy waits PENDING, is never claimed,
-- and takes its original's outcome (status, analysis, error) when
-- complete_photos writes it; across batches, a copy of a DONE photo is
-- inserted DONE with its analysis.  Duplicates add nothing to inventories,
-- and retry_photo / retry_batch of an ERROR original re-open its copies.
-- The worker functions are called directly (no background workers here).
\i sql/include/setup.sql
\i sql/include/labels.sql
-- mk(project, label, assets): create_batch for r06_user, remembered as label.
CREATE FUNCTION pg_temp.mk(p uuid, label text, assets jsonb) RETURNS uuid LANGUAGE sql AS $$
INSERT INTO pg_temp.lbl SELECT moverz_batch.create_batch(p, 'r06_user', assets), label RETURNING id
$$;
-- a(filename, url[, room]): one asset.
CREATE FUNCTION pg_temp.a(f text, u text, room text DEFAULT NULL) RETURNS jsonb LANGUAGE sql AS $$
SELECT jsonb_strip_nulls(jsonb_build_object('filename', f, 'url', 'https://cdn.example/' || u, 'roomType', room))
$$;
-- pid(label, position): a photo's id.
CREATE FUNCTION pg_temp.pid(label text, pos int) RETURNS uuid LANGUAGE sql AS $$
SELECT p.id FROM moverz_batch.photos p JOIN pg_temp.lbl l ON l.id = p.batch_id WHERE l.label = $1 AND p.position = $2
$$;
-- name(photo id): label#position.
CREATE FUNCTION pg_temp.name(ph uuid) RETURNS text LANGUAGE sql AS $$
SELECT coalesce((SELECT l.label || '#' || p.position FROM moverz_batch.photos p JOIN pg_temp.lbl l ON l.id = p.batch_id
                  WHERE p.id = ph), CASE WHEN ph IS NOT NULL THEN '?' END)
$$;
-- ph(label): the photos of a batch: status, which photo they duplicate,
-- attempts, error, room, the labels of their analysis.
CREATE FUNCTION pg_temp.ph(label text)
RETURNS TABLE (pos int, status text, dup_of text, attempts int, error text, room text, items text) LANGUAGE sql AS $$
SELECT p.position, p.status::text, pg_temp.name(p.duplicate_of), p.attempts,
       p.error_code || coalesce(': ' || p.error_message, ''), p.room_type,
       (SELECT string_agg(format('%s x%s', i ->> 'label', i ->> 'quantity'), ', ') FROM jsonb_array_elements(p.analysis -> 'items') AS i)
  FROM moverz_batch.photos p JOIN pg_temp.lbl l ON l.id = p.batch_id
 WHERE l.label = $1 ORDER BY p.position
$$;
-- claim(token): claim_photos for worker 0 (limit 100), as label#position
-- and attempt.
CREATE FUNCTION pg_temp.claim(tok bigint) RETURNS TABLE (photo text, attempt int) LANGUAGE sql AS $$
SELECT pg_temp.name(c.id), c.attempt FROM moverz_batch_internal.claim_photos(0, tok, 100, 60000) AS c ORDER BY 1
$$;
-- r(label, position, http_status, body): the result of the photo's current
-- attempt, as the worker hands it to complete_photos.
CREATE FUNCTION pg_temp.r(label text, pos int, http int, body jsonb) RETURNS jsonb LANGUAGE sql AS $$
SELECT jsonb_build_object('id', p.id, 'batch_id', p.batch_id, 'user_id', p.user_id, 'attempt', p.attempts,
                          'http_status', http, 'latency_ms', 20, 'body', body)
  FROM moverz_batch.photos p WHERE p.id = pg_temp.pid(label, pos)
$$;
-- complete(token, results): complete_photos (3 attempts, backoff 1 s).
CREATE FUNCTION pg_temp.complete(tok bigint, VARIADIC results jsonb[]) RETURNS text LANGUAGE sql AS $$
SELECT format('done=%s rate_limit_ms=%s', c.done, c.rate_limit_ms)
  FROM moverz_batch_internal.complete_photos(tok, to_jsonb(results), 3, 1000, 'test-ai') AS c
$$;
-- run_job(label): run the batch's pending inventory job.
CREATE FUNCTION pg_temp.run_job(label text) RETURNS text LANGUAGE sql AS $$
SELECT moverz_batch_internal.run_inventory_job(j.id) FROM moverz_batch.inventory_sync_jobs j JOIN pg_temp.lbl l ON l.id = j.batch_id
 WHERE l.label = $1 AND j.status = 'PENDING'
$$;
-- summary(label): the batch's inventorySummary, as batch_progress shows it.
CREATE FUNCTION pg_temp.summary(label text) RETURNS jsonb LANGUAGE sql AS $$
SELECT moverz_batch.batch_progress(l.id) -> 'inventorySummary' FROM pg_temp.lbl l WHERE l.label = $1
$$;

SELECT moverz_batch.create_project('r06_user', 'duplicates') AS p \gset
SELECT moverz_batch.create_project('r06_user', 'another project') AS p2 \gset
SELECT moverz_batch.create_project('r06_other', 'another user') AS p3 \gset
-- Nothing else is waiting in this database (claim_photos takes any user's).
SELECT count(*) AS pending_elsewhere FROM moverz_batch.photos WHERE status IN ('PENDING', 'PROCESSING');

------------------------------------------------------------------------
-- 1. Within one batch: the later copies of a photo are duplicates of the
--    first; the same filename with another URL, or the same URL with
--    another filename, is another photo.
SELECT pg_temp.mk(:'p', 'w1', jsonb_build_array(
    pg_temp.a('a.jpg', 'a.jpg', 'living_room'), pg_temp.a('b.jpg', 'b.jpg'), pg_temp.a('a.jpg', 'a.jpg'),
    pg_temp.a('c.jpg', 'c.jpg', 'bedroom'), pg_temp.a('a.jpg', 'a.jpg', 'kitchen'), pg_temp.a('b.jpg', 'b.jpg'),
    pg_temp.a('a.jpg', 'other/a.jpg'), pg_temp.a('a2.jpg', 'a.jpg'))) AS w1 \gset
SELECT * FROM pg_temp.ph('w1');
SELECT pg_temp.st('w1') AS created;
SELECT count(DISTINCT checksum) AS checksums, count(*) FILTER (WHERE checksum = md5('a.jpg:https://cdn.example/a.jpg')) AS copies_of_a
  FROM moverz_batch.photos WHERE batch_id = :'w1';
-- batch_progress: duplicateOf is the original's id, on the copies only.
SELECT e ->> 'filename' AS filename, e ->> 'status' AS status, e ->> 'roomType' AS room_type,
       pg_temp.name((e ->> 'duplicateOf')::uuid) AS duplicate_of,
       (e ->> 'duplicateOf')::uuid IS NOT DISTINCT FROM (SELECT duplicate_of FROM moverz_batch.photos WHERE id = (e ->> 'id')::uuid) AS same_as_row
  FROM jsonb_array_elements(moverz_batch.batch_progress(:'w1') -> 'photos') WITH ORDINALITY AS x(e, o) ORDER BY o;
SELECT array(SELECT jsonb_object_keys(moverz_batch.batch_progress(:'w1') -> 'photos' -> 2) ORDER BY 1) AS duplicate_keys,
       array(SELECT jsonb_object_keys(moverz_batch.batch_progress(:'w1') -> 'photos' -> 1) ORDER BY 1) AS original_keys;

-- The copies are never claimed, however many photos are asked for.
SELECT * FROM pg_temp.claim(601);
SELECT * FROM pg_temp.claim(601);
SELECT * FROM pg_temp.ph('w1');
SELECT pg_temp.st('w1') AS claimed;

-- a analysed: its copies take its analysis at once (and its room when
-- they have none); b to be retried: its copy keeps waiting.
SELECT pg_temp.complete(601,
    pg_temp.r('w1', 0, 200, '{"room_type": "kitchen", "items": [{"label": "sofa", "quantity": 1, "volume_m3": 2.5}, {"label": "lamp", "quantity": 2, "volume_m3": 0.1}]}'),
    pg_temp.r('w1', 1, 503, NULL)) AS written;
SELECT * FROM pg_temp.ph('w1');
SELECT pg_temp.st('w1') AS a_done_b_retrying;
SELECT (SELECT analysis FROM moverz_batch.photos WHERE id = pg_temp.pid('w1', 2))
     = (SELECT analysis FROM moverz_batch.photos WHERE id = pg_temp.pid('w1', 0)) AS same_analysis,
       (SELECT finished_at IS NOT NULL FROM moverz_batch.photos WHERE id = pg_temp.pid('w1', 4)) AS copy_finished;
-- b's second attempt fails for good: its copy fails with the same error.
UPDATE moverz_batch.photos SET next_attempt_at = now() WHERE id = pg_temp.pid('w1', 1);
SELECT * FROM pg_temp.claim(601);
SELECT pg_temp.complete(601, pg_temp.r('w1', 1, 400, '{"error": {"code": "AI_ERROR", "message": "unreadable image", "retryable": false}}')) AS written;
SELECT * FROM pg_temp.ph('w1') WHERE pos IN (1, 5);
SELECT pg_temp.st('w1') AS b_failed;
SELECT pg_temp.complete(601,
    pg_temp.r('w1', 3, 200, '{"items": [{"label": "bed", "quantity": 1, "volume_m3": 2}]}'),
    pg_temp.r('w1', 6, 200, '{"items": [{"label": "box", "quantity": 3, "volume_m3": 0.1}]}'),
    pg_temp.r('w1', 7, 200, '{"items": []}')) AS written;
SELECT pg_temp.st('w1') AS partial;
-- One call per original: the copies made none.
SELECT count(*) AS ai_calls, count(DISTINCT meta ->> 'photoId') AS photos_called,
       count(*) FILTER (WHERE (meta ->> 'photoId')::uuid IN (SELECT duplicate_of FROM moverz_batch.photos WHERE batch_id = :'w1')) AS calls_for_originals_with_copies
  FROM moverz_batch.ai_metrics WHERE meta ->> 'batchId' = :'w1';
-- The inventory counts each item once: the sofa of a, not three sofas.
SELECT pg_temp.run_job('w1') AS run;
SELECT pg_temp.summary('w1') AS inventory;
SELECT pg_temp.name(photo_id) AS photo, label, quantity FROM moverz_batch.inventory_items WHERE batch_id = :'w1' ORDER BY 1, label;

-- retry_photo of the failed original re-opens it and its copy (2 photos),
-- in a new generation; only the original is claimed; its success
-- finishes both.
SELECT moverz_batch.retry_photo(pg_temp.pid('w1', 1)) AS retried;
SELECT * FROM pg_temp.ph('w1') WHERE pos IN (1, 5);
SELECT pg_temp.st('w1') AS reopened, (SELECT inventory_generation FROM moverz_batch.batches WHERE id = :'w1') AS generation;
SELECT * FROM pg_temp.claim(602);
SELECT pg_temp.complete(602, pg_temp.r('w1', 1, 200, '{"room_type": "office", "items": [{"label": "desk", "quantity": 1, "volume_m3": 1}]}')) AS written;
SELECT * FROM pg_temp.ph('w1') WHERE pos IN (1, 5);
SELECT pg_temp.st('w1') AS completed;
SELECT pg_temp.run_job('w1') AS run;
SELECT pg_temp.summary('w1') -> 'totalItems' AS total_items, pg_temp.summary('w1') -> 'totalVolume' AS total_volume;

-- retry_batch re-opens failed copies with their original, too.
SELECT pg_temp.mk(:'p', 'w2', jsonb_build_array(pg_temp.a('e.jpg', 'e.jpg'), pg_temp.a('e.jpg', 'e.jpg'), pg_temp.a('e.jpg', 'e.jpg'))) AS w2 \gset
SELECT * FROM pg_temp.claim(603);
SELECT pg_temp.complete(603, pg_temp.r('w2', 0, 404, NULL)) AS written;
SELECT * FROM pg_temp.ph('w2');
SELECT pg_temp.st('w2') AS failed;
SELECT moverz_batch.retry_batch(:'w2') AS retried;
SELECT pg_temp.st('w2') AS reopened;
SELECT * FROM pg_temp.claim(603);
SELECT pg_temp.complete(603, pg_temp.r('w2', 0, 200, '{"items": [{"label": "chair", "quantity": 4, "volume_m3": 0.2}]}')) AS written;
SELECT * FROM pg_temp.ph('w2');
SELECT pg_temp.st('w2') AS completed;

------------------------------------------------------------------------
-- 2. Across batches: a copy of a photo DONE in the project is inserted
--    DONE, with its analysis; its own roomType is kept.
SELECT pg_temp.mk(:'p', 'x1', jsonb_build_array(pg_temp.a('a.jpg', 'a.jpg', 'garage'), pg_temp.a('b.jpg', 'b.jpg'),
                                               pg_temp.a('f.jpg', 'f.jpg'))) AS x1 \gset
SELECT * FROM pg_temp.ph('x1');
SELECT pg_temp.st('x1') AS created, moverz_batch.batch_progress(:'x1') -> 'progress' AS progress;
SELECT (SELECT analysis FROM moverz_batch.photos WHERE id = pg_temp.pid('x1', 1))
     = (SELECT analysis FROM moverz_batch.photos WHERE id = pg_temp.pid('w1', 1)) AS analysis_of_retried_original;
-- A batch made only of copies of DONE photos is COMPLETED as it is
-- created, with its one inventory job, empty: its items are counted where
-- they were first analysed.
SELECT pg_temp.mk(:'p', 'x2', jsonb_build_array(pg_temp.a('c.jpg', 'c.jpg'), pg_temp.a('a.jpg', 'a.jpg'), pg_temp.a('a.jpg', 'a.jpg'))) AS x2 \gset
SELECT * FROM pg_temp.ph('x2');
SELECT pg_temp.st('x2') AS created, (SELECT completed_at IS NOT NULL FROM moverz_batch.batches WHERE id = :'x2') AS completed_at_set;
SELECT moverz_batch.batch_progress(:'x2') - 'batchId' - 'photos' AS progress;
SELECT pg_temp.run_job('x2') AS run;
SELECT pg_temp.summary('x2') AS inventory;
-- A copy of a copy points at the original.
SELECT pg_temp.mk(:'p', 'x3', jsonb_build_array(pg_temp.a('a.jpg', 'a.jpg'))) AS x3 \gset
SELECT * FROM pg_temp.ph('x3');
-- A photo still PENDING in another batch of the project (f in x1) makes a
-- duplicate that waits for it (since 0.5.0); not duplicates: the same photo
-- in another project of the same user, or of another user.
SELECT pg_temp.mk(:'p', 'x4', jsonb_build_array(pg_temp.a('f.jpg', 'f.jpg'), pg_temp.a('c.jpg', 'c.jpg'))) AS x4 \gset
SELECT * FROM pg_temp.ph('x4');
SELECT pg_temp.mk(:'p2', 'y1', jsonb_build_array(pg_temp.a('a.jpg', 'a.jpg'))) AS y1 \gset
SELECT * FROM pg_temp.ph('y1');
INSERT INTO pg_temp.lbl SELECT moverz_batch.create_batch(:'p3', 'r06_other', jsonb_build_array(pg_temp.a('a.jpg', 'a.jpg'))), 'z1';
SELECT * FROM pg_temp.ph('z1');
-- Only the originals are claimed.
SELECT * FROM pg_temp.claim(604);
SELECT pg_temp.complete(604,
    pg_temp.r('x1', 2, 200, '{"items": [{"label": "fridge", "quantity": 1, "volume_m3": 1.2}]}'),
    pg_temp.r('y1', 0, 200, '{"items": [{"label": "sofa", "quantity": 1, "volume_m3": 2.5}]}'),
    pg_temp.r('z1', 0, 200, '{"items": [{"label": "sofa", "quantity": 1, "volume_m3": 2.5}]}')) AS written;
SELECT label, pg_temp.st(label) AS status FROM pg_temp.lbl WHERE label IN ('x1', 'x3', 'x4', 'y1', 'z1') ORDER BY label;

-- The project's inventory counts every analysed item once: w1's (a: sofa
-- + 2 lamps, b: desk, c: bed, a at another URL: 3 boxes), w2's 4 chairs,
-- and one fridge: f was submitted again in x4 while still PENDING in x1, so
-- x4's waited for x1's analysis and took it (since 0.5.0; before, both were
-- analysed and the fridge counted twice).
SELECT moverz_batch.project_inventory(:'p') AS project_inventory;
SELECT count(*) AS duplicates, count(*) FILTER (WHERE status = 'DONE') AS done_duplicates,
       sum(jsonb_array_length(analysis -> 'items')) AS items_not_counted
  FROM moverz_batch.photos WHERE project_id = :'p' AND duplicate_of IS NOT NULL;
SELECT moverz_batch.project_inventory(:'p2') -> 'totalItems' AS p2_items, moverz_batch.project_inventory(:'p3') -> 'totalItems' AS p3_items;

------------------------------------------------------------------------
-- 3. A cancelled batch: its waiting copies are cancelled with their
--    original, and a late answer for the original changes nothing.
SELECT pg_temp.mk(:'p', 'c1', jsonb_build_array(pg_temp.a('g.jpg', 'g.jpg'), pg_temp.a('g.jpg', 'g.jpg'))) AS c1 \gset
SELECT * FROM pg_temp.claim(605);
SELECT moverz_batch.cancel_batch(:'c1') AS cancelled;
SELECT pg_temp.complete(605, pg_temp.r('c1', 0, 200, '{"items": [{"label": "piano", "quantity": 1, "volume_m3": 3}]}')) AS late_answer;
SELECT * FROM pg_temp.ph('c1');
SELECT pg_temp.st('c1') AS cancelled, (SELECT count(*) FROM moverz_batch.ai_metrics WHERE meta ->> 'batchId' = :'c1') AS late_answer_logged;
SELECT moverz_batch.batch_progress(:'c1') - 'batchId' - 'photos' AS progress;
-- A cancelled photo is no original for later batches.
SELECT pg_temp.mk(:'p', 'c2', jsonb_build_array(pg_temp.a('g.jpg', 'g.jpg'))) AS c2 \gset
SELECT * FROM pg_temp.ph('c2');
SELECT moverz_batch.cancel_batch(:'c2') AS cancelled;

-- Counters equal a recount everywhere; every terminal batch has its job.
SELECT count(*) AS batches, count(*) FILTER (WHERE pg_temp.st(label) LIKE '%MISMATCH') AS mismatches,
       count(*) FILTER (WHERE moverz_batch_internal.is_terminal(b.status)
                          AND NOT EXISTS (SELECT 1 FROM moverz_batch.inventory_sync_jobs j
                                           WHERE j.batch_id = b.id AND j.generation = b.inventory_generation)) AS terminal_without_job
  FROM pg_temp.lbl l JOIN moverz_batch.batches b ON b.id = l.id;

DELETE FROM moverz_batch.ai_metrics WHERE meta ->> 'userId' IN ('r06_user', 'r06_other');
DELETE FROM moverz_batch.projects WHERE user_id IN ('r06_user', 'r06_other');
SELECT count(*) AS leftover_photos FROM moverz_batch.photos WHERE user_id IN ('r06_user', 'r06_other');
