//! vakt: an alarm receiving centre (ARC) server for social alarms.
//!
//! Elderly and disabled people's safety alarms (pendants, fall and smoke detectors) reach vakt
//! over IP. vakt stores every alarm durably before it answers the device, and puts it in front
//! of an operator; dispatches home-care patrols and watches that they arrive in time.
//!
//! # Layout
//!
//! The folders read top-down as the alarm travels, in floors; a module imports only modules of
//! lower floors, never its own floor or one above (`tests/tidy.rs` keeps it so). The device
//! codecs are their own crate, `vakt_proto` (in `proto/`), below everything here.
//!
//! - [`cli`]: the sub-commands (`serve`, imports, users, exports, `patrol`); `main.rs` only
//!   parses, sets up tracing and calls [`cli::run`].
//! - [`sim`]: the other side of the wire: the demo's seed, its DC-09 fleet, SCAIP homes and
//!   patrol apps, and the reference clients (`vakt patrol`, a SCAIP unit).
//! - [`server`]: the parts built in order with their stops, graceful shutdown with a deadline.
//! - [`config`]: the configuration; it builds each part's own options.
//! - [`console`] and [`ingest`]: the two doors. The console is the operators' HTTP API, live
//!   feed and page; ingest is what a device's message gets and the rule that it is durable
//!   before the device is told so (DC-09 and SCAIP).
//! - [`dispatch`], [`supervision`], [`work_orders`], [`voice`]: patrols and their clocks;
//!   heartbeats, silences and telecom incidents; device faults for the installer; the
//!   conversation with the person (calls in and out, the browser's leg, the recording).
//! - [`calls`]: the Call service around triage (store writer, live feed, answer figures).
//! - [`triage`], [`registers`], [`journal`], [`outbox`]: the priority table and the queue;
//!   devices, subscribers and the directory; the group-committed journal; durable webhooks.
//! - [`store`] and [`transport`]: the database (the only module that names sled); listeners,
//!   permits, framing and writing, generic over what the floors above do with a frame.
//! - [`telemetry`]: tracing setup and every metric, described in one place.
//! - [`model`]: the vocabulary (Signal, Call, Dispatch, Subscriber, ...).

#![forbid(unsafe_code)]

pub mod calls;
pub mod care;
pub mod cli;
pub mod config;
pub mod console;
pub mod dispatch;
pub mod ingest;
pub mod journal;
pub mod model;
pub mod outbox;
pub mod registers;
pub mod retention;
pub mod server;
pub mod sim;
pub mod store;
pub mod supervision;
pub mod telemetry;
pub mod transport;
pub mod triage;
pub mod voice;
pub mod work_orders;
