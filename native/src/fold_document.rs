//! `fold(state, event, …)` and `finalize(log)` of `worker/core/fold.py` on a log's stored document: with
//! `state = InteractionLog.from_bytes(document)`, the new log's `to_bytes()` byte for byte, written from the
//! document without building the log's Python objects.
//!
//! The document is read by `stored.rs`. The parts the event does not change are then copied as the bytes they
//! are; text compares escaped, which is exact as both sides escape alike. The rules are `fold.rs`'s (the same
//! event readers, `Kind`, stamps and edit window) and the deadline is `snapshot::walk_steps`' first disconnect.
//!
//! An event past the edit deadline (`late_edit`) is answered with what the Python words its rejection from: the
//! event's time, the deadline and the first disconnect. `None` (the caller runs the Python, which folds or words
//! the event) for: a finalized log or a tombstone, an attributes event that would take an open log over
//! `MAX_ATTRIBUTES` keys (`too_large`), everything `fold.rs` leaves to the Python (an event class it does not
//! know, an integer past 64 bits, a naive time, a lone surrogate, a window that is not a number), a document
//! `stored.rs` does not read, and stored attributes out of order when the event changes them.

use std::borrow::Cow;
use std::cell::RefCell;
use std::cmp::Ordering;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyInt, PyString, PyTuple};

use crate::fold::{some, Folding, Kind, Leave, Step, NAMES};
use crate::from_state::unescape;
use crate::json::write_str;
use crate::snapshot::{self, known, write_int, Known};
use crate::state::{write_model, write_ref};
use crate::stored::{layout_known, text_bytes, Document, Key, Span, Stamped, Transition};

/// `disconnected_us(transitions)` (`worker/core/snapshot.py`): the first disconnect of `walk_steps`' walk,
/// found without collecting the steps. The walk goes by (sequence, time, arrival), sorted stably, when every
/// transition has a sequence and they do not already follow it, else as stored; and it stops at the first
/// disconnect. So that is the disconnect of the smallest (sequence, time, arrival), or the first stored.
fn disconnected_us<'t>(transitions: impl Iterator<Item = &'t Transition> + Clone) -> Option<i64> {
    let mut last = -1;
    let mut in_order = true;
    for transition in transitions.clone() {
        if transition.sequence < 0 {
            return first_disconnect(transitions);
        }
        in_order &= transition.sequence >= last;
        last = transition.sequence;
    }
    if in_order {
        return first_disconnect(transitions);
    }
    transitions
        .filter(|transition| transition.kind == b'D')
        .min_by_key(|transition| (transition.sequence, transition.time_us, transition.arrival))
        .map(|transition| transition.time_us)
}

fn first_disconnect<'t>(mut transitions: impl Iterator<Item = &'t Transition>) -> Option<i64> {
    transitions.find(|transition| transition.kind == b'D').map(|transition| transition.time_us)
}

fn write_raw(out: &mut Vec<u8>, raw: &[u8]) {
    out.push(b'"');
    out.extend_from_slice(raw);
    out.push(b'"');
}

/// `text` as `json::write_str` writes it, without the quotes: borrowed when nothing needs escaping (an event
/// id usually), to be compared with the stored ids and copied as it is.
fn escaped(text: &str) -> Cow<'_, [u8]> {
    if snapshot::is_plain(text.as_bytes()) {
        return Cow::Borrowed(text.as_bytes());
    }
    let mut quoted = Vec::with_capacity(text.len() + 16);
    write_str(&mut quoted, text);
    Cow::Owned(quoted[1..quoted.len() - 1].to_vec())
}

fn write_key(out: &mut Vec<u8>, key: Key) {
    out.push(b'[');
    write_int(out, key.0);
    out.push(b',');
    write_int(out, key.1);
    out.push(b',');
    write_int(out, key.2);
    out.push(b']');
}

/// An exact `str` as `json::write_str` writes it.
fn write_py_text(out: &mut Vec<u8>, value: &Bound<'_, PyAny>) -> Step<()> {
    if !value.is_exact_instance_of::<PyString>() {
        return Err(Leave);
    }
    snapshot::write_text(out, value.downcast::<PyString>().map_err(|_| Leave)?.to_str()?);
    Ok(())
}

/// An exact `str`, or `null` for `None`.
fn write_opt_py_text(out: &mut Vec<u8>, value: &Bound<'_, PyAny>) -> Step<()> {
    if value.is_none() {
        out.extend_from_slice(b"null");
        return Ok(());
    }
    write_py_text(out, value)
}

/// A stamped fact as `to_bytes` writes it: `,"name":` and its value, written anew or copied.
enum Fact<'a> {
    Unset,
    Stored(&'a [u8]),
    /// Written anew: `Facts::written[start..end]`.
    New(Span),
}

fn write_fact(out: &mut Vec<u8>, name: &[u8], fact: &Fact<'_>, written: &[u8]) {
    let value = match fact {
        Fact::Unset => return,
        Fact::Stored(bytes) => *bytes,
        Fact::New((start, end)) => &written[*start..*end],
    };
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// A stamped fact of the stored document, copied as it stands.
fn stored_fact<'a>(document: Option<&Document<'a>>, fact: impl Fn(&Document<'a>) -> Stamped) -> Fact<'a> {
    match document.and_then(|document| fact(document).map(|(_, span)| document.bytes(span))) {
        Some(bytes) => Fact::Stored(bytes),
        None => Fact::Unset,
    }
}

/// What a fold writes into, kept on the thread from call to call: the new document is copied into a `bytes`
/// and the facts into it, so these need not be allocated and freed at every event.
#[derive(Default)]
struct Buffers {
    /// The new document.
    out: Vec<u8>,
    /// What `Facts::written` starts from.
    written: Vec<u8>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// A buffer grown past this (by an outsized document) is let go after the call rather than kept.
const KEPT_CAPACITY: usize = 1 << 16;

/// `body` with the thread's buffers, emptied; with new ones while those are in use (a fold entered again
/// from the Python it calls).
fn with_buffers<T>(body: impl FnOnce(&mut Buffers) -> T) -> T {
    BUFFERS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffers) => {
            buffers.out.clear();
            buffers.written.clear();
            let answer = body(&mut buffers);
            let Buffers { out, written } = &mut *buffers;
            for buffer in [out, written] {
                if buffer.capacity() > KEPT_CAPACITY {
                    *buffer = Vec::new();
                }
            }
            answer
        }
        Err(_) => body(&mut Buffers::default()),
    })
}

/// What `fold_document` gives: a duplicate, or the new document, its version, trigger and edit deadline.
enum Folded {
    Duplicate,
    /// The new document is in `Buffers::out`; its version, trigger and edit deadline.
    Accepted(i64, &'static str, Option<i64>),
    /// `late_edit`: the event's time, the edit deadline and the first disconnect, which the Python words.
    Late(i64, i64, Option<i64>),
}

/// `trigger_for(event.type, after_end).value`; a new log's trigger is `created`.
fn trigger_value(fresh: bool, kind: Kind, after_end: bool) -> &'static str {
    if fresh {
        "created"
    } else if kind == Kind::LogOpened {
        "opened"
    } else if kind.transition().is_some() && !after_end {
        "state_changed"
    } else {
        "updated"
    }
}

/// A trigger's value as a `str`: each one made once (interned), not at every call.
fn trigger_text<'py>(py: Python<'py>, trigger: &str) -> Bound<'py, PyString> {
    let interned = match trigger {
        "created" => pyo3::intern!(py, "created"),
        "opened" => pyo3::intern!(py, "opened"),
        "state_changed" => pyo3::intern!(py, "state_changed"),
        "updated" => pyo3::intern!(py, "updated"),
        other => return PyString::new(py, other),
    };
    interned.clone()
}

/// The event as the rules read it: its kind, time and stamp.
struct Incoming<'a, 'py> {
    event: &'a Bound<'py, PyAny>,
    kind: Kind,
    time_us: i64,
    sequence: i64,
    /// The stamp `(sequence or -1, time_us, arrival)`.
    key: Key,
}

impl<'py> Incoming<'_, 'py> {
    fn data(&self) -> Step<Bound<'py, PyAny>> {
        Ok(self.event.getattr(pyo3::intern!(self.event.py(), "data"))?)
    }

    /// `[stamp,` and then what `value` writes, and `]`, at the end of `written`.
    fn stamped(&self, written: &mut Vec<u8>, value: impl FnOnce(&mut Vec<u8>) -> Step<()>) -> Step<Span> {
        let start = written.len();
        written.push(b'[');
        write_key(written, self.key);
        written.push(b',');
        value(written)?;
        written.push(b']');
        Ok((start, written.len()))
    }
}

/// The transitions with the event's added, as `sorted` orders them.
enum Added {
    /// The stored ones, in order, with the new one before the stored one at this index (copied as they stand).
    Inserted(usize, Transition),
    /// All of them, sorted anew (the stored ones were out of order).
    Sorted(Vec<Transition>),
}

/// The new document's facts: each the stored one unless the event changes it.
struct Facts<'a> {
    /// What the event's facts are written into, one after the other (one buffer, not one per fact).
    written: Vec<u8>,
    edit_deadline_us: Option<i64>,
    /// The transitions when the event adds one.
    transitions: Option<Added>,
    connect: Fact<'a>,
    /// The views as written (in `written`), when the event adds one.
    views: Option<Span>,
    notes: Fact<'a>,
    subject: Fact<'a>,
    name_choice: Fact<'a>,
    related_choice: Fact<'a>,
    wrapup: Fact<'a>,
    /// The attributes as written (in `written`), when the event has some.
    attributes: Option<Span>,
}

impl<'a> Facts<'a> {
    fn stored(log: Option<&Document<'a>>, written: Vec<u8>) -> Self {
        Facts {
            written,
            edit_deadline_us: log.and_then(|log| log.edit_deadline_us),
            transitions: None,
            connect: stored_fact(log, |log| log.connect),
            views: None,
            notes: stored_fact(log, |log| log.notes),
            subject: stored_fact(log, |log| log.subject),
            name_choice: stored_fact(log, |log| log.name_choice),
            related_choice: stored_fact(log, |log| log.related_choice),
            wrapup: stored_fact(log, |log| log.wrapup),
            attributes: None,
        }
    }
}

/// The event's time and stamp (`fold.rs`'s readers: the same `to_us`, the same 64-bit bounds).
fn incoming<'a, 'py>(
    folding: &Folding<'_, 'py>,
    event: &'a Bound<'py, PyAny>,
    kind: Kind,
    arrival: Option<i64>,
) -> Step<Incoming<'a, 'py>> {
    let py = folding.py;
    let time_us = folding.to_us(&event.getattr(pyo3::intern!(py, "time"))?)?;
    let sequence_value = event.getattr(pyo3::intern!(py, "sequence"))?;
    let sequence = if sequence_value.is_none() { -1 } else { folding.i64_of(&sequence_value)? };
    let key = (sequence, time_us, some(arrival)?);
    Ok(Incoming { event, kind, time_us, sequence, key })
}

/// `fold_document`'s answer, or `Leave`: the Python folds this one.
fn fold_of(
    py: Python<'_>,
    known: &Known,
    document: Option<&[u8]>,
    event: &Bound<'_, PyAny>,
    edit_window_s: &Bound<'_, PyAny>,
    applied_ids_kept: &Bound<'_, PyAny>,
    buffers: &mut Buffers,
) -> Step<Folded> {
    let names = some(NAMES.get(py))?;
    let folding = Folding { py, names };
    let event_class = event.get_type();
    let kind = some(names.events.iter().find(|(class, _)| class.bind(py).is(&event_class)).map(|(_, kind)| *kind))?;
    let event_id = event.getattr(pyo3::intern!(py, "id"))?;
    let id = escaped(event_id.downcast::<PyString>().map_err(|_| Leave)?.to_str()?);
    let stored = match document {
        None => None,
        Some(text) => Some(some(Document::read(known, text, Some(&id)))?),
    };
    let log = stored.as_ref();
    if log.is_some_and(|log| log.finalized) {
        return Err(Leave); // duplicate or window_closed: the Python words it
    }
    if log.is_some_and(|log| log.holds_id) {
        return Ok(Folded::Duplicate);
    }
    let arrival = log.map_or(Some(1), |log| log.version.checked_add(1));
    let event = incoming(&folding, event, kind, arrival)?;
    let transitions = log.map_or(&[][..], |log| log.transitions.as_slice());
    let ended_us = if log.is_some() { disconnected_us(transitions.iter()) } else { None };
    if let Some(deadline_us) =
        log.and_then(|log| log.edit_deadline_us).filter(|&deadline_us| event.time_us > deadline_us)
    {
        return Ok(Folded::Late(event.time_us, deadline_us, ended_us));
    }
    let window_us = folding.window_us(edit_window_s)?;
    let after_end = ended_us.is_some_and(|ended| event.time_us > ended || kind == Kind::Disconnected);
    let trigger = trigger_value(log.is_none(), kind, after_end);

    let mut facts = Facts::stored(log, std::mem::take(&mut buffers.written));
    match kind {
        Kind::Connected | Kind::Held | Kind::Resumed | Kind::Disconnected => {
            fold_transition(py, &mut facts, log, transitions, &event, window_us)?;
        }
        Kind::LogUpdated => fold_update(&folding, &mut facts, log, &event)?,
        Kind::RecordViewed => {
            let after =
                ended_us.is_some_and(|ended| event.time_us >= ended) && transitions.iter().any(|t| t.sequence < 0);
            if !after {
                facts.views = Some(fold_view(py, log, &event, names.views_kept, &mut facts.written)?);
            }
        }
        Kind::LogOpened => {}
        Kind::Wrapup => {
            if log.and_then(|log| log.wrapup).is_none_or(|(stored_key, _)| event.key >= stored_key) {
                let data = event.data()?;
                facts.wrapup = Fact::New(event.stamped(&mut facts.written, |fact| {
                    write_py_text(fact, &data.getattr(pyo3::intern!(py, "code"))?)?;
                    fact.push(b',');
                    write_opt_py_text(fact, &data.getattr(pyo3::intern!(py, "note"))?)
                })?);
            }
        }
        Kind::Attributes => {
            let sent = event.data()?.getattr(pyo3::intern!(py, "attributes"))?;
            if !sent.is_exact_instance_of::<PyDict>() {
                return Err(Leave);
            }
            let sent = sent.downcast_into::<PyDict>().map_err(|_| Leave)?;
            facts.attributes = Some(merge_attributes(log, &sent, &event, names.max_attributes, &mut facts.written)?);
        }
    }

    if !(applied_ids_kept.is_exact_instance_of::<PyInt>() || applied_ids_kept.is_exact_instance_of::<PyBool>()) {
        return Err(Leave);
    }
    let kept: i64 = applied_ids_kept.extract()?;
    let out = &mut buffers.out;
    out.reserve(document.map_or(256, |text| text.len() + 256));
    out.extend_from_slice(b"{\"k\":\"log\",\"i\":");
    match log {
        Some(log) => write_raw(out, log.interaction_id),
        None => write_py_text(out, &event.event.getattr(pyo3::intern!(py, "subject"))?)?,
    }
    out.extend_from_slice(b",\"v\":");
    write_int(out, event.key.2);
    out.extend_from_slice(b",\"g\":\"");
    out.extend_from_slice(trigger.as_bytes());
    out.extend_from_slice(b"\",\"l\":");
    write_int(out, log.map_or(0, |log| log.last_event_us).max(event.time_us));
    out.extend_from_slice(b",\"a\":[");
    if let Some(log) = log {
        write_kept_ids(out, log, kept);
    }
    write_raw(out, &id);
    out.push(b']');
    write_facts(out, log, &facts);
    buffers.written = facts.written; // kept for the next call
    Ok(Folded::Accepted(event.key.2, trigger, facts.edit_deadline_us))
}

/// `log.applied_ids[-(kept - 1):] if kept > 1 else ()`, each followed by a comma: the ids as they stand, from
/// the first one's opening quote to the last one's closing quote.
fn write_kept_ids(out: &mut Vec<u8>, log: &Document<'_>, kept: i64) {
    if kept <= 1 || log.applied_count == 0 {
        return;
    }
    let dropped = log.applied_count.saturating_sub(usize::try_from(kept - 1).unwrap_or(usize::MAX));
    out.extend_from_slice(log.applied_ids_after(dropped));
    out.push(b',');
}

/// `_transition`: a transition not seen yet (by time, sequence and kind) is added in order; the deadline
/// follows the walk's first disconnect; the earliest `connected` supplies the connect data.
fn fold_transition<'a>(
    py: Python<'_>,
    facts: &mut Facts<'a>,
    log: Option<&Document<'a>>,
    transitions: &[Transition],
    event: &Incoming<'_, '_>,
    window_us: i64,
) -> Step<()> {
    let (time_us, sequence, arrival) = (event.time_us, event.sequence, event.key.2);
    let letter = some(event.kind.transition())?;
    if transitions.iter().any(|t| t.time_us == time_us && t.sequence == sequence && t.kind == letter) {
        return Ok(());
    }
    let added = Transition { time_us, sequence, arrival, kind: letter };
    let transitions_after = if transitions.is_sorted() {
        // `sorted` (stable) puts the new one after the stored ones it does not precede
        Added::Inserted(transitions.partition_point(|stored| *stored <= added), added)
    } else {
        let mut all = Vec::with_capacity(transitions.len() + 1);
        all.extend_from_slice(transitions);
        all.push(added);
        all.sort(); // stable, as `sorted`
        Added::Sorted(all)
    };
    if letter == b'D' || facts.edit_deadline_us.is_some() {
        let ended = match &transitions_after {
            Added::Inserted(at, added) => disconnected_us(
                transitions[..*at].iter().chain(std::iter::once(added)).chain(transitions[*at..].iter()),
            ),
            Added::Sorted(all) => disconnected_us(all.iter()),
        };
        facts.edit_deadline_us = match ended {
            None => None,
            Some(ended) => Some(some(ended.checked_add(window_us))?),
        };
    }
    let connect_key = (time_us, sequence, arrival);
    if letter == b'C' && log.and_then(|log| log.connect).is_none_or(|(stored_key, _)| connect_key < stored_key) {
        let fact = &mut facts.written;
        let start = fact.len();
        fact.push(b'[');
        write_key(fact, connect_key);
        fact.push(b',');
        some(write_model(py, fact, &event.data()?, 0))?;
        fact.push(b']');
        facts.connect = Fact::New((start, fact.len()));
    }
    facts.transitions = Some(transitions_after);
    Ok(())
}

/// `_log_updated`: each field sent (`model_fields_set`; the fast path's struct: notes and subject when not
/// `UNSET`) replaces the stored choice when its stamp is later.
fn fold_update<'a>(
    folding: &Folding<'_, '_>,
    facts: &mut Facts<'a>,
    log: Option<&Document<'a>>,
    event: &Incoming<'_, '_>,
) -> Step<()> {
    let py = folding.py;
    let data = event.data()?;
    let fast = data.get_type().is(folding.names.fast_update.bind(py));
    let sent = if fast { None } else { Some(data.getattr(pyo3::intern!(py, "model_fields_set"))?) };
    let written = &mut facts.written;
    let slots: [(&Bound<'_, PyString>, bool, &mut Fact<'a>, Stamped); 4] = [
        (pyo3::intern!(py, "notes"), false, &mut facts.notes, log.and_then(|log| log.notes)),
        (pyo3::intern!(py, "subject"), false, &mut facts.subject, log.and_then(|log| log.subject)),
        (pyo3::intern!(py, "name"), true, &mut facts.name_choice, log.and_then(|log| log.name_choice)),
        (pyo3::intern!(py, "related_to"), true, &mut facts.related_choice, log.and_then(|log| log.related_choice)),
    ];
    for (field, is_ref, slot, current) in slots {
        let value = match &sent {
            None if is_ref => continue,
            None => data.getattr(field)?,
            Some(sent) if sent.contains(field)? => data.getattr(field)?,
            Some(_) => continue,
        };
        if fast && value.is(folding.names.unset.bind(py)) {
            continue;
        }
        if current.is_none_or(|(stored_key, _)| event.key > stored_key) {
            *slot = Fact::New(event.stamped(written, |fact| {
                if is_ref {
                    some(write_ref(py, fact, &value))
                } else {
                    write_opt_py_text(fact, &value)
                }
            })?);
        }
    }
    Ok(())
}

/// `_record_viewed`'s insort: the view after the stored ones of an equal or earlier stamp, the newest
/// `VIEWS_KEPT` kept; the views as written.
fn fold_view(
    py: Python<'_>,
    log: Option<&Document<'_>>,
    event: &Incoming<'_, '_>,
    views_kept: usize,
    written: &mut Vec<u8>,
) -> Step<Span> {
    let stored_views = log.map_or(&[][..], |log| log.views.as_slice());
    // bisect_right on the stamps, step for step as `bisect` takes them
    let (mut at, mut high) = (0, stored_views.len());
    while at < high {
        let middle = (at + high) / 2;
        if event.key < stored_views[middle].0 {
            high = middle;
        } else {
            at = middle + 1;
        }
    }
    let record = event.data()?.getattr(pyo3::intern!(py, "record"))?;
    if record.is_none() {
        return Err(Leave);
    }
    let view = event.stamped(written, |view| some(write_ref(py, view, &record)))?;
    let count = stored_views.len() + 1;
    let start = count.saturating_sub(views_kept);
    let views_start = written.len();
    written.push(b'[');
    for index in start..count {
        if index > start {
            written.push(b',');
        }
        match index.cmp(&at) {
            Ordering::Less => written.extend_from_slice(some(log)?.bytes(stored_views[index].1)),
            Ordering::Equal => written.extend_from_within(view.0..view.1),
            Ordering::Greater => written.extend_from_slice(some(log)?.bytes(stored_views[index - 1].1)),
        }
    }
    written.push(b']');
    Ok((views_start, written.len()))
}

fn write_transition(out: &mut Vec<u8>, transition: &Transition) {
    out.push(b'[');
    write_int(out, transition.time_us);
    out.push(b',');
    write_int(out, transition.sequence);
    out.push(b',');
    write_int(out, transition.arrival);
    out.extend_from_slice(b",\"");
    out.push(transition.kind);
    out.extend_from_slice(b"\"]");
}

/// The stored transitions' array (`[]` for none) with `added` written before the one at index `at`, the
/// stored ones copied as they stand. An item starts at its `[`: none holds another (its kind is one letter).
fn write_inserted(out: &mut Vec<u8>, stored: &[u8], at: usize, added: &Transition) {
    let next = stored.iter().enumerate().filter(|&(_, &byte)| byte == b'[').nth(at + 1).map(|(index, _)| index);
    match next {
        Some(index) => {
            out.extend_from_slice(&stored[..index]);
            write_transition(out, added);
            out.push(b',');
            out.extend_from_slice(&stored[index..]);
        }
        None => {
            let head = &stored[..stored.len() - 1]; // without the closing bracket
            out.extend_from_slice(head);
            if head.len() > 1 {
                out.push(b',');
            }
            write_transition(out, added);
            out.push(b']');
        }
    }
}

/// The facts after the applied ids, in `to_bytes`' order: `e t c w n s nm rt u at`.
fn write_facts(out: &mut Vec<u8>, log: Option<&Document<'_>>, facts: &Facts<'_>) {
    let written = facts.written.as_slice();
    if let Some(deadline_us) = facts.edit_deadline_us {
        out.extend_from_slice(b",\"e\":");
        write_int(out, deadline_us);
    }
    let stored_transitions = log.and_then(|log| log.transitions_span.map(|span| log.bytes(span)));
    match &facts.transitions {
        Some(Added::Inserted(at, added)) => {
            out.extend_from_slice(b",\"t\":");
            write_inserted(out, stored_transitions.unwrap_or(b"[]"), *at, added);
        }
        Some(Added::Sorted(all)) => {
            out.extend_from_slice(b",\"t\":[");
            for (index, transition) in all.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_transition(out, transition);
            }
            out.push(b']');
        }
        None => {
            if let Some(stored) = stored_transitions {
                out.extend_from_slice(b",\"t\":");
                out.extend_from_slice(stored);
            }
        }
    }
    write_fact(out, b",\"c\":", &facts.connect, written);
    let stored_views = log.and_then(|log| {
        let (first, last) = (log.views.first()?.1, log.views.last()?.1);
        Some(&log.text[first.0 - 1..last.1 + 1]) // with the array's brackets
    });
    if let Some(views) = facts.views.map(|(start, end)| &written[start..end]).or(stored_views) {
        out.extend_from_slice(b",\"w\":");
        out.extend_from_slice(views);
    }
    write_fact(out, b",\"n\":", &facts.notes, written);
    write_fact(out, b",\"s\":", &facts.subject, written);
    write_fact(out, b",\"nm\":", &facts.name_choice, written);
    write_fact(out, b",\"rt\":", &facts.related_choice, written);
    write_fact(out, b",\"u\":", &facts.wrapup, written);
    let stored_attributes = log.and_then(|log| {
        let (first, last) = (log.attributes.first()?.span, log.attributes.last()?.span);
        Some(&log.text[first.0 - 1..last.1 + 1])
    });
    if let Some(attributes) = facts.attributes.map(|(start, end)| &written[start..end]).or(stored_attributes) {
        out.extend_from_slice(b",\"at\":");
        out.extend_from_slice(attributes);
    }
    out.push(b'}');
}

/// `_attributes` with `too_many_attributes` of an open log: the stored attributes (sorted by key, each once)
/// merged with the event's, a key taking the event's value when the event's stamp is later, written sorted.
fn merge_attributes(
    log: Option<&Document<'_>>,
    sent: &Bound<'_, PyDict>,
    event: &Incoming<'_, '_>,
    max_attributes: usize,
    written: &mut Vec<u8>,
) -> Step<Span> {
    // (the key's text, the entry as written in `written`)
    let mut incoming: Vec<(String, Span)> = Vec::with_capacity(sent.len());
    for (name, value) in sent.iter() {
        if !name.is_exact_instance_of::<PyString>() {
            return Err(Leave);
        }
        let text = name.downcast::<PyString>().map_err(|_| Leave)?.to_str()?.to_owned();
        let start = written.len();
        written.push(b'[');
        snapshot::write_text(written, &text);
        written.push(b',');
        write_key(written, event.key);
        written.push(b',');
        write_py_text(written, &value)?;
        written.push(b']');
        incoming.push((text, (start, written.len())));
    }
    incoming.sort_by(|left, right| left.0.as_bytes().cmp(right.0.as_bytes())); // a dict's keys are distinct
    let stored_attributes = log.map_or(&[][..], |log| log.attributes.as_slice());
    let mut stored_keys: Vec<Cow<'_, [u8]>> = Vec::with_capacity(stored_attributes.len());
    for attribute in stored_attributes {
        let text = some(text_bytes(attribute.key))?;
        if stored_keys.last().is_some_and(|before| before.as_ref() >= text.as_ref()) {
            return Err(Leave); // not sorted, or a key twice: not what the fold stores
        }
        stored_keys.push(text);
    }
    let out = written;
    let out_start = out.len();
    out.push(b'[');
    let (mut left, mut right, mut count) = (0, 0, 0);
    while left < stored_attributes.len() || right < incoming.len() {
        if count > 0 {
            out.push(b',');
        }
        count += 1;
        let order = match (stored_keys.get(left), incoming.get(right)) {
            (Some(stored), Some((text, _))) => stored.as_ref().cmp(text.as_bytes()),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                out.extend_from_slice(some(log)?.bytes(stored_attributes[left].span));
                left += 1;
            }
            Ordering::Greater => {
                out.extend_from_within(incoming[right].1 .0..incoming[right].1 .1);
                right += 1;
            }
            Ordering::Equal => {
                if event.key > stored_attributes[left].stamp {
                    out.extend_from_within(incoming[right].1 .0..incoming[right].1 .1);
                } else {
                    out.extend_from_slice(some(log)?.bytes(stored_attributes[left].span));
                }
                left += 1;
                right += 1;
            }
        }
    }
    if log.is_some() && count > max_attributes {
        return Err(Leave); // too_large: the Python words it
    }
    out.push(b']');
    Ok((out_start, out.len()))
}

/// `fold(InteractionLog.from_bytes(document) if document is not None else None, event, …)` of
/// `worker/core/fold.py` on the stored document: `(new document, version, trigger, edit deadline)` for an
/// accepted event, True for a duplicate, or None: the caller folds this one (every rejection among them).
#[pyfunction]
fn fold_document<'py>(
    py: Python<'py>,
    document: &Bound<'py, PyAny>,
    event: &Bound<'py, PyAny>,
    edit_window_s: &Bound<'py, PyAny>,
    applied_ids_kept: &Bound<'py, PyAny>,
) -> Option<Bound<'py, PyAny>> {
    let known = known(py)?;
    if !layout_known(py, known) {
        return None;
    }
    let text = if document.is_none() { None } else { Some(document.downcast::<PyBytes>().ok()?.as_bytes()) };
    crate::guarded(|| {
        with_buffers(|buffers| {
            match fold_of(py, known, text, event, edit_window_s, applied_ids_kept, buffers).ok()? {
                Folded::Duplicate => Some(PyBool::new(py, true).to_owned().into_any()),
                Folded::Accepted(version, trigger, deadline_us) => {
                    let items = (PyBytes::new(py, &buffers.out), version, trigger_text(py, trigger), deadline_us);
                    Some(items.into_pyobject(py).ok()?.into_any())
                }
                Folded::Late(time_us, deadline_us, ended_us) => {
                    let items = (py.None(), time_us, deadline_us, ended_us);
                    Some(items.into_pyobject(py).ok()?.into_any())
                }
            }
        })
    })
}

/// `finalize(InteractionLog.from_bytes(document)).to_bytes()` and the log's applied ids, or None: the caller
/// finalizes this one (a finalized log among them).
#[pyfunction]
fn finalize_document<'py>(py: Python<'py>, document: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
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
        let version = log.version.checked_add(1)?;
        let mut out = Vec::with_capacity(text.len() + 32);
        out.extend_from_slice(b"{\"k\":\"log\",\"i\":");
        write_raw(&mut out, log.interaction_id);
        out.extend_from_slice(b",\"v\":");
        write_int(&mut out, version);
        out.extend_from_slice(b",\"g\":\"finalized\",\"l\":");
        write_int(&mut out, log.last_event_us);
        out.extend_from_slice(b",\"a\":[");
        out.extend_from_slice(log.bytes(log.applied_ids));
        out.extend_from_slice(b"],\"f\":1");
        out.extend_from_slice(&text[log.ids_end..]);
        let mut ids = Vec::with_capacity(log.applied_count);
        for raw in log.applied_ids() {
            ids.push(if raw.contains(&b'\\') {
                PyString::new(py, &unescape(raw)?)
            } else {
                PyString::new(py, std::str::from_utf8(raw).ok()?)
            });
        }
        let ids = PyTuple::new(py, ids).ok()?;
        Some((PyBytes::new(py, &out), ids).into_pyobject(py).ok()?.into_any())
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fold_document, m)?)?;
    m.add_function(wrap_pyfunction!(finalize_document, m)?)?;
    Ok(())
}
