#!/usr/bin/env python3
"""Renders bench/run.sh's measurements as Markdown (bench/results.md).

    python3 bench/report.py MEASUREMENTS_DIR > bench/results.md
    python3 bench/report.py MEASUREMENTS_DIR --readme-table   (the README's Benchmarks table)

MEASUREMENTS_DIR (bench/results after a run) holds one JSON file per measurement, the phases'
machine load (busy.jsonl) and the commands run (commands), all written by run.sh; earlier/ holds
issue 7's training and fit measurements when this run did not take them (with that run's meta),
earlier-ray/ the Ray baseline of the last --with-ray run (with its meta).
Every target of issue 13 is printed next to its figure with "met" / "**not met**": the figure is
the median over the run's repeats, each repeat listed beside it. bench/profile.md, when present,
is appended as the "where the time goes" section (written by hand from a profile; it says which
commit it describes), and bench/http.md (issue 12's HTTP measurements). Standard library only.
"""

import json
import os
import statistics
import sys

M = sys.argv[1]
README_TABLE = "--readme-table" in sys.argv[2:]
COMMANDS = os.path.join(M, "commands")
HERE = os.path.dirname(os.path.abspath(__file__))


def load(key, where=M):
    path = os.path.join(where, key + ".json")
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
repeats = int(meta["repeats"])
# Rounds of each larger cluster size against the 4-node cluster (runs before they existed grew
# the 4-node cluster instead and measured it `repeats` times).
alt_rounds = int(meta.get("alt_rounds", repeats))
nodes = [int(x) for x in meta["nodes"].split()]
pf_rows = [int(x) for x in meta["pf_rows"].split()]
in_flight = meta["in_flight"]


def runs(prefix, count=None):
    """The repeats of one measure: prefix_1, prefix_2, ... (`count` of them, or the run's
    repeats)."""
    out = []
    for r in range(1, (count or repeats) + 1):
        x = load(f"{prefix}_{r}")
        if x is not None:
            out.append(x)
    return out


# predict-file measures (key prefix, way): through ctl (the client reads the file), at node 1's
# console (the node does).
PF_WAYS = (("pf", "ctl"), ("pfc", "console"))


def listed(xs, fmt=n):
    return ", ".join(fmt(x) for x in xs)


# ---------------------------------------------------------------------------------------------
# The serving targets (issue 13), as (measure, measured, target, verdict) rows.

targets = []
ping, seq4, load4 = runs("ping"), runs("seq_4"), runs("load_4")
if ping and seq4:
    p, s = median([x["p50_us"] for x in ping]), median([x["p50_us"] for x in seq4])
    ratios = [b["p50_us"] / a["p50_us"] for a, b in zip(ping, seq4) if a["p50_us"]]
    targets.append((
        "4 nodes, House Prices, default learner: one-row sequential p50 / ping p50 (same cluster, "
        "in turn)",
        f"{n(s)} / {n(p)} µs = **{s / p:.1f}×** (runs: {listed(ratios, lambda r: f'{r:.1f}×')})",
        "≤ 4×", verdict(s / p <= 4)))
if load4:
    rates = [x["per_s"] for x in load4]
    errors = sum(x["errors"] for x in load4)
    total = sum(x["requests"] for x in load4)
    full = sum(v for x in load4 for a, v in x["answered"].items() if int(a) == 4)
    ok = median(rates) >= 20000 and errors == 0 and full == total
    targets.append((
        f"same, {in_flight} in flight: predictions/s; errors; answers from all 4 nodes",
        f"**{n(median(rates))} /s** (runs: {listed(rates)}); {errors} errors; "
        f"{n(full)} / {n(total)}",
        "≥ 20,000 /s, 0 errors, every answer from 4", verdict(ok)))
seq16, beside16 = runs("seq_16", alt_rounds), runs("seq_4alt16", alt_rounds)
if seq16:
    # The 4-node p50 it is compared with: measured in turn with it when the run did so.
    base = beside16 or seq4
    a, b = median([x["p50_us"] for x in base]), median([x["p50_us"] for x in seq16])
    rounds = ""
    if beside16:
        ratios = [y["p50_us"] / x["p50_us"] for x, y in zip(beside16, seq16) if x["p50_us"]]
        rounds = f"; by round: {listed(ratios, lambda r: f'{r:.2f}×')}"
    targets.append((
        "16 nodes: one-row sequential p50 / the 4-node p50"
        + (" (the two clusters in turn, round by round)" if beside16 else ""),
        f"{n(b)} / {n(a)} µs = **{b / a:.2f}×** (16-node runs: "
        f"{listed([x['p50_us'] for x in seq16])} µs{rounds})",
        "≤ 3×", verdict(b / a <= 3)))
for name, label, goal in (("tree", "depth-3 trees", 1_000_000),
                          ("default", "the default learner", 300_000)):
    first = pf_rows[0]
    for prefix, way in PF_WAYS:
        pf = runs(f"{prefix}_{name}_{first}")
        if pf:
            rates = [x["rows_per_s"] for x in pf]
            targets.append((
                f"`predict-file`, {n(first)} rows × {meta['features']} features, 4 nodes, "
                f"{label}, through {'`ctl`' if way == 'ctl' else 'the console'}",
                f"**{n(median(rates))} rows/s** (runs: {listed(rates)})",
                f"≥ {n(goal)} rows/s", verdict(median(rates) >= goal)))
growth = []
for prefix, way in PF_WAYS:
    for name in ("tree", "default"):
        for rows in pf_rows:
            for x in runs(f"{prefix}_{name}_{rows}"):
                growth.append((way, name, rows,
                               (x["coordinator_hwm_kb"] - x["coordinator_rss_before_kb"]) / 1024))
if growth:
    worst = max(g for _, _, _, g in growth)
    parts = []
    for _, way in PF_WAYS:
        for name in ("tree", "default"):
            for rows in pf_rows:
                gs = [g for w_, nm, r, g in growth if w_ == way and nm == name and r == rows]
                if gs:
                    parts.append(f"{name}, {way}, {n(rows / 1e6, 0 if rows % 1_000_000 == 0 else 1)} "
                                 f"M rows: {listed(gs, lambda g: f'{g:.0f}')}")
    targets.append((
        "`predict-file`: the coordinating node's peak RSS over its RSS before, MB (through `ctl`, "
        "and at the node's console, where the node reads the file)",
        f"at most **{worst:.0f} MB** ({'; '.join(parts)})", "≤ 64 MB whatever the file size",
        verdict(worst <= 64)))
hung, killed = load("fault_hung"), load("fault_killed")
if hung and killed:
    deadline_ms = 1000
    slowest = max(hung["max_us"], killed["max_us"]) / 1000
    ok = hung["errors"] == 0 and killed["errors"] == 0 and slowest <= deadline_ms * 1.5
    targets.append((
        f"a peer frozen 3 s (SIGSTOP) / killed under {in_flight} in flight: slowest answer; "
        "errors; answers from 3 nodes",
        f"{n(hung['max_us'] / 1000)} / {n(killed['max_us'] / 1000)} ms; "
        f"{hung['errors']} / {killed['errors']}; "
        f"{n(hung['answered'].get('3', 0))} / {n(killed['answered'].get('3', 0))}",
        f"at most one deadline ({deadline_ms} ms, `request_timeout_ms`)", verdict(ok)))

if README_TABLE:
    print("| measure | measured | target | |")
    print("|---|---|---|---|")
    for row in targets:
        print("| " + " | ".join(row) + " |")
    print("")
    print(f"Measured {meta['date']} by `bench/run.sh{(' ' + meta['args']) if meta['args'] else ''}` "
          f"on commit `{meta['commit']}`, median of {repeats} runs each; load average "
          f"{meta['load_start']} at the start, {meta.get('load_end', '?')} at the end "
          f"(2 CPUs). Details: [bench/results.md](bench/results.md).")
    sys.exit(0)

out = []
w = out.append

w("# Benchmarks")
w("")
w(f"Measured {meta['date']} by `bench/run.sh{(' ' + meta['args']) if meta['args'] else ''}` "
  f"on commit `{meta['commit']}`. Reproduce: `bench/run.sh` (the serving targets of issue 13), "
  "`bench/run.sh --training` (and issue 7's training and fits), `--with-ray` (and its Ray "
  "baseline); `bench/profile.sh` for where the time goes.")
w("")
w(f"Machine: {meta['nproc']} CPUs (`nproc`), {meta['cpu']}, {meta['mem']} RAM, Linux "
  f"{meta['kernel']}, {meta['rustc']}. Everything on loopback, all processes on this one machine "
  "(the clients and every node share its cores). Load average (1 min): "
  f"{meta['load_start']} at the start of the run, {meta.get('load_end', '?')} at its end.")
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
      "retries run.sh makes: its figures are pessimistic.")
w("")

# ---------------------------------------------------------------------------------------------
w("## Serving (issue 13)")
w("")
w(f"Global predictions on a House Prices cluster (the default learner on shards A–D, reused "
  f"round-robin beyond 4 nodes), one row of `shards/house_prices/test.csv` per request, rows in "
  f"turn: {meta['ping']} round trips and {meta['seq']} predictions one at a time, in turn, then "
  f"{in_flight} in flight for {int(meta['load_ms']) / 1000:g} s; each {repeats} times. "
  f"`predict-file` on a 4-node generated cluster (`ensemble-node gen`, Friedman #1, "
  f"{meta['features']} numeric features, {n(int(meta['shard_rows']))} training rows per node), "
  f"through `ctl` (which parses the CSV): inputs of {', '.join(n(r) for r in pf_rows)} rows. "
  "Figures are medians of the runs, each run listed.")
w("")
w("| measure | measured | target | |")
w("|---|---|---|---|")
for row in targets:
    w("| " + " | ".join(row) + " |")
w("")

if ping or seq4:
    w("### One row at a time, and in flight (4 nodes)")
    w("")
    w("| run | ping p50 / p99 | prediction p50 / p99 | ratio of p50s | "
      f"{in_flight} in flight: /s, p50, p99 | CPU s of nodes 1–4 / client during it |")
    w("|---|---|---|---|---|---|")
    for r in range(repeats):
        pg = ping[r] if r < len(ping) else None
        sq = seq4[r] if r < len(seq4) else None
        ld = load4[r] if r < len(load4) else None
        cells = [str(r + 1)]
        cells.append(f"{pg['p50_us']} / {pg['p99_us']} µs" if pg else "–")
        cells.append(f"{sq['p50_us']} / {sq['p99_us']} µs" if sq else "–")
        cells.append(f"{sq['p50_us'] / pg['p50_us']:.1f}×" if pg and sq and pg["p50_us"] else "–")
        cells.append(f"{n(ld['per_s'])}, {n(ld['p50_us'])} µs, {n(ld['p99_us'])} µs" if ld else "–")
        cells.append(f"{listed(ld.get('node_cpu_s', []), lambda c: f'{c:.1f}')} / "
                     f"{ld.get('client_cpu_s', 0):.1f}" if ld else "–")
        w("| " + " | ".join(cells) + " |")
    w("")

w("### One row at a time by cluster size")
w("")
w("| nodes | p50 (runs) | p99 (runs) | errors | answered by all nodes |")
w("|---|---|---|---|---|")
sizes = [(k, str(k), runs(f"seq_{k}") if k == 4 else runs(f"seq_{k}", alt_rounds)) for k in nodes]
for k in nodes[1:]:
    sizes.append((4, f"4, in turn with {k}", runs(f"seq_4alt{k}", alt_rounds)))
for k, label, ss in sizes:
    if not ss:
        continue
    full = sum(v for x in ss for a, v in x["answered"].items() if int(a) == k)
    total = sum(x["requests"] for x in ss)
    w(f"| {label} | {n(median([x['p50_us'] for x in ss]))} µs ({listed([x['p50_us'] for x in ss])}) | "
      f"{n(median([x['p99_us'] for x in ss]))} µs ({listed([x['p99_us'] for x in ss])}) | "
      f"{sum(x['errors'] for x in ss)} | {n(full)} / {n(total)} |")
w("")

if any(runs(f"{p}_{nm}_{r}") for p, _ in PF_WAYS for nm in ("tree", "default") for r in pf_rows):
    w("### predict-file")
    w("")
    w("Through `ctl`, the client reads and parses the file and node 1 coordinates; at node 1's "
      "console, node 1 does both (no client).")
    w("")
    w("| learner | through | rows | run | rows/s | ms | answered | coordinator RSS before → peak (MB) | "
      "CPU s: nodes 1–4 / client |")
    w("|---|---|---|---|---|---|---|---|---|")
    for name in ("tree", "default"):
        for prefix, way in PF_WAYS:
            for rows in pf_rows:
                for r, x in enumerate(runs(f"{prefix}_{name}_{rows}")):
                    client = f"{x['client_cpu_s']:.1f}" if "client_cpu_s" in x else "–"
                    w(f"| {name} | {way} | {n(rows)} | {r + 1} | {n(x['rows_per_s'])} | {n(x['ms'])} | "
                      f"{x['answered']} of {x['asked']} | "
                      f"{x['coordinator_rss_before_kb'] / 1024:.0f} → "
                      f"{x['coordinator_hwm_kb'] / 1024:.0f} | "
                      f"{listed(x.get('node_cpu_s', []), lambda c: f'{c:.1f}')} / {client} |")
    w("")

if hung and killed:
    w("### A frozen and a killed peer under load")
    w("")
    w(f"{in_flight} predictions in flight for 8 s against node 1 of the 4-node cluster; node 4 "
      "frozen with SIGSTOP 2 s into the run and thawed 3 s later, then (a second run) killed with "
      "SIGKILL 2 s in. A prediction waits for a silent peer at most `cluster.request_timeout_ms` "
      "(1000 ms; a suspect peer gets a quarter of it), then answers from the others.")
    w("")
    w("| | requests | errors | answered by 4 / 3 | p50 | p99 | slowest |")
    w("|---|---|---|---|---|---|---|")
    for label, x in (("frozen", hung), ("killed", killed)):
        w(f"| {label} | {n(x['requests'])} | {x['errors']} | {n(x['answered'].get('4', 0))} / "
          f"{n(x['answered'].get('3', 0))} | {n(x['p50_us'])} µs | {n(x['p99_us'])} µs | "
          f"{n(x['max_us'] / 1000)} ms |")
    w("")

# ---------------------------------------------------------------------------------------------
# Issue 7's training, fits and Ray baseline: this run's, or the last run's that took them.

E = M if load("train_tree") or load("sklearn_trees") else os.path.join(M, "earlier")
# The Ray baseline is measured by --with-ray only: this run's, or the last one's (earlier-ray/).
R = M if load("ray") else os.path.join(M, "earlier-ray")
emeta = load("meta", E)
if emeta:
    w("## Training and fits (issue 7)")
    w("")
    if E != M:
        w(f"Not measured by this run: the figures of {emeta['date']} on commit `{emeta['commit']}` "
          f"(`bench/run.sh{(' ' + emeta['args']) if emeta.get('args') else ''}` then; "
          "`bench/run.sh --training` measures them again).")
        w("")
    erows = int(emeta["rows"])
    w("| # | measure | measured | target | |")
    w("|---|---|---|---|---|")
    for name, label in (("tree", "tree (depth 3, 10 leaves)"),
                        ("default", "default learner (`auto`)")):
        t = load("train_" + name, E)
        if t:
            rss = max(t["rss_kb"]) / 1024
            w(f"| 4 | `train`, 4 × {n(erows)} rows, {label}: wall (training + cross-validation) | "
              f"{t['wall_ms'] / 1000:.2f} s | ≤ 10 s | {verdict(t['wall_ms'] <= 10_000)} |")
            w(f"| 4 | same: peak RSS per node (largest of 4; VmHWM after `train`) | {rss:,.0f} MB | "
              f"≤ 300 MB | {verdict(rss <= 300)} |")
    sk = load("sklearn_trees", E)
    for depth in ("d3", "d8"):
        ours = load("offline_" + depth, E)
        if ours and sk:
            o = median(ours["train_ms"])
            s = median([x["fit_ms"] for x in sk[depth]])
            what = "depth 3, 10 leaves" if depth == "d3" else "depth 8"
            w(f"| 5 | tree fit, {what}, {n(sk['rows_train'])} rows: ours / scikit-learn "
              f"DecisionTreeRegressor (medians) | {n(o)} / {n(s)} ms = **{s / o:.1f}× faster** | "
              f"≥ 5× | {verdict(s / o >= 5)} |")
    for ours_key, hgb_key, threads in (("offline_default", "sklearn_hgb", "all cores"),
                                       ("offline_default_1t", "sklearn_hgb_1t", "one thread")):
        ours_b, hgb = load(ours_key, E), load(hgb_key, E)
        if ours_b and hgb:
            o = ours_b["train_ms"][0]
            s = hgb["hgb"]["fit_ms"]
            w(f"| 5 | `boosted` / HistGradientBoostingRegressor, {emeta['hgb_rounds']} rounds, "
              f"early stopping off, {threads} each: fit | {n(o)} / {n(s)} ms = "
              f"**{s / o:.2f}×** | faster (issue 14; goal 2×) | {verdict(s > o)} |")
    ray, rmeta = load("ray", R), load("meta", R)
    if ray:
        when = "" if R == M or not rmeta else f" (on {rmeta['date']}, commit `{rmeta['commit']}`)"
        w(f"| 6 | Ray baseline, 4 actors, one row, sequential p50 / p99{when} | "
          f"{n(ray['seq']['p50_us'])} / {n(ray['seq']['p99_us'])} µs; "
          f"{(rmeta or meta).get('in_flight', in_flight)} in flight "
          f"{n(ray['load']['per_s'], 1)} /s | ours ≥ 100× faster (p50) | see the serving p50 above |")
    w("")
    for name in ("tree", "default"):
        t = load("train_" + name, E)
        if t:
            w(f"`train` ({name}): coordinator {n(t['ms'])} ms; per-node fit "
              f"{', '.join(n(x['train_ms']) for x in t['nodes'])} ms; peak RSS per node "
              f"{', '.join(f'{k / 1024:,.0f}' for k in t['rss_kb'])} MB; ensemble RMSE "
              f"{t['ensemble']['rmse']:.3f}.")
            w("")
    if sk:
        w(f"scikit-learn {sk['sklearn']} (`bench/sklearn_baseline.py`). Our tree fits run on the "
          "default threads (all cores), as scikit-learn's trees run on one.")
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

for extra in ("profile.md", "http.md"):
    path = os.path.join(HERE, extra)
    if os.path.exists(path):
        with open(path) as f:
            w(f.read().rstrip("\n"))
        w("")

print("\n".join(out))
