//! vakt: an alarm receiving centre (ARC) server for social alarms.
//!
//! Elderly and disabled people's safety alarms (pendants, fall and smoke detectors) reach vakt
//! over IP. vakt stores every alarm durably before it answers the device, and puts it in front
//! of an operator; dispatches home-care patrols and watches that they arrive in time.
//!
//! # Layout (the path of an alarm)
//!
//! - [`transport`]: TCP and UDP listeners, permits, LF..CR framing, answers in order.
//! - [`codec`]: SIA DC-09 frames, CRC, AES, ADM-CID and SIA-DCS payloads. Sans-IO.
//! - [`receiver`]: what each frame gets (ACK, NAK, DUH; journaled or not); builds the
//!   normalised [`model::Signal`]. Takes `now` as a parameter.
//! - [`journal`]: group commit through one committer; dedup window. No ACK before the flush.
//! - [`store`]: the sled database (journal, registry, Calls, dispatches, users, audit, ...).
//! - [`registry`]: the device registry in memory, CSV import.
//! - [`subscribers`]: the subscriber register's CSV import and checks.
//! - [`directory`]: care providers, areas, patrols and routing rules; their CSV import.
//! - [`supervision`]: last-heard times, heartbeat deadlines of every device (a sharded timer
//!   wheel) and the telecom-incident detector.
//! - [`supervise`]: the supervision loop: silences and restorations journaled, incidents
//!   opened and resolved.
//! - [`incidents`]: telecom incidents (one in front of operators instead of a Call per device)
//!   and their notifications.
//! - [`outbox`]: the durable escalation outbox (signed webhooks, retried until acknowledged).
//! - [`work_orders`]: device faults as work orders for the installer, with working-day
//!   deadlines.
//! - [`triage`]: the priority table, opening and merging Calls, the lock-free queue and claims.
//! - [`calls`]: the Call service around triage (store writer, live feed, answer figures) and
//!   the dispatch clocks ([`calls::sla`]).
//! - [`dispatch`]: routing a Call to a patrol (provider, area, shift), the dispatcher and its
//!   desk (operators, patrols, lock systems, clocks), the patrols' QUIC link.
//! - [`report`]: the monthly arrival-SLA report.
//! - [`patrol_client`]: `vakt patrol`, the terminal reference client of the patrol protocol.
//! - [`console`]: HTTP: health, metrics, API.
//! - [`telemetry`]: tracing setup and every metric, described in one place.
//! - [`config`]: typed configuration with an embedded, documented default.
//! - [`server`]: wiring, start and graceful shutdown.
//! - [`cli`]: the sub-commands other than `serve`.
//! - [`demo`]: `serve --demo`: the demo municipality's seed, device and patrol simulators.

#![forbid(unsafe_code)]

pub mod calls;
pub mod cli;
pub mod config;
pub mod console;
pub mod dispatch;
pub mod ingest;
pub mod journal;
pub mod model;
pub mod outbox;
pub mod registers;
pub mod server;
pub mod sim;
pub mod store;
pub mod supervision;
pub mod telemetry;
pub mod transport;
pub mod triage;
pub mod work_orders;
