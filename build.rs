//! Link libtorch so that CUDA stays visible and the binary finds PyTorch's
//! libraries without any environment set.
//!
//! torch-sys links `torch_cuda` like any other library, and the linker's default
//! `--as-needed` drops it because no symbol of ours refers to it: the binary then
//! runs, but `tch::Cuda::is_available()` is false even on a GPU machine. We add
//! `--no-as-needed -ltorch_cuda -ltorch` so the DT_NEEDED entries stay.
//!
//! We also record a RUNPATH (not an RPATH: `--enable-new-dtags`) to the venv's
//! `torch/lib`. RUNPATH is searched after `LD_LIBRARY_PATH`, so the same binary
//! can be pointed at another copy of PyTorch 2.11.0 (e.g. on a GPU machine).
use std::env;
use std::path::PathBuf;
use std::process::Command;

const FIND_TORCH: &str = "import os, torch; d = os.path.dirname(torch.__file__); \
print(os.path.join(d, 'lib')); print(os.path.join(d, 'include')); \
print(int(torch._C._GLIBCXX_USE_CXX11_ABI))";

/// The commit the binary is built from, for reports (`DDPMLAB_BUILD_COMMIT`;
/// not `DDPM_LAB_*`, which cargo would also export to test processes, where
/// the config's environment layer would read it as a key). Only this
/// checkout's HEAD and its branch's ref are watched, so a commit on another
/// branch or worktree does not rebuild this one.
fn record_commit() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    if let (Some(dir), Some(common)) = (
        git(&["rev-parse", "--git-dir"]),
        git(&["rev-parse", "--git-common-dir"]),
    ) {
        let (dir, common) = (PathBuf::from(dir), PathBuf::from(common));
        let mut watch = vec![dir.join("HEAD"), common.join("packed-refs")];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch.push(common.join(branch));
        }
        for f in watch.iter().filter(|f| f.exists()) {
            println!("cargo:rerun-if-changed={}", f.display());
        }
    }
    if let Some(c) = git(&["rev-parse", "--short=12", "HEAD"]) {
        println!("cargo:rustc-env=DDPMLAB_BUILD_COMMIT={c}");
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    record_commit();
    for f in ["autocast", "fused_adamw", "cuda_graph"] {
        println!("cargo:rerun-if-changed=src/train/{f}.cpp");
    }
    println!("cargo:rerun-if-env-changed=VIRTUAL_ENV");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    // Same interpreter choice as torch-sys, so both see the same PyTorch.
    let python = if env::var_os("VIRTUAL_ENV").is_some() {
        "python"
    } else {
        "python3"
    };
    let out = Command::new(python).arg("-c").arg(FIND_TORCH).output();
    let (lib, include, abi) = match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            let lines: Vec<&str> = text.lines().collect();
            assert!(lines.len() >= 3, "ddpm-lab: unexpected answer from {python}: {text}");
            (
                PathBuf::from(lines[0]),
                PathBuf::from(lines[1]),
                lines[2].to_string(),
            )
        }
        _ => panic!(
            "ddpm-lab: could not import torch with `{python}`. Run `just setup` (it installs \
             PyTorch 2.11.0 into ./.venv) and build through `just build`, which puts the venv first \
             on PATH and sets LIBTORCH_USE_PYTORCH=1."
        ),
    };
    // The C++ shims: autocast (src/train/autocast.cpp: bf16 autocast needs the
    // autocast dtype set), fused AdamW (src/train/fused_adamw.cpp) and CUDA
    // graphs (src/train/cuda_graph.cpp); tch exposes none of them.
    let has_cuda_lib = lib.join("libtorch_cuda.so").exists();
    let cuda_headers = if has_cuda_lib {
        cuda_include_dirs(&lib)
    } else {
        None
    };
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .flag_if_supported("-w")
        .file("src/train/autocast.cpp")
        .file("src/train/fused_adamw.cpp")
        .file("src/train/cuda_graph.cpp");
    match &cuda_headers {
        Some(dirs) => {
            build.define("DDPM_CUDA_GRAPHS", None);
            for d in dirs {
                build.include(d);
            }
        }
        None if has_cuda_lib => println!(
            "cargo:warning=ddpm-lab: CUDA runtime headers not found beside PyTorch; \
             train.cuda_graph will be unavailable in this build"
        ),
        None => {}
    }
    build.compile("ddpm_autocast");

    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-L{}", lib.display());
    if has_cuda_lib {
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        if cuda_headers.is_some() {
            println!("cargo:rustc-link-arg=-lc10_cuda");
        }
    }
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
    println!("cargo:rustc-link-arg=-Wl,--enable-new-dtags");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}

/// The include directories the CUDA graph shim needs beside PyTorch's own:
/// one with `cuda_runtime_api.h` and one with `crt/host_config.h`. PyTorch's
/// CUDA wheels bring the first in `nvidia/cu13` (or `nvidia/cuda_runtime` for
/// CUDA 12) and the second with Triton; a CUDA toolkit has both.
fn cuda_include_dirs(torch_lib: &std::path::Path) -> Option<Vec<PathBuf>> {
    let site = torch_lib.parent()?.parent()?;
    let mut roots = vec![
        site.join("nvidia/cu13/include"),
        site.join("nvidia/cuda_runtime/include"),
        site.join("triton/backends/nvidia/include"),
    ];
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
        if let Some(h) = env::var_os(var) {
            roots.push(PathBuf::from(h).join("include"));
        }
    }
    roots.push(PathBuf::from("/usr/local/cuda/include"));
    let runtime = roots
        .iter()
        .find(|d| d.join("cuda_runtime_api.h").exists())?;
    let crt = roots
        .iter()
        .find(|d| d.join("crt/host_config.h").exists())?;
    let mut dirs = vec![runtime.clone()];
    if crt != runtime {
        dirs.push(crt.clone());
    }
    Some(dirs)
}
