# Helpers shared by bench/run.sh and bench/profile.sh (sourced, not run).
#
# After sourcing: $ROOT (the repository), $BIN, $TMP (a fresh temporary directory), $M
# (measurements: one JSON file per key), and a trap that stops every node started with
# start_node, by PID, and nothing else.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/release/ensemble-node
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ensemble-bench.XXXXXX")
M=$TMP/m
mkdir -p "$M" "$TMP/logs"
: >"$TMP/commands"

# Every node started here, by PID; the trap stops these and nothing else.
PIDS=()

log() { echo "bench: $*" >&2; }

die() {
    echo "bench: $*" >&2
    exit 1
}

# stop_pids PID...: SIGTERM (a node leaves its cluster), SIGKILL after $STOP_GRACE_S (5) s.
stop_pids() {
    local pid alive=()
    for pid in "$@"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            alive+=("$pid")
        fi
    done
    for _ in $(seq $((${STOP_GRACE_S:-5} * 10))); do
        local still=()
        for pid in "${alive[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then still+=("$pid"); fi
        done
        alive=("${still[@]}")
        if [ ${#alive[@]} -eq 0 ]; then break; fi
        sleep 0.1
    done
    for pid in "${alive[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ ${#PIDS[@]} -gt 0 ]; then stop_pids "${PIDS[@]}"; fi
    if [ "${BENCH_KEEP:-0}" = 1 ] || [ $rc -ne 0 ]; then
        echo "bench: temporary directory kept: $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run CMD...: runs a command and records it (temporary paths as $TMP) in the command list.
run() {
    local shown
    shown=$(printf '%q ' "$@")
    shown=${shown//$TMP/\$TMP}
    shown=${shown//$ROOT\//}
    echo "${shown% }" >>"$TMP/commands"
    "$@"
}

# note TEXT: a comment line in the command list.
note() {
    local text="$*"
    echo "# ${text//$TMP/\$TMP}" >>"$TMP/commands"
}

# save KEY: stdin (one JSON line) → $M/KEY.json, checked to be JSON.
save() {
    local key=$1
    cat >"$M/$key.json"
    jq -e . "$M/$key.json" >/dev/null || die "$key: not JSON: $(cat "$M/$key.json")"
}

# A free loopback port (bind test; the node binds it right after).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# write_config FILE ID LISTEN SEEDS(toml list) SHARD LABEL DROP(toml list) MODEL(toml lines)
#   [EXTRA_CLUSTER(toml lines)]
write_config() {
    local file=$1 id=$2 listen=$3 seeds=$4 shard=$5 label=$6 drop=$7 model=$8 extra=${9:-}
    cat >"$file" <<EOF
[node]
id = "$id"
listen = "$listen"
seeds = $seeds
state_dir = "$TMP/state/$id"
train_on_join = false

[cluster]
name = "bench"
train_timeout_ms = 600000
$extra

[data]
shard = "$shard"
label = "$label"
task = "regression"
drop = $drop

[model]
$model

[drift]
enabled = false
EOF
}

ctl() { "$BIN" ctl "$1" --cluster bench "${@:2}"; }

# start_node CONFIG LOG [WRAPPER...]: starts one node in the background; its PID in $STARTED.
start_node() {
    local config=$1 logfile=$2
    shift 2
    "$@" "$BIN" --config "$config" </dev/null >/dev/null 2>"$logfile" &
    STARTED=$!
    PIDS+=("$STARTED")
}

# start_console_node CONFIG LOG: like start_node, with the node's `--json` console reading a
# FIFO this shell writes through fd 3 (see console) and answering into $TMP/console.out.
start_console_node() {
    local config=$1 logfile=$2
    rm -f "$TMP/console.in"
    mkfifo "$TMP/console.in"
    : >"$TMP/console.out"
    "$BIN" --config "$config" --json <"$TMP/console.in" >"$TMP/console.out" 2>"$logfile" &
    STARTED=$!
    PIDS+=("$STARTED")
    exec 3>"$TMP/console.in"
}

# console LINE...: sends a command to the console of start_console_node and prints its one-line
# JSON answer (waits up to CONSOLE_WAIT_S, 600 s).
console() {
    local before
    before=$(wc -l <"$TMP/console.out")
    echo "$*" >&3
    for _ in $(seq $((${CONSOLE_WAIT_S:-600} * 20))); do
        if [ "$(wc -l <"$TMP/console.out")" -gt "$before" ]; then
            tail -n 1 "$TMP/console.out"
            return 0
        fi
        sleep 0.05
    done
    die "no answer from the console to: $*"
}

# wait_members ADDR N [SECONDS]: until the node at ADDR sees N members, all up.
wait_members() {
    local addr=$1 n=$2 secs=${3:-60} status=
    for _ in $(seq $((secs * 10))); do
        if status=$(ctl "$addr" --timeout-ms 2000 status 2>/dev/null) &&
            [ "$(jq -r '"\(.members) \(.peers_up)"' <<<"$status")" = "$n $((n - 1))" ]; then
            return 0
        fi
        sleep 0.1
    done
    die "the node at $addr did not see $n members up within $secs s; last status: ${status:-none}"
}

# start_cluster NAME N SHARD_FN LABEL DROP MODEL [EXTRA_CLUSTER] [WRAPPER for node 1...]:
# N nodes seeded by node 1 on a free port (the others on port 0); node K's shard is
# $(SHARD_FN K). Sets CLUSTER_ADDR and CLUSTER_PIDS; waits until node 1 sees all N up.
start_cluster() {
    local name=$1 n=$2 shard_fn=$3 label=$4 drop=$5 model=$6 extra=${7:-}
    shift 7 || shift $#
    local port i
    port=$(free_port)
    CLUSTER_ADDR=127.0.0.1:$port
    CLUSTER_PIDS=()
    for i in $(seq "$n"); do
        local seeds='[]' listen=127.0.0.1:0
        if [ "$i" -eq 1 ]; then listen=$CLUSTER_ADDR; else seeds="[\"$CLUSTER_ADDR\"]"; fi
        write_config "$TMP/$name-n$i.toml" "$name$i" "$listen" "$seeds" "$($shard_fn "$i")" \
            "$label" "$drop" "$model" "$extra"
        if [ "$i" -eq 1 ]; then
            start_node "$TMP/$name-n$i.toml" "$TMP/logs/$name-n$i.log" "$@"
            CLUSTER_PIDS+=("$STARTED")
            wait_members "$CLUSTER_ADDR" 1 120
        else
            start_node "$TMP/$name-n$i.toml" "$TMP/logs/$name-n$i.log"
            CLUSTER_PIDS+=("$STARTED")
        fi
    done
    wait_members "$CLUSTER_ADDR" "$n" 120
}

# machine_busy: how busy the whole machine was over the next second, in % of all its CPUs.
machine_busy() {
    local a b
    read -r -a a < <(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat)
    sleep 1
    read -r -a b < <(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat)
    echo $((100 * (b[0] - a[0]) / (b[0] - a[0] + b[1] - a[1] + 1)))
}

# CPU ticks of this run so far: its live nodes, plus every child this shell has waited for
# (clients, stopped nodes, Python; /proc/$$/stat cutime + cstime).
own_ticks() {
    local t pid
    t=$(awk '{print $16 + $17}' "/proc/$$/stat")
    for pid in "${PIDS[@]}"; do
        if [ -r "/proc/$pid/stat" ]; then t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0))); fi
    done
    echo "$t"
}

# Busy and idle ticks of the whole machine.
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat; }

PHASE=
# quiet PHASE: the machine is shared with other jobs. Ends the previous phase (recording the
# share of the machine that other jobs used during it: machine busy time minus this run's own),
# then, with this run's nodes idle, waits up to BENCH_WAIT_IDLE_S seconds for the machine to be
# under 10 % busy, and starts PHASE. The report lists both figures per phase.
quiet() {
    end_phase
    local phase=$1 busy waited=0
    busy=$(machine_busy)
    while [ "$busy" -ge 10 ] && [ $waited -lt "${BENCH_WAIT_IDLE_S:-0}" ]; do
        busy=$(machine_busy)
        waited=$((waited + 1))
    done
    if [ "$busy" -ge 10 ]; then log "$phase: the machine is $busy % busy with other jobs"; fi
    PHASE=$phase PHASE_BUSY=$busy PHASE_WAITED=$waited
    read -r PHASE_M_BUSY PHASE_M_IDLE < <(machine_ticks)
    PHASE_OWN=$(own_ticks)
}

end_phase() {
    [ -n "$PHASE" ] || return 0
    local busy idle own others
    read -r busy idle < <(machine_ticks)
    own=$(own_ticks)
    busy=$((busy - PHASE_M_BUSY))
    idle=$((idle - PHASE_M_IDLE))
    others=$((busy - (own - PHASE_OWN)))
    if [ $others -lt 0 ]; then others=0; fi
    jq -nc --arg p "$PHASE" --argjson b "$PHASE_BUSY" --argjson w "$PHASE_WAITED" \
        --argjson o "$((100 * others / (busy + idle + 1)))" \
        '{phase: $p, busy: $b, waited_s: $w, others_during: $o}' >>"$M/busy.jsonl"
    PHASE=
}

# measured PHASE CMD...: runs CMD as one phase (see quiet). When other jobs used 10 % or more of
# the machine during it, runs it again, BENCH_RETRIES (2) times at most; the report keeps the
# last attempt.
measured() {
    local phase=$1 attempt=1 others
    shift
    while :; do
        quiet "$phase"
        "$@"
        end_phase
        others=$(tail -n 1 "$M/busy.jsonl" | jq .others_during)
        if [ "$others" -lt 10 ] || [ $attempt -gt "${BENCH_RETRIES:-2}" ]; then break; fi
        log "$phase: other jobs used $others % of the machine meanwhile; once more"
        note "again: other jobs used $others % of the machine during the last attempt"
        attempt=$((attempt + 1))
    done
}

# pin PID CPUS: sets the CPU affinity of every thread of PID (taskset -c syntax).
pin() {
    local t
    for t in /proc/"$1"/task/*; do taskset -pc "$2" "${t##*/}" >/dev/null; done
}

vm_hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# cpu_ticks PID: user and system time so far, in clock ticks ("utime stime").
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }

TREE_MODEL='kind = "tree"
max_depth = 3
max_leaf_nodes = 10'
DEFAULT_MODEL='# the default learner (boosted); no keys'
HP=$ROOT/shards/house_prices

# hp_shard K: House Prices shard of node K (A-D, round-robin).
hp_shard() { echo "$HP/$(echo A B C D | cut -d' ' -f$((($1 - 1) % 4 + 1))).csv"; }
