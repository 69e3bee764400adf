-- bench/sql/uploads.sql: helpers of bench/uploads.sh (direct uploads,
-- issue #21), added to the schema "bench" that bench/sql/bench.sql makes in
-- the throwaway cluster.  Nothing here is part of the extension.
\set ON_ERROR_STOP 1

-- stage_uploads: request p_n uploads in project p_project (user 'bench')
-- for the PNG files p_dir/1.png .. p_dir/<p_n>.png, store their bytes over
-- SQL (store_upload, the database store), and keep the assets naming them
-- as payload p_key (bench.payloads), for one create_batch.  Untimed setup.
CREATE FUNCTION bench.stage_uploads(p_project uuid, p_dir text, p_n int, p_key text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_files jsonb;
    v_urls jsonb;
BEGIN
    SELECT jsonb_agg(jsonb_build_object('filename', 'up' || i || '.png', 'contentType', 'image/png',
                                        'size', (pg_stat_file(p_dir || '/' || i || '.png')).size) ORDER BY i)
      INTO v_files FROM generate_series(1, p_n) AS i;
    v_urls := moverz_batch.request_uploads(p_project, 'bench', v_files);
    PERFORM moverz_batch.store_upload((e.u ->> 'uploadId')::uuid, split_part(e.u ->> 'url', 'token=', 2),
                                      pg_read_binary_file(p_dir || '/' || e.i || '.png'))
       FROM jsonb_array_elements(v_urls) WITH ORDINALITY AS e(u, i);
    DELETE FROM bench.payloads WHERE key = p_key;
    INSERT INTO bench.payloads (key, n, assets)
    SELECT p_key, p_n, jsonb_agg(jsonb_build_object(
               'uploadId', e.u ->> 'uploadId',
               'roomType', CASE WHEN e.i % 2 = 1 THEN 'living_room' ELSE 'bedroom' END) ORDER BY e.i)
      FROM jsonb_array_elements(v_urls) WITH ORDINALITY AS e(u, i);
END
$$;

-- check_uploaded: the correctness of a finished batch of p_n uploaded
-- photos ('ok' or what is wrong).  Their items come from the fake's hash of
-- the bytes, so unlike bench.check no exact totals: every photo DONE in one
-- attempt, none a duplicate, counters = recount, COMPLETED, one inventory
-- summary whose items are those of the photos, one ai_metrics row each.
CREATE FUNCTION bench.check_uploaded(p_batch uuid, p_n int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    b moverz_batch.batches;
    c record;
    v_err text[] := '{}';
BEGIN
    SELECT * INTO b FROM moverz_batch.batches WHERE id = p_batch;
    SELECT count(*) AS total, count(*) FILTER (WHERE status = 'DONE' AND attempts = 1) AS done1,
           count(*) FILTER (WHERE duplicate_of IS NOT NULL) AS dup, count(*) FILTER (WHERE upload_id IS NULL) AS nourl
      INTO c FROM moverz_batch.photos WHERE batch_id = p_batch;
    IF c.total <> p_n OR c.done1 <> p_n THEN
        v_err := v_err || format('%s photos, %s DONE in one attempt, want %s', c.total, c.done1, p_n);
    END IF;
    IF c.dup > 0 OR c.nourl > 0 THEN v_err := v_err || format('%s duplicates, %s not uploaded', c.dup, c.nourl); END IF;
    IF b.status IS DISTINCT FROM 'COMPLETED' OR b.count_completed <> p_n THEN
        v_err := v_err || format('batch %s, %s completed', b.status, b.count_completed);
    END IF;
    IF (SELECT count(*) FROM moverz_batch.inventory_summaries WHERE batch_id = p_batch) <> 1 THEN
        v_err := v_err || 'not one inventory summary'::text;
    END IF;
    IF (SELECT total_items FROM moverz_batch.inventory_summaries WHERE batch_id = p_batch)
       IS DISTINCT FROM (SELECT sum(quantity) FROM moverz_batch.inventory_items WHERE batch_id = p_batch) THEN
        v_err := v_err || 'inventory total <> its items'::text;
    END IF;
    IF (SELECT count(*) FROM moverz_batch.ai_metrics WHERE meta ->> 'batchId' = p_batch::text) <> p_n THEN
        v_err := v_err || 'not one ai_metrics row per photo'::text;
    END IF;
    RETURN CASE WHEN cardinality(v_err) = 0 THEN 'ok' ELSE array_to_string(v_err, '; ') END;
END
$$;
