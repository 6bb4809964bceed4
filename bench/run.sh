#!/usr/bin/env bash
# Benchmarks on loopback, on this machine: measures the serving targets of issue 13 in one run,
# writes bench/results.md and the README's Benchmarks table. Not part of CI.
#
#   bench/run.sh                 the serving targets (about 5 minutes on a 2-core machine once built)
#   bench/run.sh --training      also issue 7's training and fit items (4 × 400,000 rows, scikit-learn)
#   bench/run.sh --with-ray      also issue 7's Ray baseline (installs ray into bench/.venv)
#
# Serving (issue 13), each measure repeated BENCH_REPEATS times in the run, the median reported:
#   - a 4-node House Prices cluster (the default learner on shards A-D): protocol round trips
#     (Ping) and one-row global predictions one at a time, in turn; then IN_FLIGHT predictions
#     in flight for LOAD_MS; then a peer frozen (SIGSTOP) and one killed (SIGKILL) under load;
#   - a cluster of each larger size of BENCH_NODES, started beside the 4-node one: one-row
#     predictions one at a time, BENCH_ALT_ROUNDS rounds, each round the 4-node cluster then the
#     larger one, so that both sizes are measured in the same moments of the machine;
#   - predict-file of each size of BENCH_PF_ROWS on a 4-node generated cluster (15 numeric
#     features), depth-3 trees, then the default learner: rows/s, and the coordinating node's
#     peak RSS over its RSS before (VmHWM after /proc/PID/clear_refs).
#
# Sizes (environment variables):
#   BENCH_REPEATS=3            runs of each serving measure (the median is reported)
#   BENCH_NODES="4 16"         cluster sizes (must start with 4)
#   BENCH_ALT_ROUNDS=6         rounds of a larger size against the 4-node cluster (median reported)
#   BENCH_PF_ROWS="1000000 4000000"  predict-file inputs (the first is repeated, the others run once)
#   BENCH_SHARD_ROWS=100000    training rows per node of the predict-file clusters
#   BENCH_FEATURES=15          feature columns of the generated data
#   BENCH_PING_REQUESTS=5000   round trips per run
#   BENCH_SEQ_REQUESTS=3000    one-at-a-time predictions per run
#   BENCH_LOAD_MS=5000         length of each in-flight run, milliseconds
#   BENCH_IN_FLIGHT=64         requests in flight for the throughput runs
#   BENCH_ROWS=400000          (--training) rows per training shard
#   BENCH_HGB_ROUNDS=400       (--training) boosting rounds, ours and HistGradientBoosting's
#   BENCH_SKIP_BUILD=1         use target/release/ensemble-node as it is
#   BENCH_SKIP_DEFAULT=1       skip the default learner in predict-file (and in --training)
#   BENCH_WAIT_IDLE_S=0        before each phase, wait up to this long for other jobs to leave the
#                              machine (under 10 % busy); how busy it was is reported either way
#   BENCH_RETRIES=1            run a phase again when other jobs used >= 10 % of the machine in it
#   BENCH_KEEP=1               keep the temporary directory (configs, logs, data)
#   BENCH_OUT=bench/results.md where the report goes; BENCH_README=README.md (empty: leave it)
#   BENCH_RAW=bench/results    where the raw measurements go (JSON; report.py renders them)
# Quick run: BENCH_REPEATS=1 BENCH_PF_ROWS=200000 BENCH_LOAD_MS=1000 BENCH_NODES="4 8" bench/run.sh
set -euo pipefail

WITH_RAY=0 TRAINING=0
for arg in "$@"; do
    case "$arg" in
        --with-ray) WITH_RAY=1 ;;
        --training) TRAINING=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "unknown argument: $arg (see --help)" >&2
            exit 2
            ;;
    esac
done

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

REPEATS=${BENCH_REPEATS:-3}
NODES=${BENCH_NODES:-"4 16"}
ALT_ROUNDS=${BENCH_ALT_ROUNDS:-6}
PF_ROWS=${BENCH_PF_ROWS:-"1000000 4000000"}
SHARD_ROWS=${BENCH_SHARD_ROWS:-100000}
FEATURES=${BENCH_FEATURES:-15}
PING_REQUESTS=${BENCH_PING_REQUESTS:-5000}
SEQ_REQUESTS=${BENCH_SEQ_REQUESTS:-3000}
LOAD_MS=${BENCH_LOAD_MS:-5000}
IN_FLIGHT=${BENCH_IN_FLIGHT:-64}
ROWS=${BENCH_ROWS:-400000}
HGB_ROUNDS=${BENCH_HGB_ROUNDS:-400}
OUT=${BENCH_OUT:-bench/results.md}
README=${BENCH_README-README.md}
RAW=${BENCH_RAW:-bench/results}
VENV=bench/.venv
export BENCH_RETRIES=${BENCH_RETRIES:-1}

[ "$(echo "$NODES" | awk '{print $1}')" = 4 ] || die "BENCH_NODES must start with 4"

# ---------------------------------------------------------------------------------------------
# Build and machine facts.

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build --release"
    cargo build --release >&2
fi
[ -x "$BIN" ] || die "$BIN is missing"

LOAD_START=$(cut -d' ' -f1 /proc/loadavg)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null; then COMMIT="$COMMIT (src modified)"; fi
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
jq -n --arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" --arg nproc "$(nproc)" --arg cpu "${CPU:-unknown}" \
    --arg mem "$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)" \
    --arg kernel "$(uname -r)" --arg rustc "$(rustc --version 2>/dev/null || echo unknown)" \
    --arg commit "$COMMIT" --arg rows "$ROWS" --arg features "$FEATURES" --arg nodes "$NODES" \
    --arg in_flight "$IN_FLIGHT" --arg load_ms "$LOAD_MS" --arg seq "$SEQ_REQUESTS" \
    --arg ping "$PING_REQUESTS" --arg repeats "$REPEATS" --arg hgb_rounds "$HGB_ROUNDS" \
    --arg pf_rows "$PF_ROWS" --arg shard_rows "$SHARD_ROWS" --arg args "$*" \
    --arg alt_rounds "$ALT_ROUNDS" \
    --arg load_start "$LOAD_START" --arg training "$TRAINING" \
    '$ARGS.named' | save meta

# run_json KEY CMD...: runs CMD (one JSON line out) under /usr/bin/time, saves its answer with
# the client's own CPU seconds added ("client_cpu_s").
run_json() {
    local key=$1 shown out
    shift
    shown=$(printf '%q ' "$@")
    shown=${shown//$TMP/\$TMP}
    shown=${shown//$ROOT\//}
    echo "${shown% }" >>"$TMP/commands"
    out=$(/usr/bin/time -f '%U %S' -o "$TMP/time" "$@") || true
    jq -c --arg t "$(cat "$TMP/time")" '. + {client_cpu_s: ($t | split(" ") | map(tonumber) | add)}' \
        <<<"$out" | save "$key"
}

# node_ticks PID...: "utime+stime" clock ticks of each, space separated.
node_ticks() {
    local pid
    for pid in "$@"; do awk '{printf "%d ", $14 + $15}' "/proc/$pid/stat"; done
}

TICK_HZ=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------------------------
# predict-file: a 4-node generated cluster per learner, inputs of each size of PF_ROWS.

log "generating 4 × $SHARD_ROWS training rows and predict-file inputs of $PF_ROWS rows"
for s in 1 2 3 4; do
    run "$BIN" gen --rows "$SHARD_ROWS" --features "$FEATURES" --seed $s --out "$TMP/pf$s.csv" >/dev/null
done
for r in $PF_ROWS; do
    run "$BIN" gen --rows "$r" --features "$FEATURES" --seed 99 --out "$TMP/predict-$r.csv" >/dev/null
done
pf_shard() { echo "$TMP/pf$1.csv"; }

# rss_kb PID: resident memory now.
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# pf_measure KEY CMD...: one predict-file (CMD prints its JSON answer), with the coordinator's
# RSS before and peak during it, and the CPU every node spent.
pf_measure() {
    local key=$1 before ticks0 ticks1
    shift
    echo 5 >"/proc/${PF_PIDS[0]}/clear_refs" 2>/dev/null || true
    before=$(rss_kb "${PF_PIDS[0]}")
    ticks0=$(node_ticks "${PF_PIDS[@]}")
    "$@"
    ticks1=$(node_ticks "${PF_PIDS[@]}")
    jq -e '.ok' "$M/pf_tmp.json" >/dev/null || die "$key: predict-file failed: $(cat "$M/pf_tmp.json")"
    jq -c --arg hwm "$(vm_hwm_kb "${PF_PIDS[0]}")" --arg before "$before" --arg t0 "$ticks0" \
        --arg t1 "$ticks1" --arg hz "$TICK_HZ" \
        '. + {coordinator_hwm_kb: ($hwm | tonumber), coordinator_rss_before_kb: ($before | tonumber),
              node_cpu_s: ([($t1 | split(" ") | map(select(. != "") | tonumber)),
                            ($t0 | split(" ") | map(select(. != "") | tonumber))]
                           | transpose | map((.[0] - .[1]) / ($hz | tonumber)))}' \
        "$M/pf_tmp.json" | save "$key"
    rm -f "$M/pf_tmp.json" "$TMP/predict.out.csv"
}

# Through ctl (the client parses the file) and, for the tree learner, at node 1's console (the
# node reads the file itself).
pf_ctl() {
    run_json pf_tmp "$BIN" ctl "$PF_ADDR" --cluster bench predict-file "$TMP/predict-$1.csv" \
        "$TMP/predict.out.csv"
}
pf_console() {
    echo "predict-file $TMP/predict-$1.csv $TMP/predict.out.csv" | sed "s|$TMP|\$TMP|g; s|^|# console of node 1: |" \
        >>"$TMP/commands"
    console "predict-file $TMP/predict-$1.csv $TMP/predict.out.csv" | save pf_tmp
}

pf_phase() {
    local name=$1 first=1 r rows runs
    for rows in $PF_ROWS; do
        runs=1
        if [ $first = 1 ]; then runs=$REPEATS; fi
        first=0
        for r in $(seq "$runs"); do
            log "$name: predict-file, $rows rows, through ctl (run $r of $runs)"
            pf_measure "pf_${name}_${rows}_$r" pf_ctl "$rows"
            if [ "$name" = tree ]; then
                log "$name: predict-file, $rows rows, at node 1's console (run $r of $runs)"
                pf_measure "pfc_${name}_${rows}_$r" pf_console "$rows"
            fi
        done
    done
}

# pf_cluster NAME MODEL: 4 nodes on the generated shards, node 1 with a console on a FIFO.
pf_cluster() {
    local name=$1 model=$2 answer i seeds listen
    PF_ADDR=127.0.0.1:$(free_port)
    PF_PIDS=()
    for i in 1 2 3 4; do
        seeds="[\"$PF_ADDR\"]" listen=127.0.0.1:0
        if [ "$i" -eq 1 ]; then seeds='[]' listen=$PF_ADDR; fi
        write_config "$TMP/pf-$name-n$i.toml" "pf-$name$i" "$listen" "$seeds" "$(pf_shard "$i")" y \
            '[]' "$model"
        if [ "$i" -eq 1 ]; then
            start_console_node "$TMP/pf-$name-n$i.toml" "$TMP/logs/pf-$name-n$i.log"
            PF_PIDS+=("$STARTED")
            wait_members "$PF_ADDR" 1 120
        else
            start_node "$TMP/pf-$name-n$i.toml" "$TMP/logs/pf-$name-n$i.log"
            PF_PIDS+=("$STARTED")
        fi
    done
    wait_members "$PF_ADDR" 4 120
    note "4 nodes, shards pf{1..4}.csv, [model] $name; configs $TMP/pf-$name-n{1..4}.toml, node 1 at $PF_ADDR (its --json console on a FIFO)"
    log "$name: train 4 × $SHARD_ROWS rows"
    answer=$(run "$BIN" ctl "$PF_ADDR" --cluster bench train)
    jq -e '.ok' <<<"$answer" >/dev/null || die "$name: train failed: $answer"
    measured "predict-file ($name)" pf_phase "$name"
    exec 3>&-
    stop_pids "${PF_PIDS[@]}"
}

pf_cluster tree "$TREE_MODEL"
if [ "${BENCH_SKIP_DEFAULT:-0}" != 1 ]; then
    pf_cluster default "$DEFAULT_MODEL"
fi
rm -f "$TMP"/predict-*.csv

# ---------------------------------------------------------------------------------------------
# House Prices: round trips and one-row predictions at 4 nodes, throughput, a frozen and a
# killed peer under load; then a cluster of each larger size of NODES beside it.

bench_hp() { "$BIN" bench "$HP_ADDR" --cluster bench "$@"; }

hp4_phase() {
    local r
    log "house prices, 4 nodes: warm-up"
    run "$BIN" bench "$HP_ADDR" --cluster bench --ping --requests 2000 >/dev/null
    run "$BIN" bench "$HP_ADDR" --cluster bench --rows-from "$HP/test.csv" --requests 500 >/dev/null
    for r in $(seq "$REPEATS"); do
        log "house prices, 4 nodes: $PING_REQUESTS round trips, then $SEQ_REQUESTS predictions, one at a time (run $r)"
        run_json "ping_$r" "$BIN" bench "$HP_ADDR" --cluster bench --ping --requests "$PING_REQUESTS"
        run_json "seq_4_$r" "$BIN" bench "$HP_ADDR" --cluster bench --rows-from "$HP/test.csv" \
            --requests "$SEQ_REQUESTS"
    done
}

hp_load_phase() {
    local r ticks0 ticks1
    for r in $(seq "$REPEATS"); do
        log "house prices, 4 nodes: $IN_FLIGHT in flight for $LOAD_MS ms (run $r)"
        ticks0=$(node_ticks "${HP_PIDS[@]}")
        run_json "load_4_$r" "$BIN" bench "$HP_ADDR" --cluster bench --rows-from "$HP/test.csv" \
            --requests 100000000 --in-flight "$IN_FLIGHT" --duration-ms "$LOAD_MS"
        ticks1=$(node_ticks "${HP_PIDS[@]}")
        jq -c --arg t0 "$ticks0" --arg t1 "$ticks1" --arg hz "$TICK_HZ" \
            '. + {node_cpu_s: ([($t1 | split(" ") | map(select(. != "") | tonumber)),
                                ($t0 | split(" ") | map(select(. != "") | tonumber))]
                               | transpose | map((.[0] - .[1]) / ($hz | tonumber)))}' \
            "$M/load_4_$r.json" >"$M/load_4_$r.tmp" && mv "$M/load_4_$r.tmp" "$M/load_4_$r.json"
    done
}

# fault_phase: IN_FLIGHT predictions in flight for 8 s; node 4 frozen (SIGSTOP) from 2 s to 5 s,
# then the same with node 4 killed at 2 s (and started again afterwards).
fault_phase() {
    local pid=${HP_PIDS[3]} bench_pid
    log "house prices, 4 nodes: node 4 frozen for 3 s under load"
    note "node 4 frozen: kill -STOP, 3 s, kill -CONT, during the 8-s run below"
    run "$BIN" bench "$HP_ADDR" --cluster bench --rows-from "$HP/test.csv" --requests 100000000 \
        --in-flight "$IN_FLIGHT" --duration-ms 8000 --timeout-ms 10000 >"$TMP/fault_hung.out" &
    bench_pid=$!
    sleep 2
    kill -STOP "$pid"
    sleep 3
    kill -CONT "$pid"
    wait "$bench_pid" || true
    save fault_hung <"$TMP/fault_hung.out"
    wait_members "$HP_ADDR" 4
    log "house prices, 4 nodes: node 4 killed under load"
    note "node 4 killed: kill -KILL 2 s into the 8-s run below, started again afterwards"
    run "$BIN" bench "$HP_ADDR" --cluster bench --rows-from "$HP/test.csv" --requests 100000000 \
        --in-flight "$IN_FLIGHT" --duration-ms 8000 --timeout-ms 10000 >"$TMP/fault_killed.out" &
    bench_pid=$!
    sleep 2
    kill -KILL "$pid"
    wait "$bench_pid" || true
    save fault_killed <"$TMP/fault_killed.out"
    start_node "$TMP/hp-n4.toml" "$TMP/logs/hp-n4.restart.log"
    HP_PIDS[3]=$STARTED
    wait_members "$HP_ADDR" 4 60
}

# hp_size_phase N ADDR: ALT_ROUNDS rounds of one-row predictions one at a time, each round on
# the 4-node cluster and then on the N-node one at ADDR. A ratio of two sizes measured minutes
# apart says as much about the machine's moments as about the sizes.
hp_size_phase() {
    local n=$1 addr=$2 r
    log "house prices, $n nodes: warm-up"
    run "$BIN" bench "$addr" --cluster bench --rows-from "$HP/test.csv" --requests 500 >/dev/null
    run "$BIN" bench "$HP_ADDR" --cluster bench --rows-from "$HP/test.csv" --requests 500 >/dev/null
    for r in $(seq "$ALT_ROUNDS"); do
        log "house prices: $SEQ_REQUESTS predictions one at a time on 4 nodes, then on $n (round $r)"
        run_json "seq_4alt${n}_$r" "$BIN" bench "$HP_ADDR" --cluster bench \
            --rows-from "$HP/test.csv" --requests "$SEQ_REQUESTS"
        run_json "seq_${n}_$r" "$BIN" bench "$addr" --cluster bench --rows-from "$HP/test.csv" \
            --requests "$SEQ_REQUESTS"
    done
}

start_cluster hp 4 hp_shard SalePrice '["Id"]' "$DEFAULT_MODEL"
HP_ADDR=$CLUSTER_ADDR
HP_PIDS=("${CLUSTER_PIDS[@]}")
note "House Prices cluster, 4 nodes (configs $TMP/hp-n*.toml, node 1 at $HP_ADDR)"
log "house prices, 4 nodes: train"
answer=$(run "$BIN" ctl "$HP_ADDR" --cluster bench train)
jq -e '.ok' <<<"$answer" >/dev/null || die "house prices, 4 nodes: train failed: $answer"
measured "house prices, 4 nodes: one at a time" hp4_phase
measured "house prices, 4 nodes: $IN_FLIGHT in flight" hp_load_phase
measured "house prices, 4 nodes: a frozen and a killed peer" fault_phase
for n in $NODES; do
    [ "$n" = 4 ] && continue
    log "house prices, $n nodes: start and train"
    start_cluster "hp$n" "$n" hp_shard SalePrice '["Id"]' "$DEFAULT_MODEL"
    note "House Prices cluster, $n nodes (configs $TMP/hp$n-n*.toml, node 1 at $CLUSTER_ADDR)"
    answer=$(run "$BIN" ctl "$CLUSTER_ADDR" --cluster bench train)
    jq -e '.ok' <<<"$answer" >/dev/null || die "house prices, $n nodes: train failed: $answer"
    measured "house prices, $n nodes beside 4" hp_size_phase "$n" "$CLUSTER_ADDR"
    stop_pids "${CLUSTER_PIDS[@]}"
done
stop_pids "${HP_PIDS[@]}"

# ---------------------------------------------------------------------------------------------
# Issue 7, items 4-5 (--training): global training of 4 × ROWS, our fits and scikit-learn's.

if [ $TRAINING = 1 ]; then
    log "generating 4 × $ROWS × $FEATURES training rows"
    SHARDS=()
    seed=1
    for s in A B C D; do
        run "$BIN" gen --rows "$ROWS" --features "$FEATURES" --seed $seed --out "$TMP/big$s.csv" >/dev/null
        SHARDS+=("$TMP/big$s.csv")
        seed=$((seed + 1))
    done
    big_shard() { echo "${SHARDS[$(($1 - 1))]}"; }

    train_once() {
        local name=$1 answer started wall_ms hwm=() pid
        log "$name: 4 nodes up; train (training + cross-validation)"
        started=$(date +%s%N)
        answer=$(run "$BIN" ctl "$T_ADDR" --cluster bench train)
        wall_ms=$((($(date +%s%N) - started) / 1000000))
        jq -e '.ok' <<<"$answer" >/dev/null || die "$name: train failed: $answer"
        for pid in "${T_PIDS[@]}"; do hwm+=("$(vm_hwm_kb "$pid")"); done
        jq -c --arg wall "$wall_ms" --arg hwm "${hwm[*]}" \
            '{wall_ms: ($wall | tonumber), ms, nodes, ensemble, rss_kb: ($hwm | split(" ") | map(tonumber))}' \
            <<<"$answer" | save "train_$name"
    }
    train_cluster() {
        local name=$1 model=$2
        start_cluster "$name" 4 big_shard y '[]' "$model"
        T_ADDR=$CLUSTER_ADDR
        T_PIDS=("${CLUSTER_PIDS[@]}")
        note "4 nodes, shards big{A,B,C,D}.csv, [model] $name; configs $TMP/$name-n{1..4}.toml, node 1 at $T_ADDR"
        measured "train ($name)" train_once "$name"
        stop_pids "${T_PIDS[@]}"
    }
    train_cluster tree "$TREE_MODEL"
    if [ "${BENCH_SKIP_DEFAULT:-0}" != 1 ]; then
        train_cluster default "$DEFAULT_MODEL"
    fi

    printf '[model]\n%s\n' "$TREE_MODEL" >"$TMP/offline-d3.toml"
    printf '[model]\nkind = "tree"\nmax_depth = 8\n' >"$TMP/offline-d8.toml"
    # Fixed rounds, as HistGradientBoosting's early_stopping=False in sklearn_baseline.py; on all
    # cores (the default) and on one thread, beside HGB on all cores and on one.
    printf '[model]\nkind = "boosted"\nn_rounds = %s\nn_iter_no_change = 0\n' "$HGB_ROUNDS" \
        >"$TMP/offline-default.toml"
    printf 'threads = 1\n' | cat "$TMP/offline-default.toml" - >"$TMP/offline-default-1t.toml"
    repeat_a=()
    for _ in $(seq "$REPEATS"); do repeat_a+=("${SHARDS[0]}"); done
    offline_fits() {
        local m
        log "offline fits on shard A ($REPEATS × each tree)"
        for m in d3 d8; do
            run "$BIN" offline --label y --task regression --config "$TMP/offline-$m.toml" "${repeat_a[@]}" |
                jq -c '{train_ms: [.nodes[].train_ms], rmse: .splits[0].rmse}' | save "offline_$m"
        done
        if [ "${BENCH_SKIP_DEFAULT:-0}" != 1 ]; then
            run "$BIN" offline --label y --task regression --config "$TMP/offline-default.toml" "${SHARDS[0]}" |
                jq -c '{train_ms: [.nodes[].train_ms], rmse: .splits[0].rmse}' | save offline_default
            run "$BIN" offline --label y --task regression --config "$TMP/offline-default-1t.toml" "${SHARDS[0]}" |
                jq -c '{train_ms: [.nodes[].train_ms], rmse: .splits[0].rmse}' | save offline_default_1t
        fi
    }
    measured "offline fits" offline_fits
fi

if [ $TRAINING = 1 ] || [ $WITH_RAY = 1 ]; then
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating $VENV"
        run python3 -m venv "$VENV"
    fi
    if ! "$VENV/bin/python" -c 'import sklearn, pandas' 2>/dev/null; then
        log "pip install scikit-learn pandas"
        run "$VENV/bin/pip" install -q scikit-learn pandas >&2
    fi
fi

if [ $TRAINING = 1 ]; then
    sklearn_fits() {
        log "scikit-learn fits on shard A"
        for _ in $(seq "$REPEATS"); do
            run "$VENV/bin/python" bench/sklearn_baseline.py "${SHARDS[0]}" --only d3,d8 --hgb-rounds "$HGB_ROUNDS"
        done | jq -cs '{d3: [.[].d3], d8: [.[].d8], sklearn: .[0].sklearn, rows_train: .[0].rows_train}' |
            save sklearn_trees
        if [ "${BENCH_SKIP_DEFAULT:-0}" != 1 ]; then
            run "$VENV/bin/python" bench/sklearn_baseline.py "${SHARDS[0]}" --only hgb --hgb-rounds "$HGB_ROUNDS" |
                save sklearn_hgb
            log "HistGradientBoosting on one thread"
            run env OMP_NUM_THREADS=1 "$VENV/bin/python" bench/sklearn_baseline.py "${SHARDS[0]}" --only hgb \
                --hgb-rounds "$HGB_ROUNDS" | save sklearn_hgb_1t
        fi
    }
    measured "scikit-learn fits" sklearn_fits
fi

if [ $WITH_RAY = 1 ]; then
    if ! "$VENV/bin/python" -c 'import ray' 2>/dev/null; then
        log "pip install ray (large)"
        run "$VENV/bin/pip" install -q ray >&2
    fi
    quiet "Ray baseline"
    log "Ray baseline"
    run "$VENV/bin/python" bench/ray_baseline.py --shards "$HP"/{A,B,C,D}.csv --rows-from "$HP/test.csv" \
        --seq-requests 1000 --in-flight "$IN_FLIGHT" --duration-ms "$LOAD_MS" | save ray
fi

# ---------------------------------------------------------------------------------------------

end_phase
jq -c --arg l "$(cut -d' ' -f1 /proc/loadavg)" '. + {load_end: $l}' "$M/meta.json" >"$M/meta.json.tmp"
mv "$M/meta.json.tmp" "$M/meta.json"

# What this run did not measure is kept from the last run that did (issue 7's training, fits and
# Ray baseline), in earlier/ with that run's meta, and reported as such.
if [ -d "$RAW" ]; then
    mkdir -p "$M/earlier"
    # The last run's own figures when it took them, else those it kept from an earlier run.
    src=$RAW
    if [ ! -e "$RAW/train_tree.json" ] && [ -d "$RAW/earlier" ]; then
        src=$RAW/earlier
    fi
    for key in train_tree train_default offline_d3 offline_d8 offline_default offline_default_1t \
        sklearn_trees sklearn_hgb sklearn_hgb_1t; do
        if [ ! -e "$M/$key.json" ] && [ -e "$src/$key.json" ]; then
            cp "$src/$key.json" "$M/earlier/"
            [ -e "$M/earlier/meta.json" ] || cp "$src/meta.json" "$M/earlier/meta.json"
        fi
    done
    # The Ray baseline (--with-ray) is kept apart, with the meta of the run that measured it:
    # a --training run does not measure it, and must not drop it.
    if [ ! -e "$M/ray.json" ]; then
        for src in "$RAW" "$RAW/earlier-ray" "$RAW/earlier"; do
            if [ -e "$src/ray.json" ] && [ -e "$src/meta.json" ]; then
                mkdir -p "$M/earlier-ray"
                cp "$src/ray.json" "$src/meta.json" "$M/earlier-ray/"
                break
            fi
        done
    fi
    rmdir "$M/earlier" 2>/dev/null || true
fi

cp "$TMP/commands" "$M/commands"
python3 bench/report.py "$M" >"$OUT.tmp"
rm -rf "$RAW"
cp -r "$M" "$RAW"
mv "$OUT.tmp" "$OUT"
if [ -n "$README" ]; then
    python3 bench/report.py "$M" --readme-table >"$TMP/table.md"
    python3 - "$README" "$TMP/table.md" <<'EOF'
import sys
readme, table = sys.argv[1], open(sys.argv[2]).read().rstrip("\n")
text = open(readme).read()
start, end = "<!-- bench: serving table -->", "<!-- /bench: serving table -->"
a, b = text.find(start), text.find(end)
if a < 0 or b < a:
    sys.exit(f"{readme}: no {start} ... {end} markers; table not written")
open(readme, "w").write(text[: a + len(start)] + "\n" + table + "\n" + text[b:])
EOF
fi
cat "$OUT"
log "written to $OUT${README:+ and the Benchmarks table of $README}"
