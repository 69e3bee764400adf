-- 02_concurrency: real concurrent sessions (dblink) writing the same
-- batches: no lost counter update, exactly one inventory job per batch and
-- generation, idempotency keys and retry_batch racing other sessions.
--
-- Not wrapped in one transaction: the sessions must see each other's
-- committed data.  Everything is created under user "tap_conc" and deleted
-- at the end (and at the start, after an interrupted run).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(73);

DELETE FROM moverz_batch.projects WHERE user_id = 'tap_conc';

-- The connection string of this very database, for dblink.
SELECT format('dbname=%s host=%s port=%s user=%s application_name=tap_conc', current_database(),
              split_part(current_setting('unix_socket_directories'), ',', 1),
              current_setting('port'), current_user) AS conn \gset
SELECT dblink_connect(c, :'conn') FROM unnest(ARRAY['a', 'b', 'c1', 'c2', 'c3', 'c4']) AS c \g /dev/null
SELECT dblink_exec(c, 'SET statement_timeout = ''60s''') FROM unnest(ARRAY['a', 'b', 'c1', 'c2', 'c3', 'c4']) AS c \g /dev/null
SELECT pid AS a_pid FROM dblink('a', 'SELECT pg_backend_pid()') AS t(pid int) \gset
SELECT pid AS b_pid FROM dblink('b', 'SELECT pg_backend_pid()') AS t(pid int) \gset

-- mk(n): a committed batch of n photos, with URLs no other batch uses
-- (https://x.example/<batch number>/f<i>.jpg): a photo with the filename
-- and URL of a DONE one would be a duplicate, inserted DONE at once, and
-- the sessions below would have nothing to wait for.
CREATE FUNCTION pg_temp.mk(n int) RETURNS uuid LANGUAGE sql AS $$
SELECT moverz_batch.create_batch(c.id, 'tap_conc',
    (SELECT jsonb_agg(jsonb_build_object('filename', format('f%s.jpg', i),
                                         'url', format('https://x.example/%s/f%s.jpg', k.bn, i)) ORDER BY i)
       FROM generate_series(0, n - 1) AS i))
  FROM (SELECT id FROM moverz_batch.projects WHERE user_id = 'tap_conc' AND name = 'conc') AS c,
       LATERAL (SELECT count(*) AS bn FROM moverz_batch.batches b WHERE b.project_id = c.id) AS k
$$;
-- st(batch): status q/p/c/f inv=... jobs=N, " MISMATCH" when the counters
-- or the status differ from a recount of the photos.
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
-- set_sql(batch, position, status): the UPDATE that finishes one photo.
CREATE FUNCTION pg_temp.set_sql(b uuid, pos int, s text) RETURNS text LANGUAGE sql AS $$
SELECT format('UPDATE moverz_batch.photos SET status = %L WHERE batch_id = %L AND position = %s', s, b, pos)
$$;
\ir include/blocked.sql
-- result(conn): the (single-column) result of the query sent on conn, as
-- text; the connection is drained.
CREATE FUNCTION pg_temp.result(c text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v text;
BEGIN
    SELECT string_agg(r, ',') INTO v FROM dblink_get_result(c) AS t(r text);
    PERFORM 1 FROM dblink_get_result(c) AS t(r text);
    RETURN v;
END
$$;

SELECT moverz_batch.create_project('tap_conc', 'conc') IS NOT NULL AS created \g /dev/null

------------------------------------------------------------------------
-- 1. The last two photos finished by two sessions at once: A takes the
--    batch row lock with the last-but-one photo, B's last photo waits for
--    it, then sees A's counters.
SELECT pg_temp.mk(3) AS s1 \gset
UPDATE moverz_batch.photos SET status = 'DONE' WHERE batch_id = :'s1' AND position = 0;
SELECT dblink_exec('a', 'BEGIN') \g /dev/null
SELECT dblink_exec('a', pg_temp.set_sql(:'s1', 1, 'DONE')) \g /dev/null
SELECT dblink_exec('b', 'BEGIN') \g /dev/null
SELECT is(dblink_send_query('b', pg_temp.set_sql(:'s1', 2, 'DONE')), 1, 'A then B: B sent');
SELECT ok(pg_temp.blocked(:b_pid, :a_pid), 'A then B: B waits for A on the batch row');
SELECT is(pg_temp.st(:'s1'), 'PROCESSING 2/0/1/0 inv=f jobs=0', 'A then B: nothing committed yet');
SELECT dblink_exec('a', 'COMMIT') \g /dev/null
SELECT is(pg_temp.result('b'), 'UPDATE 1', 'A then B: B done once A committed');
SELECT is(pg_temp.st(:'s1'), 'PROCESSING 1/0/2/0 inv=f jobs=0', 'A then B: A committed, B not yet');
SELECT dblink_exec('b', 'COMMIT') \g /dev/null
SELECT is(pg_temp.st(:'s1'), 'COMPLETED 0/0/3/0 inv=t jobs=1', 'A then B: completed, exactly one job');
SELECT is((SELECT generation FROM moverz_batch.inventory_sync_jobs WHERE batch_id = :'s1'), 1, 'A then B: job of generation 1');

-- 2. The reverse: A takes the last photo first, B (autocommit) the
--    last-but-one; one ends as ERROR: PARTIAL.
SELECT pg_temp.mk(3) AS s2 \gset
UPDATE moverz_batch.photos SET status = 'DONE' WHERE batch_id = :'s2' AND position = 0;
SELECT dblink_exec('a', 'BEGIN') \g /dev/null
SELECT dblink_exec('a', pg_temp.set_sql(:'s2', 2, 'ERROR')) \g /dev/null
SELECT is(dblink_send_query('b', pg_temp.set_sql(:'s2', 1, 'DONE')), 1, 'B then A: sent');
SELECT ok(pg_temp.blocked(:b_pid, :a_pid), 'B then A: the later session waits');
SELECT dblink_exec('a', 'COMMIT') \g /dev/null
SELECT is(pg_temp.result('b'), 'UPDATE 1', 'B then A: done');
SELECT is(pg_temp.st(:'s2'), 'PARTIAL 0/0/2/1 inv=t jobs=1', 'B then A: partial, exactly one job');

-- 3. Both sessions finish their photo inside explicit transactions, the
--    waiting one committing last; the batch ends FAILED with one job.
SELECT pg_temp.mk(2) AS s3 \gset
SELECT dblink_exec('a', 'BEGIN') \g /dev/null
SELECT dblink_exec('a', pg_temp.set_sql(:'s3', 1, 'ERROR')) \g /dev/null
SELECT dblink_exec('b', 'BEGIN') \g /dev/null
SELECT is(dblink_send_query('b', pg_temp.set_sql(:'s3', 0, 'ERROR')), 1, 'both failing: sent');
SELECT ok(pg_temp.blocked(:b_pid, :a_pid), 'both failing: B waits');
SELECT dblink_exec('a', 'COMMIT') \g /dev/null
SELECT is(pg_temp.result('b'), 'UPDATE 1', 'both failing: B done');
SELECT dblink_exec('b', 'COMMIT') \g /dev/null
SELECT is(pg_temp.st(:'s3'), 'FAILED 0/0/0/2 inv=t jobs=1', 'both failing: failed, exactly one job');

-- 4. The lock holder rolls back: the waiting session sees the counters as
--    they were, the batch is not terminal, no job; finishing it later
--    enqueues one.
SELECT pg_temp.mk(3) AS s4 \gset
UPDATE moverz_batch.photos SET status = 'DONE' WHERE batch_id = :'s4' AND position = 0;
SELECT dblink_exec('a', 'BEGIN') \g /dev/null
SELECT dblink_exec('a', pg_temp.set_sql(:'s4', 1, 'DONE')) \g /dev/null
SELECT is(dblink_send_query('b', pg_temp.set_sql(:'s4', 2, 'DONE')), 1, 'rollback: sent');
SELECT ok(pg_temp.blocked(:b_pid, :a_pid), 'rollback: B waits');
SELECT dblink_exec('a', 'ROLLBACK') \g /dev/null
SELECT is(pg_temp.result('b'), 'UPDATE 1', 'rollback: B done');
SELECT is(pg_temp.st(:'s4'), 'PROCESSING 1/0/2/0 inv=f jobs=0', 'rollback: not terminal, no job');
UPDATE moverz_batch.photos SET status = 'DONE' WHERE batch_id = :'s4' AND position = 1;
SELECT is(pg_temp.st(:'s4'), 'COMPLETED 0/0/3/0 inv=t jobs=1', 'rollback: finished later, one job');

-- 5. Two sessions finishing their photos of two batches, each statement
--    touching both batches, in opposite order of photos.
SELECT pg_temp.mk(2) AS s5 \gset
SELECT pg_temp.mk(2) AS s6 \gset
SELECT dblink_exec('a', 'BEGIN') \g /dev/null
SELECT dblink_exec('a', format('UPDATE moverz_batch.photos SET status = ''DONE'' WHERE (batch_id, position) IN ((%L, 0), (%L, 1))', :'s6', :'s5')) \g /dev/null
SELECT is(dblink_send_query('b', format('UPDATE moverz_batch.photos SET status = ''ERROR'' WHERE (batch_id, position) IN ((%L, 0), (%L, 1))', :'s5', :'s6')), 1, 'two batches: sent');
SELECT ok(pg_temp.blocked(:b_pid, :a_pid), 'two batches: B waits');
SELECT dblink_exec('a', 'COMMIT') \g /dev/null
SELECT is(pg_temp.result('b'), 'UPDATE 2', 'two batches: B done');
SELECT is(pg_temp.st(:'s5'), 'PARTIAL 0/0/1/1 inv=t jobs=1', 'two batches: first batch partial, one job');
SELECT is(pg_temp.st(:'s6'), 'PARTIAL 0/0/1/1 inv=t jobs=1', 'two batches: second batch partial, one job');

-- 5b. A statement spanning several batches locks them in id order, so
--     that two such statements cannot deadlock.  B holds the middle batch;
--     A's statement over the three must then hold the first and wait for
--     the middle one, not having touched the last.
SELECT b[1] AS lo, b[2] AS mid, b[3] AS hi
  FROM (SELECT array_agg(id ORDER BY id) AS b FROM (SELECT pg_temp.mk(1) AS id FROM generate_series(1, 3)) AS s) AS t \gset
-- locked(batch): is the batch row locked by another session?
CREATE FUNCTION pg_temp.locked(b uuid) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM moverz_batch.batches WHERE id = b FOR UPDATE NOWAIT;
    RETURN false;
EXCEPTION WHEN lock_not_available THEN
    RETURN true;
END
$$;
SELECT dblink_exec('b', 'BEGIN') \g /dev/null
SELECT x FROM dblink('b', format('SELECT 1 FROM moverz_batch.batches WHERE id = %L FOR UPDATE', :'mid')) AS t(x int) \g /dev/null
SELECT is(dblink_send_query('a', format('UPDATE moverz_batch.photos SET status = ''DONE'' WHERE batch_id IN (%L, %L, %L)', :'hi', :'mid', :'lo')), 1,
          'lock order: A sent');
SELECT ok(pg_temp.blocked(:a_pid, :b_pid), 'lock order: A waits for the middle batch');
SELECT ok(pg_temp.locked(:'lo'), 'lock order: A holds the first batch');
SELECT ok(NOT pg_temp.locked(:'hi'), 'lock order: A has not locked the last batch yet');
SELECT dblink_exec('b', 'COMMIT') \g /dev/null
SELECT is(pg_temp.result('a'), 'UPDATE 3', 'lock order: A done');
SELECT is(pg_temp.st(:'lo') || ' ' || pg_temp.st(:'mid') || ' ' || pg_temp.st(:'hi'),
          'COMPLETED 0/0/1/0 inv=t jobs=1 COMPLETED 0/0/1/0 inv=t jobs=1 COMPLETED 0/0/1/0 inv=t jobs=1', 'lock order: three batches completed');

------------------------------------------------------------------------
-- 6. Idempotency keys raced by two sessions.
SELECT dblink_exec('a', 'BEGIN') \g /dev/null
SELECT id AS ka FROM dblink('a', format($q$SELECT moverz_batch.create_batch(%L, 'tap_conc', '[{"filename": "k.jpg", "url": "https://x.example/k.jpg"}]', 'NORMAL', 'race-1')$q$,
                                        (SELECT id FROM moverz_batch.projects WHERE user_id = 'tap_conc'))) AS t(id uuid) \gset
SELECT is(dblink_send_query('b', format($q$SELECT moverz_batch.create_batch(%L, 'tap_conc', '[{"filename": "k.jpg", "url": "https://x.example/k.jpg"}]', 'NORMAL', 'race-1')$q$,
                                        (SELECT id FROM moverz_batch.projects WHERE user_id = 'tap_conc'))), 1, 'same key: B sent');
SELECT ok(pg_temp.blocked(:b_pid, :a_pid), 'same key: B waits for A''s key');
SELECT dblink_exec('a', 'COMMIT') \g /dev/null
SELECT is(pg_temp.result('b'), :'ka', 'same key, same payload: B gets A''s batch');
SELECT is((SELECT count(*) FROM moverz_batch.batches WHERE user_id = 'tap_conc' AND idempotency_key = 'race-1'), 1::bigint,
          'same key, same payload: one batch');
SELECT is((SELECT count(*) FROM moverz_batch.photos WHERE batch_id = :'ka'), 1::bigint, 'same key, same payload: one photo');
-- Another payload: B fails with 23505.
SELECT dblink_exec('a', 'BEGIN') \g /dev/null
SELECT id AS kc FROM dblink('a', format($q$SELECT moverz_batch.create_batch(%L, 'tap_conc', '[{"filename": "k.jpg", "url": "https://x.example/k.jpg"}]', 'NORMAL', 'race-2')$q$,
                                        (SELECT id FROM moverz_batch.projects WHERE user_id = 'tap_conc'))) AS t(id uuid) \gset
SELECT is(dblink_send_query('b', format($q$SELECT moverz_batch.create_batch(%L, 'tap_conc', '[{"filename": "other.jpg", "url": "https://x.example/k.jpg"}]', 'NORMAL', 'race-2')$q$,
                                        (SELECT id FROM moverz_batch.projects WHERE user_id = 'tap_conc'))), 1, 'same key, other payload: B sent');
SELECT ok(pg_temp.blocked(:b_pid, :a_pid), 'same key, other payload: B waits');
SELECT dblink_exec('a', 'COMMIT') \g /dev/null
SELECT throws_ok($$SELECT * FROM dblink_get_result('b') AS t(r text)$$, '23505', NULL, 'same key, other payload: B gets 23505');
SELECT dblink_disconnect('b') \g /dev/null
SELECT dblink_connect('b', :'conn') \g /dev/null
SELECT dblink_exec('b', 'SET statement_timeout = ''60s''') \g /dev/null
SELECT pid AS b_pid FROM dblink('b', 'SELECT pg_backend_pid()') AS t(pid int) \gset
SELECT is((SELECT array_agg(id) FROM moverz_batch.batches WHERE user_id = 'tap_conc' AND idempotency_key = 'race-2'), ARRAY[:'kc'::uuid],
          'same key, other payload: only A''s batch');
-- The first session rolls back: the second creates the batch.
SELECT dblink_exec('a', 'BEGIN') \g /dev/null
SELECT id AS kr FROM dblink('a', format($q$SELECT moverz_batch.create_batch(%L, 'tap_conc', '[{"filename": "k.jpg", "url": "https://x.example/k.jpg"}]', 'NORMAL', 'race-3')$q$,
                                        (SELECT id FROM moverz_batch.projects WHERE user_id = 'tap_conc'))) AS t(id uuid) \gset
SELECT is(dblink_send_query('b', format($q$SELECT moverz_batch.create_batch(%L, 'tap_conc', '[{"filename": "k.jpg", "url": "https://x.example/k.jpg"}]', 'NORMAL', 'race-3')$q$,
                                        (SELECT id FROM moverz_batch.projects WHERE user_id = 'tap_conc'))), 1, 'same key, A rolls back: B sent');
SELECT ok(pg_temp.blocked(:b_pid, :a_pid), 'same key, A rolls back: B waits');
SELECT dblink_exec('a', 'ROLLBACK') \g /dev/null
SELECT pg_temp.result('b') AS kb \gset
SELECT isnt(:'kb'::uuid, :'kr'::uuid, 'same key, A rolls back: B creates its own batch');
SELECT is((SELECT array_agg(id) FROM moverz_batch.batches WHERE user_id = 'tap_conc' AND idempotency_key = 'race-3'), ARRAY[:'kb'::uuid],
          'same key, A rolls back: exactly B''s batch exists');

------------------------------------------------------------------------
-- 7. retry_batch racing the inventory job of the generation it supersedes.
SELECT pg_temp.mk(2) AS r1 \gset
UPDATE moverz_batch.photos SET status = CASE position WHEN 0 THEN 'DONE' ELSE 'ERROR' END::moverz_batch.photo_status,
       analysis = CASE position WHEN 0 THEN '{"items": [{"label": "desk", "quantity": 1, "volume_m3": 0.5}]}'::jsonb END
 WHERE batch_id = :'r1';
SELECT id AS r1_job FROM moverz_batch.inventory_sync_jobs WHERE batch_id = :'r1' \gset
-- The retry first: the job, waiting for it, must find itself superseded.
SELECT dblink_exec('a', 'BEGIN') \g /dev/null
SELECT is(n, 1, 'retry vs job: A retried one photo')
  FROM dblink('a', format('SELECT moverz_batch.retry_batch(%L)', :'r1')) AS t(n int);
SELECT is(dblink_send_query('b', format('SELECT moverz_batch_internal.run_inventory_job(%s)', :r1_job)), 1, 'retry vs job: job sent');
SELECT ok(pg_temp.blocked(:b_pid, :a_pid), 'retry vs job: the job waits for the retry');
SELECT dblink_exec('a', 'COMMIT') \g /dev/null
SELECT is(pg_temp.result('b'), 'SUPERSEDED', 'retry vs job: the stale job ends SUPERSEDED');
SELECT is((SELECT count(*) FROM moverz_batch.inventory_summaries WHERE batch_id = :'r1'), 0::bigint,
          'retry vs job: the stale job wrote no summary');
SELECT ok(NOT moverz_batch.batch_progress(:'r1') ? 'inventorySummary', 'retry vs job: no summary shown for the re-opened batch');
SELECT is(pg_temp.st(:'r1'), 'PROCESSING 1/0/1/0 inv=f jobs=1', 'retry vs job: batch re-opened');
-- Two retries at once: one re-opens, the other finds nothing to retry.
UPDATE moverz_batch.photos SET status = 'ERROR' WHERE batch_id = :'r1' AND position = 1;
SELECT dblink_exec('a', 'BEGIN') \g /dev/null
SELECT is(n, 1, 'two retries: A retried one photo')
  FROM dblink('a', format('SELECT moverz_batch.retry_batch(%L)', :'r1')) AS t(n int);
SELECT is(dblink_send_query('b', format('SELECT moverz_batch.retry_batch(%L)', :'r1')), 1, 'two retries: B sent');
SELECT ok(pg_temp.blocked(:b_pid, :a_pid), 'two retries: B waits');
SELECT dblink_exec('a', 'COMMIT') \g /dev/null
SELECT is(pg_temp.result('b'), '0', 'two retries: B has nothing left to retry');
SELECT is((SELECT inventory_generation FROM moverz_batch.batches WHERE id = :'r1'), 3, 'two retries: one new generation');
-- The job first: the retry, waiting for it, re-opens after it.
UPDATE moverz_batch.photos SET status = 'ERROR' WHERE batch_id = :'r1' AND position = 1;
SELECT id AS r1_job3 FROM moverz_batch.inventory_sync_jobs WHERE batch_id = :'r1' AND generation = 3 \gset
SELECT dblink_exec('a', 'BEGIN') \g /dev/null
SELECT is(s, 'DONE', 'job vs retry: A ran the current job')
  FROM dblink('a', format('SELECT moverz_batch_internal.run_inventory_job(%s)', :r1_job3)) AS t(s text);
SELECT is(dblink_send_query('b', format('SELECT moverz_batch.retry_batch(%L)', :'r1')), 1, 'job vs retry: retry sent');
SELECT ok(pg_temp.blocked(:b_pid, :a_pid), 'job vs retry: the retry waits for the job');
SELECT dblink_exec('a', 'COMMIT') \g /dev/null
SELECT is(pg_temp.result('b'), '1', 'job vs retry: retried after the job');
SELECT is((SELECT string_agg(generation || ':' || status, ' ' ORDER BY generation) FROM moverz_batch.inventory_sync_jobs WHERE batch_id = :'r1'),
          '1:SUPERSEDED 2:PENDING 3:DONE', 'job vs retry: jobs by generation');

------------------------------------------------------------------------
-- 8. Stress: four sessions finish disjoint photos of the same four batches,
--    each in many short transactions whose statements span several
--    batches, all at once.  Then the counters must equal a recount, and
--    each batch have exactly one job.
SELECT pg_temp.mk(40) AS x0 \gset
SELECT pg_temp.mk(40) AS x1 \gset
SELECT pg_temp.mk(40) AS x2 \gset
SELECT pg_temp.mk(40) AS x3 \gset
-- Session k owns the photos with position % 4 = k.  Outcome: x0 all DONE,
-- x1 all ERROR, x2 ERROR at positions 0 and 1, x3 ERROR at positions
-- multiple of 3.  Photos go PENDING -> PROCESSING -> DONE/ERROR, those of
-- x0 and x1 back to PENDING once on the way.  Each session runs this
-- procedure (a temporary one of its own), which reports when it started
-- and finished, to prove that the four really ran at the same time.
SELECT format($proc$CREATE PROCEDURE pg_temp.stress(k int, OUT started timestamptz, OUT finished timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    bs uuid[] := ARRAY[%L, %L, %L, %L]::uuid[];
BEGIN
    started := clock_timestamp();
    FOR chunk IN 0 .. 9 LOOP
        UPDATE moverz_batch.photos SET status = 'PROCESSING'
         WHERE batch_id = ANY (bs) AND position %% 4 = k AND position / 4 = chunk;
        COMMIT;
        UPDATE moverz_batch.photos SET status = 'PENDING'
         WHERE batch_id = ANY (bs[1:2]) AND position %% 4 = k AND position / 4 = chunk;
        COMMIT;
        UPDATE moverz_batch.photos SET status = 'PROCESSING'
         WHERE batch_id = ANY (bs[1:2]) AND position %% 4 = k AND position / 4 = chunk;
        COMMIT;
        FOR i IN 1 .. 4 LOOP
            UPDATE moverz_batch.photos
               SET status = CASE WHEN batch_id = bs[1] THEN 'DONE'
                                 WHEN batch_id = bs[2] THEN 'ERROR'
                                 WHEN batch_id = bs[3] THEN CASE WHEN position < 2 THEN 'ERROR' ELSE 'DONE' END
                                 ELSE CASE WHEN position %% 3 = 0 THEN 'ERROR' ELSE 'DONE' END END::moverz_batch.photo_status
             WHERE batch_id = bs[1 + (i + chunk) %% 4] AND position %% 4 = k AND position / 4 = chunk;
            COMMIT;
        END LOOP;
    END LOOP;
    finished := clock_timestamp();
END
$$$proc$, :'x0', :'x1', :'x2', :'x3') AS stress_proc \gset
CREATE TEMP TABLE stress (c text, k int, started timestamptz, finished timestamptz);
INSERT INTO stress (c, k) SELECT 'c' || (k + 1), k FROM generate_series(0, 3) AS k;
SELECT dblink_exec(c, :'stress_proc') FROM stress \g /dev/null
SELECT is(count(*) FILTER (WHERE dblink_send_query(c, format('CALL pg_temp.stress(%s, NULL, NULL)', k)) = 1), 4::bigint,
          'stress: four sessions started') FROM stress;
UPDATE stress SET (started, finished) = (SELECT r.started, r.finished FROM dblink_get_result(c) AS r(started timestamptz, finished timestamptz));
SELECT is(count(*), 0::bigint, 'stress: sessions drained') FROM stress, LATERAL dblink_get_result(c) AS r(started timestamptz, finished timestamptz);
SELECT is(count(finished), 4::bigint, 'stress: the four sessions finished without error') FROM stress;
SELECT ok(max(started) < min(finished), 'stress: the four sessions ran at the same time') FROM stress;
SELECT is(pg_temp.st(:'x0'), 'COMPLETED 0/0/40/0 inv=t jobs=1', 'stress: batch 0 exact');
SELECT is(pg_temp.st(:'x1'), 'FAILED 0/0/0/40 inv=t jobs=1', 'stress: batch 1 exact');
SELECT is(pg_temp.st(:'x2'), 'PARTIAL 0/0/38/2 inv=t jobs=1', 'stress: batch 2 exact');
SELECT is(pg_temp.st(:'x3'), 'PARTIAL 0/0/26/14 inv=t jobs=1', 'stress: batch 3 exact');

------------------------------------------------------------------------
-- Whole file: counters equal a recount for every batch, one job per batch
-- and generation at most, a job for every terminal batch.
SELECT is(count(*) FILTER (WHERE pg_temp.st(id) LIKE '%MISMATCH'), 0::bigint, 'all batches: counters equal a recount')
  FROM moverz_batch.batches WHERE user_id = 'tap_conc';
SELECT is((SELECT count(*) FROM moverz_batch.inventory_sync_jobs WHERE user_id = 'tap_conc'),
          (SELECT count(DISTINCT (batch_id, generation)) FROM moverz_batch.inventory_sync_jobs WHERE user_id = 'tap_conc'),
          'all batches: at most one job per batch and generation');
SELECT is(count(*), 0::bigint, 'all batches: every terminal batch has its job')
  FROM moverz_batch.batches b
 WHERE b.user_id = 'tap_conc' AND moverz_batch_internal.is_terminal(b.status)
   AND NOT EXISTS (SELECT 1 FROM moverz_batch.inventory_sync_jobs j WHERE j.batch_id = b.id AND j.generation = b.inventory_generation);

SELECT dblink_disconnect(c) FROM unnest(ARRAY['a', 'b', 'c1', 'c2', 'c3', 'c4']) AS c \g /dev/null
DELETE FROM moverz_batch.projects WHERE user_id = 'tap_conc';
SELECT is((SELECT count(*) FROM moverz_batch.batches WHERE user_id = 'tap_conc'), 0::bigint, 'cleaned up');
SELECT * FROM finish();
