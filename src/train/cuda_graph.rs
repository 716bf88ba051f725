//! CUDA graphs (`train.cuda_graph`): the whole training step (forward, backward,
//! loss scaling, clipping, AdamW, every EMA and the metric sums) recorded once
//! and then replayed as one launch per step.
//!
//! Why: the eager ddpm-cifar10 step launches ~2,750 kernels; on an H200 the
//! GPU sat idle ~13% of the step between them, and the host spent about as long
//! dispatching them as the GPU spent running them (BENCHMARKS.md). A replay
//! costs one launch. It is safe for our step because the step never reads the
//! device from the host and every per-step number (learning rate, EMA weights,
//! step index) lives in a device tensor the host fills before each replay;
//! randomness uses the CUDA generator, which libtorch re-seeds per replay from
//! its host-side seed, so `tch::manual_seed` before a replay draws exactly what
//! the eager step would.
//!
//! What libtorch needs (and PyTorch's `torch.cuda.graph` does): capture on a
//! non-default stream ([`SideStream`]), warm-up steps on that stream before the
//! capture (cuDNN's autotuning, lazily created handles), and inputs copied into
//! the tensors the graph was recorded with.

use std::ffi::{c_void, CStr};
use std::os::raw::c_char;
use tch::Device;

extern "C" {
    fn ddpm_graph_last_error() -> *const c_char;
    fn ddpm_cuda_use_side_stream(device: i32) -> i32;
    fn ddpm_cuda_use_default_stream(device: i32) -> i32;
    fn ddpm_graph_begin() -> *mut c_void;
    fn ddpm_graph_end(graph: *mut c_void) -> i32;
    fn ddpm_graph_abort(graph: *mut c_void);
    fn ddpm_graph_replay(graph: *mut c_void) -> i32;
    fn ddpm_graph_free(graph: *mut c_void);
}

/// Steps run eagerly on the side stream before the capture (PyTorch's examples
/// use three).
pub const WARMUP_STEPS: u64 = 3;

/// Why a graph could not be used; the message names the setting to change.
#[derive(Debug, thiserror::Error)]
#[error(
    "CUDA graph {what} failed: {detail}. Set train.cuda_graph = false to train without CUDA graphs"
)]
pub struct GraphError {
    pub what: &'static str,
    pub detail: String,
}

fn last_error(what: &'static str) -> GraphError {
    // SAFETY: the shim returns a pointer to a thread-local std::string's buffer,
    // valid until the next shim call on this thread; we copy it at once.
    let detail = unsafe { CStr::from_ptr(ddpm_graph_last_error()) }
        .to_string_lossy()
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    GraphError { what, detail }
}

/// Whether this binary was built with CUDA graph support (asked in config/,
/// which validates `train.cuda_graph` and may not import train/).
pub fn supported() -> bool {
    crate::config::hardware::cuda_graphs_built_in()
}

/// This thread runs its CUDA work on a fresh side stream while the guard lives;
/// dropping it waits for the device and restores the default stream.
pub struct SideStream {
    device: i32,
}

impl SideStream {
    pub fn enter(device: Device) -> Result<Self, GraphError> {
        let Device::Cuda(i) = device else {
            return Err(GraphError {
                what: "setup",
                detail: format!("CUDA graphs need a CUDA device, not {device:?}"),
            });
        };
        let device = i as i32;
        // SAFETY: plain C call; the shim catches every C++ exception.
        if unsafe { ddpm_cuda_use_side_stream(device) } != 0 {
            return Err(last_error("setup"));
        }
        Ok(SideStream { device })
    }
}

impl Drop for SideStream {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { ddpm_cuda_use_default_stream(self.device) };
    }
}

/// A captured graph, replayed on the current stream.
pub struct CudaGraph(*mut c_void);

// SAFETY: the graph is only launched from the thread that owns the `Run`; the
// pointer is moved with it, never shared.
unsafe impl Send for CudaGraph {}

impl CudaGraph {
    /// Record the CUDA work `body` enqueues on the current (side) stream; nothing
    /// runs. Returns the graph and what `body` returned: the tensors it wrote,
    /// which every replay writes again in place. A panic in `body` (a libtorch
    /// error, e.g. an operation that cannot be captured) ends the capture and
    /// comes back as an error.
    pub fn capture<T>(body: impl FnOnce() -> T) -> Result<(Self, T), GraphError> {
        // SAFETY: plain C call; null means it failed and nothing is capturing.
        let g = unsafe { ddpm_graph_begin() };
        if g.is_null() {
            return Err(last_error("capture"));
        }
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
        match out {
            Ok(v) => {
                // SAFETY: `g` is the live graph begun above.
                if unsafe { ddpm_graph_end(g) } != 0 {
                    let e = last_error("capture");
                    unsafe { ddpm_graph_free(g) };
                    return Err(e);
                }
                Ok((CudaGraph(g), v))
            }
            Err(payload) => {
                // SAFETY: as above; abort leaves the stream out of capture mode.
                unsafe {
                    ddpm_graph_abort(g);
                    ddpm_graph_free(g);
                }
                let detail = crate::panics::panic_message(payload.as_ref());
                Err(GraphError {
                    what: "capture",
                    detail: detail.lines().next().unwrap_or("").to_string(),
                })
            }
        }
    }

    /// Enqueue one run of the graph on the current stream.
    pub fn replay(&self) -> Result<(), GraphError> {
        // SAFETY: `self.0` is a live, instantiated graph.
        if unsafe { ddpm_graph_replay(self.0) } != 0 {
            return Err(last_error("replay"));
        }
        Ok(())
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        // SAFETY: owned pointer, freed once.
        unsafe { ddpm_graph_free(self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_side_stream_needs_a_cuda_device() {
        let e = SideStream::enter(Device::Cpu)
            .err()
            .expect("the CPU has no streams");
        let msg = e.to_string();
        assert!(msg.contains("need a CUDA device"), "{msg}");
        assert!(msg.contains("train.cuda_graph = false"), "{msg}");
    }

    /// On a machine without CUDA, beginning a capture fails cleanly with the
    /// shim's message instead of crashing (with CUDA, see tests/cuda_graph.rs).
    #[test]
    fn capture_without_cuda_is_an_error_not_a_crash() {
        if tch::Cuda::is_available() {
            return;
        }
        let ran = std::cell::Cell::new(false);
        let e = CudaGraph::capture(|| ran.set(true))
            .err()
            .expect("no CUDA device to capture on");
        assert!(
            !ran.get(),
            "the body must not run when the capture did not begin"
        );
        assert_eq!(e.what, "capture");
        assert!(!e.detail.is_empty(), "{e}");
    }
}
