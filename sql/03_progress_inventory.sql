-- 03_progress_inventory: batch_progress (shape, progress, paging), the
-- inventory sync (run_inventory_job, sync_inventory, project_inventory) and
-- retry_batch with its generations.
CREATE EXTENSION IF NOT EXISTS moverz_batch;
\set VERBOSITY terse
\set SHOW_CONTEXT never

-- prog(batch, limit, offset): batch_progress without the ids (checked
-- apart by ids_ok).
CREATE FUNCTION pg_temp.prog(b uuid, lim int DEFAULT NULL, off int DEFAULT 0) RETURNS jsonb LANGUAGE sql AS $$
SELECT (p - 'batchId') || jsonb_build_object('photos', coalesce(
           (SELECT jsonb_agg(e - 'id' ORDER BY o) FROM jsonb_array_elements(p -> 'photos') WITH ORDINALITY AS x(e, o)), '[]'))
  FROM moverz_batch.batch_progress(b, lim, off) AS p
$$;
-- ids_ok(batch, limit, offset): batchId and the page's photo ids are right.
CREATE FUNCTION pg_temp.ids_ok(b uuid, lim int DEFAULT NULL, off int DEFAULT 0) RETURNS boolean LANGUAGE sql AS $$
SELECT (p ->> 'batchId')::uuid = b
   AND coalesce((SELECT array_agg((e ->> 'id')::uuid ORDER BY o) FROM jsonb_array_elements(p -> 'photos') WITH ORDINALITY AS x(e, o)), '{}')
       = coalesce((SELECT array_agg(id ORDER BY position) FROM
                     (SELECT id, position FROM moverz_batch.photos WHERE batch_id = b ORDER BY position LIMIT lim OFFSET off) AS s), '{}')
  FROM moverz_batch.batch_progress(b, lim, off) AS p
$$;
-- done(batch, position, analysis): a photo analysed.
CREATE FUNCTION pg_temp.done(b uuid, pos int, a jsonb) RETURNS void LANGUAGE sql AS $$
UPDATE moverz_batch.photos SET status = 'DONE', analysis = a, finished_at = now() WHERE batch_id = b AND position = pos
$$;
-- job(batch, generation): the id of that inventory job.
CREATE FUNCTION pg_temp.job(b uuid, g int) RETURNS bigint LANGUAGE sql AS $$
SELECT id FROM moverz_batch.inventory_sync_jobs WHERE batch_id = b AND generation = g
$$;
-- jobs(batch): generation:status of its jobs.
CREATE FUNCTION pg_temp.jobs(b uuid) RETURNS text LANGUAGE sql AS $$
SELECT coalesce(string_agg(generation || ':' || status, ' ' ORDER BY generation), '(none)')
  FROM moverz_batch.inventory_sync_jobs WHERE batch_id = b
$$;

SELECT moverz_batch.create_project('r03_user', 'inventory tests') AS p \gset
SELECT moverz_batch.create_project('r03_user', 'other project') AS q \gset
-- Every photo of project p has a URL of its own: a photo with the same
-- filename and URL as a DONE one would be a duplicate (06_duplicates).

-- batch_progress is STABLE, and works in a read-only transaction.
SELECT provolatile FROM pg_proc WHERE oid = 'moverz_batch.batch_progress(uuid, int, int)'::regprocedure;

-- Batch X: 5 photos, submitted out of alphabetical order.
SELECT moverz_batch.create_batch(:'p', 'r03_user', '[
  {"filename": "c-kitchen.jpg", "url": "https://x.example/c.jpg", "roomType": "kitchen"},
  {"filename": "a-bed.jpg", "url": "https://x.example/a.jpg"},
  {"filename": "b-unknown.jpg", "url": "https://x.example/b.jpg", "roomType": null},
  {"filename": "e-error.jpg", "url": "https://x.example/e.jpg", "roomType": "bathroom"},
  {"filename": "d-empty.jpg", "url": "https://x.example/d.jpg", "roomType": "garage"}]') AS x \gset
BEGIN READ ONLY;
SELECT pg_temp.ids_ok(:'x') AS ids_ok, pg_temp.prog(:'x') AS queued;
COMMIT;
-- The exact key sets: no inventorySummary yet, no roomType/errorCode when null.
SELECT array(SELECT jsonb_object_keys(p) ORDER BY 1) AS top_keys,
       array(SELECT jsonb_object_keys(p -> 'counts') ORDER BY 1) AS count_keys,
       (SELECT jsonb_agg((SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(e) AS k) ORDER BY o)
          FROM jsonb_array_elements(p -> 'photos') WITH ORDINALITY AS x(e, o)) AS photo_keys
  FROM moverz_batch.batch_progress(:'x') AS p;

-- Progress as photos finish: only DONE and ERROR count as finished.
UPDATE moverz_batch.photos SET status = 'PROCESSING' WHERE batch_id = :'x' AND position IN (0, 1);
SELECT pg_temp.prog(:'x') -> 'progress' AS progress, pg_temp.prog(:'x') ->> 'status' AS status;
SELECT pg_temp.done(:'x', 0, '{"room_type": "living_room", "items": [{"label": "chair", "quantity": 2, "volume_m3": 0.25}, {"label": "table", "quantity": 1, "volume_m3": 1.5}]}');
SELECT pg_temp.prog(:'x') -> 'progress' AS progress, pg_temp.prog(:'x') ->> 'status' AS status;
SELECT pg_temp.done(:'x', 1, '{"room_type": "bedroom", "items": [{"label": "bed", "quantity": 1, "volume_m3": 2}, {"label": "lamp", "quantity": 0, "volume_m3": 0.1}]}');
SELECT pg_temp.done(:'x', 2, '{"room_type": "spaceship", "items": [{"label": "box", "quantity": 3, "volume_m3": 0.1}]}');
SELECT pg_temp.prog(:'x') -> 'progress' AS progress, pg_temp.prog(:'x') ->> 'status' AS status;
-- An ERROR photo, even with an analysis, contributes nothing.
UPDATE moverz_batch.photos SET status = 'ERROR', error_code = 'AI_ERROR', error_message = 'bad gateway',
       analysis = '{"items": [{"label": "piano", "quantity": 1, "volume_m3": 3}]}'
 WHERE batch_id = :'x' AND position = 3;
SELECT pg_temp.prog(:'x') -> 'progress' AS progress, pg_temp.prog(:'x') ->> 'status' AS status;
SELECT pg_temp.done(:'x', 4, '{"items": []}');
SELECT pg_temp.ids_ok(:'x') AS ids_ok, pg_temp.prog(:'x') AS partial;
SELECT pg_temp.jobs(:'x') AS jobs;

-- Paging: ordered as submitted; counts always cover the whole batch.
SELECT lim, off, pg_temp.ids_ok(:'x', lim, off) AS ids_ok,
       (SELECT array_agg(e ->> 'filename') FROM jsonb_array_elements(pg_temp.prog(:'x', lim, off) -> 'photos') AS e) AS filenames,
       pg_temp.prog(:'x', lim, off) -> 'counts' ->> 'total' AS total
  FROM (VALUES (2, 0), (2, 2), (2, 4), (2, 5), (2, 100), (0, 0), (NULL, 3), (NULL, 0), (1, 3)) AS t(lim, off);
SELECT jsonb_array_length(moverz_batch.batch_progress(:'x', photos_offset => 1) -> 'photos') AS from_offset_1,
       jsonb_array_length(moverz_batch.batch_progress(:'x', photos_limit => 3) -> 'photos') AS limit_3;

-- The inventory job of the batch: totals = sum of quantities and of
-- quantity x volume_m3, per room (the photo's room, else the AI's, else
-- "other"); the ERROR photo and the empty one add nothing.
SELECT moverz_batch_internal.run_inventory_job(pg_temp.job(:'x', 1)) AS run;
SELECT pg_temp.jobs(:'x') AS jobs;
SELECT attempts, finished_at IS NOT NULL AS finished, last_error FROM moverz_batch.inventory_sync_jobs WHERE batch_id = :'x';
SELECT pg_temp.prog(:'x') -> 'inventorySummary' AS inventory_summary;
SELECT generation, total_items, total_volume FROM moverz_batch.inventory_summaries WHERE batch_id = :'x';
SELECT (SELECT position FROM moverz_batch.photos ph WHERE ph.id = i.photo_id) AS position, item_no, room_type, label, quantity, unit_volume_m3
  FROM moverz_batch.inventory_items i WHERE batch_id = :'x' ORDER BY 1, 2;
-- A job runs once.
SELECT moverz_batch_internal.run_inventory_job(pg_temp.job(:'x', 1)) IS NULL AS second_run_is_noop,
       moverz_batch_internal.run_inventory_job(-1) IS NULL AS unknown_job_is_noop;
-- Re-running the sync replaces, never adds.
SELECT moverz_batch.sync_inventory(:'x') = (pg_temp.prog(:'x') -> 'inventorySummary') AS same_summary;
SELECT moverz_batch.sync_inventory(:'x') ->> 'totalItems' AS total_items_third_sync;
SELECT count(*) AS items, sum(quantity) AS quantity FROM moverz_batch.inventory_items WHERE batch_id = :'x';
SELECT count(*) AS summaries FROM moverz_batch.inventory_summaries WHERE batch_id = :'x';
-- ... and follows the photos' analyses.
UPDATE moverz_batch.photos SET analysis = jsonb_set(analysis, '{items,0,quantity}', '4') WHERE batch_id = :'x' AND position = 0;
SELECT moverz_batch.sync_inventory(:'x') -> 'rooms' -> 1 AS kitchen_resynced;
SELECT count(*) AS items, sum(quantity) AS quantity FROM moverz_batch.inventory_items WHERE batch_id = :'x';
UPDATE moverz_batch.photos SET analysis = jsonb_set(analysis, '{items,0,quantity}', '2') WHERE batch_id = :'x' AND position = 0;
SELECT moverz_batch.sync_inventory(:'x') ->> 'totalItems' AS total_items_restored;

-- Progress rounding: 1/3 and 2/3; 100 only when everything is finished.
SELECT moverz_batch.create_batch(:'p', 'r03_user', '[{"filename": "1.jpg", "url": "https://x.example/t3/1.jpg"},
  {"filename": "2.jpg", "url": "https://x.example/t3/2.jpg"}, {"filename": "3.jpg", "url": "https://x.example/t3/3.jpg"}]') AS t3 \gset
UPDATE moverz_batch.photos SET status = 'ERROR' WHERE batch_id = :'t3' AND position = 0;
SELECT pg_temp.prog(:'t3') -> 'progress' AS one_third;
UPDATE moverz_batch.photos SET status = 'DONE' WHERE batch_id = :'t3' AND position = 1;
SELECT pg_temp.prog(:'t3') -> 'progress' AS two_thirds;
SELECT moverz_batch.progress_percent(199, 200) AS p199_200, moverz_batch.progress_percent(1, 200) AS p1_200,
       moverz_batch.progress_percent(0, 0) AS p0_0, moverz_batch.progress_percent(5, 5) AS p5_5;

-- project_inventory: every DONE photo of the project, whatever its batch's
-- state; not the other project's.
SELECT moverz_batch.create_batch(:'p', 'r03_user', '[{"filename": "f.jpg", "url": "https://x.example/f.jpg", "roomType": "kitchen"},
  {"filename": "w.jpg", "url": "https://x.example/w.jpg", "roomType": "bedroom"}]') AS y \gset
SELECT pg_temp.done(:'y', 0, '{"items": [{"label": "fridge", "quantity": 1, "volume_m3": 1.2}]}');
SELECT pg_temp.done(:'y', 1, '{"items": [{"label": "wardrobe", "quantity": 2, "volume_m3": 1.5}]}');
SELECT moverz_batch.create_batch(:'p', 'r03_user', '[{"filename": "s.jpg", "url": "https://x.example/s.jpg"},
  {"filename": "later.jpg", "url": "https://x.example/later.jpg"}]') AS z \gset
SELECT pg_temp.done(:'z', 0, '{"room_type": "living_room", "items": [{"label": "sofa", "quantity": 1, "volume_m3": 2.5}, {"label": "cup", "quantity": 3, "volume_m3": 0.333}]}');
SELECT moverz_batch.create_batch(:'q', 'r03_user', '[{"filename": "o.jpg", "url": "https://x.example/o.jpg"}]') AS other \gset
SELECT pg_temp.done(:'other', 0, '{"room_type": "kitchen", "items": [{"label": "oven", "quantity": 1, "volume_m3": 0.5}]}');
SELECT moverz_batch.project_inventory(:'p') AS project_p;
SELECT moverz_batch.project_inventory(:'q') AS project_q;
SELECT moverz_batch.create_project('r03_user', 'empty') AS empty \gset
SELECT moverz_batch.project_inventory(:'empty') AS empty_project;

-- retry_batch: ERROR photos back to PENDING, DONE ones untouched, the batch
-- re-opened in a new generation; its old summary is no longer shown.
SELECT md5(string_agg(p::text, '|' ORDER BY position)) AS done_rows FROM moverz_batch.photos p
 WHERE batch_id = :'x' AND status = 'DONE' \gset
SELECT moverz_batch.retry_batch(:'x') AS retried;
SELECT position, status, attempts, error_code, error_message, finished_at IS NULL AS unfinished
  FROM moverz_batch.photos WHERE batch_id = :'x' AND position = 3;
SELECT md5(string_agg(p::text, '|' ORDER BY position)) = :'done_rows' AS done_rows_untouched FROM moverz_batch.photos p
 WHERE batch_id = :'x' AND status = 'DONE';
SELECT status, inventory_queued, inventory_generation, completed_at IS NULL AS reopened
  FROM moverz_batch.batches WHERE id = :'x';
SELECT pg_temp.prog(:'x') AS after_retry;
SELECT pg_temp.jobs(:'x') AS jobs;
-- Nothing to retry: 0, and no new generation.
SELECT moverz_batch.retry_batch(:'x') AS retried_again,
       (SELECT inventory_generation FROM moverz_batch.batches WHERE id = :'x') AS generation;
-- Finishing again enqueues exactly one new job, for the new generation.
SELECT pg_temp.done(:'x', 3, '{"items": [{"label": "piano", "quantity": 1, "volume_m3": 3}]}');
SELECT pg_temp.jobs(:'x') AS jobs;
SELECT moverz_batch_internal.run_inventory_job(pg_temp.job(:'x', 2)) AS run;
SELECT pg_temp.prog(:'x') - 'photos' AS completed_after_retry;
SELECT generation, total_items, total_volume FROM moverz_batch.inventory_summaries WHERE batch_id = :'x';

-- A stale job (of a generation retry_batch superseded) ends SUPERSEDED and
-- writes nothing.
SELECT moverz_batch.create_batch(:'p', 'r03_user', '[{"filename": "1.jpg", "url": "https://x.example/w/1.jpg"},
  {"filename": "2.jpg", "url": "https://x.example/w/2.jpg"}]') AS w \gset
SELECT pg_temp.done(:'w', 0, '{"items": [{"label": "desk", "quantity": 1, "volume_m3": 0.8}]}');
UPDATE moverz_batch.photos SET status = 'ERROR', error_code = 'TIMEOUT' WHERE batch_id = :'w' AND position = 1;
SELECT pg_temp.jobs(:'w') AS jobs;
SELECT moverz_batch.retry_batch(:'w') AS retried;
SELECT moverz_batch_internal.run_inventory_job(pg_temp.job(:'w', 1)) AS stale_run;
SELECT count(*) AS summaries FROM moverz_batch.inventory_summaries WHERE batch_id = :'w';
UPDATE moverz_batch.photos SET status = 'ERROR', error_code = 'RATE_LIMIT' WHERE batch_id = :'w' AND position = 1;
SELECT pg_temp.jobs(:'w') AS jobs;
-- Retried again before its job ran: that job is stale too.
SELECT moverz_batch.retry_batch(:'w') AS retried;
UPDATE moverz_batch.photos SET status = 'PROCESSING' WHERE batch_id = :'w' AND position = 1;
SELECT pg_temp.jobs(:'w') AS jobs, pg_temp.prog(:'w') ->> 'status' AS status;
SELECT pg_temp.done(:'w', 1, '{"items": [{"label": "chair", "quantity": 2, "volume_m3": 0.2}]}');
SELECT moverz_batch_internal.run_inventory_job(pg_temp.job(:'w', 2)) AS gen2_run, moverz_batch_internal.run_inventory_job(pg_temp.job(:'w', 3)) AS gen3_run;
SELECT pg_temp.jobs(:'w') AS jobs;
SELECT pg_temp.prog(:'w') -> 'inventorySummary' AS inventory_summary;

-- A FAILED batch: its inventory is empty; retried, all photos are PENDING
-- again (QUEUED).
SELECT moverz_batch.create_batch(:'p', 'r03_user', '[{"filename": "1.jpg", "url": "https://x.example/v/1.jpg"},
  {"filename": "2.jpg", "url": "https://x.example/v/2.jpg"}]') AS v \gset
UPDATE moverz_batch.photos SET status = 'ERROR', error_code = 'NETWORK_ERROR',
       analysis = '{"items": [{"label": "ghost", "quantity": 9, "volume_m3": 9}]}' WHERE batch_id = :'v';
SELECT moverz_batch_internal.run_inventory_job(pg_temp.job(:'v', 1)) AS run;
SELECT pg_temp.prog(:'v') AS failed;
SELECT moverz_batch.retry_batch(:'v') AS retried;
SELECT pg_temp.prog(:'v') AS retried_failed;
-- A batch still running can be retried too (its ERROR photos); a fresh
-- batch has nothing to retry.
SELECT moverz_batch.retry_batch(:'t3') AS retried_running;
SELECT status, count_queued, count_completed, count_failed, inventory_queued, inventory_generation
  FROM moverz_batch.batches WHERE id = :'t3';
SELECT moverz_batch.create_batch(:'p', 'r03_user', '[{"filename": "n.jpg", "url": "https://x.example/n.jpg"}]') AS u \gset
SELECT moverz_batch.retry_batch(:'u') AS fresh, (SELECT inventory_generation FROM moverz_batch.batches WHERE id = :'u') AS generation;

DELETE FROM moverz_batch.projects WHERE user_id = 'r03_user';
SELECT count(*) AS leftover_items FROM moverz_batch.inventory_items WHERE user_id = 'r03_user';
SELECT count(*) AS leftover_summaries FROM moverz_batch.inventory_summaries WHERE user_id = 'r03_user';
