#!/usr/bin/env bash
# Benchmarks of issue 7, on loopback, on this machine: prints a Markdown table and writes it to
# bench/results.md. Not part of CI.
#
#   bench/run.sh                 items 1-5 (about 6 minutes on a 2-core machine once built)
#   bench/run.sh --with-ray      also item 6 (installs ray into bench/.venv: large download)
#
# Sizes (environment variables; defaults are the issue's workload):
#   BENCH_ROWS=400000          rows per training shard (item 4, and the offline / scikit-learn fits)
#   BENCH_FEATURES=15          feature columns of the generated shards
#   BENCH_PREDICT_ROWS=100000  rows of the predict-file input (item 3)
#   BENCH_NODES="2 4 8 16"     cluster sizes of item 2 (must include 4; the cluster grows)
#   BENCH_PING_REQUESTS=20000  protocol round trips (item 1)
#   BENCH_SEQ_REQUESTS=5000    sequential global predictions per cluster size (item 2)
#   BENCH_LOAD_MS=5000         length of each 64-in-flight run (item 2), milliseconds
#   BENCH_IN_FLIGHT=64         requests in flight for the throughput runs
#   BENCH_REPEATS=3            fits per learner in the offline tree timings (median reported)
#   BENCH_HGB_ROUNDS=400       boosting rounds (ours and HistGradientBoosting's)
#   BENCH_SKIP_BUILD=1         use target/release/ensemble-node as it is
#   BENCH_SKIP_DEFAULT=1       skip the default (boosted) learner in items 3-5 (the slow part)
#   BENCH_WAIT_IDLE_S=0        before each phase, wait up to this long for other jobs to leave the
#                              machine (under 10 % busy); how busy it was is reported either way
#   BENCH_RETRIES=2            run a phase again when other jobs used >= 10 % of the machine in it
#   BENCH_KEEP=1               keep the temporary directory (configs, logs, data)
#   BENCH_OUT=bench/results.md where the report goes
#   BENCH_RAW=bench/results    where the raw measurements go (JSON; report.py renders them)
# Quick run: BENCH_ROWS=50000 BENCH_PREDICT_ROWS=20000 BENCH_NODES="2 4" BENCH_LOAD_MS=1000 \
#            BENCH_SEQ_REQUESTS=1000 bench/run.sh
set -euo pipefail

WITH_RAY=0
for arg in "$@"; do
    case "$arg" in
        --with-ray) WITH_RAY=1 ;;
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

ROWS=${BENCH_ROWS:-400000}
FEATURES=${BENCH_FEATURES:-15}
PREDICT_ROWS=${BENCH_PREDICT_ROWS:-100000}
NODES=${BENCH_NODES:-"2 4 8 16"}
PING_REQUESTS=${BENCH_PING_REQUESTS:-20000}
SEQ_REQUESTS=${BENCH_SEQ_REQUESTS:-5000}
LOAD_MS=${BENCH_LOAD_MS:-5000}
IN_FLIGHT=${BENCH_IN_FLIGHT:-64}
REPEATS=${BENCH_REPEATS:-3}
HGB_ROUNDS=${BENCH_HGB_ROUNDS:-400}
OUT=${BENCH_OUT:-bench/results.md}
VENV=bench/.venv

case " $NODES " in *" 4 "*) ;; *)
    die "BENCH_NODES must include 4 (items 1-3 use the 4-node cluster)"
    ;;
esac

# ---------------------------------------------------------------------------------------------
# Build and machine facts.

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build --release"
    cargo build --release >&2
fi
[ -x "$BIN" ] || die "$BIN is missing"

# The machine is shared: each phase first records how busy other jobs keep it (see quiet).
LOAD_START=$(cut -d' ' -f1 /proc/loadavg)

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null; then COMMIT="$COMMIT (src modified)"; fi
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
jq -n --arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" --arg nproc "$(nproc)" --arg cpu "${CPU:-unknown}" \
    --arg mem "$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)" \
    --arg kernel "$(uname -r)" --arg rustc "$(rustc --version 2>/dev/null || echo unknown)" \
    --arg commit "$COMMIT" --arg rows "$ROWS" --arg features "$FEATURES" \
    --arg predict_rows "$PREDICT_ROWS" --arg nodes "$NODES" --arg in_flight "$IN_FLIGHT" \
    --arg load_ms "$LOAD_MS" --arg seq "$SEQ_REQUESTS" --arg ping "$PING_REQUESTS" \
    --arg repeats "$REPEATS" --arg hgb_rounds "$HGB_ROUNDS" --arg args "$*" --arg load_start "$LOAD_START" \
    '$ARGS.named' | save meta

# ---------------------------------------------------------------------------------------------
# Data: four training shards and one predict-file input, seeded.

log "generating 4 × $ROWS × $FEATURES rows and $PREDICT_ROWS rows to predict"
SHARDS=()
seed=1
for s in A B C D; do
    run "$BIN" gen --rows "$ROWS" --features "$FEATURES" --seed $seed --out "$TMP/big$s.csv" >/dev/null
    SHARDS+=("$TMP/big$s.csv")
    seed=$((seed + 1))
done
run "$BIN" gen --rows "$PREDICT_ROWS" --features "$FEATURES" --seed 99 --out "$TMP/predict.csv" >/dev/null

# ---------------------------------------------------------------------------------------------
# Items 4 and 3: global training of 4 × ROWS (tree, then the default learner), then predict-file.

big_shard() { echo "${SHARDS[$(($1 - 1))]}"; }

# train_cluster NAME MODEL: a 4-node cluster on the big shards; train, (tree: one-row
# predictions), predict-file.
train_cluster() {
    local name=$1 model=$2
    start_cluster "$name" 4 big_shard y '[]' "$model"
    T_ADDR=$CLUSTER_ADDR
    T_PIDS=("${CLUSTER_PIDS[@]}")
    note "4 nodes, shards big{A,B,C,D}.csv, [model] $name; configs $TMP/$name-n{1..4}.toml, node 1 at $T_ADDR"
    measured "train ($name)" train_once "$name"
    if [ "$name" = tree ]; then
        # Item 2 with a light model: the fan-out's own cost (15 numeric features, depth-3 trees).
        head -n 2001 "$TMP/predict.csv" >"$TMP/rows2k.csv"
        measured "predictions (tree cluster)" predictions tree4 "$T_ADDR" "$TMP/rows2k.csv"
    fi
    measured "predict-file ($name)" predict_file_once "$name"
    stop_pids "${T_PIDS[@]}"
}

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

# predictions KEY ADDR ROWS_CSV: sequential one-row predictions, then IN_FLIGHT at once.
predictions() {
    local key=$1 addr=$2 rows=$3
    log "predictions ($key): $SEQ_REQUESTS one at a time, then $IN_FLIGHT in flight for $LOAD_MS ms"
    run "$BIN" bench "$addr" --cluster bench --rows-from "$rows" --requests 500 >/dev/null
    run "$BIN" bench "$addr" --cluster bench --rows-from "$rows" --requests "$SEQ_REQUESTS" \
        --in-flight 1 | save "seq_$key"
    run "$BIN" bench "$addr" --cluster bench --rows-from "$rows" --requests 10000000 \
        --in-flight "$IN_FLIGHT" --duration-ms "$LOAD_MS" | save "load_$key"
}

predict_file_once() {
    local name=$1 answer rss_before
    log "$name: predict-file on $PREDICT_ROWS rows"
    # Reset node 1's peak RSS to its current RSS (clear_refs 5), so that VmHWM afterwards is
    # predict-file's own peak.
    echo 5 >"/proc/${T_PIDS[0]}/clear_refs" 2>/dev/null || true
    rss_before=$(awk '/^VmRSS:/ {print $2}' "/proc/${T_PIDS[0]}/status")
    answer=$(run "$BIN" ctl "$T_ADDR" --cluster bench predict-file "$TMP/predict.csv" "$TMP/predict-$name.out.csv")
    jq -e '.ok' <<<"$answer" >/dev/null || die "$name: predict-file failed: $answer"
    jq -c --arg hwm "$(vm_hwm_kb "${T_PIDS[0]}")" --arg before "$rss_before" \
        '. + {coordinator_hwm_kb: ($hwm | tonumber), coordinator_rss_before_kb: ($before | tonumber)}' \
        <<<"$answer" | save "predict_file_$name"
}

train_cluster tree "$TREE_MODEL"
if [ "${BENCH_SKIP_DEFAULT:-0}" != 1 ]; then
    train_cluster default "$DEFAULT_MODEL"
fi

# ---------------------------------------------------------------------------------------------
# Item 5: our fits in one process (offline) and scikit-learn's, on shard A.

printf '[model]\n%s\n' "$TREE_MODEL" >"$TMP/offline-d3.toml"
printf '[model]\nkind = "tree"\nmax_depth = 8\n' >"$TMP/offline-d8.toml"
printf '[model]\nn_rounds = %s\n' "$HGB_ROUNDS" >"$TMP/offline-default.toml"
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
    fi
}
measured "offline fits" offline_fits

if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    run python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import sklearn, pandas' 2>/dev/null; then
    log "pip install scikit-learn pandas"
    run "$VENV/bin/pip" install -q scikit-learn pandas >&2
fi

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

# ---------------------------------------------------------------------------------------------
# Items 1 and 2: a House Prices cluster (the default learner on shards A-D, round-robin beyond 4
# nodes, as run_cluster.sh does), grown through BENCH_NODES; rows from shards/house_prices/test.csv.

# hp_phase N: train the N-node cluster; round trips at the first size; predictions.
hp_phase() {
    local n=$1 answer
    log "house prices, $n nodes: train"
    answer=$(run "$BIN" ctl "$HP_ADDR" --cluster bench train)
    jq -e '.ok' <<<"$answer" >/dev/null || die "house prices, $n nodes: train failed: $answer"
    if [ "$n" = "$(echo "$NODES" | awk '{print $1}')" ]; then
        log "protocol round trips ($PING_REQUESTS pings, 1 in flight)"
        run "$BIN" bench "$HP_ADDR" --cluster bench --ping --requests 2000 >/dev/null
        run "$BIN" bench "$HP_ADDR" --cluster bench --ping --requests "$PING_REQUESTS" --in-flight 1 | save ping
        if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
            # The same round trip with node 1 and the client pinned to one CPU, then to two
            # different ones: what waking a process on the other CPU costs here.
            note "node 1's threads pinned to CPU 0: taskset -pc 0 TID, for each TID in /proc/PID/task"
            pin "${HP_PIDS[0]}" 0
            run taskset -c 0 "$BIN" bench "$HP_ADDR" --cluster bench --ping --requests "$PING_REQUESTS" |
                save ping_same_cpu
            run taskset -c 1 "$BIN" bench "$HP_ADDR" --cluster bench --ping --requests "$PING_REQUESTS" |
                save ping_other_cpu
            pin "${HP_PIDS[0]}" "0-$(($(nproc) - 1))"
        fi
    fi
    predictions "$n" "$HP_ADDR" "$HP/test.csv"
}

HP_ADDR=127.0.0.1:$(free_port)
HP_PIDS=()
have=0
for n in $NODES; do
    while [ $have -lt "$n" ]; do
        have=$((have + 1))
        seeds='[]' listen=127.0.0.1:0
        if [ $have -eq 1 ]; then listen=$HP_ADDR; else seeds="[\"$HP_ADDR\"]"; fi
        write_config "$TMP/hp-n$have.toml" "hp$have" "$listen" "$seeds" "$(hp_shard $have)" SalePrice \
            '["Id"]' "$DEFAULT_MODEL"
        start_node "$TMP/hp-n$have.toml" "$TMP/logs/hp-n$have.log"
        HP_PIDS+=("$STARTED")
        if [ $have -eq 1 ]; then wait_members "$HP_ADDR" 1; fi
    done
    wait_members "$HP_ADDR" "$n"
    note "House Prices cluster, $n nodes (configs $TMP/hp-n*.toml, node 1 at $HP_ADDR)"
    measured "house prices, $n nodes" hp_phase "$n"
done
stop_pids "${HP_PIDS[@]}"

# ---------------------------------------------------------------------------------------------
# Item 6 (optional): Ray actors with scikit-learn pipelines on the same House Prices shards.

if [ $WITH_RAY = 1 ]; then
    if ! "$VENV/bin/python" -c 'import ray' 2>/dev/null; then
        log "pip install ray (large)"
        run "$VENV/bin/pip" install -q ray >&2
    fi
    quiet "Ray baseline"
    log "Ray baseline"
    run "$VENV/bin/python" bench/ray_baseline.py --shards "$HP"/{A,B,C,D}.csv --rows-from "$HP/test.csv" \
        --seq-requests "$((SEQ_REQUESTS < 1000 ? SEQ_REQUESTS : 1000))" --in-flight "$IN_FLIGHT" \
        --duration-ms "$LOAD_MS" | save ray
fi

# ---------------------------------------------------------------------------------------------

end_phase
jq -c --arg l "$(cut -d' ' -f1 /proc/loadavg)" '. + {load_end: $l}' "$M/meta.json" >"$M/meta.json.tmp"
mv "$M/meta.json.tmp" "$M/meta.json"

# The raw measurements stay next to the report, which can be rendered again from them
# (python3 bench/report.py bench/results > bench/results.md), e.g. after editing profile.md.
RAW=${BENCH_RAW:-bench/results}
cp "$TMP/commands" "$M/commands"
python3 bench/report.py "$M" >"$OUT.tmp"
rm -rf "$RAW"
cp -r "$M" "$RAW"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
log "written to $OUT"
