//! `fold(state, event, …)` of `worker/core/fold.py` for the accept path and duplicates: the same
//! `FoldResult` (an equal `InteractionLog` of the same classes, sharing `Derived` with the previous
//! version as `evolve_log` does, and the same outcome object), built from the Python classes and
//! constants `fold_setup` hands over once at import.
//!
//! It returns `None`, and the Python folds the event and words what it says, for: a `Tombstone`, a
//! finalized log or any other state that is not exactly an `InteractionLog`; an event past the edit
//! deadline (`late_edit`); an attributes event that would take an open log over `MAX_ATTRIBUTES` keys
//! (`too_large`); an event class it does not know; an integer past 64 bits; a stored fact of an
//! unexpected shape; and any Python error on the way (a naive time, a window that is not a number).
//! Nothing is changed before it knows it handles the event, except that a log read without its
//! `Derived` gets one, as `derived_of` gives it.

use std::collections::HashMap;
use std::os::raw::c_int;
use std::ptr;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString, PyTuple, PyType};

use crate::json::py_i64;

/// The event is left to the Python (an unhandled case, or a Python error, which is dropped: the
/// Python meets it again and raises or words it as the specification says).
pub(crate) struct Leave;

impl From<PyErr> for Leave {
    fn from(_: PyErr) -> Self {
        Leave
    }
}

pub(crate) type Step<T> = Result<T, Leave>;

pub(crate) fn some<T>(value: Option<T>) -> Step<T> {
    value.ok_or(Leave)
}

/// The `InteractionLog` fields, in declaration order (checked by `fold_setup`).
const FIELDS: [&str; 17] = [
    "interaction_id",
    "version",
    "trigger",
    "finalized",
    "edit_deadline_us",
    "last_event_us",
    "applied_ids",
    "transitions",
    "connect",
    "views",
    "notes",
    "subject",
    "name_choice",
    "related_choice",
    "wrapup",
    "attributes",
    "derived",
];
const VERSION: usize = 1;
const TRIGGER: usize = 2;
const FINALIZED: usize = 3;
const EDIT_DEADLINE_US: usize = 4;
const LAST_EVENT_US: usize = 5;
const APPLIED_IDS: usize = 6;
const TRANSITIONS: usize = 7;
const CONNECT: usize = 8;
const VIEWS: usize = 9;
const NOTES: usize = 10;
const SUBJECT: usize = 11;
const NAME_CHOICE: usize = 12;
const RELATED_CHOICE: usize = 13;
const WRAPUP: usize = 14;
const ATTRIBUTES: usize = 15;
const DERIVED: usize = 16;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Connected,
    Held,
    Resumed,
    Disconnected,
    LogUpdated,
    RecordViewed,
    LogOpened,
    Wrapup,
    Attributes,
}

impl Kind {
    fn of(event_type: &str) -> Option<Kind> {
        Some(match event_type {
            "interaction.connected" => Kind::Connected,
            "interaction.held" => Kind::Held,
            "interaction.resumed" => Kind::Resumed,
            "interaction.disconnected" => Kind::Disconnected,
            "log.updated" => Kind::LogUpdated,
            "record.viewed" => Kind::RecordViewed,
            "log.opened" => Kind::LogOpened,
            "interaction.wrapup" => Kind::Wrapup,
            "interaction.attributes" => Kind::Attributes,
            _ => return None,
        })
    }

    /// `_TRANSITION_KIND`: the stored letter of a state transition.
    pub(crate) fn transition(self) -> Option<u8> {
        match self {
            Kind::Connected => Some(b'C'),
            Kind::Held => Some(b'H'),
            Kind::Resumed => Some(b'R'),
            Kind::Disconnected => Some(b'D'),
            _ => None,
        }
    }
}

/// Indexes into `Names::triggers` and `Names::accepted`.
const CREATED: usize = 0;
const STATE_CHANGED: usize = 1;
const OPENED: usize = 2;
const UPDATED: usize = 3;
const TRIGGERS: [&str; 4] = ["CREATED", "STATE_CHANGED", "OPENED", "UPDATED"];

pub(crate) struct Names {
    log: Py<PyType>,
    derived: Py<PyAny>,
    stamp: Py<PyType>,
    transition: Py<PyType>,
    fold_result: Py<PyType>,
    duplicate: Py<PyAny>,
    triggers: [Py<PyAny>; 4],
    accepted: [Py<PyAny>; 4],
    /// The event classes the fold takes (the models and the fast path's structs), by exact type.
    pub(crate) events: Vec<(Py<PyType>, Kind)>,
    /// `schemas.fast.LogUpdatedData`, whose `model_fields_set` is `notes` and `subject` when not `unset`.
    pub(crate) fast_update: Py<PyType>,
    pub(crate) unset: Py<PyAny>,
    epoch: Py<PyAny>,
    letters: [Py<PyString>; 4],
    pub(crate) views_kept: usize,
    pub(crate) max_attributes: usize,
    /// The slot descriptors of `InteractionLog`, in `FIELDS` order, and the member descriptor's get and set.
    slots: Vec<Py<PyAny>>,
    slot_get: ffi::descrgetfunc,
    slot_set: ffi::descrsetfunc,
    /// `tuple.__new__`: a NamedTuple (`Stamp`, `Transition`, `FoldResult`) without its Python `__new__`.
    tuple_new: ffi::newfunc,
}

pub(crate) static NAMES: GILOnceCell<Names> = GILOnceCell::new();

fn item<'py>(names: &Bound<'py, PyDict>, key: &str) -> PyResult<Bound<'py, PyAny>> {
    names.get_item(key)?.ok_or_else(|| PyValueError::new_err(format!("fold_setup: `{key}` is missing")))
}

fn class<'py>(names: &Bound<'py, PyDict>, key: &str) -> PyResult<Bound<'py, PyType>> {
    Ok(item(names, key)?.downcast_into::<PyType>()?)
}

fn fields_of(class: &Bound<'_, PyType>) -> PyResult<Vec<String>> {
    class.getattr("_fields")?.extract()
}

fn check_fields(class: &Bound<'_, PyType>, expected: &[&str]) -> PyResult<()> {
    if fields_of(class)? != expected {
        return Err(PyValueError::new_err(format!(
            "fold_setup: {} has other fields than the compiled fold builds",
            class.name()?
        )));
    }
    Ok(())
}

unsafe fn type_slot(ty: &Bound<'_, PyType>, slot: c_int) -> *mut std::ffi::c_void {
    ffi::PyType_GetSlot(ty.as_ptr() as *mut ffi::PyTypeObject, slot)
}

/// The Python classes and constants the compiled fold builds its results from (see `worker/core/fold.py`).
#[pyfunction]
fn fold_setup(py: Python<'_>, names: &Bound<'_, PyDict>) -> PyResult<()> {
    if NAMES.get(py).is_some() {
        return Err(PyRuntimeError::new_err("fold_setup: the compiled fold is set up already"));
    }
    let log = class(names, "InteractionLog")?;
    let fields: Vec<String> = item(names, "fields")?.extract()?;
    if fields != FIELDS {
        return Err(PyValueError::new_err("fold_setup: InteractionLog has other fields than the compiled fold builds"));
    }
    let stamp = class(names, "Stamp")?;
    check_fields(&stamp, &["sequence", "time_us", "arrival"])?;
    let transition = class(names, "Transition")?;
    check_fields(&transition, &["time_us", "sequence", "arrival", "kind"])?;
    let fold_result = class(names, "FoldResult")?;
    check_fields(&fold_result, &["log", "outcome"])?;
    let tuple_type = py.get_type::<PyTuple>();
    for named in [&stamp, &transition, &fold_result] {
        if !named.is_subclass(&tuple_type)? {
            return Err(PyValueError::new_err("fold_setup: Stamp, Transition and FoldResult are tuples"));
        }
    }
    let trigger = item(names, "Trigger")?;
    let accepted_by_trigger = item(names, "Accepted")?.downcast_into::<PyDict>()?;
    let mut triggers = Vec::new();
    let mut accepted = Vec::new();
    for name in TRIGGERS {
        let member = trigger.getattr(name)?;
        let found = accepted_by_trigger
            .get_item(&member)?
            .ok_or_else(|| PyValueError::new_err(format!("fold_setup: no Accepted for {name}")))?;
        accepted.push(found.unbind());
        triggers.push(member.unbind());
    }
    let mut events = Vec::new();
    for (event_class, event_type) in item(names, "events")?.downcast_into::<PyDict>()?.iter() {
        let event_type: String = event_type.extract()?;
        let kind = Kind::of(&event_type)
            .ok_or_else(|| PyValueError::new_err(format!("fold_setup: unknown event type {event_type}")))?;
        events.push((event_class.downcast_into::<PyType>()?.unbind(), kind));
    }
    // The slots: member descriptors, read and written through their type's own get and set.
    let mut slots = Vec::new();
    let mut descriptor_type: Option<Bound<'_, PyType>> = None;
    for name in FIELDS {
        let descriptor = log.getattr("__dict__")?.get_item(name)?;
        let of = descriptor.get_type();
        if of.name()? != "member_descriptor" || descriptor_type.as_ref().is_some_and(|seen| !seen.is(&of)) {
            return Err(PyValueError::new_err(format!("fold_setup: InteractionLog.{name} is not a slot")));
        }
        descriptor_type = Some(of);
        slots.push(descriptor.unbind());
    }
    let descriptor_type = descriptor_type.ok_or_else(|| PyValueError::new_err("fold_setup: no slots"))?;
    // SAFETY: PyType_GetSlot accepts static types from Python 3.10 (this module needs 3.11); a member
    // descriptor type has both slots, and `tuple` has `tp_new`.
    let (slot_get, slot_set, tuple_new) = unsafe {
        let get = type_slot(&descriptor_type, ffi::Py_tp_descr_get);
        let set = type_slot(&descriptor_type, ffi::Py_tp_descr_set);
        let new = type_slot(&tuple_type, ffi::Py_tp_new);
        if get.is_null() || set.is_null() || new.is_null() {
            return Err(PyRuntimeError::new_err("fold_setup: a type slot is missing"));
        }
        (
            std::mem::transmute::<*mut std::ffi::c_void, ffi::descrgetfunc>(get),
            std::mem::transmute::<*mut std::ffi::c_void, ffi::descrsetfunc>(set),
            std::mem::transmute::<*mut std::ffi::c_void, ffi::newfunc>(new),
        )
    };
    let views_kept: usize = item(names, "VIEWS_KEPT")?.extract()?;
    let max_attributes: usize = item(names, "MAX_ATTRIBUTES")?.extract()?;
    if views_kept == 0 {
        return Err(PyValueError::new_err("fold_setup: VIEWS_KEPT must be positive"));
    }
    let letters = ["C", "H", "R", "D"].map(|letter| PyString::intern(py, letter).unbind());
    let [t0, t1, t2, t3]: [Py<PyAny>; 4] = triggers.try_into().map_err(|_| PyRuntimeError::new_err("triggers"))?;
    let [a0, a1, a2, a3]: [Py<PyAny>; 4] = accepted.try_into().map_err(|_| PyRuntimeError::new_err("accepted"))?;
    let made = Names {
        log: log.unbind(),
        derived: item(names, "Derived")?.unbind(),
        stamp: stamp.unbind(),
        transition: transition.unbind(),
        fold_result: fold_result.unbind(),
        duplicate: item(names, "Duplicate")?.unbind(),
        triggers: [t0, t1, t2, t3],
        accepted: [a0, a1, a2, a3],
        events,
        fast_update: class(names, "LogUpdatedData")?.unbind(),
        unset: item(names, "UNSET")?.unbind(),
        epoch: item(names, "EPOCH")?.unbind(),
        letters,
        views_kept,
        max_attributes,
        slots,
        slot_get,
        slot_set,
        tuple_new,
    };
    NAMES.set(py, made).map_err(|_| PyRuntimeError::new_err("fold_setup: the compiled fold is set up already"))
}

/// The `FoldResult` of `worker.core.fold.fold(state, event, edit_window_s=…, applied_ids_kept=…)`, or
/// None: the Python folds this event.
#[pyfunction]
fn fold<'py>(
    py: Python<'py>,
    state: &Bound<'py, PyAny>,
    event: &Bound<'py, PyAny>,
    edit_window_s: &Bound<'py, PyAny>,
    applied_ids_kept: &Bound<'py, PyAny>,
) -> Option<Bound<'py, PyAny>> {
    let names = NAMES.get(py)?;
    crate::guarded(|| Folding { py, names }.fold(state, event, edit_window_s, applied_ids_kept).ok())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fold_setup, m)?)?;
    m.add_function(wrap_pyfunction!(fold, m)?)?;
    Ok(())
}

/// (sequence or -1, time_us, arrival): a `Stamp`, compared as the tuple it is.
type Key = (i64, i64, i64);

/// A stored transition's values (`Transition(time_us, sequence, arrival, kind)`) and the object.
struct Stored<'py> {
    time_us: i64,
    sequence: i64,
    arrival: i64,
    kind: u8,
    object: Bound<'py, PyAny>,
}

impl Stored<'_> {
    fn order(&self) -> (i64, i64, i64, u8) {
        (self.time_us, self.sequence, self.arrival, self.kind)
    }
}

/// `disconnected_us(transitions)` (`worker/core/snapshot.py`): the event time of the first disconnect
/// in `walk_order`: by sequence when every transition has one and they do not already follow the
/// stored (event-time) order, else as stored.
fn disconnected_us(transitions: &[Stored<'_>]) -> Option<i64> {
    let mut last = -1;
    let mut in_order = true;
    for transition in transitions {
        if transition.sequence < 0 {
            in_order = true;
            break;
        }
        if transition.sequence < last {
            in_order = false;
        }
        last = transition.sequence;
    }
    if in_order {
        return transitions.iter().find(|t| t.kind == b'D').map(|t| t.time_us);
    }
    let mut walked: Vec<&Stored<'_>> = transitions.iter().collect();
    walked.sort_by_key(|t| (t.sequence, t.time_us, t.arrival)); // stable, as `sorted`
    walked.iter().find(|t| t.kind == b'D').map(|t| t.time_us)
}

pub(crate) struct Folding<'a, 'py> {
    pub(crate) py: Python<'py>,
    pub(crate) names: &'a Names,
}

impl<'py> Folding<'_, 'py> {
    fn int(&self, value: i64) -> Bound<'py, PyAny> {
        value.into_pyobject(self.py).map(|int| int.into_any()).unwrap_or_else(|never| match never {})
    }

    fn none(&self) -> Bound<'py, PyAny> {
        self.py.None().into_bound(self.py)
    }

    /// `cls(*items)` for a NamedTuple class: `tuple.__new__(cls, items)`, which its `__new__` runs.
    fn named(&self, class: &Py<PyType>, items: Bound<'py, PyTuple>) -> Step<Bound<'py, PyAny>> {
        let args = PyTuple::new(self.py, [items])?;
        // SAFETY: `tuple_new` is `tuple`'s tp_new and `class` a subclass of tuple (checked by fold_setup).
        Ok(unsafe {
            Bound::from_owned_ptr_or_err(
                self.py,
                (self.names.tuple_new)(class.as_ptr() as *mut ffi::PyTypeObject, args.as_ptr(), ptr::null_mut()),
            )?
        })
    }

    fn stamp(&self, key: Key) -> Step<Bound<'py, PyAny>> {
        let items = PyTuple::new(self.py, [self.int(key.0), self.int(key.1), self.int(key.2)])?;
        self.named(&self.names.stamp, items)
    }

    fn slot(&self, log: &Bound<'py, PyAny>, index: usize) -> Step<Bound<'py, PyAny>> {
        // SAFETY: a member descriptor's tp_descr_get checks that `log` is an instance of its class.
        Ok(unsafe {
            Bound::from_owned_ptr_or_err(
                self.py,
                (self.names.slot_get)(self.names.slots[index].as_ptr(), log.as_ptr(), self.names.log.as_ptr()),
            )?
        })
    }

    fn set_slot(&self, log: &Bound<'py, PyAny>, index: usize, value: &Bound<'py, PyAny>) -> Step<()> {
        // SAFETY: as `slot`; the descriptor takes its own reference to `value`.
        let status = unsafe { (self.names.slot_set)(self.names.slots[index].as_ptr(), log.as_ptr(), value.as_ptr()) };
        if status < 0 {
            return Err(PyErr::fetch(self.py).into());
        }
        Ok(())
    }

    /// A new `InteractionLog` with these field values, as `evolve_log` makes it (without `__init__`).
    fn new_log(&self, values: &[Bound<'py, PyAny>]) -> Step<Bound<'py, PyAny>> {
        let empty = PyTuple::empty(self.py);
        // SAFETY: PyType_GenericNew allocates an instance with all slots empty; each is set below.
        let log = unsafe {
            Bound::from_owned_ptr_or_err(
                self.py,
                ffi::PyType_GenericNew(
                    self.names.log.as_ptr() as *mut ffi::PyTypeObject,
                    empty.as_ptr(),
                    ptr::null_mut(),
                ),
            )?
        };
        for (index, value) in values.iter().enumerate() {
            self.set_slot(&log, index, value)?;
        }
        Ok(log)
    }

    fn result(&self, log: Bound<'py, PyAny>, outcome: Bound<'py, PyAny>) -> Step<Bound<'py, PyAny>> {
        let items = PyTuple::new(self.py, [log, outcome])?;
        self.named(&self.names.fold_result, items)
    }

    pub(crate) fn i64_of(&self, value: &Bound<'py, PyAny>) -> Step<i64> {
        some(py_i64(value))
    }

    /// A stamp stored as a tuple of three ints (`Stamp`, or a connect key).
    fn key_of(&self, value: &Bound<'py, PyAny>) -> Step<Key> {
        let items = value.downcast::<PyTuple>().map_err(|_| Leave)?;
        if items.len() != 3 {
            return Err(Leave);
        }
        Ok((self.i64_of(&items.get_item(0)?)?, self.i64_of(&items.get_item(1)?)?, self.i64_of(&items.get_item(2)?)?))
    }

    /// `value[0]` read as a stamp: the stamp of a stamped fact `(stamp, …)`.
    fn first_key(&self, value: &Bound<'py, PyAny>) -> Step<Key> {
        let items = value.downcast::<PyTuple>().map_err(|_| Leave)?;
        self.key_of(&items.get_item(0)?)
    }

    fn exact_tuple(&self, value: Bound<'py, PyAny>) -> Step<Bound<'py, PyTuple>> {
        if !value.is_exact_instance_of::<PyTuple>() {
            return Err(Leave);
        }
        value.downcast_into::<PyTuple>().map_err(|_| Leave)
    }

    /// `to_us(moment)` (`worker/core/state.py`): the same subtraction and the same timedelta fields.
    pub(crate) fn to_us(&self, moment: &Bound<'py, PyAny>) -> Step<i64> {
        let since = moment.sub(self.names.epoch.bind(self.py))?;
        let days = self.i64_of(&since.getattr(pyo3::intern!(self.py, "days"))?)?;
        let seconds = self.i64_of(&since.getattr(pyo3::intern!(self.py, "seconds"))?)?;
        let micros = self.i64_of(&since.getattr(pyo3::intern!(self.py, "microseconds"))?)?;
        some(
            days.checked_mul(86_400)
                .and_then(|s| s.checked_add(seconds))
                .and_then(|s| s.checked_mul(1_000_000))
                .and_then(|us| us.checked_add(micros)),
        )
    }

    /// `round(edit_window_s * 1_000_000)`: an int times an int, or a float times 1e6 rounded half to even.
    pub(crate) fn window_us(&self, edit_window_s: &Bound<'py, PyAny>) -> Step<i64> {
        if edit_window_s.is_exact_instance_of::<PyFloat>() {
            let scaled = edit_window_s.extract::<f64>()? * 1_000_000.0;
            let rounded = scaled.round_ties_even();
            let limit = -(i64::MIN as f64); // 2^63, exactly
            if !rounded.is_finite() || !(-limit..limit).contains(&rounded) {
                return Err(Leave);
            }
            return Ok(rounded as i64);
        }
        if edit_window_s.is_exact_instance_of::<PyInt>() || edit_window_s.is_exact_instance_of::<PyBool>() {
            let seconds: i64 = edit_window_s.extract()?;
            return some(seconds.checked_mul(1_000_000));
        }
        Err(Leave)
    }

    fn stored_transitions(&self, transitions: &Bound<'py, PyTuple>) -> Step<Vec<Stored<'py>>> {
        let mut stored = Vec::with_capacity(transitions.len() + 1);
        for transition in transitions.iter() {
            if !transition.get_type().is(self.names.transition.bind(self.py)) {
                return Err(Leave);
            }
            let items = transition.downcast::<PyTuple>().map_err(|_| Leave)?;
            if items.len() != 4 {
                return Err(Leave);
            }
            let kind = items.get_item(3)?;
            let letter = match kind.downcast::<PyString>().map_err(|_| Leave)?.to_str()? {
                "C" => b'C',
                "H" => b'H',
                "R" => b'R',
                "D" => b'D',
                _ => return Err(Leave),
            };
            stored.push(Stored {
                time_us: self.i64_of(&items.get_item(0)?)?,
                sequence: self.i64_of(&items.get_item(1)?)?,
                arrival: self.i64_of(&items.get_item(2)?)?,
                kind: letter,
                object: transition,
            });
        }
        Ok(stored)
    }

    fn fold(
        &self,
        state: &Bound<'py, PyAny>,
        event: &Bound<'py, PyAny>,
        edit_window_s: &Bound<'py, PyAny>,
        applied_ids_kept: &Bound<'py, PyAny>,
    ) -> Step<Bound<'py, PyAny>> {
        let py = self.py;
        let names = self.names;
        let event_class = event.get_type();
        let kind = some(names.events.iter().find(|(class, _)| class.bind(py).is(&event_class)).map(|(_, kind)| *kind))?;
        let event_id = event.getattr(pyo3::intern!(py, "id"))?;
        let fresh = state.is_none();
        let mut log: Vec<Bound<'py, PyAny>> = Vec::with_capacity(FIELDS.len());
        if fresh {
            // InteractionLog(event.subject): the defaults
            let empty = PyTuple::empty(py).into_any();
            log.extend([
                event.getattr(pyo3::intern!(py, "subject"))?,
                self.int(0),
                names.triggers[CREATED].bind(py).clone(),
                PyBool::new(py, false).to_owned().into_any(),
                self.none(),
                self.int(0),
                empty.clone(),
                empty.clone(),
                self.none(),
                empty.clone(),
                self.none(),
                self.none(),
                self.none(),
                self.none(),
                self.none(),
                empty,
                self.none(),
            ]);
        } else {
            if !state.get_type().is(names.log.bind(py)) {
                return Err(Leave); // a Tombstone, or anything else: the Python decides
            }
            for index in 0..FIELDS.len() {
                log.push(self.slot(state, index)?);
            }
            if !log[FINALIZED].is(PyBool::new(py, false)) {
                return Err(Leave); // finalized: duplicate or window_closed, the Python words it
            }
        }
        let applied_ids = self.exact_tuple(log[APPLIED_IDS].clone())?;
        if !fresh && applied_ids.contains(&event_id)? {
            return self.result(state.clone(), names.duplicate.bind(py).clone());
        }
        let time_us = self.to_us(&event.getattr(pyo3::intern!(py, "time"))?)?;
        if !fresh && !log[EDIT_DEADLINE_US].is_none() && time_us > self.i64_of(&log[EDIT_DEADLINE_US])? {
            return Err(Leave); // late_edit
        }
        let transitions = self.exact_tuple(log[TRANSITIONS].clone())?;
        let stored = self.stored_transitions(&transitions)?;
        let ended_us = if fresh { None } else { disconnected_us(&stored) };
        let trigger = if fresh {
            CREATED
        } else if kind == Kind::LogOpened {
            OPENED
        } else if kind.transition().is_some() {
            let after_end = ended_us.is_some_and(|ended| time_us > ended || kind == Kind::Disconnected);
            if after_end {
                UPDATED
            } else {
                STATE_CHANGED
            }
        } else {
            UPDATED
        };
        let arrival = some(self.i64_of(&log[VERSION])?.checked_add(1))?;
        let sequence_value = event.getattr(pyo3::intern!(py, "sequence"))?;
        let sequence = if sequence_value.is_none() { -1 } else { self.i64_of(&sequence_value)? };
        let key: Key = (sequence, time_us, arrival);
        let stamp = self.stamp(key)?;
        let window_us = self.window_us(edit_window_s)?;
        let data = || event.getattr(pyo3::intern!(py, "data"));

        match kind {
            Kind::Connected | Kind::Held | Kind::Resumed | Kind::Disconnected => {
                let letter = some(kind.transition())?;
                let seen = stored.iter().any(|t| t.time_us == time_us && t.sequence == sequence && t.kind == letter);
                if !seen {
                    let letter_text = &names.letters[match letter {
                        b'C' => 0,
                        b'H' => 1,
                        b'R' => 2,
                        _ => 3,
                    }];
                    let items = PyTuple::new(
                        py,
                        [
                            self.int(time_us),
                            self.int(sequence),
                            self.int(arrival),
                            letter_text.bind(py).clone().into_any(),
                        ],
                    )?;
                    let mut all = stored;
                    all.push(Stored {
                        time_us,
                        sequence,
                        arrival,
                        kind: letter,
                        object: self.named(&names.transition, items)?,
                    });
                    all.sort_by_key(|t| t.order()); // stable, as `sorted`
                    log[TRANSITIONS] = PyTuple::new(py, all.iter().map(|t| &t.object))?.into_any();
                    if letter == b'D' || !log[EDIT_DEADLINE_US].is_none() {
                        log[EDIT_DEADLINE_US] = match disconnected_us(&all) {
                            None => self.none(),
                            Some(ended) => self.int(some(ended.checked_add(window_us))?),
                        };
                    }
                    if letter == b'C' {
                        let connect_key = (time_us, sequence, arrival);
                        if log[CONNECT].is_none() || connect_key < self.first_key(&log[CONNECT])? {
                            let key_tuple =
                                PyTuple::new(py, [self.int(time_us), self.int(sequence), self.int(arrival)])?;
                            log[CONNECT] = PyTuple::new(py, [key_tuple.into_any(), data()?])?.into_any();
                        }
                    }
                }
            }
            Kind::LogUpdated => {
                let data = data()?;
                let fields = [
                    (pyo3::intern!(py, "notes"), NOTES),
                    (pyo3::intern!(py, "subject"), SUBJECT),
                    (pyo3::intern!(py, "name"), NAME_CHOICE),
                    (pyo3::intern!(py, "related_to"), RELATED_CHOICE),
                ];
                let fast = data.get_type().is(names.fast_update.bind(py));
                let sent_set = if fast { None } else { Some(data.getattr(pyo3::intern!(py, "model_fields_set"))?) };
                for (field, slot) in fields {
                    let value;
                    if fast {
                        // the struct's `model_fields_set`: notes and subject, when sent (not `UNSET`)
                        if slot == NAME_CHOICE || slot == RELATED_CHOICE {
                            continue;
                        }
                        value = data.getattr(field)?;
                        if value.is(names.unset.bind(py)) {
                            continue;
                        }
                    } else {
                        if !some(sent_set.as_ref())?.contains(field)? {
                            continue;
                        }
                        value = data.getattr(field)?;
                    }
                    let current = &log[slot];
                    if current.is_none() || key > self.first_key(current)? {
                        log[slot] = PyTuple::new(py, [stamp.clone(), value])?.into_any();
                    }
                }
            }
            Kind::RecordViewed => {
                let after = ended_us.is_some_and(|ended| time_us >= ended) && stored.iter().any(|t| t.sequence < 0);
                if !after {
                    let views = self.exact_tuple(log[VIEWS].clone())?;
                    let record = data()?.getattr(pyo3::intern!(py, "record"))?;
                    // insort(views, (stamp, record), key=itemgetter(0)): bisect_right on the stamps
                    let (mut low, mut high) = (0, views.len());
                    while low < high {
                        let middle = (low + high) / 2;
                        if key < self.first_key(&views.get_item(middle)?)? {
                            high = middle;
                        } else {
                            low = middle + 1;
                        }
                    }
                    let view = PyTuple::new(py, [stamp.clone(), record])?.into_any();
                    let count = views.len() + 1;
                    let start = count.saturating_sub(names.views_kept);
                    let mut kept = Vec::with_capacity(count - start);
                    for index in start..count {
                        kept.push(match index.cmp(&low) {
                            std::cmp::Ordering::Less => views.get_item(index)?,
                            std::cmp::Ordering::Equal => view.clone(),
                            std::cmp::Ordering::Greater => views.get_item(index - 1)?,
                        });
                    }
                    log[VIEWS] = PyTuple::new(py, kept)?.into_any();
                }
            }
            Kind::LogOpened => {}
            Kind::Wrapup => {
                if log[WRAPUP].is_none() || key >= self.first_key(&log[WRAPUP])? {
                    let data = data()?;
                    let code = data.getattr(pyo3::intern!(py, "code"))?;
                    let note = data.getattr(pyo3::intern!(py, "note"))?;
                    log[WRAPUP] = PyTuple::new(py, [stamp.clone(), code, note])?.into_any();
                }
            }
            Kind::Attributes => {
                let sent = data()?.getattr(pyo3::intern!(py, "attributes"))?;
                if !sent.is_exact_instance_of::<PyDict>() {
                    return Err(Leave);
                }
                let sent = sent.downcast_into::<PyDict>().map_err(|_| Leave)?;
                let existing = self.exact_tuple(log[ATTRIBUTES].clone())?;
                // (key, the key's stamp, the entry `(key, stamp, value)`), in the dict's insertion order
                let mut merged: Vec<(String, Bound<'py, PyAny>, Bound<'py, PyAny>)> =
                    Vec::with_capacity(existing.len() + sent.len());
                let mut position: HashMap<String, usize> = HashMap::with_capacity(existing.len() + sent.len());
                for entry in existing.iter() {
                    let entry = self.exact_tuple(entry)?;
                    if entry.len() != 3 {
                        return Err(Leave);
                    }
                    let name = entry.get_item(0)?;
                    if !name.is_exact_instance_of::<PyString>() {
                        return Err(Leave);
                    }
                    let text = name.downcast::<PyString>().map_err(|_| Leave)?.to_str()?.to_owned();
                    let value = (text.clone(), entry.get_item(1)?, entry.into_any());
                    match position.get(&text) {
                        Some(&at) => merged[at] = value,
                        None => {
                            position.insert(text, merged.len());
                            merged.push(value);
                        }
                    }
                }
                for (name, value) in sent.iter() {
                    if !name.is_exact_instance_of::<PyString>() {
                        return Err(Leave);
                    }
                    let text = name.downcast::<PyString>().map_err(|_| Leave)?.to_str()?.to_owned();
                    let at = position.get(&text).copied();
                    if let Some(at) = at {
                        if key <= self.key_of(&merged[at].1)? {
                            continue;
                        }
                    }
                    let entry = PyTuple::new(py, [name, stamp.clone(), value])?.into_any();
                    let value = (text.clone(), stamp.clone(), entry);
                    match at {
                        Some(at) => merged[at] = value,
                        None => {
                            position.insert(text, merged.len());
                            merged.push(value);
                        }
                    }
                }
                if !fresh && merged.len() > names.max_attributes {
                    return Err(Leave); // too_large: the Python words it
                }
                merged.sort_by(|left, right| left.0.cmp(&right.0)); // the keys are distinct
                log[ATTRIBUTES] = PyTuple::new(py, merged.into_iter().map(|(_, _, entry)| entry))?.into_any();
            }
        }

        let kept = applied_ids_kept;
        if !(kept.is_exact_instance_of::<PyInt>() || kept.is_exact_instance_of::<PyBool>()) {
            return Err(Leave);
        }
        let kept: i64 = kept.extract()?;
        let mut ids: Vec<Bound<'py, PyAny>> = Vec::new();
        if kept > 1 {
            let count = applied_ids.len();
            let start = count.saturating_sub(usize::try_from(kept - 1).unwrap_or(usize::MAX));
            ids.reserve(count - start + 1);
            for index in start..count {
                ids.push(applied_ids.get_item(index)?);
            }
        }
        ids.push(event_id);
        log[APPLIED_IDS] = PyTuple::new(py, ids)?.into_any();
        if self.i64_of(&log[LAST_EVENT_US])? <= time_us {
            log[LAST_EVENT_US] = self.int(time_us);
        }
        log[VERSION] = self.int(arrival);
        log[TRIGGER] = names.triggers[trigger].bind(py).clone();
        if log[DERIVED].is_none() {
            let derived = names.derived.bind(py).call0()?;
            if !fresh {
                self.set_slot(state, DERIVED, &derived)?; // derived_of(state)
            }
            log[DERIVED] = derived;
        }
        let new_log = self.new_log(&log)?;
        self.result(new_log, names.accepted[trigger].bind(py).clone())
    }
}
