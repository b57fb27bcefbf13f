//! Redis commands packed as RESP, as redis-py packs them (with hiredis): `*<n>\r\n` and one
//! `$<len>\r\n<bytes>\r\n` per argument; `str` as UTF-8, `int` in decimal, `bytes` as they are. The fold
//! stage packs its fenced-write script calls (thousands of arguments per batch) with this; `None` for an
//! argument it does not take (a float, a lone surrogate, a command name with a space, which redis-py splits):
//! the caller then packs through redis-py.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyInt, PyList, PyString};

fn pack_argument(out: &mut Vec<u8>, argument: &Bound<'_, PyAny>) -> Option<()> {
    let number: String;
    let data: &[u8] = if let Ok(raw) = argument.downcast::<PyBytes>() {
        raw.as_bytes()
    } else if let Ok(text) = argument.downcast::<PyString>() {
        text.to_str().ok()?.as_bytes()
    } else if argument.is_instance_of::<PyInt>() && !argument.is_instance_of::<PyBool>() {
        number = argument.extract::<i64>().ok()?.to_string();
        number.as_bytes()
    } else {
        return None;
    };
    out.push(b'$');
    out.extend_from_slice(data.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    Some(())
}

fn pack_one(out: &mut Vec<u8>, command: &Bound<'_, PyList>) -> Option<()> {
    let first = command.get_item(0).ok()?;
    let name: &[u8] = if let Ok(text) = first.downcast::<PyString>() {
        text.to_str().ok()?.as_bytes()
    } else {
        first.downcast::<PyBytes>().ok()?.as_bytes()
    };
    if name.contains(&b' ') || name.is_empty() {
        return None;
    }
    out.push(b'*');
    out.extend_from_slice(command.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for argument in command.iter() {
        pack_argument(out, &argument)?;
    }
    Some(())
}

/// The commands (lists of arguments) packed one after the other: what redis-py's
/// `Connection.pack_commands` sends, as one `bytes`.
#[pyfunction]
fn pack_commands<'py>(py: Python<'py>, commands: &Bound<'py, PyList>) -> Option<Bound<'py, PyBytes>> {
    crate::guarded(|| {
        let mut out = Vec::with_capacity(64 * 1024);
        for command in commands.iter() {
            pack_one(&mut out, command.downcast::<PyList>().ok()?)?;
        }
        Some(PyBytes::new(py, &out))
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(pack_commands, m)?)?;
    Ok(())
}
