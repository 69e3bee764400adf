-- bench/sql/bench.sql: helpers of the benchmark suite (bench/run.sh), in a
-- schema "bench" of the throwaway cluster's database postgres.  Nothing here
-- is part of the extension.
\set ON_ERROR_STOP 1
DROP SCHEMA IF EXISTS bench CASCADE;
CREATE SCHEMA bench;

-- Asset arrays prepared before any timing, so that create_batch is timed
-- alone.  Every photo asks the fake AI service for the same explicit items
-- ("sofa" x1 of 1.5 m3, "box" x3 of 0.1 m3): 4 items and 1.8 m3 per photo,
-- so a batch of n photos must have an inventory of exactly 4n items and
-- 1.8n m3, split between living_room (odd positions) and bedroom (even).
CREATE TABLE bench.payloads (key text PRIMARY KEY, n int NOT NULL, assets jsonb NOT NULL);
CREATE FUNCTION bench.payload(p_key text, p_n int, p_latency_ms int DEFAULT 0) RETURNS void
LANGUAGE sql AS $$
INSERT INTO bench.payloads (key, n, assets)
SELECT p_key, p_n, jsonb_agg(jsonb_build_object(
           'filename', 'photo' || i || '.jpg',
           'filePath', '/uploads/bench/' || p_key || '/photo' || i || '.jpg',
           'url', 'https://img.bench.example/' || p_key || '/' || i || '.jpg?items=sofa:1:1.5,box:3:0.1'
                  || CASE WHEN p_latency_ms > 0 THEN '&latency_ms=' || p_latency_ms ELSE '' END,
           'roomType', CASE WHEN i % 2 = 1 THEN 'living_room' ELSE 'bedroom' END) ORDER BY i)
  FROM generate_series(1, p_n) AS i
ON CONFLICT (key) DO NOTHING
$$;

-- new_project: a project of its own for each batch, so that no photo of a
-- batch is a duplicate (same checksum) of a photo analysed earlier in the
-- same project, which would not be sent to the AI service.
CREATE FUNCTION bench.new_project() RETURNS uuid LANGUAGE sql AS
$$ SELECT moverz_batch.create_project('bench', 'benchmark project') $$;

-- wait_ready: poll (1 ms sleeps) until the batch's inventory summary is
-- visible; ready_at = clock_timestamp() then, or NULL after p_timeout_s.
-- A procedure that commits between polls, as a polling client does: a
-- function would hold one snapshot for the whole run, so no dead tuple
-- could be pruned and no dead index entry skipped while the workers run.
CREATE PROCEDURE bench.wait_ready(p_batch uuid, p_timeout_s float8, INOUT ready_at timestamptz DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    v_deadline timestamptz := clock_timestamp() + p_timeout_s * interval '1 second';
BEGIN
    ready_at := NULL;
    LOOP
        IF EXISTS (SELECT 1 FROM moverz_batch.inventory_summaries s WHERE s.batch_id = p_batch) THEN
            ready_at := clock_timestamp();
            RETURN;
        END IF;
        IF clock_timestamp() > v_deadline THEN
            RETURN;
        END IF;
        COMMIT;
        PERFORM pg_sleep(0.001);
    END LOOP;
END
$$;

-- check: the correctness of one finished batch of p_n bench photos; 'ok' or
-- the list of what is wrong.
CREATE FUNCTION bench.check(p_batch uuid, p_n int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    b moverz_batch.batches;
    r record;
    cnt record;
    v_err text[] := '{}';
    v_prog jsonb;
BEGIN
    SELECT * INTO b FROM moverz_batch.batches WHERE id = p_batch;
    IF NOT FOUND THEN
        RETURN 'no such batch';
    END IF;
    SELECT count(*) AS total,
           count(*) FILTER (WHERE status = 'PENDING') AS q,
           count(*) FILTER (WHERE status = 'PROCESSING') AS p,
           count(*) FILTER (WHERE status = 'DONE') AS c,
           count(*) FILTER (WHERE status = 'ERROR') AS f
      INTO cnt FROM moverz_batch.photos WHERE batch_id = p_batch;
    IF cnt.total <> p_n THEN v_err := array_append(v_err, format('%s photos, not %s', cnt.total, p_n)); END IF;
    IF cnt.c <> p_n THEN v_err := array_append(v_err, format('%s DONE of %s', cnt.c, p_n)); END IF;
    SELECT count(*) FILTER (WHERE to_jsonb(p) ->> 'duplicate_of' IS NOT NULL) AS d INTO r FROM moverz_batch.photos p WHERE p.batch_id = p_batch;
    IF r.d > 0 THEN v_err := array_append(v_err, format('%s photos were duplicates (not analysed)', r.d)); END IF;
    SELECT count(*) FILTER (WHERE attempts <> 1) AS retried INTO r FROM moverz_batch.photos WHERE batch_id = p_batch;
    IF r.retried > 0 THEN v_err := array_append(v_err, format('%s photos needed more than one attempt', r.retried)); END IF;
    IF (b.count_queued, b.count_processing, b.count_completed, b.count_failed) <> (cnt.q, cnt.p, cnt.c, cnt.f) THEN
        v_err := array_append(v_err, format('counters (%s,%s,%s,%s) <> recount (%s,%s,%s,%s)',
            b.count_queued, b.count_processing, b.count_completed, b.count_failed, cnt.q, cnt.p, cnt.c, cnt.f));
    END IF;
    IF b.status <> 'COMPLETED' THEN v_err := array_append(v_err, format('status %s', b.status)); END IF;
    SELECT count(*) AS n, count(*) FILTER (WHERE status = 'DONE') AS done INTO r
      FROM moverz_batch.inventory_sync_jobs WHERE batch_id = p_batch;
    IF r.n <> 1 OR r.done <> 1 THEN v_err := array_append(v_err, format('%s inventory jobs (%s DONE)', r.n, r.done)); END IF;
    SELECT count(*) AS n, min(total_items) AS items, min(total_volume) AS vol INTO r
      FROM moverz_batch.inventory_summaries WHERE batch_id = p_batch;
    IF r.n <> 1 THEN v_err := array_append(v_err, format('%s inventory summaries', r.n)); END IF;
    IF r.items IS DISTINCT FROM 4 * p_n::bigint OR r.vol IS DISTINCT FROM 1.8 * p_n THEN
        v_err := array_append(v_err, format('inventory %s items / %s m3, want %s / %s', r.items, r.vol, 4 * p_n, 1.8 * p_n));
    END IF;
    SELECT coalesce(sum(quantity), 0) AS q, coalesce(sum(quantity * unit_volume_m3), 0) AS v INTO r
      FROM moverz_batch.inventory_items WHERE batch_id = p_batch;
    IF r.q <> 4 * p_n OR r.v <> 1.8 * p_n THEN
        v_err := array_append(v_err, format('inventory_items %s items / %s m3', r.q, r.v));
    END IF;
    v_prog := moverz_batch.batch_progress(p_batch, 0);
    IF (v_prog #>> '{inventorySummary,totalItems}')::bigint IS DISTINCT FROM 4 * p_n::bigint
       OR (v_prog #>> '{inventorySummary,totalVolume}')::numeric IS DISTINCT FROM 1.8 * p_n
       OR (v_prog #>> '{counts,completed}')::int IS DISTINCT FROM p_n
       OR (v_prog ->> 'progress')::int IS DISTINCT FROM 100 THEN
        v_err := array_append(v_err, format('batch_progress says %s', v_prog - 'photos'));
    END IF;
    IF p_n >= 2 AND jsonb_array_length(v_prog #> '{inventorySummary,rooms}') <> 2 THEN
        v_err := array_append(v_err, 'inventorySummary.rooms is not living_room + bedroom');
    END IF;
    SELECT count(*) AS n INTO r FROM moverz_batch.ai_metrics WHERE meta ->> 'batchId' = p_batch::text;
    IF r.n <> p_n THEN v_err := array_append(v_err, format('%s ai_metrics rows', r.n)); END IF;
    RETURN CASE WHEN cardinality(v_err) = 0 THEN 'ok' ELSE array_to_string(v_err, '; ') END;
END
$$;

-- ms: an interval in milliseconds.
CREATE FUNCTION bench.ms(interval) RETURNS float8 LANGUAGE sql IMMUTABLE AS
$$ SELECT extract(epoch FROM $1) * 1000 $$;

-- Samples of the latency scenarios (C): one row per call.
CREATE TABLE bench.samples (
    kind text NOT NULL, run int NOT NULL, batch_id uuid, ms float8, ms2 float8, ok text
);

-- time_create_batch: p_calls calls of create_batch with payload p_key, each
-- in a transaction of its own, timed server-side around the call (ms) and
-- up to the end of its COMMIT (ms2, with fsync); after each, wait for the
-- batch to be finished and check it.  Records kind "create_<key>" and
-- "inventory_after_last_result_<key>" (max(finished_at) -> inventory
-- visible).
CREATE PROCEDURE bench.time_create_batch(p_key text, p_calls int, p_run int)
LANGUAGE plpgsql AS $$
DECLARE
    v_assets jsonb;
    v_n int;
    t0 timestamptz;
    t1 timestamptz;
    t2 timestamptz;
    t3 timestamptz;
    v_batch uuid;
    v_last timestamptz;
    v_synced timestamptz;
    v_project uuid;
BEGIN
    SELECT assets, n INTO v_assets, v_n FROM bench.payloads WHERE key = p_key;
    PERFORM set_config('moverz_batch.max_batch_size', greatest(v_n, 1000)::text, false);
    FOR i IN 1..p_calls LOOP
        v_project := bench.new_project();
        COMMIT;
        t0 := clock_timestamp();
        v_batch := moverz_batch.create_batch(v_project, 'bench', v_assets);
        t1 := clock_timestamp();
        COMMIT;
        t2 := clock_timestamp();
        CALL bench.wait_ready(v_batch, 60, t3);
        SELECT max(finished_at) INTO v_last FROM moverz_batch.photos WHERE batch_id = v_batch;
        SELECT synced_at INTO v_synced FROM moverz_batch.inventory_summaries WHERE batch_id = v_batch;
        INSERT INTO bench.samples VALUES
            ('create_' || p_key, p_run, v_batch, bench.ms(t1 - t0), bench.ms(t2 - t0),
             bench.check(v_batch, v_n)),
            ('inventory_after_last_result_' || p_key, p_run, v_batch, bench.ms(t3 - v_last),
             bench.ms(v_synced - v_last), NULL);
        COMMIT;
    END LOOP;
END
$$;

-- time_progress: p_calls calls of batch_progress(p_batch), output text
-- included (what a client receives), timed server-side.
CREATE PROCEDURE bench.time_progress(p_batch uuid, p_kind text, p_calls int, p_run int)
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    v_len int;
BEGIN
    FOR i IN 1..p_calls LOOP
        t0 := clock_timestamp();
        v_len := length(moverz_batch.batch_progress(p_batch)::text);
        INSERT INTO bench.samples VALUES (p_kind, p_run, p_batch, bench.ms(clock_timestamp() - t0), v_len, NULL);
    END LOOP;
END
$$;

-- sizes: on-disk size of the extension's tables (with indexes and TOAST).
CREATE FUNCTION bench.sizes() RETURNS TABLE (relname text, bytes bigint, n_live bigint, n_dead bigint)
LANGUAGE sql AS $$
SELECT c.relname::text, pg_total_relation_size(c.oid), s.n_live_tup, s.n_dead_tup
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'moverz_batch'
  LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
 WHERE c.relkind = 'r'
   AND c.relname IN ('photos', 'batches', 'ai_metrics', 'inventory_items', 'inventory_summaries',
                     'inventory_sync_jobs')
 ORDER BY 1
$$;
