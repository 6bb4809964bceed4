#!/usr/bin/env bash
# The chaos test (tests/cluster/test_chaos.rs) at any length: six nodes under a steady predict
# load while a seeded schedule of faults runs (link cuts too when run as root with `ip`, each
# node then in its own network namespace). CI runs it for 20 s; this runs it longer.
#
#   tests/chaos.sh [--seconds 600] [--seed N]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=600
seed=""
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
done
export CHAOS_SECONDS="$seconds"
if [ -n "$seed" ]; then export CHAOS_SEED="$seed"; fi
exec cargo test --release --test cluster test_chaos -- --nocapture
