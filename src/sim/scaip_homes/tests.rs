//! The SCAIP homes against a fake ARC and against the real server.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::*;
use crate::model::Device;
use crate::registers::devices;
use crate::sim::{seed, simulate};
use crate::store::Store;

fn devices() -> Vec<Device> {
    devices::parse_csv(devices::DEMO_CSV.as_bytes()).unwrap()
}

#[test]
fn scaip_bodies_parse_as_the_standard_says() {
    use vakt_proto::scaip::{MessageType, parse_mrq};
    let m = parse_mrq(mrq_body("1A", Some("PI"), "700108", DTY_UNIT, None).as_bytes()).unwrap();
    assert_eq!(
        (m.mty, m.hbo, m.cid.as_str(), m.dty, m.stc),
        (MessageType::Heartbeat, true, "700108", 2, None)
    );
    let m = parse_mrq(mrq_body("1B", None, "700108", DTY_FALL, None).as_bytes()).unwrap();
    assert_eq!(
        (m.mty, m.hbo, m.dty, m.stc),
        (MessageType::Message, false, 5, None)
    );
    let body = mrq_body("1C", None, "700108", DTY_PENDANT, Some(STC_BATTERY_LOW));
    assert_eq!(
        body,
        "<mrq><ref>1C</ref><cid>700108</cid><dty>0003</dty><stc>0016</stc></mrq>"
    );
    let m = parse_mrq(mrq_body("1B", Some("RE"), "700108", 3, None).as_bytes()).unwrap();
    assert_eq!((m.mty, m.reference.as_str()), (MessageType::Reset, "1B"));
    assert_eq!(Visit::Presence.stc(), 88);
    assert_eq!(Visit::CheckOut.stc(), 111);
}

/// What the fake SCAIP ARC saw.
#[derive(Default)]
struct ArcSeen {
    /// (SIP user, request) of every authenticated MESSAGE, in order.
    mrqs: Vec<(String, vakt_proto::scaip::Mrq)>,
    /// Challenges sent (401).
    challenged: usize,
    errors: Vec<String>,
}

/// The fake ARC's answer to an authenticated request: heartbeats get `hbi 10`; an alarm
/// of `never` is held for ever, any other alarm twice and then answered with voice.
fn arc_answer(
    mrq: &vakt_proto::scaip::Mrq,
    never: &str,
    polls: &mut HashMap<(String, String), u32>,
) -> Mrs {
    use vakt_proto::scaip::MessageType;
    let mut mrs = Mrs {
        reference: Some(mrq.reference.clone()),
        ..Mrs::default()
    };
    match mrq.mty {
        MessageType::Heartbeat => mrs.hbi = Some(10),
        MessageType::Message if mrq.stc.is_none() => {
            let n = polls
                .entry((mrq.cid.clone(), mrq.reference.clone()))
                .or_default();
            *n += 1;
            if mrq.cid == never || *n < 3 {
                mrs.snu = 4;
            } else {
                mrs.mre = Some(1);
            }
        }
        _ => {}
    }
    mrs
}

/// The fake ARC's state between datagrams.
struct FakeArc {
    passwords: HashMap<String, String>,
    never: String,
    local: String,
    polls: HashMap<(String, String), u32>,
    cseq: u32,
}

const ARC_NONCE: &str = "c0ffee0123456789";

/// The fake ARC's datagrams in answer to one from a device.
fn arc_handle(arc: &mut FakeArc, datagram: &[u8], seen: &mut ArcSeen) -> Vec<Vec<u8>> {
    use vakt_proto::{scaip, sip};
    let msg = match sip::parse(datagram) {
        Ok(m) => m,
        Err(e) => {
            seen.errors.push(format!("sip: {e}"));
            return Vec::new();
        }
    };
    // The device's 200 to the ARC's own MESSAGE.
    if !msg.is_request() {
        return Vec::new();
    }
    if msg.method() != Some("MESSAGE") {
        seen.errors.push(format!("{:?}", msg.method()));
        return Vec::new();
    }
    let user = msg
        .header("Authorization")
        .and_then(|a| sip::parse_authorization(a).ok())
        .filter(|c| c.nonce == ARC_NONCE && c.realm == "vakt")
        .and_then(|c| {
            let pw = arc.passwords.get(c.username.as_ref())?;
            let ha1 = sip::ha1(&c.username, "vakt", pw);
            sip::verify(&c, "MESSAGE", &ha1).then(|| c.username.to_string())
        });
    let mut out = Vec::new();
    let Some(user) = user else {
        seen.challenged += 1;
        let ch = sip::challenge("vakt", ARC_NONCE, false);
        let extra = [("WWW-Authenticate", ch.as_str())];
        sip::encode_response(
            &msg,
            401,
            "Unauthorized",
            "arc",
            &extra,
            None,
            b"",
            &mut out,
        );
        return vec![out];
    };
    sip::encode_response(&msg, 200, "OK", "arc", &[], None, b"", &mut out);
    let mrq = match scaip::parse_mrq(msg.body) {
        Ok(m) => m,
        Err(e) => {
            seen.errors.push(format!("mrq: {e}"));
            return vec![out];
        }
    };
    let mrs = arc_answer(&mrq, &arc.never, &mut arc.polls);
    seen.mrqs.push((user, mrq));
    let mut body = Vec::new();
    scaip::encode_mrs(&mrs, &mut body);
    arc.cseq += 1;
    let branch = format!("z9hG4bK{}", sip::random_token(10));
    let mut req = Vec::new();
    sip::encode_request(
        &sip::OutRequest {
            method: "MESSAGE",
            uri: "sip:luc@127.0.0.1",
            via_transport: "UDP",
            via_host: &arc.local,
            branch: &branch,
            from: "<sip:arc@vakt>",
            from_tag: "arc",
            // A request outside any dialog: the device's address, no tag, a new Call-ID.
            to: &format!("<{}>", msg.from_uri().unwrap_or("sip:luc@127.0.0.1")),
            call_id: &sip::random_token(16),
            cseq: arc.cseq,
            content_type: Some(scaip::CONTENT_TYPE),
            body: &body,
        },
        &mut req,
    );
    vec![out, req]
}

/// A minimal SCAIP ARC over UDP: Digest challenge and check, `200 OK`, then the `<mrs>`
/// in a MESSAGE of its own (see [`arc_answer`]).
async fn fake_arc(
    socket: tokio::net::UdpSocket,
    passwords: HashMap<String, String>,
    never: String,
    seen: Arc<Mutex<ArcSeen>>,
) {
    let mut arc = FakeArc {
        passwords,
        never,
        local: socket.local_addr().unwrap().to_string(),
        polls: HashMap::new(),
        cseq: 0,
    };
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            return;
        };
        let replies = arc_handle(&mut arc, &buf[..n], &mut seen.lock().unwrap());
        for r in replies {
            let _ = socket.send_to(&r, peer).await;
        }
    }
}

fn fast_scaip() -> ScaipSimOptions {
    let ms = Duration::from_millis;
    ScaipSimOptions {
        mean_alarm_interval: ms(15),
        heartbeat_interval: ms(40),
        poll_every: ms(5)..=ms(15),
        give_up_after: ms(300),
        battery_percent: 20,
        fall_percent: 40,
        presence_percent: 100,
        presence_after: ms(5)..=ms(20),
        check_out_after: ms(5)..=ms(20),
        // The fake ARC carries no calls.
        voice_call: None,
    }
}

/// The SCAIP homes against a fake ARC with real Digest over UDP: every home heartbeats as
/// its own SIP user with `hbo`; a held alarm polls with the same request and stops once
/// answered, or resets when never answered; low batteries; presence, then check-out,
/// after an answered alarm; the simulator stops on shutdown.
#[tokio::test]
async fn scaip_homes_poll_while_held_reset_and_press_presence() {
    use vakt_proto::scaip::MessageType;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let homes = scaip_homes(&ScaipSimOptions::default());
    assert!((4..=6).contains(&homes.len()), "{}", homes.len());
    let passwords: HashMap<String, String> = homes
        .iter()
        .map(|h| (h.user.clone(), h.password.expose().to_owned()))
        .collect();
    let never = homes[0].cid.clone();
    let seen = Arc::new(Mutex::new(ArcSeen::default()));
    let arc = tokio::spawn(fake_arc(socket, passwords, never.clone(), seen.clone()));
    let shutdown = CancellationToken::new();
    let opts = SimOptions {
        seed: 3,
        scaip: fast_scaip(),
        ..SimOptions::default()
    };
    let sim = tokio::spawn(simulate(None, Some(addr), opts, shutdown.clone()));

    let alarm = |m: &vakt_proto::scaip::Mrq| {
        m.mty == MessageType::Message && m.stc.is_none() && matches!(m.dty, 3 | 5)
    };
    let done = |s: &ArcSeen| {
        let m: Vec<&vakt_proto::scaip::Mrq> = s.mrqs.iter().map(|x| &x.1).collect();
        let beats: HashSet<&str> = m
            .iter()
            .filter(|m| m.mty == MessageType::Heartbeat && m.hbo)
            .map(|m| m.cid.as_str())
            .collect();
        let reset = m.iter().any(|r| {
            r.mty == MessageType::Reset
                && r.cid == never
                && m.iter()
                    .filter(|a| alarm(a) && a.reference == r.reference)
                    .count()
                    >= 2
        });
        let answered = m.iter().any(|a| {
            a.cid != never
                && alarm(a)
                && m.iter()
                    .filter(|b| alarm(b) && b.reference == a.reference)
                    .count()
                    == 3
        });
        let stc = |c: u16| m.iter().filter(move |x| x.stc == Some(c));
        let visited = stc(88).any(|p| {
            let at = m.iter().position(|x| std::ptr::eq(*x, *p)).unwrap_or(0);
            m[at..].iter().any(|x| x.stc == Some(111) && x.cid == p.cid)
        });
        let dtys: HashSet<u16> = m.iter().filter(|x| alarm(x)).map(|x| x.dty).collect();
        beats.len() == homes.len()
            && reset
            && answered
            && visited
            && stc(16).next().is_some()
            && dtys.len() == 2
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(&seen.lock().unwrap()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), sim)
        .await
        .expect("the simulator stops promptly")
        .unwrap();
    arc.abort();
    let s = seen.lock().unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert!(done(&s), "saw {} requests", s.mrqs.len());
    // Each home speaks as its own SIP user, challenged on first contact.
    for (user, m) in &s.mrqs {
        assert_eq!(*user, format!("luc-{}", m.cid));
    }
    assert!(s.challenged >= homes.len(), "{}", s.challenged);
    // An answered alarm is not polled again; a held one polls until its reset.
    let mut copies: HashMap<(&str, &str), usize> = HashMap::new();
    for (_, m) in s.mrqs.iter().filter(|(_, m)| alarm(m)) {
        *copies.entry((&m.cid, &m.reference)).or_default() += 1;
    }
    for ((cid, _), n) in copies {
        if cid != never {
            assert!(n <= 3, "{cid}: {n} copies");
        }
    }
}

/// The SCAIP homes of the demo data against the real server of a seeded data
/// directory: their credentials are the registry's, so vakt journals their alarms, low
/// batteries and resets for the right subscribers (nobody takes the alarms here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaip_homes_reach_the_real_server_of_a_seeded_directory() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        seed(&store, jiff::Timestamp::now()).unwrap().unwrap();
    }
    let mut cfg = crate::config::Config {
        data_dir: dir.path().to_path_buf(),
        ..crate::config::Config::default()
    };
    cfg.dc09.listen_tcp = None;
    cfg.dc09.listen_udp = None;
    cfg.http.listen = None;
    cfg.patrol.listen_quic = None;
    cfg.scaip.listen_tcp = None;
    cfg.scaip.listen_udp = Some("127.0.0.1:0".parse().unwrap());
    cfg.scaip.rate_per_source = 1000;
    cfg.scaip.rate_burst = 1000;
    cfg.shutdown_grace_secs = 1;
    let running = crate::server::start(cfg).await.unwrap();
    let ms = Duration::from_millis;
    let opts = SimOptions {
        seed: 9,
        scaip: ScaipSimOptions {
            mean_alarm_interval: ms(100),
            heartbeat_interval: ms(300),
            poll_every: ms(50)..=ms(100),
            give_up_after: ms(800),
            battery_percent: 25,
            ..ScaipSimOptions::default()
        },
        ..SimOptions::default()
    };
    let stop = CancellationToken::new();
    let sim = tokio::spawn(simulate(None, running.scaip_udp, opts, stop.clone()));
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), sim)
        .await
        .expect("the simulator stops promptly")
        .unwrap();
    running.stop().await.unwrap();

    let store = Store::open(dir.path()).unwrap();
    let homes: HashMap<String, String> = devices()
        .into_iter()
        .filter_map(|d| Some((d.account, d.subscriber?)))
        .filter(|(a, _)| a.starts_with("7001"))
        .collect();
    let signals: Vec<crate::model::Signal> = store
        .journal_after(0, 100_000)
        .unwrap()
        .into_iter()
        .map(|r| r.signal)
        .filter(|s| s.protocol == crate::ingest::scaip::PROTOCOL)
        .collect();
    let codes: HashSet<&str> = signals
        .iter()
        .flat_map(|s| s.events.iter().map(|e| e.code.as_str()))
        .collect();
    for s in &signals {
        assert!(!s.flags.unknown_device, "{s:?}");
        assert_eq!(s.subscriber.as_ref(), homes.get(&s.account), "{s:?}");
        let info = s.scaip.as_ref().unwrap();
        assert_eq!(info.sip_user, format!("luc-{}", s.account));
    }
    assert!(
        codes.contains("SCAIP 0003") || codes.contains("SCAIP 0005"),
        "{codes:?}"
    );
    assert!(codes.contains("SCAIP 0003/0016"), "{codes:?}");
    assert!(
        codes.contains(crate::triage::priority::SCAIP_RESET),
        "{codes:?}"
    );
}
