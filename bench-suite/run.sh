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
#                                   report under <target>/bench-quick/
#   bench-suite/run.sh --reuse      criterion again, then the report with the
#                                   last campaign's workload and timed-pairs
#                                   figures (bench-results/*.csv); the report
#                                   says so
#
# Other arguments are passed to the runner (see `runner --help`). Honours
# CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

quick=0
for a in "$@"; do
    if [ "$a" = "--quick" ]; then quick=1; fi
done

if [ "$quick" = 0 ]; then
    cargo bench -p memcg-bench --bench compare
fi
cargo run --release --quiet -p memcg-bench --bin runner -- "$@"
