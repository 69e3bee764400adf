-- 01_api: the SQL API's contract (signatures, volatility, triggers) and one
-- batch's whole life through it, in one rolled-back transaction.
BEGIN;
SELECT plan(51);
SET LOCAL client_min_messages = warning;

-- The API.
SELECT has_function('moverz_batch', 'create_project', ARRAY['text', 'text'], 'create_project(text, text)');
SELECT function_returns('moverz_batch', 'create_project', ARRAY['text', 'text'], 'uuid', 'create_project returns uuid');
SELECT has_function('moverz_batch', 'create_batch', ARRAY['uuid', 'text', 'jsonb', 'text', 'text'], 'create_batch(uuid, text, jsonb, text, text)');
SELECT function_returns('moverz_batch', 'create_batch', ARRAY['uuid', 'text', 'jsonb', 'text', 'text'], 'uuid', 'create_batch returns uuid');
SELECT is((SELECT pronargdefaults FROM pg_proc WHERE oid = 'moverz_batch.create_batch(uuid, text, jsonb, text, text)'::regprocedure),
          2::smallint, 'create_batch: priority and idempotency_key have defaults');
SELECT is(pg_get_function_arguments('moverz_batch.create_batch(uuid, text, jsonb, text, text)'::regprocedure),
          'project_id uuid, user_id text, assets jsonb, priority text DEFAULT ''NORMAL''::text, idempotency_key text DEFAULT NULL::text',
          'create_batch: argument names and defaults');
SELECT has_function('moverz_batch', 'batch_progress', ARRAY['uuid', 'integer', 'integer'], 'batch_progress(uuid, int, int)');
SELECT function_returns('moverz_batch', 'batch_progress', ARRAY['uuid', 'integer', 'integer'], 'jsonb', 'batch_progress returns jsonb');
SELECT volatility_is('moverz_batch', 'batch_progress', ARRAY['uuid', 'integer', 'integer'], 'stable', 'batch_progress is STABLE');
SELECT function_returns('moverz_batch', 'retry_batch', ARRAY['uuid'], 'integer', 'retry_batch(uuid) returns int');
SELECT function_returns('moverz_batch', 'sync_inventory', ARRAY['uuid'], 'jsonb', 'sync_inventory(uuid) returns jsonb');
SELECT function_returns('moverz_batch_internal', 'run_inventory_job', ARRAY['bigint'], 'text', 'run_inventory_job(bigint) returns text');
SELECT function_returns('moverz_batch', 'project_inventory', ARRAY['uuid'], 'jsonb', 'project_inventory(uuid) returns jsonb');
SELECT volatility_is('moverz_batch', 'project_inventory', ARRAY['uuid'], 'stable', 'project_inventory is STABLE');
SELECT has_trigger('moverz_batch', 'photos', 'photos_counts_insert', 'count trigger on INSERT');
SELECT has_trigger('moverz_batch', 'photos', 'photos_counts_update', 'count trigger on UPDATE');
SELECT has_trigger('moverz_batch', 'photos', 'photos_counts_delete', 'count trigger on DELETE');
SELECT col_is_unique('moverz_batch', 'inventory_sync_jobs', ARRAY['batch_id', 'generation'], 'one job per batch and generation');

-- One batch's life.
SELECT moverz_batch.create_project('tap_api', 'home') AS p \gset
SELECT moverz_batch.create_batch(:'p', 'tap_api', '[
    {"filename": "salon.jpg", "url": "https://x.example/salon.jpg", "roomType": "living_room"},
    {"filename": "cuisine.jpg", "url": "https://x.example/cuisine.jpg"},
    {"filename": "cave.jpg", "url": "https://x.example/cave.jpg", "roomType": "cellar"}]', idempotency_key => 'api-1') AS b \gset
SELECT results_eq(format('SELECT status::text, priority::text, count_queued, inventory_queued, inventory_generation FROM moverz_batch.batches WHERE id = %L', :'b'),
                  $$VALUES ('QUEUED', 'NORMAL', 3, false, 1)$$, 'created: QUEUED, NORMAL, 3 queued');
SELECT results_eq(format('SELECT position, status::text, checksum = md5(filename || '':'' || url) FROM moverz_batch.photos WHERE batch_id = %L ORDER BY position', :'b'),
                  $$VALUES (0, 'PENDING', true), (1, 'PENDING', true), (2, 'PENDING', true)$$, 'created: three PENDING photos with their checksums');
SELECT is(moverz_batch.create_batch(:'p', 'tap_api', '[
    {"filename": "salon.jpg", "url": "https://x.example/salon.jpg", "roomType": "living_room"},
    {"filename": "cuisine.jpg", "url": "https://x.example/cuisine.jpg"},
    {"filename": "cave.jpg", "url": "https://x.example/cave.jpg", "roomType": "cellar"}]', idempotency_key => 'api-1'), :'b'::uuid,
          'same key, same payload: same batch');
SELECT is((SELECT count(*) FROM moverz_batch.photos WHERE batch_id = :'b'), 3::bigint, 'same key, same payload: no new photo');
SELECT throws_ok(format($q$SELECT moverz_batch.create_batch(%L, 'tap_api', '[{"filename": "x.jpg", "url": "https://x.example/x.jpg"}]', 'NORMAL', 'api-1')$q$, :'p'),
                 '23505', 'idempotency_key ''api-1'' was already used with a different payload', 'same key, other payload: 23505');
SELECT is((SELECT count(*) FROM moverz_batch.batches WHERE user_id = 'tap_api'), 1::bigint, 'same key, other payload: nothing created');

SELECT is(moverz_batch.batch_progress(:'b') - 'photos' - 'batchId',
          '{"status": "QUEUED", "progress": 0, "counts": {"queued": 3, "processing": 0, "completed": 0, "failed": 0, "total": 3}}'::jsonb,
          'progress: queued');
SELECT is(moverz_batch.batch_progress(:'b') -> 'photos' -> 0,
          jsonb_build_object('id', (SELECT id FROM moverz_batch.photos WHERE batch_id = :'b' AND position = 0),
                             'filename', 'salon.jpg', 'status', 'PENDING', 'roomType', 'living_room'),
          'progress: first photo, exactly its keys');

UPDATE moverz_batch.photos SET status = 'PROCESSING' WHERE batch_id = :'b';
SELECT is(moverz_batch.batch_progress(:'b') ->> 'status', 'PROCESSING', 'all claimed: PROCESSING');
UPDATE moverz_batch.photos SET status = 'DONE',
       analysis = '{"room_type": "kitchen", "items": [{"label": "chair", "quantity": 4, "volume_m3": 0.3}, {"label": "table", "quantity": 1, "volume_m3": 1.2}]}'
 WHERE batch_id = :'b' AND position = 1;
UPDATE moverz_batch.photos SET status = 'DONE',
       analysis = '{"room_type": "bedroom", "items": [{"label": "sofa", "quantity": 1, "volume_m3": 2.5}]}'
 WHERE batch_id = :'b' AND position = 0;
SELECT is(moverz_batch.batch_progress(:'b') -> 'progress', '67'::jsonb, 'two of three finished: 67');
SELECT is((SELECT count(*) FROM moverz_batch.inventory_sync_jobs WHERE batch_id = :'b'), 0::bigint, 'not finished: no job');
UPDATE moverz_batch.photos SET status = 'ERROR', error_code = 'TIMEOUT', error_message = 'timed out'
 WHERE batch_id = :'b' AND position = 2;
SELECT is(moverz_batch.batch_progress(:'b') - 'photos' - 'batchId',
          '{"status": "PARTIAL", "progress": 100, "counts": {"queued": 0, "processing": 0, "completed": 2, "failed": 1, "total": 3}}'::jsonb,
          'one error: PARTIAL, 100');
SELECT is((moverz_batch.batch_progress(:'b') -> 'photos' -> 2) - 'id',
          '{"filename": "cave.jpg", "status": "ERROR", "roomType": "cellar", "errorCode": "TIMEOUT"}'::jsonb, 'the failed photo has its errorCode');
SELECT results_eq(format('SELECT generation, status FROM moverz_batch.inventory_sync_jobs WHERE batch_id = %L', :'b'),
                  $$VALUES (1, 'PENDING')$$, 'terminal: exactly one job, generation 1');
SELECT ok((SELECT inventory_queued FROM moverz_batch.batches WHERE id = :'b'), 'terminal: inventory_queued');
SELECT ok(NOT moverz_batch.batch_progress(:'b') ? 'inventorySummary', 'no inventorySummary before the sync');

SELECT is(moverz_batch_internal.run_inventory_job((SELECT id FROM moverz_batch.inventory_sync_jobs WHERE batch_id = :'b')), 'DONE', 'job run');
SELECT is(moverz_batch.batch_progress(:'b') -> 'inventorySummary',
          '{"totalItems": 6, "totalVolume": 4.9, "rooms": [{"roomType": "kitchen", "itemsCount": 5, "volume_m3": 2.4}, {"roomType": "living_room", "itemsCount": 1, "volume_m3": 2.5}]}'::jsonb,
          'inventorySummary: sums per room, the photo''s room first, ERROR photo excluded');
SELECT is(moverz_batch.sync_inventory(:'b'), moverz_batch.batch_progress(:'b') -> 'inventorySummary', 'sync again: same summary');
SELECT is((SELECT sum(quantity) FROM moverz_batch.inventory_items WHERE batch_id = :'b'), 6::bigint, 'sync again: items replaced, not added');
SELECT is(moverz_batch.project_inventory(:'p'), moverz_batch.batch_progress(:'b') -> 'inventorySummary', 'project inventory of a one-batch project');

SELECT is(moverz_batch.retry_batch(:'b'), 1, 'retry: one photo back');
SELECT results_eq(format('SELECT status::text, inventory_queued, inventory_generation FROM moverz_batch.batches WHERE id = %L', :'b'),
                  $$VALUES ('PROCESSING', false, 2)$$, 'retry: re-opened, generation 2');
SELECT results_eq(format('SELECT position, status::text, error_code::text FROM moverz_batch.photos WHERE batch_id = %L ORDER BY position', :'b'),
                  $$VALUES (0, 'DONE', NULL), (1, 'DONE', NULL), (2, 'PENDING', NULL)$$, 'retry: DONE photos untouched');
SELECT ok(NOT moverz_batch.batch_progress(:'b') ? 'inventorySummary', 'retry: the old generation''s summary is not shown');
UPDATE moverz_batch.photos SET status = 'DONE', analysis = '{"items": [{"label": "shelf", "quantity": 2, "volume_m3": 0.5}]}'
 WHERE batch_id = :'b' AND position = 2;
SELECT results_eq(format('SELECT generation, status FROM moverz_batch.inventory_sync_jobs WHERE batch_id = %L ORDER BY generation', :'b'),
                  $$VALUES (1, 'DONE'), (2, 'PENDING')$$, 'finished again: exactly one new job');
SELECT is(moverz_batch_internal.run_inventory_job((SELECT id FROM moverz_batch.inventory_sync_jobs WHERE batch_id = :'b' AND generation = 2)), 'DONE', 'new job run');
SELECT is(moverz_batch.batch_progress(:'b') -> 'inventorySummary' -> 'totalItems', '8'::jsonb, 'new summary includes the retried photo');

-- Errors write nothing.
SELECT throws_ok(format($q$SELECT moverz_batch.create_batch(%L, 'tap_api', '[{"filename": "a.jpg", "url": "javascript:alert(1)"}]')$q$, :'p'),
                 '22023', 'assets[0].url must be an absolute http or https URL', 'javascript: URL rejected');
SELECT throws_ok(format($q$SELECT moverz_batch.create_batch(%L, 'someone_else', '[{"filename": "a.jpg", "url": "https://x.example/a.jpg"}]')$q$, :'p'),
                 'P0002', format('project_id %s: no such project for this user', :'p'), 'another user''s project: P0002');
SELECT throws_ok(format($q$SELECT moverz_batch.batch_progress(%L, 5, -1)$q$, :'b'), '22023', 'photos_offset must be >= 0', 'negative offset rejected');
SELECT throws_ok($q$SELECT moverz_batch.retry_batch('00000000-0000-0000-0000-000000000000')$q$, 'P0002',
                 'batch_id 00000000-0000-0000-0000-000000000000: no such batch', 'retry_batch of an unknown batch: P0002');
SELECT is((SELECT count(*) FROM moverz_batch.batches WHERE user_id IN ('tap_api', 'someone_else')), 1::bigint, 'errors created no batch');

SELECT * FROM finish();
ROLLBACK;
