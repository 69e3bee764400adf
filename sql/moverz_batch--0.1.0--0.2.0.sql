-- moverz_batch 0.1.0 -> 0.2.0
--
-- Performance release (issue #6): create_batch's assets are checked and
-- turned into rows in C, batch_progress builds its document in C, photos
-- reference their batch without a per-row foreign key, and a few plans no
-- longer scan whole tables.  The API is unchanged.  test/e2e/70_upgrade.sh
-- checks that an updated 0.1.0 has exactly the objects of a fresh 0.2.0.

\echo Use "ALTER EXTENSION moverz_batch UPDATE TO '0.2.0'" to load this file. \quit

-- photos.batch_id: checked once per batch and statement (apply_batch_delta),
-- its photos deleted with their batch by statement triggers
ALTER TABLE photos DROP CONSTRAINT photos_batch_id_fkey;

-- the claim's users come from the open batches
CREATE INDEX batches_open_idx ON batches (user_id) WHERE status IN ('QUEUED', 'PROCESSING');

-- photos works as a queue: vacuum it when 1 % of its rows are dead
ALTER TABLE photos SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000);

-- counters: a photo of a missing batch is refused here, not by a foreign key

-- apply_batch_delta: add a counter delta to one batch, derive its status
-- and, in the transaction that makes it terminal and only if not queued yet,
-- mark it and insert exactly one inventory-sync job.  The first UPDATE takes
-- the batch's row lock, so concurrent writers serialise here and each sees
-- the counters left by the one before: none is lost, one enqueues.  Photos
-- added to a batch that does not exist are a foreign-key violation; photos
-- leaving a deleted batch are not.
CREATE OR REPLACE FUNCTION apply_batch_delta(p_batch_id uuid, d status_delta)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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
           status = moverz_batch.derive_status(x.count_queued + d.queued, x.count_processing + d.processing,
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
    ELSIF NOT FOUND OR NOT moverz_batch.is_terminal(b.status) OR b.inventory_queued THEN
        RETURN;
    END IF;
    UPDATE moverz_batch.batches SET inventory_queued = true, completed_at = now()
     WHERE id = p_batch_id;
    INSERT INTO moverz_batch.inventory_sync_jobs (batch_id, project_id, user_id, generation)
    VALUES (b.id, b.project_id, b.user_id, b.inventory_generation);
    PERFORM moverz_batch.wake_inventory_worker();
END
$$;

-- batches_photos_trigger: a batch's photos go with it, as by ON DELETE
-- CASCADE (statement-level; TRUNCATE too).  SECURITY DEFINER, as a foreign
-- key's cascade runs as the table owner.
CREATE FUNCTION batches_photos_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        TRUNCATE moverz_batch.photos, moverz_batch.inventory_items;
    ELSE
        DELETE FROM moverz_batch.photos p USING old_rows o WHERE p.batch_id = o.id;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION batches_photos_trigger() FROM PUBLIC;

CREATE TRIGGER batches_delete_photos AFTER DELETE ON batches
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION batches_photos_trigger();
CREATE TRIGGER batches_truncate_photos AFTER TRUNCATE ON batches
    FOR EACH STATEMENT EXECUTE FUNCTION batches_photos_trigger();

-- create_batch: the assets in C (asset_error and its raise_invalid go)
DROP FUNCTION asset_error(jsonb, bigint);
DROP FUNCTION raise_invalid(text[], text);

-- check_assets: raise the first broken rule of create_batch's "assets": the
-- array as a whole, then each element in order, then whether each roomType
-- is one of room_types.  In C (src/assets.c), as asset_rows.
CREATE OR REPLACE FUNCTION check_assets(assets jsonb) RETURNS void
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'moverz_check_assets';

-- asset_rows: one row per element of a checked "assets", in order, with a
-- new random id, the checksum md5(filename || ':' || url) and, when an
-- earlier element has the same checksum, the first such element's id.
CREATE FUNCTION asset_rows(assets jsonb,
                           OUT id uuid, OUT "position" int, OUT filename text, OUT file_path text,
                           OUT url text, OUT room_type text, OUT checksum text, OUT first_id uuid)
RETURNS SETOF record LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'moverz_asset_rows';

-- insert_photos: one photo per asset.  A photo whose checksum matches a
-- photo already DONE in the project, or an earlier photo of the same batch,
-- is a duplicate: it is never sent to the AI; it takes the analysis of the
-- DONE one at once, or the outcome of the earlier one when that finishes
-- (complete_photos), and its items are not counted again.  plpgsql, so that
-- its plan is cached (a SQL function's is made again at every call).
CREATE OR REPLACE FUNCTION insert_photos(p_batch_id uuid, p_project_id uuid, p_user_id text,
                              p_priority batch_priority, assets jsonb)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
WITH a AS MATERIALIZED (
    SELECT * FROM moverz_batch.asset_rows(assets)
), prior AS (
    SELECT DISTINCT ON (p.checksum) p.checksum, p.id, p.analysis, p.room_type
      FROM moverz_batch.photos p
     WHERE p.project_id = p_project_id AND p.checksum = ANY (ARRAY(SELECT a.checksum FROM a))
       AND p.status = 'DONE' AND p.duplicate_of IS NULL
     ORDER BY p.checksum, p.finished_at
)
INSERT INTO moverz_batch.photos (id, batch_id, position, project_id, user_id, filename, file_path,
                                 url, room_type, checksum, priority, duplicate_of, status,
                                 analysis, finished_at)
SELECT a.id, p_batch_id, a.position, p_project_id, p_user_id, a.filename,
       a.file_path, a.url, coalesce(a.room_type, pr.room_type),
       a.checksum, p_priority,
       coalesce(pr.id, a.first_id),
       CASE WHEN pr.id IS NOT NULL THEN 'DONE' ELSE 'PENDING' END::moverz_batch.photo_status,
       pr.analysis, CASE WHEN pr.id IS NOT NULL THEN now() END
  FROM a
  LEFT JOIN prior pr ON pr.checksum = a.checksum;
END
$$;

-- progress_document: state's keys, the "photos" array (one page of the
-- batch's photos, as submitted; roomType, errorCode and duplicateOf only
-- when set) and "inventorySummary" when summary is not NULL.  In C
-- (src/progress.c): one jsonb built in place of a copy per photo and per "||".
CREATE FUNCTION progress_document(state jsonb, batch_id uuid, photos_limit bigint,
                                  photos_offset bigint, summary jsonb)
RETURNS jsonb LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'moverz_progress_document';

-- batch_progress: the seed's "batch" object for polling.  photos_limit and
-- photos_offset page the photos list (ordered as submitted); the counts always
-- cover the whole batch.  A photo that duplicates another carries duplicateOf.
CREATE OR REPLACE FUNCTION batch_progress(batch_id uuid, photos_limit int DEFAULT NULL, photos_offset int DEFAULT 0)
RETURNS jsonb LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
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
        PERFORM moverz_batch.raise_not_found('batch_id', batch_progress.batch_id, 'batch');
    END IF;
    SELECT s.summary INTO v_summary
      FROM moverz_batch.inventory_summaries s
     WHERE s.batch_id = b.id AND s.generation = b.inventory_generation;
    RETURN moverz_batch.progress_document(moverz_batch.batch_state(b), b.id, photos_limit,
                                          photos_offset, v_summary);
END
$$;

-- settle_duplicates: the duplicates waiting for these photos (now DONE or
-- ERROR) take their outcome.  Called wherever a photo becomes final, at
-- every write-back.  Duplicates are few and found through their partial
-- index; until photos is analysed the planner takes duplicate_of for
-- mostly set and would scan the whole table for each write-back (9 ms at
-- 40,000 photos), hence enable_seqscan = off here.
CREATE OR REPLACE FUNCTION settle_duplicates(p_final uuid[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off AS $$
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

-- claim_photos: up to p_limit PENDING photos whose next attempt time has
-- come, skipping rows other workers hold, marked PROCESSING for worker
-- p_worker (incarnation p_token) with a lease; the attempt counts from here.
-- Order: highest priority first; within a priority, users take turns: the
-- k-th photo of a user who has n photos in flight ranks n + k (each user's
-- photos oldest first), so one user's huge batch cannot starve another's
-- small one; with p_per_user > 0, no user gets more than that many photos
-- in flight.  Nothing is claimed while processing is paused.
-- Duplicates are never claimed (they follow their original).
CREATE OR REPLACE FUNCTION claim_photos(p_worker int, p_token bigint, p_limit int, p_lease_ms int,
                             p_per_user int DEFAULT 0)
RETURNS TABLE (id uuid, batch_id uuid, project_id uuid, user_id text, url text,
               filename text, room_type text, attempt int)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF (SELECT c.paused FROM moverz_batch.control c) THEN
        RETURN;
    END IF;
    IF p_per_user > 0 THEN
        -- claims count each user's photos in flight: one claim at a time
        PERFORM pg_advisory_xact_lock(hashtext('moverz_batch.claim_photos'));
    END IF;
    RETURN QUERY
    WITH users AS (
        -- the users with pending photos, from their open batches: not from
        -- the photos' claim index, whose dead entries (photos claimed since
        -- the last VACUUM) a scan from its start would step over
        SELECT DISTINCT b.user_id FROM moverz_batch.batches b
         WHERE b.status IN ('QUEUED', 'PROCESSING') AND b.count_queued > 0
    ), inflight AS (
        -- each user's photos in flight: needed for the turns only when users
        -- compete, or for the per-user ceiling
        SELECT p.user_id, count(*) AS n FROM moverz_batch.photos p
         WHERE p.status = 'PROCESSING'
           AND p.user_id = ANY (ARRAY(SELECT u.user_id FROM users u))
           AND (p_per_user > 0 OR (SELECT count(u.user_id) FROM users u) > 1)
         GROUP BY p.user_id
    ), candidates AS (
        SELECT c.id, c.priority, c.created_at,
               coalesce(i.n, 0) + row_number() OVER (PARTITION BY u.user_id
                                  ORDER BY c.priority DESC, c.created_at, c.batch_id, c.position) AS turn
          FROM users u
          LEFT JOIN inflight i ON i.user_id = u.user_id
          CROSS JOIN LATERAL (
              SELECT p.id, p.priority, p.created_at, p.batch_id, p.position
                FROM moverz_batch.photos p
               WHERE p.user_id = u.user_id AND p.status = 'PENDING' AND p.duplicate_of IS NULL
                 AND p.next_attempt_at <= now()
               ORDER BY p.priority DESC, p.created_at, p.batch_id, p.position
               LIMIT CASE WHEN p_per_user > 0
                          THEN least(p_limit, greatest(p_per_user - coalesce(i.n, 0), 0))
                          ELSE p_limit END) AS c
    ), chosen AS (
        SELECT c.id FROM candidates c ORDER BY c.priority DESC, c.turn, c.created_at LIMIT p_limit
    ), locked AS (
        -- by primary key (= ANY of an array), whatever the table's statistics say
        SELECT p.id FROM moverz_batch.photos p
         WHERE p.id = ANY (ARRAY(SELECT chosen.id FROM chosen)) AND p.status = 'PENDING'
           FOR UPDATE SKIP LOCKED
    )
    UPDATE moverz_batch.photos p
       SET status = 'PROCESSING', attempts = p.attempts + 1, claimed_by = p_worker,
           claim_token = p_token, lease_until = now() + p_lease_ms * interval '1 millisecond',
           started_at = now(), updated_at = now()
      FROM locked
     WHERE p.id = locked.id
    RETURNING p.id, p.batch_id, p.project_id, p.user_id, p.url, p.filename, p.room_type, p.attempts;
END
$$;

-- progress_payload: the notification payload of one batch, now.  plpgsql,
-- so that its plan is kept: it runs in the commit of every transaction that
-- changes a batch (a SQL function would be planned again each time).
CREATE OR REPLACE FUNCTION progress_payload(p_batch_id uuid) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT (moverz_batch.batch_state(b)
                    || jsonb_build_object('inventoryReady',
                           EXISTS (SELECT 1 FROM moverz_batch.inventory_summaries s
                                    WHERE s.batch_id = b.id AND s.generation = b.inventory_generation)))::text
              FROM moverz_batch.batches b WHERE b.id = p_batch_id);
END
$$;

-- the new functions: EXECUTE for moverz_app, not PUBLIC (as in 70_http_api.sql)
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'moverz_batch'::regnamespace
                AND (p.proacl IS NULL
                     OR EXISTS (SELECT 1 FROM pg_catalog.aclexplode(p.proacl) a
                                 WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')) LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO moverz_app', f);
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;
