#!/usr/bin/env bash
# test/lib.sh: shared shell helpers of the test driver, the demo and the
# benchmarks: dependencies, build, and a throwaway PostgreSQL cluster owned
# by an unprivileged user, on a unix socket and a private port.
#
# Source it, then: mb_install_deps; mb_build; mb_fake_start; mb_cluster_start;
# ...; mb_cluster_stop (the caller traps EXIT to always stop them).

MB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MB_PG_VERSION=${MB_PG_VERSION:-15}
MB_PGBIN=${MB_PGBIN:-/usr/lib/postgresql/$MB_PG_VERSION/bin}
MB_DEBS=(make gcc pkg-config curl ca-certificates "postgresql-$MB_PG_VERSION"
         "postgresql-server-dev-$MB_PG_VERSION" libcurl4-openssl-dev libmicrohttpd-dev
         libpq-dev libssl-dev jq nginx "postgresql-$MB_PG_VERSION-pgtap" pgtap nodejs)

# mb_as_root CMD...: run CMD as root (directly, or through sudo).
mb_as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# mb_install_deps [EXTRA_DEB...]: install the Debian packages that are missing.
mb_install_deps() {
    local missing=() p
    for p in "${MB_DEBS[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "== installing: ${missing[*]}"
    mb_as_root apt-get update -qq
    mb_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# mb_build: build and install the extension, the fake AI service and tools.
mb_build() {
    echo "== building"
    make -C "$MB_ROOT" -s PG_CONFIG="$MB_PGBIN/pg_config" >/dev/null
    mb_as_root make -C "$MB_ROOT" -s PG_CONFIG="$MB_PGBIN/pg_config" install >/dev/null
}

# mb_run_pg CMD...: run a PostgreSQL server command as the cluster owner.
mb_run_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# mb_cluster_start [SETTING...]: initdb a cluster in a new temp dir and start
# it with moverz_batch preloaded.  Each SETTING is a postgresql.conf line.
# Exports MB_DIR, PGHOST, PGPORT, PGUSER, PGDATABASE.
mb_cluster_start() {
    MB_DIR=$(mktemp -d /tmp/moverz_batch.XXXXXX)
    chmod 755 "$MB_DIR"
    [ "$(id -u)" = 0 ] && chown postgres: "$MB_DIR"
    export MB_DIR PGHOST=$MB_DIR PGPORT=${MB_PORT:-$((20000 + RANDOM % 20000))} PGUSER=postgres
    export PGDATABASE=postgres
    mb_run_pg "$MB_PGBIN/initdb" -D "$MB_DIR/data" -U postgres -A trust -E UTF8 \
        --locale=C.UTF-8 >"$MB_DIR/initdb.log" 2>&1 || { cat "$MB_DIR/initdb.log"; return 1; }
    {
        echo "port = $PGPORT"
        echo "listen_addresses = ''"
        echo "unix_socket_directories = '$MB_DIR'"
        echo "shared_preload_libraries = 'moverz_batch'"
        echo "fsync = off"
        echo "max_worker_processes = 32"
        echo "log_line_prefix = '%m [%p] %b '"
        local s
        for s in "$@"; do echo "$s"; done
    } | mb_run_pg tee -a "$MB_DIR/data/postgresql.conf" >/dev/null
    mb_run_pg "$MB_PGBIN/pg_ctl" -D "$MB_DIR/data" -l "$MB_DIR/server.log" -w -t 60 start >/dev/null \
        || { cat "$MB_DIR/server.log"; return 1; }
}

# mb_cluster_stop: stop the cluster (fast, then immediate) and remove it.
mb_cluster_stop() {
    [ -n "${MB_DIR:-}" ] && [ -d "$MB_DIR/data" ] || return 0
    mb_run_pg "$MB_PGBIN/pg_ctl" -D "$MB_DIR/data" -m fast -w -t 30 stop >/dev/null 2>&1 \
        || mb_run_pg "$MB_PGBIN/pg_ctl" -D "$MB_DIR/data" -m immediate -w stop >/dev/null 2>&1
    [ -n "${MB_KEEP:-}" ] || rm -rf "$MB_DIR"
}

# mb_pg_ctl ARGS...: pg_ctl on the throwaway cluster (restart, reload...).
mb_pg_ctl() {
    mb_run_pg "$MB_PGBIN/pg_ctl" -D "$MB_DIR/data" -l "$MB_DIR/server.log" "$@"
}

# mb_set SETTING VALUE: ALTER SYSTEM + reload.
mb_set() {
    psql -qAtX -c "ALTER SYSTEM SET $1 = '$2'" -c "SELECT pg_reload_conf()" >/dev/null
}

# mb_wait_for SECONDS SQL: poll until SQL returns 't'; fails on timeout.
mb_wait_for() {
    local deadline=$((SECONDS + $1))
    while [ $SECONDS -lt $deadline ]; do
        [ "$(psql -qAtX -c "$2" 2>/dev/null)" = t ] && return 0
        sleep 0.1
    done
    return 1
}

# mb_listen_start OUTFILE NAME CMD...: start a test server (its output in
# OUTFILE) that prints "NAME listening on 127.0.0.1:P" once it listens on the
# port the kernel picked (never one another process holds); wait until it
# does.  Sets LISTEN_PID and LISTEN_PORT.  Fails, printing OUTFILE, when it
# does not listen within 10 s.
mb_listen_start() {
    local out=$1 name=$2 i
    shift 2
    LISTEN_PORT=
    "$@" >"$out" 2>&1 &
    LISTEN_PID=$!
    for i in $(seq 100); do
        LISTEN_PORT=$(sed -nE "s/^$name listening on 127\.0\.0\.1:([0-9]+)\$/\1/p" "$out")
        [ -n "$LISTEN_PORT" ] && break
        kill -0 "$LISTEN_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$LISTEN_PORT" ]; then
        echo "$name did not start:" >&2
        sed 's/^/  /' "$out" >&2
        kill "$LISTEN_PID" 2>/dev/null
        return 1
    fi
}

# mb_fake_start OUTFILE [FAKE-OPTION...]: start the fake AI service (the
# moverz-ai contract, test/fake_ai).  Sets FAKE_AI_PID, FAKE_AI_PORT and
# FAKE_AI_URL.
mb_fake_start() {
    local out=$1
    shift
    mb_listen_start "$out" fake_ai "$MB_ROOT/test/fake_ai/fake_ai" --port 0 "$@" || return 1
    FAKE_AI_PID=$LISTEN_PID
    FAKE_AI_PORT=$LISTEN_PORT
    FAKE_AI_URL="http://127.0.0.1:$FAKE_AI_PORT"
    export FAKE_AI_PID FAKE_AI_PORT FAKE_AI_URL
}

# mb_provider_start OUTFILE API [OPTION...]: start the fake of a model API
# (anthropic or openai, test/fake_providers).  Sets PROVIDER_PID and
# PROVIDER_URL (the base URL moverz_batch.ai_service_url takes: with /v1
# for openai, as OpenAI's SDKs take it).
mb_provider_start() {
    local out=$1 api=$2
    shift 2
    mb_listen_start "$out" fake_provider node "$MB_ROOT/test/fake_providers/fake_provider.js" \
        --api "$api" --port 0 "$@" || return 1
    PROVIDER_PID=$LISTEN_PID
    PROVIDER_URL="http://127.0.0.1:$LISTEN_PORT"
    [ "$api" = openai ] && PROVIDER_URL="$PROVIDER_URL/v1"
    export PROVIDER_PID PROVIDER_URL
}
