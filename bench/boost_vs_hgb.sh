#!/usr/bin/env bash
# Boosting speed, side by side in one run: our `boosted` learner and scikit-learn's
# HistGradientBoostingRegressor, 400 rounds, early stopping off, on the 70 % training part of one
# generated 400,000 × 15 shard (280,000 rows), with the same number of threads.
#
#   bench/boost_vs_hgb.sh [THREADS...]      (default: 1 2)
#
# Ours: `train_ms` of `ensemble-node offline` (Pipeline::fit: preprocessing + boosting, on the
# parsed table). scikit-learn: `fit` on arrays already in memory (bench/sklearn_baseline.py),
# OMP_NUM_THREADS = THREADS. Needs a Python with scikit-learn and pandas: PYTHON=/path/to/python.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
THREADS=("${@:-1}")
[ $# -eq 0 ] && THREADS=(1 2)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet
bin=target/release/ensemble-node
"$bin" gen --rows 400000 --features 15 --seed 42 --out "$work/shard.csv" > /dev/null
echo "| threads | ours: boosted, 400 rounds (ms) | HistGradientBoosting, 400 rounds (ms) | HGB / ours | RMSE ours / HGB |"
echo "|---|---|---|---|---|"
for t in "${THREADS[@]}"; do
    printf '[model]\nkind = "boosted"\nn_rounds = 400\nn_iter_no_change = 0\nthreads = %d\n' "$t" \
        > "$work/boost.toml"
    ours=$("$bin" offline --config "$work/boost.toml" --label y --task regression \
        --seed 42 "$work/shard.csv")
    theirs=$(OMP_NUM_THREADS=$t "$PYTHON" bench/sklearn_baseline.py "$work/shard.csv" \
        --only hgb --seed 42)
    OURS="$ours" THEIRS="$theirs" T="$t" "$PYTHON" - <<'PY'
import json, os
o = json.loads(os.environ["OURS"]); s = json.loads(os.environ["THEIRS"])
ms = o["nodes"][0]["train_ms"]; hgb = s["hgb"]["fit_ms"]
print(f"| {os.environ['T']} | {ms:,} | {hgb:,} | {hgb / ms:.2f}× | "
      f"{o['ensemble']['rmse']:.3f} / {s['hgb']['rmse_valid']:.3f} |")
PY
done
