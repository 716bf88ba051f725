#!/usr/bin/env bash
# The sweep's cost estimate against the wall time it takes: for each spec,
# `ddpm-lab sweep SPEC --dry-run --json` (estimated_wall_s, training and
# evaluation), then the sweep itself in a fresh results folder (the evaluator
# cache included, so a first-use evaluator training is in both), timed.
# Usage: benches/estimate_check.sh SPEC... ; prints a Markdown table row per spec.
set -euo pipefail
exe=${DDPM_LAB:-./target/release/ddpm-lab}
out=${ESTIMATE_DIR:-$(mktemp -d)}
mkdir -p "$out"
echo "| spec | jobs | estimate (train + eval) | actual | actual / estimate |"
echo "| --- | --- | --- | --- | --- |"
for spec in "$@"; do
    name=$(basename "$spec" .toml)
    results="$out/$name"
    plan=$("$exe" sweep "$spec" --results "$results" --devices cpu --dry-run --json)
    read -r est eval jobs < <(python3 -c '
import json, sys
p = json.loads(sys.stdin.read())
print(p["estimated_wall_s"], sum(j["eval_est_s"] for j in p["jobs"]), len(p["jobs"]))' <<<"$plan")
    start=$(date +%s.%N)
    rc=0
    "$exe" sweep "$spec" --results "$results" --devices cpu --quiet --no-report >/dev/null 2>"$results.log" || rc=$?
    end=$(date +%s.%N)
    if [ "$rc" != 0 ]; then
        echo "| \`$name\` | $jobs | failed (exit $rc, see $results.log) | | |"
        continue
    fi
    python3 -c '
import sys
name, jobs, est, ev, a, b = sys.argv[1:]
actual = float(b) - float(a)
est, ev = float(est), float(ev)
print(f"| `{name}` | {jobs} | {est:.0f} s ({est - ev:.0f} + {ev:.0f}) | {actual:.0f} s | {actual / est:.2f} |")' \
        "$name" "$jobs" "$est" "$eval" "$start" "$end"
done
