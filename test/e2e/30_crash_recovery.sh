#!/usr/bin/env bash
# Crash recovery, nothing lost: kill -9 of a photo worker in the middle of a
# 200-photo batch, then `pg_ctl restart -m immediate` in the middle of
# another.  Every photo ends terminal (here DONE), none is lost, none is
# sent again once its success is recorded, exactly one inventory sync, and
# totals exact (no item counted twice).
source "$(dirname "$0")/common.sh"
trap 'reset_conf moverz_batch.max_inflight' EXIT
set_conf moverz_batch.max_inflight 16     # 2 workers x 16 in flight, 300 ms each: ~2 s a batch

project=$(new_project crash-user)
# assets ROUND: 200 photos, distinct per round (a photo seen before would be a duplicate)
assets() {
    photo_assets 200 "https://img.example.com/crash-$1/{i}.jpg?latency_ms=300&items=sofa:1:1.5,chair:2:0.25"
}

# check_batch BATCH LABEL: the invariants after a crash.
check_batch() {
    local b=$1 label=$2
    wait_finished "$b" 90; ok $? "$label: the batch finishes"
    is "$(progress "$b" '{status}')" COMPLETED "$label: COMPLETED"
    is "$(q "SELECT count(*) FROM moverz_batch.photos WHERE batch_id = '$b' AND status = 'DONE'")" 200 \
       "$label: all 200 photos DONE, none lost"
    is "$(q "SELECT count_completed || '/' || count_queued || '/' || count_processing || '/' || count_failed
               FROM moverz_batch.batches WHERE id = '$b'")" "200/0/0/0" "$label: counters exact"
    is "$(q "SELECT count(*) FROM moverz_batch.inventory_sync_jobs WHERE batch_id = '$b'")" 1 \
       "$label: exactly one inventory sync"
    is "$(progress "$b" '{inventorySummary,totalItems}')" 600 "$label: totalItems exact (200 x 3)"
    is "$(progress "$b" '{inventorySummary,totalVolume}')" 400 "$label: totalVolume exact (200 x 2.0)"
    is "$(q "SELECT count(*) FROM moverz_batch.inventory_items WHERE batch_id = '$b'")" 400 \
       "$label: one inventory row per item"
    is "$(q "SELECT count(*) FROM (SELECT meta->>'photoId' FROM moverz_batch.ai_metrics
                                     WHERE meta->>'batchId' = '$b' AND success
                                     GROUP BY 1 HAVING count(*) > 1) x")" 0 \
       "$label: no photo analysed successfully twice"
    # the fake counts calls per photo: never more than the claims (attempts)
    local joined
    joined=$(join <(q "SELECT id || ' ' || attempts FROM moverz_batch.photos WHERE batch_id = '$b'" | sort) \
                  <(curl -s "$FAKE_AI_URL/stats/calls" | sort))
    is "$(echo "$joined" | awk '$3 >= 1' | wc -l)" 200 "$label: the AI service saw every photo"
    is "$(echo "$joined" | awk '$3 > $2' | wc -l)" 0 "$label: no photo called more often than it was claimed"
}

# wait_some_done BATCH: until some, but not all, photos are DONE.
wait_some_done() {
    mb_wait_for 30 "SELECT count(*) >= 20 FROM moverz_batch.photos WHERE batch_id = '$1' AND status = 'DONE'"
    ok $? "work is under way"
    is "$(q "SELECT count(*) < 200 FROM moverz_batch.photos WHERE batch_id = '$1' AND status = 'DONE'")" t \
       "the batch is not finished yet"
}

b1=$(submit "$project" crash-user "$(assets kill)")
wait_some_done "$b1"
pid=$(q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'moverz_batch photo worker' LIMIT 1")
inflight=$(q "SELECT count(*) FROM moverz_batch.photos WHERE batch_id = '$b1' AND status = 'PROCESSING'")
ok "$([ "$inflight" -gt 0 ] && echo 0 || echo 1)" "kill -9: requests are in flight ($inflight)"
kill -9 "$pid"
sleep 1
mb_wait_for 30 "SELECT true"; ok $? "the server is back after the crash"
check_batch "$b1" "kill -9"

b2=$(submit "$project" crash-user "$(assets restart)")
wait_some_done "$b2"
mb_pg_ctl restart -m immediate -w >/dev/null 2>&1; ok $? "pg_ctl restart -m immediate"
check_batch "$b2" "immediate restart"
done_testing
