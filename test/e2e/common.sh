#!/usr/bin/env bash
# test/e2e/common.sh: TAP helpers of the end-to-end scenarios.
#
# The scenarios run under test/run.sh, which exports the throwaway cluster
# (PGHOST, PGPORT, PGUSER, MB_DIR) and the fake AI service (FAKE_AI_URL).
# The background workers serve database "postgres" (moverz_batch.database).
# Source this file, write assertions, end with done_testing.

source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
export PGDATABASE=postgres
TAP_N=0
TAP_FAILED=0

# q SQL: run SQL, print the unaligned result.
q() {
    psql -qAtX -v ON_ERROR_STOP=1 -c "$1"
}

# is GOT WANT DESCRIPTION
is() {
    TAP_N=$((TAP_N + 1))
    if [ "$1" = "$2" ]; then
        echo "ok $TAP_N - $3"
    else
        TAP_FAILED=$((TAP_FAILED + 1))
        echo "not ok $TAP_N - $3"
        printf '#   got:  %s\n#   want: %s\n' "$1" "$2"
    fi
}

# ok CONDITION-STATUS DESCRIPTION: "ok $? desc" style, 0 = pass.
ok() {
    is "$([ "$1" = 0 ] && echo pass || echo fail)" pass "$2"
}

# done_testing: the TAP plan; exit status tells failures.  After a failure,
# what explains most of them, as TAP comments: how the last photos to fail
# failed, whether the fake AI service still answers, the workers' last errors.
done_testing() {
    echo "1..$TAP_N"
    [ "$TAP_FAILED" = 0 ] && return 0
    {
        echo "the last photos in ERROR (error_code, attempts, error_message):"
        q "SELECT error_code || ' ' || attempts || ' ' || left(coalesce(error_message, ''), 120)
             FROM moverz_batch.photos WHERE status = 'ERROR' ORDER BY finished_at DESC LIMIT 8" 2>&1
        echo "the fake AI service ($FAKE_AI_URL): $(curl -s -m 5 "$FAKE_AI_URL/stats" 2>&1 | head -c 300 || echo "no answer")"
        echo "the workers (kind, pid, in flight, done, failed, last error):"
        q "SELECT kind || ' ' || pid || ' ' || inflight || ' ' || done || ' ' || failed || ' ' ||
                  coalesce(last_error, '-') FROM moverz_batch.worker_status" 2>&1
    } | sed 's/^/# /'
    return 1
}

# new_project USER: a fresh project of USER; prints its id.
new_project() {
    q "SELECT moverz_batch.create_project('$1', 'e2e project')"
}

# submit PROJECT USER ASSETS-JSON: create a batch; prints its id.
submit() {
    q "SELECT moverz_batch.create_batch('$1', '$2', '$3'::jsonb)"
}

# photo_assets N URL-TEMPLATE: a JSON array of N assets; in the template,
# {i} is replaced by the photo number.
photo_assets() {
    local n=$1 tpl=$2
    q "SELECT jsonb_agg(jsonb_build_object('filename', 'photo' || i || '.jpg',
                                           'url', replace('$tpl', '{i}', i::text)))
         FROM generate_series(1, $n) AS i"
}

# wait_finished BATCH SECONDS: wait until the batch is terminal and its
# inventory sync has run; fails on timeout.
wait_finished() {
    mb_wait_for "$2" "SELECT moverz_batch_internal.is_terminal(b.status)
                             AND EXISTS (SELECT 1 FROM moverz_batch.inventory_sync_jobs j
                                          WHERE j.batch_id = b.id AND j.status = 'DONE'
                                            AND j.generation = b.inventory_generation)
                        FROM moverz_batch.batches b WHERE b.id = '$1'"
}

# progress BATCH JSONPATH: one value of batch_progress(BATCH).
progress() {
    q "SELECT moverz_batch.batch_progress('$1') #>> '$2'"
}

# fake_stat KEY: one counter of the fake AI service's /stats.
fake_stat() {
    curl -s "$FAKE_AI_URL/stats" | jq -r ".$1"
}

# fake_calls PHOTO_ID: how many calls the fake AI service got for a photo.
fake_calls() {
    curl -s "$FAKE_AI_URL/stats/photo?id=$1" | jq -r .calls
}

# set_conf NAME VALUE / reset_conf NAME: ALTER SYSTEM and reload; the workers
# pick the change up at their next turn.
set_conf() {
    q "ALTER SYSTEM SET $1 = '$2'" >/dev/null && q "SELECT pg_reload_conf()" >/dev/null
    sleep 0.3
}
reset_conf() {
    q "ALTER SYSTEM RESET $1" >/dev/null && q "SELECT pg_reload_conf()" >/dev/null
    sleep 0.3
}

# photo_field BATCH POSITION COLUMN: a column of one photo of the batch.
photo_field() {
    q "SELECT $3 FROM moverz_batch.photos WHERE batch_id = '$1' AND position = $2"
}
