#!/usr/bin/env python3
"""scikit-learn side of benchmark item 5 (issue 7), and of the quality table (issue 14).

Quality (`--quality`): the `offline` protocol with scikit-learn learners, over several split
seeds. Each shard is split 70 / 30 with `train_test_split(random_state=seed)` (the same
fraction and seed numbers as `ensemble-node offline --seeds`, not the same rows: our split is a
ChaCha shuffle), one model per shard, the ensemble (mean, or majority vote) scored on the union of
the validation parts. Preprocessing as ours: median imputation, categoricals one-hot for linear
models and ordinal for trees, log1p target for regression labels ≥ 0 with skewness > 0.75.
Prints one JSON line: mean and sd (n − 1) per learner.

    python bench/sklearn_baseline.py --quality --label L --task regression|classification
        [--drop C,...] [--seeds 0-9] SHARD.csv...

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


def seeds_of(text):
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(x) for x in text.split(",")]


def quality(args):
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.ensemble import (GradientBoostingClassifier, GradientBoostingRegressor,
                                  HistGradientBoostingClassifier, HistGradientBoostingRegressor,
                                  RandomForestClassifier, RandomForestRegressor)
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
    from scipy.stats import skew

    frames = [pd.read_csv(p, na_values=["NA", "N/A", "NaN", "nan", "null"],
                          keep_default_na=False) for p in args.shards]
    drop = [c for c in args.drop.split(",") if c]
    reg = args.task == "regression"

    def prep(x, linear):
        num = [c for c in x.columns if pd.api.types.is_numeric_dtype(x[c])]
        cat = [c for c in x.columns if c not in num]
        if linear:
            return ColumnTransformer([
                ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num),
                ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                      OneHotEncoder(handle_unknown="ignore", max_categories=31)),
                 cat)])
        return ColumnTransformer([
            ("num", SimpleImputer(strategy="median"), num),
            ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                  OrdinalEncoder(handle_unknown="use_encoded_value",
                                                 unknown_value=-1)), cat)])

    def learners(seed):
        if reg:
            return {
                "Ridge": (lambda: Ridge(alpha=1.0), True),
                "RandomForest": (lambda: RandomForestRegressor(random_state=seed, n_jobs=1), False),
                "GradientBoosting": (lambda: GradientBoostingRegressor(random_state=seed), False),
                "HistGradientBoosting": (lambda: HistGradientBoostingRegressor(random_state=seed),
                                         False),
            }
        return {
            "LogisticRegression": (lambda: LogisticRegression(max_iter=5000), True),
            "RandomForest": (lambda: RandomForestClassifier(random_state=seed, n_jobs=1), False),
            "GradientBoosting": (lambda: GradientBoostingClassifier(random_state=seed), False),
            "HistGradientBoosting": (lambda: HistGradientBoostingClassifier(random_state=seed),
                                     False),
        }

    results = {}
    for seed in seeds_of(args.seeds):
        parts = []
        for df in frames:
            y = df[args.label]
            x = df.drop(columns=[args.label] + [c for c in drop if c in df.columns])
            parts.append(train_test_split(x, y, test_size=args.valid_fraction, random_state=seed))
        for name, (make, linear) in learners(seed).items():
            truth, preds = [], []
            models = []
            for x_tr, _, y_tr, _ in parts:
                y_tr = y_tr.to_numpy()
                model = make_pipeline(prep(x_tr, linear), make())
                if reg and (y_tr >= 0).all() and skew(y_tr) > 0.75:
                    model = TransformedTargetRegressor(model, func=np.log1p, inverse_func=np.expm1)
                models.append(model.fit(x_tr, y_tr if reg else y_tr.astype(str)))
            for _, x_va, _, y_va in parts:
                p = np.array([m.predict(x_va) for m in models])
                if reg:
                    preds.append(p.mean(axis=0))
                else:
                    votes = []
                    for col in p.T:
                        labels, counts = np.unique(col, return_counts=True)
                        votes.append(labels[np.argmax(counts)])  # ties: smallest label
                    preds.append(np.array(votes))
                truth.append(y_va.to_numpy() if reg else y_va.to_numpy().astype(str))
            t, p = np.concatenate(truth), np.concatenate(preds)
            if reg:
                if (t >= 0).all() and (p >= 0).all():
                    v = float(np.sqrt(np.mean((np.log1p(t) - np.log1p(p)) ** 2)))
                else:
                    v = rmse(t, p)
            else:
                v = float(np.mean(t == p))
            results.setdefault(name, []).append(v)
    out = {"ok": True, "sklearn": sklearn.__version__, "seeds": args.seeds,
           "metric": ("rmsle or rmse" if reg else "accuracy"), "learners": {}}
    for name, v in results.items():
        v = np.array(v)
        out["learners"][name] = {"mean": float(v.mean()),
                                 "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
    print(json.dumps(out))


def main():
    if "--quality" in __import__("sys").argv:
        qp = argparse.ArgumentParser()
        qp.add_argument("--quality", action="store_true")
        qp.add_argument("--label", required=True)
        qp.add_argument("--task", choices=["regression", "classification"], required=True)
        qp.add_argument("--drop", default="")
        qp.add_argument("--seeds", default="0-9")
        qp.add_argument("--valid-fraction", type=float, default=0.3)
        qp.add_argument("shards", nargs="+")
        return quality(qp.parse_args())
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
