#!/usr/bin/env bash
# bench/rss_sampler.sh OUT PID...: sample the memory of processes PID every
# 50 ms until killed; OUT then holds the peaks over all of them, in kB:
#   peak VmRSS, peak RssAnon (private memory), VmHWM, peak RssShmem
# (VmRSS and VmHWM count the shared buffers the process touched).
# It samples while B runs, on the same two cores: so it forks nothing per
# sample (bash builtins only; the 50 ms wait is a read timeout on a pipe
# that never gets data), or it would slow what it measures.
out=$1; shift
rss=0 anon=0 hwm=0 shm=0
write() { echo "$rss $anon $hwm $shm" >"$out"; }
trap 'write; exit 0' TERM INT
exec {tick}<> <(:)
write
while :; do
    for pid in "$@"; do
        [ -r "/proc/$pid/status" ] || continue
        while read -r key val _; do
            case $key in
                VmRSS:) [ "$val" -gt "$rss" ] && rss=$val ;;
                RssAnon:) [ "$val" -gt "$anon" ] && anon=$val ;;
                VmHWM:) [ "$val" -gt "$hwm" ] && hwm=$val ;;
                RssShmem:) [ "$val" -gt "$shm" ] && shm=$val ;;
            esac
        done <"/proc/$pid/status"
    done
    write
    read -r -t 0.05 -u "$tick" _ || :
done
