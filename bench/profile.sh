#!/usr/bin/env bash
# Where the time goes, for the targets bench/run.sh reports. Not part of CI.
#
#   bench/profile.sh          about 10 minutes; prints the summaries (bench/profile.md quotes them)
#
# 1. CPU time per global prediction of every process (user / system, from /proc/PID/stat), one
#    request at a time and 64 in flight: a 4-node House Prices cluster (default learner), the
#    same grown to 16 nodes (one at a time), and a 4-node generated cluster (depth-3 trees, 15
#    numeric features). Then one-row predictions with every process pinned to one CPU, and a
#    ping with the node and the client on one CPU or on two.
# 2. callgrind, the counters zeroed before the measured part and dumped after it:
#    a. node 1 (the coordinator), 2,000 sequential one-row predictions, House Prices, 4 nodes;
#    b. node 2 (a peer), the same;
#    c. node 1, predict-file of 20,000 rows through ctl, generated cluster, default learner;
#    d. the ctl client itself, predict-file of 100,000 rows, depth-3 trees.
# With PROFILE_TRAINING=1 also (issue 7): callgrind of node 1 during `train` on 4 ×
# PROFILE_TRAIN_ROWS rows (100,000) with depth-3 trees, of the default learner's fit (40 rounds,
# offline), and massif of node 1 during that `train`.
# (`perf stat -e instructions` is not supported on this VM, hence valgrind.)
#
# BENCH_SKIP_BUILD=1 uses target/release/ensemble-node as it is; BENCH_KEEP=1 keeps the raw
# profiles (printed path); PROFILE_CPU_ONLY=1 stops after part 1 (no valgrind).
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

TRAIN_ROWS=${PROFILE_TRAIN_ROWS:-100000}
STOP_GRACE_S=60 # a node under valgrind takes a while to write its profile and exit
command -v valgrind >/dev/null || die "valgrind is needed (apt-get install valgrind)"

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build --release"
    cargo build --release >&2
fi
echo "commit $(git rev-parse --short HEAD); load average $(cut -d' ' -f1-3 /proc/loadavg)"

# A node under valgrind runs ~50× slower: give it room before its peers call it down.
SLOW='heartbeat_ms = 2000
acceptable_pause_ms = 60000
request_timeout_ms = 60000'

for s in A B C D; do
    "$BIN" gen --rows 20000 --features 15 --seed "$(printf '%d' "'$s")" --out "$TMP/small$s.csv" >/dev/null
done
"$BIN" gen --rows 20000 --features 15 --seed 99 --out "$TMP/predict.csv" >/dev/null
"$BIN" gen --rows 100000 --features 15 --seed 98 --out "$TMP/predict100k.csv" >/dev/null
head -n 2001 "$TMP/predict.csv" >"$TMP/rows2k.csv"
small_shard() { echo "$TMP/small$(echo A B C D | cut -d' ' -f"$1").csv"; }
train_shard() { echo "$TMP/train$(echo A B C D | cut -d' ' -f"$1").csv"; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# cpu_per_request NAME ROWS_CSV [SPECS]: CPU µs per request of each node and of the client, for
# each "IN_FLIGHT REQUESTS" of SPECS.
cpu_per_request() {
    local name=$1 rows=$2 specs=${3:-"1 3000,64 30000"} inflight n before i line spec
    IFS=, read -r -a specs <<<"$specs"
    for spec in "${specs[@]}"; do
        read -r inflight n <<<"$spec"
        "$BIN" bench "$CLUSTER_ADDR" --cluster bench --rows-from "$rows" --requests 500 >/dev/null
        before=()
        for i in "${CLUSTER_PIDS[@]}"; do before+=("$(cpu_ticks "$i")"); done
        line=$( { /usr/bin/time -f '%U %S' "$BIN" bench "$CLUSTER_ADDR" --cluster bench --rows-from "$rows" \
            --requests "$n" --in-flight "$inflight" 2>"$TMP/time"; } | jq -r '"p50 \(.p50_us) µs, \(.per_s)/s"')
        printf '  %-10s %2s in flight: %-22s CPU µs per request (user+system):' "$name" "$inflight" "$line"
        i=0
        for pid in "${CLUSTER_PIDS[@]}"; do
            read -r u0 s0 <<<"${before[$i]}"
            read -r u1 s1 < <(cpu_ticks "$pid")
            printf ' n%d %d+%d' $((i + 1)) $(((u1 - u0) * TICK_US / n)) $(((s1 - s0) * TICK_US / n))
            i=$((i + 1))
        done
        awk -v n="$n" '{printf " client %d+%d\n", $1 * 1e6 / n, $2 * 1e6 / n}' "$TMP/time"
    done
}

echo
echo "== 1. CPU per global prediction"
start_cluster hp 4 hp_shard SalePrice '["Id"]' "$DEFAULT_MODEL"
ctl "$CLUSTER_ADDR" train | jq -e .ok >/dev/null
cpu_per_request "hp" "$HP/test.csv"
stop_pids "${CLUSTER_PIDS[@]}"
start_cluster hp16 16 hp_shard SalePrice '["Id"]' "$DEFAULT_MODEL"
ctl "$CLUSTER_ADDR" train | jq -e .ok >/dev/null
cpu_per_request "hp16" "$HP/test.csv" "1 3000"
stop_pids "${CLUSTER_PIDS[@]}"
start_cluster tree 4 small_shard y '[]' "$TREE_MODEL"
ctl "$CLUSTER_ADDR" train | jq -e .ok >/dev/null
cpu_per_request "tree" "$TMP/rows2k.csv"
if [ "$(nproc)" -ge 2 ]; then
    echo
    echo "== 1b. waking a process on the other CPU: one-row predictions, depth-3 trees, sequential"
    for where in "every process on CPU 0" "default placement"; do
        if [ "$where" = "default placement" ]; then cpus="0-$(($(nproc) - 1))"; else cpus=0; fi
        for pid in "${CLUSTER_PIDS[@]}"; do pin "$pid" "$cpus"; done
        printf '  %-24s %s\n' "$where:" "$(taskset -c "$cpus" "$BIN" bench "$CLUSTER_ADDR" --cluster bench \
            --rows-from "$TMP/rows2k.csv" --requests 3000 | jq -c '{p50_us, p99_us, per_s}')"
    done
    for cpus in "0 0" "0 1"; do
        read -r a b <<<"$cpus"
        pin "${CLUSTER_PIDS[0]}" "$a"
        printf '  ping, node 1 on CPU %s, client on CPU %s: %s\n' "$a" "$b" "$(taskset -c "$b" "$BIN" bench \
            "$CLUSTER_ADDR" --cluster bench --ping --requests 3000 | jq -c '{p50_us, p99_us}')"
    done
fi
stop_pids "${CLUSTER_PIDS[@]}"

if [ "${PROFILE_CPU_ONLY:-0}" = 1 ]; then exit 0; fi

CG=(valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.%p")

# cg_hp WHICH: a 4-node House Prices cluster with node WHICH (1 or 2) under callgrind; 2,000
# sequential one-row predictions through node 1.
cg_hp() {
    local which=$1 port addr i seeds listen v
    port=$(free_port)
    addr=127.0.0.1:$port
    CLUSTER_PIDS=()
    for i in 1 2 3 4; do
        seeds="[\"$addr\"]" listen=127.0.0.1:0
        if [ "$i" -eq 1 ]; then seeds='[]' listen=$addr; fi
        write_config "$TMP/cg$which-n$i.toml" "cg$which-$i" "$listen" "$seeds" "$(hp_shard "$i")" SalePrice \
            '["Id"]' "$DEFAULT_MODEL" "$SLOW"
        if [ "$i" -eq "$which" ]; then
            start_node "$TMP/cg$which-n$i.toml" "$TMP/logs/cg$which-n$i.log" "${CG[@]}"
            v=$STARTED
        else
            start_node "$TMP/cg$which-n$i.toml" "$TMP/logs/cg$which-n$i.log"
        fi
        CLUSTER_PIDS+=("$STARTED")
        if [ "$i" -eq 1 ]; then wait_members "$addr" 1 120; fi
    done
    wait_members "$addr" 4 120
    ctl "$addr" train | jq -e .ok >/dev/null
    "$BIN" bench "$addr" --cluster bench --rows-from "$HP/test.csv" --requests 100 --timeout-ms 60000 >/dev/null
    callgrind_control -z "$v" >/dev/null 2>&1
    "$BIN" bench "$addr" --cluster bench --rows-from "$HP/test.csv" --requests 2000 --timeout-ms 60000 |
        jq -c '{p50_us, errors}'
    callgrind_control -d "$v" >/dev/null 2>&1
    python3 bench/profile_summary.py callgrind "$(ls -t "$TMP"/cg."$v".* | head -1)" 2000
    stop_pids "${CLUSTER_PIDS[@]}"
}

echo
echo "== 2a. callgrind, node 1 (coordinator): 2,000 sequential one-row predictions, House Prices, 4 nodes"
cg_hp 1
echo
echo "== 2b. callgrind, node 2 (a peer): the same"
cg_hp 2

echo
echo "== 2c. callgrind, node 1: predict-file 20,000 rows through ctl, default learner"
start_cluster cgpf 4 small_shard y '[]' "$DEFAULT_MODEL" "$SLOW" "${CG[@]}"
V=${CLUSTER_PIDS[0]}
ctl "$CLUSTER_ADDR" train | jq -e .ok >/dev/null
callgrind_control -z "$V" >/dev/null 2>&1
"$BIN" ctl "$CLUSTER_ADDR" --cluster bench --timeout-ms 600000 predict-file "$TMP/predict.csv" \
    "$TMP/predict.out.csv" | jq -c '{ok, rows, ms}'
callgrind_control -d "$V" >/dev/null 2>&1
python3 bench/profile_summary.py callgrind "$(ls -t "$TMP"/cg."$V".* | head -1)" 20000
stop_pids "${CLUSTER_PIDS[@]}"

echo
echo "== 2d. callgrind, the ctl client: predict-file 100,000 rows, depth-3 trees"
start_cluster cgctl 4 small_shard y '[]' "$TREE_MODEL"
ctl "$CLUSTER_ADDR" train | jq -e .ok >/dev/null
valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.client" "$BIN" ctl "$CLUSTER_ADDR" --cluster bench \
    --timeout-ms 600000 predict-file "$TMP/predict100k.csv" "$TMP/predict.out.csv" 2>/dev/null | jq -c '{ok, rows, ms}'
python3 bench/profile_summary.py callgrind "$TMP/cg.client" 100000
stop_pids "${CLUSTER_PIDS[@]}"

if [ "${PROFILE_TRAINING:-0}" != 1 ]; then exit 0; fi

for s in A B C D; do
    "$BIN" gen --rows "$TRAIN_ROWS" --features 15 --seed "$(printf '%d' "'$s")" --out "$TMP/train$s.csv" >/dev/null
done

echo
echo "== T1. callgrind, node 1: train, 4 × $TRAIN_ROWS rows, depth-3 trees"
start_cluster cgtr 4 train_shard y '[]' "$TREE_MODEL" "$SLOW" "${CG[@]}"
V=${CLUSTER_PIDS[0]}
callgrind_control -z "$V" >/dev/null 2>&1
ctl "$CLUSTER_ADDR" train | jq -c '{ok, ms, train_ms: [.nodes[].train_ms]}'
callgrind_control -d "$V" >/dev/null 2>&1
python3 bench/profile_summary.py callgrind "$(ls -t "$TMP"/cg."$V".* | head -1)" 1
stop_pids "${CLUSTER_PIDS[@]}"

echo
echo "== T2. callgrind: the default learner's fit, 40 rounds, one $TRAIN_ROWS-row shard (offline)"
printf '[model]\nn_rounds = 40\n' >"$TMP/r40.toml"
valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.boost" "$BIN" offline --label y --task regression \
    --config "$TMP/r40.toml" "$(train_shard 1)" 2>/dev/null | jq -c '{train_ms: [.nodes[].train_ms]}'
python3 bench/profile_summary.py callgrind "$TMP/cg.boost" 40

echo
echo "== T3. massif, node 1: train, 4 × $TRAIN_ROWS rows, depth-3 trees (heap at the peak)"
start_cluster mstr 4 train_shard y '[]' "$TREE_MODEL" "$SLOW" valgrind --tool=massif \
    --massif-out-file="$TMP/massif.out"
ctl "$CLUSTER_ADDR" train | jq -c '{ok, ms}'
for pid in "${CLUSTER_PIDS[@]:1}"; do echo "  VmHWM of a native peer: $(vm_hwm_kb "$pid") kB"; done
stop_pids "${CLUSTER_PIDS[@]}"
python3 bench/profile_summary.py massif "$TMP/massif.out"
