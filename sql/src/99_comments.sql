-- Comments: a COMMENT ON for every schema, table, view, type and function of
-- the extension (schemas moverz_batch, moverz_batch_internal and
-- moverz_api), in the order of the
-- files of sql/src/.  Concatenated last, so every object exists already.
-- test/pgtap/11_comments.sql checks that no object is left without one: a new
-- object gets its comment here (and in the update script to its version).
-- The objects of moverz_batch_internal say "Internal:" and who calls them;
-- no object of the other two does.

COMMENT ON SCHEMA moverz_batch IS
    'moverz_batch: batches of AI photo analyses for a moving company: the SQL API, its tables and views, and the functions of the background workers.';
COMMENT ON SCHEMA moverz_batch_internal IS
    'Internal: what only the extension calls (the workers'' claim and write-back, the triggers'' helpers, the HTTP API''s helpers); no role but its owner may use it (since 0.7.0).';

------------------------------------------------------------------------
-- 00_types: types, C entry points.
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

------------------------------------------------------------------------
-- 10_tables: projects, batches, photos, inventory, ai_metrics, sync queue.
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

------------------------------------------------------------------------
-- 20_validation: input rules (AI analyses), error helpers.
COMMENT ON FUNCTION moverz_batch.analysis_error(jsonb) IS
    'Why an AI analysis is not of the contract''s shape (items an array of objects with a label, an integer quantity and a volume_m3), or NULL when it is. SQL-callable C; checks photos.analysis.';
COMMENT ON FUNCTION moverz_batch_internal.echo_value(text) IS
    'Internal: a rejected value as an error message quotes it, 64 characters at most; called by create_batch, check_photo_quota and moverz_api.admin_batches.';
COMMENT ON FUNCTION moverz_batch_internal.raise_not_found(text, uuid, text) IS
    'Internal: raises the error for an id that names nothing (SQLSTATE P0002, a 404 in the HTTP API); called by batch_progress, retry_photo, cancel_batch, sync_inventory, project_inventory and reopen_photos.';

------------------------------------------------------------------------
-- 30_counters: count triggers, status rules, exactly-once inventory enqueue.
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

------------------------------------------------------------------------
-- 40_api: create_project, create_batch, batch_progress, retry_batch.
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

------------------------------------------------------------------------
-- 45_uploads: direct upload of photo files.
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

------------------------------------------------------------------------
-- 50_inventory: live inventory, sync_inventory, project_inventory.
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

------------------------------------------------------------------------
-- 58_ai_providers: the model APIs: system prompt, answer schema, model_prices.
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

------------------------------------------------------------------------
-- 60_worker: claim, result classification, write-back, crash recovery.
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

------------------------------------------------------------------------
-- 65_notify: live progress, NOTIFY moverz_batch_progress.
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

------------------------------------------------------------------------
-- 68_admin: views, pause / resume, retention purge.
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

------------------------------------------------------------------------
-- 70_http_api: HTTP API (schema moverz_api), roles, row-level security.
-- (COMMENT ON SCHEMA moverz_api is in 70_http_api.sql.)
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

------------------------------------------------------------------------
-- 72_http_web: a stream's authorisation, the operator dashboard's API.
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
