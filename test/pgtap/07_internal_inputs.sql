-- The C functions behind create_batch and batch_progress are callable by
-- trusted roles: hostile arguments get an error or a harmless answer, never
-- a crash, and they see only what the caller may see.
BEGIN;
SET client_min_messages = warning;
SELECT plan(12);

SELECT moverz_batch.create_project('internal-user', 'internal') AS p \gset
SELECT moverz_batch.create_batch(:'p', 'internal-user',
    '[{"filename": "a.jpg", "url": "https://i.example/a.jpg"},
      {"filename": "a.jpg", "url": "https://i.example/a.jpg"},
      {"filename": "b.jpg", "url": "https://i.example/b.jpg", "filePath": null, "roomType": null}]') AS b \gset

-- progress_document
SELECT throws_ok($$SELECT moverz_batch_internal.progress_document(NULL, gen_random_uuid(), NULL, 0, NULL)$$,
                 '22023', NULL, 'progress_document: a NULL state is an error');
SELECT throws_ok($$SELECT moverz_batch_internal.progress_document('[1]', gen_random_uuid(), NULL, 0, NULL)$$,
                 '22023', NULL, 'progress_document: a state that is not an object is an error');
SELECT throws_ok($$SELECT moverz_batch_internal.progress_document('{}', gen_random_uuid(), -1, 0, NULL)$$,
                 '2201W', NULL, 'progress_document: a negative limit is an error');
SELECT is(moverz_batch_internal.progress_document('{"a": [1, {"b": 2}]}', gen_random_uuid(), NULL, 0, '42'),
          '{"a": [1, {"b": 2}], "photos": [], "inventorySummary": 42}'::jsonb,
          'progress_document: nested state, scalar summary, unknown batch');
SELECT is(jsonb_array_length(moverz_batch_internal.progress_document('{}', :'b', 2, 1, NULL) -> 'photos'), 2,
          'progress_document pages the photos');
SELECT is(moverz_batch_internal.progress_document('{}', :'b', 1, 2, '{"x": null}') -> 'photos' -> 0 ->> 'filename', 'b.jpg',
          '... in submission order, null members left out');

-- asset_rows and check_assets
SELECT throws_ok($$SELECT * FROM moverz_batch_internal.asset_rows(NULL)$$, '22004', 'assets must not be null',
                 'asset_rows(NULL)');
SELECT throws_ok($$SELECT * FROM moverz_batch_internal.asset_rows('"x"')$$, '22023', 'assets must be a JSON array, not string',
                 'asset_rows of a scalar');
SELECT throws_ok($$SELECT * FROM moverz_batch_internal.asset_rows('[{"filename": "a", "url": "https://x.example/a"}, 7]')$$,
                 '22023', 'assets[1] must be a JSON object, not number', 'asset_rows checks every element');
SELECT is((SELECT count(*)::int FROM moverz_batch_internal.asset_rows(
              '[{"filename": "a", "url": "https://x.example/a"}, {"filename": "a", "url": "https://x.example/a"},
                {"filename": "a", "url": "https://x.example/b"}]') r
            WHERE r.first_id IS NOT NULL), 1, 'asset_rows: the second identical element points to the first');
SELECT is((SELECT count(DISTINCT r.id)::int FROM moverz_batch_internal.asset_rows(
              (SELECT jsonb_agg(jsonb_build_object('filename', 'f' || i, 'url', 'https://x.example/' || i))
                 FROM generate_series(1, 500) i)) r), 500, 'asset_rows: 500 distinct ids');
SELECT throws_ok($$SELECT moverz_batch_internal.check_assets('[{"filename": "a", "url": "https://x.example/a", "roomType": "x\"y"}]')$$,
                 '22023', 'assets[0].roomType "x\"y" is not an accepted room type', 'check_assets quotes a bad room type as JSON');

SELECT * FROM finish();
ROLLBACK;
