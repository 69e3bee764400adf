#!/usr/bin/env bash
# bench/uploads.sh: benchmarks of the direct upload of photo files (issue
# #21), database store, against the installed extension (no build: run
# `make install` first; only the fake AI is built if missing).
#
# Starts a throwaway cluster (test/lib.sh, a private port 28000-28999, fsync
# and synchronous_commit ON, shared_buffers 256MB, one photo worker,
# max_inflight 64) and two fake AI services (test/fake_ai: 0 ms, and
# --latency-ms MS), then measures:
#   M  memory: 64 uploaded PNGs of 5 MiB (5,242,880 bytes, node
#      test/tools/make_png.js's makePng) in one batch, the slow fake holding
#      every request MS, with moverz_batch.max_inflight_bytes 512MB (all 64
#      may be in flight) then 128MB (the default): the photo worker's VmHWM
#      (the kernel's exact peak of VmRSS: the cluster is restarted before
#      each run, so each run has a fresh worker), its peak RssAnon and
#      RssShmem (bench/rss_sampler.sh, every 50 ms), its RssAnon while all
#      its requests wait and when idle again (and its memory contexts then,
#      run 1: bench/results/uploads-contexts.txt), the most requests in
#      flight at the fake, the first request's delay, the wall time.
#   T  throughput: batches of N uploaded PNGs of 500 kB (512,000 bytes) and
#      of N URL photos (bench.payload), fake at 0 ms, alternated (the order
#      swapped every run): photos/s (create_batch to inventory visible),
#      the ratio upload / URL of each pair, the CPU-ms per photo of the
#      photo worker, the cluster and the fake, the worker's RssAnon.
# Every sample also has the share of the machine's CPU used by other
# processes (the machine may be shared).
# Uploads are requested (request_uploads) and stored over SQL
# (store_upload(pg_read_binary_file(...))) before the clock starts, then a
# CHECKPOINT; every batch has a project of its own and is checked
# (bench.check, bench.check_uploaded, the fake's /stats/images).
# Everything it started is stopped on exit.
#
# Usage: bench/uploads.sh [--runs R] [--n N] [--latency-ms MS] [--only M|T] [--profile]
#   --runs R        runs per configuration (default 3)
#   --n N           photos per throughput batch (default 1000)
#   --latency-ms MS latency of the slow fake in M (default 4000)
#   --only M|T      one part only
#   --profile       after T, one more upload batch under perf (cpu-clock):
#                   bench/results/uploads-profile.txt
# Results: bench/results/uploads.md (medians, min-max), uploads.jsonl (raw
# samples), uploads-contexts.txt, uploads-profile.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
source test/lib.sh

RUNS=3
N=1000
LATENCY_MS=4000
ONLY=MT
PROFILE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift ;;
        --n) N=$2; shift ;;
        --latency-ms) LATENCY_MS=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --profile) PROFILE=1 ;;
        -h|--help) sed -n 2,41p "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
BIG_N=64
BIG_BYTES=5242880
SMALL_BYTES=512000

OUT=bench/results
mkdir -p "$OUT"
RAW=$OUT/uploads.jsonl
: >"$RAW"
WORK=$(mktemp -d /tmp/moverz_uploads.XXXXXX)
chmod 755 "$WORK"     # the server reads the PNG files (pg_read_binary_file)
export MB_PORT=${MB_PORT:-$((28000 + RANDOM % 1000))}
T_START=$SECONDS

log() { printf '%s [%4ds] %s\n' "$(date +%H:%M:%S)" $((SECONDS - T_START)) "$*" >&2; }

cleanup() {
    [ -n "${SAMPLER_PID:-}" ] && kill "$SAMPLER_PID" 2>/dev/null
    [ -n "${PERF_PID:-}" ] && kill -INT "$PERF_PID" 2>/dev/null
    [ -n "${FAST_PID:-}" ] && kill "$FAST_PID" 2>/dev/null
    [ -n "${SLOW_PID:-}" ] && kill "$SLOW_PID" 2>/dev/null
    mb_cluster_stop
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- helpers

q() { psql -qAtX -v ON_ERROR_STOP=1 -c "$1"; }

# record PART FIGURE CONFIG RUN VALUE UNIT CHECK [EXTRA-JSON]: one sample.
record() {
    jq -cn --arg p "$1" --arg f "$2" --arg c "$3" --argjson r "$4" --arg v "$5" --arg u "$6" \
        --arg ok "$7" --argjson x "${8:-null}" --arg load "$(cut -d' ' -f1 /proc/loadavg)" \
        '{part: $p, figure: $f, config: $c, run: $r, unit: $u, ok: ($ok == "ok"), check: $ok,
          value: (if $v == "" then null else ($v | tonumber) end), load1: ($load | tonumber), extra: $x}' >>"$RAW"
}

set_conf() {
    q "ALTER SYSTEM SET $1 = '$2'" >/dev/null && q "SELECT pg_reload_conf()" >/dev/null
    sleep 0.5     # the worker takes it at its next turn
}

worker_pid() {
    q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'moverz_batch photo worker' LIMIT 1"
}

# mem_kb PID: "VmRSS RssAnon VmHWM RssFile" of PID, kB.
mem_kb() {
    awk '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 } /^VmHWM:/ { h = $2 } /^RssFile:/ { f = $2 }
         END { print r, a, h, f }' "/proc/$1/status"
}

# lib_version: the installed library's date and hash (another session may
# install a new build while this runs).
lib_version() {
    local lib
    lib=$("$MB_PGBIN/pg_config" --pkglibdir)/moverz_batch.so
    echo "$(date -r "$lib" '+%F %T') sha256 $(sha256sum "$lib" | cut -c1-12)"
}

cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# cluster_ticks: CPU ticks of the postmaster and its children (the bench's
# own session is gone by the time it is read, so it is not counted).
cluster_ticks() {
    local pm pid n=0
    pm=$(head -1 "$MB_DIR/data/postmaster.pid")
    for pid in "$pm" $(ps -o pid= --ppid "$pm"); do
        n=$((n + $(cpu_ticks "$pid" 2>/dev/null || echo 0)))
    done
    echo "$n"
}

# snapshot: "machine-busy machine-total ours" in ticks: the whole machine's
# (/proc/stat) and our processes' (the cluster, both fakes).
snapshot() {
    awk '/^cpu / { b = $2 + $3 + $4 + $7 + $8 + $9; printf "%d %d ", b, b + $5 + $6 }' /proc/stat
    echo $(($(cluster_ticks) + $(cpu_ticks "$FAST_PID") + $(cpu_ticks "$SLOW_PID")))
}

# foreign_pct SNAP0 SNAP1 SESSION: percent of the machine's CPU time used
# by other processes (other clusters, tests...) between two snapshots;
# SESSION: the ticks of the bench's own session (gone by SNAP1).
foreign_pct() {
    awk -v x="$1" -v y="$2" -v s="$3" 'BEGIN { split(x, a, " "); split(y, b, " ");
        d = b[2] - a[2]; f = (b[1] - a[1]) - (b[3] - a[3]) - s;
        printf "%.1f", (d > 0 && f > 0) ? 100 * f / d : 0 }'
}

# per_photo TICKS N: CPU-ms per photo.
per_photo() { awk -v d="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f", d * 1000 / hz / n }'; }

# mb FIELD KB...: field FIELD (from 1) of a list of kB, in MiB.
mb() { awk -v f="$1" '{ printf "%.1f", $f / 1024 }' <<<"${*:2}"; }

# start_cluster: the throwaway cluster, one photo worker on the 0 ms fake.
start_cluster() {
    mb_cluster_start "fsync = on" "synchronous_commit = on" "shared_buffers = 256MB" \
        "max_connections = 50" "moverz_batch.ai_service_url = '$FAST_URL'" "moverz_batch.workers = 1" ||
        return 1
    q "CREATE EXTENSION moverz_batch" >/dev/null &&
        psql -qAtX -v ON_ERROR_STOP=1 -f bench/sql/bench.sql >/dev/null &&
        psql -qAtX -v ON_ERROR_STOP=1 -f bench/sql/uploads.sql >/dev/null
}

# restart_cluster: a fresh photo worker (its VmHWM starts again).
restart_cluster() {
    mb_pg_ctl -w -t 60 -m fast restart >/dev/null || return 1
    mb_wait_for 30 "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'moverz_batch photo worker'"
}

# make_pngs DIR COUNT BYTES: COUNT distinct real PNGs DIR/1.png.. of BYTES
# bytes (test/tools/make_png.js's makePng, in one node process).
make_pngs() {
    mkdir -p "$1" && chmod 755 "$1"
    node -e '
        const { makePng } = require(process.argv[1]);
        const [dir, count, bytes] = [process.argv[2], +process.argv[3], +process.argv[4]];
        for (let i = 0; i < count; i++)   /* width and seed: every file different */
            require("fs").writeFileSync(`${dir}/${i + 1}.png`,
                makePng(64 + Math.floor(i / 256), 64, { seed: i % 256, bytes }));
    ' "$PWD/test/fake_providers/test_images.js" "$1" "$2" "$3"
}

fake() { curl -s -m 10 "$1$2" "${@:3}"; }

# stage KIND KEY: a new project, and payload KEY for it: KIND url (N URL
# photos) or big/small (uploads of $WORK/KIND, stored now); then CHECKPOINT.
# Prints the project.
stage() {
    local proj n
    proj=$(q "SELECT bench.new_project()") || return 1
    case "$1" in
        url) q "SELECT bench.payload('$2', $N)" >/dev/null ;;
        big) q "SELECT bench.stage_uploads('$proj', '$WORK/big', $BIG_N, '$2')" >/dev/null ;;
        small) q "SELECT bench.stage_uploads('$proj', '$WORK/small', $N, '$2')" >/dev/null ;;
    esac || return 1
    q "CHECKPOINT" >/dev/null
    echo "$proj"
}

# timed_batch PROJECT KEY CHECKFN: create_batch of payload KEY in PROJECT,
# wait for its inventory, check it with CHECKFN.  JSON: batch, n, wall_s, check.
timed_batch() {
    psql -qAtX -v ON_ERROR_STOP=1 -v proj="$1" -v key="$2" -v checkfn="$3" <<'SQL'
SET moverz_batch.max_batch_size = 1000000;
SELECT n FROM bench.payloads WHERE key = :'key' \gset
SELECT clock_timestamp() AS t0 \gset
SELECT moverz_batch.create_batch(:'proj', 'bench', p.assets) AS b FROM bench.payloads p WHERE p.key = :'key' \gset
CALL bench.wait_ready(:'b', 600) \gset w_
\if :{?w_ready_at}
\else
\set w_ready_at infinity
\endif
SELECT json_build_object('batch', :'b', 'n', :n,
    't0_us', (extract(epoch FROM :'t0'::timestamptz) * 1e6)::bigint,
    'wall_s', extract(epoch FROM :'w_ready_at'::timestamptz - :'t0'::timestamptz),
    'check', CASE :'checkfn' WHEN 'check' THEN bench.check(:'b', :n) ELSE bench.check_uploaded(:'b', :n) END,
    'session_ticks', (SELECT f[12]::bigint + f[13]::bigint
                        FROM string_to_array(split_part(pg_read_file('/proc/self/stat'), ') ', 2), ' ') AS f));
SQL
}

# fake_check URL N: 'ok' when the fake received N distinct inline images,
# each once, and N requests in all.
fake_check() {
    fake "$1" /stats/images | jq -r --argjson n "$2" --argjson t "$(fake "$1" /stats | jq .total)" '
        if (.images | length) == $n and all(.images[]; .calls == 1) and $t == $n then "ok"
        else "fake: \(.images | length) images, \($t) requests, want \($n)" end'
}

# sampled PID CMD...: run CMD with rss_sampler on PID; prints CMD's output,
# the sampler's peaks go to $WORK/rss.
sampled() {
    local pid=$1
    shift
    bench/rss_sampler.sh "$WORK/rss" "$pid" &
    SAMPLER_PID=$!
    "$@"
    kill "$SAMPLER_PID"; wait "$SAMPLER_PID" 2>/dev/null; SAMPLER_PID=
}

# inflight_probe URL PID WANT OUT: once the fake at URL has WANT requests
# in flight (polled every 50 ms, 60 s at most), wait 0.5 s and write PID's
# "VmRSS RssAnon VmHWM" to OUT, and have PID log its memory contexts.
inflight_probe() {
    local i
    for i in $(seq 1200); do
        [ "$(fake "$1" /stats | jq .inflight)" -ge "$3" ] 2>/dev/null && break
        sleep 0.05
    done
    sleep 0.5
    mem_kb "$2" >"$4"
    q "SELECT pg_log_backend_memory_contexts($2)" >/dev/null
}

# contexts PID: the memory contexts of 1 MB or more that PID logged, and
# the grand total (from the server log).
contexts() {
    sleep 0.5
    grep -E "\[$1\] .*(level: [0-9]+;|Grand total)" "$MB_DIR/server.log" | sed -E 's/^.*LOG: +//' |
        awk 'match($0, /[0-9]+ (bytes|total) in/) { if (substr($0, RSTART, RLENGTH) + 0 >= 1048576 || /^Grand/) print }'
}

# both CHECK1 CHECK2: the first that is not 'ok', or 'ok'.
both() { [ "$1" = ok ] && echo "$2" || echo "$1"; }

# ---------------------------------------------------------------- M: memory

# mem_run CAP RUN: one batch of 64 uploads of 5 MiB on a fresh worker.
mem_run() {
    local cap=$1 r=$2 proj pid idle res peak after ok cfg st probe s0 fc
    restart_cluster || return 1
    q "TRUNCATE moverz_batch.projects, moverz_batch.ai_metrics CASCADE" >/dev/null
    set_conf moverz_batch.max_inflight 64
    set_conf moverz_batch.max_inflight_bytes "$cap"
    set_conf moverz_batch.ai_service_url "$SLOW_URL"
    proj=$(stage big "big_$r") || return 1
    pid=$(worker_pid); idle=$(mem_kb "$pid")
    fake "$SLOW_URL" /reset -X POST >/dev/null
    : >"$WORK/probe"
    inflight_probe "$SLOW_URL" "$pid" "$([ "$cap" = 128MB ] && echo 25 || echo $BIG_N)" "$WORK/probe" &
    probe=$!
    s0=$(snapshot)
    res=$(sampled "$pid" timed_batch "$proj" "big_$r" check_uploaded)
    fc=$(foreign_pct "$s0" "$(snapshot)" "$(jq .session_ticks <<<"$res")")
    wait "$probe"
    sleep 1; after=$(mem_kb "$pid"); st=$(fake "$SLOW_URL" /stats)
    [ "$r" = 1 ] && { echo "## max_inflight_bytes $cap, run 1: all requests in flight"; contexts "$pid"; } >>"$OUT/uploads-contexts.txt"
    read -r -a peak <"$WORK/rss"
    ok=$(both "$(jq -r .check <<<"$res")" "$(fake_check "$SLOW_URL" $BIG_N)")
    cfg="max_inflight_bytes $cap"
    record M worker_vmhwm "$cfg" "$r" "$(mb 3 "$after")" MiB "$ok"
    record M worker_peak_rss_anon_sampled "$cfg" "$r" "$(mb 2 "${peak[@]}")" MiB "$ok"
    # VmHWM <= peak anon + file + peak shmem: a lower bound of the private peak
    record M worker_peak_rss_anon_from_vmhwm "$cfg" "$r" \
        "$(awk -v h="$(cut -d' ' -f3 <<<"$after")" -v f="$(cut -d' ' -f4 <<<"$after")" -v s="${peak[3]}" \
              'BEGIN { printf "%.1f", (h - f - s) / 1024 }')" MiB "$ok"
    record M worker_peak_rss_shmem_sampled "$cfg" "$r" "$(mb 4 "${peak[@]}")" MiB "$ok"
    record M worker_rss_anon_before "$cfg" "$r" "$(mb 2 "$idle")" MiB "$ok"
    record M worker_rss_anon_all_in_flight "$cfg" "$r" "$(mb 2 "$(cat "$WORK/probe")")" MiB "$ok"
    record M worker_rss_anon_idle_after "$cfg" "$r" "$(mb 2 "$after")" MiB "$ok"
    record M fake_max_inflight "$cfg" "$r" "$(jq .max_inflight <<<"$st")" requests "$ok"
    record M first_request_after_create_ms "$cfg" "$r" "$(jq -rn --argjson s "$st" --argjson x "$res" '($s.first_request_us - $x.t0_us) / 1000 | round')" ms "$ok"
    record M first_to_64th_request_ms "$cfg" "$r" "$(jq -r '(.last_request_us - .first_request_us) / 1000 | round' <<<"$st")" ms "$ok"
    record M wall "$cfg" "$r" "$(jq -r '.wall_s | . * 100 | round / 100' <<<"$res")" s "$ok"
    record M foreign_cpu_pct "$cfg" "$r" "$fc" "% of the machine" "$ok"
    log "M $cfg run $r: VmHWM $(mb 3 "$after") MiB, peak RssAnon $(mb 2 "${peak[@]}") MiB, RssShmem $(mb 4 "${peak[@]}") MiB," \
        "in flight $(mb 2 "$(cat "$WORK/probe")") MiB, idle $(mb 2 "$idle") -> $(mb 2 "$after") MiB, $(jq .max_inflight <<<"$st") in flight, $(jq -r .wall_s <<<"$res") s," \
        "$ok, other processes $fc % CPU"
}

part_m() {
    local r cap
    : >"$OUT/uploads-contexts.txt"
    log "M: making $BIG_N PNGs of $BIG_BYTES bytes"
    make_pngs "$WORK/big" $BIG_N $BIG_BYTES || return 1
    for r in $(seq "$RUNS"); do
        for cap in 512MB 128MB; do
            mem_run "$cap" "$r"
        done
    done
}

# ---------------------------------------------------------------- T: throughput

# tput_one KIND RUN: one timed batch of N photos, KIND url or small.
tput_one() {
    local kind=$1 r=$2 proj pid c0 f0 k0 res ok pps peak start cfg s0 fc
    proj=$(stage "$kind" "${kind}_$r") || return 1
    pid=$(worker_pid); start=$(mem_kb "$pid")
    fake "$FAST_URL" /reset -X POST >/dev/null
    c0=$(cpu_ticks "$pid"); f0=$(cpu_ticks "$FAST_PID"); k0=$(cluster_ticks); s0=$(snapshot)
    res=$(sampled "$pid" timed_batch "$proj" "${kind}_$r" "$([ "$kind" = url ] && echo check || echo check_uploaded)")
    fc=$(foreign_pct "$s0" "$(snapshot)" "$(jq .session_ticks <<<"$res")")
    c0=$(per_photo $(($(cpu_ticks "$pid") - c0)) "$N"); f0=$(per_photo $(($(cpu_ticks "$FAST_PID") - f0)) "$N")
    k0=$(per_photo $(($(cluster_ticks) - k0)) "$N")
    ok=$(jq -r .check <<<"$res")
    [ "$kind" = small ] && ok=$(both "$ok" "$(fake_check "$FAST_URL" "$N")")
    pps=$(jq -r --argjson n "$N" '$n / .wall_s | round' <<<"$res")
    read -r -a peak <"$WORK/rss"
    cfg="$N photos"
    record T "${kind}_photos_per_s" "$cfg" "$r" "$pps" photos/s "$ok" "$res"
    record T "${kind}_worker_cpu_ms_per_photo" "$cfg" "$r" "$c0" ms "$ok"
    record T "${kind}_cluster_cpu_ms_per_photo" "$cfg" "$r" "$k0" ms "$ok"
    record T "${kind}_fake_cpu_ms_per_photo" "$cfg" "$r" "$f0" ms "$ok"
    record T "${kind}_foreign_cpu_pct" "$cfg" "$r" "$fc" "% of the machine" "$ok"
    record T "${kind}_worker_rss_anon_at_start" "$cfg" "$r" "$(mb 2 "$start")" MiB "$ok"
    record T "${kind}_worker_peak_rss_anon_sampled" "$cfg" "$r" "$(mb 2 "${peak[@]}")" MiB "$ok"
    record T "${kind}_worker_vmhwm_since_restart" "$cfg" "$r" "$(mb 3 "${peak[@]}")" MiB "$ok"
    log "T $kind run $r: $pps photos/s, CPU-ms/photo worker $c0, cluster $k0, fake $f0;" \
        "RssAnon $(mb 2 "$start") -> peak $(mb 2 "${peak[@]}") MiB; $ok, other processes $fc % CPU"
}

part_t() {
    local r
    log "T: making $N PNGs of $SMALL_BYTES bytes"
    make_pngs "$WORK/small" "$N" $SMALL_BYTES || return 1
    restart_cluster || return 1
    set_conf moverz_batch.max_inflight 64
    set_conf moverz_batch.max_inflight_bytes 128MB
    set_conf moverz_batch.ai_service_url "$FAST_URL"
    tput_one url 0 >/dev/null 2>&1; tput_one small 0 >/dev/null 2>&1    # warm-up, not kept
    jq -c 'select(.run != 0)' "$RAW" >"$WORK/raw" && cp "$WORK/raw" "$RAW"
    for r in $(seq "$RUNS"); do
        q "TRUNCATE moverz_batch.projects, moverz_batch.ai_metrics CASCADE" >/dev/null
        if [ $((r % 2)) = 1 ]; then tput_one url "$r"; tput_one small "$r"
        else tput_one small "$r"; tput_one url "$r"; fi
    done
}

# profile_pass: one more batch of N uploads of 500 kB under perf (cpu-clock,
# the photo worker and the fake): bench/results/uploads-profile.txt.
profile_pass() {
    local proj pid
    proj=$(stage small small_profile) || return 1
    pid=$(worker_pid)
    perf record -e cpu-clock -F 2000 -g -p "$pid,$FAST_PID" -o "$WORK/perf.data" >/dev/null 2>&1 &
    PERF_PID=$!
    sleep 0.5
    timed_batch "$proj" small_profile check_uploaded >"$WORK/profile_run.json"
    kill -INT "$PERF_PID"; wait "$PERF_PID" 2>/dev/null; PERF_PID=
    profile_report >"$OUT/uploads-profile.txt"
    log "profile written to $OUT/uploads-profile.txt"
}

# profile_report: the shares of the processes, the top symbols, and the
# worker's own (self time, % of its samples; the call graphs of binaries
# built without frame pointers are not reliable, so no inclusive times).
profile_report() {
    local rep=(perf report -i "$WORK/perf.data" -g none --stdio)
    echo "# perf (cpu-clock) of one batch of $N uploads of $SMALL_BYTES bytes: $(cat "$WORK/profile_run.json")"
    echo "## share of the samples: the photo worker (postgres), the fake's threads (MHD-connection)"
    "${rep[@]}" --no-children --sort comm 2>/dev/null | grep -E '^ +[0-9]'
    echo "## top symbols (self), % of all samples"
    "${rep[@]}" --no-children --sort comm,dso,sym 2>/dev/null | grep -E '^ +[0-9]' | head -25
    echo "## the photo worker alone: self time, % of its own samples"
    "${rep[@]}" --comm postgres --percentage relative --no-children --sort dso,sym 2>/dev/null |
        grep -E '^ +[0-9]' | head -20
    echo "## the fake alone: self time, % of its own samples"
    "${rep[@]}" --comm MHD-connection --percentage relative --no-children --sort dso,sym 2>/dev/null |
        grep -E '^ +[0-9]' | head -10
}

# ---------------------------------------------------------------- summary

# summarize: medians (min-max) per figure, and the ratio upload / URL of
# each run's pair, to bench/results/uploads.md.
summarize() {
    {
        echo "# bench/uploads.sh — $(date -u '+%F %H:%M UTC'), $RUNS runs, N = $N, slow fake ${LATENCY_MS} ms"
        echo
        echo "machine: $(nproc) cores, $(free -m | awk '/^Mem:/ { print $2 " MB" }'), PostgreSQL $(q "SHOW server_version" 2>/dev/null);" \
             "load average (1 min; the fake's 64 threads count in it) during the runs: $(jq -s '[.[].load1] | "\(min)-\(max)"' -r "$RAW")"
        echo "library: at start $LIB_START, at end $(lib_version)"
        echo
        echo "| part | figure | config | median | min-max | unit | runs ok |"
        echo "|---|---|---|---|---|---|---|"
        jq -rs '
            def med: sort | .[(length - 1) / 2 | floor];
            (map(select(.part == "T" and .ok)) | group_by(.run)
             | map({run: .[0].run, u: (map(select(.figure == "url_photos_per_s"))[0].value),
                    s: (map(select(.figure == "small_photos_per_s"))[0].value)})
             | map(select(.u and .s)) | map(.s / .u)) as $ratios
            | (group_by([.part, .figure, .config]) | map(
                (map(select(.ok)) | map(.value)) as $v
                | "| \(.[0].part) | \(.[0].figure) | \(.[0].config) | \($v | if length > 0 then med else "-" end) | \($v | if length > 0 then "\(min)-\(max)" else "-" end) | \(.[0].unit) | \($v | length)/\(length) |"))[],
              (if ($ratios | length) > 0 then
                 "| T | uploads 500 kB / URL photos/s, per run pair | | \($ratios | med * 100 | round / 100) | \($ratios | min * 100 | round / 100)-\($ratios | max * 100 | round / 100) | ratio | \($ratios | length) |"
               else empty end)' "$RAW"
        echo
        echo "Failed checks: $(jq -rs 'map(select(.ok | not) | "\(.part) \(.figure) run \(.run): \(.check)") | unique | join("; ") | if . == "" then "none" else . end' "$RAW")"
    } >"$OUT/uploads.md"
    cat "$OUT/uploads.md"
}

# ---------------------------------------------------------------- main

[ -x test/fake_ai/fake_ai ] || make -s fake_ai >/dev/null || exit 1
mb_fake_start "$WORK/fast.out" || exit 1
FAST_URL=$FAKE_AI_URL FAST_PID=$FAKE_AI_PID
mb_fake_start "$WORK/slow.out" --latency-ms "$LATENCY_MS" || exit 1
SLOW_URL=$FAKE_AI_URL SLOW_PID=$FAKE_AI_PID
start_cluster || { echo "cannot start the cluster" >&2; exit 1; }
LIB_START=$(lib_version)
log "cluster on port $PGPORT ($(q "SHOW server_version")), fakes $FAST_URL (0 ms), $SLOW_URL (${LATENCY_MS} ms), load $(cut -d' ' -f1-3 /proc/loadavg)"
case "$ONLY" in *M*) part_m ;; esac
case "$ONLY" in *T*) part_t ;; esac
[ "$PROFILE" = 1 ] && case "$ONLY" in *T*) profile_pass ;; esac
summarize
log "done in $((SECONDS - T_START)) s: $OUT/uploads.md"
