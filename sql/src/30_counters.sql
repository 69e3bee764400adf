-- Batch counters and status, kept exact by statement-level triggers on photos,
-- and the exactly-once inventory-sync enqueue.

-- derive_status: the seed's rules.  QUEUED: all pending; PROCESSING: any
-- processing, or pending mixed with finished; PARTIAL: >= 1 DONE and >= 1
-- ERROR, nothing left; COMPLETED: all DONE; FAILED: all ERROR.  A batch with
-- cancelled photos and nothing left to do is CANCELLED (cancel_batch).
CREATE FUNCTION moverz_batch_internal.derive_status(queued int, processing int, completed int, failed int,
                              cancelled int DEFAULT 0)
RETURNS batch_status LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
RETURN CASE
    WHEN processing > 0 THEN 'PROCESSING'
    WHEN queued > 0 AND completed + failed + cancelled > 0 THEN 'PROCESSING'
    WHEN queued > 0 OR completed + failed + cancelled = 0 THEN 'QUEUED'
    WHEN cancelled > 0 THEN 'CANCELLED'
    WHEN failed = 0 THEN 'COMPLETED'
    WHEN completed = 0 THEN 'FAILED'
    ELSE 'PARTIAL'
END::moverz_batch.batch_status;
END
$$;

-- is_terminal: a batch that no worker will touch again.
CREATE FUNCTION moverz_batch_internal.is_terminal(s batch_status) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT s IN ('PARTIAL', 'COMPLETED', 'FAILED', 'CANCELLED')
$$;

-- status_delta_of: what one photo leaving status "old" and entering status
-- "new" does to its batch's counters (NULL: no such side).
CREATE FUNCTION moverz_batch_internal.status_delta_of(old photo_status, new photo_status)
RETURNS moverz_batch_internal.status_delta LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT ROW((new IS NOT DISTINCT FROM 'PENDING')::int    - (old IS NOT DISTINCT FROM 'PENDING')::int,
           (new IS NOT DISTINCT FROM 'PROCESSING')::int - (old IS NOT DISTINCT FROM 'PROCESSING')::int,
           (new IS NOT DISTINCT FROM 'DONE')::int       - (old IS NOT DISTINCT FROM 'DONE')::int,
           (new IS NOT DISTINCT FROM 'ERROR')::int      - (old IS NOT DISTINCT FROM 'ERROR')::int,
           (new IS NOT DISTINCT FROM 'CANCELLED')::int  - (old IS NOT DISTINCT FROM 'CANCELLED')::int
          )::moverz_batch_internal.status_delta
$$;

-- apply_batch_delta: add a counter delta to one batch, derive its status
-- and, in the transaction that makes it terminal and only if not queued yet,
-- mark it and insert exactly one inventory-sync job.  The first UPDATE takes
-- the batch's row lock, so concurrent writers serialise here and each sees
-- the counters left by the one before: none is lost, one enqueues.  Photos
-- added to a batch that does not exist are a foreign-key violation; photos
-- leaving a deleted batch are not.
CREATE FUNCTION moverz_batch_internal.apply_batch_delta(p_batch_id uuid, d moverz_batch_internal.status_delta)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    b record;
BEGIN
    IF d.queued = 0 AND d.processing = 0 AND d.completed = 0 AND d.failed = 0 AND d.cancelled = 0 THEN
        RETURN;
    END IF;
    UPDATE moverz_batch.batches AS x
       SET count_queued = x.count_queued + d.queued,
           count_processing = x.count_processing + d.processing,
           count_completed = x.count_completed + d.completed,
           count_failed = x.count_failed + d.failed,
           count_cancelled = x.count_cancelled + d.cancelled,
           status = moverz_batch_internal.derive_status(x.count_queued + d.queued, x.count_processing + d.processing,
                                               x.count_completed + d.completed, x.count_failed + d.failed,
                                               x.count_cancelled + d.cancelled),
           updated_at = now()
     WHERE x.id = p_batch_id
    RETURNING x.id, x.project_id, x.user_id, x.status, x.inventory_queued, x.inventory_generation
      INTO b;
    IF NOT FOUND AND d.queued + d.processing + d.completed + d.failed + d.cancelled > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '23503',
            MESSAGE = format('photos reference batch_id %s, which does not exist', p_batch_id),
            HINT = 'Photos are created with their batch by create_batch.';
    ELSIF NOT FOUND OR NOT moverz_batch_internal.is_terminal(b.status) OR b.inventory_queued THEN
        RETURN;
    END IF;
    UPDATE moverz_batch.batches SET inventory_queued = true, completed_at = now()
     WHERE id = p_batch_id;
    INSERT INTO moverz_batch.inventory_sync_jobs (batch_id, project_id, user_id, generation)
    VALUES (b.id, b.project_id, b.user_id, b.inventory_generation);
    PERFORM moverz_batch_internal.wake_inventory_worker();
END
$$;

-- counts_items: does a photo in this state count in inventories?
CREATE FUNCTION moverz_batch_internal.counts_items(status photo_status, duplicate_of uuid, analysis jsonb)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT status = 'DONE' AND duplicate_of IS NULL AND analysis IS NOT NULL
$$;

-- photos_counts_trigger: statement-level, with transition tables, so that
-- inserting 1,000 photos or writing back 50 results touches each batch once.
-- An UPDATE counts its old rows out and its new rows in, in one delta per
-- batch, so a batch never passes through a transient state.  It also keeps
-- the inventory items and per-room totals current (apply_inventory_delta).
CREATE FUNCTION moverz_batch_internal.photos_counts_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_void text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM moverz_batch_internal.apply_batch_delta(batch_id, ROW(sum(q)::int, sum(p)::int, sum(c)::int, sum(f)::int, sum(k)::int)::moverz_batch_internal.status_delta)
           FROM (SELECT n.batch_id, (moverz_batch_internal.status_delta_of(NULL, n.status)).* FROM new_rows n) AS x(batch_id, q, p, c, f, k)
          GROUP BY batch_id
          ORDER BY batch_id;
        PERFORM moverz_batch_internal.apply_inventory_delta(NULL, ARRAY(
            SELECT n.id FROM new_rows n WHERE moverz_batch_internal.counts_items(n.status, n.duplicate_of, n.analysis)));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM moverz_batch_internal.apply_batch_delta(batch_id, ROW(sum(q)::int, sum(p)::int, sum(c)::int, sum(f)::int, sum(k)::int)::moverz_batch_internal.status_delta)
           FROM (SELECT o.batch_id, (moverz_batch_internal.status_delta_of(o.status, NULL)).* FROM old_rows o) AS x(batch_id, q, p, c, f, k)
          GROUP BY batch_id
          ORDER BY batch_id;
        PERFORM moverz_batch_internal.apply_inventory_delta(ARRAY(SELECT o.id FROM old_rows o WHERE o.status = 'DONE'), NULL);
        -- an uploaded photo's file goes with it (its bytes with the upload)
        DELETE FROM moverz_batch.uploads u USING old_rows o
         WHERE o.upload_id IS NOT NULL AND u.id = o.upload_id AND u.photo_id = o.id;
    ELSE
        PERFORM moverz_batch_internal.apply_batch_delta(batch_id, ROW(sum(q)::int, sum(p)::int, sum(c)::int, sum(f)::int, sum(k)::int)::moverz_batch_internal.status_delta)
           FROM (SELECT o.batch_id, (moverz_batch_internal.status_delta_of(o.status, NULL)).* FROM old_rows o
                 UNION ALL
                 SELECT n.batch_id, (moverz_batch_internal.status_delta_of(NULL, n.status)).* FROM new_rows n) AS x(batch_id, q, p, c, f, k)
          GROUP BY batch_id
          ORDER BY batch_id;
        IF EXISTS (SELECT 1 FROM new_rows WHERE status = 'DONE')
           OR EXISTS (SELECT 1 FROM old_rows WHERE status = 'DONE') THEN
            -- rows whose counted items changed: out with the old, in with the new
            WITH pair AS (
                SELECT o.id, moverz_batch_internal.counts_items(o.status, o.duplicate_of, o.analysis) AS was,
                       moverz_batch_internal.counts_items(n.status, n.duplicate_of, n.analysis) AS is_now,
                       (o.analysis = n.analysis AND o.room_type IS NOT DISTINCT FROM n.room_type
                        AND o.batch_id = n.batch_id) AS same
                  FROM old_rows o JOIN new_rows n ON n.id = o.id
            )
            SELECT moverz_batch_internal.apply_inventory_delta(
                       ARRAY(SELECT id FROM pair WHERE was AND NOT (is_now AND same)),
                       ARRAY(SELECT id FROM pair WHERE is_now AND NOT (was AND same)))
              INTO STRICT v_void;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER photos_counts_insert AFTER INSERT ON photos
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION moverz_batch_internal.photos_counts_trigger();
CREATE TRIGGER photos_counts_update AFTER UPDATE ON photos
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION moverz_batch_internal.photos_counts_trigger();
CREATE TRIGGER photos_counts_delete AFTER DELETE ON photos
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION moverz_batch_internal.photos_counts_trigger();

-- batches_photos_trigger: a batch's photos go with it, as by ON DELETE
-- CASCADE (statement-level; TRUNCATE too).  SECURITY DEFINER, as a foreign
-- key's cascade runs as the table owner.
CREATE FUNCTION moverz_batch_internal.batches_photos_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        TRUNCATE moverz_batch.photos, moverz_batch.inventory_items;
        DELETE FROM moverz_batch.uploads u WHERE u.photo_id IS NOT NULL;
    ELSE
        DELETE FROM moverz_batch.photos p USING old_rows o WHERE p.batch_id = o.id;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION moverz_batch_internal.batches_photos_trigger() FROM PUBLIC;

-- projects_lock_photos: before a project goes (its batches, then their
-- photos, by cascade), lock its photos, in the order of every path
-- (cancel_batch): a write-back holding some of them finishes first, instead
-- of deadlocking with the cascade that holds their batch.
CREATE FUNCTION moverz_batch_internal.projects_lock_photos() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM 1 FROM moverz_batch.photos p
     WHERE p.batch_id IN (SELECT b.id FROM moverz_batch.batches b WHERE b.project_id = OLD.id)
     ORDER BY p.id
       FOR UPDATE;
    RETURN OLD;
END
$$;
REVOKE ALL ON FUNCTION moverz_batch_internal.projects_lock_photos() FROM PUBLIC;

CREATE TRIGGER projects_lock_photos BEFORE DELETE ON projects
    FOR EACH ROW EXECUTE FUNCTION moverz_batch_internal.projects_lock_photos();

CREATE TRIGGER batches_delete_photos AFTER DELETE ON batches
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION moverz_batch_internal.batches_photos_trigger();
CREATE TRIGGER batches_truncate_photos AFTER TRUNCATE ON batches
    FOR EACH STATEMENT EXECUTE FUNCTION moverz_batch_internal.batches_photos_trigger();
