-- moverz_batch 0.6.0 -> 0.7.0 (generated from sql/src; see CHANGELOG.md)
--
-- The internals move to schema moverz_batch_internal, which nobody but its
-- owner may use (issue #18): every function and type that only the
-- extension calls changes schema (same OIDs: triggers, views, policies and
-- the workers' kept plans follow), then every function is defined again as
-- in 0.7.0 (their bodies name the new schema; the public functions that
-- call into it, and the trigger functions, are SECURITY DEFINER), then the
-- privileges and comments of 0.7.0.
\echo Use "ALTER EXTENSION moverz_batch UPDATE TO '0.7.0'" to load this file. \quit

CREATE SCHEMA moverz_batch_internal;
REVOKE ALL ON SCHEMA moverz_batch_internal FROM PUBLIC;

ALTER TYPE moverz_batch.status_delta SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.admin_act(p_action text, p_id uuid) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.admin_check_limit(p_limit integer) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.ai_cost_usd(p_model text, p_tokens_in integer, p_tokens_out integer) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.ai_request_config() SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.ai_room_type_list() SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.api_body_uuid(p_body jsonb, p_field text) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.api_check_body(p_body jsonb, p_shape text) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.api_check_priority(p_priority text) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.api_owned_batch(p_batch_id uuid, p_user text) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.api_page(p_page integer, p_per_page integer) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.api_raise(p_state text, p_message text, p_hint text) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.api_user() SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.apply_batch_delta(p_batch_id uuid, d moverz_batch_internal.status_delta) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.apply_inventory_delta(p_removed uuid[], p_added uuid[]) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.asset_rows(assets jsonb) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.batch_summary(b moverz_batch.batches) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.batches_photos_trigger() SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.check_assets(assets jsonb) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.check_photo_quota(p_user_id text, p_n integer) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.check_user_id(p_user_id text) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.claim_photos(p_worker integer, p_token bigint, p_limit integer, p_lease_ms integer, p_per_user integer) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.complete_photos(p_token bigint, p_results jsonb, p_max_attempts integer, p_backoff_ms integer, p_provider text) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.counts_items(status moverz_batch.photo_status, duplicate_of uuid, analysis jsonb) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.derive_status(queued integer, processing integer, completed integer, failed integer, cancelled integer) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.echo_value(v text) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.insert_photos(p_batch_id uuid, p_project_id uuid, p_user_id text, p_priority moverz_batch.batch_priority, assets jsonb) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.inventory_summary(p_project_id uuid, p_batch_id uuid) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.is_terminal(s moverz_batch.batch_status) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.jwt_user_id() SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.next_inventory_due_ms() SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.notify_batch_trigger() SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.notify_inventory_trigger() SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.notify_progress(p_batch_id uuid) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.owned_project(p_project_id uuid, p_user_id text) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.photo_items(p_photo_ids uuid[]) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.photos_counts_trigger() SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.progress_document(state jsonb, batch_id uuid, photos_limit bigint, photos_offset bigint, summary jsonb) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.projects_lock_photos() SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.promote_duplicates(p_doomed uuid[]) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.publish_after_commit(batch_id uuid, state text, final boolean) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.raise_not_found(field text, id uuid, what text) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.recall_claimed_photos() SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.release_claims(p_worker integer, p_token bigint, p_workers integer, p_max_attempts integer) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.reopen_photos(p_batch_id uuid, p_photo_id uuid) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.request_header(p_name text) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.retry_delay_ms(attempt integer, backoff_ms integer, retry_after_ms integer) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.run_inventory_job(job_id bigint) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.run_next_inventory_job() SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.settle_duplicates(p_final uuid[]) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.status_delta_of(old moverz_batch.photo_status, new moverz_batch.photo_status) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.unclaim_photos(p_token bigint, p_ids uuid[]) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.wait_for_copies_in_flight(p_batch_id uuid, p_project_id uuid) SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.wake_inventory_worker() SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.wake_photo_workers() SET SCHEMA moverz_batch_internal;
ALTER FUNCTION moverz_batch.worker_status_raw() SET SCHEMA moverz_batch_internal;

-- Direct upload of photo files (issue #21): a photo is given by URL or
-- uploaded; the uploads and their bytes.
ALTER TABLE photos ALTER COLUMN url DROP NOT NULL, ADD COLUMN upload_id uuid,
    ADD CONSTRAINT photos_url_or_upload CHECK ((url IS NULL) <> (upload_id IS NULL));
CREATE UNIQUE INDEX photos_upload_idx ON photos (upload_id) WHERE upload_id IS NOT NULL;

-- Direct upload of photo files (since 0.7.0): request_uploads makes one row
-- per file with a signed single-use URL (the token's SHA-256 only is kept);
-- the client PUTs the bytes to it (store_upload: the database store keeps
-- them in moverz_batch_internal.upload_bytes), then names the upload in
-- create_batch, which makes it a photo (photo_id).  checksum is the SHA-256
-- of the bytes: duplicates by content.  An upload never attached expires
-- and is deleted (expire_uploads); one attached goes with its photo.
CREATE TABLE uploads (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id    uuid NOT NULL REFERENCES projects ON DELETE CASCADE,
    user_id       text NOT NULL,
    filename      text NOT NULL,
    content_type  text NOT NULL
                  CHECK (content_type IN ('image/jpeg', 'image/png', 'image/webp', 'image/gif')),
    size          int NOT NULL CHECK (size > 0),    -- announced; the bytes' once uploaded
    store         text NOT NULL CHECK (store IN ('database', 's3')),
    token_sha256  bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    uploaded_at   timestamptz,
    checksum      text,           -- SHA-256 of the bytes, hex
    photo_id      uuid,           -- the photo it became (once only)
    CONSTRAINT uploads_uploaded CHECK ((uploaded_at IS NULL) = (checksum IS NULL))
);
CREATE INDEX uploads_expiry_idx ON uploads (expires_at) WHERE photo_id IS NULL;
CREATE INDEX uploads_project_idx ON uploads (project_id);
CREATE INDEX uploads_waiting_idx ON uploads (user_id) WHERE photo_id IS NULL;

-- The bytes of the database store, apart from their upload's row (which
-- the API reads and updates without them).  Images are compressed
-- already: stored out of line, uncompressed.
CREATE TABLE moverz_batch_internal.upload_bytes (
    upload_id  uuid PRIMARY KEY REFERENCES uploads ON DELETE CASCADE,
    bytes      bytea NOT NULL
);
ALTER TABLE moverz_batch_internal.upload_bytes ALTER COLUMN bytes SET STORAGE EXTERNAL;

-- The objects of the s3 store to delete (their upload was deleted: its
-- photo went, or it expired unused), drained by the photo workers with
-- presigned DELETEs; a failure is tried again later.
CREATE TABLE moverz_batch_internal.object_deletions (
    object_key       text PRIMARY KEY,
    attempts         int NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text
);
CREATE INDEX object_deletions_due_idx ON moverz_batch_internal.object_deletions (next_attempt_at);

SELECT pg_catalog.pg_extension_config_dump('uploads', '');
SELECT pg_catalog.pg_extension_config_dump('moverz_batch_internal.upload_bytes', '');
SELECT pg_catalog.pg_extension_config_dump('moverz_batch_internal.object_deletions', '');

-- New result columns: made again below.
DROP FUNCTION moverz_batch_internal.claim_photos(int, bigint, int, int, int);
DROP FUNCTION moverz_batch_internal.asset_rows(jsonb);


-- Every function as 0.7.0 defines it.

CREATE OR REPLACE FUNCTION moverz_batch_internal.wake_photo_workers() RETURNS void
    LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'moverz_wake_photo_workers';

CREATE OR REPLACE FUNCTION moverz_batch_internal.wake_inventory_worker() RETURNS void
    LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'moverz_wake_inventory_worker';

CREATE OR REPLACE FUNCTION moverz_batch_internal.recall_claimed_photos() RETURNS void
    LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'moverz_recall_claimed_photos';

CREATE OR REPLACE FUNCTION analysis_error(a jsonb) RETURNS text
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'moverz_analysis_error';

CREATE OR REPLACE FUNCTION moverz_batch_internal.echo_value(v text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT quote_literal(left(v, 64)) || CASE WHEN length(v) > 64 THEN '…' ELSE '' END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.raise_not_found(field text, id uuid, what text) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'P0002',
        MESSAGE = format('%s %s: no such %s', field, coalesce(id::text, 'NULL'), what);
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.derive_status(queued int, processing int, completed int, failed int,
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

CREATE OR REPLACE FUNCTION moverz_batch_internal.is_terminal(s batch_status) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT s IN ('PARTIAL', 'COMPLETED', 'FAILED', 'CANCELLED')
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.status_delta_of(old photo_status, new photo_status)
RETURNS moverz_batch_internal.status_delta LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT ROW((new IS NOT DISTINCT FROM 'PENDING')::int    - (old IS NOT DISTINCT FROM 'PENDING')::int,
           (new IS NOT DISTINCT FROM 'PROCESSING')::int - (old IS NOT DISTINCT FROM 'PROCESSING')::int,
           (new IS NOT DISTINCT FROM 'DONE')::int       - (old IS NOT DISTINCT FROM 'DONE')::int,
           (new IS NOT DISTINCT FROM 'ERROR')::int      - (old IS NOT DISTINCT FROM 'ERROR')::int,
           (new IS NOT DISTINCT FROM 'CANCELLED')::int  - (old IS NOT DISTINCT FROM 'CANCELLED')::int
          )::moverz_batch_internal.status_delta
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.apply_batch_delta(p_batch_id uuid, d moverz_batch_internal.status_delta)
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

CREATE OR REPLACE FUNCTION moverz_batch_internal.counts_items(status photo_status, duplicate_of uuid, analysis jsonb)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT status = 'DONE' AND duplicate_of IS NULL AND analysis IS NOT NULL
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.photos_counts_trigger() RETURNS trigger
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

CREATE OR REPLACE FUNCTION moverz_batch_internal.batches_photos_trigger() RETURNS trigger
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

CREATE OR REPLACE FUNCTION moverz_batch_internal.projects_lock_photos() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM 1 FROM moverz_batch.photos p
     WHERE p.batch_id IN (SELECT b.id FROM moverz_batch.batches b WHERE b.project_id = OLD.id)
     ORDER BY p.id
       FOR UPDATE;
    RETURN OLD;
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.check_user_id(p_user_id text) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF p_user_id IS NULL OR btrim(p_user_id) = '' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'user_id must be a non-empty string';
    ELSIF octet_length(p_user_id) > 255 THEN
        RAISE EXCEPTION USING ERRCODE = '22001', MESSAGE = 'user_id must be at most 255 bytes';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION create_project(user_id text, name text) RETURNS uuid
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

CREATE OR REPLACE FUNCTION moverz_batch_internal.check_assets(assets jsonb) RETURNS void
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'moverz_check_assets';

CREATE OR REPLACE FUNCTION moverz_batch_internal.asset_rows(assets jsonb,
                           OUT id uuid, OUT "position" int, OUT filename text, OUT file_path text,
                           OUT url text, OUT room_type text, OUT checksum text, OUT first_id uuid,
                           OUT upload_id uuid)
RETURNS SETOF record LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'moverz_asset_rows';

CREATE OR REPLACE FUNCTION moverz_batch_internal.owned_project(p_project_id uuid, p_user_id text) RETURNS uuid
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

CREATE OR REPLACE FUNCTION moverz_batch_internal.insert_photos(p_batch_id uuid, p_project_id uuid, p_user_id text,
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

CREATE OR REPLACE FUNCTION moverz_batch_internal.wait_for_copies_in_flight(p_batch_id uuid, p_project_id uuid) RETURNS void
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

CREATE OR REPLACE FUNCTION moverz_batch_internal.check_photo_quota(p_user_id text, p_n int) RETURNS void
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

CREATE OR REPLACE FUNCTION create_batch(project_id uuid, user_id text, assets jsonb,
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

CREATE OR REPLACE FUNCTION batch_state(b batches) RETURNS jsonb
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

CREATE OR REPLACE FUNCTION moverz_batch_internal.progress_document(state jsonb, batch_id uuid, photos_limit bigint,
                                  photos_offset bigint, summary jsonb)
RETURNS jsonb LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'moverz_progress_document';

CREATE OR REPLACE FUNCTION batch_progress(batch_id uuid, photos_limit int DEFAULT NULL, photos_offset int DEFAULT 0)
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

CREATE OR REPLACE FUNCTION progress_percent(finished int, total int) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE WHEN total <= 0 THEN 0
            WHEN finished >= total THEN 100
            ELSE least(99, round(100.0 * finished / total))::int END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.reopen_photos(p_batch_id uuid, p_photo_id uuid) RETURNS int
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

CREATE OR REPLACE FUNCTION retry_batch(batch_id uuid) RETURNS int
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
SELECT moverz_batch_internal.reopen_photos(batch_id, NULL)
$$;

CREATE OR REPLACE FUNCTION retry_photo(photo_id uuid) RETURNS int
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

CREATE OR REPLACE FUNCTION cancel_batch(batch_id uuid) RETURNS int
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

CREATE OR REPLACE FUNCTION moverz_batch_internal.image_type(p_bytes bytea) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT CASE
    WHEN substr(p_bytes, 1, 3) = '\xffd8ff'::bytea THEN 'image/jpeg'
    WHEN substr(p_bytes, 1, 8) = '\x89504e470d0a1a0a'::bytea THEN 'image/png'
    WHEN substr(p_bytes, 1, 6) IN ('GIF87a'::bytea, 'GIF89a'::bytea) THEN 'image/gif'
    WHEN substr(p_bytes, 1, 4) = 'RIFF'::bytea AND substr(p_bytes, 9, 4) = 'WEBP'::bytea THEN 'image/webp'
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.s3_presign(method text, key text, expires_s int,
                                                 at timestamptz DEFAULT now()) RETURNS text
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'moverz_s3_presign';

CREATE OR REPLACE FUNCTION moverz_batch_internal.upload_object_key(p_project_id uuid, p_upload_id uuid) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT 'uploads/' || p_project_id || '/' || p_upload_id
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.upload_setting(p_name text, p_default text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT coalesce(nullif(current_setting('moverz_batch.' || p_name, true), ''), p_default)
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.check_upload_file(f jsonb, i int, p_max bigint) RETURNS void
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

CREATE OR REPLACE FUNCTION request_uploads(project_id uuid, user_id text, files jsonb) RETURNS jsonb
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

CREATE OR REPLACE FUNCTION store_upload(upload_id uuid, token text, bytes bytea) RETURNS jsonb
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

CREATE OR REPLACE FUNCTION moverz_batch_internal.check_uploads(p_project_id uuid, p_user_id text, assets jsonb) RETURNS void
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

CREATE OR REPLACE FUNCTION moverz_batch_internal.settle_downloads(p_token bigint, p_lease_ms int, p_rows jsonb)
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

CREATE OR REPLACE FUNCTION moverz_batch_internal.uploads_objects_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO moverz_batch_internal.object_deletions (object_key)
    SELECT moverz_batch_internal.upload_object_key(o.project_id, o.id) FROM old_rows o WHERE o.store = 's3'
    ON CONFLICT (object_key) DO NOTHING;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.claim_object_deletions(p_limit int) RETURNS SETOF text
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
UPDATE moverz_batch_internal.object_deletions d
   SET next_attempt_at = now() + interval '1 minute', attempts = d.attempts + 1
 WHERE d.object_key IN (SELECT x.object_key FROM moverz_batch_internal.object_deletions x
                         WHERE x.next_attempt_at <= now()
                         ORDER BY x.next_attempt_at LIMIT p_limit FOR UPDATE SKIP LOCKED)
RETURNING d.object_key
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.finish_object_deletions(p_done text[], p_failed jsonb) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
DELETE FROM moverz_batch_internal.object_deletions d WHERE d.object_key = ANY (p_done);
UPDATE moverz_batch_internal.object_deletions d
   SET last_error = f ->> 'error',
       next_attempt_at = now() + least(interval '1 hour', interval '10 seconds' * power(2, least(d.attempts, 12)))
  FROM jsonb_array_elements(coalesce(p_failed, '[]')) f
 WHERE d.object_key = f ->> 'key';
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.expire_uploads() RETURNS int
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
WITH gone AS (
    DELETE FROM moverz_batch.uploads u WHERE u.photo_id IS NULL AND u.expires_at < now() RETURNING 1)
SELECT count(*)::int FROM gone
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.photo_items(p_photo_ids uuid[])
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

CREATE OR REPLACE FUNCTION moverz_batch_internal.apply_inventory_delta(p_removed uuid[], p_added uuid[])
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

CREATE OR REPLACE FUNCTION moverz_batch_internal.inventory_summary(p_project_id uuid, p_batch_id uuid) RETURNS jsonb
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

CREATE OR REPLACE FUNCTION sync_inventory(batch_id uuid) RETURNS jsonb
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

CREATE OR REPLACE FUNCTION project_inventory(project_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM 1 FROM moverz_batch.projects p WHERE p.id = project_inventory.project_id;
    IF NOT FOUND THEN
        PERFORM moverz_batch_internal.raise_not_found('project_id', project_inventory.project_id, 'project');
    END IF;
    RETURN moverz_batch_internal.inventory_summary(project_inventory.project_id, NULL);
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.run_inventory_job(job_id bigint) RETURNS text
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

CREATE OR REPLACE FUNCTION moverz_batch_internal.ai_cost_usd(p_model text, p_tokens_in int, p_tokens_out int) RETURNS numeric
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT CASE WHEN c < 1000000 THEN round(c, 6) END
  FROM (SELECT (coalesce(p_tokens_in, 0) * p.input_usd_per_mtok
                + coalesce(p_tokens_out, 0) * p.output_usd_per_mtok) / 1000000 AS c
          FROM moverz_batch.model_prices p
         WHERE p_model IS NOT NULL AND left(p_model, length(p.model)) = p.model
         ORDER BY length(p.model) DESC
         LIMIT 1) AS x
$$;

CREATE OR REPLACE FUNCTION ai_prompt_version() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 'moverz-1' $$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.ai_room_type_list() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT string_agg(t.room_type || ' (' || t.description || ')', ', ' ORDER BY t.room_type)
  FROM moverz_batch.room_types t
$$;

CREATE OR REPLACE FUNCTION ai_system_prompt() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
SELECT replace(coalesce(nullif(current_setting('moverz_batch.ai_system_prompt', true), ''),
$prompt$You look at one photo of a room for a moving company, which prices a move by the volume of what it carries.
List the furniture and the large objects a mover would carry: furniture, appliances, electronics, lamps, rugs, boxes, bicycles, plants in pots. Leave out what stays in the building (built-in cupboards, radiators, sinks, doors, windows, fitted kitchens) and small loose objects that go into boxes.
For each kind of object give:
- label: a short English noun phrase, singular ("sofa", "double bed", "wardrobe", "chair");
- quantity: how many of them you can see, an integer;
- volume_m3: the volume of ONE of them in cubic metres, as a mover estimates it for the truck (for example: chair 0.2, armchair 0.8, three-seat sofa 2.5, double bed with mattress 1.9, two-door wardrobe 1.1, fridge 1.0, dining table 0.6).
Put identical objects in one entry with their quantity; never count one object twice, also when it appears twice in the photo.
Say which room this is, as exactly one of these room types: {room_types}.
If the photo shows no room or nothing to move, answer an empty list of items and the room type "other".
Answer only with the structured result asked for, nothing else.$prompt$), '{room_types}',
               coalesce(moverz_batch_internal.ai_room_type_list(), 'other'))
$$;

CREATE OR REPLACE FUNCTION ai_analysis_schema() RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT jsonb_build_object(
    'type', 'object',
    'properties', jsonb_build_object(
        'room_type', jsonb_build_object(
            'type', 'string',
            'description', 'The room shown in the photo.',
            'enum', (SELECT jsonb_agg(t.room_type ORDER BY t.room_type) FROM moverz_batch.room_types t)),
        'items', jsonb_build_object(
            'type', 'array',
            'description', 'The objects to move, identical objects in one entry.',
            'items', jsonb_build_object(
                'type', 'object',
                'properties', jsonb_build_object(
                    'label', jsonb_build_object('type', 'string',
                                                'description', 'Short English noun phrase, singular.'),
                    'quantity', jsonb_build_object('type', 'integer',
                                                   'description', 'How many of them, at least 1.'),
                    'volume_m3', jsonb_build_object('type', 'number',
                                                    'description', 'Volume of one of them in cubic metres.')),
                'required', jsonb_build_array('label', 'quantity', 'volume_m3'),
                'additionalProperties', false))),
    'required', jsonb_build_array('room_type', 'items'),
    'additionalProperties', false)
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.ai_request_config(OUT prompt_version text, OUT system_prompt text,
                                  OUT analysis_schema jsonb)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT CASE WHEN nullif(current_setting('moverz_batch.ai_system_prompt', true), '') IS NULL
            THEN moverz_batch.ai_prompt_version() ELSE 'custom' END,
       moverz_batch.ai_system_prompt(), moverz_batch.ai_analysis_schema()
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.claim_photos(p_worker int, p_token bigint, p_limit int, p_lease_ms int,
                             p_per_user int DEFAULT 0, p_byte_budget bigint DEFAULT NULL,
                             p_first_anyway boolean DEFAULT true)
RETURNS TABLE (id uuid, batch_id uuid, project_id uuid, user_id text, url text,
               filename text, room_type text, attempt int, upload_id uuid, media_type text, image bytea,
               object_key text, upload_size int)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off SET jit = off AS $$
BEGIN
    IF (SELECT c.paused FROM moverz_batch.control c) THEN
        RETURN;
    END IF;
    IF p_per_user > 0 THEN
        -- claims count each user's photos in flight: one claim at a time
        PERFORM pg_advisory_xact_lock(hashtext('moverz_batch_internal.claim_photos'));
    END IF;
    RETURN QUERY
    WITH users AS (
        -- the users with pending photos, from their open batches, and the
        -- creation time of the oldest (its photos' too): not from the
        -- photos' claim index, whose dead entries (photos claimed since the
        -- last VACUUM) a scan from a user's first entry would step over
        SELECT b.user_id, min(b.created_at) AS since FROM moverz_batch.batches b
         WHERE b.status IN ('QUEUED', 'PROCESSING') AND b.count_queued > 0
         GROUP BY b.user_id
    ), inflight AS (
        -- each user's photos in flight: needed for the turns only when users
        -- compete, or for the per-user ceiling
        SELECT p.user_id, count(*) AS n FROM moverz_batch.photos p
         WHERE p.status = 'PROCESSING'
           AND p.user_id = ANY (ARRAY(SELECT u.user_id FROM users u))
           AND (p_per_user > 0 OR (SELECT count(u.user_id) FROM users u) > 1)
         GROUP BY p.user_id
    ), candidates AS (
        SELECT c.id, c.priority, c.created_at, c.bytes,
               coalesce(i.n, 0) + row_number() OVER (PARTITION BY u.user_id
                                  ORDER BY c.priority DESC, c.created_at, c.batch_id, c.position) AS turn
          FROM users u
          LEFT JOIN inflight i ON i.user_id = u.user_id
          -- one index range per (user, priority), starting at the user's
          -- oldest open batch: the dead entries before it are never read
          -- (40,000 of them made each claim 4 ms longer)
          CROSS JOIN unnest(enum_range(NULL::moverz_batch.batch_priority)) AS pr(priority)
          CROSS JOIN LATERAL (
              SELECT p.id, p.priority, p.created_at, p.batch_id, p.position,
                     CASE WHEN p.upload_id IS NULL THEN 0
                          ELSE (SELECT u.size FROM moverz_batch.uploads u WHERE u.id = p.upload_id) END AS bytes
                FROM moverz_batch.photos p
               WHERE p.user_id = u.user_id AND p.priority = pr.priority AND p.created_at >= u.since
                 AND p.status = 'PENDING' AND p.duplicate_of IS NULL AND p.next_attempt_at <= now()
               ORDER BY p.created_at, p.batch_id, p.position
               LIMIT CASE WHEN p_per_user > 0
                          THEN least(p_limit, greatest(p_per_user - coalesce(i.n, 0), 0))
                          ELSE p_limit END) AS c
    ), ranked AS (
        SELECT c.id, c.priority, c.turn, c.created_at, c.bytes FROM candidates c
         ORDER BY c.priority DESC, c.turn, c.created_at LIMIT p_limit
    ), chosen AS (
        -- within the byte budget
        SELECT r.id, r.priority, r.turn, r.created_at, r.bytes FROM (
            SELECT r.*, sum(r.bytes) OVER w AS total, row_number() OVER w AS n FROM ranked r
            WINDOW w AS (ORDER BY r.priority DESC, r.turn, r.created_at ROWS UNBOUNDED PRECEDING)) r
         WHERE p_byte_budget IS NULL OR r.total <= p_byte_budget OR (r.n = 1 AND p_first_anyway)
    ), locked AS (
        -- by primary key (= ANY of an array), whatever the table's statistics say
        SELECT p.id FROM moverz_batch.photos p
         WHERE p.id = ANY (ARRAY(SELECT chosen.id FROM chosen)) AND p.status = 'PENDING'
           FOR UPDATE SKIP LOCKED
    ), claimed AS (
    UPDATE moverz_batch.photos p
       SET status = 'PROCESSING', attempts = p.attempts + 1, claimed_by = p_worker,
           claim_token = p_token, lease_until = now() + p_lease_ms * interval '1 millisecond',
           started_at = now(), updated_at = now()
     WHERE p.id = ANY (ARRAY(SELECT l.id FROM locked l))
    RETURNING p.id, p.batch_id, p.project_id, p.user_id, p.url, p.filename, p.room_type, p.attempts,
              p.position, p.upload_id
    )
    -- in the order chosen: the worker sends them in this order
    SELECT cl.id, cl.batch_id, cl.project_id, cl.user_id, cl.url, cl.filename, cl.room_type, cl.attempts,
           cl.upload_id,
           CASE WHEN cl.upload_id IS NOT NULL
                THEN (SELECT u.content_type FROM moverz_batch.uploads u WHERE u.id = cl.upload_id) END,
           CASE WHEN cl.upload_id IS NOT NULL
                THEN (SELECT x.bytes FROM moverz_batch_internal.upload_bytes x WHERE x.upload_id = cl.upload_id) END,
           CASE WHEN cl.upload_id IS NOT NULL
                THEN (SELECT moverz_batch_internal.upload_object_key(u.project_id, u.id)
                        FROM moverz_batch.uploads u WHERE u.id = cl.upload_id AND u.store = 's3') END,
           ch.bytes
      FROM claimed cl JOIN chosen ch ON ch.id = cl.id
     ORDER BY ch.priority DESC, ch.turn, ch.created_at, cl.batch_id, cl.position;
END
$$;

CREATE OR REPLACE FUNCTION classify_result(provider text, http_status int, transport_code text,
                                transport_message text, body jsonb, body_text text,
                                OUT ok boolean, OUT code text, OUT message text, OUT retryable boolean,
                                OUT analysis jsonb, OUT model text, OUT tokens_in int, OUT tokens_out int)
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'moverz_classify_result';

CREATE OR REPLACE FUNCTION moverz_batch_internal.retry_delay_ms(attempt int, backoff_ms int, retry_after_ms int)
RETURNS double precision LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
SELECT greatest(backoff_ms * power(4, least(greatest(attempt, 1) - 1, 10)) * (0.75 + random() * 0.5),
                coalesce(retry_after_ms, 0))
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.settle_duplicates(p_final uuid[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off SET jit = off AS $$
BEGIN
    IF p_final IS NULL
       OR NOT EXISTS (SELECT 1 FROM moverz_batch.photos d
                       WHERE d.duplicate_of = ANY (p_final) AND d.duplicate_of IS NOT NULL) THEN
        RETURN;
    END IF;
    UPDATE moverz_batch.photos d
       SET status = o.status, analysis = o.analysis, error_code = o.error_code,
           error_message = o.error_message, room_type = coalesce(d.room_type, o.room_type),
           finished_at = now(), updated_at = now()
      FROM moverz_batch.photos o
     WHERE d.duplicate_of = o.id AND d.duplicate_of = ANY (p_final) AND d.duplicate_of IS NOT NULL
       AND o.id = ANY (p_final) AND d.status = 'PENDING'
       AND o.status IN ('DONE', 'ERROR');
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.complete_photos(p_token bigint, p_results jsonb, p_max_attempts int,
                                p_backoff_ms int, p_provider text,
                                OUT done int, OUT rate_limit_ms int)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    v_final uuid[];
BEGIN
    WITH r AS (
        -- claimed: the status a photo must still have.  Compared as a column
        -- of r, not as a constant, so that the planner finds the photos by
        -- primary key: "status = 'PROCESSING'" would let it scan the whole
        -- in-flight partial index (every photo in flight and the dead
        -- entries of those written back since the last VACUUM) at each
        -- write-back, 0.5 ms per photo with 1,250 claimed.
        SELECT x.*, c.*, a.api, 'PROCESSING'::moverz_batch.photo_status AS claimed
          FROM jsonb_to_recordset(p_results) AS x(id uuid, batch_id uuid, user_id text, attempt int,
               http_status int, latency_ms int, provider text, prompt_version text,
               outage boolean, transport_code text, transport_message text,
               retry_after_ms int, body jsonb, body_text text)
          -- the provider the request was sent to (an older worker names none)
          CROSS JOIN LATERAL (SELECT coalesce(x.provider, p_provider) AS api) AS a
          CROSS JOIN LATERAL moverz_batch.classify_result(a.api,
               x.http_status, x.transport_code, x.transport_message, x.body, x.body_text) AS c
    ), metrics AS (
        INSERT INTO moverz_batch.ai_metrics (provider, operation, latency_ms, success, cost_usd,
                                             tokens_in, tokens_out, model, meta)
        SELECT r.api, 'analyze_photo', greatest(r.latency_ms, 0), r.ok,
               coalesce(CASE WHEN jsonb_typeof(r.body -> 'cost_usd') = 'number'
                              AND r.api NOT IN ('anthropic', 'openai')
                              AND (r.body ->> 'cost_usd')::numeric BETWEEN 0 AND 999999
                             THEN round((r.body ->> 'cost_usd')::numeric, 6) END,
                        moverz_batch_internal.ai_cost_usd(r.model, r.tokens_in, r.tokens_out)),
               r.tokens_in, r.tokens_out, r.model,
               jsonb_strip_nulls(jsonb_build_object(
                   'photoId', r.id, 'userId', r.user_id, 'batchId', r.batch_id,
                   'itemsCount', CASE WHEN r.ok THEN jsonb_array_length(r.analysis -> 'items') END,
                   'attempt', r.attempt, 'errorCode', r.code, 'httpStatus', r.http_status,
                   'model', r.model, 'promptVersion', r.prompt_version,
                   'outage', CASE WHEN r.outage THEN true END))
          FROM r
         -- an answer for a photo that is gone (its batch deleted, or the
         -- extension dropped and created again) is no call of this install
         WHERE EXISTS (SELECT 1 FROM moverz_batch.photos g WHERE g.id = r.id)
    ), u AS (
    UPDATE moverz_batch.photos p
       SET status = CASE WHEN r.ok THEN 'DONE'
                         WHEN r.outage OR (r.retryable AND p.attempts < p_max_attempts) THEN 'PENDING'
                         ELSE 'ERROR' END::moverz_batch.photo_status,
           -- a failure while the AI service is down gives the attempt back
           attempts = CASE WHEN NOT r.ok AND r.outage THEN greatest(p.attempts - 1, 0)
                           ELSE p.attempts END,
           analysis = CASE WHEN r.ok THEN r.analysis END,
           room_type = CASE WHEN r.ok AND p.room_type IS NULL
                            THEN (SELECT t.room_type FROM moverz_batch.room_types t
                                   WHERE t.room_type = r.analysis ->> 'room_type')
                            ELSE p.room_type END,
           error_code = CASE WHEN NOT r.ok THEN r.code END,
           error_message = CASE WHEN NOT r.ok THEN r.message END,
           next_attempt_at = CASE WHEN NOT r.ok AND r.outage THEN now()
                                  WHEN NOT r.ok AND r.retryable AND p.attempts < p_max_attempts
                                  THEN now() + moverz_batch_internal.retry_delay_ms(p.attempts, p_backoff_ms, r.retry_after_ms)
                                               * interval '1 millisecond'
                                  ELSE p.next_attempt_at END,
           finished_at = CASE WHEN NOT r.ok AND r.outage THEN NULL
                              WHEN r.ok OR NOT r.retryable OR p.attempts >= p_max_attempts
                              THEN now() END,
           claimed_by = NULL, claim_token = NULL, lease_until = NULL, updated_at = now()
      FROM r
     WHERE p.id = r.id AND p.status = r.claimed AND p.claim_token = p_token
       AND p.attempts = r.attempt
       -- and an index condition that bounds the scan of photos to these rows,
       -- whatever join the plan uses: a plan kept from when photos was small
       -- hash-joined a scan of the whole primary key (13,000 rows read for
       -- 22 results)
       AND p.id = ANY (ARRAY(SELECT r2.id FROM r AS r2))
    RETURNING p.id, p.status
    )
    SELECT count(*) FILTER (WHERE u.status = 'DONE'),
           array_agg(u.id) FILTER (WHERE u.status IN ('DONE', 'ERROR')),
           (SELECT coalesce(max(coalesce(r2.retry_after_ms, p_backoff_ms)), 0) FROM r AS r2
             WHERE r2.code = 'RATE_LIMIT')
      INTO done, v_final, rate_limit_ms
      FROM u;
    PERFORM moverz_batch_internal.settle_duplicates(v_final);
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.release_claims(p_worker int, p_token bigint, p_workers int, p_max_attempts int)
RETURNS int LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    v_n int;
    v_final uuid[];
BEGIN
    WITH released AS (
    UPDATE moverz_batch.photos p
       SET status = CASE WHEN p.attempts < p_max_attempts THEN 'PENDING'
                         ELSE 'ERROR' END::moverz_batch.photo_status,
           error_code = CASE WHEN p.attempts >= p_max_attempts THEN 'AI_ERROR' END,
           error_message = CASE WHEN p.attempts >= p_max_attempts
                                THEN 'the worker stopped while the request was in flight' END,
           finished_at = CASE WHEN p.attempts >= p_max_attempts THEN now() END,
           next_attempt_at = now(), claimed_by = NULL, claim_token = NULL, lease_until = NULL,
           updated_at = now()
      FROM (SELECT q.id FROM moverz_batch.photos q
             WHERE q.status = 'PROCESSING'
               AND ((q.claimed_by = p_worker AND q.claim_token IS DISTINCT FROM p_token)
                    OR q.claimed_by IS NULL OR q.claimed_by >= p_workers OR q.claimed_by < 0
                    OR q.lease_until < now())
               FOR UPDATE SKIP LOCKED) AS s
     WHERE p.id = s.id
    RETURNING p.id, p.status
    )
    SELECT count(*), array_agg(r.id) FILTER (WHERE r.status = 'ERROR') INTO v_n, v_final FROM released r;
    PERFORM moverz_batch_internal.settle_duplicates(v_final);
    RETURN v_n;
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.unclaim_photos(p_token bigint, p_ids uuid[]) RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    v_n int;
BEGIN
    UPDATE moverz_batch.photos p
       SET status = 'PENDING', attempts = greatest(p.attempts - 1, 0), claimed_by = NULL,
           claim_token = NULL, lease_until = NULL, updated_at = now()
     WHERE p.id = ANY (p_ids) AND p.status = 'PROCESSING' AND p.claim_token = p_token;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.run_next_inventory_job() RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id bigint;
    v_msg text;
BEGIN
    SELECT j.id INTO v_id FROM moverz_batch.inventory_sync_jobs j
     WHERE j.status = 'PENDING' AND j.next_attempt_at <= now()
     ORDER BY j.next_attempt_at, j.id
     LIMIT 1
       FOR UPDATE SKIP LOCKED;
    IF v_id IS NULL THEN
        RETURN NULL;
    END IF;
    BEGIN
        PERFORM moverz_batch_internal.run_inventory_job(v_id);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
        UPDATE moverz_batch.inventory_sync_jobs
           SET attempts = attempts + 1, last_error = left(v_msg, 500),
               next_attempt_at = now() + least(power(2, attempts), 300) * interval '1 second'
         WHERE id = v_id;
        RAISE WARNING 'moverz_batch: inventory sync job % failed: %', v_id, v_msg;
    END;
    RETURN v_id;
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.next_inventory_due_ms() RETURNS double precision
LANGUAGE sql STABLE AS $$
SELECT CASE WHEN min(next_attempt_at) IS NOT NULL
            THEN greatest(0, extract(epoch FROM min(next_attempt_at) - now()) * 1000) END
  FROM moverz_batch.inventory_sync_jobs WHERE status = 'PENDING'
$$;

CREATE OR REPLACE FUNCTION progress_payload(p_batch_id uuid) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET enable_seqscan = off SET jit = off AS $$
BEGIN
    RETURN (SELECT (moverz_batch.batch_state(b)
                    || jsonb_build_object('inventoryReady',
                           EXISTS (SELECT 1 FROM moverz_batch.inventory_summaries s
                                    WHERE s.batch_id = b.id AND s.generation = b.inventory_generation))
                    || coalesce((SELECT jsonb_build_object('waitingForAiServiceSince', a.unreachable_since)
                                   FROM moverz_batch.ai_service_status() a
                                  WHERE a.holding AND b.count_queued + b.count_processing > 0), '{}'))::text
              FROM moverz_batch.batches b WHERE b.id = p_batch_id);
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.publish_after_commit(batch_id uuid, state text, final boolean) RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'moverz_publish_after_commit';

CREATE OR REPLACE FUNCTION publish_status(OUT queued bigint, OUT published bigint, OUT dropped bigint,
                               OUT failed bigint, OUT last_failure_at timestamptz,
                               OUT last_failure text, OUT running boolean)
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'moverz_publish_status';

CREATE OR REPLACE FUNCTION moverz_batch_internal.notify_progress(p_batch_id uuid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_done text := coalesce(current_setting('moverz_notify.batches', true), '');
    v_txid bigint;
    v_state jsonb;
BEGIN
    IF position(p_batch_id::text IN v_done) > 0 THEN
        RETURN;
    END IF;
    PERFORM set_config('moverz_notify.batches', v_done || p_batch_id::text || ',', true);
    v_txid := pg_catalog.txid_current();
    PERFORM pg_notify('moverz_batch_progress',
                      jsonb_build_object('batchId', p_batch_id, 'txid', v_txid)::text);
    IF current_setting('moverz_batch.publish_url') <> '' THEN
        v_state := moverz_batch.progress_payload(p_batch_id)::jsonb || jsonb_build_object('txid', v_txid);
        PERFORM moverz_batch_internal.publish_after_commit(p_batch_id, v_state::text,
            (v_state ->> 'inventoryReady')::boolean
            AND moverz_batch_internal.is_terminal((v_state ->> 'status')::moverz_batch.batch_status));
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.notify_batch_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM moverz_batch_internal.notify_progress(NEW.id);
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.notify_inventory_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM moverz_batch_internal.notify_progress(NEW.batch_id);
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.worker_status_raw(
    OUT kind text, OUT worker int, OUT pid int, OUT inflight int, OUT done bigint,
    OUT failed bigint, OUT last_error text, OUT last_error_at timestamptz, OUT since timestamptz)
RETURNS SETOF record
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'moverz_worker_status';

CREATE OR REPLACE FUNCTION ai_service_status(OUT unreachable_since timestamptz, OUT probes bigint,
                                  OUT failures_in_a_row int, OUT holding boolean, OUT last_error text)
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'moverz_ai_service_status';

CREATE OR REPLACE FUNCTION pause_processing() RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE moverz_batch.control SET paused = true, paused_at = now() WHERE NOT paused;
    IF FOUND THEN
        RAISE LOG 'moverz_batch: processing paused by %', session_user;
    END IF;
    PERFORM moverz_batch_internal.recall_claimed_photos();
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION resume_processing() RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE moverz_batch.control SET paused = false, paused_at = NULL WHERE paused;
    IF FOUND THEN
        RAISE LOG 'moverz_batch: processing resumed by %', session_user;
    END IF;
    PERFORM moverz_batch_internal.wake_photo_workers();
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.promote_duplicates(p_doomed uuid[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_batches uuid[];
BEGIN
    WITH copies AS (
        SELECT d.id, d.batch_id,
               first_value(d.id) OVER (PARTITION BY d.duplicate_of ORDER BY d.created_at, d.position, d.id) AS heir
          FROM moverz_batch.photos d
          JOIN moverz_batch.photos o ON o.id = d.duplicate_of
         WHERE o.batch_id = ANY (p_doomed) AND NOT d.batch_id = ANY (p_doomed)
    ), promoted AS (
        UPDATE moverz_batch.photos p
           SET duplicate_of = CASE WHEN c.heir = p.id THEN NULL ELSE c.heir END
          FROM copies c
         WHERE p.id = c.id
        RETURNING p.batch_id
    )
    SELECT array_agg(DISTINCT batch_id) INTO v_batches FROM promoted;
    PERFORM moverz_batch.sync_inventory(b)
       FROM unnest(v_batches) AS b
      WHERE EXISTS (SELECT 1 FROM moverz_batch.inventory_summaries s WHERE s.batch_id = b);
END
$$;

CREATE OR REPLACE FUNCTION purge(older_than interval DEFAULT '30 days',
                      OUT batches_deleted bigint, OUT metrics_deleted bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_ids uuid[];
BEGIN
    IF older_than IS NULL OR older_than < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'older_than must be a non-negative interval';
    END IF;
    -- one set of batches, locked in the order of every path (cancel_batch):
    -- their photos, then the batches, chosen again under the lock (a batch
    -- retried meanwhile is no longer finished); its duplicates are promoted
    -- and exactly that set is deleted
    v_ids := ARRAY(SELECT b.id FROM moverz_batch.batches b
                    WHERE moverz_batch_internal.is_terminal(b.status) AND b.completed_at < now() - older_than);
    PERFORM 1 FROM moverz_batch.photos p WHERE p.batch_id = ANY (v_ids) ORDER BY p.id FOR UPDATE;
    v_ids := ARRAY(SELECT b.id FROM moverz_batch.batches b
                    WHERE b.id = ANY (v_ids) AND moverz_batch_internal.is_terminal(b.status)
                      AND b.completed_at < now() - older_than
                    ORDER BY b.id
                      FOR UPDATE);
    PERFORM moverz_batch_internal.promote_duplicates(v_ids);
    DELETE FROM moverz_batch.batches b WHERE b.id = ANY (v_ids);
    GET DIAGNOSTICS batches_deleted = ROW_COUNT;
    DELETE FROM moverz_batch.ai_metrics m WHERE m.created_at < now() - older_than;
    GET DIAGNOSTICS metrics_deleted = ROW_COUNT;
    -- (the bytes of the photos deleted went with them; those of uploads
    -- never attached go once their URL expired)
    PERFORM moverz_batch_internal.expire_uploads();
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.jwt_user_id() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT nullif(nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub', '')
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.api_user() RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_user text := moverz_batch_internal.jwt_user_id();
BEGIN
    -- PostgREST ran the request as its anonymous role (no token, or one
    -- without a role claim); "role" is the caller's, also in a SECURITY
    -- DEFINER function
    IF current_setting('role', true) = 'moverz_anon' THEN
        RAISE EXCEPTION USING ERRCODE = 'PT401',
            MESSAGE = 'a JWT is required: send "Authorization: Bearer <token>"',
            HINT = 'The user is the token''s "sub" claim (HS256, claims role, sub and exp); '
                   'an x-user-id header is not read.';
    ELSIF v_user IS NULL OR btrim(v_user) = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'PT401', MESSAGE = 'the token names no user (no "sub" claim)',
            HINT = 'Sign a JWT with {"role": "moverz_user", "sub": "<user id>", "exp": <expiry>}.';
    ELSIF octet_length(v_user) > 255 THEN
        RAISE EXCEPTION USING ERRCODE = 'PT401', MESSAGE = 'the token''s "sub" claim is longer than 255 bytes';
    ELSIF jsonb_typeof(current_setting('request.jwt.claims', true)::jsonb -> 'exp') IS DISTINCT FROM 'number' THEN
        RAISE EXCEPTION USING ERRCODE = 'PT401', MESSAGE = 'the token never expires (no "exp" claim)',
            HINT = 'Sign the JWT with an "exp" claim: seconds since 1970, e.g. one hour from now.';
    END IF;
    RETURN v_user;
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.request_header(p_name text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT nullif(current_setting('request.headers', true), '')::jsonb ->> lower(p_name)
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.api_raise(p_state text, p_message text, p_hint text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_state text := CASE p_state WHEN 'P0002' THEN 'PT404' WHEN '54000' THEN 'PT413' ELSE p_state END;
    v_msg text := p_message;
    v_names text[] := ARRAY['assets', 'imageUrls', 'project_id', 'projectId', 'photos_limit', 'photosLimit',
                            'photos_offset', 'photosOffset', 'idempotency_key', 'Idempotency-Key'];
BEGIN
    FOR i IN 1 .. array_length(v_names, 1) BY 2 LOOP
        IF v_msg LIKE v_names[i] || '%' THEN
            v_msg := v_names[i + 1] || substr(v_msg, length(v_names[i]) + 1);
            EXIT;
        END IF;
    END LOOP;
    IF v_state = 'PT413' AND coalesce(p_hint, '') LIKE 'Split the photos%' THEN
        p_hint := 'Split the photos into several batches.';
    ELSIF p_hint LIKE '%moverz_batch.room_types%' THEN
        p_hint := 'Accepted room types: '
                  || (SELECT string_agg(room_type, ', ' ORDER BY room_type) FROM moverz_batch.room_types) || '.';
    END IF;
    IF coalesce(p_hint, '') = '' THEN
        RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_msg;
    END IF;
    RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_msg, HINT = p_hint;
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.api_check_priority(p_priority text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    -- the request's role, as PostgREST set it from the token ("role" is
    -- the caller's, also in a SECURITY DEFINER function)
    v_role text := current_setting('role', true);
BEGIN
    IF p_priority = 'HIGH'
       AND NOT coalesce(EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = v_role
                                   AND pg_catalog.pg_has_role(r.oid, 'moverz_priority', 'MEMBER')), false) THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = 'priority HIGH is reserved to roles granted moverz_priority',
            HINT = 'Send NORMAL or LOW, or ask an administrator for a token whose role is a member of moverz_priority.';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.api_owned_batch(p_batch_id uuid, p_user text) RETURNS uuid
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM 1 FROM moverz_batch.batches b WHERE b.id = p_batch_id AND b.user_id = p_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = 'batch not found';
    END IF;
    RETURN p_batch_id;
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.api_page(p_page int, p_per_page int) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_page IS NULL OR p_page < 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'page must be an integer >= 1';
    ELSIF p_per_page IS NULL OR p_per_page NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'perPage must be an integer between 1 and 100';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.api_body_uuid(p_body jsonb, p_field text) RETURNS uuid
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF jsonb_typeof(p_body -> p_field) IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('%s is required and must be a string', p_field);
    ELSIF (p_body ->> p_field) !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('%s must be a UUID', p_field);
    END IF;
    RETURN (p_body ->> p_field)::uuid;
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.api_check_body(p_body jsonb, p_shape text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF jsonb_typeof(p_body) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('the request body must be a JSON object %s, not %s', p_shape,
                             coalesce(jsonb_typeof(p_body), 'empty'));
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.api_too_many(p_message text, p_hint text, p_detail text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE SQLSTATE 'PGRST' USING
        MESSAGE = jsonb_build_object('code', '53400', 'message', p_message, 'hint', p_hint, 'details', NULL)::text,
        DETAIL = jsonb_build_object('status', 429, 'status_text', 'Too Many Requests',
                                    'headers', jsonb_build_object('Retry-After', substr(p_detail, 15)))::text;
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.api_assets(p_body jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_body -> 'uploads' IS NULL OR jsonb_typeof(p_body -> 'uploads') = 'null' THEN
        RETURN p_body -> 'imageUrls';
    ELSIF jsonb_typeof(p_body -> 'uploads') <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('uploads must be a JSON array of {"uploadId", "roomType"} objects, not %s',
                             jsonb_typeof(p_body -> 'uploads'));
    ELSIF p_body -> 'imageUrls' IS NULL OR jsonb_typeof(p_body -> 'imageUrls') = 'null' THEN
        RETURN p_body -> 'uploads';
    ELSIF jsonb_typeof(p_body -> 'imageUrls') <> 'array' THEN
        RETURN p_body -> 'imageUrls';       -- refused by create_batch, as before
    END IF;
    RETURN (p_body -> 'imageUrls') || (p_body -> 'uploads');
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.batch_summary(b batches) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT moverz_batch.batch_state(b)
       || jsonb_strip_nulls(jsonb_build_object('projectId', b.project_id, 'priority', b.priority,
                                               'createdAt', b.created_at, 'updatedAt', b.updated_at,
                                               'completedAt', b.completed_at))
$$;

CREATE OR REPLACE FUNCTION moverz_api.create_project(jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_user text := moverz_batch_internal.api_user();
    v_id uuid;
    v_state text;
    v_msg text;
    v_hint text;
BEGIN
    PERFORM moverz_batch_internal.api_check_body($1, '{"name"}');
    IF jsonb_typeof($1 -> 'name') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'name is required and must be a string';
    END IF;
    BEGIN
        v_id := moverz_batch.create_project(v_user, $1 ->> 'name');
    EXCEPTION WHEN data_exception THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT;
        PERFORM moverz_batch_internal.api_raise(v_state, v_msg, v_hint);
    END;
    PERFORM set_config('response.status', '201', true);
    SET CONSTRAINTS ALL IMMEDIATE;   -- deferred triggers fire here, as the owner
    RETURN (SELECT jsonb_build_object('success', true,
                   'project', jsonb_build_object('id', p.id, 'name', p.name, 'createdAt', p.created_at))
              FROM moverz_batch.projects p WHERE p.id = v_id);
END
$$;

CREATE OR REPLACE FUNCTION moverz_api.list_projects(page int DEFAULT 1, "perPage" int DEFAULT 20) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_user text := moverz_batch_internal.api_user();
BEGIN
    PERFORM moverz_batch_internal.api_page(page, "perPage");
    RETURN jsonb_build_object(
        'success', true,
        'projects', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', p.id, 'name', p.name, 'createdAt', p.created_at)
                                               ORDER BY p.created_at DESC, p.id DESC), '[]')
                       FROM (SELECT * FROM moverz_batch.projects x WHERE x.user_id = v_user
                              ORDER BY x.created_at DESC, x.id DESC
                              LIMIT "perPage" OFFSET (page - 1)::bigint * "perPage") AS p),
        'page', page, 'perPage', "perPage",
        'total', (SELECT count(*) FROM moverz_batch.projects x WHERE x.user_id = v_user));
END
$$;

CREATE OR REPLACE FUNCTION moverz_api.create_batch(jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_user text := moverz_batch_internal.api_user();
    v_assets jsonb;
    v_k int;
    v_project uuid;
    v_batch uuid;
    v_state text;
    v_msg text;
    v_hint text;
    b record;
BEGIN
    PERFORM moverz_batch_internal.api_check_body($1, '{"projectId", "imageUrls", "uploads"}');
    v_project := moverz_batch_internal.api_body_uuid($1, 'projectId');
    IF jsonb_typeof($1 -> 'priority') NOT IN ('string', 'null') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'priority must be one of HIGH, NORMAL, LOW';
    END IF;
    PERFORM moverz_batch_internal.api_check_priority($1 ->> 'priority');
    v_assets := moverz_batch_internal.api_assets($1);
    BEGIN
        v_batch := moverz_batch.create_batch(v_project, v_user, v_assets,
                                             coalesce($1 ->> 'priority', 'NORMAL'),
                                             moverz_batch_internal.request_header('idempotency-key'));
    EXCEPTION WHEN data_exception OR no_data_found OR program_limit_exceeded OR unique_violation THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT;
        -- assets[k] of an upload is uploads[k - the number of imageUrls]
        v_k := substring(v_msg FROM '^assets\[([0-9]+)\]')::int
               - CASE WHEN jsonb_typeof($1 -> 'imageUrls') = 'array' THEN jsonb_array_length($1 -> 'imageUrls') ELSE 0 END;
        IF v_k >= 0 THEN
            v_msg := regexp_replace(v_msg, '^assets\[[0-9]+\]', 'uploads[' || v_k || ']');
        END IF;
        PERFORM moverz_batch_internal.api_raise(v_state, v_msg, v_hint);
    WHEN configuration_limit_exceeded THEN
        -- the daily photo quota: 429 Too Many Requests with Retry-After
        GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT, v_state = PG_EXCEPTION_DETAIL;
        PERFORM moverz_batch_internal.api_too_many(v_msg, v_hint, v_state);
    END;
    SELECT x.id, x.created_at <> now() AS replayed,
           x.count_queued + x.count_processing + x.count_completed + x.count_failed AS n
      INTO b FROM moverz_batch.batches x WHERE x.id = v_batch;
    SET CONSTRAINTS ALL IMMEDIATE;   -- deferred triggers fire here, as the owner
    PERFORM set_config('response.status', '202', true);
    PERFORM set_config('response.headers',
        (jsonb_build_array(jsonb_build_object('Location', '/api/batches/' || b.id))
        || CASE WHEN b.replayed THEN '[{"Idempotent-Replayed": "true"}]'::jsonb ELSE '[]' END)::text, true);
    RETURN jsonb_build_object('success', true, 'batchId', b.id, 'photosCount', b.n, 'jobsEnqueued', b.n);
END
$$;

CREATE OR REPLACE FUNCTION moverz_api.request_uploads(jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_user text := moverz_batch_internal.api_user();
    v_project uuid;
    v_out jsonb;
    v_state text;
    v_msg text;
    v_hint text;
BEGIN
    PERFORM moverz_batch_internal.api_check_body($1, '{"projectId", "files"}');
    v_project := moverz_batch_internal.api_body_uuid($1, 'projectId');
    BEGIN
        v_out := moverz_batch.request_uploads(v_project, v_user, $1 -> 'files');
    EXCEPTION WHEN data_exception OR no_data_found OR program_limit_exceeded THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT;
        PERFORM moverz_batch_internal.api_raise(v_state, v_msg, v_hint);
    WHEN configuration_limit_exceeded THEN
        GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT, v_state = PG_EXCEPTION_DETAIL;
        PERFORM moverz_batch_internal.api_too_many(v_msg, v_hint, v_state);
    END;
    PERFORM set_config('response.status', '201', true);
    RETURN jsonb_build_object('success', true, 'uploads', v_out);
END
$$;

CREATE OR REPLACE FUNCTION moverz_api.upload_put(bytea) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id text := moverz_batch_internal.request_header('x-upload-id');
    v_out jsonb;
    v_state text;
    v_msg text;
    v_hint text;
BEGIN
    IF v_id IS NULL OR v_id !~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = 'no such upload';
    END IF;
    BEGIN
        v_out := moverz_batch.store_upload(v_id::uuid, moverz_batch_internal.request_header('x-upload-token'), $1);
    EXCEPTION WHEN insufficient_privilege OR object_not_in_prerequisite_state OR object_in_use
                   OR program_limit_exceeded OR invalid_parameter_value OR null_value_not_allowed THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT;
        v_state := CASE v_state WHEN '42501' THEN 'PT403' WHEN '55000' THEN 'PT410' WHEN '55006' THEN 'PT409'
                                WHEN '54000' THEN 'PT413' WHEN '22023' THEN 'PT415' ELSE v_state END;
        RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_msg, HINT = coalesce(v_hint, '');
    END;
    RETURN jsonb_build_object('success', true) || v_out;
END
$$;

CREATE OR REPLACE FUNCTION moverz_api.get_batch(id uuid, "photosLimit" int DEFAULT NULL, "photosOffset" int DEFAULT 0)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_state text;
    v_msg text;
    v_hint text;
BEGIN
    PERFORM moverz_batch_internal.api_owned_batch(get_batch.id, moverz_batch_internal.api_user());
    BEGIN
        RETURN jsonb_build_object('success', true,
                                  'batch', moverz_batch.batch_progress(get_batch.id, "photosLimit", "photosOffset"));
    EXCEPTION WHEN data_exception THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT;
        PERFORM moverz_batch_internal.api_raise(v_state, v_msg, v_hint);
    END;
END
$$;

CREATE OR REPLACE FUNCTION moverz_api.list_batches("projectId" uuid DEFAULT NULL, page int DEFAULT 1, "perPage" int DEFAULT 20)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_user text := moverz_batch_internal.api_user();
BEGIN
    PERFORM moverz_batch_internal.api_page(page, "perPage");
    RETURN jsonb_build_object(
        'success', true,
        'batches', (SELECT coalesce(jsonb_agg(moverz_batch_internal.batch_summary(s.b)
                                              ORDER BY (s.b).created_at DESC, (s.b).id DESC), '[]')
                      FROM (SELECT x AS b FROM moverz_batch.batches x
                             WHERE x.user_id = v_user AND ("projectId" IS NULL OR x.project_id = "projectId")
                             ORDER BY x.created_at DESC, x.id DESC
                             LIMIT "perPage" OFFSET (page - 1)::bigint * "perPage") AS s),
        'page', page, 'perPage', "perPage",
        'total', (SELECT count(*) FROM moverz_batch.batches x
                   WHERE x.user_id = v_user AND ("projectId" IS NULL OR x.project_id = "projectId")));
END
$$;

CREATE OR REPLACE FUNCTION moverz_api.retry_batch(id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_n int;
BEGIN
    PERFORM moverz_batch_internal.api_owned_batch(retry_batch.id, moverz_batch_internal.api_user());
    v_n := moverz_batch.retry_batch(retry_batch.id);
    SET CONSTRAINTS ALL IMMEDIATE;   -- deferred triggers fire here, as the owner
    PERFORM set_config('response.status', CASE WHEN v_n > 0 THEN '202' ELSE '200' END, true);
    RETURN jsonb_build_object('success', true, 'batchId', retry_batch.id, 'photosRequeued', v_n);
END
$$;

CREATE OR REPLACE FUNCTION moverz_api.cancel_batch(id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_n int;
    v_msg text;
BEGIN
    PERFORM moverz_batch_internal.api_owned_batch(cancel_batch.id, moverz_batch_internal.api_user());
    BEGIN
        v_n := moverz_batch.cancel_batch(cancel_batch.id);
    EXCEPTION WHEN object_not_in_prerequisite_state THEN
        GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
        RAISE EXCEPTION USING ERRCODE = 'PT409', MESSAGE = v_msg;
    END;
    SET CONSTRAINTS ALL IMMEDIATE;   -- deferred triggers fire here, as the owner
    RETURN jsonb_build_object('success', true, 'batchId', cancel_batch.id, 'photosCancelled', v_n);
END
$$;

CREATE OR REPLACE FUNCTION moverz_api.stream_auth(id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_state jsonb;
BEGIN
    PERFORM moverz_batch_internal.api_owned_batch(stream_auth.id, moverz_batch_internal.api_user());
    v_state := moverz_batch.progress_payload(stream_auth.id)::jsonb;
    IF (v_state ->> 'inventoryReady')::boolean
       AND moverz_batch_internal.is_terminal((v_state ->> 'status')::moverz_batch.batch_status) THEN
        RAISE EXCEPTION USING ERRCODE = 'PT410',
            MESSAGE = format('batch %s has finished: its stream has ended', stream_auth.id),
            DETAIL = v_state::text,
            HINT = format('GET /api/batches/%s returns its final state.', stream_auth.id);
    END IF;
    RETURN v_state;
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.admin_check_limit(p_limit int) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 500 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('maxRows must be between 1 and 500 (got %s)', coalesce(p_limit::text, 'NULL'));
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION moverz_api.admin_overview() RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
SELECT jsonb_build_object(
    'queue', (SELECT jsonb_build_object('pending', q.pending, 'waitingRetry', q.waiting_retry,
                                        'inFlight', q.in_flight, 'done', q.done, 'failed', q.failed,
                                        'cancelled', q.cancelled,
                                        'oldestPendingAgeSeconds', round(extract(epoch FROM q.oldest_pending_age)),
                                        'paused', q.paused, 'aiUnreachableSince', q.ai_unreachable_since,
                                        'aiProbes', q.ai_probes)
                FROM moverz_batch.queue_overview q),
    'throughput', (SELECT jsonb_agg(jsonb_build_object('minute', m.minute, 'photos', coalesce(c.n, 0))
                                    ORDER BY m.minute)
                     FROM generate_series(date_trunc('minute', now()) - interval '29 minutes',
                                          date_trunc('minute', now()), interval '1 minute') AS m(minute)
                     LEFT JOIN (SELECT date_trunc('minute', a.created_at) AS minute,
                                       count(*) FILTER (WHERE a.success) AS n
                                  FROM moverz_batch.ai_metrics a
                                 WHERE a.created_at >= date_trunc('minute', now()) - interval '29 minutes'
                                 GROUP BY 1) AS c ON c.minute = m.minute))
$$;

CREATE OR REPLACE FUNCTION moverz_api.admin_batches(status text DEFAULT NULL, "userId" text DEFAULT NULL,
                                         "maxAgeHours" int DEFAULT NULL, "maxRows" int DEFAULT 50)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM moverz_batch_internal.admin_check_limit("maxRows");
    IF admin_batches.status IS NOT NULL
       AND admin_batches.status NOT IN (SELECT unnest(enum_range(NULL::moverz_batch.batch_status))::text) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('status must be one of %s (got %s)',
                             array_to_string(enum_range(NULL::moverz_batch.batch_status), ', '),
                             moverz_batch_internal.echo_value(admin_batches.status));
    END IF;
    IF "maxAgeHours" IS NOT NULL AND "maxAgeHours" < 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('maxAgeHours must be at least 1 (got %s)', "maxAgeHours");
    END IF;
    RETURN jsonb_build_object('batches', coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'batchId', o.batch_id, 'userId', o.user_id, 'projectId', o.project_id, 'status', o.status,
                   'priority', o.priority, 'queued', o.queued, 'processing', o.processing,
                   'completed', o.completed, 'failed', o.failed, 'cancelled', o.cancelled, 'total', o.total,
                   'progress', o.progress, 'totalItems', o.total_items, 'totalVolume', o.total_volume,
                   'createdAt', o.created_at, 'completedAt', o.completed_at,
                   'calls', coalesce(m.calls, 0), 'costUsd', coalesce(m.total_cost_usd, 0))
                   ORDER BY o.created_at DESC)
          FROM (SELECT * FROM moverz_batch.batches_overview x
                 WHERE (admin_batches.status IS NULL OR x.status::text = admin_batches.status)
                   AND ("userId" IS NULL OR x.user_id = "userId")
                   AND ("maxAgeHours" IS NULL OR x.created_at > now() - make_interval(hours => "maxAgeHours"))
                 ORDER BY x.created_at DESC
                 LIMIT "maxRows") AS o
          LEFT JOIN moverz_batch.batch_ai_metrics m ON m.batch_id = o.batch_id), '[]'));
END
$$;

CREATE OR REPLACE FUNCTION moverz_api.admin_batch_photos(id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM 1 FROM moverz_batch.batches b WHERE b.id = admin_batch_photos.id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = 'batch not found';
    END IF;
    RETURN jsonb_build_object('batchId', admin_batch_photos.id, 'photos', coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'id', p.id, 'position', p.position, 'filename', p.filename, 'url', p.url,
                   'status', p.status, 'roomType', p.room_type, 'attempts', p.attempts,
                   'errorCode', p.error_code, 'errorMessage', p.error_message,
                   'duplicateOf', p.duplicate_of, 'finishedAt', p.finished_at) ORDER BY p.position)
          FROM moverz_batch.photos p WHERE p.batch_id = admin_batch_photos.id), '[]'));
END
$$;

CREATE OR REPLACE FUNCTION moverz_api.admin_failed_photos("maxRows" int DEFAULT 50) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM moverz_batch_internal.admin_check_limit("maxRows");
    RETURN jsonb_build_object('photos', coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'photoId', f.photo_id, 'batchId', f.batch_id, 'userId', f.user_id,
                   'filename', f.filename, 'url', f.url, 'errorCode', f.error_code,
                   'errorMessage', f.error_message, 'attempts', f.attempts, 'finishedAt', f.finished_at)
                   ORDER BY f.finished_at DESC)
          FROM (SELECT * FROM moverz_batch.failed_photos LIMIT "maxRows") AS f), '[]'));
END
$$;

CREATE OR REPLACE FUNCTION moverz_batch_internal.admin_act(p_action text, p_id uuid) RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_state text;
    v_msg text;
BEGIN
    IF p_action = 'retry_photo' THEN
        RETURN moverz_batch.retry_photo(p_id);
    END IF;
    RETURN moverz_batch.cancel_batch(p_id);
EXCEPTION WHEN no_data_found OR object_not_in_prerequisite_state THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
    PERFORM moverz_batch_internal.api_raise(CASE v_state WHEN '55000' THEN 'PT409' ELSE v_state END, v_msg, NULL);
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION moverz_api.admin_retry_photo("photoId" uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_n int := moverz_batch_internal.admin_act('retry_photo', "photoId");
BEGIN
    SET CONSTRAINTS ALL IMMEDIATE;   -- deferred triggers fire here, as the owner
    RETURN jsonb_build_object('photosRequeued', v_n);
END
$$;

CREATE OR REPLACE FUNCTION moverz_api.admin_cancel_batch("batchId" uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_n int := moverz_batch_internal.admin_act('cancel_batch', "batchId");
BEGIN
    SET CONSTRAINTS ALL IMMEDIATE;
    RETURN jsonb_build_object('photosCancelled', v_n);
END
$$;

CREATE OR REPLACE FUNCTION moverz_api.admin_pause() RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
SELECT jsonb_build_object('paused', moverz_batch.pause_processing())
$$;

CREATE OR REPLACE FUNCTION moverz_api.admin_resume() RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
SELECT jsonb_build_object('paused', NOT moverz_batch.resume_processing())
$$;

CREATE OR REPLACE FUNCTION moverz_api.admin_workers() RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
SELECT jsonb_build_object('workers', coalesce(jsonb_agg(jsonb_build_object(
           'kind', w.kind, 'worker', w.worker, 'pid', w.pid, 'inflight', w.inflight, 'done', w.done,
           'failed', w.failed, 'lastError', w.last_error, 'lastErrorAt', w.last_error_at, 'since', w.since)
           ORDER BY w.kind, w.worker), '[]'))
  FROM moverz_batch.worker_status w
$$;

CREATE OR REPLACE FUNCTION moverz_api.admin_costs() RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
SELECT jsonb_build_object(
    'perDay', (SELECT coalesce(jsonb_agg(jsonb_build_object('day', d.day, 'calls', d.calls, 'costUsd', d.cost)
                                         ORDER BY d.day DESC), '[]')
                 FROM (SELECT date_trunc('day', a.created_at)::date AS day, count(*) AS calls,
                              coalesce(sum(a.cost_usd), 0) AS cost
                         FROM moverz_batch.ai_metrics a
                        WHERE a.created_at >= date_trunc('day', now()) - interval '29 days'
                        GROUP BY 1) AS d),
    'perBatch', (SELECT coalesce(jsonb_agg(jsonb_build_object('batchId', m.batch_id, 'calls', m.calls,
                                                              'costUsd', m.total_cost_usd,
                                                              'avgLatencyMs', m.avg_latency_ms)
                                           ORDER BY b.created_at DESC), '[]')
                   FROM (SELECT x.id, x.created_at FROM moverz_batch.batches x
                          WHERE EXISTS (SELECT 1 FROM moverz_batch.ai_metrics a WHERE a.meta ->> 'batchId' = x.id::text)
                          ORDER BY x.created_at DESC LIMIT 50) AS b
                   JOIN moverz_batch.batch_ai_metrics m ON m.batch_id = b.id))
$$;
-- The new functions' and table's privileges, and its row-level security
-- (as 70_http_api.sql gives them in a fresh install).
REVOKE ALL ON FUNCTION request_uploads(uuid, text, jsonb), store_upload(uuid, text, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION request_uploads(uuid, text, jsonb), store_upload(uuid, text, bytea) TO moverz_app;
REVOKE ALL ON FUNCTION moverz_api.request_uploads(jsonb), moverz_api.upload_put(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION moverz_api.request_uploads(jsonb), moverz_api.upload_put(bytea) TO moverz_user, moverz_anon;
GRANT SELECT ON uploads TO moverz_user, moverz_app;
ALTER TABLE uploads ENABLE ROW LEVEL SECURITY;
CREATE POLICY uploads_own_rows ON uploads TO moverz_user
    USING (user_id = (SELECT moverz_batch_internal.jwt_user_id()))
    WITH CHECK (user_id = (SELECT moverz_batch_internal.jwt_user_id()));
CREATE POLICY uploads_trusted_app ON uploads TO moverz_app USING (true) WITH CHECK (true);
CREATE TRIGGER uploads_objects AFTER DELETE ON uploads
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION moverz_batch_internal.uploads_objects_trigger();


-- Privileges: the internals had EXECUTE for moverz_app (the SQL API ran as
-- its caller); now PUBLIC, moverz_app and moverz_user execute none of them
-- but jwt_user_id, which the row-level security policies call as
-- moverz_user.  Grants an administrator made to other roles are kept.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA moverz_batch_internal FROM PUBLIC, moverz_app, moverz_user;
GRANT EXECUTE ON FUNCTION moverz_batch_internal.jwt_user_id() TO moverz_user;

-- Comments, as 0.7.0 has them.
COMMENT ON SCHEMA moverz_api IS 'moverz_batch: the HTTP API (PostgREST db-schemas); functions only';
COMMENT ON SCHEMA moverz_batch IS
    'moverz_batch: batches of AI photo analyses for a moving company: the SQL API, its tables and views, and the functions of the background workers.';
COMMENT ON SCHEMA moverz_batch_internal IS
    'Internal: what only the extension calls (the workers'' claim and write-back, the triggers'' helpers, the HTTP API''s helpers); no role but its owner may use it (since 0.7.0).';
COMMENT ON TYPE moverz_batch.batch_status IS
    'Status of a batch: QUEUED (all pending), PROCESSING, PARTIAL (some DONE, some ERROR), COMPLETED (all DONE), FAILED (all ERROR), or CANCELLED by cancel_batch.';
COMMENT ON TYPE moverz_batch.photo_status IS
    'Status of one photo: PENDING (waiting, maybe for a retry), PROCESSING (claimed by a worker), DONE (analysed), ERROR (given up) or CANCELLED (its batch was cancelled).';
COMMENT ON TYPE moverz_batch.batch_priority IS
    'Priority of a batch and of its photos: HIGH, NORMAL or LOW. Claims take the highest priority first.';
COMMENT ON DOMAIN moverz_batch.error_code IS
    'Error code of a photo in ERROR: TIMEOUT, RATE_LIMIT, NETWORK_ERROR or AI_ERROR.';
COMMENT ON TYPE moverz_batch_internal.status_delta IS
    'Internal: a change of one batch''s photo counts, per status; built by the photos trigger and added by apply_batch_delta.';
COMMENT ON FUNCTION moverz_batch_internal.wake_photo_workers() IS
    'Internal: wakes the photo workers when the calling transaction commits (nothing without workers); called by create_batch, retry_batch, retry_photo, cancel_batch and resume_processing.';
COMMENT ON FUNCTION moverz_batch_internal.wake_inventory_worker() IS
    'Internal: wakes the inventory worker when the calling transaction commits; called by apply_batch_delta when it enqueues an inventory sync.';
COMMENT ON FUNCTION moverz_batch_internal.recall_claimed_photos() IS
    'Internal: when the calling transaction commits, the photo workers hand back the photos they claimed ahead and have not sent yet; called by cancel_batch, pause_processing and a HIGH priority create_batch.';
COMMENT ON TABLE moverz_batch.room_types IS
    'The accepted room types (a photo''s roomType, the room_type the AI answers), with their descriptions. An installation may add its own.';
COMMENT ON TABLE moverz_batch.projects IS
    'Projects of the users (e.g. one move); every batch belongs to one. Created by create_project.';
COMMENT ON TABLE moverz_batch.batches IS
    'Batches of photos created by create_batch: user, project, priority, idempotency key, and the status and per-status photo counts that the photos triggers keep exact.';
COMMENT ON COLUMN moverz_batch.batches.inventory_queued IS
    'Whether the inventory sync of the current generation has been enqueued (once, in the transaction that finishes the batch).';
COMMENT ON COLUMN moverz_batch.batches.inventory_generation IS
    'Grows each time retry_batch or retry_photo re-opens the batch: one inventory sync per generation.';
COMMENT ON COLUMN moverz_batch.batches.request_hash IS
    'Hash of the create_batch payload, to tell a repeated idempotency_key with the same payload from one with another payload.';
COMMENT ON TABLE moverz_batch.photos IS
    'One row per photo of a batch: its URL, status, attempts, the claim of a worker, and its AI analysis or error. The photo workers use it as their queue.';
COMMENT ON COLUMN moverz_batch.photos.position IS
    'Place of the photo in the assets of create_batch (the order of the photos in batch_progress).';
COMMENT ON COLUMN moverz_batch.photos.checksum IS
    'md5(filename || '':'' || url) for a photo given by URL, the SHA-256 of its bytes for an uploaded one: photos of a project with the same checksum are duplicates.';
COMMENT ON COLUMN moverz_batch.photos.url IS
    'The image''s URL, which the AI service fetches; NULL for an uploaded photo (upload_id).';
COMMENT ON COLUMN moverz_batch.photos.upload_id IS
    'The upload (moverz_batch.uploads) whose bytes are sent inline to the AI service; NULL for a photo given by URL (since 0.7.0).';
COMMENT ON COLUMN moverz_batch.photos.duplicate_of IS
    'The photo whose analysis this duplicate takes (duplicateOf in batch_progress); a duplicate is never sent to the AI. NULL for an original.';
COMMENT ON COLUMN moverz_batch.photos.next_attempt_at IS
    'When the photo may be claimed (again): the retry backoff.';
COMMENT ON COLUMN moverz_batch.photos.claimed_by IS
    'The slot of the photo worker that holds the claim.';
COMMENT ON COLUMN moverz_batch.photos.claim_token IS
    'The incarnation of the worker that holds the claim: a late answer of an earlier incarnation changes nothing.';
COMMENT ON COLUMN moverz_batch.photos.lease_until IS
    'Last-resort expiry of the claim (moverz_batch.lease_timeout).';
COMMENT ON COLUMN moverz_batch.photos.analysis IS
    'The AI analysis of a DONE photo: {room_type, items [{label, quantity, volume_m3}]}.';
COMMENT ON TABLE moverz_batch.uploads IS
    'Photo files uploaded directly (since 0.7.0): one row per file of request_uploads, with the SHA-256 of its one-time URL token; uploaded_at and checksum (SHA-256 of the bytes) once store_upload took them; photo_id once create_batch made it a photo. Deleted with its photo, or when its URL expired unused.';
COMMENT ON TABLE moverz_batch_internal.upload_bytes IS
    'Internal: the bytes of the uploads of the database store, read by the photo workers'' claim; deleted with their upload.';
COMMENT ON TABLE moverz_batch.inventory_sync_jobs IS
    'Queue of inventory syncs, run by the inventory worker: one job per batch and generation, enqueued when the batch finishes.';
COMMENT ON COLUMN moverz_batch.inventory_sync_jobs.generation IS
    'The batch''s inventory_generation this job syncs; the job is SUPERSEDED when the batch was re-opened since.';
COMMENT ON TABLE moverz_batch.inventory_summaries IS
    'The synced inventory of each finished batch (totalItems, totalVolume, per room), shown by batch_progress as inventorySummary.';
COMMENT ON TABLE moverz_batch.inventory_items IS
    'One row per item of every DONE photo that is not a duplicate, kept current by the photos triggers as photos finish.';
COMMENT ON COLUMN moverz_batch.inventory_items.unit_volume_m3 IS
    'Volume of one unit in m3: the item counts for quantity x unit_volume_m3.';
COMMENT ON TABLE moverz_batch.inventory_rooms IS
    'Per-room totals (items, volume) of each batch, kept current by the photos triggers; the inventory summaries are built from them.';
COMMENT ON COLUMN moverz_batch.inventory_rooms.item_rows IS
    'Number of item rows counted in the room; a room with none is left out of the summaries.';
COMMENT ON TABLE moverz_batch.control IS
    'The processing switch, one row: whether claiming is paused (pause_processing, resume_processing). It survives restarts.';
COMMENT ON COLUMN moverz_batch.control.only_row IS
    'Always true: keeps the table to one row.';
COMMENT ON TABLE moverz_batch.ai_metrics IS
    'One row per AI call: provider, model, latency, success, tokens and cost. Deleted by purge.';
COMMENT ON COLUMN moverz_batch.ai_metrics.meta IS
    'What the call was for and how it went: photoId, userId, batchId, attempt, errorCode, httpStatus, model, promptVersion, outage.';
COMMENT ON FUNCTION moverz_batch.analysis_error(jsonb) IS
    'Why an AI analysis is not of the contract''s shape (items an array of objects with a label, an integer quantity and a volume_m3), or NULL when it is. SQL-callable C; checks photos.analysis.';
COMMENT ON FUNCTION moverz_batch_internal.echo_value(text) IS
    'Internal: a rejected value as an error message quotes it, 64 characters at most; called by create_batch, check_photo_quota and moverz_api.admin_batches.';
COMMENT ON FUNCTION moverz_batch_internal.raise_not_found(text, uuid, text) IS
    'Internal: raises the error for an id that names nothing (SQLSTATE P0002, a 404 in the HTTP API); called by batch_progress, retry_photo, cancel_batch, sync_inventory, project_inventory and reopen_photos.';
COMMENT ON FUNCTION moverz_batch_internal.derive_status(integer, integer, integer, integer, integer) IS
    'Internal: the status of a batch from its photo counts (queued, processing, completed, failed, cancelled), by the status rules; called by apply_batch_delta.';
COMMENT ON FUNCTION moverz_batch_internal.is_terminal(moverz_batch.batch_status) IS
    'Internal: whether a batch status is final (PARTIAL, COMPLETED, FAILED, CANCELLED); called by apply_batch_delta and purge.';
COMMENT ON FUNCTION moverz_batch_internal.status_delta_of(moverz_batch.photo_status, moverz_batch.photo_status) IS
    'Internal: what one photo leaving one status and entering another changes in its batch''s counts; called by photos_counts_trigger.';
COMMENT ON FUNCTION moverz_batch_internal.apply_batch_delta(uuid, moverz_batch_internal.status_delta) IS
    'Internal: adds a count delta to one batch, derives its status and, in the transaction that finishes it, enqueues exactly one inventory sync; called by photos_counts_trigger.';
COMMENT ON FUNCTION moverz_batch_internal.counts_items(moverz_batch.photo_status, uuid, jsonb) IS
    'Internal: whether a photo counts in inventories (DONE, not a duplicate, with an analysis); called by photos_counts_trigger.';
COMMENT ON FUNCTION moverz_batch_internal.photos_counts_trigger() IS
    'Internal: trigger function of photos (statement-level, on INSERT, UPDATE and DELETE): keeps the counters and status of the batches, the inventory items and the per-room totals exact.';
COMMENT ON FUNCTION moverz_batch_internal.batches_photos_trigger() IS
    'Internal: trigger function of batches (after DELETE and TRUNCATE): the photos of the batches go with them.';
COMMENT ON FUNCTION moverz_batch_internal.projects_lock_photos() IS
    'Internal: trigger function of projects (before DELETE): locks the project''s photos first, so that deleting a project does not deadlock with a write-back.';
COMMENT ON FUNCTION moverz_batch_internal.check_user_id(text) IS
    'Internal: refuses an empty user_id or one over 255 bytes; called by create_project and create_batch.';
COMMENT ON FUNCTION moverz_batch.create_project(text, text) IS
    'Creates a project owned by user_id, with a name, and returns its id.';
COMMENT ON FUNCTION moverz_batch_internal.check_assets(jsonb) IS
    'Internal: raises the first broken input rule of create_batch''s assets (the array, each element, its url, filename and roomType); SQL-callable C, called by create_batch.';
COMMENT ON FUNCTION moverz_batch_internal.asset_rows(jsonb) IS
    'Internal: one row per element of checked assets, with its new photo id, position, checksum and the id of an earlier element with the same checksum; SQL-callable C, called by insert_photos.';
COMMENT ON FUNCTION moverz_batch_internal.owned_project(uuid, text) IS
    'Internal: the project if it exists and belongs to the user, else the same error (P0002) for an unknown project and another user''s; called by create_batch.';
COMMENT ON FUNCTION moverz_batch_internal.insert_photos(uuid, uuid, text, moverz_batch.batch_priority, jsonb) IS
    'Internal: inserts one photo per asset; a duplicate of a photo already DONE in the project takes its analysis at once, one of an earlier photo waits for it; called by create_batch.';
COMMENT ON FUNCTION moverz_batch_internal.wait_for_copies_in_flight(uuid, uuid) IS
    'Internal: new photos of a batch that match a photo still waiting or in flight in another open batch of the project wait for it instead of being sent (since 0.6.0); called by insert_photos.';
COMMENT ON FUNCTION moverz_batch_internal.check_photo_quota(text, integer) IS
    'Internal: enforces moverz_batch.max_photos_per_user_per_day (SQLSTATE 53400, retry_after_s in the DETAIL); called by create_batch.';
COMMENT ON FUNCTION moverz_batch.create_batch(uuid, text, jsonb, text, text) IS
    'Creates a batch (QUEUED) and one PENDING photo per asset in one transaction, and returns its id. The same idempotency_key from the same user returns the existing batch; the photo workers are woken at commit.';
COMMENT ON FUNCTION moverz_batch.batch_state(moverz_batch.batches) IS
    'The compact state of a batch row, {batchId, status, progress, counts}, as batch_progress, progress_payload and the view batches_overview show it: SELECT moverz_batch.batch_state(b) FROM moverz_batch.batches b.';
COMMENT ON FUNCTION moverz_batch_internal.progress_document(jsonb, uuid, bigint, bigint, jsonb) IS
    'Internal: the document of batch_progress from a batch''s state, one page of its photos and its inventory summary; SQL-callable C, called by batch_progress.';
COMMENT ON FUNCTION moverz_batch.batch_progress(uuid, integer, integer) IS
    'The progress of a batch, the seed''s batch object: status, progress, counts, its photos (paged by photos_limit and photos_offset) and inventorySummary once its inventory exists. Read-only.';
COMMENT ON FUNCTION moverz_batch.progress_percent(integer, integer) IS
    'The share of finished photos in percent, 0 to 100, rounded, and 100 only when every photo is finished (finished, total); the progress of batch_state.';
COMMENT ON FUNCTION moverz_batch_internal.reopen_photos(uuid, uuid) IS
    'Internal: sends the ERROR photos of a batch (all, or one and its duplicates) back to PENDING and re-opens the batch for one new inventory sync; called by retry_batch and retry_photo.';
COMMENT ON FUNCTION moverz_batch.retry_batch(uuid) IS
    'Sends the ERROR photos of a batch back to PENDING (DONE ones untouched) and re-opens it; exactly one new inventory sync runs once it finishes again. Returns the number of photos sent back.';
COMMENT ON FUNCTION moverz_batch.retry_photo(uuid) IS
    'Sends one ERROR photo (and its duplicates) back to PENDING and re-opens its batch. Returns the number of photos sent back.';
COMMENT ON FUNCTION moverz_batch.cancel_batch(uuid) IS
    'Cancels a batch: its pending photos are never sent and those in flight are cancelled too; it ends CANCELLED and the inventory of its DONE photos is synced once. Returns the number of photos cancelled (SQLSTATE 55000 for a finished batch).';
COMMENT ON FUNCTION moverz_batch_internal.image_type(bytea) IS
    'Internal: the image type of bytes from their magic numbers (image/jpeg, image/png, image/gif, image/webp), or NULL; called by store_upload.';
COMMENT ON FUNCTION moverz_batch_internal.upload_setting(text, text) IS
    'Internal: a moverz_batch setting as the server has it, or a default; called by request_uploads.';
COMMENT ON FUNCTION moverz_batch_internal.check_upload_file(jsonb, integer, bigint) IS
    'Internal: raises the first broken rule of one element of request_uploads'' files (filename, contentType, size), naming it; called by request_uploads.';
COMMENT ON FUNCTION moverz_batch.request_uploads(uuid, text, jsonb) IS
    'For files [{filename, contentType, size}] of a project of the user: one signed single-use upload URL each, [{uploadId, filename, method PUT, url, headers, expiresAt}], valid moverz_batch.upload_url_ttl.';
COMMENT ON FUNCTION moverz_batch.store_upload(uuid, text, bytea) IS
    'Takes the bytes of an upload, authorised by its URL''s token, once, before the URL expires; they must be an image of the announced type and size. Returns {uploadId, size, sha256}.';
COMMENT ON FUNCTION moverz_batch_internal.check_uploads(uuid, text, jsonb) IS
    'Internal: the uploadId elements of create_batch''s assets name uploads of the user and project, completed, not expired, not used; locks them; called by insert_photos.';
COMMENT ON FUNCTION moverz_batch_internal.s3_presign(text, text, integer, timestamp with time zone) IS
    'Internal: a presigned URL (AWS SigV4) of the s3 store for a method on an object key, valid expires_s seconds from at; SQL-callable C, called by request_uploads.';
COMMENT ON FUNCTION moverz_batch_internal.upload_object_key(uuid, uuid) IS
    'Internal: the key of an upload''s object in the s3 store, uploads/<project>/<upload>; called by request_uploads, claim_photos and uploads_objects_trigger.';
COMMENT ON FUNCTION moverz_batch_internal.settle_downloads(bigint, integer, jsonb) IS
    'Internal: photos of s3 uploads whose files a worker downloaded take their SHA-256 and, before any AI call, the analysis of a DONE photo with the same bytes (done), or wait for one in flight (wait), or are sent (send); called by the photo workers.';
COMMENT ON FUNCTION moverz_batch_internal.uploads_objects_trigger() IS
    'Internal: trigger function of uploads (after DELETE): the objects of the s3 uploads deleted are queued in object_deletions.';
COMMENT ON FUNCTION moverz_batch_internal.claim_object_deletions(integer) IS
    'Internal: up to p_limit objects of the s3 store whose deletion is due, leased for a minute; called by the photo workers.';
COMMENT ON FUNCTION moverz_batch_internal.finish_object_deletions(text[], jsonb) IS
    'Internal: objects deleted leave the queue, failed deletions are tried again later; called by the photo workers.';
COMMENT ON TABLE moverz_batch_internal.object_deletions IS
    'Internal: objects of the s3 store to delete (their upload was deleted), drained by the photo workers.';
COMMENT ON FUNCTION moverz_batch_internal.expire_uploads() IS
    'Internal: deletes the uploads never attached to a batch whose URL expired, with their bytes; called by the inventory worker and by purge.';
COMMENT ON FUNCTION moverz_batch_internal.photo_items(uuid[]) IS
    'Internal: one row per item of the analyses of the given photos, with its room; called by apply_inventory_delta.';
COMMENT ON FUNCTION moverz_batch_internal.apply_inventory_delta(uuid[], uuid[]) IS
    'Internal: the items of the photos that stop counting go, those of the photos that start counting come, and the per-room totals of their batches follow; called by photos_counts_trigger.';
COMMENT ON FUNCTION moverz_batch_internal.inventory_summary(uuid, uuid) IS
    'Internal: the inventorySummary {totalItems, totalVolume, rooms} of a batch, or of a whole project when the batch is NULL; called by sync_inventory and project_inventory.';
COMMENT ON FUNCTION moverz_batch.sync_inventory(uuid) IS
    '(Re)builds a batch''s inventory from its per-room totals, stores it for batch_progress and returns it. Re-running replaces; it never adds twice.';
COMMENT ON FUNCTION moverz_batch.project_inventory(uuid) IS
    'The inventory of a whole project (totalItems, totalVolume, per room), from all its DONE photos.';
COMMENT ON FUNCTION moverz_batch_internal.run_inventory_job(bigint) IS
    'Internal: runs one inventory-sync job, syncing its batch unless a retry re-opened it since (SUPERSEDED), and returns the job''s final status; called by run_next_inventory_job.';
COMMENT ON TABLE moverz_batch.model_prices IS
    'Prices in USD per million input and output tokens, per model, set by the operator; ai_metrics.cost_usd is computed from them.';
COMMENT ON COLUMN moverz_batch.model_prices.model IS
    'A model name or the start of one: an entry prices every model whose name it starts, the longest wins.';
COMMENT ON FUNCTION moverz_batch_internal.ai_cost_usd(text, integer, integer) IS
    'Internal: the cost in USD of one AI call from model_prices and its token counts, NULL when the model has no price; called by complete_photos.';
COMMENT ON FUNCTION moverz_batch.ai_prompt_version() IS
    'The version of the built-in system prompt, recorded in ai_metrics.meta as promptVersion.';
COMMENT ON FUNCTION moverz_batch_internal.ai_room_type_list() IS
    'Internal: the accepted room types with their descriptions, as the system prompt lists them; called by ai_system_prompt.';
COMMENT ON FUNCTION moverz_batch.ai_system_prompt() IS
    'The system prompt sent with every photo to a model API: the setting moverz_batch.ai_system_prompt when set, else the built-in one, with the accepted room types filled in.';
COMMENT ON FUNCTION moverz_batch.ai_analysis_schema() IS
    'The JSON schema of the model''s answer: {room_type: one of room_types, items: [{label, quantity, volume_m3}]}, every property required.';
COMMENT ON FUNCTION moverz_batch_internal.ai_request_config() IS
    'Internal: the prompt version, the system prompt and the answer schema; read by the photo workers when they start and at each reload.';
COMMENT ON FUNCTION moverz_batch_internal.claim_photos(integer, bigint, integer, integer, integer, bigint, boolean) IS
    'Internal: claims up to p_limit PENDING photos whose next attempt time has come, highest priority first and users taking turns, and marks them PROCESSING with a lease; called by the photo workers.';
COMMENT ON FUNCTION moverz_batch.classify_result(text, integer, text, text, jsonb, text) IS
    'The AI contract of a provider applied to one answer: success or error code, message, whether it is retried, and the analysis, model and token counts. SQL-callable C; complete_photos applies it to every answer.';
COMMENT ON FUNCTION moverz_batch_internal.retry_delay_ms(integer, integer, integer) IS
    'Internal: the delay in ms before the next attempt (retry_backoff, x4 per attempt, +-25 % jitter, never before Retry-After); called by complete_photos.';
COMMENT ON FUNCTION moverz_batch_internal.settle_duplicates(uuid[]) IS
    'Internal: the duplicates waiting for the given photos, now DONE or ERROR, take their outcome; called by complete_photos, release_claims and wait_for_copies_in_flight.';
COMMENT ON FUNCTION moverz_batch_internal.complete_photos(bigint, jsonb, integer, integer, text) IS
    'Internal: writes back the results of finished AI requests (DONE, retry or ERROR, and one ai_metrics row per call) and returns the photos DONE and how long a RATE_LIMIT holds the pool; called by the photo workers.';
COMMENT ON FUNCTION moverz_batch_internal.release_claims(integer, bigint, integer, integer) IS
    'Internal: crash recovery: photos claimed by an earlier incarnation of a worker, by a worker slot that no longer exists, or whose lease expired, go back to PENDING (ERROR after the last attempt); called by the photo workers.';
COMMENT ON FUNCTION moverz_batch_internal.unclaim_photos(bigint, uuid[]) IS
    'Internal: photos a worker claimed ahead and never sent go back to PENDING, the attempt not counted; called by the photo workers.';
COMMENT ON FUNCTION moverz_batch_internal.run_next_inventory_job() IS
    'Internal: claims and runs the oldest due inventory-sync job; a failure is recorded on the job, which is retried later. Called by the inventory worker.';
COMMENT ON FUNCTION moverz_batch_internal.next_inventory_due_ms() IS
    'Internal: milliseconds until the next inventory-sync job is due, NULL when none is pending; called by the inventory worker.';
COMMENT ON FUNCTION moverz_batch.progress_payload(uuid) IS
    'The compact state of a batch, {batchId, status, progress, counts, inventoryReady} (and waitingForAiServiceSince while the AI service is down), to read on each progress notification; NULL for a batch the caller may not see.';
COMMENT ON FUNCTION moverz_batch_internal.publish_after_commit(uuid, text, boolean) IS
    'Internal: queues a batch''s state for the progress publisher (Nchan) when the transaction commits, never if it aborts, nothing when publish_url is empty; called by notify_progress.';
COMMENT ON FUNCTION moverz_batch.publish_status() IS
    'The progress publisher''s figures: events waiting, delivered to Nchan, dropped, failed, the last failure, and whether it runs.';
COMMENT ON FUNCTION moverz_batch_internal.notify_progress(uuid) IS
    'Internal: sends one NOTIFY on channel moverz_batch_progress for a batch, at most once per transaction, and queues the same change for Nchan; called by notify_batch_trigger and notify_inventory_trigger.';
COMMENT ON FUNCTION moverz_batch_internal.notify_batch_trigger() IS
    'Internal: trigger function of batches (deferred, at commit): notifies the progress of the batch.';
COMMENT ON FUNCTION moverz_batch_internal.notify_inventory_trigger() IS
    'Internal: trigger function of inventory_summaries (deferred, at commit): notifies that the batch''s inventory is ready.';
COMMENT ON FUNCTION moverz_batch_internal.worker_status_raw() IS
    'Internal: the running workers as shared memory knows them; read by the view worker_status.';
COMMENT ON VIEW moverz_batch.worker_status IS
    'One row per running worker (photo, inventory, publisher): worker, pid, requests in flight, done, failed, last error, since.';
COMMENT ON FUNCTION moverz_batch.ai_service_status() IS
    'The circuit of the AI service: since when it is unreachable (NULL: it answers), the probes sent since, failures in a row, whether the work is held, the last error.';
COMMENT ON VIEW moverz_batch.queue_overview IS
    'One row: photos pending (due), waiting for retry, in flight, done, failed and cancelled, the oldest pending age, whether processing is paused, and since when the AI service is unreachable.';
COMMENT ON VIEW moverz_batch.batches_overview IS
    'One row per batch, newest first: status, counts, progress, inventory totals, duration.';
COMMENT ON VIEW moverz_batch.user_photo_quota IS
    'Per user who submitted photos in the last 24 hours: how many, the quota moverz_batch.max_photos_per_user_per_day (NULL: none) and what is left.';
COMMENT ON VIEW moverz_batch.failed_photos IS
    'Photos in ERROR with their codes and messages, newest first.';
COMMENT ON VIEW moverz_batch.batch_ai_metrics IS
    'Per batch: AI calls, average and p95 latency, successes and total cost.';
COMMENT ON FUNCTION moverz_batch.pause_processing() IS
    'Stops claiming photos (requests in flight finish, photos claimed ahead are handed back); survives restarts. Returns true once processing is paused.';
COMMENT ON FUNCTION moverz_batch.resume_processing() IS
    'Starts claiming photos again after pause_processing. Returns true once processing is running.';
COMMENT ON FUNCTION moverz_batch_internal.promote_duplicates(uuid[]) IS
    'Internal: before batches are deleted, the oldest surviving copy of each of their photos that other batches duplicate becomes the original, and the inventories concerned are synced again; called by purge.';
COMMENT ON FUNCTION moverz_batch.purge(interval) IS
    'Deletes the batches finished more than older_than ago (default 30 days), with their photos, their uploaded files and inventories, the AI metrics older than that, and the uploads never attached whose URL expired. Returns how many of each it deleted.';
COMMENT ON FUNCTION moverz_batch_internal.jwt_user_id() IS
    'Internal: the user of the current HTTP request, the sub claim of its JWT, or NULL; used by the row-level security policies.';
COMMENT ON FUNCTION moverz_batch_internal.api_user() IS
    'Internal: the user of the current HTTP request, or HTTP 401 without a token, or with one without sub or exp; called by the moverz_api functions.';
COMMENT ON FUNCTION moverz_batch_internal.request_header(text) IS
    'Internal: one header of the current HTTP request, or NULL; called by moverz_api.create_batch for the Idempotency-Key.';
COMMENT ON FUNCTION moverz_batch_internal.api_raise(text, text, text) IS
    'Internal: raises an error of the SQL API again for HTTP (404, 413, the HTTP field names such as imageUrls); called by the moverz_api functions.';
COMMENT ON FUNCTION moverz_batch_internal.api_check_priority(text) IS
    'Internal: refuses priority HIGH (HTTP 403) unless the token''s role is a member of moverz_priority; called by moverz_api.create_batch.';
COMMENT ON FUNCTION moverz_batch_internal.api_owned_batch(uuid, text) IS
    'Internal: the batch if it belongs to the user, else HTTP 404 with the same body for an unknown batch and another user''s; called by the moverz_api functions.';
COMMENT ON FUNCTION moverz_batch_internal.api_page(integer, integer) IS
    'Internal: checks page (at least 1) and perPage (1 to 100) of a list call; called by moverz_api.list_projects and moverz_api.list_batches.';
COMMENT ON FUNCTION moverz_batch_internal.api_body_uuid(jsonb, text) IS
    'Internal: the UUID in a string field of a request body, or HTTP 400 naming the field; called by moverz_api.create_batch.';
COMMENT ON FUNCTION moverz_batch_internal.api_check_body(jsonb, text) IS
    'Internal: refuses a request body that is not a JSON object (HTTP 400); called by moverz_api.create_project and moverz_api.create_batch.';
COMMENT ON FUNCTION moverz_batch_internal.batch_summary(moverz_batch.batches) IS
    'Internal: one batch in a list: its state with its project, priority and times, without photos; called by moverz_api.list_batches.';
COMMENT ON FUNCTION moverz_api.create_project(jsonb) IS
    'POST /api/projects {"name"}: creates a project of the token''s user; 201 {success, project}.';
COMMENT ON FUNCTION moverz_api.list_projects(integer, integer) IS
    'GET /api/projects: the token''s user''s projects, newest first, paged.';
COMMENT ON FUNCTION moverz_api.create_batch(jsonb) IS
    'POST /api/batches {"projectId", "imageUrls"?, "uploads"?, "priority"?} with an optional Idempotency-Key: creates a batch of the token''s user; 202 {success, batchId, photosCount, jobsEnqueued} and its Location.';
COMMENT ON FUNCTION moverz_api.request_uploads(jsonb) IS
    'POST /api/uploads {"projectId", "files": [{filename, contentType, size}]}: one signed single-use upload URL per file; 201 {success, uploads: [{uploadId, filename, method, url, headers, expiresAt}]}.';
COMMENT ON FUNCTION moverz_api.upload_put(bytea) IS
    'PUT /api/uploads/:id?token= (the raw bytes): stores an upload''s file, authorised by its URL''s token; 200 {success, uploadId, size, sha256}, 403 wrong token, 409 already uploaded, 410 expired, 413 too large, 415 not an image of its type.';
COMMENT ON FUNCTION moverz_batch_internal.api_too_many(text, text, text) IS
    'Internal: a quota error of the SQL API (53400) as HTTP 429 with Retry-After; called by moverz_api.create_batch and moverz_api.request_uploads.';
COMMENT ON FUNCTION moverz_batch_internal.api_assets(jsonb) IS
    'Internal: create_batch''s assets from a request body, its imageUrls then its uploads; called by moverz_api.create_batch.';
COMMENT ON FUNCTION moverz_api.get_batch(uuid, integer, integer) IS
    'GET /api/batches/:id: {success, batch}, the batch''s progress as batch_progress returns it; 404 for an unknown batch and for another user''s.';
COMMENT ON FUNCTION moverz_api.list_batches(uuid, integer, integer) IS
    'GET /api/batches: the token''s user''s batches, newest first, paged, optionally of one project.';
COMMENT ON FUNCTION moverz_api.retry_batch(uuid) IS
    'POST /api/batches/:id/retry: the batch''s ERROR photos back to PENDING; 202 {success, batchId, photosRequeued}.';
COMMENT ON FUNCTION moverz_api.cancel_batch(uuid) IS
    'POST /api/batches/:id/cancel: cancels the batch; 200 {success, batchId, photosCancelled}, 409 when it has already finished.';
COMMENT ON FUNCTION moverz_api.stream_auth(uuid) IS
    'GET /rpc/stream_auth?id=, asked by nginx for each subscriber of /api/batches/:id/stream: the batch''s state; 404 as get_batch, 410 once the batch has finished.';
COMMENT ON FUNCTION moverz_batch_internal.admin_check_limit(integer) IS
    'Internal: checks maxRows (1 to 500) of an operator list; called by moverz_api.admin_batches and moverz_api.admin_failed_photos.';
COMMENT ON FUNCTION moverz_api.admin_overview() IS
    'Operator dashboard, GET /rpc/admin_overview: the queue overview and the photos analysed per minute over the last 30 minutes.';
COMMENT ON FUNCTION moverz_api.admin_batches(text, text, integer, integer) IS
    'Operator dashboard, GET /rpc/admin_batches: batches filtered by status, user and age, newest first, with their AI calls and cost.';
COMMENT ON FUNCTION moverz_api.admin_batch_photos(uuid) IS
    'Operator dashboard, GET /rpc/admin_batch_photos?id=: a batch''s photos with their attempts and errors; 404 for an unknown batch.';
COMMENT ON FUNCTION moverz_api.admin_failed_photos(integer) IS
    'Operator dashboard, GET /rpc/admin_failed_photos: the photos in ERROR, newest first.';
COMMENT ON FUNCTION moverz_batch_internal.admin_act(text, uuid) IS
    'Internal: retry_photo or cancel_batch for the operator dashboard, an unknown id answered 404 and a state that forbids it 409; called by moverz_api.admin_retry_photo and moverz_api.admin_cancel_batch.';
COMMENT ON FUNCTION moverz_api.admin_retry_photo(uuid) IS
    'Operator dashboard, POST /rpc/admin_retry_photo {"photoId"}: a failed photo (and its duplicates) back to PENDING.';
COMMENT ON FUNCTION moverz_api.admin_cancel_batch(uuid) IS
    'Operator dashboard, POST /rpc/admin_cancel_batch {"batchId"}: cancels a batch; 409 when it has already finished.';
COMMENT ON FUNCTION moverz_api.admin_pause() IS
    'Operator dashboard, POST /rpc/admin_pause: pause_processing.';
COMMENT ON FUNCTION moverz_api.admin_resume() IS
    'Operator dashboard, POST /rpc/admin_resume: resume_processing.';
COMMENT ON FUNCTION moverz_api.admin_workers() IS
    'Operator dashboard, GET /rpc/admin_workers: the running workers (worker_status).';
COMMENT ON FUNCTION moverz_api.admin_costs() IS
    'Operator dashboard, GET /rpc/admin_costs: AI calls and their cost per day (30 days) and per batch.';
