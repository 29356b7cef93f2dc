//! The demo data and its seed.

use std::collections::HashSet;

use vakt_proto::crypto::Key;

use super::*;
use crate::sim::dc09_fleet::fleet;
use crate::sim::scaip_homes::scaip_homes;
use crate::sim::{OFFLINE_PATROL, SimOptions};

fn subscribers() -> Vec<crate::model::Subscriber> {
    crate::registers::subscribers::parse_csv(SUBSCRIBERS_CSV.as_bytes()).unwrap()
}

fn devices() -> Vec<Device> {
    devices::parse_csv(devices::DEMO_CSV.as_bytes()).unwrap()
}

#[test]
fn demo_files_parse_and_fit_together() {
    let subs = subscribers();
    assert!(subs.len() >= 30, "{}", subs.len());
    let ids: HashSet<&str> = subs.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids.len(), subs.len(), "subscriber ids are unique");
    let devs = devices();
    let mut accounts = HashSet::new();
    let mut scaip_subscribers = HashSet::new();
    for d in &devs {
        match (&d.sip_user, &d.sip_password) {
            // A DC-09 device: 4 hex digits.
            (None, None) => assert_eq!(d.account.len(), 4, "{}", d.account),
            // A SCAIP home: cid 7001xx, its own SIP user luc-7001xx and a password.
            (Some(user), Some(pw)) => {
                assert!(
                    d.account.len() == 6 && d.account.starts_with("7001"),
                    "{}",
                    d.account
                );
                assert_eq!(*user, format!("luc-{}", d.account));
                assert!(pw.expose().len() >= 12, "{}", d.account);
                assert!(d.key.is_none(), "{}", d.account);
                let s = d.subscriber.clone().unwrap();
                assert!(scaip_subscribers.insert(s), "one SCAIP home each");
            }
            _ => panic!("{}: sip_user without sip_password", d.account),
        }
        assert!(accounts.insert(d.account.clone()), "{} twice", d.account);
        let s = d.subscriber.as_deref().unwrap();
        assert!(
            ids.contains(s),
            "device {} belongs to unknown {s}",
            d.account
        );
        let t = d.device_type.as_deref().unwrap();
        assert!(devices::DEVICE_TYPES.contains(&t), "{t}");
        let sup = d.supervision_secs.unwrap();
        assert!((90..=3600).contains(&sup), "{sup}");
    }
    assert!(
        (4..=6).contains(&scaip_subscribers.len()),
        "{scaip_subscribers:?}"
    );
    // Every subscriber has a DC-09 carephone (the SCAIP homes a second alarm unit).
    for s in &subs {
        assert!(
            devs.iter()
                .any(|d| d.subscriber.as_deref() == Some(s.id.as_str())
                    && d.device_type.as_deref() == Some("carephone")
                    && d.sip_user.is_none()),
            "{} has no carephone",
            s.id
        );
    }
    // The simulators split the fleet between them.
    let opts = SimOptions::default();
    assert_eq!(
        fleet(&opts).len() + scaip_homes(&opts.scaip).len(),
        devs.len()
    );
    assert!(fleet(&opts).iter().all(|d| !d.account.starts_with("7001")));
    // The accounts the README, tests and tools use.
    let bits = |a: &str| {
        devs.iter()
            .find(|d| d.account == a)
            .map(|d| d.key.as_ref().map(Key::bits))
    };
    assert_eq!(bits("1234"), Some(None));
    assert_eq!(bits("5678"), Some(Some(128)));
    assert_eq!(bits("9ABC"), Some(Some(256)));
    assert_eq!(bits("AAAA"), Some(None));
    let k128 = devs.iter().find(|d| d.account == "5678").unwrap();
    assert_eq!(
        k128.key.as_ref().unwrap().as_bytes(),
        hex::decode("000102030405060708090A0B0C0D0E0F").unwrap()
    );
}

#[test]
fn most_demo_people_let_the_patrol_read_their_health_notes() {
    // The consent of seed 001's form: most gave it, a few did not, so the demo shows both
    // what a patrol gets and that notes are withheld without it.
    let subs = subscribers();
    let consented = subs.iter().filter(|s| s.health_to_patrol).count();
    assert!(
        consented * 4 >= subs.len() * 3,
        "{consented} of {}",
        subs.len()
    );
    assert!(consented < subs.len());
    let first = subs.iter().find(|s| s.id == "S-1001").unwrap();
    assert!(first.health_to_patrol && !first.health_notes.is_empty());
}

#[test]
fn pronouns_come_from_the_personal_number() {
    assert_eq!(pronoun("19380412-9827"), "her");
    assert_eq!(pronoun("19310903-9812"), "his");
    assert_eq!(pronoun(""), "their");
    let subs = subscribers();
    let asa = subs.iter().find(|s| s.id == "S-1001").unwrap();
    assert_eq!(asa.name, "Åsa Öberg");
    assert_eq!(pronoun(&asa.personal_number), "her");
}

#[test]
fn passwords_are_random_and_long_enough() {
    let mut rng = rand::rng();
    let a = password(&mut rng);
    let b = password(&mut rng);
    assert_ne!(a, b);
    assert_eq!(a.len(), 19);
    assert!(a.chars().count() >= crate::console::auth::MIN_PASSWORD_CHARS);
    let users = DemoUsers {
        operator: ("operator".into(), a.clone()),
        supervisor: ("supervisor".into(), b.clone()),
        municipality: ("kommun".into(), b),
        patrols: vec![PatrolLogin {
            patrol: "norr-dag".into(),
            token: Secret::new("t0ps3cret"),
        }],
    };
    let debug = format!("{users:?}");
    assert!(!debug.contains(&a), "no password in Debug");
    assert!(!debug.contains("t0ps3cret"), "no token in Debug");
}

#[test]
fn seed_fills_an_empty_directory_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = jiff::Timestamp::from_second(1_790_000_000).unwrap();
    let users = seed(&store, now).unwrap().expect("seeded");
    assert_eq!(users.operator.0, "operator");
    assert_eq!(users.supervisor.0, "supervisor");
    assert_ne!(users.operator.1, users.supervisor.1);
    assert_ne!(users.supervisor.1, users.municipality.1);
    assert_eq!(store.subscriber_count().unwrap(), subscribers().len());
    assert_eq!(store.devices().unwrap().len(), devices().len());
    assert_eq!(store.user_count().unwrap(), 3);
    let op = store.user("operator").unwrap().unwrap();
    assert_eq!(op.role, Role::Operator);
    assert_eq!(op.created_at, now);
    assert!(crate::console::auth::verify_password(
        &users.operator.1,
        &op.password_hash
    ));
    let sup = store.user("supervisor").unwrap().unwrap();
    assert_eq!(sup.role, Role::Supervisor);
    let kommun = store.user("kommun").unwrap().unwrap();
    assert_eq!(kommun.role, Role::Municipality);
    assert_eq!(kommun.tenant.as_deref(), Some(DEMO_MUNICIPALITY));
    assert_eq!(
        crate::config::Config::embedded().care.municipality,
        DEMO_MUNICIPALITY,
        "the demo's people are the embedded configuration's municipality's"
    );
    assert!(
        seed(&store, now).unwrap().is_none(),
        "second seed does nothing"
    );
    assert_eq!(store.user_count().unwrap(), 3);
}

#[test]
fn seed_saves_the_directory_and_a_token_per_patrol_and_the_logins_survive() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let users = seed(&store, jiff::Timestamp::UNIX_EPOCH)
        .unwrap()
        .expect("seeded");
    let expected = crate::registers::directory::parse_all(
        crate::registers::directory::DEMO_PROVIDERS.as_bytes(),
        crate::registers::directory::DEMO_AREAS.as_bytes(),
        crate::registers::directory::DEMO_PATROLS.as_bytes(),
        crate::registers::directory::DEMO_ROUTES.as_bytes(),
    )
    .unwrap();
    assert_eq!(store.directory().unwrap(), expected);
    assert_eq!(
        store.staff().unwrap(),
        crate::registers::staff::parse_staff(crate::registers::staff::DEMO_STAFF.as_bytes())
            .unwrap(),
        "the staff list to call in"
    );
    let ids: Vec<&str> = users.patrols.iter().map(|l| l.patrol.as_str()).collect();
    let want: Vec<&str> = expected.patrols.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, want, "a login for every patrol, in id order");
    assert!(ids.contains(&OFFLINE_PATROL));
    let tokens: HashSet<&str> = users.patrols.iter().map(|l| l.token.expose()).collect();
    assert_eq!(tokens.len(), users.patrols.len(), "tokens differ");
    for l in &users.patrols {
        let hash = crate::store::token_hash(l.token.expose());
        assert!(
            store.patrol_token_matches(&l.patrol, &hash).unwrap(),
            "{}",
            l.patrol
        );
    }
    assert!(!format!("{users:?}").contains(users.patrols[0].token.expose()));

    // Kept in the data directory, for the owner only, and read back the same.
    assert!(load_patrol_logins(dir.path()).is_err(), "nothing saved yet");
    let path = dir.path().join(PATROL_LOGINS_FILE);
    std::fs::write(&path, "old").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        save_patrol_logins(dir.path(), &users.patrols).unwrap(),
        path
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    assert_eq!(load_patrol_logins(dir.path()).unwrap(), users.patrols);

    // A later start (the store reopened) still lets the patrols in.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert!(seed(&store, jiff::Timestamp::UNIX_EPOCH).unwrap().is_none());
    for l in load_patrol_logins(dir.path()).unwrap() {
        let hash = crate::store::token_hash(l.token.expose());
        assert!(
            store.patrol_token_matches(&l.patrol, &hash).unwrap(),
            "{}",
            l.patrol
        );
    }
}

#[test]
fn the_logins_file_is_read_strictly_and_never_echoes_a_token() {
    let text = "# comment\n\n  norr-dag abc  \nsoder-dag def\nnorr-dag ghi\n";
    let got = parse_logins(text).unwrap();
    assert_eq!(
        got,
        vec![
            PatrolLogin {
                patrol: "soder-dag".into(),
                token: Secret::new("def")
            },
            PatrolLogin {
                patrol: "norr-dag".into(),
                token: Secret::new("ghi")
            },
        ],
        "the last token of a patrol counts"
    );
    let e = parse_logins("norr-dag\n").unwrap_err();
    assert_eq!(e, "line 1: expected `PATROL TOKEN`");
    let e = parse_logins("# x\nnorr-dag s3cr3t extra\n").unwrap_err();
    assert_eq!(e, "line 2: expected `PATROL TOKEN`");
    let e = parse_logins("n/a s3cr3t\n").unwrap_err();
    assert!(e.starts_with("line 1: not a patrol id"), "{e}");
    assert!(!e.contains("s3cr3t"));
    let long = format!("norr-dag {}\n", "x".repeat(MAX_TOKEN_CHARS + 1));
    assert!(parse_logins(&long).is_err());
    assert_eq!(parse_logins("").unwrap(), vec![]);
}

#[test]
fn seed_leaves_a_used_directory_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let one = devices::parse_csv(format!("{}\n4242,,,,,,,,,\n", devices::CSV_HEADER_V2).as_bytes())
        .unwrap();
    store.upsert_devices(&one).unwrap();
    assert!(seed(&store, jiff::Timestamp::UNIX_EPOCH).unwrap().is_none());
    assert_eq!(store.subscriber_count().unwrap(), 0);
    assert_eq!(store.user_count().unwrap(), 0);
}
