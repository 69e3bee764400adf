-- moverz_batch 0.5.0 -> 0.6.0
--
-- A photo submitted again while its first copy still waits or is in flight
-- in another open batch of the project waits for that copy's analysis
-- instead of being sent and paid twice (issue #20): insert_photos calls the
-- new wait_for_copies_in_flight; cancel_batch sends such copies on their
-- own; a retry of a copy that took another batch's failure analyses it.
-- Live progress for web clients (issue #17): notify_progress also queues
-- each committed change for the progress publisher (publish_after_commit,
-- publish_status); the stream's authorisation and the operator dashboard's
-- functions (moverz_api.stream_auth, moverz_api.admin_*, role
-- moverz_operator).  HTTP edges (issue #18): POST /api/batches/:id/cancel
-- (moverz_api.cancel_batch), priority HIGH for members of moverz_priority
-- only, a request without a token told 401 "a JWT is required";
-- pause_processing / resume_processing return true once done (resume
-- returned false) and log a change of state.
-- test/e2e/70_upgrade.sh checks that an updated 0.5.0 (and every earlier
-- release) has exactly the objects of a fresh 0.6.0.

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION moverz_batch UPDATE TO '0.6.0'" to load this file. \quit

-- insert_photos: one photo per asset.  A photo whose checksum matches a
-- photo already DONE in the project, one still waiting or in flight in
-- another open batch of the project, or an earlier photo of the same batch,
-- is a duplicate: it is never sent to the AI; it takes the analysis of the
-- DONE one at once, or the outcome of the other one when that finishes
-- (complete_photos, settle_duplicates), and its items are not counted
-- again.  The copies in flight are looked for only when the project has
-- another open batch (wait_for_copies_in_flight).  plpgsql, so that
-- its plan is cached (a SQL function's is made again at every call); the
-- plan is generic (create_batch).  The DONE original is looked up per photo
-- on (project_id, checksum) of photos_project_idx: a generic plan of
-- "checksum = ANY (all the checksums)" could filter the whole project's
-- photos instead, when planned while the index was small.  And with
-- enable_seqscan = off: planned while photos was empty (a fresh install, or
-- after TRUNCATE and ANALYZE), the lookup became a sequential scan of photos
-- per asset, kept for the session: the second batch of 1,000 photos took
-- 106 ms instead of 12 (quadratic in the batch size).
CREATE OR REPLACE FUNCTION insert_photos(p_batch_id uuid, p_project_id uuid, p_user_id text,
                              p_priority batch_priority, assets jsonb)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off SET jit = off AS $$
BEGIN
INSERT INTO moverz_batch.photos (id, batch_id, position, project_id, user_id, filename, file_path,
                                 url, room_type, checksum, priority, duplicate_of, status,
                                 analysis, finished_at)
SELECT a.id, p_batch_id, a.position, p_project_id, p_user_id, a.filename,
       a.file_path, a.url, coalesce(a.room_type, pr.room_type),
       a.checksum, p_priority,
       coalesce(pr.id, a.first_id),
       CASE WHEN pr.id IS NOT NULL THEN 'DONE' ELSE 'PENDING' END::moverz_batch.photo_status,
       pr.analysis, CASE WHEN pr.id IS NOT NULL THEN now() END
  FROM moverz_batch.asset_rows(assets) AS a
  LEFT JOIN LATERAL (
      SELECT p.id, p.analysis, p.room_type
        FROM moverz_batch.photos p
       WHERE p.project_id = p_project_id AND p.checksum = a.checksum
         AND p.status = 'DONE' AND p.duplicate_of IS NULL
       ORDER BY p.finished_at, p.id
       LIMIT 1
         -- the original stays until this commits (a purge waits)
         FOR KEY SHARE) AS pr ON true;
    IF EXISTS (SELECT 1 FROM moverz_batch.batches b
                WHERE b.project_id = p_project_id AND b.status IN ('QUEUED', 'PROCESSING')
                  AND b.id <> p_batch_id) THEN
        PERFORM moverz_batch.wait_for_copies_in_flight(p_batch_id, p_project_id);
    END IF;
END
$$;

-- wait_for_copies_in_flight: the new photos of a batch (still PENDING, not
-- duplicates) whose checksum matches a photo waiting or in flight in another
-- open batch of the project become duplicates of it: they wait for its
-- outcome instead of being sent and paid a second time (issue #20).  Called
-- by insert_photos only when the project has another open batch, so that a
-- submission to an idle project costs nothing more, and without an index of
-- its own: a partial index of the open photos by checksum cost every photo
-- two more index insertions (its creation and its claim), 17 % of scenario
-- A's throughput.  The photos of the open batches are read through
-- photos_batch_position and matched by hash (enable_nestloop = off: a
-- nested loop made it quadratic, 37 s for two batches of 1,000).
-- The originals are locked FOR SHARE until this commits: their write-back,
-- which settles their duplicates, waits for it and then sees these.  An
-- original whose write-back committed while this waited comes back DONE (its
-- new version is re-checked): its duplicates take its analysis at once.  One
-- that ended ERROR meanwhile is no longer matched: the new photo is sent.
-- Two batches of the same photo created at the same instant (neither sees
-- the other uncommitted) are both sent.  Lock order: the other batches'
-- photos only (their batches are not locked; see cancel_batch).
CREATE OR REPLACE FUNCTION wait_for_copies_in_flight(p_batch_id uuid, p_project_id uuid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off SET enable_nestloop = off SET jit = off AS $$
DECLARE
    v_final uuid[];
BEGIN
    WITH mine AS MATERIALIZED (
        SELECT DISTINCT m.checksum FROM moverz_batch.photos m
         WHERE m.batch_id = p_batch_id AND m.status = 'PENDING' AND m.duplicate_of IS NULL),
    originals AS (
        SELECT o.id, o.checksum, o.status
          FROM moverz_batch.batches b
          JOIN moverz_batch.photos o ON o.batch_id = b.id
          JOIN mine ON mine.checksum = o.checksum
         WHERE b.project_id = p_project_id AND b.status IN ('QUEUED', 'PROCESSING') AND b.id <> p_batch_id
           AND o.status IN ('PENDING', 'PROCESSING', 'DONE') AND o.duplicate_of IS NULL
         ORDER BY o.id          -- locked in id order, as cancel_batch locks them
           FOR SHARE OF o),
    marked AS (
        UPDATE moverz_batch.photos n
           SET duplicate_of = c.id, updated_at = now()
          FROM originals c
         WHERE n.batch_id = p_batch_id AND n.checksum = c.checksum
           -- the later copies within this batch too (they pointed at its
           -- first): settle_duplicates settles one level
           AND n.status = 'PENDING'
        RETURNING c.id, c.status)
    SELECT array_agg(DISTINCT m.id) FILTER (WHERE m.status = 'DONE') INTO v_final FROM marked m;
    PERFORM moverz_batch.settle_duplicates(v_final);
END
$$;

-- reopen_photos: ERROR photos of one batch (all, or one) back to PENDING;
-- the batch re-opened for exactly one new inventory sync once it finishes
-- again.  Returns the number of photos sent back.  Lock order (the one of
-- every path, see cancel_batch): the photos, then their batch; the batch
-- is read after the photos' locks, so a cancel that committed meanwhile is
-- seen.
CREATE OR REPLACE FUNCTION reopen_photos(p_batch_id uuid, p_photo_id uuid) RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_status moverz_batch.batch_status;
    v_n int;
BEGIN
    PERFORM 1 FROM moverz_batch.photos p
     WHERE p.batch_id = p_batch_id AND p.status = 'ERROR'
       AND (p_photo_id IS NULL OR p.id = p_photo_id OR p.duplicate_of = p_photo_id)
     ORDER BY p.id
       FOR UPDATE;
    SELECT b.status INTO v_status FROM moverz_batch.batches b WHERE b.id = p_batch_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM moverz_batch.raise_not_found('batch_id', p_batch_id, 'batch');
    ELSIF v_status = 'CANCELLED' THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = format('batch %s is CANCELLED: its photos cannot be retried', p_batch_id);
    END IF;
    UPDATE moverz_batch.photos p
       SET status = 'PENDING', attempts = 0, next_attempt_at = now(), error_code = NULL,
           error_message = NULL, claimed_by = NULL, claim_token = NULL, lease_until = NULL,
           finished_at = NULL, updated_at = now(),
           -- a copy that took the failure of a photo of another batch is
           -- analysed on its own this time
           duplicate_of = CASE WHEN (SELECT o.batch_id FROM moverz_batch.photos o WHERE o.id = p.duplicate_of)
                                    = p.batch_id THEN p.duplicate_of END
     WHERE p.batch_id = p_batch_id AND p.status = 'ERROR'
       AND (p_photo_id IS NULL OR p.id = p_photo_id OR p.duplicate_of = p_photo_id);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n > 0 THEN
        UPDATE moverz_batch.batches b
           SET inventory_queued = false, inventory_generation = b.inventory_generation + 1,
               completed_at = NULL
         WHERE b.id = p_batch_id;
        PERFORM moverz_batch.wake_photo_workers();
    END IF;
    RETURN v_n;
END
$$;

-- cancel_batch: stop a batch.  Its pending photos are never sent (nor
-- those a worker claimed ahead and holds, unsent), its
-- photos in flight are cancelled too (a result arriving later changes
-- nothing), and the batch ends CANCELLED, a terminal state: the inventory
-- of its DONE photos is synced once.  Returns the number of photos
-- cancelled.  A batch already finished cannot be cancelled.
--
-- THE LOCK ORDER, of every path that locks photos and their batch: the
-- photos first (by id when it locks many), then the batch row.  A claim
-- (SKIP LOCKED photos, then the batch counters), a write-back (its photos,
-- then the counters), cancel_batch, retry_batch / retry_photo
-- (reopen_photos), purge and the deletion of a project (its BEFORE DELETE
-- trigger locks the photos before the batches go) all follow it, so no two
-- of them deadlock.  Photos of another batch that are copies of these
-- (duplicates waiting for them) come last, after the batch: create_batch
-- locks the originals it waits for FOR SHARE (wait_for_copies_in_flight),
-- a write-back settles the copies of its photos (settle_duplicates), and
-- cancel_batch releases them.  cancel_batch locks every photo of the batch that a
-- retry could reopen (ERROR ones too), so a retry committed while it waited
-- is seen by its UPDATE (a statement of its own, with a new snapshot), and
-- a retry that comes after it finds the batch CANCELLED.
CREATE OR REPLACE FUNCTION cancel_batch(batch_id uuid) RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_status moverz_batch.batch_status;
    v_n int;
BEGIN
    SELECT b.status INTO v_status FROM moverz_batch.batches b WHERE b.id = cancel_batch.batch_id;
    IF NOT FOUND THEN
        PERFORM moverz_batch.raise_not_found('batch_id', cancel_batch.batch_id, 'batch');
    END IF;
    PERFORM 1 FROM moverz_batch.photos p
     WHERE p.batch_id = cancel_batch.batch_id AND p.status IN ('PENDING', 'PROCESSING', 'ERROR')
     ORDER BY p.id
       FOR UPDATE;
    UPDATE moverz_batch.photos p
       SET status = 'CANCELLED', claimed_by = NULL, claim_token = NULL, lease_until = NULL,
           finished_at = now(), updated_at = now()
     WHERE p.batch_id = cancel_batch.batch_id AND p.status IN ('PENDING', 'PROCESSING');
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n = 0 THEN
        SELECT b.status INTO v_status FROM moverz_batch.batches b WHERE b.id = cancel_batch.batch_id;
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = format('batch %s is already %s and cannot be cancelled', cancel_batch.batch_id, v_status);
    END IF;
    UPDATE moverz_batch.batches b SET cancelled_at = now() WHERE b.id = cancel_batch.batch_id;
    -- the copies in other batches that waited for one of these photos are
    -- sent on their own.  They are locked last, after this batch: a copy
    -- that waits is never claimed, and its original's write-back, the only
    -- other path that reaches it, needs the original, locked here.
    UPDATE moverz_batch.photos d SET duplicate_of = NULL, updated_at = now()
      FROM moverz_batch.photos o
     WHERE o.batch_id = cancel_batch.batch_id AND o.status = 'CANCELLED'
       AND d.duplicate_of = o.id AND d.duplicate_of IS NOT NULL
       AND d.batch_id <> cancel_batch.batch_id AND d.status = 'PENDING';
    IF FOUND THEN
        PERFORM moverz_batch.wake_photo_workers();
    END IF;
    -- photos of this batch a worker claimed ahead are not sent either
    PERFORM moverz_batch.recall_claimed_photos();
    RETURN v_n;
END
$$;

-- the new function, as the install script's privileges make it (70_http_api.sql)
GRANT EXECUTE ON FUNCTION wait_for_copies_in_flight(uuid, uuid) TO moverz_app;
REVOKE EXECUTE ON FUNCTION wait_for_copies_in_flight(uuid, uuid) FROM PUBLIC;

-- publish_after_commit: queue the batch's state for the web clients' live
-- progress when this transaction commits (src/publish_queue.c: nothing
-- before the commit, nothing if it aborts; the progress publisher POSTs it
-- to Nchan, and after a final event closes the batch's channel).  Nothing
-- when moverz_batch.publish_url is empty.
CREATE FUNCTION publish_after_commit(batch_id uuid, state text, final boolean) RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'moverz_publish_after_commit';

-- publish_status(): the progress publisher's figures: events waiting,
-- delivered to Nchan, dropped because the queue was full, not taken by
-- Nchan, the last failure, and whether the publisher runs.
CREATE FUNCTION publish_status(OUT queued bigint, OUT published bigint, OUT dropped bigint,
                               OUT failed bigint, OUT last_failure_at timestamptz,
                               OUT last_failure text, OUT running boolean)
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'moverz_publish_status';

-- notify_progress: notify the state of one batch, unless this transaction
-- already did.  The batches notified are remembered in a transaction-local
-- setting.  With publishing on, the same change is queued for Nchan with
-- the state it commits (progress_payload and the notification's txid, so
-- that a stream event and a notification match one to one); the final one
-- is the change that makes a finished batch's inventory ready.
CREATE OR REPLACE FUNCTION notify_progress(p_batch_id uuid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_done text := coalesce(current_setting('moverz_notify.batches', true), '');
    v_txid bigint;
    v_state jsonb;
BEGIN
    IF position(p_batch_id::text IN v_done) > 0 THEN
        RETURN;
    END IF;
    PERFORM set_config('moverz_notify.batches', v_done || p_batch_id::text || ',', true);
    v_txid := pg_catalog.txid_current();
    PERFORM pg_notify('moverz_batch_progress',
                      jsonb_build_object('batchId', p_batch_id, 'txid', v_txid)::text);
    IF current_setting('moverz_batch.publish_url') <> '' THEN
        v_state := moverz_batch.progress_payload(p_batch_id)::jsonb || jsonb_build_object('txid', v_txid);
        PERFORM moverz_batch.publish_after_commit(p_batch_id, v_state::text,
            (v_state ->> 'inventoryReady')::boolean
            AND moverz_batch.is_terminal((v_state ->> 'status')::moverz_batch.batch_status));
    END IF;
END
$$;

REVOKE ALL ON FUNCTION publish_after_commit(uuid, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION publish_status() FROM PUBLIC;

-- api_user: jwt_user_id(), or HTTP 401 when there is no token (the
-- request ran as moverz_anon, which may call the API functions only to be
-- told this), when the token names no user, or when it never expires (no
-- "exp" claim: PostgREST refuses an expired token, but accepts one without
-- "exp" for ever).
CREATE OR REPLACE FUNCTION api_user() RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_user text := moverz_batch.jwt_user_id();
BEGIN
    -- PostgREST ran the request as its anonymous role (no token, or one
    -- without a role claim); "role" is the caller's, also in a SECURITY
    -- DEFINER function
    IF current_setting('role', true) = 'moverz_anon' THEN
        RAISE EXCEPTION USING ERRCODE = 'PT401',
            MESSAGE = 'a JWT is required: send "Authorization: Bearer <token>"',
            HINT = 'The user is the token''s "sub" claim (HS256, claims role, sub and exp); '
                   'an x-user-id header is not read.';
    ELSIF v_user IS NULL OR btrim(v_user) = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'PT401', MESSAGE = 'the token names no user (no "sub" claim)',
            HINT = 'Sign a JWT with {"role": "moverz_user", "sub": "<user id>", "exp": <expiry>}.';
    ELSIF octet_length(v_user) > 255 THEN
        RAISE EXCEPTION USING ERRCODE = 'PT401', MESSAGE = 'the token''s "sub" claim is longer than 255 bytes';
    ELSIF jsonb_typeof(current_setting('request.jwt.claims', true)::jsonb -> 'exp') IS DISTINCT FROM 'number' THEN
        RAISE EXCEPTION USING ERRCODE = 'PT401', MESSAGE = 'the token never expires (no "exp" claim)',
            HINT = 'Sign the JWT with an "exp" claim: seconds since 1970, e.g. one hour from now.';
    END IF;
    RETURN v_user;
END
$$;

-- api_check_priority: HIGH jumps every queue: only a token whose role is a
-- member of moverz_priority may ask for it (HTTP 403 naming the field);
-- NORMAL and LOW are for everyone.
CREATE FUNCTION api_check_priority(p_priority text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    -- the request's role, as PostgREST set it from the token ("role" is
    -- the caller's, also in a SECURITY DEFINER function)
    v_role text := current_setting('role', true);
BEGIN
    IF p_priority = 'HIGH'
       AND NOT coalesce(EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = v_role
                                   AND pg_catalog.pg_has_role(r.oid, 'moverz_priority', 'MEMBER')), false) THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = 'priority HIGH is reserved to roles granted moverz_priority',
            HINT = 'Send NORMAL or LOW, or ask an administrator for a token whose role is a member of moverz_priority.';
    END IF;
END
$$;

-- moverz_api.create_batch: POST /rpc/create_batch (nginx: POST /api/batches)
-- with the seed's body {"projectId", "imageUrls": [{"filename", "filePath",
-- "url", "roomType"?}], "priority"?} and an optional Idempotency-Key header.
-- 202 Accepted, Location: /api/batches/<id>, {"success": true, "batchId",
-- "photosCount", "jobsEnqueued"}.  The same key and body answer the same
-- (with Idempotent-Replayed: true); the same key and another body 409.
CREATE OR REPLACE FUNCTION moverz_api.create_batch(jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_user text := moverz_batch.api_user();
    v_project uuid;
    v_batch uuid;
    v_state text;
    v_msg text;
    v_hint text;
    b record;
BEGIN
    PERFORM moverz_batch.api_check_body($1, '{"projectId", "imageUrls"}');
    v_project := moverz_batch.api_body_uuid($1, 'projectId');
    IF jsonb_typeof($1 -> 'priority') NOT IN ('string', 'null') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'priority must be one of HIGH, NORMAL, LOW';
    END IF;
    PERFORM moverz_batch.api_check_priority($1 ->> 'priority');
    BEGIN
        v_batch := moverz_batch.create_batch(v_project, v_user, $1 -> 'imageUrls',
                                             coalesce($1 ->> 'priority', 'NORMAL'),
                                             moverz_batch.request_header('idempotency-key'));
    EXCEPTION WHEN data_exception OR no_data_found OR program_limit_exceeded OR unique_violation THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT;
        PERFORM moverz_batch.api_raise(v_state, v_msg, v_hint);
    WHEN configuration_limit_exceeded THEN
        -- the daily photo quota: 429 Too Many Requests with Retry-After
        GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT, v_state = PG_EXCEPTION_DETAIL;
        RAISE SQLSTATE 'PGRST' USING
            MESSAGE = jsonb_build_object('code', '53400', 'message', v_msg, 'hint', v_hint, 'details', NULL)::text,
            DETAIL = jsonb_build_object('status', 429, 'status_text', 'Too Many Requests',
                                        'headers', jsonb_build_object('Retry-After', substr(v_state, 15)))::text;
    END;
    SELECT x.id, x.created_at <> now() AS replayed,
           x.count_queued + x.count_processing + x.count_completed + x.count_failed AS n
      INTO b FROM moverz_batch.batches x WHERE x.id = v_batch;
    SET CONSTRAINTS ALL IMMEDIATE;   -- deferred triggers fire here, as the owner
    PERFORM set_config('response.status', '202', true);
    PERFORM set_config('response.headers',
        (jsonb_build_array(jsonb_build_object('Location', '/api/batches/' || b.id))
        || CASE WHEN b.replayed THEN '[{"Idempotent-Replayed": "true"}]'::jsonb ELSE '[]' END)::text, true);
    RETURN jsonb_build_object('success', true, 'batchId', b.id, 'photosCount', b.n, 'jobsEnqueued', b.n);
END
$$;

-- moverz_api.cancel_batch: POST /rpc/cancel_batch {"id"} (nginx: POST
-- /api/batches/:id/cancel): cancel_batch.  200 {"success": true, "batchId",
-- "photosCancelled"}; 404 as get_batch; 409 for a batch already finished.
CREATE FUNCTION moverz_api.cancel_batch(id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_n int;
    v_msg text;
BEGIN
    PERFORM moverz_batch.api_owned_batch(cancel_batch.id, moverz_batch.api_user());
    BEGIN
        v_n := moverz_batch.cancel_batch(cancel_batch.id);
    EXCEPTION WHEN object_not_in_prerequisite_state THEN
        GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
        RAISE EXCEPTION USING ERRCODE = 'PT409', MESSAGE = v_msg;
    END;
    SET CONSTRAINTS ALL IMMEDIATE;   -- deferred triggers fire here, as the owner
    RETURN jsonb_build_object('success', true, 'batchId', cancel_batch.id, 'photosCancelled', v_n);
END
$$;

-- the new functions, as the install script's privileges make them (70_http_api.sql)
GRANT EXECUTE ON FUNCTION api_check_priority(text) TO moverz_app;
REVOKE EXECUTE ON FUNCTION api_check_priority(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION moverz_api.cancel_batch(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION moverz_api.cancel_batch(uuid) TO moverz_user;
-- a request without a token is told 401 by api_user(), not "permission denied"
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA moverz_api TO moverz_anon;

-- pause_processing / resume_processing: stop claiming photos (requests in
-- flight finish normally; photos claimed ahead and not sent are handed
-- back) and start again, without a restart; the switch survives restarts.
-- Each returns true once done: processing is now paused (pause), or
-- running (resume); calling either twice is harmless.  (Before 0.6.0
-- resume_processing returned false, "not paused", which read as a
-- failure.)
CREATE OR REPLACE FUNCTION pause_processing() RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE moverz_batch.control SET paused = true, paused_at = now() WHERE NOT paused;
    IF FOUND THEN
        RAISE LOG 'moverz_batch: processing paused by %', session_user;
    END IF;
    PERFORM moverz_batch.recall_claimed_photos();
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION resume_processing() RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE moverz_batch.control SET paused = false, paused_at = NULL WHERE paused;
    IF FOUND THEN
        RAISE LOG 'moverz_batch: processing resumed by %', session_user;
    END IF;
    PERFORM moverz_batch.wake_photo_workers();
    RETURN true;
END
$$;

-- The browser side of the HTTP API: the authorisation of a live progress
-- stream (nginx's Nchan module asks it for each subscriber, http/nginx.conf)
-- and the operator dashboard's functions (web/admin/).
--
-- Roles (cluster-wide, created here only when absent):
--   moverz_operator  the JWT role of operators.  PostgREST's authenticator
--                    may take it; it executes the moverz_api.admin_*
--                    functions and nothing else, and moverz_user none of
--                    them (a customer token gets 403);
--   moverz_priority  granted to nobody: a JWT role that is a member of it
--                    may create HIGH priority batches (api_check_priority).
-- The API's errors are logged by the server in one line each, without the
-- statement of the request (PostgREST's, with the whole body: up to 4 MB
-- of photo URLs) for the sessions of the authenticator.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'moverz_operator') THEN
        CREATE ROLE moverz_operator NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'moverz_priority') THEN
        CREATE ROLE moverz_priority NOLOGIN;
    END IF;
    IF NOT pg_catalog.pg_has_role('moverz_authenticator', 'moverz_operator', 'MEMBER') THEN
        GRANT moverz_operator TO moverz_authenticator;
    END IF;
    ALTER ROLE moverz_authenticator SET log_min_error_statement = 'panic';
END
$$;

-- moverz_api.stream_auth: GET /rpc/stream_auth?id= , nginx's subrequest
-- before a client follows GET /api/batches/:id/stream.  200 and the
-- batch's state when the caller may follow it; 404 as get_batch for an
-- unknown batch or another user's; 410 Gone when the batch has finished
-- and its inventory is ready (its stream has ended; the final state is in
-- "details", GET /api/batches/:id has all of it).
CREATE FUNCTION moverz_api.stream_auth(id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_state jsonb;
BEGIN
    PERFORM moverz_batch.api_owned_batch(stream_auth.id, moverz_batch.api_user());
    v_state := moverz_batch.progress_payload(stream_auth.id)::jsonb;
    IF (v_state ->> 'inventoryReady')::boolean
       AND moverz_batch.is_terminal((v_state ->> 'status')::moverz_batch.batch_status) THEN
        RAISE EXCEPTION USING ERRCODE = 'PT410',
            MESSAGE = format('batch %s has finished: its stream has ended', stream_auth.id),
            DETAIL = v_state::text,
            HINT = format('GET /api/batches/%s returns its final state.', stream_auth.id);
    END IF;
    RETURN v_state;
END
$$;

-- admin_check_limit: "maxRows" of an admin list, 1..500 (not "limit":
-- PostgREST keeps that query parameter for itself).
CREATE FUNCTION admin_check_limit(p_limit int) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 500 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('maxRows must be between 1 and 500 (got %s)', coalesce(p_limit::text, 'NULL'));
    END IF;
END
$$;

-- moverz_api.admin_overview: GET /rpc/admin_overview: queue_overview, and
-- the photos analysed per minute over the last 30 minutes (every minute,
-- oldest first, from ai_metrics).
CREATE FUNCTION moverz_api.admin_overview() RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
SELECT jsonb_build_object(
    'queue', (SELECT jsonb_build_object('pending', q.pending, 'waitingRetry', q.waiting_retry,
                                        'inFlight', q.in_flight, 'done', q.done, 'failed', q.failed,
                                        'cancelled', q.cancelled,
                                        'oldestPendingAgeSeconds', round(extract(epoch FROM q.oldest_pending_age)),
                                        'paused', q.paused, 'aiUnreachableSince', q.ai_unreachable_since,
                                        'aiProbes', q.ai_probes)
                FROM moverz_batch.queue_overview q),
    'throughput', (SELECT jsonb_agg(jsonb_build_object('minute', m.minute, 'photos', coalesce(c.n, 0))
                                    ORDER BY m.minute)
                     FROM generate_series(date_trunc('minute', now()) - interval '29 minutes',
                                          date_trunc('minute', now()), interval '1 minute') AS m(minute)
                     LEFT JOIN (SELECT date_trunc('minute', a.created_at) AS minute,
                                       count(*) FILTER (WHERE a.success) AS n
                                  FROM moverz_batch.ai_metrics a
                                 WHERE a.created_at >= date_trunc('minute', now()) - interval '29 minutes'
                                 GROUP BY 1) AS c ON c.minute = m.minute))
$$;

-- moverz_api.admin_batches: GET /rpc/admin_batches?status=&userId=&
-- maxAgeHours=&maxRows=: batches_overview, newest first, filtered, with the
-- AI calls and their cost.
CREATE FUNCTION moverz_api.admin_batches(status text DEFAULT NULL, "userId" text DEFAULT NULL,
                                         "maxAgeHours" int DEFAULT NULL, "maxRows" int DEFAULT 50)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM moverz_batch.admin_check_limit("maxRows");
    IF admin_batches.status IS NOT NULL
       AND admin_batches.status NOT IN (SELECT unnest(enum_range(NULL::moverz_batch.batch_status))::text) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('status must be one of %s (got %s)',
                             array_to_string(enum_range(NULL::moverz_batch.batch_status), ', '),
                             moverz_batch.echo_value(admin_batches.status));
    END IF;
    IF "maxAgeHours" IS NOT NULL AND "maxAgeHours" < 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('maxAgeHours must be at least 1 (got %s)', "maxAgeHours");
    END IF;
    RETURN jsonb_build_object('batches', coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'batchId', o.batch_id, 'userId', o.user_id, 'projectId', o.project_id, 'status', o.status,
                   'priority', o.priority, 'queued', o.queued, 'processing', o.processing,
                   'completed', o.completed, 'failed', o.failed, 'cancelled', o.cancelled, 'total', o.total,
                   'progress', o.progress, 'totalItems', o.total_items, 'totalVolume', o.total_volume,
                   'createdAt', o.created_at, 'completedAt', o.completed_at,
                   'calls', coalesce(m.calls, 0), 'costUsd', coalesce(m.total_cost_usd, 0))
                   ORDER BY o.created_at DESC)
          FROM (SELECT * FROM moverz_batch.batches_overview x
                 WHERE (admin_batches.status IS NULL OR x.status::text = admin_batches.status)
                   AND ("userId" IS NULL OR x.user_id = "userId")
                   AND ("maxAgeHours" IS NULL OR x.created_at > now() - make_interval(hours => "maxAgeHours"))
                 ORDER BY x.created_at DESC
                 LIMIT "maxRows") AS o
          LEFT JOIN moverz_batch.batch_ai_metrics m ON m.batch_id = o.batch_id), '[]'));
END
$$;

-- moverz_api.admin_batch_photos: GET /rpc/admin_batch_photos?id=: every
-- photo of a batch with its attempts and errors; 404 for an unknown batch.
CREATE FUNCTION moverz_api.admin_batch_photos(id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM 1 FROM moverz_batch.batches b WHERE b.id = admin_batch_photos.id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = 'batch not found';
    END IF;
    RETURN jsonb_build_object('batchId', admin_batch_photos.id, 'photos', coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'id', p.id, 'position', p.position, 'filename', p.filename, 'url', p.url,
                   'status', p.status, 'roomType', p.room_type, 'attempts', p.attempts,
                   'errorCode', p.error_code, 'errorMessage', p.error_message,
                   'duplicateOf', p.duplicate_of, 'finishedAt', p.finished_at) ORDER BY p.position)
          FROM moverz_batch.photos p WHERE p.batch_id = admin_batch_photos.id), '[]'));
END
$$;

-- moverz_api.admin_failed_photos: GET /rpc/admin_failed_photos?maxRows=:
-- failed_photos, newest first.
CREATE FUNCTION moverz_api.admin_failed_photos("maxRows" int DEFAULT 50) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM moverz_batch.admin_check_limit("maxRows");
    RETURN jsonb_build_object('photos', coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'photoId', f.photo_id, 'batchId', f.batch_id, 'userId', f.user_id,
                   'filename', f.filename, 'url', f.url, 'errorCode', f.error_code,
                   'errorMessage', f.error_message, 'attempts', f.attempts, 'finishedAt', f.finished_at)
                   ORDER BY f.finished_at DESC)
          FROM (SELECT * FROM moverz_batch.failed_photos LIMIT "maxRows") AS f), '[]'));
END
$$;

-- admin_act: retry_photo or cancel_batch for the operators' API: an unknown
-- id is 404, a photo or batch whose state forbids it 409, with the SQL
-- API's message.
CREATE FUNCTION admin_act(p_action text, p_id uuid) RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_state text;
    v_msg text;
BEGIN
    IF p_action = 'retry_photo' THEN
        RETURN moverz_batch.retry_photo(p_id);
    END IF;
    RETURN moverz_batch.cancel_batch(p_id);
EXCEPTION WHEN no_data_found OR object_not_in_prerequisite_state THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
    PERFORM moverz_batch.api_raise(CASE v_state WHEN '55000' THEN 'PT409' ELSE v_state END, v_msg, NULL);
    RETURN NULL;
END
$$;

-- moverz_api.admin_retry_photo: POST /rpc/admin_retry_photo {"photoId"}:
-- retry_photo (the photo and its duplicates back to PENDING).
CREATE FUNCTION moverz_api.admin_retry_photo("photoId" uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_n int := moverz_batch.admin_act('retry_photo', "photoId");
BEGIN
    SET CONSTRAINTS ALL IMMEDIATE;   -- deferred triggers fire here, as the owner
    RETURN jsonb_build_object('photosRequeued', v_n);
END
$$;

-- moverz_api.admin_cancel_batch: POST /rpc/admin_cancel_batch {"batchId"}:
-- cancel_batch; 409 for a batch already finished.
CREATE FUNCTION moverz_api.admin_cancel_batch("batchId" uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_n int := moverz_batch.admin_act('cancel_batch', "batchId");
BEGIN
    SET CONSTRAINTS ALL IMMEDIATE;
    RETURN jsonb_build_object('photosCancelled', v_n);
END
$$;

-- moverz_api.admin_pause / admin_resume: POST /rpc/admin_pause {} and
-- /rpc/admin_resume {}: pause_processing / resume_processing.
CREATE FUNCTION moverz_api.admin_pause() RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
SELECT jsonb_build_object('paused', moverz_batch.pause_processing())
$$;

CREATE FUNCTION moverz_api.admin_resume() RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
SELECT jsonb_build_object('paused', NOT moverz_batch.resume_processing())
$$;

-- moverz_api.admin_workers: GET /rpc/admin_workers: worker_status.
CREATE FUNCTION moverz_api.admin_workers() RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
SELECT jsonb_build_object('workers', coalesce(jsonb_agg(jsonb_build_object(
           'kind', w.kind, 'worker', w.worker, 'pid', w.pid, 'inflight', w.inflight, 'done', w.done,
           'failed', w.failed, 'lastError', w.last_error, 'lastErrorAt', w.last_error_at, 'since', w.since)
           ORDER BY w.kind, w.worker), '[]'))
  FROM moverz_batch.worker_status w
$$;

-- moverz_api.admin_costs: GET /rpc/admin_costs: AI calls and their cost per
-- day (30 days) and per batch (the 50 newest batches that made calls).
CREATE FUNCTION moverz_api.admin_costs() RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
SELECT jsonb_build_object(
    'perDay', (SELECT coalesce(jsonb_agg(jsonb_build_object('day', d.day, 'calls', d.calls, 'costUsd', d.cost)
                                         ORDER BY d.day DESC), '[]')
                 FROM (SELECT date_trunc('day', a.created_at)::date AS day, count(*) AS calls,
                              coalesce(sum(a.cost_usd), 0) AS cost
                         FROM moverz_batch.ai_metrics a
                        WHERE a.created_at >= date_trunc('day', now()) - interval '29 days'
                        GROUP BY 1) AS d),
    'perBatch', (SELECT coalesce(jsonb_agg(jsonb_build_object('batchId', m.batch_id, 'calls', m.calls,
                                                              'costUsd', m.total_cost_usd,
                                                              'avgLatencyMs', m.avg_latency_ms)
                                           ORDER BY b.created_at DESC), '[]')
                   FROM (SELECT x.id, x.created_at FROM moverz_batch.batches x
                          WHERE EXISTS (SELECT 1 FROM moverz_batch.ai_metrics a WHERE a.meta ->> 'batchId' = x.id::text)
                          ORDER BY x.created_at DESC LIMIT 50) AS b
                   JOIN moverz_batch.batch_ai_metrics m ON m.batch_id = b.id))
$$;

-- Privileges: the stream's authorisation for moverz_user (and moverz_anon,
-- to be told 401 by api_user()); the admin_*
-- functions for moverz_operator only.
REVOKE ALL ON FUNCTION admin_check_limit(int), admin_act(text, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION moverz_api.stream_auth(uuid), moverz_api.admin_overview(),
    moverz_api.admin_batches(text, text, int, int), moverz_api.admin_batch_photos(uuid),
    moverz_api.admin_failed_photos(int), moverz_api.admin_retry_photo(uuid),
    moverz_api.admin_cancel_batch(uuid), moverz_api.admin_pause(), moverz_api.admin_resume(),
    moverz_api.admin_workers(), moverz_api.admin_costs() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION moverz_api.stream_auth(uuid) TO moverz_user, moverz_anon;
GRANT USAGE ON SCHEMA moverz_api TO moverz_operator;
GRANT EXECUTE ON FUNCTION moverz_api.admin_overview(), moverz_api.admin_batches(text, text, int, int),
    moverz_api.admin_batch_photos(uuid), moverz_api.admin_failed_photos(int),
    moverz_api.admin_retry_photo(uuid), moverz_api.admin_cancel_batch(uuid), moverz_api.admin_pause(),
    moverz_api.admin_resume(), moverz_api.admin_workers(), moverz_api.admin_costs() TO moverz_operator;

-- the comments of every object (sql/src/99_comments.sql)
COMMENT ON SCHEMA moverz_batch IS
    'moverz_batch: batches of AI photo analyses for a moving company: the SQL API, its tables and views, and the functions of the background workers.';

------------------------------------------------------------------------
-- 00_types: types, C entry points.
COMMENT ON TYPE moverz_batch.batch_status IS
    'Status of a batch: QUEUED (all pending), PROCESSING, PARTIAL (some DONE, some ERROR), COMPLETED (all DONE), FAILED (all ERROR), or CANCELLED by cancel_batch.';
COMMENT ON TYPE moverz_batch.photo_status IS
    'Status of one photo: PENDING (waiting, maybe for a retry), PROCESSING (claimed by a worker), DONE (analysed), ERROR (given up) or CANCELLED (its batch was cancelled).';
COMMENT ON TYPE moverz_batch.batch_priority IS
    'Priority of a batch and of its photos: HIGH, NORMAL or LOW. Claims take the highest priority first.';
COMMENT ON DOMAIN moverz_batch.error_code IS
    'Error code of a photo in ERROR: TIMEOUT, RATE_LIMIT, NETWORK_ERROR or AI_ERROR.';
COMMENT ON TYPE moverz_batch.status_delta IS
    'Internal: a change of one batch''s photo counts, per status; built by the photos trigger and added by apply_batch_delta.';

COMMENT ON FUNCTION moverz_batch.wake_photo_workers() IS
    'Internal: wakes the photo workers when the calling transaction commits (nothing without workers); called by create_batch, retry_batch, retry_photo, cancel_batch and resume_processing.';
COMMENT ON FUNCTION moverz_batch.wake_inventory_worker() IS
    'Internal: wakes the inventory worker when the calling transaction commits; called by apply_batch_delta when it enqueues an inventory sync.';
COMMENT ON FUNCTION moverz_batch.recall_claimed_photos() IS
    'Internal: when the calling transaction commits, the photo workers hand back the photos they claimed ahead and have not sent yet; called by cancel_batch, pause_processing and a HIGH priority create_batch.';

------------------------------------------------------------------------
-- 10_tables: projects, batches, photos, inventory, ai_metrics, sync queue.
COMMENT ON TABLE moverz_batch.room_types IS
    'The accepted room types (a photo''s roomType, the room_type the AI answers), with their descriptions. An installation may add its own.';
COMMENT ON TABLE moverz_batch.projects IS
    'Projects of the users (e.g. one move); every batch belongs to one. Created by create_project.';
COMMENT ON TABLE moverz_batch.batches IS
    'Batches of photos created by create_batch: user, project, priority, idempotency key, and the status and per-status photo counts that the photos triggers keep exact.';
COMMENT ON COLUMN moverz_batch.batches.inventory_queued IS
    'Whether the inventory sync of the current generation has been enqueued (once, in the transaction that finishes the batch).';
COMMENT ON COLUMN moverz_batch.batches.inventory_generation IS
    'Grows each time retry_batch or retry_photo re-opens the batch: one inventory sync per generation.';
COMMENT ON COLUMN moverz_batch.batches.request_hash IS
    'Hash of the create_batch payload, to tell a repeated idempotency_key with the same payload from one with another payload.';
COMMENT ON TABLE moverz_batch.photos IS
    'One row per photo of a batch: its URL, status, attempts, the claim of a worker, and its AI analysis or error. The photo workers use it as their queue.';
COMMENT ON COLUMN moverz_batch.photos.position IS
    'Place of the photo in the assets of create_batch (the order of the photos in batch_progress).';
COMMENT ON COLUMN moverz_batch.photos.checksum IS
    'md5(filename || '':'' || url): photos of a project with the same checksum are duplicates.';
COMMENT ON COLUMN moverz_batch.photos.duplicate_of IS
    'The photo whose analysis this duplicate takes (duplicateOf in batch_progress); a duplicate is never sent to the AI. NULL for an original.';
COMMENT ON COLUMN moverz_batch.photos.next_attempt_at IS
    'When the photo may be claimed (again): the retry backoff.';
COMMENT ON COLUMN moverz_batch.photos.claimed_by IS
    'The slot of the photo worker that holds the claim.';
COMMENT ON COLUMN moverz_batch.photos.claim_token IS
    'The incarnation of the worker that holds the claim: a late answer of an earlier incarnation changes nothing.';
COMMENT ON COLUMN moverz_batch.photos.lease_until IS
    'Last-resort expiry of the claim (moverz_batch.lease_timeout).';
COMMENT ON COLUMN moverz_batch.photos.analysis IS
    'The AI analysis of a DONE photo: {room_type, items [{label, quantity, volume_m3}]}.';
COMMENT ON TABLE moverz_batch.inventory_sync_jobs IS
    'Queue of inventory syncs, run by the inventory worker: one job per batch and generation, enqueued when the batch finishes.';
COMMENT ON COLUMN moverz_batch.inventory_sync_jobs.generation IS
    'The batch''s inventory_generation this job syncs; the job is SUPERSEDED when the batch was re-opened since.';
COMMENT ON TABLE moverz_batch.inventory_summaries IS
    'The synced inventory of each finished batch (totalItems, totalVolume, per room), shown by batch_progress as inventorySummary.';
COMMENT ON TABLE moverz_batch.inventory_items IS
    'One row per item of every DONE photo that is not a duplicate, kept current by the photos triggers as photos finish.';
COMMENT ON COLUMN moverz_batch.inventory_items.unit_volume_m3 IS
    'Volume of one unit in m3: the item counts for quantity x unit_volume_m3.';
COMMENT ON TABLE moverz_batch.inventory_rooms IS
    'Per-room totals (items, volume) of each batch, kept current by the photos triggers; the inventory summaries are built from them.';
COMMENT ON COLUMN moverz_batch.inventory_rooms.item_rows IS
    'Number of item rows counted in the room; a room with none is left out of the summaries.';
COMMENT ON TABLE moverz_batch.control IS
    'The processing switch, one row: whether claiming is paused (pause_processing, resume_processing). It survives restarts.';
COMMENT ON COLUMN moverz_batch.control.only_row IS
    'Always true: keeps the table to one row.';
COMMENT ON TABLE moverz_batch.ai_metrics IS
    'One row per AI call: provider, model, latency, success, tokens and cost. Deleted by purge.';
COMMENT ON COLUMN moverz_batch.ai_metrics.meta IS
    'What the call was for and how it went: photoId, userId, batchId, attempt, errorCode, httpStatus, model, promptVersion, outage.';

------------------------------------------------------------------------
-- 20_validation: input rules (AI analyses), error helpers.
COMMENT ON FUNCTION moverz_batch.analysis_error(jsonb) IS
    'Why an AI analysis is not of the contract''s shape (items an array of objects with a label, an integer quantity and a volume_m3), or NULL when it is. SQL-callable C; checks photos.analysis.';
COMMENT ON FUNCTION moverz_batch.echo_value(text) IS
    'Internal: a rejected value as an error message quotes it, 64 characters at most; called by create_batch, check_photo_quota and moverz_api.admin_batches.';
COMMENT ON FUNCTION moverz_batch.raise_not_found(text, uuid, text) IS
    'Internal: raises the error for an id that names nothing (SQLSTATE P0002, a 404 in the HTTP API); called by batch_progress, retry_photo, cancel_batch, sync_inventory, project_inventory and reopen_photos.';

------------------------------------------------------------------------
-- 30_counters: count triggers, status rules, exactly-once inventory enqueue.
COMMENT ON FUNCTION moverz_batch.derive_status(integer, integer, integer, integer, integer) IS
    'Internal: the status of a batch from its photo counts (queued, processing, completed, failed, cancelled), by the status rules; called by apply_batch_delta.';
COMMENT ON FUNCTION moverz_batch.is_terminal(moverz_batch.batch_status) IS
    'Internal: whether a batch status is final (PARTIAL, COMPLETED, FAILED, CANCELLED); called by apply_batch_delta and purge.';
COMMENT ON FUNCTION moverz_batch.status_delta_of(moverz_batch.photo_status, moverz_batch.photo_status) IS
    'Internal: what one photo leaving one status and entering another changes in its batch''s counts; called by photos_counts_trigger.';
COMMENT ON FUNCTION moverz_batch.apply_batch_delta(uuid, moverz_batch.status_delta) IS
    'Internal: adds a count delta to one batch, derives its status and, in the transaction that finishes it, enqueues exactly one inventory sync; called by photos_counts_trigger.';
COMMENT ON FUNCTION moverz_batch.counts_items(moverz_batch.photo_status, uuid, jsonb) IS
    'Internal: whether a photo counts in inventories (DONE, not a duplicate, with an analysis); called by photos_counts_trigger.';
COMMENT ON FUNCTION moverz_batch.photos_counts_trigger() IS
    'Internal: trigger function of photos (statement-level, on INSERT, UPDATE and DELETE): keeps the counters and status of the batches, the inventory items and the per-room totals exact.';
COMMENT ON FUNCTION moverz_batch.batches_photos_trigger() IS
    'Internal: trigger function of batches (after DELETE and TRUNCATE): the photos of the batches go with them.';
COMMENT ON FUNCTION moverz_batch.projects_lock_photos() IS
    'Internal: trigger function of projects (before DELETE): locks the project''s photos first, so that deleting a project does not deadlock with a write-back.';

------------------------------------------------------------------------
-- 40_api: create_project, create_batch, batch_progress, retry_batch.
COMMENT ON FUNCTION moverz_batch.check_user_id(text) IS
    'Internal: refuses an empty user_id or one over 255 bytes; called by create_project and create_batch.';
COMMENT ON FUNCTION moverz_batch.create_project(text, text) IS
    'Creates a project owned by user_id, with a name, and returns its id.';
COMMENT ON FUNCTION moverz_batch.check_assets(jsonb) IS
    'Internal: raises the first broken input rule of create_batch''s assets (the array, each element, its url, filename and roomType); SQL-callable C, called by create_batch.';
COMMENT ON FUNCTION moverz_batch.asset_rows(jsonb) IS
    'Internal: one row per element of checked assets, with its new photo id, position, checksum and the id of an earlier element with the same checksum; SQL-callable C, called by insert_photos.';
COMMENT ON FUNCTION moverz_batch.owned_project(uuid, text) IS
    'Internal: the project if it exists and belongs to the user, else the same error (P0002) for an unknown project and another user''s; called by create_batch.';
COMMENT ON FUNCTION moverz_batch.insert_photos(uuid, uuid, text, moverz_batch.batch_priority, jsonb) IS
    'Internal: inserts one photo per asset; a duplicate of a photo already DONE in the project takes its analysis at once, one of an earlier photo waits for it; called by create_batch.';
COMMENT ON FUNCTION moverz_batch.wait_for_copies_in_flight(uuid, uuid) IS
    'Internal: new photos of a batch that match a photo still waiting or in flight in another open batch of the project wait for it instead of being sent (since 0.6.0); called by insert_photos.';
COMMENT ON FUNCTION moverz_batch.check_photo_quota(text, integer) IS
    'Internal: enforces moverz_batch.max_photos_per_user_per_day (SQLSTATE 53400, retry_after_s in the DETAIL); called by create_batch.';
COMMENT ON FUNCTION moverz_batch.create_batch(uuid, text, jsonb, text, text) IS
    'Creates a batch (QUEUED) and one PENDING photo per asset in one transaction, and returns its id. The same idempotency_key from the same user returns the existing batch; the photo workers are woken at commit.';
COMMENT ON FUNCTION moverz_batch.batch_state(moverz_batch.batches) IS
    'Internal: {batchId, status, progress, counts} of a batch; called by batch_progress, progress_payload, batch_summary and the view batches_overview.';
COMMENT ON FUNCTION moverz_batch.progress_document(jsonb, uuid, bigint, bigint, jsonb) IS
    'Internal: the document of batch_progress from a batch''s state, one page of its photos and its inventory summary; SQL-callable C, called by batch_progress.';
COMMENT ON FUNCTION moverz_batch.batch_progress(uuid, integer, integer) IS
    'The progress of a batch, the seed''s batch object: status, progress, counts, its photos (paged by photos_limit and photos_offset) and inventorySummary once its inventory exists. Read-only.';
COMMENT ON FUNCTION moverz_batch.progress_percent(integer, integer) IS
    'Internal: the share of finished photos in percent, 0 to 100, and 100 only when every photo is finished; called by batch_state.';
COMMENT ON FUNCTION moverz_batch.reopen_photos(uuid, uuid) IS
    'Internal: sends the ERROR photos of a batch (all, or one and its duplicates) back to PENDING and re-opens the batch for one new inventory sync; called by retry_batch and retry_photo.';
COMMENT ON FUNCTION moverz_batch.retry_batch(uuid) IS
    'Sends the ERROR photos of a batch back to PENDING (DONE ones untouched) and re-opens it; exactly one new inventory sync runs once it finishes again. Returns the number of photos sent back.';
COMMENT ON FUNCTION moverz_batch.retry_photo(uuid) IS
    'Sends one ERROR photo (and its duplicates) back to PENDING and re-opens its batch. Returns the number of photos sent back.';
COMMENT ON FUNCTION moverz_batch.cancel_batch(uuid) IS
    'Cancels a batch: its pending photos are never sent and those in flight are cancelled too; it ends CANCELLED and the inventory of its DONE photos is synced once. Returns the number of photos cancelled (SQLSTATE 55000 for a finished batch).';

------------------------------------------------------------------------
-- 50_inventory: live inventory, sync_inventory, project_inventory.
COMMENT ON FUNCTION moverz_batch.photo_items(uuid[]) IS
    'Internal: one row per item of the analyses of the given photos, with its room; called by apply_inventory_delta.';
COMMENT ON FUNCTION moverz_batch.apply_inventory_delta(uuid[], uuid[]) IS
    'Internal: the items of the photos that stop counting go, those of the photos that start counting come, and the per-room totals of their batches follow; called by photos_counts_trigger.';
COMMENT ON FUNCTION moverz_batch.inventory_summary(uuid, uuid) IS
    'Internal: the inventorySummary {totalItems, totalVolume, rooms} of a batch, or of a whole project when the batch is NULL; called by sync_inventory and project_inventory.';
COMMENT ON FUNCTION moverz_batch.sync_inventory(uuid) IS
    '(Re)builds a batch''s inventory from its per-room totals, stores it for batch_progress and returns it. Re-running replaces; it never adds twice.';
COMMENT ON FUNCTION moverz_batch.project_inventory(uuid) IS
    'The inventory of a whole project (totalItems, totalVolume, per room), from all its DONE photos.';
COMMENT ON FUNCTION moverz_batch.run_inventory_job(bigint) IS
    'Internal: runs one inventory-sync job, syncing its batch unless a retry re-opened it since (SUPERSEDED), and returns the job''s final status; called by run_next_inventory_job.';

------------------------------------------------------------------------
-- 58_ai_providers: the model APIs: system prompt, answer schema, model_prices.
COMMENT ON TABLE moverz_batch.model_prices IS
    'Prices in USD per million input and output tokens, per model, set by the operator; ai_metrics.cost_usd is computed from them.';
COMMENT ON COLUMN moverz_batch.model_prices.model IS
    'A model name or the start of one: an entry prices every model whose name it starts, the longest wins.';
COMMENT ON FUNCTION moverz_batch.ai_cost_usd(text, integer, integer) IS
    'Internal: the cost in USD of one AI call from model_prices and its token counts, NULL when the model has no price; called by complete_photos.';
COMMENT ON FUNCTION moverz_batch.ai_prompt_version() IS
    'The version of the built-in system prompt, recorded in ai_metrics.meta as promptVersion.';
COMMENT ON FUNCTION moverz_batch.ai_room_type_list() IS
    'Internal: the accepted room types with their descriptions, as the system prompt lists them; called by ai_system_prompt.';
COMMENT ON FUNCTION moverz_batch.ai_system_prompt() IS
    'The system prompt sent with every photo to a model API: the setting moverz_batch.ai_system_prompt when set, else the built-in one, with the accepted room types filled in.';
COMMENT ON FUNCTION moverz_batch.ai_analysis_schema() IS
    'The JSON schema of the model''s answer: {room_type: one of room_types, items: [{label, quantity, volume_m3}]}, every property required.';
COMMENT ON FUNCTION moverz_batch.ai_request_config() IS
    'Internal: the prompt version, the system prompt and the answer schema; read by the photo workers when they start and at each reload.';

------------------------------------------------------------------------
-- 60_worker: claim, result classification, write-back, crash recovery.
COMMENT ON FUNCTION moverz_batch.claim_photos(integer, bigint, integer, integer, integer) IS
    'Internal: claims up to p_limit PENDING photos whose next attempt time has come, highest priority first and users taking turns, and marks them PROCESSING with a lease; called by the photo workers.';
COMMENT ON FUNCTION moverz_batch.classify_result(text, integer, text, text, jsonb, text) IS
    'The AI contract of a provider applied to one answer: success or error code, message, whether it is retried, and the analysis, model and token counts. SQL-callable C; complete_photos applies it to every answer.';
COMMENT ON FUNCTION moverz_batch.retry_delay_ms(integer, integer, integer) IS
    'Internal: the delay in ms before the next attempt (retry_backoff, x4 per attempt, +-25 % jitter, never before Retry-After); called by complete_photos.';
COMMENT ON FUNCTION moverz_batch.settle_duplicates(uuid[]) IS
    'Internal: the duplicates waiting for the given photos, now DONE or ERROR, take their outcome; called by complete_photos, release_claims and wait_for_copies_in_flight.';
COMMENT ON FUNCTION moverz_batch.complete_photos(bigint, jsonb, integer, integer, text) IS
    'Internal: writes back the results of finished AI requests (DONE, retry or ERROR, and one ai_metrics row per call) and returns the photos DONE and how long a RATE_LIMIT holds the pool; called by the photo workers.';
COMMENT ON FUNCTION moverz_batch.release_claims(integer, bigint, integer, integer) IS
    'Internal: crash recovery: photos claimed by an earlier incarnation of a worker, by a worker slot that no longer exists, or whose lease expired, go back to PENDING (ERROR after the last attempt); called by the photo workers.';
COMMENT ON FUNCTION moverz_batch.unclaim_photos(bigint, uuid[]) IS
    'Internal: photos a worker claimed ahead and never sent go back to PENDING, the attempt not counted; called by the photo workers.';
COMMENT ON FUNCTION moverz_batch.run_next_inventory_job() IS
    'Internal: claims and runs the oldest due inventory-sync job; a failure is recorded on the job, which is retried later. Called by the inventory worker.';
COMMENT ON FUNCTION moverz_batch.next_inventory_due_ms() IS
    'Internal: milliseconds until the next inventory-sync job is due, NULL when none is pending; called by the inventory worker.';

------------------------------------------------------------------------
-- 65_notify: live progress, NOTIFY moverz_batch_progress.
COMMENT ON FUNCTION moverz_batch.progress_payload(uuid) IS
    'The compact state of a batch, {batchId, status, progress, counts, inventoryReady} (and waitingForAiServiceSince while the AI service is down), to read on each progress notification; NULL for a batch the caller may not see.';
COMMENT ON FUNCTION moverz_batch.publish_after_commit(uuid, text, boolean) IS
    'Internal: queues a batch''s state for the progress publisher (Nchan) when the transaction commits, never if it aborts, nothing when publish_url is empty; called by notify_progress.';
COMMENT ON FUNCTION moverz_batch.publish_status() IS
    'The progress publisher''s figures: events waiting, delivered to Nchan, dropped, failed, the last failure, and whether it runs.';
COMMENT ON FUNCTION moverz_batch.notify_progress(uuid) IS
    'Internal: sends one NOTIFY on channel moverz_batch_progress for a batch, at most once per transaction, and queues the same change for Nchan; called by notify_batch_trigger and notify_inventory_trigger.';
COMMENT ON FUNCTION moverz_batch.notify_batch_trigger() IS
    'Internal: trigger function of batches (deferred, at commit): notifies the progress of the batch.';
COMMENT ON FUNCTION moverz_batch.notify_inventory_trigger() IS
    'Internal: trigger function of inventory_summaries (deferred, at commit): notifies that the batch''s inventory is ready.';

------------------------------------------------------------------------
-- 68_admin: views, pause / resume, retention purge.
COMMENT ON FUNCTION moverz_batch.worker_status_raw() IS
    'Internal: the running workers as shared memory knows them; read by the view worker_status.';
COMMENT ON VIEW moverz_batch.worker_status IS
    'One row per running worker (photo, inventory, publisher): worker, pid, requests in flight, done, failed, last error, since.';
COMMENT ON FUNCTION moverz_batch.ai_service_status() IS
    'The circuit of the AI service: since when it is unreachable (NULL: it answers), the probes sent since, failures in a row, whether the work is held, the last error.';
COMMENT ON VIEW moverz_batch.queue_overview IS
    'One row: photos pending (due), waiting for retry, in flight, done, failed and cancelled, the oldest pending age, whether processing is paused, and since when the AI service is unreachable.';
COMMENT ON VIEW moverz_batch.batches_overview IS
    'One row per batch, newest first: status, counts, progress, inventory totals, duration.';
COMMENT ON VIEW moverz_batch.user_photo_quota IS
    'Per user who submitted photos in the last 24 hours: how many, the quota moverz_batch.max_photos_per_user_per_day (NULL: none) and what is left.';
COMMENT ON VIEW moverz_batch.failed_photos IS
    'Photos in ERROR with their codes and messages, newest first.';
COMMENT ON VIEW moverz_batch.batch_ai_metrics IS
    'Per batch: AI calls, average and p95 latency, successes and total cost.';
COMMENT ON FUNCTION moverz_batch.pause_processing() IS
    'Stops claiming photos (requests in flight finish, photos claimed ahead are handed back); survives restarts. Returns true once processing is paused.';
COMMENT ON FUNCTION moverz_batch.resume_processing() IS
    'Starts claiming photos again after pause_processing. Returns true once processing is running.';
COMMENT ON FUNCTION moverz_batch.promote_duplicates(uuid[]) IS
    'Internal: before batches are deleted, the oldest surviving copy of each of their photos that other batches duplicate becomes the original, and the inventories concerned are synced again; called by purge.';
COMMENT ON FUNCTION moverz_batch.purge(interval) IS
    'Deletes the batches finished more than older_than ago (default 30 days), with their photos and inventories, and the AI metrics older than that. Returns how many of each it deleted.';

------------------------------------------------------------------------
-- 70_http_api: HTTP API (schema moverz_api), roles, row-level security.
-- (COMMENT ON SCHEMA moverz_api is in 70_http_api.sql.)
COMMENT ON FUNCTION moverz_batch.jwt_user_id() IS
    'Internal: the user of the current HTTP request, the sub claim of its JWT, or NULL; used by the row-level security policies.';
COMMENT ON FUNCTION moverz_batch.api_user() IS
    'Internal: the user of the current HTTP request, or HTTP 401 without a token, or with one without sub or exp; called by the moverz_api functions.';
COMMENT ON FUNCTION moverz_batch.request_header(text) IS
    'Internal: one header of the current HTTP request, or NULL; called by moverz_api.create_batch for the Idempotency-Key.';
COMMENT ON FUNCTION moverz_batch.api_raise(text, text, text) IS
    'Internal: raises an error of the SQL API again for HTTP (404, 413, the HTTP field names such as imageUrls); called by the moverz_api functions.';
COMMENT ON FUNCTION moverz_batch.api_check_priority(text) IS
    'Internal: refuses priority HIGH (HTTP 403) unless the token''s role is a member of moverz_priority; called by moverz_api.create_batch.';
COMMENT ON FUNCTION moverz_batch.api_owned_batch(uuid, text) IS
    'Internal: the batch if it belongs to the user, else HTTP 404 with the same body for an unknown batch and another user''s; called by the moverz_api functions.';
COMMENT ON FUNCTION moverz_batch.api_page(integer, integer) IS
    'Internal: checks page (at least 1) and perPage (1 to 100) of a list call; called by moverz_api.list_projects and moverz_api.list_batches.';
COMMENT ON FUNCTION moverz_batch.api_body_uuid(jsonb, text) IS
    'Internal: the UUID in a string field of a request body, or HTTP 400 naming the field; called by moverz_api.create_batch.';
COMMENT ON FUNCTION moverz_batch.api_check_body(jsonb, text) IS
    'Internal: refuses a request body that is not a JSON object (HTTP 400); called by moverz_api.create_project and moverz_api.create_batch.';
COMMENT ON FUNCTION moverz_batch.batch_summary(moverz_batch.batches) IS
    'Internal: one batch in a list: its state with its project, priority and times, without photos; called by moverz_api.list_batches.';

COMMENT ON FUNCTION moverz_api.create_project(jsonb) IS
    'POST /api/projects {"name"}: creates a project of the token''s user; 201 {success, project}.';
COMMENT ON FUNCTION moverz_api.list_projects(integer, integer) IS
    'GET /api/projects: the token''s user''s projects, newest first, paged.';
COMMENT ON FUNCTION moverz_api.create_batch(jsonb) IS
    'POST /api/batches {"projectId", "imageUrls", "priority"?} with an optional Idempotency-Key: creates a batch of the token''s user; 202 {success, batchId, photosCount, jobsEnqueued} and its Location.';
COMMENT ON FUNCTION moverz_api.get_batch(uuid, integer, integer) IS
    'GET /api/batches/:id: {success, batch}, the batch''s progress as batch_progress returns it; 404 for an unknown batch and for another user''s.';
COMMENT ON FUNCTION moverz_api.list_batches(uuid, integer, integer) IS
    'GET /api/batches: the token''s user''s batches, newest first, paged, optionally of one project.';
COMMENT ON FUNCTION moverz_api.retry_batch(uuid) IS
    'POST /api/batches/:id/retry: the batch''s ERROR photos back to PENDING; 202 {success, batchId, photosRequeued}.';
COMMENT ON FUNCTION moverz_api.cancel_batch(uuid) IS
    'POST /api/batches/:id/cancel: cancels the batch; 200 {success, batchId, photosCancelled}, 409 when it has already finished.';

------------------------------------------------------------------------
-- 72_http_web: a stream's authorisation, the operator dashboard's API.
COMMENT ON FUNCTION moverz_api.stream_auth(uuid) IS
    'GET /rpc/stream_auth?id=, asked by nginx for each subscriber of /api/batches/:id/stream: the batch''s state; 404 as get_batch, 410 once the batch has finished.';
COMMENT ON FUNCTION moverz_batch.admin_check_limit(integer) IS
    'Internal: checks maxRows (1 to 500) of an operator list; called by moverz_api.admin_batches and moverz_api.admin_failed_photos.';
COMMENT ON FUNCTION moverz_api.admin_overview() IS
    'Operator dashboard, GET /rpc/admin_overview: the queue overview and the photos analysed per minute over the last 30 minutes.';
COMMENT ON FUNCTION moverz_api.admin_batches(text, text, integer, integer) IS
    'Operator dashboard, GET /rpc/admin_batches: batches filtered by status, user and age, newest first, with their AI calls and cost.';
COMMENT ON FUNCTION moverz_api.admin_batch_photos(uuid) IS
    'Operator dashboard, GET /rpc/admin_batch_photos?id=: a batch''s photos with their attempts and errors; 404 for an unknown batch.';
COMMENT ON FUNCTION moverz_api.admin_failed_photos(integer) IS
    'Operator dashboard, GET /rpc/admin_failed_photos: the photos in ERROR, newest first.';
COMMENT ON FUNCTION moverz_batch.admin_act(text, uuid) IS
    'Internal: retry_photo or cancel_batch for the operator dashboard, an unknown id answered 404 and a state that forbids it 409; called by moverz_api.admin_retry_photo and moverz_api.admin_cancel_batch.';
COMMENT ON FUNCTION moverz_api.admin_retry_photo(uuid) IS
    'Operator dashboard, POST /rpc/admin_retry_photo {"photoId"}: a failed photo (and its duplicates) back to PENDING.';
COMMENT ON FUNCTION moverz_api.admin_cancel_batch(uuid) IS
    'Operator dashboard, POST /rpc/admin_cancel_batch {"batchId"}: cancels a batch; 409 when it has already finished.';
COMMENT ON FUNCTION moverz_api.admin_pause() IS
    'Operator dashboard, POST /rpc/admin_pause: pause_processing.';
COMMENT ON FUNCTION moverz_api.admin_resume() IS
    'Operator dashboard, POST /rpc/admin_resume: resume_processing.';
COMMENT ON FUNCTION moverz_api.admin_workers() IS
    'Operator dashboard, GET /rpc/admin_workers: the running workers (worker_status).';
COMMENT ON FUNCTION moverz_api.admin_costs() IS
    'Operator dashboard, GET /rpc/admin_costs: AI calls and their cost per day (30 days) and per batch.';
