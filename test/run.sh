#!/usr/bin/env bash
# test/run.sh: the whole moverz_batch test suite, from a fresh Debian machine.
#
# Installs the missing Debian packages, builds and installs the extension and
# the fake AI service, starts a throwaway cluster (owned by "postgres" when run
# as root) and the fake AI service, then runs:
#   1. the pg_regress suite (sql/ + expected/), in database moverz_regress;
#   2. the pgTAP suite (test/pgtap/*.sql, pg_prove), in database moverz_tap;
#   3. the fakes of the model APIs (test/fake_providers), checked with the
#      providers' official npm SDKs (pinned in its package-lock.json), and the
#      S3 signer (test/s3: AWS's example, the AWS SDK's presigner, s3rver);
#   4. the end-to-end scenarios (test/e2e/[0-9]*.sh, TAP), against the background
#      workers, which serve database postgres.
# Everything it started is stopped whatever happens.  Ends with a line
# "N passed, N failed" (one per pg_regress test, pgTAP file and scenario) and
# exits non-zero on any failure.
#
# Usage: test/run.sh [e2e-scenario-name...]   (names restrict step 4)
set -uo pipefail
cd "$(dirname "$0")/.."
source test/lib.sh

passed=0
failed=0
failures=()

# count RESULT NAME: record one test result (0 = pass).
count() {
    if [ "$1" = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$2"); fi
}

cleanup() {
    [ -n "${FAKE_AI_PID:-}" ] && kill "$FAKE_AI_PID" 2>/dev/null
    if [ "$failed" -gt 0 ] && [ -n "${MB_DIR:-}" ] && [ -f "$MB_DIR/server.log" ]; then
        echo "== the workers' last lines in the server log"
        grep -E ' moverz_batch [a-z ]+ (LOG|WARNING|ERROR|FATAL|PANIC):|(FATAL|PANIC):|terminated by signal' \
            "$MB_DIR/server.log" | tail -n 40
        echo "== last lines of the server log"; tail -n 20 "$MB_DIR/server.log"
    fi
    if [ "$failed" -gt 0 ] && [ -n "${FAKE_AI_OUT:-}" ]; then
        echo "== the fake AI service's output"; head -n 20 "$FAKE_AI_OUT"
    fi
    rm -f "${FAKE_AI_OUT:-}" /tmp/regress.$$.out
    mb_cluster_stop
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mb_install_deps || { echo "0 passed, 1 failed"; exit 1; }
mb_build || { echo "0 passed, 1 failed"; exit 1; }
make -s fake_ai >/dev/null || { echo "0 passed, 1 failed"; exit 1; }

FAKE_AI_OUT=/tmp/fake_ai.$$.log
mb_fake_start "$FAKE_AI_OUT" || { echo "0 passed, 1 failed"; exit 1; }

mb_cluster_start \
    "moverz_batch.workers = 2" \
    "moverz_batch.ai_service_url = '$FAKE_AI_URL'" \
    "moverz_batch.request_timeout = '2s'" \
    "moverz_batch.retry_backoff = '200ms'" \
    "moverz_batch.lease_timeout = '30s'" \
    "moverz_batch.poll_interval = '200ms'" \
    "moverz_batch.outage_max_wait = 0" || { echo "0 passed, 1 failed"; exit 1; }
psql -qX -c "CREATE DATABASE moverz_tap" >/dev/null

echo "== pg_regress"
make -s installcheck PG_CONFIG="$MB_PGBIN/pg_config" >/tmp/regress.$$.out 2>&1
cat /tmp/regress.$$.out
while read -r name res; do
    count "$([ "$res" = ok ] && echo 0 || echo 1)" "pg_regress $name"
done < <(sed -nE 's/^(ok|not ok) +[0-9]+ +[-+ ]*([A-Za-z0-9_]+) .*/\2 \1/p; s/^test ([A-Za-z0-9_]+) +\.\.\. (ok|FAILED).*/\1 \2/p' /tmp/regress.$$.out)
[ -f regression.diffs ] && head -n 80 regression.diffs

echo "== pgTAP"
if ! psql -qX -v ON_ERROR_STOP=1 -d moverz_tap -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION dblink" \
        -c "CREATE EXTENSION moverz_batch" >/dev/null; then
    count 1 "CREATE EXTENSION in moverz_tap"
fi
for f in test/pgtap/*.sql; do
    [ -e "$f" ] || continue
    pg_prove -d moverz_tap "$f"
    count $? "pgTAP $f"
done

echo "== the fakes of the model APIs, checked with the providers' official SDKs"
command -v npm >/dev/null || mb_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
if (cd test/fake_providers && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
    prove --exec node test/fake_providers/sdk_check.js
    count $? "fake providers: sdk_check.js"
else
    count 1 "fake providers: npm ci"
fi

echo "== the S3 signer (src/s3_sign.c): AWS's example, the AWS SDK's presigner, s3rver"
if (cd test/s3 && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
    prove --exec node test/s3/presign_check.js
    count $? "s3 signer: presign_check.js"
else
    count 1 "s3 signer: npm ci"
fi

echo "== end-to-end scenarios"
if ! psql -qX -v ON_ERROR_STOP=1 -d postgres -c "CREATE EXTENSION moverz_batch" >/dev/null; then
    count 1 "CREATE EXTENSION in postgres"
    set -- skip-all-scenarios
fi
for f in test/e2e/[0-9]*.sh; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .sh)
    if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$name"; then continue; fi
    prove --exec bash -v "$f"
    count $? "e2e $name"
    # (its output is printed at exit, with the other failures' evidence)
    if ! kill -0 "$FAKE_AI_PID" 2>/dev/null; then
        count 1 "the fake AI service outlives e2e $name"
        break
    fi
done

for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
