//! `vakt-loadtest ceiling`: the no-processing limit of this machine, to report vakt's
//! figures as a ratio to.
//!
//! A tokio TCP server with the same LF..CR framing as vakt ([`dc09::scan`]) and a UDP
//! receiver on the same port. Every frame is answered at once with an ACK of the same shape
//! as vakt's, built from a template with the least work that still passes the load
//! client's checks:
//!
//! * the header bytes between the ID's closing `"` and the `[` (sequence number, `R`, `L`,
//!   `#account`) are copied verbatim behind `"ACK"` (or `"*ACK"` for an encrypted frame);
//! * a plain ACK ends with `[]`; an `*ACK` carries a ciphertext made **once at start** with
//!   the `--aes` test key (`pad | ] _timestamp-of-start`), so it decrypts for the generated
//!   accounts of that mode (the load client does not judge the `*ACK` timestamp);
//! * CRC and length are computed over the ~20-byte answer body.
//!
//! Nothing else is done: the frame's own CRC is not checked, nothing is decrypted, parsed,
//! stored or flushed. A frame not in hex-CRC form (no `"` at byte 9, no `[`) gets a fixed
//! NAK. The TCP listen backlog is [`LISTEN_BACKLOG`]. Runs until Ctrl-C or SIGTERM; prints
//! `ceiling listening on ADDR (tcp+udp)` first.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use vakt_proto::crc::crc16_arc;
use vakt_proto::crypto::Key;
use vakt_proto::dc09::{self, FrameSpec, Pad};

use crate::device::{TEST_KEY_128, TEST_KEY_256};
use crate::net;

/// Which test key the ceiling's `*ACK` is encrypted with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AckKey {
    /// `device::TEST_KEY_128` (`dc09 --mode aes128` without an accounts file).
    Aes128,
    /// `device::TEST_KEY_256` (`dc09 --mode aes256` without an accounts file).
    Aes256,
}

/// The precomputed parts of the answers.
pub struct Templates {
    /// Hex ciphertext of the `*ACK` data block (without `[` and CR).
    cipher: Vec<u8>,
    /// A complete NAK frame.
    nak: Vec<u8>,
}

impl Templates {
    /// Builds the templates for `key` with the current time.
    ///
    /// # Errors
    /// Only if the codec's own output does not parse (a bug).
    pub fn new(key: AckKey) -> anyhow::Result<Templates> {
        let key = Key::from_hex(match key {
            AckKey::Aes128 => TEST_KEY_128,
            AckKey::Aes256 => TEST_KEY_256,
        })?;
        let now = jiff::Timestamp::now();
        let spec = FrameSpec {
            id: "NULL",
            seq: 0,
            receiver: None,
            line: Some("0"),
            account: "0000",
            data: b"",
            xdata: &[],
            timestamp: Some(now),
        };
        let mut frame = Vec::new();
        dc09::encode_frame_encrypted(&spec, &key, Pad::Fixed(b'0'), &mut frame);
        let parsed = dc09::parse(&frame).map_err(|e| anyhow::anyhow!("template frame: {e}"))?;
        let mut ack = Vec::new();
        dc09::encode_ack_encrypted(&parsed, &key, now, &mut rand::rng(), &mut ack);
        let open = ack
            .iter()
            .position(|&b| b == b'[')
            .context("template *ACK has no '['")?;
        let cipher = ack
            .get(open + 1..ack.len().saturating_sub(1))
            .context("template *ACK too short")?
            .to_vec();
        let mut nak = Vec::new();
        dc09::encode_nak(now, &mut nak);
        Ok(Templates { cipher, nak })
    }

    /// Appends the answer to one LF..CR `frame` to `out` (see the module docs).
    pub fn answer(&self, frame: &[u8], out: &mut Vec<u8>) {
        let Some((encrypted, header)) = header_of(frame) else {
            out.extend_from_slice(&self.nak);
            return;
        };
        let start = out.len();
        out.extend_from_slice(b"\n00000000");
        let body = out.len();
        out.extend_from_slice(if encrypted { b"\"*ACK\"" } else { b"\"ACK\"" });
        out.extend_from_slice(header);
        out.push(b'[');
        if encrypted {
            out.extend_from_slice(&self.cipher);
        } else {
            out.push(b']');
        }
        let crc = crc16_arc(out.get(body..).unwrap_or_default());
        let len = u16::try_from(out.len() - body).unwrap_or(u16::MAX);
        if let Some(field) = out.get_mut(start + 1..body) {
            put_hex4(field, crc, 0);
            put_hex4(field, len, 4);
        }
        out.push(b'\r');
    }
}

/// `(encrypted, bytes between the ID's closing quote and '[')` of a hex-CRC frame.
fn header_of(frame: &[u8]) -> Option<(bool, &[u8])> {
    if frame.get(9) != Some(&b'"') {
        return None;
    }
    let id = frame.get(10..)?;
    let close = id.iter().take(18).position(|&b| b == b'"')?;
    let after = id.get(close + 1..)?;
    let bracket = after.iter().position(|&b| b == b'[')?;
    let header = after.get(..bracket)?;
    (header.len() >= 4).then_some((id.first() == Some(&b'*'), header))
}

fn put_hex4(field: &mut [u8], v: u16, at: usize) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for i in 0..4 {
        let nibble = usize::from((v >> (12 - 4 * i)) & 0xF);
        if let (Some(slot), Some(&digit)) = (field.get_mut(at + i), HEX.get(nibble)) {
            *slot = digit;
        }
    }
}

/// Binds TCP and UDP on `listen` (UDP on the port TCP got, for `:0`), prints the address,
/// and answers until Ctrl-C or SIGTERM.
///
/// # Errors
/// When a socket cannot be bound.
pub async fn run(listen: &str, key: AckKey) -> anyhow::Result<()> {
    let (addr, frames) = start(listen, key).await?;
    println!("ceiling listening on {addr} (tcp+udp)");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    wait_for_signal().await?;
    eprintln!(
        "ceiling: answered {} frames",
        frames.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Binds and spawns the servers on the current runtime; returns the bound address and the
/// answered-frames counter.
///
/// # Errors
/// When a socket cannot be bound.
pub async fn start(listen: &str, key: AckKey) -> anyhow::Result<(SocketAddr, Arc<AtomicU64>)> {
    let templates = Arc::new(Templates::new(key)?);
    let want = crate::dc09::resolve(listen).await?;
    let tcp = listen_tcp(want).with_context(|| format!("cannot listen on {want} (tcp)"))?;
    let addr = tcp.local_addr()?;
    let udp = UdpSocket::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (udp)"))?;
    let frames = Arc::new(AtomicU64::new(0));
    tokio::spawn(accept_loop(tcp, templates.clone(), frames.clone()));
    tokio::spawn(udp_loop(udp, templates, frames.clone()));
    Ok((addr, frames))
}

/// Listen backlog of the ceiling's TCP socket (Linux's default `somaxconn`). tokio's
/// `TcpListener::bind` uses 128, which a reconnect storm overflows at once.
pub const LISTEN_BACKLOG: u32 = 4096;

fn listen_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn accept_loop(listener: TcpListener, templates: Arc<Templates>, frames: Arc<AtomicU64>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, templates.clone(), frames.clone()));
            }
            // E.g. out of file descriptors: do not spin.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

async fn connection(mut stream: TcpStream, templates: Arc<Templates>, frames: Arc<AtomicU64>) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    loop {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        out.clear();
        let n = net::drain_frames(&mut buf, |raw| templates.answer(raw, &mut out));
        frames.fetch_add(n as u64, Ordering::Relaxed);
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

async fn udp_loop(socket: UdpSocket, templates: Arc<Templates>, frames: Arc<AtomicU64>) {
    let mut buf = vec![0u8; dc09::MAX_FRAME_BYTES + 1024];
    let mut out: Vec<u8> = Vec::with_capacity(256);
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let Some(raw) = net::first_frame(buf.get(..n).unwrap_or_default()) else {
            continue;
        };
        out.clear();
        templates.answer(raw, &mut out);
        frames.fetch_add(1, Ordering::Relaxed);
        let _ = socket.send_to(&out, peer).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{self, Content, FrameGen, Mode, check_reply};

    #[test]
    fn answers_pass_the_client_checks() {
        for (mode, key) in [
            (Mode::Plain, AckKey::Aes128),
            (Mode::Aes128, AckKey::Aes128),
            (Mode::Aes256, AckKey::Aes256),
        ] {
            let t = Templates::new(key).unwrap();
            let id = device::identities(1, Some(mode), None).unwrap().remove(0);
            let mut g = FrameGen::new(id.clone());
            for c in [Content::Null, Content::Cid(1, 101)] {
                let mut frame = Vec::new();
                let seq = g.next(c, &mut frame);
                let mut out = Vec::new();
                t.answer(&frame, &mut out);
                assert_eq!(check_reply(&out, seq, &id), Ok(()), "{mode:?}");
            }
        }
    }

    #[test]
    fn same_bytes_as_vakt_for_a_plain_ack() {
        let t = Templates::new(AckKey::Aes128).unwrap();
        let mut out = Vec::new();
        t.answer(
            b"\n21170027\"ADM-CID\"0001L0#1234[#1234|1101 01 001]\r",
            &mut out,
        );
        assert_eq!(out, b"\n1BC10012\"ACK\"0001L0#1234[]\r");
        out.clear();
        t.answer(b"\ngarbage\r", &mut out);
        assert!(out.starts_with(b"\n") && out.windows(5).any(|w| w == b"\"NAK\""));
    }
}
