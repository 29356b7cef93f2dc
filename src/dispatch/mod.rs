//! Dispatch: sending a Call to the right home-care patrol.
//!
//! - [`routing`]: which patrols may go (the directory's routing rules, the patrols' areas and
//!   shifts at `now`), the one to suggest, and the fallback when a patrol does not confirm
//!   receipt. Pure; takes `now` and the time zone as parameters.

pub mod routing;

pub use routing::{Candidate, next_after, on_shift, route, suggest};
