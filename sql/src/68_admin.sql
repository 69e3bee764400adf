-- Administration in psql: views of the queue, the batches, the failures, the
-- AI metrics and the workers; pause / resume; retention purge.
-- (retry_photo and cancel_batch are with the API, in 40_api.sql.)

-- worker_status(): the workers as they see themselves, from shared memory.
CREATE FUNCTION moverz_batch_internal.worker_status_raw(
    OUT kind text, OUT worker int, OUT pid int, OUT inflight int, OUT done bigint,
    OUT failed bigint, OUT last_error text, OUT last_error_at timestamptz, OUT since timestamptz)
RETURNS SETOF record
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'moverz_worker_status';

-- worker_status: one row per running worker: pid, requests in flight, calls
-- that finished a photo DONE and the others, the last error and since when
-- this incarnation runs.
CREATE VIEW worker_status AS
SELECT * FROM moverz_batch_internal.worker_status_raw();

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
CREATE VIEW queue_overview AS
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

-- batches_overview: one row per batch, newest first.
CREATE VIEW batches_overview AS
SELECT b.id AS batch_id, b.user_id, b.project_id, b.status, b.priority,
       b.count_queued AS queued, b.count_processing AS processing, b.count_completed AS completed,
       b.count_failed AS failed, b.count_cancelled AS cancelled,
       b.count_queued + b.count_processing + b.count_completed + b.count_failed + b.count_cancelled AS total,
       (moverz_batch.batch_state(b) ->> 'progress')::int AS progress,
       s.total_items, s.total_volume,
       b.created_at, b.completed_at, b.completed_at - b.created_at AS duration
  FROM batches b
  LEFT JOIN inventory_summaries s ON s.batch_id = b.id AND s.generation = b.inventory_generation
 ORDER BY b.created_at DESC;

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

-- failed_photos: photos in ERROR with their codes and messages, newest first.
CREATE VIEW failed_photos AS
SELECT p.id AS photo_id, p.batch_id, p.user_id, p.filename, p.url, p.error_code,
       p.error_message, p.attempts, p.finished_at
  FROM photos p
 WHERE p.status = 'ERROR'
 ORDER BY p.finished_at DESC;

-- batch_ai_metrics: the seed's analytics query, per batch: calls, average
-- and p95 latency, successes, total cost.  Duplicates make no call.
CREATE VIEW batch_ai_metrics AS
SELECT (m.meta ->> 'batchId')::uuid AS batch_id,
       count(*) AS calls,
       round(avg(m.latency_ms), 1) AS avg_latency_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY m.latency_ms) AS p95_latency_ms,
       count(*) FILTER (WHERE m.success) AS success_count,
       coalesce(sum(m.cost_usd), 0) AS total_cost_usd
  FROM ai_metrics m
 WHERE m.meta ? 'batchId'
 GROUP BY 1;

-- pause_processing / resume_processing: stop claiming photos (requests in
-- flight finish normally; photos claimed ahead and not sent are handed
-- back) and start again, without a restart; the switch survives restarts.
-- Each returns true once done: processing is now paused (pause), or
-- running (resume); calling either twice is harmless.  (Before 0.6.0
-- resume_processing returned false, "not paused", which read as a
-- failure.)
CREATE FUNCTION pause_processing() RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE moverz_batch.control SET paused = true, paused_at = now() WHERE NOT paused;
    IF FOUND THEN
        RAISE LOG 'moverz_batch: processing paused by %', session_user;
    END IF;
    PERFORM moverz_batch_internal.recall_claimed_photos();
    RETURN true;
END
$$;

CREATE FUNCTION resume_processing() RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE moverz_batch.control SET paused = false, paused_at = NULL WHERE paused;
    IF FOUND THEN
        RAISE LOG 'moverz_batch: processing resumed by %', session_user;
    END IF;
    PERFORM moverz_batch_internal.wake_photo_workers();
    RETURN true;
END
$$;

-- promote_duplicates: before the batches p_doomed are deleted, the oldest
-- surviving copy of each of their photos that other batches duplicate
-- becomes the original (the other copies point at it), and the inventories
-- of the batches concerned are synced again: no item is lost.
CREATE FUNCTION moverz_batch_internal.promote_duplicates(p_doomed uuid[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_batches uuid[];
BEGIN
    WITH copies AS (
        SELECT d.id, d.batch_id,
               first_value(d.id) OVER (PARTITION BY d.duplicate_of ORDER BY d.created_at, d.position, d.id) AS heir
          FROM moverz_batch.photos d
          JOIN moverz_batch.photos o ON o.id = d.duplicate_of
         WHERE o.batch_id = ANY (p_doomed) AND NOT d.batch_id = ANY (p_doomed)
    ), promoted AS (
        UPDATE moverz_batch.photos p
           SET duplicate_of = CASE WHEN c.heir = p.id THEN NULL ELSE c.heir END
          FROM copies c
         WHERE p.id = c.id
        RETURNING p.batch_id
    )
    SELECT array_agg(DISTINCT batch_id) INTO v_batches FROM promoted;
    PERFORM moverz_batch.sync_inventory(b)
       FROM unnest(v_batches) AS b
      WHERE EXISTS (SELECT 1 FROM moverz_batch.inventory_summaries s WHERE s.batch_id = b);
END
$$;

-- purge: retention.  Deletes the batches finished (or cancelled) more than
-- older_than ago, with their photos, inventories and jobs, and the AI
-- metrics older than that.  Returns what it deleted.
CREATE FUNCTION purge(older_than interval DEFAULT '30 days',
                      OUT batches_deleted bigint, OUT metrics_deleted bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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
                    WHERE moverz_batch_internal.is_terminal(b.status) AND b.completed_at < now() - older_than);
    PERFORM 1 FROM moverz_batch.photos p WHERE p.batch_id = ANY (v_ids) ORDER BY p.id FOR UPDATE;
    v_ids := ARRAY(SELECT b.id FROM moverz_batch.batches b
                    WHERE b.id = ANY (v_ids) AND moverz_batch_internal.is_terminal(b.status)
                      AND b.completed_at < now() - older_than
                    ORDER BY b.id
                      FOR UPDATE);
    PERFORM moverz_batch_internal.promote_duplicates(v_ids);
    DELETE FROM moverz_batch.batches b WHERE b.id = ANY (v_ids);
    GET DIAGNOSTICS batches_deleted = ROW_COUNT;
    DELETE FROM moverz_batch.ai_metrics m WHERE m.created_at < now() - older_than;
    GET DIAGNOSTICS metrics_deleted = ROW_COUNT;
    -- (the bytes of the photos deleted went with them; those of uploads
    -- never attached go once their URL expired)
    PERFORM moverz_batch_internal.expire_uploads();
END
$$;

REVOKE ALL ON FUNCTION moverz_batch_internal.worker_status_raw() FROM PUBLIC;
REVOKE ALL ON FUNCTION pause_processing() FROM PUBLIC;
REVOKE ALL ON FUNCTION resume_processing() FROM PUBLIC;
REVOKE ALL ON FUNCTION purge(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION moverz_batch_internal.promote_duplicates(uuid[]) FROM PUBLIC;
