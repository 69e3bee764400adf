#!/usr/bin/env bash
# One lock order for every path (issue #20; cancel_batch's comment in
# sql/src/40_api.sql): the photos first, then their batch.  Each race is
# made deterministic by holding one side in an open transaction.  Each
# failed on the code before: the cancel returned "already FAILED" and the
# retried photos were sent; the project's deletion deadlocked with the
# write-back; purge promoted the duplicates of a batch it then kept.
source "$(dirname "$0")/common.sh"
cleanup() {
    [ -n "${HOLDER:-}" ] && kill "$HOLDER" 2>/dev/null
    q "SELECT moverz_batch.resume_processing()" >/dev/null
}
trap cleanup EXIT
u=https://img.example.com/lock

# hold SECONDS SQL...: run the statements in one transaction that sleeps
# SECONDS before it commits, in the background; wait until it sleeps.
hold() {
    local s=$1
    shift
    local args=(-c "BEGIN")
    for stmt in "$@"; do args+=(-c "$stmt"); done
    psql -qAtX -v ON_ERROR_STOP=1 "${args[@]}" -c "SELECT pg_sleep($s)" -c "COMMIT" >"$MB_DIR/holder.out" 2>&1 &
    HOLDER=$!
    mb_wait_for 5 "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep($s)')"
}

# 1. cancel_batch while a retry_batch of the same batch is not committed
project=$(new_project lock-user)
b=$(submit "$project" lock-user "$(photo_assets 2 "$u/c{i}.jpg?fault=400")")
wait_finished "$b" 20; is "$(progress "$b" '{status}')" FAILED "a batch of 2 failed photos"
q "SELECT moverz_batch.pause_processing()" >/dev/null
hold 1.5 "SELECT moverz_batch.retry_batch('$b')"
ok $? "a retry holds the batch, not committed"
is "$(q "SELECT moverz_batch.cancel_batch('$b')" 2>&1)" 2 "cancel_batch waits for the retry, then cancels the 2 reopened photos"
wait "$HOLDER"; ok $? "the retry committed"; HOLDER=
is "$(q "SELECT string_agg(status::text, ',') FROM moverz_batch.photos WHERE batch_id = '$b'")" "CANCELLED,CANCELLED" \
   "no photo left PENDING"
is "$(progress "$b" '{status}')" CANCELLED "the batch is CANCELLED"
is "$(q "SELECT moverz_batch.retry_batch('$b')" 2>&1 | head -1)" \
   "ERROR:  batch $b is CANCELLED: its photos cannot be retried" "a retry after the cancel is refused"
q "SELECT moverz_batch.resume_processing()" >/dev/null
sleep 1
ids=$(q "SELECT string_agg(id::text, ' ') FROM moverz_batch.photos WHERE batch_id = '$b'")
is "$(for id in $ids; do fake_calls "$id"; done | paste -sd,)" "1,1" "nothing was sent again"

# 2. DELETE of a project while a write-back holds its photos and is about to
# update their batch (the counters): photos, then the batch, in one transaction
project=$(new_project lock-user)
d=$(submit "$project" lock-user "$(photo_assets 3 "$u/e{i}.jpg?items=box:1:0.5")")
wait_finished "$d" 20; ok $? "a finished batch of 3"
logged=$(wc -l <"$MB_DIR/server.log")
psql -qAtX -v ON_ERROR_STOP=1 -c "BEGIN" -c "UPDATE moverz_batch.photos SET updated_at = now() WHERE batch_id = '$d'" \
     -c "SELECT pg_sleep(1)" -c "UPDATE moverz_batch.batches SET count_queued = count_queued WHERE id = '$d'" \
     -c "COMMIT" >"$MB_DIR/wb.out" 2>&1 &
wb=$!
mb_wait_for 5 "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(1)')"
q "DELETE FROM moverz_batch.projects WHERE id = '$project'" >/dev/null 2>&1; del_rc=$?
wait "$wb"; wb_rc=$?
is "$wb_rc/$del_rc" "0/0" "photos then batch, against the deletion's cascade: both commit"
is "$(tail -n +"$((logged + 1))" "$MB_DIR/server.log" | grep -c 'deadlock detected')" 0 "no deadlock"
is "$(q "SELECT count(*) FROM moverz_batch.photos WHERE batch_id = '$d'")" 0 "the project went with its photos"

# 3. purge while a retry of one of its batches is not committed
project=$(new_project lock-user)
keep=$(submit "$project" lock-user "[
  {\"filename\": \"bed.jpg\", \"url\": \"$u/bed.jpg?items=bed:1:2\"},
  {\"filename\": \"bad.jpg\", \"url\": \"$u/bad.jpg?fault=400\"}]")
wait_finished "$keep" 20
q "SELECT moverz_batch.pause_processing()" >/dev/null
# a batch still open (one photo waits) whose bed duplicates the first's
dup=$(submit "$project" lock-user "[{\"filename\": \"bed.jpg\", \"url\": \"$u/bed.jpg?items=bed:1:2\"},
  {\"filename\": \"later.jpg\", \"url\": \"$u/later.jpg?items=box:1:0.1\"}]")
is "$(q "SELECT count(*) FROM moverz_batch.photos WHERE batch_id = '$dup' AND duplicate_of IS NOT NULL AND status = 'DONE'")" 1 \
   "an open batch whose bed is a duplicate of the first batch's"
before=$(q "SELECT moverz_batch.project_inventory('$project') #>> '{totalItems}'")
hold 1.5 "SELECT moverz_batch.retry_batch('$keep')"
purged=$(q "SELECT batches_deleted FROM moverz_batch.purge('0 seconds')")
wait "$HOLDER"; HOLDER=
is "$(q "SELECT count(*) FROM moverz_batch.batches WHERE id = '$keep'")" 1 "purge kept the batch retried meanwhile"
is "$(q "SELECT moverz_batch.project_inventory('$project') #>> '{totalItems}'")" "$before" \
   "the project's inventory counts the bed once ($before items)"
q "SELECT moverz_batch.resume_processing()" >/dev/null
done_testing
