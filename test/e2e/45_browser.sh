#!/usr/bin/env bash
# 45_browser: the customer page (/app/) and the operator dashboard (/admin/)
# in a real headless Chromium (Debian's chromium, driven by puppeteer-core,
# test/browser/browser_test.js), through the real nginx + Nchan + PostgREST
# stack.  Customer: sign-in from #token=, a project created and selected,
# the demo photos analysed with progress coming only through the stream (no
# polling), the photo table and the inventory equal to what the fake AI
# service answers, an API error in the API's words, a retry, the stream as a
# WebSocket; photo files (direct upload, test/browser/upload_test.js): a
# wrong type and an oversize file refused on the page with no request made,
# files picked with the file chooser (from the keyboard) and dropped, a PUT
# refused by the API shown on its file and sent again, the batch COMPLETED
# with a duplicate file counted once and each distinct file's bytes received
# by the fake AI service once.  Operator: queue, throughput chart, workers, costs, batches and
# their PARTIAL filter, retry of a failed photo, pause/resume, cancel; a
# customer token is refused.  Screenshots go to
# ${MB_ARTIFACTS:-/tmp/moverz_artifacts}/45_browser/.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/../http/lib_http.sh"
MB_BROWSER_DIR=$(cd "$(dirname "$0")/../browser" && pwd)
MB_CHROMIUM=${MB_CHROMIUM:-/usr/bin/chromium}
cleanup() {
    # processing is resumed whatever happened (the node test does it too)
    q "SELECT moverz_batch.resume_processing()" >/dev/null 2>&1
    mb_http_stop
    rm -rf "${work:-}"
}
trap cleanup EXIT

# What the browser test needs: Debian's chromium, node + npm, and
# test/browser/node_modules as package-lock.json pins it.
browser_install() {
    local debs=()
    [ -x "$MB_CHROMIUM" ] || debs+=(chromium)
    command -v node >/dev/null || debs+=(nodejs)
    command -v npm >/dev/null || debs+=(npm)
    if [ ${#debs[@]} -gt 0 ]; then
        echo "# installing ${debs[*]}" >&2
        mb_as_root apt-get update -qq >&2 || return 1
        mb_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debs[@]}" >/dev/null || return 1
    fi
    [ -x "$MB_CHROMIUM" ] || return 1
    local want have
    want=$(node -p "require('$MB_BROWSER_DIR/package.json').dependencies['puppeteer-core']") || return 1
    have=$(node -p "require('$MB_BROWSER_DIR/node_modules/puppeteer-core/package.json').version" 2>/dev/null)
    if [ "$have" != "$want" ] || [ ! -f "$MB_BROWSER_DIR/node_modules/.package-lock.json" ] \
       || [ "$MB_BROWSER_DIR/package-lock.json" -nt "$MB_BROWSER_DIR/node_modules/.package-lock.json" ]; then
        echo "# npm ci in test/browser (puppeteer-core $want)" >&2
        npm ci --prefix "$MB_BROWSER_DIR" --no-audit --no-fund --loglevel=error >&2 || return 1
    fi
}
browser_install || { echo "Bail out! cannot install chromium and puppeteer-core (test/browser)"; exit 1; }
mb_http_install || { echo "Bail out! cannot install nginx, Nchan and PostgREST"; exit 1; }
mb_http_start || { echo "Bail out! cannot start nginx and PostgREST"; exit 1; }
mb_wait_for 10 "SELECT running FROM moverz_batch.publish_status()" >/dev/null

work=$(mktemp -d /tmp/moverz_browser.XXXXXX)
shots=${MB_ARTIFACTS:-/tmp/moverz_artifacts}/45_browser
mkdir -p "$shots" && rm -f "$shots"/*.png
exp=$(($(date +%s) + 1200))
user="browser-$$-$RANDOM"

# The node test prints TAP; its tests are counted here as this script's, its
# plan is dropped (done_testing prints the one plan, after this script's own
# tests).
: >"$work/tap"
MB_TOKEN_CUSTOMER=$(mb_jwt "{\"role\": \"moverz_user\", \"sub\": \"$user\", \"exp\": $exp}") \
MB_TOKEN_OPERATOR=$(mb_jwt "{\"role\": \"moverz_operator\", \"sub\": \"ops\", \"exp\": $exp}") \
MB_PROJECT_NAME="browser e2e $user" MB_SHOTS_DIR=$shots MB_CHROMIUM=$MB_CHROMIUM \
    timeout -k 10 420 node "$MB_BROWSER_DIR/browser_test.js" >"$work/tap" 2>"$work/stderr" &
node_pid=$!
tail -n +1 -f --pid="$node_pid" "$work/tap" | grep -v '^1\.\.[0-9]*$'
wait "$node_pid"
rc=$?
TAP_N=$(grep -Ec '^(not )?ok [0-9]+' "$work/tap")
TAP_FAILED=$(grep -Ec '^not ok [0-9]+' "$work/tap")
[ -s "$work/stderr" ] && sed 's/^/# stderr: /' "$work/stderr" | tail -n 40

is "$(grep -c '^1\.\.[0-9]*$' "$work/tap"):$rc" \
   "1:$([ "$TAP_FAILED" = 0 ] && echo 0 || echo 1)" \
   "the browser test ran to its end (its plan printed, exit status $rc, $TAP_FAILED failure(s))"
# The photo files' batch, as the database has it: the uploads of the files
# refused on the page were never asked for.
ub=$(q "SELECT DISTINCT p.batch_id FROM moverz_batch.photos p JOIN moverz_batch.uploads u ON u.photo_id = p.id
         WHERE u.user_id = '$user'")
is "$(q "SELECT count(*) FILTER (WHERE photo_id IS NOT NULL) || ' attached, ' || count(*) FILTER (WHERE uploaded_at IS NULL)
          || ' never completed' FROM moverz_batch.uploads WHERE user_id = '$user'")" "4 attached, 1 never completed" \
   "uploads: the 4 files of the batch, and the URL of the PUT the API refused (none for the files refused on the page)"
is "$(q "SELECT count(*) || ' photos, ' || count(duplicate_of) || ' duplicate' FROM moverz_batch.photos WHERE batch_id = '$ub'")" \
   "5 photos, 1 duplicate" "the photo files' batch: the URL and the 4 files, one a duplicate"
is "$(q "SELECT (SELECT count(*) FROM moverz_batch.inventory_items WHERE batch_id = '$ub')
              = (SELECT sum(jsonb_array_length(analysis -> 'items')) FROM moverz_batch.photos
                  WHERE batch_id = '$ub' AND duplicate_of IS NULL)")" t \
   "its inventory counts the duplicate file's items once"
for f in customer.png uploads.png dashboard.png; do
    ok "$([ -s "$shots/$f" ] && echo 0 || echo 1)" "screenshot $f saved"
    [ -s "$shots/$f" ] && echo "# screenshot: $shots/$f"
done
is "$(q "SELECT paused FROM moverz_batch.queue_overview")" f "processing is left resumed"

done_testing
