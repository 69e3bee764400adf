-- The SQL side of the background workers: claim, result classification,
-- write-back, crash recovery and the inventory-sync queue.  The workers call
-- these through saved SPI plans, each in a short transaction of its own;
-- no transaction is ever open while a request is in flight.
--
-- The functions on the workers' path (here, and apply_batch_delta,
-- apply_inventory_delta, progress_payload) run with enable_seqscan = off.
-- A worker keeps its plans for its whole life, and a plan made while photos
-- and batches were nearly empty (a worker starts with a fresh install) reads
-- them sequentially; that plan stays until an ANALYZE happens to replace it,
-- while the tables grow: a claim of 3 photos read the whole photos table,
-- 10 ms at 120,000 row versions.  Every statement of these functions has an
-- index to go by, but one (the single row of control).  And jit = off: the
-- cost enable_seqscan = off adds to that scan would have every execution
-- JIT-compiled (10 ms); short statements never gain from JIT anyway.

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
-- An uploaded photo comes with its bytes (upload_bytes; NULL when they are
-- gone) and their type: the worker sends them inline; one of the s3 store
-- with its object's key and announced size instead: the worker downloads
-- it first, no more than that size.  p_byte_budget caps
-- the bytes of the uploaded photos of one claim (NULL: no cap): photos are
-- taken in order while their running total stays within it, and the first
-- one whatever its size when p_first_anyway (the worker has none in flight).
CREATE FUNCTION moverz_batch_internal.claim_photos(p_worker int, p_token bigint, p_limit int, p_lease_ms int,
                             p_per_user int DEFAULT 0, p_byte_budget bigint DEFAULT NULL,
                             p_first_anyway boolean DEFAULT true)
RETURNS TABLE (id uuid, batch_id uuid, project_id uuid, user_id text, url text,
               filename text, room_type text, attempt int, upload_id uuid, media_type text, image bytea,
               object_key text, upload_size int)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off SET jit = off AS $$
BEGIN
    IF (SELECT c.paused FROM moverz_batch.control c) THEN
        RETURN;
    END IF;
    IF p_per_user > 0 THEN
        -- claims count each user's photos in flight: one claim at a time
        PERFORM pg_advisory_xact_lock(hashtext('moverz_batch_internal.claim_photos'));
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
        SELECT c.id, c.priority, c.created_at, c.bytes,
               coalesce(i.n, 0) + row_number() OVER (PARTITION BY u.user_id
                                  ORDER BY c.priority DESC, c.created_at, c.batch_id, c.position) AS turn
          FROM users u
          LEFT JOIN inflight i ON i.user_id = u.user_id
          -- one index range per (user, priority), starting at the user's
          -- oldest open batch: the dead entries before it are never read
          -- (40,000 of them made each claim 4 ms longer)
          CROSS JOIN unnest(enum_range(NULL::moverz_batch.batch_priority)) AS pr(priority)
          CROSS JOIN LATERAL (
              SELECT p.id, p.priority, p.created_at, p.batch_id, p.position,
                     CASE WHEN p.upload_id IS NULL THEN 0
                          ELSE (SELECT u.size FROM moverz_batch.uploads u WHERE u.id = p.upload_id) END AS bytes
                FROM moverz_batch.photos p
               WHERE p.user_id = u.user_id AND p.priority = pr.priority AND p.created_at >= u.since
                 AND p.status = 'PENDING' AND p.duplicate_of IS NULL AND p.next_attempt_at <= now()
               ORDER BY p.created_at, p.batch_id, p.position
               LIMIT CASE WHEN p_per_user > 0
                          THEN least(p_limit, greatest(p_per_user - coalesce(i.n, 0), 0))
                          ELSE p_limit END) AS c
    ), ranked AS (
        SELECT c.id, c.priority, c.turn, c.created_at, c.bytes FROM candidates c
         ORDER BY c.priority DESC, c.turn, c.created_at LIMIT p_limit
    ), chosen AS (
        -- within the byte budget
        SELECT r.id, r.priority, r.turn, r.created_at, r.bytes FROM (
            SELECT r.*, sum(r.bytes) OVER w AS total, row_number() OVER w AS n FROM ranked r
            WINDOW w AS (ORDER BY r.priority DESC, r.turn, r.created_at ROWS UNBOUNDED PRECEDING)) r
         WHERE p_byte_budget IS NULL OR r.total <= p_byte_budget OR (r.n = 1 AND p_first_anyway)
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
              p.position, p.upload_id
    )
    -- in the order chosen: the worker sends them in this order
    SELECT cl.id, cl.batch_id, cl.project_id, cl.user_id, cl.url, cl.filename, cl.room_type, cl.attempts,
           cl.upload_id,
           CASE WHEN cl.upload_id IS NOT NULL
                THEN (SELECT u.content_type FROM moverz_batch.uploads u WHERE u.id = cl.upload_id) END,
           CASE WHEN cl.upload_id IS NOT NULL
                THEN (SELECT x.bytes FROM moverz_batch_internal.upload_bytes x WHERE x.upload_id = cl.upload_id) END,
           CASE WHEN cl.upload_id IS NOT NULL
                THEN (SELECT moverz_batch_internal.upload_object_key(u.project_id, u.id)
                        FROM moverz_batch.uploads u WHERE u.id = cl.upload_id AND u.store = 's3') END,
           ch.bytes
      FROM claimed cl JOIN chosen ch ON ch.id = cl.id
     ORDER BY ch.priority DESC, ch.turn, ch.created_at, cl.batch_id, cl.position;
END
$$;

-- classify_result: the contract of a provider (moverz-ai, anthropic,
-- openai) applied to one answer.
--   transport_code: the worker's reading of a failed transfer (TIMEOUT or
--   NETWORK_ERROR), NULL when an HTTP answer arrived;
--   body: the answer as JSON when it parsed, else NULL and body_text.
-- moverz-ai: a 2xx whose body is not an analysis is a retryable AI_ERROR.
-- A non-2xx carrying {"error": {"code", "message", "retryable"}} with a
-- known code is taken at its word; otherwise 408/504 are TIMEOUT, 429
-- RATE_LIMIT, other 5xx a retryable AI_ERROR, anything else a final AI_ERROR.
-- anthropic and openai: the same by status (and 529 RATE_LIMIT), the
-- provider's message kept; a 200 gives the analysis from the tool call or
-- the JSON content, or says why not (src/ai_answer.c).
-- Also returns the analysis to store, the model that answered and the token
-- counts (NULL when absent or out of range).
-- In C (src/ai_contract.c): it runs for every answer.
CREATE FUNCTION classify_result(provider text, http_status int, transport_code text,
                                transport_message text, body jsonb, body_text text,
                                OUT ok boolean, OUT code text, OUT message text, OUT retryable boolean,
                                OUT analysis jsonb, OUT model text, OUT tokens_in int, OUT tokens_out int)
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'moverz_classify_result';

-- retry_delay_ms: the backoff before attempt n+1: retry_backoff x 4^(n-1)
-- (5s, 20s, 80s with the default), +/- 25% jitter, and never earlier than a
-- Retry-After the service asked for.
CREATE FUNCTION moverz_batch_internal.retry_delay_ms(attempt int, backoff_ms int, retry_after_ms int)
RETURNS double precision LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
SELECT greatest(backoff_ms * power(4, least(greatest(attempt, 1) - 1, 10)) * (0.75 + random() * 0.5),
                coalesce(retry_after_ms, 0))
$$;

-- settle_duplicates: the duplicates waiting for these photos (now DONE or
-- ERROR) take their outcome.  Called wherever a photo becomes final, at
-- every write-back.  Duplicates are few and found through their partial
-- index; until photos is analysed the planner takes duplicate_of for
-- mostly set and would scan the whole table for each write-back (9 ms at
-- 40,000 photos), hence enable_seqscan = off here.
CREATE FUNCTION moverz_batch_internal.settle_duplicates(p_final uuid[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off SET jit = off AS $$
BEGIN
    IF p_final IS NULL
       OR NOT EXISTS (SELECT 1 FROM moverz_batch.photos d
                       WHERE d.duplicate_of = ANY (p_final) AND d.duplicate_of IS NOT NULL) THEN
        RETURN;
    END IF;
    UPDATE moverz_batch.photos d
       SET status = o.status, analysis = o.analysis, error_code = o.error_code,
           error_message = o.error_message, room_type = coalesce(d.room_type, o.room_type),
           finished_at = now(), updated_at = now()
      FROM moverz_batch.photos o
     WHERE d.duplicate_of = o.id AND d.duplicate_of = ANY (p_final) AND d.duplicate_of IS NOT NULL
       AND o.id = ANY (p_final) AND d.status = 'PENDING'
       AND o.status IN ('DONE', 'ERROR');
END
$$;

-- complete_photos: write back the results of finished requests, all in one
-- statement (the count triggers then touch each batch once).  p_results is
-- a JSON array of {id, batch_id, user_id, attempt, http_status, latency_ms,
-- provider, transport_code, transport_message, retry_after_ms, body,
-- body_text}; a result without provider was sent to p_provider.
-- A result applies only to the claim it answers (same worker incarnation,
-- same attempt, still PROCESSING): a late answer to a photo taken back by
-- crash recovery changes nothing.  Every call gets an ai_metrics row, with
-- its cost: the service's own cost_usd (moverz-ai), else tokens x
-- model_prices (ai_cost_usd).
-- Duplicates waiting for a photo that ends DONE or ERROR take its outcome.
-- Returns how many photos became DONE and, when the service answered
-- RATE_LIMIT, how long the whole pool should hold back (ms).
CREATE FUNCTION moverz_batch_internal.complete_photos(p_token bigint, p_results jsonb, p_max_attempts int,
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
        SELECT x.*, c.*, a.api, 'PROCESSING'::moverz_batch.photo_status AS claimed
          FROM jsonb_to_recordset(p_results) AS x(id uuid, batch_id uuid, user_id text, attempt int,
               http_status int, latency_ms int, provider text, prompt_version text,
               outage boolean, transport_code text, transport_message text,
               retry_after_ms int, body jsonb, body_text text)
          -- the provider the request was sent to (an older worker names none)
          CROSS JOIN LATERAL (SELECT coalesce(x.provider, p_provider) AS api) AS a
          CROSS JOIN LATERAL moverz_batch.classify_result(a.api,
               x.http_status, x.transport_code, x.transport_message, x.body, x.body_text) AS c
    ), metrics AS (
        INSERT INTO moverz_batch.ai_metrics (provider, operation, latency_ms, success, cost_usd,
                                             tokens_in, tokens_out, model, meta)
        SELECT r.api, 'analyze_photo', greatest(r.latency_ms, 0), r.ok,
               coalesce(CASE WHEN jsonb_typeof(r.body -> 'cost_usd') = 'number'
                              AND r.api NOT IN ('anthropic', 'openai')
                              AND (r.body ->> 'cost_usd')::numeric BETWEEN 0 AND 999999
                             THEN round((r.body ->> 'cost_usd')::numeric, 6) END,
                        moverz_batch_internal.ai_cost_usd(r.model, r.tokens_in, r.tokens_out)),
               r.tokens_in, r.tokens_out, r.model,
               jsonb_strip_nulls(jsonb_build_object(
                   'photoId', r.id, 'userId', r.user_id, 'batchId', r.batch_id,
                   'itemsCount', CASE WHEN r.ok THEN jsonb_array_length(r.analysis -> 'items') END,
                   'attempt', r.attempt, 'errorCode', r.code, 'httpStatus', r.http_status,
                   'model', r.model, 'promptVersion', r.prompt_version,
                   'outage', CASE WHEN r.outage THEN true END))
          FROM r
         -- an answer for a photo that is gone (its batch deleted, or the
         -- extension dropped and created again) is no call of this install
         WHERE EXISTS (SELECT 1 FROM moverz_batch.photos g WHERE g.id = r.id)
    ), u AS (
    UPDATE moverz_batch.photos p
       SET status = CASE WHEN r.ok THEN 'DONE'
                         WHEN r.outage OR (r.retryable AND p.attempts < p_max_attempts) THEN 'PENDING'
                         ELSE 'ERROR' END::moverz_batch.photo_status,
           -- a failure while the AI service is down gives the attempt back
           attempts = CASE WHEN NOT r.ok AND r.outage THEN greatest(p.attempts - 1, 0)
                           ELSE p.attempts END,
           analysis = CASE WHEN r.ok THEN r.analysis END,
           room_type = CASE WHEN r.ok AND p.room_type IS NULL
                            THEN (SELECT t.room_type FROM moverz_batch.room_types t
                                   WHERE t.room_type = r.analysis ->> 'room_type')
                            ELSE p.room_type END,
           error_code = CASE WHEN NOT r.ok THEN r.code END,
           error_message = CASE WHEN NOT r.ok THEN r.message END,
           next_attempt_at = CASE WHEN NOT r.ok AND r.outage THEN now()
                                  WHEN NOT r.ok AND r.retryable AND p.attempts < p_max_attempts
                                  THEN now() + moverz_batch_internal.retry_delay_ms(p.attempts, p_backoff_ms, r.retry_after_ms)
                                               * interval '1 millisecond'
                                  ELSE p.next_attempt_at END,
           finished_at = CASE WHEN NOT r.ok AND r.outage THEN NULL
                              WHEN r.ok OR NOT r.retryable OR p.attempts >= p_max_attempts
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
    PERFORM moverz_batch_internal.settle_duplicates(v_final);
END
$$;

-- release_claims: crash recovery.  Photos still PROCESSING for an earlier
-- incarnation of worker p_worker, for a worker slot that no longer exists
-- (>= p_workers), or whose lease has expired, go back to PENDING (or to
-- ERROR when that attempt was the last).  Called by each worker when it
-- starts, and periodically for the leases.  Returns the number released.
CREATE FUNCTION moverz_batch_internal.release_claims(p_worker int, p_token bigint, p_workers int, p_max_attempts int)
RETURNS int LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    v_n int;
    v_final uuid[];
BEGIN
    WITH released AS (
    UPDATE moverz_batch.photos p
       SET status = CASE WHEN p.attempts < p_max_attempts THEN 'PENDING'
                         ELSE 'ERROR' END::moverz_batch.photo_status,
           error_code = CASE WHEN p.attempts >= p_max_attempts THEN 'AI_ERROR' END,
           error_message = CASE WHEN p.attempts >= p_max_attempts
                                THEN 'the worker stopped while the request was in flight' END,
           finished_at = CASE WHEN p.attempts >= p_max_attempts THEN now() END,
           next_attempt_at = now(), claimed_by = NULL, claim_token = NULL, lease_until = NULL,
           updated_at = now()
      FROM (SELECT q.id FROM moverz_batch.photos q
             WHERE q.status = 'PROCESSING'
               AND ((q.claimed_by = p_worker AND q.claim_token IS DISTINCT FROM p_token)
                    OR q.claimed_by IS NULL OR q.claimed_by >= p_workers OR q.claimed_by < 0
                    OR q.lease_until < now())
               FOR UPDATE SKIP LOCKED) AS s
     WHERE p.id = s.id
    RETURNING p.id, p.status
    )
    SELECT count(*), array_agg(r.id) FILTER (WHERE r.status = 'ERROR') INTO v_n, v_final FROM released r;
    PERFORM moverz_batch_internal.settle_duplicates(v_final);
    RETURN v_n;
END
$$;

-- unclaim_photos: the photos p_ids, claimed ahead by the worker incarnation
-- p_token and never sent, go back to PENDING as if never claimed (the
-- attempt did not happen).  Photos no longer in that claim (cancelled,
-- taken back) are left alone.  Returns how many went back.
CREATE FUNCTION moverz_batch_internal.unclaim_photos(p_token bigint, p_ids uuid[]) RETURNS int
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

-- run_next_inventory_job: claim the oldest due inventory-sync job (SKIP
-- LOCKED) and run it.  A failure is recorded on the job, which is retried
-- later with a backoff: no job is lost.  Returns the job id, or NULL when
-- none is due.
CREATE FUNCTION moverz_batch_internal.run_next_inventory_job() RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id bigint;
    v_msg text;
BEGIN
    SELECT j.id INTO v_id FROM moverz_batch.inventory_sync_jobs j
     WHERE j.status = 'PENDING' AND j.next_attempt_at <= now()
     ORDER BY j.next_attempt_at, j.id
     LIMIT 1
       FOR UPDATE SKIP LOCKED;
    IF v_id IS NULL THEN
        RETURN NULL;
    END IF;
    BEGIN
        PERFORM moverz_batch_internal.run_inventory_job(v_id);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
        UPDATE moverz_batch.inventory_sync_jobs
           SET attempts = attempts + 1, last_error = left(v_msg, 500),
               next_attempt_at = now() + least(power(2, attempts), 300) * interval '1 second'
         WHERE id = v_id;
        RAISE WARNING 'moverz_batch: inventory sync job % failed: %', v_id, v_msg;
    END;
    RETURN v_id;
END
$$;

-- next_inventory_due_ms: milliseconds until the next inventory job is due
-- (NULL when none is pending), so the worker sleeps just long enough.
CREATE FUNCTION moverz_batch_internal.next_inventory_due_ms() RETURNS double precision
LANGUAGE sql STABLE AS $$
SELECT CASE WHEN min(next_attempt_at) IS NOT NULL
            THEN greatest(0, extract(epoch FROM min(next_attempt_at) - now()) * 1000) END
  FROM moverz_batch.inventory_sync_jobs WHERE status = 'PENDING'
$$;

REVOKE ALL ON FUNCTION moverz_batch_internal.claim_photos(int, bigint, int, int, int, bigint, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION moverz_batch_internal.complete_photos(bigint, jsonb, int, int, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION moverz_batch_internal.release_claims(int, bigint, int, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION moverz_batch_internal.unclaim_photos(bigint, uuid[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION moverz_batch_internal.run_next_inventory_job() FROM PUBLIC;
