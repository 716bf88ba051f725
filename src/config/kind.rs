//! Which kind of TOML file a path holds: a run config (`ddpm-lab train`) or
//! a sweep spec (`ddpm-lab sweep`). Given to the wrong command, either would
//! be reported as a handful of "unknown key" lines that never say what is
//! wrong; the readers ask this first and name the right command instead.

use std::path::{Path, PathBuf};

/// The top-level tables of a run config.
const RUN_TABLES: [&str; 7] = [
    "data",
    "model",
    "diffusion",
    "train",
    "ema",
    "eval",
    "output",
];
/// Top-level keys only a sweep spec has: its tables, and (weaker, since a
/// run config may hold one by mistake) its plain keys.
const SPEC_TABLES: [&str; 2] = ["sweep", "base"];
const SPEC_KEYS: [&str; 4] = ["name", "description", "extends", "report"];

/// The kinds of file the commands read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    RunConfig,
    SweepSpec,
}

/// A file of one kind given to the command that reads the other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WrongKind {
    #[error("{} is a run config (it has {}), not a sweep spec: train it with `ddpm-lab train {}`, or put its tables under [base] of a spec", .path.display(), .has.join(", "), .path.display())]
    RunConfigNotSpec { path: PathBuf, has: Vec<String> },
    #[error("{} is a sweep spec (it has {}), not a run config: run it with `ddpm-lab sweep {}`", .path.display(), .has.join(", "), .path.display())]
    SpecNotRunConfig { path: PathBuf, has: Vec<String> },
}

/// What marks `table` (a parsed file's top level) as each kind: the tables
/// and keys found, written as a user would (`[train]`, `name =`).
fn marks(table: &toml::Table) -> (Vec<String>, Vec<String>, Vec<String>) {
    let shown = |k: &str| match table.get(k) {
        Some(toml::Value::Table(_)) => format!("[{k}]"),
        _ => format!("{k} ="),
    };
    let found = |keys: &[&str]| -> Vec<String> {
        keys.iter()
            .filter(|k| table.contains_key(**k))
            .map(|k| shown(k))
            .collect()
    };
    (found(&RUN_TABLES), found(&SPEC_TABLES), found(&SPEC_KEYS))
}

/// The kind of file `table` is, with the keys that say so; None when it
/// is not clearly either (then the reader's own checks speak).
pub fn kind_of(table: &toml::Table) -> Option<(FileKind, Vec<String>)> {
    let (run, spec_tables, spec_keys) = marks(table);
    if !spec_tables.is_empty() {
        return Some((FileKind::SweepSpec, spec_tables));
    }
    if !run.is_empty() {
        return Some((FileKind::RunConfig, run));
    }
    if !spec_keys.is_empty() {
        return Some((FileKind::SweepSpec, spec_keys));
    }
    None
}

/// Ok unless `text`, the contents of `path`, is clearly the other kind of
/// file than `want`. Text that does not parse is left to the reader.
pub fn expect(path: &Path, text: &str, want: FileKind) -> Result<(), WrongKind> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Ok(());
    };
    match kind_of(&table) {
        Some((FileKind::RunConfig, has)) if want == FileKind::SweepSpec => {
            Err(WrongKind::RunConfigNotSpec {
                path: path.to_path_buf(),
                has,
            })
        }
        Some((FileKind::SweepSpec, has)) if want == FileKind::RunConfig => {
            Err(WrongKind::SpecNotRunConfig {
                path: path.to_path_buf(),
                has,
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, want: FileKind) -> Result<(), String> {
        expect(Path::new("experiments/x.toml"), text, want).map_err(|e| e.to_string())
    }

    #[test]
    fn a_run_config_given_to_sweep_is_named_with_the_command_to_use() {
        let run = "[train]\nsteps = 3\n[model]\npreset = \"mlp-small\"\n";
        assert_eq!(
            check(run, FileKind::SweepSpec).unwrap_err(),
            "experiments/x.toml is a run config (it has [model], [train]), not a sweep spec: train it with `ddpm-lab train experiments/x.toml`, or put its tables under [base] of a spec"
        );
        assert_eq!(check(run, FileKind::RunConfig), Ok(()));
        // Dotted top-level keys are tables too.
        assert!(check("train.steps = 3\n", FileKind::SweepSpec).is_err());
    }

    #[test]
    fn a_spec_given_to_train_is_named_with_the_command_to_use() {
        let spec = "name = \"s\"\n[base]\ntrain.steps = 3\n[sweep]\nseeds = [0]\n";
        assert_eq!(
            check(spec, FileKind::RunConfig).unwrap_err(),
            "experiments/x.toml is a sweep spec (it has [sweep], [base]), not a run config: run it with `ddpm-lab sweep experiments/x.toml`"
        );
        assert_eq!(check(spec, FileKind::SweepSpec), Ok(()));
        assert!(check("name = \"s\"\n", FileKind::RunConfig)
            .unwrap_err()
            .contains("(it has name =)"));
        // A spec that wrongly puts [train] at the top is still a spec.
        assert_eq!(
            check(
                "[sweep]\nseeds = [0]\n[train]\nsteps = 3\n",
                FileKind::SweepSpec
            ),
            Ok(())
        );
        // Neither kind, or no TOML: the readers' own messages.
        assert_eq!(check("nmae = 1\n", FileKind::RunConfig), Ok(()));
        assert_eq!(check("[[[", FileKind::SweepSpec), Ok(()));
    }
}
