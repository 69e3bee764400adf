#!/usr/bin/env bash
# tools/demo.sh: the main job, end to end, on a throwaway cluster.
#
# Installs what is missing, builds and installs moverz_batch, starts a
# throwaway PostgreSQL cluster and the fake AI service, submits a realistic
# batch with moverz-batch submit (7 photos by URL, several rooms, one
# unreachable, and 3 photo files generated here, uploaded: the fake AI
# service answers them from their bytes), shows its progress live, then
# what the model found photo by photo and the AI metrics, ends with the
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
# tools/demo.sh --photos DIR: the batch is your own room photos instead,
# every JPEG, PNG, WebP or GIF file of DIR (told by its first bytes),
# uploaded (and the URLs of MOVERZ_DEMO_PHOTOS, if set); meant for a real
# model (the fake AI service makes up what it finds in a file from its
# bytes).  A file larger than the model takes (max_upload_bytes, and for
# Anthropic 3.75 MB) is left out, with a note.
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
PHOTOS_DIR=
USAGE="usage: tools/demo.sh [--installed] [--json] [--photos DIR]  |  tools/demo.sh [--installed] --web"
while [ $# -gt 0 ]; do
    case "$1" in
        --web) WEB=1 ;;
        --json) JSON=1 ;;
        --installed) INSTALLED=1 ;;
        --photos=?*) PHOTOS_DIR=${1#--photos=} ;;
        --photos) [ $# -gt 1 ] && [ -n "$2" ] || { echo "$USAGE" >&2; exit 2; }
                  PHOTOS_DIR=$2; shift ;;
        "") ;;
        *) echo "$USAGE" >&2; exit 2 ;;
    esac
    shift
done
if [ "$WEB" = 1 ] && { [ "$JSON" = 1 ] || [ -n "$PHOTOS_DIR" ]; }; then
    echo "$USAGE" >&2
    exit 2
fi

cleanup() {
    set +e   # stop everything, whatever fails on the way
    [ -n "${SLEEP_PID:-}" ] && kill "$SLEEP_PID" 2>/dev/null
    [ "$WEB" = 1 ] && mb_http_stop
    [ -n "${FAKE_AI_PID:-}" ] && kill "$FAKE_AI_PID" 2>/dev/null
    [ -n "${FAKE_OUT:-}" ] && rm -f "$FAKE_OUT"
    [ -n "${DEMO_DIR:-}" ] && rm -rf "$DEMO_DIR"
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

# image_file FILE: FILE is a JPEG, PNG, WebP or GIF image, by its magic
# numbers (as moverz-batch and the server tell them).
image_file() {
    case "$(head -c 12 "$1" 2>/dev/null | od -An -tx1 | tr -d ' \n')" in
        ffd8ff*|89504e470d0a1a0a*|474946383761*|474946383961*|52494646????????57454250) return 0 ;;
    esac
    return 1
}

# photo_files DIR [MAX_BYTES]: the image files of DIR (not its
# subdirectories), in name order, into PHOTO_FILES; those over MAX_BYTES
# left out with a note.
photo_files() {
    local f size
    PHOTO_FILES=()
    for f in "$1"/*; do
        [ -f "$f" ] && image_file "$f" || continue
        size=$(stat -L -c %s "$f")
        if [ -n "${2:-}" ] && [ "$size" -gt "$2" ]; then
            echo "demo: note: $f left out: $size bytes, more than the $2 a photo may have here (resize it)" >&2
            continue
        fi
        PHOTO_FILES+=("$f")
    done
}

PROVIDER=${MOVERZ_AI_PROVIDER:-moverz-ai}
if [ -n "$PHOTOS_DIR" ]; then
    [ -d "$PHOTOS_DIR" ] && [ -r "$PHOTOS_DIR" ] || die "--photos: $PHOTOS_DIR is not a readable directory"
    photo_files "$PHOTOS_DIR"
    [ ${#PHOTO_FILES[@]} -gt 0 ] || die "--photos: no JPEG, PNG, WebP or GIF file in $PHOTOS_DIR"
fi
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
    CLI=tools/moverz-batch
    [ -x "$CLI" ] || die "the client $CLI was not built"
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
# The photos: URLs in $urls (one "URL [room_type]" a line), files in
# PHOTO_FILES; moverz-batch submit uploads the files (over the database
# connection: no HTTP API here) and prints the batch id.
DEMO_DIR=$(mktemp -d /tmp/moverz_demo.XXXXXX)
urls=$DEMO_DIR/photos.txt
PHOTO_FILES=()
if [ "$PROVIDER" != moverz-ai ] || [ -n "$PHOTOS_DIR" ]; then
    if [ -n "${MOVERZ_DEMO_PHOTOS:-}" ]; then
        [ -r "$MOVERZ_DEMO_PHOTOS" ] || die "MOVERZ_DEMO_PHOTOS: cannot read $MOVERZ_DEMO_PHOTOS"
        cp -- "$MOVERZ_DEMO_PHOTOS" "$urls"
    fi
fi
if [ -n "$PHOTOS_DIR" ]; then
    # the user's own photos, at most the size the server takes (as
    # request_uploads: Anthropic takes 5 MB of base64)
    max=$(psql -qAtX -c "SELECT pg_size_bytes(current_setting('moverz_batch.max_upload_bytes'))")
    [ "$PROVIDER" = anthropic ] && [ "$max" -gt 3932160 ] && max=3932160
    photo_files "$PHOTOS_DIR" "$max"
    [ ${#PHOTO_FILES[@]} -gt 0 ] || die "--photos: every image file of $PHOTOS_DIR is too large"
    what="${#PHOTO_FILES[@]} photo files of $PHOTOS_DIR"
    [ "$PROVIDER" = moverz-ai ] && echo "demo: note: the fake AI service makes up what it finds in a file from its bytes"
elif [ "$PROVIDER" != moverz-ai ]; then
    # public photos of rooms (Unsplash), or the user's own list
    [ -s "$urls" ] || printf '%s\n' \
        "https://images.unsplash.com/photo-1586023492125-27b2c045efd7?w=1024 living_room" \
        "https://images.unsplash.com/photo-1505693416388-ac5ce068fe85?w=1024 bedroom" \
        "https://images.unsplash.com/photo-1556911220-bff31c812dba?w=1024 kitchen" \
        "https://images.unsplash.com/photo-1524758631624-e2822e304c36?w=1024" >"$urls"
    what="photos of rooms by URL"
else
    # the 7 photos the customer page offers (the fake AI reads the items in
    # their URLs; cave.jpg's host does not exist), and 3 photo files made
    # here, of a realistic size (the fake AI answers them from their bytes,
    # their rooms from their names)
    jq -r '.[] | .url + (if .roomType then " " + .roomType else "" end)' web/customer/demo-photos.json >"$urls"
    for spec in "sdb.png 800 600 1 412000" "entree.png 640 480 2 287000" "salle_a_manger.png 1024 768 3 530000"; do
        read -r name w h seed size <<<"$spec"
        node test/tools/make_png.js "$DEMO_DIR/$name" "$w" "$h" "$seed" "$size"
        PHOTO_FILES+=("$DEMO_DIR/$name")
    done
    what="7 photos by URL, cave.jpg's unreachable, and 3 photo files"
fi
[ -s "$urls" ] && set -- "$urls" || set --
batch=$("$CLI" submit --user customer-42 --project "$project" "$@" "${PHOTO_FILES[@]}") \
    || die "the photos were refused (above: the field and the rule)"
echo "== batch $batch submitted ($what) to $PROVIDER"

"$CLI" watch "$batch" || [ $? -eq 2 ]   # 2: finished with failures
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
"$CLI" watch "$batch" || [ $? -eq 2 ]   # a finished batch: its bar and inventory at once
