//! `_utc_time(text)` (`schemas/fast.py`): an event's time, an RFC 3339 date-time with a time zone, as the aware
//! UTC datetime the models give (`datetime.fromisoformat(text.upper()).astimezone(UTC)` after the pattern).
//!
//! Only the exact form of the pattern is handled: four-digit year 0001–9999, a real day of its month, hours
//! 00–23, minutes and seconds 00–59, 1 to 9 fraction digits (the first six kept, the rest dropped, as
//! `fromisoformat` does), `Z` or an offset ±HH:MM (hours 00–23), `T`/`t` and `Z`/`z` in either case, and an
//! instant that stays within years 1–9999 in UTC. Anything else — a text the pattern refuses, a day past the
//! month's end, an instant `astimezone` cannot hold, a lone surrogate — is `None`, and the Python decides.

use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::PyString;

use crate::guarded;

const US_PER_DAY: i64 = 86_400_000_000;

/// `datetime.datetime` and `datetime.UTC`, looked up once.
static DATETIME: GILOnceCell<(Py<PyAny>, Py<PyAny>)> = GILOnceCell::new();

fn number(bytes: &[u8], at: usize, count: usize) -> Option<i64> {
    let mut value = 0i64;
    for &byte in bytes.get(at..at + count)? {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(byte - b'0');
    }
    Some(value)
}

fn leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// The instant in µs since the epoch (UTC), or None where the Python decides.
pub(crate) fn parse_utc_us(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (number(bytes, 0, 4)?, number(bytes, 5, 2)?, number(bytes, 8, 2)?);
    let (hour, minute, second) = (number(bytes, 11, 2)?, number(bytes, 14, 2)?, number(bytes, 17, 2)?);
    if year < 1
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut at = 19;
    let mut micros = 0i64;
    if bytes.get(at) == Some(&b'.') {
        let digits = bytes[at + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        for index in 0..6 {
            let digit = if index < digits { i64::from(bytes[at + 1 + index] - b'0') } else { 0 };
            micros = micros * 10 + digit;
        }
        at += 1 + digits;
    }
    let offset_s = match &bytes[at..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (hours, minutes) = (number(bytes, at + 1, 2)?, number(bytes, at + 4, 2)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return None,
    };
    let local_s = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    let utc_us = (local_s - offset_s) * 1_000_000 + micros;
    let first = days_from_civil(1, 1, 1) * US_PER_DAY;
    let last = (days_from_civil(9999, 12, 31) + 1) * US_PER_DAY - 1;
    (first..=last).contains(&utc_us).then_some(utc_us)
}

/// `_utc_time(text)` (`schemas/fast.py`) for the texts `parse_utc_us` handles; None for the rest.
#[pyfunction]
fn utc_time(py: Python<'_>, text: &Bound<'_, PyAny>) -> PyResult<Option<PyObject>> {
    let Ok(text) = text.downcast::<PyString>() else {
        return Ok(None);
    };
    let Ok(text) = text.to_str() else {
        return Ok(None); // a lone surrogate: the pattern refuses it, in Python
    };
    let Some(epoch_us) = guarded(|| parse_utc_us(text)) else {
        return Ok(None);
    };
    let (class, utc) = DATETIME.get_or_try_init(py, || -> PyResult<_> {
        let module = py.import("datetime")?;
        Ok((module.getattr("datetime")?.unbind(), module.getattr("UTC")?.unbind()))
    })?;
    let days = epoch_us.div_euclid(US_PER_DAY);
    let in_day = epoch_us.rem_euclid(US_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let seconds = in_day / 1_000_000;
    let moment = class.bind(py).call1((
        year,
        month,
        day,
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        in_day % 1_000_000,
        utc.bind(py),
    ))?;
    Ok(Some(moment.unbind()))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(utc_time, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trips() {
        for days in [-719_162, -1, 0, 1, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn refuses_what_the_pattern_refuses() {
        for text in [
            "2026-12-04 10:00:00Z",
            "2026-12-04T10:00:00",
            "2026-12-04T10:00:00.Z",
            "2026-12-04T10:00:00.1234567890Z",
            "2026-12-04T24:00:00Z",
            "0000-01-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-12-04T10:00:00+24:00",
            "2026-12-04T10:00:00Z\n",
            "0001-01-01T00:30:00+01:00",
        ] {
            assert_eq!(parse_utc_us(text), None, "{text}");
        }
        assert_eq!(parse_utc_us("1970-01-01T01:00:00.5+01:00"), Some(500_000));
    }
}
