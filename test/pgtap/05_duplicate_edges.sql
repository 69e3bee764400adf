-- Duplicates at the edges: a claim released as ERROR settles its waiting
-- duplicates; retry_photo of a duplicate retries its original; purge of a
-- batch holding an original promotes a surviving copy (no item lost); of two
-- analysed originals, a new copy takes the one finished first.
BEGIN;
SELECT plan(10);

-- claim_photos takes any user's photos: start from an empty queue
DELETE FROM moverz_batch.projects;
SELECT moverz_batch.create_project('edge-user', 'edges') AS p \gset

-- 1. release_claims giving up on an original settles its duplicate
SELECT moverz_batch.create_batch(:'p', 'edge-user',
    '[{"filename": "a.jpg", "url": "https://e.example/a.jpg"},
      {"filename": "a.jpg", "url": "https://e.example/a.jpg"}]') AS b1 \gset
SELECT is((SELECT count(*)::int FROM moverz_batch_internal.claim_photos(0, 1, 10, 60000)), 1,
          'only the original is claimed');
SELECT is(moverz_batch_internal.release_claims(0, 2, 1, 1), 1, 'the stale claim is released (as ERROR: last attempt)');
SELECT is((SELECT string_agg(status::text, ',' ORDER BY position) FROM moverz_batch.photos WHERE batch_id = :'b1'),
          'ERROR,ERROR', 'the waiting duplicate takes the ERROR of its original');
SELECT is((SELECT status::text FROM moverz_batch.batches WHERE id = :'b1'), 'FAILED', 'the batch ends');

-- 2. retry_photo of the duplicate retries the original too
SELECT is(moverz_batch.retry_photo((SELECT id FROM moverz_batch.photos WHERE batch_id = :'b1' AND position = 1)), 2,
          'retry_photo(duplicate) sends back its original and itself');
SELECT is((SELECT count(*)::int FROM moverz_batch_internal.claim_photos(0, 3, 10, 60000)), 1,
          'the original is claimable again');

-- 3. purge of the batch holding an original keeps the copy's items
SELECT moverz_batch.create_batch(:'p', 'edge-user', '[{"filename": "s.jpg", "url": "https://e.example/s.jpg"}]') AS old \gset
UPDATE moverz_batch.photos SET status = 'DONE',
       analysis = '{"items": [{"label": "sofa", "quantity": 1, "volume_m3": 2}]}'
 WHERE batch_id = :'old';
SELECT moverz_batch.create_batch(:'p', 'edge-user', '[{"filename": "s.jpg", "url": "https://e.example/s.jpg"}]') AS new \gset
SELECT moverz_batch.sync_inventory(:'new');
UPDATE moverz_batch.batches SET completed_at = now() - interval '40 days' WHERE id = :'old';
SELECT is((moverz_batch.project_inventory(:'p') ->> 'totalItems')::int, 1, 'one sofa before the purge');
SELECT is((SELECT batches_deleted FROM moverz_batch.purge('30 days')), 1::bigint, 'the old batch is purged');
SELECT is((moverz_batch.project_inventory(:'p') ->> 'totalItems')::int, 1, 'still one sofa after it: the copy took over');

-- 4. two analysed originals of one photo (since 0.5.0 the second copy waits
--    for the first; before, and after a cancel or a retry that releases a
--    copy, both are analysed): a new copy takes the one finished first,
--    here the younger one (so neither the id nor the creation order decides)
SELECT moverz_batch.create_batch(:'p', 'edge-user', '[{"filename": "t.jpg", "url": "https://e.example/t.jpg"}]') AS t1 \gset
SELECT moverz_batch.create_batch(:'p', 'edge-user', '[{"filename": "t.jpg", "url": "https://e.example/t.jpg"}]') AS t2 \gset
UPDATE moverz_batch.photos SET duplicate_of = NULL WHERE batch_id = :'t2';
UPDATE moverz_batch.photos SET status = 'DONE', analysis = '{"items": []}', finished_at = now() - interval '1 hour'
 WHERE batch_id = :'t1';
UPDATE moverz_batch.photos SET status = 'DONE', analysis = '{"items": []}', finished_at = now() - interval '2 hours'
 WHERE batch_id = :'t2';
SELECT moverz_batch.create_batch(:'p', 'edge-user', '[{"filename": "t.jpg", "url": "https://e.example/t.jpg"}]') AS t3 \gset
SELECT is((SELECT duplicate_of FROM moverz_batch.photos WHERE batch_id = :'t3'),
          (SELECT id FROM moverz_batch.photos WHERE batch_id = :'t2'),
          'a new copy takes the analysed original that finished first');

SELECT * FROM finish();
ROLLBACK;
