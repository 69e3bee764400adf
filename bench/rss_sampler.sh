#!/usr/bin/env bash
# bench/rss_sampler.sh OUT PID...: sample the memory of processes PID every
# 50 ms until killed; OUT then holds the peaks over all of them, in kB:
#   peak VmRSS, peak RssAnon (private memory), VmHWM, peak RssShmem
# (VmRSS and VmHWM count the shared buffers the process touched).
out=$1; shift
rss=0 anon=0 hwm=0 shm=0
write() { echo "$rss $anon $hwm $shm" >"$out"; }
trap 'write; exit 0' TERM INT
write
while :; do
    for pid in "$@"; do
        [ -r "/proc/$pid/status" ] || continue
        read -r a b c d < <(awk '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 } /^VmHWM:/ { h = $2 }
                                  /^RssShmem:/ { s = $2 } END { print r + 0, a + 0, h + 0, s + 0 }' "/proc/$pid/status")
        [ "$a" -gt "$rss" ] && rss=$a
        [ "$b" -gt "$anon" ] && anon=$b
        [ "$c" -gt "$hwm" ] && hwm=$c
        [ "$d" -gt "$shm" ] && shm=$d
    done
    write
    sleep 0.05
done
