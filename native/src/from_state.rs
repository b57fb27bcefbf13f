//! The snapshot's JSON from a log's stored document: `snapshot_json(log, trigger)` byte for byte, read off
//! the bytes `log.to_bytes()` gave instead of off the log's Python objects.
//!
//! The fold stage encodes the state of every changed interaction and then its snapshot. Written from the
//! objects, the snapshot reads the log's tuples, stamps and models once more (docs/benchmarks.md); the
//! document holds the same facts as one contiguous JSON text, just written. Its strings are copied as they
//! stand: the document and the snapshot escape text alike (`json::write_str`, orjson's rules), and only those
//! escapes are accepted, so an escaped string is the same bytes in both and two strings are equal exactly when
//! their escaped forms are. A text the rules look into (a record's system and type, the customer's name in the
//! derived subject) is unescaped first.
//!
//! The document must be the one `to_bytes` wrote for the log (the stage's case: it has just encoded it). A
//! document read back from Redis may hold connect data stored before today's bounds, which
//! `InteractionLog.from_bytes` cuts to them: that one goes through the log. `None` (the caller then writes
//! the snapshot from the log) for anything but the shapes `to_bytes` writes: another key, shape, number form
//! or escape, a version below 1, a media or direction this does not know, connect data with a field
//! `ConnectedData` does not have, and everything `snapshot.rs` leaves to the Python.

use std::sync::Mutex;
use std::thread::JoinHandle;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use crate::json::{to_bytes, Out};
use crate::snapshot::{
    is_name_type, known, needs_escape, round_seconds, walk_steps, write_bounded, write_int, write_opt_time, Kind,
    Known, State, Step, Timeline,
};

/// A JSON value of the document; strings as their escaped bytes between the quotes, arrays and objects as
/// (first, count) of their items in the `Tree`.
#[derive(Clone, Copy)]
enum Value<'a> {
    Null,
    Int(i64),
    Str(&'a [u8]),
    Array(usize, usize),
    Object(usize, usize),
}

/// Nesting deeper than this is not a stored document.
const MAX_DEPTH: usize = 8;

/// The parsed document: the items of each array and object side by side (an object's keys beside its
/// values), so a document costs a few allocations, not one per array.
struct Tree<'a> {
    values: Vec<Value<'a>>,
    keys: Vec<&'a [u8]>,
}

impl<'a> Tree<'a> {
    fn items(&self, value: &Value<'a>) -> Out<&[Value<'a>]> {
        match *value {
            Value::Array(first, count) => Some(&self.values[first..first + count]),
            _ => None,
        }
    }

    /// An array of exactly `len` items.
    fn fixed(&self, value: &Value<'a>, len: usize) -> Out<&[Value<'a>]> {
        self.items(value).filter(|items| items.len() == len)
    }

    fn members(&self, value: &Value<'a>) -> Out<impl Iterator<Item = (&'a [u8], &Value<'a>)> + '_> {
        match *value {
            Value::Object(first, count) => {
                Some(self.keys[first..first + count].iter().copied().zip(&self.values[first..first + count]))
            }
            _ => None,
        }
    }
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
    /// The items of the arrays and objects still open, with their keys (empty in an array).
    open: Vec<(&'a [u8], Value<'a>)>,
    tree: Tree<'a>,
}

impl<'a> Parser<'a> {
    /// The document's value and its tree; None for anything but compact JSON of the shapes `to_bytes` writes.
    fn parse(text: &'a [u8]) -> Out<(Value<'a>, Tree<'a>)> {
        std::str::from_utf8(text).ok()?; // once: a string between two quotes is then UTF-8 too
        let mut parser = Parser {
            text,
            at: 0,
            open: Vec::with_capacity(64),
            tree: Tree { values: Vec::with_capacity(128), keys: Vec::with_capacity(128) },
        };
        let root = parser.value(0)?;
        (parser.at == text.len()).then_some((root, parser.tree))
    }

    fn peek(&self) -> Out<u8> {
        self.text.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Out {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// The items pushed since `mark`, moved into the tree: (first, count).
    fn close(&mut self, mark: usize) -> (usize, usize) {
        let first = self.tree.values.len();
        for (key, value) in self.open.drain(mark..) {
            self.tree.keys.push(key);
            self.tree.values.push(value);
        }
        (first, self.tree.values.len() - first)
    }

    /// A value of the compact JSON orjson writes (no white space, integers only, no true or false).
    fn value(&mut self, depth: usize) -> Out<Value<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => Some(Value::Str(self.string()?)),
            b'[' => {
                self.at += 1;
                let mark = self.open.len();
                if self.peek()? != b']' {
                    loop {
                        let item = self.value(depth + 1)?;
                        self.open.push((b"", item));
                        if self.peek()? != b',' {
                            break;
                        }
                        self.at += 1;
                    }
                }
                self.expect(b']')?;
                let (first, count) = self.close(mark);
                Some(Value::Array(first, count))
            }
            b'{' => {
                self.at += 1;
                let mark = self.open.len();
                if self.peek()? != b'}' {
                    loop {
                        let key = self.string()?;
                        self.expect(b':')?;
                        let member = self.value(depth + 1)?;
                        self.open.push((key, member));
                        if self.peek()? != b',' {
                            break;
                        }
                        self.at += 1;
                    }
                }
                self.expect(b'}')?;
                let (first, count) = self.close(mark);
                Some(Value::Object(first, count))
            }
            b'n' => {
                let end = self.at + 4;
                (self.text.get(self.at..end)? == b"null").then(|| self.at = end)?;
                Some(Value::Null)
            }
            b'-' | b'0'..=b'9' => self.integer(),
            _ => None,
        }
    }

    /// An integer as orjson writes one: `-?(0|[1-9][0-9]*)`, within 64 bits.
    fn integer(&mut self) -> Out<Value<'a>> {
        let negative = self.peek()? == b'-';
        if negative {
            self.at += 1;
        }
        let start = self.at;
        let mut magnitude: u64 = 0;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            if self.at - start == 19 {
                return None; // 20 digits and more: past 64 bits (19 always fit a u64)
            }
            magnitude = magnitude * 10 + u64::from(digit - b'0');
            self.at += 1;
        }
        let digits = self.at - start;
        if digits == 0 || (digits > 1 && self.text[start] == b'0') || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let value = if negative { 0i64.checked_sub_unsigned(magnitude)? } else { i64::try_from(magnitude).ok()? };
        Some(Value::Int(value))
    }

    /// A string's escaped bytes (between the quotes): the text is skipped eight bytes at a time up to a
    /// quote, a backslash or a control character.
    fn string(&mut self) -> Out<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.at;
        loop {
            while let Some(word) = self.text.get(self.at..self.at + 8) {
                if needs_escape(u64::from_le_bytes(word.try_into().ok()?)) {
                    break;
                }
                self.at += 8;
            }
            match self.peek()? {
                b'"' => break,
                b'\\' => self.at += canonical_escape(self.text.get(self.at + 1..)?)?,
                byte if byte < 0x20 => return None, // a control character JSON escapes
                _ => self.at += 1,
            }
        }
        let raw = self.text.get(start..self.at)?;
        self.at += 1;
        Some(raw)
    }
}

/// The length of an escape as `json::write_str` (orjson) writes it, from the byte after the backslash: the
/// short escapes, and `\u00xx` in lower-case hex for the other control characters. Anything else (`\/`, an
/// escaped letter, upper-case hex) would unescape to a text written otherwise here: None.
pub(crate) fn canonical_escape(rest: &[u8]) -> Out<usize> {
    match *rest.first()? {
        b'"' | b'\\' | b'n' | b'r' | b't' | b'b' | b'f' => Some(2),
        b'u' => {
            let digits = rest.get(1..5)?;
            let lower_hex = |byte: u8| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte);
            if digits[..2] != *b"00" || !digits[2..].iter().all(|&byte| lower_hex(byte)) {
                return None;
            }
            let code = hex4(digits)?;
            (code < 0x20 && ![0x08, 0x09, 0x0a, 0x0c, 0x0d].contains(&code)).then_some(6)
        }
        _ => None,
    }
}

/// The text of an escaped string; None for an escape JSON does not have or a lone surrogate.
pub(crate) fn unescape(raw: &[u8]) -> Out<String> {
    if !raw.contains(&b'\\') {
        return std::str::from_utf8(raw).ok().map(str::to_owned);
    }
    let mut text = String::with_capacity(raw.len());
    let mut at = 0;
    while at < raw.len() {
        let byte = raw[at];
        if byte != b'\\' {
            let end = raw[at..].iter().position(|&b| b == b'\\').map_or(raw.len(), |offset| at + offset);
            text.push_str(std::str::from_utf8(&raw[at..end]).ok()?);
            at = end;
            continue;
        }
        let escape = *raw.get(at + 1)?;
        at += 2;
        match escape {
            b'"' => text.push('"'),
            b'\\' => text.push('\\'),
            b'/' => text.push('/'),
            b'b' => text.push('\u{8}'),
            b'f' => text.push('\u{c}'),
            b'n' => text.push('\n'),
            b'r' => text.push('\r'),
            b't' => text.push('\t'),
            b'u' => {
                let unit = hex4(raw.get(at..at + 4)?)?;
                at += 4;
                let code = if (0xD800..0xDC00).contains(&unit) {
                    if raw.get(at..at + 2)? != b"\\u" {
                        return None;
                    }
                    let low = hex4(raw.get(at + 2..at + 6)?)?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return None;
                    }
                    at += 6;
                    0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    unit
                };
                text.push(char::from_u32(code)?);
            }
            _ => return None,
        }
    }
    Some(text)
}

fn hex4(digits: &[u8]) -> Out<u32> {
    let text = std::str::from_utf8(digits).ok()?;
    u32::from_str_radix(text, 16).ok()
}

fn write_raw(out: &mut Vec<u8>, raw: &[u8]) {
    out.push(b'"');
    out.extend_from_slice(raw);
    out.push(b'"');
}

fn write_opt_raw(out: &mut Vec<u8>, raw: Option<&[u8]>) {
    match raw {
        Some(raw) => write_raw(out, raw),
        None => out.extend_from_slice(b"null"),
    }
}

fn int(value: &Value<'_>) -> Out<i64> {
    match value {
        Value::Int(number) => Some(*number),
        _ => None,
    }
}

fn text<'a>(value: &Value<'a>) -> Out<&'a [u8]> {
    match value {
        Value::Str(raw) => Some(raw),
        _ => None,
    }
}

/// A string or null.
fn opt_text<'a>(value: &Value<'a>) -> Out<Option<&'a [u8]>> {
    match value {
        Value::Null => Some(None),
        Value::Str(raw) => Some(Some(raw)),
        _ => None,
    }
}

/// A stamp `[sequence, time_us, arrival]`: its time.
fn stamp_time(tree: &Tree<'_>, value: &Value<'_>) -> Out<i64> {
    let stamp = tree.fixed(value, 3)?;
    int(&stamp[0])?;
    int(&stamp[2])?;
    int(&stamp[1])
}

/// A record ref: (system, type, id) as escaped strings.
#[derive(Clone, Copy, PartialEq)]
struct Ref<'a> {
    system: &'a [u8],
    kind: &'a [u8],
    id: &'a [u8],
}

impl<'a> Ref<'a> {
    /// `[system, type, id]`, as views and choices are stored.
    fn of_array(tree: &Tree<'a>, value: &Value<'a>) -> Out<Self> {
        let fields = tree.fixed(value, 3)?;
        Some(Ref { system: text(&fields[0])?, kind: text(&fields[1])?, id: text(&fields[2])? })
    }

    /// `{"system":…,"type":…,"id":…}`, as the connect data stores its refs (`_model_out`).
    fn of_object(tree: &Tree<'a>, value: &Value<'a>) -> Out<Self> {
        let mut members = tree.members(value)?;
        let mut field = |name: &[u8]| members.next().filter(|(key, _)| *key == name).and_then(|(_, value)| text(value));
        let reference = Ref { system: field(b"system")?, kind: field(b"type")?, id: field(b"id")? };
        members.next().is_none().then_some(reference)
    }

    fn is_name(&self, known: &Known) -> Out<bool> {
        match (ascii(self.system), ascii(self.kind)) {
            (Some(system), Some(kind)) => is_name_type(known, system, kind),
            _ => is_name_type(known, &unescape(self.system)?, &unescape(self.kind)?),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"system\":");
        write_raw(out, self.system);
        out.extend_from_slice(b",\"type\":");
        write_raw(out, self.kind);
        out.extend_from_slice(b",\"id\":");
        write_raw(out, self.id);
        out.push(b'}');
    }
}

/// Escaped text that is plain ASCII with nothing escaped, as a `str` (the common record system and type).
pub(crate) fn ascii(raw: &[u8]) -> Option<&str> {
    if raw.is_ascii() && !raw.contains(&b'\\') {
        std::str::from_utf8(raw).ok()
    } else {
        None
    }
}

fn write_opt_ref(out: &mut Vec<u8>, reference: Option<Ref<'_>>) {
    match reference {
        Some(reference) => reference.write(out),
        None => out.extend_from_slice(b"null"),
    }
}

/// The connect data's fields the snapshot reads.
struct Connect<'a> {
    media: &'a [u8],
    direction: &'a [u8],
    queue: Option<&'a [u8]>,
    agent_id: Option<&'a [u8]>,
    /// The customer's stored members (unset fields left out), when there is a customer.
    customer: Option<Value<'a>>,
    name: Option<Ref<'a>>,
    related_to: Option<Ref<'a>>,
    noun: &'static str,
    with: bool,
    inbound: bool,
}

impl<'a> Connect<'a> {
    fn of(known: &Known, tree: &Tree<'a>, value: &Value<'a>) -> Out<Self> {
        let mut connect = Connect {
            media: b"",
            direction: b"",
            queue: None,
            agent_id: None,
            customer: None,
            name: None,
            related_to: None,
            noun: "",
            with: false,
            inbound: false,
        };
        for (key, member) in tree.members(value)? {
            if !known.connect_fields.iter().any(|field| field.as_bytes() == key) {
                return None;
            }
            match key {
                b"media" => connect.media = text(member)?,
                b"direction" => connect.direction = text(member)?,
                b"queue" => connect.queue = Some(text(member)?),
                b"agent_id" => connect.agent_id = Some(text(member)?),
                b"customer" => {
                    for (field, value) in tree.members(member)? {
                        if !known.customer_fields.iter().any(|known_field| known_field.as_bytes() == field) {
                            return None;
                        }
                        text(value)?;
                    }
                    connect.customer = Some(*member);
                }
                b"name" => connect.name = Some(Ref::of_object(tree, member)?),
                b"related_to" => connect.related_to = Some(Ref::of_object(tree, member)?),
                _ => return None, // a field of the model this does not know how to show
            }
        }
        let &(_, noun, with) = known.media_values.iter().find(|(value, _, _)| value.as_bytes() == connect.media)?;
        connect.inbound = match connect.direction {
            b"inbound" => true,
            b"outbound" => false,
            _ => return None,
        };
        connect.noun = noun;
        connect.with = with;
        Some(connect)
    }

    /// The customer's stored value of `field`, or None when unset.
    fn customer_field(&self, tree: &Tree<'a>, field: &[u8]) -> Option<&'a [u8]> {
        let mut members = tree.members(self.customer.as_ref()?)?;
        members.find(|(key, _)| *key == field).and_then(|(_, value)| text(value))
    }

    /// `Customer.__dict__` as the snapshot writes it: every field in order, null when unset.
    fn write_customer(&self, known: &Known, tree: &Tree<'a>, out: &mut Vec<u8>) {
        if self.customer.is_none() {
            out.extend_from_slice(b"null");
            return;
        }
        out.push(b'{');
        for (index, field) in known.customer_fields.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_raw(out, field.as_bytes());
            out.push(b':');
            write_opt_raw(out, self.customer_field(tree, field.as_bytes()));
        }
        out.push(b'}');
    }

    /// `(customer.name or customer.address)`, unescaped, or None.
    fn who(&self, tree: &Tree<'a>) -> Out<Option<String>> {
        for field in [b"name".as_slice(), b"address"] {
            if let Some(raw) = self.customer_field(tree, field) {
                if !raw.is_empty() {
                    return Some(Some(unescape(raw)?));
                }
            }
        }
        Some(None)
    }
}

/// The stored document's facts, by key.
#[derive(Default)]
struct Document<'a> {
    interaction_id: Option<&'a [u8]>,
    version: Option<i64>,
    trigger: Option<&'a [u8]>,
    finalized: bool,
    edit_deadline_us: Option<i64>,
    transitions: Option<Value<'a>>,
    connect: Option<Value<'a>>,
    views: Option<Value<'a>>,
    notes: Option<Value<'a>>,
    subject: Option<Value<'a>>,
    name_choice: Option<Value<'a>>,
    related_choice: Option<Value<'a>>,
    wrapup: Option<Value<'a>>,
    attributes: Option<Value<'a>>,
}

fn document<'a>(tree: &Tree<'a>, root: &Value<'a>) -> Out<Document<'a>> {
    let mut found = Document::default();
    let mut kind = false;
    for (key, value) in tree.members(root)? {
        match key {
            b"k" => kind = text(value)? == b"log",
            b"i" => found.interaction_id = Some(text(value)?),
            b"v" => found.version = Some(int(value)?),
            b"g" => found.trigger = Some(text(value)?),
            b"l" => {
                int(value)?;
            }
            b"a" => {
                for event_id in tree.items(value)? {
                    text(event_id)?;
                }
            }
            b"f" => {
                if int(value)? != 1 {
                    return None; // `to_bytes` writes 1 or nothing
                }
                found.finalized = true;
            }
            b"e" => found.edit_deadline_us = Some(int(value)?),
            b"t" => found.transitions = Some(*value),
            b"c" => found.connect = Some(*value),
            b"w" => found.views = Some(*value),
            b"n" => found.notes = Some(*value),
            b"s" => found.subject = Some(*value),
            b"nm" => found.name_choice = Some(*value),
            b"rt" => found.related_choice = Some(*value),
            b"u" => found.wrapup = Some(*value),
            b"at" => found.attributes = Some(*value),
            _ => return None,
        }
    }
    (kind && found.interaction_id.is_some() && found.version.is_some() && found.trigger.is_some()).then_some(found)
}

/// The items of an array fact, none when it is unset.
fn facts<'t, 'a>(tree: &'t Tree<'a>, fact: Option<Value<'a>>) -> Out<&'t [Value<'a>]> {
    match fact {
        None => Some(&[]),
        Some(fact) => tree.items(&fact),
    }
}

/// `[stamp, text or null]`: the text, None when the fact is unset or its value null.
fn stamped_text<'a>(tree: &Tree<'a>, fact: Option<Value<'a>>) -> Out<Option<&'a [u8]>> {
    let Some(fact) = fact else { return Some(None) };
    let pair = tree.fixed(&fact, 2)?;
    stamp_time(tree, &pair[0])?;
    opt_text(&pair[1])
}

/// `[stamp, ref or null]`: Some(the choice) when the agent chose (even null), None when not.
fn stamped_ref<'a>(tree: &Tree<'a>, fact: Option<Value<'a>>) -> Out<Option<Option<Ref<'a>>>> {
    let Some(fact) = fact else { return Some(None) };
    let pair = tree.fixed(&fact, 2)?;
    stamp_time(tree, &pair[0])?;
    Some(Some(match &pair[1] {
        Value::Null => None,
        reference => Some(Ref::of_array(tree, reference)?),
    }))
}

fn walk(tree: &Tree<'_>, transitions: &[Value<'_>]) -> Out<Timeline> {
    let mut steps = Vec::with_capacity(transitions.len());
    for transition in transitions {
        let fields = tree.fixed(transition, 4)?;
        let kind = match text(&fields[3])? {
            b"C" => Kind::Connected,
            b"H" => Kind::Held,
            b"R" => Kind::Resumed,
            b"D" => Kind::Disconnected,
            other => {
                unescape(other)?; // any other text changes nothing, as in the Python
                Kind::Other
            }
        };
        steps.push(Step { time_us: int(&fields[0])?, sequence: int(&fields[1])?, arrival: int(&fields[2])?, kind });
    }
    Some(walk_steps(steps))
}

/// `_distinct(refs)`: each (system, type, id) once, where it first appears.
fn write_distinct(out: &mut Vec<u8>, refs: &[Ref<'_>]) {
    let mut seen: Vec<Ref<'_>> = Vec::with_capacity(refs.len());
    out.push(b'[');
    for reference in refs {
        if seen.contains(reference) {
            continue;
        }
        if !seen.is_empty() {
            out.push(b',');
        }
        seen.push(*reference);
        reference.write(out);
    }
    out.push(b']');
}

/// `{key: value for key, _stamp, value in log.attributes}`: a key keeps its first place and its last value.
fn write_attributes(out: &mut Vec<u8>, tree: &Tree<'_>, attributes: &[Value<'_>]) -> Out {
    let mut keys: Vec<&[u8]> = Vec::with_capacity(attributes.len());
    let mut values: Vec<&[u8]> = Vec::with_capacity(attributes.len());
    for attribute in attributes {
        let fields = tree.fixed(attribute, 3)?;
        let (key, value) = (text(&fields[0])?, text(&fields[2])?);
        stamp_time(tree, &fields[1])?;
        match keys.iter().position(|seen| *seen == key) {
            Some(slot) => values[slot] = value,
            None => {
                keys.push(key);
                values.push(value);
            }
        }
    }
    out.push(b'{');
    for (slot, key) in keys.iter().enumerate() {
        if slot > 0 {
            out.push(b',');
        }
        write_raw(out, key);
        out.push(b':');
        write_raw(out, values[slot]);
    }
    out.push(b'}');
    Some(())
}

fn write_json(known: &Known, raw: &[u8], trigger: Option<&[u8]>) -> Out<Vec<u8>> {
    let (root, tree) = Parser::parse(raw)?;
    let tree = &tree;
    let log = document(tree, &root)?;
    let version = log.version?;
    if version < 1 {
        return None; // the model refuses it: the Python raises its error
    }
    let interaction_id = log.interaction_id?;
    let walked = walk(tree, facts(tree, log.transitions)?)?;
    let connect = match log.connect {
        None => None,
        Some(fact) => {
            let pair = tree.fixed(&fact, 2)?;
            for part in tree.fixed(&pair[0], 3)? {
                int(part)?;
            }
            Some(Connect::of(known, tree, &pair[1])?)
        }
    };
    let notes = stamped_text(tree, log.notes)?;

    let mut out = Vec::with_capacity(raw.len() + 640);
    out.extend_from_slice(b"{\"interaction_id\":");
    write_raw(&mut out, interaction_id);
    out.extend_from_slice(b",\"version\":");
    write_int(&mut out, version);
    out.extend_from_slice(b",\"trigger\":");
    write_raw(&mut out, trigger.or(log.trigger)?);
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
            write_raw(&mut out, connect.media);
            out.extend_from_slice(b",\"direction\":");
            write_raw(&mut out, connect.direction);
            out.extend_from_slice(b",\"queue\":");
            write_opt_raw(&mut out, connect.queue);
            out.extend_from_slice(b",\"agent_id\":");
            write_opt_raw(&mut out, connect.agent_id);
            out.extend_from_slice(b",\"customer\":");
            connect.write_customer(known, tree, &mut out);
        }
    }

    // subject, notes
    out.extend_from_slice(b",\"subject\":");
    match (stamped_text(tree, log.subject)?, &connect) {
        (Some(subject), _) => write_raw(&mut out, subject),
        (None, None) => write_bounded(&mut out, &["Interaction ", &unescape(interaction_id)?].concat()),
        (None, Some(connect)) => {
            let (direction, preposition) = match (connect.inbound, connect.with) {
                (true, _) => ("Inbound", "from"),
                (false, true) => ("Outbound", "with"),
                (false, false) => ("Outbound", "to"),
            };
            let who = connect.who(tree)?;
            let who = who.as_deref().unwrap_or("unknown customer");
            write_bounded(&mut out, &[direction, " ", connect.noun, " ", preposition, " ", who].concat());
        }
    }
    out.extend_from_slice(b",\"notes\":");
    write_opt_raw(&mut out, notes);

    // name, related_to, name_candidates, related_candidates: records viewed while the call was active
    let mut names = Vec::new();
    let mut related = Vec::new();
    for view in facts(tree, log.views)? {
        let pair = tree.fixed(view, 2)?;
        let time_us = stamp_time(tree, &pair[0])?;
        let reference = Ref::of_array(tree, &pair[1])?;
        let active = walked.connected_us.is_none_or(|start| time_us >= start)
            && walked.disconnected_us.is_none_or(|end| time_us < end);
        if active {
            if reference.is_name(known)? { &mut names } else { &mut related }.push(reference);
        }
    }
    out.extend_from_slice(b",\"name\":");
    let initial = connect.as_ref().and_then(|connect| connect.name);
    let chosen = stamped_ref(tree, log.name_choice)?;
    write_opt_ref(&mut out, chosen.unwrap_or_else(|| names.last().copied().or(initial)));
    out.extend_from_slice(b",\"related_to\":");
    let initial = connect.as_ref().and_then(|connect| connect.related_to);
    let chosen = stamped_ref(tree, log.related_choice)?;
    write_opt_ref(&mut out, chosen.unwrap_or_else(|| related.last().copied().or(initial)));
    out.extend_from_slice(b",\"name_candidates\":");
    write_distinct(&mut out, &names);
    out.extend_from_slice(b",\"related_candidates\":");
    write_distinct(&mut out, &related);

    // the times
    out.extend_from_slice(b",\"connected_at\":");
    write_opt_time(&mut out, walked.connected_us)?;
    out.extend_from_slice(b",\"disconnected_at\":");
    write_opt_time(&mut out, walked.disconnected_us)?;
    out.extend_from_slice(b",\"edit_deadline\":");
    write_opt_time(&mut out, log.edit_deadline_us)?;
    out.extend_from_slice(if log.finalized { b",\"finalized\":true".as_slice() } else { b",\"finalized\":false" });
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
    let (code, event_note) = match log.wrapup {
        None => (None, None),
        Some(fact) => {
            let fields = tree.fixed(&fact, 3)?;
            stamp_time(tree, &fields[0])?;
            (Some(text(&fields[1])?), opt_text(&fields[2])?)
        }
    };
    out.extend_from_slice(b",\"wrapup_code\":");
    write_opt_raw(&mut out, code);
    out.extend_from_slice(b",\"wrapup_note\":");
    let queued = connect.as_ref().is_some_and(|connect| connect.queue.is_some());
    write_opt_raw(&mut out, if queued && notes.is_some() { notes } else { event_note });
    out.extend_from_slice(b",\"attributes\":");
    write_attributes(&mut out, tree, facts(tree, log.attributes)?)?;
    out.extend_from_slice(b",\"ignored_reconnects\":");
    write_int(&mut out, walked.ignored_reconnects);
    out.push(b'}');
    Some(out)
}

/// `snapshot_json(log, trigger)` of the log whose `to_bytes()` `document` is (`trigger` None: the log's), or
/// None: the caller writes it from the log.
#[pyfunction]
#[pyo3(signature = (document, trigger=None))]
fn snapshot_from_state<'py>(
    py: Python<'py>,
    document: &[u8],
    trigger: Option<&Bound<'py, PyString>>,
) -> Option<Bound<'py, PyAny>> {
    let known = known(py)?;
    let trigger = match trigger {
        None => None,
        Some(trigger) => Some(trigger.to_str().ok()?.as_bytes()),
    };
    let out = crate::guarded(|| written(known, document, trigger))?;
    Some(to_bytes(py, &out))
}

/// `write_json`, with a trigger written as it stands: one that would need escaping goes to the Python.
fn written(known: &Known, document: &[u8], trigger: Option<&[u8]>) -> Out<Vec<u8>> {
    if trigger.is_some_and(|trigger| trigger.iter().any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\')) {
        return None;
    }
    write_json(known, document, trigger)
}

type Snapshots = Vec<Option<Vec<u8>>>;

/// The snapshots of a batch's documents, written on a thread of their own while the caller goes on (the
/// fold stage plans and lands other batches meanwhile); `wait` hands them over. The documents are copied
/// when the job starts: nothing of Python's is read on the thread.
#[pyclass(frozen, module = "ilog_native")]
struct SnapshotJob {
    count: usize,
    thread: Mutex<Option<JoinHandle<Snapshots>>>,
}

#[pymethods]
impl SnapshotJob {
    /// The snapshots in the order of the documents: the bytes, or None where the caller writes it from the log.
    /// Waits for the thread without holding the GIL; a job is waited for once.
    fn wait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let thread = self.thread.lock().ok().and_then(|mut slot| slot.take());
        let Some(thread) = thread else {
            return Err(PyRuntimeError::new_err("this snapshot job was waited for already"));
        };
        // a panic on the thread (a bug, never expected: each snapshot is guarded) leaves every one to the log
        let snapshots = py.allow_threads(|| thread.join()).unwrap_or_else(|_| vec![None; self.count]);
        let items = snapshots.iter().map(|snapshot| snapshot.as_deref().map(|out| to_bytes(py, out)));
        PyList::new(py, items)
    }
}

/// `snapshot_from_state(document, trigger)` of each `(document, trigger)` of `items` (a list of tuples), on a
/// thread: the job to `wait` for.
#[pyfunction]
fn snapshots_from_states(py: Python<'_>, items: &Bound<'_, PyList>) -> PyResult<SnapshotJob> {
    let mut work: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(items.len());
    for item in items.iter() {
        let (document, trigger): (Bound<'_, PyBytes>, Bound<'_, PyString>) = item.extract()?;
        work.push((document.as_bytes().to_vec(), trigger.to_str()?.as_bytes().to_vec()));
    }
    let known = known(py);
    let count = work.len();
    let thread = std::thread::Builder::new()
        .name("ilog-snapshots".into())
        .spawn(move || match known {
            None => vec![None; count],
            Some(known) => work
                .iter()
                .map(|(document, trigger)| crate::guarded(|| written(known, document, Some(trigger))))
                .collect(),
        })
        .map_err(|error| PyRuntimeError::new_err(format!("cannot start the snapshot thread: {error}")))?;
    Ok(SnapshotJob { count, thread: Mutex::new(Some(thread)) })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(snapshot_from_state, m)?)?;
    m.add_function(wrap_pyfunction!(snapshots_from_states, m)?)?;
    m.add_class::<SnapshotJob>()?;
    Ok(())
}
