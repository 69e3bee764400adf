#!/usr/bin/env bash
# test/fake_ai/smoke.sh: quick self-test of the fake AI service with curl.
#
# Builds fake_ai if it is missing or stale, starts it on a free port (with
# an API key, a pidfile and a log), checks every endpoint and fault and the
# inline images (image_base64: real PNG, JPEG, GIF, WebP, the 5 MiB limit,
# every refusal, /stats/images against sha256sum), stops it with SIGTERM
# while a request hangs, and exits non-zero on any mismatch.
# The server is always killed on exit.
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=${FAKE_AI:-$HERE/fake_ai}
TMP=$(mktemp -d /tmp/fake_ai_smoke.XXXXXX)
KEY=smoke-key
PID=
FAILS=0
CHECKS=0

cleanup() {
    [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null
    jobs -p | xargs -r kill 2>/dev/null
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

if [ -z "${FAKE_AI:-}" ]; then
    make -s -C "$HERE/../.." fake_ai >/dev/null || exit 1
fi

# ok NAME EXPECTED ACTUAL: record one check.
ok() {
    CHECKS=$((CHECKS + 1))
    if [ "$2" == "$3" ]; then
        echo "ok - $1"
    else
        FAILS=$((FAILS + 1))
        printf 'not ok - %s\n  expected: %s\n  actual:   %s\n' "$1" "$2" "$3"
    fi
}

# req METHOD PATH [CURL_ARG...]: sets STATUS, BODY and HDRS (headers file).
req() {
    local method=$1 path=$2
    shift 2
    STATUS=$(curl -s -X "$method" -o "$TMP/body" -D "$TMP/hdrs" -w '%{http_code}' \
        "$@" "$BASE$path")
    BODY=$(cat "$TMP/body")
    HDRS=$TMP/hdrs
}

# analyze PHOTO_ID IMAGE_URL [FILENAME [ROOM_TYPE_JSON]]: one authorized call.
analyze() {
    local body
    body=$(printf '{"photo_id": "%s", "batch_id": "b1", "project_id": "p1", "image_url": "%s", "filename": "%s", "room_type": %s, "attempt": 1}' \
        "$1" "$2" "${3:-photo.jpg}" "${4:-null}")
    req POST /v1/analyze-photo -H 'Content-Type: application/json' \
        -H "Idempotency-Key: $1" -H "Authorization: Bearer $KEY" -d "$body"
}

# header NAME: the value of response header NAME of the last request.
header() {
    grep -i "^$1:" "$HDRS" | head -1 | cut -d' ' -f2- | tr -d '\r'
}

# json_num FIELD: the integer FIELD of the JSON in BODY.
json_num() {
    sed -n "s/.*\"$1\": \\([0-9]*\\).*/\\1/p" <<<"$BODY"
}

# Small real images (base64): a 1x1 PNG, a 4x3 JPEG written by libjpeg, a
# 1x1 GIF and a 1x1 lossless WebP.
PNG_B64='iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=='
JPEG_B64='/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1RV19iZ2hnPk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2P/wAARCAADAAQDASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwB1nYWn2df3CUUUVlKcrvU0oVJ+zjq9j//Z'
GIF_B64='R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7'
WEBP_B64='UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA=='

# inline PHOTO_ID FILE MEDIA_TYPE_JSON [MORE_JSON]: an authorized call whose
# image_base64 is the base64 of FILE (the body goes through a file: it can
# be larger than a command-line argument).
inline() {
    { printf '{"photo_id": "%s", "filename": "salon.jpg", "media_type": %s%s, "image_base64": "' \
        "$1" "$3" "${4:+, $4}"
      base64 -w0 "$2"
      printf '"}'; } >"$TMP/inline.json"
    req POST /v1/analyze-photo -H "Authorization: Bearer $KEY" --data-binary "@$TMP/inline.json"
}

# image_entry FILE [CALLS]: the /stats/images entry of FILE.
image_entry() {
    printf '{"sha256": "%s", "bytes": %s, "calls": %s}' \
        "$(sha256sum "$1" | cut -d' ' -f1)" "$(stat -c %s "$1")" "${2:-1}"
}

# error_of: "STATUS MESSAGE" of the last answer, if it is a final AI_ERROR.
error_of() {
    echo "$STATUS $(sed -n 's/^{"error":{"code":"AI_ERROR","message":"\(.*\)","retryable":false}}$/\1/p' <<<"$BODY")"
}

"$BIN" --port 0 --api-key "$KEY" --pidfile "$TMP/pid" --log "$TMP/log" >"$TMP/out" 2>&1 &
PID=$!
for _ in $(seq 100); do
    grep -q "listening on" "$TMP/out" && break
    sleep 0.05
done
PORT=$(sed -n 's/^fake_ai listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$TMP/out")
[ -n "$PORT" ] || { echo "fake_ai did not start:"; cat "$TMP/out"; exit 1; }
BASE=http://127.0.0.1:$PORT
ok "pidfile" "$PID" "$(cat "$TMP/pid")"

OKJSON='"model": "fake-vision-1", "usage": {"input_tokens": 1200, "output_tokens": 150}, "cost_usd": 0.015}'
E='{"error":{"code":'

# --- plain endpoints
req GET /health;                 ok "health" "200 ok" "$STATUS $BODY"
req GET /nope;                   ok "404" "404" "$STATUS"
req GET /v1/analyze-photo;       ok "405 analyze" "405 POST" "$STATUS $(header Allow)"
req DELETE /stats;               ok "405 stats" "405" "$STATUS"
req POST /reset;                 ok "reset" '200 {"ok":true}' "$STATUS $BODY"
req GET /stats/photo;            ok "stats/photo without id" "400" "$STATUS"
ok "keep-alive reuses the connection" "1 0" \
    "$(curl -s -o /dev/null -o /dev/null -w '%{num_connects} ' "$BASE/health" "$BASE/health" | xargs)"

# --- authentication and body validation
req POST /v1/analyze-photo -d '{"photo_id":"a","image_url":"http://x/a.jpg"}'
ok "401 no key" "401 $E\"AI_ERROR\",\"message\":\"invalid api key\",\"retryable\":false}}" "$STATUS $BODY"
req POST /v1/analyze-photo -H 'Authorization: Bearer nope' -d '{"photo_id":"a","image_url":"u"}'
ok "401 wrong key" "401" "$STATUS"
for bad in 'not json' '[1, 2]' '{"photo_id": "a"}' '{"photo_id": 1, "image_url": "u"}' \
    '{"photo_id": "a", "image_url": "u"' '{"photo_id": "a", "image_url": "u"} x' ''; do
    req POST /v1/analyze-photo -H "Authorization: Bearer $KEY" -d "$bad"
    ok "400 body <$bad>" "400 AI_ERROR false" \
        "$STATUS $(sed -n 's/.*"code":"\([A-Z_]*\)".*"retryable":\(false\).*/\1 \2/p' <<<"$BODY")"
done
req POST /v1/analyze-photo -H "Authorization: Bearer $KEY" \
    -d '{"photo_id": "u\u00e9\n", "image_url": "http://x/?items=a:1:1", "x": [1, {"y": null}], "room_type": "r\"q"}'
ok "escapes and nested values" "200 {\"room_type\": \"r\\\"q\"" "$STATUS ${BODY%%, \"items*}"

# --- room types
while read -r fname room; do
    analyze "room-$fname" "http://x/r.jpg" "$fname"
    ok "room of $fname" "$room" "$(sed -n 's/^{"room_type": "\([a-z_]*\)".*/\1/p' <<<"$BODY")"
done <<'EOF'
Salon_1.JPG living_room
my-LIVING.png living_room
lounge.jpg living_room
chambre2.jpg bedroom
Bedroom.jpg bedroom
cuisine.jpg kitchen
KITCHEN.jpg kitchen
sdb.jpg bathroom
bathroom.jpg bathroom
bureau.jpg office
office.jpg office
garage.jpg garage
entree.jpg hallway
hall.jpg hallway
salle_a_manger.jpg dining_room
dining.jpg dining_room
img_0001.jpg other
EOF
analyze room "http://x/r.jpg" "kitchen.jpg" '"garage"'
ok "room_type from request" "garage" "$(sed -n 's/^{"room_type": "\([a-z_]*\)".*/\1/p' <<<"$BODY")"

# --- items
analyze it1 "http://img.test/a.jpg?w=1&items=sofa:1:1.2,chair:4:0.25&h=2" "salon.jpg"
ok "items from url" "200 {\"room_type\": \"living_room\", \"items\": [{\"label\": \"sofa\", \"quantity\": 1, \"volume_m3\": 1.2}, {\"label\": \"chair\", \"quantity\": 4, \"volume_m3\": 0.25}], $OKJSON" "$STATUS $BODY"
analyze it2 "http://img.test/a.jpg?items=coffee%20table:2:0.50,lamp+shade:1:0.1" "x.jpg" '"office"'
ok "encoded labels" '[{"label": "coffee table", "quantity": 2, "volume_m3": 0.50}, {"label": "lamp shade", "quantity": 1, "volume_m3": 0.1}]' \
    "$(sed 's/.*"items": \(\[.*\]\), "model".*/\1/' <<<"$BODY")"
analyze it3 "http://img.test/a.jpg?items=sofa%3A3%3A2.5%2Cbed%3A1%3A1.8"
ok "value encoded as a whole" '[{"label": "sofa", "quantity": 3, "volume_m3": 2.5}, {"label": "bed", "quantity": 1, "volume_m3": 1.8}]' \
    "$(sed 's/.*"items": \(\[.*\]\), "model".*/\1/' <<<"$BODY")"
analyze it4 "http://img.test/a.jpg?items=" "cuisine.jpg"
ok "empty items" "200 {\"room_type\": \"kitchen\", \"items\": [], $OKJSON" "$STATUS $BODY"
for n in 1 2 3 4 5 6; do
    analyze "h$n" "http://img.test/photo-$n.jpg"
    first=$BODY
    analyze "h$n" "http://img.test/photo-$n.jpg"
    count=$(grep -o '"label"' <<<"$BODY" | wc -l)
    ok "hash items $n deterministic, 1-4 items" "same 1" \
        "$([ "$first" == "$BODY" ] && echo same) $((count >= 1 && count <= 4))"
done

# --- inline images (image_base64 + media_type)
req GET /stats/images;           ok "stats/images before any" '{"images": []}' "$BODY"
for t in png:PNG jpeg:JPEG gif:GIF webp:WEBP; do
    var=${t#*:}_B64
    base64 -d <<<"${!var}" >"$TMP/img.${t%%:*}"
done
inline in1 "$TMP/img.png" '"image/png"'
first=$BODY
ok "inline png: 200, room from filename" '200 living_room' \
    "$STATUS $(sed -n 's/^{"room_type": "\([a-z_]*\)".*/\1/p' <<<"$BODY")"
ok "inline png: the items the node fakes give these bytes (FNV-1a of the bytes), the usual metadata" \
    '{"room_type": "living_room", "items": [{"label": "box", "quantity": 3, "volume_m3": 0.1}, {"label": "fridge", "quantity": 1, "volume_m3": 0.9}], '"$OKJSON" \
    "$BODY"
inline in2 "$TMP/img.png" '"image/png"' '"room_type": null, "image_url": null'
ok "inline png again (image_url null): the same answer" "$first" "$BODY"
inline in3 "$TMP/img.jpeg" '"image/jpeg"';   ok "inline jpeg (libjpeg 4x3)" "200" "$STATUS"
jpeg_answer=$BODY
inline in4 "$TMP/img.gif" '"image/gif"';     ok "inline gif" "200" "$STATUS"
inline in5 "$TMP/img.webp" '"image/webp"';   ok "inline webp" "200" "$STATUS"
req POST /v1/analyze-photo -H "Authorization: Bearer $KEY" \
    -d "{\"photo_id\": \"in6\", \"filename\": \"salon.jpg\", \"media_type\": \"image/jpeg\", \"image_base64\": \"${JPEG_B64//\//\\/}\"}"
ok "jpeg base64 with JSON-escaped slashes: the same image" "$jpeg_answer" "$BODY"
head -c 8 "$TMP/img.png" >"$TMP/big.png"
head -c $((5 * 1024 * 1024 - 8)) /dev/zero >>"$TMP/big.png"
inline in7 "$TMP/big.png" '"image/png"'
ok "inline image of exactly 5 MiB (a 7 MB body) accepted" "200" "$STATUS"
req GET /stats/images
ok "stats/images: sha256, bytes and calls of each image, in order" \
    "{\"images\": [$(image_entry "$TMP/img.png" 2), $(image_entry "$TMP/img.jpeg" 2), $(image_entry "$TMP/img.gif"), $(image_entry "$TMP/img.webp"), $(image_entry "$TMP/big.png")]}" \
    "$BODY"
head -c 1 /dev/zero >>"$TMP/big.png"
inline bad1 "$TMP/big.png" '"image/png"'
ok "inline image of 5 MiB + 1 byte" "413 image too large: 5242881 bytes > 5242880 bytes" "$(error_of)"
head -c $((9 * 1024 * 1024)) /dev/zero >"$TMP/huge.bin"
inline bad2 "$TMP/huge.bin" '"image/png"'
ok "body over 8 MiB" "413 body too large" "$(error_of)"
inline bad3 "$TMP/img.png" '"image/jpeg"'
ok "png bytes declared image/jpeg" "400 image_base64 is not an image of media_type image/jpeg (its bytes are image/png)" "$(error_of)"
printf 'hello, world' >"$TMP/text.bin"
inline bad4 "$TMP/text.bin" '"image/png"'
ok "text bytes declared image/png" "400 image_base64 is not an image of media_type image/png (its bytes are no known image type)" "$(error_of)"
for mt in '"image/bmp"' '"IMAGE/PNG"' '"image/jpg"'; do
    inline bad5 "$TMP/img.png" "$mt"
    ok "media_type $mt" "400 media_type must be one of image/jpeg, image/png, image/gif, image/webp" "$(error_of)"
done
inline bad6 "$TMP/img.png" null
ok "media_type null" "400 media_type is required with image_base64" "$(error_of)"
inline bad7 "$TMP/img.png" 42
ok "media_type 42" "400 media_type must be a string" "$(error_of)"
for url in '"http://x/a.jpg"' 7; do
    inline bad8 "$TMP/img.png" '"image/png"' "\"image_url\": $url"
    ok "image_url $url and image_base64" "400 give one of image_url and image_base64, not both" "$(error_of)"
done
while read -r label data; do
    req POST /v1/analyze-photo -H "Authorization: Bearer $KEY" \
        -d "{\"photo_id\": \"b64\", \"media_type\": \"image/png\", \"image_base64\": $data}"
    case $label in
        empty) want="400 image_base64 is empty" ;;
        number) want="400 image_base64 must be a string" ;;
        *) want="400 image_base64 is not valid base64 (standard alphabet, padded, no white space)" ;;
    esac
    ok "image_base64 $label" "$want" "$(error_of)"
done <<B64
empty ""
number 42
not-base64 "not base64!"
unpadded "${PNG_B64%==}"
newline "${PNG_B64:0:40}\\n${PNG_B64:40}"
url-safe "${JPEG_B64//\//_}"
padding-inside "iV==${PNG_B64:4}"
B64
req POST /v1/analyze-photo -H "Authorization: Bearer $KEY" -d '{"photo_id": "b64", "media_type": "image/png"}'
ok "media_type without an image: the message of before" "400 image_url must be a string" "$(error_of)"
analyze legacy1 "http://img.test/photo-1.jpg"
first=$BODY
req POST /v1/analyze-photo -H "Authorization: Bearer $KEY" \
    -d '{"photo_id": "legacy2", "image_url": "http://img.test/photo-1.jpg", "filename": "photo.jpg", "room_type": null, "media_type": "text/plain", "image_base64": null}'
ok "image_url with media_type (ignored) and image_base64 null: the URL answer" "$first" "$BODY"
req GET /stats/images
ok "rejected images are not recorded" 5 "$(grep -o '"sha256"' <<<"$BODY" | wc -l)"

# --- faults
analyze f1 "http://img.test/a.jpg?fault=unreachable"
ok "fault=unreachable" "422 $E\"NETWORK_ERROR\",\"message\":\"image unreachable: http://img.test/a.jpg?fault=unreachable\",\"retryable\":false}}" "$STATUS $BODY"
analyze f2 "https://user@photos.invalid:8443/a.jpg"
ok ".invalid host" "422 $E\"NETWORK_ERROR\",\"message\":\"image unreachable: https://user@photos.invalid:8443/a.jpg\",\"retryable\":false}}" "$STATUS $BODY"
analyze f3 "http://img.test/a.jpg?fault=429"
ok "fault=429" "429 1 $E\"RATE_LIMIT\",\"message\":\"rate limited\",\"retryable\":true}}" "$STATUS $(header Retry-After) $BODY"
analyze f4 "http://img.test/a.jpg?fault=429plain&retry_after=7"
ok "fault=429plain" "429 7 text/plain slow down" "$STATUS $(header Retry-After) $(header Content-Type) $BODY"
analyze f5 "http://img.test/a.jpg?fault=500";        ok "fault=500" "500 internal error" "$STATUS $BODY"
analyze f6 "http://img.test/a.jpg?fault=503json"
ok "fault=503json" "503 $E\"AI_ERROR\",\"message\":\"model overloaded\",\"retryable\":true}}" "$STATUS $BODY"
analyze f7 "http://img.test/a.jpg?fault=400";        ok "fault=400" "400 text/plain" "$STATUS $(header Content-Type)"
analyze f8 "http://img.test/a.jpg?fault=504";        ok "fault=504" "504 text/plain" "$STATUS $(header Content-Type)"
analyze f9 "http://img.test/a.jpg?fault=408";        ok "fault=408" "408 text/plain" "$STATUS $(header Content-Type)"
analyze fa "http://img.test/a.jpg?fault=malformed"
ok "fault=malformed" '200 {"room_type": "kitchen", "items": [' "$STATUS $BODY"
analyze fb "http://img.test/a.jpg?fault=badshape"
ok "fault=badshape" '200 {"room_type": "kitchen", "items": "lots"}' "$STATUS $BODY"
analyze fc "http://img.test/a.jpg?fault=badjson_error"
ok "fault=badjson_error" '500 {"error": 42}' "$STATUS $BODY"
analyze fd "http://img.test/a.jpg?fault=bogus";      ok "unknown fault" "400" "$STATUS"
for i in 1 2 3 4; do
    analyze ff "http://img.test/ff.jpg?fail_first=2"
    ok "fail_first=2 call $i" "$([ "$i" -le 2 ] && echo '500 internal error' || echo 200)" \
        "$STATUS$([ "$STATUS" != 200 ] && echo " $BODY")"
done
req GET "/stats/photo?id=ff";    ok "stats/photo" '{"photo_id": "ff", "calls": 4}' "$BODY"
req GET "/stats/photo?id=none";  ok "stats/photo unknown" '{"photo_id": "none", "calls": 0}' "$BODY"
req GET /stats/calls
ok "stats/calls" "ff 4 text/plain" "$(grep '^ff ' <<<"$BODY") $(header Content-Type)"

# --- latency and hang (a hang must not block other requests)
start=$(date +%s%N)
analyze lat "http://img.test/a.jpg?latency_ms=300"
ms=$((($(date +%s%N) - start) / 1000000))
ok "latency_ms=300" "200 1" "$STATUS $((ms >= 300 && ms < 2000))"
analyze hang1 "http://img.test/a.jpg?fault=hang&hang_ms=200"
ok "fault=hang&hang_ms=200" "200" "$STATUS"
curl -s -o /dev/null -H "Authorization: Bearer $KEY" "$BASE/v1/analyze-photo" \
    -d '{"photo_id": "hang2", "image_url": "http://img.test/a.jpg?fault=hang"}' &
sleep 0.2
start=$(date +%s%N)
analyze quick "http://img.test/a.jpg"
ms=$((($(date +%s%N) - start) / 1000000))
ok "request during a (600 s) hang is answered" "200 1" "$STATUS $((ms < 5000))"

# --- stats and reset
req GET /stats
total=$(json_num total); okc=$(json_num ok); errs=$(json_num errors)
ok "stats total = ok + errors + inflight" "$total" "$((okc + errs + $(json_num inflight)))"
ok "stats inflight (the hang)" "1" "$(json_num inflight)"
ok "stats max_calls_per_photo" "4" "$(json_num max_calls_per_photo)"
ok "stats first <= last, max_rps_1s > 0" "1 1" \
    "$(($(json_num first_request_us) <= $(json_num last_request_us) && $(json_num first_request_us) > 0)) $(($(json_num max_rps_1s) > 0))"
req POST /reset
req GET /stats/images;           ok "stats/images after reset" '{"images": []}' "$BODY"
req GET /stats
ok "stats after reset" '{"total": 0, "ok": 0, "errors": 0, "distinct_photos": 0, "max_calls_per_photo": 0, "inflight": 1, "max_inflight": 1, "first_request_us": 0, "last_request_us": 0, "max_rps_1s": 0, "mark_request_us": 0, "last_answer_us": 0}' "$BODY"
req POST '/reset?mark=2'
analyze m1 "http://x/m1.jpg"; analyze m2 "http://x/m2.jpg"; analyze m3 "http://x/m3.jpg"
req GET /stats
first=$(json_num first_request_us); mark=$(json_num mark_request_us); last=$(json_num last_request_us)
ok "reset?mark=2: the 2nd request's time, between the first and the last; last answer after it" "1 1 1" \
    "$((first > 0 && first <= mark)) $((mark <= last)) $(($(json_num last_answer_us) >= last))"
ok "log has lines" "1" "$(($(wc -l <"$TMP/log") > 50))"
ok "log: each request answered after it arrived" "0" \
    "$(awk 'NF != 5 || $5 > $1 || $5 < 1000000000000000 { bad++ } END { print bad + 0 }' "$TMP/log")"

# --- SIGTERM with a hanging request in flight
start=$(date +%s%N)
kill -TERM "$PID"
wait "$PID"
rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
PID=
ok "SIGTERM exit status, fast, pidfile removed" "0 1 1" "$rc $((ms < 1500)) $([ ! -e "$TMP/pid" ] && echo 1)"

echo "$((CHECKS - FAILS))/$CHECKS checks passed"
[ "$FAILS" -eq 0 ]
