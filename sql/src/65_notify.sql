-- Live progress: NOTIFY on channel "moverz_batch_progress".
--
-- Every committed change of a batch's counters or status sends one
-- notification, coalesced to at most one per batch per transaction; so does
-- its inventory becoming ready.  PostgreSQL has no permission on LISTEN: any
-- role that can connect hears every notification, so the payload carries
-- no customer data, only {"batchId", "txid"} (the notifying transaction's
-- id, to tell one change from another); a reader fetches the state through
-- batch_progress(), or progress_payload() below, where row-level security
-- applies.  Deferred constraint triggers fire at commit time, after every
-- statement of the transaction.

-- progress_payload: the compact state of one batch, now: {"batchId",
-- "status", "progress", "counts": {queued, processing, completed, failed,
-- total}, "inventoryReady": bool}, and "waitingForAiServiceSince" while its
-- photos wait for an AI service that is down (ai_service_status()) (what a
-- notification announces; NULL for a batch the caller may not see).
-- plpgsql, so that its plan is kept.
CREATE FUNCTION progress_payload(p_batch_id uuid) RETURNS text
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

-- publish_after_commit: queue the batch's state for the web clients' live
-- progress when this transaction commits (src/publish_queue.c: nothing
-- before the commit, nothing if it aborts; the progress publisher POSTs it
-- to Nchan, and after a final event closes the batch's channel).  Nothing
-- when moverz_batch.publish_url is empty.
CREATE FUNCTION moverz_batch_internal.publish_after_commit(batch_id uuid, state text, final boolean) RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'moverz_publish_after_commit';

-- publish_status(): the progress publisher's figures: events waiting,
-- delivered to Nchan, dropped because the queue was full, not taken by
-- Nchan, the last failure, and whether the publisher runs.
CREATE FUNCTION publish_status(OUT queued bigint, OUT published bigint, OUT dropped bigint,
                               OUT failed bigint, OUT last_failure_at timestamptz,
                               OUT last_failure text, OUT running boolean)
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'moverz_publish_status';

-- notify_progress: notify the state of one batch, unless this transaction
-- already did.  The batches notified are remembered in a transaction-local
-- setting.  With publishing on, the same change is queued for Nchan with
-- the state it commits (progress_payload and the notification's txid, so
-- that a stream event and a notification match one to one); the final one
-- is the change that makes a finished batch's inventory ready.
CREATE FUNCTION moverz_batch_internal.notify_progress(p_batch_id uuid) RETURNS void
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

-- Deferred row triggers of batches (key "id") and inventory_summaries (key
-- "batch_id").  They fire at commit as whichever role committed (an HTTP API
-- user, say): SECURITY DEFINER, with a pinned search_path.
CREATE FUNCTION moverz_batch_internal.notify_batch_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM moverz_batch_internal.notify_progress(NEW.id);
    RETURN NULL;
END
$$;

CREATE FUNCTION moverz_batch_internal.notify_inventory_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM moverz_batch_internal.notify_progress(NEW.batch_id);
    RETURN NULL;
END
$$;

REVOKE ALL ON FUNCTION moverz_batch_internal.notify_progress(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION moverz_batch_internal.publish_after_commit(uuid, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION publish_status() FROM PUBLIC;
REVOKE ALL ON FUNCTION moverz_batch_internal.notify_batch_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION moverz_batch_internal.notify_inventory_trigger() FROM PUBLIC;

CREATE CONSTRAINT TRIGGER batches_notify_progress
    AFTER INSERT OR UPDATE ON batches
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION moverz_batch_internal.notify_batch_trigger();

CREATE CONSTRAINT TRIGGER inventory_notify_progress
    AFTER INSERT OR UPDATE ON inventory_summaries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION moverz_batch_internal.notify_inventory_trigger();
