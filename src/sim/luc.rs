//! A SCAIP device (a "local unit and controller", LUC) speaking to vakt over SIP: it sends
//! `<mrq>` bodies in MESSAGE requests, answers Digest challenges, and answers vakt's own
//! MESSAGE carrying the `<mrs>` with `200 OK`, matching it to its request by `ref`. Like
//! PJSIP (inside many alarm units) it answers `481` to a MESSAGE with a To tag, which would
//! name a dialog it does not have, so the demo and the tests see what such units see. The demo's SCAIP homes, the crash test and
//! the integration tests use it. One request at a time; no clock but timeouts.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use vakt_proto::scaip::{self, Mrs};
use vakt_proto::sip::{self, StartLine};

/// How long to wait for each answer from vakt.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The Request-URI and Digest `uri` the device uses.
const ARC_URI: &str = "sip:arc@vakt";

/// What went wrong talking to vakt.
#[derive(Debug, thiserror::Error)]
pub enum LucError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// vakt did not answer in time.
    #[error("no answer within {}s", ANSWER_TIMEOUT.as_secs())]
    Timeout,
    /// vakt closed the connection.
    #[error("connection closed")]
    Closed,
    /// vakt sent something a device cannot use.
    #[error("unexpected from vakt: {0}")]
    Protocol(String),
}

/// A byte stream (TCP, or TLS over it).
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

enum Link {
    Udp(UdpSocket, SocketAddr),
    Stream(Pin<Box<dyn Stream>>, Vec<u8>, &'static str),
}

/// A final answer to one MESSAGE, and the `<mrs>` that followed a `200`.
#[derive(Debug)]
pub struct Exchange {
    /// The SIP status of vakt's answer to the MESSAGE.
    pub code: u16,
    /// The `<mrs>` vakt sent after the `200`.
    pub mrs: Option<Mrs>,
}

/// A SCAIP device.
pub struct Luc {
    link: Link,
    user: String,
    password: String,
    cseq: u32,
    from_tag: String,
    call_id: String,
    nc: u32,
    /// The last challenge, (realm, nonce); set it to send made-up credentials.
    pub challenge: Option<(String, String)>,
}

impl std::fmt::Debug for Luc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password is left out.
        f.debug_struct("Luc")
            .field("user", &self.user)
            .field("transport", &self.transport())
            .finish_non_exhaustive()
    }
}

/// `name=value` or `name="value"` of a challenge.
fn param(h: &str, name: &str) -> Option<String> {
    let mut rest = h;
    loop {
        let i = rest.find(name)?;
        let before = rest[..i].chars().last();
        let after = &rest[i + name.len()..];
        rest = after;
        if !matches!(before, None | Some(' ' | ',')) {
            continue;
        }
        let Some(v) = after.trim_start().strip_prefix('=') else {
            continue;
        };
        let v = v.trim_start();
        return Some(match v.strip_prefix('"') {
            Some(q) => q.split('"').next()?.to_owned(),
            None => v.split([',', ' ']).next()?.to_owned(),
        });
    }
}

impl Luc {
    /// A device on a UDP socket of its own, sending to `server`.
    pub async fn udp(server: SocketAddr, user: &str, password: &str) -> Result<Luc, LucError> {
        let bind: SocketAddr = if server.is_ipv4() {
            ([127, 0, 0, 1], 0).into()
        } else {
            (std::net::Ipv6Addr::LOCALHOST, 0).into()
        };
        let s = UdpSocket::bind(bind).await?;
        Ok(Luc::new(Link::Udp(s, server), user, password))
    }

    /// A device with a TCP connection to `server`.
    pub async fn tcp(server: SocketAddr, user: &str, password: &str) -> Result<Luc, LucError> {
        let s = TcpStream::connect(server).await?;
        let _ = s.set_nodelay(true);
        Ok(Luc::stream(s, "TCP", user, password))
    }

    /// A device over an established stream; `transport` is its Via name (`TCP`, `TLS`).
    pub fn stream(
        s: impl Stream + 'static,
        transport: &'static str,
        user: &str,
        password: &str,
    ) -> Luc {
        Luc::new(
            Link::Stream(Box::pin(s), Vec::new(), transport),
            user,
            password,
        )
    }

    fn new(link: Link, user: &str, password: &str) -> Luc {
        Luc {
            link,
            user: user.into(),
            password: password.into(),
            cseq: 1,
            from_tag: sip::random_token(8),
            call_id: sip::random_token(12),
            nc: 0,
            challenge: None,
        }
    }

    /// The Call-ID of this device's requests.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The device's own address: its UDP socket's (`None` over a stream, whose socket is
    /// wrapped).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.link {
            Link::Udp(s, _) => s.local_addr().ok(),
            Link::Stream(..) => None,
        }
    }

    /// The Via transport name: `UDP`, `TCP` or `TLS`.
    pub fn transport(&self) -> &'static str {
        match &self.link {
            Link::Udp(..) => "UDP",
            Link::Stream(_, _, t) => t,
        }
    }

    /// Sends raw bytes to vakt.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), LucError> {
        match &mut self.link {
            Link::Udp(s, to) => {
                s.send_to(bytes, *to).await?;
            }
            Link::Stream(s, _, _) => s.write_all(bytes).await?,
        }
        Ok(())
    }

    /// The next SIP message from vakt.
    pub async fn recv(&mut self) -> Result<Vec<u8>, LucError> {
        let fut = async {
            match &mut self.link {
                Link::Udp(s, _) => {
                    let mut buf = vec![0u8; sip::MAX_MESSAGE_BYTES + 1];
                    let (n, _) = s.recv_from(&mut buf).await?;
                    buf.truncate(n);
                    Ok(buf)
                }
                Link::Stream(s, buf, _) => loop {
                    match sip::scan(buf) {
                        sip::Scan::Message { len } => {
                            let m = buf[..len].to_vec();
                            buf.drain(..len);
                            return Ok(m);
                        }
                        sip::Scan::KeepAlive { n, .. } => {
                            buf.drain(..n);
                        }
                        sip::Scan::Incomplete => {
                            let mut chunk = [0u8; 4096];
                            let n = s.read(&mut chunk).await?;
                            if n == 0 {
                                return Err(LucError::Closed);
                            }
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        sip::Scan::Invalid(e) => {
                            return Err(LucError::Protocol(format!("bad stream: {e}")));
                        }
                    }
                },
            }
        };
        tokio::time::timeout(ANSWER_TIMEOUT, fut)
            .await
            .map_err(|_| LucError::Timeout)?
    }

    /// A request from this device (a new CSeq and branch each time), with `auth` as its
    /// `Authorization` value if given.
    pub fn message(&mut self, method: &str, body: &[u8], auth: Option<String>) -> Vec<u8> {
        let transport = self.transport();
        let mut req = format!(
            "{method} {ARC_URI} SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:5999;branch=z9hG4bK{};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{}@vakt>;tag={}\r\nTo: <{ARC_URI}>\r\nCall-ID: {}\r\nCSeq: {} {method}\r\nUser-Agent: vakt-luc\r\n",
            sip::random_token(12),
            self.user,
            self.from_tag,
            self.call_id,
            self.cseq,
        );
        self.cseq += 1;
        if let Some(a) = auth {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        if !body.is_empty() {
            req.push_str(&format!("Content-Type: {}\r\n", scaip::CONTENT_TYPE));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut out = req.into_bytes();
        out.extend_from_slice(body);
        out
    }

    /// Digest credentials for the last challenge (qop auth, the nonce count going up).
    pub fn authorization(&mut self, method: &str) -> Option<String> {
        let (realm, nonce) = self.challenge.clone()?;
        self.nc += 1;
        let nc = format!("{:08x}", self.nc);
        let ha1 = sip::ha1(&self.user, &realm, &self.password);
        let cnonce = sip::random_token(8);
        let response = sip::digest_response(
            &ha1,
            &nonce,
            Some(&nc),
            Some(&cnonce),
            Some("auth"),
            method,
            ARC_URI,
        );
        Some(format!(
            "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{ARC_URI}\", response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\"",
            self.user
        ))
    }

    /// Sends `body` in a MESSAGE, answering one challenge, and returns vakt's final answer
    /// and, after a `200`, the `<mrs>` of vakt's MESSAGE (answered `200`).
    pub async fn mrq(&mut self, body: &str) -> Result<Exchange, LucError> {
        let mut challenged = false;
        loop {
            let auth = self.authorization("MESSAGE");
            let req = self.message("MESSAGE", body.as_bytes(), auth);
            self.send(&req).await?;
            let code = loop {
                let raw = self.recv().await?;
                let msg = sip::parse(&raw).map_err(|e| LucError::Protocol(e.to_string()))?;
                match msg.start {
                    StartLine::Response { code, .. } if code >= 200 => {
                        if code == 401 {
                            let h = msg.header("WWW-Authenticate").unwrap_or("");
                            match (param(h, "realm"), param(h, "nonce")) {
                                (Some(r), Some(n)) => self.challenge = Some((r, n)),
                                _ => return Err(LucError::Protocol(format!("challenge {h:?}"))),
                            }
                        }
                        break code;
                    }
                    StartLine::Response { .. } => {}
                    // A retransmission of vakt's earlier MESSAGE: answer it again.
                    StartLine::Request { .. } => self.answer_request(&msg).await?,
                }
            };
            // Challenged (first contact, or a nonce grown stale): once more with credentials.
            if code == 401 && !challenged {
                challenged = true;
                continue;
            }
            if code != 200 {
                return Ok(Exchange { code, mrs: None });
            }
            let mrs = self
                .await_mrs_for(scaip::sniff_ref(body.as_bytes()).as_deref())
                .await?;
            return Ok(Exchange {
                code,
                mrs: Some(mrs),
            });
        }
    }

    /// `481` for a request with a To tag (this device has no dialog), else `200`.
    async fn answer_request(&mut self, msg: &sip::Message<'_>) -> Result<(), LucError> {
        if msg.to_tag().is_none() {
            return self.confirm(msg).await;
        }
        let mut no_dialog = Vec::new();
        sip::encode_response(
            msg,
            481,
            "Call/Transaction Does Not Exist",
            "",
            &[],
            None,
            b"",
            &mut no_dialog,
        );
        self.send(&no_dialog).await
    }

    async fn confirm(&mut self, msg: &sip::Message<'_>) -> Result<(), LucError> {
        let mut ok = Vec::new();
        sip::encode_response(msg, 200, "OK", "luc", &[], None, b"", &mut ok);
        self.send(&ok).await
    }

    /// The next `<mrs>` vakt sends, whatever its `ref`, confirmed `200`.
    pub async fn await_mrs(&mut self) -> Result<Mrs, LucError> {
        loop {
            if let Some(mrs) = self.next_mrs().await? {
                return Ok(mrs);
            }
        }
    }

    /// vakt's `<mrs>` whose `ref` is `reference` (`None`: a request without a usable `ref`,
    /// answered without one), confirmed `200`. An `<mrs>` for another reference (an answer
    /// to an earlier request, sent again) is confirmed and passed over: a device matches
    /// vakt's answer to its request by `ref` (SS 91100 table 2), never by SIP dialog.
    pub async fn await_mrs_for(&mut self, reference: Option<&str>) -> Result<Mrs, LucError> {
        loop {
            if let Some(mrs) = self.next_mrs().await?
                && mrs.reference.as_deref() == reference
            {
                return Ok(mrs);
            }
        }
    }

    /// The next MESSAGE from vakt: its `<mrs>` once confirmed, or `None` when it was refused
    /// as a strict SIP stack refuses it. vakt's MESSAGE is a request outside any dialog (RFC
    /// 3261 §8.1.1.2): one with a To tag names a dialog this device does not have, and is
    /// answered `481`, as PJSIP does; the device never sees that answer.
    async fn next_mrs(&mut self) -> Result<Option<Mrs>, LucError> {
        let raw = self.recv().await?;
        let msg = sip::parse(&raw).map_err(|e| LucError::Protocol(e.to_string()))?;
        let StartLine::Request { method, .. } = msg.start else {
            return Ok(None);
        };
        if method != "MESSAGE" {
            return Err(LucError::Protocol(format!("{method} from vakt")));
        }
        if msg.to_tag().is_some() {
            self.answer_request(&msg).await?;
            return Ok(None);
        }
        if msg.content_type() != Some(scaip::CONTENT_TYPE) {
            return Err(LucError::Protocol(format!(
                "content type {:?}",
                msg.content_type()
            )));
        }
        let mrs = scaip::parse_mrs(msg.body).map_err(|e| LucError::Protocol(e.to_string()))?;
        self.confirm(&msg).await?;
        Ok(Some(mrs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_params() {
        let h = r#"Digest realm="vakt", nonce="abc,def", algorithm=MD5, qop="auth""#;
        assert_eq!(param(h, "realm").as_deref(), Some("vakt"));
        assert_eq!(param(h, "nonce").as_deref(), Some("abc,def"));
        assert_eq!(param(h, "algorithm").as_deref(), Some("MD5"));
        assert_eq!(param(h, "stale"), None);
    }
}
