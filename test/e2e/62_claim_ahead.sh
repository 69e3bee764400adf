#!/usr/bin/env bash
# Claiming ahead (moverz_batch.claim_ahead): photos a worker claimed beyond
# its free request slots wait in the worker, unsent; they are counted as
# processing, they go back to PENDING unsent (attempt not counted) on pause,
# cancel, a HIGH batch and shutdown, and a cancelled one is never sent.
# 2 workers x (max_inflight 2 + claim_ahead 3): 4 in flight, 6 claimed ahead;
# requests take seconds, so that they are still in flight between the steps.
source "$(dirname "$0")/common.sh"
cleanup() {
    for s in max_inflight claim_ahead request_timeout; do reset_conf "moverz_batch.$s"; done
    q "SELECT moverz_batch.resume_processing()" >/dev/null
    q "SELECT moverz_batch.cancel_batch(id) FROM moverz_batch.batches
        WHERE user_id = 'ahead-user' AND NOT moverz_batch_internal.is_terminal(status)" >/dev/null
}
trap cleanup EXIT
u=https://img.example.com/ahead
project=$(new_project ahead-user)
set_conf moverz_batch.max_inflight 2
set_conf moverz_batch.claim_ahead 3
set_conf moverz_batch.request_timeout 20s
# counts BATCH: "queued processing" of the batch.
counts() {
    q "SELECT count_queued || ' ' || count_processing FROM moverz_batch.batches WHERE id = '$1'"
}
# unsent_attempts BATCH: attempts counted on the batch's PENDING photos.
unsent_attempts() {
    q "SELECT coalesce(sum(attempts), 0) FROM moverz_batch.photos WHERE batch_id = '$1' AND status = 'PENDING'"
}

curl -s -X POST "$FAKE_AI_URL/reset" >/dev/null
a=$(submit "$project" ahead-user "$(photo_assets 30 "$u/a{i}.jpg?latency_ms=6000&items=box:1:0.1")")
# (two claims at once can share out fewer than asked: a worker tops its photos
# claimed ahead up once fewer than half are left, so 2 or 3 per worker)
mb_wait_for 10 "SELECT count_processing >= 8 FROM moverz_batch.batches WHERE id = '$a'"
ok $? "photos claimed: 4 in flight and 4 to 6 claimed ahead"
sleep 0.3
is "$(fake_stat total)" 4 "only the 4 in flight were sent"
is "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'moverz_batch photo worker'
           AND query LIKE '%: 2 request(s) in flight, _ photo(s) claimed ahead'")" 2 \
   "each worker shows its requests in flight and its photos claimed ahead"

# pause: the photos claimed ahead go back, unsent, their attempt not counted
q "SELECT moverz_batch.pause_processing()" >/dev/null
mb_wait_for 5 "SELECT count_processing = 4 FROM moverz_batch.batches WHERE id = '$a'"
ok $? "pause: the photos claimed ahead are handed back at once"
is "$(counts "$a")" "26 4" "26 pending again, 4 still in flight"
is "$(unsent_attempts "$a")" 0 "no attempt counted for a photo never sent"
q "SELECT moverz_batch.resume_processing()" >/dev/null
mb_wait_for 5 "SELECT count_processing >= 8 FROM moverz_batch.batches WHERE id = '$a'"
ok $? "resume: claimed ahead again"

# cancel: the photos claimed ahead are never sent
is "$(q "SELECT moverz_batch.cancel_batch('$a')")" 30 "cancel_batch cancels the 30 unfinished photos"
for i in $(seq 150); do [ "$(fake_stat inflight)" = 0 ] && break; sleep 0.1; done   # the 4 answers arrive
sleep 0.5
is "$(fake_stat total)" 4 "no photo claimed ahead was sent after the cancel"
is "$(q "SELECT count(*) FROM moverz_batch.photos WHERE batch_id = '$a' AND status <> 'CANCELLED'")" 0 \
   "every photo of the batch is CANCELLED"

# a HIGH batch does not wait behind the photos claimed ahead.  Judged from the
# photos' own times, not from what a poll happens to see: on a loaded machine
# a poll can come after the 2 HIGH photos (no latency) are already done.
curl -s -X POST "$FAKE_AI_URL/reset" >/dev/null
low=$(submit "$project" ahead-user "$(photo_assets 20 "$u/low{i}.jpg?latency_ms=1500&items=box:1:0.1")")
q "UPDATE moverz_batch.photos SET priority = 'LOW' WHERE batch_id = '$low'" >/dev/null
mb_wait_for 10 "SELECT count_processing >= 8 FROM moverz_batch.batches WHERE id = '$low'"
ok $? "LOW batch: 4 in flight, 4 to 6 claimed ahead"
high=$(q "SELECT moverz_batch.create_batch('$project', 'ahead-user',
          '$(photo_assets 2 "$u/high{i}.jpg?items=sofa:1:1")'::jsonb, 'HIGH')")
mb_wait_for 5 "SELECT count_queued = 0 FROM moverz_batch.batches WHERE id = '$high'"
ok $? "the HIGH photos are claimed at once, in place of LOW photos claimed ahead"
is "$(q "SELECT sum(count_processing) <= 10 FROM moverz_batch.batches WHERE id IN ('$low', '$high')")" t \
   "never more claimed than the slots and claims ahead of 2 workers (2 x (2 + 3))"
wait_finished "$high" 10; ok $? "the HIGH batch finishes"
# LOW photos answered between the HIGH batch's creation and its last answer:
# at most the 4 in flight when it came (1.5 s each, so that the HIGH photos,
# sent as the first slots freed, were answered first)
done_low=$(q "SELECT count(*) FILTER (WHERE l.finished_at < (SELECT max(finished_at) FROM moverz_batch.photos
                                                           WHERE batch_id = '$high'))
                - count(*) FILTER (WHERE l.finished_at < (SELECT created_at FROM moverz_batch.batches
                                                           WHERE id = '$high'))
               FROM moverz_batch.photos l WHERE l.batch_id = '$low' AND l.status = 'DONE'")
ok "$([ "$done_low" -le 4 ] && echo 0 || echo 1)" \
   "sent as soon as the first slots freed, before the LOW photos claimed ahead ($done_low LOW answered meanwhile)"
is "$(q "SELECT count(*) FROM moverz_batch.photos WHERE batch_id = '$low' AND status = 'PENDING' AND attempts > 0")" 0 \
   "LOW photos handed back keep no attempt"

# shutdown: the photos claimed ahead go back, unsent
mb_wait_for 5 "SELECT count_processing >= least(8, count_queued + count_processing)
                 FROM moverz_batch.batches WHERE id = '$low'"
ok $? "LOW: photos claimed ahead again (up to 8, as many as are left) before the restart"
mb_pg_ctl -w -t 60 -m fast restart >/dev/null
ok $? "restart (fast shutdown) with photos claimed ahead"
wait_finished "$low" 30; ok $? "the LOW batch finishes after the restart"
is "$(q "SELECT count(*) FROM moverz_batch.photos WHERE batch_id = '$low' AND status = 'DONE'")" 20 \
   "all 20 LOW photos DONE"
# every attempt counted is a call the AI service received: none for a photo
# handed back by the pause, the HIGH batch or the shutdown
joined=$(join <(q "SELECT id || ' ' || attempts FROM moverz_batch.photos WHERE batch_id = '$low'" | sort) \
              <(curl -s "$FAKE_AI_URL/stats/calls" | sort))
is "$(echo "$joined" | wc -l)" 20 "the AI service saw every LOW photo"
is "$(echo "$joined" | awk '$2 != $3' | wc -l)" 0 "attempts = calls for every LOW photo"
done_testing
