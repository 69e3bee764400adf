#!/usr/bin/env bash
# 40_http_api: the seed's API over HTTP, through a real nginx and a real
# PostgREST 12.0.2 in front of the background workers: the smoke flow with
# the seed's URLs (202 + Location, poll until PARTIAL, inventorySummary),
# PostgREST's own URLs giving the same answers, projects, paged lists of
# batches, Idempotency-Key, retry.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/../http/lib_http.sh"
trap mb_http_stop EXIT
mb_http_install || { echo "Bail out! cannot install nginx and PostgREST"; exit 1; }
mb_http_start || { echo "Bail out! cannot start nginx and PostgREST"; exit 1; }

user="http-api-$$-$RANDOM"
token=$(mb_jwt "{\"role\": \"moverz_user\", \"sub\": \"$user\", \"exp\": $(($(date +%s) + 600))}")
api=$MB_API_URL

# Projects.
mb_http_json POST "$api/api/projects" "$token" '{"name": "Move Paris -> Lyon"}'
is "$HTTP_STATUS" 201 "POST /api/projects: 201 Created"
project=$(jq -r .project.id <<<"$HTTP_BODY")
is "$(jq -c '[.success, .project.name]' <<<"$HTTP_BODY")" '[true,"Move Paris -> Lyon"]' "project body"
is "$(q "SELECT user_id FROM moverz_batch.projects WHERE id = '$project'")" "$user" \
   "the project belongs to the token's sub"
mb_http GET "$api/api/projects" "$token"
is "$HTTP_STATUS:$(jq -c '[.total, [.projects[].id]]' <<<"$HTTP_BODY")" "200:[1,[\"$project\"]]" \
   "GET /api/projects: my project, and only it"

# The seed's smoke flow: 3 photos, one unreachable.
body='{"projectId": "'$project'", "imageUrls": [
  {"filename": "salon.jpg", "filePath": "/p/salon.jpg", "roomType": "living_room",
   "url": "https://img.example.com/salon.jpg?items=sofa:1:2.5,armchair:2:0.8,table:1:0.6"},
  {"filename": "chambre.jpg", "filePath": "/p/chambre.jpg",
   "url": "https://img.example.com/chambre.jpg?items=bed:1:1.9,wardrobe:2:1.1"},
  {"filename": "cuisine.jpg", "filePath": "/p/cuisine.jpg", "roomType": "kitchen",
   "url": "https://unreachable.invalid/cuisine.jpg"}]}'
mb_http_json POST "$api/api/batches" "$token" "$body"
is "$HTTP_STATUS" 202 "POST /api/batches: 202 Accepted"
batch=$(jq -r .batchId <<<"$HTTP_BODY")
is "$(jq -c 'del(.batchId)' <<<"$HTTP_BODY")" '{"success":true,"photosCount":3,"jobsEnqueued":3}' \
   "the seed's body {success, batchId, photosCount, jobsEnqueued}"
is "$(mb_http_header Location)" "/api/batches/$batch" "Location: /api/batches/:id"
is "$(mb_http_header Content-Type)" "application/json; charset=utf-8" "JSON answer"

location=$(mb_http_header Location)
deadline=$((SECONDS + 30))
while :; do
    mb_http GET "$api$location" "$token"
    [ "$(jq -r '.batch.inventorySummary != null' <<<"$HTTP_BODY")" = true ] && break
    [ $SECONDS -ge $deadline ] && break
    sleep 0.2
done
is "$HTTP_STATUS" 200 "GET /api/batches/:id: 200"
is "$(jq -r '[.success, .batch.batchId, .batch.status, .batch.progress] | @tsv' <<<"$HTTP_BODY")" \
   "$(printf 'true\t%s\tPARTIAL\t100' "$batch")" "polled until PARTIAL, progress 100"
is "$(jq -c .batch.counts <<<"$HTTP_BODY")" \
   '{"total":3,"failed":1,"queued":0,"completed":2,"processing":0}' "counts"
is "$(jq -c '[.batch.photos[] | [.filename, .status, .roomType, .errorCode]]' <<<"$HTTP_BODY")" \
   '[["salon.jpg","DONE","living_room",null],["chambre.jpg","DONE","bedroom",null],["cuisine.jpg","ERROR","kitchen","NETWORK_ERROR"]]' \
   "photos in the seed's shape"
is "$(jq -c .batch.inventorySummary <<<"$HTTP_BODY")" \
   '{"rooms":[{"roomType":"bedroom","volume_m3":4.1,"itemsCount":3},{"roomType":"living_room","volume_m3":4.7,"itemsCount":4}],"totalItems":7,"totalVolume":8.8}' \
   "inventorySummary of the 2 DONE photos"
is "$(jq -cS .batch <<<"$HTTP_BODY")" "$(q "SELECT moverz_batch.batch_progress('$batch')" | jq -cS .)" \
   "the batch object is the SQL API's batch_progress"
seed_body=$HTTP_BODY

# PostgREST's URL style, through nginx and directly.
mb_http GET "$api/rpc/get_batch?id=$batch" "$token"
is "$HTTP_STATUS:$HTTP_BODY" "200:$seed_body" "GET /rpc/get_batch?id= through nginx: same answer"
mb_http GET "$MB_PGRST_URL/rpc/get_batch?id=$batch" "$token" --unix-socket "$MB_PGRST_SOCKET"
is "$HTTP_STATUS:$HTTP_BODY" "200:$seed_body" "GET /rpc/get_batch?id= on PostgREST itself: same answer"
mb_http GET "$api/rpc/get_batch?id=$batch&photosLimit=1&photosOffset=2" "$token"
is "$(jq -c '[.batch.counts.total, [.batch.photos[].filename]]' <<<"$HTTP_BODY")" '[3,["cuisine.jpg"]]' \
   "photos paged with photosLimit/photosOffset, counts still whole"

# Idempotency-Key.
small='{"projectId": "'$project'", "imageUrls": [{"filename": "a.jpg", "url": "https://img.example.com/a.jpg"}]}'
key="idem-$$-$RANDOM"
mb_http_json POST "$api/api/batches" "$token" "$small" -H "Idempotency-Key: $key"
first=$HTTP_BODY
is "$HTTP_STATUS:$(mb_http_header Idempotent-Replayed)" "202:" "Idempotency-Key, first call: 202"
mb_http_json POST "$api/api/batches" "$token" "$small" -H "Idempotency-Key: $key"
is "$HTTP_STATUS:$HTTP_BODY" "202:$first" "same key, same body: the same answer, the same batch"
is "$(mb_http_header Idempotent-Replayed):$(mb_http_header Location)" \
   "true:/api/batches/$(jq -r .batchId <<<"$first")" "the replay says so, Location unchanged"
mb_http_json POST "$api/rpc/create_batch" "$token" "${small/a.jpg\"/b.jpg\"}" -H "Idempotency-Key: $key"
is "$HTTP_STATUS:$HTTP_CODE" "409:23505" "same key, another body: 409"
is "$(jq -r .message <<<"$HTTP_BODY")" "Idempotency-Key '$key' was already used with a different payload" \
   "the 409 names the header"
is "$(q "SELECT count(*) FROM moverz_batch.batches WHERE user_id = '$user'")" 2 \
   "two batches in all (smoke, idempotent)"

# Listing my batches: newest first, paged.
mb_http GET "$api/api/batches?perPage=1" "$token"
is "$HTTP_STATUS:$(jq -c '[.total, .page, .perPage, [.batches[].batchId]]' <<<"$HTTP_BODY")" \
   "200:[2,1,1,[\"$(jq -r .batchId <<<"$first")\"]]" "GET /api/batches?perPage=1: the newest"
mb_http GET "$api/api/batches?perPage=1&page=2" "$token"
is "$(jq -c '[.batches[] | [.batchId, .status, .progress, .counts.failed]]' <<<"$HTTP_BODY")" \
   "[[\"$batch\",\"PARTIAL\",100,1]]" "page 2: the smoke batch, with its status and counts"
mb_http GET "$api/api/batches?page=3&perPage=1" "$token"
is "$(jq -c .batches <<<"$HTTP_BODY")" "[]" "page 3: empty"
mb_http GET "$api/api/batches?perPage=0" "$token"
is "$HTTP_STATUS:$(jq -r .message <<<"$HTTP_BODY")" "400:perPage must be an integer between 1 and 100" \
   "perPage out of range: 400"

# Retry: the failed photo goes back to PENDING, the batch ends PARTIAL again
# and gets a second inventory.
mb_http POST "$api/api/batches/$batch/retry" "$token"
is "$HTTP_STATUS:$(jq -c . <<<"$HTTP_BODY")" "202:{\"batchId\":\"$batch\",\"success\":true,\"photosRequeued\":1}" \
   "POST /api/batches/:id/retry: 202, one photo requeued"
wait_finished "$batch" 30
ok $? "the retried batch finishes again"
mb_http_json POST "$api/rpc/retry_batch" "$token" "{\"id\": \"$batch\"}"
is "$HTTP_STATUS:$(jq -r .photosRequeued <<<"$HTTP_BODY")" "202:1" "POST /rpc/retry_batch: the same"
wait_finished "$batch" 30
ok $? "finished again"
is "$(q "SELECT count(*) FROM moverz_batch.inventory_sync_jobs WHERE batch_id = '$batch'")" 3 \
   "one inventory sync per generation"
mb_http GET "$api/api/batches/$batch" "$token"
is "$(jq -r '[.batch.status, .batch.inventorySummary.totalItems] | @tsv' <<<"$HTTP_BODY")" \
   "$(printf 'PARTIAL\t7')" "PARTIAL, the same inventory"
# Cancel: POST /api/batches/:id/cancel (processing paused, so that it has
# something to cancel); a finished batch cannot be cancelled (409).
q "SELECT moverz_batch.pause_processing()" >/dev/null
mb_http_json POST "$api/api/batches" "$token" \
    "{\"projectId\": \"$project\", \"imageUrls\": [{\"filename\": \"c.jpg\", \"url\": \"https://img.example.com/c.jpg\"}]}"
cancelled=$(jq -r .batchId <<<"$HTTP_BODY")
mb_http POST "$api/api/batches/$cancelled/cancel" "$token"
is "$HTTP_STATUS:$(jq -c '[.success, .photosCancelled]' <<<"$HTTP_BODY")" "200:[true,1]" \
   "POST /api/batches/:id/cancel: 200, one photo cancelled"
q "SELECT moverz_batch.resume_processing()" >/dev/null
mb_http GET "$api/api/batches/$cancelled" "$token"
is "$(jq -r .batch.status <<<"$HTTP_BODY")" CANCELLED "the batch is CANCELLED"
mb_http POST "$api/api/batches/$batch/cancel" "$token"
is "$HTTP_STATUS:$(jq -r .message <<<"$HTTP_BODY")" "409:batch $batch is already PARTIAL and cannot be cancelled" \
   "a finished batch: 409 with the reason"
mb_http POST "$api/api/batches/$cancelled/cancel" "$(mb_jwt "{\"role\": \"moverz_user\", \"sub\": \"other-$$\", \"exp\": $(($(date +%s) + 600))}")"
is "$HTTP_STATUS" 404 "another user's batch: 404"

# 405 says what is allowed.
mb_http DELETE "$api/api/batches/$batch" "$token"
is "$HTTP_STATUS|$(mb_http_header Allow)" "405|GET, HEAD" "DELETE /api/batches/:id: 405, Allow: GET, HEAD"
mb_http GET "$api/api/batches/$batch/cancel" "$token"
is "$HTTP_STATUS|$(mb_http_header Allow)" "405|POST" "GET .../cancel: 405, Allow: POST"
mb_http PUT "$api/api/batches" "$token"
is "$HTTP_STATUS|$(mb_http_header Allow)" "405|GET, HEAD, POST" "PUT /api/batches: 405, Allow: GET, HEAD, POST"

# The seed's curl (x-user-id, no token): 401 that says what is needed.
mb_http_json POST "$api/api/batches" "" "{\"projectId\": \"$project\", \"imageUrls\": []}" -H "x-user-id: $user"
is "$HTTP_STATUS|$(jq -r '.message + " / " + .hint' <<<"$HTTP_BODY")" \
   "401|a JWT is required: send \"Authorization: Bearer <token>\" / The user is the token's \"sub\" claim (HS256, claims role, sub and exp); an x-user-id header is not read." \
   "no token (the seed's x-user-id header): 401, a JWT is required, with the hint"

# HIGH priority: only for roles granted moverz_priority.
before=$(q "SELECT count(*) FROM moverz_batch.batches WHERE user_id = '$user'")
mb_http_json POST "$api/api/batches" "$token" \
    "{\"projectId\": \"$project\", \"priority\": \"HIGH\", \"imageUrls\": [{\"filename\": \"h.jpg\", \"url\": \"https://img.example.com/h.jpg\"}]}"
is "$HTTP_STATUS|$(jq -r .message <<<"$HTTP_BODY")" "403|priority HIGH is reserved to roles granted moverz_priority" \
   "a customer asking for HIGH: 403 naming the field"
is "$(q "SELECT count(*) FROM moverz_batch.batches WHERE user_id = '$user'")" "$before" "... and nothing written"
q "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'e2e_vip_user') THEN
     CREATE ROLE e2e_vip_user NOLOGIN IN ROLE moverz_user, moverz_priority; END IF; END \$\$;
   GRANT e2e_vip_user TO moverz_authenticator" >/dev/null
vip=$(mb_jwt "{\"role\": \"e2e_vip_user\", \"sub\": \"$user\", \"exp\": $(($(date +%s) + 600))}")
mb_http_json POST "$api/api/batches" "$vip" \
    "{\"projectId\": \"$project\", \"priority\": \"HIGH\", \"imageUrls\": [{\"filename\": \"h.jpg\", \"url\": \"https://img.example.com/h.jpg\"}]}"
is "$HTTP_STATUS|$(q "SELECT priority FROM moverz_batch.batches WHERE id = '$(jq -r .batchId <<<"$HTTP_BODY")'")" "202|HIGH" \
   "a role that is a member of moverz_priority: HIGH accepted"

# Client errors do not flood the server log: a 400 is one line there,
# without PostgREST's statement (which holds the whole request body).
marker="flood-$$-$RANDOM"
lines=$(wc -l <"$MB_DIR/server.log")
mb_http_json POST "$api/api/batches" "$token" \
    "{\"projectId\": \"$project\", \"imageUrls\": [{\"filename\": \"$marker.jpg\", \"url\": \"ftp://x\"}]}"
sleep 0.3
is "$HTTP_STATUS|$(tail -n +"$((lines + 1))" "$MB_DIR/server.log" | grep -c "$marker")|$(tail -n +"$((lines + 1))" "$MB_DIR/server.log" | grep -c 'ERROR:')" \
   "400|0|1" "a 400: one ERROR line in the server log, without the request's statement or body"
done_testing
