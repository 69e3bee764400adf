#!/usr/bin/env bash
# test/fake_ai/smoke.sh: quick self-test of the fake AI service with curl.
#
# Builds fake_ai if it is missing or stale, starts it on a free port (with
# an API key, a pidfile and a log), checks every endpoint and fault, stops
# it with SIGTERM while a request hangs, and exits non-zero on any mismatch.
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
