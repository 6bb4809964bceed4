#!/usr/bin/env python3
"""Ray side of benchmark item 6 (issue 7): the Python stack we are compared with.

Four Ray actors, each holding a scikit-learn pipeline (median / most-frequent imputation, one-hot
categoricals, gradient boosting on log(1 + SalePrice)) trained on one House Prices shard. A global
prediction sends one row to every actor and averages their answers, as our nodes do. Same request
pattern as item 2: one request at a time, then C in flight for a while (C threads, each calling
`ray.get` on its fan-out). For reference it also times one pipeline's one-row prediction in the
driver, without Ray (`local_predict_p50_us`). Prints one JSON line.

    python bench/ray_baseline.py --shards A.csv B.csv C.csv D.csv --rows-from test.csv
        [--seq-requests 1000] [--in-flight 64] [--duration-ms 5000]
"""

import argparse
import json
import math
import os
import threading
import time

import numpy as np
import pandas as pd
import ray
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder

LABEL = "SalePrice"
DROP = ["Id"]


class Model:
    """One node's scikit-learn pipeline, fitted on its shard."""

    def __init__(self, shard):
        df = pd.read_csv(shard)
        y = np.log1p(df.pop(LABEL).to_numpy(dtype=float))
        x = df.drop(columns=[c for c in DROP if c in df.columns])
        self.columns = list(x.columns)
        numeric = [c for c in x.columns if x[c].dtype.kind in "if"]
        categorical = [c for c in x.columns if c not in numeric]
        pre = ColumnTransformer(
            [
                ("num", SimpleImputer(strategy="median"), numeric),
                (
                    "cat",
                    make_pipeline(
                        SimpleImputer(strategy="most_frequent"),
                        OneHotEncoder(handle_unknown="ignore"),
                    ),
                    categorical,
                ),
            ]
        )
        x[categorical] = x[categorical].astype(object)
        self.categorical = categorical
        self.model = Pipeline([("pre", pre), ("gb", GradientBoostingRegressor(random_state=42))])
        self.model.fit(x, y)

    def predict(self, row):
        x = pd.DataFrame([row], columns=self.columns)
        x[self.categorical] = x[self.categorical].astype(object)
        return float(np.expm1(self.model.predict(x)[0]))


@ray.remote(num_cpus=0)
class Node(Model):
    pass


def global_predict(nodes, row):
    return sum(ray.get([n.predict.remote(row) for n in nodes])) / len(nodes)


def percentile(sorted_us, p):
    if not sorted_us:
        return 0
    return sorted_us[min(len(sorted_us) - 1, round(p / 100 * (len(sorted_us) - 1)))]


def report(latencies, errors, secs):
    lat = sorted(latencies)
    return {
        "requests": len(lat),
        "p50_us": percentile(lat, 50),
        "p99_us": percentile(lat, 99),
        "max_us": lat[-1] if lat else 0,
        "per_s": round(len(lat) / secs, 1) if secs > 0 else 0,
        "errors": errors,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", nargs="+", required=True)
    ap.add_argument("--rows-from", required=True)
    ap.add_argument("--seq-requests", type=int, default=1000)
    ap.add_argument("--in-flight", type=int, default=64)
    ap.add_argument("--duration-ms", type=int, default=5000)
    args = ap.parse_args()

    # Reference: one pipeline's one-row prediction in this process, without Ray.
    local = Model(args.shards[0])
    test = pd.read_csv(args.rows_from)
    test = test.drop(columns=[c for c in DROP + [LABEL] if c in test.columns])
    rows = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in test.to_dict(orient="records")
    ]
    local_us = []
    for i in range(300):
        t0 = time.perf_counter()
        local.predict(rows[i % len(rows)])
        local_us.append(int((time.perf_counter() - t0) * 1e6))
    local_p50 = sorted(local_us)[len(local_us) // 2]

    ray.init(
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
    )
    nodes = [Node.remote(s) for s in args.shards]
    # Warm up (actors trained, workers' imports done).
    for r in rows[:20]:
        global_predict(nodes, r)

    latencies, errors = [], 0
    t_start = time.perf_counter()
    for i in range(args.seq_requests):
        t0 = time.perf_counter()
        try:
            global_predict(nodes, rows[i % len(rows)])
        except Exception:
            errors += 1
        latencies.append(int((time.perf_counter() - t0) * 1e6))
    seq = report(latencies, errors, time.perf_counter() - t_start)

    lock = threading.Lock()
    counter = [0]
    load_lat, load_err = [], [0]
    stop_at = time.perf_counter() + args.duration_ms / 1000

    def worker():
        while time.perf_counter() < stop_at:
            with lock:
                i = counter[0]
                counter[0] += 1
            t0 = time.perf_counter()
            try:
                global_predict(nodes, rows[i % len(rows)])
                ok = True
            except Exception:
                ok = False
            us = int((time.perf_counter() - t0) * 1e6)
            with lock:
                load_lat.append(us)
                if not ok:
                    load_err[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(args.in_flight)]
    t_start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    load = report(load_lat, load_err[0], time.perf_counter() - t_start)
    load["in_flight"] = args.in_flight

    print(
        json.dumps(
            {
                "ok": True,
                "ray": ray.__version__,
                "sklearn": sklearn.__version__,
                "description": (
                    f"{len(nodes)} actors (num_cpus=0, one local Ray node with "
                    f"{os.cpu_count()} CPUs), each a Pipeline(ColumnTransformer(median imputation; "
                    "most-frequent imputation + one-hot), GradientBoostingRegressor()) fitted on "
                    "log1p(SalePrice) of one House Prices shard; a global prediction = "
                    "ray.get of one predict.remote(row) per actor, then the mean; "
                    f"{args.in_flight} client threads for the in-flight run."
                ),
                "local_predict_p50_us": local_p50,
                "seq": seq,
                "load": load,
            }
        )
    )
    ray.shutdown()


if __name__ == "__main__":
    main()
