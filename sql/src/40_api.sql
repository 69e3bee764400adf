-- The SQL API: projects, batches, progress, retry.

-- check_user_id: the user id every API call is made for.
CREATE FUNCTION check_user_id(p_user_id text) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF p_user_id IS NULL OR btrim(p_user_id) = '' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'user_id must be a non-empty string';
    ELSIF octet_length(p_user_id) > 255 THEN
        RAISE EXCEPTION USING ERRCODE = '22001', MESSAGE = 'user_id must be at most 255 bytes';
    END IF;
END
$$;

-- create_project: a new project owned by user_id.
CREATE FUNCTION create_project(user_id text, name text) RETURNS uuid
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id uuid;
BEGIN
    PERFORM moverz_batch.check_user_id(user_id);
    IF name IS NULL OR btrim(name) = '' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'name must be a non-empty string';
    ELSIF octet_length(name) > 200 THEN
        RAISE EXCEPTION USING ERRCODE = '22001', MESSAGE = 'name must be at most 200 bytes';
    END IF;
    INSERT INTO moverz_batch.projects (user_id, name)
    VALUES (create_project.user_id, create_project.name)
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;

-- check_assets: validate create_batch's "assets" as a whole and each element;
-- raises the first broken rule.
CREATE FUNCTION check_assets(assets jsonb) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_max int := current_setting('moverz_batch.max_batch_size')::int;
    v_n int;
    v_err text[];
BEGIN
    IF assets IS NULL OR jsonb_typeof(assets) = 'null' THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'assets must not be null',
            HINT = 'Pass a JSON array of {"filename", "filePath", "url", "roomType"} objects.';
    ELSIF jsonb_typeof(assets) <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('assets must be a JSON array, not %s', jsonb_typeof(assets)),
            HINT = 'Pass a JSON array of {"filename", "filePath", "url", "roomType"} objects.';
    END IF;
    v_n := jsonb_array_length(assets);
    IF v_n = 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'assets must contain at least one photo';
    ELSIF v_n > v_max THEN
        RAISE EXCEPTION USING ERRCODE = '54000',
            MESSAGE = format('assets has %s photos, more than the maximum batch size of %s', v_n, v_max),
            HINT = 'Split the photos into several batches, or raise moverz_batch.max_batch_size.';
    END IF;
    SELECT moverz_batch.asset_error(e.elem, e.ord - 1) INTO v_err
      FROM jsonb_array_elements(assets) WITH ORDINALITY AS e(elem, ord)
     WHERE moverz_batch.asset_error(e.elem, e.ord - 1) IS NOT NULL
     ORDER BY e.ord
     LIMIT 1;
    IF v_err IS NOT NULL THEN
        PERFORM moverz_batch.raise_invalid(v_err,
            CASE WHEN v_err[2] LIKE '%roomType%' THEN 'The accepted room types are listed in moverz_batch.room_types.' END);
    END IF;
END
$$;

-- owned_project: the project, if it exists and belongs to user_id; the same
-- error otherwise, so that another user's project is not revealed.
CREATE FUNCTION owned_project(p_project_id uuid, p_user_id text) RETURNS uuid
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_project_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'project_id must not be null';
    END IF;
    PERFORM 1 FROM moverz_batch.projects WHERE id = p_project_id AND user_id = p_user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002',
            MESSAGE = format('project_id %s: no such project for this user', p_project_id);
    END IF;
    RETURN p_project_id;
END
$$;

-- create_batch: one batch in QUEUED and one PENDING photo per asset, in one
-- transaction.  An idempotency key already used by the same user returns that
-- batch when the payload is the same, and is an error otherwise.
CREATE FUNCTION create_batch(project_id uuid, user_id text, assets jsonb,
                             priority text DEFAULT 'NORMAL', idempotency_key text DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_priority moverz_batch.batch_priority;
    v_hash text;
    v_batch uuid;
    v_existing record;
BEGIN
    PERFORM moverz_batch.check_user_id(user_id);
    IF priority IS NULL OR priority NOT IN ('HIGH', 'NORMAL', 'LOW') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('priority must be one of HIGH, NORMAL, LOW (got %s)', coalesce(quote_literal(priority), 'NULL'));
    END IF;
    IF idempotency_key IS NOT NULL AND (btrim(idempotency_key) = '' OR octet_length(idempotency_key) > 255) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'idempotency_key must be a non-empty string of at most 255 bytes';
    END IF;
    v_priority := priority::moverz_batch.batch_priority;
    PERFORM moverz_batch.owned_project(create_batch.project_id, create_batch.user_id);
    PERFORM moverz_batch.check_assets(assets);
    IF idempotency_key IS NOT NULL THEN
        v_hash := md5(concat_ws('|', create_batch.project_id, v_priority, assets::text));
    END IF;
    INSERT INTO moverz_batch.batches AS b (project_id, user_id, priority, idempotency_key, request_hash)
    VALUES (create_batch.project_id, create_batch.user_id, v_priority, create_batch.idempotency_key, v_hash)
    ON CONFLICT ON CONSTRAINT batches_idempotency_key DO NOTHING
    RETURNING b.id INTO v_batch;
    IF v_batch IS NULL THEN
        SELECT b.id, b.request_hash INTO v_existing
          FROM moverz_batch.batches b
         WHERE b.user_id = create_batch.user_id AND b.idempotency_key = create_batch.idempotency_key;
        IF v_existing.request_hash IS DISTINCT FROM v_hash THEN
            RAISE EXCEPTION USING ERRCODE = '23505',
                MESSAGE = format('idempotency_key %s was already used with a different payload', quote_literal(idempotency_key)),
                HINT = 'Use a new idempotency key for a new batch.';
        END IF;
        RETURN v_existing.id;
    END IF;
    INSERT INTO moverz_batch.photos (batch_id, position, project_id, user_id, filename, file_path,
                                     url, room_type, checksum, priority)
    SELECT v_batch, e.ord - 1, create_batch.project_id, create_batch.user_id, e.elem ->> 'filename',
           e.elem ->> 'filePath', e.elem ->> 'url', e.elem ->> 'roomType',
           md5((e.elem ->> 'filename') || ':' || (e.elem ->> 'url')), v_priority
      FROM jsonb_array_elements(assets) WITH ORDINALITY AS e(elem, ord);
    PERFORM moverz_batch.wake_photo_workers();
    RETURN v_batch;
END
$$;

-- batch_progress: the seed's "batch" object for polling.  photos_limit and
-- photos_offset page the photos list (ordered as submitted); the counts always
-- cover the whole batch.
CREATE FUNCTION batch_progress(batch_id uuid, photos_limit int DEFAULT NULL, photos_offset int DEFAULT 0)
RETURNS jsonb LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    b moverz_batch.batches;
    v_total int;
    v_photos jsonb;
    v_summary jsonb;
BEGIN
    IF photos_limit < 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'photos_limit must be >= 0';
    ELSIF photos_offset IS NULL OR photos_offset < 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'photos_offset must be >= 0';
    END IF;
    SELECT * INTO b FROM moverz_batch.batches WHERE id = batch_progress.batch_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002',
            MESSAGE = format('batch_id %s: no such batch', coalesce(batch_progress.batch_id::text, 'NULL'));
    END IF;
    v_total := b.count_queued + b.count_processing + b.count_completed + b.count_failed;
    SELECT coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
               'id', p.id, 'filename', p.filename, 'status', p.status,
               'roomType', p.room_type, 'errorCode', p.error_code)) ORDER BY p.position), '[]')
      INTO v_photos
      FROM (SELECT * FROM moverz_batch.photos ph
             WHERE ph.batch_id = b.id
             ORDER BY ph.position
             LIMIT photos_limit OFFSET photos_offset) AS p;
    SELECT s.summary INTO v_summary
      FROM moverz_batch.inventory_summaries s
     WHERE s.batch_id = b.id AND s.generation = b.inventory_generation;
    RETURN jsonb_build_object(
        'batchId', b.id,
        'status', b.status,
        'progress', moverz_batch.progress_percent(b.count_completed + b.count_failed, v_total),
        'counts', jsonb_build_object('queued', b.count_queued, 'processing', b.count_processing,
                                     'completed', b.count_completed, 'failed', b.count_failed,
                                     'total', v_total),
        'photos', v_photos)
        || CASE WHEN v_summary IS NULL THEN '{}' ELSE jsonb_build_object('inventorySummary', v_summary) END;
END
$$;

-- progress_percent: 0-100, rounded, and 100 only once every photo is finished.
CREATE FUNCTION progress_percent(finished int, total int) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE WHEN total <= 0 THEN 0
            WHEN finished >= total THEN 100
            ELSE least(99, round(100.0 * finished / total))::int END
$$;

-- retry_batch: ERROR photos back to PENDING (DONE ones untouched), the batch
-- re-opened for exactly one new inventory sync once it finishes again.
-- Returns the number of photos sent back.
CREATE FUNCTION retry_batch(batch_id uuid) RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_n int;
BEGIN
    PERFORM 1 FROM moverz_batch.batches b WHERE b.id = retry_batch.batch_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002',
            MESSAGE = format('batch_id %s: no such batch', coalesce(retry_batch.batch_id::text, 'NULL'));
    END IF;
    UPDATE moverz_batch.photos p
       SET status = 'PENDING', attempts = 0, next_attempt_at = now(), error_code = NULL,
           error_message = NULL, claimed_by = NULL, claim_token = NULL, lease_until = NULL,
           finished_at = NULL, updated_at = now()
     WHERE p.batch_id = retry_batch.batch_id AND p.status = 'ERROR';
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n > 0 THEN
        UPDATE moverz_batch.batches b
           SET inventory_queued = false, inventory_generation = b.inventory_generation + 1,
               completed_at = NULL
         WHERE b.id = retry_batch.batch_id;
        PERFORM moverz_batch.wake_photo_workers();
    END IF;
    RETURN v_n;
END
$$;
