//! Dispatch: sending a Call to the right home-care patrol.
//!
//! - [`routing`]: which patrols may go (the directory's routing rules, the patrols' areas and
//!   shifts at `now`), the one to suggest, and the fallback when a patrol does not confirm
//!   receipt or declines (the next untried patrol on shift). Pure; takes `now` and the time
//!   zone as parameters.
//! - [`service`]: the dispatcher: open dispatches in memory and in the store, moved by
//!   operators, patrols and the clocks; a dispatch not received in time passes to the next
//!   patrol on shift.
//! - [`desk`]: where operators, patrols, lock systems and the clocks meet the dispatcher;
//!   every step goes to the patrol, the Call's timeline, the consoles and the metrics.
//! - [`hub`]: the patrol link's view of vakt: tokens, assignments with the subscriber's card,
//!   patrol events applied by the dispatcher and made durable before they are acknowledged.
//! - [`patrol_link`]: the patrols' QUIC sessions (`proto/patrol.md`), behind a [`patrol_link::PatrolHub`].
//! - [`access`]: who can get into a home: the keys a patrol's provider holds by the signed
//!   receipts, and its lock access. Pure.
//! - [`report`]: the monthly SLA report; [`visits`]: the month's alarm visits per provider,
//!   with arrival and departure, for the providers' time reports and compensation.
//! - [`stats`]: the statistics of a municipality, a care provider or the centre over a day,
//!   a week, a month or any dates: alarms, answer and arrival times against their targets,
//!   the weekday by hour, frequent callers, faults; pure, with the store's read beside it.

pub mod access;
pub mod desk;
pub mod hub;
pub mod patrol_link;
pub mod report;
pub mod routing;
pub mod service;
pub mod sla;
pub mod stats;
pub mod visits;
pub mod wire;

pub use routing::{Candidate, Fallback, PassedOver, fallback, on_shift, route, suggest};
