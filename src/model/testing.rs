//! Fixtures for tests, benches and simulators: a [`Signal`] and a [`SignalEvent`] with plain
//! defaults, so that each use states only the fields that matter to it:
//!
//! ```
//! use vakt::model::testing::{event, signal};
//! use vakt::model::Signal;
//! use vakt_proto::event::Qualifier;
//!
//! let press = Signal {
//!     subscriber: Some("S-1".into()),
//!     events: vec![event("CID 101", Qualifier::New)],
//!     ..signal()
//! };
//! assert_eq!(press.account, "1234");
//! ```

use std::net::SocketAddr;

use vakt_proto::event::Qualifier;

use super::{Flags, Signal, SignalEvent, Transport};

/// A Signal of id 1: an ADM-CID frame over TCP from 127.0.0.1:1, account `1234`, sequence
/// `0001`, received at 2023-11-14T22:13:20Z (Unix second 1,700,000,000), with no flags, no
/// subscriber, no events and no raw bytes.
pub fn signal() -> Signal {
    Signal {
        id: 1,
        received_at: jiff::Timestamp::constant(1_700_000_000, 0),
        transport: Transport::Tcp,
        peer: SocketAddr::from(([127, 0, 0, 1], 1)),
        protocol: "ADM-CID".into(),
        encrypted: false,
        account: "1234".into(),
        line: None,
        receiver: None,
        seq: "0001".into(),
        flags: Flags::default(),
        subscriber: None,
        device_type: None,
        transmitted_at: None,
        event_time: None,
        events: Vec::new(),
        xdata: Vec::new(),
        raw: Vec::new(),
        scaip: None,
    }
}

/// An event with this code and qualifier and nothing else (no name, zone, group, user, text
/// or time).
pub fn event(code: &str, qualifier: Qualifier) -> SignalEvent {
    SignalEvent {
        code: code.into(),
        name: None,
        qualifier,
        zone: None,
        group: None,
        user: None,
        text: None,
        time: None,
    }
}
