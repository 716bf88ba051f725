#!/usr/bin/env bash
# GPU check of the trainer (issue: models and the single-run trainer, §6):
# the ddpm-cifar10 preset on synthetic 3×32×32 images, batch 128, in fp32, bf16
# and fp16; prints the loss trend, steady-state throughput and peak GPU memory.
#
#   BIN=./target/ddpm-lab-gpu OUT=/tmp/gpu-check STEPS=300 bash benches/gpu_train_check.sh
set -u
BIN=${BIN:-./target/release/ddpm-lab}
OUT=${OUT:-/tmp/gpu-check}
STEPS=${STEPS:-300}
mkdir -p "$OUT"
cat > "$OUT/cifar.toml" <<TOML
[data]
source = "synthetic"
shape = [3, 32, 32]
n_samples = 5000
[model]
preset = "ddpm-cifar10"
[train]
steps = $STEPS
batch_size = 128
lr = 2e-4
log_every = 25
checkpoint_every = 100000
device = "cuda"
[ema]
decays = [0.9999, 0.999]
TOML
"$BIN" inspect devices
for p in fp32 bf16 fp16; do
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$OUT/mem-$p.txt" 2>/dev/null &
    smi=$!
    start=$(date +%s.%N)
    "$BIN" train "$OUT/cifar.toml" --out "$OUT/run-$p" --set "train.precision=\"$p\"" --quiet 2> "$OUT/log-$p.txt"
    rc=$?
    end=$(date +%s.%N)
    kill $smi 2>/dev/null
    python3 - "$OUT/run-$p/metrics.jsonl" "$OUT/mem-$p.txt" "$p" "$rc" "$start" "$end" <<'PY'
import json, sys, statistics
path, mem, p, rc, start, end = sys.argv[1:]
recs = [json.loads(l) for l in open(path)] if rc == "0" else []
mems = [int(x) for x in open(mem).read().split() if x.strip().isdigit()]
if not recs:
    print(f"{p}: FAILED rc={rc}"); print(open(path.replace('run-'+p+'/metrics.jsonl', 'log-'+p+'.txt')).read()[-2000:]); sys.exit()
ips = [r["images_per_s"] for r in recs[2:]] or [recs[-1]["images_per_s"]]
med = statistics.median(ips)
print(f"{p}: loss {recs[0]['loss']:.4f} -> {recs[-1]['loss']:.4f} (records {len(recs)}), "
      f"median {med:.0f} img/s = {med/128:.2f} steps/s at batch 128, "
      f"skipped {sum(r['skipped_steps'] for r in recs)}, final loss scale {recs[-1]['loss_scale']:.0f}, "
      f"peak GPU memory {max(mems) if mems else -1} MiB (whole device), wall {float(end)-float(start):.1f}s")
PY
done
