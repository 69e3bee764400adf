#!/usr/bin/env bash
# Versioned SQL: an installation of every released version, updated with
# ALTER EXTENSION ... UPDATE, ends up with exactly the objects of a fresh
# install of the current version (test/e2e/sql/fingerprint.sql), keeps its
# data, and works.  Runs in two scratch databases of the throwaway cluster.
source "$(dirname "$0")/common.sh"
FRESH=mb_upgrade_fresh
cleanup() {
    for db in "$FRESH" $(q "SELECT datname FROM pg_database WHERE datname LIKE 'mb_upgrade_from_%'"); do
        q "DROP DATABASE IF EXISTS $db" >/dev/null
    done
}
trap cleanup EXIT
cleanup
dq() { psql -d "$1" -qAtX -v ON_ERROR_STOP=1 -c "$2"; }
fingerprint() { psql -d "$1" -qAtX -v ON_ERROR_STOP=1 -f "$(dirname "$0")/sql/fingerprint.sql"; }

current=$(q "SELECT default_version FROM pg_available_extensions WHERE name = 'moverz_batch'")
q "CREATE DATABASE $FRESH" >/dev/null
dq "$FRESH" "CREATE EXTENSION moverz_batch" >/dev/null
fingerprint "$FRESH" >"$MB_DIR/fingerprint.fresh"
ok $? "fingerprint of a fresh $current install"
ok $([ "$(grep -c '^member ' "$MB_DIR/fingerprint.fresh")" -gt 50 ] && echo 0 || echo 1) \
   "it lists the extension's objects"

released=$(q "SELECT string_agg(version, ' ' ORDER BY version) FROM pg_available_extension_versions
               WHERE name = 'moverz_batch' AND version <> '$current'")
ok $([ -n "$released" ] && echo 0 || echo 1) "released versions are installable ($released)"
for v in $released; do
    db=mb_upgrade_from_${v//./_}
    q "CREATE DATABASE $db" >/dev/null
    dq "$db" "CREATE EXTENSION moverz_batch VERSION '$v'" >/dev/null
    is "$(dq "$db" "SELECT extversion FROM pg_extension WHERE extname = 'moverz_batch'")" "$v" "installed $v"
    # data written by the old version
    p=$(dq "$db" "SELECT moverz_batch.create_project('upgrade-user', 'before the update')")
    b=$(dq "$db" "SELECT moverz_batch.create_batch('$p', 'upgrade-user',
                    '[{\"filename\": \"a.jpg\", \"url\": \"https://img.example.com/a.jpg\", \"roomType\": \"kitchen\"},
                      {\"filename\": \"b.jpg\", \"url\": \"https://img.example.com/b.jpg\"}]')")
    before=$(dq "$db" "SELECT moverz_batch.batch_progress('$b')")
    dq "$db" "ALTER EXTENSION moverz_batch UPDATE" >/dev/null
    is "$(dq "$db" "SELECT extversion FROM pg_extension WHERE extname = 'moverz_batch'")" "$current" "$v updated to $current"
    fingerprint "$db" >"$MB_DIR/fingerprint.from_$v"
    ok $? "fingerprint of $v updated to $current"
    diff -u "$MB_DIR/fingerprint.fresh" "$MB_DIR/fingerprint.from_$v" >"$MB_DIR/fingerprint.diff_$v"
    ok $? "$v updated to $current has exactly the objects of a fresh install"
    [ -s "$MB_DIR/fingerprint.diff_$v" ] && head -40 "$MB_DIR/fingerprint.diff_$v" | sed 's/^/# /'
    is "$(dq "$db" "SELECT moverz_batch.batch_progress('$b')")" "$before" \
       "a batch created by $v reads the same after the update"
    b2=$(dq "$db" "SELECT moverz_batch.create_batch('$p', 'upgrade-user',
                     '[{\"filename\": \"c.jpg\", \"url\": \"https://img.example.com/c.jpg\"}]')")
    is "$(dq "$db" "SELECT count(*) FROM moverz_batch.photos WHERE batch_id = '$b2' AND duplicate_of IS NULL")" 1 \
       "create_batch works after the update"
    is "$(dq "$db" "SELECT moverz_batch.create_batch('$p', 'upgrade-user', '[{\"filename\": \"x\"}]')" 2>&1 | head -1)" \
       "ERROR:  assets[0].url is required and must be a string" "bad input is refused as before"
done
done_testing
