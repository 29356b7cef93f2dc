//! What each DC-09 frame gets: the rules between the codec and the journal.
//!
//! [`Receiver::decide`] is synchronous and never reads the clock (`now` is a parameter): it
//! parses the frame, looks up the device, decrypts, checks the timestamp window, builds the
//! [`Signal`] and says either "answer this now" or "journal this, and answer that once it is
//! durable". The transports do the I/O.
//!
//! | frame | journaled | answer |
//! |---|---|---|
//! | valid event (ADM-CID, SIA-DCS), its DC-09 device (encrypted with its key, or plain when it has none) | yes | ACK / *ACK after the flush |
//! | valid plain event, unknown account | yes, `unknown_device` | ACK after the flush |
//! | plain event naming a device that has a key | yes, `unauthenticated`, no subscriber | DUH after the flush |
//! | event naming a SCAIP device's `cid` | yes, `unknown_device` + `unauthenticated` | DUH after the flush |
//! | encrypted, no key for the account or does not decrypt | yes, `undecryptable` | DUH after the flush |
//! | encrypted, timestamp missing or outside the window | no | NAK with receiver time |
//! | NULL / XNM link test from the device | no (last-heard and supervision move) | ACK / *ACK at once |
//! | plain NULL for a device with a key, NULL naming a SCAIP device | no (counted) | DUH at once |
//! | event whose payload cannot be decoded | yes, `bad_payload` | DUH after the flush |
//! | bad CRC, bad length, unparseable | no | NAK |
//! | other ID (e.g. SIA-PUL) | no | DUH |
//! | a control token (ACK, NAK, DUH, RSP) | no (counted) | none |
//! | retransmission within the dedup window | no (counted) | its first answer again, after the flush |
//!
//! Only a frame that proves its device (decrypted with the device's key, or plain from a
//! device without one) moves the device's last-heard time and supervision deadline: a
//! plain frame naming a keyed device, a DC-09 frame naming a SCAIP device and an
//! undecryptable frame could come from anyone. DUH rather than NAK for them: NAK means "not
//! received correctly, send it again" (the same plain frame would come back forever), DUH
//! "received, not processed", which lets the device try its backup path.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::journal::{Commit, DedupKey, dedup_key};
use crate::model::{Device, Flags, Signal, SignalEvent, Transport, XDataItem};
use crate::registers::devices::{Dc09Device, Devices};
use crate::supervision::LastHeard;
use crate::telemetry::{Metrics, ProtoLabel, ResultLabel};
use vakt_proto::dc09::{self, Frame, Token};
use vakt_proto::payload::decode_payload;

/// Where and when a frame arrived.
#[derive(Clone, Copy, Debug)]
pub struct FrameCtx {
    /// TCP or UDP.
    pub transport: Transport,
    /// The device's address.
    pub peer: SocketAddr,
    /// Receive time (UTC).
    pub now: jiff::Timestamp,
}

/// What to do with one frame.
#[derive(Debug)]
pub enum Decision {
    /// Send `reply` now (nothing if it is empty); nothing is journaled.
    Answer {
        /// The answer bytes (ACK, *ACK, NAK or DUH), or empty for no answer.
        reply: Vec<u8>,
        /// For metrics.
        proto: ProtoLabel,
        /// For metrics.
        result: ResultLabel,
    },
    /// Journal `signal`; once the commit is durable send `reply` (ACK, *ACK or DUH); if the
    /// commit fails send nothing.
    Journal {
        /// The Signal to append (its id is assigned by the journal).
        signal: Box<Signal>,
        /// Retransmission key.
        dedup: Option<DedupKey>,
        /// The answer to send after the flush.
        reply: Vec<u8>,
        /// For metrics.
        proto: ProtoLabel,
        /// ACK, or DUH (undecryptable, unreadable or unauthenticated frames).
        result: ResultLabel,
    },
}

/// Receiver options from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct ReceiverOptions {
    /// How far an encrypted frame's timestamp may lag.
    pub timestamp_past_secs: u64,
    /// How far it may lead.
    pub timestamp_future_secs: u64,
}

/// Who sent a frame, as far as the frame proves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sender {
    /// The registered DC-09 device: encrypted with its key, or plain when it has none.
    Device,
    /// No device has the account, line and receiver.
    Unknown,
    /// It names a registered device without that device's authentication: a plain frame for
    /// a device with a key, or a DC-09 frame for a SCAIP device.
    Unauthenticated,
}

/// A frame's account, line and receiver, upper case.
struct Ids {
    account: String,
    line: Option<String>,
    receiver: Option<String>,
}

/// The DC-09 frame rules.
#[derive(Debug)]
pub struct Receiver {
    registry: Devices,
    last_heard: Arc<LastHeard>,
    supervisor: Option<Arc<crate::supervision::Supervisor>>,
    metrics: Metrics,
    opts: ReceiverOptions,
}

fn proto_label(t: Token) -> ProtoLabel {
    match t {
        Token::Null => ProtoLabel::Null,
        Token::AdmCid => ProtoLabel::AdmCid,
        Token::SiaDcs => ProtoLabel::SiaDcs,
        _ => ProtoLabel::Other,
    }
}

/// Parses a DC-09 time (`HH:MM:SS,MM-DD-YYYY`, UTC), as carried by the xdata `H` block.
pub fn parse_dc09_time(v: &[u8]) -> Option<jiff::Timestamp> {
    let s = std::str::from_utf8(v).ok()?;
    let dt = jiff::fmt::strtime::parse("%H:%M:%S,%m-%d-%Y", s.trim())
        .ok()?
        .to_datetime()
        .ok()?;
    dt.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

impl Receiver {
    /// Builds the rules over a registry and a last-heard table.
    pub fn new(
        registry: Devices,
        last_heard: Arc<LastHeard>,
        metrics: Metrics,
        opts: ReceiverOptions,
    ) -> Receiver {
        Receiver {
            registry,
            last_heard,
            supervisor: None,
            metrics,
            opts,
        }
    }

    /// Also tells `supervisor` of every device heard (its heartbeat deadline moves).
    pub fn with_supervisor(mut self, supervisor: Arc<crate::supervision::Supervisor>) -> Receiver {
        self.supervisor = Some(supervisor);
        self
    }

    /// The device registry the rules read.
    pub fn registry(&self) -> &Devices {
        &self.registry
    }

    /// A frame (or any authenticated message) proves the device can reach vakt: its
    /// last-heard time and its deadline move.
    pub fn heard(&self, account: &str, now: jiff::Timestamp) {
        self.last_heard.heard(account, now.as_millisecond());
        if let Some(s) = &self.supervisor {
            s.heard(account, now);
        }
    }

    /// The metric handles.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Decides what one LF..CR frame gets.
    pub fn decide(&self, raw: &[u8], ctx: &FrameCtx) -> Decision {
        let frame = match dc09::parse(raw) {
            Ok(f) => f,
            Err(e) => return self.nak(ctx.now, ProtoLabel::Invalid, e.as_str()),
        };
        let mut proto = proto_label(frame.token);
        let is_null = match frame.token {
            Token::Null => true,
            Token::AdmCid | Token::SiaDcs => false,
            Token::Other if frame.id == "XNM" => {
                proto = ProtoLabel::Null;
                true
            }
            // A control token sent to a receiver: answering it could start two receivers
            // answering each other; ignore it (counted).
            Token::Ack | Token::Nak | Token::Duh | Token::Rsp => {
                self.metrics.ignored("control_token");
                return Decision::Answer {
                    reply: Vec::new(),
                    proto,
                    result: ResultLabel::Dropped,
                };
            }
            Token::Other => return self.duh(&frame, proto, "unsupported_id"),
        };
        let Some(account_raw) = frame.account else {
            return self.duh(&frame, proto, "no_account");
        };
        let account = account_raw.to_ascii_uppercase();
        let line = frame.line.map(str::to_ascii_uppercase);
        let receiver = frame.receiver.map(str::to_ascii_uppercase);
        let registry = self.registry.current();
        // A SCAIP device's cid named in a DC-09 frame is not that device (it speaks SCAIP
        // with SIP Digest only): no device, and the frame is unauthenticated.
        let (device, foreign) = match registry.dc09(&account, line.as_deref(), receiver.as_deref())
        {
            Dc09Device::Device(d) => (Some(d), false),
            Dc09Device::Scaip => (None, true),
            Dc09Device::Unknown => (None, false),
        };

        let key = device.and_then(|d| d.key.as_ref());
        let content = if frame.encrypted {
            let decrypted = match key {
                None => Err("no_key"),
                Some(k) => frame.decrypt(k).map_err(|e| e.as_str()),
            };
            match decrypted {
                // A timestamp is required to decrypt, so it is there.
                Ok(c) => match c.timestamp {
                    Some(ts)
                        if dc09::within_window(
                            ts,
                            ctx.now,
                            self.opts.timestamp_past_secs,
                            self.opts.timestamp_future_secs,
                        ) =>
                    {
                        c
                    }
                    _ => return self.nak(ctx.now, proto, "timestamp"),
                },
                // No key, or it does not decrypt (wrong key, garbage, no timestamp): keep
                // the raw frame for an operator and answer DUH so the device may try its
                // backup receiver.
                Err(reason) => {
                    let ids = Ids {
                        account,
                        line,
                        receiver,
                    };
                    return self.undecryptable(&frame, ctx, proto, reason, ids, device, foreign);
                }
            }
        } else {
            match frame.content() {
                Ok(c) => c,
                Err(e) => return self.nak(ctx.now, proto, e.as_str()),
            }
        };

        // Only the device itself moves its last-heard time and supervision: a device with a
        // key proves itself by it, so a plain frame naming it may come from anyone.
        let sender = match device {
            _ if foreign => Sender::Unauthenticated,
            None => Sender::Unknown,
            Some(d) if d.key.is_some() && !frame.encrypted => Sender::Unauthenticated,
            Some(_) => Sender::Device,
        };
        match sender {
            Sender::Device => self.heard(&account, ctx.now),
            // An account no device has (with any line, receiver or protocol): its last-heard
            // time can hide no device's silence.
            Sender::Unknown if !registry.has_account(&account) => {
                self.last_heard.heard(&account, ctx.now.as_millisecond());
            }
            Sender::Unknown | Sender::Unauthenticated => {}
        }
        let unauthenticated = sender == Sender::Unauthenticated;
        let mut reply = Vec::with_capacity(128);
        match key {
            _ if unauthenticated => dc09::encode_duh(&frame, &mut reply),
            // Decryption succeeded above, so an encrypted frame has its key here.
            Some(key) if frame.encrypted => {
                dc09::encode_ack_encrypted(&frame, key, ctx.now, &mut rand::rng(), &mut reply)
            }
            _ => dc09::encode_ack(&frame, &mut reply),
        }

        if is_null {
            if unauthenticated {
                // Not journaled (a NULL carries no event), counted, and never a heartbeat.
                self.metrics.duh("unauthenticated");
                return Decision::Answer {
                    reply,
                    proto,
                    result: ResultLabel::Duh,
                };
            }
            self.metrics.heartbeat(ctx.transport);
            return Decision::Answer {
                reply,
                proto,
                result: ResultLabel::Ack,
            };
        }

        let mut flags = Flags {
            unknown_device: device.is_none(),
            length_decimal: frame.length_decimal,
            unauthenticated,
            ..Flags::default()
        };
        let mut result = ResultLabel::Ack;
        if unauthenticated {
            // Debug only: anyone can send these; the Signal and vakt_duh_total tell of them.
            tracing::debug!(account = %account, peer = %ctx.peer, "frame names a device without its authentication; journaled flagged, answered DUH");
            self.metrics.duh("unauthenticated");
            result = ResultLabel::Duh;
        }
        let events = match decode_payload(frame.token, &content.data) {
            Ok(p) => p.events.iter().map(SignalEvent::from_codec).collect(),
            Err(e) => {
                // An ACK would tell the device its alarm was processed, and it would never
                // try its backup path: journaled for an operator, answered DUH.
                tracing::debug!(account = %account, error = %e, "payload not decoded; journaled for an operator");
                flags.bad_payload = true;
                if !unauthenticated {
                    self.metrics.duh("bad_payload");
                    reply.clear();
                    dc09::encode_duh(&frame, &mut reply);
                    result = ResultLabel::Duh;
                }
                Vec::new()
            }
        };
        let mut key_parts: Vec<&[u8]> = Vec::with_capacity(7 + 2 * content.xdata.len());
        key_parts.extend([
            account.as_bytes(),
            line.as_deref().unwrap_or("").as_bytes(),
            receiver.as_deref().unwrap_or("").as_bytes(),
            frame.seq.as_bytes(),
            frame.id.as_bytes(),
            &content.data,
        ]);
        for x in &content.xdata {
            key_parts.push(std::slice::from_ref(&x.letter));
            key_parts.push(&x.value);
        }
        // A plain copy never stands for the device's own frame: without this, a spoofed frame
        // sent first would make the genuine one a "retransmission".
        if unauthenticated {
            key_parts.push(b"unauthenticated");
        }
        let dedup = dedup_key(&key_parts);
        let ids = Ids {
            account,
            line,
            receiver,
        };
        // Not the subscriber's verified alarm: no subscriber, no device type.
        let attributed = device.filter(|_| !unauthenticated);
        let mut signal = self.signal(&frame, ctx, ids, attributed, flags);
        signal.transmitted_at = content.timestamp;
        signal.event_time = content
            .xdata
            .iter()
            .find(|x| x.letter == b'H')
            .and_then(|x| parse_dc09_time(&x.value));
        signal.events = events;
        signal.xdata = content
            .xdata
            .iter()
            .map(|x| XDataItem {
                letter: char::from(x.letter),
                value: String::from_utf8_lossy(&x.value).into_owned(),
            })
            .collect();
        Decision::Journal {
            signal: Box::new(signal),
            dedup: Some(dedup),
            reply,
            proto,
            result,
        }
    }

    /// Journals an encrypted frame that could not be read, flagged `undecryptable`; DUH
    /// after the flush. It proves nothing about its sender, so supervision does not move.
    /// `foreign`: it names a SCAIP device's cid.
    #[allow(clippy::too_many_arguments)]
    fn undecryptable(
        &self,
        frame: &Frame<'_>,
        ctx: &FrameCtx,
        proto: ProtoLabel,
        reason: &'static str,
        ids: Ids,
        device: Option<&Device>,
        foreign: bool,
    ) -> Decision {
        self.metrics.duh(reason);
        let mut reply = Vec::with_capacity(48);
        dc09::encode_duh(frame, &mut reply);
        // Retransmissions carry the same ciphertext, or a new pad and time: keyed on the
        // ciphertext, a re-encrypted copy is journaled again, which is the safe side.
        let dedup = dedup_key(&[
            ids.account.as_bytes(),
            ids.line.as_deref().unwrap_or("").as_bytes(),
            ids.receiver.as_deref().unwrap_or("").as_bytes(),
            frame.seq.as_bytes(),
            frame.id.as_bytes(),
            frame.body,
        ]);
        let flags = Flags {
            unknown_device: device.is_none(),
            undecryptable: true,
            length_decimal: frame.length_decimal,
            unauthenticated: foreign,
            ..Flags::default()
        };
        let signal = self.signal(frame, ctx, ids, device, flags);
        Decision::Journal {
            signal: Box::new(signal),
            dedup: Some(dedup),
            reply,
            proto,
            result: ResultLabel::Duh,
        }
    }

    fn signal(
        &self,
        frame: &Frame<'_>,
        ctx: &FrameCtx,
        ids: Ids,
        device: Option<&Device>,
        flags: Flags,
    ) -> Signal {
        let Ids {
            account,
            line,
            receiver,
        } = ids;
        Signal {
            id: 0,
            received_at: ctx.now,
            transport: ctx.transport,
            peer: ctx.peer,
            protocol: frame.id.to_owned(),
            encrypted: frame.encrypted,
            account,
            line,
            receiver,
            seq: frame.seq.to_owned(),
            flags,
            subscriber: device.and_then(|d| d.subscriber.clone()),
            device_type: device.and_then(|d| d.device_type.clone()),
            transmitted_at: None,
            event_time: None,
            events: Vec::new(),
            xdata: Vec::new(),
            raw: frame.raw.to_vec(),
            scaip: None,
        }
    }

    /// A run of bytes too long to be a frame: NAK with receiver time (counted `too_long`).
    pub fn oversized(&self, now: jiff::Timestamp) -> Decision {
        self.nak(now, ProtoLabel::Invalid, "too_long")
    }

    fn nak(&self, now: jiff::Timestamp, proto: ProtoLabel, reason: &'static str) -> Decision {
        self.metrics.nak(reason);
        let mut reply = Vec::with_capacity(48);
        dc09::encode_nak(now, &mut reply);
        Decision::Answer {
            reply,
            proto,
            result: ResultLabel::Nak,
        }
    }

    fn duh(&self, frame: &Frame<'_>, proto: ProtoLabel, reason: &'static str) -> Decision {
        self.metrics.duh(reason);
        let mut reply = Vec::with_capacity(48);
        dc09::encode_duh(frame, &mut reply);
        Decision::Answer {
            reply,
            proto,
            result: ResultLabel::Duh,
        }
    }

    /// Counts a frame whose journal outcome is known. Returns whether its answer may be sent.
    pub fn committed(
        &self,
        transport: Transport,
        proto: ProtoLabel,
        result: ResultLabel,
        commit: Commit,
    ) -> bool {
        match commit {
            Commit::Stored(_) => {
                self.metrics.frame(transport, proto, result);
                true
            }
            Commit::Duplicate(_) => {
                self.metrics.duplicate(transport);
                self.metrics.frame(transport, proto, ResultLabel::Duplicate);
                true
            }
            Commit::Failed => {
                self.metrics.frame(transport, proto, ResultLabel::Dropped);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registers::devices::{CSV_HEADER, Registry, parse_csv};
    use crate::supervision::{SupervisionOptions, Supervisor};
    use vakt_proto::crypto::Key;
    use vakt_proto::dc09::{FrameSpec, Pad};

    const KEY: &str = "000102030405060708090A0B0C0D0E0F";

    /// 5678 has an AES key, 1234 has none, cid 678 is a SCAIP pendant; all supervised 90 s.
    fn setup() -> (
        Receiver,
        Arc<Supervisor>,
        Arc<LastHeard>,
        Registry,
        jiff::Timestamp,
    ) {
        let csv = format!(
            "{CSV_HEADER}\n5678,,,{KEY},hex,bertil,90,,,,,\n1234,,,,,anna,90,,,,,\n678,,,,,cecilia,90,,,pendant,luc678,pw\n"
        );
        let registry = Registry::new(parse_csv(csv.as_bytes()).unwrap());
        let devices: Vec<Device> = registry.iter().cloned().collect();
        let t0: jiff::Timestamp = "2025-03-01T10:00:00Z".parse().unwrap();
        // As the server does: the supervisor keeps last-heard to the registry.
        let last_heard = Arc::new(LastHeard::new());
        let sup = Arc::new(
            Supervisor::new(SupervisionOptions::default()).with_last_heard(last_heard.clone()),
        );
        sup.sync(&devices, |_| None, t0);
        let rx = Receiver::new(
            Devices::new(registry.clone()),
            last_heard.clone(),
            Metrics::new(),
            ReceiverOptions {
                timestamp_past_secs: 40,
                timestamp_future_secs: 20,
            },
        )
        .with_supervisor(sup.clone());
        (rx, sup, last_heard, registry, t0)
    }

    fn frame(
        id: &str,
        account: &str,
        data: &str,
        key: Option<&Key>,
        ts: jiff::Timestamp,
    ) -> Vec<u8> {
        let spec = FrameSpec {
            id,
            seq: 7,
            receiver: None,
            line: Some("0"),
            account,
            data: data.as_bytes(),
            xdata: &[],
            timestamp: Some(ts),
        };
        let mut out = Vec::new();
        match key {
            None => dc09::encode_frame(&spec, &mut out),
            Some(k) => dc09::encode_frame_encrypted(&spec, k, Pad::Fixed(b'P'), &mut out),
        }
        out
    }

    fn ctx(now: jiff::Timestamp) -> FrameCtx {
        FrameCtx {
            transport: Transport::Tcp,
            peer: "192.0.2.9:4000".parse().unwrap(),
            now,
        }
    }

    /// The answer's token and whether it was journaled (with the Signal).
    fn answer(d: &Decision) -> (String, Option<&Signal>) {
        let (reply, signal) = match d {
            Decision::Answer { reply, .. } => (reply, None),
            Decision::Journal { reply, signal, .. } => (reply, Some(&**signal)),
        };
        let f = dc09::parse(reply).unwrap();
        let star = if f.encrypted { "*" } else { "" };
        (format!("{star}{}", f.id), signal)
    }

    fn restored(sup: &Supervisor, at: jiff::Timestamp) -> Vec<String> {
        sup.poll(at)
            .restored
            .into_iter()
            .map(|s| s.account)
            .collect()
    }

    #[test]
    fn only_the_device_itself_restores_a_silent_device() {
        let (rx, sup, last_heard, _, t0) = setup();
        let key = Key::from_hex(KEY).unwrap();
        // All three fall silent (90 s + 60 s grace).
        let t = t0 + jiff::SignedDuration::from_secs(200);
        let mut silent: Vec<String> = sup.poll(t).silent.into_iter().map(|s| s.account).collect();
        silent.sort();
        assert_eq!(silent, ["1234", "5678", "678"]);

        // Spoofed: a plain NULL for the keyed device, a NULL and an alarm naming the SCAIP
        // cid, an undecryptable frame for the keyed device. None restores anything.
        let t = t + jiff::SignedDuration::from_secs(10);
        let wrong = Key::from_hex("0F0E0D0C0B0A09080706050403020100").unwrap();
        for (f, token) in [
            (frame("NULL", "5678", "", None, t), "DUH"),
            (frame("NULL", "678", "", None, t), "DUH"),
            (frame("ADM-CID", "678", "#678|1101 01 001", None, t), "DUH"),
            (
                frame("ADM-CID", "5678", "#5678|1101 01 001", None, t),
                "DUH",
            ),
            (frame("NULL", "5678", "", Some(&wrong), t), "DUH"),
        ] {
            let d = rx.decide(&f, &ctx(t));
            assert_eq!(answer(&d).0, token, "{}", String::from_utf8_lossy(&f));
        }
        assert_eq!(restored(&sup, t), Vec::<String>::new());
        assert_eq!(last_heard.get("5678"), None);
        assert_eq!(last_heard.get("678"), None);

        // The plain alarm naming the keyed device is journaled flagged, not as bertil's.
        let f = frame("ADM-CID", "5678", "#5678|1101 01 001", None, t);
        let d = rx.decide(&f, &ctx(t));
        let (_, signal) = answer(&d);
        let s = signal.expect("journaled");
        assert!(
            s.flags.unauthenticated && !s.flags.unknown_device,
            "{:?}",
            s.flags
        );
        assert_eq!((s.subscriber.as_deref(), s.events.len()), (None, 1));

        // The devices themselves: the keyed one encrypted, the plain one plain.
        let t = t + jiff::SignedDuration::from_secs(10);
        let d = rx.decide(&frame("NULL", "5678", "", Some(&key), t), &ctx(t));
        assert_eq!(answer(&d).0, "*ACK");
        let d = rx.decide(&frame("NULL", "1234", "", None, t), &ctx(t));
        assert_eq!(answer(&d).0, "ACK");
        let mut back = restored(&sup, t);
        back.sort();
        assert_eq!(back, ["1234", "5678"]);
        assert_eq!(last_heard.get("5678"), Some(t.as_millisecond()));
    }

    #[test]
    fn unreadable_payloads_get_duh_after_the_flush() {
        let (rx, _, _, _, t0) = setup();
        let key = Key::from_hex(KEY).unwrap();
        for f in [
            frame("ADM-CID", "1234", "#1234|garbage", None, t0),
            frame("SIA-DCS", "5678", "#5678|??", Some(&key), t0),
            frame("ADM-CID", "9999", "#9999|garbage", None, t0),
        ] {
            let d = rx.decide(&f, &ctx(t0));
            let Decision::Journal { result, .. } = &d else {
                panic!("journaled: {d:?}");
            };
            assert_eq!(*result, ResultLabel::Duh);
            let (token, signal) = answer(&d);
            assert_eq!(token, "DUH");
            assert!(signal.unwrap().flags.bad_payload);
        }
        // A readable payload from an unknown account is still accepted for an operator.
        let d = rx.decide(
            &frame("ADM-CID", "9999", "#9999|1101 01 001", None, t0),
            &ctx(t0),
        );
        assert_eq!(answer(&d).0, "ACK");
    }

    #[test]
    fn a_spoofed_copy_never_dedups_the_genuine_frame() {
        let (rx, _, _, _, t0) = setup();
        let key = Key::from_hex(KEY).unwrap();
        let dedup = |f: &[u8]| match rx.decide(f, &ctx(t0)) {
            Decision::Journal { dedup, .. } => dedup.unwrap(),
            d => panic!("{d:?}"),
        };
        let plain = dedup(&frame("ADM-CID", "5678", "#5678|1101 01 001", None, t0));
        let genuine = dedup(&frame(
            "ADM-CID",
            "5678",
            "#5678|1101 01 001",
            Some(&key),
            t0,
        ));
        assert_ne!(plain, genuine);
    }
}
