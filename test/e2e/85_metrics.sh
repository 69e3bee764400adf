#!/usr/bin/env bash
# Metrics (metrics/queries.yaml): the real prometheus-postgres-exporter,
# connected as a least-privilege role made by the GRANT block of
# metrics/README.md, scraped over known state (a batch with photos DONE and
# ERROR, then a batch held pending by pause_processing); each metric equals
# the same figure read from the admin views; names follow Prometheus'
# conventions; the exporter reports no error.
source "$(dirname "$0")/common.sh"
ROLE=moverz_metrics_e2e
EXPORTER_PID=
TMP=$(mktemp -d /tmp/moverz_metrics.XXXXXX)
cleanup() {
    [ -n "$EXPORTER_PID" ] && kill "$EXPORTER_PID" 2>/dev/null && wait "$EXPORTER_PID" 2>/dev/null
    q "SELECT moverz_batch.resume_processing()" >/dev/null
    q "DROP OWNED BY $ROLE" >/dev/null 2>&1
    q "DROP ROLE IF EXISTS $ROLE" >/dev/null 2>&1
    rm -rf "$TMP"
}
trap cleanup EXIT

# the exporter, from Debian
if ! dpkg-query -W -f='${Status}' prometheus-postgres-exporter 2>/dev/null | grep -q "install ok installed"; then
    mb_as_root apt-get update -qq
    mb_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        prometheus-postgres-exporter >/dev/null
fi
ok $([ -x /usr/bin/prometheus-postgres-exporter ]; echo $?) "prometheus-postgres-exporter is installed"

# the role of metrics/README.md, under another name
q "DROP OWNED BY $ROLE" >/dev/null 2>&1; q "DROP ROLE IF EXISTS $ROLE" >/dev/null 2>&1
sed -n '/^```sql$/,/^```$/p' "$MB_ROOT/metrics/README.md" | sed '1d;$d' | sed "s/moverz_metrics/$ROLE/g" \
    >"$TMP/grants.sql"
psql -qAtX -v ON_ERROR_STOP=1 -f "$TMP/grants.sql" >/dev/null
ok $? "the GRANTs of metrics/README.md run"
is "$(q "SELECT rolsuper FROM pg_roles WHERE rolname = '$ROLE'")" f "the exporter's role is no superuser"

# known state: a batch of 3 photos DONE and 2 in ERROR
u=https://img.example.com/metrics
project=$(new_project metrics-user)
w_before=$(q "SELECT done || ' ' || failed FROM moverz_batch.worker_status WHERE kind = 'photo' ORDER BY worker")
f=$(submit "$project" metrics-user "[
  {\"filename\": \"f1.jpg\", \"url\": \"$u/f1.jpg?items=sofa:1:2\"},
  {\"filename\": \"f2.jpg\", \"url\": \"$u/f2.jpg?items=sofa:1:2\"},
  {\"filename\": \"f3.jpg\", \"url\": \"$u/f3.jpg?items=sofa:1:2\"},
  {\"filename\": \"f4.jpg\", \"url\": \"https://unreachable.invalid/f4.jpg\"},
  {\"filename\": \"f5.jpg\", \"url\": \"https://unreachable.invalid/f5.jpg\"}]")
wait_finished "$f" 30; ok $? "a batch finishes"
read -r fdone ffail <<<"$(q "SELECT count(*) FILTER (WHERE status = 'DONE') || ' ' || count(*) FILTER (WHERE status = 'ERROR')
                              FROM moverz_batch.photos WHERE batch_id = '$f'")"

# then a batch held pending
is "$(q "SELECT moverz_batch.pause_processing()")" t "pause_processing"
sleep 0.5
p=$(submit "$project" metrics-user "$(photo_assets 4 "$u/p{i}.jpg?items=box:1:1")")
sleep 1

# the exporter, on a free loopback port
start_exporter() {
    local port i try
    for try in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 20000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue   # taken
        DATA_SOURCE_NAME="host=$PGHOST port=$PGPORT user=$ROLE dbname=postgres sslmode=disable" \
            /usr/bin/prometheus-postgres-exporter --web.listen-address="127.0.0.1:$port" \
            --extend.query-path="$MB_ROOT/metrics/queries.yaml" --disable-default-metrics \
            --disable-settings-metrics --no-collector.database --no-collector.bgwriter \
            >"$TMP/exporter.log" 2>&1 &
        EXPORTER_PID=$!
        for i in $(seq 50); do
            kill -0 "$EXPORTER_PID" 2>/dev/null || break
            curl -sf "http://127.0.0.1:$port/" >/dev/null && { EXPORTER_URL="http://127.0.0.1:$port/metrics"; return 0; }
            sleep 0.1
        done
        kill "$EXPORTER_PID" 2>/dev/null; wait "$EXPORTER_PID" 2>/dev/null; EXPORTER_PID=
    done
    sed 's/^/# /' "$TMP/exporter.log"
    return 1
}
start_exporter; ok $? "the exporter listens on 127.0.0.1"

# metric NAME [LABELS]: the value of the series NAME{...LABELS...}, as %.6f
scrape() { curl -sf "$EXPORTER_URL" >"$TMP/metrics.txt"; }
metric() {
    awk -v n="$1" -v l="${2:-}" '
        index($0, n "{") == 1 && (l == "" || index($0, l) > 0) { printf "%.6f\n", $NF; found = 1; exit }
        $1 == n { printf "%.6f\n", $2; found = 1; exit }
        END { if (!found) print "absent" }' "$TMP/metrics.txt"
}
num() { awk -v x="$1" 'BEGIN { printf "%.6f\n", x }'; }
ms() { awk -v x="$1" 'BEGIN { printf "%.3f\n", x }'; }   # a Unix time to the millisecond (float64)

age_lo=$(q "SELECT coalesce(extract(epoch FROM oldest_pending_age), 0) FROM moverz_batch.queue_overview")
scrape; ok $? "GET /metrics"
age_hi=$(q "SELECT coalesce(extract(epoch FROM oldest_pending_age), 0) FROM moverz_batch.queue_overview")

# queue, against queue_overview (stable while paused)
read -r pending waiting inflight paused <<<"$(q "SELECT pending || ' ' || waiting_retry || ' ' || in_flight || ' ' || paused::int
                                                  FROM moverz_batch.queue_overview")"
ok $([ "$pending" -ge 4 ]; echo $?) "the paused batch's photos are pending ($pending)"
is "$(metric moverz_batch_queue_photos 'state="pending"')" "$(num "$pending")" "queue_photos{state=pending} = queue_overview.pending"
is "$(metric moverz_batch_queue_photos 'state="waiting_retry"')" "$(num "$waiting")" "queue_photos{state=waiting_retry} = queue_overview.waiting_retry"
is "$(metric moverz_batch_queue_photos 'state="in_flight"')" "$(num "$inflight")" "queue_photos{state=in_flight} = queue_overview.in_flight"
age=$(metric moverz_batch_oldest_pending_age_seconds)
ok $(awk -v a="$age" -v lo="$age_lo" -v hi="$age_hi" 'BEGIN { exit !(a > 0 && a >= lo - 0.001 && a <= hi + 0.001) }'; echo $?) \
   "oldest_pending_age_seconds ($age) within queue_overview's before and after ($age_lo, $age_hi)"
is "$(metric moverz_batch_processing_paused)" "$(num "$paused")" "processing_paused = queue_overview.paused"
is "$(metric moverz_batch_processing_paused)" "$(num 1)" "... which is 1 while paused"

# workers, against worker_status
for kind in photo inventory; do
    is "$(metric moverz_batch_workers_running "kind=\"$kind\"")" \
       "$(num "$(q "SELECT count(*) FROM moverz_batch.worker_status WHERE kind = '$kind'")")" \
       "workers_running{kind=$kind} = worker_status"
done
series() {   # series NAME KIND WORKER: the value of NAME{kind,worker}
    awk -v n="$1{" -v k="kind=\"$2\"" -v w="worker=\"$3\"" \
        'index($0, n) == 1 && index($0, k) && index($0, w) { printf "%.6f\n", $NF; f = 1 } END { if (!f) print "absent" }' \
        "$TMP/metrics.txt"
}
got= want=
while read -r kind worker done failed infl since; do
    got+="$(series moverz_batch_worker_photos_done_total "$kind" "$worker") $(series moverz_batch_worker_calls_failed_total "$kind" "$worker") $(series moverz_batch_worker_inflight_requests "$kind" "$worker") $(ms "$(series moverz_batch_worker_start_time_seconds "$kind" "$worker")");"
    want+="$(num "$done") $(num "$failed") $(num "$infl") $(ms "$since");"
done < <(q "SELECT concat_ws(' ', kind, worker, done, failed, inflight, extract(epoch FROM since))
              FROM moverz_batch.worker_status ORDER BY kind, worker")
is "$got" "$want" "worker_* series = worker_status, worker by worker"
w_after=$(q "SELECT done || ' ' || failed FROM moverz_batch.worker_status WHERE kind = 'photo' ORDER BY worker")
delta=$(paste -d' ' <(echo "$w_before") <(echo "$w_after") | awk '{ d += $3 - $1; f += $4 - $2 } END { print d " " f }')
is "$delta" "$fdone $ffail" "the photo workers' counters grew by the batch's DONE and ERROR photos"
is "$fdone $ffail" "3 2" "... 3 DONE, 2 ERROR"

# AI calls: totals against ai_metrics (and batch_ai_metrics), the last 5 minutes
for o in success failure; do
    is "$(metric moverz_batch_ai_calls_total "outcome=\"$o\"") $(metric moverz_batch_ai_cost_usd_total "outcome=\"$o\"")" \
       "$(num "$(q "SELECT count(*) FROM moverz_batch.ai_metrics WHERE success = ('$o' = 'success')")") $(num "$(q "SELECT coalesce(sum(cost_usd), 0) FROM moverz_batch.ai_metrics WHERE success = ('$o' = 'success')")")" \
       "ai_calls_total, ai_cost_usd_total{outcome=$o} = ai_metrics"
done
is "$(q "SELECT calls || ' ' || success_count FROM moverz_batch.batch_ai_metrics WHERE batch_id = '$f'")" "5 3" \
   "batch_ai_metrics: the batch's 5 calls, 3 successes (in the totals above)"
recent_sql="SELECT count(*), count(*) FILTER (WHERE NOT success),
                   coalesce(avg(latency_ms) / 1000.0, 0)::float8,
                   coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) / 1000.0, 0)::float8
              FROM moverz_batch.ai_metrics WHERE created_at > now() - interval '5 minutes'"
recent() { echo "$(metric moverz_batch_ai_recent_calls) $(metric moverz_batch_ai_recent_failed_calls) $(metric moverz_batch_ai_recent_latency_avg_seconds) $(metric moverz_batch_ai_recent_latency_p95_seconds)"; }
for i in 1 2 3; do   # calls may leave the 5-minute window between the scrape and the query
    got=$(recent); want=$(q "$recent_sql" | tr '|' '\n' | while read -r x; do num "$x"; done | xargs)
    [ "$got" = "$want" ] && break
    scrape
done
is "$got" "$want" "ai_recent_{calls,failed_calls,latency_avg_seconds,latency_p95_seconds} = ai_metrics of the last 5 minutes"
ok $(awk -v c="$(metric moverz_batch_ai_recent_calls)" 'BEGIN { exit !(c >= 5) }'; echo $?) "... which hold the batch's 5 calls"

# inventory lag, the AI service's circuit, the progress publisher
lag_lo=$(q "SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0) FROM moverz_batch.inventory_sync_jobs WHERE status = 'PENDING'")
scrape
lag_hi=$(q "SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0) FROM moverz_batch.inventory_sync_jobs WHERE status = 'PENDING'")
lag=$(metric moverz_batch_inventory_sync_lag_seconds)
ok $(awk -v a="$lag" -v lo="$lag_lo" -v hi="$lag_hi" 'BEGIN { exit !((a == 0 && (lo == 0 || hi == 0)) || (a >= lo - 0.001 && a <= hi + 0.001)) }'; echo $?) \
   "inventory_sync_lag_seconds ($lag) = age of the oldest PENDING sync job ($lag_lo, $lag_hi)"
is "$(metric moverz_batch_inventory_sync_pending_jobs)" "$(num "$(q "SELECT count(*) FROM moverz_batch.inventory_sync_jobs WHERE status = 'PENDING'")")" \
   "inventory_sync_pending_jobs"
is "$(metric moverz_batch_ai_service_unreachable) $(metric moverz_batch_ai_service_outage_probes) $(metric moverz_batch_ai_service_unreachable_since_timestamp_seconds)" \
   "$(q "SELECT (ai_unreachable_since IS NOT NULL)::int || ' ' || ai_probes || ' ' || coalesce(extract(epoch FROM ai_unreachable_since), 0) FROM moverz_batch.queue_overview" | xargs -n1 | while read -r x; do num "$x"; done | xargs)" \
   "ai_service_{unreachable,outage_probes,unreachable_since_timestamp_seconds} = queue_overview"
is "$(metric moverz_batch_ai_service_failures_in_a_row) $(metric moverz_batch_ai_service_holding)" \
   "$(q "SELECT failures_in_a_row || ' ' || holding::int FROM moverz_batch.ai_service_status()" | xargs -n1 | while read -r x; do num "$x"; done | xargs)" \
   "ai_service_{failures_in_a_row,holding} = ai_service_status()"
pub_sql="SELECT queued || ' ' || published || ' ' || dropped || ' ' || failed || ' ' || running::int FROM moverz_batch.publish_status()"
for i in 1 2 3; do   # events of the batches above may still be on their way
    got="$(metric moverz_batch_publisher_queued_events) $(metric moverz_batch_publisher_published_events_total) $(metric moverz_batch_publisher_dropped_events_total) $(metric moverz_batch_publisher_failed_events_total) $(metric moverz_batch_publisher_running)"
    want=$(q "$pub_sql" | xargs -n1 | while read -r x; do num "$x"; done | xargs)
    [ "$got" = "$want" ] && break
    sleep 0.5; scrape
done
is "$got" "$want" "publisher_{queued_events,published,dropped,failed_events_total,running} = publish_status()"

# names: the expected set, snake_case, counters and only counters end in _total
names=$(awk '$1 == "#" && $2 == "TYPE" && $3 ~ /^moverz_batch_/ { print $3 " " $4 }' "$TMP/metrics.txt" | sort)
is "$(echo "$names" | awk '{ print $1 }' | xargs)" "$(echo "moverz_batch_ai_calls_total moverz_batch_ai_cost_usd_total
    moverz_batch_ai_recent_calls moverz_batch_ai_recent_failed_calls moverz_batch_ai_recent_latency_avg_seconds
    moverz_batch_ai_recent_latency_p95_seconds moverz_batch_ai_service_failures_in_a_row moverz_batch_ai_service_holding
    moverz_batch_ai_service_outage_probes moverz_batch_ai_service_unreachable
    moverz_batch_ai_service_unreachable_since_timestamp_seconds moverz_batch_inventory_sync_lag_seconds
    moverz_batch_inventory_sync_pending_jobs moverz_batch_oldest_pending_age_seconds
    moverz_batch_processing_paused moverz_batch_publisher_dropped_events_total
    moverz_batch_publisher_failed_events_total moverz_batch_publisher_published_events_total
    moverz_batch_publisher_queued_events moverz_batch_publisher_running moverz_batch_queue_photos
    moverz_batch_worker_calls_failed_total moverz_batch_worker_inflight_requests
    moverz_batch_worker_photos_done_total moverz_batch_worker_start_time_seconds moverz_batch_workers_running" | xargs -n1 | sort | xargs)" \
   "the metrics exported (26 names)"
is "$(echo "$names" | awk '!($1 ~ /^[a-z][a-z0-9_]*[a-z0-9]$/) || ($2 == "counter") != ($1 ~ /_total$/)' | xargs)" "" \
   "names are snake_case; counters, and only they, end in _total"
is "$(echo "$names" | awk '$1 ~ /(_ms|_milliseconds|_minutes|_hours|_kb|_mb|_percent)(_total)?$/' | xargs)" "" \
   "base units only (seconds, not milliseconds)"

# no error
is "$(metric pg_up) $(metric pg_exporter_last_scrape_error) $(metric pg_exporter_user_queries_load_error)" \
   "$(num 1) $(num 0) $(num 0)" "pg_up 1, pg_exporter_last_scrape_error 0, pg_exporter_user_queries_load_error 0"
is "$(grep -ci "error" "$TMP/exporter.log")" 0 "no error in the exporter's log (no \"Error running query\")"
[ "$TAP_FAILED" = 0 ] || sed 's/^/# exporter: /' "$TMP/exporter.log" | tail -20

q "SELECT moverz_batch.resume_processing()" >/dev/null
wait_finished "$p" 30; ok $? "resumed: the held batch finishes"
done_testing
