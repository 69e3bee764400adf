#!/usr/bin/env bash
# 47_cli_uploads: moverz-batch submit with local photo files (issue #21).
# Image files, told by their magic numbers and not their names, are
# uploaded; a list of URLs beside them stays a list; the batch's photos are
# in the order of the command line.  Both ways of sending the bytes: HTTP
# PUT through the real nginx + PostgREST (--api-url, $MOVERZ_API_URL, an
# absolute moverz_batch.upload_base_url) and over the database connection
# (store_upload) without; a progress line per file; the fake AI receives
# each file's bytes.  Refusals: a file over max_upload_bytes (nothing
# created), a missing file, an HTTP error answer with the API's message and
# hint (or its text, not JSON), an unreachable API: exit 1, a clear message,
# no batch, no token printed.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/../http/lib_http.sh"
CLI=${MOVERZ_BATCH_CLI:-$MB_ROOT/tools/moverz-batch}
W=$(mktemp -d /tmp/mb_cli_uploads.XXXXXX)
chmod 755 "$W"
cleanup() {
    reset_conf moverz_batch.upload_base_url
    reset_conf moverz_batch.max_upload_bytes
    mb_http_stop
    rm -rf "$W"
}
trap cleanup EXIT
mb_http_install || { echo "Bail out! cannot install nginx and PostgREST"; exit 1; }
mb_http_start || { echo "Bail out! cannot start nginx and PostgREST"; exit 1; }
[ -x "$CLI" ] || make -s -C "$MB_ROOT" tools/moverz-batch >/dev/null
unset MOVERZ_API_URL

user="cli-uploads-$$-$RANDOM"
project=$(new_project "$user")
png() { node "$MB_ROOT/test/tools/make_png.js" "$W/$1" "${@:2}"; }
sha() { sha256sum "$W/$1" | cut -d' ' -f1; }
size() { stat -c %s "$W/$1"; }
# (cd "$W": the files are named as the user would name them)
cli() {
    (cd "$W" && "$CLI" "$@") >"$W/out" 2>"$W/err"
    rc=$? out=$(<"$W/out") err=$(<"$W/err")
    cat "$W/err" >>"$W/all.err"
}
has() { grep -qF -- "$2" <<<"$1"; ok $? "$3"; }
puts() { grep -cE '"PUT /[^"]*" 200 .*"moverz-batch/' "$MB_HTTP_DIR/access.log"; }
counts() { q "SELECT (SELECT count(*) FROM moverz_batch.batches WHERE user_id = '$user') || '/' ||
                     (SELECT count(*) FROM moverz_batch.projects WHERE user_id = '$user') || '/' ||
                     (SELECT count(*) FROM moverz_batch.uploads WHERE user_id = '$user')"; }
# sent: the SHA-256 of the images the fake AI received, sorted
sent() { curl -s "$FAKE_AI_URL/stats/images" | jq -r '[.images[].sha256] | sort | join(",")'; }
shas() { for f in "$@"; do sha "$f"; done | sort | paste -sd,; }
# photos BATCH: position:filename:content-type-or-url of its photos
photos() {
    q "SELECT string_agg(p.position || ':' || p.filename || ':' || coalesce(u.content_type, 'url'), ' '
                         ORDER BY p.position)
         FROM moverz_batch.photos p LEFT JOIN moverz_batch.uploads u ON u.id = p.upload_id
        WHERE p.batch_id = '$1'"
}

# three images: a PNG, a PNG named .jpg (the magic numbers decide), a JPEG
png salon.png 64 48 101
png cuisine.jpg 40 40 102 20000
{ printf '\xff\xd8\xff\xe0\x00\x10JFIF\x00'; head -c 3000 /dev/urandom; } >"$W/bureau.jpeg"
printf '%s\n' "# the garage, by URL" "https://img.example.com/garage.jpg?items=box:3:0.1 garage" >"$W/urls.txt"

# --- HTTP PUT through nginx (--api-url) --------------------------------------
curl -s -X POST "$FAKE_AI_URL/reset" >/dev/null
puts0=$(puts)
cli submit --user "$user" --project "$project" --api-url "$MB_API_URL/" salon.png urls.txt cuisine.jpg bureau.jpeg
b1=$out
is "$rc:$(grep -cE '^[0-9a-f-]{36}$' <<<"$out")" 0:1 "3 image files and a list of URLs: exit 0, the batch id on stdout"
is "$err" "moverz-batch: uploading 3 files by HTTP PUT to $MB_API_URL
moverz-batch: uploaded 1/3 salon.png $(size salon.png) bytes
moverz-batch: uploaded 2/3 cuisine.jpg 20 kB
moverz-batch: uploaded 3/3 bureau.jpeg 3 kB" "stderr: how the files go, then a line per file"
is "$(photos "$b1")" "0:salon.png:image/png 1:garage.jpg:url 2:cuisine.jpg:image/png 3:bureau.jpeg:image/jpeg" \
   "the photos in the order of the command line; types by magic numbers (cuisine.jpg is a PNG)"
is "$(($(puts) - puts0))" 3 "3 PUTs through nginx (its access log)"
is "$(q "SELECT string_agg(u.filename || ':' || u.size || ':' || u.checksum, ' ' ORDER BY u.filename)
           FROM moverz_batch.uploads u JOIN moverz_batch.photos p ON p.id = u.photo_id WHERE p.batch_id = '$b1'")" \
   "bureau.jpeg:$(size bureau.jpeg):$(sha bureau.jpeg) cuisine.jpg:$(size cuisine.jpg):$(sha cuisine.jpg) salon.png:$(size salon.png):$(sha salon.png)" \
   "the uploads hold each file's size and SHA-256"
wait_finished "$b1" 30
is "$(progress "$b1" '{status}'):$(progress "$b1" '{counts,completed}')" COMPLETED:4 "the batch COMPLETED, 4 photos"
is "$(sent)" "$(shas salon.png cuisine.jpg bureau.jpeg)" "the fake AI received each file's bytes (SHA-256 of each file)"
is "$(q "SELECT string_agg(room_type, ' ' ORDER BY position) FROM moverz_batch.photos WHERE batch_id = '$b1'")" \
   "living_room garage kitchen office" "the list's room type; the files' from their names (the fake AI)"

# --- over the database connection (store_upload) -------------------------------
png chambre.png 80 60 103
png salle_a_manger.png 48 48 104
png entree.png 32 32 105
curl -s -X POST "$FAKE_AI_URL/reset" >/dev/null
puts0=$(puts)
printf '%s\n' "https://img.example.com/lit.jpg?items=bed:1:2 bedroom" >"$W/stdin.txt"
(cd "$W" && "$CLI" submit --user "$user" --create-project "by SQL" chambre.png - salle_a_manger.png entree.png \
    <stdin.txt >out 2>err)
rc=$? out=$(<"$W/out") err=$(<"$W/err")
b2=$out
is "$rc" 0 "without --api-url: exit 0"
p2=$(sed -nE 's/^moverz-batch: created project ([0-9a-f-]{36})$/\1/p' <<<"$err")
is "$(q "SELECT project_id = '${p2:-00000000-0000-0000-0000-000000000000}' FROM moverz_batch.batches WHERE id = '$b2'")" t \
   "--create-project: the project created (once) and reported, the batch in it"
is "$(grep -v 'created project' <<<"$err")" "moverz-batch: uploading 3 files over the database connection (store_upload)
moverz-batch: uploaded 1/3 chambre.png $(size chambre.png) bytes
moverz-batch: uploaded 2/3 salle_a_manger.png $(size salle_a_manger.png) bytes
moverz-batch: uploaded 3/3 entree.png $(size entree.png) bytes" "stderr: over the database connection, a line per file"
is "$(($(puts) - puts0))" 0 "no PUT through nginx"
is "$(photos "$b2")" "0:chambre.png:image/png 1:lit.jpg:url 2:salle_a_manger.png:image/png 3:entree.png:image/png" \
   "\"-\": the list of standard input, in its place"
wait_finished "$b2" 30
is "$(progress "$b2" '{status}')" COMPLETED "the batch COMPLETED"
is "$(sent)" "$(shas chambre.png salle_a_manger.png entree.png)" "the fake AI received each file's bytes"
is "$(q "SELECT string_agg(room_type, ' ' ORDER BY position) FROM moverz_batch.photos WHERE batch_id = '$b2'")" \
   "bedroom bedroom dining_room hallway" "the rooms"

# --- $MOVERZ_API_URL, and an absolute upload_base_url ---------------------------
png garage1.png 20 20 106
png garage2.png 20 20 107
puts0=$(puts)
MOVERZ_API_URL=$MB_API_URL cli submit --user "$user" --project "$project" garage1.png
is "$rc:$(head -n 1 <<<"$err")" "0:moverz-batch: uploading 1 file by HTTP PUT to $MB_API_URL" "\$MOVERZ_API_URL: HTTP PUT"
set_conf moverz_batch.upload_base_url "$MB_API_URL"
cli submit --user "$user" --project "$project" garage2.png
is "$rc:$(head -n 1 <<<"$err")" "0:moverz-batch: uploading 1 file by HTTP PUT to $MB_API_URL" \
   "moverz_batch.upload_base_url set: HTTP PUT to its absolute URLs, no --api-url needed"
is "$(($(puts) - puts0))" 2 "2 PUTs through nginx"

# --- refusals: exit 1, a clear message, no batch ---------------------------------
png big.png 16 16 108 $((5 * 1024 * 1024 + 1))
before=$(counts)
cli submit --user "$user" --create-project never salon.png big.png
is "$rc" 1 "a file over max_upload_bytes: exit 1"
is "$(head -n 1 <<<"$err")" "moverz-batch: error: files[1].size 5242881 is more than the 5242880 bytes a photo may have" \
   "the server's message"
has "$err" "moverz-batch: detail: files[1] is the file big.png" "and which file it is"
is "$(counts)" "$before" "nothing created: no project, no batch, no upload"
cli submit --user "$user" --project "$project" salon.png missing.png
is "$rc:$err" '1:moverz-batch: error: could not open file "missing.png": No such file or directory' \
   "a missing file: exit 1, its name"
is "$(counts)" "$before" "nothing created"

set_conf moverz_batch.upload_base_url "$MB_API_URL/nowhere"
cli submit --user "$user" --project "$project" salon.png
is "$rc" 1 "an HTTP error answer: exit 1"
has "$err" "moverz-batch: error: could not upload \"salon.png\" to $MB_API_URL/nowhere/api/uploads/" "the file and the URL"
has "$err" ": HTTP 404: no such URL" "the status and the API's JSON message"
has "$err" "moverz-batch: detail: no batch was created" "no batch was created"
reset_conf moverz_batch.upload_base_url
# nginx refuses more than the max_upload_bytes it was started with
set_conf moverz_batch.max_upload_bytes 6MB
cli submit --user "$user" --project "$project" big.png --api-url "$MB_API_URL"
is "$rc" 1 "a file nginx refuses: exit 1"
has "$err" ": HTTP 413: the file is larger than 5242880 bytes (moverz_batch.max_upload_bytes)" "its JSON message"
has "$err" "moverz-batch: hint: Resize the photo, or ask for a new upload URL with its size." "and its hint"
reset_conf moverz_batch.max_upload_bytes
cli submit --user "$user" --project "$project" salon.png --api-url http://127.0.0.1:1
is "$rc" 1 "an unreachable API: exit 1"
has "$err" "to http://127.0.0.1:1/api/uploads/" "the URL it could not reach"
has "$err" "Couldn't connect to server" "libcurl's reason"
cli submit --user "$user" --project "$project" salon.png --api-url "$FAKE_AI_URL"
is "$rc:$(grep -c ': HTTP 404: not found$' <<<"$err")" 1:1 "an error answer that is not JSON: its text"
is "$(q "SELECT count(*) FROM moverz_batch.batches WHERE user_id = '$user'")" 4 "no batch created by the refusals"
ok "$(grep -q 'token=' "$W/all.err"; echo $((!$?)))" "no upload token was ever printed"
printf 'not an image\n' >"$W/scan.png"
cli submit --user "$user" --project "$project" scan.png
is "$rc" 1 "a file named .png that is no image: read as a list of URLs, refused"
has "$err" 'hint: "scan.png" is no JPEG, PNG, WebP or GIF image (by its first bytes): it was read as a list of photo URLs' \
   "the hint says why"
cli submit --user "$user" --project "$project" --api-url ftp://example.com salon.png
is "$rc:$(head -n 1 <<<"$err")" '1:moverz-batch: error: --api-url must be an http:// or https:// URL, not "ftp://example.com"' \
   "--api-url must be http(s)"
MOVERZ_API_URL=file:///etc cli submit --user "$user" --project "$project" salon.png
is "$rc:$err" '1:moverz-batch: error: MOVERZ_API_URL must be an http:// or https:// URL, not "file:///etc"' \
   "so must \$MOVERZ_API_URL"
done_testing
