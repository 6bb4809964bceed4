#!/usr/bin/env bash
# Starts a local cluster of N ensemble-node processes (default 4).
#
#   ./run_cluster.sh [N]            nodes 2..N in the background (logs in logs/nK.log), node 1 in
#                                   the foreground with its console on this terminal; when node 1
#                                   stops (quit, Ctrl-C, an error) the script stops the nodes it
#                                   started, and only those.
#   ./run_cluster.sh [N] --detach   all N in the background; prints their addresses and writes
#                                   their PIDs to state/cluster.pids.
#   ./run_cluster.sh stop           stops the nodes listed in state/cluster.pids.
#   ./run_cluster.sh [N] --synthetic [--detach]
#                                   a cluster on synthetic shards: node K gets its own generated
#                                   shard (ensemble-node gen, SYNTH_ROWS rows, default 5000) and a
#                                   config in state/conf/synthK.toml (cluster "synthetic").
#
# Nodes 1-4 use conf/node1.toml ... conf/node4.toml. Node K > 4 gets state/conf/nodeK.toml: a copy
# of conf/node((K-1)%4+1).toml (so the House Prices shards are reused round-robin) with its own id,
# state dir and a free port, seeded by node 1. With --detach the script reports how long the
# cluster took to converge and each node's memory (resident set). Node K serves its HTTP API
# (status page, /v1 JSON, Open Inference Protocol /v2, /metrics) over HTTPS on
# https://127.0.0.1:(8100+K)/ (curl --cacert state/tls/ca.pem ...).
# Every node speaks mutual TLS: on first use the script creates the cluster CA and `operator` and
# `reader` client certificates under state/tls/ (ensemble-node certs), kept for later runs; node
# certificates are issued afresh on every start, naming 127.0.0.1 for HTTPS clients. The script
# drives the nodes as the operator.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

PID_FILE=state/cluster.pids
LOG_DIR=logs
GEN_CONF_DIR=state/conf
BIN="${CARGO_TARGET_DIR:-target}/release/ensemble-node"
# How long a node gets to answer its first `status`.
START_SECONDS=20

usage() {
    sed -n '2,25s/^# \{0,1\}//p' "$0"
}

die() {
    echo "run_cluster.sh: $*" >&2
    exit 1
}

# The quoted value of `key = "..."` in the [node] table of a config file.
node_key() {
    local file=$1 key=$2
    sed -n '/^\[node\]/,/^\[/{s/^'"$key"' *= *"\(.*\)".*/\1/p}' "$file" | head -n 1
}

# Whether something accepts connections on 127.0.0.1:PORT (or whichever host:port is given).
listening() {
    local host=${1%:*} port=${1##*:}
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

# Whether PID is alive and is an ensemble-node (a PID from an old file may have been reused).
is_our_node() {
    local pid=$1 cmd
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -d /proc/$pid ]]; then
        cmd=$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null) || return 1
    else
        cmd=$(ps -p "$pid" -o args= 2>/dev/null || true)
    fi
    [[ $cmd == *ensemble-node* ]]
}

# Stops the given PIDs: SIGTERM (a node leaves the cluster cleanly), then SIGKILL after 5 s.
stop_pids() {
    local pid alive i
    for pid in "$@"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for ((i = 0; i < 50; i++)); do
        alive=0
        for pid in "$@"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        ((alive)) || return 0
        sleep 0.1
    done
    for pid in "$@"; do
        if kill -0 "$pid" 2>/dev/null; then
            echo "node pid $pid did not stop after SIGTERM; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

# A detached cluster's nodes that still run, as "pid id addr" lines.
running_from_pid_file() {
    [[ -f $PID_FILE ]] || return 0
    local pid id addr
    while read -r pid id addr; do
        [[ -n ${pid:-} ]] || continue
        if is_our_node "$pid"; then
            echo "$pid $id $addr"
        fi
    done <"$PID_FILE"
}

cmd_stop() {
    if [[ ! -f $PID_FILE ]]; then
        echo "no detached cluster ($PID_FILE does not exist)"
        return 0
    fi
    local pids=() pid id addr
    while read -r pid id addr; do
        pids+=("$pid")
        echo "stopping $id ($addr, pid $pid)"
    done < <(running_from_pid_file)
    if ((${#pids[@]})); then
        stop_pids "${pids[@]}"
    else
        echo "none of the nodes in $PID_FILE is running"
    fi
    rm -f "$PID_FILE"
}

# A free port at or above $1, not already given to another node.
free_port() {
    local port=$1
    while listening "127.0.0.1:$port" || [[ " ${USED_PORTS[*]} " == *" $port "* ]]; do
        port=$((port + 1))
        ((port < 65535)) || die "no free port"
    done
    echo "$port"
}

# The config of synthetic node K, with its generated shard (written once, then reused).
synthetic_config_of() {
    local k=$1 file="$GEN_CONF_DIR/synth$1.toml" shard="state/shards/synth$1.csv"
    local port seed=""
    mkdir -p "$GEN_CONF_DIR" state/shards
    if [[ ! -s $shard ]]; then
        "$BIN" gen --rows "${SYNTH_ROWS:-5000}" --features 10 --seed "$k" --out "$shard" >/dev/null
    fi
    port=$(free_port $((7300 + k)))
    ((k == 1)) || seed="\"$SYNTH_SEED\""
    cat >"$file" <<EOF
# Written by run_cluster.sh --synthetic: node $k of the synthetic cluster.
[node]
id = "s$k"
listen = "127.0.0.1:$port"
seeds = [$seed]
state_dir = "state/synthetic/s$k"

[cluster]
name = "synthetic"

[data]
shard = "$shard"
label = "y"
EOF
    echo "$file"
}

# The config file of node K; writes it for K > 4.
config_of() {
    local k=$1
    if ((SYNTHETIC)); then
        synthetic_config_of "$k"
        return
    fi
    if ((k <= 4)); then
        echo "conf/node$k.toml"
        return
    fi
    local template="conf/node$(((k - 1) % 4 + 1)).toml"
    local file="$GEN_CONF_DIR/node$k.toml"
    local seed port
    seed=$(node_key conf/node1.toml listen)
    port=$(free_port $((7100 + k)))
    mkdir -p "$GEN_CONF_DIR"
    {
        echo "# Written by run_cluster.sh from $template: node $k, same shard, its own port."
        sed -e '/^\[node\]/,/^\[/{' \
            -e "s|^id *=.*|id = \"n$k\"|" \
            -e "s|^listen *=.*|listen = \"127.0.0.1:$port\"|" \
            -e "s|^seeds *=.*|seeds = [\"$seed\"]|" \
            -e "s|^state_dir *=.*|state_dir = \"state/n$k\"|" \
            -e '}' -e '/^# Node [0-9]* of/d' "$template"
    } >"$file"
    echo "$file"
}

# Waits until the node at ADDR (config FILE, process PID) answers `status`; dies if it exits.
wait_ready() {
    local pid=$1 addr=$2 file=$3 log=$4 i
    for ((i = 0; i < START_SECONDS * 10; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "node with $file exited; the end of $log:" >&2
            tail -n 20 "$log" >&2 || true
            return 1
        fi
        if "$BIN" ctl "$addr" --config "$file" "${CTL_TLS[@]}" --timeout-ms 2000 status \
            >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "node with $file does not answer at $addr after ${START_SECONDS}s (see $log)" >&2
    return 1
}

# Whether node K sees all N members up.
sees_all() {
    local k=$1 answer
    answer=$("$BIN" ctl "${ADDRS[k - 1]}" --config "${CONFIGS[k - 1]}" "${CTL_TLS[@]}" \
        --timeout-ms 2000 status 2>/dev/null || true)
    [[ $answer =~ \"members\":$N[,}] && $answer =~ \"peers_up\":$((N - 1))[,}] ]]
}

# Waits (at most 10 s) until every node sees all N members up; only warns if they do not.
wait_formed() {
    local i k=1
    for ((i = 0; i < 100; i++)); do
        while ((k <= N)) && sees_all "$k"; do
            k=$((k + 1))
        done
        ((k <= N)) || return 0
        sleep 0.1
    done
    echo "warning: n$k does not see all $N nodes up yet" >&2
    return 1
}

N=4
DETACH=0
SYNTHETIC=0
for arg in "$@"; do
    case $arg in
    stop)
        cmd_stop
        exit 0
        ;;
    --detach) DETACH=1 ;;
    --synthetic) SYNTHETIC=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *[!0-9]* | '') die "unknown argument '$arg' (see --help)" ;;
    *) N=$arg ;;
    esac
done
((N >= 1)) || die "N must be at least 1"

if [[ -n $(running_from_pid_file) ]]; then
    die "a detached cluster is running (see $PID_FILE); stop it first: ./run_cluster.sh stop"
fi

# Node K's HTTP port.
http_port() {
    echo $((8100 + $1))
}

echo "building the release binary (cargo build --release)..."
cargo build --release --quiet

TLS_DIR=state/tls
# What ctl needs to reach a TLS node as the cluster's operator.
CTL_TLS=(--ca "$TLS_DIR/ca.pem" --cert "$TLS_DIR/operator.pem" --key "$TLS_DIR/operator.key")

USED_PORTS=()
CONFIGS=()
ADDRS=()
IDS=()
for ((k = 1; k <= N; k++)); do
    file=$(config_of "$k")
    addr=$(node_key "$file" listen)
    USED_PORTS+=("${addr##*:}")
    ((k > 1)) || SYNTH_SEED=$addr
    [[ -n $addr ]] || die "$file has no [node] listen address"
    if listening "$addr"; then
        die "something already listens on $addr (node $k, $file)"
    fi
    if listening "127.0.0.1:$(http_port "$k")"; then
        die "something already listens on 127.0.0.1:$(http_port "$k") (node $k's HTTP port)"
    fi
    CONFIGS+=("$file")
    ADDRS+=("$addr")
    IDS+=("$(node_key "$file" id)")
done
mkdir -p "$LOG_DIR"

# Certificates: the CA and the client ones are made once and kept; node certificates are issued
# on every start (the same CA signs them), so that each names 127.0.0.1 for HTTPS clients, which
# check the address they dial, also when an older run made them.
wanted=(--ip 127.0.0.1)
for id in "${IDS[@]}"; do
    wanted+=(--node "$id")
done
for id in operator reader; do
    [[ -s $TLS_DIR/$id.pem && -s $TLS_DIR/$id.key ]] || wanted+=("--$id" "$id")
done
"$BIN" certs --dir "$TLS_DIR" "${wanted[@]}" >/dev/null || die "cannot create certificates in $TLS_DIR"

# The environment that gives node K its TLS identity.
tls_env() {
    local id=${IDS[$1 - 1]}
    echo "ENSEMBLE__TLS__CA=$TLS_DIR/ca.pem ENSEMBLE__TLS__CERT=$TLS_DIR/$id.pem ENSEMBLE__TLS__KEY=$TLS_DIR/$id.key"
}

STARTED=()
DETACHED=()
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local pid alive=()
    for pid in "${STARTED[@]}"; do
        is_our_node "$pid" && alive+=("$pid")
    done
    if ((${#alive[@]})); then
        echo "stopping the nodes this script started (pids ${alive[*]})..." >&2
        stop_pids "${alive[@]}"
    fi
    # A detached start that failed half-way leaves no pid file behind.
    if ((DETACH && status != 0 && ${#DETACHED[@]} == 0)); then
        rm -f "$PID_FILE"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts node K in the background (stdin closed: the node keeps running), logs in logs/nK.log.
start_background() {
    local k=$1 log="$LOG_DIR/n$1.log"
    if ((DETACH)) && command -v setsid >/dev/null; then
        # Its own session: a later Ctrl-C or a closed terminal does not reach it.
        env $(tls_env "$k") ENSEMBLE__HTTP__LISTEN="127.0.0.1:$(http_port "$k")" \
            setsid "$BIN" --config "${CONFIGS[k - 1]}" </dev/null >"$log" 2>&1 &
    else
        env $(tls_env "$k") ENSEMBLE__HTTP__LISTEN="127.0.0.1:$(http_port "$k")" \
            nohup "$BIN" --config "${CONFIGS[k - 1]}" </dev/null >"$log" 2>&1 &
    fi
    STARTED+=("$!")
}

if ((DETACH)); then
    started_at=$(date +%s%N)
    for ((k = 1; k <= N; k++)); do
        start_background "$k"
    done
    mkdir -p "$(dirname "$PID_FILE")"
    : >"$PID_FILE"
    for ((k = 1; k <= N; k++)); do
        wait_ready "${STARTED[k - 1]}" "${ADDRS[k - 1]}" "${CONFIGS[k - 1]}" "$LOG_DIR/n$k.log"
        echo "${STARTED[k - 1]} n$k ${ADDRS[k - 1]}" >>"$PID_FILE"
    done
    wait_formed && converged_ms=$((($(date +%s%N) - started_at) / 1000000))
    # From here on the nodes belong to the pid file, not to this script.
    DETACHED=("${STARTED[@]}")
    STARTED=()
    echo "cluster of $N nodes running in the background:"
    for ((k = 1; k <= N; k++)); do
        rss=$(awk '/^VmRSS:/ {printf "%.1f MB", $2 / 1024}' "/proc/${DETACHED[k - 1]}/status" \
            2>/dev/null || echo "?")
        printf '  n%-3s %-21s pid %-8s rss %-9s config %-26s log %s\n' "$k" "${ADDRS[k - 1]}" \
            "${DETACHED[k - 1]}" "$rss" "${CONFIGS[k - 1]}" "$LOG_DIR/n$k.log"
    done
    if [[ -n ${converged_ms:-} ]]; then
        echo "all $N nodes started, and each sees all the others up, in ${converged_ms} ms"
    fi
    echo "HTTPS (status page, /v1, /v2, /metrics; the cluster CA is $TLS_DIR/ca.pem):"
    for ((k = 1; k <= N; k++)); do
        echo "  n$k https://127.0.0.1:$(http_port "$k")/"
    done
    echo "e.g.:          curl --cacert $TLS_DIR/ca.pem https://127.0.0.1:$(http_port 1)/v1/status"
    echo "drive a node:  $BIN ctl ${ADDRS[0]} --config ${CONFIGS[0]} ${CTL_TLS[*]} status"
    echo "stop them:     ./run_cluster.sh stop"
    exit 0
fi

for ((k = 2; k <= N; k++)); do
    start_background "$k"
done
for ((k = 2; k <= N; k++)); do
    wait_ready "${STARTED[k - 2]}" "${ADDRS[k - 1]}" "${CONFIGS[k - 1]}" "$LOG_DIR/n$k.log"
done
case $N in
1) others="no other node" ;;
2) others="n2 in the background (logs in $LOG_DIR/)" ;;
*) others="n2..n$N in the background (logs in $LOG_DIR/)" ;;
esac
cat <<EOF
cluster of $N nodes: $others, n1 (${ADDRS[0]}) here.
n1's log: $LOG_DIR/n1.log. Type 'help' for the commands; 'quit' or Ctrl-C stops the cluster.
HTTPS: node K on https://127.0.0.1:(8100+K)/ (n1: https://127.0.0.1:$(http_port 1)/), CA $TLS_DIR/ca.pem:
  curl --cacert $TLS_DIR/ca.pem https://127.0.0.1:$(http_port 1)/v1/status
EOF
export ENSEMBLE__HTTP__LISTEN="127.0.0.1:$(http_port 1)"
export ENSEMBLE__TLS__CA=$TLS_DIR/ca.pem ENSEMBLE__TLS__CERT=$TLS_DIR/${IDS[0]}.pem \
    ENSEMBLE__TLS__KEY=$TLS_DIR/${IDS[0]}.key
# Node 1 runs as a child we wait for, so that a SIGTERM to this script stops it too. A background
# child's stdin would be /dev/null; hand it this script's stdin (the terminal) through fd 3.
exec 3<&0
if [[ -t 0 ]]; then
    "$BIN" --config "${CONFIGS[0]}" <&3 3<&- 2>"$LOG_DIR/n1.log" &
else
    # Commands piped in are held until every node sees the others, so the first one (say,
    # `train`) involves the whole cluster rather than whoever has joined so far.
    { wait_formed >/dev/null 2>&1 || true; cat <&3; } 3<&3 | "$BIN" --config "${CONFIGS[0]}" \
        2>"$LOG_DIR/n1.log" &
fi
NODE1=$!
STARTED+=("$NODE1")
exec 3<&-
set +e
wait "$NODE1"
status=$?
set -e
if ((status != 0)); then
    echo "n1 exited with status $status; the end of $LOG_DIR/n1.log:" >&2
    tail -n 20 "$LOG_DIR/n1.log" >&2 || true
fi
exit "$status"
