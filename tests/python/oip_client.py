"""Drives a node's HTTP API with the official, unmodified clients: tritonclient[http] for the
Open Inference Protocol and prometheus_client's OpenMetrics parser for /metrics.

Run by tests/http_api.rs against real nodes; every check raises (non-zero exit) on failure.

  oip_client.py regression URL ROWS.csv EXPECTED.csv      ROWS: rows to infer (with the label
                                                          absent); EXPECTED: `ctl predict-file`'s
                                                          answer for the same rows (Id,SalePrice)
  oip_client.py classification URL ROWS.csv LABEL         the labels must be class names
  oip_client.py https URL CA CERT KEY ROWS.csv EXPECTED.csv TOKEN OTHER_CA
                                                          the regression checks over HTTPS,
                                                          verified against the cluster CA; CERT
                                                          is a reader's, TOKEN the reader token;
                                                          OTHER_CA: a CA the node's certificate
                                                          must not pass
  oip_client.py metrics URL PEER FEATURES                 after a drift retrain: PEER's bytes, retrains by cause, the drift
                                                          statistic of at least FEATURES features
"""

import csv
import json
import math
import ssl
import sys
import time
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


def scrape(base, context=None, headers=None):
    """/metrics parsed by prometheus_client's OpenMetrics parser: {family name: family}."""
    req = urllib.request.Request(f"{base}/metrics", headers=headers or {})
    text = urllib.request.urlopen(req, timeout=10, context=context).read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(families, name, **labels):
    family = families.get(name)
    check(family is not None, f"/metrics has no {name}: {sorted(families)}")
    return [s for s in family.samples
            if all(s.labels.get(k) == v for k, v in labels.items())]


def check_metrics(url, base=None, context=None, headers=None):
    families = scrape(base or f"http://{url}", context, headers)
    for name in ["ensemble_http_requests", "ensemble_http_request_duration_seconds",
                 "ensemble_commands", "ensemble_fanout_answered", "ensemble_fanout_asked",
                 "ensemble_peer_state", "ensemble_peer_received_bytes",
                 "ensemble_peer_sent_bytes", "ensemble_model_version", "ensemble_training_rows",
                 "ensemble_last_training_seconds", "ensemble_supervisor_restarts",
                 "ensemble_retrains", "ensemble_drift_new_rows"]:
        check(name in families, f"/metrics has no {name}: {sorted(families)}")
    for name in ["ensemble_peer_received_bytes_total", "ensemble_peer_sent_bytes_total"]:
        got = [s for s in samples(families, name[:-len("_total")]) if s.name == name]
        check(got and all(s.value > 0 for s in got), f"{name}: {got}")
    trained = [s.value for s in samples(families, "ensemble_retrains")
               if s.name == "ensemble_retrains_total"]
    check(sum(trained) >= 1, f"no retrain counted: {trained}")
    infer = [s for s in families["ensemble_http_requests"].samples
             if s.labels.get("endpoint") == "/v2/models/{name}/infer" and s.labels["status"] == "200"]
    check(infer and infer[0].value >= 2, f"infer requests not counted: {infer}")
    check(families["ensemble_model_version"].samples[0].value >= 1, "no model version")
    peers = [s for s in families["ensemble_peer_state"].samples if s.labels["state"] == "up"]
    check(len(peers) >= 1, f"no peer up in metrics: {families['ensemble_peer_state'].samples}")
    asked = families["ensemble_fanout_asked"].samples[0].value
    check(asked >= 2, f"fan-out not counted: {asked}")


def infer_and_compare(client, meta, rows_path, expected_path):
    """One row and a 100-row batch: the same numbers as ctl's answer (to 1e-9)."""
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
    return rows


def regression(url, rows_path, expected_path):
    client = httpclient.InferenceServerClient(url=url)
    meta = check_health(client, url)
    check(meta["outputs"][0]["datatype"] == "FP64", f"output: {meta}")
    rows = infer_and_compare(client, meta, rows_path, expected_path)
    bad_requests(client, meta, rows)
    check_metrics(url)
    print("regression: ok")


def status_of(base, path, context, token=None, method="GET"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(f"{base}{path}", method=method, headers=headers,
                                 data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=30, context=context) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def https(url, ca, cert, key, rows_path, expected_path, token, other_ca):
    base = f"https://{url}"
    # tritonclient over TLS: the chain must lead to the cluster CA and name 127.0.0.1; the
    # reader's certificate is its credential (no token).
    client = httpclient.InferenceServerClient(
        url=url, ssl=True, ssl_options={"ca_certs": ca, "certfile": cert, "keyfile": key})
    meta = check_health(client, url)
    infer_and_compare(client, meta, rows_path, expected_path)

    anonymous = ssl.create_default_context(cafile=ca)
    code, answer = status_of(base, "/v1/status", anonymous)
    check(code == 401 and "reader" in answer["error"], f"no token, no certificate: {code} {answer}")
    code, answer = status_of(base, "/v1/status", anonymous, token)
    check(code == 200 and answer["ok"], f"reader token: {code} {answer}")

    reader = ssl.create_default_context(cafile=ca)
    reader.load_cert_chain(cert, key)
    code, answer = status_of(base, "/v1/status", reader)
    check(code == 200 and answer["node"] == "n1", f"reader certificate: {code} {answer}")
    code, answer = status_of(base, "/v1/train", reader, method="POST")
    check(code == 403 and "operator" in answer["error"], f"reader trains: {code} {answer}")

    check_metrics(url, base, reader)

    stranger = ssl.create_default_context(cafile=other_ca)
    try:
        urllib.request.urlopen(f"{base}/v2/health/live", timeout=10, context=stranger)
        raise AssertionError("a client trusting another CA accepted the node's certificate")
    except urllib.error.URLError as e:
        check(isinstance(e.reason, ssl.SSLCertVerificationError), f"not a verification error: {e}")
    print("https: ok")


def after_drift(url, peer, features):
    families = scrape(f"http://{url}")
    state = samples(families, "ensemble_peer_state", peer=peer, state="up")
    check(state and state[0].value == 1, f"{peer} not up: {families['ensemble_peer_state']}")
    def bytes_of(families):
        counts = []
        for name in ["ensemble_peer_received_bytes", "ensemble_peer_sent_bytes"]:
            got = [s for s in samples(families, name, peer=peer) if s.name == f"{name}_total"]
            check(len(got) == 1 and got[0].value > 0, f"{name} of {peer}: {got}")
            counts.append(got[0].value)
        return counts

    # Membership packets flow both ways: both counts grow (polled, 10 s at most).
    first, deadline = bytes_of(families), time.monotonic() + 10
    while True:
        now = bytes_of(scrape(f"http://{url}"))
        if all(b > a for a, b in zip(first, now)):
            break
        check(time.monotonic() < deadline, f"bytes to and from {peer} stay at {now}")
        time.sleep(0.2)
    retrains = {s.labels["cause"]: s.value for s in samples(families, "ensemble_retrains")
                if s.name == "ensemble_retrains_total"}
    check(retrains.get("drift") == 1 and retrains.get("start") == 1, f"retrains: {retrains}")
    check(retrains.get("train") == 0 and retrains.get("train_local") == 0, f"retrains: {retrains}")
    psi = {s.labels["feature"]: s.value
           for s in samples(families, "ensemble_drift_statistic", statistic="psi")}
    ks = samples(families, "ensemble_drift_statistic", statistic="ks")
    check(len(psi) >= features, f"psi of {len(psi)} features: {psi}")
    check(all(math.isfinite(v) and v >= 0 for v in psi.values()), f"psi: {psi}")
    # The appended rows were shifted: some feature moved well past the PSI floor.
    check(max(psi.values()) > 0.1, f"no feature drifted: {psi}")
    check(len(ks) >= features and all(0 <= s.value <= 1 for s in ks), f"ks: {ks}")
    print("metrics: ok")


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
    elif mode == "https":
        https(client_url, *sys.argv[3:10])
    elif mode == "metrics":
        after_drift(client_url, sys.argv[3], int(sys.argv[4]))
    else:
        raise SystemExit(f"unknown mode {mode}")
