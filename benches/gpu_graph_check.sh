#!/usr/bin/env bash
# The CUDA graph checks, in one script for one device call (binaries built on a
# CPU machine, carried stripped):
#   1. tests/cuda_graph.rs: graph and eager runs end at the same weights;
#   2. ddpm-cifar10, batch 128: steps/s of `ddpm-lab train` in bf16 (autocast)
#      and bf16-pure (a bf16 network, fp32 master weights), each eager and
#      with train.cuda_graph, alternating, 300 steps each (the Ho et al.
#      anchor is 21 steps/s);
#   3. (PART=all, or PART=bench for this part alone) the GPU `just bench`
#      with the graph side included (BENCH_ARGS, e.g. --precisions bf16,bf16-pure).
#
# Parts 1-2 take about 5 minutes on an H200; part 3 about 2 minutes per
# precision, so a 10-minute device call fits PART=check, then PART=bench.
#
#   strip -o target/ddpm-lab-gpu target/release/ddpm-lab
#   strip -o target/cuda-graph-test $(ls -t target/release/deps/cuda_graph-* | grep -v '\.d$' | head -1)
#   BIN=./target/ddpm-lab-gpu TEST=./target/cuda-graph-test OUT=$OUT PART=all bash benches/gpu_graph_check.sh
set -u
BIN=${BIN:-./target/release/ddpm-lab}
TEST=${TEST:-}
OUT=${OUT:-/tmp/gpu-graph}
PART=${PART:-check}
STEPS=${STEPS:-300}
DEVICE=${DEVICE:-cuda}   # DEVICE=cpu BATCH=2 STEPS=100: a dry run of the script's logic
BATCH=${BATCH:-128}
mkdir -p "$OUT"
TORCH_LIB=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
export LD_LIBRARY_PATH=$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$BIN" inspect devices

if [ -n "$TEST" ] && [ "$PART" != bench ]; then
  echo "== 1. graph against eager (tests/cuda_graph.rs)"
  DDPMLAB_TEST_BIN=$BIN "$TEST" --include-ignored --nocapture --test-threads 1 2>&1 | tail -20
fi

W=$(mktemp -d)
cat > "$W/c.toml" <<TOML
[data]
source = "synthetic"
shape = [3, 32, 32]
n_samples = 1024
[model]
preset = "ddpm-cifar10"
[train]
steps = $STEPS
batch_size = $BATCH
log_every = 50
checkpoint_every = 1000000
device = "$DEVICE"
[ema]
decays = [0.9999, 0.999]
TOML
rate() {
  python3 -c "
import json,statistics as s;r=[json.loads(l) for l in open('$1/metrics.jsonl')];w=[x['wall_time_s'] for x in r]
b=[50/(w[i]-w[i-1]) for i in range(1,len(w))]
print('$2', 'steps/s per 50-step block:', [round(x,2) for x in b], 'median', round(s.median(b),2), 'final loss', round(r[-1]['loss'],4))"
}
if [ "$PART" != bench ]; then
  echo "== 2. ddpm-cifar10, batch $BATCH on $DEVICE, $STEPS steps: bf16 and bf16-pure, eager vs train.cuda_graph"
  for round in 1 2; do
    for p in bf16 bf16-pure; do
      for g in false true; do
        rm -rf "$W/run"
        "$BIN" train "$W/c.toml" --out "$W/run" --quiet --set "train.cuda_graph=$g" \
          --set "train.precision=\"$p\"" 2>"$W/err" || { tail -5 "$W/err"; continue; }
        rate "$W/run" "round $round $p cuda_graph=$g"
        grep -h "CUDA graph" "$W/run/train.log" | head -1
      done
    done
  done
fi

if [ "$PART" = all ] || [ "$PART" = bench ]; then
  echo "== 3. just bench --device cuda (ours eager, ours with graphs, PyTorch)"
  python3 benches/bench.py --bin "$BIN" --device cuda --rounds "${ROUNDS:-2}" --out "$OUT/bench" ${BENCH_ARGS:-}
fi
