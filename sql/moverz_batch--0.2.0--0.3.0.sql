-- moverz_batch 0.2.0 -> 0.3.0
--
-- Claiming ahead (issue #6): a photo worker with many requests in flight
-- keeps photos claimed beyond its free request slots and sends them as
-- soon as slots free up.  New: unclaim_photos (the worker hands back photos
-- claimed ahead and not sent) and recall_claimed_photos (asks the workers
-- to do so when the calling transaction commits), called by cancel_batch,
-- pause_processing and a HIGH priority create_batch.  The API is
-- unchanged.  test/e2e/70_upgrade.sh checks that an updated 0.2.0 (and
-- 0.1.0) has exactly the objects of a fresh 0.3.0.

\echo Use "ALTER EXTENSION moverz_batch UPDATE TO '0.3.0'" to load this file. \quit

CREATE FUNCTION recall_claimed_photos() RETURNS void
    LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'moverz_recall_claimed_photos';

REVOKE ALL ON FUNCTION recall_claimed_photos() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION recall_claimed_photos() TO moverz_app;

CREATE FUNCTION unclaim_photos(p_token bigint, p_ids uuid[]) RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    v_n int;
BEGIN
    UPDATE moverz_batch.photos p
       SET status = 'PENDING', attempts = greatest(p.attempts - 1, 0), claimed_by = NULL,
           claim_token = NULL, lease_until = NULL, updated_at = now()
     WHERE p.id = ANY (p_ids) AND p.status = 'PROCESSING' AND p.claim_token = p_token;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;

REVOKE ALL ON FUNCTION unclaim_photos(bigint, uuid[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION create_batch(project_id uuid, user_id text, assets jsonb,
                             priority text DEFAULT 'NORMAL', idempotency_key text DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_priority moverz_batch.batch_priority;
    v_hash text;
    v_batch uuid;
    v_existing record;
BEGIN
    PERFORM moverz_batch.check_user_id(user_id);
    IF priority IS NULL OR priority NOT IN ('HIGH', 'NORMAL', 'LOW') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('priority must be one of HIGH, NORMAL, LOW (got %s)', coalesce(quote_literal(priority), 'NULL'));
    END IF;
    IF idempotency_key IS NOT NULL AND (btrim(idempotency_key) = '' OR octet_length(idempotency_key) > 255) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'idempotency_key must be a non-empty string of at most 255 bytes';
    END IF;
    v_priority := priority::moverz_batch.batch_priority;
    PERFORM moverz_batch.owned_project(create_batch.project_id, create_batch.user_id);
    PERFORM moverz_batch.check_assets(assets);
    IF idempotency_key IS NOT NULL THEN
        v_hash := md5(concat_ws('|', create_batch.project_id, v_priority, assets::text));
    END IF;
    INSERT INTO moverz_batch.batches AS b (project_id, user_id, priority, idempotency_key, request_hash)
    VALUES (create_batch.project_id, create_batch.user_id, v_priority, create_batch.idempotency_key, v_hash)
    ON CONFLICT ON CONSTRAINT batches_idempotency_key DO NOTHING
    RETURNING b.id INTO v_batch;
    IF v_batch IS NULL THEN
        SELECT b.id, b.request_hash INTO v_existing
          FROM moverz_batch.batches b
         WHERE b.user_id = create_batch.user_id AND b.idempotency_key = create_batch.idempotency_key;
        IF v_existing.request_hash IS DISTINCT FROM v_hash THEN
            RAISE EXCEPTION USING ERRCODE = '23505',
                MESSAGE = format('idempotency_key %s was already used with a different payload', quote_literal(idempotency_key)),
                HINT = 'Use a new idempotency key for a new batch.';
        END IF;
        RETURN v_existing.id;
    END IF;
    PERFORM moverz_batch.insert_photos(v_batch, create_batch.project_id, create_batch.user_id,
                                       v_priority, assets);
    PERFORM moverz_batch.wake_photo_workers();
    IF v_priority = 'HIGH' THEN
        -- photos claimed ahead must not go before these
        PERFORM moverz_batch.recall_claimed_photos();
    END IF;
    RETURN v_batch;
END
$$;

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
    -- photos of this batch a worker claimed ahead are not sent either
    PERFORM moverz_batch.recall_claimed_photos();
    RETURN v_n;
END
$$;

CREATE OR REPLACE FUNCTION pause_processing() RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE moverz_batch.control SET paused = true, paused_at = now();
    PERFORM moverz_batch.recall_claimed_photos();
    RETURN true;
END
$$;

-- complete_photos: write back the results of finished requests, all in one
-- statement (the count triggers then touch each batch once).  p_results is
-- a JSON array of {id, batch_id, user_id, attempt, http_status, latency_ms,
-- transport_code, transport_message, retry_after_ms, body, body_text}.
-- A result applies only to the claim it answers (same worker incarnation,
-- same attempt, still PROCESSING): a late answer to a photo taken back by
-- crash recovery changes nothing.  Every call gets an ai_metrics row.
-- Duplicates waiting for a photo that ends DONE or ERROR take its outcome.
-- Returns how many photos became DONE and, when the service answered
-- RATE_LIMIT, how long the whole pool should hold back (ms).
CREATE OR REPLACE FUNCTION complete_photos(p_token bigint, p_results jsonb, p_max_attempts int,
                                p_backoff_ms int, p_provider text,
                                OUT done int, OUT rate_limit_ms int)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    v_final uuid[];
BEGIN
    WITH r AS (
        -- claimed: the status a photo must still have.  Compared as a column
        -- of r, not as a constant, so that the planner finds the photos by
        -- primary key: "status = 'PROCESSING'" would let it scan the whole
        -- in-flight partial index (every photo in flight and the dead
        -- entries of those written back since the last VACUUM) at each
        -- write-back, 0.5 ms per photo with 1,250 claimed.
        SELECT x.*, c.*, 'PROCESSING'::moverz_batch.photo_status AS claimed
          FROM jsonb_to_recordset(p_results) AS x(id uuid, batch_id uuid, user_id text, attempt int,
               http_status int, latency_ms int, transport_code text, transport_message text,
               retry_after_ms int, body jsonb, body_text text)
          CROSS JOIN LATERAL moverz_batch.classify_result(x.http_status, x.transport_code,
               x.transport_message, x.body, x.body_text) AS c
    ), metrics AS (
        INSERT INTO moverz_batch.ai_metrics (provider, operation, latency_ms, success, cost_usd,
                                             tokens_in, tokens_out, meta)
        SELECT p_provider, 'analyze_photo', greatest(r.latency_ms, 0), r.ok,
               CASE WHEN jsonb_typeof(r.body -> 'cost_usd') = 'number' THEN (r.body ->> 'cost_usd')::numeric END,
               CASE WHEN jsonb_typeof(r.body #> '{usage,input_tokens}') = 'number'
                    THEN (r.body #>> '{usage,input_tokens}')::numeric::int END,
               CASE WHEN jsonb_typeof(r.body #> '{usage,output_tokens}') = 'number'
                    THEN (r.body #>> '{usage,output_tokens}')::numeric::int END,
               jsonb_strip_nulls(jsonb_build_object(
                   'photoId', r.id, 'userId', r.user_id, 'batchId', r.batch_id,
                   'itemsCount', CASE WHEN r.ok THEN jsonb_array_length(r.body -> 'items') END,
                   'attempt', r.attempt, 'errorCode', r.code, 'httpStatus', r.http_status,
                   'model', CASE WHEN r.ok THEN r.body ->> 'model' END))
          FROM r
    ), u AS (
    UPDATE moverz_batch.photos p
       SET status = CASE WHEN r.ok THEN 'DONE'
                         WHEN r.retryable AND p.attempts < p_max_attempts THEN 'PENDING'
                         ELSE 'ERROR' END::moverz_batch.photo_status,
           analysis = CASE WHEN r.ok THEN r.body END,
           room_type = CASE WHEN r.ok AND p.room_type IS NULL
                            THEN (SELECT t.room_type FROM moverz_batch.room_types t
                                   WHERE t.room_type = r.body ->> 'room_type')
                            ELSE p.room_type END,
           error_code = CASE WHEN NOT r.ok THEN r.code END,
           error_message = CASE WHEN NOT r.ok THEN r.message END,
           next_attempt_at = CASE WHEN NOT r.ok AND r.retryable AND p.attempts < p_max_attempts
                                  THEN now() + moverz_batch.retry_delay_ms(p.attempts, p_backoff_ms, r.retry_after_ms)
                                               * interval '1 millisecond'
                                  ELSE p.next_attempt_at END,
           finished_at = CASE WHEN r.ok OR NOT r.retryable OR p.attempts >= p_max_attempts
                              THEN now() END,
           claimed_by = NULL, claim_token = NULL, lease_until = NULL, updated_at = now()
      FROM r
     WHERE p.id = r.id AND p.status = r.claimed AND p.claim_token = p_token
       AND p.attempts = r.attempt
       -- and an index condition that bounds the scan of photos to these rows,
       -- whatever join the plan uses: a plan kept from when photos was small
       -- hash-joined a scan of the whole primary key (13,000 rows read for
       -- 22 results)
       AND p.id = ANY (ARRAY(SELECT r2.id FROM r AS r2))
    RETURNING p.id, p.status
    )
    SELECT count(*) FILTER (WHERE u.status = 'DONE'),
           array_agg(u.id) FILTER (WHERE u.status IN ('DONE', 'ERROR')),
           (SELECT coalesce(max(coalesce(r2.retry_after_ms, p_backoff_ms)), 0) FROM r AS r2
             WHERE r2.code = 'RATE_LIMIT')
      INTO done, v_final, rate_limit_ms
      FROM u;
    PERFORM moverz_batch.settle_duplicates(v_final);
END
$$;

-- claim_photos: up to p_limit PENDING photos whose next attempt time has
-- come, skipping rows other workers hold, marked PROCESSING for worker
-- p_worker (incarnation p_token) with a lease; the attempt counts from here.
-- Order: highest priority first; within a priority, users take turns: the
-- k-th photo of a user who has n photos in flight ranks n + k (each user's
-- photos oldest first), so one user's huge batch cannot starve another's
-- small one; with p_per_user > 0, no user gets more than that many photos
-- in flight.  Nothing is claimed while processing is paused.
-- Duplicates are never claimed (they follow their original).  The photos
-- come back in the order chosen, which is the order they are sent in.
-- A photo's created_at is its batch's (create_batch sets both in one
-- transaction): the claim looks for a user's photos from the creation of
-- the user's oldest open batch on.
CREATE OR REPLACE FUNCTION claim_photos(p_worker int, p_token bigint, p_limit int, p_lease_ms int,
                             p_per_user int DEFAULT 0)
RETURNS TABLE (id uuid, batch_id uuid, project_id uuid, user_id text, url text,
               filename text, room_type text, attempt int)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off SET jit = off AS $$
BEGIN
    IF (SELECT c.paused FROM moverz_batch.control c) THEN
        RETURN;
    END IF;
    IF p_per_user > 0 THEN
        -- claims count each user's photos in flight: one claim at a time
        PERFORM pg_advisory_xact_lock(hashtext('moverz_batch.claim_photos'));
    END IF;
    RETURN QUERY
    WITH users AS (
        -- the users with pending photos, from their open batches, and the
        -- creation time of the oldest (its photos' too): not from the
        -- photos' claim index, whose dead entries (photos claimed since the
        -- last VACUUM) a scan from a user's first entry would step over
        SELECT b.user_id, min(b.created_at) AS since FROM moverz_batch.batches b
         WHERE b.status IN ('QUEUED', 'PROCESSING') AND b.count_queued > 0
         GROUP BY b.user_id
    ), inflight AS (
        -- each user's photos in flight: needed for the turns only when users
        -- compete, or for the per-user ceiling
        SELECT p.user_id, count(*) AS n FROM moverz_batch.photos p
         WHERE p.status = 'PROCESSING'
           AND p.user_id = ANY (ARRAY(SELECT u.user_id FROM users u))
           AND (p_per_user > 0 OR (SELECT count(u.user_id) FROM users u) > 1)
         GROUP BY p.user_id
    ), candidates AS (
        SELECT c.id, c.priority, c.created_at,
               coalesce(i.n, 0) + row_number() OVER (PARTITION BY u.user_id
                                  ORDER BY c.priority DESC, c.created_at, c.batch_id, c.position) AS turn
          FROM users u
          LEFT JOIN inflight i ON i.user_id = u.user_id
          -- one index range per (user, priority), starting at the user's
          -- oldest open batch: the dead entries before it are never read
          -- (40,000 of them made each claim 4 ms longer)
          CROSS JOIN unnest(enum_range(NULL::moverz_batch.batch_priority)) AS pr(priority)
          CROSS JOIN LATERAL (
              SELECT p.id, p.priority, p.created_at, p.batch_id, p.position
                FROM moverz_batch.photos p
               WHERE p.user_id = u.user_id AND p.priority = pr.priority AND p.created_at >= u.since
                 AND p.status = 'PENDING' AND p.duplicate_of IS NULL AND p.next_attempt_at <= now()
               ORDER BY p.created_at, p.batch_id, p.position
               LIMIT CASE WHEN p_per_user > 0
                          THEN least(p_limit, greatest(p_per_user - coalesce(i.n, 0), 0))
                          ELSE p_limit END) AS c
    ), chosen AS (
        SELECT c.id, c.priority, c.turn, c.created_at FROM candidates c
         ORDER BY c.priority DESC, c.turn, c.created_at LIMIT p_limit
    ), locked AS (
        -- by primary key (= ANY of an array), whatever the table's statistics say
        SELECT p.id FROM moverz_batch.photos p
         WHERE p.id = ANY (ARRAY(SELECT chosen.id FROM chosen)) AND p.status = 'PENDING'
           FOR UPDATE SKIP LOCKED
    ), claimed AS (
    UPDATE moverz_batch.photos p
       SET status = 'PROCESSING', attempts = p.attempts + 1, claimed_by = p_worker,
           claim_token = p_token, lease_until = now() + p_lease_ms * interval '1 millisecond',
           started_at = now(), updated_at = now()
     WHERE p.id = ANY (ARRAY(SELECT l.id FROM locked l))
    RETURNING p.id, p.batch_id, p.project_id, p.user_id, p.url, p.filename, p.room_type, p.attempts,
              p.position
    )
    -- in the order chosen: the worker sends them in this order
    SELECT cl.id, cl.batch_id, cl.project_id, cl.user_id, cl.url, cl.filename, cl.room_type, cl.attempts
      FROM claimed cl JOIN chosen ch ON ch.id = cl.id
     ORDER BY ch.priority DESC, ch.turn, ch.created_at, cl.batch_id, cl.position;
END
$$;

-- the functions on the workers' path keep index plans whatever the tables'
-- size when a session first plans them (see sql/src/60_worker.sql)
ALTER FUNCTION release_claims(int, bigint, int, int) SET enable_seqscan = off;
ALTER FUNCTION release_claims(int, bigint, int, int) SET jit = off;
ALTER FUNCTION apply_batch_delta(uuid, status_delta) SET enable_seqscan = off;
ALTER FUNCTION apply_batch_delta(uuid, status_delta) SET jit = off;
ALTER FUNCTION apply_inventory_delta(uuid[], uuid[]) SET enable_seqscan = off;
ALTER FUNCTION apply_inventory_delta(uuid[], uuid[]) SET jit = off;
ALTER FUNCTION progress_payload(uuid) SET enable_seqscan = off;
ALTER FUNCTION progress_payload(uuid) SET jit = off;
ALTER FUNCTION settle_duplicates(uuid[]) SET jit = off;
