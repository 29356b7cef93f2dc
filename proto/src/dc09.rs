//! SIA DC-09 framing, parsing, decryption and responses (protocols.md §1).
//!
//! ```text
//! <LF> CRC(4 hex) 0LLL(4 hex) "ID" SEQ(4 dec) [R rcvr] [L pref] (#acct | A0) [data] {[xdata]} [_HH:MM:SS,MM-DD-YYYY] <CR>
//! ```
//!
//! The flow on the receive side is [`scan`] (find one LF..CR frame in a byte stream),
//! [`parse`] (check CRC and length, split the header; zero-copy), then
//! [`Frame::content`] or [`Frame::decrypt`] (data, xdata, timestamp), then
//! [`decode_payload`](super::payload::decode_payload). The reply is built with
//! [`encode_ack`], [`encode_ack_encrypted`], [`encode_duh`] or [`encode_nak`].
//! `proto/dc09.md` documents the wire format and every tolerance.

use std::fmt;

use jiff::tz::Offset;
use jiff::{SignedDuration, Timestamp};

use super::crc::crc16_arc;
use super::crypto::{BLOCK, Key, decrypt_zero_iv, encrypt_zero_iv, hex_val};

/// Longest body (from the opening `"` to before CR): the length field has 3 hex digits.
pub const MAX_BODY_BYTES: usize = 4095;
/// Longest frame: LF + CRC(4) + LEN(4) + body + CR.
pub const MAX_FRAME_BYTES: usize = 4105;
/// Most xdata blocks accepted in one frame; more is [`ContentError::TooManyXData`].
pub const MAX_XDATA: usize = 32;

const LF: u8 = b'\n';
const CR: u8 = b'\r';

// ---------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------

/// Result of [`scan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// `buf[start..end]` is one frame, LF..=CR. Consume `..end`.
    Frame {
        /// Index of the LF.
        start: usize,
        /// One past the CR.
        end: usize,
    },
    /// Discard this many bytes (always > 0): garbage before the next LF, NUL padding
    /// between frames, or a partial frame cut short by a new LF.
    Skip(usize),
    /// An LF followed by more than [`MAX_FRAME_BYTES`] bytes without CR: discard this many
    /// bytes, count the frame as oversized (and NAK it). Scanning then resumes and skips
    /// the rest of the oversized frame as garbage up to the next LF.
    Oversized(usize),
    /// Need more bytes.
    Incomplete,
}

/// Streaming LF..CR framer over the unconsumed receive buffer.
///
/// * `Frame { start, end }`: `buf[start..end]` is LF..=CR; the caller consumes `..end`.
///   (`start` is currently always 0 because leading garbage is reported as `Skip` first,
///   but callers must slice with it.)
/// * `Skip(n)`, `n > 0`: garbage before the next LF (or the whole buffer when it has no
///   LF; this also eats NUL padding after a CR). A second LF before a CR restarts the frame
///   at that LF (`Skip` up to it).
/// * `Oversized(n)`: an LF with more than [`MAX_FRAME_BYTES`] and no CR; discard `n` bytes.
/// * `Incomplete`: need more bytes.
///
/// Lupusec frames carry the CRC as 2 raw bytes (protocols.md §1.9) which may be CR or LF;
/// a frame that starts `LF b b "0" hex hex hex '"'` is framed from after those 2 bytes.
///
/// One call is O(n) in the bytes examined, at most `MAX_FRAME_BYTES`; it never panics.
#[must_use]
pub fn scan(buf: &[u8]) -> Scan {
    let Some(&first) = buf.first() else {
        return Scan::Incomplete;
    };
    if first != LF {
        let n = buf.iter().position(|&b| b == LF).unwrap_or(buf.len());
        return Scan::Skip(n);
    }
    let search_from = match binary_crc_prefix(buf) {
        Some(true) => 3,
        Some(false) => 1,
        None => return Scan::Incomplete,
    };
    let limit = buf.len().min(MAX_FRAME_BYTES);
    let window = buf.get(search_from..limit).unwrap_or_default();
    match window.iter().position(|&b| b == CR || b == LF) {
        Some(i) => {
            let at = search_from + i;
            if buf.get(at) == Some(&CR) {
                Scan::Frame {
                    start: 0,
                    end: at + 1,
                }
            } else {
                Scan::Skip(at)
            }
        }
        None if buf.len() >= MAX_FRAME_BYTES => Scan::Oversized(MAX_FRAME_BYTES),
        None => Scan::Incomplete,
    }
}

/// For a buffer starting with LF: `Some(true)` if it starts like a binary-CRC frame,
/// `Some(false)` if not, `None` if that cannot be told yet and it matters (a CR or LF in
/// the 2 bytes that would be the binary CRC).
fn binary_crc_prefix(buf: &[u8]) -> Option<bool> {
    // Pattern after the LF and 2 CRC bytes: '0', 3 hex digits, '"'.
    let fits = |i: usize, b: u8| match i {
        3 => b == b'0',
        4..=6 => b.is_ascii_hexdigit(),
        7 => b == b'"',
        _ => true,
    };
    let known = buf.len().min(8);
    let consistent = (3..known).all(|i| buf.get(i).is_some_and(|&b| fits(i, b)));
    if !consistent {
        return Some(false);
    }
    if buf.len() >= 8 {
        return Some(true);
    }
    let crc_has_eol = buf
        .get(1..known.min(3))
        .unwrap_or_default()
        .iter()
        .any(|&b| b == CR || b == LF);
    if crc_has_eol { None } else { Some(false) }
}

// ---------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------

/// The ID token of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Token {
    /// `NULL`: link test (supervision).
    Null,
    /// `ADM-CID`: Contact ID payload.
    AdmCid,
    /// `SIA-DCS`: SIA DC-03 payload.
    SiaDcs,
    /// `ACK`.
    Ack,
    /// `NAK`.
    Nak,
    /// `DUH`.
    Duh,
    /// `RSP`.
    Rsp,
    /// Any other well-formed token (e.g. `SIA-PUL`, `XNM`); answer with DUH.
    Other,
}

impl Token {
    /// Maps an ID text (without quotes and `*`) to a token.
    #[must_use]
    pub fn from_id(id: &str) -> Token {
        match id {
            "NULL" => Token::Null,
            "ADM-CID" => Token::AdmCid,
            "SIA-DCS" => Token::SiaDcs,
            "ACK" => Token::Ack,
            "NAK" => Token::Nak,
            "DUH" => Token::Duh,
            "RSP" => Token::Rsp,
            _ => Token::Other,
        }
    }

    /// Stable label (`null`, `adm_cid`, `sia_dcs`, `ack`, `nak`, `duh`, `rsp`, `other`).
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Token::Null => "null",
            Token::AdmCid => "adm_cid",
            Token::SiaDcs => "sia_dcs",
            Token::Ack => "ack",
            Token::Nak => "nak",
            Token::Duh => "duh",
            Token::Rsp => "rsp",
            Token::Other => "other",
        }
    }
}

/// How the CRC field is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CrcFormat {
    /// 4 ASCII hex digits (the standard form).
    #[default]
    Hex,
    /// 2 raw bytes, big-endian (Lupusec, protocols.md §1.9). Replies use the same form.
    Binary,
}

/// A parsed frame; all text fields borrow from the received bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The frame as received, LF..=CR.
    pub raw: &'a [u8],
    /// The CRC (as received; it matched the computed one).
    pub crc: u16,
    /// How the CRC was written; replies use the same form.
    pub crc_format: CrcFormat,
    /// Quirk §1.9: the length field matched only when read as decimal (and the CRC was
    /// valid). Per-device-profile policy decides whether to accept it.
    pub length_decimal: bool,
    /// `"*ID"`: the part after `[` is hex ciphertext.
    pub encrypted: bool,
    /// The token.
    pub token: Token,
    /// The ID text without quotes and `*`, e.g. `ADM-CID`.
    pub id: &'a str,
    /// The 4 decimal digits of the sequence number as received.
    pub seq: &'a str,
    /// Hex digits after `R` (without `R`), if present.
    pub receiver: Option<&'a str>,
    /// Hex digits after `L` (without `L`); `None` if the L field is missing (tolerated).
    pub line: Option<&'a str>,
    /// Hex digits after `#`; `None` for the `A0` form of a NAK.
    pub account: Option<&'a str>,
    /// Plain: from `[` (inclusive) to before CR. Encrypted: the hex ciphertext after `[`.
    pub body: &'a [u8],
}

/// Why a frame was rejected by [`parse`]. The right reply to all of them is a NAK.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The CRC in the frame (`expected`) differs from the one computed over the body.
    #[error("CRC mismatch: frame says {expected:04X}, computed {computed:04X}")]
    BadCrc {
        /// The CRC written in the frame.
        expected: u16,
        /// The CRC computed over the received body.
        computed: u16,
    },
    /// The length field does not match the body length (as hex, nor as decimal with a valid CRC).
    #[error("length field does not match the body")]
    BadLength,
    /// The frame does not follow the grammar; the text says what is wrong.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// More than [`MAX_FRAME_BYTES`] bytes (or a body over [`MAX_BODY_BYTES`]).
    #[error("frame too long")]
    TooLong,
}

impl ParseError {
    /// Stable label: `bad_crc`, `bad_length`, `malformed`, `too_long`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            ParseError::BadCrc { .. } => "bad_crc",
            ParseError::BadLength => "bad_length",
            ParseError::Malformed(_) => "malformed",
            ParseError::TooLong => "too_long",
        }
    }
}

/// Detects how a raw frame (LF first) writes its CRC, e.g. to NAK a Lupusec frame that
/// failed to parse in its own style. Anything not clearly binary is [`CrcFormat::Hex`].
#[must_use]
pub fn crc_format_of(raw: &[u8]) -> CrcFormat {
    let hex_form = raw.get(9) == Some(&b'"');
    if !hex_form && raw.first() == Some(&LF) && binary_crc_prefix(raw) == Some(true) {
        CrcFormat::Binary
    } else {
        CrcFormat::Hex
    }
}

/// Parses one LF..CR frame from [`scan`]: checks size, CRC and length, splits the header.
///
/// Tolerated: lowercase hex in CRC, length and ciphertext; a missing `L` field; a decimal
/// length when the CRC is valid (`length_decimal`); a 2-byte binary CRC (`crc_format`);
/// account of 1..=16 hex digits. Rejected as malformed: a sequence number that is not 4
/// decimal digits, CR or LF inside the frame, fields out of order.
pub fn parse(frame: &[u8]) -> Result<Frame<'_>, ParseError> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(ParseError::TooLong);
    }
    let Some((&LF, rest)) = frame.split_first() else {
        return Err(ParseError::Malformed("frame does not start with LF"));
    };
    let Some((&CR, inner)) = rest.split_last() else {
        return Err(ParseError::Malformed("frame does not end with CR"));
    };
    let hex_crc = inner.get(..4).and_then(hex16);
    let (crc_format, crc, len_field, body) = match (hex_crc, inner.get(8), inner.get(6)) {
        (Some(crc), Some(b'"'), _) => (
            CrcFormat::Hex,
            crc,
            slice(inner, 4, 8),
            slice_from(inner, 8),
        ),
        (_, _, Some(b'"')) if inner.get(2) == Some(&b'0') => {
            let crc = match inner {
                [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
                _ => 0,
            };
            (
                CrcFormat::Binary,
                crc,
                slice(inner, 2, 6),
                slice_from(inner, 6),
            )
        }
        _ => {
            return Err(ParseError::Malformed(
                "no CRC and length before the ID token",
            ));
        }
    };
    if body.len() > MAX_BODY_BYTES {
        return Err(ParseError::TooLong);
    }
    if body.iter().any(|&b| b == CR || b == LF) {
        return Err(ParseError::Malformed("CR or LF inside the frame"));
    }
    let computed = crc16_arc(body);
    let length_decimal = match (hex16(len_field), dec16(len_field)) {
        (Some(n), _) if usize::from(n) == body.len() => false,
        (_, Some(n)) if usize::from(n) == body.len() && computed == crc => true,
        (None, None) => return Err(ParseError::Malformed("length field is not 4 hex digits")),
        _ => return Err(ParseError::BadLength),
    };
    if computed != crc {
        return Err(ParseError::BadCrc {
            expected: crc,
            computed,
        });
    }
    parse_body(frame, crc, crc_format, length_decimal, body)
}

/// Splits the CRC-checked body `"ID"SEQ[R..][L..](#acct|A0)[...`.
fn parse_body<'a>(
    raw: &'a [u8],
    crc: u16,
    crc_format: CrcFormat,
    length_decimal: bool,
    body: &'a [u8],
) -> Result<Frame<'a>, ParseError> {
    let Some((&b'"', after_quote)) = body.split_first() else {
        return Err(ParseError::Malformed("ID token does not start with '\"'"));
    };
    let Some(close) = after_quote.iter().take(18).position(|&b| b == b'"') else {
        return Err(ParseError::Malformed(
            "ID token is not closed by '\"' within 17 bytes",
        ));
    };
    let id_bytes = slice(after_quote, 0, close);
    let (encrypted, id_bytes) = match id_bytes.split_first() {
        Some((b'*', rest)) => (true, rest),
        _ => (false, id_bytes),
    };
    if id_bytes.is_empty()
        || !id_bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    {
        return Err(ParseError::Malformed(
            "ID token is not 1-16 letters, digits or '-'",
        ));
    }
    let id = ascii_str(id_bytes)?;
    let token = Token::from_id(id);

    let rest = slice_from(after_quote, close + 1);
    let seq_bytes = slice(rest, 0, 4);
    if seq_bytes.len() != 4 || !seq_bytes.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::Malformed(
            "sequence number is not 4 decimal digits",
        ));
    }
    let seq = ascii_str(seq_bytes)?;
    let rest = slice_from(rest, 4);

    // Header fields end at the first '['.
    let Some(bracket) = rest.iter().position(|&b| b == b'[') else {
        return Err(ParseError::Malformed("no '[' opening the data block"));
    };
    let mut header = slice(rest, 0, bracket);
    let after_bracket = slice_from(rest, bracket + 1);

    // The NAK form ends the header with "A0" instead of "#acct" (its L field is "L0",
    // so a greedy hex read of L would swallow the "A0").
    let nak_form = token == Token::Nak && !header.contains(&b'#') && header.ends_with(b"A0");
    if nak_form {
        header = slice(header, 0, header.len() - 2);
    }
    let receiver = take_field(&mut header, b'R', 6)?;
    let line = take_field(&mut header, b'L', 6)?;
    let account = if nak_form {
        None
    } else {
        match take_field(&mut header, b'#', 16)? {
            Some(acct) => Some(acct),
            None => return Err(ParseError::Malformed("missing #account")),
        }
    };
    if !header.is_empty() {
        return Err(ParseError::Malformed(
            "unexpected bytes in header (expected R, L, #)",
        ));
    }
    let body_field = if encrypted {
        after_bracket
    } else {
        slice_from(rest, bracket)
    };
    Ok(Frame {
        raw,
        crc,
        crc_format,
        length_decimal,
        encrypted,
        token,
        id,
        seq,
        receiver,
        line,
        account,
        body: body_field,
    })
}

/// If `header` starts with `letter`, takes it and the following 1..=`max` hex digits.
fn take_field<'a>(
    header: &mut &'a [u8],
    letter: u8,
    max: usize,
) -> Result<Option<&'a str>, ParseError> {
    let Some((&first, rest)) = header.split_first() else {
        return Ok(None);
    };
    if first != letter {
        return Ok(None);
    }
    let n = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if n == 0 || n > max {
        return Err(ParseError::Malformed(match letter {
            b'R' => "receiver is not 1-6 hex digits",
            b'L' => "line prefix is not 1-6 hex digits",
            _ => "account is not 1-16 hex digits",
        }));
    }
    let value = ascii_str(slice(rest, 0, n))?;
    *header = slice_from(rest, n);
    Ok(Some(value))
}

fn ascii_str(b: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(b).map_err(|_| ParseError::Malformed("non-ASCII header field"))
}

/// `s[a..b]`, or empty when out of range (never panics).
fn slice(s: &[u8], a: usize, b: usize) -> &[u8] {
    s.get(a..b).unwrap_or_default()
}

/// `s[a..]`, or empty when out of range (never panics).
fn slice_from(s: &[u8], a: usize) -> &[u8] {
    s.get(a..).unwrap_or_default()
}

/// 4 hex digits (either case).
fn hex16(s: &[u8]) -> Option<u16> {
    if s.len() != 4 {
        return None;
    }
    s.iter().try_fold(0u16, |acc, &b| {
        hex_val(b).map(|v| (acc << 4) | u16::from(v))
    })
}

/// 4 decimal digits.
fn dec16(s: &[u8]) -> Option<u16> {
    if s.len() != 4 {
        return None;
    }
    s.iter().try_fold(0u16, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u16::from(b - b'0'))
    })
}

// ---------------------------------------------------------------------------------------
// Content: data, xdata, timestamp; decryption
// ---------------------------------------------------------------------------------------

/// One `[Xvalue]` extended-data block (protocols.md §1.5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct XData {
    /// The type letter, e.g. `b'M'` (MAC), `b'H'` (time of occurrence), `b'K'` (key).
    pub letter: u8,
    /// The value as raw bytes (CP1252 or UTF-8 may occur; never transcoded).
    pub value: Vec<u8>,
}

/// The content of a frame after the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content {
    /// Inside `[` `]`. For encrypted frames: after the pad and `|` (robust rule, §1.6).
    pub data: Vec<u8>,
    /// The xdata blocks in order (empty `[]` blocks are skipped).
    pub xdata: Vec<XData>,
    /// `_HH:MM:SS,MM-DD-YYYY`, read as UTC. Always present for decrypted content.
    pub timestamp: Option<Timestamp>,
}

/// Why the content of a parsed frame could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    /// [`Frame::decrypt`] on a plain frame.
    #[error("frame is not encrypted")]
    NotEncrypted,
    /// [`Frame::content`] on an encrypted frame.
    #[error("frame is encrypted")]
    Encrypted,
    /// Ciphertext with a character that is not a hex digit.
    #[error("ciphertext is not hex")]
    BadHex,
    /// Ciphertext that is empty or not a whole number of 16-byte blocks.
    #[error("ciphertext length is not a positive multiple of 16 bytes")]
    BadCipherLength,
    /// The plaintext makes no sense: no `]`, or garbage after it. Usually a wrong key.
    #[error("decrypted text is not a DC-09 data block (wrong key?)")]
    Undecryptable,
    /// A well-formed encrypted frame without the required `_timestamp`.
    #[error("encrypted frame has no timestamp")]
    MissingTimestamp,
    /// A timestamp with an impossible date or time, or not in `_HH:MM:SS,MM-DD-YYYY` form.
    #[error("bad timestamp")]
    BadTimestamp,
    /// More than [`MAX_XDATA`] xdata blocks.
    #[error("more than {MAX_XDATA} xdata blocks")]
    TooManyXData,
    /// The content does not follow the grammar; the text says what is wrong.
    #[error("malformed content: {0}")]
    Malformed(&'static str),
}

impl ContentError {
    /// Stable label for metrics and logs.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            ContentError::NotEncrypted => "not_encrypted",
            ContentError::Encrypted => "encrypted",
            ContentError::BadHex => "bad_hex",
            ContentError::BadCipherLength => "bad_cipher_length",
            ContentError::Undecryptable => "undecryptable",
            ContentError::MissingTimestamp => "missing_timestamp",
            ContentError::BadTimestamp => "bad_timestamp",
            ContentError::TooManyXData => "too_many_xdata",
            ContentError::Malformed(_) => "malformed",
        }
    }
}

/// What follows the data block, parsed.
struct Tail {
    xdata: Vec<XData>,
    timestamp: Option<Timestamp>,
}

/// Why the part after `]` did not parse (mapped differently for plain and encrypted).
enum TailError {
    /// Not the grammar `{[xdata]} [_timestamp]`.
    Syntax(&'static str),
    /// Timestamp in the right form but an impossible date/time.
    TimestampValue,
    /// Too many xdata blocks.
    TooManyXData,
}

/// Parses `{[Xvalue]} [_HH:MM:SS,MM-DD-YYYY]` exactly, to the end of `s`.
fn parse_tail(mut s: &[u8]) -> Result<Tail, TailError> {
    let mut xdata = Vec::new();
    while let Some((&b'[', rest)) = s.split_first() {
        let Some(close) = rest.iter().position(|&b| b == b']') else {
            return Err(TailError::Syntax("xdata block has no ']'"));
        };
        let block = slice(rest, 0, close);
        s = slice_from(rest, close + 1);
        let Some((&letter, value)) = block.split_first() else {
            continue; // empty "[]": tolerated, ignored
        };
        if !letter.is_ascii_alphabetic() {
            return Err(TailError::Syntax("xdata type is not a letter"));
        }
        if xdata.len() >= MAX_XDATA {
            return Err(TailError::TooManyXData);
        }
        xdata.push(XData {
            letter,
            value: value.to_vec(),
        });
    }
    let timestamp = match s.split_first() {
        None => None,
        Some((b'_', ts)) => Some(parse_timestamp(ts)?),
        Some(_) => return Err(TailError::Syntax("unexpected bytes after the data block")),
    };
    Ok(Tail { xdata, timestamp })
}

/// Parses `HH:MM:SS,MM-DD-YYYY` (UTC). A leap second `60` is read as `59`.
fn parse_timestamp(s: &[u8]) -> Result<Timestamp, TailError> {
    let [
        h1,
        h2,
        b':',
        n1,
        n2,
        b':',
        s1,
        s2,
        b',',
        m1,
        m2,
        b'-',
        d1,
        d2,
        b'-',
        y1,
        y2,
        y3,
        y4,
    ] = s
    else {
        return Err(TailError::Syntax("timestamp is not HH:MM:SS,MM-DD-YYYY"));
    };
    let digits = [h1, h2, n1, n2, s1, s2, m1, m2, d1, d2, y1, y2, y3, y4];
    if !digits.iter().all(|d| d.is_ascii_digit()) {
        return Err(TailError::Syntax("timestamp is not HH:MM:SS,MM-DD-YYYY"));
    }
    let v = |a: &u8, b: &u8| i8::try_from((a - b'0') * 10 + (b - b'0')).unwrap_or(i8::MAX);
    let year = i16::from(v(y1, y2)) * 100 + i16::from(v(y3, y4));
    let second = v(s1, s2).min(59);
    let dt =
        jiff::civil::DateTime::new(year, v(m1, m2), v(d1, d2), v(h1, h2), v(n1, n2), second, 0)
            .map_err(|_| TailError::TimestampValue)?;
    Offset::UTC
        .to_timestamp(dt)
        .map_err(|_| TailError::TimestampValue)
}

impl Frame<'_> {
    /// Reads the data block, xdata and timestamp of a plain frame.
    ///
    /// # Errors
    /// [`ContentError::Encrypted`] for an encrypted frame; `Malformed`, `TooManyXData` or
    /// `BadTimestamp` when the content does not follow the grammar.
    pub fn content(&self) -> Result<Content, ContentError> {
        if self.encrypted {
            return Err(ContentError::Encrypted);
        }
        let Some((&b'[', inner)) = self.body.split_first() else {
            return Err(ContentError::Malformed(
                "data block does not start with '['",
            ));
        };
        let Some(close) = inner.iter().position(|&b| b == b']') else {
            return Err(ContentError::Malformed("data block has no ']'"));
        };
        let tail = parse_tail(slice_from(inner, close + 1)).map_err(|e| match e {
            TailError::Syntax(what) => ContentError::Malformed(what),
            TailError::TimestampValue => ContentError::BadTimestamp,
            TailError::TooManyXData => ContentError::TooManyXData,
        })?;
        Ok(Content {
            data: slice(inner, 0, close).to_vec(),
            xdata: tail.xdata,
            timestamp: tail.timestamp,
        })
    }

    /// Decrypts an encrypted frame and reads its content with the robust pad rule (§1.6):
    /// if a `|` occurs before the first `]`, the pad ends at the first `|`; otherwise all
    /// bytes before the first `]` are pad and the data is empty. The timestamp is required.
    ///
    /// # Errors
    /// [`ContentError::NotEncrypted`] for a plain frame; `BadHex` / `BadCipherLength` for
    /// bad ciphertext; `Undecryptable` when the plaintext is not `pad [|data] ] {xdata}
    /// _timestamp` (a wrong key gives this, or rarely `MissingTimestamp`); `BadTimestamp`
    /// for an impossible date; `TooManyXData`. Never panics, whatever the key or bytes.
    pub fn decrypt(&self, key: &Key) -> Result<Content, ContentError> {
        if !self.encrypted {
            return Err(ContentError::NotEncrypted);
        }
        let hex = self.body;
        if hex.is_empty() || hex.len() % (2 * BLOCK) != 0 {
            return Err(ContentError::BadCipherLength);
        }
        let mut buf = Vec::with_capacity(hex.len() / 2);
        for pair in hex.chunks_exact(2) {
            match pair {
                [hi, lo] => match (hex_val(*hi), hex_val(*lo)) {
                    (Some(hi), Some(lo)) => buf.push((hi << 4) | lo),
                    _ => return Err(ContentError::BadHex),
                },
                _ => return Err(ContentError::BadCipherLength),
            }
        }
        decrypt_zero_iv(key, &mut buf).map_err(|_| ContentError::BadCipherLength)?;
        let Some(close) = buf.iter().position(|&b| b == b']') else {
            return Err(ContentError::Undecryptable);
        };
        let data_start = slice(&buf, 0, close)
            .iter()
            .position(|&b| b == b'|')
            .map_or(close, |p| p + 1);
        let tail = parse_tail(slice_from(&buf, close + 1)).map_err(|e| match e {
            TailError::Syntax(_) => ContentError::Undecryptable,
            TailError::TimestampValue => ContentError::BadTimestamp,
            TailError::TooManyXData => ContentError::TooManyXData,
        })?;
        if tail.timestamp.is_none() {
            return Err(ContentError::MissingTimestamp);
        }
        buf.truncate(close);
        buf.drain(..data_start);
        Ok(Content {
            data: buf,
            xdata: tail.xdata,
            timestamp: tail.timestamp,
        })
    }
}

/// Whether `now - past_secs <= ts <= now + future_secs` (both ends inclusive).
///
/// DC-09 uses 40 s past and 20 s future (§1.7). Huge windows saturate, never overflow.
#[must_use]
pub fn within_window(ts: Timestamp, now: Timestamp, past_secs: u64, future_secs: u64) -> bool {
    let d = ts.duration_since(now);
    let past = SignedDuration::from_secs(i64::try_from(past_secs).unwrap_or(i64::MAX));
    let future = SignedDuration::from_secs(i64::try_from(future_secs).unwrap_or(i64::MAX));
    -past <= d && d <= future
}

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

/// How the random-looking pad of an encrypted frame is made.
pub enum Pad<'a> {
    /// Random ASCII letters and digits from this generator (never `|`, `[`, `]`).
    Random(&'a mut dyn rand::RngCore),
    /// Every pad byte is this byte, for reproducible vectors (e.g. `b'P'` as in §1.10).
    /// `|`, `[` and `]` cannot be pad bytes and are replaced by `0`.
    Fixed(u8),
}

impl fmt::Debug for Pad<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pad::Random(_) => f.write_str("Pad::Random"),
            Pad::Fixed(b) => write!(f, "Pad::Fixed({b:#04x})"),
        }
    }
}

/// Everything needed to build a frame (tests, the load generator, device simulators).
#[derive(Clone, Copy, Debug)]
pub struct FrameSpec<'a> {
    /// ID text without quotes and `*`, e.g. `"ADM-CID"`.
    pub id: &'a str,
    /// Sequence number, written as 4 decimal digits (modulo 10000).
    pub seq: u16,
    /// Receiver number (hex digits, without `R`), if any.
    pub receiver: Option<&'a str>,
    /// Line/account prefix (hex digits, without `L`); `None` omits the field (a quirk).
    pub line: Option<&'a str>,
    /// Account (hex digits, without `#`).
    pub account: &'a str,
    /// The data written inside `[` `]`, e.g. `b"#1234|1101 01 001"`.
    pub data: &'a [u8],
    /// xdata blocks written after the data block.
    pub xdata: &'a [XData],
    /// Timestamp written as `_HH:MM:SS,MM-DD-YYYY`; required for encrypted frames.
    pub timestamp: Option<Timestamp>,
}

/// Appends a plain frame built from `spec` to `out` (hex CRC, uppercase).
///
/// Fields are written as given, not validated, so malformed frames can be built on
/// purpose. A body over [`MAX_BODY_BYTES`] gets a length field with more than 3 significant
/// digits, which receivers reject: keep `data` and `xdata` small.
pub fn encode_frame(spec: &FrameSpec<'_>, out: &mut Vec<u8>) {
    encode_frame_with_format(spec, CrcFormat::Hex, out);
}

/// [`encode_frame`] with a chosen CRC format (to simulate Lupusec's binary CRC).
pub fn encode_frame_with_format(spec: &FrameSpec<'_>, format: CrcFormat, out: &mut Vec<u8>) {
    let start = begin(out, format);
    write_header(
        out,
        false,
        spec.id,
        spec.seq,
        spec.receiver,
        spec.line,
        Some(spec.account),
    );
    out.push(b'[');
    write_content(out, spec);
    finish(out, start, format);
}

/// Appends an encrypted frame (`"*ID"`, hex ciphertext) built from `spec` to `out`.
///
/// The plaintext is `pad | data ] {xdata} _timestamp` with the DC-09-2013 pad length
/// (1..=16 bytes making the plaintext a multiple of 16; 16 if it already is). A
/// conforming frame needs `spec.timestamp`; with `None` the frame is built without one
/// (non-conforming, useful to test that receivers reject it).
pub fn encode_frame_encrypted(spec: &FrameSpec<'_>, key: &Key, pad: Pad<'_>, out: &mut Vec<u8>) {
    encode_frame_encrypted_with(spec, key, pad, true, out);
}

/// [`encode_frame_encrypted`] with a choice to leave out the `|` after the pad (`pipe =
/// false`), as PSA and S09 do for empty data (§1.6). Use only for simulators and profiles.
pub fn encode_frame_encrypted_with(
    spec: &FrameSpec<'_>,
    key: &Key,
    pad: Pad<'_>,
    pipe: bool,
    out: &mut Vec<u8>,
) {
    let start = begin(out, CrcFormat::Hex);
    write_header(
        out,
        true,
        spec.id,
        spec.seq,
        spec.receiver,
        spec.line,
        Some(spec.account),
    );
    out.push(b'[');
    let mut plain = Vec::with_capacity(spec.data.len() + 64);
    write_content(&mut plain, spec);
    encrypt_hex(key, pad, pipe, &plain, out);
    finish(out, start, CrcFormat::Hex);
}

/// Appends the ACK for `frame`: `"ACK"` + seq + `[R…]` + `[L…]` + `#acct` + `[]`, echoed as received,
/// no timestamp (PSA, IOB). A frame without L gets an ACK without L. The CRC is written
/// in the frame's format.
pub fn encode_ack(frame: &Frame<'_>, out: &mut Vec<u8>) {
    encode_plain_reply(frame, "ACK", out);
}

/// Appends the DUH for `frame` (received correctly, cannot be processed). Never encrypted.
pub fn encode_duh(frame: &Frame<'_>, out: &mut Vec<u8>) {
    encode_plain_reply(frame, "DUH", out);
}

/// Appends the `*ACK` for an encrypted `frame`: the header echoed as for ACK, then `[` and
/// the hex ciphertext of `pad | ] _now` (random alphanumeric pad).
pub fn encode_ack_encrypted(
    frame: &Frame<'_>,
    key: &Key,
    now: Timestamp,
    rng: &mut impl rand::Rng,
    out: &mut Vec<u8>,
) {
    encode_ack_encrypted_with(frame, key, now, Pad::Random(rng), true, out);
}

/// [`encode_ack_encrypted`] with a chosen pad (e.g. `Pad::Fixed(b'Q')` reproduces the §1.10
/// vector) and a choice to leave out the `|` (`pipe = false`, a device-profile switch, §1.6).
pub fn encode_ack_encrypted_with(
    frame: &Frame<'_>,
    key: &Key,
    now: Timestamp,
    pad: Pad<'_>,
    pipe: bool,
    out: &mut Vec<u8>,
) {
    let start = begin(out, frame.crc_format);
    write_reply_header(out, true, "ACK", frame);
    out.push(b'[');
    let mut plain = Vec::with_capacity(24);
    plain.push(b']');
    format_timestamp(now, &mut plain);
    encrypt_hex(key, pad, pipe, &plain, out);
    finish(out, start, frame.crc_format);
}

/// Appends the NAK `"NAK"0000R0L0A0[]_HH:MM:SS,MM-DD-YYYY` with the receiver's current UTC
/// time (hex CRC). Never encrypted.
pub fn encode_nak(now: Timestamp, out: &mut Vec<u8>) {
    encode_nak_with_format(now, CrcFormat::Hex, out);
}

/// [`encode_nak`] with a chosen CRC format (NAK a Lupusec device in its own style; see
/// [`crc_format_of`]).
pub fn encode_nak_with_format(now: Timestamp, format: CrcFormat, out: &mut Vec<u8>) {
    let start = begin(out, format);
    out.extend_from_slice(b"\"NAK\"0000R0L0A0[]");
    format_timestamp(now, out);
    finish(out, start, format);
}

/// Appends `_HH:MM:SS,MM-DD-YYYY` (UTC, with the leading `_`). Years outside 0..=9999 are
/// clamped to that range.
pub fn format_timestamp(ts: Timestamp, out: &mut Vec<u8>) {
    let dt = Offset::UTC.to_datetime(ts);
    out.push(b'_');
    push_dec(out, u32::from(dt.hour().unsigned_abs()), 2);
    out.push(b':');
    push_dec(out, u32::from(dt.minute().unsigned_abs()), 2);
    out.push(b':');
    push_dec(out, u32::from(dt.second().unsigned_abs()), 2);
    out.push(b',');
    push_dec(out, u32::from(dt.month().unsigned_abs()), 2);
    out.push(b'-');
    push_dec(out, u32::from(dt.day().unsigned_abs()), 2);
    out.push(b'-');
    push_dec(out, u32::try_from(dt.year().clamp(0, 9999)).unwrap_or(0), 4);
}

fn encode_plain_reply(frame: &Frame<'_>, token: &str, out: &mut Vec<u8>) {
    let start = begin(out, frame.crc_format);
    write_reply_header(out, false, token, frame);
    out.extend_from_slice(b"[]");
    finish(out, start, frame.crc_format);
}

/// Pushes `width` decimal digits of `n` (the low `width` digits, zero-padded).
fn push_dec(out: &mut Vec<u8>, n: u32, width: u32) {
    for i in (0..width).rev() {
        let d = (n / 10u32.pow(i)) % 10;
        out.push(b'0' + u8::try_from(d).unwrap_or(0));
    }
}

/// Pushes the LF and a placeholder for CRC and length; returns the LF's index.
fn begin(out: &mut Vec<u8>, format: CrcFormat) -> usize {
    let start = out.len();
    out.push(LF);
    let placeholder: &[u8] = match format {
        CrcFormat::Hex => b"00000000",
        CrcFormat::Binary => b"\0\x000000",
    };
    out.extend_from_slice(placeholder);
    start
}

/// Fills in CRC and length over the body written since [`begin`] and pushes the CR.
fn finish(out: &mut Vec<u8>, start: usize, format: CrcFormat) {
    let head = match format {
        CrcFormat::Hex => 9,
        CrcFormat::Binary => 7,
    };
    let body_start = start + head;
    let body = slice_from(out, body_start);
    let crc = crc16_arc(body);
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    // CRC (4 hex digits or 2 bytes), then "0LLL": 4 hex digits, more only if the body is
    // (wrongly) larger than 0xFFFF.
    let mut field = [0u8; 12];
    let mut n = 0;
    let mut put = |b: u8| {
        if let Some(slot) = field.get_mut(n) {
            *slot = b;
            n += 1;
        }
    };
    match format {
        CrcFormat::Hex => hex_digits(u32::from(crc), 4, &mut put),
        CrcFormat::Binary => crc.to_be_bytes().into_iter().for_each(&mut put),
    }
    let mut digits = 4;
    while digits < 8 && len >> (4 * digits) != 0 {
        digits += 1;
    }
    hex_digits(len, digits, &mut put);
    let field = field.get(..n).unwrap_or_default();
    match out.get_mut(start + 1..body_start) {
        Some(slot) if slot.len() == field.len() => slot.copy_from_slice(field),
        _ => {
            out.splice(start + 1..body_start, field.iter().copied());
        }
    }
    out.push(CR);
}

/// Calls `put` with `digits` uppercase hex digits of `n`.
fn hex_digits(n: u32, digits: u32, put: &mut impl FnMut(u8)) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for i in (0..digits).rev() {
        let nibble = (n >> (4 * i)) & 0xF;
        put(HEX.get(nibble as usize).copied().unwrap_or(b'0'));
    }
}

/// Pushes `digits` uppercase hex digits of `n`.
fn push_hex(out: &mut Vec<u8>, n: u32, digits: u32) {
    hex_digits(n, digits, &mut |b| out.push(b));
}

fn write_header(
    out: &mut Vec<u8>,
    encrypted: bool,
    id: &str,
    seq: u16,
    receiver: Option<&str>,
    line: Option<&str>,
    account: Option<&str>,
) {
    out.push(b'"');
    if encrypted {
        out.push(b'*');
    }
    out.extend_from_slice(id.as_bytes());
    out.push(b'"');
    push_dec(out, u32::from(seq % 10_000), 4);
    if let Some(r) = receiver {
        out.push(b'R');
        out.extend_from_slice(r.as_bytes());
    }
    if let Some(l) = line {
        out.push(b'L');
        out.extend_from_slice(l.as_bytes());
    }
    match account {
        Some(a) => {
            out.push(b'#');
            out.extend_from_slice(a.as_bytes());
        }
        None => out.extend_from_slice(b"A0"),
    }
}

/// Reply header: token, then seq, R, L and account echoed exactly as received.
fn write_reply_header(out: &mut Vec<u8>, encrypted: bool, token: &str, frame: &Frame<'_>) {
    out.push(b'"');
    if encrypted {
        out.push(b'*');
    }
    out.extend_from_slice(token.as_bytes());
    out.push(b'"');
    out.extend_from_slice(frame.seq.as_bytes());
    if let Some(r) = frame.receiver {
        out.push(b'R');
        out.extend_from_slice(r.as_bytes());
    }
    if let Some(l) = frame.line {
        out.push(b'L');
        out.extend_from_slice(l.as_bytes());
    }
    match frame.account {
        Some(a) => {
            out.push(b'#');
            out.extend_from_slice(a.as_bytes());
        }
        None => out.extend_from_slice(b"A0"),
    }
}

/// Writes `data ] {[xdata]} [_timestamp]` (the part after the opening `[`).
fn write_content(out: &mut Vec<u8>, spec: &FrameSpec<'_>) {
    out.extend_from_slice(spec.data);
    out.push(b']');
    for x in spec.xdata {
        out.push(b'[');
        out.push(x.letter);
        out.extend_from_slice(&x.value);
        out.push(b']');
    }
    if let Some(ts) = spec.timestamp {
        format_timestamp(ts, out);
    }
}

/// Alphabet of random pad bytes: safe for any decoder, never `|`, `[` or `]`.
const PAD_ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Encrypts `pad [|] rest` and appends the ciphertext as uppercase hex.
fn encrypt_hex(key: &Key, pad: Pad<'_>, pipe: bool, rest: &[u8], out: &mut Vec<u8>) {
    let rest_len = rest.len() + usize::from(pipe);
    let pad_len = BLOCK - rest_len % BLOCK; // 1..=16
    let mut plain = Vec::with_capacity(pad_len + rest_len);
    match pad {
        Pad::Fixed(b) => {
            let b = if matches!(b, b'|' | b'[' | b']') {
                b'0'
            } else {
                b
            };
            plain.resize(pad_len, b);
        }
        Pad::Random(rng) => {
            for _ in 0..pad_len {
                let i = rand::Rng::random_range(&mut *rng, 0..PAD_ALPHABET.len());
                plain.push(PAD_ALPHABET.get(i).copied().unwrap_or(b'0'));
            }
        }
    }
    if pipe {
        plain.push(b'|');
    }
    plain.extend_from_slice(rest);
    // The length is a multiple of 16 by construction, so this cannot fail.
    if encrypt_zero_iv(key, &mut plain).is_ok() {
        for b in plain {
            push_hex(out, u32::from(b), 2);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::event::Event;
    use super::super::payload::decode_payload;
    use super::*;
    use rand::SeedableRng;

    const VECTORS: &str = include_str!("../dc09/vectors.txt");

    /// Undoes the vectors.txt escapes (`\n`, `\r`, `\\`, `\xHH`); the SCAIP vectors use
    /// the same escapes.
    pub(crate) fn unescape(s: &str) -> Vec<u8> {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' {
                match b.get(i + 1) {
                    Some(b'n') => out.push(b'\n'),
                    Some(b'r') => out.push(b'\r'),
                    Some(b'\\') => out.push(b'\\'),
                    Some(b'x') => {
                        let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("utf8");
                        out.push(u8::from_str_radix(hex, 16).expect("\\xHH"));
                        i += 2;
                    }
                    other => panic!("bad escape {other:?} in {s:?}"),
                }
                i += 2;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        out
    }

    /// Escapes like vectors.txt event lines: spaces, backslash and non-printables as \xHH.
    fn escape_event_text(b: &[u8]) -> String {
        let mut s = String::new();
        for &c in b {
            if c == b'\\' {
                s.push_str("\\\\");
            } else if (0x21..=0x7E).contains(&c) {
                s.push(char::from(c));
            } else {
                s.push_str(&format!("\\x{c:02X}"));
            }
        }
        s
    }

    fn event_line(e: &Event) -> String {
        let n = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
        format!(
            "code={} q={} zone={} group={} user={} time={} text={}",
            escape_event_text(e.code.to_string().as_bytes()),
            e.qualifier.as_str(),
            n(e.zone),
            n(e.group),
            n(e.user),
            e.time.as_deref().unwrap_or("-"),
            e.text
                .as_deref()
                .map_or("-".to_string(), |t| escape_event_text(t.as_bytes())),
        )
    }

    struct Record<'a> {
        fields: Vec<(&'a str, &'a str)>,
    }

    impl<'a> Record<'a> {
        fn get(&self, key: &str) -> Option<&'a str> {
            self.fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
        }
        fn all(&self, key: &str) -> Vec<&'a str> {
            self.fields
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .collect()
        }
        fn name(&self) -> &'a str {
            self.get("name").expect("record has a name")
        }
    }

    fn records() -> Vec<Record<'static>> {
        let mut out = Vec::new();
        let mut cur = Vec::new();
        for line in VECTORS.lines().chain(std::iter::once("")) {
            if line.starts_with('#') {
                continue;
            }
            if line.is_empty() {
                if !cur.is_empty() {
                    out.push(Record {
                        fields: std::mem::take(&mut cur),
                    });
                }
                continue;
            }
            let (k, v) = line.split_once(": ").expect("key: value");
            cur.push((k, v));
        }
        out
    }

    fn opt(v: &str) -> Option<&str> {
        (v != "-").then_some(v)
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("RFC 3339 timestamp")
    }

    fn key_of(s: &str) -> Key {
        if let Some(h) = s.strip_prefix("hex:") {
            Key::from_hex(h).expect("hex key")
        } else if let Some(a) = s.strip_prefix("ascii:") {
            Key::from_ascii(a).expect("ascii key")
        } else {
            panic!("bad key {s}")
        }
    }

    fn scan_all(stream: &[u8]) -> Vec<String> {
        let mut buf = stream;
        let mut out = Vec::new();
        loop {
            match scan(buf) {
                Scan::Frame { start, end } => {
                    assert_eq!(start, 0);
                    out.push(format!("F{end}"));
                    buf = &buf[end..];
                }
                Scan::Skip(n) => {
                    assert!(n > 0);
                    out.push(format!("S{n}"));
                    buf = &buf[n..];
                }
                Scan::Oversized(n) => {
                    out.push(format!("O{n}"));
                    buf = &buf[n..];
                }
                Scan::Incomplete => {
                    out.push("I".to_string());
                    return out;
                }
            }
        }
    }

    #[test]
    fn vectors_file() {
        let recs = records();
        assert!(recs.len() >= 40, "only {} records", recs.len());
        let mut names = std::collections::HashSet::new();
        let mut frames_checked = 0;
        for r in &recs {
            assert!(names.insert(r.name()), "duplicate {}", r.name());
            if let Some(stream) = r.get("stream") {
                let got = scan_all(&unescape(stream)).join(" ");
                assert_eq!(got, r.get("scan").expect("scan"), "{}", r.name());
                continue;
            }
            check_frame_record(r);
            frames_checked += 1;
        }
        assert!(frames_checked >= 40);
    }

    fn check_frame_record(r: &Record<'_>) {
        let name = r.name();
        let raw = unescape(r.get("frame").expect("frame"));
        let expect_parse = r.get("parse").expect("parse");
        let parsed = parse(&raw);
        if expect_parse != "ok" {
            assert_eq!(
                parsed.map(|_| ()).map_err(|e| e.as_str()),
                Err(expect_parse),
                "{name}"
            );
            return;
        }
        // A valid frame is framed whole by scan, also with trailing NULs (§1.9).
        let mut padded = raw.clone();
        padded.extend_from_slice(b"\0\0");
        assert_eq!(
            scan(&padded),
            Scan::Frame {
                start: 0,
                end: raw.len()
            },
            "{name}"
        );

        let f = parsed.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(f.raw, &raw[..]);
        assert_eq!(
            format!("{:?}", f.token),
            r.get("token").expect("token"),
            "{name}"
        );
        assert_eq!(f.id, r.get("id").expect("id"), "{name}");
        assert_eq!(f.seq, r.get("seq").expect("seq"), "{name}");
        assert_eq!(
            f.receiver,
            opt(r.get("receiver").expect("receiver")),
            "{name}"
        );
        assert_eq!(f.line, opt(r.get("line").expect("line")), "{name}");
        assert_eq!(f.account, opt(r.get("account").expect("account")), "{name}");
        assert_eq!(f.encrypted, r.get("encrypted") == Some("yes"), "{name}");
        let binary = r.get("crc_format") == Some("binary");
        assert_eq!(
            f.crc_format,
            if binary {
                CrcFormat::Binary
            } else {
                CrcFormat::Hex
            },
            "{name}"
        );
        assert_eq!(crc_format_of(&raw), f.crc_format, "{name}");
        assert_eq!(
            f.length_decimal,
            r.get("length_decimal") == Some("yes"),
            "{name}"
        );
        assert_eq!(
            f.crc,
            crc16_arc(&raw[if binary { 7 } else { 9 }..raw.len() - 1])
        );

        let key = r.get("key").map(key_of);
        if let Some(pt) = r.get("plaintext") {
            let k = key.as_ref().expect("key for plaintext");
            let mut buf = hex::decode(f.body).expect("hex ciphertext");
            super::super::crypto::decrypt_zero_iv(k, &mut buf).expect("decrypt");
            assert_eq!(buf, unescape(pt), "{name}: plaintext");
        }

        let mut content = None;
        if let Some(expect) = r.get("content") {
            let got = match &key {
                Some(k) if f.encrypted => f.decrypt(k),
                _ => f.content(),
            };
            match got {
                Ok(c) => {
                    assert_eq!(expect, "ok", "{name}");
                    assert_eq!(c.data, unescape(r.get("data").expect("data")), "{name}");
                    let xdata: Vec<Vec<u8>> = r.all("xdata").into_iter().map(unescape).collect();
                    let got_x: Vec<Vec<u8>> = c
                        .xdata
                        .iter()
                        .map(|x| [&[x.letter][..], &x.value].concat())
                        .collect();
                    assert_eq!(got_x, xdata, "{name}");
                    assert_eq!(
                        c.timestamp,
                        opt(r.get("timestamp").expect("timestamp")).map(ts),
                        "{name}"
                    );
                    content = Some(c);
                }
                Err(e) => assert_eq!(e.as_str(), expect, "{name}"),
            }
        }

        if let Some(expect) = r.get("payload") {
            let c = content.as_ref().expect("payload needs content");
            match decode_payload(f.token, &c.data) {
                Ok(p) => {
                    assert_eq!(expect, "ok", "{name}");
                    assert_eq!(
                        p.account.as_deref(),
                        opt(r.get("payload_account").expect("acct")),
                        "{name}"
                    );
                    let got: Vec<String> = p.events.iter().map(event_line).collect();
                    assert_eq!(got, r.all("event"), "{name}");
                }
                Err(e) => assert_eq!(e.as_str(), expect, "{name}"),
            }
        }

        let mut out = Vec::new();
        if let Some(ack) = r.get("ack") {
            encode_ack(&f, &mut out);
            assert_eq!(out, unescape(ack), "{name}: ack");
            assert!(parse(&out).is_ok(), "{name}: our ACK parses");
        }
        if let Some(duh) = r.get("duh") {
            out.clear();
            encode_duh(&f, &mut out);
            assert_eq!(out, unescape(duh), "{name}: duh");
        }
        if let Some(now) = r.get("nak_now") {
            out.clear();
            encode_nak(ts(now), &mut out);
            assert_eq!(out, unescape(r.get("nak").expect("nak")), "{name}: nak");
        }
        if let Some(now) = r.get("ack_now") {
            let k = key.as_ref().expect("key for *ACK");
            let pad = r.get("ack_pad").expect("ack_pad").as_bytes()[0];
            let pipe = r.get("ack_pipe") != Some("no");
            out.clear();
            encode_ack_encrypted_with(&f, k, ts(now), Pad::Fixed(pad), pipe, &mut out);
            assert_eq!(
                out,
                unescape(r.get("ack_encrypted").expect("*ack")),
                "{name}: *ack"
            );
            // And our *ACK decrypts back to an empty data block with the timestamp.
            let back = parse(&out).expect("our *ACK parses");
            let c = back.decrypt(k).expect("our *ACK decrypts");
            assert_eq!((c.data.len(), c.timestamp), (0, Some(ts(now))));
        }
        if let Some(re) = r.get("reencode") {
            let c = content.as_ref().expect("reencode needs content");
            let spec = FrameSpec {
                id: f.id,
                seq: f.seq.parse().expect("seq"),
                receiver: f.receiver,
                line: f.line,
                account: f.account.expect("account"),
                data: &c.data,
                xdata: &c.xdata,
                timestamp: c.timestamp,
            };
            out.clear();
            if re == "yes" {
                encode_frame(&spec, &mut out);
            } else {
                let pad = re.strip_prefix("pad=").expect("pad=").as_bytes()[0];
                let pipe = !re.ends_with("pipe=no");
                let k = key.as_ref().expect("key");
                encode_frame_encrypted_with(&spec, k, Pad::Fixed(pad), pipe, &mut out);
            }
            assert_eq!(out, raw, "{name}: re-encoded");
        }
    }

    // -- framing ------------------------------------------------------------------------

    fn frames_of(stream: &[u8]) -> Vec<Vec<u8>> {
        let mut buf = stream;
        let mut out = Vec::new();
        loop {
            match scan(buf) {
                Scan::Frame { start, end } => {
                    out.push(buf[start..end].to_vec());
                    buf = &buf[end..];
                }
                Scan::Skip(n) | Scan::Oversized(n) => buf = &buf[n..],
                Scan::Incomplete => return out,
            }
        }
    }

    /// Feeds `stream` to a receive buffer in pieces, as a TCP reader would.
    fn frames_streamed(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match scan(&buf) {
                    Scan::Frame { start, end } => {
                        out.push(buf[start..end].to_vec());
                        buf.drain(..end);
                    }
                    Scan::Skip(n) | Scan::Oversized(n) => {
                        buf.drain(..n);
                    }
                    Scan::Incomplete => break,
                }
            }
        }
        out
    }

    fn sample_stream() -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(b"junk\0");
        s.extend_from_slice(b"\n21170027\"ADM-CID\"0001L0#1234[#1234|1101 01 001]\r\0\0\0");
        s.extend_from_slice(b"\n\n\xeb0027\"ADM-CID\"2005L0#1234[#1234|1101 01 001]\r");
        s.extend_from_slice(b"\nCBB30013\"NULL\"0004L0#1234[]\r\r\n");
        s.extend_from_slice(
            b"\n7449003F\"ADM-CID\"0078R1L0#AAAA[#00AAAA|3407 01 001]_01:59:16,09-21-2023\r",
        );
        s
    }

    #[test]
    fn scan_every_split_point() {
        let stream = sample_stream();
        let whole = frames_of(&stream);
        assert_eq!(whole.len(), 4);
        for f in &whole {
            assert!(parse(f).is_ok(), "{:?}", String::from_utf8_lossy(f));
        }
        for i in 0..=stream.len() {
            assert_eq!(
                frames_streamed(&[&stream[..i], &stream[i..]]),
                whole,
                "split at {i}"
            );
            for j in i..=stream.len() {
                assert_eq!(
                    frames_streamed(&[&stream[..i], &stream[i..j], &stream[j..]]),
                    whole,
                    "split at {i},{j}"
                );
            }
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(frames_streamed(&bytes), whole);
    }

    #[test]
    fn scan_basics() {
        assert_eq!(scan(b""), Scan::Incomplete);
        assert_eq!(scan(b"\n"), Scan::Incomplete);
        assert_eq!(scan(b"abc"), Scan::Skip(3));
        assert_eq!(scan(b"\0\0\0\nX"), Scan::Skip(3));
        assert_eq!(scan(b"\nabc\ndef\r"), Scan::Skip(4));
        assert_eq!(scan(b"\nabc\r\n"), Scan::Frame { start: 0, end: 5 });
        assert_eq!(scan(b"\n\r"), Scan::Incomplete); // might be a binary CRC, wait
        assert_eq!(scan(b"\n\rX"), Scan::Incomplete);
        assert_eq!(scan(b"\n\rXYZ"), Scan::Frame { start: 0, end: 2 });
        // A binary CRC of CR LF does not end or restart the frame.
        assert_eq!(scan(b"\n\r\n0027\"A"), Scan::Incomplete);
        assert_eq!(scan(b"\n\r\n0027\"A\r"), Scan::Frame { start: 0, end: 10 });
    }

    #[test]
    fn oversized_and_max_sizes() {
        // A frame whose body is exactly MAX_BODY_BYTES.
        let data = vec![b'A'; MAX_BODY_BYTES - "\"NULL\"0001L0#1234[]".len()];
        let spec = FrameSpec {
            id: "NULL",
            seq: 1,
            receiver: None,
            line: Some("0"),
            account: "1234",
            data: &data,
            xdata: &[],
            timestamp: None,
        };
        let mut max = Vec::new();
        encode_frame(&spec, &mut max);
        assert_eq!(max.len(), MAX_FRAME_BYTES);
        assert_eq!(&max[5..9], b"0FFF");
        assert_eq!(
            scan(&max),
            Scan::Frame {
                start: 0,
                end: MAX_FRAME_BYTES
            }
        );
        let f = parse(&max).expect("max frame parses");
        assert_eq!(f.content().expect("content").data.len(), data.len());

        // One byte more cannot be framed: Oversized, then the rest is skipped, then the
        // next frame is found.
        let data = vec![b'A'; data.len() + 1];
        let mut big = Vec::new();
        encode_frame(
            &FrameSpec {
                data: &data,
                ..spec
            },
            &mut big,
        );
        assert_eq!(big.len(), MAX_FRAME_BYTES + 1);
        assert_eq!(parse(&big).map(|_| ()), Err(ParseError::TooLong));
        assert_eq!(scan(&big[..MAX_FRAME_BYTES - 1]), Scan::Incomplete);
        assert_eq!(
            scan(&big[..MAX_FRAME_BYTES]),
            Scan::Oversized(MAX_FRAME_BYTES)
        );
        let next = b"\nCBB30013\"NULL\"0004L0#1234[]\r";
        let mut stream = big.clone();
        stream.extend_from_slice(next);
        assert_eq!(scan_all_tags(&stream), ["O4105", "S1", "F29", "I"]);
        // A long run without CR or LF: one Oversized per MAX_FRAME_BYTES, no more.
        let mut junk = vec![b'\n'];
        junk.extend(std::iter::repeat_n(b'x', 3 * MAX_FRAME_BYTES));
        let tags = scan_all_tags(&junk);
        assert_eq!(tags.iter().filter(|t| t.starts_with('O')).count(), 1);
        // Bodies the length field cannot express still get a readable (rejected) field.
        let huge = vec![b'A'; 70_000];
        let mut out = Vec::new();
        encode_frame(
            &FrameSpec {
                data: &huge,
                ..spec
            },
            &mut out,
        );
        assert_eq!(&out[5..11], b"11183\"");
        assert_eq!(parse(&out).map(|_| ()), Err(ParseError::TooLong));
        // Binary CRC form round-trips.
        out.clear();
        encode_frame_with_format(
            &FrameSpec {
                data: b"#1234|1101 01 001",
                ..spec
            },
            CrcFormat::Binary,
            &mut out,
        );
        let f = parse(&out).expect("binary frame parses");
        assert_eq!(f.crc_format, CrcFormat::Binary);
        assert_eq!(
            f.content().map(|c| c.data),
            Ok(b"#1234|1101 01 001".to_vec())
        );
        // A body over 4095 bytes is rejected even if the frame fits the scan limit.
        let mut long = big.clone();
        long.pop();
        long.push(b'\r');
        assert_eq!(
            parse(&long[1..]).map(|_| ()).map_err(|e| e.as_str()),
            Err("malformed")
        );
    }

    fn scan_all_tags(stream: &[u8]) -> Vec<String> {
        let mut buf = stream;
        let mut out = Vec::new();
        loop {
            let r = scan(buf);
            let (tag, n) = match r {
                Scan::Frame { end, .. } => (format!("F{end}"), end),
                Scan::Skip(n) => (format!("S{n}"), n),
                Scan::Oversized(n) => (format!("O{n}"), n),
                Scan::Incomplete => {
                    out.push("I".to_string());
                    return out;
                }
            };
            out.push(tag);
            buf = &buf[n..];
        }
    }

    // -- parsing ------------------------------------------------------------------------

    #[test]
    fn parse_errors() {
        let p = |s: &[u8]| parse(s).map(|_| ()).map_err(|e| e.as_str());
        assert_eq!(p(b""), Err("malformed"));
        assert_eq!(p(b"\n"), Err("malformed"));
        assert_eq!(
            p(b"21170027\"ADM-CID\"0001L0#1234[#1234|1101 01 001]\r"),
            Err("malformed")
        );
        assert_eq!(
            p(b"\n21170027\"ADM-CID\"0001L0#1234[#1234|1101 01 001]"),
            Err("malformed")
        );
        // CRC error reports both values.
        assert_eq!(
            parse(b"\n21180027\"ADM-CID\"0001L0#1234[#1234|1101 01 001]\r").map(|_| ()),
            Err(ParseError::BadCrc {
                expected: 0x2118,
                computed: 0x2117
            })
        );
        // Field checks (each frame has a correct CRC and length).
        let mut out = Vec::new();
        for (body, what) in [
            (&b"\"ADM-CID\"001L0#1234[]"[..], "short seq"),
            (b"\"ADM-CID\"00x1L0#1234[]", "non-decimal seq"),
            (b"\"\"0001L0#1234[]", "empty id"),
            (b"\"*\"0001L0#1234[]", "empty encrypted id"),
            (b"\"A B\"0001L0#1234[]", "space in id"),
            (b"\"ADM-CID0001L0#1234[]", "unclosed id"),
            (b"\"ADM-CID\"0001L0#1234", "no ["),
            (b"\"ADM-CID\"0001L0[]", "no account"),
            (b"\"ADM-CID\"0001L0#[]", "empty account"),
            (b"\"ADM-CID\"0001L0#12345678901234567[]", "17-digit account"),
            (b"\"ADM-CID\"0001R1234567L0#1234[]", "7-digit receiver"),
            (b"\"ADM-CID\"0001RL0#1234[]", "empty receiver"),
            (b"\"ADM-CID\"0001L0R1#1234[]", "L before R"),
            (b"\"ADM-CID\"0001L0#1234X[]", "junk before ["),
            (b"\"ADM-CID\"0001L0A0[]", "A0 on a non-NAK"),
            (b"\"ADM-CID\"0001L\xc30#1234[]", "non-ASCII"),
        ] {
            out.clear();
            let crc = crc16_arc(body);
            out.push(b'\n');
            out.extend_from_slice(format!("{crc:04X}{:04X}", body.len()).as_bytes());
            out.extend_from_slice(body);
            out.push(b'\r');
            assert_eq!(p(&out), Err("malformed"), "{what}");
        }
        // CR or LF inside.
        assert_eq!(
            p(b"\n2117002\r\"ADM-CID\"0001L0#1234[]\r"),
            Err("malformed")
        );
        // Length field not hex.
        assert_eq!(
            p(b"\n2117002G\"ADM-CID\"0001L0#1234[#1234|1101 01 001]\r"),
            Err("malformed")
        );
        // Decimal length with a bad CRC is not tolerated.
        assert_eq!(
            p(b"\n57160047\"ADM-CID\"0247R4F39L4F39#4F39[#4F39|3401 01 057]\r"),
            Err("bad_length")
        );
    }

    #[test]
    fn token_mapping() {
        for (id, t) in [
            ("NULL", Token::Null),
            ("ADM-CID", Token::AdmCid),
            ("SIA-DCS", Token::SiaDcs),
            ("ACK", Token::Ack),
            ("NAK", Token::Nak),
            ("DUH", Token::Duh),
            ("RSP", Token::Rsp),
            ("XNM", Token::Other),
            ("sia-dcs", Token::Other),
        ] {
            assert_eq!(Token::from_id(id), t);
        }
        assert_eq!(Token::AdmCid.as_str(), "adm_cid");
    }

    #[test]
    fn content_errors_and_xdata() {
        let f = |body: &[u8]| {
            let mut out = Vec::new();
            out.push(b'\n');
            out.extend_from_slice(format!("{:04X}{:04X}", crc16_arc(body), body.len()).as_bytes());
            out.extend_from_slice(body);
            out.push(b'\r');
            out
        };
        let raw = f(b"\"NULL\"0001L0#1234[]");
        let fr = parse(&raw).expect("parses");
        let key = Key::from_bytes(&[0; 16]).expect("key");
        assert_eq!(fr.decrypt(&key), Err(ContentError::NotEncrypted));
        let raw = f(b"\"*NULL\"0001L0#1234[00112233445566778899AABBCCDDEEFF");
        let fr = parse(&raw).expect("parses");
        assert_eq!(fr.content(), Err(ContentError::Encrypted));
        // Unterminated data, unterminated xdata, bad xdata letter, bad timestamp forms.
        for (body, label) in [
            (&b"\"NULL\"0001L0#1234[abc"[..], "malformed"),
            (b"\"NULL\"0001L0#1234[][Mabc", "malformed"),
            (b"\"NULL\"0001L0#1234[][1abc]", "malformed"),
            (b"\"NULL\"0001L0#1234[]_10:15:00,03-01-25", "malformed"),
            (b"\"NULL\"0001L0#1234[]_10:15:00 03-01-2025", "malformed"),
            (
                b"\"NULL\"0001L0#1234[]_24:00:00,03-01-2025",
                "bad_timestamp",
            ),
            (
                b"\"NULL\"0001L0#1234[]_10:15:00,02-30-2025",
                "bad_timestamp",
            ),
            (b"\"NULL\"0001L0#1234[]x", "malformed"),
        ] {
            let raw = f(body);
            let got = parse(&raw)
                .expect("parses")
                .content()
                .map(|_| ())
                .map_err(|e| e.as_str());
            assert_eq!(got, Err(label), "{}", String::from_utf8_lossy(body));
        }
        // Leap second, empty xdata blocks, MAX_XDATA.
        let raw = f(b"\"NULL\"0001L0#1234[][][Mx]_23:59:60,12-31-2016");
        let c = parse(&raw).expect("parses").content().expect("content");
        assert_eq!(
            c.xdata,
            vec![XData {
                letter: b'M',
                value: b"x".to_vec()
            }]
        );
        assert_eq!(c.timestamp, Some(ts("2016-12-31T23:59:59Z")));
        let mut body = b"\"NULL\"0001L0#1234[]".to_vec();
        for _ in 0..MAX_XDATA {
            body.extend_from_slice(b"[Ix]");
        }
        let raw = f(&body);
        assert_eq!(
            parse(&raw).expect("p").content().map(|c| c.xdata.len()),
            Ok(MAX_XDATA)
        );
        body.extend_from_slice(b"[Ix]");
        let raw = f(&body);
        assert_eq!(
            parse(&raw).expect("p").content(),
            Err(ContentError::TooManyXData)
        );
    }

    // -- encryption ---------------------------------------------------------------------

    const TS: &str = "2025-03-01T10:15:00Z";

    fn keys() -> [Key; 3] {
        [
            Key::from_hex("000102030405060708090A0B0C0D0E0F").expect("k"),
            Key::from_bytes(&[0x5A; 24]).expect("k"),
            Key::from_ascii("0123456789abcdef0123456789ABCDEF").expect("k"),
        ]
    }

    #[test]
    fn round_trip_plain_and_encrypted() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let xdata = [
            XData {
                letter: b'M',
                value: b"0026B9E4268B".to_vec(),
            },
            XData {
                letter: b'L',
                value: "Kök".as_bytes().to_vec(),
            },
        ];
        for data in [
            &b""[..],
            b"#1234|1101 01 001",
            b"#1234|Nri1/MA001",
            b"0123456789abcde",
        ] {
            for (x, r, l) in [(&xdata[..], Some("1"), Some("0")), (&[][..], None, None)] {
                let spec = FrameSpec {
                    id: "ADM-CID",
                    seq: 9999,
                    receiver: r,
                    line: l,
                    account: "ABCDEF0123456789",
                    data,
                    xdata: x,
                    timestamp: Some(ts(TS)),
                };
                let mut out = Vec::new();
                encode_frame(&spec, &mut out);
                let f = parse(&out).expect("plain parses");
                assert!(!f.encrypted && !f.length_decimal);
                assert_eq!(
                    (f.seq, f.receiver, f.line, f.account),
                    ("9999", r, l, Some("ABCDEF0123456789"))
                );
                let c = f.content().expect("content");
                assert_eq!(
                    (&c.data[..], &c.xdata[..], c.timestamp),
                    (data, x, Some(ts(TS)))
                );
                for key in keys() {
                    for pipe in [true, false] {
                        out.clear();
                        encode_frame_encrypted_with(
                            &spec,
                            &key,
                            Pad::Random(&mut rng),
                            pipe,
                            &mut out,
                        );
                        let f = parse(&out).expect("encrypted parses");
                        assert!(f.encrypted);
                        assert_eq!(f.body.len() % 32, 0);
                        let c = f.decrypt(&key).expect("decrypts");
                        // Without '|' the robust rule only recovers empty data.
                        if pipe || data.is_empty() {
                            assert_eq!(&c.data[..], data);
                        }
                        assert_eq!((&c.xdata[..], c.timestamp), (x, Some(ts(TS))));
                    }
                }
            }
        }
    }

    #[test]
    fn random_pad_bytes_are_safe() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let key = Key::from_bytes(&[1; 16]).expect("k");
        for len in 0..40 {
            let data = vec![b'D'; len];
            let spec = FrameSpec {
                id: "NULL",
                seq: 1,
                receiver: None,
                line: Some("0"),
                account: "1",
                data: &data,
                xdata: &[],
                timestamp: Some(ts(TS)),
            };
            let mut out = Vec::new();
            encode_frame_encrypted(&spec, &key, Pad::Random(&mut rng), &mut out);
            let f = parse(&out).expect("parses");
            let mut buf = hex::decode(f.body).expect("hex");
            super::super::crypto::decrypt_zero_iv(&key, &mut buf).expect("dec");
            let bar = buf.iter().position(|&b| b == b'|').expect("pipe");
            assert!((1..=16).contains(&bar), "pad length {bar}");
            assert!(buf[..bar].iter().all(u8::is_ascii_alphanumeric));
            assert_eq!(buf.len() % 16, 0);
        }
        // Forbidden fixed pad bytes are replaced.
        let spec = FrameSpec {
            id: "NULL",
            seq: 1,
            receiver: None,
            line: Some("0"),
            account: "1",
            data: b"",
            xdata: &[],
            timestamp: Some(ts(TS)),
        };
        for b in [b'|', b'[', b']'] {
            let mut out = Vec::new();
            encode_frame_encrypted(&spec, &key, Pad::Fixed(b), &mut out);
            let c = parse(&out).expect("p").decrypt(&key).expect("d");
            assert!(c.data.is_empty());
        }
        assert_eq!(format!("{:?}", Pad::Fixed(b'P')), "Pad::Fixed(0x50)");
    }

    #[test]
    fn wrong_keys_never_decrypt() {
        let raw = b"\nE9F40076\"*ADM-CID\"0007L0#1234[22471E739E277F7113F059A13EA6E7CD60AA5D374C97364650F3DF39412FCD91ADE812EAF86EED10FEB38F24223B5D88\r";
        let f = parse(raw).expect("parses");
        let mut rng = rand::rngs::StdRng::seed_from_u64(99);
        for i in 0..3000 {
            let len = [16, 24, 32][i % 3];
            let mut k = vec![0u8; len];
            rand::RngCore::fill_bytes(&mut rng, &mut k);
            let key = Key::from_bytes(&k).expect("k");
            let got = f.decrypt(&key);
            assert!(
                matches!(
                    got,
                    Err(ContentError::Undecryptable
                        | ContentError::MissingTimestamp
                        | ContentError::BadTimestamp)
                ),
                "{got:?}"
            );
        }
    }

    #[test]
    fn encrypted_ack_random_pad_decrypts() {
        let raw = b"\nE9F40076\"*ADM-CID\"0007L0#1234[22471E739E277F7113F059A13EA6E7CD60AA5D374C97364650F3DF39412FCD91ADE812EAF86EED10FEB38F24223B5D88\r";
        let f = parse(raw).expect("parses");
        let key = Key::from_hex("000102030405060708090A0B0C0D0E0F").expect("k");
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut a = Vec::new();
        let mut b = Vec::new();
        encode_ack_encrypted(&f, &key, ts(TS), &mut rng, &mut a);
        encode_ack_encrypted(&f, &key, ts(TS), &mut rng, &mut b);
        assert_ne!(a, b, "random pads differ");
        for out in [a, b] {
            let back = parse(&out).expect("parses");
            assert_eq!(
                (back.token, back.encrypted, back.seq, back.account),
                (Token::Ack, true, "0007", Some("1234"))
            );
            let c = back.decrypt(&key).expect("decrypts");
            assert_eq!((c.data.len(), c.timestamp), (0, Some(ts(TS))));
        }
    }

    // -- responses and time -------------------------------------------------------------

    #[test]
    fn replies_append_and_echo() {
        let raw = b"\nF4D20029\"SIA-DCS\"0001RF3L77#1234[#1234|NRR|Atest]\r";
        let f = parse(raw).expect("parses");
        let mut out = b"prefix".to_vec();
        encode_ack(&f, &mut out);
        assert_eq!(&out[..], b"prefix\n61DB0016\"ACK\"0001RF3L77#1234[]\r");
        // Lowercase header fields are echoed exactly as received.
        let body = b"\"NULL\"0001Rab1Lcd#00ef[]";
        let raw = [
            b"\n".to_vec(),
            format!("{:04x}{:04x}", crc16_arc(body), body.len()).into_bytes(),
            body.to_vec(),
            b"\r".to_vec(),
        ]
        .concat();
        let f = parse(&raw).expect("parses");
        out.clear();
        encode_ack(&f, &mut out);
        assert!(out.ends_with(b"\"ACK\"0001Rab1Lcd#00ef[]\r"));
        assert!(parse(&out).is_ok());
        // NAK in binary form, and crc_format_of.
        out.clear();
        encode_nak_with_format(ts("2025-03-01T10:15:30Z"), CrcFormat::Binary, &mut out);
        assert_eq!(
            &out[..3],
            &0xAA81u16
                .to_be_bytes()
                .iter()
                .fold(vec![b'\n'], |mut v, b| {
                    v.push(*b);
                    v
                })[..]
        );
        assert_eq!(crc_format_of(&out), CrcFormat::Binary);
        assert_eq!(parse(&out).map(|f| f.token), Ok(Token::Nak));
    }

    #[test]
    fn timestamp_format() {
        let mut out = Vec::new();
        format_timestamp(ts("2025-03-01T10:15:00.999Z"), &mut out);
        assert_eq!(out, b"_10:15:00,03-01-2025");
        out.clear();
        format_timestamp(ts("0001-01-01T00:00:00Z"), &mut out);
        assert_eq!(out, b"_00:00:00,01-01-0001");
        out.clear();
        format_timestamp(Timestamp::MIN, &mut out);
        assert_eq!(out.len(), 20);
        out.clear();
        format_timestamp(Timestamp::MAX, &mut out);
        assert_eq!((out.len(), &out[16..]), (20, &b"9999"[..]));
    }

    #[test]
    fn window_edges() {
        let now = ts("2025-03-01T10:15:00Z");
        let at = |s: i64| now.checked_add(SignedDuration::from_secs(s)).expect("ts");
        assert!(within_window(now, now, 40, 20));
        assert!(within_window(at(-40), now, 40, 20));
        assert!(!within_window(at(-41), now, 40, 20));
        assert!(within_window(at(20), now, 40, 20));
        assert!(!within_window(at(21), now, 40, 20));
        let just_over = at(20)
            .checked_add(SignedDuration::from_nanos(1))
            .expect("ts");
        assert!(!within_window(just_over, now, 40, 20));
        assert!(!within_window(at(-1), now, 0, 0));
        assert!(within_window(
            Timestamp::MIN,
            Timestamp::MAX,
            u64::MAX,
            u64::MAX
        ));
        assert!(within_window(Timestamp::MAX, Timestamp::MIN, 0, u64::MAX));
        assert!(!within_window(Timestamp::MAX, Timestamp::MIN, u64::MAX, 0));
    }
}
