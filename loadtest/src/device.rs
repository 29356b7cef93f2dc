//! A simulated device: its identity (generated or from a registry CSV), the frames it sends,
//! and the check of every answer it gets.
//!
//! # Generated accounts and test keys
//!
//! Without `--accounts-file`, device `i` of a run gets:
//!
//! | mode | account (hex) | key |
//! |---|---|---|
//! | `plain` | `1000 + i` (0x1000, 0x1001, …) | none |
//! | `aes128` | `128000 + i` | [`TEST_KEY_128`] |
//! | `aes256` | `256000 + i` | [`TEST_KEY_256`] |
//!
//! always with line `0` and no receiver. `fleet --test-keys` numbers its plain, AES-128 and
//! AES-256 devices in the same three ranges with the same keys, so a server that imported
//! such a fleet knows every generated account of every mode (as long as the fleet has at
//! least as many devices of that kind as the run has connections).
//!
//! # Frames never repeat within a run
//!
//! vakt treats a frame with the same (account, line, receiver, seq, ID, data) as one seen in
//! the last 600 s as a retransmission. Every device therefore numbers its frames with a
//! counter `n` that starts at a random point of `0..10⁹` and wraps there: the sequence number
//! is `n mod 10000`, the Contact ID group `(n / 10⁴) mod 100` and zone `(n / 10⁶) mod 1000`.
//! No two frames of a device repeat until it has sent 10⁹ frames, and two runs started within
//! the dedup window rarely overlap.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use vakt_proto::crypto::Key;
use vakt_proto::dc09::{self, FrameSpec, Pad, ParseError, Token};

use crate::registry;
use crate::stats::ErrorKind;

/// AES-128 test key (hex) of generated accounts in `--mode aes128` and `fleet --test-keys`.
/// A published test key: never use it for a real device.
pub const TEST_KEY_128: &str = "4C4F414454455354414553313238214B";
/// AES-256 test key (hex) of generated accounts in `--mode aes256` and `fleet --test-keys`.
/// A published test key: never use it for a real device.
pub const TEST_KEY_256: &str = "4C4F414454455354414553323536214B000102030405060708090A0B0C0D0E0F";

/// First generated account of each mode (plain, AES-128, AES-256).
pub const BASE_PLAIN: u32 = 0x1000;
/// First generated AES-128 account.
pub const BASE_AES128: u32 = 0x12_8000;
/// First generated AES-256 account.
pub const BASE_AES256: u32 = 0x25_6000;
/// Most devices per kind, so the three account ranges never overlap.
pub const MAX_GENERATED: u32 = 1_000_000;

/// Which devices a run simulates (and whether they encrypt).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Plain frames.
    Plain,
    /// AES-128 encrypted frames.
    Aes128,
    /// AES-256 encrypted frames.
    Aes256,
    /// Only with `--accounts-file`: every row as it is (encrypted when it has a key).
    Auto,
}

impl Mode {
    /// Label for reports.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Aes128 => "aes128",
            Mode::Aes256 => "aes256",
            Mode::Auto => "auto",
        }
    }

    fn accepts(self, key: Option<&Key>) -> bool {
        match self {
            Mode::Plain => key.is_none(),
            Mode::Aes128 => key.is_some_and(|k| k.bits() == 128),
            Mode::Aes256 => key.is_some_and(|k| k.bits() == 256),
            Mode::Auto => true,
        }
    }
}

/// What the devices of a run send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// NULL link tests only.
    Heartbeat,
    /// ADM-CID alarms only, each distinct.
    Alarm,
    /// 90 % NULL, 6 % CID 602 periodic tests, 3 % alarms (101/100/111), 1 % restores.
    Mixed,
    /// A fleet's steady state: 99 % NULL heartbeats, 1 % alarms (101/100/111).
    Steady,
}

impl Kind {
    /// Label for reports.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Heartbeat => "heartbeat",
            Kind::Alarm => "alarm",
            Kind::Mixed => "mixed",
            Kind::Steady => "steady",
        }
    }
}

/// One simulated device's identity.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Account, upper-case hex.
    pub account: String,
    /// Line prefix written as `L…` (`0` when the registry row leaves it open).
    pub line: String,
    /// Receiver written as `R…`, if any.
    pub receiver: Option<String>,
    /// AES key; `None` sends plain frames.
    pub key: Option<Key>,
}

/// The key of a generated account of `mode`.
fn test_key(mode: Mode) -> anyhow::Result<Option<Key>> {
    Ok(match mode {
        Mode::Plain | Mode::Auto => None,
        Mode::Aes128 => Some(Key::from_hex(TEST_KEY_128)?),
        Mode::Aes256 => Some(Key::from_hex(TEST_KEY_256)?),
    })
}

/// The account number of generated device `i` of `mode` (see the module docs).
#[must_use]
pub fn generated_account(mode: Mode, i: u32) -> String {
    let base = match mode {
        Mode::Plain | Mode::Auto => BASE_PLAIN,
        Mode::Aes128 => BASE_AES128,
        Mode::Aes256 => BASE_AES256,
    };
    format!("{:X}", base + i)
}

/// `n` device identities: the first `n` rows of `file` that fit `mode` (default `auto`), or
/// generated accounts of `mode` (default `plain`).
///
/// # Errors
/// A file that is not a devices CSV of vakt's (see [`registry::read_devices`]), too few fitting
/// rows, `--mode auto` without a file, or more than [`MAX_GENERATED`] devices.
pub fn identities(
    n: usize,
    mode: Option<Mode>,
    file: Option<&Path>,
) -> anyhow::Result<Vec<Identity>> {
    match file {
        Some(path) => {
            let mode = mode.unwrap_or(Mode::Auto);
            let f = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let devices = registry::read_devices(std::io::BufReader::new(f))
                .with_context(|| format!("{} is not a valid devices CSV", path.display()))?;
            let total = devices.len();
            let ids: Vec<Identity> = devices
                .into_iter()
                .filter(|d| mode.accepts(d.key.as_ref()))
                .take(n)
                .map(|d| Identity {
                    account: d.account,
                    line: d.line.unwrap_or_else(|| "0".to_string()),
                    receiver: d.receiver,
                    key: d.key,
                })
                .collect();
            anyhow::ensure!(
                ids.len() == n,
                "{} has {} device(s) for --mode {} ({total} rows in all); {n} are needed",
                path.display(),
                ids.len(),
                mode.as_str()
            );
            Ok(ids)
        }
        None => {
            let mode = mode.unwrap_or(Mode::Plain);
            anyhow::ensure!(mode != Mode::Auto, "--mode auto needs --accounts-file");
            let count = u32::try_from(n).ok().filter(|&c| c <= MAX_GENERATED);
            let Some(count) = count else {
                anyhow::bail!("at most {MAX_GENERATED} generated devices");
            };
            let key = test_key(mode)?;
            Ok((0..count)
                .map(|i| Identity {
                    account: generated_account(mode, i),
                    line: "0".to_string(),
                    receiver: None,
                    key: key.clone(),
                })
                .collect())
        }
    }
}

/// The counter space: seq (10⁴) × group (10²) × zone (10³).
const COUNTER_SPACE: u64 = 1_000_000_000;

/// Contact ID event codes of alarms (101 personal emergency, 100 medical, 111 smoke).
const ALARM_CODES: [u16; 3] = [101, 100, 111];

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    /// NULL link test.
    Null,
    /// ADM-CID `Q EEE`: qualifier and event code.
    Cid(u8, u16),
}

/// Builds a device's frames into a caller's buffer (no allocation for plain frames).
pub struct FrameGen {
    id: Identity,
    counter: u64,
    rng: SmallRng,
    data: Vec<u8>,
}

impl FrameGen {
    /// A generator for `id`, its counter starting at a random point.
    #[must_use]
    pub fn new(id: Identity) -> FrameGen {
        let mut rng = SmallRng::from_rng(&mut rand::rng());
        let counter = rng.random_range(0..COUNTER_SPACE);
        FrameGen {
            id,
            counter,
            rng,
            data: Vec::with_capacity(64),
        }
    }

    /// The device's identity.
    #[must_use]
    pub fn identity(&self) -> &Identity {
        &self.id
    }

    /// What the next frame of `kind` carries (draws the mix for [`Kind::Mixed`]).
    pub fn pick(&mut self, kind: Kind) -> Content {
        match kind {
            Kind::Heartbeat => Content::Null,
            Kind::Alarm => Content::Cid(1, alarm_code(self.counter)),
            Kind::Mixed => match self.rng.random_range(0..100u8) {
                0..90 => Content::Null,
                90..96 => Content::Cid(1, 602),
                96..99 => Content::Cid(1, alarm_code(self.counter)),
                _ => Content::Cid(3, alarm_code(self.counter)),
            },
            Kind::Steady => match self.rng.random_range(0..100u8) {
                0..99 => Content::Null,
                _ => Content::Cid(1, alarm_code(self.counter)),
            },
        }
    }

    /// Appends the next frame (carrying `content`) to `out` and returns its sequence number.
    /// Advances the counter, so the next frame differs.
    pub fn next(&mut self, content: Content, out: &mut Vec<u8>) -> u16 {
        let seq = self.current(content, out);
        self.advance();
        seq
    }

    /// Appends the frame at the current counter without advancing: called again, it builds
    /// the same frame (same seq and data; a fresh pad and timestamp when encrypted), as a
    /// device resending an alarm that was not ACKed.
    pub fn current(&mut self, content: Content, out: &mut Vec<u8>) -> u16 {
        self.encode(content, out)
    }

    /// Moves on to the next frame.
    pub fn advance(&mut self) {
        self.counter = (self.counter + 1) % COUNTER_SPACE;
    }

    fn encode(&mut self, content: Content, out: &mut Vec<u8>) -> u16 {
        let n = self.counter;
        let seq = u16::try_from(n % 10_000).unwrap_or(0);
        self.data.clear();
        let id = match content {
            Content::Null => "NULL",
            Content::Cid(q, code) => {
                let group = (n / 10_000) % 100;
                let zone = (n / 1_000_000) % 1000;
                // Writing into a Vec cannot fail.
                let _ = write!(
                    self.data,
                    "#{}|{q}{code:03} {group:02} {zone:03}",
                    self.id.account
                );
                "ADM-CID"
            }
        };
        let spec = FrameSpec {
            id,
            seq,
            receiver: self.id.receiver.as_deref(),
            line: Some(&self.id.line),
            account: &self.id.account,
            data: &self.data,
            xdata: &[],
            timestamp: self.id.key.as_ref().map(|_| jiff::Timestamp::now()),
        };
        match &self.id.key {
            Some(key) => dc09::encode_frame_encrypted(&spec, key, Pad::Random(&mut self.rng), out),
            None => dc09::encode_frame(&spec, out),
        }
        seq
    }
}

fn alarm_code(n: u64) -> u16 {
    ALARM_CODES
        .get(usize::try_from(n % 3).unwrap_or(0))
        .copied()
        .unwrap_or(101)
}

/// The 4 ASCII digits of a sequence number.
#[must_use]
pub fn seq_digits(seq: u16) -> [u8; 4] {
    let s = seq % 10_000;
    [
        b'0' + u8::try_from(s / 1000).unwrap_or(0),
        b'0' + u8::try_from(s / 100 % 10).unwrap_or(0),
        b'0' + u8::try_from(s / 10 % 10).unwrap_or(0),
        b'0' + u8::try_from(s % 10).unwrap_or(0),
    ]
}

/// Reads an answer's sequence number (for UDP matching) without judging it.
#[must_use]
pub fn reply_seq(raw: &[u8]) -> Option<u16> {
    let f = dc09::parse(raw).ok()?;
    if f.token == Token::Nak {
        return None;
    }
    f.seq.parse().ok()
}

/// Checks that `raw` is a good ACK for the frame `seq` sent by `id`: parses, CRC valid,
/// `ACK` (or an `*ACK` that decrypts with the key, for an encrypted frame), and echoes the
/// frame's sequence number and account.
///
/// # Errors
/// The [`ErrorKind`] of anything else.
pub fn check_reply(raw: &[u8], seq: u16, id: &Identity) -> Result<(), ErrorKind> {
    match dc09::parse(raw) {
        Ok(frame) => judge(&frame, seq, id),
        Err(ParseError::BadCrc { .. }) => Err(ErrorKind::ReplyBadCrc),
        Err(_) => Err(ErrorKind::ReplyMalformed),
    }
}

fn judge(frame: &dc09::Frame<'_>, seq: u16, id: &Identity) -> Result<(), ErrorKind> {
    match frame.token {
        Token::Ack => {}
        Token::Nak => return Err(ErrorKind::Nak),
        Token::Duh => return Err(ErrorKind::Duh),
        _ => return Err(ErrorKind::UnexpectedReply),
    }
    if frame.seq.as_bytes() != seq_digits(seq) {
        return Err(ErrorKind::WrongSeq);
    }
    if !frame
        .account
        .is_some_and(|a| a.eq_ignore_ascii_case(&id.account))
    {
        return Err(ErrorKind::WrongAccount);
    }
    match (&id.key, frame.encrypted) {
        (None, false) => Ok(()),
        (None, true) => Err(ErrorKind::UnexpectedReply),
        (Some(_), false) => Err(ErrorKind::AckNotEncrypted),
        (Some(key), true) => frame
            .decrypt(key)
            .map(|_| ())
            .map_err(|_| ErrorKind::AckUndecryptable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack_for(raw: &[u8], key: Option<&Key>) -> Vec<u8> {
        let f = dc09::parse(raw).unwrap();
        let mut out = Vec::new();
        match key {
            Some(k) => dc09::encode_ack_encrypted(
                &f,
                k,
                jiff::Timestamp::now(),
                &mut rand::rng(),
                &mut out,
            ),
            None => dc09::encode_ack(&f, &mut out),
        }
        out
    }

    #[test]
    fn generated_frames_parse_and_their_acks_check() {
        for mode in [Mode::Plain, Mode::Aes128, Mode::Aes256] {
            let ids = identities(3, Some(mode), None).unwrap();
            assert_eq!(ids[2].account, generated_account(mode, 2));
            for kind in [Kind::Heartbeat, Kind::Alarm, Kind::Mixed] {
                let mut g = FrameGen::new(ids[1].clone());
                let mut out = Vec::new();
                for _ in 0..20 {
                    out.clear();
                    let c = g.pick(kind);
                    let seq = g.next(c, &mut out);
                    let f = dc09::parse(&out).unwrap();
                    assert_eq!(f.seq.as_bytes(), seq_digits(seq));
                    assert_eq!(f.encrypted, mode != Mode::Plain);
                    if let Some(k) = &ids[1].key {
                        f.decrypt(k).unwrap();
                    }
                    let ack = ack_for(&out, ids[1].key.as_ref());
                    assert!(check_reply(&ack, seq, &ids[1]).is_ok());
                    assert_eq!(
                        check_reply(&ack, (seq + 1) % 10_000, &ids[1]),
                        Err(ErrorKind::WrongSeq)
                    );
                    assert_eq!(
                        check_reply(&ack, seq, &ids[0]),
                        Err(ErrorKind::WrongAccount)
                    );
                }
            }
        }
    }

    #[test]
    fn an_accounts_file_gives_its_rows_of_the_mode_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("devices.csv");
        std::fs::write(
            &path,
            format!(
                "{}\n1234,,,,,,,,\nabcd,2,7,{TEST_KEY_128},hex,,,,\n5678,,,,,,,,\n",
                crate::registry::DEVICES_HEADER_V1
            ),
        )
        .unwrap();
        let plain = identities(2, Some(Mode::Plain), Some(&path)).unwrap();
        let got: Vec<_> = plain
            .iter()
            .map(|i| (i.account.as_str(), i.line.as_str(), i.receiver.is_none()))
            .collect();
        assert_eq!(got, [("1234", "0", true), ("5678", "0", true)]);
        let aes = identities(1, Some(Mode::Aes128), Some(&path)).unwrap();
        assert_eq!(
            (aes[0].account.as_str(), aes[0].line.as_str()),
            ("ABCD", "2")
        );
        assert_eq!(aes[0].receiver.as_deref(), Some("7"));
        assert_eq!(aes[0].key, test_key(Mode::Aes128).unwrap());
        assert_eq!(identities(3, None, Some(&path)).unwrap().len(), 3);
        let e = identities(2, Some(Mode::Aes256), Some(&path)).unwrap_err();
        assert!(
            e.to_string().contains("0 device(s) for --mode aes256"),
            "{e}"
        );
        std::fs::write(&path, "account\n1234\n").unwrap();
        let e = format!("{:#}", identities(1, None, Some(&path)).unwrap_err());
        assert!(e.contains("is not a valid devices CSV"), "{e}");
    }

    #[test]
    fn alarms_are_distinct() {
        let id = identities(1, None, None).unwrap().remove(0);
        let mut g = FrameGen::new(id);
        g.counter = COUNTER_SPACE - 5_000; // across the wrap
        let mut seen = std::collections::HashSet::new();
        for _ in 0..30_000 {
            let mut out = Vec::new();
            let c = g.pick(Kind::Alarm);
            g.next(c, &mut out);
            let f = dc09::parse(&out).unwrap();
            let key = (f.seq.to_string(), f.content().unwrap().data);
            assert!(seen.insert(key), "repeated frame");
        }
    }

    #[test]
    fn nak_duh_and_plain_ack_to_encrypted_are_errors() {
        let ids = identities(1, Some(Mode::Aes128), None).unwrap();
        let mut nak = Vec::new();
        dc09::encode_nak(jiff::Timestamp::now(), &mut nak);
        assert_eq!(check_reply(&nak, 0, &ids[0]), Err(ErrorKind::Nak));
        let mut g = FrameGen::new(ids[0].clone());
        let mut out = Vec::new();
        let seq = g.next(Content::Null, &mut out);
        let f = dc09::parse(&out).unwrap();
        let mut duh = Vec::new();
        dc09::encode_duh(&f, &mut duh);
        assert_eq!(check_reply(&duh, seq, &ids[0]), Err(ErrorKind::Duh));
        let mut plain = Vec::new();
        dc09::encode_ack(&f, &mut plain);
        assert_eq!(
            check_reply(&plain, seq, &ids[0]),
            Err(ErrorKind::AckNotEncrypted)
        );
        let other = Key::from_hex(TEST_KEY_256).unwrap();
        let mut wrong = Vec::new();
        dc09::encode_ack_encrypted(
            &f,
            &other,
            jiff::Timestamp::now(),
            &mut rand::rng(),
            &mut wrong,
        );
        assert_eq!(
            check_reply(&wrong, seq, &ids[0]),
            Err(ErrorKind::AckUndecryptable)
        );
        let mut bad = out.clone();
        bad[1] = if bad[1] == b'0' { b'1' } else { b'0' };
        assert_eq!(check_reply(&bad, seq, &ids[0]), Err(ErrorKind::ReplyBadCrc));
    }
}
