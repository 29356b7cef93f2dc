use super::*;

fn t(secs: i64) -> Timestamp {
    Timestamp::constant(1_800_000_000 + secs, 0)
}

fn keys(items: &[(KeyKind, u8)]) -> Vec<KeyCount> {
    items
        .iter()
        .map(|(kind, count)| KeyCount {
            kind: *kind,
            count: *count,
        })
        .collect()
}

fn installer() -> Holder {
    Holder::Installer {
        name: "Ivar Installatör".into(),
    }
}

fn provider(id: &str) -> Holder {
    Holder::Provider { id: id.into() }
}

fn receipt(id: u64, from: Holder, to: Holder, items: &[(KeyKind, u8)]) -> Receipt {
    Receipt {
        id,
        subscriber: "S-1001".into(),
        from,
        to,
        items: keys(items),
        reason: HandoverReason::Installation,
        order: Some(1),
        written_at: t(0),
        written_by: "sara".into(),
        state: ReceiptState::Pending,
    }
}

use KeyKind::*;

#[test]
fn keys_move_from_the_person_to_the_installer_to_home_care_only_when_signed() {
    let mut c = Custody::default();
    // The installer takes two door keys and the entrance tag from Åsa.
    let mut taken = receipt(
        1,
        Holder::Subscriber,
        installer(),
        &[(Door, 2), (AccessTag, 1)],
    );
    assert_eq!(c.count(&installer(), Door), 0, "pending changes nothing");
    taken
        .sign(&mut c, t(10), "Åsa Öberg", "Ivar Installatör", "sara")
        .unwrap();
    assert_eq!(c.of(&installer()), keys(&[(Door, 2), (AccessTag, 1)]));
    // And leaves them with home care Centrum (seed 001 1.2.5).
    let mut left = receipt(
        2,
        installer(),
        provider("centrum"),
        &[(Door, 2), (AccessTag, 1)],
    );
    left.sign(&mut c, t(20), "Ivar Installatör", "Karin Hemtjänst", "sara")
        .unwrap();
    assert!(c.of(&installer()).is_empty());
    assert_eq!(
        c.of(&provider("centrum")),
        keys(&[(Door, 2), (AccessTag, 1)])
    );
    assert_eq!(
        c.holdings(),
        [Holding {
            holder: provider("centrum"),
            keys: keys(&[(Door, 2), (AccessTag, 1)])
        }]
    );
    // A patrol of Centrum has keys; one of Norr has neither keys nor the lock.
    assert!(!c.access_for("centrum", false).none());
    assert!(c.access_for("norr", false).none());
    assert!(!c.access_for("norr", true).none());
    // Signed once only; the state says by whom.
    assert_eq!(
        left.sign(&mut c, t(30), "a", "b", "sara"),
        Err(ReceiptError::NotPending(2))
    );
    assert!(matches!(
        &left.state,
        ReceiptState::Signed { handed_by, received_by, .. }
            if handed_by == "Ivar Installatör" && received_by == "Karin Hemtjänst"
    ));
    // Custody read back from the receipts is the same.
    assert_eq!(Custody::from_receipts([&left, &taken]), c);
}

#[test]
fn nobody_hands_over_more_than_they_hold_and_a_refused_signature_moves_nothing() {
    let mut c = Custody::default();
    receipt(1, Holder::Subscriber, provider("centrum"), &[(Door, 1)])
        .sign(&mut c, t(1), "Åsa", "Karin", "sara")
        .unwrap();
    let before = c.clone();
    let mut too_many = receipt(
        2,
        provider("centrum"),
        provider("norr"),
        &[(Door, 1), (SevenLever, 1)],
    );
    assert_eq!(
        too_many.sign(&mut c, t(2), "Karin", "Nils", "sara"),
        Err(ReceiptError::Short {
            holder: "provider centrum".into(),
            kind: SevenLever,
            held: 0,
            handed: 1
        })
    );
    assert_eq!(c, before, "all or nothing");
    assert_eq!(too_many.state, ReceiptState::Pending);
    // Signatures need names.
    let mut change = receipt(3, provider("centrum"), provider("norr"), &[(Door, 1)]);
    assert_eq!(
        change.sign(&mut c, t(3), " ", "Nils", "sara"),
        Err(ReceiptError::Signature)
    );
    change.sign(&mut c, t(3), "Karin", "Nils", "sara").unwrap();
    assert_eq!(c.count(&provider("norr"), Door), 1);
    assert!(
        c.access_for("centrum", false).none(),
        "the old group has no key"
    );
    // Back to the person at the end: out of custody.
    let mut back = receipt(4, provider("norr"), Holder::Subscriber, &[(Door, 1)]);
    back.sign(&mut c, t(4), "Nils", "Åsa", "sara").unwrap();
    assert!(c.holdings().is_empty());
}

#[test]
fn a_receipt_lists_each_kind_once_between_two_named_holders() {
    let ok = keys(&[(Door, 2)]);
    assert_eq!(
        check_receipt(&Holder::Subscriber, &installer(), &ok),
        Ok(())
    );
    assert_eq!(
        check_receipt(&Holder::Subscriber, &installer(), &[]),
        Err(ReceiptError::Items)
    );
    assert_eq!(
        check_receipt(
            &Holder::Subscriber,
            &installer(),
            &keys(&[(Door, 1), (Door, 1)])
        ),
        Err(ReceiptError::Items)
    );
    assert_eq!(
        check_receipt(&Holder::Subscriber, &installer(), &keys(&[(Door, 0)])),
        Err(ReceiptError::Items)
    );
    assert_eq!(
        check_receipt(&Holder::Cabinet, &Holder::Cabinet, &ok),
        Err(ReceiptError::Holders)
    );
    assert_eq!(
        check_receipt(
            &Holder::Installer { name: " ".into() },
            &Holder::Cabinet,
            &ok
        ),
        Err(ReceiptError::Holders)
    );
}

#[test]
fn a_pending_receipt_is_voided_with_a_reason_and_then_never_signed() {
    let mut c = Custody::default();
    let mut r = receipt(1, Holder::Subscriber, installer(), &[(KeyBox, 1)]);
    assert_eq!(r.void(t(1), "sara", ""), Err(ReceiptError::Reason));
    r.void(t(1), "sara", "Written twice").unwrap();
    assert_eq!(
        r.sign(&mut c, t(2), "a", "b", "sara"),
        Err(ReceiptError::NotPending(1))
    );
    assert!(c.holdings().is_empty());
    // Receipts and holdings read back from their JSON.
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(serde_json::from_str::<Receipt>(&json).unwrap(), r);
    let h = Holding {
        holder: provider("centrum"),
        keys: keys(&[(Door, 2)]),
    };
    let json = serde_json::to_value(&h).unwrap();
    assert_eq!(json["holder"], "provider");
    assert_eq!(json["id"], "centrum");
    assert_eq!(serde_json::from_value::<Holding>(json).unwrap(), h);
}
