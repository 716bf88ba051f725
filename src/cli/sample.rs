//! `ddpm-lab sample RUN_DIR --out FILE`: draw samples from a trained run's
//! checkpoint, as a PNG grid (images) or a CSV/Parquet table (vectors, in the
//! data's original units).

use crate::config::run::SamplerKind;
use crate::config::RunConfig;
use crate::data::tabular::ColumnStats;
use crate::diffusion::sampling::{NoiseSource, SamplingOptions, Variance};
use crate::eval::output::{write_png_grid, write_vectors};
use crate::eval::samples::{draw, Condition};
use crate::eval::trained::{self, TrainedModel};
use crate::exit::{bad_input, Classified};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use tch::Tensor;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SamplerArg {
    Ddpm,
    Ddim,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum VarianceArg {
    FixedLarge,
    FixedSmall,
}

#[derive(Debug, Args)]
// `--eta -1` or `--guidance -2` reach their own range checks, not clap's "unexpected argument".
#[command(allow_negative_numbers = true)]
pub struct SampleCmd {
    /// A run folder: `ddpm-lab train --out`, or a sweep's
    /// results/<sweep>/runs/<run>/ (the ids the plan and report print) or jobs/<job>/.
    pub run_dir: PathBuf,
    /// Where to write: .png for image runs; .csv or .parquet for vector
    /// runs; .safetensors for either (the tensor `samples` in model units, and
    /// `labels` when drawn for labels).
    #[arg(long)]
    pub out: PathBuf,
    /// The weights: raw, ema-<decay> or (a power-EMA run) phema-<σ_rel>.
    /// Default: a sweep run's own set;
    /// otherwise the warm EMA of longest memory (≤ 1% of the initial
    /// weights left at the step sampled), else raw.
    #[arg(long)]
    pub weights: Option<crate::run::Weights>,
    /// The checkpoint's step (default: the latest).
    #[arg(long)]
    pub step: Option<u64>,
    /// The sampler (default: the run's eval.sampler).
    #[arg(long, value_enum)]
    pub sampler: Option<SamplerArg>,
    /// DDIM's steps (default: the run's eval.sampling_steps; 0 = all).
    #[arg(long)]
    pub steps: Option<u64>,
    /// DDIM's η in [0, 1] (default: the run's eval.eta).
    #[arg(long)]
    pub eta: Option<f64>,
    /// DDPM's reverse variance (default: the run's eval.variance).
    #[arg(long, value_enum)]
    pub variance: Option<VarianceArg>,
    /// Clip x̂_0 to [−1, 1] at each step (default: the run's eval.clip_x0,
    /// which is on for images and off for vectors).
    #[arg(long, conflicts_with = "no_clip")]
    pub clip: bool,
    /// Do not clip x̂_0.
    #[arg(long)]
    pub no_clip: bool,
    /// Classifier-free guidance scale (default: the run's eval.guidance_scale).
    #[arg(long)]
    pub guidance: Option<f64>,
    /// Condition every sample on this class (default for a class-conditional
    /// run: the classes in turn, one per grid column).
    #[arg(long, conflicts_with = "condition")]
    pub label: Option<i64>,
    /// Condition every sample on this vector, comma-separated, in the data's
    /// units (tabular condition columns are scaled as in training).
    #[arg(long, value_delimiter = ',')]
    pub condition: Option<Vec<f64>>,
    /// Draw unconditional samples from a conditional run (the null condition).
    #[arg(long, conflicts_with_all = ["label", "condition"])]
    pub unconditional: bool,
    /// How many samples.
    #[arg(long, short, default_value_t = 64, value_parser = clap::value_parser!(i64).range(1..=1_000_000))]
    pub n: i64,
    /// Draw with this noise instead of the seed's: a safetensors file whose
    /// tensor `noise` is x_T, [n, …] or [1, n, …] (enough for DDIM with
    /// η = 0), or x_T and each reverse step's noise, [1 + steps, n, …]; n
    /// comes from it.
    #[arg(long, conflicts_with_all = ["n", "seed"])]
    pub noise: Option<PathBuf>,
    /// The seed: the same seed, checkpoint and options give the same samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// No progress bars or lines; warnings, errors and the final result lines still print.
    #[arg(long, short)]
    pub quiet: bool,
}

/// How many samples (rows along the first dimension) hold a NaN or ±inf.
fn non_finite_samples(x: &tch::Tensor) -> i64 {
    if x.numel() == 0 {
        return 0;
    }
    let bad = x.isfinite().logical_not().flatten(1, -1).any_dim(1, false);
    bad.sum(tch::Kind::Int64).int64_value(&[])
}

/// The tensor of a `--noise` file, and the number of samples it is for:
/// its first dimension for x_T alone ([n, …]), else its second.
fn read_noise(path: &std::path::Path, sample_rank: usize) -> anyhow::Result<(Tensor, i64)> {
    let shown = path.display();
    let mut tensors = Tensor::read_safetensors(path).map_err(|e| {
        bad_input(format!(
            "--noise {shown}: cannot read it as safetensors ({e})"
        ))
    })?;
    let index = match tensors.iter().position(|(n, _)| n == "noise") {
        Some(i) => i,
        None if tensors.len() == 1 => 0,
        None => {
            let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
            return Err(bad_input(format!(
                "--noise {shown}: has no tensor named noise (it has {}); name the noise tensor `noise`",
                names.join(", ")
            )));
        }
    };
    let t = tensors.swap_remove(index).1;
    let size = t.size();
    let n = match size.len() {
        d if d == sample_rank + 1 => size[0],
        d if d == sample_rank + 2 => size[1],
        _ => {
            return Err(bad_input(format!(
                "--noise {shown}: the tensor is {size:?}; give x_T as [n, …] with the run's sample shape, or [1 + steps, n, …]"
            )))
        }
    };
    Ok((t, n))
}

pub fn run(mut cmd: SampleCmd) -> anyhow::Result<()> {
    let device = super::device_arg(&cmd.device)?;
    if cmd.out.exists() {
        return Err(bad_input(format!(
            "--out {}: exists; ddpm-lab never overwrites results, choose another name",
            cmd.out.display()
        )));
    }
    let h = super::handle::open(&cmd.run_dir)?;
    let run_dir = h.trained.root.clone();
    let cfg = h.config.clone();
    let (weights, named_by) =
        super::handle::pick_weights(&h, cmd.weights, cmd.step, cmd.quiet, "sample");
    let tm = trained::load(&run_dir, cmd.step, weights, named_by, device)
        .map_err(Classified::into_cli)?;
    for w in super::handle::cold_warnings(&h, &[weights], tm.step) {
        eprintln!("warning: {w}");
    }
    let shape = crate::config::data_shape(&cfg);
    let noise = match &cmd.noise {
        Some(path) => {
            let (t, n) = read_noise(path, shape.sample.len())?;
            cmd.n = n;
            Some(t)
        }
        None => None,
    };
    let opts = sampling_options(&cmd, &cfg, shape.is_image())?;
    let guidance = cmd.guidance.unwrap_or(cfg.eval.guidance_scale);
    if !(guidance.is_finite() && guidance >= 0.0) {
        return Err(bad_input(format!(
            "--guidance {guidance}: must be a finite number ≥ 0 (1 is the conditional model alone; 1–8 is typical)"
        )));
    }
    if let Some(bad) = cmd.condition.iter().flatten().find(|x| !x.is_finite()) {
        return Err(bad_input(format!(
            "--condition: {bad} is not a finite number; give one finite value per condition column"
        )));
    }
    let stats: Option<Vec<crate::data::tabular::ColumnStats>> =
        std::fs::read_to_string(h.trained.data_stats())
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
    let cols = if tm.num_classes > 0 {
        tm.num_classes.min(16) as usize
    } else {
        (cmd.n as f64).sqrt().ceil() as usize
    };
    let condition = condition(&cmd, &cfg, &tm, stats.as_deref(), cols);
    let start = std::time::Instant::now();
    let mut progress = DrawProgress::new(cmd.quiet);
    let x = draw(
        &tm,
        &opts,
        guidance,
        &condition,
        cmd.n,
        noise
            .as_ref()
            .map_or(NoiseSource::Seed(cmd.seed), NoiseSource::Given),
        device,
        &mut |done, total| progress.step(done, total),
    );
    progress.finish();
    let x = x.map_err(Classified::into_cli)?;
    let broken = non_finite_samples(&x);
    if broken > 0 {
        return Err(bad_input(format!(
            "{broken} of {} samples came out NaN or infinite, so nothing was written: guidance {guidance} (or the condition) is too extreme for this model, or its {} weights at step {} are broken; lower --guidance, or try other --weights or --step",
            cmd.n, tm.weights, tm.step
        )));
    }
    write_samples(&cmd, &cfg, &x, cols, stats.as_deref(), &condition)?;
    let elapsed = start.elapsed().as_secs_f64();
    eprintln!("{}", summary(&cmd, &cfg, &tm, &opts, guidance, elapsed));
    Ok(())
}

/// The run's sampling options (eval.*), with the flags' changes, checked.
fn sampling_options(
    cmd: &SampleCmd,
    cfg: &RunConfig,
    is_image: bool,
) -> anyhow::Result<SamplingOptions> {
    let mut opts = cfg.eval.sampling_options(is_image);
    if let Some(s) = cmd.sampler {
        opts.sampler = match s {
            SamplerArg::Ddpm => SamplerKind::Ddpm,
            SamplerArg::Ddim => SamplerKind::Ddim,
        };
    }
    if opts.sampler == SamplerKind::Ddpm {
        // DDPM's ancestral sampler walks every timestep with its own noise.
        for (flag, given) in [
            ("--steps", cmd.steps.is_some()),
            ("--eta", cmd.eta.is_some()),
        ] {
            if given {
                return Err(bad_input(format!(
                    "{flag} applies to the DDIM sampler, and this draw uses DDPM (all {} steps); add --sampler ddim",
                    cfg.diffusion.timesteps
                )));
            }
        }
    }
    if let Some(s) = cmd.steps {
        if s > cfg.diffusion.timesteps as u64 {
            return Err(bad_input(format!(
                "--steps {s}: the run has {} timesteps; use at most that (0 = all)",
                cfg.diffusion.timesteps
            )));
        }
        opts.steps = s as usize;
    }
    if let Some(e) = cmd.eta {
        if !(0.0..=1.0).contains(&e) {
            return Err(bad_input(format!("--eta {e}: must be in [0, 1]")));
        }
        opts.eta = e;
    }
    if let Some(v) = cmd.variance {
        opts.variance = match v {
            VarianceArg::FixedLarge => Variance::FixedLarge,
            VarianceArg::FixedSmall => Variance::FixedSmall,
        };
    }
    if cmd.no_clip {
        opts.clip_x0 = false;
    }
    if cmd.clip {
        opts.clip_x0 = true;
    }
    Ok(opts)
}

/// What to condition the samples on: the flags', else for a class-conditional
/// run the classes in turn (one per grid column of `cols`), else nothing.
fn condition(
    cmd: &SampleCmd,
    cfg: &RunConfig,
    tm: &TrainedModel,
    stats: Option<&[ColumnStats]>,
    cols: usize,
) -> Condition {
    if cmd.unconditional {
        Condition::None
    } else if let Some(l) = cmd.label {
        Condition::Labels(vec![l; cmd.n as usize])
    } else if let Some(v) = &cmd.condition {
        // Condition columns of a tabular run are scaled like in training.
        let ncols = cfg.data.columns.len();
        let scaled: Vec<f32> = v
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                stats
                    .and_then(|s| s.get(ncols + i))
                    .map_or(x, |s| s.apply(x)) as f32
            })
            .collect();
        Condition::Vector(scaled)
    } else if tm.num_classes > 0 {
        Condition::Labels((0..cmd.n).map(|i| i % cols as i64).collect())
    } else {
        Condition::None
    }
}

/// Write the samples to `--out`: a PNG grid of `cols` columns (images), or
/// a table in the data's units (vectors), with the labels drawn for.
fn write_samples(
    cmd: &SampleCmd,
    cfg: &RunConfig,
    x: &tch::Tensor,
    cols: usize,
    stats: Option<&[ColumnStats]>,
    condition: &Condition,
) -> anyhow::Result<()> {
    if let Some(dir) = cmd.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    if has_extension(&cmd.out, "safetensors") {
        let mut named = vec![("samples".to_string(), x.to_device(tch::Device::Cpu))];
        if let Condition::Labels(l) = condition {
            named.push(("labels".to_string(), Tensor::from_slice(l)));
        }
        Tensor::write_safetensors(&named, &cmd.out)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", cmd.out.display()))?;
        return Ok(());
    }
    if crate::config::data_shape(cfg).is_image() {
        if !has_extension(&cmd.out, "png") {
            return Err(bad_input(format!(
                "--out {}: an image run writes a .png grid (or .safetensors, the samples as a tensor)",
                cmd.out.display()
            )));
        }
        write_png_grid(x, cols, &cmd.out)?;
        return Ok(());
    }
    let names: Vec<String> = if !cfg.data.columns.is_empty() {
        cfg.data.columns.clone()
    } else {
        (0..x.size()[1]).map(|i| format!("x{i}")).collect()
    };
    let extra = match condition {
        Condition::Labels(l) => vec![("label".to_string(), l.clone())],
        _ => vec![],
    };
    write_vectors(x, &names, stats, &extra, &cmd.out).map_err(Classified::into_cli)
}

/// Whether `path` ends in `.ext`, in any case (as for .csv and image folders).
fn has_extension(path: &std::path::Path, ext: &str) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// The line that says what was written, from what, and how long it took.
fn summary(
    cmd: &SampleCmd,
    cfg: &RunConfig,
    tm: &TrainedModel,
    opts: &SamplingOptions,
    guidance: f64,
    seconds: f64,
) -> String {
    format!(
        "{}: {} sample{} from step {} ({}), {} sampler{}, guidance {guidance}, {} in {seconds:.1}s",
        cmd.out.display(),
        cmd.n,
        if cmd.n == 1 { "" } else { "s" },
        tm.step,
        tm.weights,
        match opts.sampler {
            SamplerKind::Ddpm => "DDPM",
            SamplerKind::Ddim => "DDIM",
        },
        if opts.sampler == SamplerKind::Ddim {
            format!(
                " ({} steps, η {})",
                if opts.steps == 0 {
                    cfg.diffusion.timesteps
                } else {
                    opts.steps
                },
                opts.eta
            )
        } else {
            String::new()
        },
        match &cmd.noise {
            Some(p) => format!("noise from {}", p.display()),
            None => format!("seed {}", cmd.seed),
        },
    )
}

/// What `sample` shows while it draws: an indicatif bar of the reverse
/// steps on a terminal; elsewhere (a log, CI) a plain line every tenth of
/// them; nothing with --quiet.
struct DrawProgress {
    bar: Option<ProgressBar>,
    quiet: bool,
    /// Plain lines: the tenths of the steps reported so far.
    tenths: usize,
}

impl DrawProgress {
    fn new(quiet: bool) -> DrawProgress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            // Its length is set at the first step.
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template(
                    "{bar:30.cyan/blue} reverse step {pos}/{len} {per_sec} ETA {eta}",
                )
                .expect("valid template"), // ok: constant template
            );
            b
        });
        DrawProgress {
            bar,
            quiet,
            tenths: 0,
        }
    }

    fn step(&mut self, done: usize, total: usize) {
        if self.quiet {
            return;
        }
        if let Some(b) = &self.bar {
            b.set_length(total as u64);
            b.set_position(done as u64);
            return;
        }
        let tenths = done * 10 / total.max(1);
        if tenths > self.tenths {
            self.tenths = tenths;
            eprintln!(
                "[sample] reverse step {done}/{total} ({}%)",
                done * 100 / total.max(1)
            );
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
