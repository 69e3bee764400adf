#!/usr/bin/env bash
# 42_http_hostile: hostile input over HTTP (nginx + PostgREST).  Filenames
# and URLs shaped like SQL injection are stored and answered as data;
# invalid JSON, a wrong content type, an oversized body, a batch above the
# maximum size and every invalid field get a clear 4xx naming the field,
# in PostgREST's JSON error shape, and write nothing.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/../http/lib_http.sh"
trap mb_http_stop EXIT
mb_http_install || { echo "Bail out! cannot install nginx and PostgREST"; exit 1; }
mb_http_start || { echo "Bail out! cannot start nginx and PostgREST"; exit 1; }

user="http-hostile-$$-$RANDOM"
token=$(mb_jwt "{\"role\": \"moverz_user\", \"sub\": \"$user\", \"exp\": $(($(date +%s) + 600))}")
api=$MB_API_URL
mb_http_json POST "$api/api/projects" "$token" '{"name": "x'"'"'); DROP TABLE moverz_batch.projects; --"}'
is "$HTTP_STATUS" 201 "a project named like an injection"
project=$(jq -r .project.id <<<"$HTTP_BODY")
is "$(q "SELECT name FROM moverz_batch.projects WHERE id = '$project'")" \
   "x'); DROP TABLE moverz_batch.projects; --" "its name is stored as data"

# SQL-injection-shaped filenames and URLs are data.
assets=$(jq -nc '[
  {filename: "x'"'"'); DROP TABLE moverz_batch.photos; --.jpg", filePath: "/tmp/$(id)",
   url: "https://img.example.com/a.jpg?id=1%27%20OR%20%271%27=%271&items=sofa:1:1"},
  {filename: "\"; DELETE FROM moverz_batch.batches WHERE \"\"=\"", roomType: "kitchen",
   url: "https://img.example.com/b.jpg?q='"'"';SELECT+pg_sleep(10);--"},
  {filename: "salon été 🛋️ <script>alert(1)</script>.jpg",
   url: "https://img.example.com/%00%27%22/c.jpg?x=$(id)&y=`id`"}]')
mb_http_json POST "$api/api/batches" "$token" "{\"projectId\": \"$project\", \"imageUrls\": $assets}"
is "$HTTP_STATUS" 202 "a batch of injection-shaped photos is accepted"
batch=$(jq -r .batchId <<<"$HTTP_BODY")
is "$(q "SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object('filename', filename, 'filePath', file_path,
                                                              'url', url, 'roomType', room_type)) ORDER BY position)
           FROM moverz_batch.photos WHERE batch_id = '$batch'" | jq -cS 'map(del(.roomType))')" \
   "$(jq -cS 'map(del(.roomType))' <<<"$assets")" \
   "filenames, paths and URLs stored verbatim"
is "$(q "SELECT count(*) FROM pg_tables WHERE schemaname = 'moverz_batch' AND tablename IN ('projects', 'photos', 'batches')")" 3 \
   "every table still there"
wait_finished "$batch" 30
ok $? "the batch is processed"
mb_http GET "$api/api/batches/$batch" "$token"
is "$(jq -c '[.batch.photos[].filename]' <<<"$HTTP_BODY")" "$(jq -c '[.[].filename]' <<<"$assets")" \
   "the filenames come back as sent"
is "$(jq -r '.batch.counts.completed' <<<"$HTTP_BODY")" 3 "and were analysed"

# Bad requests: status, error code, message; nothing written.
before=$(q "SELECT count(*) FROM moverz_batch.batches WHERE user_id = '$user'"):$(q "SELECT count(*) FROM moverz_batch.photos WHERE user_id = '$user'")
one='{"filename": "a.jpg", "url": "https://img.example.com/a.jpg"}'
# bad NAME STATUS CODE MESSAGE BODY [CURL-ARG...]: POST /api/batches with BODY.
bad() {
    local name=$1 status=$2 code=$3 message=$4 body=$5
    shift 5
    mb_http POST "$api/api/batches" "$token" --data-binary "$body" "$@"
    is "$HTTP_STATUS|$(jq -r '.code + "|" + .message' <<<"$HTTP_BODY" 2>/dev/null)" "$status|$code|$message" "$name"
}
json=(-H 'Content-Type: application/json')
bad "invalid JSON: 400" 400 PGRST102 "Empty or invalid json" '{"projectId": "'$project'", "imageUrls": [' "${json[@]}"
bad "text/plain: 415" 415 HTTP415 "Content-Type must be application/json" "{\"projectId\": \"$project\", \"imageUrls\": [$one]}" \
    -H 'Content-Type: text/plain'
bad "a form: 415" 415 HTTP415 "Content-Type must be application/json" "projectId=$project"
bad "the body a JSON array: 400" 400 22023 "the request body must be a JSON object {\"projectId\", \"imageUrls\", \"uploads\"}, not array" \
    "[{\"projectId\": \"$project\", \"imageUrls\": [$one]}]" "${json[@]}"
bad "projectId missing: 400" 400 22023 "projectId is required and must be a string" "{\"imageUrls\": [$one]}" "${json[@]}"
bad "projectId not a UUID: 400" 400 22023 "projectId must be a UUID" \
    "{\"projectId\": \"1 OR 1=1\", \"imageUrls\": [$one]}" "${json[@]}"
bad "imageUrls missing: 400" 400 22004 "imageUrls must not be null" "{\"projectId\": \"$project\"}" "${json[@]}"
bad "imageUrls an object: 400" 400 22023 "imageUrls must be a JSON array, not object" \
    "{\"projectId\": \"$project\", \"imageUrls\": $one}" "${json[@]}"
bad "imageUrls empty: 400" 400 22023 "imageUrls must contain at least one photo" \
    "{\"projectId\": \"$project\", \"imageUrls\": []}" "${json[@]}"
bad "a javascript: URL: 400" 400 22023 "imageUrls[1].url must be an absolute http or https URL" \
    "{\"projectId\": \"$project\", \"imageUrls\": [$one, {\"filename\": \"b.jpg\", \"url\": \"javascript:alert(1)\"}]}" "${json[@]}"
bad "a file: URL: 400" 400 22023 "imageUrls[0].url must be an absolute http or https URL" \
    "{\"projectId\": \"$project\", \"imageUrls\": [{\"filename\": \"b.jpg\", \"url\": \"file:///etc/passwd\"}]}" "${json[@]}"
bad "filename missing: 400" 400 22023 "imageUrls[0].filename is required and must be a string" \
    "{\"projectId\": \"$project\", \"imageUrls\": [{\"url\": \"https://img.example.com/a.jpg\"}]}" "${json[@]}"
bad "filename with a control character: 400" 400 22023 "imageUrls[0].filename must not contain control characters" \
    "{\"projectId\": \"$project\", \"imageUrls\": [{\"filename\": \"a\\u0001b.jpg\", \"url\": \"https://img.example.com/a.jpg\"}]}" "${json[@]}"
long=$(printf 'a%.0s' $(seq 300))
bad "filename over 255 bytes: 400" 400 22001 "imageUrls[0].filename must be at most 255 bytes (got 300)" \
    "{\"projectId\": \"$project\", \"imageUrls\": [{\"filename\": \"$long\", \"url\": \"https://img.example.com/a.jpg\"}]}" "${json[@]}"
bad "unknown roomType: 400" 400 22023 "imageUrls[0].roomType \"'; DROP TABLE x; --\" is not an accepted room type" \
    "{\"projectId\": \"$project\", \"imageUrls\": [{\"filename\": \"a.jpg\", \"url\": \"https://img.example.com/a.jpg\", \"roomType\": \"'; DROP TABLE x; --\"}]}" "${json[@]}"
is "$(jq -r .hint <<<"$HTTP_BODY" | cut -c1-30)" "Accepted room types: attic, ba" "the hint lists the accepted room types"
bad "unknown priority: 400" 400 22023 "priority must be one of HIGH, NORMAL, LOW (got 'URGENT')" \
    "{\"projectId\": \"$project\", \"priority\": \"URGENT\", \"imageUrls\": [$one]}" "${json[@]}"
bad "Idempotency-Key over 255 bytes: 400" 400 22023 "Idempotency-Key must be a non-empty string of at most 255 bytes" \
    "{\"projectId\": \"$project\", \"imageUrls\": [$one]}" "${json[@]}" -H "Idempotency-Key: $long"
max=$(q "SHOW moverz_batch.max_batch_size")
over=$(jq -nc --arg p "$project" --argjson n "$((max + 1))" \
          '{projectId: $p, imageUrls: [range($n) | {filename: "p\(.).jpg", url: "https://img.example.com/p\(.).jpg"}]}')
bad "a batch above the maximum size: 413" 413 PT413 "imageUrls has $((max + 1)) photos, more than the maximum batch size of $max" \
    "$over" "${json[@]}"
head -c 5000000 /dev/zero | tr '\0' ' ' >"$MB_HTTP_DIR/big.json"
mb_http POST "$api/api/batches" "$token" "${json[@]}" --data-binary "@$MB_HTTP_DIR/big.json"
is "$HTTP_STATUS|$HTTP_CODE" "413|HTTP413" "a 5 MB body: 413 from nginx"
is "$(q "SELECT count(*) FROM moverz_batch.batches WHERE user_id = '$user'"):$(q "SELECT count(*) FROM moverz_batch.photos WHERE user_id = '$user'")" \
   "$before" "no bad request wrote anything"

# Issue #20: image URLs of the operator's network, a 1 MB value echoed, the
# daily photo quota.
bad "an image URL of the cloud metadata address: 400" 400 22023 \
    "imageUrls[0].url must not name a loopback, private, link-local or reserved address" \
    "{\"projectId\": \"$project\", \"imageUrls\": [{\"filename\": \"a.jpg\", \"url\": \"http://169.254.169.254/latest/meta-data/\"}]}" "${json[@]}"
{ printf '{"projectId": "%s", "priority": "' "$project"; head -c 200000 /dev/zero | tr '\0' 'P'
  printf '", "imageUrls": [%s]}' "$one"; } >"$MB_HTTP_DIR/prio.json"
mb_http POST "$api/api/batches" "$token" "${json[@]}" --data-binary "@$MB_HTTP_DIR/prio.json"
is "$HTTP_STATUS|$(jq -r .message <<<"$HTTP_BODY")" \
   "400|priority must be one of HIGH, NORMAL, LOW (got '$(printf 'P%.0s' $(seq 64))'…)" \
   "a 200 kB priority: 400, echoed 64 characters long"
is "$(grep -c PPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPP "$MB_DIR/server.log")" 0 \
   "... and not written whole into the server log"
q "ALTER SYSTEM SET moverz_batch.max_photos_per_user_per_day = 2" >/dev/null; q "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
three="[$one, {\"filename\": \"q2.jpg\", \"url\": \"https://img.example.com/q2.jpg\"}, {\"filename\": \"q3.jpg\", \"url\": \"https://img.example.com/q3.jpg\"}]"
mb_http_json POST "$api/api/batches" "$token" "{\"projectId\": \"$project\", \"imageUrls\": $three}"
is "$HTTP_STATUS|$HTTP_CODE" "429|53400" "over the daily photo quota: 429"
ok "$([ "$(mb_http_header Retry-After)" -ge 1 ] 2>/dev/null && echo 0 || echo 1)" \
   "... with Retry-After ($(mb_http_header Retry-After) s)"
is "$(jq -r .message <<<"$HTTP_BODY" | grep -c 'moverz_batch.max_photos_per_user_per_day')" 1 "... naming the quota"
q "ALTER SYSTEM RESET moverz_batch.max_photos_per_user_per_day" >/dev/null; q "SELECT pg_reload_conf()" >/dev/null

# Hostile paths and parameters.
mb_http GET "$api/api/batches/$batch%27%20OR%20%271%27=%271" "$token"
is "$HTTP_STATUS" 404 "an injection in the path: 404"
mb_http GET "$api/rpc/get_batch?id=$batch'%20OR%201=1--" "$token"
is "$HTTP_STATUS|$HTTP_CODE" "400|22P02" "an injection in ?id=: 400, not a UUID"
mb_http GET "$api/api/batches?perPage=1%3BDROP%20TABLE%20x" "$token"
is "$HTTP_STATUS|$HTTP_CODE" "400|22P02" "an injection in ?perPage=: 400"
done_testing
