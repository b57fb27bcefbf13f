//! The snapshot's JSON for the upserts topic: `worker.core.snapshot_json.snapshot_json(log, trigger)`, byte
//! for byte, derived afresh from the log's facts with the rules of `worker.core.snapshot` (the timeline walk
//! in `walk_order`, records viewed while the call was active, the explicit choices, the derived subject, the
//! wrap-up note of queue interactions, the rounded durations).
//!
//! `None` (the Python decides) for anything unusual: a version below 1 (the model refuses it), a lone
//! surrogate, an integer past 64 bits, a time outside the years 1–9999, a record `system` or `type` that is
//! not ASCII (`str.lower()` of other text is more than ASCII lowercasing), a media or direction that is not
//! one of the members this knows, a duration too long for a float to hold its microseconds exactly, or a
//! fact not shaped as `worker.core.state` stores it.

use std::collections::HashMap;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBool, PyDict, PyString, PyTuple};

use crate::json::{py_i64, to_bytes, Out};

/// `MAX_FIELD_CHARS` of `schemas.common`: a derived subject longer than this is cut, ending in `…`.
pub(crate) const MAX_SUBJECT_CHARS: usize = 255;
/// Microseconds a float holds exactly: up to here `(us as f64) / 1e6` is Python's `us / 1_000_000`.
const EXACT_FLOAT_US: i128 = 1 << 53;

/// The enum members and name types of `schemas.common` the rules compare with, read once.
pub(crate) struct Known {
    /// (member, noun of the derived subject, "with" rather than "to" when outbound) per `Media` member.
    pub(crate) media: Vec<(Py<PyAny>, &'static str, bool)>,
    /// (value, noun, "with") per `Media` member: the same as `media`, by the value a stored document holds.
    pub(crate) media_values: Vec<(&'static str, &'static str, bool)>,
    inbound: Py<PyAny>,
    outbound: Py<PyAny>,
    name_types: Vec<String>,
    zendesk_name_types: Vec<String>,
    /// `Customer`'s fields in declaration order (the snapshot writes each, null when unset).
    pub(crate) customer_fields: Vec<String>,
    /// `ConnectedData`'s fields: a stored document's connect data has these keys, or some of them.
    pub(crate) connect_fields: Vec<String>,
}

static KNOWN: GILOnceCell<Known> = GILOnceCell::new();

pub(crate) fn known(py: Python<'_>) -> Out<&'static Known> {
    KNOWN.get_or_try_init(py, || load_known(py)).ok()
}

fn load_known(py: Python<'_>) -> PyResult<Known> {
    let common = py.import("schemas.common")?;
    let media_enum = common.getattr("Media")?;
    let direction_enum = common.getattr("Direction")?;
    let mut media = Vec::with_capacity(5);
    let mut media_values = Vec::with_capacity(5);
    // `_MEDIA_NOUN` and the "with" media of `worker.core.snapshot._subject`.
    for (attribute, value, noun, with) in [
        ("VOICE", "voice", "call", false),
        ("CALLBACK", "callback", "callback", false),
        ("CHAT", "chat", "chat", true),
        ("EMAIL", "email", "email", false),
        ("MESSAGE", "message", "message", true),
    ] {
        let member = media_enum.getattr(attribute)?;
        if member.downcast::<PyString>()?.to_str()? != value {
            return Err(pyo3::exceptions::PyValueError::new_err("Media changed"));
        }
        media.push((member.unbind(), noun, with));
        media_values.push((value, noun, with));
    }
    let inbound = direction_enum.getattr("INBOUND")?;
    let outbound = direction_enum.getattr("OUTBOUND")?;
    if inbound.downcast::<PyString>()?.to_str()? != "inbound"
        || outbound.downcast::<PyString>()?.to_str()? != "outbound"
    {
        return Err(pyo3::exceptions::PyValueError::new_err("Direction changed"));
    }
    Ok(Known {
        media,
        media_values,
        inbound: inbound.unbind(),
        outbound: outbound.unbind(),
        name_types: string_set(&common.getattr("NAME_TYPES")?)?,
        zendesk_name_types: string_set(&common.getattr("ZENDESK_NAME_TYPES")?)?,
        customer_fields: string_set(&common.getattr("Customer")?.getattr("model_fields")?)?,
        connect_fields: string_set(&py.import("schemas.events")?.getattr("ConnectedData")?.getattr("model_fields")?)?,
    })
}

fn string_set(set: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    set.try_iter()?.map(|item| item?.extract::<String>()).collect()
}

/// `is_name_type(system, record_type)`: ASCII only, where lowercasing is `str.lower()`.
pub(crate) fn is_name_type(known: &Known, system: &str, record_type: &str) -> Out<bool> {
    if !system.is_ascii() || !record_type.is_ascii() {
        return None;
    }
    let is = |types: &[String]| types.iter().any(|kind| kind.eq_ignore_ascii_case(record_type) && !has_upper(kind));
    Some(is(&known.name_types) || (system == "zendesk" && is(&known.zendesk_name_types)))
}

/// A set member with an upper-case letter never equals `str.lower()` of anything.
fn has_upper(text: &str) -> bool {
    text.bytes().any(|byte| byte.is_ascii_uppercase())
}

fn field<'py>(log: &Bound<'py, PyAny>, name: &Bound<'py, PyString>) -> Out<Bound<'py, PyAny>> {
    log.getattr(name).ok()
}

/// A pydantic model's field from its `__dict__` (where a model keeps its fields, in declaration order).
fn model_dict<'py>(model: &Bound<'py, PyAny>) -> Out<Bound<'py, PyDict>> {
    model.getattr(intern!(model.py(), "__dict__")).ok()?.downcast_into::<PyDict>().ok()
}

fn item<'py>(members: &Bound<'py, PyDict>, key: &Bound<'py, PyString>) -> Out<Bound<'py, PyAny>> {
    members.get_item(key).ok()?
}

/// A tuple of exactly `len` items (a stored fact, a `Stamp`, a `Transition`).
fn tuple_of<'a, 'py>(value: &'a Bound<'py, PyAny>, len: usize) -> Out<&'a Bound<'py, PyTuple>> {
    let items = value.downcast::<PyTuple>().ok()?;
    (items.len() == len).then_some(items)
}

fn py_str<'a>(value: &'a Bound<'_, PyAny>) -> Out<&'a str> {
    value.downcast::<PyString>().ok()?.to_str().ok()
}

// Writers: the bytes of `crate::json`'s (orjson's), without `format!` and a byte at a time only where a
// string needs escaping: the snapshot writes a few hundred bytes of text and three times per call.

/// `json::write_str`: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, other control characters as `\u00xx`,
/// nothing else escaped. Most text needs no escaping: that is checked eight bytes at a time, and the text then
/// copied at once.
pub(crate) fn write_text(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if is_plain(bytes) {
        out.extend_from_slice(bytes);
    } else {
        write_escaped(out, bytes);
    }
    out.push(b'"');
}

/// Whether no byte of `bytes` needs escaping (checked eight at a time).
pub(crate) fn is_plain(bytes: &[u8]) -> bool {
    let words = bytes.chunks_exact(8);
    let tail = words.remainder();
    !words.into_iter().any(|word| word.try_into().is_ok_and(|word| needs_escape(u64::from_le_bytes(word))))
        && !tail.iter().any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\')
}

/// The bytes of a text that needs escaping, one at a time.
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
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
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]);
        } else {
            out.extend_from_slice(escape);
        }
        start = index + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// True when one of the eight bytes is below 0x20, `"` or `\` (exact for the word as a whole: a borrow only
/// carries past a byte that is itself a match).
pub(crate) fn needs_escape(word: u64) -> bool {
    escape_mask(word) != 0
}

/// The high bit of each byte of `word` (little-endian) that is below 0x20, `"` or `\`. Bits above the lowest
/// set one may be false (a borrow carries past a match), so the lowest set bit marks the first such byte.
pub(crate) fn escape_mask(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let found = (word.wrapping_sub(ONES * 0x20) & !word)
        | (quote.wrapping_sub(ONES) & !quote)
        | (backslash.wrapping_sub(ONES) & !backslash);
    found & HIGHS
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `json::write_py_str`: a `str` (or a `str` subclass, as its value); None for a lone surrogate.
fn write_text_py(out: &mut Vec<u8>, value: &Bound<'_, PyAny>) -> Out {
    write_text(out, value.downcast::<PyString>().ok()?.to_str().ok()?);
    Some(())
}

/// "00" to "99", each number's two digits.
const PAIRS: [u8; 200] = {
    let mut pairs = [0; 200];
    let mut n = 0;
    while n < 100 {
        pairs[2 * n] = b'0' + (n / 10) as u8;
        pairs[2 * n + 1] = b'0' + (n % 10) as u8;
        n += 1;
    }
    pairs
};

/// `json::write_i64`, two digits a division.
pub(crate) fn write_int(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    let mut rest = value.unsigned_abs();
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    while rest >= 100 {
        let pair = (rest % 100) as usize * 2;
        rest /= 100;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if rest >= 10 {
        let pair = rest as usize * 2;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        digits[at] = b'0' + rest as u8;
    }
    out.extend_from_slice(&digits[at..]);
}

/// `n` as `width` digits.
fn push_digits(out: &mut Vec<u8>, n: u32, width: u32) {
    for place in (0..width).rev() {
        out.push(b'0' + (n / 10u32.pow(place) % 10) as u8);
    }
}

/// `json::write_time_us`: `"YYYY-MM-DDTHH:MM:SS[.ffffff]Z"`; None outside the years 1–9999.
pub(crate) fn write_time(out: &mut Vec<u8>, epoch_us: i64) -> Out {
    let seconds = epoch_us.div_euclid(1_000_000);
    let micros = epoch_us.rem_euclid(1_000_000) as u32;
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400) as u32;
    // (year, month, day) of the days since 1970-01-01: Howard Hinnant's `civil_from_days`
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(1..=9999).contains(&year) {
        return None;
    }
    out.push(b'"');
    push_digits(out, year as u32, 4);
    out.push(b'-');
    push_digits(out, month, 2);
    out.push(b'-');
    push_digits(out, day, 2);
    out.push(b'T');
    push_digits(out, of_day / 3600, 2);
    out.push(b':');
    push_digits(out, of_day / 60 % 60, 2);
    out.push(b':');
    push_digits(out, of_day % 60, 2);
    if micros != 0 {
        out.push(b'.');
        push_digits(out, micros, 6);
    }
    out.extend_from_slice(b"Z\"");
    Some(())
}

/// A `str` or None, as orjson writes it.
fn write_opt_str(out: &mut Vec<u8>, value: &Bound<'_, PyAny>) -> Out {
    if value.is_none() {
        out.extend_from_slice(b"null");
        Some(())
    } else {
        write_text_py(out, value)
    }
}

/// A model (`RecordRef`, `Customer`) as orjson writes its `__dict__`: every field, nulls included.
fn write_model(out: &mut Vec<u8>, model: &Bound<'_, PyAny>) -> Out {
    if model.is_none() {
        out.extend_from_slice(b"null");
        return Some(());
    }
    write_members(out, &model_dict(model)?)
}

/// A model's `__dict__` (str fields and None) as a JSON object.
fn write_members(out: &mut Vec<u8>, members: &Bound<'_, PyDict>) -> Out {
    let py = members.py();
    // The field names of `RecordRef` and `Customer` as JSON, for the keys that are these interned strings
    // (a model's `__dict__` has its field names as keys, which Python interns): other keys are written.
    let names = [
        (intern!(py, "system"), b"\"system\":".as_slice()),
        (intern!(py, "type"), b"\"type\":"),
        (intern!(py, "id"), b"\"id\":"),
        (intern!(py, "address"), b"\"address\":"),
        (intern!(py, "name"), b"\"name\":"),
    ];
    out.push(b'{');
    for (index, (key, value)) in members.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        match names.iter().find(|(name, _)| name.as_ptr() == key.as_ptr()) {
            Some((_, json)) => out.extend_from_slice(json),
            None => {
                write_text_py(out, &key)?;
                out.push(b':');
            }
        }
        write_opt_str(out, &value)?;
    }
    out.push(b'}');
    Some(())
}

/// A viewed record: the ref's `__dict__` and its three fields.
struct Ref<'py> {
    members: Bound<'py, PyDict>,
    system: Bound<'py, PyAny>,
    kind: Bound<'py, PyAny>,
    id: Bound<'py, PyAny>,
}

impl<'py> Ref<'py> {
    fn of(model: &Bound<'py, PyAny>) -> Out<Self> {
        let py = model.py();
        let members = model_dict(model)?;
        let system = item(&members, intern!(py, "system"))?;
        let kind = item(&members, intern!(py, "type"))?;
        let id = item(&members, intern!(py, "id"))?;
        Some(Ref { members, system, kind, id })
    }

    fn key(&self) -> Out<(&str, &str, &str)> {
        Some((py_str(&self.system)?, py_str(&self.kind)?, py_str(&self.id)?))
    }
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum State {
    Connected,
    Held,
    Disconnected,
}

/// `worker.core.snapshot.Timeline` after `timeline(transitions)`; spans in µs, summed without overflow.
#[derive(Default)]
pub(crate) struct Timeline {
    pub(crate) state: Option<State>,
    pub(crate) connected_us: Option<i64>,
    pub(crate) disconnected_us: Option<i64>,
    pub(crate) hold_us: i128,
    pub(crate) hold_count: i64,
    pub(crate) ignored_reconnects: i64,
    hold_start_us: Option<i64>,
}

impl Timeline {
    pub(crate) fn step(&mut self, time_us: i64, kind: Kind) {
        match kind {
            Kind::Connected => {
                if self.connected_us.is_none() {
                    self.connected_us = Some(time_us);
                }
                self.end_hold(time_us);
                self.state = Some(State::Connected);
            }
            Kind::Held if self.state != Some(State::Held) => {
                self.state = Some(State::Held);
                self.hold_start_us = Some(time_us);
                self.hold_count += 1;
            }
            Kind::Resumed if self.state == Some(State::Held) => {
                self.end_hold(time_us);
                self.state = Some(State::Connected);
            }
            Kind::Disconnected => {
                self.end_hold(time_us);
                self.state = Some(State::Disconnected);
                self.disconnected_us = Some(time_us);
            }
            _ => {}
        }
    }

    fn end_hold(&mut self, time_us: i64) {
        if let Some(start) = self.hold_start_us.take() {
            self.hold_us += (i128::from(time_us) - i128::from(start)).max(0);
        }
    }

    pub(crate) fn duration_us(&self) -> Option<i128> {
        Some((i128::from(self.disconnected_us?) - i128::from(self.connected_us?)).max(0))
    }
}

/// A transition's kind: `C` connected, `H` held, `R` resumed, `D` disconnected; any other `str` changes nothing.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Connected,
    Held,
    Resumed,
    Disconnected,
    Other,
}

/// (time_us, sequence, arrival, kind) of one stored `Transition`.
pub(crate) struct Step {
    pub(crate) time_us: i64,
    pub(crate) sequence: i64,
    pub(crate) arrival: i64,
    pub(crate) kind: Kind,
}

fn step_of(transition: &Bound<'_, PyAny>) -> Out<Step> {
    let fields = tuple_of(transition, 4)?;
    let kind = match py_str(&fields.get_item(3).ok()?)? {
        "C" => Kind::Connected,
        "H" => Kind::Held,
        "R" => Kind::Resumed,
        "D" => Kind::Disconnected,
        _ => Kind::Other,
    };
    Some(Step {
        time_us: py_i64(&fields.get_item(0).ok()?)?,
        sequence: py_i64(&fields.get_item(1).ok()?)?,
        arrival: py_i64(&fields.get_item(2).ok()?)?,
        kind,
    })
}

/// `timeline(log.transitions)`: in `walk_order` (by sequence when every transition has one and they do not
/// already follow the clocks, else as stored), up to the first disconnect.
fn walk(transitions: &Bound<'_, PyTuple>) -> Out<Timeline> {
    let mut steps = Vec::with_capacity(transitions.len());
    for transition in transitions.iter() {
        steps.push(step_of(&transition)?);
    }
    Some(walk_steps(steps))
}

/// `_RANK_AT_AN_INSTANT`: where a transition goes among those of one instant in a walk by event time.
fn instant_rank(kind: Kind) -> u8 {
    match kind {
        Kind::Connected => 0,
        Kind::Disconnected => 2,
        _ => 1,
    }
}

/// The walk of `walk`, over the transitions read.
pub(crate) fn walk_steps(mut steps: Vec<Step>) -> Timeline {
    let mut last = -1;
    let mut in_order = true;
    let mut numbered = true;
    for step in &steps {
        if step.sequence < 0 {
            numbered = false;
            break;
        }
        if step.sequence < last {
            in_order = false;
        }
        last = step.sequence;
    }
    if numbered && !in_order {
        steps.sort_by_key(|step| (step.sequence, step.time_us, step.arrival)); // stable, as `sorted`
    } else if !numbered
        && steps
            .windows(2)
            .any(|pair| pair[1].time_us == pair[0].time_us && instant_rank(pair[1].kind) < instant_rank(pair[0].kind))
    {
        // `_instants_settled`: in time order an instant's connects go first and its disconnects last
        steps.sort_by_key(|step| (step.time_us, instant_rank(step.kind))); // stable, as `sorted`
    }
    let mut walked = Timeline::default();
    for step in &steps {
        if walked.state == Some(State::Disconnected) {
            walked.ignored_reconnects += i64::from(step.kind == Kind::Connected);
            continue;
        }
        walked.step(step.time_us, step.kind);
    }
    walked
}

/// Python's `round(us / 1_000_000)`: the quotient as the nearest float, rounded half to even.
pub(crate) fn round_seconds(us: i128) -> Out<i64> {
    if !(0..=EXACT_FLOAT_US).contains(&us) {
        return None;
    }
    Some(((us as f64) / 1e6).round_ties_even() as i64)
}

pub(crate) fn write_opt_time(out: &mut Vec<u8>, epoch_us: Option<i64>) -> Out {
    match epoch_us {
        None => out.extend_from_slice(b"null"),
        Some(epoch_us) => write_time(out, epoch_us)?,
    }
    Some(())
}

/// `_distinct(refs)`: each (system, type, id) once, where it first appears.
fn write_distinct(out: &mut Vec<u8>, refs: &[Ref<'_>]) -> Out {
    let mut seen: Vec<(&str, &str, &str)> = Vec::with_capacity(refs.len());
    out.push(b'[');
    for reference in refs {
        let identity = reference.key()?;
        if seen.contains(&identity) {
            continue;
        }
        if !seen.is_empty() {
            out.push(b',');
        }
        seen.push(identity);
        write_members(out, &reference.members)?;
    }
    out.push(b']');
    Some(())
}

/// `_selected(choice, active, initial)`: the explicit choice (even null), else the last active, else the
/// connect data's.
fn write_selected(
    out: &mut Vec<u8>,
    choice: &Bound<'_, PyAny>,
    active: &[Ref<'_>],
    initial: Option<&Bound<'_, PyAny>>,
) -> Out {
    if !choice.is_none() {
        return write_model(out, &tuple_of(choice, 2)?.get_item(1).ok()?);
    }
    match (active.last(), initial) {
        (Some(last), _) => write_members(out, &last.members),
        (None, Some(initial)) => write_model(out, initial),
        (None, None) => {
            out.extend_from_slice(b"null");
            Some(())
        }
    }
}

/// `{key: value for key, _stamp, value in log.attributes}`: a key keeps its first place and its last value.
fn write_attributes(out: &mut Vec<u8>, attributes: &Bound<'_, PyTuple>) -> Out {
    let mut pairs = Vec::with_capacity(attributes.len());
    for attribute in attributes.iter() {
        let fields = tuple_of(&attribute, 3)?;
        let (name, value) = (fields.get_item(0).ok()?, fields.get_item(2).ok()?);
        if !value.is_instance_of::<PyString>() {
            return None;
        }
        pairs.push((name, value));
    }
    let mut keys: Vec<&str> = Vec::with_capacity(pairs.len());
    for (name, _) in &pairs {
        keys.push(py_str(name)?);
    }
    // `order`: the entry that puts each key in its place; `last[slot]`: the entry whose value it writes
    let mut order: Vec<usize> = Vec::with_capacity(keys.len());
    let mut last: Vec<usize> = Vec::with_capacity(keys.len());
    let mut place: HashMap<&str, usize> = HashMap::new();
    let small = keys.len() <= 16;
    for (index, name) in keys.iter().enumerate() {
        let slot = if small { order.iter().position(|&first| keys[first] == *name) } else { place.get(name).copied() };
        match slot {
            Some(slot) => last[slot] = index,
            None => {
                if !small {
                    place.insert(name, order.len());
                }
                order.push(index);
                last.push(index);
            }
        }
    }
    out.push(b'{');
    for (slot, &first) in order.iter().enumerate() {
        if slot > 0 {
            out.push(b',');
        }
        write_text(out, keys[first]);
        out.push(b':');
        write_text_py(out, &pairs[last[slot]].1)?;
    }
    out.push(b'}');
    Some(())
}

/// The derived subject: "Inbound call from Ada Example", cut to 255 characters ending in `…`.
pub(crate) fn write_bounded(out: &mut Vec<u8>, text: &str) {
    match text.char_indices().nth(MAX_SUBJECT_CHARS - 1) {
        Some((cut, _)) if text[cut..].chars().nth(1).is_some() => {
            let mut bounded = String::with_capacity(cut + 3);
            bounded.push_str(&text[..cut]);
            bounded.push('…');
            write_text(out, &bounded);
        }
        _ => write_text(out, text),
    }
}

/// The connect data's fields the snapshot reads.
struct Connect<'py> {
    media: Bound<'py, PyAny>,
    direction: Bound<'py, PyAny>,
    queue: Bound<'py, PyAny>,
    agent_id: Bound<'py, PyAny>,
    customer: Bound<'py, PyAny>,
    name: Bound<'py, PyAny>,
    related_to: Bound<'py, PyAny>,
    /// (noun, "with" when outbound) of the media.
    noun: &'static str,
    with: bool,
    inbound: bool,
}

impl<'py> Connect<'py> {
    fn of(known: &Known, data: &Bound<'py, PyAny>) -> Out<Self> {
        let py = data.py();
        let members = model_dict(data)?;
        let media = item(&members, intern!(py, "media"))?;
        let direction = item(&members, intern!(py, "direction"))?;
        let &(_, noun, with) = known.media.iter().find(|(member, _, _)| member.as_ptr() == media.as_ptr())?;
        let inbound = direction.as_ptr() == known.inbound.as_ptr();
        if !inbound && direction.as_ptr() != known.outbound.as_ptr() {
            return None;
        }
        Some(Connect {
            media,
            direction,
            queue: item(&members, intern!(py, "queue"))?,
            agent_id: item(&members, intern!(py, "agent_id"))?,
            customer: item(&members, intern!(py, "customer"))?,
            name: item(&members, intern!(py, "name"))?,
            related_to: item(&members, intern!(py, "related_to"))?,
            noun,
            with,
            inbound,
        })
    }

    /// `(customer.name or customer.address)`, or None.
    fn who(&self) -> Out<Option<String>> {
        if self.customer.is_none() {
            return Some(None);
        }
        let py = self.customer.py();
        let members = model_dict(&self.customer)?;
        for name in [intern!(py, "name"), intern!(py, "address")] {
            let value = item(&members, name)?;
            if value.is_none() {
                continue;
            }
            let text = py_str(&value)?;
            if !text.is_empty() {
                return Some(Some(text.to_owned()));
            }
        }
        Some(None)
    }
}

/// The stamped value of a fact `(Stamp, value)`, or None when the fact is None.
fn stamped_value<'py>(fact: &Bound<'py, PyAny>, len: usize, index: usize) -> Out<Option<Bound<'py, PyAny>>> {
    if fact.is_none() {
        return Some(None);
    }
    Some(Some(tuple_of(fact, len)?.get_item(index).ok()?))
}

fn write_json(py: Python<'_>, log: &Bound<'_, PyAny>, trigger: &Bound<'_, PyAny>) -> Out<Vec<u8>> {
    let known = known(py)?;
    let version = py_i64(&field(log, intern!(py, "version"))?)?;
    if version < 1 {
        return None; // the model refuses it: the Python raises its error
    }
    let interaction_id = field(log, intern!(py, "interaction_id"))?;
    let trigger = if trigger.is_none() { field(log, intern!(py, "trigger"))? } else { trigger.clone() };
    let transitions = field(log, intern!(py, "transitions"))?;
    let walked = walk(transitions.downcast::<PyTuple>().ok()?)?;
    let connect_fact = field(log, intern!(py, "connect"))?;
    let data = stamped_value(&connect_fact, 2, 1)?;
    let connect = match &data {
        Some(data) => Some(Connect::of(known, data)?),
        None => None,
    };
    let notes = stamped_value(&field(log, intern!(py, "notes"))?, 2, 1)?.filter(|notes| !notes.is_none());

    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(b"{\"interaction_id\":");
    write_text_py(&mut out, &interaction_id)?;
    out.extend_from_slice(b",\"version\":");
    write_int(&mut out, version);
    out.extend_from_slice(b",\"trigger\":");
    write_text_py(&mut out, &trigger)?;
    out.extend_from_slice(b",\"state\":");
    out.extend_from_slice(match walked.state {
        None => b"null".as_slice(),
        Some(State::Connected) => b"\"connected\"",
        Some(State::Held) => b"\"held\"",
        Some(State::Disconnected) => b"\"disconnected\"",
    });

    // media, direction, queue, agent_id, customer
    match &connect {
        None => out.extend_from_slice(
            b",\"media\":null,\"direction\":null,\"queue\":null,\"agent_id\":null,\"customer\":null",
        ),
        Some(connect) => {
            out.extend_from_slice(b",\"media\":");
            write_text_py(&mut out, &connect.media)?;
            out.extend_from_slice(b",\"direction\":");
            write_text_py(&mut out, &connect.direction)?;
            out.extend_from_slice(b",\"queue\":");
            write_opt_str(&mut out, &connect.queue)?;
            out.extend_from_slice(b",\"agent_id\":");
            write_opt_str(&mut out, &connect.agent_id)?;
            out.extend_from_slice(b",\"customer\":");
            write_model(&mut out, &connect.customer)?;
        }
    }

    // subject, notes
    out.extend_from_slice(b",\"subject\":");
    let subject = stamped_value(&field(log, intern!(py, "subject"))?, 2, 1)?.filter(|subject| !subject.is_none());
    match (&subject, &connect) {
        (Some(subject), _) => write_text_py(&mut out, subject)?,
        (None, None) => write_bounded(&mut out, &["Interaction ", py_str(&interaction_id)?].concat()),
        (None, Some(connect)) => {
            let (direction, preposition) = match (connect.inbound, connect.with) {
                (true, _) => ("Inbound", "from"),
                (false, true) => ("Outbound", "with"),
                (false, false) => ("Outbound", "to"),
            };
            let who = connect.who()?;
            let who = who.as_deref().unwrap_or("unknown customer");
            write_bounded(&mut out, &[direction, " ", connect.noun, " ", preposition, " ", who].concat());
        }
    }
    out.extend_from_slice(b",\"notes\":");
    match &notes {
        None => out.extend_from_slice(b"null"),
        Some(notes) => write_text_py(&mut out, notes)?,
    }

    // name, related_to, name_candidates, related_candidates: records viewed while the call was active
    let mut names = Vec::new();
    let mut related = Vec::new();
    for view in field(log, intern!(py, "views"))?.downcast::<PyTuple>().ok()?.iter() {
        let view = tuple_of(&view, 2)?;
        let stamp = view.get_item(0).ok()?;
        let time_us = py_i64(&tuple_of(&stamp, 3)?.get_item(1).ok()?)?;
        let active = walked.connected_us.is_none_or(|start| time_us >= start)
            && walked.disconnected_us.is_none_or(|end| time_us < end);
        if active {
            let reference = Ref::of(&view.get_item(1).ok()?)?;
            let (system, kind, _) = reference.key()?;
            if is_name_type(known, system, kind)? { &mut names } else { &mut related }.push(reference);
        }
    }
    out.extend_from_slice(b",\"name\":");
    let initial = connect.as_ref().map(|connect| &connect.name).filter(|name| !name.is_none());
    write_selected(&mut out, &field(log, intern!(py, "name_choice"))?, &names, initial)?;
    out.extend_from_slice(b",\"related_to\":");
    let initial = connect.as_ref().map(|connect| &connect.related_to).filter(|related| !related.is_none());
    write_selected(&mut out, &field(log, intern!(py, "related_choice"))?, &related, initial)?;
    out.extend_from_slice(b",\"name_candidates\":");
    write_distinct(&mut out, &names)?;
    out.extend_from_slice(b",\"related_candidates\":");
    write_distinct(&mut out, &related)?;

    // the times
    out.extend_from_slice(b",\"connected_at\":");
    write_opt_time(&mut out, walked.connected_us)?;
    out.extend_from_slice(b",\"disconnected_at\":");
    write_opt_time(&mut out, walked.disconnected_us)?;
    out.extend_from_slice(b",\"edit_deadline\":");
    let deadline = field(log, intern!(py, "edit_deadline_us"))?;
    write_opt_time(&mut out, if deadline.is_none() { None } else { Some(py_i64(&deadline)?) })?;
    out.extend_from_slice(b",\"finalized\":");
    let finalized = field(log, intern!(py, "finalized"))?;
    out.extend_from_slice(if finalized.downcast::<PyBool>().ok()?.is_true() { b"true" } else { b"false" });
    let duration_s = match walked.duration_us() {
        None => None,
        Some(us) => Some(round_seconds(us)?),
    };
    let hold_s = round_seconds(walked.hold_us)?;
    out.extend_from_slice(b",\"duration_seconds\":");
    match duration_s {
        None => out.extend_from_slice(b"null"),
        Some(seconds) => write_int(&mut out, seconds),
    }
    out.extend_from_slice(b",\"hold_seconds\":");
    write_int(&mut out, hold_s);
    out.extend_from_slice(b",\"hold_count\":");
    write_int(&mut out, walked.hold_count);
    out.extend_from_slice(b",\"talk_seconds\":");
    match duration_s {
        None => out.extend_from_slice(b"null"),
        Some(seconds) => write_int(&mut out, (seconds - hold_s).max(0)),
    }

    // wrapup_code, wrapup_note, attributes, ignored_reconnects
    let wrapup = field(log, intern!(py, "wrapup"))?;
    let (code, event_note) = if wrapup.is_none() {
        (None, None)
    } else {
        let wrapup = tuple_of(&wrapup, 3)?;
        (Some(wrapup.get_item(1).ok()?), Some(wrapup.get_item(2).ok()?))
    };
    out.extend_from_slice(b",\"wrapup_code\":");
    match &code {
        None => out.extend_from_slice(b"null"),
        Some(code) => write_opt_str(&mut out, code)?,
    }
    out.extend_from_slice(b",\"wrapup_note\":");
    let queued = connect.as_ref().is_some_and(|connect| !connect.queue.is_none());
    match (&notes, &event_note) {
        (Some(notes), _) if queued => write_text_py(&mut out, notes)?,
        (_, Some(note)) => write_opt_str(&mut out, note)?,
        (_, None) => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"attributes\":");
    write_attributes(&mut out, field(log, intern!(py, "attributes"))?.downcast::<PyTuple>().ok()?)?;
    out.extend_from_slice(b",\"ignored_reconnects\":");
    write_int(&mut out, walked.ignored_reconnects);
    out.push(b'}');
    Some(out)
}

/// `worker.core.snapshot_json.snapshot_json(log, trigger)` (`trigger` None: the log's), or None: the Python
/// decides.
#[pyfunction]
fn snapshot_json<'py>(
    py: Python<'py>,
    log: &Bound<'py, PyAny>,
    trigger: &Bound<'py, PyAny>,
) -> Option<Bound<'py, PyAny>> {
    let out = crate::guarded(|| write_json(py, log, trigger))?;
    Some(to_bytes(py, &out))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(snapshot_json, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_written_as_to_string_writes_them() {
        let mut values = vec![0, 1, 9, 10, 99, 100, 101, 999, 1000, i64::MAX, i64::MIN, -1, -10, -100];
        values.extend((0..19).map(|power| 10i64.pow(power)));
        values.extend((1..19).map(|power| 10i64.pow(power) - 1));
        values.extend([1_795_767_151_714_000, -1_795_767_151_714_001, 123_456_789]);
        for value in values {
            let mut out = Vec::new();
            write_int(&mut out, value);
            assert_eq!(out, value.to_string().into_bytes());
        }
    }
}
