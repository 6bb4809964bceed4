#!/usr/bin/env python3
"""Renders bench/run.sh's measurements as Markdown (bench/results.md).

    python3 bench/report.py MEASUREMENTS_DIR > bench/results.md

MEASUREMENTS_DIR (bench/results after a run) holds one JSON file per measurement, the phases'
machine load (busy.jsonl) and the commands run (commands), all written by run.sh. Every target
of issue 7 is printed next to its figure with "met" / "**not met**". bench/profile.md, when present, is
appended as the "where the time goes" section (written by hand from a profile; it says which
commit it describes). Standard library only.
"""

import json
import os
import statistics
import sys

M = sys.argv[1]
COMMANDS = os.path.join(M, "commands")
HERE = os.path.dirname(os.path.abspath(__file__))


def load(key):
    path = os.path.join(M, key + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def n(x, digits=0):
    """1234567 -> '1,234,567'."""
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def verdict(ok):
    return "met" if ok else "**not met**"


def median(xs):
    return statistics.median(xs) if xs else None


meta = load("meta")
nodes = [int(x) for x in meta["nodes"].split()]
rows = int(meta["rows"])
in_flight = meta["in_flight"]
out = []
w = out.append

w("# Benchmarks (issue 7)")
w("")
w(f"Measured {meta['date']} by `bench/run.sh{(' ' + meta['args']) if meta['args'] else ''}` "
  f"on commit `{meta['commit']}`. Reproduce: `bench/run.sh` (items 1–5, about 6 minutes here), "
  "`bench/run.sh --with-ray` (and item 6), `bench/profile.sh` (the profiles quoted at the end).")
w("")
w(f"Machine: {meta['nproc']} CPUs (`nproc`), {meta['cpu']}, {meta['mem']} RAM, Linux "
  f"{meta['kernel']}, {meta['rustc']}. Everything on loopback, all processes on this one machine "
  "(the clients and every node share its cores).")
busy_path = os.path.join(M, "busy.jsonl")
if os.path.exists(busy_path):
    with open(busy_path) as f:
        attempts = [json.loads(line) for line in f if line.strip()]
    busy, count = [], {}
    for b in attempts:  # the last attempt of each phase, in order
        count[b["phase"]] = count.get(b["phase"], 0) + 1
        busy = [x for x in busy if x["phase"] != b["phase"]] + [dict(b, attempt=count[b["phase"]])]
    w("")
    w("The machine is shared with other jobs. Per phase: how busy they kept it in the second "
      "before (this run's nodes idle), and the share of the machine they used during the phase "
      "(machine CPU time minus this run's own), in % of both CPUs:")
    w("")
    w("| phase | before | during |")
    w("|---|---|---|")
    for b in busy:
        during = b.get("others_during")
        if b["phase"].startswith("Ray"):
            during = None  # Ray's daemons are not children of the script: counted as others
        flag = " ⚠" if (during or 0) >= 10 else ""
        waited = f" (after waiting {b['waited_s']} s)" if b["waited_s"] else ""
        again = f" (attempt {b['attempt']})" if b["attempt"] > 1 else ""
        w(f"| {b['phase']}{again} | {b['busy']} %{waited} | "
          f"{'–' if during is None else str(during) + ' %'}{flag} |")
    w("")
    w("A phase marked ⚠ (10 % or more) shared the cores with another job even after the "
      "retries run.sh makes: its figures are pessimistic. "
      "(During the Ray phase Ray's own daemons would count as another job: not measured.)")
w("")
w(f"Workload: training shards 4 × {n(rows)} rows × {meta['features']} numeric features "
  f"(`ensemble-node gen`, Friedman #1), predict-file input {n(int(meta['predict_rows']))} rows; "
  "global predictions on a House Prices cluster (the default learner on shards A–D, reused "
  "round-robin beyond 4 nodes), one row of `shards/house_prices/test.csv` per request, rows in "
  f"turn; {meta['seq']} sequential requests, then {in_flight} in flight for "
  f"{int(meta['load_ms']) / 1000:g} s.")
w("")

# ---------------------------------------------------------------------------------------------
w("| # | measure | measured | target | |")
w("|---|---|---|---|---|")

ping = load("ping")
if ping:
    w(f"| 1 | protocol round trip (`Ping` → `Pong`, client ↔ node), p50 / p99 | "
      f"{ping['p50_us']} / {ping['p99_us']} µs ({n(ping['per_s'])} /s) | "
      "none (a raw actix request/response: ~40 µs p50) | |")

same, other = load("ping_same_cpu"), load("ping_other_cpu")
if same and other:
    w(f"| 1 | same, node and client pinned to one CPU / to two different CPUs (`taskset`), p50 / p99 | "
      f"{same['p50_us']} / {same['p99_us']} µs; {other['p50_us']} / {other['p99_us']} µs | none | |")

seq4, load4 = load("seq_4"), load("load_4")
if seq4:
    w(f"| 2 | global prediction, 4 nodes, one row, sequential: p50 / p99 | "
      f"{seq4['p50_us']} / {seq4['p99_us']} µs | p50 ≤ 150 µs | {verdict(seq4['p50_us'] <= 150)} |")
if load4:
    w(f"| 2 | global prediction, 4 nodes, {in_flight} in flight | {n(load4['per_s'])} /s "
      f"(p50 {n(load4['p50_us'])} µs, p99 {n(load4['p99_us'])} µs) | ≥ 20,000 /s | "
      f"{verdict(load4['per_s'] >= 20000)} |")
seqt, loadt = load("seq_tree4"), load("load_tree4")
if seqt and loadt:
    w(f"| 2 | same on the synthetic 4-node cluster (depth-3 trees, 15 numeric features): "
      f"sequential p50 / p99; {in_flight} in flight | {seqt['p50_us']} / {seqt['p99_us']} µs; "
      f"{n(loadt['per_s'])} /s | p50 ≤ 150 µs; ≥ 20,000 /s | "
      f"{verdict(seqt['p50_us'] <= 150)}; {verdict(loadt['per_s'] >= 20000)} |")
seq16 = load("seq_16")
if seq4 and seq16:
    ratio = seq16["p50_us"] / seq4["p50_us"]
    w(f"| 2 | p50 at 16 nodes / p50 at 4 nodes | {seq16['p50_us']} / {seq4['p50_us']} µs = "
      f"{ratio:.2f}× | ≤ 3× | {verdict(ratio <= 3)} |")

for name, label in (("tree", "tree (depth 3, 10 leaves)"), ("default", "default learner")):
    pf = load("predict_file_" + name)
    if pf:
        w(f"| 3 | `predict-file`, {n(pf['rows'])} rows, 4 nodes, {label} | "
          f"{n(pf['rows_per_s'])} rows/s ({n(pf['ms'])} ms) | ≥ 1,000,000 rows/s | "
          f"{verdict(pf['rows_per_s'] >= 1_000_000)} |")

for name, label in (("tree", "tree (depth 3, 10 leaves)"), ("default", "default learner (boosted, 400 rounds)")):
    t = load("train_" + name)
    if t:
        rss = max(t["rss_kb"]) / 1024
        w(f"| 4 | `train`, 4 × {n(rows)} rows, {label}: wall (training + cross-validation) | "
          f"{t['wall_ms'] / 1000:.2f} s | ≤ 10 s | {verdict(t['wall_ms'] <= 10_000)} |")
        w(f"| 4 | same: peak RSS per node (largest of 4; VmHWM after `train`) | {rss:,.0f} MB | "
          f"≤ 300 MB | {verdict(rss <= 300)} |")

sk = load("sklearn_trees")
for depth in ("d3", "d8"):
    ours = load("offline_" + depth)
    if ours and sk:
        o = median(ours["train_ms"])
        s = median([x["fit_ms"] for x in sk[depth]])
        what = "depth 3, 10 leaves" if depth == "d3" else "depth 8"
        w(f"| 5 | tree fit, {what}, {n(sk['rows_train'])} rows: ours / scikit-learn "
          f"DecisionTreeRegressor (medians) | {n(o)} / {n(s)} ms = **{s / o:.1f}× faster** | "
          f"≥ 5× | {verdict(s / o >= 5)} |")
ours_b, hgb, hgb1 = load("offline_default"), load("sklearn_hgb"), load("sklearn_hgb_1t")
if ours_b and hgb:
    o = ours_b["train_ms"][0]
    s = hgb["hgb"]["fit_ms"]
    s1 = hgb1["hgb"]["fit_ms"] if hgb1 else None
    extra = f"; one thread {n(s1)} ms = {s1 / o:.2f}×" if s1 else ""
    w(f"| 5 | default learner (boosted) / HistGradientBoostingRegressor, {meta['hgb_rounds']} "
      f"rounds, depth 4 | {n(o)} / {n(s)} ms (all cores) = {s / o:.2f}×{extra} | none | |")

ray = load("ray")
if ray and seq4:
    ratio = ray["seq"]["p50_us"] / seq4["p50_us"]
    w(f"| 6 | Ray baseline, 4 actors, one row, sequential p50 / p99 | "
      f"{n(ray['seq']['p50_us'])} / {n(ray['seq']['p99_us'])} µs; {in_flight} in flight "
      f"{n(ray['load']['per_s'], 1)} /s | ours ≥ 100× faster (p50) | "
      f"{ratio:.0f}×: {verdict(ratio >= 100)} |")
else:
    w("| 6 | Ray baseline | not run (`bench/run.sh --with-ray`) | ours ≥ 100× faster | |")
w("")

# ---------------------------------------------------------------------------------------------
w("### Global prediction by cluster size (item 2)")
w("")
w(f"| nodes | sequential p50 | sequential p99 | {in_flight} in flight: predictions/s | p50 | p99 | "
  "errors | answered by all nodes |")
w("|---|---|---|---|---|---|---|---|")
for k in nodes:
    s, l = load(f"seq_{k}"), load(f"load_{k}")
    if not (s and l):
        continue
    full = sum(v for a, v in s["answered"].items() if int(a) == k) + sum(
        v for a, v in l["answered"].items() if int(a) == k)
    total = s["requests"] + l["requests"]
    w(f"| {k} | {n(s['p50_us'])} µs | {n(s['p99_us'])} µs | {n(l['per_s'])} | "
      f"{n(l['p50_us'])} µs | {n(l['p99_us'])} µs | {s['errors'] + l['errors']} | "
      f"{full} / {total} |")
w("")

# ---------------------------------------------------------------------------------------------
w("### Training (item 4) and fits (item 5)")
w("")
w("| learner | `train` wall | coordinator `ms` | per-node `train_ms` (fit only) | peak RSS per node (MB) | "
  "ensemble RMSE |")
w("|---|---|---|---|---|---|")
for name in ("tree", "default"):
    t = load("train_" + name)
    if t:
        w(f"| {name} | {t['wall_ms'] / 1000:.2f} s | {n(t['ms'])} ms | "
          f"{', '.join(n(x['train_ms']) for x in t['nodes'])} | "
          f"{', '.join(f'{k / 1024:,.0f}' for k in t['rss_kb'])} | {t['ensemble']['rmse']:.3f} |")
for name in ("tree", "default"):
    pf, t = load("predict_file_" + name), load("train_" + name)
    if pf and t and "coordinator_rss_before_kb" in pf:
        w(f"\n`predict-file` ({name}, {n(pf['rows'])} rows): the coordinating node's RSS went from "
          f"{pf['coordinator_rss_before_kb'] / 1024:,.0f} MB to a peak of "
          f"{pf['coordinator_hwm_kb'] / 1024:,.0f} MB (peak reset before it via "
          "`/proc/PID/clear_refs`).")
w("")
w("One process, shard A's 70 % (the other 30 % scores the fit), fit time only:")
w("")
w("| model | ours (`offline`) | scikit-learn | ours faster by | RMSE ours / scikit-learn |")
w("|---|---|---|---|---|")
for depth, what in (("d3", "tree depth 3, 10 leaves"), ("d8", "tree depth 8")):
    ours = load("offline_" + depth)
    if ours and sk:
        o = median(ours["train_ms"])
        s = median([x["fit_ms"] for x in sk[depth]])
        w(f"| {what} | {', '.join(n(x) for x in ours['train_ms'])} ms | "
          f"{', '.join(n(x['fit_ms']) for x in sk[depth])} ms | {s / o:.1f}× (medians) | "
          f"{ours['rmse']:.3f} / {sk[depth][0]['rmse_valid']:.3f} |")
if ours_b and hgb:
    o = ours_b["train_ms"][0]
    w(f"| boosted (ours: subsample 0.8, colsample 0.5) / HistGradientBoosting, all cores | "
      f"{n(o)} ms | {n(hgb['hgb']['fit_ms'])} ms | {hgb['hgb']['fit_ms'] / o:.2f}× | "
      f"{ours_b['rmse']:.3f} / {hgb['hgb']['rmse_valid']:.3f} |")
    if hgb1:
        w(f"| same, HistGradientBoosting on one thread (`OMP_NUM_THREADS=1`) | {n(o)} ms | "
          f"{n(hgb1['hgb']['fit_ms'])} ms | {hgb1['hgb']['fit_ms'] / o:.2f}× | |")
if sk:
    w("")
    w(f"scikit-learn {sk['sklearn']} (`bench/sklearn_baseline.py`). Ours is single-threaded.")
w("")

if ray:
    w("### Ray baseline (item 6)")
    w("")
    w(f"Ray {ray.get('ray', '?')}, scikit-learn {ray.get('sklearn', '?')}: "
      f"{ray.get('description', '')}")
    w("")
    if "local_predict_p50_us" in ray:
        w(f"One pipeline's one-row `predict` in-process, without Ray: p50 "
          f"{n(ray['local_predict_p50_us'])} µs.")
        w("")
    w("| | p50 | p99 | per second | errors |")
    w("|---|---|---|---|---|")
    for k in ("seq", "load"):
        r = ray[k]
        w(f"| {'sequential' if k == 'seq' else str(in_flight) + ' in flight'} | {n(r['p50_us'])} µs | "
          f"{n(r['p99_us'])} µs | {n(r['per_s'], 1)} | {r['errors']} |")
    w("")

# ---------------------------------------------------------------------------------------------
w("### Commands")
w("")
w("`$TMP` is the run's temporary directory; the configs are generated there by `write_config` "
  "in `bench/lib.sh` (`[drift] enabled = false`, `train_on_join = false`, node 1 on a port picked "
  "free at run time, the others on port 0 with node 1 as their seed).")
w("")
w("```sh")
with open(COMMANDS) as f:
    last = None
    for line in f:
        line = line.rstrip("\n")
        if line and line != last:  # a command repeated in a row is shown once
            w(line)
        last = line
w("```")
w("")

profile = os.path.join(HERE, "profile.md")
if os.path.exists(profile):
    with open(profile) as f:
        w(f.read().rstrip("\n"))
    w("")

print("\n".join(out))
