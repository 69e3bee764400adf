#!/usr/bin/env bash
# 43_stream: live progress over HTTP through the real nginx + Nchan +
# PostgREST stack: GET /api/batches/:id/stream as Server-Sent Events.
# A batch's events arrive in order, exactly one per notification the NOTIFY
# coalescing sends (matched one to one by txid), the last one carries
# inventoryReady: true and the stream then ends; a late subscriber gets the
# current state first; another user's token gets 404, no token 401, a
# finished batch 410; nobody can publish through the public server; CORS
# answers only the configured origins; the operators' API is theirs; with Nchan down the batches go on and
# the server logs it once.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/../http/lib_http.sh"
cleanup() {
    [ -n "${listener_fd:-}" ] && exec 3>&-
    [ -n "${sse_pid:-}" ] && kill "$sse_pid" 2>/dev/null
    q "SELECT moverz_batch.resume_processing()" >/dev/null 2>&1
    mb_http_stop
    rm -rf "${work:-}"
}
trap cleanup EXIT
mb_http_install || { echo "Bail out! cannot install nginx, Nchan and PostgREST"; exit 1; }
MB_CORS_ORIGINS='"~^https://app\.example\.com$" 1;' mb_http_start \
    || { echo "Bail out! cannot start nginx and PostgREST"; exit 1; }
work=$(mktemp -d /tmp/moverz_stream.XXXXXX)
api=$MB_API_URL
exp=$(($(date +%s) + 600))
user_a="stream-a-$$" user_b="stream-b-$$"
token_a=$(mb_jwt "{\"role\": \"moverz_user\", \"sub\": \"$user_a\", \"exp\": $exp}")
token_b=$(mb_jwt "{\"role\": \"moverz_user\", \"sub\": \"$user_b\", \"exp\": $exp}")
mb_wait_for 10 "SELECT running FROM moverz_batch.publish_status()" >/dev/null
is "$(q "SELECT running FROM moverz_batch.publish_status()")" t "the progress publisher runs"

mb_http_json POST "$api/api/projects" "$token_a" '{"name": "stream"}'
project=$(jq -r .project.id <<<"$HTTP_BODY")
assets='[{"filename": "a.jpg", "url": "https://img.example.com/a.jpg?items=sofa:1:2.5"},
         {"filename": "b.jpg", "url": "https://img.example.com/b.jpg?items=bed:1:1.9&latency_ms=150"},
         {"filename": "c.jpg", "url": "https://img.example.com/c.jpg?items=chair:4:0.3&latency_ms=300"},
         {"filename": "d.jpg", "url": "https://unreachable.invalid/d.jpg"}]'

# A psql session that LISTENs, fed through a FIFO: it prints the
# notifications it received after its next command.
mkfifo "$work/listen.in"
psql -qAtX -d postgres <"$work/listen.in" >"$work/listen.out" 2>&1 &
listener_pid=$!
exec 3>"$work/listen.in"
listener_fd=3
echo "LISTEN moverz_batch_progress; SELECT 'listening';" >&3
mb_wait_for 10 "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE '%LISTEN moverz_batch_progress%'
                                 AND pid <> pg_backend_pid())" >/dev/null

# 1. A batch followed from its creation: processing is paused until the
#    subscriber is connected, so that it sees every change.
q "SELECT moverz_batch.pause_processing()" >/dev/null
mb_http_json POST "$api/api/batches" "$token_a" "{\"projectId\": \"$project\", \"imageUrls\": $assets}"
batch=$(jq -r .batchId <<<"$HTTP_BODY")
curl -sN --max-time 60 -H 'Accept: text/event-stream' -H "Authorization: Bearer $token_a" \
     -D "$work/sse.headers" "$api/api/batches/$batch/stream" >"$work/sse.out" 2>"$work/sse.err" &
sse_pid=$!
for i in $(seq 100); do grep -q '^data: ' "$work/sse.out" && break; sleep 0.1; done
is "$(sed -n 's/^data: //p' "$work/sse.out" | head -1 | jq -c '[.status, .counts.queued, .inventoryReady]')" \
   '["QUEUED",4,false]' "the first event is the state at subscription (QUEUED, 4 queued)"
q "SELECT moverz_batch.resume_processing()" >/dev/null
wait "$sse_pid"
rc=$?
sse_pid=
is "$rc" 0 "the stream ends by itself after the final event"
is "$(tr -d '\r' <"$work/sse.headers" | grep -i '^content-type:' | head -1 | sed 's/^[^:]*: *//; s/;.*//')" \
   "text/event-stream" "Content-Type: text/event-stream"
sed -n 's/^data: //p' "$work/sse.out" >"$work/events.json"
last=$(tail -1 "$work/events.json")
is "$(jq -c '[.batchId, .status, .inventoryReady, .counts.completed, .counts.failed]' <<<"$last")" \
   "[\"$batch\",\"PARTIAL\",true,3,1]" "the last event: PARTIAL, inventoryReady, 3 done, 1 failed"
is "$(jq -s -c '[.[] | .inventoryReady] | map(select(.)) | length' "$work/events.json")" 1 \
   "only the last event carries inventoryReady: true"
is "$(jq -s -c '[.[].txid] == ([.[].txid] | sort)' "$work/events.json")" true "events in commit order (txids rising)"
is "$(jq -s -c '[.[] | .counts.completed + .counts.failed] | . == sort' "$work/events.json")" true \
   "finished photos never go back"

# ... one event per notification of this batch (after the one at subscription)
echo "SELECT 'done';" >&3
exec 3>&-
listener_fd=
wait "$listener_pid"
notified=$(grep -o '{[^}]*}' "$work/listen.out" | jq -c "select(.batchId == \"$batch\") | .txid" | tr '\n' ' ')
streamed=$(jq -c '.txid' "$work/events.json" | tr '\n' ' ')
ok "$([ -n "$notified" ] && [ "${notified#* }" = "${streamed#* }" ] && echo 0 || echo 1)" \
   "after the first, one event per NOTIFY of the batch, the same txids ($(wc -w <<<"$notified") notifications)"
is "$(q "SELECT failed FROM moverz_batch.publish_status()")" 0 "Nchan took every event"

# 2. A finished batch: 410 with its final state; the owner only.
mb_http GET "$api/api/batches/$batch/stream" "$token_a" -H 'Accept: text/event-stream'
is "$HTTP_STATUS:$(jq -r '.details | fromjson | .status' <<<"$HTTP_BODY")" "410:PARTIAL" \
   "a finished batch's stream: 410 Gone, its final state in the details"
mb_http GET "$api/api/batches/$batch/stream" "$token_b" -H 'Accept: text/event-stream'
is "$HTTP_STATUS" 404 "another user's token: 404, as GET /api/batches/:id"
mb_http GET "$api/api/batches/$batch/stream" "" -H 'Accept: text/event-stream'
is "$HTTP_STATUS" 401 "no token: 401"
mb_http GET "$api/api/batches/$batch/stream?access_token=$token_b" "" -H 'Accept: text/event-stream'
is "$HTTP_STATUS" 404 "the token as ?access_token= (EventSource, WebSocket): 404 for another user's"

# 3. A late subscriber gets the current state first (processing paused: the
#    state stays as created).
q "SELECT moverz_batch.pause_processing()" >/dev/null
mb_http_json POST "$api/api/batches" "$token_a" \
    "{\"projectId\": \"$project\", \"imageUrls\": [{\"filename\": \"e.jpg\", \"url\": \"https://img.example.com/e.jpg\"}]}"
late=$(jq -r .batchId <<<"$HTTP_BODY")
sleep 0.5
curl -sN --max-time 2 -H 'Accept: text/event-stream' "$api/api/batches/$late/stream?access_token=$token_a" \
    >"$work/late.out" 2>/dev/null
is "$(sed -n 's/^data: //p' "$work/late.out" | head -1 | jq -c '[.batchId, .status, .counts.total]')" \
   "[\"$late\",\"QUEUED\",1]" "a late subscriber gets the current state first"
q "SELECT moverz_batch.resume_processing()" >/dev/null

# 4. Nobody publishes through the public server.
mb_http POST "$api/pub/batch/$late" "" -H 'Content-Type: application/json' --data '{"status": "COMPLETED"}'
is "$HTTP_STATUS" 404 "no publisher location on the public server"
mb_http POST "$api/api/batches/$late/stream?access_token=$token_a" "" -H 'Content-Type: application/json' \
    --data '{"status": "COMPLETED"}'
ok "$([ "$HTTP_STATUS" -ge 400 ] && echo 0 || echo 1)" "a POST to the stream URL publishes nothing ($HTTP_STATUS)"

# 5. CORS: the configured origin only.
mb_http OPTIONS "$api/api/batches" "" -H 'Origin: https://app.example.com' \
    -H 'Access-Control-Request-Method: POST' -H 'Access-Control-Request-Headers: authorization, content-type'
is "$HTTP_STATUS|$(mb_http_header Access-Control-Allow-Origin)|$(mb_http_header Access-Control-Allow-Headers)" \
   "204|https://app.example.com|Authorization, Content-Type, Idempotency-Key, Last-Event-ID" \
   "a preflight from an allowed origin: 204 with the CORS headers"
mb_http GET "$api/api/batches/$batch" "$token_a" -H 'Origin: https://evil.example.net'
is "$HTTP_STATUS|$(mb_http_header Access-Control-Allow-Origin)" "200|" \
   "another origin: no Access-Control-Allow-Origin (the browser keeps the answer from the page)"
mb_http GET "$api/api/batches/$late/stream?access_token=$token_a" "" -H 'Accept: text/event-stream' \
    -H 'Origin: https://evil.example.net' --max-time 2
is "$HTTP_STATUS" 403 "a stream from another origin: 403"
q "SELECT moverz_batch.pause_processing()" >/dev/null
mb_http_json POST "$api/api/batches" "$token_a" \
    "{\"projectId\": \"$project\", \"imageUrls\": [{\"filename\": \"o.jpg\", \"url\": \"https://img.example.com/o.jpg\"}]}"
open=$(jq -r .batchId <<<"$HTTP_BODY")
mb_http GET "$api/api/batches/$open/stream?access_token=$token_a" "" -H 'Accept: text/event-stream' \
    -H 'Origin: https://app.example.com' --max-time 2
is "$HTTP_STATUS|$(tr -d '\r' <"$MB_HTTP_DIR/last.headers" | grep -ci '^access-control-allow-origin: https://app.example.com$')" "200|1" \
   "a stream from the allowed origin: 200, Access-Control-Allow-Origin once (EventSource refuses two)"
q "SELECT moverz_batch.resume_processing()" >/dev/null
mb_http DELETE "$api/api/batches/$late" "$token_a" -H 'Origin: https://app.example.com'
is "$HTTP_STATUS|$(mb_http_header Allow)|$(mb_http_header Access-Control-Allow-Origin)" \
   "405|GET, HEAD|https://app.example.com" "a 405 to the allowed origin keeps its CORS headers"
mb_http GET "$api/api/batches/$(tr a-f A-F <<<"$late")/stream?access_token=$token_a" "" -H 'Accept: text/event-stream' --max-time 2
is "$HTTP_STATUS" 404 "a stream URL with the id in upper case: 404 (no channel has that name)"

# 6. The operators' API: its own role; its list sizes reach the SQL.
token_op=$(mb_jwt "{\"role\": \"moverz_operator\", \"sub\": \"ops-$$\", \"exp\": $exp}")
mb_http GET "$api/rpc/admin_batches?maxRows=1" "$token_op"
is "$HTTP_STATUS:$(jq '.batches | length' <<<"$HTTP_BODY")" "200:1" "admin_batches?maxRows=1: one batch"
mb_http GET "$api/rpc/admin_batches?maxRows=0" "$token_op"
is "$HTTP_STATUS:$(jq -r .message <<<"$HTTP_BODY")" "400:maxRows must be between 1 and 500 (got 0)" \
   "maxRows=0: 400 naming the parameter and the rule"
mb_http GET "$api/rpc/admin_overview" "$token_a"
is "$HTTP_STATUS" 403 "a customer token on the operators' API: 403"

# 7. Nchan down: the pipeline goes on, one WARNING in the log.
mb_http_stop_nginx() { kill "$MB_NGINX_PID" && wait "$MB_NGINX_PID" 2>/dev/null; MB_NGINX_PID=; }
mb_http_stop_nginx
before=$(grep -c 'progress events are not delivered' "$MB_DIR/server.log")
down=$(submit "$project" "$user_a" "$(photo_assets 6 'https://img.example.com/down{i}.jpg?items=box:1:0.1')")
wait_finished "$down" 30
is "$(progress "$down" '{status}')" COMPLETED "with Nchan down the batch completes"
is "$(($(grep -c 'progress events are not delivered' "$MB_DIR/server.log") - before))" 1 \
   "and the server logs it once, not per event"

done_testing
