//! `ddpm-lab completions SHELL` and `ddpm-lab man`: the shell completion
//! script and the roff man page, both generated from the same clap
//! definition the binary parses with, so they never list a flag it lacks.

use clap::{Args, CommandFactory, ValueEnum};
use std::io::Write;

/// The shells a completion script can be written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

impl Shell {
    fn generator(self) -> clap_complete::Shell {
        match self {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
            Shell::Elvish => clap_complete::Shell::Elvish,
            Shell::Powershell => clap_complete::Shell::PowerShell,
        }
    }
}

#[derive(Debug, Args)]
pub struct CompletionsCmd {
    /// The shell to write the script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManCmd {}

/// Write the completion script for `cmd.shell` to standard output.
pub fn run(cmd: CompletionsCmd) -> anyhow::Result<()> {
    let mut command = super::Cli::command();
    let mut script = vec![];
    clap_complete::generate(cmd.shell.generator(), &mut command, "ddpm-lab", &mut script);
    let mut script = String::from_utf8_lossy(&script).into_owned();
    if cmd.shell == Shell::Bash {
        script = mend_bash(&script);
    }
    let mut out = std::io::stdout().lock();
    out.write_all(script.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// clap_complete's bash script spells a hyphenated binary's states two
/// ways (clap-rs/clap#6421): the loop that walks the words arrives at
/// `ddpm__lab__subcmd__sweep`, the arms that list a subcommand's flags are
/// labelled `ddpm__subcmd__lab__subcmd__sweep`, so no flag after a
/// subcommand would ever complete. The arms are relabelled the loop's way.
fn mend_bash(script: &str) -> String {
    script.replace("ddpm__subcmd__lab", "ddpm__lab")
}

/// Write the man page (roff) to standard output.
pub fn man(_: ManCmd) -> anyhow::Result<()> {
    let page = clap_mangen::Man::new(super::Cli::command());
    let mut out = std::io::stdout().lock();
    page.render(&mut out)?;
    out.flush()?;
    Ok(())
}
