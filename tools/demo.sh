#!/usr/bin/env bash
# tools/demo.sh: the main job, end to end, on a throwaway cluster.
#
# Installs what is missing, builds and installs moverz_batch, starts a
# throwaway PostgreSQL cluster and the fake AI service, submits a realistic
# batch (several rooms, one unreachable photo), shows its progress live,
# prints the final batch_progress JSON and stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
source test/lib.sh

cleanup() {
    [ -n "${FAKE_AI_PID:-}" ] && kill "$FAKE_AI_PID" 2>/dev/null
    [ -n "${FAKE_OUT:-}" ] && rm -f "$FAKE_OUT"
    mb_cluster_stop
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mb_install_deps
mb_build
make -s fake_ai >/dev/null

FAKE_OUT=$(mktemp /tmp/moverz_demo_fake.XXXXXX)
# 300 ms per analysis, as a (fast) real model would take seconds
mb_fake_start "$FAKE_OUT" --latency-ms 300
echo "== starting a throwaway cluster with moverz_batch and the fake AI service on :$FAKE_AI_PORT"
mb_cluster_start "moverz_batch.ai_service_url = '$FAKE_AI_URL'" \
                 "moverz_batch.max_inflight = 4" "moverz_batch.retry_backoff = '500ms'"
psql -qX -c "CREATE EXTENSION moverz_batch"

img="https://photos.example.com/move-4521"
project=$(psql -qAtX -c "SELECT moverz_batch.create_project('customer-42', 'Move Paris -> Lyon')")
batch=$(psql -qAtX -v ON_ERROR_STOP=1 <<SQL
SELECT moverz_batch.create_batch('$project', 'customer-42', '[
  {"filename": "salon.jpg", "filePath": "/uploads/salon.jpg", "roomType": "living_room",
   "url": "$img/salon.jpg?items=sofa:1:2.4,armchair:2:0.9,coffee_table:1:0.4,bookcase:1:1.1,tv_unit:1:0.6"},
  {"filename": "chambre.jpg", "filePath": "/uploads/chambre.jpg", "roomType": "bedroom",
   "url": "$img/chambre.jpg?items=double_bed:1:2.2,wardrobe:2:1.6,bedside_table:2:0.15"},
  {"filename": "chambre_enfant.jpg", "filePath": "/uploads/chambre_enfant.jpg", "roomType": "kids_room",
   "url": "$img/chambre_enfant.jpg?items=single_bed:1:1.2,desk:1:0.5,toy_box:3:0.2"},
  {"filename": "cuisine.jpg", "filePath": "/uploads/cuisine.jpg",
   "url": "$img/cuisine.jpg?items=fridge:1:0.9,dining_table:1:0.8,chair:4:0.25,washing_machine:1:0.5"},
  {"filename": "bureau.jpg", "filePath": "/uploads/bureau.jpg", "roomType": "office",
   "url": "$img/bureau.jpg?items=desk:1:0.8,office_chair:1:0.4,filing_cabinet:2:0.3"},
  {"filename": "garage.jpg", "filePath": "/uploads/garage.jpg", "roomType": "garage",
   "url": "$img/garage.jpg?items=bicycle:2:0.6,shelving_unit:2:0.7,boxes:12:0.1"},
  {"filename": "cave.jpg", "filePath": "/uploads/cave.jpg", "roomType": "cellar",
   "url": "https://unreachable.invalid/cave.jpg"}
]'::jsonb, 'NORMAL')
SQL
)
echo "== batch $batch submitted (7 photos; cave.jpg has an unreachable URL)"

if [ -x tools/moverz-batch ]; then
    tools/moverz-batch watch "$batch" || [ $? -eq 2 ]   # 2: finished with failures
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
echo "== final batch_progress('$batch')"
psql -qAtX -c "SELECT jsonb_pretty(moverz_batch.batch_progress('$batch'))"
echo "== AI metrics of the batch"
psql -qX -c "SELECT count(*) AS calls, round(avg(latency_ms)) AS avg_latency_ms,
                    count(*) FILTER (WHERE success) AS successes, sum(cost_usd) AS total_cost_usd
               FROM moverz_batch.ai_metrics WHERE meta->>'batchId' = '$batch'"
