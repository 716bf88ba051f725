//! End-to-end tests of what the command line says to a user who slips: help
//! screens with examples, `--set KEY VALUE`, a file given to the wrong
//! command, and a data path that is not where ddpm-lab runs.

mod common;
use common::{bin, text, write};

use std::path::Path;

/// The subcommands `ddpm-lab help` lists.
fn subcommands() -> Vec<String> {
    let o = bin().arg("help").output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let help = text(&o.stdout);
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // (A wrapped description continues further in.)
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect()
}

/// Every subcommand's `--help` ends with examples, and each example is a
/// command README.md shows.
#[test]
fn every_subcommand_help_ends_with_examples_that_readme_shows() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let commands = subcommands();
    assert!(commands.len() >= 9, "{commands:?}");
    for c in &commands {
        let o = bin().args([c.as_str(), "--help"]).output().unwrap();
        assert!(o.status.success(), "{c}: {}", text(&o.stderr));
        let help = text(&o.stdout);
        let examples = help
            .split("Examples:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{c} --help has no examples:\n{help}"));
        let lines: Vec<&str> = examples.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!((1..=3).contains(&lines.len()), "{c}: {lines:?}");
        for l in lines {
            let command = l.split(" # ").next().unwrap().trim();
            assert!(
                command.starts_with(&format!("ddpm-lab {c}")),
                "{c}: {command}"
            );
            assert!(
                readme.contains(command),
                "{c}: README.md does not show `{command}`"
            );
        }
    }
}

/// `--set train.steps 300` (a space for the `=`) is answered with the form
/// to write, exit 2.
#[test]
fn a_set_without_its_equals_sign_gets_the_key_value_form() {
    for cmd in ["train", "sweep"] {
        let o = bin()
            .args([cmd, "x.toml", "--set", "train.steps", "300"])
            .output()
            .unwrap();
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.starts_with("error: --set takes KEY=VALUE: write --set train.steps=300\n"),
            "{err}"
        );
        assert!(err.contains(&format!("Usage: ddpm-lab {cmd}")), "{err}");
    }
}

/// A run config given to `sweep`, or a spec given to `train`, is named as
/// such with the command to use, exit 2, instead of "unknown key" lines.
#[test]
fn a_file_given_to_the_wrong_command_is_named_with_the_right_one() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let run = write(
        d,
        "run.toml",
        "[train]\nsteps = 10\n[model]\npreset = \"mlp-small\"\n",
    );
    let o = bin()
        .arg("sweep")
        .arg(&run)
        .args(["--dry-run", "--devices", "cpu"])
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let r = run.display();
    assert_eq!(
        err.trim_end(),
        format!(
            "error: {r} is a run config (it has [model], [train]), not a sweep spec: train it with `ddpm-lab train {r}`, or put its tables under [base] of a spec"
        )
    );
    assert!(!err.contains("unknown key"), "{err}");

    let spec = write(
        d,
        "spec.toml",
        "name = \"s\"\n[base]\ntrain.steps = 10\n[sweep]\nseeds = [0, 1]\n",
    );
    let o = bin()
        .arg("train")
        .arg(&spec)
        .arg("--out")
        .arg(d.join("out"))
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let s = spec.display();
    assert_eq!(
        err.trim_end(),
        format!(
            "error: {s} is a sweep spec (it has [sweep], [base]), not a run config: run it with `ddpm-lab sweep {s}`"
        )
    );
    assert!(!d.join("out").exists(), "nothing written");
}

/// Run from another folder, a relative data.path is not found: the message
/// names the folder ddpm-lab ran in, and where `ddpm-lab data mnist` builds.
#[test]
fn a_missing_data_path_names_the_folder_ddpm_lab_runs_in() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().canonicalize().unwrap();
    let cfg = write(
        &d,
        "mnist.toml",
        "[data]\nsource = \"mnist\"\nresolution = 14\n[model]\npreset = \"unet-tiny\"\n[train]\nsteps = 2\nbatch_size = 4\n",
    );
    let o = bin()
        .current_dir(&d)
        .arg("train")
        .arg(&cfg)
        .args(["--out", "run", "--device", "cpu"])
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let cwd = d.display();
    assert!(
        err.contains(&format!(
            "data/mnist/train-images-idx3-ubyte: not found in {cwd} (ddpm-lab resolves a relative data.path from the folder it runs in"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "run `ddpm-lab data mnist` (or `just data`) in {cwd} to build data/mnist there"
        )),
        "{err}"
    );
    assert!(!d.join("run").exists(), "no run directory");
}

/// The bash completion script completes subcommands and their flags when
/// sourced into a real bash; zsh and fish scripts name the binary; the man
/// page lists the subcommands; an unknown shell is refused with the valid
/// ones, exit 2.
#[test]
fn completions_complete_in_a_real_bash_and_the_man_page_lists_the_commands() {
    let o = bin().args(["completions", "bash"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("ddpm-lab.bash");
    std::fs::write(&script, &o.stdout).unwrap();
    // Complete `ddpm-lab sw<TAB>` and `ddpm-lab sweep --dry<TAB>` as bash would.
    let complete = |words: &str, cword: usize| -> String {
        let probe = format!(
            "source '{}'; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; f=$(complete -p ddpm-lab | sed -E 's/.*-F ([^ ]+).*/\\1/'); \"$f\" ddpm-lab \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let o = std::process::Command::new("bash")
            .args(["--norc", "-c", &probe])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stdout)
    };
    let sub = complete("ddpm-lab sw", 1);
    // `sweep-task` is what a Slurm array task runs (hidden from --help).
    let subs: Vec<&str> = sub.split_whitespace().collect();
    assert_eq!(subs, vec!["sweep", "sweep-task"], "{sub}");
    let flags = complete("ddpm-lab sweep --dry", 2);
    assert!(flags.lines().any(|l| l.trim() == "--dry-run"), "{flags}");
    for (shell, mark) in [
        ("zsh", "#compdef ddpm-lab"),
        ("fish", "complete -c ddpm-lab"),
    ] {
        let o = bin().args(["completions", shell]).output().unwrap();
        assert!(text(&o.stdout).contains(mark), "{shell}");
    }
    let man = text(&bin().arg("man").output().unwrap().stdout);
    assert!(
        man.starts_with(".ie \\n(.g .ds Aq") || man.contains(".TH ddpm-lab"),
        "{man}"
    );
    for c in subcommands() {
        assert!(
            man.contains(&format!("ddpm\\-lab\\-{c}")),
            "man page lacks {c}"
        );
    }
    let o = bin().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("invalid value 'tcsh'") && err.contains("bash, zsh, fish"),
        "{err}"
    );
}
