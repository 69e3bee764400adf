-- 05_admin: cancel_batch, retry_photo, the administration views
-- (queue_overview, batches_overview, failed_photos, batch_ai_metrics,
-- worker_status), pause_processing / resume_processing and purge.
-- Photo statuses are driven by plain SQL and the worker functions are called
-- directly (no background workers here).
\i sql/include/setup.sql
\i sql/include/labels.sql
-- mk(project, label, n[, priority]): a batch of n photos, each with a URL
-- of its own (https://x.example/<label>/f<i>.jpg), remembered as label.
CREATE FUNCTION pg_temp.mk(p uuid, label text, n int, prio text DEFAULT 'NORMAL') RETURNS uuid LANGUAGE sql AS $$
INSERT INTO pg_temp.lbl
SELECT moverz_batch.create_batch(p, (SELECT user_id FROM moverz_batch.projects WHERE id = p),
           (SELECT jsonb_agg(jsonb_build_object('filename', format('f%s.jpg', i),
                                                'url', format('https://x.example/%s/f%s.jpg', label, i)) ORDER BY i)
              FROM generate_series(0, n - 1) AS i), prio), label
RETURNING id
$$;
-- pid(label, position): a photo's id.
CREATE FUNCTION pg_temp.pid(label text, pos int) RETURNS uuid LANGUAGE sql AS $$
SELECT p.id FROM moverz_batch.photos p JOIN pg_temp.lbl l ON l.id = p.batch_id WHERE l.label = $1 AND p.position = $2
$$;
-- bid(label): a batch's id.
CREATE FUNCTION pg_temp.bid(label text) RETURNS uuid LANGUAGE sql AS $$
SELECT id FROM pg_temp.lbl WHERE label = $1
$$;
-- set(label, status, positions...): photos of a batch to that status (DONE
-- ones with an analysis of one item "<label>#<position>"); returns how many.
CREATE FUNCTION pg_temp.set(label text, s text, VARIADIC pos int[]) RETURNS int LANGUAGE sql AS $$
WITH u AS (
UPDATE moverz_batch.photos p
   SET status = s::moverz_batch.photo_status,
       analysis = CASE WHEN s = 'DONE' THEN jsonb_build_object('items', jsonb_build_array(
                      jsonb_build_object('label', label || '#' || p.position, 'quantity', 1, 'volume_m3', 0.5))) END,
       error_code = CASE WHEN s = 'ERROR' THEN 'AI_ERROR' END,
       error_message = CASE WHEN s = 'ERROR' THEN 'HTTP 500' END,
       finished_at = CASE WHEN s IN ('DONE', 'ERROR') THEN now() END
 WHERE p.batch_id = pg_temp.bid(label) AND p.position = ANY (pos)
RETURNING 1)
SELECT count(*)::int FROM u
$$;
-- ph(label): the photos of a batch.
CREATE FUNCTION pg_temp.ph(label text)
RETURNS TABLE (pos int, status text, attempts int, error text, claimed boolean, finished boolean, items int) LANGUAGE sql AS $$
SELECT p.position, p.status::text, p.attempts, p.error_code || coalesce(': ' || p.error_message, ''),
       p.claimed_by IS NOT NULL OR p.claim_token IS NOT NULL OR p.lease_until IS NOT NULL,
       p.finished_at IS NOT NULL, jsonb_array_length(p.analysis -> 'items')
  FROM moverz_batch.photos p WHERE p.batch_id = pg_temp.bid(label) ORDER BY p.position
$$;
-- prog(label): batch_progress without its ids.
CREATE FUNCTION pg_temp.prog(label text) RETURNS jsonb LANGUAGE sql AS $$
SELECT (p - 'batchId') || jsonb_build_object('photos',
           (SELECT jsonb_agg(e - 'id' ORDER BY o) FROM jsonb_array_elements(p -> 'photos') WITH ORDINALITY AS x(e, o)))
  FROM moverz_batch.batch_progress(pg_temp.bid(label)) AS p
$$;
-- job(label): run the batch's pending inventory jobs, oldest generation
-- first: generation:outcome.
CREATE FUNCTION pg_temp.jobs_run(label text) RETURNS text LANGUAGE sql AS $$
SELECT string_agg(j.generation || ':' || moverz_batch_internal.run_inventory_job(j.id), ' ' ORDER BY j.generation)
  FROM moverz_batch.inventory_sync_jobs j WHERE j.batch_id = pg_temp.bid(label) AND j.status = 'PENDING'
$$;

SELECT moverz_batch.create_project('r05_user', 'admin tests') AS p \gset
SELECT moverz_batch.create_project('r05_other', 'another user') AS q \gset
-- Nothing else is in flight in this database (claim_photos, the views and
-- purge see every user's photos).
SELECT count(*) AS batches_elsewhere FROM moverz_batch.batches WHERE user_id NOT IN ('r05_user', 'r05_other');

------------------------------------------------------------------------
-- 1. cancel_batch: the PENDING and PROCESSING photos are CANCELLED, DONE
--    and ERROR ones kept; the batch is CANCELLED, terminal, with its one
--    inventory job (of the DONE photos).
SELECT pg_temp.mk(:'p', 'c1', 5) AS c1 \gset
SELECT pg_temp.set('c1', 'DONE', 0);
SELECT pg_temp.set('c1', 'ERROR', 1);
UPDATE moverz_batch.photos SET status = 'PROCESSING', attempts = 1, claimed_by = 0, claim_token = 501,
       lease_until = now() + interval '1 minute', started_at = now()
 WHERE id = pg_temp.pid('c1', 2);
SELECT pg_temp.st('c1') AS before_cancel;
SELECT moverz_batch.cancel_batch(:'c1') AS cancelled;
SELECT * FROM pg_temp.ph('c1');
SELECT pg_temp.st('c1') AS after_cancel;
SELECT cancelled_at IS NOT NULL AS cancelled_at_set, completed_at IS NOT NULL AS completed_at_set,
       moverz_batch_internal.is_terminal(status) AS terminal
  FROM moverz_batch.batches WHERE id = :'c1';
-- batch_progress: counts.cancelled, in the total; 100 %: nothing is left.
SELECT pg_temp.prog('c1') AS progress;
-- The answer to the request that was in flight arrives late: nothing
-- changes (the photo is no longer PROCESSING), but the call is logged.
SELECT * FROM moverz_batch_internal.complete_photos(501, jsonb_build_array(jsonb_build_object(
    'id', pg_temp.pid('c1', 2), 'batch_id', :'c1', 'user_id', 'r05_user', 'attempt', 1, 'http_status', 200, 'latency_ms', 40,
    'body', '{"items": [{"label": "piano", "quantity": 1, "volume_m3": 3}]}'::jsonb)), 3, 1000, 'test-ai');
SELECT * FROM pg_temp.ph('c1') WHERE pos = 2;
SELECT pg_temp.st('c1') AS after_late_answer;
SELECT count(*) AS calls, bool_and(success) AS success FROM moverz_batch.ai_metrics WHERE meta ->> 'batchId' = :'c1';
-- Its inventory: the DONE photo only.
SELECT pg_temp.jobs_run('c1') AS run;
SELECT pg_temp.prog('c1') -> 'inventorySummary' AS inventory;
-- A cancelled batch cannot be cancelled again nor retried, as a whole or
-- photo by photo; nothing changes.
SELECT pg_temp.try(format('SELECT moverz_batch.cancel_batch(%L)', :'c1')) AS cancel_again,
       pg_temp.try(format('SELECT moverz_batch.retry_batch(%L)', :'c1')) AS retry_batch,
       pg_temp.try(format('SELECT moverz_batch.retry_photo(%L)', pg_temp.pid('c1', 1))) AS retry_photo;
SELECT pg_temp.st('c1') AS unchanged;

-- A batch cancelled before anything ran: all its photos CANCELLED, an
-- empty inventory.
SELECT pg_temp.mk(:'p', 'c2', 3) AS c2 \gset
SELECT moverz_batch.cancel_batch(:'c2') AS cancelled;
SELECT pg_temp.st('c2') AS after_cancel;
SELECT pg_temp.jobs_run('c2') AS run;
SELECT pg_temp.prog('c2') AS progress;
-- A batch still running, all photos in flight.
SELECT pg_temp.mk(:'p', 'c3', 2) AS c3 \gset
UPDATE moverz_batch.photos SET status = 'PROCESSING' WHERE batch_id = :'c3';
SELECT moverz_batch.cancel_batch(:'c3') AS cancelled, pg_temp.st('c3') AS after_cancel;

-- Finished batches cannot be cancelled (55000), whatever their status;
-- unknown batches are P0002.
SELECT pg_temp.mk(:'p', 'f_completed', 2) AS f_completed \gset
SELECT pg_temp.set('f_completed', 'DONE', 0, 1);
SELECT pg_temp.mk(:'p', 'f_partial', 2) AS f_partial \gset
SELECT pg_temp.set('f_partial', 'DONE', 0), pg_temp.set('f_partial', 'ERROR', 1);
SELECT pg_temp.mk(:'p', 'f_failed', 2) AS f_failed \gset
SELECT pg_temp.set('f_failed', 'ERROR', 0, 1);
SELECT label, pg_temp.try(format('SELECT moverz_batch.cancel_batch(%L)', id)) AS cancel, pg_temp.st(label) AS status
  FROM pg_temp.lbl WHERE label LIKE 'f\_%' ORDER BY label;
SELECT pg_temp.try(format('SELECT moverz_batch.cancel_batch(%L)', gen_random_uuid())) AS unknown_batch,
       pg_temp.try('SELECT moverz_batch.cancel_batch(NULL)') AS null_batch;

------------------------------------------------------------------------
-- 2. retry_photo: one ERROR photo back to PENDING; the batch re-opened in
--    a new generation, exactly one job once it finishes again.
SELECT pg_temp.mk(:'p', 'r1', 4) AS r1 \gset
SELECT pg_temp.set('r1', 'DONE', 0, 3), pg_temp.set('r1', 'ERROR', 1, 2);
UPDATE moverz_batch.photos SET attempts = 3 WHERE batch_id = :'r1' AND status = 'ERROR';
SELECT pg_temp.st('r1') AS partial;
SELECT md5(string_agg(p::text, '|' ORDER BY position)) AS others FROM moverz_batch.photos p
 WHERE batch_id = :'r1' AND position <> 1 \gset
SELECT moverz_batch.retry_photo(pg_temp.pid('r1', 1)) AS retried;
SELECT * FROM pg_temp.ph('r1');
SELECT md5(string_agg(p::text, '|' ORDER BY position)) = :'others' AS other_photos_untouched FROM moverz_batch.photos p
 WHERE batch_id = :'r1' AND position <> 1;
SELECT pg_temp.st('r1') AS reopened, inventory_generation, completed_at IS NULL AS not_completed
  FROM moverz_batch.batches WHERE id = :'r1';
-- Not in ERROR (PENDING now, DONE): nothing to do, no new generation.
SELECT moverz_batch.retry_photo(pg_temp.pid('r1', 1)) AS pending_photo, moverz_batch.retry_photo(pg_temp.pid('r1', 0)) AS done_photo,
       (SELECT inventory_generation FROM moverz_batch.batches WHERE id = :'r1') AS generation;
-- The other ERROR photo too: a third generation; finishing makes one job,
-- for it; the older pending job is superseded.
SELECT moverz_batch.retry_photo(pg_temp.pid('r1', 2)) AS retried;
SELECT pg_temp.st('r1') AS reopened, (SELECT inventory_generation FROM moverz_batch.batches WHERE id = :'r1') AS generation;
SELECT pg_temp.set('r1', 'DONE', 1, 2);
SELECT pg_temp.st('r1') AS completed;
SELECT pg_temp.jobs_run('r1') AS run;
SELECT pg_temp.prog('r1') -> 'inventorySummary' -> 'totalItems' AS total_items;
SELECT pg_temp.try(format('SELECT moverz_batch.retry_photo(%L)', gen_random_uuid())) AS unknown_photo,
       pg_temp.try('SELECT moverz_batch.retry_photo(NULL)') AS null_photo;

DELETE FROM moverz_batch.ai_metrics WHERE meta ->> 'userId' IN ('r05_user', 'r05_other');
DELETE FROM moverz_batch.batches WHERE user_id IN ('r05_user', 'r05_other');
DELETE FROM pg_temp.lbl;

------------------------------------------------------------------------
-- 3. The views.
-- v1: 7 photos of r05_user, 10 minutes old: 2 due, 1 waiting for its
-- retry, 1 in flight, 1 DONE, 2 ERROR; v2 (HIGH, r05_other): 1 DONE, 1
-- due, then cancelled.
SELECT pg_temp.mk(:'p', 'v1', 7) AS v1 \gset
SELECT pg_temp.mk(:'q', 'v2', 2, 'HIGH') AS v2 \gset
UPDATE moverz_batch.photos SET created_at = created_at - interval '10 minutes' WHERE batch_id = :'v1';
UPDATE moverz_batch.batches SET created_at = created_at - interval '10 minutes' WHERE id = :'v1';
UPDATE moverz_batch.photos SET next_attempt_at = now() + interval '1 hour', attempts = 1, error_code = 'TIMEOUT'
 WHERE id = pg_temp.pid('v1', 2);
UPDATE moverz_batch.photos SET status = 'PROCESSING', attempts = 1 WHERE id = pg_temp.pid('v1', 3);
SELECT pg_temp.set('v1', 'DONE', 4), pg_temp.set('v1', 'ERROR', 5, 6);
UPDATE moverz_batch.photos SET finished_at = now() - interval '1 minute' WHERE id = pg_temp.pid('v1', 5);
UPDATE moverz_batch.photos SET status = 'DONE', analysis = '{"items": [{"label": "sofa", "quantity": 2, "volume_m3": 1.25}]}'
 WHERE id = pg_temp.pid('v2', 0);
SELECT pending, waiting_retry, in_flight, done, failed, cancelled,
       oldest_pending_age >= interval '10 minutes' AS oldest_is_v1, paused
  FROM moverz_batch.queue_overview;
SELECT moverz_batch.cancel_batch(:'v2') AS cancelled;
SELECT pg_temp.jobs_run('v2') AS run;
SELECT pending, waiting_retry, in_flight, done, failed, cancelled, paused FROM moverz_batch.queue_overview;
-- batches_overview: one row per batch, newest first, with the inventory
-- totals once synced.
SELECT l.label, o.user_id, o.project_id = b.project_id AS project_ok, o.status, o.priority, o.queued, o.processing,
       o.completed, o.failed, o.cancelled, o.total, o.progress, o.total_items, o.total_volume,
       o.created_at = b.created_at AS created_ok, o.completed_at IS NOT NULL AS completed, o.duration >= interval '0' AS has_duration
  FROM moverz_batch.batches_overview o JOIN pg_temp.lbl l ON l.id = o.batch_id JOIN moverz_batch.batches b ON b.id = o.batch_id
 ORDER BY l.label;
SELECT array_agg(l.label ORDER BY o.ord) AS newest_first
  FROM (SELECT batch_id, row_number() OVER () AS ord FROM moverz_batch.batches_overview) AS o JOIN pg_temp.lbl l ON l.id = o.batch_id;
-- failed_photos: the ERROR photos, most recently finished first.
SELECT l.label || '#' || p.position AS photo, f.user_id, f.filename, f.url, f.error_code, f.error_message, f.attempts
  FROM (SELECT *, row_number() OVER () AS ord FROM moverz_batch.failed_photos) AS f
  JOIN moverz_batch.photos p ON p.id = f.photo_id JOIN pg_temp.lbl l ON l.id = f.batch_id
 ORDER BY f.ord;
-- batch_ai_metrics: calls, average and p95 latency, successes, cost, per
-- batch; rows without a batchId are not a batch's.
INSERT INTO moverz_batch.ai_metrics (provider, operation, latency_ms, success, cost_usd, meta)
SELECT 'test-ai', 'analyze_photo', l, s, c, jsonb_build_object('batchId', b, 'userId', u)
  FROM (VALUES (:'v1'::uuid, 'r05_user', 100, true, 0.01), (:'v1', 'r05_user', 200, true, 0.02), (:'v1', 'r05_user', 300, false, NULL),
               (:'v1', 'r05_user', 400, true, 0.03), (:'v1', 'r05_user', 1000, true, 0.04),
               (:'v2', 'r05_other', 50, false, NULL)) AS t(b, u, l, s, c);
INSERT INTO moverz_batch.ai_metrics (provider, operation, latency_ms, success, meta)
VALUES ('test-ai', 'analyze_photo', 9999, true, '{"userId": "r05_user"}');
SELECT l.label, m.calls, m.avg_latency_ms, round(m.p95_latency_ms::numeric, 3) AS p95_latency_ms, m.success_count, m.total_cost_usd
  FROM moverz_batch.batch_ai_metrics m JOIN pg_temp.lbl l ON l.id = m.batch_id ORDER BY l.label;
SELECT count(*) AS batches_in_metrics FROM moverz_batch.batch_ai_metrics;
-- worker_status: the workers in shared memory.  Without background
-- workers (moverz_batch.workers = 0) there are none; otherwise at most one
-- row per photo worker, one for the inventory worker and one for the
-- progress publisher.
SELECT array_agg(attname::text || ' ' || format_type(atttypid, atttypmod) ORDER BY attnum) AS worker_status_columns
  FROM pg_attribute WHERE attrelid = 'moverz_batch.worker_status'::regclass AND attnum > 0;
SELECT CASE WHEN current_setting('moverz_batch.workers')::int = 0 THEN count(*) = 0
            ELSE count(*) <= current_setting('moverz_batch.workers')::int + 2
                 AND bool_and(kind IN ('photo', 'inventory', 'publisher') AND pid > 0 AND inflight >= 0) END AS worker_status_ok
  FROM moverz_batch.worker_status;

------------------------------------------------------------------------
-- 4. pause_processing / resume_processing: nothing is claimed while
--    paused; the switch is a row of moverz_batch.control.
SELECT moverz_batch.pause_processing() AS paused;
SELECT paused, paused_at IS NOT NULL AS paused_at_set FROM moverz_batch.control;
SELECT paused FROM moverz_batch.queue_overview;
SELECT count(*) AS claimed_while_paused FROM moverz_batch_internal.claim_photos(0, 502, 100, 60000);
SELECT pg_temp.st('v1') AS unchanged, (SELECT pending FROM moverz_batch.queue_overview) AS still_pending;
SELECT moverz_batch.pause_processing() AS paused_again;
SELECT moverz_batch.resume_processing() AS resumed;
SELECT paused, paused_at IS NULL AS paused_at_cleared FROM moverz_batch.control;
SELECT l.label || '#' || p.position AS photo, c.attempt
  FROM moverz_batch_internal.claim_photos(0, 502, 100, 60000) AS c JOIN moverz_batch.photos p ON p.id = c.id JOIN pg_temp.lbl l ON l.id = p.batch_id
 ORDER BY 1;
SELECT pg_temp.st('v1') AS claimed;
SELECT count(*) AS rows FROM moverz_batch.control;

DELETE FROM moverz_batch.ai_metrics WHERE meta ->> 'userId' IN ('r05_user', 'r05_other');
DELETE FROM moverz_batch.batches WHERE user_id IN ('r05_user', 'r05_other');
DELETE FROM pg_temp.lbl;

------------------------------------------------------------------------
-- 5. purge: the terminal batches finished more than older_than ago, with
--    their photos, jobs and inventories, and the older AI metrics.
SELECT pg_temp.mk(:'p', 'old_completed', 2), pg_temp.mk(:'p', 'old_failed', 1), pg_temp.mk(:'q', 'old_cancelled', 2),
       pg_temp.mk(:'p', 'partial_29d', 2), pg_temp.mk(:'p', 'recent', 1), pg_temp.mk(:'p', 'old_running', 2) \g /dev/null
SELECT pg_temp.set('old_completed', 'DONE', 0, 1) + pg_temp.set('old_failed', 'ERROR', 0)
       + pg_temp.set('partial_29d', 'DONE', 0) + pg_temp.set('partial_29d', 'ERROR', 1) + pg_temp.set('recent', 'DONE', 0)
       + pg_temp.set('old_running', 'DONE', 0) AS photos_set;
SELECT moverz_batch.cancel_batch(pg_temp.bid('old_cancelled')) AS cancelled;
SELECT pg_temp.jobs_run(label) FROM pg_temp.lbl ORDER BY label \g /dev/null
UPDATE moverz_batch.batches b SET created_at = now() - interval '60 days',
       completed_at = now() - CASE l.label WHEN 'partial_29d' THEN interval '29 days' WHEN 'old_failed' THEN interval '31 days'
                                           ELSE interval '40 days' END
  FROM pg_temp.lbl l WHERE l.id = b.id AND l.label <> 'recent' AND b.completed_at IS NOT NULL;
UPDATE moverz_batch.batches SET created_at = now() - interval '60 days' WHERE id = pg_temp.bid('old_running');
INSERT INTO moverz_batch.ai_metrics (provider, operation, latency_ms, success, meta, created_at)
VALUES ('test-ai', 'analyze_photo', 10, true, '{"userId": "r05_user", "n": "old"}', now() - interval '31 days'),
       ('test-ai', 'analyze_photo', 10, true, '{"userId": "r05_user", "n": "recent"}', now() - interval '29 days');
SELECT l.label, b.status, b.completed_at IS NOT NULL AS completed,
       (SELECT count(*) FROM moverz_batch.photos p WHERE p.batch_id = b.id) AS photos,
       (SELECT count(*) FROM moverz_batch.inventory_sync_jobs j WHERE j.batch_id = b.id) AS jobs,
       (SELECT count(*) FROM moverz_batch.inventory_summaries s WHERE s.batch_id = b.id) AS summaries,
       (SELECT count(*) FROM moverz_batch.inventory_items i WHERE i.batch_id = b.id) AS items
  FROM pg_temp.lbl l JOIN moverz_batch.batches b ON b.id = l.id ORDER BY l.label;
-- Default: 30 days.
SELECT * FROM moverz_batch.purge();
SELECT l.label FROM pg_temp.lbl l JOIN moverz_batch.batches b ON b.id = l.id ORDER BY l.label;
SELECT meta ->> 'n' AS metrics_left FROM moverz_batch.ai_metrics WHERE meta ->> 'userId' = 'r05_user';
SELECT (SELECT count(*) FROM moverz_batch.photos p WHERE p.batch_id IN (SELECT id FROM pg_temp.lbl) AND p.batch_id NOT IN (SELECT id FROM moverz_batch.batches)) AS orphan_photos,
       (SELECT count(*) FROM moverz_batch.inventory_sync_jobs WHERE batch_id IN (SELECT id FROM pg_temp.lbl)) AS jobs_left,
       (SELECT count(*) FROM moverz_batch.inventory_items WHERE batch_id IN (SELECT id FROM pg_temp.lbl)) AS items_left;
-- Nothing more to purge at 30 days; at 28 days, the PARTIAL one; "0" any
-- finished batch, never a running one.
SELECT * FROM moverz_batch.purge('30 days');
SELECT * FROM moverz_batch.purge('28 days');
SELECT * FROM moverz_batch.purge('0');
SELECT l.label, b.status FROM pg_temp.lbl l JOIN moverz_batch.batches b ON b.id = l.id ORDER BY l.label;
SELECT pg_temp.try('SELECT moverz_batch.purge(NULL)') AS null_interval,
       pg_temp.try($$SELECT moverz_batch.purge('-1 day')$$) AS negative_interval;
SELECT count(*) AS projects_kept FROM moverz_batch.projects WHERE user_id IN ('r05_user', 'r05_other');

DELETE FROM moverz_batch.ai_metrics WHERE meta ->> 'userId' IN ('r05_user', 'r05_other');
DELETE FROM moverz_batch.projects WHERE user_id IN ('r05_user', 'r05_other');
SELECT count(*) AS leftover_batches FROM moverz_batch.batches WHERE user_id IN ('r05_user', 'r05_other');
