-- photos.batch_id references batches without a per-row foreign key: the
-- photos triggers check each batch once per statement, and a batch's
-- photos (and their inventory items) go with it on DELETE and TRUNCATE,
-- as with ON DELETE CASCADE.
BEGIN;
SET client_min_messages = warning;
SELECT plan(11);

SELECT moverz_batch.create_project('ref-user', 'references') AS p \gset
SELECT moverz_batch.create_batch(:'p', 'ref-user',
    '[{"filename": "a.jpg", "url": "https://r.example/a.jpg", "roomType": "kitchen"},
      {"filename": "b.jpg", "url": "https://r.example/b.jpg"}]') AS b \gset

-- inserting or moving photos into a batch that does not exist
SELECT throws_ok($$INSERT INTO moverz_batch.photos (batch_id, position, project_id, user_id, filename, url, checksum)
                   VALUES ('00000000-0000-0000-0000-000000000001', 0, '$$ || :'p' || $$', 'ref-user', 'x.jpg',
                           'https://r.example/x.jpg', md5('x'))$$,
                 '23503', 'photos reference batch_id 00000000-0000-0000-0000-000000000001, which does not exist',
                 'a photo of a missing batch is a foreign-key violation');
SELECT throws_ok($$UPDATE moverz_batch.photos SET batch_id = '00000000-0000-0000-0000-000000000002'
                    WHERE batch_id = '$$ || :'b' || $$' AND position = 1$$,
                 '23503', NULL, 'moving a photo to a missing batch is a foreign-key violation');
SELECT is((SELECT count(*)::int FROM moverz_batch.photos WHERE batch_id = :'b'), 2, 'nothing was written');

-- a finished photo has inventory items; deleting the batch takes all along
UPDATE moverz_batch.photos SET status = 'DONE', finished_at = now(),
       analysis = '{"items": [{"label": "table", "quantity": 1, "volume_m3": 0.5}]}'
 WHERE batch_id = :'b' AND position = 0;
SELECT is((SELECT count(*)::int FROM moverz_batch.inventory_items WHERE batch_id = :'b'), 1, 'the DONE photo has its item');
DELETE FROM moverz_batch.batches WHERE id = :'b';
SELECT is((SELECT count(*)::int FROM moverz_batch.photos WHERE batch_id = :'b'), 0, 'DELETE of a batch deletes its photos');
SELECT is((SELECT count(*)::int FROM moverz_batch.inventory_items WHERE batch_id = :'b'), 0, '... and their items');
SELECT is((SELECT count(*)::int FROM moverz_batch.inventory_rooms WHERE batch_id = :'b'), 0, '... and the room totals');

-- deleting the project cascades through batches to the photos
SELECT moverz_batch.create_batch(:'p', 'ref-user', '[{"filename": "c.jpg", "url": "https://r.example/c.jpg"}]') AS b2 \gset
DELETE FROM moverz_batch.projects WHERE id = :'p';
SELECT is((SELECT count(*)::int FROM moverz_batch.photos WHERE project_id = :'p'), 0,
          'DELETE of a project deletes the photos of its batches');

-- TRUNCATE batches (CASCADE follows the other tables' foreign keys); the
-- notify triggers' events of this test transaction must fire first
SELECT moverz_batch.create_project('ref-user', 'truncated') AS p2 \gset
SELECT moverz_batch.create_batch(:'p2', 'ref-user', '[{"filename": "d.jpg", "url": "https://r.example/d.jpg"}]') AS b3 \gset
SET CONSTRAINTS ALL IMMEDIATE;
TRUNCATE moverz_batch.batches CASCADE;
SELECT is((SELECT count(*)::int FROM moverz_batch.photos), 0, 'TRUNCATE batches empties photos');
SELECT is((SELECT count(*)::int FROM moverz_batch.inventory_items), 0, '... and inventory_items');

-- and the API still works afterwards
SELECT moverz_batch.create_batch(:'p2', 'ref-user', '[{"filename": "e.jpg", "url": "https://r.example/e.jpg"}]') AS b4 \gset
SELECT is((moverz_batch.batch_progress(:'b4') -> 'counts' ->> 'total')::int, 1, 'create_batch after a TRUNCATE');

SELECT * FROM finish();
ROLLBACK;
