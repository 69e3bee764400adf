-- moverz_batch 0.4.0 -> 0.5.0
--
-- Real AI providers (issue #15): moverz_batch.ai_provider = anthropic or
-- openai sends each photo to the Anthropic Messages API or an
-- OpenAI-compatible Chat Completions API, with the system prompt and answer
-- schema of ai_request_config(); classify_result reads each provider's
-- answers; ai_metrics records the model that answered and the cost from
-- model_prices.  An AI service that is down holds the work (issue #20):
-- complete_photos gives the attempt back to a failure written while the
-- circuit is open; ai_service_status() and queue_overview show it.
-- test/e2e/70_upgrade.sh checks that an updated 0.4.0 (and every earlier
-- release) has exactly the objects of a fresh 0.5.0.

\echo Use "ALTER EXTENSION moverz_batch UPDATE TO '0.5.0'" to load this file. \quit

ALTER TABLE ai_metrics ADD COLUMN model text;

-- model_prices: what one million tokens cost, per model, as the operator
-- sets them (providers change their prices: nothing is preset).  "model" is
-- a model name or the prefix of one: the longest entry that starts the name
-- the provider answered with wins ('claude-sonnet-4-5' prices
-- 'claude-sonnet-4-5-20250929').  ai_metrics.cost_usd is computed from it
-- when the call is written back; a model without a price has no cost.
CREATE TABLE model_prices (
    model                 text PRIMARY KEY CHECK (model <> '' AND octet_length(model) <= 200),
    input_usd_per_mtok    numeric(12, 6) NOT NULL CHECK (input_usd_per_mtok >= 0),
    output_usd_per_mtok   numeric(12, 6) NOT NULL CHECK (output_usd_per_mtok >= 0),
    note                  text,
    updated_at            timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('model_prices', '');

-- ai_cost_usd: the cost of one call of model with these token counts, from
-- model_prices; NULL when the model has no price or the cost does not fit
-- ai_metrics.cost_usd (a paid answer is never lost for its metadata).
CREATE FUNCTION ai_cost_usd(p_model text, p_tokens_in int, p_tokens_out int) RETURNS numeric
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT CASE WHEN c < 1000000 THEN round(c, 6) END
  FROM (SELECT (coalesce(p_tokens_in, 0) * p.input_usd_per_mtok
                + coalesce(p_tokens_out, 0) * p.output_usd_per_mtok) / 1000000 AS c
          FROM moverz_batch.model_prices p
         WHERE p_model IS NOT NULL AND left(p_model, length(p.model)) = p.model
         ORDER BY length(p.model) DESC
         LIMIT 1) AS x
$$;

-- ai_prompt_version: the version of the built-in system prompt; recorded in
-- ai_metrics.meta (promptVersion) of each call made with it.
CREATE FUNCTION ai_prompt_version() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 'moverz-1' $$;

-- ai_room_type_list: the accepted room types, with their descriptions, as
-- the prompt names them.
CREATE FUNCTION ai_room_type_list() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT string_agg(t.room_type || ' (' || t.description || ')', ', ' ORDER BY t.room_type)
  FROM moverz_batch.room_types t
$$;

-- ai_system_prompt: the system prompt sent with every photo:
-- moverz_batch.ai_system_prompt when set, else the built-in one; in both,
-- {room_types} is replaced by the accepted room types.
CREATE FUNCTION ai_system_prompt() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT replace(coalesce(nullif(current_setting('moverz_batch.ai_system_prompt', true), ''),
$prompt$You look at one photo of a room for a moving company, which prices a move by the volume of what it carries.
List the furniture and the large objects a mover would carry: furniture, appliances, electronics, lamps, rugs, boxes, bicycles, plants in pots. Leave out what stays in the building (built-in cupboards, radiators, sinks, doors, windows, fitted kitchens) and small loose objects that go into boxes.
For each kind of object give:
- label: a short English noun phrase, singular ("sofa", "double bed", "wardrobe", "chair");
- quantity: how many of them you can see, an integer;
- volume_m3: the volume of ONE of them in cubic metres, as a mover estimates it for the truck (for example: chair 0.2, armchair 0.8, three-seat sofa 2.5, double bed with mattress 1.9, two-door wardrobe 1.1, fridge 1.0, dining table 0.6).
Put identical objects in one entry with their quantity; never count one object twice, also when it appears twice in the photo.
Say which room this is, as exactly one of these room types: {room_types}.
If the photo shows no room or nothing to move, answer an empty list of items and the room type "other".
Answer only with the structured result asked for, nothing else.$prompt$), '{room_types}',
               coalesce(moverz_batch.ai_room_type_list(), 'other'))
$$;

-- ai_analysis_schema: the JSON schema of an analysis, as the model must
-- answer it (Anthropic: the tool's input_schema; OpenAI: the strict
-- response_format schema, hence every property required and no other
-- allowed).  The stored analysis is checked again by analysis_error().
CREATE FUNCTION ai_analysis_schema() RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT jsonb_build_object(
    'type', 'object',
    'properties', jsonb_build_object(
        'room_type', jsonb_build_object(
            'type', 'string',
            'description', 'The room shown in the photo.',
            'enum', (SELECT jsonb_agg(t.room_type ORDER BY t.room_type) FROM moverz_batch.room_types t)),
        'items', jsonb_build_object(
            'type', 'array',
            'description', 'The objects to move, identical objects in one entry.',
            'items', jsonb_build_object(
                'type', 'object',
                'properties', jsonb_build_object(
                    'label', jsonb_build_object('type', 'string',
                                                'description', 'Short English noun phrase, singular.'),
                    'quantity', jsonb_build_object('type', 'integer',
                                                   'description', 'How many of them, at least 1.'),
                    'volume_m3', jsonb_build_object('type', 'number',
                                                    'description', 'Volume of one of them in cubic metres.')),
                'required', jsonb_build_array('label', 'quantity', 'volume_m3'),
                'additionalProperties', false))),
    'required', jsonb_build_array('room_type', 'items'),
    'additionalProperties', false)
$$;

-- ai_request_config: what a worker needs to build its requests to a model
-- API: the prompt, its version and the schema of the answer.
CREATE FUNCTION ai_request_config(OUT prompt_version text, OUT system_prompt text,
                                  OUT analysis_schema jsonb)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT CASE WHEN nullif(current_setting('moverz_batch.ai_system_prompt', true), '') IS NULL
            THEN moverz_batch.ai_prompt_version() ELSE 'custom' END,
       moverz_batch.ai_system_prompt(), moverz_batch.ai_analysis_schema()
$$;

REVOKE ALL ON FUNCTION ai_request_config() FROM PUBLIC;

-- The classification takes the provider and returns what to store.
DROP FUNCTION classify_result(int, text, text, jsonb, text);
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
                        moverz_batch.ai_cost_usd(r.model, r.tokens_in, r.tokens_out)),
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
                                  THEN now() + moverz_batch.retry_delay_ms(p.attempts, p_backoff_ms, r.retry_after_ms)
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
    PERFORM moverz_batch.settle_duplicates(v_final);
END
$$;

-- ai_service_status(): the pool-wide circuit (src/outage.c): since when the
-- AI service is unreachable (NULL: it answers), the probes sent since,
-- failures in a row, whether the work is held, the last failure.
CREATE FUNCTION ai_service_status(OUT unreachable_since timestamptz, OUT probes bigint,
                                  OUT failures_in_a_row int, OUT holding boolean, OUT last_error text)
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'moverz_ai_service_status';

-- queue_overview: one row: photos per status, how many wait for a retry,
-- the age of the oldest photo ready to go, whether processing is paused,
-- and since when the AI service is unreachable (with the probes sent).
CREATE OR REPLACE VIEW queue_overview AS
SELECT count(*) FILTER (WHERE p.status = 'PENDING' AND p.next_attempt_at <= now()) AS pending,
       count(*) FILTER (WHERE p.status = 'PENDING' AND p.next_attempt_at > now()) AS waiting_retry,
       count(*) FILTER (WHERE p.status = 'PROCESSING') AS in_flight,
       count(*) FILTER (WHERE p.status = 'DONE') AS done,
       count(*) FILTER (WHERE p.status = 'ERROR') AS failed,
       count(*) FILTER (WHERE p.status = 'CANCELLED') AS cancelled,
       now() - min(p.created_at) FILTER (WHERE p.status = 'PENDING' AND p.next_attempt_at <= now())
           AS oldest_pending_age,
       (SELECT c.paused FROM control c) AS paused,
       (SELECT s.unreachable_since FROM ai_service_status() s) AS ai_unreachable_since,
       (SELECT s.probes FROM ai_service_status() s) AS ai_probes
  FROM photos p;

-- echo_value: a rejected value as an error message quotes it: at most 64
-- characters, then "…"; a 1 MB value is not sent back whole (nor logged).
CREATE FUNCTION echo_value(v text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT quote_literal(left(v, 64)) || CASE WHEN length(v) > 64 THEN '…' ELSE '' END
$$;

-- check_photo_quota: moverz_batch.max_photos_per_user_per_day (0: none)
-- against the photos the user submitted in the last 24 hours (from their
-- batches: one row each, batches_user_created_idx) and the n asked for now.
-- Over it: SQLSTATE 53400, "retry after" the seconds until enough of those
-- photos leave the window (in the DETAIL, as retry_after_s=N; the HTTP API
-- answers 429 with Retry-After).
CREATE FUNCTION check_photo_quota(p_user_id text, p_n int) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_quota int := coalesce(nullif(current_setting('moverz_batch.max_photos_per_user_per_day', true), ''), '0')::int;
    v_used bigint;
    v_wait double precision;
BEGIN
    IF v_quota <= 0 THEN
        RETURN;
    END IF;
    SELECT coalesce(sum(b.count_queued + b.count_processing + b.count_completed + b.count_failed
                        + b.count_cancelled), 0)
      INTO v_used
      FROM moverz_batch.batches b
     WHERE b.user_id = p_user_id AND b.created_at > now() - interval '1 day';
    IF v_used + p_n <= v_quota THEN
        RETURN;
    END IF;
    -- the window frees photos as the oldest batches leave it
    SELECT ceil(extract(epoch FROM min(x.created_at) + interval '1 day' - now())) INTO v_wait
      FROM (SELECT b.created_at,
                   sum(b.count_queued + b.count_processing + b.count_completed + b.count_failed
                       + b.count_cancelled) OVER (ORDER BY b.created_at) AS freed
              FROM moverz_batch.batches b
             WHERE b.user_id = p_user_id AND b.created_at > now() - interval '1 day') AS x
     WHERE v_used - x.freed + p_n <= v_quota OR x.freed >= v_used;
    RAISE EXCEPTION USING ERRCODE = '53400',
        MESSAGE = format('user_id %s: %s photos in the last 24 hours, %s more would exceed the quota of %s (moverz_batch.max_photos_per_user_per_day)',
                         moverz_batch.echo_value(p_user_id), v_used, p_n, v_quota),
        DETAIL = format('retry_after_s=%s', greatest(coalesce(v_wait, 86400), 1)::bigint),
        HINT = 'Try again later, or split the photos into smaller batches.';
END
$$;

-- create_batch: one batch in QUEUED and one PENDING photo per asset, in one
-- transaction.  An idempotency key already used by the same user returns that
-- batch when the payload is the same, and is an error otherwise.  Its
-- statements (and those of the functions it calls) plan generically: a
-- custom plan, made at the first five calls of every session, carries the
-- assets as a constant, copied whole several times while planning (~30 ms
-- for 10,000 photos, for the checks and the insert).
CREATE OR REPLACE FUNCTION create_batch(project_id uuid, user_id text, assets jsonb,
                             priority text DEFAULT 'NORMAL', idempotency_key text DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_priority moverz_batch.batch_priority;
    v_hash text;
    v_batch uuid;
    v_existing record;
BEGIN
    PERFORM moverz_batch.check_user_id(user_id);
    IF priority IS NULL OR priority NOT IN ('HIGH', 'NORMAL', 'LOW') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('priority must be one of HIGH, NORMAL, LOW (got %s)', coalesce(moverz_batch.echo_value(priority), 'NULL'));
    END IF;
    IF idempotency_key IS NOT NULL AND (btrim(idempotency_key) = '' OR octet_length(idempotency_key) > 255) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'idempotency_key must be a non-empty string of at most 255 bytes';
    END IF;
    v_priority := priority::moverz_batch.batch_priority;
    PERFORM moverz_batch.owned_project(create_batch.project_id, create_batch.user_id);
    PERFORM moverz_batch.check_assets(assets);
    PERFORM moverz_batch.check_photo_quota(create_batch.user_id, jsonb_array_length(assets));
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

-- user_photo_quota: per user who submitted photos in the last 24 hours,
-- how many, against moverz_batch.max_photos_per_user_per_day (NULL: no
-- quota), and how many are left.
CREATE VIEW user_photo_quota AS
SELECT b.user_id,
       sum(b.count_queued + b.count_processing + b.count_completed + b.count_failed
           + b.count_cancelled)::bigint AS photos_last_24h,
       q.quota,
       greatest(q.quota - sum(b.count_queued + b.count_processing + b.count_completed + b.count_failed
                              + b.count_cancelled), 0)::bigint AS remaining
  FROM batches b,
       (SELECT nullif(coalesce(nullif(current_setting('moverz_batch.max_photos_per_user_per_day', true), ''),
                               '0')::int, 0) AS quota) AS q
 WHERE b.created_at > now() - interval '1 day'
 GROUP BY b.user_id, q.quota;

-- insert_photos: one photo per asset.  A photo whose checksum matches a
-- photo already DONE in the project, or an earlier photo of the same batch,
-- is a duplicate: it is never sent to the AI; it takes the analysis of the
-- DONE one at once, or the outcome of the earlier one when that finishes
-- (complete_photos), and its items are not counted again.  plpgsql, so that
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
           finished_at = NULL, updated_at = now()
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
-- of them deadlock.  cancel_batch locks every photo of the batch that a
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
    -- photos of this batch a worker claimed ahead are not sent either
    PERFORM moverz_batch.recall_claimed_photos();
    RETURN v_n;
END
$$;

-- purge: retention.  Deletes the batches finished (or cancelled) more than
-- older_than ago, with their photos, inventories and jobs, and the AI
-- metrics older than that.  Returns what it deleted.
CREATE OR REPLACE FUNCTION purge(older_than interval DEFAULT '30 days',
                      OUT batches_deleted bigint, OUT metrics_deleted bigint)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_ids uuid[];
BEGIN
    IF older_than IS NULL OR older_than < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'older_than must be a non-negative interval';
    END IF;
    -- one set of batches, locked in the order of every path (cancel_batch):
    -- their photos, then the batches, chosen again under the lock (a batch
    -- retried meanwhile is no longer finished); its duplicates are promoted
    -- and exactly that set is deleted
    v_ids := ARRAY(SELECT b.id FROM moverz_batch.batches b
                    WHERE moverz_batch.is_terminal(b.status) AND b.completed_at < now() - older_than);
    PERFORM 1 FROM moverz_batch.photos p WHERE p.batch_id = ANY (v_ids) ORDER BY p.id FOR UPDATE;
    v_ids := ARRAY(SELECT b.id FROM moverz_batch.batches b
                    WHERE b.id = ANY (v_ids) AND moverz_batch.is_terminal(b.status)
                      AND b.completed_at < now() - older_than
                    ORDER BY b.id
                      FOR UPDATE);
    PERFORM moverz_batch.promote_duplicates(v_ids);
    DELETE FROM moverz_batch.batches b WHERE b.id = ANY (v_ids);
    GET DIAGNOSTICS batches_deleted = ROW_COUNT;
    DELETE FROM moverz_batch.ai_metrics m WHERE m.created_at < now() - older_than;
    GET DIAGNOSTICS metrics_deleted = ROW_COUNT;
END
$$;

-- projects_lock_photos: before a project goes (its batches, then their
-- photos, by cascade), lock its photos, in the order of every path
-- (cancel_batch): a write-back holding some of them finishes first, instead
-- of deadlocking with the cascade that holds their batch.
CREATE FUNCTION projects_lock_photos() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM 1 FROM moverz_batch.photos p
     WHERE p.batch_id IN (SELECT b.id FROM moverz_batch.batches b WHERE b.project_id = OLD.id)
     ORDER BY p.id
       FOR UPDATE;
    RETURN OLD;
END
$$;
REVOKE ALL ON FUNCTION projects_lock_photos() FROM PUBLIC;

CREATE TRIGGER projects_lock_photos BEFORE DELETE ON projects
    FOR EACH ROW EXECUTE FUNCTION projects_lock_photos();

-- api_user: jwt_user_id(), or HTTP 401 when the token names no user or
-- never expires (no "exp" claim: PostgREST refuses an expired token, but
-- accepts one without "exp" for ever).
CREATE OR REPLACE FUNCTION api_user() RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_user text := moverz_batch.jwt_user_id();
BEGIN
    IF v_user IS NULL OR btrim(v_user) = '' THEN
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

-- progress_payload: the compact state of one batch, now: {"batchId",
-- "status", "progress", "counts": {queued, processing, completed, failed,
-- total}, "inventoryReady": bool}, and "waitingForAiServiceSince" while its
-- photos wait for an AI service that is down (ai_service_status()) (what a
-- notification announces; NULL for a batch the caller may not see).
-- plpgsql, so that its plan is kept.
CREATE OR REPLACE FUNCTION progress_payload(p_batch_id uuid) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET enable_seqscan = off SET jit = off AS $$
BEGIN
    RETURN (SELECT (moverz_batch.batch_state(b)
                    || jsonb_build_object('inventoryReady',
                           EXISTS (SELECT 1 FROM moverz_batch.inventory_summaries s
                                    WHERE s.batch_id = b.id AND s.generation = b.inventory_generation))
                    || coalesce((SELECT jsonb_build_object('waitingForAiServiceSince', a.unreachable_since)
                                   FROM moverz_batch.ai_service_status() a
                                  WHERE a.holding AND b.count_queued + b.count_processing > 0), '{}'))::text
              FROM moverz_batch.batches b WHERE b.id = p_batch_id);
END
$$;

-- notify_progress: notify the state of one batch, unless this transaction
-- already did.  The batches notified are remembered in a transaction-local
-- setting.
CREATE OR REPLACE FUNCTION notify_progress(p_batch_id uuid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_done text := coalesce(current_setting('moverz_notify.batches', true), '');
    v_payload text;
BEGIN
    IF position(p_batch_id::text IN v_done) > 0 THEN
        RETURN;
    END IF;
    PERFORM set_config('moverz_notify.batches', v_done || p_batch_id::text || ',', true);
    v_payload := jsonb_build_object('batchId', p_batch_id,
                                    'txid', pg_catalog.txid_current())::text;
    PERFORM pg_notify('moverz_batch_progress', v_payload);
END
$$;


-- Privileges of the new functions, as a fresh install gives them
-- (70_http_api.sql): moverz_app executes what PUBLIC could, PUBLIC nothing.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'moverz_batch'::regnamespace
                AND (p.proacl IS NULL
                     OR EXISTS (SELECT 1 FROM pg_catalog.aclexplode(p.proacl) a
                                 WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')) LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO moverz_app', f);
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;
GRANT SELECT ON model_prices TO moverz_app;

-- Plans made while the inventory was empty no longer read the whole table
-- once it has grown (insert_photos, replaced above, has the same setting).
ALTER FUNCTION run_inventory_job(bigint) SET enable_seqscan = off SET jit = off;
