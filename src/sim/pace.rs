//! How the simulators pace themselves: random intervals and delays within bounds, pauses
//! that shutdown cuts short, the reconnect backoff.

use std::ops::RangeInclusive;
use std::time::Duration;

use rand::Rng;
use rand::rngs::SmallRng;
use tokio_util::sync::CancellationToken;

/// Shortest interval accepted (a bound against a busy loop).
pub(super) const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Longest interval accepted (a bound against overflowing the clock).
pub(super) const MAX_INTERVAL: Duration = Duration::from_secs(86_400);
/// First and longest wait before reconnecting after an error.
pub(super) const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Longest delay drawn (a bound against overflowing the clock).
pub(super) const MAX_DELAY: Duration = Duration::from_secs(86_400);

/// `interval` (clamped to a sane range), at most two thirds of a supervision interval.
pub(super) fn beat_within(interval: Duration, supervision_secs: Option<u32>) -> Duration {
    let hb = interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
    match supervision_secs {
        Some(s) => hb
            .min(Duration::from_millis(u64::from(s) * 2000 / 3))
            .max(MIN_INTERVAL),
        None => hb,
    }
}

/// An exponentially distributed interval around `mean` (at most 10 means).
pub(super) fn exp_interval(rng: &mut SmallRng, mean: Duration) -> Duration {
    let u: f64 = rng.random();
    let x = -(1.0 - u).ln();
    mean.mul_f64(x.clamp(0.0, 10.0)).max(MIN_INTERVAL)
}

/// Sleeps `d`; true if `shutdown` came first.
pub(super) async fn pause(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        biased;
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(d) => false,
    }
}

/// A delay drawn uniformly from `r` (see [`super::PatrolSimOptions`]).
pub(super) fn draw(rng: &mut SmallRng, r: &RangeInclusive<Duration>) -> Duration {
    let ms = |d: Duration| u64::try_from(d.min(MAX_DELAY).as_millis()).unwrap_or(0);
    let (a, b) = (ms(*r.start()), ms(*r.end()));
    Duration::from_millis(rng.random_range(a.min(b)..=a.max(b)))
}
