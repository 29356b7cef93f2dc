//! vakt's own SIP transactions: the MESSAGE that carries each `<mrs>` back to the device.
//!
//! It is a new request outside any dialog (RFC 3261 §8.1.1, RFC 3428 §4): its own Call-ID,
//! From vakt with a new tag, To the device's address of record without a tag, Request-URI
//! the device's Contact or From; the device matches it to its request by `ref`. Over UDP it
//! is retransmitted (RFC 3261 timer E: 500 ms doubling to 4 s) until a final response, for
//! at most 32 s (timer F); a final response other than 2xx is logged and counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::flow::Flow;
use super::{T1, T2, TRANSACTION};
use crate::telemetry::ScaipMetrics;
use vakt_proto::scaip;
use vakt_proto::sip::{self, Message};

/// The client transactions of vakt's MESSAGEs.
#[derive(Debug)]
pub(super) struct Outgoing {
    /// vakt's SIP URI (From).
    arc_uri: String,
    /// Waiting for their final response, by Via branch.
    pending: Mutex<HashMap<String, oneshot::Sender<u16>>>,
    cseq: AtomicU32,
    metrics: ScaipMetrics,
    /// At shutdown vakt stops waiting for devices to confirm its MESSAGEs.
    shutdown: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Outgoing {
    pub(super) fn new(
        arc_uri: String,
        metrics: ScaipMetrics,
        shutdown: CancellationToken,
    ) -> Outgoing {
        Outgoing {
            arc_uri,
            pending: Mutex::new(HashMap::new()),
            cseq: AtomicU32::new(rand::random::<u32>() % 1_000_000 + 1),
            metrics,
            shutdown,
        }
    }

    /// A response to one of vakt's own MESSAGEs.
    pub(super) fn response(&self, msg: &Message<'_>, code: u16) {
        if code < 200 {
            return;
        }
        let Some(branch) = msg.top_via_branch() else {
            return;
        };
        if let Some(tx) = lock(&self.pending).remove(branch) {
            let _ = tx.send(code);
        }
    }

    /// Sends vakt's MESSAGE with the `<mrs>` and waits for its final response; a final
    /// answer other than 2xx is logged and counted. The outcome (a label of
    /// `vakt_scaip_answers_total`).
    pub(super) async fn send_mrs(
        &self,
        flow: &Flow,
        t: &OutTarget,
        via_host: &str,
        xml: &[u8],
    ) -> &'static str {
        let branch = format!("z9hG4bK{}", sip::random_token(16));
        let peer = flow.peer();
        let from = format!("<{}>", self.arc_uri);
        let mut out = Vec::with_capacity(512 + xml.len());
        sip::encode_request(
            &sip::OutRequest {
                method: "MESSAGE",
                uri: &t.request_uri,
                via_transport: flow.via_transport(),
                via_host,
                branch: &branch,
                from: &from,
                from_tag: &t.from_tag,
                to: &t.to,
                call_id: &t.call_id,
                cseq: self.cseq.fetch_add(1, Ordering::Relaxed),
                content_type: Some(scaip::CONTENT_TYPE),
                body: xml,
            },
            &mut out,
        );
        let (tx, mut rx) = oneshot::channel();
        lock(&self.pending).insert(branch.clone(), tx);
        let deadline = tokio::time::Instant::now() + TRANSACTION;
        let outcome = 'wait: {
            if !flow.send(out.clone()).await {
                break 'wait "send_failed";
            }
            let mut interval = T1;
            loop {
                // Over UDP, retransmit until a final response (timer E); streams are reliable.
                let next = if flow.is_udp() {
                    (tokio::time::Instant::now() + interval).min(deadline)
                } else {
                    deadline
                };
                tokio::select! {
                    r = &mut rx => break 'wait match r {
                        Ok(200..=299) => "delivered",
                        Ok(code) => {
                            // The device's SIP stack refused it (a 481 is a stack that saw a
                            // dialog where there is none): the device never saw its answer.
                            self.metrics.answer_rejected(code);
                            tracing::warn!(
                                status = code,
                                user = %t.user,
                                %peer,
                                call_id = %t.call_id,
                                "the device refused vakt's <mrs> MESSAGE; it did not get its SCAIP answer"
                            );
                            "rejected"
                        }
                        Err(_) => "send_failed",
                    },
                    () = tokio::time::sleep_until(next) => {}
                    // The listeners are closed: a response could no longer be read.
                    () = self.shutdown.cancelled() => break 'wait "timeout",
                }
                if tokio::time::Instant::now() >= deadline {
                    break 'wait "timeout";
                }
                if !flow.send(out.clone()).await {
                    break 'wait "send_failed";
                }
                interval = (interval * 2).min(T2);
            }
        };
        lock(&self.pending).remove(&branch);
        outcome
    }
}

/// Where vakt's `<mrs>` MESSAGE goes and how it is addressed: a new request outside any
/// dialog (RFC 3261 §8.1.1; a MESSAGE creates none, RFC 3428 §4), with a Call-ID and a From
/// tag of its own and no To tag. The device matches it to its `<mrq>` by `ref`.
pub(super) struct OutTarget {
    /// The device's Contact, else its address of record (its From URI).
    pub(super) request_uri: String,
    /// `<address of record>`, no tag.
    pub(super) to: String,
    pub(super) call_id: String,
    pub(super) from_tag: String,
    /// The SIP user the device authenticated as (for the log).
    pub(super) user: String,
}

impl OutTarget {
    /// The `<mrs>` request answering `msg`, authenticated as `user`, from `flow`.
    pub(super) fn for_request(msg: &Message<'_>, user: &str, flow: &Flow) -> OutTarget {
        let is_sip = |u: &&str| {
            u.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("sip:"))
                || u.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("sips:"))
        };
        let aor = msg.from_uri().filter(is_sip).map_or_else(
            || {
                // A From without a SIP URI: the device's user at the address it came from.
                let scheme = match flow {
                    Flow::Stream { tls: true, .. } => "sips",
                    _ => "sip",
                };
                format!("{scheme}:{user}@{}", flow.peer())
            },
            str::to_owned,
        );
        // It goes over the flow the request came on either way; the Request-URI names the
        // device as it asked to be reached.
        let request_uri = msg
            .contact_uri()
            .filter(is_sip)
            .map_or_else(|| aor.clone(), str::to_owned);
        OutTarget {
            request_uri,
            to: format!("<{aor}>"),
            call_id: sip::random_token(24),
            from_tag: sip::random_token(10),
            user: user.to_owned(),
        }
    }
}

/// `host[:port]` of a SIP URI (`sip:user@host:port;params`).
pub(super) fn uri_host(uri: &str) -> Option<&str> {
    let rest = uri.split_once(':')?.1;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = rest.split([';', '?']).next()?;
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    #[test]
    fn the_mrs_is_addressed_outside_any_dialog() {
        let (tx, _rx) = mpsc::channel(1);
        let flow = Flow::Stream {
            tx,
            peer: "192.0.2.7:41000".parse().unwrap(),
            tls: true,
        };
        let with_contact = b"MESSAGE sip:arc@vakt SIP/2.0\r\nVia: SIP/2.0/TLS 10.0.0.5;branch=z9hG4bKa\r\nFrom: \"Anna\" <sip:678@vakt.example>;tag=dev1\r\nTo: <sip:arc@vakt>\r\nCall-ID: dev-call\r\nCSeq: 1 MESSAGE\r\nContact: <sips:678@10.0.0.5:5061;transport=tls>\r\nContent-Length: 0\r\n\r\n";
        let m = sip::parse(with_contact).unwrap();
        let a = OutTarget::for_request(&m, "luc678", &flow);
        let b = OutTarget::for_request(&m, "luc678", &flow);
        assert_eq!(a.request_uri, "sips:678@10.0.0.5:5061;transport=tls");
        assert_eq!(a.to, "<sip:678@vakt.example>");
        assert!(!a.to.contains("tag"));
        assert_ne!(a.call_id, "dev-call");
        assert!(a.call_id != b.call_id && a.from_tag != b.from_tag && a.from_tag != "dev1");
        // Without Contact: the address of record; without a SIP From: the user at the source.
        let plain = String::from_utf8_lossy(with_contact)
            .replace("Contact: <sips:678@10.0.0.5:5061;transport=tls>\r\n", "");
        let m = sip::parse(plain.as_bytes()).unwrap();
        assert_eq!(
            OutTarget::for_request(&m, "luc678", &flow).request_uri,
            "sip:678@vakt.example"
        );
        let tel = plain.replace("\"Anna\" <sip:678@vakt.example>", "<tel:+4670>");
        let m = sip::parse(tel.as_bytes()).unwrap();
        let t = OutTarget::for_request(&m, "luc678", &flow);
        assert_eq!(
            (t.request_uri.as_str(), t.to.as_str()),
            (
                "sips:luc678@192.0.2.7:41000",
                "<sips:luc678@192.0.2.7:41000>"
            )
        );
    }

    #[test]
    fn uri_host_of_request_uris() {
        assert_eq!(uri_host("sip:arc@192.0.2.1:5060"), Some("192.0.2.1:5060"));
        assert_eq!(uri_host("sip:192.0.2.1;transport=tcp"), Some("192.0.2.1"));
        assert_eq!(uri_host("sips:a@[::1]:5061"), Some("[::1]:5061"));
        assert_eq!(uri_host("nonsense"), None);
    }
}
