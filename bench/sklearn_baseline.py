#!/usr/bin/env python3
"""scikit-learn side of benchmark item 5 (issue 7).

Fits scikit-learn's counterparts of our learners on one generated shard (the same CSV that
`ensemble-node offline` fits in bench/run.sh) and prints one JSON line with the fit times.

Same protocol as ours: a 70 / 30 split of the shard, the fit on the 70 % (timed: `fit` only, on
arrays already in memory, as our `train_ms` times `Pipeline::fit` on a parsed table), the RMSE on
the 30 % to show the models are comparable.

    python bench/sklearn_baseline.py SHARD.csv [--label y] [--valid-fraction 0.3] [--seed 42]
        [--hgb-rounds 400] [--only d3,d8,hgb]
"""

import argparse
import json
import os
import platform
import time

import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeRegressor


def rmse(y, p):
    return float(np.sqrt(np.mean((y - p) ** 2)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--label", default="y")
    ap.add_argument("--valid-fraction", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--hgb-rounds", type=int, default=400)
    ap.add_argument("--only", default="d3,d8,hgb")
    args = ap.parse_args()

    t0 = time.perf_counter()
    df = pd.read_csv(args.csv)
    load_s = time.perf_counter() - t0
    y = df.pop(args.label).to_numpy(dtype=np.float64)
    x = df.to_numpy(dtype=np.float64)
    x_tr, x_va, y_tr, y_va = train_test_split(
        x, y, test_size=args.valid_fraction, random_state=args.seed
    )

    models = {
        # The seed's weak learner: depth 3, at most 10 leaves (depth 3 allows 8 anyway).
        "d3": DecisionTreeRegressor(max_depth=3, max_leaf_nodes=10, random_state=args.seed),
        "d8": DecisionTreeRegressor(max_depth=8, random_state=args.seed),
        # Our default learner's settings where scikit-learn has them: 400 rounds, shrinkage 0.05,
        # depth 4, L2 1 on leaves, 255 bins (+1 for missing), no early stopping. Ours also
        # subsamples rows (0.8) and features (0.5 per round); HGB grows from all rows.
        "hgb": HistGradientBoostingRegressor(
            max_iter=args.hgb_rounds,
            learning_rate=0.05,
            max_depth=4,
            max_leaf_nodes=None,
            min_samples_leaf=3,
            l2_regularization=1.0,
            max_bins=255,
            early_stopping=False,
            random_state=args.seed,
        ),
    }
    out = {
        "ok": True,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "rows_train": int(len(y_tr)),
        "rows_valid": int(len(y_va)),
        "features": int(x.shape[1]),
        "load_s": round(load_s, 3),
    }
    for name in args.only.split(","):
        model = models[name]
        t0 = time.perf_counter()
        model.fit(x_tr, y_tr)
        fit_s = time.perf_counter() - t0
        out[name] = {"fit_ms": round(fit_s * 1000), "rmse_valid": rmse(y_va, model.predict(x_va))}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
