#!/usr/bin/env bash
# tools/demo.sh: the main job, end to end, on a throwaway cluster.
#
# Installs what is missing, builds and installs moverz_batch, starts a
# throwaway PostgreSQL cluster and the fake AI service, submits a realistic
# batch (several rooms, one unreachable photo), shows its progress live,
# then what the model found photo by photo and the AI metrics, ends with the
# batch's summary (its progress bar and inventory) and stops everything it
# started.
#
# tools/demo.sh --json: the same, and the final batch_progress JSON too
# (before the summary, which stays last on the screen).
#
# With a real model instead of the fake (README, "AI providers"):
#   MOVERZ_AI_PROVIDER=anthropic ANTHROPIC_API_KEY=sk-ant-... tools/demo.sh
#   MOVERZ_AI_PROVIDER=openai OPENAI_API_KEY=sk-... [OPENAI_BASE_URL=http://localhost:11434/v1] tools/demo.sh
# optionally MOVERZ_AI_MODEL=<model> and MOVERZ_DEMO_PHOTOS=<file of "URL [room_type]" lines>;
# the batch is then made of public photos of rooms, and the demo prints what
# the model found in each.
#
# tools/demo.sh --installed: the same, from the installed package
# (postgresql-15-moverz-batch, README "Install"): nothing is built but the
# fake AI service; the extension is the package's and the client is the
# moverz-batch on PATH.
#
# tools/demo.sh --web: the same stack plus PostgREST and nginx with Nchan;
# prints the customer page's and the operator dashboard's URLs, each with a
# token, and keeps everything up until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
source test/lib.sh
source test/http/lib_http.sh

WEB=0
JSON=0
INSTALLED=0
USAGE="usage: tools/demo.sh [--installed] [--json | --web]"
for arg in "$@"; do
    case "$arg" in
        --web) WEB=1 ;;
        --json) JSON=1 ;;
        --installed) INSTALLED=1 ;;
        "") ;;
        *) echo "$USAGE" >&2; exit 2 ;;
    esac
done
if [ "$WEB" = 1 ] && [ "$JSON" = 1 ]; then
    echo "$USAGE" >&2
    exit 2
fi

cleanup() {
    set +e   # stop everything, whatever fails on the way
    [ -n "${SLEEP_PID:-}" ] && kill "$SLEEP_PID" 2>/dev/null
    [ "$WEB" = 1 ] && mb_http_stop
    [ -n "${FAKE_AI_PID:-}" ] && kill "$FAKE_AI_PID" 2>/dev/null
    [ -n "${FAKE_OUT:-}" ] && rm -f "$FAKE_OUT"
    mb_cluster_stop
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# die MESSAGE: stop with a clear message (everything started is stopped).
die() {
    echo "demo: $*" >&2
    exit 1
}

# provider_check: for a real provider, the key is there and the API accepts
# it (GET its model list, 20 s at most), before anything is started.  Sets
# AI_BASE and AI_KEY.
provider_check() {
    local out status err hdr url
    case "$PROVIDER" in
        anthropic)
            AI_KEY=${ANTHROPIC_API_KEY:-}; AI_BASE=${ANTHROPIC_BASE_URL:-https://api.anthropic.com}
            [ -n "$AI_KEY" ] || die "ANTHROPIC_API_KEY is not set: export your Anthropic API key (console.anthropic.com, Settings > API keys)"
            hdr="x-api-key: $AI_KEY"; url="${AI_BASE%/}/v1/models" ;;
        openai)
            AI_KEY=${OPENAI_API_KEY:-}; AI_BASE=${OPENAI_BASE_URL:-https://api.openai.com/v1}
            [ -n "$AI_KEY" ] || die "OPENAI_API_KEY is not set: export your key (a local server such as Ollama takes any, e.g. OPENAI_API_KEY=none)"
            hdr="Authorization: Bearer $AI_KEY"; url="${AI_BASE%/}/models" ;;
        *) die "MOVERZ_AI_PROVIDER must be moverz-ai, anthropic or openai, not \"$PROVIDER\"" ;;
    esac
    out=$(mktemp)
    # the key goes to curl on its standard input, not on its command line
    status=$(curl -sS -m 20 -o "$out" -w '%{http_code}' -H @- -H 'anthropic-version: 2023-06-01' "$url" \
             <<<"$hdr" 2>"$out.err") || { err=$(cat "$out.err"); rm -f "$out" "$out.err"; die "cannot reach $url: $err"; }
    rm -f "$out.err"
    case "$status" in
        200) ;;
        401|403) err=$(jq -r '.error.message // .error // .' "$out" 2>/dev/null | head -c 300)
                 rm -f "$out"; die "$PROVIDER refused the API key (HTTP $status: $err)" ;;
        *) echo "demo: note: $url answered HTTP $status; going on (some compatible servers have no model list)" ;;
    esac
    rm -f "$out"
}

PROVIDER=${MOVERZ_AI_PROVIDER:-moverz-ai}
[ "$PROVIDER" = moverz-ai ] || provider_check

mb_install_deps
CLI=
if [ "$INSTALLED" = 1 ]; then
    CLI=$(command -v moverz-batch) || die "--installed: moverz-batch is not on PATH (is the package installed?)"
    [ -f "$("$MB_PGBIN/pg_config" --sharedir)/extension/moverz_batch.control" ] \
        || die "--installed: moverz_batch is not installed for PostgreSQL $MB_PG_VERSION"
    echo "== using the installed moverz_batch and $CLI ($("$CLI" --version))"
else
    mb_build
    [ -x tools/moverz-batch ] && CLI=tools/moverz-batch
fi
make -s fake_ai >/dev/null

if [ "$PROVIDER" = moverz-ai ]; then
    FAKE_OUT=$(mktemp /tmp/moverz_demo_fake.XXXXXX)
    # 300 ms per analysis, as a (fast) real model would take seconds
    mb_fake_start "$FAKE_OUT" --latency-ms 300
    echo "== starting a throwaway cluster with moverz_batch and the fake AI service on :$FAKE_AI_PORT"
    mb_cluster_start "moverz_batch.ai_service_url = '$FAKE_AI_URL'" \
                     "moverz_batch.max_inflight = 4" "moverz_batch.retry_backoff = '500ms'"
else
    echo "== starting a throwaway cluster with moverz_batch and the $PROVIDER API at $AI_BASE"
    mb_cluster_start "moverz_batch.ai_provider = '$PROVIDER'" "moverz_batch.ai_service_url = '$AI_BASE'" \
                     "moverz_batch.ai_model = '${MOVERZ_AI_MODEL:-}'" \
                     "moverz_batch.max_inflight = 4" "moverz_batch.retry_backoff = '2s'"
    # the key in a file only the server's user reads: never in a setting, hence in no log
    ( umask 077; printf '%s\n' "$AI_KEY" >"$MB_DIR/ai.key" )
    [ "$(id -u)" = 0 ] && chown postgres: "$MB_DIR/ai.key"
    mb_set moverz_batch.ai_api_key_file "$MB_DIR/ai.key"
fi
psql -qX -c "CREATE EXTENSION moverz_batch"

project=$(psql -qAtX -c "SELECT moverz_batch.create_project('customer-42', 'Move Paris -> Lyon')")

if [ "$WEB" = 1 ]; then
    mb_http_install || die "cannot install nginx, its Nchan module and PostgREST"
    PGDATABASE=postgres mb_http_start || die "cannot start PostgREST and nginx"
    exp=$(($(date +%s) + 12 * 3600))
    customer=$(mb_jwt "{\"role\": \"moverz_user\", \"sub\": \"customer-42\", \"exp\": $exp}")
    operator=$(mb_jwt "{\"role\": \"moverz_operator\", \"sub\": \"operator-1\", \"exp\": $exp}")
    echo "== the stack is up (tokens valid 12 hours); open in a browser on this machine:"
    echo "   customer page       $MB_API_URL/app/#token=$customer"
    echo "   operator dashboard  $MB_API_URL/admin/#token=$operator"
    echo "   (\"Use the demo photos\" fills the demo's 7 photos; the API is $MB_API_URL/api/...)"
    echo "== Ctrl-C stops everything"
    # (a sleep in the background, waited for: a signal interrupts the wait at once)
    while :; do sleep 3600 & SLEEP_PID=$!; wait "$SLEEP_PID"; done
fi
if [ "$PROVIDER" != moverz-ai ]; then
    # public photos of rooms (Unsplash), or the user's own list
    photos=${MOVERZ_DEMO_PHOTOS:-}
    if [ -z "$photos" ]; then
        photos=$(mktemp)
        printf '%s\n' \
            "https://images.unsplash.com/photo-1586023492125-27b2c045efd7?w=1024 living_room" \
            "https://images.unsplash.com/photo-1505693416388-ac5ce068fe85?w=1024 bedroom" \
            "https://images.unsplash.com/photo-1556911220-bff31c812dba?w=1024 kitchen" \
            "https://images.unsplash.com/photo-1524758631624-e2822e304c36?w=1024" >"$photos"
    fi
    [ -r "$photos" ] || die "MOVERZ_DEMO_PHOTOS: cannot read $photos"
    assets=$(jq -Rnc '[inputs | select(length > 0) | split(" ") | map(select(length > 0))
                       | {url: .[0], roomType: .[1]} | with_entries(select(.value != null))]
                      | to_entries | map(.value + {filename: "photo\(.key + 1).jpg"})' "$photos")
    batch=$(psql -qAtX -v ON_ERROR_STOP=1 -v assets="$assets" -v project="$project" \
                 <<<"SELECT moverz_batch.create_batch(:'project', 'customer-42', :'assets'::jsonb)") \
        || die "the photo list was refused (above: the field and the rule)"
    echo "== batch $batch submitted ($(jq length <<<"$assets") photos) to $PROVIDER"
else
# the demo's 7 photos, the ones the customer page offers (the fake AI reads
# the items in their URLs; cave.jpg's host does not exist)
batch=$(psql -qAtX -v ON_ERROR_STOP=1 -v assets="$(cat web/customer/demo-photos.json)" -v project="$project" \
             <<<"SELECT moverz_batch.create_batch(:'project', 'customer-42', :'assets'::jsonb, 'NORMAL')")
echo "== batch $batch submitted (7 photos; cave.jpg has an unreachable URL)"
fi

if [ -n "$CLI" ]; then
    "$CLI" watch "$batch" || [ $? -eq 2 ]   # 2: finished with failures
else
    while :; do
        line=$(psql -qAtX -c "SELECT p->>'status', p->>'progress', p#>>'{counts,completed}',
                                     p#>>'{counts,failed}', p#>>'{counts,total}'
                                FROM moverz_batch.batch_progress('$batch') p" | tr '|' ' ')
        read -r status pct done failed total <<<"$line"
        bar=$(printf '%*s' $((pct / 4)) '' | tr ' ' '#')
        printf '\r[%-25s] %3s%%  %s done, %s failed of %s  %-10s' "$bar" "$pct" "$done" "$failed" "$total" "$status"
        case "$status" in PARTIAL|COMPLETED|FAILED) break ;; esac
        sleep 0.2
    done
    echo
fi
mb_wait_for 10 "SELECT moverz_batch.batch_progress('$batch') ? 'inventorySummary'"
echo
echo "== what the model found, photo by photo"
psql -qX -P pager=off -P format=wrapped -c "SELECT p.filename, coalesce(p.room_type, '?') AS room,
                    coalesce((SELECT string_agg((i->>'quantity') || ' x ' || (i->>'label') || ' (' || (i->>'volume_m3') || ' m3)', ', ')
                                FROM jsonb_array_elements(p.analysis->'items') i),
                             p.error_code || ': ' || left(p.error_message, 100)) AS found
               FROM moverz_batch.photos p WHERE p.batch_id = '$batch' ORDER BY p.position"
echo "== AI metrics of the batch"
psql -qX -P pager=off -P format=wrapped -c "SELECT count(*) AS calls, round(avg(latency_ms)) AS avg_latency_ms,
                    count(*) FILTER (WHERE success) AS successes, sum(tokens_in) AS tokens_in,
                    sum(tokens_out) AS tokens_out, sum(cost_usd) AS total_cost_usd,
                    string_agg(DISTINCT model, ', ') AS models
               FROM moverz_batch.ai_metrics WHERE meta->>'batchId' = '$batch'"
if [ "$JSON" = 1 ]; then
    echo "== final batch_progress('$batch')"
    psql -qAtX -c "SELECT jsonb_pretty(moverz_batch.batch_progress('$batch'))"
fi
[ "$JSON" = 1 ] || echo "(tools/demo.sh --json also prints the final batch_progress JSON)"
# the human summary last, so that it is what stays on the screen
echo "== summary of batch $batch"
if [ -n "$CLI" ]; then
    "$CLI" watch "$batch" || [ $? -eq 2 ]   # a finished batch: its bar and inventory at once
else
    psql -qX -P pager=off -P format=wrapped -c "SELECT p->>'status' AS status, p#>>'{counts,completed}' AS analysed,
                        p#>>'{counts,failed}' AS failed, p#>>'{counts,total}' AS total,
                        p#>>'{inventorySummary,totalItems}' AS items,
                        p#>>'{inventorySummary,totalVolume}' AS volume_m3
                   FROM moverz_batch.batch_progress('$batch') p"
fi
