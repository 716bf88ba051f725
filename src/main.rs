//! The `ddpm-lab` binary: parse the command line, call the library, map errors
//! to exit codes (0 ok, 1 something failed, 2 the input was wrong).

#![warn(clippy::too_many_lines)]

use ddpm_lab::{cli, exit};

fn main() {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`ddpm-lab inspect
    // schedule | head`) would panic; end quietly instead, as Unix tools do.
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition at start-up, before any
    // thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = cli::parse(); // usage errors are printed there, with exit code 2
    if let Err(err) = cli::run(args) {
        eprintln!("error: {err:#}");
        std::process::exit(exit::code_for(&err));
    }
}
