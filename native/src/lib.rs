//! `ilog_native`: the fold stage's hot path compiled. Each function gives exactly what its Python
//! counterpart in `worker/core` gives (the Python is the specification; the differential tests in
//! `tests/unit/test_native_*.py` compare the two), or `None` where it does not handle an input — a
//! lone surrogate, an integer past 64 bits, a type it does not know — and the caller then runs the
//! Python. It never guesses: anything unusual goes back to the specification.

use pyo3::prelude::*;

mod json;
mod resp;
mod state;
mod snapshot;
mod fold;

#[pymodule]
fn ilog_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    json::register(m)?;
    resp::register(m)?;
    state::register(m)?;
    snapshot::register(m)?;
    fold::register(m)?;
    Ok(())
}
