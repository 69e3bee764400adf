#!/usr/bin/env bash
# Nothing lost, nothing paid twice (issue #20): an AI service that is down
# holds the work instead of failing it (the circuit); a Retry-After is cut to
# moverz_batch.max_retry_after; a valid analysis with out-of-range metadata
# is kept (the metadata stored as NULL); a 5xx larger than the answer cap is
# retried as a 5xx; a write-back refused by a transient database error (a
# lock time-out) is written again later, not dropped nor paid twice.
# Each failed on the code before.
source "$(dirname "$0")/common.sh"
cleanup() {
    for s in ai_service_url max_retry_after max_inflight outage_max_wait; do reset_conf "moverz_batch.$s"; done
    reset_conf lock_timeout
    [ -n "${LOCKER:-}" ] && kill "$LOCKER" 2>/dev/null
}
trap cleanup EXIT
u=https://img.example.com/rel
project=$(new_project rel-user)

# 1. the AI service down for 6 s under a batch of 30: nothing fails (the
# other scenarios run with the circuit off, outage_max_wait = 0: they fail
# photos on purpose)
set_conf moverz_batch.outage_max_wait 1h
set_conf moverz_batch.max_inflight 16
logged=$(wc -l <"$MB_DIR/server.log")
set_conf moverz_batch.ai_service_url "http://127.0.0.1:1"
down=$(submit "$project" rel-user "$(photo_assets 30 "$u/d{i}.jpg?items=box:1:0.5")")
mb_wait_for 10 "SELECT holding AND unreachable_since IS NOT NULL FROM moverz_batch.ai_service_status()"
ok $? "the circuit opens: ai_service_status says since when"
is "$(q "SELECT ai_unreachable_since IS NOT NULL FROM moverz_batch.queue_overview")" t \
   "queue_overview shows the AI service unreachable"
watch=$("$MB_ROOT/tools/moverz-batch" watch --timeout=1 "$down" 2>&1)
is "$(grep -c 'waiting_for_ai_service_since=' <<<"$watch")" 1 "moverz-batch watch says the batch waits for the AI service"
is "$(q "SELECT moverz_batch.progress_payload('$down')::jsonb ? 'waitingForAiServiceSince'")" t \
   "progress_payload, what a notification's reader fetches, says so too"
sleep 5
is "$(q "SELECT count(*) FROM moverz_batch.photos WHERE batch_id = '$down' AND status = 'ERROR'")" 0 \
   "during the outage no photo fails"
during=$(q "SELECT count(*) FROM moverz_batch.ai_metrics WHERE meta->>'batchId' = '$down'")
ok "$([ "$during" -le 40 ] && echo 0 || echo 1)" "during the outage: $during calls (30 sent before it opened, then a probe every 2 s)"
is "$(q "SELECT probes >= 2 FROM moverz_batch.ai_service_status()")" t "it probes the service meanwhile"
back_at=$(q "SELECT clock_timestamp()")
reset_conf moverz_batch.ai_service_url
wait_finished "$down" 30; ok $? "the service back: the batch finishes"
is "$(progress "$down" '{status}')" COMPLETED "COMPLETED, no retry_batch needed"
is "$(progress "$down" '{inventorySummary,totalItems}')" 30 "one exact inventory (30 items)"
is "$(q "SELECT count(*) FROM moverz_batch.inventory_sync_jobs WHERE batch_id = '$down'")" 1 "synced once"
is "$(q "SELECT extract(epoch FROM min(created_at) - '$back_at') < 3 FROM moverz_batch.ai_metrics
          WHERE meta->>'batchId' = '$down' AND success")" t "the first success within 3 s of the service's return"
is "$(q "SELECT max(attempts) <= 2 FROM moverz_batch.photos WHERE batch_id = '$down'")" t \
   "the outage spent at most one attempt of a photo (those that opened the circuit)"
is "$(q "SELECT unreachable_since IS NULL AND NOT holding FROM moverz_batch.ai_service_status()")" t "the circuit closed"
is "$(q "SELECT moverz_batch.progress_payload('$down')::jsonb ? 'waitingForAiServiceSince'")" f "no longer waiting"
is "$(tail -n +"$((logged + 1))" "$MB_DIR/server.log" | grep -c 'AI service unreachable')" 1 "one log line when it opened"
is "$(tail -n +"$((logged + 1))" "$MB_DIR/server.log" | grep -c 'AI service back after')" 1 "one log line when it closed"
reset_conf moverz_batch.max_inflight
reset_conf moverz_batch.outage_max_wait

# 2. Retry-After of 999999999 s, cut to max_retry_after (1 s here)
set_conf moverz_batch.max_retry_after 1s
ra=$(submit "$project" rel-user "[{\"filename\": \"ra.jpg\", \"url\": \"$u/ra.jpg?fault=429&retry_after=999999999&fail_first=1&items=sofa:1:2\"}]")
wait_finished "$ra" 15; ok $? "a 429 asking for 31 years holds the pool for max_retry_after only"
is "$(photo_field "$ra" 0 "status || '/' || attempts")" "DONE/2" "then the photo is analysed"
other=$(submit "$project" rel-user "[{\"filename\": \"o.jpg\", \"url\": \"$u/o.jpg?items=bed:1:1\"}]")
wait_finished "$other" 10; ok $? "another batch goes through at once"

# 3. a valid analysis with metadata no column can hold; a huge 5xx
odd=$(submit "$project" rel-user "[
  {\"filename\": \"meta.jpg\", \"url\": \"$u/meta.jpg?fault=bigmeta\"},
  {\"filename\": \"huge.jpg\", \"url\": \"$u/huge.jpg?fault=500huge\"}]")
wait_finished "$odd" 20; ok $? "the batch with odd answers finishes"
is "$(photo_field "$odd" 0 "status || '/' || (analysis->'items'->0->>'quantity')")" "DONE/2" \
   "the analysis is kept whatever its metadata"
is "$(q "SELECT coalesce(cost_usd::text, 'null') || '/' || coalesce(tokens_in::text, 'null') || '/' || coalesce(tokens_out::text, 'null')
          FROM moverz_batch.ai_metrics WHERE meta->>'batchId' = '$odd' AND success")" "null/null/null" \
   "out-of-range cost and tokens are stored as NULL"
is "$(photo_field "$odd" 1 "error_code || '/' || attempts || '/' || (error_message LIKE 'HTTP 500:%')")" "AI_ERROR/3/true" \
   "a 5xx over the 1 MB cap is a 5xx: retried"

# 4. the write-back blocked by a lock (lock_timeout 300 ms) for 3 s: written later, paid once
set_conf lock_timeout 300ms
logged=$(wc -l <"$MB_DIR/server.log")
lk=$(submit "$project" rel-user "$(photo_assets 2 "$u/l{i}.jpg?items=lamp:1:0.5&latency_ms=1000")")
mb_wait_for 10 "SELECT count_processing = 2 FROM moverz_batch.batches WHERE id = '$lk'"
psql -qAtX -v ON_ERROR_STOP=1 -c "BEGIN" -c "SELECT id FROM moverz_batch.photos WHERE batch_id = '$lk' FOR UPDATE" \
     -c "SELECT pg_sleep(3)" -c "COMMIT" >/dev/null &
LOCKER=$!
mb_wait_for 5 "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                               WHERE a.query LIKE 'SELECT pg_sleep(3)%' AND l.mode = 'RowShareLock')"
ok $? "an admin transaction holds the photos' rows"
wait_finished "$lk" 20; ok $? "the batch finishes once the lock is gone"
wait "$LOCKER"; ok $? "the admin transaction committed"; LOCKER=
is "$(progress "$lk" '{status}')" COMPLETED "both photos DONE"
is "$(q "SELECT count(*) FROM moverz_batch.ai_metrics WHERE meta->>'batchId' = '$lk'")" 2 "one call per photo: nothing paid twice"
ids=$(q "SELECT string_agg(id::text, ' ') FROM moverz_batch.photos WHERE batch_id = '$lk'")
is "$(for id in $ids; do fake_calls "$id"; done | paste -sd,)" "1,1" "the AI service saw each photo once"
logs=$(tail -n +"$((logged + 1))" "$MB_DIR/server.log")
is "$(grep -c 'writing them again later' <<<"$logs")" 1 "the worker said it keeps the results"
is "$(grep -c 'dropping an AI result' <<<"$logs")" 0 "and dropped none"
done_testing
