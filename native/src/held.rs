//! The values the fold stage holds beside an open log's stored document (`worker.core.state.StoredLog`),
//! read off a document loaded from the store: the log is then folded over its document (`fold_document`)
//! from its first event on, instead of being decoded into Python objects first.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::from_state::unescape;
use crate::snapshot::known;
use crate::stored::{layout_known, Document};

/// `(interaction_id, version, edit_deadline_us)` of `InteractionLog.from_bytes(document)`, or None: a document
/// `to_bytes` would not write as it is (an earlier version's, a corrupt one: the caller decodes it, and words
/// what is wrong), or a finalized log (never held as its document).
#[pyfunction]
fn held_log_fields<'py>(py: Python<'py>, document: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    let known = known(py)?;
    if !layout_known(py, known) {
        return None;
    }
    let text = document.downcast::<PyBytes>().ok()?.as_bytes();
    crate::guarded(|| {
        let log = Document::read(known, text, None)?;
        if log.finalized {
            return None;
        }
        let raw = log.interaction_id;
        let interaction_id = if raw.contains(&b'\\') {
            PyString::new(py, &unescape(raw)?)
        } else {
            PyString::new(py, std::str::from_utf8(raw).ok()?)
        };
        Some((interaction_id, log.version, log.edit_deadline_us).into_pyobject(py).ok()?.into_any())
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(held_log_fields, m)?)?;
    Ok(())
}
