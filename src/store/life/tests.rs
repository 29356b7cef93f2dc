use jiff::Timestamp;
use jiff::civil::date;

use super::*;
use crate::model::calendar::{WorkingDays, swedish_holidays_2026_2027};
use crate::model::keys::{Custody, HandoverReason, Holder, ReceiptState};
use crate::model::life::{Life, LifeError, LifeStatus};
use crate::model::order::{KeyCount, KeyKind, NewOrder, OrderKind, OrderOptions};
use crate::store::testing::on_each_backend;

fn t(s: i64) -> Timestamp {
    Timestamp::constant(1_796_000_000 + s, 0)
}

fn days() -> WorkingDays {
    WorkingDays::new(
        swedish_holidays_2026_2027(),
        jiff::tz::TimeZone::get("Europe/Stockholm").unwrap(),
    )
}

pub(crate) fn order(id: u64, subscriber: &str, external: Option<&str>) -> Order {
    let new = NewOrder {
        external_id: external.map(str::to_owned),
        kind: Some(OrderKind::NewAlarm),
        subscriber: subscriber.into(),
        decided_on: Some(date(2026, 12, 1)),
        keys_required: vec![KeyCount {
            kind: KeyKind::Door,
            count: 2,
        }],
        ..NewOrder::default()
    };
    Order::new(
        id,
        OrderKind::NewAlarm,
        new,
        "care-system:procapita",
        t(id as i64),
        &days(),
        &OrderOptions::default(),
    )
}

pub(crate) fn receipt(id: u64, subscriber: &str) -> Receipt {
    Receipt {
        id,
        subscriber: subscriber.into(),
        from: Holder::Subscriber,
        to: Holder::Installer {
            name: "Ivar".into(),
        },
        items: vec![KeyCount {
            kind: KeyKind::Door,
            count: 2,
        }],
        reason: HandoverReason::Installation,
        order: Some(1),
        written_at: t(0),
        written_by: "sara".into(),
        state: ReceiptState::Pending,
    }
}

on_each_backend! {
fn an_order_from_the_care_system_is_stored_once_and_listed_while_open(b) {
    let store = b.open();
    let first = store.add_order(|id| order(id, "S-1", Some("PC-77"))).unwrap();
    let Stored::New(first) = first else { panic!("{first:?}") };
    assert_eq!(first.id, 1);
    // The same care-system id again: the stored order, no second one.
    let again = store.add_order(|id| order(id, "S-1", Some("PC-77"))).unwrap();
    assert_eq!(again, Stored::Known(first.clone()));
    let Stored::New(other) = store.add_order(|id| order(id, "S-10", None)).unwrap() else {
        panic!("a new order")
    };
    assert!(other.id > first.id);
    assert_eq!(store.open_orders().unwrap(), [first.clone(), other.clone()]);
    assert_eq!(store.orders_of("S-1").unwrap(), std::slice::from_ref(&first));
    assert_eq!(store.orders_of("S-10").unwrap(), std::slice::from_ref(&other));
    let mut done = first.clone();
    done.complete(t(100), "ivar").unwrap();
    store.save_order(&done).unwrap();
    drop(store);
    let store = b.open();
    assert_eq!(store.open_orders().unwrap(), [other]);
    assert_eq!(store.order(done.id).unwrap(), Some(done));
}
}

on_each_backend! {
fn receipts_are_kept_per_subscriber_and_pending_until_signed(b) {
    let store = b.open();
    let r1 = store.add_receipt(|id| receipt(id, "S-1")).unwrap();
    let r2 = store.add_receipt(|id| receipt(id, "S-10")).unwrap();
    assert_eq!((r1.id, r2.id), (1, 2));
    assert_eq!(store.pending_receipts().unwrap(), [r1.clone(), r2.clone()]);
    let mut signed = r1.clone();
    let mut custody = Custody::default();
    signed.sign(&mut custody, t(5), "Åsa", "Ivar", "sara").unwrap();
    store.save_receipt(&signed).unwrap();
    drop(store);
    let store = b.open();
    assert_eq!(store.pending_receipts().unwrap(), [r2]);
    assert_eq!(store.receipts_of("S-1").unwrap(), [signed.clone()]);
    assert_eq!(Custody::from_receipts(&store.receipts_of("S-1").unwrap()), custody);
}
}

on_each_backend! {
fn a_life_changes_atomically_and_a_refused_change_stores_nothing(b) {
    let store = b.open();
    assert_eq!(store.life("S-1").unwrap(), None);
    let l = store
        .update_life::<StoreError>("S-1", |old| {
            assert!(old.is_none());
            Ok(Life::ordered("S-1", None, t(0), "sara"))
        })
        .unwrap();
    assert_eq!(l.status, LifeStatus::Ordered);
    // Eight threads each add a history line at once: none is lost.
    std::thread::scope(|s| {
        for i in 0..8 {
            let store = store.clone();
            s.spawn(move || {
                store
                    .update_life::<StoreError>("S-1", |old| {
                        let mut l = old.unwrap();
                        l.note(t(i), "sara", format!("line {i}"));
                        Ok(l)
                    })
                    .unwrap();
            });
        }
    });
    assert_eq!(store.life("S-1").unwrap().unwrap().history.len(), 9);
    #[derive(Debug)]
    enum E {
        Life(LifeError),
        Store(#[allow(dead_code)] StoreError),
    }
    impl From<StoreError> for E {
        fn from(e: StoreError) -> E {
            E::Store(e)
        }
    }
    let refused = store.update_life::<E>("S-1", |old| {
        let mut l = old.unwrap();
        l.activate(&[], &Custody::default(), date(2026, 12, 7), t(9), "sara")
            .map_err(E::Life)?;
        Ok(l)
    });
    assert!(matches!(refused, Err(E::Life(LifeError::NotReady(_)))), "{refused:?}");
    drop(store);
    let store = b.open();
    let l = store.life("S-1").unwrap().unwrap();
    assert_eq!((l.status, l.history.len()), (LifeStatus::Ordered, 9));
    assert_eq!(store.lives().unwrap(), [l]);
}
}
