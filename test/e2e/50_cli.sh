#!/usr/bin/env bash
# The command-line client tools/moverz-batch: --help / --version; submit
# from a file and from stdin (assets stored verbatim, an SQL-injection-shaped
# URL included, room types, priority, idempotency key, --create-project);
# bad input -> exit 1 with the server's message; watch on live batches (plain
# lines when piped, increasing progress, the inventory summary, duplicates
# reported, exit codes 0 / 2 / 3 / 130); watch in a real terminal (tmux, 80
# and 120 columns: a bar that fits the width, redrawn in place, with rate and
# ETA; colours unless NO_COLOR); status (JSON); top --once.
source "$(dirname "$0")/common.sh"
CLI=${MOVERZ_BATCH_CLI:-$MB_ROOT/tools/moverz-batch}
u=https://img.example.com
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
batches=()

# cli ARGS...: run the client; sets rc, out (stdout) and err (stderr).
cli() {
    "$CLI" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
}

# cli_in INPUT ARGS...: the same, with INPUT on standard input.
cli_in() {
    local input=$1
    shift
    printf '%s' "$input" | "$CLI" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
}

# has TEXT NEEDLE DESCRIPTION: TEXT contains NEEDLE (fixed string).
has() {
    if grep -qF -- "$2" <<<"$1"; then ok 0 "$3"; else ok 1 "$3"; echo "#   no \"$2\" in: $1"; fi
}

# progress_lines: the plain progress lines of a piped watch ($out).
progress_lines() {
    grep -E '^[0-9]{2}:[0-9]{2}:[0-9]{2} [A-Z]+ [0-9]+% queued=' <<<"$out"
}

[ -x "$CLI" ] || make -s -C "$MB_ROOT" tools/moverz-batch >/dev/null

# --- conventions of PostgreSQL's client tools --------------------------------
cli --help
is "$rc" 0 "--help exits 0"
has "$out" "Usage:" "--help prints the usage"
has "$out" "Exit status:" "--help documents the exit codes"
cli '-?'
is "$rc" 0 "-? exits 0"
cli --version
is "$rc" 0 "--version exits 0"
is "$out" "moverz-batch (moverz_batch) $(sed -nE "s/^default_version *= *'(.*)'/\1/p" "$MB_ROOT/moverz_batch.control")" \
   "--version prints the extension's version"
cli
is "$rc" 1 "no command: exit 1"
has "$err" 'moverz-batch: error: no command given' "no command: message"
cli frobnicate
is "$rc:$err" "1:moverz-batch: error: unknown command \"frobnicate\"
moverz-batch: hint: Try \"moverz-batch --help\" for more information." "unknown command: exit 1, message and hint"
cli submit --project 00000000-0000-0000-0000-000000000000
is "$rc" 1 "submit without --user: exit 1"
cli watch --once 00000000-0000-0000-0000-000000000000
is "$rc" 1 "an option of another command: exit 1"
PGPORT=1 cli status 00000000-0000-0000-0000-000000000000
is "$rc" 1 "no server: exit 1"
has "$err" "moverz-batch: error: connection to server" "no server: libpq's message"
cli -d template1 status 00000000-0000-0000-0000-000000000000
is "$rc:$err" "1:moverz-batch: error: extension moverz_batch is not installed in database \"template1\"" \
   "-d: another database, without the extension"

# --- submit from a file ------------------------------------------------------
project=$(new_project cli-user)
inj="$u/o'brien\".jpg?q=1');DROP/**/TABLE/**/moverz_batch.photos;--&esc=\\u0041"
cat >"$tmp/urls.txt" <<EOF
# the photos of the move

$u/salon.jpg?items=sofa:1:2.5 living_room
   $u/rooms/chambre.jpg?items=bed:1:1.9	  bedroom   # the master bedroom
$inj
EOF
cli submit --project "$project" --user cli-user "$tmp/urls.txt"
b1=$out
batches+=("$b1")
is "$rc:$err" "0:" "submit FILE: exit 0, nothing on stderr"
is "$(q "SELECT project_id || ' ' || user_id || ' ' || priority FROM moverz_batch.batches WHERE id = '$b1'")" \
   "$project cli-user NORMAL" "submit prints the id of the new batch (default priority NORMAL)"
is "$(q "SELECT string_agg(position || ':' || filename || ':' || coalesce(room_type, '-'), ' ' ORDER BY position)
           FROM moverz_batch.photos WHERE batch_id = '$b1' AND position < 2")" \
   "0:salon.jpg:living_room 1:chambre.jpg:bedroom" \
   "comments and blank lines skipped; filenames from the URL path; room types"
is "$(q "SELECT count(*) FROM moverz_batch.photos WHERE batch_id = '$b1'")" 3 "three photos"
is "$(photo_field "$b1" 2 url)" "$inj" "an SQL-injection-shaped URL is stored verbatim"
is "$(photo_field "$b1" 2 filename)" "o'brien\".jpg" "its filename too"
is "$(q "SELECT to_regclass('moverz_batch.photos') IS NOT NULL")" t "and nothing was dropped"

# --- submit from stdin, --create-project, priority, idempotency ----------------
key=cli-key-$$-$RANDOM
input="$u/in1.jpg?items=box:2:0.1
$u/in2.jpg?items=box:1:0.1 garage
"
cli_in "$input" submit --create-project "CLI move" --user cli-user2 --priority LOW --idempotency-key "$key"
b2=$out
batches+=("$b2")
is "$rc" 0 "submit from stdin with --create-project: exit 0"
p2=$(sed -nE 's/^moverz-batch: created project ([0-9a-f-]{36})$/\1/p' <<<"$err")
is "$(q "SELECT name || '/' || user_id FROM moverz_batch.projects WHERE id = '${p2:-00000000-0000-0000-0000-000000000000}'")" \
   "CLI move/cli-user2" "the project is created for --user and reported on stderr"
is "$(q "SELECT project_id || ' ' || priority || ' ' || idempotency_key FROM moverz_batch.batches WHERE id = '$b2'")" \
   "$p2 LOW $key" "the batch uses it, with the priority and the idempotency key"
is "$(photo_field "$b2" 1 room_type)" garage "room type read from stdin"
cli_in "$input" submit --project "$p2" --user cli-user2 --priority LOW --idempotency-key "$key" -
is "$rc:$out" "0:$b2" "the same idempotency key and payload (FILE '-' = stdin) return the same batch"

# --- bad input: exit 1 with the server's message, nothing written -------------
nbatches=$(q "SELECT count(*) FROM moverz_batch.batches")
nprojects=$(q "SELECT count(*) FROM moverz_batch.projects")
cli_in "# bad
$u/ok.jpg
javascript:alert(1)
" submit --project "$project" --user cli-user
is "$rc" 1 "a javascript: URL: exit 1"
has "$err" "moverz-batch: error: assets[1].url must be an absolute http or https URL" "the server's message"
has "$err" "assets[1] is line 3 of standard input" "and the input line it comes from"
cli_in "$u/ok.jpg moon" submit --create-project "never" --user cli-user
is "$rc" 1 "an unknown room type: exit 1"
has "$err" 'assets[0].roomType "moon" is not an accepted room type' "the server's message"
has "$err" "moverz-batch: hint: The accepted room types are listed in moverz_batch.room_types." "and its hint"
cli_in "$u/ok.jpg" submit --project "$project" --user someone-else
is "$rc" 1 "another user's project: exit 1"
has "$err" "no such project for this user" "the server's message"
cli_in "$u/ok.jpg" submit --project not-a-uuid --user cli-user
is "$rc" 1 "a malformed project id: exit 1"
has "$err" 'invalid input syntax for type uuid: "not-a-uuid"' "the server's message"
cli_in "$u/a.jpg living_room extra" submit --project "$project" --user cli-user
is "$rc:$err" "1:moverz-batch: error: standard input:1: expected \"URL [ROOM_TYPE]\", found more fields" \
   "a line with three fields: exit 1"
cli_in "" submit --project "$project" --user cli-user
is "$rc:$err" "1:moverz-batch: error: assets must contain at least one photo" "no photos: exit 1"
cli submit --project "$project" --user cli-user "$tmp/missing.txt"
is "$rc" 1 "a missing file: exit 1"
cli_in "$u/ok.jpg" submit --project "$project" --user cli-user --priority URGENT
is "$rc" 1 "an unknown priority: exit 1"
is "$(q "SELECT count(*) FROM moverz_batch.batches")/$(q "SELECT count(*) FROM moverz_batch.projects")" \
   "$nbatches/$nprojects" "bad input creates no batch and no project"

# --- watch, piped: one plain line per change, then the inventory ----------------
live=$(printf '%s\n' "$u/w1.jpg?items=sofa:1:1.5&latency_ms=300 living_room" \
                     "$u/w2.jpg?items=bed:1:2&latency_ms=700 bedroom" \
                     "$u/w3.jpg?items=chair:4:0.25&latency_ms=1100 kitchen" \
                     "$u/w4.jpg?items=lamp:2:0.1&latency_ms=1500 bedroom" \
                     "https://gone.invalid/w5.jpg living_room" |
       "$CLI" submit --project "$project" --user cli-user)
batches+=("$live")
cli watch "$live"
is "$rc" 2 "watch: a PARTIAL batch exits 2"
lines=$(progress_lines)
echo "$lines" | sed 's/^/# /'
ok "$([ "$(wc -l <<<"$lines")" -ge 3 ] && echo 0 || echo 1)" "watch prints a line per change (at least 3)"
ok "$(awk '{ p = $3 + 0; if (p < last) bad = 1; last = p } END { exit bad }' <<<"$lines"; echo $?)" \
   "the progress never goes back"
ok "$([ "$(cut -d' ' -f3 <<<"$lines" | sort -u | wc -l)" -ge 2 ] && echo 0 || echo 1)" "the progress increases"
is "$(tail -n 1 <<<"$lines" | cut -d' ' -f2-)" \
   "PARTIAL 100% queued=0 processing=0 completed=4 failed=1 total=5 inventory=ready" "the last line: final counts"
has "$out" "Batch $live: PARTIAL, 4 of 5 photos analysed, 1 failed" "the outcome"
table=$(sed -n '/^Inventory$/,/^$/p' <<<"$out" | grep -E '^ [a-z_]+ +\|' | tail -n +2 | tr -s ' ' | sed 's/^ //')
is "$(cut -d' ' -f1,3 <<<"$table" | tr '\n' ' ')" "bedroom 3 kitchen 4 living_room 1 total 8 " \
   "the inventory: one row per room (items), then the totals"
is "$table" "$(q "SELECT string_agg(format('%s | %s | %s', r->>'roomType', r->>'itemsCount', r->>'volume_m3'), E'\n' ORDER BY n)
                    FROM jsonb_array_elements(moverz_batch.batch_progress('$live')#>'{inventorySummary,rooms}')
                         WITH ORDINALITY AS t(r, n)")
total | $(progress "$live" '{inventorySummary,totalItems}') | $(progress "$live" '{inventorySummary,totalVolume}')" \
   "the inventory table is batch_progress's inventorySummary"
has "$(tr -s ' ' <<<"$out")" " w5.jpg | NETWORK_ERROR" "the failed photo and its error code"

ok_b=$(printf '%s\n' "$u/c1.jpg?items=box:3:0.1&latency_ms=200" "$u/c2.jpg?items=desk:1:0.8&latency_ms=400 office" |
       "$CLI" submit --project "$project" --user cli-user)
batches+=("$ok_b")
cli watch "$ok_b"
is "$rc" 0 "watch: a COMPLETED batch exits 0"
has "$out" "Batch $ok_b: COMPLETED, 2 of 2 photos analysed, 0 failed" "its outcome"
fail_b=$(echo "https://nowhere.invalid/f.jpg" | "$CLI" submit --project "$project" --user cli-user)
batches+=("$fail_b")
cli watch "$fail_b"
is "$rc" 2 "watch: a FAILED batch exits 2"
cli watch "$ok_b"
is "$rc" 0 "watch: a batch already finished prints its summary at once"

# The same photos again: duplicates, whose items the inventory counts once.
dup_b=$(printf '%s\n' "$u/c1.jpg?items=box:3:0.1&latency_ms=200" "$u/c2.jpg?items=desk:1:0.8&latency_ms=400 office" |
        "$CLI" submit --project "$project" --user cli-user)
batches+=("$dup_b")
cli watch "$dup_b"
is "$rc" 0 "watch: a batch of duplicates exits 0"
has "$out" "2 of 2 photos were duplicates of photos already analysed: their items are counted once, in the earlier batch" \
    "its summary says the photos were duplicates of earlier ones"
is "$(sed -n '/^Inventory$/,/^$/p' <<<"$out" | grep -E '^ total ' | tr -s ' ')" " total | 0 | 0" \
   "and its inventory counts nothing again"
rep_b=$(printf '%s\n' "$u/r1.jpg?items=box:1:0.1&n=$$" "$u/r1.jpg?items=box:1:0.1&n=$$" "$u/r2.jpg?items=box:1:0.1&n=$$" |
        "$CLI" submit --project "$project" --user cli-user)
batches+=("$rep_b")
cli watch "$rep_b"
has "$out" "1 photo repeated another photo of this batch: its items are counted once" \
    "a photo repeated within a batch is reported too"

# A batch that lasts >= 3 s: a 429 with Retry-After: 3, then success.
slow=$(echo "$u/slow.jpg?fault=429&retry_after=3&fail_first=1&items=box:1:0.1" |
       "$CLI" submit --project "$project" --user cli-user)
batches+=("$slow")
cli watch --timeout 0.5 "$slow"
is "$rc" 3 "watch --timeout: exit 3 when it expires"
has "$err" "moverz-batch: error: timed out after 0.5 s: batch $slow is" "the timeout message"
"$CLI" watch "$slow" >"$tmp/int.out" 2>"$tmp/int.err" &
pid=$!
sleep 1
kill -INT "$pid"
wait "$pid"
is "$?:$(cat "$tmp/int.err")" "130:moverz-batch: interrupted" "watch: SIGINT stops it cleanly, exit 130"

# CANCELLED while watched: exit 2, the inventory of what was done.
can=$(printf '%s\n' "$u/k1.jpg?items=box:1:0.1" "$u/k2.jpg?fault=429&retry_after=3&fail_first=1&items=box:1:0.1" |
      "$CLI" submit --project "$project" --user cli-user)
batches+=("$can")
"$CLI" watch "$can" >"$tmp/can.out" 2>&1 &
pid=$!
mb_wait_for 10 "SELECT count_completed = 1 FROM moverz_batch.batches WHERE id = '$can'"
sleep 0.5
q "SELECT moverz_batch.cancel_batch('$can')" >/dev/null
wait "$pid"
is "$?" 2 "watch: a batch CANCELLED meanwhile exits 2"
has "$(cat "$tmp/can.out")" "CANCELLED 100% queued=0 processing=0 completed=1 failed=0 cancelled=1 total=2 inventory=ready" \
   "its last line shows the cancelled photos"
has "$(cat "$tmp/can.out")" "Batch $can: CANCELLED, 1 of 2 photos analysed, 0 failed, 1 cancelled" "its outcome"

if command -v script >/dev/null; then
    tty_b=$(printf '%s\n' "$u/t1.jpg?items=box:1:0.1&latency_ms=300" "$u/t2.jpg?items=box:1:0.1&latency_ms=900" |
            "$CLI" submit --project "$project" --user cli-user)
    batches+=("$tty_b")
    script -qfec "$CLI watch $tty_b" /dev/null >"$tmp/tty.out" 2>&1 </dev/null
    ok "$(grep -qE $'\r\\[#+\\] 100%.*\e\\[K' "$tmp/tty.out"; echo $?)" "on a terminal: a progress bar redrawn in place"
    has "$(cat "$tmp/tty.out")" "Batch $tty_b: COMPLETED" "then the summary"
fi

# --- watch in a real terminal: tmux, 80 and 120 columns ------------------------
command -v tmux >/dev/null ||
    { mb_as_root apt-get update -qq && mb_as_root env DEBIAN_FRONTEND=noninteractive \
          apt-get install -y -qq --no-install-recommends tmux; } >/dev/null 2>&1
ok "$(command -v tmux >/dev/null; echo $?)" "tmux is installed (the terminal tests need it)"
if command -v tmux >/dev/null; then
    trap 'tmux -S "$tmp/tmux.sock" kill-server 2>/dev/null; rm -rf "$tmp"' EXIT

    # tm ARGS...: tmux on a private server (its socket in $tmp, no user
    # configuration).
    tm() { tmux -S "$tmp/tmux.sock" -f /dev/null "$@"; }

    # slow_batch: a batch of about 4 s (7 photos of 0.5 to 3.5 s, one
    # unreachable); the suite's 2 s request time-out is raised meanwhile.
    set_conf moverz_batch.request_timeout 10s
    slow_batch() {
        local i
        { for i in 1 2 3 4 5 6 7; do echo "$u/tty$i.jpg?items=box:1:0.1&latency_ms=$((i * 500))&s=$1"; done
          echo "https://gone.invalid/tty.jpg"; } | "$CLI" submit --project "$project" --user cli-user
    }

    # tty_watch NAME COLUMNS BATCH ENV...: start "watch BATCH" in a new
    # detached session NAME of COLUMNS x 24, with ENV (env(1) arguments).
    tty_watch() {
        local name=$1 cols=$2 b=$3
        shift 3
        tm new-session -d -s "$name" -x "$cols" -y 24 \
            "env $* '$CLI' watch $b; echo \"watch exited \$?\"; sleep 300"
    }

    # tty_follow NAME...: until watch exits in all the sessions (60 s at most),
    # the screens seen every 0.2 s, one after another, in $tmp/NAME.seen.
    tty_follow() {
        local name i left
        for i in $(seq 300); do
            left=0
            for name in "$@"; do
                tm capture-pane -p -t "$name" >>"$tmp/$name.seen"
                grep -q '^watch exited' "$tmp/$name.seen" || left=1
            done
            [ "$left" = 0 ] && break
            sleep 0.2
        done
    }

    # tty_check NAME COLUMNS BATCH: the assertions on the final screen.
    tty_check() {
        local name=$1 cols=$2 b=$3 screen bars
        # the whole history; the lines the terminal wrapped joined again
        screen=$(tm capture-pane -p -J -S - -t "$name" | sed 's/ *$//')
        echo "$screen" | grep -v '^$' | sed "s/^/# $cols| /"
        is "$(awk -v w="$cols" 'length($0) > w { n++ } END { print n + 0 }' <<<"$screen")" 0 \
           "$cols columns: no line is longer than the terminal"
        bars=$(grep -E '^\[[#.]+\] +[0-9]+%' <<<"$screen")
        is "$(grep -c . <<<"$bars")" 1 "$cols columns: the bar line appears once (no wrapped or leftover copy)"
        ok "$([ "${#bars}" -le $((cols - 1)) ] && echo 0 || echo 1)" \
           "$cols columns: the bar line takes at most $((cols - 1)) columns (${#bars})"
        ok "$(grep -qE '^\[#+\] 100%  7/8 done, 1 failed  [0-9.]+ photos/s  PARTIAL$' <<<"$bars"; echo $?)" \
           "$cols columns: its final state, rate and status, with no fragment of a longer line after it"
        has "$screen" "Batch $b: PARTIAL, 7 of 8 photos analysed," "$cols columns: then the summary"
        has "$screen" "watch exited 2" "$cols columns: watch exits 2 (PARTIAL)"
        ok "$(grep -qE '^\[[#.]+\] +[0-9]+%.*  ETA [0-9]+[smh]' "$tmp/$name.seen"; echo $?)" \
           "$cols columns: an ETA while it runs"
    }

    tty80=$(slow_batch 80-$$)
    tty120=$(slow_batch 120-$$)
    batches+=("$tty80" "$tty120")
    tty_watch w80 80 "$tty80" -u NO_COLOR
    tty_watch w120 120 "$tty120" NO_COLOR=1
    tty_follow w80 w120
    tty_check w80 80 "$tty80"
    tty_check w120 120 "$tty120"
    ok "$(tm capture-pane -p -e -S - -t w80 | grep -qE $'\e\\[[0-9;]*m'; echo $?)" \
       "a terminal without NO_COLOR: colours (ESC[...m)"
    ok "$(tm capture-pane -p -e -S - -t w120 | grep -qE $'\e\\[[0-9;]*m' && echo 1 || echo 0)" \
       "NO_COLOR=1: no colour sequence"
    tm kill-server 2>/dev/null
    reset_conf moverz_batch.request_timeout
fi

# --- status ----------------------------------------------------------------
cli status "$live"
is "$rc" 0 "status: exit 0"
is "$(jq -r '.batchId + " " + .status + " " + (.counts.total | tostring)' <<<"$out")" "$live PARTIAL 5" \
   "status prints batch_progress as JSON"
ok "$([ "$(wc -l <<<"$out")" -gt 10 ] && echo 0 || echo 1)" "pretty-printed"
cli status 00000000-0000-0000-0000-000000000000
is "$rc:$err" "1:moverz-batch: error: batch_id 00000000-0000-0000-0000-000000000000: no such batch" \
   "status of an unknown batch: exit 1 with the server's message"

# --- top -----------------------------------------------------------------------
cli top --once
is "$rc" 0 "top --once: exit 0"
for word in pending retry-waiting "in flight" "failed (last hour)" "AI calls, last minute" "calls/s" Workers; do
    has "$out" "$word" "top shows $word"
done
wpid=$(q "SELECT pid FROM pg_stat_activity WHERE backend_type LIKE 'moverz_batch photo%' ORDER BY pid LIMIT 1")
has "$out" " $wpid " "top lists the photo workers (pid $wpid)"
timeout 20 "$CLI" top >"$tmp/top.out" 2>&1
is "$?" 0 "top with stdout not a terminal prints once and exits"

for b in "${batches[@]}"; do wait_finished "$b" 30; done
done_testing
