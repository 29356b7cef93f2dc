//! The patrol link over real QUIC on 127.0.0.1: login, open assignments, events and their
//! answers, pushes, reconnect, replacement.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vakt::dispatch::patrol_link::{self, EventError, Link, PatrolHub};
use vakt::dispatch::wire::{
    AccessInfo, AssignmentMsg, CancelCause, ErrorCode, FromPatrol, SubscriberInfo, ToPatrol,
};
use vakt::model::{DispatchState, Priority};
use vakt::sim::patrol_client::{ClientError, Session};
use vakt::transport::quic::{self, Trust};

#[derive(Default)]
struct FakeHub {
    events: Mutex<Vec<(String, FromPatrol)>>,
    /// The next `seq` not reserved (0: none reserved yet, numbers start at 1).
    seqs: Mutex<u64>,
}

fn assignment() -> AssignmentMsg {
    AssignmentMsg {
        seq: 0,
        dispatch: 41,
        call: 1187,
        state: DispatchState::Offered,
        subscriber: SubscriberInfo {
            name: "Åsa Öberg".into(),
            address: "Storgatan 14".into(),
            ..Default::default()
        },
        access: AccessInfo {
            door_code: "1402#".into(),
            ..Default::default()
        },
        reason: "Fall".into(),
        priority: Priority(1),
        limit_mins: 30,
        offered_at: jiff::Timestamp::UNIX_EPOCH,
        receipt_deadline: None,
        received_at: None,
        deadline: None,
        instruction: "Daughter opens the door".into(),
        health_notes: Default::default(),
        health_notes_withheld: true,
        provider_keys: "2 door keys".into(),
    }
}

impl PatrolHub for FakeHub {
    fn authenticate(&self, patrol: &str, token: &str) -> Result<(), EventError> {
        match (patrol, token) {
            ("p1", "t1") => Ok(()),
            ("p1", _) => Err(ErrorCode::BadToken.into()),
            // The tokens cannot be read (storage failed).
            ("p-down", _) => Err(EventError::Unavailable),
            _ => Err(ErrorCode::UnknownPatrol.into()),
        }
    }
    fn reserve_seqs(&self, _patrol: &str, count: u64) -> Option<u64> {
        let mut next = self.seqs.lock().unwrap();
        let first = (*next).max(1);
        *next = first + count;
        Some(first)
    }
    fn open_assignments(&self, patrol: &str) -> Vec<AssignmentMsg> {
        if patrol == "p1" {
            vec![assignment()]
        } else {
            Vec::new()
        }
    }
    fn event(&self, patrol: &str, ev: &FromPatrol) -> Result<(), EventError> {
        // Dispatch 13: the store is failing.
        if ev.dispatch() == Some(13) {
            return Err(EventError::Unavailable);
        }
        if ev.dispatch() != Some(41) {
            return Err(ErrorCode::NotYours.into());
        }
        self.events
            .lock()
            .unwrap()
            .push((patrol.to_string(), ev.clone()));
        Ok(())
    }
}

struct Server {
    addr: SocketAddr,
    trust: Trust,
    hub: Arc<FakeHub>,
    link: Link,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (id, made) = quic::dev_identity(dir.path(), &[]).unwrap();
    assert!(made);
    let cfg = quic::server_config(&id).unwrap();
    let endpoint = quinn::Endpoint::server(cfg, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let hub = Arc::new(FakeHub::default());
    let link = Link::new();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(patrol_link::serve(
        endpoint,
        hub.clone(),
        link.clone(),
        16,
        shutdown.clone(),
    ));
    Server {
        addr,
        trust: Trust::Pinned(id.fingerprint),
        hub,
        link,
        shutdown,
        task,
        _dir: dir,
    }
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached");
}

const NOW: jiff::Timestamp = jiff::Timestamp::UNIX_EPOCH;

#[tokio::test]
async fn bad_token_is_refused() {
    let srv = start().await;
    let err = Session::connect(srv.addr, &srv.trust, "p1", "wrong")
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
    assert!(err.is_final());
    assert!(!srv.link.connected("p1"));
    srv.shutdown.cancel();
    srv.task.await.unwrap();
}

#[tokio::test]
async fn an_unknown_patrol_is_told_so() {
    let srv = start().await;
    let err = Session::connect(srv.addr, &srv.trust, "p9", "t1")
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
    srv.shutdown.cancel();
    srv.task.await.unwrap();
}

#[tokio::test]
async fn a_login_that_cannot_be_checked_is_not_blamed_on_the_patrol() {
    let srv = start().await;
    let err = Session::connect(srv.addr, &srv.trust, "p-down", "t1")
        .await
        .unwrap_err();
    // Not `bad_token` (final: the patrol would stop): closed, and it tries again.
    assert!(
        !matches!(err, ClientError::Refused { .. }) && !err.is_final(),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("internal error"),
        "closed with its reason: {err}"
    );
    srv.shutdown.cancel();
    srv.task.await.unwrap();
}

#[tokio::test]
async fn an_event_that_cannot_be_stored_gets_no_answer_and_the_connection_closes() {
    let srv = start().await;
    let (mut s, _, _) = Session::connect(srv.addr, &srv.trust, "p1", "t1")
        .await
        .unwrap();
    let seq = s.next_seq();
    let err = s
        .send_event(&FromPatrol::Received {
            seq,
            dispatch: 13,
            at: NOW,
        })
        .await
        .unwrap_err();
    // No `error` (which would be final): the patrol keeps it and resends after reconnecting.
    assert!(matches!(err, ClientError::Lost(_)), "{err:?}");
    assert!(!err.is_final());
    assert!(
        err.to_string().contains("internal error"),
        "closed with its reason: {err}"
    );
    srv.shutdown.cancel();
    srv.task.await.unwrap();
}

#[tokio::test]
async fn session_events_pushes_reconnect_and_replacement() {
    let srv = start().await;

    // Login: welcome and the open assignment, door code included.
    let (mut s, welcome, open) = Session::connect(srv.addr, &srv.trust, "p1", "t1")
        .await
        .unwrap();
    assert_eq!(welcome.open, vec![41]);
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].dispatch, 41);
    assert_eq!(open[0].access.door_code.expose(), "1402#");
    wait_for(|| srv.link.connected("p1")).await;
    assert_eq!(srv.link.sessions(), vec!["p1".to_string()]);

    // received -> ack, and the hub saw it.
    let seq = s.next_seq();
    let ev = FromPatrol::Received {
        seq,
        dispatch: 41,
        at: NOW,
    };
    assert_eq!(s.send_event(&ev).await.unwrap(), ToPatrol::Ack { seq });
    assert_eq!(
        srv.hub.events.lock().unwrap().as_slice(),
        &[("p1".to_string(), ev)]
    );

    // Another patrol's dispatch -> not_yours (the hub decides).
    let seq = s.next_seq();
    let answer = s
        .send_event(&FromPatrol::Accepted {
            seq,
            dispatch: 99,
            at: NOW,
        })
        .await
        .unwrap();
    assert!(
        matches!(answer, ToPatrol::Error { seq: Some(n), code: ErrorCode::NotYours, fatal: false, .. } if n == seq),
        "{answer:?}"
    );

    // A pushed warning arrives, numbered by the session.
    assert!(srv.link.push(
        "p1",
        ToPatrol::SlaWarning {
            seq: 0,
            dispatch: 41,
            minutes_left: 10,
            deadline: NOW,
        }
    ));
    assert!(!srv.link.push(
        "p2",
        ToPatrol::Cancelled {
            seq: 0,
            dispatch: 1,
            cause: CancelCause::Withdrawn,
            reason: String::new()
        }
    ));
    let m = s.next_push(Duration::from_secs(5)).await.unwrap();
    assert!(
        matches!(
            m,
            Some(ToPatrol::SlaWarning {
                seq: 2,
                dispatch: 41,
                minutes_left: 10,
                ..
            })
        ),
        "{m:?}"
    );

    // Reconnect: the open assignment comes again, numbered after the warning.
    s.close().await;
    wait_for(|| !srv.link.connected("p1")).await;
    let (mut first, welcome, open) = Session::connect(srv.addr, &srv.trust, "p1", "t1")
        .await
        .unwrap();
    assert_eq!(welcome.open, vec![41]);
    assert_eq!(open.len(), 1);
    assert_eq!(
        open[0].seq, 3,
        "the server's seq goes on across connections"
    );

    // A second login replaces the first.
    let (mut second, _, open) = Session::connect(srv.addr, &srv.trust, "p1", "t1")
        .await
        .unwrap();
    assert_eq!(open.len(), 1);
    let m = first.next_push(Duration::from_secs(5)).await;
    assert!(
        matches!(
            m,
            Ok(Some(ToPatrol::Error {
                code: ErrorCode::Replaced,
                fatal: true,
                ..
            }))
        ),
        "{m:?}"
    );
    // The newer one still works.
    let seq = second.next_seq();
    let ev = FromPatrol::Arrived {
        seq,
        dispatch: 41,
        at: NOW,
        method: vakt::model::ArrivalMethod::App,
        code: None,
    };
    assert_eq!(second.send_event(&ev).await.unwrap(), ToPatrol::Ack { seq });
    assert_eq!(srv.link.sessions(), vec!["p1".to_string()]);

    second.close().await;
    srv.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), srv.task)
        .await
        .unwrap()
        .unwrap();
}
