#!/usr/bin/env bash
# 46_uploads: direct upload of photo files (issue #21), the database store,
# through the real nginx + PostgREST in front of the workers: signed
# single-use upload URLs (POST /api/uploads, PUT /api/uploads/:id?token=),
# every refusal (wrong token 403, used twice 409, expired 410, oversize 413
# from nginx and from PostgreSQL, not an image 415), uploads in
# POST /api/batches (another user's refused), 5 files of which 2 are the same
# bytes: 4 AI calls, the fake receiving base64 whose SHA-256 is the file's,
# the duplicate counted once; bytes gone -> AI_ERROR not retried; and the
# lifecycle: nothing left behind after purge.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/../http/lib_http.sh"
W=$(mktemp -d /tmp/mb_uploads.XXXXXX)
chmod 755 "$W"
cleanup() { mb_http_stop; rm -rf "$W"; }
trap cleanup EXIT
mb_http_install || { echo "Bail out! cannot install nginx and PostgREST"; exit 1; }
mb_http_start || { echo "Bail out! cannot start nginx and PostgREST"; exit 1; }

api=$MB_API_URL
exp=$(($(date +%s) + 600))
user="uploads-$$-$RANDOM"
other="uploads-other-$$-$RANDOM"
token=$(mb_jwt "{\"role\": \"moverz_user\", \"sub\": \"$user\", \"exp\": $exp}")
token2=$(mb_jwt "{\"role\": \"moverz_user\", \"sub\": \"$other\", \"exp\": $exp}")
png() { node "$MB_ROOT/test/tools/make_png.js" "$W/$1" "${@:2}"; }
sha() { sha256sum "$W/$1" | cut -d' ' -f1; }
size() { stat -c %s "$W/$1"; }
bytes_stored() { q "SELECT count(*) FROM moverz_batch_internal.upload_bytes"; }
stored_before=$(bytes_stored)

mb_http_json POST "$api/api/projects" "$token" '{"name": "uploads"}'
project=$(jq -r .project.id <<<"$HTTP_BODY")
mb_http_json POST "$api/api/projects" "$token2" '{"name": "theirs"}'
project2=$(jq -r .project.id <<<"$HTTP_BODY")

# five files, the fourth the same bytes as the first under another name
png salon.png 64 48 1; png chambre.png 80 60 2; png cuisine.png 40 40 3; png bureau.png 32 32 4
cp "$W/salon.png" "$W/salon-copy.png"
files=(salon.png chambre.png cuisine.png salon-copy.png bureau.png)
spec=$(for f in "${files[@]}"; do printf '{"filename": "%s", "contentType": "image/png", "size": %s}\n' "$f" "$(size "$f")"; done \
       | jq -sc .)

# --- POST /api/uploads ------------------------------------------------------
mb_http_json POST "$api/api/uploads" "$token" "{\"projectId\": \"$project\", \"files\": $spec}"
is "$HTTP_STATUS" 201 "POST /api/uploads: 201"
ups=$HTTP_BODY
is "$(jq -c '[.success, (.uploads | length), ([.uploads[].method] | unique), ([.uploads[].filename])]' <<<"$ups")" \
   '[true,5,["PUT"],["salon.png","chambre.png","cuisine.png","salon-copy.png","bureau.png"]]' \
   "one upload per file, in order, each a PUT"
is "$(jq -r '.uploads[0].headers["Content-Type"]' <<<"$ups")" image/png "headers: the Content-Type to send"
ok $(jq -e '.uploads | all(.url | test("^/api/uploads/[0-9a-f-]{36}[?]token=[0-9a-f]{64}$"))' <<<"$ups" >/dev/null; echo $?) \
   "each URL: /api/uploads/<uploadId>?token=<64 hex>"
ttl=$(jq -r '.uploads[0].expiresAt' <<<"$ups")
is "$(q "SELECT round(extract(epoch FROM '$ttl'::timestamptz - now()) / 60)")" 15 \
   "expiresAt: in moverz_batch.upload_url_ttl, 15 minutes"
is "$(q "SELECT count(*) FROM moverz_batch.uploads WHERE user_id = '$user' AND token_sha256 IS NOT NULL
          AND uploaded_at IS NULL")" 5 "5 uploads waiting, their tokens kept as SHA-256 only"
url() { jq -r ".uploads[$1].url" <<<"$ups"; }
id() { jq -r ".uploads[$1].uploadId" <<<"$ups"; }
put() {   # put URL FILE [CONTENT-TYPE]
    mb_http PUT "$api$1" "" -H "Content-Type: ${3:-image/png}" --data-binary "@$W/$2"
}

# --- PUT the bytes -----------------------------------------------------------
for i in 0 1 2 3 4; do
    put "$(url $i)" "${files[$i]}"
    is "$HTTP_STATUS:$(jq -r .sha256 <<<"$HTTP_BODY")" "200:$(sha "${files[$i]}")" \
       "PUT ${files[$i]}: 200, the SHA-256 of its bytes"
done
is "$(q "SELECT string_agg(u.checksum || ':' || length(b.bytes), ',' ORDER BY u.created_at, u.id)
          FROM moverz_batch.uploads u JOIN moverz_batch_internal.upload_bytes b ON b.upload_id = u.id
         WHERE u.user_id = '$user' AND u.filename = 'salon.png'")" "$(sha salon.png):$(size salon.png)" \
   "the bytes are stored in the database, checksum = their SHA-256"
put "$(url 0)" salon.png
is "$HTTP_STATUS:$HTTP_CODE" 409:PT409 "the same URL again: 409 (one upload per URL)"
put "/api/uploads/$(id 1)?token=$(printf '%064d' 0)" chambre.png
is "$HTTP_STATUS:$HTTP_CODE" 403:PT403 "a wrong token: 403"
put "/api/uploads/$(id 1)" chambre.png
is "$HTTP_STATUS" 403 "no token: 403"
mb_http GET "$api$(url 1)" ""
is "$HTTP_STATUS:$(mb_http_header Allow)" "405:PUT" "GET on an upload URL: 405, Allow: PUT"

# refusals on fresh uploads: expired, larger than announced, not an image,
# not the announced type, over moverz_batch.max_upload_bytes (nginx)
printf 'this is no image\n' >"$W/notes.txt"
png big.png 16 16 5 $((5 * 1024 * 1024 + 1))
png small.png 16 16 6 1000
mb_http_json POST "$api/api/uploads" "$token" "{\"projectId\": \"$project\", \"files\": [
    {\"filename\": \"late.png\", \"contentType\": \"image/png\", \"size\": $(size salon.png)},
    {\"filename\": \"small.png\", \"contentType\": \"image/png\", \"size\": 100},
    {\"filename\": \"notes.png\", \"contentType\": \"image/png\", \"size\": 100},
    {\"filename\": \"salon.jpg\", \"contentType\": \"image/jpeg\", \"size\": $(size salon.png)},
    {\"filename\": \"big.png\", \"contentType\": \"image/png\", \"size\": 5242880},
    {\"filename\": \"never.png\", \"contentType\": \"image/png\", \"size\": 100}]}"
bad=$HTTP_BODY
burl() { jq -r ".uploads[$1].url" <<<"$bad"; }
bid() { jq -r ".uploads[$1].uploadId" <<<"$bad"; }
q "UPDATE moverz_batch.uploads SET expires_at = now() - interval '1 second' WHERE id = '$(bid 0)'" >/dev/null
put "$(burl 0)" salon.png
is "$HTTP_STATUS:$HTTP_CODE" 410:PT410 "an expired URL: 410"
put "$(burl 1)" small.png
is "$HTTP_STATUS:$HTTP_CODE" 413:PT413 "more bytes than announced: 413 (PostgreSQL)"
put "$(burl 2)" notes.txt
is "$HTTP_STATUS:$HTTP_CODE" 415:PT415 "bytes that are not an image: 415"
is "$(jq -r .message <<<"$HTTP_BODY")" "upload $(bid 2): the bytes are not an image/png image (not an image of a known type)" \
   "its message says why"
put "$(burl 3)" salon.png image/jpeg
is "$HTTP_STATUS:$(jq -r .message <<<"$HTTP_BODY")" \
   "415:upload $(bid 3): the bytes are not an image/jpeg image (they are image/png)" \
   "a PNG announced as JPEG: 415 (magic numbers)"
put "$(burl 4)" big.png
is "$HTTP_STATUS:$HTTP_CODE" 413:HTTP413 "a body over max_upload_bytes: 413 from nginx"
ok $(grep -c "$(bid 4)" "$MB_HTTP_DIR/postgrest.log" | grep -qx 0; echo $?) "PostgREST never saw it"
tokens=$(jq -r '.uploads[].url | sub(".*token="; "")' <<<"$ups$bad" | paste -sd'|')
is "$(cat "$MB_HTTP_DIR/error.log" "$MB_HTTP_DIR/access.log" | grep -cE "$tokens")" 0 \
   "no upload token in nginx's logs (access and error), 413s and large bodies included"
is "$(q "SELECT count(*) FROM moverz_batch.uploads WHERE id IN ('$(bid 0)', '$(bid 1)', '$(bid 2)', '$(bid 3)', '$(bid 4)')
          AND uploaded_at IS NULL")" 5 "none of them was stored"
mb_http_json POST "$api/api/uploads" "$token" "{\"projectId\": \"$project\", \"files\": [
    {\"filename\": \"huge.png\", \"contentType\": \"image/png\", \"size\": 5242881}]}"
is "$HTTP_STATUS:$(jq -r .message <<<"$HTTP_BODY")" \
   "413:files[0].size 5242881 is more than the 5242880 bytes a photo may have" "asking for a file over the cap: 413"
mb_http_json POST "$api/api/uploads" "$token" "{\"projectId\": \"$project\", \"files\": [
    {\"filename\": \"a.tiff\", \"contentType\": \"image/tiff\", \"size\": 10}]}"
is "$HTTP_STATUS:$(jq -r .message <<<"$HTTP_BODY")" \
   "400:files[0].contentType must be one of image/jpeg, image/png, image/webp, image/gif (got 'image/tiff')" \
   "a type the models do not take: 400 naming the field"
mb_http_json POST "$api/api/uploads" "$token" "{\"projectId\": \"$project2\", \"files\": $spec}"
is "$HTTP_STATUS" 404 "uploads for another user's project: 404"

# --- POST /api/batches with uploads ------------------------------------------
ids=$(jq -c '[.uploads[] | {uploadId}]' <<<"$ups")
mb_http_json POST "$api/api/batches" "$token2" "{\"projectId\": \"$project2\", \"uploads\": $ids}"
is "$HTTP_STATUS:$(jq -r .message <<<"$HTTP_BODY")" \
   "400:uploads[0].uploadId $(id 0): no such upload for this user and project" "another user's upload: refused"
mb_http_json POST "$api/api/batches" "$token" "{\"projectId\": \"$project\", \"uploads\": [{\"uploadId\": \"$(bid 5)\"}]}"
is "$HTTP_STATUS:$(jq -r .message <<<"$HTTP_BODY")" \
   "400:uploads[0].uploadId $(bid 5): the upload was never completed (no file was sent to its URL)" \
   "an upload never completed: refused"
before=$(q "SELECT count(*) FROM moverz_batch.photos WHERE user_id = '$user'")
mb_http_json POST "$api/api/batches" "$token" "{\"projectId\": \"$project\",
    \"imageUrls\": [{\"filename\": \"x.jpg\", \"url\": \"https://img.example.com/x.jpg\"}],
    \"uploads\": [{\"uploadId\": \"$(id 0)\"}, {\"uploadId\": \"not-a-uuid\"}]}"
is "$HTTP_STATUS:$(jq -r .message <<<"$HTTP_BODY")" \
   "400:uploads[1].uploadId must be a UUID string (an uploadId of request_uploads)" \
   "mixed with imageUrls, a bad element is named in uploads"
is "$(q "SELECT count(*) FROM moverz_batch.photos WHERE user_id = '$user'")" "$before" "nothing written"

# every request the fake receives from here
curl -s -X POST "$FAKE_AI_URL/reset" >/dev/null
mb_http_json POST "$api/api/batches" "$token" "{\"projectId\": \"$project\",
    \"uploads\": $(jq -c '[.uploads[] | {uploadId}] | .[0].roomType = "living_room"' <<<"$ups")}"
is "$HTTP_STATUS:$(jq -r .photosCount <<<"$HTTP_BODY")" 202:5 "POST /api/batches with 5 uploads: 202"
batch=$(jq -r .batchId <<<"$HTTP_BODY")
wait_finished "$batch" 30
mb_wait_for 10 "SELECT moverz_batch.batch_progress('$batch') ? 'inventorySummary'" >/dev/null
is "$(progress "$batch" '{status}')" COMPLETED "the batch COMPLETED"
is "$(q "SELECT string_agg(filename || ':' || (url IS NULL) || ':' || (duplicate_of IS NOT NULL), ',' ORDER BY position)
          FROM moverz_batch.photos WHERE batch_id = '$batch'")" \
   "salon.png:true:false,chambre.png:true:false,cuisine.png:true:false,salon-copy.png:true:true,bureau.png:true:false" \
   "the photos take their uploads' names; the same bytes under another name are a duplicate"
is "$(q "SELECT room_type FROM moverz_batch.photos WHERE batch_id = '$batch' AND position = 0")" living_room \
   "roomType of an upload element kept"
images=$(curl -s "$FAKE_AI_URL/stats/images")
is "$(jq -r '[.images[].calls] | add' <<<"$images")" 4 "4 AI calls for 5 photos"
is "$(jq -r '[.images[].sha256] | sort | join(",")' <<<"$images")" \
   "$(for f in salon.png chambre.png cuisine.png bureau.png; do sha "$f"; done | sort | paste -sd,)" \
   "the fake received base64 whose SHA-256 is each file's"
is "$(q "SELECT count(*) FROM moverz_batch.ai_metrics WHERE meta ->> 'batchId' = '$batch'")" 4 \
   "4 ai_metrics rows (none for the duplicate)"
is "$(q "SELECT (SELECT count(*) FROM moverz_batch.inventory_items WHERE batch_id = '$batch')
              = (SELECT sum(jsonb_array_length(analysis -> 'items')) FROM moverz_batch.photos
                  WHERE batch_id = '$batch' AND duplicate_of IS NULL)")" t \
   "the inventory counts the 4 distinct photos' items, the duplicate's once"
is "$(q "SELECT count(*) FROM moverz_batch.uploads WHERE user_id = '$user' AND photo_id IS NOT NULL")" 5 \
   "each upload became one photo"
mb_http_json POST "$api/api/batches" "$token" "{\"projectId\": \"$project\", \"uploads\": [{\"uploadId\": \"$(id 1)\"}]}"
is "$HTTP_STATUS:$(jq -r .message <<<"$HTTP_BODY")" \
   "400:uploads[0].uploadId $(id 1): the upload was already used (an upload is one photo)" "an upload used twice: refused"

# --- bytes gone: AI_ERROR, not retried -----------------------------------------
mb_http_json POST "$api/api/uploads" "$token" "{\"projectId\": \"$project\", \"files\": [
    {\"filename\": \"gone.png\", \"contentType\": \"image/png\", \"size\": $(size cuisine.png)}]}"
gone=$HTTP_BODY
png gone.png 40 40 7
mb_http PUT "$api$(jq -r '.uploads[0].url' <<<"$gone")" "" -H 'Content-Type: image/png' --data-binary "@$W/gone.png"
q "SELECT moverz_batch.pause_processing()" >/dev/null
b2=$(q "SELECT moverz_batch.create_batch('$project', '$user', '[{\"uploadId\": \"$(jq -r '.uploads[0].uploadId' <<<"$gone")\"}]')")
q "DELETE FROM moverz_batch_internal.upload_bytes WHERE upload_id = '$(jq -r '.uploads[0].uploadId' <<<"$gone")'" >/dev/null
q "SELECT moverz_batch.resume_processing()" >/dev/null
wait_finished "$b2" 20
is "$(q "SELECT status || ' ' || error_code || ' ' || attempts || ' ' || error_message FROM moverz_batch.photos WHERE batch_id = '$b2'")" \
   "ERROR AI_ERROR 1 the uploaded file of this photo is gone (its bytes are no longer stored)" \
   "an upload whose bytes are gone: AI_ERROR, not retried, saying so"

# --- cancelled, purged, expired: nothing left behind ------------------------
png kept.png 48 48 8
mb_http_json POST "$api/api/uploads" "$token" "{\"projectId\": \"$project\", \"files\": [
    {\"filename\": \"kept.png\", \"contentType\": \"image/png\", \"size\": $(size kept.png)}]}"
kept=$HTTP_BODY
mb_http PUT "$api$(jq -r '.uploads[0].url' <<<"$kept")" "" -H 'Content-Type: image/png' --data-binary "@$W/kept.png"
q "SELECT moverz_batch.pause_processing()" >/dev/null
b3=$(q "SELECT moverz_batch.create_batch('$project', '$user', '[{\"uploadId\": \"$(jq -r '.uploads[0].uploadId' <<<"$kept")\"}]')")
q "SELECT moverz_batch.cancel_batch('$b3')" >/dev/null
q "SELECT moverz_batch.resume_processing()" >/dev/null
is "$(progress "$b3" '{status}')" CANCELLED "a batch of an upload, cancelled"
is "$(q "SELECT count(*) FROM moverz_batch_internal.upload_bytes WHERE upload_id = '$(jq -r '.uploads[0].uploadId' <<<"$kept")'")" 1 \
   "a cancelled batch keeps its photos' bytes"
is "$(bytes_stored)" $((stored_before + 6)) "6 files stored: the batch's 5 (the duplicate's too) and kept.png (gone.png's were deleted)"
# this test's batches finished long ago, its unattached uploads expired: purge
q "UPDATE moverz_batch.batches SET completed_at = now() - interval '20 years' WHERE user_id = '$user'" >/dev/null
q "UPDATE moverz_batch.uploads SET expires_at = now() - interval '1 second' WHERE user_id = '$user' AND photo_id IS NULL" >/dev/null
q "SELECT moverz_batch.purge(interval '19 years')" >/dev/null
is "$(q "SELECT count(*) FROM moverz_batch.uploads WHERE user_id = '$user'")" 0 \
   "purge: no upload of the user left (attached ones with their photos, the others expired)"
is "$(bytes_stored)" "$stored_before" "purge: the stored bytes are back to what they were before this test"
done_testing
