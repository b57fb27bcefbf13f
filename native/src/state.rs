//! `InteractionLog.to_bytes()` (`worker/core/state.py`): the stored document `_log_document` builds,
//! written as `orjson.dumps(document, default=_fact_out)` writes it.
//!
//! Keys `k i v g l a`, then `f` (1, when finalized), `e` (when there is an edit deadline), then the facts
//! that are set: `t c w n s nm rt u at`, in that order (`_add_facts`, `_add_choices`). Each fact is read off
//! the log itself, never off its `Derived` (whose JSON is the same bytes). The connect data is written as
//! `_model_out` gives it: the model's `__dict__` in order, `None` values left out, nested models in turn.
//!
//! `None` for anything the Python does not meet on the fold's logs (a container that is not a tuple, a
//! fact of another length, connect data that is not a pydantic model, a value the JSON writers leave to
//! orjson, a lone surrogate, an integer past 64 bits): the caller then runs the Python.

use std::cell::RefCell;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyDict, PyInt, PyList, PyString, PyTuple, PyType};

use crate::json::{self, to_bytes, Out};

/// `pydantic.BaseModel`, for `_model_out`'s `isinstance(value, BaseModel)`.
static BASE_MODEL: GILOnceCell<Py<PyType>> = GILOnceCell::new();

/// Nested models deeper than this go back to the Python (the connect data nests one level).
const MAX_MODEL_DEPTH: usize = 8;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether a byte of the word is a control character, `"` or `\\` (what `json::write_str` escapes): the
/// "has a byte less than / equal to" tests of the bit-twiddling hacks, exact for "any byte".
fn word_needs_escape(word: u64) -> bool {
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    (below_space | (quote.wrapping_sub(ONES) & !quote) | (backslash.wrapping_sub(ONES) & !backslash)) & HIGHS != 0
}

/// `json::write_str`'s bytes: text with nothing to escape (most of it), checked eight bytes at a time,
/// copied at once; anything else written by `json::write_str` itself.
fn write_text(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let chunks = bytes.chunks_exact(8);
    let tail = chunks.remainder();
    let clean = chunks.into_iter().all(|chunk| {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        !word_needs_escape(u64::from_le_bytes(word))
    }) && !tail.iter().any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\');
    if clean {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
    } else {
        json::write_str(out, text);
    }
}

/// "00" to "99": two digits at a time.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819202122232425262728293031323334353637383940414243444546474849\
                            5051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";

/// `json::write_i64`'s digits, without a `String` in between.
fn write_int(out: &mut Vec<u8>, value: i64) {
    let mut digits = [0u8; 20];
    let mut position = digits.len();
    let mut rest = value.unsigned_abs();
    while rest >= 100 {
        let pair = (rest % 100) as usize * 2;
        rest /= 100;
        position -= 2;
        digits[position..position + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if rest >= 10 {
        let pair = rest as usize * 2;
        position -= 2;
        digits[position..position + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        position -= 1;
        digits[position] = b'0' + rest as u8;
    }
    if value < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[position..]);
}

/// `json::write_py_value`, with the values a log holds (`str`, `int`, `None`, tuples) first and quicker;
/// anything else through `json::write_py_value` itself. A tuple subclass is written as the tuple it is, as
/// `_fact_out` hands it to orjson.
fn write_value(out: &mut Vec<u8>, value: &Bound<'_, PyAny>) -> Out {
    if value.is_exact_instance_of::<PyString>() {
        write_text(out, value.downcast::<PyString>().ok()?.to_str().ok()?);
    } else if value.is_exact_instance_of::<PyInt>() {
        write_int(out, value.extract::<i64>().ok()?);
    } else if value.is_none() {
        out.extend_from_slice(b"null");
    } else if let Ok(text) = value.downcast::<PyString>() {
        write_text(out, text.to_str().ok()?); // a `StrEnum` member: its value
    } else if let Ok(items) = value.downcast::<PyTuple>() {
        write_items(out, items)?; // a `Stamp`, a `Transition`: the plain tuple `_fact_out` makes of it
    } else {
        json::write_py_value(out, value)?;
    }
    Some(())
}

/// A tuple's items as a JSON array.
fn write_items(out: &mut Vec<u8>, items: &Bound<'_, PyTuple>) -> Out {
    out.push(b'[');
    for (index, item) in items.iter_borrowed().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_value(out, &item)?;
    }
    out.push(b']');
    Some(())
}

/// `log.<name>`; `None` when reading it raises.
fn attr<'py>(object: &Bound<'py, PyAny>, name: &Bound<'py, PyString>) -> Out<Bound<'py, PyAny>> {
    object.getattr(name).ok()
}

/// The items of a tuple of exactly `length` (what `a, b = fact` and `fact[0], fact[1]` read).
fn fixed<'a, 'py>(value: &'a Bound<'py, PyAny>, length: usize) -> Out<&'a Bound<'py, PyTuple>> {
    let items = value.downcast::<PyTuple>().ok()?;
    (items.len() == length).then_some(items)
}

/// `tuple(value)` as orjson writes it, for a value that is a tuple (a `Stamp`, a `Transition`) or a list.
fn write_array(out: &mut Vec<u8>, value: &Bound<'_, PyAny>) -> Out {
    if let Ok(items) = value.downcast::<PyTuple>() {
        write_items(out, items)
    } else if value.is_instance_of::<PyList>() {
        json::write_py_value(out, value)
    } else {
        None
    }
}

/// `[ref.system, ref.type, ref.id]` (`_ref_out`), or `null` for `None`.
pub(crate) fn write_ref(py: Python<'_>, out: &mut Vec<u8>, record: &Bound<'_, PyAny>) -> Out {
    if record.is_none() {
        out.extend_from_slice(b"null");
        return Some(());
    }
    out.push(b'[');
    write_value(out, &attr(record, intern!(py, "system"))?)?;
    out.push(b',');
    write_value(out, &attr(record, intern!(py, "type"))?)?;
    out.push(b',');
    write_value(out, &attr(record, intern!(py, "id"))?)?;
    out.push(b']');
    Some(())
}

/// `(tuple(choice[0]), choice[1])` of a stamped text (`n`, `s`).
fn write_stamped_text(out: &mut Vec<u8>, choice: &Bound<'_, PyAny>) -> Out {
    let items = fixed(choice, 2)?;
    out.push(b'[');
    write_array(out, &*items.get_borrowed_item(0).ok()?)?;
    out.push(b',');
    write_value(out, &*items.get_borrowed_item(1).ok()?)?;
    out.push(b']');
    Some(())
}

/// `_stamped_ref_out(choice)` (`nm`, `rt`).
fn write_stamped_ref(py: Python<'_>, out: &mut Vec<u8>, choice: &Bound<'_, PyAny>) -> Out {
    let items = fixed(choice, 2)?;
    out.push(b'[');
    write_array(out, &*items.get_borrowed_item(0).ok()?)?;
    out.push(b',');
    write_ref(py, out, &*items.get_borrowed_item(1).ok()?)?;
    out.push(b']');
    Some(())
}

/// `isinstance(value, BaseModel)`, by the value's type: pydantic's metaclass checks instances as `type`
/// does (no virtual subclasses), and a model's field values do not pretend to another `__class__`.
/// Asked directly, not through `__instancecheck__`, which makes a method object at each call.
fn is_model(py: Python<'_>, value: &Bound<'_, PyAny>) -> Out<bool> {
    if value.is_exact_instance_of::<PyString>() {
        return Some(false);
    }
    let base = BASE_MODEL.import(py, "pydantic", "BaseModel").ok()?;
    // SAFETY: both are live type objects, held for the call (`value` by its `Bound`, `base` by the cell).
    Some(unsafe { pyo3::ffi::PyType_IsSubtype(value.get_type().as_type_ptr(), base.as_type_ptr()) } != 0)
}

/// `_model_out(model)` as orjson writes it: the fields in `__dict__` order, `None` left out, models nested.
pub(crate) fn write_model(py: Python<'_>, out: &mut Vec<u8>, model: &Bound<'_, PyAny>, depth: usize) -> Out {
    if depth > MAX_MODEL_DEPTH || !is_model(py, model)? {
        return None;
    }
    let members = attr(model, intern!(py, "__dict__"))?;
    let members = members.downcast::<PyDict>().ok()?;
    out.push(b'{');
    let mut first = true;
    for (name, value) in members.iter() {
        if value.is_none() {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        if !name.is_instance_of::<PyString>() {
            return None;
        }
        json::write_py_str(out, &name)?;
        out.push(b':');
        if is_model(py, &value)? {
            write_model(py, out, &value, depth + 1)?;
        } else {
            write_value(out, &value)?;
        }
    }
    out.push(b'}');
    Some(())
}

/// A fact kept as a tuple of entries (`transitions`, `views`, `attributes`): its entries when it has any.
fn entries<'py>(value: Bound<'py, PyAny>) -> Out<Option<Bound<'py, PyTuple>>> {
    let items = value.downcast_into::<PyTuple>().ok()?;
    Some((!items.is_empty()).then_some(items))
}

static DERIVED_OF: GILOnceCell<Py<PyAny>> = GILOnceCell::new();

fn write_kept<'py>(
    py: Python<'py>,
    out: &mut Vec<u8>,
    derived: &Bound<'py, PyAny>,
    fact_name: &Bound<'py, PyString>,
    json_name: &Bound<'py, PyString>,
    fact: &Bound<'py, PyAny>,
    write: impl FnOnce(&mut Vec<u8>) -> Out,
) -> Out {
    let encoded = derived.getattr(json_name).ok()?;
    if derived.getattr(fact_name).ok()?.is(fact) {
        out.extend_from_slice(encoded.downcast::<pyo3::types::PyBytes>().ok()?.as_bytes());
        return Some(());
    }
    let start = out.len();
    write(out)?;
    let encoded = pyo3::types::PyBytes::new(py, &out[start..]);
    derived.setattr(fact_name, py.None()).ok()?;
    derived.setattr(json_name, encoded).ok()?;
    derived.setattr(fact_name, fact).ok()?;
    Some(())
}

/// `_log_document(log)` as orjson writes it (`InteractionLog.to_bytes`).
fn write_log(py: Python<'_>, out: &mut Vec<u8>, log: &Bound<'_, PyAny>) -> Out {
    out.extend_from_slice(b"{\"k\":\"log\",\"i\":");
    write_value(out, &attr(log, intern!(py, "interaction_id"))?)?;
    out.extend_from_slice(b",\"v\":");
    write_value(out, &attr(log, intern!(py, "version"))?)?;
    out.extend_from_slice(b",\"g\":");
    write_value(out, &attr(log, intern!(py, "trigger"))?)?;
    out.extend_from_slice(b",\"l\":");
    write_value(out, &attr(log, intern!(py, "last_event_us"))?)?;
    out.extend_from_slice(b",\"a\":");
    write_value(out, &attr(log, intern!(py, "applied_ids"))?)?;
    if attr(log, intern!(py, "finalized"))?.is_truthy().ok()? {
        out.extend_from_slice(b",\"f\":1");
    }
    let deadline = attr(log, intern!(py, "edit_deadline_us"))?;
    if !deadline.is_none() {
        out.extend_from_slice(b",\"e\":");
        write_value(out, &deadline)?;
    }

    let mut derived = attr(log, intern!(py, "derived"))?;
    if derived.is_none() {
        derived = DERIVED_OF.import(py, "worker.core.state", "derived_of").ok()?.call1((log,)).ok()?;
    }
    let derived = &derived;
    let transitions = attr(log, intern!(py, "transitions"))?;
    if let Some(items) = entries(transitions.clone())? {
        out.extend_from_slice(b",\"t\":");
        write_kept(
            py,
            out,
            derived,
            intern!(py, "transitions"),
            intern!(py, "transitions_json"),
            &transitions,
            |out| {
                out.push(b'[');
                for (index, transition) in items.iter_borrowed().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    write_array(out, &transition)?;
                }
                out.push(b']');
                Some(())
            },
        )?;
    }
    let connect = attr(log, intern!(py, "connect"))?;
    if !connect.is_none() {
        let pair = fixed(&connect, 2)?;
        out.extend_from_slice(b",\"c\":");
        write_kept(py, out, derived, intern!(py, "connect"), intern!(py, "connect_json"), &connect, |out| {
            out.push(b'[');
            write_value(out, &*pair.get_borrowed_item(0).ok()?)?;
            out.push(b',');
            write_model(py, out, &*pair.get_borrowed_item(1).ok()?, 0)?;
            out.push(b']');
            Some(())
        })?;
    }
    let views_fact = attr(log, intern!(py, "views"))?;
    if let Some(views) = entries(views_fact.clone())? {
        out.extend_from_slice(b",\"w\":");
        write_kept(py, out, derived, intern!(py, "views"), intern!(py, "views_json"), &views_fact, |out| {
            out.push(b'[');
            for (index, view) in views.iter_borrowed().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                let view = fixed(&view, 2)?;
                out.push(b'[');
                write_array(out, &*view.get_borrowed_item(0).ok()?)?;
                out.push(b',');
                let record = view.get_borrowed_item(1).ok()?;
                if record.is_none() {
                    return None;
                }
                write_ref(py, out, &record)?;
                out.push(b']');
            }
            out.push(b']');
            Some(())
        })?;
    }

    let notes = attr(log, intern!(py, "notes"))?;
    if !notes.is_none() {
        out.extend_from_slice(b",\"n\":");
        write_stamped_text(out, &notes)?;
    }
    let subject = attr(log, intern!(py, "subject"))?;
    if !subject.is_none() {
        out.extend_from_slice(b",\"s\":");
        write_stamped_text(out, &subject)?;
    }
    let name = attr(log, intern!(py, "name_choice"))?;
    if !name.is_none() {
        out.extend_from_slice(b",\"nm\":");
        write_stamped_ref(py, out, &name)?;
    }
    let related = attr(log, intern!(py, "related_choice"))?;
    if !related.is_none() {
        out.extend_from_slice(b",\"rt\":");
        write_stamped_ref(py, out, &related)?;
    }
    let wrapup = attr(log, intern!(py, "wrapup"))?;
    if !wrapup.is_none() {
        let items = fixed(&wrapup, 3)?;
        out.extend_from_slice(b",\"u\":[");
        write_array(out, &*items.get_borrowed_item(0).ok()?)?;
        out.push(b',');
        write_value(out, &*items.get_borrowed_item(1).ok()?)?;
        out.push(b',');
        write_value(out, &*items.get_borrowed_item(2).ok()?)?;
        out.push(b']');
    }

    let attributes_fact = attr(log, intern!(py, "attributes"))?;
    if let Some(attributes) = entries(attributes_fact.clone())? {
        out.extend_from_slice(b",\"at\":");
        write_kept(
            py,
            out,
            derived,
            intern!(py, "attributes"),
            intern!(py, "attributes_json"),
            &attributes_fact,
            |out| {
                out.push(b'[');
                for (index, attribute) in attributes.iter_borrowed().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    let items = fixed(&attribute, 3)?;
                    out.push(b'[');
                    write_value(out, &*items.get_borrowed_item(0).ok()?)?;
                    out.push(b',');
                    write_array(out, &*items.get_borrowed_item(1).ok()?)?;
                    out.push(b',');
                    write_value(out, &*items.get_borrowed_item(2).ok()?)?;
                    out.push(b']');
                }
                out.push(b']');
                Some(())
            },
        )?;
    }
    out.push(b'}');
    Some(())
}

thread_local! {
    /// The write buffer, kept between calls (a log's document is 0.5 to a few KiB).
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A buffer grown past this by a long document is not kept.
const KEPT_CAPACITY: usize = 64 * 1024;

fn encode<'py>(py: Python<'py>, out: &mut Vec<u8>, log: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    write_log(py, out, log)?;
    Some(to_bytes(py, out))
}

/// `InteractionLog.to_bytes()`, or `None`: the Python writes this log.
#[pyfunction]
fn state_bytes<'py>(py: Python<'py>, log: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    crate::guarded(|| state_bytes_of(py, log))
}

fn state_bytes_of<'py>(py: Python<'py>, log: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    let kept = BUFFER.try_with(|buffer| {
        let mut out = buffer.try_borrow_mut().ok()?; // taken: a call inside a call (an attribute's Python code)
        out.clear();
        let encoded = encode(py, &mut out, log);
        if out.capacity() > KEPT_CAPACITY {
            *out = Vec::new();
        }
        Some(encoded)
    });
    match kept {
        Ok(Some(encoded)) => encoded,
        _ => encode(py, &mut Vec::with_capacity(1024), log),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(state_bytes, m)?)?;
    Ok(())
}
