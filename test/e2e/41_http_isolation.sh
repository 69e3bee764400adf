#!/usr/bin/env bash
# 41_http_isolation: identity and isolation over HTTP (nginx + PostgREST).
# User B reading, retrying, listing or writing into user A's batch and
# project gets 404 / empty lists, the very answer of an unknown id; no
# token, a token signed with the wrong secret, an expired or malformed
# token get 401; the anonymous role creates nothing; a token claiming a role
# the authenticator may not take gets 403; only the API schema is reachable.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/../http/lib_http.sh"
trap mb_http_stop EXIT
mb_http_install || { echo "Bail out! cannot install nginx and PostgREST"; exit 1; }
mb_http_start || { echo "Bail out! cannot start nginx and PostgREST"; exit 1; }

a="http-iso-a-$$-$RANDOM"
b="http-iso-b-$$-$RANDOM"
ta=$(mb_jwt "{\"role\": \"moverz_user\", \"sub\": \"$a\", \"exp\": $(($(date +%s) + 600))}")
tb=$(mb_jwt "{\"role\": \"moverz_user\", \"sub\": \"$b\", \"exp\": $(($(date +%s) + 600))}")
api=$MB_API_URL

# writes: the number of rows of users A and B in all the user tables.
writes() {
    q "SELECT (SELECT count(*) FROM moverz_batch.projects WHERE user_id IN ('$a', '$b'))
            + (SELECT count(*) FROM moverz_batch.batches WHERE user_id IN ('$a', '$b'))
            + (SELECT count(*) FROM moverz_batch.photos WHERE user_id IN ('$a', '$b'))"
}

mb_http_json POST "$api/api/projects" "$ta" '{"name": "A home"}'
pa=$(jq -r .project.id <<<"$HTTP_BODY")
mb_http_json POST "$api/api/batches" "$ta" '{"projectId": "'$pa'", "imageUrls": [
    {"filename": "a1.jpg", "url": "https://img.example.com/a1.jpg?items=sofa:1:1"},
    {"filename": "a2.jpg", "url": "https://down.invalid/a2.jpg"}]}'
is "$HTTP_STATUS" 202 "user A creates a batch"
ba=$(jq -r .batchId <<<"$HTTP_BODY")
wait_finished "$ba" 30
ok $? "A's batch finishes"
mb_http_json POST "$api/api/projects" "$tb" '{"name": "B home"}'
pb=$(jq -r .project.id <<<"$HTTP_BODY")
before=$(writes)

# B and A's batch: the same 404 as for an id that does not exist.
unknown=$(q "SELECT gen_random_uuid()")
mb_http GET "$api/api/batches/$unknown" "$tb"
unknown_answer="$HTTP_STATUS $HTTP_BODY"
is "$HTTP_STATUS:$HTTP_CODE" "404:PT404" "an unknown batch: 404"
mb_http GET "$api/api/batches/$ba" "$tb"
is "$HTTP_STATUS $HTTP_BODY" "$unknown_answer" "B reads A's batch: the very answer of an unknown id"
mb_http GET "$api/rpc/get_batch?id=$ba" "$tb"
is "$HTTP_STATUS $HTTP_BODY" "$unknown_answer" "the same through /rpc/get_batch"
mb_http POST "$api/api/batches/$ba/retry" "$tb"
is "$HTTP_STATUS $HTTP_BODY" "$unknown_answer" "B retries A's batch: 404, the same body"
is "$(q "SELECT string_agg(status::text, ',' ORDER BY position) FROM moverz_batch.photos WHERE batch_id = '$ba'")" \
   "DONE,ERROR" "A's photos untouched"
mb_http GET "$api/api/batches" "$tb"
is "$HTTP_STATUS:$(jq -c '[.total, .batches]' <<<"$HTTP_BODY")" "200:[0,[]]" "B lists batches: none"
mb_http GET "$api/api/batches?projectId=$pa" "$tb"
is "$(jq -c '[.total, .batches]' <<<"$HTTP_BODY")" "[0,[]]" "B lists the batches of A's project: none"
mb_http GET "$api/api/projects" "$tb"
is "$(jq -c '[.projects[].id]' <<<"$HTTP_BODY")" "[\"$pb\"]" "B lists projects: only B's"
mb_http_json POST "$api/api/batches" "$tb" '{"projectId": "'$pa'", "imageUrls": [{"filename": "x.jpg", "url": "https://x.example/x.jpg"}]}'
is "$HTTP_STATUS:$(jq -r .message <<<"$HTTP_BODY")" "404:projectId $pa: no such project for this user" \
   "B submits into A's project: 404"
mb_http GET "$api/api/batches/$ba" "$ta"
is "$HTTP_STATUS:$(jq -r .batch.batchId <<<"$HTTP_BODY")" "200:$ba" "A still reads its batch"

# A direct SQL session under the authenticated role sees only its rows.
direct() {
    psql -qAtX -v ON_ERROR_STOP=1 -c "SET ROLE moverz_user" \
         -c "SELECT set_config('request.jwt.claims', '{\"sub\": \"$1\"}', false)" -c "$2" | tail -n 1
}
is "$(direct "$b" "SELECT count(*) FROM moverz_batch.batches WHERE id = '$ba'")" 0 \
   "SQL as moverz_user, sub B: A's batch is invisible"
is "$(direct "$a" "SELECT count(*) FROM moverz_batch.photos WHERE batch_id = '$ba'")" 2 \
   "SQL as moverz_user, sub A: A's photos are visible"
is "$(direct "$b" "SELECT count(*) FROM moverz_batch.photos WHERE user_id <> '$b'")" 0 \
   "SQL as moverz_user, sub B: nobody else's photo"

# Tokens.
now=$(date +%s)
for case in "no token||PT401" \
            "wrong secret|$(mb_jwt "{\"role\": \"moverz_user\", \"sub\": \"$a\"}" "not-the-secret-not-the-secret-not-the-secret")|PGRST301" \
            "expired|$(mb_jwt "{\"role\": \"moverz_user\", \"sub\": \"$a\", \"exp\": $((now - 60))}")|PGRST301" \
            "malformed|not.a.jwt|PGRST301" \
            "alg none|$(printf '%s' '{"alg":"none","typ":"JWT"}' | _mb_b64url).$(printf '%s' "{\"role\":\"moverz_user\",\"sub\":\"$a\"}" | _mb_b64url).|PGRST301" \
            "role moverz_anon|$(mb_jwt "{\"role\": \"moverz_anon\", \"sub\": \"$a\", \"exp\": $((now + 600))}")|PT401" \
            "no role claim|$(mb_jwt "{\"sub\": \"$a\", \"exp\": $((now + 600))}")|PT401" \
            "no sub claim|$(mb_jwt '{"role": "moverz_user"}')|PT401" \
            "no exp claim, never expires|$(mb_jwt "{\"role\": \"moverz_user\", \"sub\": \"$a\"}")|PT401"; do
    IFS='|' read -r name tok code <<<"$case"
    mb_http GET "$api/api/batches/$ba" "$tok"
    is "$HTTP_STATUS:$HTTP_CODE" "401:${code:-42501}" "$name: GET a batch, 401"
    mb_http_json POST "$api/api/batches" "$tok" '{"projectId": "'$pa'", "imageUrls": [{"filename": "x.jpg", "url": "https://x.example/x.jpg"}]}'
    is "$HTTP_STATUS" 401 "$name: POST a batch, 401"
done
mb_http_json POST "$api/api/projects" "" '{"name": "anonymous"}'
is "$HTTP_STATUS" 401 "anonymous: POST a project, 401"
mb_http GET "$api/api/projects" ""
is "$HTTP_STATUS" 401 "anonymous: list projects, 401"
mb_http POST "$api/api/batches/$ba/retry" ""
is "$HTTP_STATUS" 401 "anonymous: retry, 401"
for role in moverz_app postgres moverz_authenticator; do
    mb_http GET "$api/api/batches/$ba" "$(mb_jwt "{\"role\": \"$role\", \"sub\": \"$a\"}")"
    is "$HTTP_STATUS:$HTTP_CODE" "403:42501" "a token claiming role $role: 403"
done
is "$(writes)" "$before" "nothing written by any refused request"

# PostgREST's API is on a unix socket only: nginx's limits cannot be gone round.
listening_tcp() {   # PID: how many TCP sockets the process listens on
    local inodes
    inodes=$(ls -l "/proc/$1/fd" 2>/dev/null | sed -n 's/.*socket:\[\([0-9]*\)\]/\1/p' | tr '\n' ' ')
    awk -v list=" $inodes " '$4 == "0A" && index(list, " " $10 " ") { n++ } END { print n + 0 }' \
        /proc/net/tcp /proc/net/tcp6
}
ok "$([ -S "$MB_PGRST_SOCKET" ] && echo 0 || echo 1)" "PostgREST's API listens on a unix socket"
is "$(listening_tcp "$MB_PGRST_PID")" 1 "... and on no TCP port but its admin server's (/live, /ready)"

# Only the API schema is reachable.
mb_http GET "$MB_PGRST_URL/projects" "$ta" --unix-socket "$MB_PGRST_SOCKET"
is "$HTTP_STATUS" 404 "no table over HTTP (GET /projects on PostgREST: 404)"
mb_http GET "$MB_PGRST_URL/batches?select=*" "$ta" -H "Accept-Profile: moverz_batch" --unix-socket "$MB_PGRST_SOCKET"
is "$HTTP_STATUS:$HTTP_CODE" "406:PGRST106" "schema moverz_batch not exposed: 406"
mb_http_json POST "$MB_PGRST_URL/rpc/purge" "$ta" '{}' --unix-socket "$MB_PGRST_SOCKET"
is "$HTTP_STATUS" 404 "no internal function over HTTP (/rpc/purge: 404)"
mb_http GET "$api/projects" "$ta"
is "$HTTP_STATUS:$HTTP_CODE" "404:HTTP404" "nginx serves no other URL"
done_testing
