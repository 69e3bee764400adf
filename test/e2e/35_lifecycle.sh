#!/usr/bin/env bash
# Worker life: visible in pg_stat_activity; SIGTERM with requests in flight
# ends a worker promptly and its restart takes its photos back; a clean stop
# hands back the photos claimed ahead; the AI service down then back; DROP / CREATE EXTENSION under running workers;
# the API key is hidden from non-superusers and sent as a Bearer token.
source "$(dirname "$0")/common.sh"
KEYED_PID=
KEYED_OUT=
cleanup() {
    reset_conf moverz_batch.ai_service_url
    reset_conf moverz_batch.ai_api_key
    reset_conf moverz_batch.max_attempts
    reset_conf moverz_batch.claim_ahead
    reset_conf moverz_batch.max_inflight
    [ -n "$KEYED_PID" ] && kill "$KEYED_PID" 2>/dev/null
    [ -n "$KEYED_OUT" ] && rm -f "$KEYED_OUT"
    q "DROP ROLE IF EXISTS moverz_e2e_plain" >/dev/null 2>&1
}
trap cleanup EXIT
u=https://img.example.com/life

is "$(q "SELECT string_agg(backend_type, ',' ORDER BY backend_type) FROM pg_stat_activity
          WHERE backend_type LIKE 'moverz_batch%'")" \
   "moverz_batch inventory worker,moverz_batch photo worker,moverz_batch photo worker" \
   "the workers show in pg_stat_activity with their backend type"

# SIGTERM with requests in flight
project=$(new_project life-user)
hang=$(submit "$project" life-user "$(photo_assets 6 "$u/{i}.jpg?fault=hang&hang_ms=30000")")
mb_wait_for 10 "SELECT count_processing = 6 FROM moverz_batch.batches WHERE id = '$hang'"
ok $? "6 hanging requests in flight"
pid=$(q "SELECT claimed_by FROM moverz_batch.photos WHERE batch_id = '$hang' AND status = 'PROCESSING' LIMIT 1")
busy="backend_type = 'moverz_batch photo worker' AND query LIKE 'waiting for the AI service: %'
      AND query NOT LIKE '%: 0 request%'"
mb_wait_for 10 "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $busy)"
wpid=$(q "SELECT pid FROM pg_stat_activity WHERE $busy LIMIT 1")
is "$(q "SELECT query LIKE 'waiting for the AI service: % request(s) in flight' FROM pg_stat_activity WHERE pid = $wpid")" t \
   "activity shows the requests in flight"
start=$(date +%s%N)
q "SELECT pg_terminate_backend($wpid)" >/dev/null
mb_wait_for 5 "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $wpid)"
ok $? "SIGTERM: the worker exits although its requests hang"
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
ok "$([ $elapsed_ms -lt 3000 ] && echo 0 || echo 1)" "SIGTERM: exit within 3 s, not after the 30 s hang (${elapsed_ms} ms)"
mb_wait_for 15 "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'moverz_batch photo worker'
                 AND pid <> $wpid"
ok $? "the postmaster restarts the worker"
mb_wait_for 15 "SELECT bool_and(attempts >= 2 OR claimed_by <> $pid) FROM moverz_batch.photos WHERE batch_id = '$hang'"
ok $? "the restarted worker took back its photos (the attempt counts)"
q "DELETE FROM moverz_batch.batches WHERE id = '$hang'" >/dev/null

# a clean stop: the photos claimed ahead go back unsent, the worker says so
# and the postmaster starts it again
set_conf moverz_batch.claim_ahead 40
set_conf moverz_batch.max_inflight 10
ahead=$(submit "$project" life-user "$(photo_assets 60 "$u/c{i}.jpg?items=box:1:0.5&latency_ms=1500")")
mb_wait_for 10 "SELECT count_processing = 60 FROM moverz_batch.batches WHERE id = '$ahead'"
ok $? "60 photos claimed (in flight or claimed ahead)"
workers=$(q "SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity WHERE backend_type = 'moverz_batch photo worker'")
logged=$(wc -l <"$MB_DIR/server.log")
q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'moverz_batch photo worker'" >/dev/null
mb_wait_for 5 "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = ANY('{$workers}'::int[]))"
ok $? "SIGTERM: both workers stop"
# (the postmaster starts them again 5 s later: bgw_restart_time)
is "$(q "SELECT count(*) FILTER (WHERE status = 'PENDING' AND attempts = 0) > 0
           FROM moverz_batch.photos WHERE batch_id = '$ahead'")" t \
   "the photos claimed ahead went back unsent, their attempt not counted"
is "$(tail -n +"$((logged + 1))" "$MB_DIR/server.log" | grep -c 'moverz_batch: photo worker [01] stopped')" 2 \
   "each logged that it stopped"
mb_wait_for 15 "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'moverz_batch photo worker'"
ok $? "the postmaster starts them again"
reset_conf moverz_batch.claim_ahead
reset_conf moverz_batch.max_inflight
wait_finished "$ahead" 30; ok $? "then the batch finishes"
is "$(progress "$ahead" '{counts,completed}')" 60 "then the batch of 60 completes"
is "$(q "SELECT total_items || '/' || (total_volume = 30) FROM moverz_batch.inventory_summaries WHERE batch_id = '$ahead'")" \
   "60/true" "its inventory is exact (60 items, 30 m3)"

# the AI service down, then back
set_conf moverz_batch.max_attempts 20
set_conf moverz_batch.ai_service_url "http://127.0.0.1:1"
down=$(submit "$project" life-user "$(photo_assets 4 "$u/d{i}.jpg?items=box:1:0.5")")
mb_wait_for 15 "SELECT count(*) >= 4 FROM moverz_batch.ai_metrics WHERE meta->>'batchId' = '$down'
                  AND meta->>'errorCode' = 'NETWORK_ERROR'"
ok $? "service down: calls fail with NETWORK_ERROR"
is "$(progress "$down" '{counts,failed}')" 0 "service down: the photos wait for a retry"
reset_conf moverz_batch.ai_service_url
wait_finished "$down" 30; ok $? "service back: the batch finishes"
is "$(progress "$down" '{status}')" COMPLETED "service back: COMPLETED"

# DROP and CREATE EXTENSION under running workers
before=$(q "SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity WHERE backend_type LIKE 'moverz_batch%'")
q "DROP EXTENSION moverz_batch" >/dev/null; ok $? "DROP EXTENSION does not hang"
sleep 1.5
is "$(q "SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity WHERE backend_type LIKE 'moverz_batch%'")" \
   "$before" "the workers wait quietly without the extension"
q "CREATE EXTENSION moverz_batch" >/dev/null; ok $? "CREATE EXTENSION again"
project=$(new_project life-user)
again=$(submit "$project" life-user "[{\"filename\": \"x.jpg\", \"url\": \"$u/x.jpg?items=sofa:1:1\"}]")
wait_finished "$again" 20; ok $? "the same workers process the new extension's batches"
is "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'moverz_batch%' AND pid = ANY('{$before}'::int[])")" 3 \
   "no worker restarted"

# the API key: hidden from other roles, sent as a Bearer token
q "CREATE ROLE moverz_e2e_plain LOGIN" >/dev/null
set_conf moverz_batch.ai_api_key "s3cret-key"
psql -qAtX -U moverz_e2e_plain -c "SHOW moverz_batch.ai_api_key" >/dev/null 2>&1
ok "$([ $? -ne 0 ] && echo 0 || echo 1)" "SHOW ai_api_key is refused to a plain role"
is "$(psql -qAtX -U moverz_e2e_plain -c "SELECT count(*) FROM pg_settings WHERE name = 'moverz_batch.ai_api_key'")" 0 \
   "pg_settings hides ai_api_key from a plain role"
is "$(psql -qAtX -U moverz_e2e_plain -c "SELECT coalesce(current_setting('moverz_batch.ai_api_key', true), 'hidden')" 2>&1 | head -1 | grep -c s3cret)" 0 \
   "current_setting does not reveal it"
# a second fake AI service, that wants the key (the main one's variables kept)
main_fake=("$FAKE_AI_PID" "$FAKE_AI_PORT" "$FAKE_AI_URL")
KEYED_OUT=$(mktemp /tmp/moverz_keyed_fake.XXXXXX)
mb_fake_start "$KEYED_OUT" --api-key s3cret-key
ok $? "a fake AI service that wants the key starts"
KEYED_PID=$FAKE_AI_PID
keyed_url=$FAKE_AI_URL
FAKE_AI_PID=${main_fake[0]} FAKE_AI_PORT=${main_fake[1]} FAKE_AI_URL=${main_fake[2]}
set_conf moverz_batch.ai_service_url "$keyed_url"
keyed=$(submit "$project" life-user "[{\"filename\": \"k.jpg\", \"url\": \"$u/k.jpg?items=sofa:1:1\"}]")
wait_finished "$keyed" 20; is "$(progress "$keyed" '{status}')" COMPLETED "the right key is accepted"
set_conf moverz_batch.ai_api_key "wrong"
wrong=$(submit "$project" life-user "[{\"filename\": \"w.jpg\", \"url\": \"$u/w.jpg?items=sofa:1:1\"}]")
wait_finished "$wrong" 20
is "$(photo_field "$wrong" 0 "status || '/' || error_code || '/' || attempts")" "ERROR/AI_ERROR/1" \
   "a wrong key: 401, final AI_ERROR"
done_testing
