//! A log's stored document (`InteractionLog.to_bytes()`), read in one pass that checks it is exactly of the
//! shape `to_bytes` writes and that `from_bytes` reads back unchanged: the keys in their order, compact JSON,
//! integers within 64 bits, the escapes `json::write_str` writes, record refs the models accept, connect data
//! within today's bounds. The values are kept as the spans of the document they stand in, to be copied as the
//! bytes they are.
//!
//! `None` (the caller runs the Python) for a document of any other shape, stored connect data that
//! `ConnectedData.model_validate` would refuse (and `from_bytes` then cut), and a ref in the connect data whose
//! system or type is not ASCII (`is_name_type` lowercases it with `str.lower()`).

use std::borrow::Cow;

use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;

use crate::from_state::{ascii, canonical_escape, unescape};
use crate::json::Out;
use crate::snapshot::{escape_mask, is_name_type, Known};

/// A stamp or connect key as stored: `[sequence, time_us, arrival]` (a connect key: `[time_us, sequence,
/// arrival]`), compared as the tuple it is.
pub(crate) type Key = (i64, i64, i64);
/// A value's bytes in the document: `document[start..end]`.
pub(crate) type Span = (usize, usize);

/// `Trigger`'s values: `from_bytes` reads no other.
const TRIGGERS: [&[u8]; 5] = [b"created", b"state_changed", b"opened", b"updated", b"finalized"];
/// `RecordSystem`'s values.
const SYSTEMS: [&[u8]; 3] = [b"salesforce", b"zendesk", b"custom"];
/// `ConnectedData`'s fields in declaration order (`_model_out` writes the set ones in this order).
const CONNECT_FIELDS: [&str; 7] = ["media", "direction", "queue", "agent_id", "customer", "name", "related_to"];
/// `Customer`'s fields in declaration order.
const CUSTOMER_FIELDS: [&str; 2] = ["address", "name"];
/// `MAX_FIELD_CHARS`: the bound of the connect data's texts and of a record's id.
const MAX_FIELD_CHARS: usize = 255;
/// `RecordRef.type`'s bound.
const MAX_TYPE_CHARS: usize = 80;

static LAYOUT: GILOnceCell<bool> = GILOnceCell::new();

/// Whether the models' fields are the ones the reader checks, in the order `to_bytes` writes them (read once).
pub(crate) fn layout_known(py: Python<'_>, known: &Known) -> bool {
    *LAYOUT.get_or_init(py, || known.connect_fields == CONNECT_FIELDS && known.customer_fields == CUSTOMER_FIELDS)
}

/// The characters of an escaped text (a `str`'s `len()`): every escape `canonical_escape` lets through is one.
fn chars(raw: &[u8]) -> usize {
    let mut count = 0;
    let mut at = 0;
    while at < raw.len() {
        let byte = raw[at];
        if byte == b'\\' {
            at += if raw.get(at + 1) == Some(&b'u') { 6 } else { 2 };
            count += 1;
        } else {
            count += usize::from(byte & 0xC0 != 0x80);
            at += 1;
        }
    }
    count
}

/// The text of an escaped string as UTF-8 bytes, for ordering as Python orders `str` (by code point, which is
/// the order of the UTF-8 bytes).
pub(crate) fn text_bytes(raw: &[u8]) -> Out<Cow<'_, [u8]>> {
    if raw.contains(&b'\\') {
        Some(Cow::Owned(unescape(raw)?.into_bytes()))
    } else {
        Some(Cow::Borrowed(raw))
    }
}

/// The document, read from the front; every reader returns None for anything `to_bytes` does not write there.
struct Scan<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Out<u8> {
        self.text.get(self.at).copied()
    }

    /// Whether `literal` comes next; it is passed over when it does.
    fn next_is(&mut self, literal: &[u8]) -> bool {
        let found = self.text.get(self.at..self.at + literal.len()) == Some(literal);
        if found {
            self.at += literal.len();
        }
        found
    }

    fn eat(&mut self, literal: &[u8]) -> Out {
        self.next_is(literal).then_some(())
    }

    /// A string's escaped bytes (between the quotes), escaped as `json::write_str` escapes.
    fn string(&mut self) -> Out<&'a [u8]> {
        self.eat(b"\"")?;
        let start = self.at;
        let mut wide = false;
        loop {
            let (plain, not_ascii) = plain_run(self.text.get(self.at..)?);
            self.at += plain;
            wide |= not_ascii;
            match self.peek()? {
                b'"' => break,
                b'\\' => self.at += canonical_escape(self.text.get(self.at + 1..)?)?,
                _ => return None, // a control character
            }
        }
        let raw = &self.text[start..self.at];
        self.at += 1;
        // UTF-8 is checked here, string by string: all else `read` takes is ASCII it matched byte by byte
        if wide {
            std::str::from_utf8(raw).ok()?;
        }
        Some(raw)
    }

    fn opt_string(&mut self) -> Out<Option<&'a [u8]>> {
        if self.next_is(b"null") {
            return Some(None);
        }
        self.string().map(Some)
    }

    /// An integer as orjson writes one: `-?(0|[1-9][0-9]*)`, within 64 bits.
    fn int(&mut self) -> Out<i64> {
        let negative = self.next_is(b"-");
        let start = self.at;
        let mut magnitude = 0u64;
        // eight digits at a time while 19 digits (which always fit a u64) are not passed, then one at a time:
        // a 20th is past 64 bits
        while self.at - start <= 11 {
            let word = self.text.get(self.at..self.at + 8).and_then(|word| word.try_into().ok());
            let Some(eight) = word.and_then(|word| eight_digits(u64::from_le_bytes(word))) else {
                break;
            };
            magnitude = magnitude * 100_000_000 + eight;
            self.at += 8;
        }
        while let Some(digit) = self.text.get(self.at).map(|byte| byte.wrapping_sub(b'0')).filter(|&digit| digit < 10) {
            if self.at - start == 19 {
                return None;
            }
            magnitude = magnitude * 10 + u64::from(digit);
            self.at += 1;
        }
        let digits = self.at - start;
        if digits == 0 || (digits > 1 && self.text[start] == b'0') {
            return None;
        }
        if negative {
            (magnitude != 0).then_some(())?; // orjson writes no `-0`
            0i64.checked_sub_unsigned(magnitude)
        } else {
            i64::try_from(magnitude).ok()
        }
    }

    /// `[a,b,c]` of three integers: a stamp or a connect key.
    fn key(&mut self) -> Out<Key> {
        self.eat(b"[")?;
        let first = self.int()?;
        self.eat(b",")?;
        let second = self.int()?;
        self.eat(b",")?;
        let third = self.int()?;
        self.eat(b"]")?;
        Some((first, second, third))
    }

    /// `[item,…]` with at least one item (`to_bytes` leaves an empty fact out).
    fn items(&mut self, mut item: impl FnMut(&mut Self) -> Out) -> Out {
        self.eat(b"[")?;
        loop {
            item(self)?;
            if !self.next_is(b",") {
                break;
            }
        }
        self.eat(b"]")
    }

    /// A record ref as views and choices store it, `[system,type,id]`, of the values `RecordRef` accepts.
    fn record(&mut self) -> Out {
        self.eat(b"[")?;
        let system = self.string()?;
        self.eat(b",")?;
        let kind = self.string()?;
        self.eat(b",")?;
        let id = self.string()?;
        self.eat(b"]")?;
        valid_ref(system, kind, id)
    }

    /// A record ref as the connect data stores it, `{"system":…,"type":…,"id":…}`: (system, type).
    fn record_object(&mut self) -> Out<(&'a [u8], &'a [u8])> {
        self.eat(b"{\"system\":")?;
        let system = self.string()?;
        self.eat(b",\"type\":")?;
        let kind = self.string()?;
        self.eat(b",\"id\":")?;
        let id = self.string()?;
        self.eat(b"}")?;
        valid_ref(system, kind, id)?;
        Some((system, kind))
    }

    /// `ConnectedData`'s `_model_out` as `to_bytes` writes it, of values `ConnectedData.model_validate` takes as
    /// they are (anything it would refuse, and `from_bytes` then cut, goes to the Python).
    fn connect_data(&mut self, known: &Known) -> Out {
        self.eat(b"{")?;
        let mut next = 0;
        loop {
            let key = self.string()?;
            self.eat(b":")?;
            let index = next + CONNECT_FIELDS[next..].iter().position(|field| field.as_bytes() == key)?;
            if next < 2 && index != next {
                return None; // media and direction are required
            }
            next = index + 1;
            match index {
                0 => {
                    let media = self.string()?;
                    known.media_values.iter().find(|(value, _, _)| value.as_bytes() == media)?;
                }
                1 => {
                    let direction = self.string()?;
                    (direction == b"inbound" || direction == b"outbound").then_some(())?;
                }
                2 | 3 => bounded(self.string()?)?,
                4 => self.customer()?,
                _ => {
                    let (system, kind) = self.record_object()?;
                    let name = match (ascii(system), ascii(kind)) {
                        (Some(system), Some(kind)) => is_name_type(known, system, kind)?,
                        _ => is_name_type(known, &unescape(system)?, &unescape(kind)?)?,
                    };
                    (name == (index == 5)).then_some(())?; // a Name ref in name, any other in related_to
                }
            }
            if !self.next_is(b",") {
                break;
            }
        }
        (next >= 2).then_some(())?;
        self.eat(b"}")
    }

    fn customer(&mut self) -> Out {
        self.eat(b"{")?;
        if self.next_is(b"}") {
            return Some(());
        }
        let mut next = 0;
        loop {
            let key = self.string()?;
            self.eat(b":")?;
            next += CUSTOMER_FIELDS.get(next..)?.iter().position(|field| field.as_bytes() == key)? + 1;
            bounded(self.string()?)?;
            if !self.next_is(b",") {
                break;
            }
        }
        self.eat(b"}")
    }
}

/// How many bytes at the front of `rest` a string holds as they are (none is `"`, `\` or a control
/// character), looked at eight at a time; and whether one of them is not ASCII.
fn plain_run(rest: &[u8]) -> (usize, bool) {
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut at = 0;
    let mut seen = 0; // the words passed, or-ed: a high bit for a byte that is not ASCII
    while let Some(word) = rest.get(at..at + 8) {
        let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
        let found = escape_mask(word);
        if found != 0 {
            let plain = found.trailing_zeros() as usize / 8;
            let before = (1u64 << (plain * 8)).wrapping_sub(1); // the plain bytes of this word
            return (at + plain, (seen | word & before) & HIGHS != 0);
        }
        seen |= word;
        at += 8;
    }
    let plain = rest[at..].iter().take_while(|&&byte| byte >= 0x20 && byte != b'"' && byte != b'\\').count();
    (at + plain, seen & HIGHS != 0 || !rest[at..at + plain].is_ascii())
}

/// Eight ASCII digits (`word` little-endian: the first digit in its lowest byte) as the number they write,
/// computed a pair, then four, then eight at a time; None when a byte is not a digit.
fn eight_digits(word: u64) -> Option<u64> {
    const NIBBLES: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    // a digit is 0x30..=0x39: its high nibble is 3, and still is with 6 added
    if word & NIBBLES != ZEROS || word.wrapping_add(0x0606_0606_0606_0606) & NIBBLES != ZEROS {
        return None;
    }
    let digits = word - ZEROS;
    let pairs = digits.wrapping_mul(10).wrapping_add(digits >> 8); // every other byte: two digits' value
    const BYTES: u64 = 0x0000_00FF_0000_00FF;
    let eight = (pairs & BYTES)
        .wrapping_mul(100 + (1_000_000 << 32))
        .wrapping_add((pairs >> 16 & BYTES).wrapping_mul(1 + (10_000 << 32)))
        >> 32;
    Some(eight & 0xFFFF_FFFF)
}

/// Whether an escaped text has `min..=max` characters. Each character takes one byte or more, so a text
/// of `min..=max` bytes has, without counting them.
fn chars_within(raw: &[u8], min: usize, max: usize) -> bool {
    (min..=max).contains(&raw.len()) || (min..=max).contains(&chars(raw))
}

fn bounded(raw: &[u8]) -> Out {
    chars_within(raw, 0, MAX_FIELD_CHARS).then_some(())
}

/// What `RecordRef(system=…, type=…, id=…)` accepts: a known system, a type of 1 to 80 characters, an id of 1
/// to 255.
fn valid_ref(system: &[u8], kind: &[u8], id: &[u8]) -> Out {
    (SYSTEMS.contains(&system) && chars_within(kind, 1, MAX_TYPE_CHARS) && chars_within(id, 1, MAX_FIELD_CHARS))
        .then_some(())
}

/// One stored transition: `[time_us, sequence, arrival, kind]`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Transition {
    pub(crate) time_us: i64,
    pub(crate) sequence: i64,
    pub(crate) arrival: i64,
    pub(crate) kind: u8,
}

/// One stored attribute `[key, stamp, value]`: its escaped key, its stamp and the whole entry.
pub(crate) struct Attribute<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) stamp: Key,
    pub(crate) span: Span,
}

/// A stamped fact (`c`, `n`, `s`, `nm`, `rt`, `u`): its stamp (the connect key for `c`) and its whole value.
pub(crate) type Stamped = Option<(Key, Span)>;

/// The stored document, read.
pub(crate) struct Document<'a> {
    pub(crate) text: &'a [u8],
    pub(crate) interaction_id: &'a [u8],
    pub(crate) version: i64,
    pub(crate) last_event_us: i64,
    /// The applied ids as they stand, between the array's brackets: `"id","id",…`.
    pub(crate) applied_ids: Span,
    pub(crate) applied_count: usize,
    /// Whether the applied ids hold the id `read` was asked about (escaped alike, so compared as stored).
    pub(crate) holds_id: bool,
    /// Where the applied ids' array ends (`]` included).
    pub(crate) ids_end: usize,
    pub(crate) finalized: bool,
    pub(crate) edit_deadline_us: Option<i64>,
    pub(crate) transitions: Vec<Transition>,
    pub(crate) transitions_span: Option<Span>,
    pub(crate) connect: Stamped,
    /// Each view `[stamp, ref]`: its stamp and its bytes.
    pub(crate) views: Vec<(Key, Span)>,
    pub(crate) notes: Stamped,
    pub(crate) subject: Stamped,
    pub(crate) name_choice: Stamped,
    pub(crate) related_choice: Stamped,
    pub(crate) wrapup: Stamped,
    pub(crate) attributes: Vec<Attribute<'a>>,
}

impl<'a> Document<'a> {
    /// `InteractionLog.from_bytes(text)` would give a log whose `to_bytes()` is `text`: the document, read,
    /// with whether its applied ids hold `id` (escaped as `json::write_str` escapes, without the quotes),
    /// looked for while they are read rather than kept one by one.
    pub(crate) fn read(known: &Known, text: &'a [u8], id: Option<&[u8]>) -> Out<Document<'a>> {
        let mut scan = Scan { text, at: 0 };
        scan.eat(b"{\"k\":\"log\",\"i\":")?;
        let interaction_id = scan.string()?;
        scan.eat(b",\"v\":")?;
        let version = scan.int()?;
        scan.eat(b",\"g\":")?;
        let trigger = scan.string()?;
        TRIGGERS.contains(&trigger).then_some(())?;
        scan.eat(b",\"l\":")?;
        let last_event_us = scan.int()?;
        scan.eat(b",\"a\":[")?;
        let ids_start = scan.at;
        let mut applied_count = 0;
        let mut holds_id = false;
        if !scan.next_is(b"]") {
            loop {
                let raw = scan.string()?;
                applied_count += 1;
                holds_id |= id == Some(raw);
                if !scan.next_is(b",") {
                    break;
                }
            }
            scan.eat(b"]")?;
        }
        let mut document = Document {
            text,
            interaction_id,
            version,
            last_event_us,
            applied_ids: (ids_start, scan.at - 1),
            applied_count,
            holds_id,
            ids_end: scan.at,
            finalized: false,
            edit_deadline_us: None,
            // room for a usual log's lists: grown one push at a time, they would be moved again and again
            transitions: Vec::with_capacity(8),
            transitions_span: None,
            connect: None,
            views: Vec::with_capacity(8),
            notes: None,
            subject: None,
            name_choice: None,
            related_choice: None,
            wrapup: None,
            attributes: Vec::with_capacity(8),
        };
        if scan.next_is(b",\"f\":") {
            (scan.int()? == 1).then_some(())?;
            document.finalized = true;
        }
        if scan.next_is(b",\"e\":") {
            document.edit_deadline_us = Some(scan.int()?);
        }
        if scan.next_is(b",\"t\":") {
            let start = scan.at;
            let transitions = &mut document.transitions;
            scan.items(|scan| {
                scan.eat(b"[")?;
                let time_us = scan.int()?;
                scan.eat(b",")?;
                let sequence = scan.int()?;
                scan.eat(b",")?;
                let arrival = scan.int()?;
                scan.eat(b",")?;
                let kind = [b'C', b'H', b'R', b'D'].into_iter().find(|&kind| scan.next_is(&[b'"', kind, b'"']))?;
                scan.eat(b"]")?;
                transitions.push(Transition { time_us, sequence, arrival, kind });
                Some(())
            })?;
            document.transitions_span = Some((start, scan.at));
        }
        if scan.next_is(b",\"c\":") {
            let start = scan.at;
            scan.eat(b"[")?;
            let key = scan.key()?;
            scan.eat(b",")?;
            scan.connect_data(known)?;
            scan.eat(b"]")?;
            document.connect = Some((key, (start, scan.at)));
        }
        if scan.next_is(b",\"w\":") {
            let views = &mut document.views;
            scan.items(|scan| {
                let start = scan.at;
                scan.eat(b"[")?;
                let stamp = scan.key()?;
                scan.eat(b",")?;
                scan.record()?;
                scan.eat(b"]")?;
                views.push((stamp, (start, scan.at)));
                Some(())
            })?;
        }
        for (name, slot) in [(b",\"n\":".as_slice(), &mut document.notes), (b",\"s\":", &mut document.subject)] {
            if scan.next_is(name) {
                let start = scan.at;
                scan.eat(b"[")?;
                let stamp = scan.key()?;
                scan.eat(b",")?;
                scan.opt_string()?;
                scan.eat(b"]")?;
                *slot = Some((stamp, (start, scan.at)));
            }
        }
        for (name, slot) in
            [(b",\"nm\":".as_slice(), &mut document.name_choice), (b",\"rt\":", &mut document.related_choice)]
        {
            if scan.next_is(name) {
                let start = scan.at;
                scan.eat(b"[")?;
                let stamp = scan.key()?;
                scan.eat(b",")?;
                if !scan.next_is(b"null") {
                    scan.record()?;
                }
                scan.eat(b"]")?;
                *slot = Some((stamp, (start, scan.at)));
            }
        }
        if scan.next_is(b",\"u\":") {
            let start = scan.at;
            scan.eat(b"[")?;
            let stamp = scan.key()?;
            scan.eat(b",")?;
            scan.string()?;
            scan.eat(b",")?;
            scan.opt_string()?;
            scan.eat(b"]")?;
            document.wrapup = Some((stamp, (start, scan.at)));
        }
        if scan.next_is(b",\"at\":") {
            let attributes = &mut document.attributes;
            scan.items(|scan| {
                let start = scan.at;
                scan.eat(b"[")?;
                let key = scan.string()?;
                scan.eat(b",")?;
                let stamp = scan.key()?;
                scan.eat(b",")?;
                scan.string()?;
                scan.eat(b"]")?;
                attributes.push(Attribute { key, stamp, span: (start, scan.at) });
                Some(())
            })?;
        }
        scan.eat(b"}")?;
        (scan.at == text.len()).then_some(document)
    }

    pub(crate) fn bytes(&self, span: Span) -> &'a [u8] {
        &self.text[span.0..span.1]
    }

    /// The applied ids' escaped texts, walked again over what `read` checked.
    pub(crate) fn applied_ids(&self) -> AppliedIds<'a> {
        AppliedIds { text: self.text, at: self.applied_ids.0, end: self.applied_ids.1 }
    }

    /// The applied ids after the first `skip`, as they stand (`"id","id",…`; empty when none is left).
    pub(crate) fn applied_ids_after(&self, skip: usize) -> &'a [u8] {
        let mut ids = self.applied_ids();
        for _ in 0..skip {
            ids.next();
        }
        &self.text[ids.at.min(ids.end)..ids.end]
    }
}

/// The stored applied ids one by one: from an id's opening quote, a checked document's next unescaped quote
/// closes it (every escape is two bytes and what follows them holds no quote).
pub(crate) struct AppliedIds<'a> {
    text: &'a [u8],
    at: usize,
    end: usize,
}

impl<'a> Iterator for AppliedIds<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.at >= self.end {
            return None;
        }
        let start = self.at + 1;
        let mut close = start;
        loop {
            close += plain_run(&self.text[close..self.end]).0;
            if self.text.get(close) != Some(&b'\\') {
                break;
            }
            close += 2;
        }
        self.at = close + 2; // past the quote and the comma
        Some(&self.text[start..close])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &[u8]) -> Scan<'_> {
        Scan { text, at: 0 }
    }

    #[test]
    fn characters_count_as_python_counts_them() {
        assert_eq!(chars(b"abc"), 3);
        assert_eq!(chars("é😀中".as_bytes()), 3);
        assert_eq!(chars(br#"a\"b\\c\n\u001f"#), 7);
        assert_eq!(chars(b""), 0);
    }

    #[test]
    fn integers_are_read_only_as_orjson_writes_them() {
        for (text, value) in [(&b"0"[..], 0), (b"-12", -12), (b"9223372036854775807", i64::MAX)] {
            assert_eq!(scan(text).int(), Some(value));
        }
        assert_eq!(scan(b"-9223372036854775808").int(), Some(i64::MIN));
        for text in [&b"01"[..], b"-0", b"9223372036854775808", b"12345678901234567890", b"-", b""] {
            assert_eq!(scan(text).int(), None, "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn eight_digits_read_as_their_number() {
        for text in [b"00000000", b"12345678", b"99999999", b"17957671", b"90000001"] {
            let value = std::str::from_utf8(text).unwrap().parse::<u64>().unwrap();
            assert_eq!(eight_digits(u64::from_le_bytes(*text)), Some(value));
        }
        for text in [b"1234567/", b"1234567:", b"a2345678", b"1234 678", b"\xb12345678"] {
            assert_eq!(eight_digits(u64::from_le_bytes(*text)), None);
        }
        assert_eq!(scan(b"1795767151714000,").int(), Some(1_795_767_151_714_000));
        assert_eq!(scan(b"1234567890123456789]").int(), Some(1_234_567_890_123_456_789));
        assert_eq!(scan(b"12345678901234567890]").int(), None);
    }

    #[test]
    fn strings_take_only_the_escapes_orjson_writes() {
        assert_eq!(scan(br#""a\"b\u001f""#).string(), Some(&br#"a\"b\u001f"#[..]));
        for text in [&br#""\/""#[..], br#""\u0041""#, br#""\u001F""#, br#""\u000a""#, b"\"a\x01\"", b"\"open"] {
            assert_eq!(scan(text).string(), None, "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn escaped_keys_order_as_their_text() {
        let quote = text_bytes(br#"a\"b"#).unwrap();
        let backslash = text_bytes(br"a\\b").unwrap();
        let control = text_bytes(br"a\u0001").unwrap();
        assert!(control < quote && quote < backslash);
        assert!(text_bytes(b"a").unwrap().as_ref() < text_bytes("é".as_bytes()).unwrap().as_ref());
    }
}
