//! tch reports most libtorch errors (an allocation it cannot make, CUDA out
//! of memory) by panicking. Where such a failure must become an error with a
//! message instead of ending the process (building a model, a training
//! step), the panic is caught and this turns its payload into that message.

/// The message of a panic caught from a tch call (tch panics on libtorch
/// errors), without libtorch's appended C++ backtrace.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    msg.split("\nException raised")
        .next()
        .unwrap_or("")
        .to_string()
}
