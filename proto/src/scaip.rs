//! SCAIP (SS 91100:2014) message bodies: the device's `<mrq>` and the ARC's `<mrs>`
//! (protocols.md §3.3–3.5), carried in SIP MESSAGE (see [`super::sip`]).
//!
//! Validation follows the normative tables (SS Tables 1 and 2), not the informative XSD
//! (protocols.md §3.10): an XML declaration and a namespace (default or prefixed) are
//! optional, children come in any order, unknown elements (also nested ones) are ignored,
//! entities and CDATA are decoded, whitespace around values is trimmed, codes are parsed as
//! integers (`0003` == `3`), an empty element counts as omitted. A repeated `crd` is kept;
//! any other tag repeated with the same value is accepted, with a different value it is
//! [`MrqError::WrongData`]. Never panics; bounded by [`MAX_BODY_BYTES`] and an element depth
//! of 16. `proto/scaip.md` documents the tables as vakt implements them.

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;
use quick_xml::reader::Reader;

/// Largest body parsed; a larger one is `Malformed("too_large")` (the service answers
/// snu 1 for bodies above its configured maximum before parsing).
pub const MAX_BODY_BYTES: usize = 8 * 1024;
/// Content-Type of SCAIP bodies.
pub const CONTENT_TYPE: &str = "application/scaip+xml";
/// XML namespace of the SCAIP schema.
pub const NAMESPACE: &str = "http://www.hi.se/2012/XScaipXML";

/// Status numbers (`snu`, SS Table 2).
pub mod snu {
    /// Message received and accepted.
    pub const OK: u8 = 0;
    /// Message too long.
    pub const TOO_LONG: u8 = 1;
    /// Invalid message format.
    pub const INVALID_FORMAT: u8 = 2;
    /// Wrong data in the message.
    pub const WRONG_DATA: u8 = 3;
    /// Hold: the alarm is received, wait.
    pub const HOLD: u8 = 4;
    /// Message not treated.
    pub const NOT_TREATED: u8 = 5;
    /// Busy.
    pub const BUSY: u8 = 6;
    /// Mandatory data missing.
    pub const MANDATORY_MISSING: u8 = 7;
    /// Reference missing.
    pub const REF_MISSING: u8 = 10;
    /// Undefined error.
    pub const UNDEFINED: u8 = 99;
}

/// Message type (`mty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// `ME` or omitted: an alarm or status message.
    Message,
    /// `RE`: reset.
    Reset,
    /// `IN`: information.
    Info,
    /// `PI`: heartbeat (ping).
    Heartbeat,
}

impl MessageType {
    /// The wire code: `ME`, `RE`, `IN`, `PI`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Message => "ME",
            MessageType::Reset => "RE",
            MessageType::Info => "IN",
            MessageType::Heartbeat => "PI",
        }
    }
}

/// Location fields of an mrq.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// `lco`: location code.
    pub code: Option<u16>,
    /// `lva`: location value.
    pub value: Option<String>,
    /// `lge/geo`.
    pub geo: Option<String>,
    /// `lge/tim`.
    pub tim: Option<String>,
    /// `lge/gga`.
    pub gga: Option<String>,
    /// `lte`: location text.
    pub text: Option<String>,
}

/// A Message Request (`<mrq>`, SS Table 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mrq {
    /// `ref`: `[A-Za-z0-9]{1,16}`.
    pub reference: String,
    /// `ver`.
    pub version: Option<String>,
    /// `sco`: sequence code.
    pub sco: Option<u8>,
    /// `cha`: channel.
    pub cha: Option<u8>,
    /// `mty`.
    pub mty: MessageType,
    /// `hbo`: the device accepts `hbi`.
    pub hbo: bool,
    /// `cid`: caller id, digits.
    pub cid: String,
    /// `dty`: device type.
    pub dty: u16,
    /// `did`: device id.
    pub did: Option<String>,
    /// `dco`: device component.
    pub dco: Option<u16>,
    /// `dte`: device text.
    pub dte: Option<String>,
    /// `crd`: capabilities (repeatable).
    pub crd: Vec<String>,
    /// `stc`: status code; `None` is the alarm state.
    pub stc: Option<u16>,
    /// `stt`: status text.
    pub stt: Option<String>,
    /// `pri`: priority 0..=9.
    pub pri: Option<u8>,
    /// `lco`, `lva`, `lge`, `lte`.
    pub location: Location,
    /// `ico`: info code.
    pub ico: Option<u16>,
    /// `ite`: info text.
    pub ite: Option<String>,
    /// `ame`: additional media.
    pub ame: Option<u16>,
}

/// Why an mrq (or mrs) was refused; [`MrqError::snu`] is the status to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MrqError {
    /// snu 2: not XML, wrong root, too large, too deep.
    #[error("malformed body: {0}")]
    Malformed(&'static str),
    /// snu 10: no `ref`.
    #[error("ref missing")]
    RefMissing,
    /// snu 7: a mandatory tag is missing.
    #[error("mandatory {0} missing")]
    Missing(&'static str),
    /// snu 3: a value breaks the table.
    #[error("wrong data in {0}")]
    WrongData(&'static str),
}

impl MrqError {
    /// The status number to answer with.
    #[must_use]
    pub fn snu(&self) -> u8 {
        match self {
            MrqError::Malformed(_) => snu::INVALID_FORMAT,
            MrqError::RefMissing => snu::REF_MISSING,
            MrqError::Missing(_) => snu::MANDATORY_MISSING,
            MrqError::WrongData(_) => snu::WRONG_DATA,
        }
    }
    /// Stable label for logs and metrics.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            MrqError::Malformed(_) => "malformed",
            MrqError::RefMissing => "ref_missing",
            MrqError::Missing(_) => "mandatory_missing",
            MrqError::WrongData(_) => "wrong_data",
        }
    }
}

/// Deepest element nesting read (root = 1).
const MAX_DEPTH: usize = 16;
/// Most `crd` elements kept; more is `WrongData("crd")`.
pub const MAX_CRD: usize = 16;
/// Bytes [`sniff_ref`] looks at.
const SNIFF_LIMIT: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------
// XML walk shared by mrq and mrs
// ---------------------------------------------------------------------------------------

/// Children of `<mrq>` read as fields (`lge` is a container for `geo`, `tim`, `gga`).
const MRQ_FIELDS: &[&str] = &[
    "ref", "ver", "sco", "cha", "mty", "hbo", "cid", "dty", "did", "dco", "dte", "crd", "stc",
    "stt", "pri", "lco", "lva", "lge", "lte", "ico", "ite", "ame",
];
/// Children of `<lge>`, reported as `lge/geo` etc.
const LGE_FIELDS: &[(&str, &str)] = &[("geo", "lge/geo"), ("tim", "lge/tim"), ("gga", "lge/gga")];
/// Children of `<mrs>`.
const MRS_FIELDS: &[&str] = &["ref", "snu", "ste", "cve", "mre", "cre", "tnu", "hbi"];

/// An open element below the root.
struct Open {
    /// Known field name (`None` for unknown elements and their descendants).
    key: Option<&'static str>,
    /// Index into the values of a field being read.
    slot: Option<usize>,
}

/// Reads a body with root element `root` (local name, any prefix/namespace) and returns
/// the text of every known field element in document order (untrimmed).
fn walk(
    body: &[u8],
    root: &str,
    fields: &'static [&'static str],
) -> Result<Vec<(&'static str, String)>, MrqError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(MrqError::Malformed("too_large"));
    }
    let mut reader = Reader::from_reader(body);
    let mut values: Vec<(&'static str, String)> = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    let (mut root_open, mut root_done) = (false, false);
    loop {
        let event = reader
            .read_event()
            .map_err(|_| MrqError::Malformed("xml"))?;
        // Where text goes: Some(slot) inside a field, None elsewhere inside the root.
        let inside = root_open && !root_done;
        let target = stack.last().and_then(|o| o.slot);
        match event {
            Event::Eof => break,
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let local = e.local_name();
                let local = std::str::from_utf8(local.as_ref()).unwrap_or_default();
                if root_done {
                    return Err(MrqError::Malformed("trailing"));
                }
                if !root_open {
                    if local != root {
                        return Err(MrqError::Malformed("root"));
                    }
                    root_open = true;
                    root_done = empty;
                    continue;
                }
                if stack.len() + 2 > MAX_DEPTH {
                    return Err(MrqError::Malformed("depth"));
                }
                let key = match stack.as_slice() {
                    [] => fields.iter().copied().find(|f| *f == local),
                    [
                        Open {
                            key: Some("lge"), ..
                        },
                    ] if fields == MRQ_FIELDS => LGE_FIELDS
                        .iter()
                        .find(|(n, _)| *n == local)
                        .map(|(_, k)| *k),
                    _ => None,
                };
                let slot = key.filter(|k| *k != "lge").map(|k| {
                    values.push((k, String::new()));
                    values.len() - 1
                });
                if !empty {
                    stack.push(Open { key, slot });
                }
            }
            Event::End(_) => {
                if stack.pop().is_none() {
                    root_done = true;
                }
            }
            Event::Text(ref t) => {
                let text = t.decode().map_err(|_| MrqError::Malformed("not_utf8"))?;
                append(&mut values, target, inside, &text)?;
            }
            Event::CData(ref c) => {
                let text = c.decode().map_err(|_| MrqError::Malformed("not_utf8"))?;
                append(&mut values, target, inside, &text)?;
            }
            Event::GeneralRef(ref r) => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = r.decode().map_err(|_| MrqError::Malformed("not_utf8"))?;
                        resolve_predefined_entity(&name)
                            .ok_or(MrqError::Malformed("entity"))?
                            .to_string()
                    }
                    Err(_) => return Err(MrqError::Malformed("entity")),
                };
                if !inside {
                    return Err(MrqError::Malformed("text"));
                }
                append(&mut values, target, inside, &c)?;
            }
            Event::DocType(_) => return Err(MrqError::Malformed("doctype")),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if !root_open {
        return Err(MrqError::Malformed("empty"));
    }
    if !root_done {
        return Err(MrqError::Malformed("unclosed"));
    }
    Ok(values)
}

/// Adds text to the field at `target`; text outside the root must be whitespace.
fn append(
    values: &mut [(&'static str, String)],
    target: Option<usize>,
    inside: bool,
    text: &str,
) -> Result<(), MrqError> {
    if !inside {
        return if text.trim_matches(XML_WS).is_empty() {
            Ok(())
        } else {
            Err(MrqError::Malformed("text"))
        };
    }
    if let Some((_, v)) = target.and_then(|i| values.get_mut(i)) {
        v.push_str(text);
    }
    Ok(())
}

const XML_WS: [char; 4] = [' ', '\t', '\r', '\n'];

/// Field values after the walk: trimmed, empty ones dropped, repeats checked.
struct Fields {
    values: Vec<(&'static str, String)>,
    /// First tag repeated with a different value.
    conflict: Option<&'static str>,
}

impl Fields {
    fn new(raw: Vec<(&'static str, String)>) -> Fields {
        let mut values: Vec<(&'static str, String)> = Vec::with_capacity(raw.len());
        let mut conflict = None;
        for (k, v) in raw {
            let v = v.trim_matches(XML_WS);
            if v.is_empty() {
                continue;
            }
            if k != "crd" {
                if let Some((_, first)) = values.iter().find(|(n, _)| *n == k) {
                    if first != v && conflict.is_none() {
                        conflict = Some(k);
                    }
                    continue;
                }
            }
            values.push((k, v.to_string()));
        }
        Fields { values, conflict }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

// ---------------------------------------------------------------------------------------
// Value checks (SS Table 1 / Table 2)
// ---------------------------------------------------------------------------------------

fn valid_ref(s: &str) -> bool {
    (1..=16).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A code: 1..=`max_len` decimal digits, read as an integer.
fn code(f: &Fields, key: &'static str, max_len: usize) -> Result<Option<u16>, MrqError> {
    let Some(v) = f.get(key) else { return Ok(None) };
    if v.len() > max_len || v.len() > 4 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MrqError::WrongData(key));
    }
    v.parse().map(Some).map_err(|_| MrqError::WrongData(key))
}

/// A small number: 1..=`max_len` digits, value at most `max`.
fn small(f: &Fields, key: &'static str, max_len: usize, max: u8) -> Result<Option<u8>, MrqError> {
    match code(f, key, max_len.min(3))? {
        None => Ok(None),
        Some(n) => u8::try_from(n)
            .ok()
            .filter(|n| *n <= max)
            .map(Some)
            .ok_or(MrqError::WrongData(key)),
    }
}

/// UTF-8 text of at most `max` characters.
fn text(f: &Fields, key: &'static str, max: usize) -> Result<Option<String>, MrqError> {
    let Some(v) = f.get(key) else { return Ok(None) };
    if v.chars().count() > max {
        return Err(MrqError::WrongData(key));
    }
    Ok(Some(v.to_string()))
}

/// ASCII 32–126 text of at most `max` characters.
fn ascii(f: &Fields, key: &'static str, max: usize) -> Result<Option<String>, MrqError> {
    let Some(v) = f.get(key) else { return Ok(None) };
    if v.len() > max || !v.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(MrqError::WrongData(key));
    }
    Ok(Some(v.to_string()))
}

/// A version `NN.NN` (1 or 2 digits on each side of the dot).
fn version(f: &Fields, key: &'static str) -> Result<Option<String>, MrqError> {
    let Some(v) = f.get(key) else { return Ok(None) };
    let ok = v.split_once('.').is_some_and(|(a, b)| {
        [a, b]
            .iter()
            .all(|p| (1..=2).contains(&p.len()) && p.bytes().all(|d| d.is_ascii_digit()))
    });
    if ok {
        Ok(Some(v.to_string()))
    } else {
        Err(MrqError::WrongData(key))
    }
}

// ---------------------------------------------------------------------------------------
// mrq
// ---------------------------------------------------------------------------------------

/// Parses an mrq body.
///
/// Errors, in this order: [`MrqError::Malformed`] (not XML, root not `mrq`, over
/// [`MAX_BODY_BYTES`], deeper than 16, DOCTYPE, unknown entity, not UTF-8); then
/// [`MrqError::RefMissing`] (no or empty `ref`); [`MrqError::WrongData`]`("ref")`;
/// [`MrqError::Missing`] (`cid`, then `dty`); then [`MrqError::WrongData`] for a repeated
/// tag with a different value or a value outside SS Table 1.
pub fn parse_mrq(body: &[u8]) -> Result<Mrq, MrqError> {
    let f = Fields::new(walk(body, "mrq", MRQ_FIELDS)?);
    let reference = f.get("ref").ok_or(MrqError::RefMissing)?;
    if !valid_ref(reference) || f.conflict == Some("ref") {
        return Err(MrqError::WrongData("ref"));
    }
    let cid = f.get("cid").ok_or(MrqError::Missing("cid"))?;
    if f.get("dty").is_none() {
        return Err(MrqError::Missing("dty"));
    }
    if let Some(k) = f.conflict {
        return Err(MrqError::WrongData(k));
    }
    if cid.len() > 32 || !cid.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MrqError::WrongData("cid"));
    }
    let mty = match f.get("mty") {
        None => MessageType::Message,
        Some(m) if m.eq_ignore_ascii_case("ME") => MessageType::Message,
        Some(m) if m.eq_ignore_ascii_case("RE") => MessageType::Reset,
        Some(m) if m.eq_ignore_ascii_case("IN") => MessageType::Info,
        Some(m) if m.eq_ignore_ascii_case("PI") => MessageType::Heartbeat,
        Some(_) => return Err(MrqError::WrongData("mty")),
    };
    let crd: Vec<String> = f
        .values
        .iter()
        .filter(|(k, _)| *k == "crd")
        .map(|(_, v)| v.clone())
        .collect();
    if crd.len() > MAX_CRD || crd.iter().any(|c| c.chars().count() > 256) {
        return Err(MrqError::WrongData("crd"));
    }
    Ok(Mrq {
        reference: reference.to_string(),
        version: version(&f, "ver")?,
        sco: small(&f, "sco", 1, 3)?,
        cha: small(&f, "cha", 1, 1)?,
        mty,
        hbo: code(&f, "hbo", 3)? == Some(1),
        cid: cid.to_string(),
        dty: code(&f, "dty", 4)?.ok_or(MrqError::Missing("dty"))?,
        did: ascii(&f, "did", 16)?,
        dco: code(&f, "dco", 3)?,
        dte: text(&f, "dte", 32)?,
        crd,
        stc: code(&f, "stc", 4)?,
        stt: text(&f, "stt", 32)?,
        pri: small(&f, "pri", 1, 9)?,
        location: Location {
            code: code(&f, "lco", 3)?,
            value: ascii(&f, "lva", 2)?,
            geo: ascii(&f, "lge/geo", 23)?,
            tim: ascii(&f, "lge/tim", 22)?,
            gga: ascii(&f, "lge/gga", 81)?,
            text: text(&f, "lte", 32)?,
        },
        ico: code(&f, "ico", 3)?,
        ite: text(&f, "ite", 128)?,
        ame: code(&f, "ame", 4)?,
    })
}

/// Best effort: the `ref` of a body that may not parse (for the snu 1/2/3/7 answers).
///
/// Looks at the first 64 KiB for a start tag with local name `ref` (any prefix) and
/// returns its text, trimmed, if it is a valid reference (`[A-Za-z0-9]{1,16}`).
/// Entities and CDATA are not decoded. Never panics.
#[must_use]
pub fn sniff_ref(body: &[u8]) -> Option<String> {
    let hay = body.get(..body.len().min(SNIFF_LIMIT))?;
    let mut i = 0;
    while let Some(p) = hay.get(i..)?.iter().position(|&b| b == b'<') {
        let name_start = i + p + 1;
        i = name_start;
        let rest = hay.get(name_start..)?;
        let name_len = rest
            .iter()
            .position(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>' | b'<'))
            .unwrap_or(rest.len());
        let name = rest.get(..name_len)?;
        let local = name.rsplit(|&b| b == b':').next().unwrap_or_default();
        if local != b"ref" || name.is_empty() {
            continue;
        }
        let after = rest.get(name_len..)?;
        let gt = after.iter().position(|&b| b == b'>' || b == b'<')?;
        if after.get(gt) != Some(&b'>') || (gt > 0 && after.get(gt - 1) == Some(&b'/')) {
            continue;
        }
        let value = after.get(gt + 1..)?;
        let end = value.iter().position(|&b| b == b'<')?;
        let v = std::str::from_utf8(value.get(..end)?)
            .ok()?
            .trim_matches(XML_WS);
        if valid_ref(v) {
            return Some(v.to_string());
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// mrs
// ---------------------------------------------------------------------------------------

/// A Message Response (`<mrs>`, SS Table 2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mrs {
    /// `ref` of the request; `None` only when the request had none (snu 10).
    pub reference: Option<String>,
    /// `snu`: status number, see [`snu`].
    pub snu: u8,
    /// `ste`: status text, ASCII 32–126, at most 128 characters.
    pub ste: Option<String>,
    /// `cve`: common version (`NN.NN`).
    pub cve: Option<String>,
    /// `mre`: media reply (0 none, 1 duplex, 2 simplex microphone, 3 simplex speaker).
    pub mre: Option<u8>,
    /// `cre`: call-handling reply (`01`–`60` callback window, `61`, `62`).
    pub cre: Option<String>,
    /// `tnu`: transferred number (`gsm:…`, `sip:…`).
    pub tnu: Option<String>,
    /// `hbi`: heartbeat interval in minutes, 1..=1440.
    pub hbi: Option<u16>,
}

/// Most characters of `ste`.
const MAX_STE: usize = 128;

/// Appends `s` XML-escaped (`&`, `<`, `>`).
fn push_escaped(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            _ => out.push(b),
        }
    }
}

fn trim(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or_default().trim_matches(XML_WS)
}

fn push_elem(out: &mut Vec<u8>, tag: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    out.push(b'<');
    out.extend_from_slice(tag.as_bytes());
    out.push(b'>');
    push_escaped(out, value);
    out.extend_from_slice(b"</");
    out.extend_from_slice(tag.as_bytes());
    out.push(b'>');
}

/// Encodes an mrs and appends it to `out`, in the spec's plain form:
/// `<mrs><ref>1243</ref><snu>0</snu><mre>1</mre></mrs>` (no XML declaration, no namespace;
/// element order ref, snu, ste, cve, mre, cre, tnu, hbi; absent or empty values omitted).
/// Values are XML-escaped and trimmed; `ste` is cut to ASCII 32–126 (others become `?`)
/// and 128 characters.
pub fn encode_mrs(m: &Mrs, out: &mut Vec<u8>) {
    out.extend_from_slice(b"<mrs>");
    push_elem(out, "ref", trim(&m.reference));
    push_elem(out, "snu", &m.snu.to_string());
    let ste: String = trim(&m.ste)
        .chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .take(MAX_STE)
        .collect();
    push_elem(out, "ste", ste.trim_matches(' '));
    push_elem(out, "cve", trim(&m.cve));
    push_elem(
        out,
        "mre",
        &m.mre.map(|n| n.to_string()).unwrap_or_default(),
    );
    push_elem(out, "cre", trim(&m.cre));
    push_elem(out, "tnu", trim(&m.tnu));
    push_elem(
        out,
        "hbi",
        &m.hbi.map(|n| n.to_string()).unwrap_or_default(),
    );
    out.extend_from_slice(b"</mrs>");
}

/// Parses an mrs body (tests, the load generator and tools). Same XML rules as
/// [`parse_mrq`]; `snu` is mandatory (`Missing("snu")`), `ref` optional but valid when
/// present, `hbi` 1..=1440, `mre` 0..=9, `cre` 1–2 digits, `cve` `NN.NN`.
pub fn parse_mrs(body: &[u8]) -> Result<Mrs, MrqError> {
    let f = Fields::new(walk(body, "mrs", MRS_FIELDS)?);
    let reference = f.get("ref").map(str::to_string);
    if reference.as_deref().is_some_and(|r| !valid_ref(r)) {
        return Err(MrqError::WrongData("ref"));
    }
    if f.get("snu").is_none() {
        return Err(MrqError::Missing("snu"));
    }
    if let Some(k) = f.conflict {
        return Err(MrqError::WrongData(k));
    }
    let cre = ascii(&f, "cre", 2)?;
    if cre
        .as_deref()
        .is_some_and(|c| !c.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(MrqError::WrongData("cre"));
    }
    let hbi = code(&f, "hbi", 4)?;
    if hbi.is_some_and(|h| !(1..=1440).contains(&h)) {
        return Err(MrqError::WrongData("hbi"));
    }
    Ok(Mrs {
        reference,
        snu: small(&f, "snu", 3, u8::MAX)?.ok_or(MrqError::Missing("snu"))?,
        ste: ascii(&f, "ste", MAX_STE)?,
        cve: version(&f, "cve")?,
        mre: small(&f, "mre", 2, 9)?,
        cre,
        tnu: ascii(&f, "tnu", 256)?,
        hbi,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const VECTORS: &str = include_str!("../scaip/vectors.txt");

    pub(crate) use crate::dc09::tests::unescape;

    /// The records of vectors.txt as `(key, value)` lists.
    pub(crate) fn records(text: &str) -> Vec<Vec<(&str, &str)>> {
        let mut out = Vec::new();
        let mut cur: Vec<(&str, &str)> = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            if line.is_empty() {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                continue;
            }
            let (k, v) = line.split_once(':').expect("key: value");
            cur.push((k, v.strip_prefix(' ').unwrap_or(v)));
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }

    fn describe_mrq(m: &Mrq) -> Vec<String> {
        let mut v = vec![format!("ref={}", m.reference)];
        let mut opt = |k: &str, x: Option<String>| {
            if let Some(x) = x {
                v.push(format!("{k}={x}"));
            }
        };
        opt("ver", m.version.clone());
        opt("sco", m.sco.map(|n| n.to_string()));
        opt("cha", m.cha.map(|n| n.to_string()));
        opt("mty", Some(m.mty.as_str().to_string()));
        opt("hbo", m.hbo.then(|| "1".to_string()));
        opt("cid", Some(m.cid.clone()));
        opt("dty", Some(m.dty.to_string()));
        opt("did", m.did.clone());
        opt("dco", m.dco.map(|n| n.to_string()));
        opt("dte", m.dte.clone());
        for c in &m.crd {
            opt("crd", Some(c.clone()));
        }
        opt("stc", m.stc.map(|n| n.to_string()));
        opt("stt", m.stt.clone());
        opt("pri", m.pri.map(|n| n.to_string()));
        let l = &m.location;
        opt("lco", l.code.map(|n| n.to_string()));
        opt("lva", l.value.clone());
        opt("geo", l.geo.clone());
        opt("tim", l.tim.clone());
        opt("gga", l.gga.clone());
        opt("lte", l.text.clone());
        opt("ico", m.ico.map(|n| n.to_string()));
        opt("ite", m.ite.clone());
        opt("ame", m.ame.map(|n| n.to_string()));
        v
    }

    fn describe_mrs(m: &Mrs) -> Vec<String> {
        let mut v = Vec::new();
        let mut opt = |k: &str, x: Option<String>| {
            if let Some(x) = x {
                v.push(format!("{k}={x}"));
            }
        };
        opt("ref", m.reference.clone());
        opt("snu", Some(m.snu.to_string()));
        opt("ste", m.ste.clone());
        opt("cve", m.cve.clone());
        opt("mre", m.mre.map(|n| n.to_string()));
        opt("cre", m.cre.clone());
        opt("tnu", m.tnu.clone());
        opt("hbi", m.hbi.map(|n| n.to_string()));
        v
    }

    fn error_tag(e: &MrqError) -> Option<&'static str> {
        match e {
            MrqError::Malformed(t) | MrqError::Missing(t) | MrqError::WrongData(t) => Some(t),
            MrqError::RefMissing => None,
        }
    }

    #[test]
    fn vectors_file() {
        let (mut mrq_n, mut mrs_n) = (0, 0);
        for rec in records(VECTORS) {
            let get = |k: &str| rec.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
            let name = get("name").expect("name");
            let fields: Vec<String> = rec
                .iter()
                .filter(|(k, _)| *k == "field")
                .map(|(_, v)| v.to_string())
                .collect();
            if let Some(body) = get("mrq") {
                mrq_n += 1;
                let body = unescape(body);
                let parsed = parse_mrq(&body);
                let expect = get("parse").expect("parse");
                match &parsed {
                    Ok(m) => {
                        assert_eq!(expect, "ok", "{name}");
                        assert_eq!(describe_mrq(m), fields, "{name}");
                    }
                    Err(e) => {
                        assert_eq!(e.as_str(), expect, "{name}: {e:?}");
                        let snu: u8 = get("snu").expect("snu").parse().expect("snu");
                        assert_eq!(e.snu(), snu, "{name}");
                        assert_eq!(error_tag(e), get("tag"), "{name}");
                    }
                }
                let sniff = get("sniff").expect("sniff");
                let want = (sniff != "-").then(|| sniff.to_string());
                assert_eq!(sniff_ref(&body), want, "{name} sniff");
            } else if let Some(body) = get("mrs") {
                mrs_n += 1;
                let body = unescape(body);
                let m = parse_mrs(&body).unwrap_or_else(|e| panic!("{name}: {e:?}"));
                assert_eq!(describe_mrs(&m), fields, "{name}");
                let mut out = Vec::new();
                encode_mrs(&m, &mut out);
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&body),
                    "{name}"
                );
            }
        }
        assert!(
            mrq_n >= 30 && mrs_n >= 5,
            "{mrq_n} mrq, {mrs_n} mrs records"
        );
    }

    #[test]
    fn spec_responses_byte_exact() {
        let enc = |m: Mrs| {
            let mut out = Vec::new();
            encode_mrs(&m, &mut out);
            String::from_utf8(out).expect("utf8")
        };
        let r = |s: &str| Some(s.to_string());
        assert_eq!(
            enc(Mrs {
                reference: r("1242"),
                snu: snu::OK,
                ..Mrs::default()
            }),
            "<mrs><ref>1242</ref><snu>0</snu></mrs>"
        );
        assert_eq!(
            enc(Mrs {
                reference: r("1243"),
                snu: snu::HOLD,
                ..Mrs::default()
            }),
            "<mrs><ref>1243</ref><snu>4</snu></mrs>"
        );
        assert_eq!(
            enc(Mrs {
                reference: r("1243"),
                snu: snu::OK,
                mre: Some(1),
                ..Mrs::default()
            }),
            "<mrs><ref>1243</ref><snu>0</snu><mre>1</mre></mrs>"
        );
    }

    #[test]
    fn ste_is_cut_to_printable_ascii_and_128_chars() {
        let mut out = Vec::new();
        let long = format!("kö<{}", "x".repeat(200));
        encode_mrs(
            &Mrs {
                reference: Some("1".into()),
                snu: snu::UNDEFINED,
                ste: Some(long),
                ..Mrs::default()
            },
            &mut out,
        );
        let m = parse_mrs(&out).expect("parse");
        let ste = m.ste.expect("ste");
        assert_eq!(ste.len(), 128);
        assert!(ste.starts_with("k?<xx"));
        assert_eq!(m.snu, 99);
    }

    #[test]
    fn zero_padded_and_bare_codes_are_equal() {
        let a = parse_mrq(b"<mrq><ref>1</ref><cid>678</cid><dty>0003</dty><stc>0016</stc><dco>002</dco><lco>011</lco></mrq>").expect("a");
        let b = parse_mrq(b"<mrq><ref>1</ref><cid>678</cid><dty>3</dty><stc>16</stc><dco>2</dco><lco>11</lco></mrq>").expect("b");
        assert_eq!(a, b);
        assert_eq!(a.dty, 3);
        assert_eq!(a.stc, Some(16));
        assert_eq!(a.location.code, Some(11));
    }

    #[test]
    fn message_types() {
        let mty = |m: &str| {
            let body = format!("<mrq><ref>1</ref><mty>{m}</mty><cid>1</cid><dty>1</dty></mrq>");
            parse_mrq(body.as_bytes()).map(|m| m.mty)
        };
        assert_eq!(mty("ME"), Ok(MessageType::Message));
        assert_eq!(mty("RE"), Ok(MessageType::Reset));
        assert_eq!(mty("IN"), Ok(MessageType::Info));
        assert_eq!(mty("PI"), Ok(MessageType::Heartbeat));
        assert_eq!(mty("pi"), Ok(MessageType::Heartbeat));
        assert_eq!(mty("XX"), Err(MrqError::WrongData("mty")));
        for t in [
            MessageType::Message,
            MessageType::Reset,
            MessageType::Info,
            MessageType::Heartbeat,
        ] {
            assert_eq!(mty(t.as_str()), Ok(t));
        }
    }

    #[test]
    fn error_snu_mapping() {
        let snu_of = |b: &[u8]| parse_mrq(b).map(|_| 0).unwrap_or_else(|e| e.snu());
        assert_eq!(
            snu_of(b"<mrq><cid>1</cid><dty>1</dty></mrq>"),
            snu::REF_MISSING
        );
        assert_eq!(
            snu_of(b"<mrq><ref>1</ref><dty>1</dty></mrq>"),
            snu::MANDATORY_MISSING
        );
        assert_eq!(
            snu_of(b"<mrq><ref>1</ref><cid>1</cid></mrq>"),
            snu::MANDATORY_MISSING
        );
        assert_eq!(snu_of(b"\x00\xff<<<"), snu::INVALID_FORMAT);
        assert_eq!(
            snu_of(b"<mrq><ref>1</ref><cid>12a</cid><dty>1</dty></mrq>"),
            snu::WRONG_DATA
        );
        // ref is checked before the other mandatory tags (protocols.md §3.10).
        assert_eq!(snu_of(b"<mrq></mrq>"), snu::REF_MISSING);
        assert_eq!(snu_of(b"<mrq/>"), snu::REF_MISSING);
    }

    #[test]
    fn repeated_crd_kept_in_order() {
        let m = parse_mrq(
            b"<mrq><ref>1</ref><crd>sip:</crd><cid>1</cid><crd>gsm:+4670</crd><dty>1</dty><crd>no-voice:</crd></mrq>",
        )
        .expect("parse");
        assert_eq!(m.crd, ["sip:", "gsm:+4670", "no-voice:"]);
        let many = format!(
            "<mrq><ref>1</ref><cid>1</cid><dty>1</dty>{}</mrq>",
            "<crd>sip:</crd>".repeat(MAX_CRD + 1)
        );
        assert_eq!(parse_mrq(many.as_bytes()), Err(MrqError::WrongData("crd")));
    }

    #[test]
    fn bounds() {
        let big = format!(
            "<mrq><ref>1</ref><cid>1</cid><dty>1</dty><x>{}</x></mrq>",
            "a".repeat(MAX_BODY_BYTES)
        );
        assert_eq!(
            parse_mrq(big.as_bytes()),
            Err(MrqError::Malformed("too_large"))
        );
        assert_eq!(sniff_ref(big.as_bytes()).as_deref(), Some("1"));
        let deep = format!(
            "<mrq><ref>1</ref><cid>1</cid><dty>1</dty>{}{}</mrq>",
            "<a>".repeat(MAX_DEPTH),
            "</a>".repeat(MAX_DEPTH)
        );
        assert_eq!(
            parse_mrq(deep.as_bytes()),
            Err(MrqError::Malformed("depth"))
        );
        let ok_depth = format!(
            "<mrq><ref>1</ref><cid>1</cid><dty>1</dty>{}{}</mrq>",
            "<a>".repeat(MAX_DEPTH - 2),
            "</a>".repeat(MAX_DEPTH - 2)
        );
        assert!(parse_mrq(ok_depth.as_bytes()).is_ok());
    }

    #[test]
    fn table_lengths() {
        let with = |extra: &str| {
            let b = format!("<mrq><ref>1</ref><cid>1</cid><dty>1</dty>{extra}</mrq>");
            parse_mrq(b.as_bytes())
        };
        assert!(with(&format!("<stt>{}</stt>", "ä".repeat(32))).is_ok());
        assert_eq!(
            with(&format!("<stt>{}</stt>", "ä".repeat(33))),
            Err(MrqError::WrongData("stt"))
        );
        assert_eq!(with("<did>a\u{e4}</did>"), Err(MrqError::WrongData("did")));
        assert_eq!(with("<ver>1.0.0</ver>"), Err(MrqError::WrongData("ver")));
        assert_eq!(with("<sco>4</sco>"), Err(MrqError::WrongData("sco")));
        assert_eq!(with("<cha>2</cha>"), Err(MrqError::WrongData("cha")));
        assert_eq!(with("<hbo>0</hbo>").map(|m| m.hbo), Ok(false));
        assert_eq!(with("<hbo>001</hbo>").map(|m| m.hbo), Ok(true));
        assert_eq!(with("<hbo>0001</hbo>"), Err(MrqError::WrongData("hbo")));
        assert_eq!(
            with("<lge><geo>1,2</geo></lge><geo>ignored</geo>").map(|m| m.location.geo),
            Ok(Some("1,2".into()))
        );
    }

    #[test]
    fn bom_and_utf8() {
        let m = parse_mrq(b"\xEF\xBB\xBF<?xml version=\"1.0\"?><mrq><ref>1</ref><cid>1</cid><dty>1</dty><lte>K\xC3\xB6k</lte></mrq>")
            .expect("parse");
        assert_eq!(m.location.text.as_deref(), Some("Kök"));
    }

    #[test]
    fn parse_mrs_errors() {
        assert_eq!(
            parse_mrs(b"<mrs><ref>1</ref></mrs>"),
            Err(MrqError::Missing("snu"))
        );
        assert_eq!(
            parse_mrs(b"<mrs><ref>1</ref><snu>0</snu><hbi>0</hbi></mrs>"),
            Err(MrqError::WrongData("hbi"))
        );
        assert_eq!(
            parse_mrs(b"<mrq><ref>1</ref><snu>0</snu></mrq>"),
            Err(MrqError::Malformed("root"))
        );
        assert!(parse_mrs(b"<s:mrs xmlns:s=\"http://www.hi.se/2012/XScaipXML\"><s:ref>1</s:ref><s:snu>4</s:snu></s:mrs>").is_ok());
    }

    #[test]
    fn labels() {
        assert_eq!(MrqError::Malformed("x").as_str(), "malformed");
        assert_eq!(MrqError::RefMissing.as_str(), "ref_missing");
        assert_eq!(MrqError::Missing("cid").as_str(), "mandatory_missing");
        assert_eq!(MrqError::WrongData("cid").as_str(), "wrong_data");
        assert_eq!(CONTENT_TYPE, "application/scaip+xml");
        assert_eq!(NAMESPACE, "http://www.hi.se/2012/XScaipXML");
    }
}
