//! JSON output exactly as orjson writes it (what `worker/core` uses): compact, `\uXXXX` in lower-case hex
//! for control characters except the short escapes, nothing else escaped (non-ASCII as UTF-8, DEL as is),
//! datetimes as RFC 3339 with `Z` (`OPT_UTC_Z`) and microseconds only when there are any.
//!
//! Every writer returns `None` for a value it does not handle; callers pass that on as "not handled".

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyList, PyString, PyTuple};

/// Not handled here: the caller returns `None` to Python, which then runs the specification.
pub type Out<T = ()> = Option<T>;

const HEX: &[u8; 16] = b"0123456789abcdef";

pub fn write_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..index]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(byte >> 4) as usize]);
            out.push(HEX[(byte & 0xf) as usize]);
        } else {
            out.extend_from_slice(escape);
        }
        start = index + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

pub fn write_i64(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(value.to_string().as_bytes());
}

/// A Python `str` (or a `str` subclass such as a `StrEnum` member, written as its value, as orjson does).
/// `None` for a string UTF-8 cannot hold (a lone surrogate): orjson refuses it too, and the Python decides.
pub fn write_py_str(out: &mut Vec<u8>, value: &Bound<'_, PyAny>) -> Out {
    let text = value.downcast::<PyString>().ok()?;
    write_str(out, text.to_str().ok()?);
    Some(())
}

/// A Python `int` within 64 bits (not a `bool`).
#[allow(dead_code)]
pub fn py_i64(value: &Bound<'_, PyAny>) -> Out<i64> {
    if value.is_instance_of::<PyBool>() || !value.is_instance_of::<PyInt>() {
        return None;
    }
    value.extract::<i64>().ok()
}

/// None, bool, int (64 bits), str and its subclasses, list, tuple (and NamedTuples: orjson writes a
/// tuple subclass only through `default`, which in `worker/core` makes it the plain tuple), and dict with
/// str keys — what the stored log and the snapshot hold besides models and datetimes.
pub fn write_py_value(out: &mut Vec<u8>, value: &Bound<'_, PyAny>) -> Out {
    if value.is_none() {
        out.extend_from_slice(b"null");
    } else if let Ok(flag) = value.downcast::<PyBool>() {
        out.extend_from_slice(if flag.is_true() { b"true" } else { b"false" });
    } else if value.is_instance_of::<PyInt>() {
        write_i64(out, value.extract::<i64>().ok()?);
    } else if value.is_instance_of::<PyString>() {
        write_py_str(out, value)?;
    } else if let Ok(items) = value.downcast::<PyTuple>() {
        out.push(b'[');
        for (index, item) in items.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_py_value(out, &item)?;
        }
        out.push(b']');
    } else if let Ok(items) = value.downcast::<PyList>() {
        out.push(b'[');
        for (index, item) in items.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_py_value(out, &item)?;
        }
        out.push(b']');
    } else if let Ok(members) = value.downcast::<PyDict>() {
        out.push(b'{');
        for (index, (key, item)) in members.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            if !key.is_instance_of::<PyString>() {
                return None;
            }
            write_py_str(out, &key)?;
            out.push(b':');
            write_py_value(out, &item)?;
        }
        out.push(b'}');
    } else {
        return None;
    }
    Some(())
}

/// Epoch microseconds as orjson writes an aware UTC datetime with `OPT_UTC_Z`:
/// `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`. `None` outside Python's datetime range (years 1–9999).
pub fn write_time_us(out: &mut Vec<u8>, epoch_us: i64) -> Out {
    let seconds = epoch_us.div_euclid(1_000_000);
    let micros = epoch_us.rem_euclid(1_000_000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !(1..=9999).contains(&year) {
        return None;
    }
    let text = if micros == 0 {
        format!("\"{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z\"", of_day / 3600, of_day / 60 % 60, of_day % 60)
    } else {
        format!(
            "\"{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z\"",
            of_day / 3600,
            of_day / 60 % 60,
            of_day % 60
        )
    };
    out.extend_from_slice(text.as_bytes());
    Some(())
}

/// (year, month, day) of a count of days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `bytes` for Python from a buffer.
pub fn to_bytes<'py>(py: Python<'py>, out: &[u8]) -> Bound<'py, PyAny> {
    pyo3::types::PyBytes::new(py, out).into_any()
}

#[pyfunction]
fn json_value<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    let mut out = Vec::with_capacity(64);
    write_py_value(&mut out, value)?;
    Some(to_bytes(py, &out))
}

#[pyfunction]
fn json_time_us<'py>(py: Python<'py>, epoch_us: i64) -> Option<Bound<'py, PyAny>> {
    let mut out = Vec::with_capacity(32);
    write_time_us(&mut out, epoch_us)?;
    Some(to_bytes(py, &out))
}

/// The writers themselves, for the tests that compare them with orjson.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(json_value, m)?)?;
    m.add_function(wrap_pyfunction!(json_time_us, m)?)?;
    Ok(())
}
