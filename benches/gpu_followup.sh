#!/usr/bin/env bash
# Follow-up GPU checks after benches/gpu_bench.sh: the kernel profile of a
# ddpm-cifar10 bf16 step (benches/gpu_profile.py), DDIM ours vs reference in
# alternating processes, and one longer bf16 training run of ours.
#   BIN=./target/ddpm-lab-gpu bash benches/gpu_followup.sh
set -u
BIN=${BIN:-./target/release/ddpm-lab}
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
W=$(mktemp -d)
python3 benches/gpu_profile.py 2>&1 | grep -v -i "warn" | head -45
cat > "$W/c.toml" <<TOML
[data]
source = "synthetic"
shape = [3, 32, 32]
n_samples = 1024
[model]
preset = "ddpm-cifar10"
[train]
steps = 400
batch_size = 128
log_every = 50
checkpoint_every = 1000000
device = "cuda"
precision = "bf16"
[ema]
decays = [0.9999, 0.999]
TOML
for i in 1 2; do
  "$BIN" bench ddim "$W/c.toml" --batch 128 --repeats 5 | python3 -c "import json,sys,statistics as s;d=json.load(sys.stdin);print('ddim ours', round(128/s.median(d['secs']),1), 'img/s')"
  python3 benches/reference/ddpm_reference.py ddim --preset ddpm-cifar10 --channels 3 --resolution 32 --batch 128 --device cuda --repeats 5 2>/dev/null | python3 -c "import json,sys,statistics as s;d=json.load(sys.stdin);print('ddim ref ', round(128/s.median(d['secs']),1), 'img/s')"
done
"$BIN" train "$W/c.toml" --out "$W/long" --quiet 2>/dev/null
python3 -c "
import json;r=[json.loads(l) for l in open('$W/long/metrics.jsonl')];w=[x['wall_time_s'] for x in r]
print('long bf16 run, steps/s per 50-step block:', [round(50/(w[i]-w[i-1]),2) for i in range(1,len(w))])"
