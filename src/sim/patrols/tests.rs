//! The patrol simulator's steps, and the demo patrols over real QUIC.

use super::*;
use crate::sim::pace::MAX_DELAY;
use crate::sim::{load_patrol_logins, save_patrol_logins, seed};
use crate::store::Store;

#[test]
fn patrol_steps_and_delays() {
    assert_eq!(Step::after(DispatchState::Offered), Some(Step::Receive));
    assert_eq!(Step::after(DispatchState::Arrived), Some(Step::Complete));
    assert_eq!(Step::after(DispatchState::ReceiptTimeout), None);
    assert_eq!(Step::Arrive.next(), Some(Step::Complete));
    assert_eq!(Step::Complete.next(), None);
    let mut rng = SmallRng::seed_from_u64(1);
    let r = Duration::from_secs(60)..=Duration::from_secs(360);
    for _ in 0..100 {
        assert!(r.contains(&draw(&mut rng, &r)));
    }
    // Reversed and huge ranges stay sane.
    let rev = Duration::from_secs(9)..=Duration::from_secs(3);
    assert!((3..=9).contains(&draw(&mut rng, &rev).as_secs()));
    let huge = Duration::MAX..=Duration::MAX;
    assert_eq!(draw(&mut rng, &huge), MAX_DELAY);
    let opts = PatrolSimOptions::default();
    assert_eq!(opts.offline, [OFFLINE_PATROL]);
    assert_eq!(*opts.arrive_after.end(), Duration::from_secs(360));
    assert_eq!(
        loopback("0.0.0.0:7200".parse().unwrap()),
        "127.0.0.1:7200".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        loopback("[::]:7200".parse().unwrap()),
        "[::1]:7200".parse::<SocketAddr>().unwrap()
    );
    assert!(VISITS.iter().all(|v| !v.2.is_empty() && v.0 > 0));
}

fn demo_call(id: u64, subscriber: &str, account: &str) -> crate::model::Call {
    serde_json::from_value(serde_json::json!({
        "id": id, "priority": 1, "state": "claimed", "owner": "operator",
        "opened_at": "2026-11-23T10:00:00Z", "alarm_count": 1, "subscriber": subscriber,
        "account": account, "kind": "Fall", "restored": false,
        "answered_at": "2026-11-23T10:00:20Z", "closed_at": null, "outcome": null,
        "timeline": []
    }))
    .unwrap()
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The demo patrols over real QUIC on 127.0.0.1 against the real dispatcher, hub and
/// store: every patrol but the offline one logs in; a dispatch made before they connect
/// (delivered on login) and one made while connected (pushed) both reach `completed`;
/// a patrol played by hand is left alone; the simulator stops on shutdown; a refused
/// patrol stops by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_patrols_take_dispatches_to_completed_over_quic() {
    tokio::time::timeout(Duration::from_secs(90), demo_patrols_scenario())
        .await
        .expect("the scenario finishes in time");
}

async fn demo_patrols_scenario() {
    use std::sync::Arc;

    use crate::dispatch::hub::Hub;
    use crate::dispatch::patrol_link;
    use crate::dispatch::service::{Dispatcher, Target};
    use crate::dispatch::sla::SlaOptions;
    use crate::transport::quic;

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let users = seed(&store, jiff::Timestamp::now()).unwrap().unwrap();
    save_patrol_logins(dir.path(), &users.patrols).unwrap();
    let logins = load_patrol_logins(dir.path()).unwrap();
    store
        .save_calls(
            &[
                demo_call(1, "S-1001", "1234"),
                demo_call(2, "S-1002", "5678"),
            ],
            None,
        )
        .unwrap();
    let tz = jiff::tz::TimeZone::get("Europe/Stockholm").unwrap();
    let dispatcher = Arc::new(Dispatcher::start(store.clone(), tz, SlaOptions::default()).unwrap());
    let centrum = Target {
        call: 1,
        provider: "Hemtjänst Centrum".into(),
        area: "Centrum".into(),
    };
    let norr = Target {
        call: 2,
        provider: "Hemtjänst Norr".into(),
        area: "Norr".into(),
    };
    let d1 = dispatcher
        .dispatch(
            &centrum,
            "centrum-dag",
            "operator",
            "",
            jiff::Timestamp::now(),
        )
        .unwrap();

    let (id, _) = quic::dev_identity(dir.path(), &[]).unwrap();
    let endpoint = quinn::Endpoint::server(
        quic::server_config(&id).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let server_stop = CancellationToken::new();
    let hub = Arc::new(Hub::new(dispatcher.clone(), store.clone()));
    let link = patrol_link::Link::new();
    let server = tokio::spawn(patrol_link::serve(
        endpoint,
        hub.clone(),
        link.clone(),
        32,
        server_stop.clone(),
    ));

    let fast = Duration::from_millis(5)..=Duration::from_millis(40);
    let opts = PatrolSimOptions {
        receipt_after: fast.clone(),
        accept_after: fast.clone(),
        arrive_after: fast.clone(),
        complete_after: fast,
        offline: vec![OFFLINE_PATROL.to_owned()],
        seed: 11,
    };
    let sim_stop = CancellationToken::new();
    let sim = tokio::spawn(simulate_patrols(
        addr,
        id.fingerprint,
        logins.clone(),
        opts.clone(),
        sim_stop.clone(),
    ));

    wait_for("every patrol but the offline one", || {
        link.sessions().len() == logins.len() - 1
    })
    .await;
    assert!(!link.connected(OFFLINE_PATROL));

    // A dispatch while the patrol is connected, pushed as the server does.
    let d2 = dispatcher
        .dispatch(&norr, "norr-dag", "operator", "", jiff::Timestamp::now())
        .unwrap();
    assert!(link.push(
        "norr-dag",
        ToPatrol::Assignment(Box::new(hub.assignment(&d2)))
    ));

    let state = |id: u64| store.dispatch(id).unwrap().unwrap().state;
    wait_for("both dispatches completed", || {
        state(d1.id) == DispatchState::Completed && state(d2.id) == DispatchState::Completed
    })
    .await;
    for (d, method) in [(&d1, ArrivalMethod::Lock), (&d2, ArrivalMethod::App)] {
        let done = store.dispatch(d.id).unwrap().unwrap();
        assert!(done.received_at.is_some(), "{done:?}");
        assert!(done.accepted_at.is_some(), "{done:?}");
        assert!(done.arrived_at.is_some(), "{done:?}");
        assert!(done.received_at <= done.accepted_at && done.accepted_at <= done.arrived_at);
        assert_eq!(done.arrival_method, Some(method), "{done:?}");
        assert!(!done.note.is_empty(), "{done:?}");
        assert!(!done.breached);
    }
    assert!(dispatcher.live_for("centrum-dag").is_empty());
    assert!(dispatcher.live_for("norr-dag").is_empty());

    // Someone plays norr-dag by hand: the simulator lets go of it and does not take it
    // back (it would reconnect within about a second if it did).
    let token = &logins
        .iter()
        .find(|l| l.patrol == "norr-dag")
        .unwrap()
        .token;
    let trust = Trust::Pinned(id.fingerprint);
    let (mut by_hand, _, _) = Session::connect(addr, &trust, "norr-dag", token.expose())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    by_hand.ping().await.unwrap();
    let m = by_hand.next_push(Duration::from_millis(300)).await;
    assert!(matches!(m, Ok(None)), "still logged in: {m:?}");
    by_hand.close().await;

    // Shutdown: the simulator returns promptly and its patrols log out.
    sim_stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), sim)
        .await
        .expect("the simulator stops promptly")
        .unwrap();
    wait_for("the patrols logged out", || link.sessions().is_empty()).await;

    // A patrol the server refuses (a wrong token) is not retried: the simulator ends.
    let wrong = vec![PatrolLogin {
        patrol: OFFLINE_PATROL.to_owned(),
        token: Secret::new("0".repeat(64)),
    }];
    let opts = PatrolSimOptions {
        offline: Vec::new(),
        ..opts
    };
    tokio::time::timeout(
        Duration::from_secs(20),
        simulate_patrols(addr, id.fingerprint, wrong, opts, CancellationToken::new()),
    )
    .await
    .expect("a refused patrol stops by itself");

    server_stop.cancel();
    server.await.unwrap();
}
