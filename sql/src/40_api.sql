-- The SQL API: projects, batches, progress, retry.

-- check_user_id: the user id every API call is made for.
CREATE FUNCTION moverz_batch_internal.check_user_id(p_user_id text) RETURNS void
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
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id uuid;
BEGIN
    PERFORM moverz_batch_internal.check_user_id(user_id);
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

-- check_assets: raise the first broken rule of create_batch's "assets": the
-- array as a whole, then each element in order, then whether each roomType
-- is one of room_types.  In C (src/assets.c), as asset_rows.
CREATE FUNCTION moverz_batch_internal.check_assets(assets jsonb) RETURNS void
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'moverz_check_assets';

-- asset_rows: one row per element of a checked "assets", in order, with a
-- new time-ordered id, the checksum md5(filename || ':' || url) and, when an
-- earlier element has the same checksum, the first such element's id; for
-- an {"uploadId"} element, its upload_id (and no checksum: insert_photos
-- takes its upload's).
CREATE FUNCTION moverz_batch_internal.asset_rows(assets jsonb,
                           OUT id uuid, OUT "position" int, OUT filename text, OUT file_path text,
                           OUT url text, OUT room_type text, OUT checksum text, OUT first_id uuid,
                           OUT upload_id uuid)
RETURNS SETOF record LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'moverz_asset_rows';

-- owned_project: the project, if it exists and belongs to user_id; the same
-- error otherwise, so that another user's project is not revealed.
CREATE FUNCTION moverz_batch_internal.owned_project(p_project_id uuid, p_user_id text) RETURNS uuid
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
CREATE FUNCTION moverz_batch_internal.insert_photos(p_batch_id uuid, p_project_id uuid, p_user_id text,
                              p_priority batch_priority, assets jsonb)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off SET jit = off AS $$
DECLARE
    -- uploaded files among the photos: checked and locked first; their
    -- checksum is their bytes' SHA-256, their name their upload's
    v_uploads boolean := jsonb_path_exists(assets, '$[*].uploadId');
BEGIN
IF v_uploads THEN
    PERFORM moverz_batch_internal.check_uploads(p_project_id, p_user_id, assets);
END IF;
INSERT INTO moverz_batch.photos (id, batch_id, position, project_id, user_id, filename, file_path,
                                 url, upload_id, room_type, checksum, priority, duplicate_of, status,
                                 analysis, finished_at)
SELECT a.id, p_batch_id, a.position, p_project_id, p_user_id, a.filename,
       a.file_path, a.url, a.upload_id, coalesce(a.room_type, pr.room_type),
       a.checksum, p_priority,
       coalesce(pr.id, a.first_id),
       CASE WHEN pr.id IS NOT NULL THEN 'DONE' ELSE 'PENDING' END::moverz_batch.photo_status,
       pr.analysis, CASE WHEN pr.id IS NOT NULL THEN now() END
  FROM (SELECT r.* FROM moverz_batch_internal.asset_rows(assets) AS r WHERE NOT v_uploads
        UNION ALL
        SELECT r.id, r.position, coalesce(r.filename, u.filename), r.file_path, r.url, r.room_type,
               -- (an s3 upload's bytes are not known yet: a checksum of its
               -- own until its worker downloads them, settle_downloads)
               coalesce(r.checksum, u.checksum, 's3:' || u.id),
               CASE WHEN r.upload_id IS NULL THEN r.first_id
                    ELSE nullif(first_value(r.id) OVER (PARTITION BY coalesce(u.checksum, 's3:' || u.id)
                                                        ORDER BY r.position), r.id) END,
               r.upload_id
          FROM moverz_batch_internal.asset_rows(assets) AS r
          LEFT JOIN moverz_batch.uploads u ON u.id = r.upload_id
         WHERE v_uploads) AS a
  LEFT JOIN LATERAL (
      SELECT p.id, p.analysis, p.room_type
        FROM moverz_batch.photos p
       WHERE p.project_id = p_project_id AND p.checksum = a.checksum
         AND p.status = 'DONE' AND p.duplicate_of IS NULL
       ORDER BY p.finished_at, p.id
       LIMIT 1
         -- the original stays until this commits (a purge waits)
         FOR KEY SHARE) AS pr ON true;
    IF v_uploads THEN
        UPDATE moverz_batch.uploads u SET photo_id = p.id
          FROM moverz_batch.photos p
         WHERE p.batch_id = p_batch_id AND p.upload_id = u.id;
    END IF;
    IF EXISTS (SELECT 1 FROM moverz_batch.batches b
                WHERE b.project_id = p_project_id AND b.status IN ('QUEUED', 'PROCESSING')
                  AND b.id <> p_batch_id) THEN
        PERFORM moverz_batch_internal.wait_for_copies_in_flight(p_batch_id, p_project_id);
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
-- photos_batch_position and matched by hash (enable_nestloop = off: a
-- nested loop made it quadratic, 37 s for two batches of 1,000).
-- The originals are locked FOR SHARE until this commits: their write-back,
-- which settles their duplicates, waits for it and then sees these.  An
-- original whose write-back committed while this waited comes back DONE (its
-- new version is re-checked): its duplicates take its analysis at once.  One
-- that ended ERROR meanwhile is no longer matched: the new photo is sent.
-- Two batches of the same photo created at the same instant (neither sees
-- the other uncommitted) are both sent.  Lock order: the other batches'
-- photos only (their batches are not locked; see cancel_batch).
CREATE FUNCTION moverz_batch_internal.wait_for_copies_in_flight(p_batch_id uuid, p_project_id uuid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off SET enable_nestloop = off SET jit = off AS $$
DECLARE
    v_final uuid[];
BEGIN
    WITH mine AS MATERIALIZED (
        SELECT DISTINCT m.checksum FROM moverz_batch.photos m
         WHERE m.batch_id = p_batch_id AND m.status = 'PENDING' AND m.duplicate_of IS NULL),
    originals AS (
        SELECT o.id, o.checksum, o.status
          FROM moverz_batch.batches b
          JOIN moverz_batch.photos o ON o.batch_id = b.id
          JOIN mine ON mine.checksum = o.checksum
         WHERE b.project_id = p_project_id AND b.status IN ('QUEUED', 'PROCESSING') AND b.id <> p_batch_id
           AND o.status IN ('PENDING', 'PROCESSING', 'DONE') AND o.duplicate_of IS NULL
         ORDER BY o.id          -- locked in id order, as cancel_batch locks them
           FOR SHARE OF o),
    marked AS (
        UPDATE moverz_batch.photos n
           SET duplicate_of = c.id, updated_at = now()
          FROM originals c
         WHERE n.batch_id = p_batch_id AND n.checksum = c.checksum
           -- the later copies within this batch too (they pointed at its
           -- first): settle_duplicates settles one level
           AND n.status = 'PENDING'
        RETURNING c.id, c.status)
    SELECT array_agg(DISTINCT m.id) FILTER (WHERE m.status = 'DONE') INTO v_final FROM marked m;
    PERFORM moverz_batch_internal.settle_duplicates(v_final);
END
$$;

-- check_photo_quota: moverz_batch.max_photos_per_user_per_day (0: none)
-- against the photos the user submitted in the last 24 hours (from their
-- batches: one row each, batches_user_created_idx) and the n asked for now.
-- Over it: SQLSTATE 53400, "retry after" the seconds until enough of those
-- photos leave the window (in the DETAIL, as retry_after_s=N; the HTTP API
-- answers 429 with Retry-After).
CREATE FUNCTION moverz_batch_internal.check_photo_quota(p_user_id text, p_n int) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_quota int := coalesce(nullif(current_setting('moverz_batch.max_photos_per_user_per_day', true), ''), '0')::int;
    v_used bigint;
    v_wait double precision;
BEGIN
    IF v_quota <= 0 THEN
        RETURN;
    END IF;
    SELECT coalesce(sum(b.count_queued + b.count_processing + b.count_completed + b.count_failed
                        + b.count_cancelled), 0)
      INTO v_used
      FROM moverz_batch.batches b
     WHERE b.user_id = p_user_id AND b.created_at > now() - interval '1 day';
    IF v_used + p_n <= v_quota THEN
        RETURN;
    END IF;
    -- the window frees photos as the oldest batches leave it
    SELECT ceil(extract(epoch FROM min(x.created_at) + interval '1 day' - now())) INTO v_wait
      FROM (SELECT b.created_at,
                   sum(b.count_queued + b.count_processing + b.count_completed + b.count_failed
                       + b.count_cancelled) OVER (ORDER BY b.created_at) AS freed
              FROM moverz_batch.batches b
             WHERE b.user_id = p_user_id AND b.created_at > now() - interval '1 day') AS x
     WHERE v_used - x.freed + p_n <= v_quota OR x.freed >= v_used;
    RAISE EXCEPTION USING ERRCODE = '53400',
        MESSAGE = format('user_id %s: %s photos in the last 24 hours, %s more would exceed the quota of %s (moverz_batch.max_photos_per_user_per_day)',
                         moverz_batch_internal.echo_value(p_user_id), v_used, p_n, v_quota),
        DETAIL = format('retry_after_s=%s', greatest(coalesce(v_wait, 86400), 1)::bigint),
        HINT = 'Try again later, or split the photos into smaller batches.';
END
$$;

-- create_batch: one batch in QUEUED and one PENDING photo per asset, in one
-- transaction.  An idempotency key already used by the same user returns that
-- batch when the payload is the same, and is an error otherwise.  Its
-- statements (and those of the functions it calls) plan generically: a
-- custom plan, made at the first five calls of every session, carries the
-- assets as a constant, copied whole several times while planning (~30 ms
-- for 10,000 photos, for the checks and the insert).
CREATE FUNCTION create_batch(project_id uuid, user_id text, assets jsonb,
                             priority text DEFAULT 'NORMAL', idempotency_key text DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_priority moverz_batch.batch_priority;
    v_hash text;
    v_batch uuid;
    v_existing record;
BEGIN
    PERFORM moverz_batch_internal.check_user_id(user_id);
    IF priority IS NULL OR priority NOT IN ('HIGH', 'NORMAL', 'LOW') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('priority must be one of HIGH, NORMAL, LOW (got %s)', coalesce(moverz_batch_internal.echo_value(priority), 'NULL'));
    END IF;
    IF idempotency_key IS NOT NULL AND (btrim(idempotency_key) = '' OR octet_length(idempotency_key) > 255) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'idempotency_key must be a non-empty string of at most 255 bytes';
    END IF;
    v_priority := priority::moverz_batch.batch_priority;
    PERFORM moverz_batch_internal.owned_project(create_batch.project_id, create_batch.user_id);
    PERFORM moverz_batch_internal.check_assets(assets);
    PERFORM moverz_batch_internal.check_photo_quota(create_batch.user_id, jsonb_array_length(assets));
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
    PERFORM moverz_batch_internal.insert_photos(v_batch, create_batch.project_id, create_batch.user_id,
                                       v_priority, assets);
    PERFORM moverz_batch_internal.wake_photo_workers();
    IF v_priority = 'HIGH' THEN
        -- photos claimed ahead must not go before these
        PERFORM moverz_batch_internal.recall_claimed_photos();
    END IF;
    RETURN v_batch;
END
$$;

-- batch_state: {batchId, status, progress, counts} of a batch, shared by
-- batch_progress and the progress notifications.  counts.cancelled appears
-- only when some photos were cancelled.
CREATE FUNCTION batch_state(b batches) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
RETURN jsonb_build_object(
    'batchId', b.id,
    'status', b.status,
    'progress', moverz_batch.progress_percent(b.count_completed + b.count_failed + b.count_cancelled,
                                              b.count_queued + b.count_processing + b.count_completed
                                              + b.count_failed + b.count_cancelled),
    'counts', jsonb_build_object('queued', b.count_queued, 'processing', b.count_processing,
                                 'completed', b.count_completed, 'failed', b.count_failed,
                                 'total', b.count_queued + b.count_processing + b.count_completed
                                          + b.count_failed + b.count_cancelled)
              || CASE WHEN b.count_cancelled > 0
                      THEN jsonb_build_object('cancelled', b.count_cancelled) ELSE '{}' END);
END
$$;

-- progress_document: state's keys, the "photos" array (one page of the
-- batch's photos, as submitted; roomType, errorCode and duplicateOf only
-- when set) and "inventorySummary" when summary is not NULL.  In C
-- (src/progress.c): one jsonb built in place of a copy per photo and per "||".
CREATE FUNCTION moverz_batch_internal.progress_document(state jsonb, batch_id uuid, photos_limit bigint,
                                  photos_offset bigint, summary jsonb)
RETURNS jsonb LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'moverz_progress_document';

-- batch_progress: the seed's "batch" object for polling.  photos_limit and
-- photos_offset page the photos list (ordered as submitted); the counts always
-- cover the whole batch.  A photo that duplicates another carries duplicateOf.
CREATE FUNCTION batch_progress(batch_id uuid, photos_limit int DEFAULT NULL, photos_offset int DEFAULT 0)
RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    b moverz_batch.batches;
    v_summary jsonb;
BEGIN
    IF photos_limit < 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'photos_limit must be >= 0';
    ELSIF photos_offset IS NULL OR photos_offset < 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'photos_offset must be >= 0';
    END IF;
    SELECT * INTO b FROM moverz_batch.batches WHERE id = batch_progress.batch_id;
    IF NOT FOUND THEN
        PERFORM moverz_batch_internal.raise_not_found('batch_id', batch_progress.batch_id, 'batch');
    END IF;
    SELECT s.summary INTO v_summary
      FROM moverz_batch.inventory_summaries s
     WHERE s.batch_id = b.id AND s.generation = b.inventory_generation;
    RETURN moverz_batch_internal.progress_document(moverz_batch.batch_state(b), b.id, photos_limit,
                                          photos_offset, v_summary);
END
$$;

-- progress_percent: 0-100, rounded, and 100 only once every photo is finished.
CREATE FUNCTION progress_percent(finished int, total int) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE WHEN total <= 0 THEN 0
            WHEN finished >= total THEN 100
            ELSE least(99, round(100.0 * finished / total))::int END
$$;

-- reopen_photos: ERROR photos of one batch (all, or one) back to PENDING;
-- the batch re-opened for exactly one new inventory sync once it finishes
-- again.  Returns the number of photos sent back.  Lock order (the one of
-- every path, see cancel_batch): the photos, then their batch; the batch
-- is read after the photos' locks, so a cancel that committed meanwhile is
-- seen.
CREATE FUNCTION moverz_batch_internal.reopen_photos(p_batch_id uuid, p_photo_id uuid) RETURNS int
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
        PERFORM moverz_batch_internal.raise_not_found('batch_id', p_batch_id, 'batch');
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
        PERFORM moverz_batch_internal.wake_photo_workers();
    END IF;
    RETURN v_n;
END
$$;

-- retry_batch: ERROR photos back to PENDING (DONE ones untouched), the batch
-- re-opened for exactly one new inventory sync once it finishes again.
-- Returns the number of photos sent back.
CREATE FUNCTION retry_batch(batch_id uuid) RETURNS int
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
SELECT moverz_batch_internal.reopen_photos(batch_id, NULL)
$$;

-- retry_photo: one ERROR photo (and its duplicates) back to PENDING.
-- Returns the number of photos sent back (0 when it was not in ERROR).
CREATE FUNCTION retry_photo(photo_id uuid) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_batch uuid;
    v_photo uuid;
BEGIN
    -- a duplicate is retried through its original when that is in the same batch
    SELECT p.batch_id, CASE WHEN o.batch_id = p.batch_id THEN o.id ELSE p.id END
      INTO v_batch, v_photo
      FROM moverz_batch.photos p
      LEFT JOIN moverz_batch.photos o ON o.id = p.duplicate_of
     WHERE p.id = retry_photo.photo_id;
    IF NOT FOUND THEN
        PERFORM moverz_batch_internal.raise_not_found('photo_id', retry_photo.photo_id, 'photo');
    END IF;
    RETURN moverz_batch_internal.reopen_photos(v_batch, v_photo);
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
CREATE FUNCTION cancel_batch(batch_id uuid) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_status moverz_batch.batch_status;
    v_n int;
BEGIN
    SELECT b.status INTO v_status FROM moverz_batch.batches b WHERE b.id = cancel_batch.batch_id;
    IF NOT FOUND THEN
        PERFORM moverz_batch_internal.raise_not_found('batch_id', cancel_batch.batch_id, 'batch');
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
        PERFORM moverz_batch_internal.wake_photo_workers();
    END IF;
    -- photos of this batch a worker claimed ahead are not sent either
    PERFORM moverz_batch_internal.recall_claimed_photos();
    RETURN v_n;
END
$$;
