#!/usr/bin/env bash
# 48_uploads_s3: direct upload with moverz_batch.object_store = s3 (issue
# #21), against a real S3-protocol server (s3rver, pinned in
# test/s3/package.json, behind test/s3/s3_front.js, which verifies every
# presigned request's SigV4 signature as S3 does), through the real nginx +
# PostgREST: the extension's presigned URL equals the AWS SDK's for fixed
# inputs; POST /api/uploads answers presigned PUTs to the store; the client
# PUTs there (the bytes never pass through PostgreSQL); 5 files of which 2
# are the same bytes: the workers download them, 4 AI calls, the fake
# receiving base64 whose SHA-256 is the file's, the duplicate counted once
# (found when downloaded, before any AI call); a file never uploaded ->
# AI_ERROR, not retried; purge and expiry delete the objects: none left.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/../http/lib_http.sh"
W=$(mktemp -d /tmp/mb_uploads_s3.XXXXXX)
chmod 755 "$W"
S3_PID=
cleanup() {
    [ -n "$S3_PID" ] && kill "$S3_PID" 2>/dev/null
    for s in object_store s3_endpoint s3_bucket s3_path_style s3_access_key_id s3_secret_access_key; do
        q "ALTER SYSTEM RESET moverz_batch.$s" >/dev/null 2>&1
    done
    q "SELECT pg_reload_conf()" >/dev/null 2>&1
    mb_http_stop
    rm -rf "$W"
}
trap cleanup EXIT

# the S3 server, and the AWS SDK to compare with (pinned, npm ci)
if [ ! -d "$MB_ROOT/test/s3/node_modules/s3rver" ]; then
    (cd "$MB_ROOT/test/s3" && npm ci --no-audit --no-fund --loglevel=error) >"$W/npm.log" 2>&1 \
        || { sed 's/^/# /' "$W/npm.log"; echo "Bail out! npm ci in test/s3 failed"; exit 1; }
fi
node "$MB_ROOT/test/s3/s3_server.js" "$W/s3" >"$W/s3.out" 2>"$W/s3.err" &
S3_PID=$!
for _ in $(seq 1 100); do grep -q '^listening ' "$W/s3.out" && break; sleep 0.1; done
S3_PORT=$(awk '/^listening/ {print $2}' "$W/s3.out")
[ -n "$S3_PORT" ] || { sed 's/^/# /' "$W/s3.err"; echo "Bail out! the S3 server did not start"; exit 1; }
S3=http://127.0.0.1:$S3_PORT
objects() { curl -s "$S3/_objects" | jq length; }

mb_http_install || { echo "Bail out! cannot install nginx and PostgREST"; exit 1; }
mb_http_start || { echo "Bail out! cannot start nginx and PostgREST"; exit 1; }
for kv in "object_store=s3" "s3_endpoint=$S3" "s3_bucket=photos" "s3_path_style=on" \
          "s3_access_key_id=S3RVER" "s3_secret_access_key=S3RVER"; do
    q "ALTER SYSTEM SET moverz_batch.${kv%%=*} = '${kv#*=}'" >/dev/null
done
q "SELECT pg_reload_conf()" >/dev/null
sleep 0.5

# --- the extension's presigned URL is the AWS SDK's ---------------------------
at=1767225600    # 2026-01-01 00:00:00 UTC
for m in GET PUT DELETE; do
    for key in "uploads/p/u" "uploads/with space/é+~.png"; do
        is "$(q "SELECT moverz_batch_internal.s3_presign('$m', '$key', 900, to_timestamp($at))")" \
           "$(node "$MB_ROOT/test/s3/sdk_presign.js" "$m" "$S3" us-east-1 photos 1 S3RVER S3RVER "$key" 900 "$at")" \
           "s3_presign($m, \"$key\") = @aws-sdk/s3-request-presigner's URL"
    done
done
is "$(q "SELECT setting FROM pg_settings WHERE name = 'moverz_batch.s3_secret_access_key'" 2>&1)" "" \
   "the secret is not in pg_settings (no SHOW ALL)"

api=$MB_API_URL
user="s3-$$-$RANDOM"
token=$(mb_jwt "{\"role\": \"moverz_user\", \"sub\": \"$user\", \"exp\": $(($(date +%s) + 600))}")
png() { node "$MB_ROOT/test/tools/make_png.js" "$W/$1" "${@:2}"; }
sha() { sha256sum "$W/$1" | cut -d' ' -f1; }
size() { stat -c %s "$W/$1"; }
objects_before=$(objects)

mb_http_json POST "$api/api/projects" "$token" '{"name": "s3"}'
project=$(jq -r .project.id <<<"$HTTP_BODY")
png salon.png 64 48 11; png chambre.png 80 60 12; png cuisine.png 40 40 13; png bureau.png 32 32 14
cp "$W/salon.png" "$W/salon-copy.png"
files=(salon.png chambre.png cuisine.png salon-copy.png bureau.png)
spec=$( (for f in "${files[@]}"; do printf '{"filename": "%s", "contentType": "image/png", "size": %s}\n' "$f" "$(size "$f")"; done
         echo '{"filename": "never.png", "contentType": "image/png", "size": 100}') | jq -sc .)
mb_http_json POST "$api/api/uploads" "$token" "{\"projectId\": \"$project\", \"files\": $spec}"
is "$HTTP_STATUS" 201 "POST /api/uploads with the s3 store: 201"
ups=$HTTP_BODY
ok $(jq -e --arg s "$S3/photos/uploads/$project/" \
        '.uploads | all(.url | startswith($s) and test("X-Amz-Signature=[0-9a-f]{64}"))' <<<"$ups" >/dev/null; echo $?) \
   "each URL: a presigned PUT to the store, uploads/<project>/<upload>"
is "$(q "SELECT count(*) FROM moverz_batch.uploads WHERE user_id = '$user' AND store = 's3'")" 6 "6 uploads of the s3 store"
for i in 0 1 2 3 4; do
    st=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: image/png' --data-binary "@$W/${files[$i]}" \
              "$(jq -r ".uploads[$i].url" <<<"$ups")")
    is "$st" 200 "PUT ${files[$i]} to the store"
done
url5=$(jq -r '.uploads[5].url' <<<"$ups")
sig=$(grep -o 'X-Amz-Signature=[0-9a-f]*' <<<"$url5")
if [ "${sig:16:1}" = 0 ]; then bad=${sig:0:16}1${sig:17}; else bad=${sig:0:16}0${sig:17}; fi
tampered=${url5/$sig/$bad}
is "$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary "@$W/salon.png" "$tampered")" 403 \
   "a tampered signature: 403 from the store"
is "$(q "SELECT count(*) FROM moverz_batch_internal.upload_bytes b JOIN moverz_batch.uploads u ON u.id = b.upload_id
          WHERE u.user_id = '$user'")" 0 "no byte in PostgreSQL"

curl -s -X POST "$FAKE_AI_URL/reset" >/dev/null
mb_http_json POST "$api/api/batches" "$token" "{\"projectId\": \"$project\",
    \"uploads\": $(jq -c '[.uploads[0:5][] | {uploadId}]' <<<"$ups")}"
is "$HTTP_STATUS" 202 "POST /api/batches with 5 uploads: 202"
batch=$(jq -r .batchId <<<"$HTTP_BODY")
wait_finished "$batch" 30
is "$(progress "$batch" '{status}')" COMPLETED "the batch COMPLETED"
images=$(curl -s "$FAKE_AI_URL/stats/images")
is "$(jq -r '[.images[].calls] | add' <<<"$images")" 4 "4 AI calls for 5 photos"
is "$(jq -r '[.images[].sha256] | sort | join(",")' <<<"$images")" \
   "$(for f in salon.png chambre.png cuisine.png bureau.png; do sha "$f"; done | sort | paste -sd,)" \
   "the fake received base64 whose SHA-256 is each file's"
is "$(q "SELECT string_agg(filename || ':' || (duplicate_of IS NOT NULL) || ':' || attempts, ',' ORDER BY position)
          FROM moverz_batch.photos WHERE batch_id = '$batch'")" \
   "salon.png:false:1,chambre.png:false:1,cuisine.png:false:1,salon-copy.png:true:0,bureau.png:false:1" \
   "the same bytes under another name: a duplicate, found when downloaded (no attempt counted)"
is "$(q "SELECT count(*) FROM moverz_batch.photos WHERE batch_id = '$batch' AND checksum ~ '^[0-9a-f]{64}$'")" 5 \
   "every photo's checksum is the SHA-256 of its bytes"
is "$(q "SELECT count(*) FROM moverz_batch.ai_metrics WHERE meta ->> 'batchId' = '$batch'")" 4 "4 ai_metrics rows"
is "$(q "SELECT (SELECT count(*) FROM moverz_batch.inventory_items WHERE batch_id = '$batch')
              = (SELECT sum(jsonb_array_length(analysis -> 'items')) FROM moverz_batch.photos
                  WHERE batch_id = '$batch' AND duplicate_of IS NULL)")" t "the duplicate's items counted once"

# a file never PUT: its worker finds out
b2=$(q "SELECT moverz_batch.create_batch('$project', '$user', '[{\"uploadId\": \"$(jq -r '.uploads[5].uploadId' <<<"$ups")\"}]')")
wait_finished "$b2" 20
is "$(q "SELECT status || ' ' || error_code || ' ' || attempts FROM moverz_batch.photos WHERE batch_id = '$b2'")" \
   "ERROR AI_ERROR 1" "an upload never PUT: AI_ERROR, not retried"
msg=$(q "SELECT error_message FROM moverz_batch.photos WHERE batch_id = '$b2'")
ok $([[ $msg == "the uploaded file is not in the object store"* ]] && echo 0 || echo 1) "saying so ($msg)"

# nothing left behind: purge, expiry
is "$(objects)" $((objects_before + 5)) "5 objects in the store"
q "UPDATE moverz_batch.batches SET completed_at = now() - interval '20 years' WHERE user_id = '$user'" >/dev/null
mb_http_json POST "$api/api/uploads" "$token" "{\"projectId\": \"$project\", \"files\": [
    {\"filename\": \"late.png\", \"contentType\": \"image/png\", \"size\": $(size bureau.png)}]}"
curl -s -o /dev/null -X PUT --data-binary "@$W/bureau.png" "$(jq -r '.uploads[0].url' <<<"$HTTP_BODY")"
is "$(objects)" $((objects_before + 6)) "one more, never attached"
q "UPDATE moverz_batch.uploads SET expires_at = now() - interval '1 second' WHERE user_id = '$user' AND photo_id IS NULL" >/dev/null
q "SELECT moverz_batch.purge(interval '19 years')" >/dev/null
is "$(q "SELECT count(*) FROM moverz_batch.uploads WHERE user_id = '$user'")" 0 "purge: no upload of the user left"
mb_wait_for 20 "SELECT count(*) = 0 FROM moverz_batch_internal.object_deletions" >/dev/null
ok $? "the photo workers drained the deletions queue"
is "$(objects)" "$objects_before" "the store holds what it held before this test"
done_testing
