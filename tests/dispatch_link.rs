//! A real patrol over real QUIC on 127.0.0.1 against the real dispatcher and store: a Call
//! is dispatched, the patrol logs in with a token vakt issued, gets the assignment with the
//! subscriber's access, confirms receipt, reconnects mid-assignment and gets it back,
//! arrives and completes; a resent event is acknowledged again and changes nothing.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use vakt::calls::sla::SlaOptions;
use vakt::codec::patrol::{FromPatrol, ToPatrol, VisitOutcome};
use vakt::dispatch::hub::Hub;
use vakt::dispatch::patrol_link::{self, Link};
use vakt::dispatch::service::{Dispatcher, Target};
use vakt::model::{ArrivalMethod, Call, CallState, DispatchState, Priority};
use vakt::patrol_client::Session;
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
    let d = vakt::directory::parse_all(
        "id,name,phone\nhn,Hemtjänst Norr,08-1\n".as_bytes(),
        "id,name,arrival_limit_mins\nnorr,Norr,30\n".as_bytes(),
        "id,name,provider,areas,shifts,phone\nn1,Norr 1,hn,norr,day 00:00-23:59,070-1\n".as_bytes(),
        "provider,area,patrols\nhn,norr,n1\n".as_bytes(),
    )
    .unwrap();
    store.save_directory(&d).unwrap();
    let subs = vakt::subscribers::parse_csv(
        format!(
            "{}\nS-1,Åsa Öberg,19380512-9802,Storgatan 4,123 45,Vaktby,Norr,070-111 22 33,Hemtjänst Norr,2,\"Nyckelskåp Norr, krok 14\",PL-3301,4711#,Hund i hallen,,,,,,,,,,,,sv\n",
            vakt::subscribers::CSV_HEADER
        )
        .as_bytes(),
    )
    .unwrap();
    store.upsert_subscribers(&subs).unwrap();
    store.save_calls(&[call()], None).unwrap();
    let (token, hash) = vakt::console::auth::new_token();
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
    let disp = dispatcher.dispatch(&target, "n1", "olle", now).unwrap();

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
