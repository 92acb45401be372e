#!/usr/bin/env bash
# Regenerates BENCHMARKS.md, bench-results/raw.csv and bench-results/ratios.svg:
# the criterion micro benches (benches/compare.rs), then the runner, which
# builds the workload and pairs_probe binaries once per allocator, runs every
# workload, counts instructions per malloc/free pair under cachegrind and
# writes the report.
#
#   bench-suite/run.sh              full run (10 repetitions)
#   bench-suite/run.sh --reps 3     fewer repetitions (the report states them)
#   bench-suite/run.sh --quick      short pass (CI): 1 repetition, small scale,
#                                   memcg/system/jemalloc/mimalloc, no criterion;
#                                   then a tiny group-scale pass; report under
#                                   <target>/bench-quick/
#   bench-suite/run.sh --reuse      criterion again, then the report with the
#                                   last campaign's workload and timed-pairs
#                                   figures (bench-results/*.csv); the report
#                                   says so
#   bench-suite/run.sh --scale      group scale only: memcg (every tenant in a
#                                   group) beside jemalloc (the same work
#                                   without groups), each case a process of
#                                   its own, medians of 5 repetitions
#                                   (--reps N); rewrites only the "Group
#                                   scale" section of BENCHMARKS.md and
#                                   bench-suite/results/scale.csv, prints the
#                                   table (--scale --quick: the tiny pass
#                                   alone, under <target>/bench-quick/)
#
# `--scale` followed by a number is the runner's workload scale factor
# (`--scale 0.5`), not the group-scale pass. Other arguments are passed to
# the runner (see `runner --help`; with --scale, `runner --group-scale
# --help`). The full run keeps the "Group scale" section it finds. Honours
# CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

quick=0
group_scale=0
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick)
            quick=1
            args+=("$1")
            ;;
        --scale)
            if [[ "${2:-}" =~ ^[0-9]*\.?[0-9]+$ ]]; then
                args+=("$1" "$2")
                shift
            else
                group_scale=1
            fi
            ;;
        *) args+=("$1") ;;
    esac
    shift
done

runner() {
    cargo run --release --quiet -p memcg-bench --bin runner -- "$@"
}

if [ "$group_scale" = 1 ]; then
    runner --group-scale ${args[@]+"${args[@]}"}
    exit
fi
if [ "$quick" = 0 ]; then
    cargo bench -p memcg-bench --bench compare
fi
runner ${args[@]+"${args[@]}"}
if [ "$quick" = 1 ]; then
    runner --group-scale --quick
fi
