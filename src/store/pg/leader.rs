//! Who leads: the loop that takes, renews and gives up the leader lease ([`super::lease`]),
//! and tells the rest of the node its [`Role`] through a `watch` channel.
//!
//! [`Leadership::start`] runs the loop on an OS thread of its own, with its own current-thread
//! runtime and one connection, so no load on the server's runtime (a burst of device
//! connections, a slow task) can delay a renewal. A node starts as
//! [`Role::Standby`]: every renew period it tries [`lease::acquire`], and otherwise reads who
//! holds the lease. Once it holds it, it is [`Role::Leader`] and renews every renew period.
//! It turns [`Role::Lost`], for good, when a renewal answers [`PgError::LeaseLost`] (expired
//! or taken), or when renewals keep failing (the database unreachable, a failover under way)
//! until the lease's time has run out. That time is counted on the local monotonic clock from
//! before the last successful request was sent: the database's `now()` of that request was no
//! earlier, so the node steps down no later than the database thinks its lease expired, and a
//! standby cannot take over while this node still acts as leader. Every request of a leader is
//! bounded by that moment: a renewal that hangs (packets dropped) does not keep the node
//! leading. Cutting a renewal short is safe: it only extends our own epoch, and the deadline
//! moves only on a renewal that answered. A take-over ([`lease::acquire`]) is never cut
//! short: its `UPDATE` could commit after we stopped waiting, leaving the lease taken by
//! nobody who knows it; a dead peer ends it through TCP keepalives (below), and a take-over
//! whose answer was lost that way leaves a lease that runs out unused within a ttl.
//!
//! [`Leadership::release`], at a graceful shutdown, first steps down ([`Role::Lost`]), then
//! gives the lease up so that a standby takes it at its next poll, without waiting for the
//! lease to expire. Dropping a [`Leadership`] stops the loop without releasing: a leader's
//! lease then expires by itself (its role turns [`Role::Lost`] first). [`Role::Lost`] is
//! terminal: the node stops acting as leader; to stand by again it starts a new
//! [`Leadership`].
//!
//! ## Timing
//!
//! The defaults ([`LeaderOptions::default`]) are a 5 s lease renewed every second. After a
//! kill -9 of the leader, its lease runs out at most 5 s after its last renewal, and a standby
//! polling every second takes it at most a second later: the standby leads within
//! ttl + renew = 6 s, which leaves 4 s of the 10 s budget (devices, patrols and
//! consoles back) for loading the open state and taking the listeners. A leader survives four
//! failed renewals in a row (a database that stalls for up to about 4 s, a dropped
//! connection reopened) before it steps down; a shorter lease would hand over sooner but step
//! down on shorter stalls. A renewal must come at least twice within a lease
//! ([`LeaderOptions::new`] refuses a renew period of half the lease or more), so one failed
//! renewal never costs the lease.
//!
//! The connection: `connect_timeout`, `tcp_user_timeout` and TCP keepalives are set from the
//! lease's times unless the URL gives them (the lease's ttl per host to connect; keepalives
//! after a ttl idle, every renew period, three probes), so a dead database breaks the
//! connection within seconds, not the kernel's hours. With several hosts in the URL and
//! `target_session_attrs=read-write`, a reconnection after a failover of the database finds
//! the new primary. The schema must be in place (the store applies it at start,
//! [`super::migrate`]). The URL is never logged; it may hold a password.
//!
//! The loop records the lease's metrics ([`ClusterMetrics`]): held or not, the epoch, the
//! renewals that failed, the take-overs.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};
use tokio_postgres::{Client, Config};

use super::PgError;
use super::lease::{self, Lease};
use crate::telemetry::ClusterMetrics;

/// What this node is, for the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not the leader: polling to take the lease when it expires or is released.
    Standby {
        /// Who holds the lease, as last read (`None`: nobody, or not known yet).
        holder: Option<String>,
    },
    /// The leader, under `epoch`: every write is fenced by it.
    Leader {
        /// The fencing epoch.
        epoch: i64,
    },
    /// Was the leader under `epoch` and is no more (the lease lost, expired or released):
    /// terminal; the node stops acting as leader.
    Lost {
        /// The epoch that was held.
        epoch: i64,
    },
}

impl Role {
    /// The epoch while this node leads; `None` otherwise.
    pub fn leading(&self) -> Option<i64> {
        match self {
            Role::Leader { epoch } => Some(*epoch),
            _ => None,
        }
    }
}

/// The lease's times: how long a lease lasts and how often it is renewed (and a standby
/// polls).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderOptions {
    ttl: Duration,
    renew: Duration,
}

impl Default for LeaderOptions {
    /// A 5 s lease renewed every second (the module doc says why).
    fn default() -> Self {
        LeaderOptions {
            ttl: Duration::from_secs(5),
            renew: Duration::from_secs(1),
        }
    }
}

impl LeaderOptions {
    /// A lease of `ttl` renewed every `renew`; refused (with the reason) unless `renew` is at
    /// least 10 ms and below half of `ttl`, and `ttl` at most an hour.
    pub fn new(ttl: Duration, renew: Duration) -> Result<LeaderOptions, String> {
        if renew < Duration::from_millis(10) {
            return Err(format!(
                "the renew period ({} ms) must be at least 10 ms",
                renew.as_millis()
            ));
        }
        if ttl > Duration::from_secs(3600) {
            return Err(format!(
                "the lease's ttl ({} ms) must be at most an hour",
                ttl.as_millis()
            ));
        }
        if renew * 2 >= ttl {
            return Err(format!(
                "the renew period ({} ms) must be below half of the lease's ttl ({} ms), so that \
                 one failed renewal does not cost the lease",
                renew.as_millis(),
                ttl.as_millis()
            ));
        }
        Ok(LeaderOptions { ttl, renew })
    }

    /// How long a lease lasts from its last renewal.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How often the lease is renewed, and a standby polls.
    pub fn renew(&self) -> Duration {
        self.renew
    }
}

/// The leader loop of this node; see the module doc. Dropping it stops the loop without
/// releasing the lease.
pub struct Leadership {
    node: String,
    role: watch::Receiver<Role>,
    ctl: mpsc::UnboundedSender<Release>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("node", &self.node)
            .field("role", &*self.role.borrow())
            .finish()
    }
}

/// A request to release, with where to send the answer.
struct Release(oneshot::Sender<Result<bool, PgError>>);

impl Leadership {
    /// Starts the loop for `node` (its name in the lease) on the database at `url` (a
    /// `postgresql://` URL or `key=value` string), as [`Role::Standby`]. Fails only when the
    /// URL cannot be parsed or the thread or its runtime cannot be started; the database is
    /// reached from the loop, which retries until it answers.
    pub fn start(url: &str, node: &str, options: LeaderOptions) -> Result<Leadership, PgError> {
        let mut config: Config = url.parse().map_err(PgError::Db)?;
        tune(&mut config, options);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(PgError::Runtime)?;
        let (role_tx, role) = watch::channel(Role::Standby { holder: None });
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let looper = Looper {
            config,
            node: node.to_owned(),
            options,
            role: role_tx,
            ctl: ctl_rx,
            client: None,
            failing: false,
            metrics: ClusterMetrics::new(),
        };
        std::thread::Builder::new()
            .name("vakt-leader".into())
            .spawn(move || rt.block_on(looper.run()))
            .map_err(PgError::Runtime)?;
        Ok(Leadership {
            node: node.to_owned(),
            role,
            ctl,
        })
    }

    /// The role, as it changes.
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// This node's name in the lease.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Steps down and gives the lease up so that a standby takes it at once (a graceful
    /// shutdown); the loop ends. `true` when a lease was released; `false` when this node did
    /// not hold one (a standby, or already [`Role::Lost`]). An error says the release did not
    /// reach the database: the lease then expires by itself. The role is [`Role::Lost`]
    /// before the lease is given up, so nothing of this node acts as leader once another may.
    pub async fn release(self) -> Result<bool, PgError> {
        let (tx, rx) = oneshot::channel();
        if self.ctl.send(Release(tx)).is_err() {
            return Ok(false);
        }
        rx.await.unwrap_or(Ok(false))
    }
}

/// The connection's bounds from the lease's times, where the URL does not set them.
fn tune(config: &mut Config, options: LeaderOptions) {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.ttl);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(options.ttl);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_idle(options.ttl.max(Duration::from_secs(1)));
        config.keepalives_interval(options.renew.max(Duration::from_secs(1)));
        config.keepalives_retries(3);
    }
    if config.get_application_name().is_none() {
        config.application_name("vakt leader");
    }
}

/// The loop's state, on its thread.
struct Looper {
    config: Config,
    node: String,
    options: LeaderOptions,
    role: watch::Sender<Role>,
    ctl: mpsc::UnboundedReceiver<Release>,
    client: Option<Client>,
    /// Requests have been failing since the last success (logged once, at the first).
    failing: bool,
    metrics: ClusterMetrics,
}

/// What ended a wait of the leader.
enum Wake {
    Due,
    Expired,
    Stop,
    Release(oneshot::Sender<Result<bool, PgError>>),
}

impl Looper {
    async fn run(mut self) {
        if let Some((lease, deadline)) = self.stand_by().await {
            self.lead(lease, deadline).await;
        }
    }

    /// Polls until this node takes the lease (returned with its local deadline) or the loop
    /// is stopped (`None`).
    async fn stand_by(&mut self) -> Option<(Lease, Instant)> {
        let mut next = Instant::now();
        loop {
            tokio::select! {
                biased;
                c = self.ctl.recv() => {
                    if let Some(Release(reply)) = c {
                        let _ = reply.send(Ok(false));
                    }
                    return None;
                }
                _ = sleep_until(next) => {}
            }
            let sent = Instant::now();
            next = sent + self.options.renew;
            match self.poll().await {
                Ok(Ok(lease)) => {
                    self.succeeded();
                    let (lease, deadline) = self.lease_to_lead(lease, sent).await;
                    if deadline <= Instant::now() {
                        // Taken after a long wait for the row: already over by our clock.
                        tracing::warn!(
                            node = %self.node,
                            epoch = lease.epoch,
                            "the lease was taken too late to lead under it; standing by"
                        );
                        continue;
                    }
                    return match self.ctl.try_recv() {
                        // Stopped while taking it: give it straight back.
                        Ok(Release(reply)) => {
                            let r = self.give_up(&lease, deadline).await;
                            let _ = reply.send(r);
                            None
                        }
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            let _ = self.give_up(&lease, deadline).await;
                            None
                        }
                        Err(mpsc::error::TryRecvError::Empty) => Some((lease, deadline)),
                    };
                }
                Ok(Err(holder)) => {
                    self.succeeded();
                    self.set(Role::Standby { holder });
                }
                Err(e) => self.failed(&e, "reading the lease"),
            }
        }
    }

    /// The lease just taken (its request sent at `sent`) with its local deadline, renewed at
    /// once if so little of it is left that the first renewal would come too late: a
    /// take-over that waited for the lease row (a database failing over, a row lock) gets
    /// back a lease that runs out soon after, by the database's clock counted from when the
    /// request was sent. Leading on it would lose it again within a fraction of a second and
    /// restart the node; one renewal at once, bounded by what is left, gives a whole lease.
    async fn lease_to_lead(&mut self, lease: Lease, sent: Instant) -> (Lease, Instant) {
        let deadline = sent + lease.remaining;
        if deadline.saturating_duration_since(Instant::now()) >= self.options.renew * 2 {
            return (lease, deadline);
        }
        let again = Instant::now();
        let renewed = tokio::select! {
            biased;
            _ = sleep_until(deadline) => None,
            r = self.renew(&lease) => Some(r),
        };
        match renewed {
            Some(Ok(renewed)) => {
                tracing::info!(
                    node = %self.node,
                    epoch = renewed.epoch,
                    "the lease was taken after a long wait and renewed at once"
                );
                (renewed, again + renewed.remaining)
            }
            Some(Err(e)) => {
                self.failed(&e, "renewing a lease just taken");
                (lease, deadline)
            }
            None => {
                // Its connection is of no more use; the deadline has passed.
                self.client = None;
                (lease, deadline)
            }
        }
    }

    /// One standby round: the lease taken, or who holds it.
    async fn poll(&mut self) -> Result<Result<Lease, Option<String>>, PgError> {
        let client = open(&mut self.client, &self.config).await?;
        match lease::acquire(client, &self.node, self.options.ttl).await {
            Ok(Some(lease)) => Ok(Ok(lease)),
            Ok(None) => {
                let state = lease::state(client).await?;
                self.metrics.lease_epoch.set(state.epoch as f64);
                Ok(Err(state.holder))
            }
            Err(e) => Err(e),
        }
    }

    /// Leads under `lease` until it is lost, released or the loop stopped.
    async fn lead(&mut self, mut lease: Lease, mut deadline: Instant) {
        self.metrics.takeovers.increment(1);
        self.set(Role::Leader { epoch: lease.epoch });
        let mut next = Instant::now() + self.options.renew;
        loop {
            let wake = tokio::select! {
                biased;
                _ = sleep_until(deadline) => Wake::Expired,
                c = self.ctl.recv() => match c {
                    Some(Release(reply)) => Wake::Release(reply),
                    None => Wake::Stop,
                },
                _ = sleep_until(next) => Wake::Due,
            };
            match wake {
                Wake::Due => {}
                Wake::Expired => {
                    return self.lose(lease.epoch, "renewals failed until the lease ran out");
                }
                Wake::Stop => return self.lose(lease.epoch, "stopped without releasing the lease"),
                Wake::Release(reply) => {
                    self.lose(lease.epoch, "releasing the lease");
                    let r = self.give_up(&lease, deadline).await;
                    let _ = reply.send(r);
                    return;
                }
            }
            let sent = Instant::now();
            next = sent + self.options.renew;
            let renewed = tokio::select! {
                biased;
                _ = sleep_until(deadline) => None,
                r = self.renew(&lease) => Some(r),
            };
            match renewed {
                None => {
                    // Whatever the renewal did, its connection is of no more use.
                    self.client = None;
                    self.metrics.renewals_failed.increment(1);
                    return self.lose(lease.epoch, "renewals failed until the lease ran out");
                }
                Some(Ok(renewed)) => {
                    self.succeeded();
                    deadline = sent + renewed.remaining;
                    lease = renewed;
                }
                Some(Err(PgError::LeaseLost { epoch })) => {
                    self.metrics.renewals_failed.increment(1);
                    return self.lose(epoch, "the lease expired or was taken");
                }
                Some(Err(e)) => {
                    self.metrics.renewals_failed.increment(1);
                    self.failed(&e, "renewing the lease");
                }
            }
        }
    }

    async fn renew(&mut self, held: &Lease) -> Result<Lease, PgError> {
        let client = open(&mut self.client, &self.config).await?;
        lease::renew(client, held, self.options.ttl).await
    }

    /// Releases `lease`, bounded by its `deadline` (after which it has expired anyway).
    async fn give_up(&mut self, lease: &Lease, deadline: Instant) -> Result<bool, PgError> {
        let released = tokio::select! {
            biased;
            _ = sleep_until(deadline) => None,
            r = async {
                let client = open(&mut self.client, &self.config).await?;
                lease::release(client, lease).await
            } => Some(r),
        };
        match released {
            Some(Ok(released)) => {
                tracing::info!(node = %self.node, epoch = lease.epoch, released, "leader lease released");
                Ok(released)
            }
            Some(Err(e)) => {
                tracing::warn!(node = %self.node, epoch = lease.epoch, error = %e, "the leader lease could not be released; it expires by itself");
                Err(e)
            }
            None => {
                tracing::warn!(node = %self.node, epoch = lease.epoch, "the leader lease could not be released in time; it expires by itself");
                Ok(false)
            }
        }
    }

    fn succeeded(&mut self) {
        if self.failing {
            self.failing = false;
            tracing::info!(node = %self.node, "the database answers the leader loop again");
        }
    }

    /// A request failed: the connection is dropped (a server that answers with an error may
    /// be one that is no longer the primary: `target_session_attrs` finds the one that is on
    /// the next connection), and the first failure of a run is logged.
    fn failed(&mut self, e: &PgError, doing: &str) {
        self.client = None;
        if !self.failing {
            self.failing = true;
            tracing::warn!(node = %self.node, error = %e, "{doing} failed; retrying every renew period");
        }
    }

    fn lose(&mut self, epoch: i64, why: &str) {
        tracing::warn!(node = %self.node, epoch, why, "no longer the leader");
        self.set(Role::Lost { epoch });
    }

    fn set(&self, role: Role) {
        match &role {
            Role::Leader { epoch } => {
                self.metrics.lease_epoch.set(*epoch as f64);
                self.metrics.lease_held.set(1.0);
            }
            Role::Standby { .. } | Role::Lost { .. } => self.metrics.lease_held.set(0.0),
        }
        self.role.send_if_modified(|r| {
            if *r == role {
                return false;
            }
            match &role {
                Role::Standby { holder } => {
                    tracing::info!(node = %self.node, holder = holder.as_deref().unwrap_or("nobody"), "standing by")
                }
                Role::Leader { epoch } => {
                    tracing::info!(node = %self.node, epoch, "leading")
                }
                Role::Lost { .. } => {}
            }
            *r = role;
            true
        });
    }
}

/// The connection in `slot`, opened when missing or broken.
async fn open<'c>(slot: &'c mut Option<Client>, config: &Config) -> Result<&'c Client, PgError> {
    if slot.as_ref().is_some_and(Client::is_closed) {
        *slot = None;
    }
    let client = match slot.take() {
        Some(c) => c,
        None => super::connect(config, "leader").await?,
    };
    Ok(slot.insert(client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_renew_at_least_twice_a_lease() {
        let d = LeaderOptions::default();
        assert_eq!(
            (d.ttl(), d.renew()),
            (Duration::from_secs(5), Duration::from_secs(1))
        );
        let ms = Duration::from_millis;
        assert!(LeaderOptions::new(ms(1000), ms(200)).is_ok());
        assert!(LeaderOptions::new(ms(1000), ms(499)).is_ok());
        let e = LeaderOptions::new(ms(1000), ms(500)).unwrap_err();
        assert!(e.contains("below half"), "{e}");
        assert!(LeaderOptions::new(ms(1000), ms(5)).is_err());
        assert!(LeaderOptions::new(Duration::from_secs(3601), ms(1000)).is_err());
    }

    #[test]
    fn the_connection_is_bounded_by_the_lease_unless_the_url_says() {
        let opts = LeaderOptions::default();
        let mut c: Config = "postgresql://vakt@a:5432,b:5433/vakt?target_session_attrs=read-write"
            .parse()
            .unwrap();
        tune(&mut c, opts);
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(5)));
        assert_eq!(c.get_tcp_user_timeout(), Some(&Duration::from_secs(5)));
        assert_eq!(c.get_keepalives_idle(), Duration::from_secs(5));
        assert_eq!(c.get_keepalives_interval(), Some(Duration::from_secs(1)));
        let mut c: Config = "postgresql://vakt@a/vakt?connect_timeout=2&keepalives_interval=7"
            .parse()
            .unwrap();
        tune(&mut c, opts);
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(2)));
        assert_eq!(c.get_keepalives_interval(), Some(Duration::from_secs(7)));
    }
}
