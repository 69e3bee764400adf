-- bench/sql/explain_worker.sql: the photo workers' two statements on one
-- batch of :n photos, in a database no worker serves, as a worker runs them:
-- claim_photos of :claim photos (committed), then complete_photos of their
-- successful answers (as the fake AI service gives them) in a transaction of
-- its own.  Three rounds timed plainly (\timing), then one more round with
-- EXPLAIN (ANALYZE, BUFFERS) of every statement taking >= 1 ms, nested
-- statements and triggers included (auto_explain).
\set ON_ERROR_STOP 1
SET moverz_batch.max_batch_size = 1000000;
SELECT moverz_batch.create_batch(bench.new_project(), 'bench', assets) AS b
  FROM bench.payloads WHERE key = :'key' \gset
ANALYZE;
CREATE TEMP TABLE claimed AS
SELECT * FROM moverz_batch_internal.claim_photos(0, 1, 0, 300000) LIMIT 0;
PREPARE results AS
SELECT jsonb_agg(jsonb_build_object(
        'id', c.id, 'batch_id', c.batch_id, 'user_id', c.user_id, 'attempt', c.attempt,
        'http_status', 200, 'latency_ms', 1,
        'body', jsonb_build_object('room_type', c.room_type,
            'items', '[{"label": "sofa", "quantity": 1, "volume_m3": 1.5}, {"label": "box", "quantity": 3, "volume_m3": 0.1}]'::jsonb,
            'model', 'fake-vision-1', 'usage', '{"input_tokens": 1200, "output_tokens": 150}'::jsonb,
            'cost_usd', 0.015)))::text
  FROM claimed c;
\echo ==== plain timings (client-side, including one round trip), :claim photos per call
\timing on
\echo -- round 1: claim_photos, complete_photos
TRUNCATE claimed; INSERT INTO claimed SELECT * FROM moverz_batch_internal.claim_photos(0, 1, :claim, 300000);
\timing off
EXECUTE results \gset r_
\timing on
SELECT moverz_batch_internal.complete_photos(1, :'r_jsonb_agg'::jsonb, 3, 5000, 'moverz-ai') IS NOT NULL AS written;
\echo -- round 2: claim_photos, complete_photos
TRUNCATE claimed; INSERT INTO claimed SELECT * FROM moverz_batch_internal.claim_photos(0, 1, :claim, 300000);
\timing off
EXECUTE results \gset r_
\timing on
SELECT moverz_batch_internal.complete_photos(1, :'r_jsonb_agg'::jsonb, 3, 5000, 'moverz-ai') IS NOT NULL AS written;
\echo -- round 3: claim_photos, complete_photos
TRUNCATE claimed; INSERT INTO claimed SELECT * FROM moverz_batch_internal.claim_photos(0, 1, :claim, 300000);
\timing off
EXECUTE results \gset r_
\timing on
SELECT moverz_batch_internal.complete_photos(1, :'r_jsonb_agg'::jsonb, 3, 5000, 'moverz-ai') IS NOT NULL AS written;
\timing off
\echo ==== EXPLAIN ANALYZE (auto_explain, statements >= 1 ms, nested): round 4
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 1;
SET auto_explain.log_analyze = on;
SET auto_explain.log_buffers = on;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_triggers = on;
SET client_min_messages = log;
\echo ---- claim_photos
TRUNCATE claimed; INSERT INTO claimed SELECT * FROM moverz_batch_internal.claim_photos(0, 1, :claim, 300000);
SET client_min_messages = warning;
EXECUTE results \gset r_
SET client_min_messages = log;
\echo ---- complete_photos
SELECT moverz_batch_internal.complete_photos(1, :'r_jsonb_agg'::jsonb, 3, 5000, 'moverz-ai') IS NOT NULL AS written;
