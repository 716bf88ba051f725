//! `train.cuda_graph = true` against the eager step on a CUDA device: the same
//! run trained both ways must end at the same weights (raw and every EMA) and
//! log the same losses, and the graph must really be used (train.log says at
//! which step it was recorded).
//!
//! The comparison is relative to how far training moved the weights, so it
//! catches what a graph gets wrong when it replays stale values: a learning
//! rate or EMA weight frozen at the capture step (the configs below change
//! both every step), a batch that is not refreshed, a host-drawn timestep that
//! is not copied in. Each of those moves the weights by a large fraction of the
//! run's own movement; kernel-level rounding moves them by far less. (The
//! tolerance is 2% of that movement, or three times the distance between two
//! eager runs where the GPU's kernels make those differ by more.)
//!
//! The three comparisons need a CUDA device: they are `#[ignore = "needs
//! CUDA"]`, so `just test` reports them as ignored on a CPU machine, and
//! `just test-gpu` runs them (and fails, rather than passing, where there is
//! no CUDA device). To run them on a GPU machine from a build made elsewhere,
//! carry this test binary and the `ddpm-lab` binary, set `DDPMLAB_TEST_BIN`
//! to the latter, and pass `--ignored`.

mod common;
use common::{bin, distance, text, write};

use std::path::Path;

/// These tests compare two CUDA runs: without a device there is nothing to
/// compare, which must not pass as a success.
fn require_cuda() {
    assert!(
        tch::Cuda::is_available(),
        "no CUDA device: this test needs one (it is run by `just test-gpu`)"
    );
}

/// Train `body` on cuda with the given `train.cuda_graph`; returns the run dir.
fn train(dir: &Path, name: &str, body: &str, graph: bool) -> std::path::PathBuf {
    let cfg = write(dir, &format!("{name}.toml"), body);
    let out = dir.join(name);
    let o = bin()
        .arg("train")
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .args(["--quiet", "--device", "cuda"])
        .args(["--set", &format!("train.cuda_graph={graph}")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{name}: {}", text(&o.stderr));
    out
}

fn losses(out: &Path) -> Vec<f64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

/// Train `body` eagerly and with a graph; compare weights and losses.
fn check_graph_matches_eager(body: &str, steps: u64, files: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let eager = train(dir.path(), "eager", body, false);
    // A second eager run: how far two runs of the same step drift apart on
    // this GPU (cuDNN's autotuning may pick other kernels per process).
    let eager2 = train(dir.path(), "eager2", body, false);
    let graph = train(dir.path(), "graph", body, true);
    let log = std::fs::read_to_string(graph.join("train.log")).unwrap();
    assert!(
        log.contains("CUDA graph: recorded the step's device work at step 3"),
        "the graph run did not record a graph:\n{log}"
    );
    let eager_log = std::fs::read_to_string(eager.join("train.log")).unwrap();
    assert!(!eager_log.contains("CUDA graph"), "{eager_log}");
    let last = format!("step-{steps:09}");
    let start = eager.join("snapshots/step-000000000/raw.safetensors");
    for f in files {
        let e = eager.join("checkpoints").join(&last).join(f);
        let g = graph.join("checkpoints").join(&last).join(f);
        let e2 = eager2.join("checkpoints").join(&last).join(f);
        let moved = distance(&e, &start);
        let apart = distance(&e, &g);
        let noise = distance(&e, &e2);
        eprintln!(
            "{f}: training moved the weights {moved:.4e}; graph vs eager {apart:.4e}; eager vs eager {noise:.4e}"
        );
        assert!(moved > 0.0, "{f}: training did not move the weights");
        // A frozen learning rate or EMA weight, or a stale batch, moves them by
        // most of `moved`; allow 2% of it, or 3× the eager runs' own drift.
        let tolerance = (0.02 * moved).max(3.0 * noise);
        assert!(
            tolerance < 0.3 * moved,
            "{f}: two eager runs already differ by {noise:.3e} of {moved:.3e}: too noisy to compare"
        );
        assert!(
            apart < tolerance,
            "{f}: graph and eager runs differ by {apart:.3e}, {:.1}% of training's movement {moved:.3e} \
             (tolerance {tolerance:.3e})",
            100.0 * apart / moved
        );
    }
    let (le, le2, lg) = (losses(&eager), losses(&eager2), losses(&graph));
    assert_eq!(le.len(), lg.len());
    for ((a, a2), b) in le.iter().zip(&le2).zip(&lg) {
        let tol = (0.02 * a.abs()).max(3.0 * (a - a2).abs());
        assert!(
            (a - b).abs() <= tol,
            "losses {le:?} vs {lg:?} (eager again: {le2:?})"
        );
    }
}

/// The distance helpers on two CPU runs of one config (no GPU needed): the
/// same run twice is at distance 0, and training moves the weights.
#[test]
fn the_distance_helpers_measure_weights() {
    let dir = tempfile::tempdir().unwrap();
    let body = "[data]\nsource = \"synthetic\"\nshape = [1, 8, 8]\nn_samples = 64\n[model]\npreset = \"unet-tiny\"\n\
                [train]\nsteps = 4\nbatch_size = 8\nlog_every = 2\ncheckpoint_every = 4\nthreads = 1\n";
    let cfg = write(dir.path(), "c.toml", body);
    let runs: Vec<_> = ["a", "b"]
        .iter()
        .map(|n| {
            let out = dir.path().join(n);
            common::train_cpu(&cfg, &out);
            out
        })
        .collect();
    let ck = |r: &Path| r.join("checkpoints/step-000000004/raw.safetensors");
    assert_eq!(distance(&ck(&runs[0]), &ck(&runs[1])), 0.0);
    let moved = distance(
        &ck(&runs[0]),
        &runs[0].join("snapshots/step-000000000/raw.safetensors"),
    );
    assert!(moved > 0.0);
    assert_eq!(losses(&runs[0]).len(), 2);
}

/// A UNet with labels, CFG dropout, v-prediction, min-SNR weighting, a warm-up
/// then cosine learning rate and warm-up EMAs: every per-step number changes.
const UNET: &str = r#"
[data]
source = "synthetic"
shape = [3, 16, 16]
n_samples = 256
labels = true
[model]
preset = "unet-tiny"
dropout = 0.1
[diffusion]
timesteps = 100
prediction = "v"
weighting = "min-snr"
[train]
steps = 40
batch_size = 16
lr = 1e-3
lr_schedule = "cosine"
warmup_steps = 20
p_uncond = 0.2
log_every = 10
checkpoint_every = 40
[ema]
decays = [0.9, 0.99]
mode = "warmup"
"#;

const UNET_FILES: &[&str] = &[
    "raw.safetensors",
    "ema-0.9.safetensors",
    "ema-0.99.safetensors",
];

#[test]
#[ignore = "needs CUDA"]
fn a_graphed_unet_run_matches_the_eager_run() {
    require_cuda();
    check_graph_matches_eager(UNET, 40, UNET_FILES);
}

/// Host-drawn timesteps (the loss-aware sampler reads losses back each step),
/// fp16 with its device-side loss scaler, and bias-corrected EMAs.
#[test]
#[ignore = "needs CUDA"]
fn a_graphed_run_with_host_timesteps_and_fp16_matches_the_eager_run() {
    require_cuda();
    check_graph_matches_eager(
        r#"
[data]
source = "synthetic"
shape = [1, 8, 8]
n_samples = 128
[model]
preset = "unet-tiny"
[diffusion]
timesteps = 50
timestep_sampling = "loss-aware"
loss_aware_bins = 5
[train]
steps = 30
batch_size = 16
lr = 1e-3
lr_schedule = "warmup"
warmup_steps = 30
precision = "fp16"
log_every = 10
checkpoint_every = 30
[ema]
decays = [0.95]
mode = "bias-corrected"
"#,
        30,
        &["raw.safetensors", "ema-0.95.safetensors"],
    );
}

/// The same UNet run in bf16-pure: the graph also records the cast of the
/// master weights into the network's bf16 copy and of its bf16 gradients into
/// the f32 buffer; a copy left stale would freeze the network at the capture
/// step's weights.
#[test]
#[ignore = "needs CUDA"]
fn a_graphed_bf16_pure_run_matches_the_eager_run() {
    require_cuda();
    let body = UNET.replace("[train]\n", "[train]\nprecision = \"bf16-pure\"\n");
    check_graph_matches_eager(&body, 40, UNET_FILES);
}
