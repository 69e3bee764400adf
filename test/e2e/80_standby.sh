#!/usr/bin/env bash
# 80_standby: hot standby.  A primary with moverz_batch and a streaming
# replica of it (pg_basebackup -R), both clusters of this scenario's own: on
# the standby the background workers do not run (they start when recovery
# has finished) and nothing of the extension writes or logs an error, while
# the batches the primary finishes replicate; after the primary stops and the
# standby is promoted, its workers start and take over the photos left
# pending.
source "$(dirname "$0")/common.sh"
work=$(mktemp -d /tmp/moverz_standby.XXXXXX)
chmod 755 "$work"
[ "$(id -u)" = 0 ] && chown postgres: "$work"
pport=$((20000 + RANDOM % 20000))
sport=$((pport + 1))
cleanup() {
    local d
    for d in "$work/standby" "$work/primary"; do
        [ -d "$d" ] && mb_run_pg "$MB_PGBIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1
    done
    rm -rf "$work"
}
trap cleanup EXIT

# on PORT SQL: one value from the cluster on PORT (socket in $work).
on() {
    psql -h "$work" -p "$1" -d postgres -qAtX -v ON_ERROR_STOP=1 -c "$2"
}
# wait_on PORT SECONDS SQL: poll until SQL returns t there.
wait_on() {
    local deadline=$((SECONDS + $2))
    while [ $SECONDS -lt $deadline ]; do
        [ "$(on "$1" "$3" 2>/dev/null)" = t ] && return 0
        sleep 0.2
    done
    return 1
}

# The primary.
mb_run_pg "$MB_PGBIN/initdb" -D "$work/primary" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
    >"$work/initdb.log" 2>&1 || { echo "Bail out! initdb"; exit 1; }
printf '%s\n' "port = $pport" "listen_addresses = ''" "unix_socket_directories = '$work'" \
    "shared_preload_libraries = 'moverz_batch'" "fsync = off" "max_worker_processes = 32" \
    "log_line_prefix = '%m [%p] %b '" "wal_level = replica" "hot_standby = on" \
    "moverz_batch.workers = 1" "moverz_batch.ai_service_url = '$FAKE_AI_URL'" \
    "moverz_batch.poll_interval = '200ms'" "moverz_batch.outage_max_wait = 0" \
    | mb_run_pg tee -a "$work/primary/postgresql.conf" >/dev/null
mb_run_pg "$MB_PGBIN/pg_ctl" -D "$work/primary" -l "$work/primary.log" -w -t 60 start >/dev/null \
    || { cat "$work/primary.log"; echo "Bail out! primary"; exit 1; }
on "$pport" "CREATE EXTENSION moverz_batch" >/dev/null
project=$(on "$pport" "SELECT moverz_batch.create_project('standby-user', 'standby')")

# The standby: a base backup of the primary, streaming from it.
mb_run_pg "$MB_PGBIN/pg_basebackup" -h "$work" -p "$pport" -U postgres -D "$work/standby" -R -X stream \
    >"$work/basebackup.log" 2>&1 || { cat "$work/basebackup.log"; echo "Bail out! pg_basebackup"; exit 1; }
printf '%s\n' "port = $sport" | mb_run_pg tee -a "$work/standby/postgresql.conf" >/dev/null
mb_run_pg "$MB_PGBIN/pg_ctl" -D "$work/standby" -l "$work/standby.log" -w -t 60 start >/dev/null \
    || { cat "$work/standby.log"; echo "Bail out! standby"; exit 1; }
is "$(on "$sport" "SELECT pg_is_in_recovery()")" t "the standby is in recovery"

# While it is a standby: no worker; the primary's batches replicate.
assets='[{"filename": "a.jpg", "url": "https://img.example.com/standby/a.jpg?items=sofa:1:2"},
         {"filename": "b.jpg", "url": "https://img.example.com/standby/b.jpg?items=bed:1:1.5"}]'
b1=$(on "$pport" "SELECT moverz_batch.create_batch('$project', 'standby-user', '$assets')")
wait_on "$pport" 30 "SELECT status = 'COMPLETED' FROM moverz_batch.batches WHERE id = '$b1'"
ok $? "the primary's workers finish a batch"
wait_on "$sport" 30 "SELECT count(*) = 1 FROM moverz_batch.inventory_summaries WHERE batch_id = '$b1'"
ok $? "the batch and its inventory replicate to the standby"
is "$(on "$sport" "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'moverz_batch%'")" 0 \
   "no moverz_batch worker runs on the standby"
is "$(on "$sport" "SELECT count(*) FROM moverz_batch.worker_status")" 0 "worker_status on the standby: empty"
is "$(on "$sport" "SELECT moverz_batch.batch_progress('$b1') ->> 'status'")" COMPLETED \
   "the SQL API reads on the standby (batch_progress)"
is "$(on "$sport" "SELECT moverz_batch.create_batch('$project', 'standby-user', '$assets')" 2>&1 | head -1 | grep -c 'read-only transaction')" 1 \
   "a write on the standby is refused as read-only"

# Work left pending on the primary (processing paused), then the primary
# stops and the standby is promoted.
on "$pport" "SELECT moverz_batch.pause_processing()" >/dev/null
b2=$(on "$pport" "SELECT moverz_batch.create_batch('$project', 'standby-user',
        '[{\"filename\": \"c.jpg\", \"url\": \"https://img.example.com/standby/c.jpg?items=chair:4:0.3\"}]')")
lsn=$(on "$pport" "SELECT pg_current_wal_lsn()")
wait_on "$sport" 30 "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn"
ok $? "the pending batch reached the standby"
is "$(grep -cE 'moverz_batch (photo worker|inventory worker|progress publisher)|worker .* started' "$work/standby.log")" 0 \
   "no moverz_batch worker has logged a line on the standby"
mb_run_pg "$MB_PGBIN/pg_ctl" -D "$work/primary" -m fast -w stop >/dev/null
mb_run_pg "$MB_PGBIN/pg_ctl" -D "$work/standby" -w promote >/dev/null
ok $? "the standby is promoted"
wait_on "$sport" 30 "SELECT count(*) = 3 FROM moverz_batch.worker_status"
ok $? "after promotion its workers start (photo, inventory, publisher)"
is "$(on "$sport" "SELECT string_agg(kind, ',' ORDER BY kind) FROM moverz_batch.worker_status")" \
   "inventory,photo,publisher" "worker_status on the new primary"
on "$sport" "SELECT moverz_batch.resume_processing()" >/dev/null
wait_on "$sport" 30 "SELECT status = 'COMPLETED' AND inventory_queued FROM moverz_batch.batches WHERE id = '$b2'"
ok $? "the new primary's workers take over the pending batch"
wait_on "$sport" 30 "SELECT count(*) = 1 FROM moverz_batch.inventory_summaries WHERE batch_id = '$b2'"
ok $? "and sync its inventory, once"
is "$(grep -cE 'moverz_batch (photo worker|inventory worker|progress publisher) (ERROR|FATAL|PANIC)' "$work/standby.log")" 0 \
   "no error of the workers in its log"

done_testing
