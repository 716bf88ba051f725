#!/usr/bin/env bash
# `just bench` on a CUDA machine with the binary built elsewhere: ddpm-cifar10 at
# batch 128 in bf16 and fp32, ours against the PyTorch reference on the same
# card, plus DDIM sampling (fp32). Uses the machine's python3 and its PyTorch
# (the same 2.11.0 build our binary links).
#
#   BIN=./target/ddpm-lab-gpu OUT=/tmp/gpu-bench bash benches/gpu_bench.sh
set -u
BIN=${BIN:-./target/release/ddpm-lab}
OUT=${OUT:-/tmp/gpu-bench}
ROUNDS=${ROUNDS:-2}
mkdir -p "$OUT"
TORCH_LIB=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
export LD_LIBRARY_PATH=$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch;print("torch", torch.__version__, "threads", torch.get_num_threads())'
"$BIN" inspect devices
python3 benches/bench.py --bin "$BIN" --device cuda --rounds "$ROUNDS" --out "$OUT/bench" ${BENCH_ARGS:-}
