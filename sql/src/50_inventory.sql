-- Inventory: items of the analysed photos, per-room totals, the sync queue.

-- analysis_items: one row per item of the DONE photos of a project, or of one
-- of its batches when p_batch_id is given.  ERROR photos contribute nothing,
-- and neither do duplicates: the same sofa photographed twice is moved once.
-- The room is the photo's own, else the one the AI saw, else "other".
CREATE FUNCTION analysis_items(p_project_id uuid, p_batch_id uuid)
RETURNS TABLE (batch_id uuid, photo_id uuid, item_no int, room_type text, label text,
               quantity int, unit_volume_m3 numeric)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT p.batch_id, p.id, i.ord::int,
       coalesce(p.room_type, r.room_type, 'other'),
       i.item ->> 'label', (i.item ->> 'quantity')::numeric::int, (i.item ->> 'volume_m3')::numeric
  FROM moverz_batch.photos p
  LEFT JOIN moverz_batch.room_types r ON r.room_type = p.analysis ->> 'room_type'
  CROSS JOIN LATERAL jsonb_array_elements(p.analysis -> 'items') WITH ORDINALITY AS i(item, ord)
 WHERE p.project_id = p_project_id
   AND (p_batch_id IS NULL OR p.batch_id = p_batch_id)
   AND p.status = 'DONE'
   AND p.duplicate_of IS NULL
$$;

-- inventory_summary: the seed's inventorySummary of a project, or of one of
-- its batches: totalItems = sum of quantities, totalVolume = sum of
-- quantity x volume_m3, and the same per room.
CREATE FUNCTION inventory_summary(p_project_id uuid, p_batch_id uuid) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
WITH rooms AS (
    SELECT room_type, sum(quantity) AS items, sum(quantity * unit_volume_m3) AS volume
      FROM moverz_batch.analysis_items(p_project_id, p_batch_id)
     GROUP BY room_type
)
SELECT jsonb_build_object(
    'totalItems', coalesce(sum(items), 0),
    'totalVolume', coalesce(trim_scale(sum(volume)), 0),
    'rooms', coalesce(jsonb_agg(jsonb_build_object('roomType', room_type, 'itemsCount', items,
                                                   'volume_m3', trim_scale(volume))
                                ORDER BY room_type), '[]'))
  FROM rooms
$$;

-- sync_inventory: (re)build the inventory of one batch from its DONE photos.
-- Re-running replaces the batch's items and summary; it never adds twice.
CREATE FUNCTION sync_inventory(batch_id uuid) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    b record;
    v_summary jsonb;
BEGIN
    SELECT x.id, x.project_id, x.user_id, x.inventory_generation INTO b
      FROM moverz_batch.batches x WHERE x.id = sync_inventory.batch_id
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002',
            MESSAGE = format('batch_id %s: no such batch', coalesce(sync_inventory.batch_id::text, 'NULL'));
    END IF;
    DELETE FROM moverz_batch.inventory_items i WHERE i.batch_id = b.id;
    INSERT INTO moverz_batch.inventory_items (batch_id, photo_id, item_no, project_id, user_id,
                                              room_type, label, quantity, unit_volume_m3)
    SELECT b.id, a.photo_id, a.item_no, b.project_id, b.user_id, a.room_type, a.label,
           a.quantity, a.unit_volume_m3
      FROM moverz_batch.analysis_items(b.project_id, b.id) a;
    v_summary := moverz_batch.inventory_summary(b.project_id, b.id);
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
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM 1 FROM moverz_batch.projects p WHERE p.id = project_inventory.project_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002',
            MESSAGE = format('project_id %s: no such project', coalesce(project_inventory.project_id::text, 'NULL'));
    END IF;
    RETURN moverz_batch.inventory_summary(project_inventory.project_id, NULL);
END
$$;

-- run_inventory_job: what the inventory worker does with one claimed job:
-- sync the batch, unless a retry_batch has superseded the job's generation.
-- Returns the job's final status.
CREATE FUNCTION run_inventory_job(job_id bigint) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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
