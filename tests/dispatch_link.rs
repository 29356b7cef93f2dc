//! A real patrol over real QUIC on 127.0.0.1 against the real dispatcher and store: a Call
//! is dispatched, the patrol logs in with a token vakt issued, gets the assignment with the
//! subscriber's access, confirms receipt, reconnects mid-assignment and gets it back,
//! arrives and completes; a resent event is acknowledged again and changes nothing. The
//! rules of `proto/patrol.md` §6 (the order of the answers, `completed` only after
//! `arrived`), the login errors of §10 and the server's `seq` (§3) are checked here too.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use vakt::dispatch::hub::Hub;
use vakt::dispatch::patrol_link::{self, Link};
use vakt::dispatch::service::{Dispatcher, Target};
use vakt::dispatch::sla::SlaOptions;
use vakt::dispatch::wire::{ErrorCode, FromPatrol, ToPatrol, VisitOutcome};
use vakt::model::{ArrivalMethod, Call, CallState, DispatchState, Priority};
use vakt::sim::patrol_client::{ClientError, Session};
use vakt::transport::quic::{self, Trust};

fn call() -> Call {
    serde_json::from_value(serde_json::json!({
        "id": 7, "priority": 1, "state": "claimed", "owner": "olle",
        "opened_at": "2026-11-23T10:00:00Z", "alarm_count": 1, "subscriber": "S-1",
        "account": "1234", "kind": "Fall", "restored": false,
        "answered_at": "2026-11-23T10:00:20Z", "closed_at": null, "outcome": null,
        "timeline": []
    }))
    .unwrap()
}

#[tokio::test]
async fn dispatch_over_quic_received_reconnect_arrived_completed() {
    let dir = tempfile::tempdir().unwrap();
    let store = vakt::store::Store::open(dir.path()).unwrap();
    let d = vakt::registers::directory::parse_all(
        "id,name,phone\nhn,Hemtjänst Norr,08-1\n".as_bytes(),
        "id,name,arrival_limit_mins\nnorr,Norr,30\n".as_bytes(),
        "id,name,provider,areas,shifts,phone\nn1,Norr 1,hn,norr,day 00:00-23:59,070-1\n".as_bytes(),
        "provider,area,patrols\nhn,norr,n1\n".as_bytes(),
    )
    .unwrap();
    store.save_directory(&d).unwrap();
    let subs = vakt::registers::subscribers::parse_csv(
        format!(
            "{}\nS-1,Åsa Öberg,19380512-9802,Storgatan 4,123 45,Vaktby,Norr,070-111 22 33,Hemtjänst Norr,2,\"Nyckelskåp Norr, krok 14\",PL-3301,4711#,Hund i hallen,,,,,,,,,,,,sv\n",
            vakt::registers::subscribers::CSV_HEADER
        )
        .as_bytes(),
    )
    .unwrap();
    store.upsert_subscribers(&subs).unwrap();
    store.save_calls(&[call()], None).unwrap();
    let (token, hash) = vakt::store::new_token();
    store.set_patrol_token("n1", &hash).unwrap();

    let tz = jiff::tz::TimeZone::get("Europe/Stockholm").unwrap();
    let dispatcher = Arc::new(Dispatcher::start(store.clone(), tz, SlaOptions::default()).unwrap());
    let target = Target {
        call: 7,
        provider: "Hemtjänst Norr".into(),
        area: "Norr".into(),
    };
    let now = jiff::Timestamp::now();
    let suggested = dispatcher.candidates(&target, now);
    assert_eq!(suggested[0].patrol, "n1");
    let disp = dispatcher.dispatch(&target, "n1", "olle", "", now).unwrap();

    let (id, _) = quic::dev_identity(dir.path(), &[]).unwrap();
    let endpoint = quinn::Endpoint::server(
        quic::server_config(&id).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let hub = Arc::new(Hub::new(dispatcher.clone(), store.clone()));
    let server = tokio::spawn(patrol_link::serve(
        endpoint,
        hub,
        Link::new(),
        8,
        shutdown.clone(),
    ));
    let trust = Trust::Pinned(id.fingerprint);

    // Log in: the assignment arrives with the card and the access.
    let (mut s, welcome, assignments) = Session::connect(addr, &trust, "n1", &token).await.unwrap();
    assert_eq!(welcome.open, vec![disp.id]);
    assert_eq!(assignments.len(), 1);
    let a = &assignments[0];
    assert_eq!(a.call, 7);
    assert_eq!(a.subscriber.name, "Åsa Öberg");
    assert_eq!(a.access.door_code.expose(), "4711#");
    assert_eq!(a.reason, "Fall");
    assert_eq!(a.priority, Priority::PERSONAL);
    assert_eq!(a.limit_mins, 30);

    let seq = s.next_seq();
    let answer = s
        .send_event(&FromPatrol::Received {
            seq,
            dispatch: disp.id,
            at: jiff::Timestamp::now(),
        })
        .await
        .unwrap();
    assert!(matches!(answer, ToPatrol::Ack { .. }), "{answer:?}");
    assert_eq!(
        store.dispatch(disp.id).unwrap().unwrap().state,
        DispatchState::Received,
        "durable before the ack"
    );

    // The patrol changes network: a new connection gets the assignment back, received.
    s.close().await;
    let (mut s, _, assignments) = Session::connect(addr, &trust, "n1", &token).await.unwrap();
    assert_eq!(assignments.len(), 1);
    assert_eq!(assignments[0].state, DispatchState::Received);
    assert!(assignments[0].deadline.is_some());

    let seq = s.next_seq();
    let answer = s
        .send_event(&FromPatrol::Arrived {
            seq,
            dispatch: disp.id,
            at: jiff::Timestamp::now(),
            method: ArrivalMethod::App,
            code: None,
        })
        .await
        .unwrap();
    assert!(matches!(answer, ToPatrol::Ack { .. }), "{answer:?}");
    let done = FromPatrol::Completed {
        seq: s.next_seq(),
        dispatch: disp.id,
        at: jiff::Timestamp::now(),
        outcome: VisitOutcome::Helped,
        note: "Hjälpte Åsa upp".into(),
    };
    assert!(matches!(
        s.send_event(&done).await.unwrap(),
        ToPatrol::Ack { .. }
    ));
    // Resent (the patrol was not sure it arrived): acknowledged again, nothing changes.
    assert!(matches!(
        s.send_event(&done).await.unwrap(),
        ToPatrol::Ack { .. }
    ));
    let stored = store.dispatch(disp.id).unwrap().unwrap();
    assert_eq!(stored.state, DispatchState::Completed);
    assert!(!stored.breached);
    assert!(dispatcher.live_for("n1").is_empty());
    // The Call itself is untouched by the link.
    assert_eq!(store.call(7).unwrap().unwrap().state, CallState::Claimed);

    s.close().await;
    shutdown.cancel();
    server.await.unwrap();
}

/// A store with the Norr directory (patrol n1), Åsa's card, Call 7 and n1's token; the
/// dispatcher over it, and the patrol link on 127.0.0.1.
struct Fixture {
    dir: tempfile::TempDir,
    store: vakt::store::Store,
    dispatcher: Arc<Dispatcher>,
    token: String,
    server: LinkServer,
}

/// A running patrol link.
struct LinkServer {
    addr: SocketAddr,
    trust: Trust,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl LinkServer {
    async fn start(
        dir: &std::path::Path,
        dispatcher: &Arc<Dispatcher>,
        store: &vakt::store::Store,
    ) -> LinkServer {
        let (id, _) = quic::dev_identity(dir, &[]).unwrap();
        let endpoint = quinn::Endpoint::server(
            quic::server_config(&id).unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let addr = endpoint.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let hub = Arc::new(Hub::new(dispatcher.clone(), store.clone()));
        let task = tokio::spawn(patrol_link::serve(
            endpoint,
            hub,
            Link::new(),
            8,
            shutdown.clone(),
        ));
        LinkServer {
            addr,
            trust: Trust::Pinned(id.fingerprint),
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

fn target() -> Target {
    Target {
        call: 7,
        provider: "Hemtjänst Norr".into(),
        area: "Norr".into(),
    }
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = vakt::store::Store::open(dir.path()).unwrap();
        let d = vakt::registers::directory::parse_all(
            "id,name,phone\nhn,Hemtjänst Norr,08-1\n".as_bytes(),
            "id,name,arrival_limit_mins\nnorr,Norr,30\n".as_bytes(),
            "id,name,provider,areas,shifts,phone\nn1,Norr 1,hn,norr,day 00:00-23:59,070-1\n"
                .as_bytes(),
            "provider,area,patrols\nhn,norr,n1\n".as_bytes(),
        )
        .unwrap();
        store.save_directory(&d).unwrap();
        let subs = vakt::registers::subscribers::parse_csv(
            format!(
                "{}\nS-1,Åsa Öberg,19380512-9802,Storgatan 4,123 45,Vaktby,Norr,070-111 22 33,Hemtjänst Norr,2,Nyckelskåp,PL-3301,4711#,,,,,,,,,,,,,sv\n",
                vakt::registers::subscribers::CSV_HEADER
            )
            .as_bytes(),
        )
        .unwrap();
        store.upsert_subscribers(&subs).unwrap();
        store.save_calls(&[call()], None).unwrap();
        let (token, hash) = vakt::store::new_token();
        store.set_patrol_token("n1", &hash).unwrap();
        let dispatcher = dispatcher_of(&store);
        let server = LinkServer::start(dir.path(), &dispatcher, &store).await;
        Fixture {
            dir,
            store,
            dispatcher,
            token,
            server,
        }
    }

    async fn login(
        &self,
    ) -> (
        Session,
        vakt::sim::patrol_client::Welcome,
        Vec<vakt::dispatch::wire::AssignmentMsg>,
    ) {
        Session::connect(self.server.addr, &self.server.trust, "n1", &self.token)
            .await
            .unwrap()
    }
}

fn dispatcher_of(store: &vakt::store::Store) -> Arc<Dispatcher> {
    let tz = jiff::tz::TimeZone::get("Europe/Stockholm").unwrap();
    Arc::new(Dispatcher::start(store.clone(), tz, SlaOptions::default()).unwrap())
}

/// Sends `ev` and returns the answer (`ack` or `error`).
async fn answer(s: &mut Session, ev: &FromPatrol) -> ToPatrol {
    s.send_event(ev).await.unwrap()
}

fn is_ack(m: &ToPatrol, seq: u64) -> bool {
    *m == ToPatrol::Ack { seq }
}

fn is_error(m: &ToPatrol, seq: u64, code: ErrorCode) -> bool {
    matches!(m, ToPatrol::Error { seq: Some(s), code: c, fatal: false, .. } if *s == seq && *c == code)
}

fn arrived(seq: u64, dispatch: u64) -> FromPatrol {
    FromPatrol::Arrived {
        seq,
        dispatch,
        at: jiff::Timestamp::now(),
        method: ArrivalMethod::App,
        code: None,
    }
}

fn completed(seq: u64, dispatch: u64) -> FromPatrol {
    FromPatrol::Completed {
        seq,
        dispatch,
        at: jiff::Timestamp::now(),
        outcome: VisitOutcome::Helped,
        note: String::new(),
    }
}

#[tokio::test]
async fn completed_before_arrived_is_refused_and_the_table_of_answers_holds() {
    let f = Fixture::start().await;
    let disp = f
        .dispatcher
        .dispatch(&target(), "n1", "olle", "", jiff::Timestamp::now())
        .unwrap();
    let (mut s, _, _) = f.login().await;
    let seq = s.next_seq();
    let ev = FromPatrol::Received {
        seq,
        dispatch: disp.id,
        at: jiff::Timestamp::now(),
    };
    assert!(is_ack(&answer(&mut s, &ev).await, seq));

    // Completed without an arrival: refused as a bad message (the SLA measures the
    // arrival), and nothing changes.
    let seq = s.next_seq();
    let a = answer(&mut s, &completed(seq, disp.id)).await;
    assert!(is_error(&a, seq, ErrorCode::BadMessage), "{a:?}");
    let stored = f.store.dispatch(disp.id).unwrap().unwrap();
    assert_eq!(stored.state, DispatchState::Received);
    assert_eq!(stored.arrived_at, None);
    assert_eq!(stored.arrival_method, None);
    assert_eq!(f.dispatcher.live_for("n1").len(), 1);

    // Arrived, then: accepted after the arrival is acknowledged and changes nothing,
    // declined after it is a bad message.
    let seq = s.next_seq();
    assert!(is_ack(&answer(&mut s, &arrived(seq, disp.id)).await, seq));
    let before = f.store.dispatch(disp.id).unwrap().unwrap();
    let seq = s.next_seq();
    let a = answer(
        &mut s,
        &FromPatrol::Accepted {
            seq,
            dispatch: disp.id,
            at: jiff::Timestamp::now(),
        },
    )
    .await;
    assert!(is_ack(&a, seq), "{a:?}");
    let seq = s.next_seq();
    let a = answer(
        &mut s,
        &FromPatrol::Declined {
            seq,
            dispatch: disp.id,
            at: jiff::Timestamp::now(),
            reason: "too late".into(),
        },
    )
    .await;
    assert!(is_error(&a, seq, ErrorCode::BadMessage), "{a:?}");
    assert_eq!(f.store.dispatch(disp.id).unwrap().unwrap(), before);

    // Now the completion is taken.
    let seq = s.next_seq();
    assert!(is_ack(&answer(&mut s, &completed(seq, disp.id)).await, seq));
    assert_eq!(
        f.store.dispatch(disp.id).unwrap().unwrap().state,
        DispatchState::Completed
    );
    s.close().await;
    f.server.stop().await;
}

#[tokio::test]
async fn a_resent_step_of_an_ended_dispatch_is_acknowledged_before_closed_is_considered() {
    let f = Fixture::start().await;
    let disp = f
        .dispatcher
        .dispatch(&target(), "n1", "olle", "", jiff::Timestamp::now())
        .unwrap();
    let (mut s, _, _) = f.login().await;
    let received = FromPatrol::Received {
        seq: s.next_seq(),
        dispatch: disp.id,
        at: jiff::Timestamp::now(),
    };
    assert!(is_ack(&answer(&mut s, &received).await, received.seq()));
    let arr = arrived(s.next_seq(), disp.id);
    assert!(is_ack(&answer(&mut s, &arr).await, arr.seq()));
    let done = completed(s.next_seq(), disp.id);
    assert!(is_ack(&answer(&mut s, &done).await, done.seq()));
    let ended = f.store.dispatch(disp.id).unwrap().unwrap();
    assert_eq!(ended.state, DispatchState::Completed);

    // The app was not sure its `arrived` and `received` got through (its outbox): resent
    // after the completion, with their seq, on a new connection. Already applied: ack.
    s.close().await;
    let (mut s, welcome, _) = f.login().await;
    assert!(welcome.open.is_empty());
    for ev in [&received, &arr, &done] {
        let a = answer(&mut s, ev).await;
        assert!(is_ack(&a, ev.seq()), "{} -> {a:?}", ev.kind());
    }
    assert_eq!(f.store.dispatch(disp.id).unwrap().unwrap(), ended);

    // A step that was never applied to an ended dispatch is `closed`.
    let other = f
        .dispatcher
        .dispatch(&target(), "n1", "olle", "", jiff::Timestamp::now())
        .unwrap();
    f.dispatcher
        .cancel(other.id, "the son is there", jiff::Timestamp::now())
        .unwrap();
    let seq = s.next_seq();
    let a = answer(&mut s, &arrived(seq, other.id)).await;
    assert!(is_error(&a, seq, ErrorCode::Closed), "{a:?}");
    s.close().await;
    f.server.stop().await;
}

#[tokio::test]
async fn an_unknown_patrol_and_a_wrong_token_get_their_own_codes() {
    let f = Fixture::start().await;
    let err = Session::connect(f.server.addr, &f.server.trust, "nobody", &f.token)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Refused {
                code: ErrorCode::UnknownPatrol,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_final());
    let err = Session::connect(f.server.addr, &f.server.trust, "n1", "0123abcd")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Refused {
                code: ErrorCode::BadToken,
                ..
            }
        ),
        "{err:?}"
    );
    f.server.stop().await;
}

#[tokio::test]
async fn the_servers_seq_never_goes_back_across_connections_and_restarts() {
    let f = Fixture::start().await;
    f.dispatcher
        .dispatch(&target(), "n1", "olle", "", jiff::Timestamp::now())
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (s, _, open) = f.login().await;
        assert_eq!(open.len(), 1);
        seen.push(open[0].seq);
        s.close().await;
    }
    // vakt restarts: a new link and dispatcher over the same store.
    let Fixture {
        dir,
        store,
        dispatcher,
        token,
        server,
    } = f;
    server.stop().await;
    drop(dispatcher);
    let dispatcher = dispatcher_of(&store);
    let server = LinkServer::start(dir.path(), &dispatcher, &store).await;
    for _ in 0..2 {
        let (s, _, open) = Session::connect(server.addr, &server.trust, "n1", &token)
            .await
            .unwrap();
        seen.push(open[0].seq);
        s.close().await;
    }
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "the server's seq went back: {seen:?}"
    );
    server.stop().await;
}
