-- 40_rls: the HTTP API's SQL side without HTTP: roles, privileges, row-level
-- security, and the moverz_api functions called as PostgREST calls them
-- (role moverz_user, request.jwt.claims, request.headers), in one
-- rolled-back transaction.
BEGIN;
SELECT plan(69);
SET LOCAL client_min_messages = warning;

-- as_user(role, sub, sql): the single value of sql run under role with the
-- JWT claims {"sub": sub} (none when sub is NULL), as text, or
-- 'ERROR <sqlstate>: <message>'.  The role and claims end with the call.
CREATE FUNCTION pg_temp.as_user(p_role text, p_sub text, p_sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    r text;
    st text;
    msg text;
BEGIN
    BEGIN
        PERFORM set_config('request.jwt.claims',
                           CASE WHEN p_sub IS NULL THEN '' ELSE json_build_object('role', p_role, 'sub', p_sub,
                                                                   'exp', extract(epoch FROM now())::bigint + 600)::text END, true);
        EXECUTE format('SET LOCAL ROLE %I', p_role);
        EXECUTE p_sql INTO r;
        RESET ROLE;
        PERFORM set_config('request.jwt.claims', '', true);
        RETURN r;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
        RETURN format('ERROR %s: %s', st, msg);
    END;
END
$$;

-- Roles.
SELECT ok((SELECT rolcanlogin AND NOT rolinherit AND NOT rolsuper FROM pg_roles WHERE rolname = 'moverz_authenticator'),
          'moverz_authenticator: LOGIN NOINHERIT, not superuser');
SELECT is((SELECT count(*) FROM pg_roles WHERE rolname IN ('moverz_anon', 'moverz_user', 'moverz_app')
             AND NOT rolcanlogin AND NOT rolsuper AND NOT rolbypassrls AND NOT rolcreaterole), 3::bigint,
          'moverz_anon, moverz_user, moverz_app: NOLOGIN, no superuser, no BYPASSRLS');
SELECT ok(pg_has_role('moverz_authenticator', 'moverz_anon', 'MEMBER') AND pg_has_role('moverz_authenticator', 'moverz_user', 'MEMBER'),
          'the authenticator can become moverz_anon and moverz_user');
SELECT ok(NOT pg_has_role('moverz_authenticator', 'moverz_app', 'MEMBER'), 'the authenticator cannot become moverz_app');

-- Row-level security: on, not forced, on every table of user data.
SELECT is((SELECT string_agg(format('%s:%s:%s', relname, relrowsecurity, relforcerowsecurity), ',' ORDER BY relname)
             FROM pg_class WHERE relnamespace = 'moverz_batch'::regnamespace AND relname IN ('projects', 'batches', 'photos',
                  'inventory_summaries', 'inventory_items', 'inventory_sync_jobs', 'ai_metrics')),
          'ai_metrics:t:f,batches:t:f,inventory_items:t:f,inventory_summaries:t:f,inventory_sync_jobs:t:f,photos:t:f,projects:t:f',
          'RLS enabled (not forced) on the 7 tables of user data');
SELECT is((SELECT count(*) FROM pg_class c WHERE c.relnamespace = 'moverz_batch'::regnamespace AND c.relkind = 'r'
             AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'user_id')
             AND NOT c.relrowsecurity), 0::bigint, 'no table with a user_id column without RLS');
SELECT policies_are('moverz_batch', 'batches', ARRAY['batches_own_rows', 'batches_trusted_app'], 'policies of batches');
SELECT policy_roles_are('moverz_batch', 'photos', 'photos_own_rows', ARRAY['moverz_user'], 'photos_own_rows is for moverz_user');

-- The API schema: functions only, SECURITY DEFINER, search_path pinned, for moverz_user only.
SELECT is((SELECT count(*) FROM pg_class WHERE relnamespace = 'moverz_api'::regnamespace), 0::bigint,
          'no table, view or sequence in moverz_api');
SELECT functions_are('moverz_api', ARRAY['cancel_batch', 'create_batch', 'create_project', 'get_batch', 'list_batches',
                                         'list_projects', 'request_uploads', 'retry_batch', 'stream_auth', 'upload_put',
                                         'admin_batch_photos', 'admin_batches', 'admin_cancel_batch', 'admin_costs',
                                         'admin_failed_photos', 'admin_overview', 'admin_pause', 'admin_resume',
                                         'admin_retry_photo', 'admin_workers'],
                     'the API functions: the customers'', the stream''s authorisation, the operators''');
SELECT is((SELECT count(*) FROM pg_proc WHERE pronamespace = 'moverz_api'::regnamespace
             AND NOT (prosecdef AND proconfig = ARRAY['search_path=pg_catalog, pg_temp'])), 0::bigint,
          'all SECURITY DEFINER with search_path = pg_catalog, pg_temp');
SELECT is((SELECT string_agg(format('%s:%s', proname, provolatile), ',' ORDER BY proname) FROM pg_proc
            WHERE pronamespace = 'moverz_api'::regnamespace),
          'admin_batch_photos:s,admin_batches:s,admin_cancel_batch:v,admin_costs:s,admin_failed_photos:s,'
          'admin_overview:s,admin_pause:v,admin_resume:v,admin_retry_photo:v,admin_workers:s,'
          'cancel_batch:v,create_batch:v,create_project:v,get_batch:s,list_batches:s,list_projects:s,'
          'request_uploads:v,retry_batch:v,stream_auth:s,upload_put:v',
          'the GETs are STABLE, the writes VOLATILE');
SELECT is((SELECT string_agg(proname, ',' ORDER BY proname) FROM pg_proc WHERE pronamespace = 'moverz_api'::regnamespace
             AND has_function_privilege('moverz_user', oid, 'EXECUTE')
             AND has_function_privilege('moverz_anon', oid, 'EXECUTE')
             AND NOT has_function_privilege('moverz_authenticator', oid, 'EXECUTE')),
          'cancel_batch,create_batch,create_project,get_batch,list_batches,list_projects,request_uploads,retry_batch,stream_auth,upload_put',
          'EXECUTE: moverz_user the customers'' functions, and moverz_anon to be told 401; the authenticator (and PUBLIC) no');
SELECT is((SELECT string_agg(proname, ',' ORDER BY proname) FROM pg_proc WHERE pronamespace = 'moverz_api'::regnamespace
             AND has_function_privilege('moverz_anon', oid, 'EXECUTE')
             AND NOT EXISTS (SELECT 1 FROM regexp_matches(pg_get_functiondef(oid),
                                                          'moverz_batch_internal\.api_user\(\)') AS m)),
          'upload_put', 'every function moverz_anon may call asks api_user() (401 without a token), '
                        'but upload_put (PUT /api/uploads/:id), which its URL''s token authorises');
SELECT is((SELECT string_agg(proname, ',' ORDER BY proname) FROM pg_proc WHERE pronamespace = 'moverz_api'::regnamespace
             AND has_function_privilege('moverz_operator', oid, 'EXECUTE')
             AND NOT has_function_privilege('moverz_user', oid, 'EXECUTE')
             AND NOT has_function_privilege('moverz_anon', oid, 'EXECUTE')
             AND NOT has_function_privilege('moverz_authenticator', oid, 'EXECUTE')),
          'admin_batch_photos,admin_batches,admin_cancel_batch,admin_costs,admin_failed_photos,admin_overview,'
          'admin_pause,admin_resume,admin_retry_photo,admin_workers',
          'EXECUTE: moverz_operator the admin_* functions, and no other role');
SELECT is((SELECT count(*) FROM pg_proc WHERE pronamespace = 'moverz_api'::regnamespace
             AND has_function_privilege('moverz_operator', oid, 'EXECUTE')
             AND NOT proname LIKE 'admin\_%'), 0::bigint, 'moverz_operator executes nothing else of the API');
SELECT is((SELECT string_agg(proname, ',') FROM pg_proc
            WHERE pronamespace IN ('moverz_batch'::regnamespace, 'moverz_batch_internal'::regnamespace)
             AND has_function_privilege('moverz_user', oid, 'EXECUTE')), 'jwt_user_id',
          'of moverz_batch and its internals, moverz_user executes jwt_user_id alone (for its policies)');
SELECT is((SELECT count(*) FROM pg_proc WHERE pronamespace = 'moverz_batch'::regnamespace
             AND has_function_privilege('moverz_anon', oid, 'EXECUTE')), 0::bigint, 'moverz_anon executes nothing');
SELECT ok(NOT has_function_privilege('moverz_app', 'moverz_batch_internal.claim_photos'::regproc, 'EXECUTE')
          AND NOT has_function_privilege('moverz_app', 'moverz_batch_internal.complete_photos'::regproc, 'EXECUTE')
          AND has_function_privilege('moverz_app', 'moverz_batch.create_batch'::regproc, 'EXECUTE'),
          'moverz_app: the SQL API, not the workers'' functions');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', $$SELECT current_setting('moverz_batch.ai_api_key')$$),
          'ERROR 42501: must be superuser or have privileges of pg_read_all_settings to examine "moverz_batch.ai_api_key"',
          'moverz_user cannot read the AI API key');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', $$SELECT count(*) FROM pg_settings WHERE name = 'moverz_batch.ai_api_key'$$),
          '0', 'nor see it in pg_settings');

-- Data of users A and B, written by the owner through the SQL API.
SELECT moverz_batch.create_project('tap_rls_a', 'A home') AS pa \gset
SELECT moverz_batch.create_project('tap_rls_b', 'B home') AS pb \gset
SELECT moverz_batch.create_batch(:'pa', 'tap_rls_a', '[{"filename": "a1.jpg", "url": "https://x.example/a1.jpg"},
                                                      {"filename": "a2.jpg", "url": "https://x.example/a2.jpg"}]') AS ba \gset
SELECT moverz_batch.create_batch(:'pb', 'tap_rls_b', '[{"filename": "b1.jpg", "url": "https://x.example/b1.jpg"}]') AS bb \gset
UPDATE moverz_batch.photos SET status = 'DONE',
       analysis = '{"room_type": "kitchen", "items": [{"label": "table", "quantity": 1, "volume_m3": 1.5}]}'
 WHERE batch_id IN (:'ba', :'bb') AND position = 0;
UPDATE moverz_batch.photos SET status = 'ERROR', error_code = 'NETWORK_ERROR', error_message = 'down'
 WHERE batch_id = :'ba' AND position = 1;
SELECT moverz_batch.sync_inventory(b) FROM unnest(ARRAY[:'ba', :'bb']::uuid[]) AS b \g /dev/null
INSERT INTO moverz_batch.ai_metrics (provider, operation, latency_ms, success, meta)
VALUES ('t', 'analyze_photo', 1, true, jsonb_build_object('userId', 'tap_rls_a', 'batchId', :'ba')),
       ('t', 'analyze_photo', 1, true, jsonb_build_object('userId', 'tap_rls_b', 'batchId', :'bb'));

-- A direct SQL session as moverz_user sees its user's rows only.
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', format($$SELECT concat_ws(' ',
            (SELECT count(*) FROM moverz_batch.projects WHERE id IN (%1$L, %2$L)),
            (SELECT count(*) FROM moverz_batch.batches WHERE id IN (%3$L, %4$L)),
            (SELECT count(*) FROM moverz_batch.photos WHERE batch_id IN (%3$L, %4$L)),
            (SELECT count(*) FROM moverz_batch.inventory_sync_jobs WHERE batch_id IN (%3$L, %4$L)),
            (SELECT count(*) FROM moverz_batch.inventory_summaries WHERE batch_id IN (%3$L, %4$L)),
            (SELECT count(*) FROM moverz_batch.inventory_items WHERE batch_id IN (%3$L, %4$L)),
            (SELECT count(*) FROM moverz_batch.ai_metrics WHERE meta ->> 'batchId' IN (%3$L, %4$L)))$$, :'pa', :'pb', :'ba', :'bb')),
          '1 1 2 1 1 1 1', 'user A sees its project, batch, 2 photos, job, summary, item, metric');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', $$SELECT concat_ws(' ',
            (SELECT count(*) FROM moverz_batch.projects WHERE user_id <> 'tap_rls_a'),
            (SELECT count(*) FROM moverz_batch.batches WHERE user_id <> 'tap_rls_a'),
            (SELECT count(*) FROM moverz_batch.photos WHERE user_id <> 'tap_rls_a'),
            (SELECT count(*) FROM moverz_batch.inventory_sync_jobs WHERE user_id <> 'tap_rls_a'),
            (SELECT count(*) FROM moverz_batch.inventory_summaries WHERE user_id <> 'tap_rls_a'),
            (SELECT count(*) FROM moverz_batch.inventory_items WHERE user_id <> 'tap_rls_a'),
            (SELECT count(*) FROM moverz_batch.ai_metrics WHERE meta ->> 'userId' IS DISTINCT FROM 'tap_rls_a'))$$),
          '0 0 0 0 0 0 0', 'user A sees no other user''s row in any table');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_b', format($$SELECT count(*) FROM moverz_batch.photos WHERE batch_id = %L$$, :'ba')),
          '0', 'user B does not see A''s photos');
SELECT is(pg_temp.as_user('moverz_user', NULL, $$SELECT (SELECT count(*) FROM moverz_batch.batches) + (SELECT count(*) FROM moverz_batch.projects)$$),
          '0', 'moverz_user without claims sees nothing');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', format($$SELECT moverz_batch.batch_progress(%L) ->> 'status'$$, :'ba')),
          'ERROR 42501: permission denied for function batch_progress', 'moverz_user cannot call the SQL API');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', format($$SELECT moverz_batch.create_batch(%L, 'tap_rls_a', '[{"filename": "x.jpg", "url": "https://x.example/x"}]')$$, :'pa')),
          'ERROR 42501: permission denied for function create_batch', 'nor create_batch with a user_id of its choice');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', $$SELECT count(*) FROM moverz_batch_internal.claim_photos(0, 1, 10, 1000, 1)$$),
          'ERROR 42501: permission denied for schema moverz_batch_internal', 'nor the workers'' functions');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', $$INSERT INTO moverz_batch.projects (user_id, name) VALUES ('tap_rls_a', 'x') RETURNING 1$$),
          'ERROR 42501: permission denied for table projects', 'moverz_user cannot INSERT');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', format($$UPDATE moverz_batch.photos SET status = 'PENDING' WHERE batch_id = %L RETURNING 1$$, :'ba')),
          'ERROR 42501: permission denied for table photos', 'moverz_user cannot UPDATE');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', $$DELETE FROM moverz_batch.batches RETURNING 1$$),
          'ERROR 42501: permission denied for table batches', 'moverz_user cannot DELETE');
SELECT is(pg_temp.as_user('moverz_anon', NULL, $$SELECT count(*) FROM moverz_batch.batches$$),
          'ERROR 42501: permission denied for schema moverz_batch', 'moverz_anon cannot read a table');
SELECT is(pg_temp.as_user('moverz_anon', NULL, format($$SELECT moverz_api.create_batch('{"projectId": "%s", "imageUrls": []}')$$, :'pa')),
          'ERROR PT401: a JWT is required: send "Authorization: Bearer <token>"',
          'moverz_anon cannot create a batch: 401, a JWT is required');
SELECT is(pg_temp.as_user('moverz_anon', NULL, $$SELECT moverz_api.create_project('{"name": "x"}')$$),
          'ERROR PT401: a JWT is required: send "Authorization: Bearer <token>"',
          'moverz_anon cannot create a project: 401');

-- The API as moverz_user: reads.
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', format($$SELECT moverz_api.get_batch(%L)$$, :'ba'))::jsonb,
          jsonb_build_object('success', true, 'batch', moverz_batch.batch_progress(:'ba')), 'get_batch: {success, batch: batch_progress}');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_b', format($$SELECT moverz_api.get_batch(%L)$$, :'ba')),
          'ERROR PT404: batch not found', 'get_batch of another user''s batch: PT404');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_b', $$SELECT moverz_api.get_batch(gen_random_uuid())$$),
          'ERROR PT404: batch not found', 'get_batch of an unknown batch: the same PT404');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', format($$SELECT moverz_api.get_batch(%L, "photosLimit" => 1, "photosOffset" => 1) -> 'batch' -> 'photos' -> 0 ->> 'filename'$$, :'ba')),
          'a2.jpg', 'get_batch pages the photos');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', format($$SELECT moverz_api.get_batch(%L, "photosLimit" => -1)$$, :'ba')),
          'ERROR 22023: photosLimit must be >= 0', 'get_batch: a bad photosLimit, named as in HTTP');
SELECT is(pg_temp.as_user('moverz_user', NULL, format($$SELECT moverz_api.get_batch(%L)$$, :'ba')),
          'ERROR PT401: the token names no user (no "sub" claim)', 'no sub claim: PT401');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_b', $$SELECT moverz_api.list_batches()$$)::jsonb - 'batches',
          '{"success": true, "total": 1, "page": 1, "perPage": 20}'::jsonb, 'list_batches: B has one batch');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_b', format($$SELECT moverz_api.list_batches("projectId" => %L)$$, :'pa'))::jsonb -> 'batches',
          '[]'::jsonb, 'list_batches of A''s project by B: empty');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', $$SELECT (moverz_api.list_batches() -> 'batches' -> 0) - 'createdAt' - 'updatedAt' - 'completedAt'$$)::jsonb,
          jsonb_build_object('batchId', :'ba', 'projectId', :'pa', 'status', 'PARTIAL', 'priority', 'NORMAL', 'progress', 100,
                             'counts', '{"queued": 0, "processing": 0, "completed": 1, "failed": 1, "total": 2}'::jsonb),
          'list_batches: a batch''s summary');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', $$SELECT moverz_api.list_batches(page => 0)$$),
          'ERROR 22023: page must be an integer >= 1', 'list_batches: page 0 rejected');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_b', $$SELECT moverz_api.list_projects() -> 'projects' -> 0 ->> 'name'$$),
          'B home', 'list_projects: B''s');

-- The API as moverz_user: writes.
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', $$SELECT moverz_api.create_project('{"name": "A second"}') -> 'project' ->> 'name'$$),
          'A second', 'create_project');
SELECT is((SELECT user_id FROM moverz_batch.projects WHERE name = 'A second'), 'tap_rls_a', 'created for the token''s sub');
SELECT is(current_setting('response.status', true), '201', 'create_project: response.status 201');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', $$SELECT moverz_api.create_project('{"name": 42}')$$),
          'ERROR 22023: name is required and must be a string', 'create_project: a bad name');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', format($$SELECT moverz_api.create_batch('{"projectId": "%s", "userId": "tap_rls_b",
              "imageUrls": [{"filename": "n.jpg", "url": "https://x.example/n.jpg", "roomType": "bedroom"}]}') - 'batchId'$$, :'pa'))::jsonb,
          '{"success": true, "photosCount": 1, "jobsEnqueued": 1}'::jsonb, 'create_batch: the seed''s body');
SELECT is((SELECT string_agg(DISTINCT user_id, ',') FROM moverz_batch.batches WHERE project_id = :'pa'), 'tap_rls_a',
          'a "userId" in the body is ignored: the batch is the token''s user''s');
SELECT is(current_setting('response.status', true), '202', 'create_batch: response.status 202');
SELECT is(current_setting('response.headers', true)::jsonb,
          jsonb_build_array(jsonb_build_object('Location', '/api/batches/' ||
              (SELECT batch_id FROM moverz_batch.photos WHERE project_id = :'pa' AND filename = 'n.jpg'))),
          'create_batch: response.headers Location');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_b', format($$SELECT moverz_api.create_batch('{"projectId": "%s", "imageUrls": [{"filename": "n.jpg", "url": "https://x.example/n.jpg"}]}')$$, :'pa')),
          format('ERROR PT404: projectId %s: no such project for this user', :'pa'), 'create_batch in another user''s project: PT404');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', format($$SELECT moverz_api.create_batch('{"projectId": "%s", "imageUrls": [{"filename": "n.jpg", "url": "ftp://x.example/n.jpg"}]}')$$, :'pa')),
          'ERROR 22023: imageUrls[0].url must be an absolute http or https URL', 'create_batch: errors name the HTTP field');
SET LOCAL moverz_batch.max_batch_size = 2;
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', format($$SELECT moverz_api.create_batch(jsonb_build_object('projectId', %L,
              'imageUrls', (SELECT jsonb_agg(jsonb_build_object('filename', i || '.jpg', 'url', 'https://x.example/' || i)) FROM generate_series(1, 3) i)))$$, :'pa')),
          'ERROR PT413: imageUrls has 3 photos, more than the maximum batch size of 2', 'above the maximum batch size: PT413');
RESET moverz_batch.max_batch_size;

-- Idempotency-Key, read from request.headers.
SELECT set_config('request.headers', '{"idempotency-key": "tap-rls-key", "content-type": "application/json"}', true) \g /dev/null
SELECT pg_temp.as_user('moverz_user', 'tap_rls_a', format($$SELECT moverz_api.create_batch('{"projectId": "%s", "imageUrls": [{"filename": "k.jpg", "url": "https://x.example/k.jpg"}]}') ->> 'batchId'$$, :'pa')) AS bk \gset
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', format($$SELECT moverz_api.create_batch('{"projectId": "%s", "imageUrls": [{"filename": "k.jpg", "url": "https://x.example/k.jpg"}]}') ->> 'batchId'$$, :'pa')),
          :'bk', 'same Idempotency-Key, same body: the same batch');
SELECT is((SELECT idempotency_key FROM moverz_batch.batches WHERE id = :'bk'), 'tap-rls-key', 'the key is recorded');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', format($$SELECT moverz_api.create_batch('{"projectId": "%s", "imageUrls": [{"filename": "other.jpg", "url": "https://x.example/k.jpg"}]}')$$, :'pa')),
          'ERROR 23505: Idempotency-Key ''tap-rls-key'' was already used with a different payload', 'same key, another body: 23505 (409)');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_b', format($$SELECT moverz_api.create_batch('{"projectId": "%s", "imageUrls": [{"filename": "k.jpg", "url": "https://x.example/k.jpg"}]}') ->> 'batchId' <> %L$$, :'pb', :'bk')),
          'true', 'the same key from another user is another batch');
SELECT set_config('request.headers', '', true) \g /dev/null

-- Retry.
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_b', format($$SELECT moverz_api.retry_batch(%L)$$, :'ba')),
          'ERROR PT404: batch not found', 'retry_batch of another user''s batch: PT404');
SELECT is((SELECT string_agg(status::text, ',' ORDER BY position) FROM moverz_batch.photos WHERE batch_id = :'ba'), 'DONE,ERROR',
          'A''s photos untouched');
SELECT is(pg_temp.as_user('moverz_user', 'tap_rls_a', format($$SELECT moverz_api.retry_batch(%L) ->> 'photosRequeued'$$, :'ba')),
          '1', 'retry_batch of one''s batch: one photo requeued');
SELECT is(current_setting('response.status', true), '202', 'retry_batch: 202');

-- The trusted application role: the SQL API with a user_id, every row.
SELECT is(pg_temp.as_user('moverz_app', NULL, format($$SELECT moverz_batch.create_batch(%L, 'tap_rls_b', '[{"filename": "t.jpg", "url": "https://x.example/t.jpg"}]') IS NOT NULL$$, :'pb')),
          'true', 'moverz_app: create_batch for any user');
SELECT is(pg_temp.as_user('moverz_app', NULL, $$SELECT count(*) FROM moverz_batch.batches$$),
          (SELECT count(*) FROM moverz_batch.batches)::text, 'moverz_app sees every batch');
SELECT is(pg_temp.as_user('moverz_app', NULL, format($$SELECT moverz_batch.batch_progress(%L) ->> 'status'$$, :'bb')),
          'COMPLETED', 'moverz_app: batch_progress');
SELECT is(pg_temp.as_user('moverz_app', NULL, format($$SELECT moverz_batch.retry_batch(%L)$$, :'bb')),
          '0', 'moverz_app: retry_batch');
SELECT is(pg_temp.as_user('moverz_app', NULL, $$SELECT count(*) FROM moverz_batch_internal.claim_photos(0, 1, 10, 1000, 1)$$),
          'ERROR 42501: permission denied for schema moverz_batch_internal', 'moverz_app: not the workers'' functions');

SELECT * FROM finish();
ROLLBACK;
