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
    PERFORM moverz_batch_internal.api_owned_batch(stream_auth.id, moverz_batch_internal.api_user());
    v_state := moverz_batch.progress_payload(stream_auth.id)::jsonb;
    IF (v_state ->> 'inventoryReady')::boolean
       AND moverz_batch_internal.is_terminal((v_state ->> 'status')::moverz_batch.batch_status) THEN
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
CREATE FUNCTION moverz_batch_internal.admin_check_limit(p_limit int) RETURNS void
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
    PERFORM moverz_batch_internal.admin_check_limit("maxRows");
    IF admin_batches.status IS NOT NULL
       AND admin_batches.status NOT IN (SELECT unnest(enum_range(NULL::moverz_batch.batch_status))::text) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('status must be one of %s (got %s)',
                             array_to_string(enum_range(NULL::moverz_batch.batch_status), ', '),
                             moverz_batch_internal.echo_value(admin_batches.status));
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
    PERFORM moverz_batch_internal.admin_check_limit("maxRows");
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
CREATE FUNCTION moverz_batch_internal.admin_act(p_action text, p_id uuid) RETURNS int
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
    PERFORM moverz_batch_internal.api_raise(CASE v_state WHEN '55000' THEN 'PT409' ELSE v_state END, v_msg, NULL);
    RETURN NULL;
END
$$;

-- moverz_api.admin_retry_photo: POST /rpc/admin_retry_photo {"photoId"}:
-- retry_photo (the photo and its duplicates back to PENDING).
CREATE FUNCTION moverz_api.admin_retry_photo("photoId" uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_n int := moverz_batch_internal.admin_act('retry_photo', "photoId");
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
    v_n int := moverz_batch_internal.admin_act('cancel_batch', "batchId");
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
REVOKE ALL ON FUNCTION moverz_batch_internal.admin_check_limit(int), moverz_batch_internal.admin_act(text, uuid) FROM PUBLIC;
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
