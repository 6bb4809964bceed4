#!/usr/bin/env bash
# Membership at N real nodes (issue 15): starts `SYNTH_ROWS=2000 ./run_cluster.sh N --synthetic
# --detach`, then measures, on the running nodes:
#   - membership bytes each node sends per second (its `status`, two calls SECS apart, each
#     rated by the node's own uptime between them);
#   - the CPU all N node processes use while idle (/proc/PID/stat over 30 s);
#   - a `train` asked of node 1: its wall time, how many nodes completed, and the bytes node 1
#     sent over all its links meanwhile (membership's own bytes taken out), beside its model's size;
#   - one-row global predictions from node 1, one at a time: p50, p99, how many nodes answered;
#   - SIGSTOP of the last node: when every other node logged it suspect, down, and up again after
#     SIGCONT; kill -9 of the node before it: when every other node logged it down.
# Then stops exactly the nodes it started. usage: bench/membership.sh N
set -euo pipefail
N=${1:?usage: bench/membership.sh N}
((N >= 3)) || { echo "N must be at least 3" >&2; exit 2; }
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=target/release/ensemble-node
trap './run_cluster.sh stop >/dev/null 2>&1 || true' EXIT
SYNTH_ROWS=2000 ./run_cluster.sh "$N" --synthetic --detach | grep -E "all $N nodes|warning" || true
sleep 15 # the first training of every node
status() {
    "$BIN" ctl "127.0.0.1:$((7300 + $1))" --config state/conf/synth1.toml --ca state/tls/ca.pem \
        --cert state/tls/operator.pem --key state/tls/operator.key status
}
bytes_and_uptime() { status "$1" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["membership"]["sent_bytes"], r["uptime_ms"])'; }
declare -A b0 u0
for k in $(seq 1 "$N"); do read -r b0[$k] u0[$k] < <(bytes_and_uptime "$k"); done
pids=$(awk '{print $1}' state/cluster.pids)
ticks() { local t=0 s; for p in $pids; do s=$(awk '{print $14 + $15}' "/proc/$p/stat"); t=$((t + s)); done; echo $t; }
c0=$(ticks); t0=$(date +%s%N)
sleep 30
c1=$(ticks); t1=$(date +%s%N)
for k in $(seq 1 "$N"); do
    read -r b u < <(bytes_and_uptime "$k")
    echo "$((b - b0[$k])) $((u - u0[$k]))"
done | python3 -c "
import statistics, sys
rates = [int(b) / (int(ms) / 1000) for b, ms in (l.split() for l in sys.stdin)]
secs = ($t1 - $t0) / 1e9
cpu = ($c1 - $c0) / 100 / secs
print(f'membership bytes sent per node per second: mean {statistics.mean(rates):.1f} (min {min(rates):.1f}, max {max(rates):.1f})')
print(f'idle CPU of the $N node processes: {cpu * 100:.1f} % of one core, {cpu * 50:.1f} % of the 2-core machine')
"

# A `train` from node 1: the bytes it sends, all links together, membership excluded.
ctl1() {
    "$BIN" ctl 127.0.0.1:7301 --config state/conf/synth1.toml --ca state/tls/ca.pem \
        --cert state/tls/operator.pem --key state/tls/operator.key "$@"
}
traffic() {
    local links member
    links=$(ctl1 peers | python3 -c 'import json,sys; print(sum(p["sent_bytes"] or 0 for p in json.load(sys.stdin)["peers"]))')
    member=$(ctl1 status | python3 -c 'import json,sys; print(json.load(sys.stdin)["membership"]["sent_bytes"])')
    echo "$links $member"
}
read -r l0 m0 < <(traffic)
t0=$(date +%s%N)
ctl1 train >state/train.json || true
t1=$(date +%s%N)
read -r l1 m1 < <(traffic)
model=$(ctl1 model | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes"])')
python3 - "$N" "$l0" "$m0" "$l1" "$m1" "$t0" "$t1" "$model" <<'PY'
import json, sys
n, l0, m0, l1, m1, t0, t1, model = map(int, sys.argv[1:])
r = json.load(open("state/train.json"))
sent = (l1 - l0) - (m1 - m0)
print(f"train from node 1: {(t1 - t0) / 1e9:.1f} s, {r.get('completed')}/{r.get('asked')} nodes completed, "
      f"failed {len(r.get('failed', []))}; node 1 sent {sent:,} bytes besides membership "
      f"({sent / (n - 1):,.0f} per peer; its model is {model:,} bytes, "
      f"so {(sent - (n - 1) * model) / (n - 1):,.0f} bytes per peer besides its own model)")
PY

# One-row global predictions asked of node 1, one at a time, every node up with its model.
"$BIN" bench 127.0.0.1:7301 --config state/conf/synth1.toml --ca state/tls/ca.pem \
    --cert state/tls/operator.pem --key state/tls/operator.key \
    --rows-from state/shards/synth1.csv --requests 1000 | python3 -c "
import json, sys
r = json.load(sys.stdin)
print(f'one-row global predict at node 1, 1,000 in turn: p50 {r[\"p50_us\"]} us, p99 {r[\"p99_us\"]} us, '
      f'answered by {r[\"answered\"]} (nodes: requests), errors {r[\"errors\"]}')
"

# When each other node logged node K suspect / down after T0, and up after T1.
detection() {
    python3 - "$N" "$1" "$2" "$3" "$4" <<'PY'
import datetime as dt, sys
n, k, what, t0, t1 = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
at = lambda s: dt.datetime.fromisoformat(s.rstrip("Z")[:26])
t0, t1 = at(t0), at(t1)
seen = {"suspect": [], "down": [], "up": []}
for i in range(1, n + 1):
    if i == k:
        continue
    first = {}
    for line in open(f"logs/n{i}.log"):
        if f"peer=s{k}" not in line:
            continue
        ts = at(line.split()[0])
        for key, mark in (("suspect", "→ Suspect"), ("down", "→ Down"), ("up", "→ Up")):
            since = t1 if key == "up" else t0
            if mark in line and key not in first and ts >= since:
                first[key] = (ts - since).total_seconds()
    for key, s in first.items():
        seen[key].append(s)
def show(v):
    return f"{len(v)}/{n - 1} nodes, first {min(v):.2f} s, last {max(v):.2f} s" if v else "none"
print(f"{what} s{k}: suspect at {show(seen['suspect'])}; down at {show(seen['down'])}; up again (after SIGCONT) at {show(seen['up'])}")
PY
}
now() { date -u +%Y-%m-%dT%H:%M:%S.%6N; }
pid_of() { awk -v n="n$1" '$2 == n {print $1}' state/cluster.pids; }

t0=$(now); kill -STOP "$(pid_of "$N")"; sleep 10
t1=$(now); kill -CONT "$(pid_of "$N")"; sleep 5
detection "$N" SIGSTOP "$t0" "$t1"
K=$((N - 1))
t0=$(now); kill -9 "$(pid_of "$K")"; sleep 3
detection "$K" "kill -9" "$t0" "$t0"
