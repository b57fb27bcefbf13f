//! `ilog_native`: the fold stage's hot path compiled. Each function gives exactly what its Python
//! counterpart in `worker/core` gives (the Python is the specification; the differential tests in
//! `tests/unit/test_native_*.py` compare the two), or `None` where it does not handle an input — a
//! lone surrogate, an integer past 64 bits, a type it does not know — and the caller then runs the
//! Python. It never guesses: anything unusual goes back to the specification.

use pyo3::prelude::*;

mod fold;
mod fold_document;
mod from_state;
mod held;
mod json;
mod resp;
mod snapshot;
mod state;
mod stored;
mod time;

/// Runs a compiled function's body; a panic (a bug here, never expected) becomes `None` like any input the
/// body does not handle, so the caller runs the Python specification and the event is folded all the same,
/// instead of PyO3's `PanicException` (a `BaseException`) stopping the stage on the same message at every
/// restart. The panic message still goes to stderr through Rust's panic hook.
pub(crate) fn guarded<T>(body: impl FnOnce() -> Option<T>) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(None)
}

/// A body that panics, through `guarded`: the tests check it comes back as `None` (it would abort the process
/// if the crate were built with `panic = "abort"`).
#[pyfunction]
fn _guard_probe() -> Option<i64> {
    guarded(|| panic!("ilog_native: the panic guard's probe"))
}

#[pymodule]
fn ilog_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(_guard_probe, m)?)?;
    json::register(m)?;
    resp::register(m)?;
    state::register(m)?;
    snapshot::register(m)?;
    fold::register(m)?;
    fold_document::register(m)?;
    from_state::register(m)?;
    held::register(m)?;
    time::register(m)?;
    Ok(())
}
