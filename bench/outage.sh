#!/usr/bin/env bash
# bench/outage.sh: the outage bar of issue #20, measured: a batch of 2,000 photos,
# the fake AI service killed at ~325 DONE and started again 60 s later on the
# same port; the defaults otherwise (1 photo worker, 64 in flight, the circuit
# on).  Prints the batch, the calls during the outage, the first success after
# the return, the attempts, the inventory and the two log lines of the circuit.
# Everything it started is stopped on exit.  About 75 s.
set -uo pipefail
cd "$(dirname "$0")/.."
source test/lib.sh
mb_install_deps && mb_build && make -s fake_ai >/dev/null || exit 1
trap 'kill $FAKE_AI_PID 2>/dev/null; mb_cluster_stop' EXIT
mb_fake_start /tmp/ob_fake.log --latency-ms 20
port=$FAKE_AI_PORT
mb_cluster_start "moverz_batch.ai_service_url = '$FAKE_AI_URL'" "moverz_batch.max_batch_size = 5000" >/dev/null
psql -qX -c "CREATE EXTENSION moverz_batch" >/dev/null
p=$(psql -qAtX -c "SELECT moverz_batch.create_project('ob', 'outage')")
b=$(psql -qAtX -c "SELECT moverz_batch.create_batch('$p', 'ob', (SELECT jsonb_agg(jsonb_build_object('filename', 'p' || i || '.jpg', 'url', 'https://img.example.com/ob/' || i || '.jpg?items=box:1:0.5')) FROM generate_series(1, 2000) i))")
until [ "$(psql -qAtX -c "SELECT count_completed >= 325 FROM moverz_batch.batches WHERE id = '$b'")" = t ]; do sleep 0.02; done
kill $FAKE_AI_PID; wait $FAKE_AI_PID 2>/dev/null
down_at=$(psql -qAtX -c "SELECT clock_timestamp()")
echo "killed at $(psql -qAtX -c "SELECT count_completed FROM moverz_batch.batches WHERE id = '$b'") DONE"
sleep 60
test/fake_ai/fake_ai --port $port --latency-ms 20 >/tmp/ob_fake2.log 2>&1 &
FAKE_AI_PID=$!
up_at=$(psql -qAtX -c "SELECT clock_timestamp()")
until [ "$(psql -qAtX -c "SELECT moverz_batch_internal.is_terminal(status) AND inventory_queued FROM moverz_batch.batches WHERE id = '$b'")" = t ]; do sleep 0.1; done
sleep 1
psql -qX -c "SELECT status, count_completed, count_failed FROM moverz_batch.batches WHERE id = '$b'" \
  -c "SELECT count(*) FILTER (WHERE created_at BETWEEN '$down_at' AND '$up_at') AS calls_during_outage,
             min(created_at) FILTER (WHERE success AND created_at > '$up_at') - '$up_at' AS first_success_after_return,
             count(*) FILTER (WHERE NOT success) AS failed_calls_total
        FROM moverz_batch.ai_metrics WHERE meta->>'batchId' = '$b'" \
  -c "SELECT max(attempts) AS max_attempts, count(*) FILTER (WHERE status = 'ERROR') AS errors FROM moverz_batch.photos WHERE batch_id = '$b'" \
  -c "SELECT total_items, (SELECT count(*) FROM moverz_batch.inventory_sync_jobs WHERE batch_id = '$b') AS sync_jobs FROM moverz_batch.inventory_summaries WHERE batch_id = '$b'"
grep -E "unreachable|back after" "$MB_DIR/server.log" | cut -c1-220
