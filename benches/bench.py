"""`just bench`: ddpm-lab against the chapter's PyTorch trainer, side by side.

Runs in one invocation, on one machine, alternating the two implementations
(ours, reference, reference, ours, … so neither always runs first), each as
its own process with its own defaults (libtorch's and PyTorch's thread counts
are both printed), the same model (parameter counts checked equal), batch,
resolution and step counts, after a warm-up; reports medians over every timed
block of every round.

Measured:
  * training steps/s and images/s per preset: `ddpm-lab train` (the full
    trainer: data, AdamW, clipping, EMA, logging; its metrics log gives the
    time of every block) against reference.DDPMTrainer;
  * `--precisions` picks fp32, bf16 (autocast), fp16 or bf16-pure (our
    network in bf16 with fp32 master weights; the reference, which knows
    only autocast, then runs bf16 autocast: the table says so);
  * on CUDA, also `ddpm-lab train` with `train.cuda_graph = true` (the step
    recorded once as a CUDA graph and replayed), as a third side;
  * our trainer's overhead: `ddpm-lab bench step` times the trainer's full
    step (two EMAs, clipping, metrics, the log record) and the bare step
    (forward + backward + AdamW of the same model) in alternating blocks of
    one process, so a drifting machine slows both alike;
  * DDIM sampling (50 steps) images/s: `ddpm-lab bench ddim` against the
    reference loop;
  * peak resident memory of every process (wait4's ru_maxrss), and peak GPU
    memory (nvidia-smi, per process) on CUDA;
  * sweep efficiency (J jobs on K CPU slots against Σ job time / K) and the
    3-variant EMA ablation against one training job (CPU only).

Writes target/bench/results.json and results.md; prints the tables.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REF = ROOT / "benches" / "reference" / "ddpm_reference.py"

# name, preset, channels, resolution, batch, steps per block, blocks, DDIM batch (0 = skip)
CPU_CASES = [
    ("unet-tiny 1×28×28", "unet-tiny", 1, 28, 64, 5, 6, 64),
    ("unet-mnist-small 1×28×28", "unet-mnist-small", 1, 28, 64, 2, 5, 8),
    ("ddpm-cifar10 3×32×32", "ddpm-cifar10", 3, 32, 4, 2, 4, 0),
]
GPU_CASES = [
    ("ddpm-cifar10 3×32×32", "ddpm-cifar10", 3, 32, 128, 25, 4, 128),
]


def median(xs):
    return statistics.median(xs) if xs else float("nan")


class GpuMemory:
    """Per-process GPU memory while a process runs: one `nvidia-smi -lms 200`
    logger (spawning nvidia-smi per sample stalls the driver and slows the
    GPU work being measured)."""

    def __init__(self, enabled):
        self.enabled = enabled and shutil.which("nvidia-smi") is not None
        self.peak = {}

    def __enter__(self):
        if self.enabled:
            self.log = tempfile.TemporaryFile()
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits",
                 "-lms", "200"], stdout=self.log, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.proc.terminate()
            self.proc.wait()
            self.log.seek(0)
            for line in self.log.read().decode(errors="replace").splitlines():
                try:
                    pid, mib = [int(x.strip()) for x in line.split(",")]
                except ValueError:
                    continue
                self.peak[pid] = max(self.peak.get(pid, 0), mib)
            self.log.close()


def rusage_run(cmd, gpu):
    """Run a process; return (stdout, its peak RSS in MiB from wait4, its peak GPU MiB or None)."""
    with GpuMemory(gpu) as mem, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        out = p.stdout.read().decode()
        _, status, usage = os.wait4(p.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        p.returncode = code
        if code != 0:
            err.seek(0)
            sys.exit(f"bench: {' '.join(map(str, cmd))} failed ({code}):\n{err.read().decode()[-3000:]}")
    return out, usage.ru_maxrss / 1024.0, mem.peak.get(p.pid)


def run_config(path, preset, c, r, batch, steps, log_every, device, precision, decays, graph=False):
    path.write_text(f"""[data]
source = "synthetic"
shape = [{c}, {r}, {r}]
n_samples = 1024
[model]
preset = "{preset}"
[train]
steps = {steps}
batch_size = {batch}
lr = 2e-4
grad_clip = 1.0
log_every = {log_every}
checkpoint_every = 1000000
device = "{device}"
precision = "{precision}"
cuda_graph = {str(graph).lower()}
[ema]
decays = {decays}
mode = "constant"
""")


def ours_train(binary, work, case, device, precision, decays, warm_blocks, gpu, graph=False):
    """`ddpm-lab train`; block times from its metrics log's wall-time stamps."""
    name, preset, c, r, batch, n, blocks, _ = case
    cfg = work / f"train-{preset}-{precision}-{decays.count(',') + 1}ema{'-graph' if graph else ''}.toml"
    run_config(cfg, preset, c, r, batch, (warm_blocks + blocks) * n, n, device, precision, decays, graph)
    out_dir = work / "run"
    shutil.rmtree(out_dir, ignore_errors=True)
    _, rss, gmem = rusage_run([binary, "train", str(cfg), "--out", str(out_dir), "--quiet"], gpu)
    recs = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    walls = [rec["wall_time_s"] for rec in recs]
    secs = [walls[k] - walls[k - 1] for k in range(warm_blocks, len(walls))]
    return {"secs": secs[-blocks:], "per_repeat": n, "rss": rss, "gpu": gmem, "loss": recs[-1]["loss"]}


def ours_json(binary, args, gpu):
    out, rss, gmem = rusage_run([binary, *args], gpu)
    t = json.loads(out)
    return {"secs": t["secs"], "per_repeat": t["per_repeat"], "rss": rss, "gpu": gmem, "params": t["params"],
            "threads": t["threads"]}


def ref_json(args, gpu):
    out, rss, gmem = rusage_run([sys.executable, str(REF), *args], gpu)
    t = json.loads(out.strip().splitlines()[-1])
    t["rss"] = rss
    t["gpu"] = gmem
    return t


def ref_args(what, case, device, precision, warmup, n, blocks, extra=(), batch=None):
    _, preset, c, r, case_batch, *_ = case
    batch = case_batch if batch is None else batch
    return [what, "--preset", preset, "--channels", str(c), "--resolution", str(r), "--batch", str(batch),
            "--device", device, "--precision", precision, "--warmup", str(warmup), "--steps", str(n),
            "--repeats", str(blocks), *extra]


def params_of(binary, work, case, device):
    """The model's parameter count, checked equal on both sides (`inspect model` builds it only)."""
    _, preset, c, r, batch, *_ = case
    cfg = work / "params.toml"
    run_config(cfg, preset, c, r, batch, 1, 1, device, "fp32", "[0.9999]")
    out, _, _ = rusage_run([binary, "inspect", "model", "--config", str(cfg)], False)
    ours = int(out.strip().splitlines()[-1].split(":")[1])
    ref = ref_json(ref_args("params", case, "cpu", "fp32", 0, 1, 1), False)
    if ours != ref["params"]:
        sys.exit(f"bench: parameter counts differ for {preset}: ours {ours:,}, reference {ref['params']:,}")
    return ours, ref["threads"]


def ref_precision(precision):
    """The reference's precision for ours: the chapter's trainer knows autocast only, so against our
    bf16-pure (a bf16 network with fp32 master weights) it runs its own bf16 autocast."""
    return "bf16" if precision == "bf16-pure" else precision


def bench_case(binary, work, case, device, precision, rounds, gpu, with_ddim, graph_side):
    name, preset, c, r, batch, n, blocks, ddim_batch = case
    params, ref_threads = params_of(binary, work, case, device)
    print(f"== {name}, batch {batch}, {precision} on {device}: {params:,} parameters", flush=True)
    our_threads = None
    sides = ["ours", "ours2", "bare", "ref"] + (["graph"] if graph_side else [])
    res = {k: [] for k in sides}
    mem = {k: [] for k in res}
    cfg = work / f"train-{preset}-{precision}.toml"
    cfg2 = work / f"step-{preset}-{precision}.toml"
    for rnd in range(rounds):
        order = ["ours", "ref", "step"] + (["graph"] if graph_side else [])
        if rnd % 2:
            order.reverse()
        for who in order:
            if who == "graph" and "graph" not in res:
                continue
            if who == "graph":
                # Not yet verified on a GPU: a failure drops this side, not the bench.
                try:
                    m = ours_train(binary, work, case, device, precision, "[0.9999]", 1, gpu, True)
                except SystemExit as e:
                    print(f"   graph round {rnd + 1}: failed, dropped from the comparison:\n{e}", flush=True)
                    del res["graph"], mem["graph"]
                    continue
            elif who == "ours":
                m = ours_train(binary, work, case, device, precision, "[0.9999]", 1, gpu)
            elif who == "step":
                # The full step (two EMAs) and the bare step, alternating in one process.
                run_config(cfg2, preset, c, r, batch, 1, n, device, precision, "[0.9999, 0.999]")
                out, rss, gmem = rusage_run([binary, "bench", "step", str(cfg2), "--warmup", str(n), "--steps",
                                             str(n), "--repeats", str(blocks)], gpu)
                t = json.loads(out)
                our_threads = t["bare"]["threads"]
                for key, part in (("ours2", "full"), ("bare", "bare")):
                    res[key] += [s / n for s in t[part]["secs"]]
                    mem[key].append((rss, gmem))
                print(f"   step  round {rnd + 1}: full {median(t['full']['secs']) / n * 1000:8.1f} ms/step, "
                      f"bare {median(t['bare']['secs']) / n * 1000:8.1f} ms/step "
                      f"({t['overhead'] * 100:+.1f}%)", flush=True)
                continue
            else:
                m = ref_json(ref_args("train", case, device, ref_precision(precision), n, n, blocks), gpu)
            res[who] += [s / m["per_repeat"] for s in m["secs"]]
            mem[who].append((m["rss"], m["gpu"]))
            print(f"   {who:5} round {rnd + 1}: {median(m['secs']) / m['per_repeat'] * 1000:8.1f} ms/step", flush=True)
    print(f"   threads: ours {our_threads}, PyTorch {ref_threads}", flush=True)
    row = {"case": name, "preset": preset, "batch": batch, "precision": precision, "device": device,
           "params": params, "threads_ours": our_threads, "threads_ref": ref_threads}
    for who in res:
        s = median(res[who])
        row[who] = {"s_per_step": s, "steps_per_s": 1 / s, "images_per_s": batch / s,
                    "peak_rss_mib": max(m[0] for m in mem[who]),
                    "peak_gpu_mib": max((m[1] or 0) for m in mem[who]) or None, "blocks": len(res[who])}
    row["ratio"] = row["ref"]["s_per_step"] / row["ours"]["s_per_step"]
    row["overhead"] = row["ours2"]["s_per_step"] / row["bare"]["s_per_step"] - 1
    if "graph" in row:
        row["ratio_graph"] = row["ref"]["s_per_step"] / row["graph"]["s_per_step"]
    if ddim_batch and with_ddim:
        d = {"ours": [], "ref": []}
        dm = {"ours": [], "ref": []}
        run_config(cfg, preset, c, r, batch, 1, 1, device, "fp32", "[0.9999]")
        for rnd in range(rounds):
            for who in (["ours", "ref"] if rnd % 2 == 0 else ["ref", "ours"]):
                if who == "ours":
                    m = ours_json(binary, ["bench", "ddim", str(cfg), "--batch", str(ddim_batch), "--sampling-steps",
                                           "50", "--warmup", "1", "--repeats", "5"], gpu)
                else:
                    m = ref_json(ref_args("ddim", case, device, "fp32", 1, 1, 5, ["--sampling-steps", "50"],
                                          batch=ddim_batch), gpu)
                d[who] += m["secs"]
                dm[who].append((m["rss"], m["gpu"]))
        row["ddim"] = {who: {"s_per_sampling": median(d[who]), "images_per_s": ddim_batch / median(d[who]),
                             "peak_rss_mib": max(x[0] for x in dm[who]),
                             "peak_gpu_mib": max((x[1] or 0) for x in dm[who]) or None} for who in d}
        row["ddim"]["batch"] = ddim_batch
        row["ddim"]["ratio"] = median(d["ref"]) / median(d["ours"])
    print(f"   ratio (reference time / ours) {row['ratio']:.3f}; overhead over bare step {row['overhead'] * 100:+.1f}%"
          + (f"; with train.cuda_graph {row['graph']['steps_per_s']:.2f} steps/s, ratio {row['ratio_graph']:.3f}"
             if "graph" in row else "")
          + (f"; DDIM ratio {row['ddim']['ratio']:.3f}" if "ddim" in row else ""), flush=True)
    return row


# A small evaluation: DDIM samples, the per-timestep loss and bits/dim, at
# step 0 and the last step (the sweep always evaluates those two points).
SMALL_EVAL = """eval.sampler = "ddim"
eval.sampling_steps = 20
eval.num_samples = 64
eval.bpd_timesteps = 8
eval.bpd_images = 32
eval.probe_size = 32
eval.timestep_bins = 5
"""


def sweep_spec(path, name, steps, seeds, decays, evaluate=False):
    path.write_text(f"""name = "{name}"
description = "benchmark sweep"
[base]
data.source = "synthetic"
data.shape = [1, 16, 16]
data.n_samples = 512
model.preset = "unet-tiny"
train.steps = {steps}
train.batch_size = 32
train.log_every = 50
train.checkpoint_every = 1000000
{SMALL_EVAL if evaluate else ""}[sweep]
seeds = {seeds}
"ema.decay" = {decays}
""")


def timed_sweep(binary, work, spec, slots, evaluate=False):
    results = work / "sweeps"
    start = time.perf_counter()
    out, rss, _ = rusage_run([binary, "sweep", str(spec), "--results", str(results), "--cpu-jobs", str(slots),
                              *([] if evaluate else ["--no-eval"]), "--no-report", "--force", "--quiet"], False)
    wall = time.perf_counter() - start
    name = spec.stem
    summary = json.loads((results / name / "summary.json").read_text())
    jobs = [j["wall_s"] for j in summary["jobs"] if j["trained"]]
    return wall, jobs


def ema_ablation(binary, work, evaluate):
    """The 3-variant EMA ablation (one shared training job) against one run,
    3 alternating rounds; medians of the sweeps' wall times."""
    tag = "_eval" if evaluate else ""
    one, three = work / f"bench_ema_one{tag}.toml", work / f"bench_ema_three{tag}.toml"
    sweep_spec(one, f"bench_ema_one{tag}", 600, "[0]", "[0.9999]", evaluate)
    sweep_spec(three, f"bench_ema_three{tag}", 600, "[0]", "[0, 0.999, 0.9999]", evaluate)
    if evaluate:
        # Untimed first: the first evaluation under a results root trains the
        # evaluator network it caches (.evaluators), a one-time cost.
        timed_sweep(binary, work, one, 1, evaluate)
    rows = {"one": [], "three": []}
    for rnd in range(3):
        for which, spec in ([("one", one), ("three", three)] if rnd % 2 == 0 else [("three", three), ("one", one)]):
            wall, jobs = timed_sweep(binary, work, spec, 1, evaluate)
            assert len(jobs) == 1, f"{spec.name} planned {len(jobs)} training jobs, expected 1"
            rows[which].append(wall)
    res = {"one_s": median(rows["one"]), "three_s": median(rows["three"])}
    res["ratio"] = res["three_s"] / res["one_s"]
    return res


def bench_sweeps(binary, work):
    print("== sweeps (unet-tiny 1×16×16, batch 32, CPU, --no-eval)", flush=True)
    j, k = 6, 2
    spec = work / "bench_jobs.toml"
    sweep_spec(spec, "bench_jobs", 300, list(range(j)), "[0.9999]")
    wall, jobs = timed_sweep(binary, work, spec, k)
    eff = {"jobs": len(jobs), "slots": k, "wall_s": wall, "sum_job_s": sum(jobs),
           "ideal_s": sum(jobs) / k, "ratio": wall / (sum(jobs) / k)}
    print(f"   {len(jobs)} jobs on {k} slots: wall {wall:.1f} s, Σ/K {sum(jobs) / k:.1f} s, ratio {eff['ratio']:.3f}")
    ema = ema_ablation(binary, work, evaluate=False)
    print(f"   EMA ablation (3 variants, one shared job) {ema['three_s']:.1f} s vs one run {ema['one_s']:.1f} s: "
          f"ratio {ema['ratio']:.3f}")
    ema_eval = ema_ablation(binary, work, evaluate=True)
    # Training alone: the one-variant sweep without evaluation, above (a job's
    # wall_s includes its evaluation, so only sweep walls are used).
    one_train = ema["one_s"]
    ema_eval.update({"train_s": one_train, "eval_one_s": ema_eval["one_s"] - one_train,
                     "eval_three_s": ema_eval["three_s"] - one_train})
    ema_eval["eval_ratio"] = ema_eval["eval_three_s"] / ema_eval["eval_one_s"]
    print(f"   with evaluation: {ema_eval['three_s']:.1f} s vs one run {ema_eval['one_s']:.1f} s: ratio "
          f"{ema_eval['ratio']:.3f} (training {one_train:.1f} s; evaluation {ema_eval['eval_three_s']:.1f} s vs "
          f"{ema_eval['eval_one_s']:.1f} s, {ema_eval['eval_ratio']:.2f}x for 3 weight sets)")
    return {"efficiency": eff, "ema_ablation": ema, "ema_ablation_eval": ema_eval}


def fmt_md(results):
    lines = []
    m = results["machine"]
    lines.append(f"- **Date:** {results['date']}. **Machine:** {m}. **Command:** `{results['command']}`.")
    lines.append("")
    lines.append("| case | precision | batch | ours steps/s | PyTorch steps/s | ours images/s | PyTorch images/s "
                 "| ratio | bare step steps/s | overhead | peak RSS ours / PyTorch (MiB) | peak GPU ours / PyTorch (MiB) |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results["training"]:
        o, p, b = r["ours"], r["ref"], r["bare"]
        g = (f"{o['peak_gpu_mib']} / {p['peak_gpu_mib']}" if o["peak_gpu_mib"] else "–")
        prec = r["precision"] + ("" if ref_precision(r["precision"]) == r["precision"]
                                 else f" (PyTorch: {ref_precision(r['precision'])} autocast)")
        lines.append(f"| {r['case']} | {prec} | {r['batch']} | {o['steps_per_s']:.3f} | {p['steps_per_s']:.3f} "
                     f"| {o['images_per_s']:.1f} | {p['images_per_s']:.1f} | **{r['ratio']:.2f}** "
                     f"| {b['steps_per_s']:.3f} | {r['overhead'] * 100:+.1f}% "
                     f"| {o['peak_rss_mib']:.0f} / {p['peak_rss_mib']:.0f} | {g} |")
    graphed = [r for r in results["training"] if "graph" in r]
    if graphed:
        lines.append("")
        lines.append("| with `train.cuda_graph = true` | precision | batch | steps/s | images/s | ratio to PyTorch "
                     "| vs ours eager | peak GPU (MiB) |")
        lines.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in graphed:
            g = r["graph"]
            lines.append(f"| {r['case']} | {r['precision']} | {r['batch']} | {g['steps_per_s']:.3f} "
                         f"| {g['images_per_s']:.1f} | **{r['ratio_graph']:.2f}** "
                         f"| {r['ours']['s_per_step'] / g['s_per_step']:.2f}× | {g['peak_gpu_mib'] or '–'} |")
    ddim = [r for r in results["training"] if "ddim" in r]
    if ddim:
        lines.append("")
        lines.append("| DDIM, 50 steps | batch | ours images/s | PyTorch images/s | ratio | peak RSS ours / PyTorch (MiB) "
                     "| peak GPU ours / PyTorch (MiB) |")
        lines.append("| --- | --- | --- | --- | --- | --- | --- |")
        for r in ddim:
            d = r["ddim"]
            g = (f"{d['ours']['peak_gpu_mib']} / {d['ref']['peak_gpu_mib']}" if d["ours"]["peak_gpu_mib"] else "–")
            lines.append(f"| {r['case']} | {d['batch']} | {d['ours']['images_per_s']:.2f} | {d['ref']['images_per_s']:.2f} "
                         f"| **{d['ratio']:.2f}** | {d['ours']['peak_rss_mib']:.0f} / {d['ref']['peak_rss_mib']:.0f} | {g} |")
    if "sweeps" in results:
        e = results["sweeps"]["efficiency"]
        a = results["sweeps"]["ema_ablation"]
        lines.append("")
        lines.append(f"- Sweep efficiency: {e['jobs']} jobs on {e['slots']} CPU slots took {e['wall_s']:.1f} s against "
                     f"Σ(job time)/K = {e['ideal_s']:.1f} s: **{e['ratio']:.3f}×**.")
        lines.append(f"- EMA ablation (3 variants sharing one training job): {a['three_s']:.1f} s against one run's "
                     f"{a['one_s']:.1f} s: **{a['ratio']:.3f}×**.")
        ae = results["sweeps"].get("ema_ablation_eval")
        if ae:
            lines.append(f"- The same with evaluation (DDIM 20 steps, 64 samples, bits/dim, per-timestep loss, at step 0 "
                         f"and the last step): {ae['three_s']:.1f} s against {ae['one_s']:.1f} s: **{ae['ratio']:.3f}×**; "
                         f"training {ae['train_s']:.1f} s, evaluation {ae['eval_three_s']:.1f} s for 3 weight sets "
                         f"against {ae['eval_one_s']:.1f} s for one ({ae['eval_ratio']:.2f}×).")
    return "\n".join(lines) + "\n"


def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    desc = f"{cpu}, {os.cpu_count()} logical CPUs"
    if shutil.which("nvidia-smi"):
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True).stdout.strip().splitlines()
        if gpu:
            desc += f"; GPU: {gpu[0]}"
    return desc


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "ddpm-lab"))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precisions", default=None, help="comma-separated (default: fp32 on CPU, bf16,fp32 on CUDA)")
    ap.add_argument("--cases", default=None, help="comma-separated presets to run (default: all for the device)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per case")
    ap.add_argument("--no-sweeps", action="store_true")
    ap.add_argument("--graph", default="auto", choices=["auto", "on", "off"],
                    help="time ours with train.cuda_graph too (auto: on CUDA)")
    ap.add_argument("--out", default=str(ROOT / "target" / "bench"))
    a = ap.parse_args()
    work = Path(a.out)
    work.mkdir(parents=True, exist_ok=True)
    gpu = a.device == "cuda"
    cases = GPU_CASES if gpu else CPU_CASES
    if a.cases:
        want = a.cases.split(",")
        cases = [c for c in cases if c[1] in want]
    precisions = (a.precisions or ("bf16,fp32" if gpu else "fp32")).split(",")
    results = {"date": time.strftime("%Y-%m-%d"), "machine": machine(),
               "command": "just bench " + " ".join(sys.argv[1:]), "training": []}
    for case in cases:
        for i, precision in enumerate(precisions):
            # DDIM is timed in fp32, once per case.
            graph_side = a.graph == "on" or (a.graph == "auto" and gpu)
            results["training"].append(bench_case(a.bin, work, case, a.device, precision, a.rounds, gpu, i == 0,
                                                  graph_side))
            (work / "results.json").write_text(json.dumps(results, indent=1))
    if not gpu and not a.no_sweeps:
        results["sweeps"] = bench_sweeps(a.bin, work)
    (work / "results.json").write_text(json.dumps(results, indent=1))
    md = fmt_md(results)
    (work / "results.md").write_text(md)
    print()
    print(md)


if __name__ == "__main__":
    main()
