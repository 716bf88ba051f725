//! What config validation needs to know about the machine, asked in one place.
//!
//! [`super::validate::validate`] is a pure function of a config and a
//! [`Hardware`]: the caller probes once ([`Hardware::probe`], the only part
//! that touches the machine) and passes the answers in. That keeps the checks
//! that depend on the machine (is there a `cuda:3`? was this binary built with
//! CUDA graphs?) testable with any machine described, and lets config/ ask
//! about the CUDA graph shim without importing train/ (train/ imports config/,
//! not the reverse).

/// The machine's answers to the questions a config check asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hardware {
    /// How many CUDA devices libtorch sees; 0 without CUDA.
    pub cuda_devices: i64,
    /// Whether this binary was built with CUDA graph support (`train.cuda_graph`).
    pub cuda_graphs: bool,
}

extern "C" {
    // From the C++ shim build.rs compiles (src/train/cuda_graph.cpp): 1 when
    // PyTorch's CUDA headers were found at build time, else 0.
    fn ddpm_graph_supported() -> i32;
}

/// Whether this binary was built with CUDA graph support.
pub fn cuda_graphs_built_in() -> bool {
    // SAFETY: a plain C function without arguments.
    unsafe { ddpm_graph_supported() == 1 }
}

impl Hardware {
    /// Ask this machine (and this build).
    pub fn probe() -> Hardware {
        Hardware {
            cuda_devices: tch::Cuda::device_count(),
            cuda_graphs: cuda_graphs_built_in(),
        }
    }
}
