//! The DC-09 fleet against a minimal receiver.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;

use super::*;
use crate::registers::devices;
use crate::sim::{ScaipSimOptions, simulate};

fn devices() -> Vec<Device> {
    devices::parse_csv(devices::DEMO_CSV.as_bytes()).unwrap()
}

/// What the fake receiver saw.
#[derive(Default)]
struct Seen {
    /// (account, encrypted, token, data)
    frames: Vec<(String, bool, Token, Vec<u8>)>,
    errors: Vec<String>,
}

/// A minimal DC-09 receiver: checks CRC (parse), decrypts with the demo keys, ACKs.
async fn fake_receiver(listener: TcpListener, seen: Arc<Mutex<Seen>>) {
    let keys: Arc<HashMap<String, Key>> = Arc::new(
        devices()
            .into_iter()
            .filter_map(|d| d.key.map(|k| (d.account, k)))
            .collect(),
    );
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let (seen, keys) = (seen.clone(), keys.clone());
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            loop {
                let Ok(n) = s.read(&mut chunk).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    match dc09::scan(&buf) {
                        Scan::Frame { start, end } => {
                            let raw: Vec<u8> = buf.drain(..end).collect();
                            let reply = answer(&raw[start..], &keys, &seen);
                            if s.write_all(&reply).await.is_err() {
                                return;
                            }
                        }
                        Scan::Skip(n) | Scan::Oversized(n) => {
                            buf.drain(..n);
                        }
                        Scan::Incomplete => break,
                    }
                }
            }
        });
    }
}

fn answer(raw: &[u8], keys: &HashMap<String, Key>, seen: &Mutex<Seen>) -> Vec<u8> {
    let now = jiff::Timestamp::now();
    let mut out = Vec::new();
    let mut seen = seen.lock().unwrap();
    let f = match dc09::parse(raw) {
        Ok(f) => f,
        Err(e) => {
            seen.errors.push(format!("parse: {e}"));
            dc09::encode_nak(now, &mut out);
            return out;
        }
    };
    let account = f.account.unwrap_or_default().to_string();
    let content = if f.encrypted {
        match keys.get(&account) {
            Some(k) => f.decrypt(k),
            None => {
                seen.errors
                    .push(format!("{account}: encrypted without key"));
                return out;
            }
        }
    } else {
        if keys.contains_key(&account) {
            seen.errors.push(format!("{account}: plain but has a key"));
        }
        f.content()
    };
    match content {
        Ok(c) => {
            match c.timestamp {
                Some(ts) if dc09::within_window(ts, now, 40, 20) => {}
                other => seen.errors.push(format!("{account}: timestamp {other:?}")),
            }
            seen.frames
                .push((account.clone(), f.encrypted, f.token, c.data.clone()));
        }
        Err(e) => seen.errors.push(format!("{account}: content {e}")),
    }
    match keys.get(&account) {
        Some(k) if f.encrypted => {
            dc09::encode_ack_encrypted(&f, k, now, &mut rand::rng(), &mut out)
        }
        _ => dc09::encode_ack(&f, &mut out),
    }
    out
}

#[tokio::test]
async fn simulator_speaks_dc09_and_stops_on_shutdown() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let rx_task = tokio::spawn(fake_receiver(listener, seen.clone()));
    let shutdown = CancellationToken::new();
    let opts = SimOptions {
        mean_alarm_interval: Duration::from_millis(20),
        heartbeat_interval: Duration::from_millis(50),
        seed: 7,
        scaip: ScaipSimOptions::default(),
    };
    let sim = tokio::spawn(simulate(Some(addr), None, opts, shutdown.clone()));
    let keyed: HashSet<String> = devices()
        .into_iter()
        .filter(|d| d.key.is_some())
        .map(|d| d.account)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let done = |s: &Seen| {
        let nulls = s.frames.iter().filter(|f| f.2 == Token::Null).count();
        let alarms = s
            .frames
            .iter()
            .filter(|f| f.2 == Token::AdmCid && f.3.windows(2).any(|w| w == b"|1"))
            .filter(|f| !f.3.ends_with(b"602 01 000"))
            .count();
        let enc: HashSet<&String> = s.frames.iter().filter(|f| f.1).map(|f| &f.0).collect();
        nulls >= 1 && alarms >= 1 && enc.len() == keyed.len()
    };
    loop {
        if done(&seen.lock().unwrap()) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), sim)
        .await
        .expect("the simulator stops promptly")
        .unwrap();
    rx_task.abort();
    let s = seen.lock().unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert!(done(&s), "saw {} frames", s.frames.len());
    // The SCAIP homes never speak DC-09.
    assert!(s.frames.iter().all(|f| !f.0.starts_with("7001")));
    // Every event decodes as Contact ID.
    for f in s.frames.iter().filter(|f| f.2 == Token::AdmCid) {
        let p = vakt_proto::payload::decode_payload(Token::AdmCid, &f.3).unwrap();
        assert_eq!(p.events.len(), 1);
    }
}
