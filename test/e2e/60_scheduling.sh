#!/usr/bin/env bash
# Scheduling: batch priorities, per-user fairness, the pool-wide request
# ceiling, and a RATE_LIMIT answer holding back the whole pool.  Figures are
# compared as bounds and ratios, never as tight timings.
source "$(dirname "$0")/common.sh"
cleanup() {
    for s in max_inflight max_inflight_per_user max_requests_per_second max_batch_size; do
        reset_conf "moverz_batch.$s"
    done
    q "SELECT moverz_batch.cancel_batch(id) FROM moverz_batch.batches
        WHERE user_id LIKE 'sched-%' AND NOT moverz_batch_internal.is_terminal(status)" >/dev/null
}
trap cleanup EXIT
u=https://img.example.com/sched

# pending BATCH: photos of the batch not yet sent.
pending() {
    q "SELECT count(*) FROM moverz_batch.photos WHERE batch_id = '$1' AND status = 'PENDING'"
}

# Priorities: a HIGH batch behind a 2,000-photo LOW backlog starts at once.
set_conf moverz_batch.max_inflight 8          # 2 workers x 8 in flight, 100 ms each
pa=$(new_project sched-a)
low1=$(submit "$pa" sched-a "$(photo_assets 1000 "$u/low1-{i}.jpg?latency_ms=100&items=box:1:0.1")")
low2=$(submit "$pa" sched-a "$(photo_assets 1000 "$u/low2-{i}.jpg?latency_ms=100&items=box:1:0.1")")
q "UPDATE moverz_batch.batches SET priority = 'LOW' WHERE id IN ('$low1', '$low2')" >/dev/null
q "UPDATE moverz_batch.photos SET priority = 'LOW' WHERE batch_id IN ('$low1', '$low2')" >/dev/null
mb_wait_for 10 "SELECT count(*) > 0 FROM moverz_batch.photos WHERE batch_id = '$low1' AND status = 'DONE'"
high=$(q "SELECT moverz_batch.create_batch('$pa', 'sched-a',
          '$(photo_assets 5 "$u/high-{i}.jpg?latency_ms=100&items=sofa:1:1")'::jsonb, 'HIGH')")
wait_finished "$high" 20; ok $? "the HIGH batch finishes"
backlog=$(( $(pending "$low1") + $(pending "$low2") ))
ok "$([ "$backlog" -gt 1000 ] && echo 0 || echo 1)" "while most of the LOW backlog still waits ($backlog of 2000 pending)"
# a claim already under way when the HIGH batch committed (its snapshot did not see it) may
# still take LOW photos: at most one claim's worth (max_inflight = 8); none after that
lows=$(q "SELECT count(*) FROM moverz_batch.photos WHERE batch_id IN ('$low1', '$low2') AND started_at >
           (SELECT min(started_at) FROM moverz_batch.photos WHERE batch_id = '$high')
           AND started_at < (SELECT max(started_at) FROM moverz_batch.photos WHERE batch_id = '$high')")
ok "$([ "$lows" -le 8 ] && echo 0 || echo 1)" "LOW photos claimed while HIGH photos waited: only a claim under way ($lows <= 8)"
q "SELECT moverz_batch.cancel_batch('$low1'), moverz_batch.cancel_batch('$low2')" >/dev/null

# Fairness: one user's 1,000-photo batch does not starve another's 3 photos.
set_conf moverz_batch.max_inflight_per_user 12
big=$(submit "$pa" sched-a "$(photo_assets 1000 "$u/big-{i}.jpg?latency_ms=200&items=box:1:0.1")")
mb_wait_for 10 "SELECT count(*) > 0 FROM moverz_batch.photos WHERE batch_id = '$big' AND status = 'DONE'"
is "$(q "SELECT max(count_processing) <= 12 FROM moverz_batch.batches WHERE id = '$big'")" t \
   "max_inflight_per_user caps the big user's requests in flight"
pb=$(new_project sched-b)
small=$(submit "$pb" sched-b "$(photo_assets 3 "$u/small-{i}.jpg?latency_ms=200&items=sofa:1:1")")
wait_finished "$small" 20; ok $? "the small batch of another user finishes"
left=$(pending "$big")
ok "$([ "$left" -gt 500 ] && echo 0 || echo 1)" "long before the big batch ($left of 1000 still pending)"
q "SELECT moverz_batch.cancel_batch('$big')" >/dev/null
reset_conf moverz_batch.max_inflight_per_user
reset_conf moverz_batch.max_inflight

# The request ceiling, shared by all workers.
set_conf moverz_batch.max_requests_per_second 20
curl -s -X POST "$FAKE_AI_URL/reset" >/dev/null
capped=$(submit "$pa" sched-a "$(photo_assets 60 "$u/cap-{i}.jpg?items=box:1:0.1")")
wait_finished "$capped" 30; ok $? "a batch under a 20 req/s ceiling finishes"
rps=$(fake_stat max_rps_1s)
ok "$([ "$rps" -le 25 ] && echo 0 || echo 1)" "at most ~20 calls in any second at the AI service (saw $rps)"
span=$(q "SELECT extract(epoch FROM max(started_at) - min(started_at)) FROM moverz_batch.photos WHERE batch_id = '$capped'")
ok "$(awk -v s="$span" 'BEGIN { exit !(s >= 2.0) }'; echo $?)" "60 calls at 20/s are spread over >= 2 s (${span} s)"
reset_conf moverz_batch.max_requests_per_second

# A RATE_LIMIT answer slows the whole pool, not just one request.
limited=$(submit "$pa" sched-a "[{\"filename\": \"rl.jpg\", \"url\": \"$u/rl.jpg?fault=429&retry_after=2&fail_first=1&items=box:1:0.1\"}]")
mb_wait_for 10 "SELECT EXISTS (SELECT 1 FROM moverz_batch.ai_metrics WHERE meta->>'batchId' = '$limited'
                                 AND meta->>'errorCode' = 'RATE_LIMIT')"
ok $? "the AI service answered 429 with Retry-After: 2"
others=$(submit "$pb" sched-b "$(photo_assets 5 "$u/after-rl-{i}.jpg?items=box:1:0.1")")
wait_finished "$others" 20; ok $? "other photos still finish"
is "$(q "SELECT min(p.started_at) - m.created_at >= interval '1.5 seconds'
           FROM moverz_batch.photos p,
                (SELECT created_at FROM moverz_batch.ai_metrics WHERE meta->>'batchId' = '$limited'
                  ORDER BY created_at LIMIT 1) m
          WHERE p.batch_id = '$others' GROUP BY m.created_at")" t \
   "photos of another user waited for the pool-wide Retry-After hold"
wait_finished "$limited" 20
is "$(progress "$limited" '{status}')" COMPLETED "the rate-limited photo succeeds on its retry"
done_testing
