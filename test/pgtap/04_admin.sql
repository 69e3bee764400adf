-- 04_admin: the contract of the issue #5 additions (cancel_batch,
-- retry_photo, duplicates, the administration views and functions, their
-- privileges), and the progress notifications (channel
-- moverz_batch_progress) as a second session (dblink) listening to them
-- receives them.
--
-- Not wrapped in one transaction: notifications are sent at commit.
-- Everything is created under user "tap_admin" and deleted at the end (and
-- at the start, after an interrupted run).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(45);

DELETE FROM moverz_batch.projects WHERE user_id = 'tap_admin';

------------------------------------------------------------------------
-- Types, columns, functions.
SELECT enum_has_labels('moverz_batch', 'batch_status', ARRAY['QUEUED', 'PROCESSING', 'PARTIAL', 'COMPLETED', 'FAILED', 'CANCELLED'],
                       'batch_status has CANCELLED');
SELECT enum_has_labels('moverz_batch', 'photo_status', ARRAY['PENDING', 'PROCESSING', 'DONE', 'ERROR', 'CANCELLED'],
                       'photo_status has CANCELLED');
SELECT has_column('moverz_batch', 'batches', 'count_cancelled', 'batches.count_cancelled');
SELECT has_column('moverz_batch', 'batches', 'cancelled_at', 'batches.cancelled_at');
SELECT has_column('moverz_batch', 'photos', 'duplicate_of', 'photos.duplicate_of');
SELECT function_returns('moverz_batch', 'cancel_batch', ARRAY['uuid'], 'integer', 'cancel_batch(uuid) returns int');
SELECT function_returns('moverz_batch', 'retry_photo', ARRAY['uuid'], 'integer', 'retry_photo(uuid) returns int');
SELECT function_returns('moverz_batch', 'pause_processing', '{}'::name[], 'boolean', 'pause_processing() returns boolean');
SELECT function_returns('moverz_batch', 'resume_processing', '{}'::name[], 'boolean', 'resume_processing() returns boolean');
SELECT is(pg_get_function_arguments('moverz_batch.purge(interval)'::regprocedure),
          'older_than interval DEFAULT ''30 days''::interval, OUT batches_deleted bigint, OUT metrics_deleted bigint',
          'purge(older_than interval default 30 days) -> (batches_deleted, metrics_deleted)');
SELECT is(pg_get_function_arguments('moverz_batch_internal.claim_photos(int, bigint, int, int, int, bigint, boolean)'::regprocedure),
          'p_worker integer, p_token bigint, p_limit integer, p_lease_ms integer, p_per_user integer DEFAULT 0, '
          'p_byte_budget bigint DEFAULT NULL::bigint, p_first_anyway boolean DEFAULT true',
          'claim_photos: per_user defaults to 0, no byte budget');

-- The views and their columns.
SELECT has_view('moverz_batch', v, 'view ' || v)
  FROM unnest(ARRAY['worker_status', 'queue_overview', 'batches_overview', 'failed_photos', 'batch_ai_metrics']) AS v ORDER BY v;
SELECT columns_are('moverz_batch', 'worker_status',
                   ARRAY['kind', 'worker', 'pid', 'inflight', 'done', 'failed', 'last_error', 'last_error_at', 'since'], 'worker_status columns');
SELECT columns_are('moverz_batch', 'queue_overview',
                   ARRAY['pending', 'waiting_retry', 'in_flight', 'done', 'failed', 'cancelled', 'oldest_pending_age', 'paused',
                         'ai_unreachable_since', 'ai_probes'],
                   'queue_overview columns');
SELECT columns_are('moverz_batch', 'batches_overview',
                   ARRAY['batch_id', 'user_id', 'project_id', 'status', 'priority', 'queued', 'processing', 'completed', 'failed',
                         'cancelled', 'total', 'progress', 'total_items', 'total_volume', 'created_at', 'completed_at', 'duration'],
                   'batches_overview columns');
SELECT columns_are('moverz_batch', 'failed_photos',
                   ARRAY['photo_id', 'batch_id', 'user_id', 'filename', 'url', 'error_code', 'error_message', 'attempts', 'finished_at'],
                   'failed_photos columns');
SELECT columns_are('moverz_batch', 'batch_ai_metrics',
                   ARRAY['batch_id', 'calls', 'avg_latency_ms', 'p95_latency_ms', 'success_count', 'total_cost_usd'],
                   'batch_ai_metrics columns');
-- worker_status: none without background workers; at most one row per
-- photo worker plus the inventory worker and the progress publisher
-- otherwise.
SELECT ok(CASE WHEN current_setting('moverz_batch.workers')::int = 0 THEN count(*) = 0
               ELSE count(*) <= current_setting('moverz_batch.workers')::int + 2
                    AND coalesce(bool_and(kind IN ('photo', 'inventory', 'publisher') AND pid > 0
                                          AND since IS NOT NULL), true) END,
          'worker_status: one row per running worker (none with moverz_batch.workers = 0)')
  FROM moverz_batch.worker_status;

-- Privileges: trusted applications (moverz_app) cancel and retry; the
-- administration (pause, resume, purge, the views, the workers' shared
-- memory) is the owner's.
SELECT ok(has_function_privilege('moverz_app', 'moverz_batch.cancel_batch(uuid)', 'EXECUTE')
          AND has_function_privilege('moverz_app', 'moverz_batch.retry_photo(uuid)', 'EXECUTE'),
          'moverz_app may cancel_batch and retry_photo');
SELECT is(array(SELECT f || ' by ' || r
                  FROM unnest(ARRAY['moverz_batch.cancel_batch(uuid)', 'moverz_batch.retry_photo(uuid)']) AS f,
                       unnest(ARRAY['public', 'moverz_user', 'moverz_anon']) AS r
                 WHERE has_function_privilege(r, f, 'EXECUTE')),
          '{}'::text[], 'cancel_batch, retry_photo: not PUBLIC, not the HTTP roles');
SELECT is(array(SELECT f || ' by ' || r
                  FROM unnest(ARRAY['moverz_batch.pause_processing()', 'moverz_batch.resume_processing()',
                                    'moverz_batch.purge(interval)', 'moverz_batch_internal.worker_status_raw()']) AS f,
                       unnest(ARRAY['public', 'moverz_app', 'moverz_user', 'moverz_anon']) AS r
                 WHERE has_function_privilege(r, f, 'EXECUTE')),
          '{}'::text[], 'pause, resume, purge, worker_status_raw: the owner''s only');
SELECT is(array(SELECT v || ' by ' || r
                  FROM unnest(ARRAY['worker_status', 'queue_overview', 'batches_overview', 'failed_photos', 'batch_ai_metrics', 'control']) AS v,
                       unnest(ARRAY['public', 'moverz_app', 'moverz_user', 'moverz_anon']) AS r
                 WHERE has_table_privilege(r, 'moverz_batch.' || v, 'SELECT')),
          '{}'::text[], 'the administration views and the control table: the owner''s only');

------------------------------------------------------------------------
-- Progress notifications.  Session "l" listens; drain() returns (as a JSON
-- array) what it received since the last call.  A query on "l" after the
-- sender's commit is enough for every notification of that commit to have
-- arrived: the listener sends them before it answers.
SELECT format('dbname=%s host=%s port=%s user=%s application_name=tap_admin', current_database(),
              split_part(current_setting('unix_socket_directories'), ',', 1),
              current_setting('port'), current_user) AS conn \gset
SELECT dblink_connect('l', :'conn') \g /dev/null
SELECT dblink_exec('l', 'LISTEN moverz_batch_progress') \g /dev/null
CREATE FUNCTION pg_temp.drain() RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v jsonb;
BEGIN
    PERFORM * FROM dblink('l', 'SELECT 1') AS t(x int);
    SELECT coalesce(jsonb_agg(n.extra::jsonb ORDER BY n.ord), '[]') INTO v
      FROM dblink_get_notify('l') WITH ORDINALITY AS n(notify_name, be_pid, extra, ord)
     WHERE n.notify_name = 'moverz_batch_progress';
    RETURN v;
END
$$;
-- mk(n): a committed batch of n photos of tap_admin.
CREATE FUNCTION pg_temp.mk(n int) RETURNS uuid LANGUAGE sql AS $$
SELECT moverz_batch.create_batch(c.id, 'tap_admin',
    (SELECT jsonb_agg(jsonb_build_object('filename', format('f%s.jpg', i), 'url', format('https://x.example/%s/f%s.jpg', k.bn, i)) ORDER BY i)
       FROM generate_series(0, n - 1) AS i))
  FROM (SELECT id FROM moverz_batch.projects WHERE user_id = 'tap_admin') AS c,
       LATERAL (SELECT count(*) AS bn FROM moverz_batch.batches b WHERE b.project_id = c.id) AS k
$$;
-- without_id(notes): what the notifications announce: the state of each
-- batch named (progress_payload, read now: nothing changed since), without
-- its batchId; NULL for a notification that carries more than the batch id
-- and its sequence number (the payload carries no customer data).
CREATE FUNCTION pg_temp.without_id(notes jsonb) RETURNS jsonb LANGUAGE sql AS $$
SELECT coalesce(jsonb_agg(CASE WHEN (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(e) AS k) = '{batchId,txid}'
                                    AND jsonb_typeof(e -> 'txid') = 'number'
                               THEN moverz_batch.progress_payload((e ->> 'batchId')::uuid)::jsonb - 'batchId' END
                          ORDER BY o), '[]')
  FROM jsonb_array_elements(notes) WITH ORDINALITY AS x(e, o)
$$;

SELECT moverz_batch.create_project('tap_admin', 'notifications') IS NOT NULL AS created \g /dev/null
SELECT is(pg_temp.drain(), '[]'::jsonb, 'notify: nothing for a new project');
-- create_batch: one notification, the new batch's state.
SELECT pg_temp.mk(3) AS n1 \gset
SELECT pg_temp.drain() AS notes \gset
SELECT is(jsonb_array_length(:'notes'), 1, 'notify: create_batch sends one notification');
SELECT is((:'notes'::jsonb -> 0 ->> 'batchId')::uuid, :'n1'::uuid, 'notify: it names the batch');
SELECT is(pg_temp.without_id(:'notes'),
          '[{"status": "QUEUED", "progress": 0, "counts": {"queued": 3, "processing": 0, "completed": 0, "failed": 0, "total": 3}, "inventoryReady": false}]',
          'notify: payload {batchId, txid}; progress_payload gives batch_state + inventoryReady');
-- Several statements on one batch in one transaction: one notification,
-- with the state at commit.
BEGIN;
UPDATE moverz_batch.photos SET status = 'PROCESSING' WHERE batch_id = :'n1';
UPDATE moverz_batch.photos SET status = 'DONE', analysis = '{"items": [{"label": "box", "quantity": 2, "volume_m3": 0.5}]}'
 WHERE batch_id = :'n1' AND position = 0;
UPDATE moverz_batch.photos SET status = 'ERROR', error_code = 'TIMEOUT' WHERE batch_id = :'n1' AND position = 1;
COMMIT;
SELECT is(pg_temp.without_id(pg_temp.drain()),
          '[{"status": "PROCESSING", "progress": 67, "counts": {"queued": 0, "processing": 1, "completed": 1, "failed": 1, "total": 3}, "inventoryReady": false}]',
          'notify: three statements, one notification, the state at commit');
-- A rolled-back transaction sends nothing; a write that changes no count
-- neither.
BEGIN;
UPDATE moverz_batch.photos SET status = 'DONE' WHERE batch_id = :'n1' AND position = 2;
ROLLBACK;
UPDATE moverz_batch.photos SET updated_at = now() WHERE batch_id = :'n1';
SELECT is(pg_temp.drain(), '[]'::jsonb, 'notify: nothing for a rollback nor for a write that changes no count');
-- One transaction over two batches: one notification each.
SELECT pg_temp.mk(1) AS n2 \gset
SELECT is(jsonb_array_length(pg_temp.drain()), 1, 'notify: second batch created');
UPDATE moverz_batch.photos SET status = 'DONE', analysis = '{"items": [{"label": "lamp", "quantity": 1, "volume_m3": 0.2}]}'
 WHERE (batch_id = :'n1' AND position = 2) OR batch_id = :'n2';
SELECT pg_temp.drain() AS notes \gset
SELECT is((SELECT array_agg((e ->> 'batchId')::uuid ORDER BY e ->> 'batchId') FROM jsonb_array_elements(:'notes') AS e),
          (SELECT array_agg(b ORDER BY b::text) FROM unnest(ARRAY[:'n1'::uuid, :'n2'::uuid]) AS b),
          'notify: a statement over two batches, one notification per batch');
SELECT is((SELECT jsonb_agg(pg_temp.without_id(jsonb_build_array(e)) -> 0 ORDER BY (e ->> 'batchId')::uuid = :'n2')
             FROM jsonb_array_elements(:'notes') AS e),
          '[{"status": "PARTIAL", "progress": 100, "counts": {"queued": 0, "processing": 0, "completed": 2, "failed": 1, "total": 3}, "inventoryReady": false},
            {"status": "COMPLETED", "progress": 100, "counts": {"queued": 0, "processing": 0, "completed": 1, "failed": 0, "total": 1}, "inventoryReady": false}]',
          'notify: both finished, inventories not ready yet');
-- The inventory becoming ready: one notification, inventoryReady true.
SELECT moverz_batch_internal.run_inventory_job(id) FROM moverz_batch.inventory_sync_jobs WHERE batch_id = :'n1' \g /dev/null
SELECT is(pg_temp.without_id(pg_temp.drain()),
          '[{"status": "PARTIAL", "progress": 100, "counts": {"queued": 0, "processing": 0, "completed": 2, "failed": 1, "total": 3}, "inventoryReady": true}]',
          'notify: inventory synced, inventoryReady');
-- retry_photo re-opens the batch: its inventory is no longer ready.
SELECT moverz_batch.retry_photo(id) FROM moverz_batch.photos WHERE batch_id = :'n1' AND position = 1 \g /dev/null
SELECT is(pg_temp.without_id(pg_temp.drain()),
          '[{"status": "PROCESSING", "progress": 67, "counts": {"queued": 1, "processing": 0, "completed": 2, "failed": 0, "total": 3}, "inventoryReady": false}]',
          'notify: retry_photo, the batch re-opened');
-- cancel_batch: one notification, CANCELLED with counts.cancelled.
SELECT moverz_batch.cancel_batch(:'n1') \g /dev/null
SELECT is(pg_temp.without_id(pg_temp.drain()),
          '[{"status": "CANCELLED", "progress": 100, "counts": {"queued": 0, "processing": 0, "completed": 2, "failed": 0, "cancelled": 1, "total": 3}, "inventoryReady": false}]',
          'notify: cancel_batch');
-- A batch made of duplicates of DONE photos is COMPLETED as it is
-- created: one notification, already finished.
SELECT moverz_batch.create_batch((SELECT id FROM moverz_batch.projects WHERE user_id = 'tap_admin'), 'tap_admin',
                                 (SELECT jsonb_agg(jsonb_build_object('filename', filename, 'url', url)) FROM moverz_batch.photos WHERE batch_id = :'n2'))
    AS n3 \gset
SELECT pg_temp.drain() AS notes \gset
SELECT is((:'notes'::jsonb -> 0 ->> 'batchId')::uuid, :'n3'::uuid, 'notify: a batch of duplicates: it names the batch');
SELECT is(pg_temp.without_id(:'notes'),
          jsonb_build_array(jsonb_build_object('status', 'COMPLETED', 'progress', 100, 'inventoryReady', false,
                            'counts', jsonb_build_object('queued', 0, 'processing', 0, 'completed', 1, 'failed', 0, 'total', 1))),
          'notify: a batch of duplicates, finished as it is created');
-- The worker write-back: one notification per batch and transaction too.
SELECT pg_temp.mk(2) AS n4 \gset
SELECT is(jsonb_array_length(pg_temp.drain()), 1, 'notify: fourth batch created');
SELECT count(*) AS claimed FROM moverz_batch_internal.claim_photos(9, 4242, 100, 60000) \gset
SELECT is(pg_temp.without_id(pg_temp.drain()),
          '[{"status": "PROCESSING", "progress": 0, "counts": {"queued": 0, "processing": 2, "completed": 0, "failed": 0, "total": 2}, "inventoryReady": false}]',
          'notify: claim_photos');
SELECT moverz_batch_internal.complete_photos(4242, (SELECT jsonb_agg(jsonb_build_object('id', id, 'batch_id', batch_id, 'user_id', user_id, 'attempt', attempts, 'http_status', 200,
                                                                               'latency_ms', 5, 'body', '{"items": []}'::jsonb))
                                             FROM moverz_batch.photos WHERE batch_id = :'n4'), 3, 1000, 'test-ai') \g /dev/null
SELECT is(pg_temp.without_id(pg_temp.drain()),
          '[{"status": "COMPLETED", "progress": 100, "counts": {"queued": 0, "processing": 0, "completed": 2, "failed": 0, "total": 2}, "inventoryReady": false}]',
          'notify: complete_photos writing back two results');
SELECT is(:claimed::int, 2, 'only this file''s photos were claimed');

SELECT dblink_disconnect('l') \g /dev/null
DELETE FROM moverz_batch.ai_metrics WHERE meta ->> 'batchId' = :'n4';
DELETE FROM moverz_batch.projects WHERE user_id = 'tap_admin';
SELECT is((SELECT count(*) FROM moverz_batch.batches WHERE user_id = 'tap_admin'), 0::bigint, 'cleaned up');
SELECT * FROM finish();
