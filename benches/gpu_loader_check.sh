#!/usr/bin/env bash
# GPU check of the data loaders: ddpm-cifar10 in bf16 on synthetic 3×32×32
# images with random flips, served by the device-resident loader and by the
# prefetching background thread (pinned memory, non-blocking copies); prints
# throughput and the data-wait fraction of each.
#
#   BIN=./target/ddpm-lab-gpu OUT=/tmp/gpu-loader STEPS=200 bash benches/gpu_loader_check.sh
set -u
BIN=${BIN:-./target/release/ddpm-lab}
OUT=${OUT:-/tmp/gpu-loader}
STEPS=${STEPS:-200}
mkdir -p "$OUT"
cat > "$OUT/cifar.toml" <<TOML
[data]
source = "synthetic"
shape = [3, 32, 32]
n_samples = 5000
flip = true
labels = true
[model]
preset = "ddpm-cifar10"
[train]
steps = $STEPS
batch_size = 128
precision = "bf16"
p_uncond = 0.1
log_every = 25
checkpoint_every = 100000
device = "cuda"
TOML
for loader in device prefetch; do
    "$BIN" train "$OUT/cifar.toml" --out "$OUT/run-$loader" --set "data.loader=\"$loader\"" --quiet 2> "$OUT/log-$loader.txt"
    rc=$?
    python3 - "$OUT/run-$loader/metrics.jsonl" "$loader" "$rc" "$OUT/log-$loader.txt" <<'PY'
import json, sys, statistics
path, loader, rc, log = sys.argv[1:]
if rc != "0":
    print(f"{loader}: FAILED rc={rc}"); print(open(log).read()[-3000:]); sys.exit()
recs = [json.loads(l) for l in open(path)]
ips = statistics.median(r["images_per_s"] for r in recs[2:])
wait = statistics.median(r["data_wait_frac"] for r in recs[2:])
print(f"{loader}: loss {recs[0]['loss']:.4f} -> {recs[-1]['loss']:.4f}, median {ips:.0f} img/s = {ips/128:.2f} steps/s, median data-wait {100*wait:.3f}%")
PY
    grep "data loader" "$OUT/run-$loader/train.log" | head -1
done
