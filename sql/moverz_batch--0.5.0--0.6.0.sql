-- moverz_batch 0.5.0 -> 0.6.0
--
-- A photo submitted again while its first copy still waits or is in flight
-- in another open batch of the project waits for that copy's analysis
-- instead of being sent and paid twice (issue #20): insert_photos calls the
-- new wait_for_copies_in_flight; cancel_batch sends such copies on their
-- own; a retry of a copy that took another batch's failure analyses it.
-- test/e2e/70_upgrade.sh checks that an updated 0.5.0 (and every earlier
-- release) has exactly the objects of a fresh 0.6.0.

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION moverz_batch UPDATE TO '0.6.0'" to load this file. \quit

-- insert_photos: one photo per asset.  A photo whose checksum matches a
-- photo already DONE in the project, one still waiting or in flight in
-- another open batch of the project, or an earlier photo of the same batch,
-- is a duplicate: it is never sent to the AI; it takes the analysis of the
-- DONE one at once, or the outcome of the other one when that finishes
-- (complete_photos, settle_duplicates), and its items are not counted
-- again.  The copies in flight are looked for only when the project has
-- another open batch (wait_for_copies_in_flight).  plpgsql, so that
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
    IF EXISTS (SELECT 1 FROM moverz_batch.batches b
                WHERE b.project_id = p_project_id AND b.status IN ('QUEUED', 'PROCESSING')
                  AND b.id <> p_batch_id) THEN
        PERFORM moverz_batch.wait_for_copies_in_flight(p_batch_id, p_project_id);
    END IF;
END
$$;

-- wait_for_copies_in_flight: the new photos of a batch (still PENDING, not
-- duplicates) whose checksum matches a photo waiting or in flight in another
-- open batch of the project become duplicates of it: they wait for its
-- outcome instead of being sent and paid a second time (issue #20).  Called
-- by insert_photos only when the project has another open batch, so that a
-- submission to an idle project costs nothing more, and without an index of
-- its own: a partial index of the open photos by checksum cost every photo
-- two more index insertions (its creation and its claim), 17 % of scenario
-- A's throughput.  The photos of the open batches are read through
-- photos_batch_position.
-- The originals are locked FOR SHARE until this commits: their write-back,
-- which settles their duplicates, waits for it and then sees these.  An
-- original whose write-back committed while this waited comes back DONE (its
-- new version is re-checked): its duplicates take its analysis at once.  One
-- that ended ERROR meanwhile is no longer matched: the new photo is sent.
-- Two batches of the same photo created at the same instant (neither sees
-- the other uncommitted) are both sent.  Lock order: the other batches'
-- photos only (their batches are not locked; see cancel_batch).
CREATE OR REPLACE FUNCTION wait_for_copies_in_flight(p_batch_id uuid, p_project_id uuid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off SET jit = off AS $$
DECLARE
    v_final uuid[];
BEGIN
    WITH marked AS (
        UPDATE moverz_batch.photos n
           SET duplicate_of = c.id, updated_at = now()
          FROM (SELECT o.id, o.checksum, o.status
                  FROM moverz_batch.batches b
                  JOIN moverz_batch.photos o ON o.batch_id = b.id
                 WHERE b.project_id = p_project_id AND b.status IN ('QUEUED', 'PROCESSING')
                   AND b.id <> p_batch_id
                   AND o.status IN ('PENDING', 'PROCESSING', 'DONE') AND o.duplicate_of IS NULL
                   AND o.checksum IN (SELECT m.checksum FROM moverz_batch.photos m
                                       WHERE m.batch_id = p_batch_id AND m.status = 'PENDING'
                                         AND m.duplicate_of IS NULL)
                   FOR SHARE OF o) AS c
         WHERE n.batch_id = p_batch_id AND n.checksum = c.checksum
           AND n.status = 'PENDING' AND n.duplicate_of IS NULL
        RETURNING c.id, c.status)
    SELECT array_agg(DISTINCT m.id) FILTER (WHERE m.status = 'DONE') INTO v_final FROM marked m;
    PERFORM moverz_batch.settle_duplicates(v_final);
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
           finished_at = NULL, updated_at = now(),
           -- a copy that took the failure of a photo of another batch is
           -- analysed on its own this time
           duplicate_of = CASE WHEN (SELECT o.batch_id FROM moverz_batch.photos o WHERE o.id = p.duplicate_of)
                                    = p.batch_id THEN p.duplicate_of END
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
-- of them deadlock.  Photos of another batch that are copies of these
-- (duplicates waiting for them) come last, after the batch: create_batch
-- locks the originals it waits for FOR SHARE (wait_for_copies_in_flight),
-- a write-back settles the copies of its photos (settle_duplicates), and
-- cancel_batch releases them.  cancel_batch locks every photo of the batch that a
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
    -- the copies in other batches that waited for one of these photos are
    -- sent on their own.  They are locked last, after this batch: a copy
    -- that waits is never claimed, and its original's write-back, the only
    -- other path that reaches it, needs the original, locked here.
    UPDATE moverz_batch.photos d SET duplicate_of = NULL, updated_at = now()
      FROM moverz_batch.photos o
     WHERE o.batch_id = cancel_batch.batch_id AND o.status = 'CANCELLED'
       AND d.duplicate_of = o.id AND d.duplicate_of IS NOT NULL
       AND d.batch_id <> cancel_batch.batch_id AND d.status = 'PENDING';
    IF FOUND THEN
        PERFORM moverz_batch.wake_photo_workers();
    END IF;
    -- photos of this batch a worker claimed ahead are not sent either
    PERFORM moverz_batch.recall_claimed_photos();
    RETURN v_n;
END
$$;

-- the new function, as the install script's privileges make it (70_http_api.sql)
GRANT EXECUTE ON FUNCTION wait_for_copies_in_flight(uuid, uuid) TO moverz_app;
REVOKE EXECUTE ON FUNCTION wait_for_copies_in_flight(uuid, uuid) FROM PUBLIC;
