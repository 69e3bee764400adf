#!/usr/bin/env bash
# bench/run.sh: the moverz_batch benchmark suite (issue #6).
#
# Builds and installs the extension and the fake AI service, starts a
# throwaway cluster (test/lib.sh, fsync and synchronous_commit ON,
# shared_buffers 256MB) and the fake AI service, runs the scenarios
#   A  overhead-bound throughput (0 ms AI), B  latency-bound wall time,
#   C  latencies of the API and of the pipeline, D  resources,
# checks the correctness of every batch, and writes the medians (min-max)
# to bench/results/latest.md and latest.json (raw samples: latest.jsonl).
# Everything it started is stopped on exit.
#
# Usage: bench/run.sh [--quick] [--runs N] [--no-build] [--no-profile] [--patch FILE.sql]
#   --quick       one run of each scenario, smaller sizes (< 60 s): a smoke run
#   --runs N      runs per scenario (default 3)
#   --no-build    do not build/install first
#   --no-profile  skip the profile pass (pg_stat_statements, perf)
#   --profile     do the profile pass in --quick mode too
#   --patch F     what-if: run the SQL file F in the bench cluster right after
#                 CREATE EXTENSION (e.g. a suggested fix),
#                 results in bench/results/patched[-quick].*; never touches
#                 the sources
set -uo pipefail
cd "$(dirname "$0")/.."
source test/lib.sh

QUICK=0
RUNS=3
BUILD=1
PROFILE=
PATCH=
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; RUNS=1 ;;
        --runs) RUNS=$2; shift ;;
        --no-build) BUILD=0 ;;
        --no-profile) PROFILE=0 ;;
        --profile) PROFILE=1 ;;
        --patch) PATCH=$(realpath "$2"); shift ;;
        -h|--help) sed -n 2,23p "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

# Sizes of the scenarios (full / quick).
if [ "$QUICK" = 1 ]; then
    A_SMALL=1000; A_BIG=3000; A_CONFIGS="1:256"
    B1_N=500; B1_INFLIGHT=100; B2_N=1000; B2_INFLIGHT=1000; B3_N=1000
    C_CALLS3=10; C_CALLS1000=2; C_FIRST=3; C_PROGRESS=10
    PROFILE=${PROFILE:-0}
else
    A_SMALL=2000; A_BIG=20000; A_CONFIGS="1:64 1:256 2:64 2:256"
    B1_N=1000; B1_INFLIGHT=100; B2_N=10000; B2_INFLIGHT=1000; B3_N=10000
    C_CALLS3=30; C_CALLS1000=10; C_FIRST=10; C_PROGRESS=30
    PROFILE=${PROFILE:-1}
fi
B_LATENCY_MS=500
# B3: B2's photos and in-flight requests at a real model's latency (issue #16)
B3_LATENCY_MS=2500

OUT=bench/results
mkdir -p "$OUT"
TAG=$([ "$QUICK" = 1 ] && echo quick || echo latest)
[ -n "$PATCH" ] && TAG=$([ "$QUICK" = 1 ] && echo patched-quick || echo patched)
RAW=$OUT/$TAG.jsonl
WORK=$(mktemp -d /tmp/moverz_bench.XXXXXX)
: >"$RAW"
T_START=$SECONDS
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

log() { printf '%s [%4ds] %s\n' "$(date +%H:%M:%S)" $((SECONDS - T_START)) "$*" >&2; }

cleanup() {
    [ -n "${SAMPLER_PID:-}" ] && kill "$SAMPLER_PID" 2>/dev/null
    [ -n "${PERF_PID:-}" ] && kill -INT "$PERF_PID" 2>/dev/null
    [ -n "${FAKE_AI_PID:-}" ] && kill "$FAKE_AI_PID" 2>/dev/null
    mb_cluster_stop
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- helpers

# q SQL: run SQL, print the unaligned result; fails on error.
q() { psql -qAtX -v ON_ERROR_STOP=1 -c "$1"; }

# record SCENARIO FIGURE CONFIG RUN VALUE UNIT OK [EXTRA-JSON]: one sample.
record() {
    jq -cn --arg s "$1" --arg f "$2" --arg c "$3" --argjson r "$4" --arg v "$5" \
        --arg u "$6" --arg ok "$7" --argjson x "${8:-null}" \
        '{scenario: $s, figure: $f, config: $c, run: $r,
          value: (if $v == "" then null else ($v | tonumber) end), unit: $u,
          ok: ($ok == "ok"), check: $ok, extra: $x}' >>"$RAW"
}

fake() { curl -s -m 10 "$FAKE_AI_URL$1" "${@:2}"; }

# set_conf NAME VALUE: ALTER SYSTEM + reload; the workers take it at their next turn.
set_conf() {
    q "ALTER SYSTEM SET $1 = '$2'" >/dev/null && q "SELECT pg_reload_conf()" >/dev/null
    sleep 0.5
}

build() {
    local try
    for try in 1 2 3; do
        if make -s >/dev/null && make -s install >/dev/null && make -s fake_ai >/dev/null; then
            return 0
        fi
        log "build failed (attempt $try); the sources may be changing: retrying in 60 s"
        sleep 60
    done
    return 1
}

# start_cluster WORKERS: a fresh throwaway cluster with WORKERS photo workers
# (a restart keeps the data: see restart_cluster).
CLUSTER_SETTINGS=()
start_cluster() {
    CLUSTER_SETTINGS=(
        "fsync = on" "synchronous_commit = on" "shared_buffers = 256MB" "max_connections = 50"
        "shared_preload_libraries = 'moverz_batch,pg_stat_statements'"
        "pg_stat_statements.track = 'none'" "pg_stat_statements.max = 1000"
        "moverz_batch.ai_service_url = '$FAKE_AI_URL'"
        "moverz_batch.workers = $1")
    mb_cluster_start "${CLUSTER_SETTINGS[@]}" || return 1
    CUR_WORKERS=$1
    q "CREATE EXTENSION moverz_batch" >/dev/null
    q "CREATE EXTENSION pg_stat_statements" >/dev/null
    if [ -n "$PATCH" ]; then
        psql -qAtX -v ON_ERROR_STOP=1 -f "$PATCH" >/dev/null || return 1
    fi
    psql -qAtX -v ON_ERROR_STOP=1 -f bench/sql/bench.sql >/dev/null || return 1
}

# restart_cluster WORKERS: restart with another number of photo workers.
restart_cluster() {
    [ "$CUR_WORKERS" = "$1" ] && return 0
    q "ALTER SYSTEM SET moverz_batch.workers = $1" >/dev/null
    mb_pg_ctl -w -t 60 -m fast restart >/dev/null || return 1
    CUR_WORKERS=$1
    sleep 1
}

payload() { q "SELECT bench.payload('$1', $2, ${3:-0})" >/dev/null; }

worker_pids() {   # the photo workers' pids
    q "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity
        WHERE backend_type = 'moverz_batch photo worker'"
}

# cpu_snapshot: the machine's CPU time (/proc/stat: "machine BUSY TOTAL",
# clock ticks) and that of each process of our cluster and of the fake AI
# service ("PID<TAB>GROUP<TAB>TICKS"), for cpu_delta.
cpu_snapshot() {
    local pm pid name
    awk '/^cpu / { b = $2 + $3 + $4 + $7 + $8 + $9; print "machine\t" b "\t" b + $5 + $6 }' /proc/stat
    pm=$(head -1 "$MB_DIR/data/postmaster.pid")
    { echo "$pm postmaster"; ps -o pid=,args= --ppid "$pm"; echo "$FAKE_AI_PID fake_ai"; } |
    while read -r pid name; do
        case "$name" in
            *"photo worker"*) name=photo_workers ;;
            *"inventory worker"*) name=inventory_worker ;;
            fake_ai) ;;
            *"postgres postgres"*|*"[local]"*) name=bench_client_backends ;;
            *) name=postgres_other ;;   # postmaster, walwriter, checkpointer, autovacuum...
        esac
        awk -v p="$pid" -v t="$name" '{ sub(/^.*\) /, ""); print p "\t" t "\t" ($12 + $13) }' "/proc/$pid/stat" 2>/dev/null
    done
}

# cpu_delta BEFORE AFTER N: JSON of the CPU used between two snapshots:
# own_ms (per process group, ms), own_ms_per_photo (all our processes, per
# photo of N), foreign_cpu_pct (percent of the whole machine used by other
# processes: other clusters, tests...).
cpu_delta() {
    awk -F'\t' -v n="$3" -v hz="$(getconf CLK_TCK)" '
        FNR == 1 && NR == 1 { mb = $2; mt = $3; next }
        NR == FNR { b[$1] = $3; next }
        FNR == 1 { db = $2 - mb; dt = $3 - mt; next }
        { d = $3 - (($1 in b) ? b[$1] : 0); if (d > 0) { g[$2] += d; own += d } }
        END {
            ms = 1000 / hz; f = dt > 0 ? 100 * (db - own) / dt : 0; if (f < 0) f = 0
            printf "{\"foreign_cpu_pct\": %.1f, \"own_ms_per_photo\": %.3f, \"own_ms\": {", f, (n > 0 ? own * ms / n : 0)
            sep = ""; for (k in g) { printf "%s\"%s\": %d", sep, k, g[k] * ms; sep = ", " }
            print "}}"
        }' <(echo "$1") <(echo "$2")
}

# run_batch KEY [MARK]: submit the stored payload KEY as one batch, wait for
# its inventory, check it.  Prints one JSON object: batch, n, wall_s (from
# just before create_batch to the inventory being visible), create_ms,
# t1_us and ready_us (create_batch's return and the inventory visible, µs
# since the epoch, the fake's clock), last_to_ready_ms
# (max(photos.finished_at) to inventory visible), check, fake (the fake AI
# service's /stats; with MARK, it times the MARK-th request).
run_batch() {
    fake "/reset?mark=${2:-0}" -X POST >/dev/null
    local res c0 c1
    c0=$(cpu_snapshot)
    res=$(psql -qAtX -v ON_ERROR_STOP=1 -v key="$1" <<'SQL'
SET moverz_batch.max_batch_size = 1000000;
SELECT n FROM bench.payloads WHERE key = :'key' \gset
SELECT bench.new_project() AS proj \gset
SELECT clock_timestamp() AS t0 \gset
SELECT moverz_batch.create_batch(:'proj', 'bench', p.assets) AS b FROM bench.payloads p WHERE p.key = :'key' \gset
SELECT clock_timestamp() AS t1 \gset
CALL bench.wait_ready(:'b', 600) \gset w_
\if :{?w_ready_at}
SELECT :'w_ready_at' AS t2 \gset
\else
\set t2 infinity
\endif
SELECT json_build_object(
    'batch', :'b', 'n', :n,
    'wall_s', extract(epoch FROM :'t2'::timestamptz - :'t0'::timestamptz),
    'create_ms', bench.ms(:'t1'::timestamptz - :'t0'::timestamptz),
    't1_us', (extract(epoch FROM :'t1'::timestamptz) * 1e6)::bigint,
    'ready_us', (extract(epoch FROM :'t2'::timestamptz) * 1e6)::bigint,
    'last_to_ready_ms', bench.ms(:'t2'::timestamptz - (SELECT max(finished_at) FROM moverz_batch.photos WHERE batch_id = :'b')),
    'last_to_synced_ms', bench.ms((SELECT synced_at FROM moverz_batch.inventory_summaries WHERE batch_id = :'b')
                                   - (SELECT max(finished_at) FROM moverz_batch.photos WHERE batch_id = :'b')),
    'check', bench.check(:'b', :n));
SQL
)
    c1=$(cpu_snapshot)
    [ -n "$res" ] || res='{"check": "psql failed"}'
    jq -c --argjson f "$(fake /stats || echo null)" --argjson cpu "$(cpu_delta "$c0" "$c1" "$(jq -r '.n // 0' <<<"$res")")" \
        '. + {fake: $f} + $cpu' <<<"$res"
}

# ---------------------------------------------------------------- scenarios

# A: overhead-bound throughput of one batch with a 0 ms AI service.
scenario_a() {   # KEY N WORKERS INFLIGHT FIGURE [RUN]: RUNS runs, or only run RUN
    local key=$1 n=$2 w=$3 inf=$4 fig=$5 r res wall ok
    restart_cluster "$w" || return 1
    set_conf moverz_batch.max_inflight "$inf"
    for r in ${6:-$(seq "$RUNS")}; do
        res=$(run_batch "$key")
        wall=$(jq -r .wall_s <<<"$res"); ok=$(jq -r .check <<<"$res")
        record A "$fig" "workers=$w max_inflight=$inf" "$r" \
            "$(jq -rn --argjson n "$n" --argjson w "$wall" '$n / $w | . * 10 | round / 10')" \
            photos/s "$ok" "$(jq -c '{wall_s, create_ms, last_to_ready_ms, last_to_synced_ms, fake_max_inflight: .fake.max_inflight, fake_total: .fake.total, foreign_cpu_pct, own_ms_per_photo, own_ms}' <<<"$res")"
        log "A $fig workers=$w inflight=$inf run $r: $(jq -rn --argjson n "$n" --argjson w "$wall" '$n / $w | round') photos/s, $(jq -r .own_ms_per_photo <<<"$res") CPU-ms/photo, other processes $(jq -r .foreign_cpu_pct <<<"$res")% CPU ($ok)"
        record A "${fig}_cpu_ms_per_photo" "workers=$w max_inflight=$inf" "$r" \
            "$(jq -r .own_ms_per_photo <<<"$res")" "CPU-ms/photo" "$ok" "$(jq -c '.own_ms | with_entries(.value /= $n)' --argjson n "$n" <<<"$res")"
        record C "inventory_ready_after_last_result_${n}" "workers=$w max_inflight=$inf" "$r" \
            "$(jq -r .last_to_ready_ms <<<"$res")" ms "$ok" "$(jq -c '{last_to_synced_ms}' <<<"$res")"
    done
}

# b_timeline FIGURE INFLIGHT IDEAL_S RUN OK RESULT: where a B run's time above the
# ideal went (ms, no bar), from the run's times and the fake's (same clock):
# create_batch; its return -> the first request received; the first round
# (first -> INFLIGHT-th request received); the refill lag (the last request
# received, less the first round's end and the latency of the rounds
# between); the last answer -> the inventory visible.  wall = the ideal +
# these five + the fake's own delay on the last request (~0).
b_timeline() {
    local fig=$1 inf=$2 ideal=$3 r=$4 ok=$5 res=$6 part
    for part in create:'.create_ms' \
                commit_to_first_request:'(.fake.first_request_us - .t1_us) / 1000' \
                first_round:'(.fake.mark_request_us - .fake.first_request_us) / 1000' \
                refill_lag:'(.fake.last_request_us - .fake.mark_request_us) / 1000 - ($ideal * 1000 - $l)' \
                last_answer_to_inventory:'(.ready_us - .fake.last_answer_us) / 1000'; do
        record B "${fig}_${part%%:*}_ms" "workers=1 max_inflight=$inf" "$r" \
            "$(jq -r --argjson ideal "$ideal" --argjson l "$B_LATENCY_MS" "${part#*:} | . * 10 | round / 10" <<<"$res")" \
            ms "$ok"
    done
}

# B: latency-bound wall time, KEY of N photos at B_LATENCY_MS, INFLIGHT.
scenario_b() {   # KEY N INFLIGHT FIGURE [sample-rss]
    local key=$1 n=$2 inf=$3 fig=$4 rss=${5:-} r res wall ok ideal pids extra
    ideal=$(jq -rn --argjson n "$n" --argjson i "$inf" --argjson l "$B_LATENCY_MS" \
            '($n / $i | ceil) * $l / 1000')
    set_conf moverz_batch.max_inflight "$inf"
    for r in $(seq "$RUNS"); do
        if [ -n "$rss" ]; then
            pids=$(worker_pids)
            bench/rss_sampler.sh "$WORK/rss.$r" $pids &
            SAMPLER_PID=$!
        fi
        res=$(run_batch "$key" "$inf")
        wall=$(jq -r .wall_s <<<"$res"); ok=$(jq -r .check <<<"$res")
        extra=$(jq -c --argjson i "$ideal" '{wall_s, ideal_s: $i, fake_max_inflight: .fake.max_inflight, fake_total: .fake.total, foreign_cpu_pct, own_ms_per_photo, own_ms}' <<<"$res")
        b_timeline "$fig" "$inf" "$ideal" "$r" "$ok" "$res"
        record B "$fig" "workers=1 max_inflight=$inf" "$r" \
            "$(jq -rn --argjson w "$wall" --argjson i "$ideal" '$w / $i * 1000 | round / 1000')" \
            "x ideal" "$ok" "$extra"
        # the same from create_batch's return (its commit): what the workers
        # take, without the submission itself (informational, no bar)
        record B "${fig}_from_commit" "workers=1 max_inflight=$inf" "$r" \
            "$(jq -rn --argjson w "$wall" --argjson c "$(jq -r '.create_ms // 0' <<<"$res")" --argjson i "$ideal" \
               '($w - $c / 1000) / $i * 1000 | round / 1000')" "x ideal" "$ok"
        log "B $fig run $r: wall $wall s, ideal $ideal s, fake max in flight $(jq -r .fake.max_inflight <<<"$res"), other processes $(jq -r .foreign_cpu_pct <<<"$res")% CPU ($ok)"
        if [ -n "$rss" ]; then
            kill "$SAMPLER_PID" 2>/dev/null; wait "$SAMPLER_PID" 2>/dev/null
            SAMPLER_PID=
            # file: peak VmRSS kB, peak RssAnon kB, VmHWM kB, peak RssShmem kB
            read -r vmrss anon hwm shmem <"$WORK/rss.$r"
            record D worker_private_rss_peak_${inf}_inflight "workers=1 max_inflight=$inf" "$r" \
                "$(jq -rn --argjson a "$anon" '$a / 1024 | . * 10 | round / 10')" MB "$ok" \
                "$(jq -cn --argjson a "$vmrss" --argjson b "$hwm" --argjson c "$shmem" \
                   '{peak_vmrss_mb: ($a/1024|floor), vmhwm_mb: ($b/1024|floor), peak_rss_shmem_mb: ($c/1024|floor)}')"
            record D worker_vmhwm_${inf}_inflight "workers=1 max_inflight=$inf" "$r" \
                "$(jq -rn --argjson a "$hwm" '$a / 1024 | . * 10 | round / 10')" MB "$ok"
        fi
    done
}

# C: latencies.
scenario_c() {
    local r t_commit first res b3 b1000 i c0 fc
    set_conf moverz_batch.max_inflight 64
    for r in $(seq "$RUNS"); do
        c0=$(cpu_snapshot)
        psql -qAtX -v ON_ERROR_STOP=1 -c "CALL bench.time_create_batch('c3', $C_CALLS3, $r)" >/dev/null
        psql -qAtX -v ON_ERROR_STOP=1 -c "CALL bench.time_create_batch('c1000', $C_CALLS1000, $r)" >/dev/null
        b3=$(q "SELECT batch_id FROM bench.samples WHERE kind = 'create_c3' AND run = $r ORDER BY ms DESC LIMIT 1")
        b1000=$(q "SELECT batch_id FROM bench.samples WHERE kind = 'create_c1000' AND run = $r ORDER BY ms DESC LIMIT 1")
        psql -qAtX -v ON_ERROR_STOP=1 -c "CALL bench.time_progress('$b3', 'progress_3', $C_PROGRESS, $r)" \
            -c "CALL bench.time_progress('$b1000', 'progress_1000', $C_PROGRESS, $r)" >/dev/null
        # first AI request after create_batch's commit: the clock is read by
        # the next statement of the same session, right after the commit.
        for i in $(seq "$C_FIRST"); do
            fake /reset -X POST >/dev/null
            res=$(psql -qAtX -v ON_ERROR_STOP=1 <<'SQL'
SELECT bench.new_project() AS proj \gset
SELECT moverz_batch.create_batch(:'proj', 'bench', p.assets) AS b FROM bench.payloads p WHERE p.key = 'c3' \gset
SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS tc \gset
CALL bench.wait_ready(:'b', 30) \gset
SELECT :'tc', bench.check(:'b', 3);
SQL
)
            t_commit=${res%%|*}
            first=$(fake /stats | jq -r .first_request_us)
            psql -qAtX -c "INSERT INTO bench.samples VALUES ('first_request_after_commit', $r, NULL,
                           ($first - $t_commit) / 1000.0, NULL, '${res#*|}')" >/dev/null
        done
        fc=$(cpu_delta "$c0" "$(cpu_snapshot)" 0 | jq .foreign_cpu_pct)
        while IFS='|' read -r kind p50 p95 n bad; do
            record C "$kind" "workers=1 max_inflight=64" "$r" "$p50" ms "$([ "$bad" = 0 ] && echo ok || echo "$bad failed checks")" \
                "$(jq -cn --argjson p "$p95" --argjson n "$n" --argjson fc "$fc" '{p95_ms: $p, samples: $n, foreign_cpu_pct: $fc}')"
            if [ "$kind" = create_3_photos_p50 ] || [ "$kind" = create_1000_photos_p50 ]; then
                record C "${kind%_p50}_p95" "workers=1 max_inflight=64" "$r" "$p95" ms \
                    "$([ "$bad" = 0 ] && echo ok || echo "$bad failed checks")"
            fi
        done < <(q "SELECT CASE kind WHEN 'create_c3' THEN 'create_3_photos_p50'
                                     WHEN 'create_c1000' THEN 'create_1000_photos_p50'
                                     WHEN 'progress_3' THEN 'batch_progress_3_photos_p50'
                                     WHEN 'progress_1000' THEN 'batch_progress_1000_photos_p50'
                                     WHEN 'first_request_after_commit' THEN 'first_ai_request_after_commit_p50'
                                     WHEN 'inventory_after_last_result_c3' THEN 'inventory_ready_after_last_result_3_p50'
                                     WHEN 'inventory_after_last_result_c1000' THEN 'inventory_ready_after_last_result_1000_p50'
                                END,
                           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 3),
                           round(percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)::numeric, 3),
                           count(*), count(*) FILTER (WHERE ok IS NOT NULL AND ok <> 'ok')
                      FROM bench.samples WHERE run = $r GROUP BY kind ORDER BY kind")
        # create_batch including its COMMIT (fsync), as a client sees it
        while IFS='|' read -r kind p50; do
            record C "$kind" "workers=1 max_inflight=64" "$r" "$p50" ms ok
        done < <(q "SELECT CASE kind WHEN 'create_c3' THEN 'create_3_photos_with_commit_p50'
                                     ELSE 'create_1000_photos_with_commit_p50' END,
                           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms2)::numeric, 3)
                      FROM bench.samples WHERE run = $r AND kind IN ('create_c3', 'create_c1000')
                     GROUP BY kind")
        log "C run $r: $(q "SELECT string_agg(kind || ' p50 ' || p50 || ' ms', ', ') FROM (SELECT kind,
                                   round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2) AS p50
                              FROM bench.samples WHERE run = $r GROUP BY kind) s")"
    done
}

# D: table sizes per 1,000 finished photos over repeated big runs, and dead
# tuples after them.  Runs on emptied tables.
scenario_d_sizes() {   # RUN N
    local r=$1 n=$2
    q "SELECT pg_stat_clear_snapshot()" >/dev/null
    sleep 2     # workers flush their table statistics at most once a second
    while IFS='|' read -r rel bytes live dead; do
        record D "size_${rel}" "after run $r" "$r" "$bytes" bytes ok "{\"live\": ${live:-0}, \"dead\": ${dead:-0}}"
    done < <(q "SELECT * FROM bench.sizes()")
    record D bytes_per_1000_photos "after run $r" "$r" \
        "$(q "SELECT round(sum(bytes) / (SELECT count(*) / 1000.0 FROM moverz_batch.photos WHERE status = 'DONE'))
                FROM bench.sizes()")" bytes ok
    record D dead_tuples_after_big_run "after run $r" "$r" \
        "$(q "SELECT sum(n_dead) FROM bench.sizes()")" tuples ok \
        "$(q "SELECT json_object_agg(relname, n_dead) FROM bench.sizes()")"
}

# Profile: one small A run with pg_stat_statements (track = all), perf
# (cpu-clock sampling, when it works) and the CPU time per process group;
# then EXPLAIN ANALYZE of the claim and the write-back (explain_worker.sql).
profile_pass() {
    local w=$1 inf=$2 before after res pids
    restart_cluster "$w"
    set_conf moverz_batch.max_inflight "$inf"
    set_conf pg_stat_statements.track all
    q "SELECT pg_stat_statements_reset()" >/dev/null
    if command -v perf >/dev/null && perf record -e cpu-clock -o /dev/null true >/dev/null 2>&1; then
        perf record -e cpu-clock -F 1000 -a -g -o "$WORK/perf.data" >/dev/null 2>&1 &
        PERF_PID=$!
        sleep 0.5
    fi
    pids=$(worker_pids)
    before=$(cpu_snapshot)
    res=$(run_batch a_small)
    after=$(cpu_snapshot)
    if [ -n "${PERF_PID:-}" ]; then
        kill -INT "$PERF_PID"; wait "$PERF_PID" 2>/dev/null; PERF_PID=
    fi
    set_conf pg_stat_statements.track none
    {
        echo "# Profile of one A run: $A_SMALL photos, workers=$w max_inflight=$inf"
        echo
        echo "run: $(jq -c '{wall_s, check, foreign_cpu_pct}' <<<"$res")"
        echo
        echo "## CPU time of our processes during the run, ms (per photo: / $A_SMALL)"
        cpu_delta "$before" "$after" "$A_SMALL" | jq -r '.own_ms | to_entries | sort_by(-.value)[] | "\(.value)\t\(.key)"'
        echo
        echo "## pg_stat_statements (track = all), by total time; the benchmark's own statements left out"
        psql -qX -P pager=off -c "SELECT round(total_exec_time::numeric, 1) AS total_ms, calls, rows,
                   round((total_exec_time / nullif(calls, 0))::numeric, 3) AS mean_ms,
                   round((1000 * total_exec_time / $A_SMALL)::numeric, 1) AS us_per_photo,
                   wal_records, pg_size_pretty(wal_bytes) AS wal, toplevel AS top,
                   left(regexp_replace(query, '\s+', ' ', 'g'), 100) AS query
              FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'postgres')
               AND query !~ 'bench\.|pg_sleep|pg_stat_statements|s.batch_id = p_batch'
             ORDER BY total_exec_time DESC LIMIT 30"
        if [ -s "$WORK/perf.data" ]; then
            echo
            echo "## perf (cpu-clock, all CPUs, whole machine): share of the samples per process"
            perf report -i "$WORK/perf.data" --no-children --sort comm,pid -g none --stdio 2>/dev/null |
                grep -E '^ +[0-9]' | head -15
            echo
            echo "## perf: top symbols of the photo worker(s) ($pids), % of all samples"
            perf report -i "$WORK/perf.data" --no-children --comm postgres --sort pid,dso,sym -g none --stdio 2>/dev/null |
                grep -E "^ +[0-9.]+% +($(tr ' ' '|' <<<"$pids")):" | head -30
            echo
            echo "## perf: inclusive time (children) of selected functions in the photo worker(s)"
            perf report -i "$WORK/perf.data" --children --comm postgres --sort pid,sym -g none --stdio 2>/dev/null |
                grep -E "^ +[0-9.]+% +[0-9.]+% +($(tr ' ' '|' <<<"$pids")):" |
                grep -E "\] (SPI_execute_plan|ExecInsert|ExecUpdate|ExecInsertIndexTuples|RI_FKey|AfterTrigger|plpgsql|jsonb|json_|pg_parse_json|XLogFlush|XLogInsert|CommitTransaction|curl|Curl|exec_|pgss|fmgr_sql|numeric|ExecEvalWholeRowVar|heap_update|heap_insert|_bt_doinsert|GetSnapshotData|pg_plan_query|GetCachedPlan|BuildCachedPlan|standard_planner)" | head -40
        fi
        echo
        echo "## EXPLAIN (ANALYZE, BUFFERS) of the claim and the write-back, nested (auto_explain), $A_SMALL-photo batch, database bench_explain"
        q "DROP DATABASE IF EXISTS bench_explain" >/dev/null; q "CREATE DATABASE bench_explain" >/dev/null
        psql -qX -d bench_explain -c "CREATE EXTENSION moverz_batch" >/dev/null
        [ -n "$PATCH" ] && psql -qX -d bench_explain -f "$PATCH" >/dev/null
        psql -qAtX -d bench_explain -f bench/sql/bench.sql >/dev/null 2>&1
        psql -qAtX -d bench_explain -c "SELECT bench.payload('a_small', $A_SMALL)" >/dev/null
        psql -X -d bench_explain -v key=a_small -v claim="$inf" -f bench/sql/explain_worker.sql 2>&1 |
            sed -E 's/^psql:[^:]+:[0-9]+: //' | grep -vE '^(SET|LOAD|BEGIN|ROLLBACK|ANALYZE)$'
    } >"$OUT/$TAG-profile.txt" 2>&1
    log "profile written to $OUT/$TAG-profile.txt"
}

# ---------------------------------------------------------------- main

# code_version: the commit of the sources, how many files differ from it,
# and the installed library's date (the sources may change during a run).
code_version() {
    echo "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
         "+$(git status --porcelain -- src sql Makefile 2>/dev/null | wc -l) changed file(s) in src/ sql/," \
         "library installed $(date -r "$("$MB_PGBIN/pg_config" --pkglibdir)/moverz_batch.so" '+%F %T' 2>/dev/null)"
}

if [ "$BUILD" = 1 ]; then
    log "building"
    build || { echo "build failed" >&2; exit 1; }
fi
[ -x test/fake_ai/fake_ai ] || make -s fake_ai >/dev/null || exit 1
CODE_START=$(code_version)
log "code: $CODE_START"
mb_fake_start "$WORK/fake_ai.out" || exit 1
log "fake AI service on $FAKE_AI_URL"
start_cluster 1 || { echo "cannot start the cluster" >&2; exit 1; }
log "cluster on $PGHOST:$PGPORT ($(q "SHOW server_version"))"

payload c3 3; payload c1000 1000
payload a_small "$A_SMALL"; payload a_big "$A_BIG"
payload b1 "$B1_N" "$B_LATENCY_MS"; payload b2 "$B2_N" "$B_LATENCY_MS"; payload b3 "$B3_N" "$B3_LATENCY_MS"
payload warm 200
set_conf moverz_batch.max_inflight 64
run_batch warm >/dev/null   # warm-up: caches, plans, connections

log "C: latencies"
scenario_c
log "B: latency-bound"
scenario_b b1 "$B1_N" "$B1_INFLIGHT" "${B1_N}_photos_${B1_INFLIGHT}_inflight"
scenario_b b2 "$B2_N" "$B2_INFLIGHT" "${B2_N}_photos_${B2_INFLIGHT}_inflight" rss
B_LATENCY_MS=$B3_LATENCY_MS scenario_b b3 "$B3_N" "$B2_INFLIGHT" \
    "${B3_N}_photos_${B2_INFLIGHT}_inflight_${B3_LATENCY_MS}ms"
log "A: overhead-bound, $A_SMALL photos"
for cfg in $A_CONFIGS; do
    scenario_a a_small "$A_SMALL" "${cfg%:*}" "${cfg#*:}" "${A_SMALL}_photos"
done
best=$(jq -rs --arg f "${A_SMALL}_photos" '
    [.[] | select(.scenario == "A" and .figure == $f and .ok)] | group_by(.config)
    | map({config: .[0].config, med: (map(.value) | sort | .[(length - 1) / 2 | floor])})
    | max_by(.med) | .config // "workers=1 max_inflight=256"' "$RAW")
best_w=$(sed -E 's/workers=([0-9]+).*/\1/' <<<"$best"); best_inf=$(sed -E 's/.*max_inflight=([0-9]+).*/\1/' <<<"$best")
log "A: best config on $A_SMALL photos: $best; $A_BIG photos (tables emptied first, sizes after each run)"
restart_cluster "$best_w"
q "TRUNCATE moverz_batch.projects, moverz_batch.ai_metrics CASCADE" >/dev/null
set_conf moverz_batch.max_inflight "$best_inf"
for r in $(seq "$RUNS"); do
    scenario_a a_big "$A_BIG" "$best_w" "$best_inf" "${A_BIG}_photos" "$r"
    scenario_d_sizes "$r" "$A_BIG"
done
if [ "$PROFILE" = 1 ]; then
    log "profile pass"
    profile_pass "$best_w" "$best_inf"
fi

# machine and settings, for the report
jq -cn --arg cpu "$(lscpu | sed -nE 's/^Model name: *//p' | head -1)" --arg cores "$(nproc)" \
    --arg mem "$(free -m | awk '/^Mem:/ { print $2 " MB" }')" --arg pg "$(q "SHOW server_version")" \
    --arg settings "$(q "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name)
                         FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers',
                              'max_connections', 'wal_sync_method', 'moverz_batch.writeback_batch',
                              'moverz_batch.poll_interval', 'autovacuum')")" \
    --arg mode "$([ "$QUICK" = 1 ] && echo quick || echo full)" --argjson runs "$RUNS" \
    --argjson secs $((SECONDS - T_START)) --arg patch "${PATCH#"$PWD/"}" \
    --arg load "$LOAD_START / $(cut -d' ' -f1-3 /proc/loadavg)" \
    --arg code "$CODE_START" --arg code_end "$(code_version)" \
    '{machine: {cpu: $cpu, cores: $cores, memory: $mem, postgresql: $pg, settings: $settings},
      mode: $mode, runs: $runs, a_small: '"$A_SMALL"', duration_s: $secs, patch: $patch, loadavg_start_end: $load, code: $code, code_at_end: $code_end}' >"$WORK/meta.json"
bench/summarize.sh "$RAW" "$WORK/meta.json" "$OUT/$TAG"
log "done in $((SECONDS - T_START)) s: $OUT/$TAG.md, $OUT/$TAG.json"
