#!/usr/bin/env bash
# bench/publish.sh: what publishing live progress to Nchan costs the
# pipeline (issue #17).  Scenario A of bench/run.sh (photos with a 0 ms AI
# answer, so the pipeline's own overhead is the whole time), alternately
# with moverz_batch.publish_url off and on, in one cluster, one run after
# the other; with publishing on, one SSE client follows each batch through
# nginx + Nchan, as a browser would.  Prints, per mode, the median (min-max)
# photos/s from the start of processing (the batch is created paused) to
# its inventory (server timestamps), the
# events published and the publisher's counters.
#
# Usage: bench/publish.sh [--runs N] [--photos N] [--no-build] [--no-subscriber]
#   --no-subscriber  publish with nobody following the batches (what the
#                    pipeline and the publisher cost, without the SSE client)
set -uo pipefail
cd "$(dirname "$0")/.."
source test/lib.sh
source test/http/lib_http.sh

RUNS=5
PHOTOS=2000
BUILD=1
SUBSCRIBER=1
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift ;;
        --photos) PHOTOS=$2; shift ;;
        --no-build) BUILD=0 ;;
        --no-subscriber) SUBSCRIBER=0 ;;
        -h|--help) sed -n 2,14p "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

WORK=$(mktemp -d /tmp/moverz_publish_bench.XXXXXX)
cleanup() {
    [ -n "${FAKE_AI_PID:-}" ] && kill "$FAKE_AI_PID" 2>/dev/null
    mb_http_stop
    mb_cluster_stop
    rm -rf "$WORK"
}
trap cleanup EXIT

[ "$BUILD" = 1 ] && { mb_install_deps && mb_build || exit 1; }
mb_http_install || exit 1
make -s fake_ai >/dev/null || exit 1
mb_fake_start "$WORK/fake_ai.out" || exit 1
mb_cluster_start "moverz_batch.ai_service_url = '$FAKE_AI_URL'" "moverz_batch.workers = 1" \
    "moverz_batch.max_inflight = 64" "moverz_batch.outage_max_wait = 0" "moverz_batch.max_batch_size = 100000" \
    "shared_buffers = '256MB'" || exit 1
export PGDATABASE=postgres
psql -qX -c "CREATE EXTENSION moverz_batch" >/dev/null || exit 1
mb_http_start || exit 1
publish_url=$MB_PUBLISH_URL
q() { psql -qAtX -v ON_ERROR_STOP=1 -c "$1"; }
project=$(q "SELECT moverz_batch.create_project('bench', 'publish')")
token=$(mb_jwt "{\"role\": \"moverz_user\", \"sub\": \"bench\", \"exp\": $(($(date +%s) + 3600))}")

# one_run MODE RUN: one batch of PHOTOS photos; prints photos/s.
one_run() {
    local mode=$1 run=$2 batch rate t0 sse=
    if [ "$mode" = on ]; then
        q "ALTER SYSTEM SET moverz_batch.publish_url = '$publish_url'" >/dev/null
    else
        q "ALTER SYSTEM RESET moverz_batch.publish_url" >/dev/null
    fi
    q "SELECT pg_reload_conf()" >/dev/null
    sleep 0.5
    q "SELECT moverz_batch.pause_processing()" >/dev/null
    batch=$(q "SELECT moverz_batch.create_batch('$project', 'bench',
                 (SELECT jsonb_agg(jsonb_build_object('filename', 'p' || i || '.jpg',
                          'url', 'https://img.example.com/$mode$run/p' || i || '.jpg?items=box:1:0.1'))
                    FROM generate_series(1, $PHOTOS) AS i))")
    if [ "$mode" = on ] && [ "$SUBSCRIBER" = 1 ]; then
        curl -sN --max-time 120 -H 'Accept: text/event-stream' \
             "$MB_API_URL/api/batches/$batch/stream?access_token=$token" >"$WORK/sse.$run" 2>/dev/null &
        sse=$!
        sleep 0.3
    fi
    t0=$(q "SELECT clock_timestamp()")
    q "SELECT moverz_batch.resume_processing()" >/dev/null
    mb_wait_for 120 "SELECT EXISTS (SELECT 1 FROM moverz_batch.inventory_summaries s JOIN moverz_batch.batches b
                                       ON b.id = s.batch_id AND s.generation = b.inventory_generation
                                    WHERE b.id = '$batch')" >/dev/null || { echo "batch $batch did not finish" >&2; return 1; }
    rate=$(q "SELECT round($PHOTOS / extract(epoch FROM s.synced_at - '$t0'::timestamptz))
                FROM moverz_batch.batches b JOIN moverz_batch.inventory_summaries s ON s.batch_id = b.id
               WHERE b.id = '$batch'")
    if [ -n "$sse" ]; then
        wait "$sse"
        echo "$rate $(grep -c '^data: ' "$WORK/sse.$run")"
    else
        echo "$rate -"
    fi
}

echo "# bench/publish.sh: $PHOTOS photos per batch, 0 ms AI, 1 photo worker, $RUNS runs per mode, alternating, SSE subscriber: $([ "$SUBSCRIBER" = 1 ] && echo yes || echo no)"
echo "# $(nproc) cores, $(uname -r), PostgreSQL $(q 'SHOW server_version'), $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null)"
: >"$WORK/off"; : >"$WORK/on"
for run in $(seq "$RUNS"); do
    for mode in off on; do
        line=$(one_run "$mode" "$run") || exit 1
        echo "run $run publish=$mode: $line photos/s, SSE events"
        echo "$line" >>"$WORK/$mode"
    done
done
median() { sort -n | awk '{v[NR] = $1} END {printf "%s (%s-%s)", v[int((NR + 1) / 2)], v[1], v[NR]}'; }
echo "publish off: $(cut -d' ' -f1 "$WORK/off" | median) photos/s"
echo "publish on:  $(cut -d' ' -f1 "$WORK/on" | median) photos/s, SSE events per batch $(cut -d' ' -f2 "$WORK/on" | median)"
echo "publisher: $(q "SELECT format('published %s, dropped %s, failed %s', published, dropped, failed) FROM moverz_batch.publish_status()")"
