-- Direct upload of photo files (since 0.7.0): request_uploads hands out one
-- signed single-use URL per file, store_upload takes the bytes sent to it
-- (the database store), create_batch then names the uploads
-- ({"uploadId"} elements, insert_photos), the photo workers send the bytes
-- inline to the model, and expire_uploads deletes the uploads never
-- attached.  The bytes of a photo go with it (photos_counts_trigger).
--
-- Settings: moverz_batch.upload_url_ttl (15 min), max_upload_bytes (5 MB),
-- upload_base_url (where clients reach the HTTP API; empty: the URLs are
-- paths on it), object_store: "database" (the bytes in upload_bytes) or
-- "s3" (an S3-compatible store, moverz_batch.s3_*: the URLs are presigned
-- PUTs to it, the bytes never pass through PostgreSQL, the workers
-- download them, settle_downloads gives them their checksum, and their
-- objects are deleted through object_deletions).

-- image_type: the image type of bytes from their magic numbers (JPEG, PNG,
-- GIF, WebP), or NULL.
CREATE FUNCTION moverz_batch_internal.image_type(p_bytes bytea) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT CASE
    WHEN substr(p_bytes, 1, 3) = '\xffd8ff'::bytea THEN 'image/jpeg'
    WHEN substr(p_bytes, 1, 8) = '\x89504e470d0a1a0a'::bytea THEN 'image/png'
    WHEN substr(p_bytes, 1, 6) IN ('GIF87a'::bytea, 'GIF89a'::bytea) THEN 'image/gif'
    WHEN substr(p_bytes, 1, 4) = 'RIFF'::bytea AND substr(p_bytes, 9, 4) = 'WEBP'::bytea THEN 'image/webp'
END
$$;

-- s3_presign: a presigned URL of the s3 store for method on key, valid
-- expires_s seconds from at (C, src/object_store.c).
CREATE FUNCTION moverz_batch_internal.s3_presign(method text, key text, expires_s int,
                                                 at timestamptz DEFAULT now()) RETURNS text
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'moverz_s3_presign';

-- upload_object_key: the key of an upload's object in the s3 store.
CREATE FUNCTION moverz_batch_internal.upload_object_key(p_project_id uuid, p_upload_id uuid) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT 'uploads/' || p_project_id || '/' || p_upload_id
$$;

-- upload_setting: a setting of the uploads, as the server has it, or its
-- default when the library is not loaded.
CREATE FUNCTION moverz_batch_internal.upload_setting(p_name text, p_default text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT coalesce(nullif(current_setting('moverz_batch.' || p_name, true), ''), p_default)
$$;

-- check_upload_file: the rules of one element of request_uploads' files;
-- raises the first it breaks, naming the element.
CREATE FUNCTION moverz_batch_internal.check_upload_file(f jsonb, i int, p_max bigint) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_name text := f ->> 'filename';
BEGIN
    IF jsonb_typeof(f) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('files[%s] must be a JSON object, not %s', i, coalesce(jsonb_typeof(f), 'empty'));
    ELSIF jsonb_typeof(f -> 'filename') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('files[%s].filename is required and must be a string', i);
    ELSIF btrim(v_name) = '' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('files[%s].filename must not be empty', i);
    ELSIF octet_length(v_name) > 255 THEN
        RAISE EXCEPTION USING ERRCODE = '22001',
            MESSAGE = format('files[%s].filename must be at most 255 bytes (got %s)', i, octet_length(v_name));
    ELSIF v_name ~ '[\x01-\x1f\x7f]' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('files[%s].filename must not contain control characters', i);
    ELSIF coalesce(f ->> 'contentType', '') NOT IN ('image/jpeg', 'image/png', 'image/webp', 'image/gif')
          OR jsonb_typeof(f -> 'contentType') <> 'string' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('files[%s].contentType must be one of image/jpeg, image/png, image/webp, image/gif (got %s)',
                             i, coalesce(moverz_batch_internal.echo_value(f ->> 'contentType'), 'none'));
    ELSIF jsonb_typeof(f -> 'size') IS DISTINCT FROM 'number' OR (f ->> 'size') !~ '^[0-9]{1,12}$'
          OR (f ->> 'size')::bigint < 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('files[%s].size must be the file''s size in bytes, a positive integer', i);
    ELSIF (f ->> 'size')::bigint > p_max THEN
        RAISE EXCEPTION USING ERRCODE = '54000',
            MESSAGE = format('files[%s].size %s is more than the %s bytes a photo may have', i, f ->> 'size', p_max),
            HINT = 'A photo may have moverz_batch.max_upload_bytes (and, sent to Anthropic, at most 3932160: 5 MB of base64); resize it.';
    END IF;
END
$$;

-- request_uploads: one signed single-use upload URL per file of files
-- ([{"filename", "contentType", "size"}]), for a project of the user:
-- [{"uploadId", "filename", "method": "PUT", "url", "headers", "expiresAt"}],
-- in the order of files.  Only the SHA-256 of each URL's token is kept.
-- With the s3 store, each URL is a presigned PUT to the store.  A user has
-- at most moverz_batch.max_batch_size uploads waiting for a batch (53400,
-- HTTP 429).
CREATE FUNCTION request_uploads(project_id uuid, user_id text, files jsonb) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_max bigint := pg_size_bytes(moverz_batch_internal.upload_setting('max_upload_bytes', '5MB'));
    v_ttl interval := moverz_batch_internal.upload_setting('upload_url_ttl', '15min')::interval;
    v_base text := rtrim(moverz_batch_internal.upload_setting('upload_base_url', ''), '/');
    v_store text := moverz_batch_internal.upload_setting('object_store', 'database');
    v_max_batch int := moverz_batch_internal.upload_setting('max_batch_size', '10000')::int;
    v_n int;
    v_waiting bigint;
    v_out jsonb;
BEGIN
    PERFORM moverz_batch_internal.check_user_id(user_id);
    PERFORM moverz_batch_internal.owned_project(request_uploads.project_id, request_uploads.user_id);
    IF moverz_batch_internal.upload_setting('ai_provider', 'moverz-ai') = 'anthropic' THEN
        v_max := least(v_max, 3932160);     -- Anthropic: 5 MB of base64
    END IF;
    IF jsonb_typeof(files) IS DISTINCT FROM 'array' OR jsonb_array_length(files) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'files must be a non-empty JSON array of {"filename", "contentType", "size"} objects';
    END IF;
    v_n := jsonb_array_length(files);
    IF v_n > v_max_batch THEN
        RAISE EXCEPTION USING ERRCODE = '54000',
            MESSAGE = format('files has %s files, more than the maximum batch size of %s', v_n,
                             v_max_batch),
            HINT = 'Split the photos into several batches, or raise moverz_batch.max_batch_size.';
    END IF;
    PERFORM moverz_batch_internal.check_upload_file(f.v, (f.i - 1)::int, v_max)
       FROM jsonb_array_elements(files) WITH ORDINALITY AS f(v, i);
    -- uploads waiting for a batch hold storage: no more than one batch's worth
    v_waiting := (SELECT count(*) FROM moverz_batch.uploads w
                   WHERE w.user_id = request_uploads.user_id AND w.photo_id IS NULL AND w.expires_at > now());
    IF v_waiting + v_n > v_max_batch THEN
        RAISE EXCEPTION USING ERRCODE = '53400',
            MESSAGE = format('user_id %s: %s uploads wait for a batch, %s more would exceed moverz_batch.max_batch_size (%s)',
                             moverz_batch_internal.echo_value(user_id), v_waiting, v_n,
                             v_max_batch),
            DETAIL = format('retry_after_s=%s',
                            greatest(1, ceil(extract(epoch FROM v_ttl)))::bigint),
            HINT = 'Attach the uploads to a batch first (create_batch), or let them expire.';
    END IF;
    WITH t AS (
        SELECT f.i, f.v, gen_random_uuid() AS id,
               replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '') AS token
          FROM jsonb_array_elements(files) WITH ORDINALITY AS f(v, i)
    ), ins AS (
        INSERT INTO moverz_batch.uploads (id, project_id, user_id, filename, content_type, size, store,
                                          token_sha256, expires_at)
        SELECT t.id, request_uploads.project_id, request_uploads.user_id, t.v ->> 'filename',
               t.v ->> 'contentType', (t.v ->> 'size')::int, v_store,
               sha256(convert_to(t.token, 'UTF8')), now() + v_ttl
          FROM t
        RETURNING id, expires_at
    )
    SELECT jsonb_agg(jsonb_build_object(
               'uploadId', t.id, 'filename', t.v ->> 'filename', 'method', 'PUT',
               'url', CASE v_store
                          WHEN 's3' THEN moverz_batch_internal.s3_presign(
                              'PUT', moverz_batch_internal.upload_object_key(request_uploads.project_id, t.id),
                              extract(epoch FROM v_ttl)::int)
                          ELSE v_base || '/api/uploads/' || t.id || '?token=' || t.token END,
               'headers', jsonb_build_object('Content-Type', t.v ->> 'contentType'),
               'expiresAt', ins.expires_at) ORDER BY t.i)
      INTO v_out
      FROM t JOIN ins ON ins.id = t.id;
    RETURN v_out;
END
$$;

-- store_upload: the bytes of an upload, sent to its URL (the database
-- store).  The token authorises, once, before the URL expires; the bytes
-- must be an image of the announced type (magic numbers) and at most the
-- announced size.  The upload may then be attached to a batch for another
-- upload_url_ttl (a slow upload of many files is not lost).  Returns {"uploadId", "size", "sha256"}.  Errors:
-- 42501 an unknown upload or a wrong token (the same), 55000 expired,
-- 55006 already uploaded, 54000 too large, 22023 not an image of its type.
CREATE FUNCTION store_upload(upload_id uuid, token text, bytes bytea) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    u moverz_batch.uploads;
    v_type text;
    v_sum text;
BEGIN
    SELECT * INTO u FROM moverz_batch.uploads x WHERE x.id = store_upload.upload_id FOR UPDATE;
    IF u.id IS NULL OR token IS NULL OR u.token_sha256 <> sha256(convert_to(token, 'UTF8')) THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = format('upload %s: no such upload, or a wrong token', store_upload.upload_id);
    ELSIF u.uploaded_at IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '55006',
            MESSAGE = format('upload %s: its file was already uploaded (an upload URL is for one upload)', u.id);
    ELSIF u.expires_at < now() THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = format('upload %s: its URL expired at %s', u.id, u.expires_at),
            HINT = 'Request a new upload URL.';
    ELSIF bytes IS NULL OR length(bytes) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = format('upload %s: the body is empty', u.id);
    ELSIF length(bytes) > u.size THEN
        RAISE EXCEPTION USING ERRCODE = '54000',
            MESSAGE = format('upload %s: %s bytes, more than the %s announced', u.id, length(bytes), u.size);
    END IF;
    v_type := moverz_batch_internal.image_type(bytes);
    IF v_type IS DISTINCT FROM u.content_type THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('upload %s: the bytes are not an %s image (%s)', u.id, u.content_type,
                             coalesce('they are ' || v_type, 'not an image of a known type'));
    END IF;
    v_sum := encode(sha256(bytes), 'hex');
    INSERT INTO moverz_batch_internal.upload_bytes (upload_id, bytes) VALUES (u.id, bytes);
    -- once uploaded, it may be attached for another upload_url_ttl
    UPDATE moverz_batch.uploads x
       SET uploaded_at = now(), checksum = v_sum, size = length(bytes),
           expires_at = greatest(x.expires_at,
                                 now() + moverz_batch_internal.upload_setting('upload_url_ttl', '15min')::interval)
     WHERE x.id = u.id;
    RETURN jsonb_build_object('uploadId', u.id, 'size', length(bytes), 'sha256', v_sum);
END
$$;

-- check_uploads: the {"uploadId"} elements of create_batch's assets name
-- uploads of this user and project, completed, not expired, not used yet.
-- Their rows are locked (FOR UPDATE, in id order) until the batch commits,
-- so an upload becomes one photo only.  Raises the first broken rule,
-- naming the element.  (Whether the client did PUT an s3 upload's file is
-- not known here: its photo's worker finds out, settle_downloads.)
CREATE FUNCTION moverz_batch_internal.check_uploads(p_project_id uuid, p_user_id text, assets jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
BEGIN
    PERFORM 1 FROM moverz_batch.uploads u
     WHERE u.id IN (SELECT (e ->> 'uploadId')::uuid FROM jsonb_array_elements(assets) e WHERE e ? 'uploadId')
     ORDER BY u.id FOR UPDATE;
    FOR r IN SELECT a.i - 1 AS i, (a.e ->> 'uploadId')::uuid AS id, u.project_id, u.user_id,
                    CASE WHEN u.store = 's3' THEN coalesce(u.uploaded_at, u.created_at) ELSE u.uploaded_at END
                        AS uploaded_at,
                    u.expires_at, u.photo_id, count(*) OVER (PARTITION BY (a.e ->> 'uploadId')::uuid) AS times
               FROM jsonb_array_elements(assets) WITH ORDINALITY AS a(e, i)
               LEFT JOIN moverz_batch.uploads u ON u.id = (a.e ->> 'uploadId')::uuid
              WHERE a.e ? 'uploadId' ORDER BY a.i LOOP
        IF r.project_id IS NULL OR r.project_id <> p_project_id OR r.user_id <> p_user_id THEN
            RAISE EXCEPTION USING ERRCODE = '22023',
                MESSAGE = format('assets[%s].uploadId %s: no such upload for this user and project', r.i, r.id);
        ELSIF r.photo_id IS NOT NULL OR r.times > 1 THEN
            RAISE EXCEPTION USING ERRCODE = '22023',
                MESSAGE = format('assets[%s].uploadId %s: the upload was already used (an upload is one photo)', r.i, r.id);
        ELSIF r.uploaded_at IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = '22023',
                MESSAGE = format('assets[%s].uploadId %s: the upload was never completed (no file was sent to its URL)', r.i, r.id);
        ELSIF r.expires_at < now() THEN
            RAISE EXCEPTION USING ERRCODE = '22023',
                MESSAGE = format('assets[%s].uploadId %s: the upload expired at %s', r.i, r.id, r.expires_at),
                HINT = 'Upload the file again.';
        END IF;
    END LOOP;
END
$$;

-- settle_downloads: the photo workers downloaded the files of s3 uploads
-- (p_rows [{"id": photo, "sha256", "size"}]), before any AI call: each
-- photo, still claimed by incarnation p_token, takes its checksum, and
--   'done' when a photo of the project with the same bytes is DONE: it
--          takes that analysis (no AI call, the attempt not counted);
--   'wait' when one with the same bytes is waiting or in flight: it becomes
--          its duplicate (PENDING, takes its outcome: settle_duplicates);
--   'send' otherwise, its lease renewed (p_lease_ms) for the AI call;
--   'gone' when it is no longer this worker's (cancelled, lease expired).
-- Two workers settling the same bytes of a project at once: the second
-- waits for the first (an advisory lock per project and checksum, taken in
-- sorted order) and then sees it.  Lock order: those advisory locks, then
-- every photo concerned (these and the originals they may match) in id
-- order, as cancel_batch; then, through the counters, their batches.
CREATE FUNCTION moverz_batch_internal.settle_downloads(p_token bigint, p_lease_ms int, p_rows jsonb)
RETURNS TABLE (id uuid, action text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    r record;
    p moverz_batch.photos;
    o moverz_batch.photos;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(k, 0))
       FROM (SELECT DISTINCT x.project_id || ':' || (e ->> 'sha256') AS k
               FROM jsonb_array_elements(p_rows) e
               JOIN moverz_batch.photos x ON x.id = (e ->> 'id')::uuid
              ORDER BY 1) AS keys;
    PERFORM 1 FROM moverz_batch.photos x
     WHERE x.id IN (SELECT (e ->> 'id')::uuid FROM jsonb_array_elements(p_rows) e)
        OR ((x.project_id, x.checksum) IN (SELECT y.project_id, e ->> 'sha256'
                                              FROM jsonb_array_elements(p_rows) e
                                              JOIN moverz_batch.photos y ON y.id = (e ->> 'id')::uuid)
            AND x.duplicate_of IS NULL AND x.status IN ('DONE', 'PENDING', 'PROCESSING'))
     ORDER BY x.id FOR UPDATE;
    FOR r IN SELECT (e ->> 'id')::uuid AS pid, e ->> 'sha256' AS sum, (e ->> 'size')::int AS size
               FROM jsonb_array_elements(p_rows) e ORDER BY 1 LOOP
        id := r.pid;
        SELECT * INTO p FROM moverz_batch.photos x
         WHERE x.id = r.pid AND x.claim_token = p_token AND x.status = 'PROCESSING';
        IF p.id IS NULL THEN
            action := 'gone';
            RETURN NEXT;
            CONTINUE;
        END IF;
        UPDATE moverz_batch.uploads u SET checksum = r.sum, size = r.size, uploaded_at = coalesce(u.uploaded_at, now())
         WHERE u.id = p.upload_id;
        SELECT * INTO o FROM moverz_batch.photos x
         WHERE x.project_id = p.project_id AND x.checksum = r.sum AND x.duplicate_of IS NULL AND x.id <> p.id
           AND x.status IN ('DONE', 'PENDING', 'PROCESSING')
         ORDER BY x.status = 'DONE' DESC, x.finished_at, x.id
         LIMIT 1;
        IF o.id IS NOT NULL AND o.status = 'DONE' THEN
            UPDATE moverz_batch.photos x
               SET checksum = r.sum, status = 'DONE', duplicate_of = o.id, analysis = o.analysis,
                   room_type = coalesce(x.room_type, o.room_type), attempts = x.attempts - 1,
                   claimed_by = NULL, claim_token = NULL, lease_until = NULL,
                   finished_at = now(), updated_at = now()
             WHERE x.id = p.id;
            action := 'done';
        ELSIF o.id IS NOT NULL THEN
            UPDATE moverz_batch.photos x
               SET checksum = r.sum, status = 'PENDING', duplicate_of = o.id, attempts = x.attempts - 1,
                   claimed_by = NULL, claim_token = NULL, lease_until = NULL, updated_at = now()
             WHERE x.id = p.id;
            action := 'wait';
        ELSE
            UPDATE moverz_batch.photos x
               SET checksum = r.sum, lease_until = now() + p_lease_ms * interval '1 millisecond', updated_at = now()
             WHERE x.id = p.id;
            action := 'send';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

-- uploads_objects_trigger: the objects of the s3 uploads deleted (with
-- their photo, or expired) are queued for deletion (statement-level).
CREATE FUNCTION moverz_batch_internal.uploads_objects_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO moverz_batch_internal.object_deletions (object_key)
    SELECT moverz_batch_internal.upload_object_key(o.project_id, o.id) FROM old_rows o WHERE o.store = 's3'
    ON CONFLICT (object_key) DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER uploads_objects AFTER DELETE ON uploads
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION moverz_batch_internal.uploads_objects_trigger();

-- claim_object_deletions: up to p_limit objects whose deletion is due,
-- leased for a minute (a worker that dies lets another one try).
CREATE FUNCTION moverz_batch_internal.claim_object_deletions(p_limit int) RETURNS SETOF text
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
UPDATE moverz_batch_internal.object_deletions d
   SET next_attempt_at = now() + interval '1 minute', attempts = d.attempts + 1
 WHERE d.object_key IN (SELECT x.object_key FROM moverz_batch_internal.object_deletions x
                         WHERE x.next_attempt_at <= now()
                         ORDER BY x.next_attempt_at LIMIT p_limit FOR UPDATE SKIP LOCKED)
RETURNING d.object_key
$$;

-- finish_object_deletions: the objects deleted (or found absent) leave the
-- queue; a failure [{"key", "error"}] is tried again later (backoff).
CREATE FUNCTION moverz_batch_internal.finish_object_deletions(p_done text[], p_failed jsonb) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
DELETE FROM moverz_batch_internal.object_deletions d WHERE d.object_key = ANY (p_done);
UPDATE moverz_batch_internal.object_deletions d
   SET last_error = f ->> 'error',
       next_attempt_at = now() + least(interval '1 hour', interval '10 seconds' * power(2, least(d.attempts, 12)))
  FROM jsonb_array_elements(coalesce(p_failed, '[]')) f
 WHERE d.object_key = f ->> 'key';
$$;

-- expire_uploads: delete the uploads never attached to a batch whose URL
-- expired (their bytes go with them); returns how many.  Called by the
-- inventory worker every minute, and by purge.
CREATE FUNCTION moverz_batch_internal.expire_uploads() RETURNS int
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
WITH gone AS (
    DELETE FROM moverz_batch.uploads u WHERE u.photo_id IS NULL AND u.expires_at < now() RETURNING 1)
SELECT count(*)::int FROM gone
$$;

-- (request_uploads and store_upload: EXECUTE for moverz_app, not PUBLIC,
-- as the rest of the SQL API: 70_http_api.sql)
