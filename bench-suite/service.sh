#!/usr/bin/env bash
# The service comparison: builds the tenant service (examples/service, memcg with a group
# per tenant), its jemalloc twin (examples/service_jemalloc, no groups) and the load
# generator (examples/service_load), then runs `service_load --compare REPS`: memcg with
# groups, memcg --no-groups and jemalloc, each with and without the runaway tenant, REPS
# times in rotated order, one server process per run. Prints every run's `summary` line,
# then medians, ratios and the acceptance bars; keeps a copy under
# $CARGO_TARGET_DIR/service-bench/.
#
# Usage: bench-suite/service.sh [--reps N] [--seconds S] [other service_load flags]
#        (defaults: 3 repetitions of 20 s each, 200 tenants, 2 server workers)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

reps=3
seconds=20
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    *) extra+=("$1"); shift ;;
  esac
done

cargo build --release --example service --example service_jemalloc --example service_load

target="${CARGO_TARGET_DIR:-target}"
out="$target/service-bench"
mkdir -p "$out"
echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cpus, $(date -u +%FT%TZ)" | tee "$out/compare.txt"
"$target/release/examples/service_load" --compare "$reps" --seconds "$seconds" "${extra[@]}" \
  2>"$out/stderr.log" | tee -a "$out/compare.txt"
