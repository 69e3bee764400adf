#!/usr/bin/env bash
# The Debian package (debian/, pg_buildext): built with dpkg-buildpackage from
# a copy of the source tree (its git files: tracked, and new ones not ignored,
# so no build artifact leaks in), it holds exactly what "make install"
# installs, plus /usr/bin/moverz-batch; installed with dpkg -i, the client is
# on a Debian user's PATH and a cluster of its own, with the packaged library
# preloaded, creates the extension and its worker analyses a photo.
# Always: that cluster is stopped, the package removed, and the files of
# "make install" put back (package and make install write the same paths, and
# the rest of the suite runs from the make-installed extension).
source "$(dirname "$0")/common.sh"
PKG=postgresql-$MB_PG_VERSION-moverz-batch
VERSION=$(sed -nE 's/^EXTVERSION *= *([^ ]+).*/\1/p' "$MB_ROOT/Makefile")
EXT_DIR=usr/share/postgresql/$MB_PG_VERSION/extension
DEBIAN_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
W=$(mktemp -d /tmp/mb_package.XXXXXX)
PKG_DIR=

# restore: put back the files of "make install" (once dpkg has touched them).
RESTORED=yes
restore() {
    [ -n "$RESTORED" ] && return 0
    mb_as_root make -C "$MB_ROOT" -s PG_CONFIG="$MB_PGBIN/pg_config" install >"$W/reinstall.log" 2>&1 \
        || { echo "# make install (restoring the suite's extension) failed:"; sed 's/^/# /' "$W/reinstall.log"
             return 1; }
    RESTORED=yes
}
cleanup() {
    if [ -n "$PKG_DIR" ]; then
        MB_DIR=$PKG_DIR mb_cluster_stop
    fi
    if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q "ok installed"; then
        mb_as_root dpkg -r "$PKG" >"$W/remove.log" 2>&1 || sed 's/^/# /' "$W/remove.log"
        RESTORED=
    fi
    restore
    rm -rf "$W"
}
trap cleanup EXIT

# installed PKG: the Debian package PKG is installed.
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# apt_install PKG...: install them (postgresql-server-dev-all at the version
# of the installed postgresql-common, which it depends on exactly: never an
# upgrade of postgresql-common under the running clusters).
apt_install() {
    local p pkgs=()
    for p in "$@"; do
        if [ "$p" = postgresql-server-dev-all ] && installed postgresql-common; then
            p="$p=$(dpkg-query -W -f='${Version}' postgresql-common)"
        fi
        pkgs+=("$p")
    done
    echo "# installing: ${pkgs[*]}"
    mb_as_root apt-get update -qq >/dev/null 2>&1
    mb_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${pkgs[@]}" >"$W/apt.log" 2>&1 || { sed 's/^/# /' "$W/apt.log" | tail -n 20; return 1; }
}
# fail_with LOG DESCRIPTION: a failed test, the end of LOG as comments, stop.
fail_with() {
    ok 1 "$2"
    tail -n 30 "$1" | sed 's/^/# /'
    done_testing
    exit 1
}

# --- the build dependencies --------------------------------------------------
missing=()
for p in debhelper dpkg-dev fakeroot postgresql-server-dev-all; do
    installed "$p" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}" || fail_with /dev/null "build tools installed"

# --- a clean copy of the source tree ----------------------------------------
mkdir "$W/src"
git -C "$MB_ROOT" ls-files -z --cached --others --exclude-standard >"$W/files" 2>"$W/copy.log" \
    || fail_with "$W/copy.log" "the source tree's files are listed by git"
(cd "$MB_ROOT" && while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done <"$W/files" \
    | tar --null -T - -cf - | tar -C "$W/src" -xf -) 2>>"$W/copy.log"
ok $? "the source tree is copied ($(tr -cd '\0' <"$W/files" | wc -c) files)"
is "$(find "$W/src" \( -name '*.o' -o -name '*.so' -o -name '*.bc' -o -path '*/tools/moverz-batch' \
        -o -path "*/sql/moverz_batch--$VERSION.sql" \) | wc -l)" 0 "no build artifact in the copy"

deps=$(cd "$W/src" && dpkg-checkbuilddeps 2>&1 | sed -n 's/.*Unmet build dependencies: //p')
if [ -n "$deps" ]; then
    # "a (>= 1), b | c" -> a b: names only, first alternative
    apt_install $(echo "$deps" | sed -E 's/\([^)]*\)//g; s/\|[^,]*//g; s/,/ /g; s/:[a-z0-9]+//g')
fi
(cd "$W/src" && dpkg-checkbuilddeps) >"$W/deps.log" 2>&1 || fail_with "$W/deps.log" "Build-Depends satisfied"
ok 0 "Build-Depends satisfied"

# --- dpkg-buildpackage -------------------------------------------------------
(cd "$W/src" && dpkg-buildpackage -us -uc -b) >"$W/build.log" 2>&1 \
    || fail_with "$W/build.log" "dpkg-buildpackage -us -uc -b"
ok 0 "dpkg-buildpackage -us -uc -b"
deb=$W/${PKG}_${VERSION}_$(dpkg --print-architecture).deb
[ -f "$deb" ] || { ls "$W" | sed 's/^/# /'; fail_with /dev/null "the package is $(basename "$deb")"; }
ok 0 "the package is $(basename "$deb")"

# --- its contents: what make install installs, and the client on PATH -------
dpkg -c "$deb" | awk '{ print substr($1, 1, 1), substr($6, 3) ($7 == "->" ? " -> " $8 : "") }' \
    | grep -v '^d' | cut -c3- | sort >"$W/deb.list"
has() { grep -qxF "$1" "$W/deb.list"; }
has "usr/lib/postgresql/$MB_PG_VERSION/lib/moverz_batch.so"; ok $? "it holds moverz_batch.so"
has "$EXT_DIR/moverz_batch.control"; ok $? "it holds moverz_batch.control"
has "$EXT_DIR/moverz_batch--$VERSION.sql"; ok $? "it holds moverz_batch--$VERSION.sql"
scripts=$(cd "$W/src" && ls sql/released/moverz_batch--*.sql sql/moverz_batch--*--*.sql)
n=0 absent=
for s in $scripts; do
    n=$((n + 1))
    has "$EXT_DIR/$(basename "$s")" || absent="$absent $(basename "$s")"
done
is "${absent:-none}" none "it holds the $n released and update scripts"
has "usr/bin/moverz-batch -> ../lib/postgresql/$MB_PG_VERSION/bin/moverz-batch"
ok $? "usr/bin/moverz-batch links to the client in the PostgreSQL bindir"
has "usr/lib/postgresql/$MB_PG_VERSION/bin/moverz-batch"; ok $? "it holds the client"

make -C "$W/src" -s PG_CONFIG="$MB_PGBIN/pg_config" >"$W/make.log" 2>&1 \
    && make -C "$W/src" -s PG_CONFIG="$MB_PGBIN/pg_config" install DESTDIR="$W/destdir" >>"$W/make.log" 2>&1 \
    || fail_with "$W/make.log" "make install DESTDIR=..."
(cd "$W/destdir" && find . ! -type d | cut -c3- | sort) >"$W/make.list"
grep -vE '^usr/share/doc/|^usr/bin/moverz-batch ' "$W/deb.list" | diff -u "$W/make.list" - >"$W/contents.diff"
ok $? "the package's files (but its docs and the /usr/bin link) are exactly make install's ($(wc -l <"$W/make.list"))"
[ -s "$W/contents.diff" ] && sed 's/^/# /' "$W/contents.diff"

# --- dpkg -i -----------------------------------------------------------------
RESTORED=
mb_as_root dpkg -i "$deb" >"$W/dpkg.log" 2>&1 || fail_with "$W/dpkg.log" "dpkg -i $(basename "$deb")"
ok 0 "dpkg -i $(basename "$deb")"
is "$(dpkg-query -W -f='${Status} ${Version}' "$PKG")" "install ok installed $VERSION" "dpkg -s $PKG: installed, $VERSION"
is "$(PATH=$DEBIAN_PATH command -v moverz-batch)" /usr/bin/moverz-batch "moverz-batch is on a Debian user's PATH"
is "$(dpkg -S /usr/bin/moverz-batch 2>&1)" "$PKG: /usr/bin/moverz-batch" "/usr/bin/moverz-batch belongs to the package"
ver=$(PATH=$DEBIAN_PATH moverz-batch --version 2>&1)
is "${ver##* }" "$VERSION" "moverz-batch --version prints $VERSION ($ver)"

# --- a cluster of its own, from the packaged library --------------------------
SUITE_DIR=$MB_DIR SUITE_HOST=$PGHOST SUITE_PORT=$PGPORT
port=$SUITE_PORT
while [ "$port" = "$SUITE_PORT" ]; do port=$((20000 + RANDOM % 20000)); done
MB_PORT=$port mb_cluster_start \
    "moverz_batch.workers = 1" \
    "moverz_batch.ai_service_url = '${FAKE_AI_URL:-http://127.0.0.1:9}'" \
    "moverz_batch.request_timeout = '2s'" \
    "moverz_batch.retry_backoff = '200ms'" \
    "moverz_batch.poll_interval = '200ms'" >"$W/cluster.log" 2>&1
rc=$?
PKG_DIR=$MB_DIR PKG_PORT=$PGPORT
export MB_DIR=$SUITE_DIR PGHOST=$SUITE_HOST PGPORT=$SUITE_PORT
[ "$rc" = 0 ] || fail_with "$W/cluster.log" "a cluster with the packaged moverz_batch preloaded starts"
ok 0 "a cluster with the packaged moverz_batch preloaded starts (port $PKG_PORT)"
pq() { PGHOST=$PKG_DIR PGPORT=$PKG_PORT q "$1"; }
cli() { PATH=$DEBIAN_PATH moverz-batch -h "$PKG_DIR" -p "$PKG_PORT" -U postgres -d postgres "$@"; }

pq "CREATE EXTENSION moverz_batch" >/dev/null 2>"$W/create.log"
ok $? "CREATE EXTENSION moverz_batch"
[ -s "$W/create.log" ] && sed 's/^/# /' "$W/create.log"
is "$(pq "SELECT extversion FROM pg_extension WHERE extname = 'moverz_batch'")" "$VERSION" "extversion $VERSION"
is "$(pq "SELECT count(*) FROM pg_available_extension_versions WHERE name = 'moverz_batch'")" \
   "$(($(echo "$scripts" | grep -c released/) + 1))" "every released version is installable, and $VERSION"

batch=$(echo "https://img.example.com/a.jpg?items=sofa:1:2 living_room" \
        | cli submit --create-project="package test" --user=package-user 2>"$W/submit.log")
ok $? "moverz-batch submit: a batch of 1 photo ($batch)"
cli watch --timeout=30 "$batch" >"$W/watch.log" 2>&1
rc=$?
ok $rc "moverz-batch watch: COMPLETED, by the packaged worker"
[ $rc = 0 ] || tail -n 10 "$W/watch.log" | sed 's/^/# /'
is "$(pq "SELECT status || ' ' || attempts FROM moverz_batch.photos WHERE batch_id = '$batch'")" "DONE 1" \
   "the photo is DONE, in 1 attempt"
is "$(pq "SELECT moverz_batch.batch_progress('$batch') #>> '{inventorySummary,totalVolume}'")" 2 \
   "its inventory: 1 sofa, 2 m3"
is "$(pq "SELECT string_agg(kind || ':' || done, ',' ORDER BY kind, worker) FROM moverz_batch.worker_status")" \
   "inventory:1,photo:1,publisher:0" "its workers: 1 photo worker (moverz_batch.workers = 1), inventory, publisher"

MB_DIR=$PKG_DIR mb_cluster_stop
ok $? "the cluster is stopped"
PKG_DIR=

# --- the demo, from the package ---------------------------------------------
# README's main job with --installed: nothing built but the fake AI; its own
# cluster and fake (none of the suite's variables passed on)
(cd "$W/src" && env -u MB_PORT -u MB_DIR -u PGHOST -u PGPORT -u PGUSER -u PGDATABASE \
     -u FAKE_AI_PID -u FAKE_AI_PORT -u FAKE_AI_URL PATH="$DEBIAN_PATH" \
     timeout 300 tools/demo.sh --installed) >"$W/demo.log" 2>&1
rc=$?
ok $rc "tools/demo.sh --installed: the demo runs from the package"
[ $rc = 0 ] || tail -n 20 "$W/demo.log" | sed 's/^/# /'
grep -qF "== using the installed moverz_batch and /usr/bin/moverz-batch (moverz-batch (moverz_batch) $VERSION)" \
    "$W/demo.log"
ok $? "with the package's moverz-batch $VERSION"
is "$(grep -c '^moverz-batch: uploaded [1-3]/3 [a-z_]*\.png [0-9]* kB$' "$W/demo.log")" 3 \
   "its 3 photo files uploaded by the package's moverz-batch"
is "$(grep -c '^Batch .*: PARTIAL, 9 of 10 photos analysed, 1 failed$' "$W/demo.log")" 2 \
   "its batch: PARTIAL, 9 of 10 analysed (watch, then the summary)"
is "$(tail -n 14 "$W/demo.log" | grep -E '^ total +\|' | tr -s ' ')" " total | 52 | 36.5" \
   "the summary ends the output: the inventory's total, 52 items, 36.5 m3"
is "$(find /tmp -maxdepth 1 -name 'moverz_batch.*' -newer "$W/files" -user postgres 2>/dev/null | wc -l)" 0 \
   "the demo's cluster is gone"

# --- dpkg -r -----------------------------------------------------------------
mb_as_root dpkg -r "$PKG" >"$W/remove.log" 2>&1
ok $? "dpkg -r $PKG"
installed "$PKG"; ok $([ $? != 0 ] && echo 0 || echo 1) "the package is removed"
ok $([ ! -e /usr/bin/moverz-batch ] && [ ! -e "/$EXT_DIR/moverz_batch.control" ] && echo 0 || echo 1) \
   "its files are gone"
restore
ok $? "make install puts the suite's extension back"
is "$(q "SELECT count(*) > 0 FROM moverz_batch.worker_status WHERE kind = 'photo'")" t \
   "the suite's cluster still runs its workers"
done_testing
