-- Shared by the pg_regress tests that name batches by a label (included
-- with \i from the top directory): the label table, and st(label).
-- Batches are named by a label in the output (their ids are random).
CREATE TABLE pg_temp.lbl (id uuid PRIMARY KEY, label text UNIQUE);
-- st(label): status queued/processing/completed/failed/cancelled,
-- inventory_queued, generation:status of its jobs; " MISMATCH" when the
-- counters or the status differ from a recount of the photos (the status
-- rules of the README, CANCELLED once cancelled photos are all that is
-- left besides finished ones).
CREATE FUNCTION pg_temp.st(label text) RETURNS text LANGUAGE sql AS $$
SELECT format('%s %s/%s/%s/%s/%s inv=%s jobs=%s%s', x.status,
              x.count_queued, x.count_processing, x.count_completed, x.count_failed, x.count_cancelled, x.inventory_queued,
              (SELECT coalesce(string_agg(j.generation || ':' || j.status, ',' ORDER BY j.generation), '-')
                 FROM moverz_batch.inventory_sync_jobs j WHERE j.batch_id = x.id),
              CASE WHEN (x.count_queued, x.count_processing, x.count_completed, x.count_failed, x.count_cancelled, x.status)
                        = (r.q, r.p, r.c, r.f, r.k, CASE WHEN r.p > 0 OR (r.q > 0 AND r.c + r.f + r.k > 0) THEN 'PROCESSING'
                                                 WHEN r.q > 0 OR r.c + r.f + r.k = 0 THEN 'QUEUED'
                                                 WHEN r.k > 0 THEN 'CANCELLED' WHEN r.f = 0 THEN 'COMPLETED'
                                                 WHEN r.c = 0 THEN 'FAILED' ELSE 'PARTIAL' END::moverz_batch.batch_status)
                   THEN '' ELSE ' MISMATCH' END)
  FROM pg_temp.lbl l JOIN moverz_batch.batches x ON x.id = l.id,
       LATERAL (SELECT (count(*) FILTER (WHERE status = 'PENDING'))::int AS q,
                       (count(*) FILTER (WHERE status = 'PROCESSING'))::int AS p,
                       (count(*) FILTER (WHERE status = 'DONE'))::int AS c,
                       (count(*) FILTER (WHERE status = 'ERROR'))::int AS f,
                       (count(*) FILTER (WHERE status = 'CANCELLED'))::int AS k
                  FROM moverz_batch.photos ph WHERE ph.batch_id = x.id) AS r
 WHERE l.label = $1
$$;
