-- 02_status_counters: batch counters and status through every transition
-- (single and multi-row UPDATEs, DELETEs and INSERTs of photos), and the
-- exactly-once enqueue of the inventory sync when a batch becomes terminal.
-- Photo statuses are driven by plain SQL (no background workers).
CREATE EXTENSION IF NOT EXISTS moverz_batch;
\set VERBOSITY terse
\set SHOW_CONTEXT never

-- mk(project, n): a new batch of n photos f0.jpg .. f<n-1>.jpg, each batch
-- with URLs of its own (https://x.example/<batch number>/f<i>.jpg): these
-- tests are about status transitions, not about duplicate photos.
CREATE FUNCTION pg_temp.mk(p uuid, n int) RETURNS uuid LANGUAGE sql AS $$
SELECT moverz_batch.create_batch(p, 'r02_user',
    (SELECT jsonb_agg(jsonb_build_object('filename', format('f%s.jpg', i),
                                         'url', format('https://x.example/%s/f%s.jpg', k.bn, i)) ORDER BY i)
       FROM generate_series(0, n - 1) AS i,
            (SELECT count(*) AS bn FROM moverz_batch.batches b WHERE b.project_id = p) AS k))
$$;
-- st(batch): status queued/processing/completed/failed, inventory_queued,
-- number of inventory jobs; " MISMATCH" when counters or status differ from
-- a recount of the photos.
CREATE FUNCTION pg_temp.st(b uuid) RETURNS text LANGUAGE sql AS $$
SELECT format('%s %s/%s/%s/%s inv=%s jobs=%s%s', x.status,
              x.count_queued, x.count_processing, x.count_completed, x.count_failed,
              x.inventory_queued, (SELECT count(*) FROM moverz_batch.inventory_sync_jobs j WHERE j.batch_id = b),
              CASE WHEN (x.count_queued, x.count_processing, x.count_completed, x.count_failed, x.status)
                        = (r.q, r.p, r.c, r.f, moverz_batch_internal.derive_status(r.q, r.p, r.c, r.f))
                   THEN '' ELSE ' MISMATCH' END)
  FROM moverz_batch.batches x,
       LATERAL (SELECT (count(*) FILTER (WHERE status = 'PENDING'))::int AS q,
                       (count(*) FILTER (WHERE status = 'PROCESSING'))::int AS p,
                       (count(*) FILTER (WHERE status = 'DONE'))::int AS c,
                       (count(*) FILTER (WHERE status = 'ERROR'))::int AS f
                  FROM moverz_batch.photos ph WHERE ph.batch_id = b) AS r
 WHERE x.id = b
$$;

SELECT moverz_batch.create_project('r02_user', 'status tests') AS p \gset

-- derive_status, the seed's rules, on its own.
SELECT q, pr, c, f, moverz_batch_internal.derive_status(q, pr, c, f)
  FROM (VALUES (3, 0, 0, 0), (2, 1, 0, 0), (0, 3, 0, 0), (2, 0, 1, 0), (2, 0, 0, 1), (0, 1, 1, 1),
               (0, 0, 3, 0), (0, 0, 0, 3), (0, 0, 2, 1), (0, 0, 1, 2), (0, 0, 0, 0)) AS t(q, pr, c, f);

-- Batch A, 4 photos, one step at a time.
SELECT pg_temp.mk(:'p', 4) AS a \gset
SELECT pg_temp.st(:'a') AS created;
UPDATE moverz_batch.photos SET status = 'PROCESSING' WHERE batch_id = :'a' AND position = 0;
SELECT pg_temp.st(:'a') AS one_processing;
UPDATE moverz_batch.photos SET status = 'DONE' WHERE batch_id = :'a' AND position = 0;
SELECT pg_temp.st(:'a') AS pending_and_done;
UPDATE moverz_batch.photos SET status = 'PROCESSING' WHERE batch_id = :'a' AND position IN (1, 2, 3);
SELECT pg_temp.st(:'a') AS three_processing;
UPDATE moverz_batch.photos SET status = CASE position WHEN 1 THEN 'DONE' ELSE 'ERROR' END::moverz_batch.photo_status
 WHERE batch_id = :'a' AND position IN (1, 2);
SELECT pg_temp.st(:'a') AS one_left_processing;
UPDATE moverz_batch.photos SET status = 'ERROR', error_code = 'TIMEOUT' WHERE batch_id = :'a' AND position = 3;
SELECT pg_temp.st(:'a') AS partial;
SELECT generation, status FROM moverz_batch.inventory_sync_jobs WHERE batch_id = :'a';
SELECT completed_at IS NOT NULL AS completed_at_set FROM moverz_batch.batches WHERE id = :'a';
-- Writes that change no status change nothing, and enqueue nothing again.
UPDATE moverz_batch.photos SET updated_at = now(), error_message = 'x' WHERE batch_id = :'a';
UPDATE moverz_batch.photos SET status = 'ERROR' WHERE batch_id = :'a' AND status = 'ERROR';
UPDATE moverz_batch.photos SET status = 'DONE' WHERE batch_id = :'a' AND position = 99;
SELECT pg_temp.st(:'a') AS still_partial;
-- A terminal batch changing terminal status keeps its single job.
UPDATE moverz_batch.photos SET status = 'DONE', error_code = NULL WHERE batch_id = :'a' AND status = 'ERROR';
SELECT pg_temp.st(:'a') AS completed;
UPDATE moverz_batch.photos SET status = 'ERROR' WHERE batch_id = :'a';
SELECT pg_temp.st(:'a') AS failed;
-- Re-opened by hand (not retry_batch), then finished again: same generation,
-- so still one job.
UPDATE moverz_batch.photos SET status = 'PENDING' WHERE batch_id = :'a' AND position = 0;
SELECT pg_temp.st(:'a') AS reopened;
UPDATE moverz_batch.photos SET status = 'PROCESSING' WHERE batch_id = :'a' AND position = 0;
SELECT pg_temp.st(:'a') AS reprocessing;
UPDATE moverz_batch.photos SET status = 'DONE' WHERE batch_id = :'a' AND position = 0;
SELECT pg_temp.st(:'a') AS partial_again;

-- Straight from QUEUED to each terminal status in one multi-row UPDATE.
SELECT pg_temp.mk(:'p', 3) AS b \gset
SELECT pg_temp.mk(:'p', 3) AS c \gset
SELECT pg_temp.mk(:'p', 3) AS d \gset
UPDATE moverz_batch.photos SET status = 'DONE' WHERE batch_id = :'b';
UPDATE moverz_batch.photos SET status = 'ERROR' WHERE batch_id = :'c';
UPDATE moverz_batch.photos SET status = CASE WHEN position = 0 THEN 'ERROR' ELSE 'DONE' END::moverz_batch.photo_status
 WHERE batch_id = :'d';
SELECT pg_temp.st(:'b') AS b_all_done, pg_temp.st(:'c') AS c_all_error, pg_temp.st(:'d') AS d_mixed;

-- One statement over several batches: each batch gets its own delta, and
-- only the batches that become terminal get (one) job.
SELECT pg_temp.mk(:'p', 2) AS e \gset
SELECT pg_temp.mk(:'p', 2) AS f \gset
SELECT pg_temp.mk(:'p', 2) AS g \gset
UPDATE moverz_batch.photos SET status = 'PROCESSING' WHERE batch_id IN (:'e', :'f', :'g');
SELECT pg_temp.st(:'e') AS e, pg_temp.st(:'f') AS f, pg_temp.st(:'g') AS g;
UPDATE moverz_batch.photos
   SET status = CASE WHEN batch_id = :'e' THEN 'DONE' WHEN batch_id = :'f' THEN 'ERROR'
                     WHEN position = 0 THEN 'DONE' ELSE 'PROCESSING' END::moverz_batch.photo_status
 WHERE batch_id IN (:'e', :'f', :'g');
SELECT pg_temp.st(:'e') AS e, pg_temp.st(:'f') AS f, pg_temp.st(:'g') AS g;
UPDATE moverz_batch.photos SET status = 'ERROR' WHERE batch_id IN (:'e', :'f', :'g') AND status = 'PROCESSING';
SELECT pg_temp.st(:'e') AS e, pg_temp.st(:'f') AS f, pg_temp.st(:'g') AS g;

-- DELETE of photos.
SELECT pg_temp.mk(:'p', 3) AS h \gset
UPDATE moverz_batch.photos SET status = CASE position WHEN 0 THEN 'DONE' WHEN 1 THEN 'ERROR' ELSE 'PENDING' END::moverz_batch.photo_status
 WHERE batch_id = :'h';
SELECT pg_temp.st(:'h') AS h_before;
DELETE FROM moverz_batch.photos WHERE batch_id = :'h' AND status = 'PENDING';
SELECT pg_temp.st(:'h') AS h_pending_deleted;
DELETE FROM moverz_batch.photos WHERE batch_id = :'h' AND status = 'ERROR';
SELECT pg_temp.st(:'h') AS h_error_deleted;
DELETE FROM moverz_batch.photos WHERE batch_id = :'h';
SELECT pg_temp.st(:'h') AS h_empty;
-- Deleting the photo being processed, in a multi-row DELETE over two batches.
SELECT pg_temp.mk(:'p', 3) AS i \gset
SELECT pg_temp.mk(:'p', 2) AS j \gset
UPDATE moverz_batch.photos SET status = CASE position WHEN 0 THEN 'PROCESSING' ELSE 'DONE' END::moverz_batch.photo_status
 WHERE batch_id = :'i';
UPDATE moverz_batch.photos SET status = 'PROCESSING' WHERE batch_id = :'j' AND position = 0;
SELECT pg_temp.st(:'i') AS i_before, pg_temp.st(:'j') AS j_before;
DELETE FROM moverz_batch.photos WHERE batch_id IN (:'i', :'j') AND position = 0;
SELECT pg_temp.st(:'i') AS i_after, pg_temp.st(:'j') AS j_after;

-- INSERT of extra photos into existing batches.
SELECT pg_temp.mk(:'p', 2) AS k \gset
INSERT INTO moverz_batch.photos (batch_id, position, project_id, user_id, filename, url, checksum)
SELECT :'k', 2, :'p', 'r02_user', 'extra.jpg', 'https://x.example/extra.jpg', md5('extra.jpg:https://x.example/extra.jpg');
SELECT pg_temp.st(:'k') AS k_queued_plus_one;
UPDATE moverz_batch.photos SET status = 'DONE' WHERE batch_id = :'k';
SELECT pg_temp.st(:'k') AS k_completed;
-- Into a terminal batch: it is running again, and finishing again in the
-- same generation does not enqueue a second job.
INSERT INTO moverz_batch.photos (batch_id, position, project_id, user_id, filename, url, checksum)
SELECT :'k', n, :'p', 'r02_user', format('late%s.jpg', n), format('https://x.example/late%s.jpg', n), 'x'
  FROM generate_series(3, 4) AS n;
SELECT pg_temp.st(:'k') AS k_reopened_by_insert;
UPDATE moverz_batch.photos SET status = 'ERROR' WHERE batch_id = :'k' AND position >= 3;
SELECT pg_temp.st(:'k') AS k_partial;
SELECT count(*) AS k_jobs, max(generation) AS k_generation FROM moverz_batch.inventory_sync_jobs WHERE batch_id = :'k';
-- Already-finished photos inserted: counted in their own status.
SELECT pg_temp.mk(:'p', 1) AS l \gset
INSERT INTO moverz_batch.photos (batch_id, position, project_id, user_id, filename, url, checksum, status)
VALUES (:'l', 1, :'p', 'r02_user', 'd.jpg', 'https://x.example/d.jpg', 'x', 'DONE'),
       (:'l', 2, :'p', 'r02_user', 'e.jpg', 'https://x.example/e.jpg', 'x', 'ERROR'),
       (:'l', 3, :'p', 'r02_user', 'p.jpg', 'https://x.example/p.jpg', 'x', 'PROCESSING');
SELECT pg_temp.st(:'l') AS l_mixed_insert;
-- An emptied batch filled by one INSERT of finished photos becomes terminal
-- there, with its one job.
DELETE FROM moverz_batch.photos WHERE batch_id = :'l';
SELECT pg_temp.st(:'l') AS l_emptied;
INSERT INTO moverz_batch.photos (batch_id, position, project_id, user_id, filename, url, checksum, status)
VALUES (:'l', 10, :'p', 'r02_user', 'd.jpg', 'https://x.example/d.jpg', 'x', 'DONE'),
       (:'l', 11, :'p', 'r02_user', 'e.jpg', 'https://x.example/e.jpg', 'x', 'DONE');
SELECT pg_temp.st(:'l') AS l_completed_by_insert;

-- A photo moved to another batch leaves one count and joins the other.
SELECT pg_temp.mk(:'p', 2) AS m \gset
SELECT pg_temp.mk(:'p', 1) AS n \gset
UPDATE moverz_batch.photos SET status = 'DONE' WHERE batch_id = :'m' AND position = 0;
UPDATE moverz_batch.photos SET batch_id = :'n', position = 1 WHERE batch_id = :'m' AND position = 1;
SELECT pg_temp.st(:'m') AS m_after_move, pg_temp.st(:'n') AS n_after_move;

-- A failing statement leaves the counters as they were.
SELECT pg_temp.mk(:'p', 2) AS o \gset
UPDATE moverz_batch.photos SET status = 'DONE', error_code = 'NOT_A_CODE' WHERE batch_id = :'o';
SELECT pg_temp.st(:'o') AS o_unchanged;
BEGIN;
UPDATE moverz_batch.photos SET status = 'DONE' WHERE batch_id = :'o';
SELECT pg_temp.st(:'o') AS o_in_transaction;
ROLLBACK;
SELECT pg_temp.st(:'o') AS o_rolled_back;

-- Whole-file invariants: counters equal a recount everywhere, at most one
-- job per batch and generation, a job for exactly the terminal batches
-- (besides h, emptied after its job).
SELECT count(*) AS batches, count(*) FILTER (WHERE pg_temp.st(id) LIKE '%MISMATCH') AS mismatches,
       count(*) FILTER (WHERE moverz_batch_internal.is_terminal(status)) AS terminal,
       count(*) FILTER (WHERE inventory_queued) AS inventory_queued
  FROM moverz_batch.batches WHERE project_id = :'p';
SELECT count(*) AS jobs, count(DISTINCT (batch_id, generation)) AS distinct_batch_generations
  FROM moverz_batch.inventory_sync_jobs WHERE project_id = :'p';

DELETE FROM moverz_batch.projects WHERE id = :'p';
SELECT count(*) AS leftover_jobs FROM moverz_batch.inventory_sync_jobs WHERE project_id = :'p';
