#!/usr/bin/env bash
# Administration and live progress: cancel_batch with requests in flight,
# pause / resume, duplicate photos within and across batches, NOTIFY payloads
# and their coalescing, and the views' figures against known data.
source "$(dirname "$0")/common.sh"
LISTENER=
cleanup() {
    reset_conf moverz_batch.max_inflight
    q "SELECT moverz_batch.resume_processing()" >/dev/null
    [ -n "$LISTENER" ] && kill "$LISTENER" 2>/dev/null
}
trap cleanup EXIT
u=https://img.example.com/admin
project=$(new_project admin-user)

# cancel_batch with requests in flight
set_conf moverz_batch.max_inflight 4           # 2 workers x 4: 8 in flight, 22 pending
curl -s -X POST "$FAKE_AI_URL/reset" >/dev/null
c=$(submit "$project" admin-user "$(photo_assets 30 "$u/c{i}.jpg?latency_ms=4000&items=sofa:1:1")")
mb_wait_for 10 "SELECT count_processing = 8 FROM moverz_batch.batches WHERE id = '$c'"
ok $? "cancel: 8 requests in flight"
is "$(q "SELECT moverz_batch.cancel_batch('$c')")" 30 "cancel_batch cancels the 30 unfinished photos"
is "$(progress "$c" '{status}')" CANCELLED "the batch is CANCELLED at once"
is "$(progress "$c" '{counts}')" '{"total": 30, "failed": 0, "queued": 0, "cancelled": 30, "completed": 0, "processing": 0}' \
   "counts show the cancelled photos"
wait_finished "$c" 10; ok $? "a cancelled batch gets its (empty) inventory once"
for i in $(seq 100); do [ "$(fake_stat inflight)" = 0 ] && break; sleep 0.1; done   # the 8 answers arrive
sleep 0.5
is "$(q "SELECT count(*) FROM moverz_batch.photos WHERE batch_id = '$c' AND status <> 'CANCELLED'")" 0 \
   "answers arriving after the cancel change nothing"
is "$(fake_stat total)" 8 "the pending photos were never sent"
is "$(q "SELECT count(*) FROM moverz_batch.ai_metrics WHERE meta->>'batchId' = '$c'")" 8 \
   "the 8 calls made are in the metrics"
q "SELECT moverz_batch.cancel_batch('$c')" >/dev/null 2>&1
ok "$([ $? -ne 0 ] && echo 0 || echo 1)" "cancelling a finished batch is refused"
reset_conf moverz_batch.max_inflight

# pause / resume
is "$(q "SELECT moverz_batch.pause_processing()")" t "pause_processing"
curl -s -X POST "$FAKE_AI_URL/reset" >/dev/null
p=$(submit "$project" admin-user "$(photo_assets 5 "$u/p{i}.jpg?items=box:2:0.5")")
sleep 1
is "$(progress "$p" '{counts,queued}') $(fake_stat total)" "5 0" "paused: nothing is sent"
is "$(q "SELECT paused FROM moverz_batch.queue_overview")" t "queue_overview shows the pause"
q "SELECT moverz_batch.resume_processing()" >/dev/null
wait_finished "$p" 10; ok $? "resumed: the batch finishes without a restart"

# duplicates within a batch and across batches
curl -s -X POST "$FAKE_AI_URL/reset" >/dev/null
d1=$(submit "$project" admin-user "[
  {\"filename\": \"sofa.jpg\", \"url\": \"$u/sofa.jpg?items=sofa:1:2\"},
  {\"filename\": \"sofa.jpg\", \"url\": \"$u/sofa.jpg?items=sofa:1:2\"},
  {\"filename\": \"bed.jpg\", \"url\": \"$u/bed.jpg?items=bed:1:1.5\"}]")
wait_finished "$d1" 10; ok $? "a batch with a duplicate finishes"
is "$(fake_stat total)" 2 "the duplicate photo was not sent to the AI"
is "$(progress "$d1" '{photos,1,duplicateOf}')" "$(progress "$d1" '{photos,0,id}')" \
   "batch_progress shows duplicateOf"
is "$(progress "$d1" '{photos,1,status}')" DONE "the duplicate takes its original's outcome"
is "$(progress "$d1" '{inventorySummary,totalItems}') $(progress "$d1" '{inventorySummary,totalVolume}')" "2 3.5" \
   "the same sofa photographed twice is counted once"
d2=$(submit "$project" admin-user "[{\"filename\": \"sofa.jpg\", \"url\": \"$u/sofa.jpg?items=sofa:1:2\"}]")
wait_finished "$d2" 10; ok $? "a batch made only of a known photo finishes"
is "$(progress "$d2" '{status}') $(fake_stat total)" "COMPLETED 2" "no AI call for a photo already DONE in the project"
is "$(q "SELECT calls || '/' || total_cost_usd FROM moverz_batch.batch_ai_metrics WHERE batch_id = '$d1'")" \
   "2/0.030000" "batch_ai_metrics: calls and cost of the batch (no cost for the duplicate)"
is "$(q "SELECT count(*) FROM moverz_batch.batch_ai_metrics WHERE batch_id = '$d2'")" 0 "no metrics for an all-duplicate batch"
is "$(q "SELECT moverz_batch.project_inventory('$project') ->> 'totalItems'")" \
   "$(q "SELECT sum(total_items) FROM moverz_batch.inventory_summaries WHERE project_id = '$project'")" \
   "project inventory = sum of its batches' inventories"

# NOTIFY: one notification per batch and transaction, with the final state
out=$(mktemp)
(echo "LISTEN moverz_batch_progress;"; for i in $(seq 60); do echo "SELECT pg_sleep(0.1);"; done) \
    | psql -qAtX >"$out" 2>&1 &
LISTENER=$!
sleep 0.5
n=$(q "BEGIN; SELECT moverz_batch.create_batch('$project', 'admin-user', '[{\"filename\": \"t.jpg\", \"url\": \"$u/t.jpg?latency_ms=3000\"}]');
       SELECT moverz_batch.cancel_batch(id) FROM moverz_batch.batches WHERE user_id = 'admin-user' AND status = 'QUEUED'; COMMIT;" | head -1)
live=$(submit "$project" admin-user "$(photo_assets 4 "$u/n{i}.jpg?latency_ms=200&items=box:1:1")")
wait_finished "$live" 10
sleep 0.5
kill "$LISTENER" 2>/dev/null; wait "$LISTENER" 2>/dev/null; LISTENER=
payloads=$(sed -n 's/.*with payload "\(.*\)" received.*/\1/p' "$out")
is "$(jq -s 'map(keys == ["batchId", "txid"] and (.txid | type) == "number") | all' <<<"$payloads")" true \
   "every payload is {batchId, txid}: no customer data for whoever listens"
is "$(jq -s --arg b "$n" 'map(select(.batchId == $b)) | length' <<<"$payloads")" 2 \
   "a transaction that creates and cancels a batch sends one notification, its inventory sync one more"
is "$(q "SELECT moverz_batch.progress_payload('$n')::jsonb ->> 'status'")" CANCELLED "... read through progress_payload"
notes=$(jq -c --arg b "$live" 'select(.batchId == $b)' <<<"$payloads")
is "$(jq -s 'map(.txid) | length == (unique | length)' <<<"$notes")" true "each notification names another transaction"
is "$(q "SELECT (moverz_batch.progress_payload('$live')::jsonb ->> 'status') || '/' ||
                (moverz_batch.progress_payload('$live')::jsonb ->> 'inventoryReady')")" "COMPLETED/true" \
   "the last state: COMPLETED with its inventory ready"
# transactions that change the batch: its creation, at most 4 claims and 4 write-backs (one per
# photo), its inventory sync; without coalescing a write-back alone updates the batch row twice
ok "$([ "$(echo "$notes" | wc -l)" -le 10 ] && echo 0 || echo 1)" \
   "at most one notification per transaction ($(echo "$notes" | wc -l) for 4 photos, at most 10 transactions)"
rm -f "$out"

# views and worker status
is "$(q "SELECT total || '/' || completed || '/' || status FROM moverz_batch.batches_overview WHERE batch_id = '$live'")" \
   "4/4/COMPLETED" "batches_overview"
is "$(q "SELECT count(*) FROM moverz_batch.failed_photos WHERE batch_id = '$live'")" 0 "failed_photos"
is "$(q "SELECT string_agg(kind, ',' ORDER BY kind, worker) FROM moverz_batch.worker_status")" "inventory,photo,photo,publisher" \
   "worker_status lists every running worker (photo, inventory, the progress publisher)"
is "$(q "SELECT bool_and(pid > 0 AND since <= now()) AND sum(done) > 0 FROM moverz_batch.worker_status WHERE kind = 'photo'")" t \
   "worker_status: pids and done counters"
mb_wait_for 10 "SELECT s.done >= (SELECT count(*) FROM moverz_batch.inventory_sync_jobs j
                                    WHERE j.status = 'DONE' AND j.finished_at >= s.since)
                  AND s.done > 0
                  FROM moverz_batch.worker_status s WHERE kind = 'inventory'" >/dev/null
ok $? "worker_status: the inventory worker counts the jobs it ran (no longer 0)"
is "$(q "SELECT pending + in_flight FROM moverz_batch.queue_overview")" 0 "queue_overview: nothing left"
done_testing
