#!/usr/bin/env bash
# bench/summarize.sh RAW.jsonl META.json PREFIX: medians and min-max of the
# samples of bench/run.sh, compared with the bar of issue #6; writes
# PREFIX.json and PREFIX.md and prints the markdown.
#
# A run whose correctness check failed is not a figure: it is counted in the
# "failed runs" column and left out of the medians.
set -euo pipefail
raw=$1 meta=$2 prefix=$3

jq -s --slurpfile meta "$meta" '
def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
            else (.[length / 2 - 1] + .[length / 2]) / 2 end;
def r3: if . == null then null else . * 1000 | round / 1000 end;
# the bar of issue #6: [op, value, text]
def bar($f; $best_small; $small):
    if   $f == "\($small)_photos" then ["ge", 4000, ">= 4,000 photos/s"]
    elif $f | test("^[0-9]+_photos$") then ["ge", $best_small, ">= the best \($small)-photo median (\($best_small | round) photos/s)"]
    elif $f | test("^[0-9]+_photos_[0-9]+_inflight_2500ms$") then ["le", 1.02, "<= 1.02 x ideal"]
    elif $f | test("^[0-9]+_photos_[0-9]+_inflight$") then ["le", 1.05, "<= 1.05 x ideal"]
    elif $f == "create_3_photos_p50" then ["le", 1, "<= 1 ms"]
    elif $f == "create_1000_photos_p50" then ["le", 25, "<= 25 ms"]
    elif $f == "first_ai_request_after_commit_p50" then ["le", 5, "<= 5 ms"]
    elif $f | test("^inventory_ready_after_last_result") then ["le", 20, "<= 20 ms"]
    elif $f == "batch_progress_1000_photos_p50" then ["le", 5, "<= 5 ms"]
    elif $f | test("^worker_private_rss_peak") then ["le", 64, "<= 64 MB"]
    else null end;
. as $all
| ($meta[0].a_small) as $small
| ([$all[] | select(.scenario == "A" and .figure == "\($small)_photos" and .ok)] | group_by(.config)
   | map(map(.value) | median) | max // 0) as $best_small
| [$all | group_by([.scenario, .figure, .config])[]
   | . as $g
   | ($g[0].figure) as $f
   | ([$g[] | select(.ok) | .value | select(. != null)]) as $v
   | bar($f; $best_small; $small) as $b
   | ($v | median) as $med
   | {scenario: $g[0].scenario, figure: $f, config: $g[0].config, unit: $g[0].unit,
      median: ($med | r3), min: ($v | min | r3), max: ($v | max | r3),
      runs: ($g | length), failed_runs: ([$g[] | select(.ok | not)] | length),
      failures: ([$g[] | select(.ok | not) | .check] | unique),
      bar: (if $b then $b[2] else null end),
      pass: (if $b == null or $med == null then null
             elif $b[0] == "ge" then $med >= $b[1] else $med <= $b[1] end),
      others_cpu_pct: ([$g[] | .extra.foreign_cpu_pct? | select(. != null)] | median),
      extra: ([$g[] | .extra | select(. != null)] | if length == 0 then null else . end)}]
| {meta: $meta[0], best_a_config: ([.[] | select(.scenario == "A" and .figure == "\($meta[0].a_small)_photos")]
                                    | max_by(.median) | .config), figures: .}
' "$raw" >"$prefix.json"

jq -r '
def fmt: if . == null then "-" elif (. | fabs) >= 100 then (. | round | tostring) else (. * 100 | round / 100 | tostring) end;
.meta as $m
| "# moverz_batch benchmark results (\($m.mode), \($m.runs) run(s) per scenario, \($m.duration_s) s)",
  "",
  "Machine: \($m.machine.cores) cores (\($m.machine.cpu)), \($m.machine.memory) RAM, PostgreSQL \($m.machine.postgresql).",
  "Settings: \($m.machine.settings).",
  "Code: \($m.code)\(if $m.code_at_end != $m.code then " (at the end: \($m.code_at_end): the sources changed during the run)" else "" end).",
  (if $m.patch != "" then "", "**What-if run**: the SQL patch `\($m.patch)` was applied to the bench cluster (not to the sources)." else empty end),
  "",
  "Load average (1/5/15 min) at start / end: \($m.loadavg_start_end). The last column is the share of the whole machine (all cores) used by processes other than this benchmark'"'"'s cluster and fake AI service during the runs: above a few percent, the figures are disturbed.",
  "",
  "Best A configuration (\($m.a_small) photos): **\(.best_a_config)**.",
  "",
  "| scen. | figure | config | median | min–max | unit | bar | verdict | other processes CPU % |",
  "|---|---|---|---:|---:|---|---|---|---:|",
  (.figures | sort_by(.scenario, .figure, .config)[]
   | "| \(.scenario) | \(.figure) | \(.config) | \(.median | fmt) | \(.min | fmt)–\(.max | fmt) | \(.unit) | \(.bar // "") | \(
        if .failed_runs > 0 then "**FAILED \(.failed_runs)/\(.runs) run(s)**: \(.failures | join("; ") | .[0:120])"
        elif .pass == true then "meets" elif .pass == false then "**misses**" else "" end) | \(.others_cpu_pct | fmt) |")
' "$prefix.json" >"$prefix.md"
cat "$prefix.md"
