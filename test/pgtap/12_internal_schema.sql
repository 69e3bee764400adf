-- 12_internal_schema: the internals live in schema moverz_batch_internal
-- (issue #18, since 0.7.0): nobody but its owner may use that schema, PUBLIC
-- executes none of its functions, the public API keeps its names, and a
-- trusted application (moverz_app) still works through the public API, its
-- triggers included, without reaching the internals.  One rolled-back
-- transaction.
BEGIN;
SELECT plan(16);
SET LOCAL client_min_messages = warning;

-- as_role(role, sql): the single value of sql run as role, as text, or
-- 'ERROR <sqlstate>: <message>'.
CREATE FUNCTION pg_temp.as_role(p_role text, p_sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    r text;
    st text;
    msg text;
BEGIN
    BEGIN
        EXECUTE format('SET LOCAL ROLE %I', p_role);
        EXECUTE p_sql INTO r;
        RESET ROLE;
        RETURN r;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
        RETURN format('ERROR %s: %s', st, msg);
    END;
END
$$;

CREATE ROLE mb_tap_app NOLOGIN IN ROLE moverz_app;

-- The schema and what is in it.
SELECT has_schema('moverz_batch_internal', 'schema moverz_batch_internal exists');
SELECT is((SELECT count(*) FROM pg_namespace n, aclexplode(n.nspacl) a
            WHERE n.nspname = 'moverz_batch_internal' AND a.grantee <> n.nspowner),
          0::bigint, 'moverz_batch_internal: no privilege granted to any role but its owner');
SELECT is((SELECT array_agg(p.oid::regprocedure::text ORDER BY 1) FROM pg_proc p
            WHERE p.pronamespace = 'moverz_batch_internal'::regnamespace AND p.proacl IS NULL),
          NULL, 'no internal function has the default privileges (EXECUTE for PUBLIC)');
SELECT is((SELECT string_agg(format('%s %s %s', p.proname, a.grantee::regrole, a.privilege_type), ', ' ORDER BY 1)
             FROM pg_proc p, aclexplode(p.proacl) a
            WHERE p.pronamespace = 'moverz_batch_internal'::regnamespace AND a.grantee <> p.proowner),
          'jwt_user_id moverz_user EXECUTE',
          'EXECUTE on internals: only jwt_user_id, to moverz_user (its row-level security policies)');
SELECT ok(to_regprocedure('moverz_batch_internal.claim_photos(int, bigint, int, int, int, bigint, boolean)') IS NOT NULL
          AND to_regprocedure('moverz_batch_internal.complete_photos(bigint, jsonb, int, int, text)') IS NOT NULL
          AND to_regprocedure('moverz_batch_internal.apply_batch_delta(uuid, moverz_batch_internal.status_delta)') IS NOT NULL,
          'the workers'' and the triggers'' functions are internal');
SELECT is((SELECT array_agg(p.proname::text ORDER BY 1) FROM pg_proc p
            WHERE p.pronamespace = 'moverz_batch'::regnamespace
              AND p.proname IN ('claim_photos', 'complete_photos', 'release_claims', 'unclaim_photos',
                                'run_next_inventory_job', 'apply_batch_delta', 'insert_photos', 'api_user')),
          NULL, 'none of them is left in moverz_batch');
SELECT ok(to_regprocedure('moverz_batch.create_batch(uuid, text, jsonb, text, text)') IS NOT NULL
          AND to_regprocedure('moverz_batch.batch_progress(uuid, int, int)') IS NOT NULL
          AND to_regprocedure('moverz_batch.cancel_batch(uuid)') IS NOT NULL
          AND to_regclass('moverz_batch.worker_status') IS NOT NULL,
          'the public API keeps its names');

-- SECURITY DEFINER: what calls into the internal schema for its callers, and
-- only with a pinned search_path.
SELECT is((SELECT array_agg(p.oid::regprocedure::text ORDER BY 1) FROM pg_proc p
            WHERE p.pronamespace IN ('moverz_batch'::regnamespace, 'moverz_api'::regnamespace)
              AND p.prolang <> (SELECT oid FROM pg_language WHERE lanname = 'c')
              AND p.prosrc LIKE '%moverz_batch_internal.%' AND NOT p.prosecdef),
          NULL, 'every public function that calls an internal one is SECURITY DEFINER');
SELECT is((SELECT array_agg(p.oid::regprocedure::text ORDER BY 1) FROM pg_proc p
            WHERE p.pronamespace IN ('moverz_batch'::regnamespace, 'moverz_api'::regnamespace,
                                     'moverz_batch_internal'::regnamespace)
              AND p.prosecdef
              AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)),
          NULL, 'every SECURITY DEFINER function pins search_path to pg_catalog, pg_temp');
SELECT is((SELECT array_agg(t.tgrelid::regclass::text || '.' || t.tgname ORDER BY 1) FROM pg_trigger t
             JOIN pg_proc p ON p.oid = t.tgfoid
            WHERE NOT t.tgisinternal AND p.pronamespace = 'moverz_batch_internal'::regnamespace
              AND NOT p.prosecdef),
          NULL, 'every trigger function is SECURITY DEFINER (they run for moverz_app''s own writes)');

-- A trusted application, through the public API only.
CREATE TEMP TABLE ids AS
SELECT pg_temp.as_role('mb_tap_app', $$SELECT moverz_batch.create_project('tap-app', 'p')$$)::uuid AS project_id,
       NULL::uuid AS batch_id;
GRANT SELECT ON ids TO mb_tap_app;
UPDATE ids SET batch_id = pg_temp.as_role('mb_tap_app',
    $$SELECT moverz_batch.create_batch((SELECT project_id FROM ids), 'tap-app',
                '[{"url": "https://img.example/a.jpg", "filename": "a.jpg"},
                  {"url": "https://img.example/b.jpg", "filename": "b.jpg"}]')$$)::uuid;
SELECT is(pg_temp.as_role('mb_tap_app',
              $$SELECT moverz_batch.batch_progress((SELECT batch_id FROM ids)) ->> 'status'$$),
          'QUEUED', 'moverz_app creates a batch and reads its progress');
SELECT alike(pg_temp.as_role('mb_tap_app',
              $$SELECT moverz_batch_internal.claim_photos(1, 1, 10, 60000, 0)::text$$),
            'ERROR 42501: permission denied for schema moverz_batch_internal%',
            'moverz_app cannot call the workers'' functions');
SELECT alike(pg_temp.as_role('mb_tap_app', $$SELECT moverz_batch_internal.api_user()$$),
            'ERROR 42501: permission denied for schema moverz_batch_internal%',
            'nor the HTTP API''s helpers');
-- its own write fires the (SECURITY DEFINER) count triggers
SELECT is(pg_temp.as_role('mb_tap_app',
              $$WITH u AS (UPDATE moverz_batch.photos SET status = 'CANCELLED'
                            WHERE project_id = (SELECT project_id FROM ids) RETURNING batch_id)
                SELECT count(*) FROM u$$),
          '2', 'moverz_app updates photos directly');
SELECT is((SELECT format('%s %s/%s', b.status, b.count_cancelled, b.count_queued) FROM moverz_batch.batches b
            WHERE b.project_id = (SELECT project_id FROM ids)),
          'CANCELLED 2/0', 'and the triggers keep its batch''s counters and status');
SELECT is(pg_temp.as_role('mb_tap_app',
              $$SELECT moverz_batch.project_inventory((SELECT project_id FROM ids)) ->> 'totalItems'$$),
          '0', 'moverz_app reads a project''s inventory');

SELECT * FROM finish();
ROLLBACK;
