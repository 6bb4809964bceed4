"""Drives a node's HTTP API with the official, unmodified clients: tritonclient[http] for the
Open Inference Protocol and prometheus_client's OpenMetrics parser for /metrics.

Run by tests/http_api.rs against real nodes; every check raises (non-zero exit) on failure.

  oip_client.py regression URL ROWS.csv EXPECTED.csv      ROWS: rows to infer (with the label
                                                          absent); EXPECTED: `ctl predict-file`'s
                                                          answer for the same rows (Id,SalePrice)
  oip_client.py classification URL ROWS.csv LABEL         the labels must be class names
"""

import csv
import json
import math
import sys
import urllib.error
import urllib.request

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException
from prometheus_client.openmetrics.parser import text_string_to_metric_families

MISSING = {"", "NA", "N/A", "NaN", "nan", "null"}


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def inputs_for(meta, rows, binary=True):
    inputs = []
    for tensor in meta["inputs"]:
        name, datatype = tensor["name"], tensor["datatype"]
        cells = [r.get(name, "").strip() for r in rows]
        if datatype == "FP64":
            data = np.array([math.nan if c in MISSING else float(c) for c in cells], dtype=np.float64)
        elif datatype == "BYTES":
            data = np.array([c.encode() for c in cells], dtype=np.object_)
        else:
            raise AssertionError(f"unexpected datatype {datatype} for {name}")
        t = httpclient.InferInput(name, [len(rows)], datatype)
        # FP64 must go binary (JSON has no NaN for a missing cell); BYTES goes both ways.
        t.set_data_from_numpy(data, binary_data=binary or datatype == "FP64")
        inputs.append(t)
    return inputs


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def expect_error(client, inputs, needle):
    try:
        client.infer("ensemble", inputs)
    except InferenceServerException as e:
        check(needle in str(e), f"error {e} does not mention {needle!r}")
        return
    raise AssertionError(f"a bad request ({needle}) was accepted")


def check_health(client, url):
    check(client.is_server_live(), "server not live")
    check(client.is_server_ready(), "server not ready")
    check(client.is_model_ready("ensemble"), "ensemble not ready")
    check(not client.is_model_ready("no-such-model"), "an unknown model is ready")
    meta = client.get_model_metadata("ensemble")
    check(meta["name"] == "ensemble", f"metadata {meta}")
    check(len(meta["inputs"]) > 10, f"few inputs: {meta}")
    check(all(t["shape"] == [-1] for t in meta["inputs"]), f"shapes: {meta}")
    check(client.get_server_metadata()["name"] == "ensemble-cluster", "server metadata")
    return meta


def bad_requests(client, meta, rows):
    good = inputs_for(meta, rows[:1])
    wrong_shape = httpclient.InferInput(meta["inputs"][0]["name"], [1, 2], "FP64")
    wrong_shape.set_data_from_numpy(np.zeros((1, 2)), binary_data=False)
    expect_error(client, [wrong_shape], "shape")
    unknown = httpclient.InferInput("NoSuchColumn", [1], "FP64")
    unknown.set_data_from_numpy(np.zeros(1), binary_data=False)
    expect_error(client, good + [unknown], "NoSuchColumn")
    cat = next(t for t in meta["inputs"] if t["datatype"] == "BYTES")
    wrong_type = httpclient.InferInput(cat["name"], [1], "FP64")
    wrong_type.set_data_from_numpy(np.zeros(1), binary_data=False)
    expect_error(client, [wrong_type], "BYTES")
    # Bad JSON straight to the endpoint: a 400 with {"error"}.
    req = urllib.request.Request(
        f"http://{client_url}/v2/models/ensemble/infer", data=b"{oops", method="POST")
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("bad JSON was accepted")
    except urllib.error.HTTPError as e:
        check(e.code == 400, f"bad JSON: {e.code}")
        check("error" in json.loads(e.read()), "bad JSON: no error field")


def check_metrics(url):
    text = urllib.request.urlopen(f"http://{url}/metrics", timeout=10).read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ["ensemble_http_requests", "ensemble_http_request_duration_seconds",
                 "ensemble_commands", "ensemble_fanout_answered", "ensemble_fanout_asked",
                 "ensemble_peer_state", "ensemble_model_version", "ensemble_training_rows",
                 "ensemble_last_training_seconds", "ensemble_supervisor_restarts"]:
        check(name in families, f"/metrics has no {name}: {sorted(families)}")
    infer = [s for s in families["ensemble_http_requests"].samples
             if s.labels.get("endpoint") == "/v2/models/{name}/infer" and s.labels["status"] == "200"]
    check(infer and infer[0].value >= 2, f"infer requests not counted: {infer}")
    check(families["ensemble_model_version"].samples[0].value >= 1, "no model version")
    peers = [s for s in families["ensemble_peer_state"].samples if s.labels["state"] == "up"]
    check(len(peers) >= 1, f"no peer up in metrics: {families['ensemble_peer_state'].samples}")
    asked = families["ensemble_fanout_asked"].samples[0].value
    check(asked >= 2, f"fan-out not counted: {asked}")


def regression(url, rows_path, expected_path):
    client = httpclient.InferenceServerClient(url=url)
    meta = check_health(client, url)
    check(meta["outputs"][0]["datatype"] == "FP64", f"output: {meta}")
    rows = read_rows(rows_path)
    expected = [float(r["SalePrice"]) for r in read_rows(expected_path)]
    check(len(rows) == len(expected) == 100, f"{len(rows)} rows, {len(expected)} expected")

    def same(got, want):
        for i, (g, w) in enumerate(zip(got, want)):
            check(abs(g - w) <= 1e-9 * max(1.0, abs(w)), f"row {i}: {g} != {w}")

    one = client.infer("ensemble", inputs_for(meta, rows[:1], binary=False))
    got = one.as_numpy("prediction")
    check(got.shape == (1,), f"one row: shape {got.shape}")
    same(got, expected[:1])
    params = one.get_response()["parameters"]
    check(params["answered"] == params["asked"] >= 2, f"parameters {params}")

    batch = client.infer("ensemble", inputs_for(meta, rows))
    got = batch.as_numpy("prediction")
    check(got.shape == (100,), f"batch: shape {got.shape}")
    same(got, expected)
    bad_requests(client, meta, rows)
    check_metrics(url)
    print("regression: ok")


def classification(url, rows_path, label):
    client = httpclient.InferenceServerClient(url=url)
    meta = check_health(client, url)
    check(meta["outputs"][0]["datatype"] == "BYTES", f"output: {meta}")
    rows = read_rows(rows_path)[:20]
    want = [r[label] for r in rows]
    got = client.infer("ensemble", inputs_for(meta, rows)).as_numpy("prediction")
    labels = [g.decode() if isinstance(g, bytes) else str(g) for g in got]
    check(set(labels) <= set(want) | {"benign", "malignant"}, f"labels {labels}")
    agree = sum(a == b for a, b in zip(labels, want)) / len(want)
    check(agree >= 0.8, f"only {agree:.2f} of the training rows predicted right: {labels}")
    print("classification: ok")


if __name__ == "__main__":
    mode, client_url = sys.argv[1], sys.argv[2]
    if mode == "regression":
        regression(client_url, sys.argv[3], sys.argv[4])
    elif mode == "classification":
        classification(client_url, sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(f"unknown mode {mode}")
