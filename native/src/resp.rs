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

/// One argument's bulk string: `$<len>\r\n<bytes>\r\n`.
fn bulk(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(data.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn bulk_int(out: &mut Vec<u8>, value: i64) {
    bulk(out, value.to_string().as_bytes());
}

fn exact_int(value: &Bound<'_, PyAny>) -> Option<i64> {
    if !value.is_exact_instance_of::<PyInt>() {
        return None; // a bool, a subclass: redis-py's encoder decides
    }
    value.extract::<i64>().ok()
}

/// `pack_commands([store._fenced_write_command(writes, guard, marks, with_deadlines=True)])`
/// (`worker/store/redis_store.py`) for one chunk of `StateWrite`s, read off the tuples themselves: the
/// `EVALSHA` of the fenced-write script with the state keys, the deadline sets in the order the writes first
/// name them, the marks key when guarded, then per write (expected version, version, document, kind, TTL, id,
/// deadline op, the set's KEYS index, score) and the sorted distinct guard. `None` where the Python decides: a
/// write whose document is not there yet, or that schedules and unschedules at once (the Python raises), a
/// value that is not a plain `int`, `str` or `bytes` of the expected kind, an integer past 64 bits.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn pack_fenced_write<'py>(
    py: Python<'py>,
    sha: &str,
    prefix: &str,
    writes: &Bound<'py, PyAny>,
    guard: Vec<i64>,
    marks: &str,
    tombstone: &Bound<'py, pyo3::types::PyType>,
) -> Option<Bound<'py, PyBytes>> {
    crate::guarded(|| {
        let items: Vec<Bound<'py, PyAny>> = writes.try_iter().ok()?.collect::<PyResult<_>>().ok()?;
        let count = items.len();
        let mut state_keys = Vec::with_capacity(count * 48);
        let mut args = Vec::with_capacity(count * 1200);
        let mut sets: Vec<i64> = Vec::new(); // partitions of the deadline sets, in order of first use
        bulk_int(&mut args, count as i64);
        for item in &items {
            let fields = item.downcast::<pyo3::types::PyTuple>().ok()?;
            if fields.len() != 8 {
                return None;
            }
            let interaction_id = fields.get_item(0).ok()?;
            let interaction_id = interaction_id.downcast::<PyString>().ok()?.to_str().ok()?;
            let expected_version = exact_int(&fields.get_item(1).ok()?)?;
            let state = fields.get_item(2).ok()?;
            let ttl_ms = exact_int(&fields.get_item(3).ok()?)?;
            let deadline = fields.get_item(4).ok()?;
            let unschedule = fields.get_item(5).ok()?;
            let document = fields.get_item(6).ok()?;
            let restored = fields.get_item(7).ok()?;
            let version = exact_int(&state.getattr(pyo3::intern!(py, "version")).ok()?)?;
            let document = document.downcast::<PyBytes>().ok()?; // None: the Python encodes it
            let restored = restored.downcast::<PyBool>().ok()?.is_true();
            let kind: &[u8] = match (state.is_instance(tombstone).ok()?, restored) {
                (true, false) => b"t",
                (true, true) => b"tr",
                (false, false) => b"l",
                (false, true) => b"lr",
            };
            let (op, partition, score): (&[u8], i64, i64) = match (deadline.is_none(), unschedule.is_none()) {
                (true, true) => (b"", 0, 0),
                (false, true) => {
                    let pair = deadline.downcast::<pyo3::types::PyTuple>().ok()?;
                    if pair.len() != 2 {
                        return None;
                    }
                    (b"a", exact_int(&pair.get_item(0).ok()?)?, exact_int(&pair.get_item(1).ok()?)?)
                }
                (true, false) => (b"r", exact_int(&unschedule)?, 0),
                (false, false) => return None, // both: the Python raises
            };
            let index = if op.is_empty() {
                0
            } else {
                let at = match sets.iter().position(|&p| p == partition) {
                    Some(at) => at,
                    None => {
                        sets.push(partition);
                        sets.len() - 1
                    }
                };
                (count + at + 1) as i64
            };
            let mut key = Vec::with_capacity(prefix.len() + interaction_id.len() + 3);
            key.extend_from_slice(prefix.as_bytes());
            key.extend_from_slice(b":{");
            key.extend_from_slice(interaction_id.as_bytes());
            key.push(b'}');
            bulk(&mut state_keys, &key);
            bulk_int(&mut args, expected_version);
            bulk_int(&mut args, version);
            bulk(&mut args, document.as_bytes());
            bulk(&mut args, kind);
            bulk_int(&mut args, ttl_ms.max(1));
            bulk(&mut args, interaction_id.as_bytes());
            bulk(&mut args, op);
            bulk_int(&mut args, index);
            bulk_int(&mut args, score);
        }
        let mut guarded = guard;
        guarded.sort_unstable();
        guarded.dedup();
        bulk_int(&mut args, guarded.len() as i64);
        for partition in &guarded {
            bulk_int(&mut args, *partition);
        }
        let set_count = sets.len() + usize::from(!guarded.is_empty());
        let key_count = count + set_count;
        let mut head = Vec::with_capacity(128 + set_count * 32);
        head.push(b'*');
        head.extend_from_slice((3 + key_count + 1 + 9 * count + 1 + guarded.len()).to_string().as_bytes());
        head.extend_from_slice(b"\r\n");
        bulk(&mut head, b"EVALSHA");
        bulk(&mut head, sha.as_bytes());
        bulk_int(&mut head, key_count as i64);
        let mut set_keys = Vec::with_capacity(set_count * 32);
        for partition in &sets {
            bulk(&mut set_keys, format!("{prefix}:deadlines:{partition}").as_bytes());
        }
        if !guarded.is_empty() {
            bulk(&mut set_keys, marks.as_bytes());
        }
        let parts = [&head, &state_keys, &set_keys, &args];
        let total = parts.iter().map(|part| part.len()).sum();
        // written straight into the `bytes` object: the batch's documents are copied once, not twice
        PyBytes::new_with(py, total, |buffer: &mut [u8]| {
            let mut at = 0;
            for part in parts {
                buffer[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            Ok(())
        })
        .ok()
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(pack_commands, m)?)?;
    m.add_function(wrap_pyfunction!(pack_fenced_write, m)?)?;
    Ok(())
}
