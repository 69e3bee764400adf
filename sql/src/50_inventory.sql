-- Inventory: items of the analysed photos, per-room totals, the sync queue.

-- photo_items: one row per item of the given photos' analyses.  The room is
-- the photo's own, else the one the AI saw (if accepted), else "other".
CREATE FUNCTION moverz_batch_internal.photo_items(p_photo_ids uuid[])
RETURNS TABLE (batch_id uuid, photo_id uuid, item_no int, project_id uuid, user_id text,
               room_type text, label text, quantity int, unit_volume_m3 numeric)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT p.batch_id, p.id, i.ord::int, p.project_id, p.user_id,
       coalesce(p.room_type, r.room_type, 'other'),
       i.item ->> 'label', (i.item ->> 'quantity')::numeric::int, (i.item ->> 'volume_m3')::numeric
  FROM moverz_batch.photos p
  LEFT JOIN moverz_batch.room_types r ON r.room_type = p.analysis ->> 'room_type'
  CROSS JOIN LATERAL jsonb_array_elements(p.analysis -> 'items') WITH ORDINALITY AS i(item, ord)
 WHERE p.id = ANY (p_photo_ids)
$$;

-- apply_inventory_delta: the photos p_removed stop counting (their items
-- go), the photos p_added start (their items come), and the per-room totals
-- of their batches follow.  Called by the photos triggers with the photos
-- that left or entered "DONE, not a duplicate, with an analysis".  Generic
-- plans: the planner judged a custom plan (arrays known) cheaper every time,
-- so each write-back planned the insert of the items again (0.5 ms).
CREATE FUNCTION moverz_batch_internal.apply_inventory_delta(p_removed uuid[], p_added uuid[])
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off SET jit = off
SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    IF cardinality(p_removed) > 0 THEN
        WITH gone AS (
            DELETE FROM moverz_batch.inventory_items i WHERE i.photo_id = ANY (p_removed)
            RETURNING i.batch_id, i.room_type, i.quantity, i.unit_volume_m3
        )
        INSERT INTO moverz_batch.inventory_rooms AS r (batch_id, room_type, item_rows, items, volume)
        SELECT g.batch_id, g.room_type, -count(*), -sum(g.quantity), -sum(g.quantity * g.unit_volume_m3)
          FROM gone g
         WHERE EXISTS (SELECT 1 FROM moverz_batch.batches b WHERE b.id = g.batch_id)
         GROUP BY g.batch_id, g.room_type
         ORDER BY g.batch_id, g.room_type
        ON CONFLICT (batch_id, room_type) DO UPDATE
           SET item_rows = r.item_rows + excluded.item_rows, items = r.items + excluded.items,
               volume = r.volume + excluded.volume;
    END IF;
    IF cardinality(p_added) > 0 THEN
        WITH came AS (
            INSERT INTO moverz_batch.inventory_items (batch_id, photo_id, item_no, project_id, user_id,
                                                      room_type, label, quantity, unit_volume_m3)
            SELECT * FROM moverz_batch_internal.photo_items(p_added)
            RETURNING batch_id, room_type, quantity, unit_volume_m3
        )
        INSERT INTO moverz_batch.inventory_rooms AS r (batch_id, room_type, item_rows, items, volume)
        SELECT c.batch_id, c.room_type, count(*), sum(c.quantity), sum(c.quantity * c.unit_volume_m3)
          FROM came c
         GROUP BY c.batch_id, c.room_type
         ORDER BY c.batch_id, c.room_type
        ON CONFLICT (batch_id, room_type) DO UPDATE
           SET item_rows = r.item_rows + excluded.item_rows, items = r.items + excluded.items,
               volume = r.volume + excluded.volume;
    END IF;
END
$$;

-- inventory_summary: the seed's inventorySummary of one batch, or of a
-- whole project when p_batch_id is NULL: totalItems = sum of quantities,
-- totalVolume = sum of quantity x volume_m3, and the same per room.  ERROR
-- photos contribute nothing, and neither do duplicates: the same sofa
-- photographed twice is moved once.
CREATE FUNCTION moverz_batch_internal.inventory_summary(p_project_id uuid, p_batch_id uuid) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
WITH rooms AS (
    SELECT r.room_type, sum(r.items) AS items, sum(r.volume) AS volume
      FROM moverz_batch.inventory_rooms r
     WHERE (p_batch_id IS NOT NULL AND r.batch_id = p_batch_id)
        OR (p_batch_id IS NULL AND r.batch_id IN (SELECT b.id FROM moverz_batch.batches b
                                                   WHERE b.project_id = p_project_id))
     GROUP BY r.room_type
    HAVING sum(r.item_rows) > 0
)
SELECT jsonb_build_object(
    'totalItems', coalesce(sum(items), 0),
    'totalVolume', coalesce(trim_scale(sum(volume)), 0),
    'rooms', coalesce(jsonb_agg(jsonb_build_object('roomType', room_type, 'itemsCount', items,
                                                   'volume_m3', trim_scale(volume))
                                ORDER BY room_type), '[]'))
  FROM rooms
$$;

-- sync_inventory: the inventory summary of one batch, from its per-room
-- totals (kept current as its photos finish), stored for batch_progress.
-- Re-running replaces; it never adds twice.
CREATE FUNCTION sync_inventory(batch_id uuid) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    b record;
    v_summary jsonb;
BEGIN
    SELECT x.id, x.project_id, x.user_id, x.inventory_generation INTO b
      FROM moverz_batch.batches x WHERE x.id = sync_inventory.batch_id
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM moverz_batch_internal.raise_not_found('batch_id', sync_inventory.batch_id, 'batch');
    END IF;
    v_summary := moverz_batch_internal.inventory_summary(b.project_id, b.id);
    INSERT INTO moverz_batch.inventory_summaries AS s (batch_id, project_id, user_id, generation,
                                                       total_items, total_volume, summary)
    VALUES (b.id, b.project_id, b.user_id, b.inventory_generation,
            (v_summary ->> 'totalItems')::bigint, (v_summary ->> 'totalVolume')::numeric, v_summary)
    ON CONFLICT ON CONSTRAINT inventory_summaries_pkey DO UPDATE
       SET generation = excluded.generation, total_items = excluded.total_items,
           total_volume = excluded.total_volume, summary = excluded.summary, synced_at = now();
    RETURN v_summary;
END
$$;

-- project_inventory: the inventory summary of a whole project (the seed's
-- inventory sync without a batchId), from all its DONE photos.
CREATE FUNCTION project_inventory(project_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM 1 FROM moverz_batch.projects p WHERE p.id = project_inventory.project_id;
    IF NOT FOUND THEN
        PERFORM moverz_batch_internal.raise_not_found('project_id', project_inventory.project_id, 'project');
    END IF;
    RETURN moverz_batch_internal.inventory_summary(project_inventory.project_id, NULL);
END
$$;

-- run_inventory_job: what the inventory worker does with one claimed job:
-- sync the batch, unless a retry_batch has superseded the job's generation.
-- Returns the job's final status.  On the inventory worker's path, whose
-- plans live as long as it does: enable_seqscan = off, as the photo
-- workers' functions (sql/src/60_worker.sql), so that plans made while the
-- tables were empty do not read them whole once they have grown.
CREATE FUNCTION moverz_batch_internal.run_inventory_job(job_id bigint) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    j record;
    v_generation int;
    v_status text := 'DONE';
BEGIN
    SELECT x.id, x.batch_id, x.generation INTO j
      FROM moverz_batch.inventory_sync_jobs x
     WHERE x.id = job_id AND x.status = 'PENDING'
       FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- Compare with the generation read under the batch's row lock (the one
    -- sync_inventory takes): a retry_batch committed while we waited for it
    -- must make this job SUPERSEDED, not sync the re-opened batch.
    SELECT b.inventory_generation INTO v_generation
      FROM moverz_batch.batches b WHERE b.id = j.batch_id
       FOR NO KEY UPDATE;
    IF j.generation = v_generation THEN
        PERFORM moverz_batch.sync_inventory(j.batch_id);
    ELSE
        v_status := 'SUPERSEDED';
    END IF;
    UPDATE moverz_batch.inventory_sync_jobs
       SET status = v_status, attempts = attempts + 1, finished_at = now(), last_error = NULL
     WHERE id = j.id;
    RETURN v_status;
END
$$;

-- Consistency of what the workers (or anyone) write into photos.analysis.
ALTER TABLE photos ADD CONSTRAINT photos_analysis_shape
    CHECK (analysis IS NULL OR analysis_error(analysis) IS NULL);
