#!/usr/bin/env bash
#
# bench/rounds.sh LOG INFLIGHT: the rounds of one latency-bound run, from
# the fake AI service's log (fake_ai --log LOG; one run in the log).
#
# The requests are taken in arrival order and cut into rounds of INFLIGHT.
# Prints, per round, its span (first to last arrival, ms) and, from the
# second on, the turn-around lag: the k-th request of the round arrived
# this long after the k-th answer of the round before (ms, p10 / p50 / p90
# / max).  With every slot refilled as its answer comes, a round leaves
# over the span of the answers before it, plus that lag: the last round's
# span is part of the wall time (BENCHMARKS.md, seventh session).
set -euo pipefail
[ $# -eq 2 ] && [ -r "$1" ] && [ "$2" -gt 0 ] 2>/dev/null ||
    { echo "usage: bench/rounds.sh FAKE_LOG INFLIGHT" >&2; exit 2; }
log=$1 inf=$2

# arrival times and answer times, each sorted, one per line
arrivals=$(awk 'NF == 5 { print $5 }' "$log" | sort -n)
answers=$(awk 'NF == 5 { print $1 }' "$log" | sort -n)
# per round: its span; per request of rounds 2..: round and lag, sorted
paste <(echo "$arrivals") <(echo "$answers") | awk -v inf="$inf" '
    { arr[NR - 1] = $1; ans[NR - 1] = $2 }
    END {
        for (r = 0; r < int(NR / inf); r++) {
            lo = r * inf
            printf "%d span %.1f\n", r + 1, (arr[lo + inf - 1] - arr[lo]) / 1000
            for (k = 0; r > 0 && k < inf; k++)
                printf "%d lag %.1f\n", r + 1, (arr[lo + k] - ans[lo - inf + k]) / 1000
        }
    }' | sort -k1,1n -k2,2r -k3,3n | awk -v inf="$inf" '
    function flush() {
        if (n > 0)
            line = line sprintf("   lag p10 %6.1f  p50 %6.1f  p90 %6.1f  max %6.1f ms",
                                lag[int(0.1 * (n - 1)) + 1], lag[int(0.5 * (n - 1)) + 1],
                                lag[int(0.9 * (n - 1)) + 1], lag[n])
        if (line != "") print line
        line = ""; n = 0
    }
    $1 != round { flush(); round = $1 }
    $2 == "span" { line = sprintf("round %2d: span %7.1f ms", $1, $3) }
    $2 == "lag" { lag[++n] = $3 }
    END { flush() }'
