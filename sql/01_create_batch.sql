-- 01_create_batch: create_project, create_batch (rows written, checksums,
-- priorities, idempotency keys) and the first batch_progress of a batch.
\i sql/include/setup.sql
-- nrows(): the number of rows of every table create_batch may write.
CREATE FUNCTION pg_temp.nrows() RETURNS text LANGUAGE sql AS $$
SELECT format('projects=%s batches=%s photos=%s jobs=%s',
              (SELECT count(*) FROM moverz_batch.projects),
              (SELECT count(*) FROM moverz_batch.batches),
              (SELECT count(*) FROM moverz_batch.photos),
              (SELECT count(*) FROM moverz_batch.inventory_sync_jobs))
$$;

-- Projects of two users.
SELECT moverz_batch.create_project('r01_alice', 'Alice home') AS alice_p \gset
SELECT moverz_batch.create_project('r01_alice', 'Alice office') AS alice_p2 \gset
SELECT moverz_batch.create_project('r01_bob', 'Bob home') AS bob_p \gset
SELECT user_id, name FROM moverz_batch.projects
 WHERE id IN (:'alice_p', :'alice_p2', :'bob_p') ORDER BY user_id, name;

-- A batch of three photos, default priority, no idempotency key.
\set assets3 '[{"filename": "salon.jpg", "url": "https://cdn.example.com/u/1/salon.jpg", "roomType": "living_room"}, {"filename": "cuisine 2.JPG", "filePath": "uploads/1/cuisine 2.JPG", "url": "http://cdn.example.com/u/1/cuisine%202.JPG"}, {"filename": "chambré.png", "url": "https://cdn.example.com/u/1/chambr%C3%A9.png?sig=abc&x=1", "roomType": null}]'
SELECT moverz_batch.create_batch(:'alice_p', 'r01_alice', :'assets3') AS b1 \gset
SELECT project_id = :'alice_p' AS right_project, user_id, status, priority,
       count_queued, count_processing, count_completed, count_failed,
       inventory_queued, inventory_generation, idempotency_key, request_hash IS NULL AS no_hash,
       completed_at IS NULL AS not_completed
  FROM moverz_batch.batches WHERE id = :'b1';
-- One PENDING photo per asset, in submission order, checksum = md5(filename:url).
SELECT position, filename, file_path, url, room_type, status, priority, attempts,
       project_id = :'alice_p' AS right_project, user_id,
       checksum = md5(filename || ':' || url) AS checksum_ok, checksum,
       error_code, analysis
  FROM moverz_batch.photos WHERE batch_id = :'b1' ORDER BY position;
SELECT md5('salon.jpg:https://cdn.example.com/u/1/salon.jpg') AS expected_checksum_0;
-- No inventory job for a batch that has just been created.
SELECT count(*) AS jobs FROM moverz_batch.inventory_sync_jobs WHERE batch_id = :'b1';

-- batch_progress of the new batch (ids checked apart, then stripped).
SELECT (p ->> 'batchId')::uuid = :'b1' AS batch_id_ok,
       (SELECT array_agg((e ->> 'id')::uuid ORDER BY o) FROM jsonb_array_elements(p -> 'photos') WITH ORDINALITY AS x(e, o))
       = (SELECT array_agg(id ORDER BY position) FROM moverz_batch.photos WHERE batch_id = :'b1') AS photo_ids_ok,
       (p - 'batchId') || jsonb_build_object('photos',
           (SELECT jsonb_agg(e - 'id' ORDER BY o) FROM jsonb_array_elements(p -> 'photos') WITH ORDINALITY AS x(e, o))) AS progress
  FROM moverz_batch.batch_progress(:'b1') AS p;

-- Priorities: given explicitly, copied onto the photos.
SELECT moverz_batch.create_batch(:'alice_p', 'r01_alice', '[{"filename": "a.jpg", "url": "https://x.example/a.jpg"}]', 'HIGH') AS bh \gset
SELECT moverz_batch.create_batch(:'alice_p', 'r01_alice', '[{"filename": "a.jpg", "url": "https://x.example/a.jpg"}]', 'LOW') AS bl \gset
SELECT moverz_batch.create_batch(:'alice_p', 'r01_alice', '[{"filename": "a.jpg", "url": "https://x.example/a.jpg"}]', 'NORMAL') AS bn \gset
SELECT b.priority AS batch_priority, array_agg(p.priority) AS photo_priorities
  FROM moverz_batch.batches b JOIN moverz_batch.photos p ON p.batch_id = b.id
 WHERE b.id IN (:'bh', :'bl', :'bn') GROUP BY b.priority ORDER BY b.priority;
-- Without a key, the same payload twice makes two batches.
SELECT :'bh' <> moverz_batch.create_batch(:'alice_p', 'r01_alice', '[{"filename": "a.jpg", "url": "https://x.example/a.jpg"}]', 'HIGH') AS distinct_batches;

-- Idempotency keys.
SELECT moverz_batch.create_batch(:'alice_p', 'r01_alice', :'assets3', 'HIGH', 'key-1') AS k1 \gset
SELECT idempotency_key, request_hash IS NOT NULL AS has_hash, priority
  FROM moverz_batch.batches WHERE id = :'k1';
SELECT pg_temp.nrows() AS before \gset
-- Same user, same key, same payload: the same batch, nothing created.
SELECT moverz_batch.create_batch(:'alice_p', 'r01_alice', :'assets3', 'HIGH', 'key-1') = :'k1' AS same_batch;
-- The payload is compared as JSON: key order and spacing do not matter.
SELECT moverz_batch.create_batch(:'alice_p', 'r01_alice',
    '[{"roomType":"living_room","url":"https://cdn.example.com/u/1/salon.jpg","filename":"salon.jpg"},{"url":"http://cdn.example.com/u/1/cuisine%202.JPG","filePath":"uploads/1/cuisine 2.JPG","filename":"cuisine 2.JPG"},{"roomType":null,"filename":"chambré.png","url":"https://cdn.example.com/u/1/chambr%C3%A9.png?sig=abc&x=1"}]',
    'HIGH', 'key-1') = :'k1' AS same_batch_reordered_json;
SELECT pg_temp.nrows() = :'before' AS nothing_created;
-- Same user, same key, another payload: 23505, nothing created.
SELECT pg_temp.try(format($q$SELECT moverz_batch.create_batch(%L, 'r01_alice', '[{"filename": "other.jpg", "url": "https://x.example/other.jpg"}]', 'HIGH', 'key-1')$q$, :'alice_p')) AS other_assets;
SELECT pg_temp.try(format($q$SELECT moverz_batch.create_batch(%L, 'r01_alice', %L, 'LOW', 'key-1')$q$, :'alice_p', :'assets3')) AS other_priority;
SELECT pg_temp.try(format($q$SELECT moverz_batch.create_batch(%L, 'r01_alice', %L, 'HIGH', 'key-1')$q$, :'alice_p2', :'assets3')) AS other_project;
-- One photo fewer is another payload too.
SELECT pg_temp.try(format($q$SELECT moverz_batch.create_batch(%L, 'r01_alice', (%L::jsonb) - 2, 'HIGH', 'key-1')$q$, :'alice_p', :'assets3')) AS fewer_photos;
SELECT pg_temp.nrows() = :'before' AS nothing_created;
-- Another user, same key: an independent batch.
SELECT moverz_batch.create_batch(:'bob_p', 'r01_bob', :'assets3', 'HIGH', 'key-1') AS kb \gset
SELECT :'kb' <> :'k1' AS independent_batch, user_id, project_id = :'bob_p' AS bobs_project,
       (SELECT count(*) FROM moverz_batch.photos WHERE batch_id = :'kb') AS photos
  FROM moverz_batch.batches WHERE id = :'kb';
-- ... and each user's key still leads to his own batch.
SELECT moverz_batch.create_batch(:'bob_p', 'r01_bob', :'assets3', 'HIGH', 'key-1') = :'kb' AS bob_same,
       moverz_batch.create_batch(:'alice_p', 'r01_alice', :'assets3', 'HIGH', 'key-1') = :'k1' AS alice_same;
-- Keys are per user: one batch each.
SELECT count(*) AS batches_with_key_1 FROM moverz_batch.batches
 WHERE idempotency_key = 'key-1' AND user_id IN ('r01_alice', 'r01_bob');
-- A replayed key returns the batch whatever its state since.
UPDATE moverz_batch.photos SET status = 'DONE' WHERE batch_id = :'k1';
SELECT moverz_batch.create_batch(:'alice_p', 'r01_alice', :'assets3', 'HIGH', 'key-1') = :'k1' AS same_batch_after_completion,
       (SELECT status FROM moverz_batch.batches WHERE id = :'k1') AS status,
       (SELECT count(*) FROM moverz_batch.photos WHERE batch_id = :'k1') AS photos,
       (SELECT count(*) FROM moverz_batch.inventory_sync_jobs WHERE batch_id = :'k1') AS jobs;

-- The project must belong to the user: same error as an unknown project.
SELECT pg_temp.nrows() AS before \gset
SELECT pg_temp.try(format($q$SELECT moverz_batch.create_batch(%L, 'r01_bob', %L)$q$, :'alice_p', :'assets3')) AS other_users_project;
SELECT pg_temp.try(format($q$SELECT moverz_batch.create_batch(%L, 'r01_bob', %L)$q$, gen_random_uuid(), :'assets3')) AS unknown_project;
-- ... also with a key that user already used.
SELECT pg_temp.try(format($q$SELECT moverz_batch.create_batch(%L, 'r01_bob', %L, 'HIGH', 'key-1')$q$, :'alice_p', :'assets3')) AS other_users_project_known_key;
SELECT pg_temp.nrows() = :'before' AS nothing_created;

-- A batch at the maximum size (default 1000 photos).
SELECT current_setting('moverz_batch.max_batch_size') AS max_batch_size;
SELECT moverz_batch.create_batch(:'alice_p', 'r01_alice',
    (SELECT jsonb_agg(jsonb_build_object('filename', format('p%s.jpg', i), 'url', format('https://x.example/p%s.jpg', i)))
       FROM generate_series(1, 1000) AS i)) AS big \gset
SELECT status, count_queued, (SELECT count(*) FROM moverz_batch.photos WHERE batch_id = :'big') AS photos,
       (SELECT min(position) || '..' || max(position) FROM moverz_batch.photos WHERE batch_id = :'big') AS positions,
       (SELECT filename FROM moverz_batch.photos WHERE batch_id = :'big' AND position = 999) AS last_filename
  FROM moverz_batch.batches WHERE id = :'big';

-- Everything written so far is consistent: counters equal a recount.
SELECT count(*) AS batches_checked,
       count(*) FILTER (WHERE (b.count_queued, b.count_processing, b.count_completed, b.count_failed)
                              IS DISTINCT FROM (r.q, r.p, r.c, r.f)) AS counter_mismatches
  FROM moverz_batch.batches b,
       LATERAL (SELECT (count(*) FILTER (WHERE status = 'PENDING'))::int AS q,
                       (count(*) FILTER (WHERE status = 'PROCESSING'))::int AS p,
                       (count(*) FILTER (WHERE status = 'DONE'))::int AS c,
                       (count(*) FILTER (WHERE status = 'ERROR'))::int AS f
                  FROM moverz_batch.photos p WHERE p.batch_id = b.id) AS r
 WHERE b.user_id IN ('r01_alice', 'r01_bob');

-- Clean up: deleting the projects removes everything of theirs.
DELETE FROM moverz_batch.projects WHERE user_id IN ('r01_alice', 'r01_bob');
SELECT count(*) AS leftover_batches FROM moverz_batch.batches WHERE user_id IN ('r01_alice', 'r01_bob');
SELECT count(*) AS leftover_photos FROM moverz_batch.photos WHERE user_id IN ('r01_alice', 'r01_bob');
