//! Typed configuration: defaults, parsing, validation.
//!
//! The documented example `config/vakt.toml` is embedded in the binary and is the default:
//! `vakt serve` without `--config` runs with it. Unknown keys are rejected.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub mod open_files;

pub use open_files::{TooFewFiles, fit_open_files, open_files_limit};

/// The embedded default configuration (the text of `config/vakt.toml`).
pub const DEFAULT_TOML: &str = include_str!("../../config/vakt.toml");

/// What can be wrong with a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not valid TOML or has unknown or mistyped keys.
    #[error("{0}")]
    Parse(String),
    /// A value is out of its range.
    #[error("invalid value: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the sled database lives.
    pub data_dir: PathBuf,
    /// Deadline for a graceful shutdown.
    pub shutdown_grace_secs: u64,
    /// SIA DC-09 receivers.
    pub dc09: Dc09Config,
    /// Journal and group commit.
    pub journal: JournalConfig,
    /// Health, metrics and API listener.
    pub http: HttpConfig,
    /// Classification and the Call queue.
    pub triage: TriageConfig,
    /// Home-care patrols: their QUIC link and the dispatch clocks.
    pub patrol: PatrolConfig,
    /// SCAIP (SS 91100) over SIP.
    pub scaip: ScaipConfig,
    /// Voice calls on the SIP endpoint.
    pub voice: VoiceConfig,
    /// Heartbeat deadlines of devices.
    pub supervision: crate::supervision::SupervisionOptions,
    /// When silences become one telecom incident.
    pub incidents: crate::supervision::detector::DetectorOptions,
    /// Work orders for device faults.
    pub work_orders: crate::work_orders::WorkOrderOptions,
    /// Response plans: the centre's defaults.
    pub plans: crate::model::plan::PlanOptions,
    /// Subscribers' orders: deadlines and the installation window.
    pub orders: crate::care::OrdersConfig,
    /// The centre's municipality (billing, the care system's events).
    pub care: crate::care::CareConfig,
    /// How long a subscriber's personal data is kept after the end.
    pub retention: crate::retention::RetentionConfig,
    /// The access log's review: the flags' thresholds, the centre's name on extracts.
    pub access_review: crate::model::access_review::AccessReviewOptions,
    /// What the statistics judge by (frequent callers).
    pub stats: crate::dispatch::stats::StatsOptions,
    /// Webhooks told of incidents and work orders (`[[escalation]]`, any number).
    pub escalation: Vec<crate::outbox::EscalationConfig>,
    /// Where the state is kept: sled in `data_dir`, or PostgreSQL shared by several nodes.
    pub store: StoreConfig,
    /// The floor of operators on duty and the longest wait before the consoles warn.
    pub staffing: crate::console::staffing::StaffingOptions,
}

/// `[store]`: the storage backend, and for PostgreSQL the database and the leader lease.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sled` (embedded, in `data_dir`; one node) or `postgres` (several nodes on one
    /// replicated database, one of them the leader).
    pub backend: StoreBackend,
    /// With `postgres`: the database, as a `postgresql://` URL; list every host of the
    /// cluster and ask for the primary:
    /// `postgresql://vakt@db1:5432,db2:5432,db3:5432/vakt?target_session_attrs=read-write`.
    /// It may hold a password: it is never logged, and its `Debug` hides the password.
    #[serde(deserialize_with = "opt_database_url")]
    pub url: Option<DatabaseUrl>,
    /// This node's name in the leader lease (what `vakt cluster status` shows as the
    /// holder); the host name by default. Unique per node.
    pub node: String,
    /// The leader lease lasts this long from its last renewal (ms): a standby takes over at
    /// most this long after the leader stopped renewing, plus one renew period.
    pub lease_ttl_ms: u64,
    /// The leader renews its lease, and a standby polls, this often (ms); below half of
    /// `lease_ttl_ms`.
    pub lease_renew_ms: u64,
}

/// `[store] backend`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// sled, embedded in `data_dir`: one node, the default.
    Sled,
    /// PostgreSQL at `[store] url`, shared by several nodes.
    Postgres,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let lease = crate::store::pg::leader::LeaderOptions::default();
        StoreConfig {
            backend: StoreBackend::Sled,
            url: None,
            node: host_name(),
            lease_ttl_ms: u64::try_from(lease.ttl().as_millis()).unwrap_or(5000),
            lease_renew_ms: u64::try_from(lease.renew().as_millis()).unwrap_or(1000),
        }
    }
}

impl StoreConfig {
    /// The leader lease's times.
    pub fn leader_options(&self) -> Result<crate::store::pg::leader::LeaderOptions, String> {
        crate::store::pg::leader::LeaderOptions::new(
            Duration::from_millis(self.lease_ttl_ms),
            Duration::from_millis(self.lease_renew_ms),
        )
    }

    fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        match (&self.url, self.backend) {
            (None, StoreBackend::Postgres) => errs.push(
                "store.url is required with backend = \"postgres\" (e.g. \
                 postgresql://vakt@db1:5432,db2:5432/vakt?target_session_attrs=read-write)"
                    .into(),
            ),
            (Some(_), StoreBackend::Sled) => errs.push(
                "store.url is set but store.backend is \"sled\": set backend = \"postgres\" \
                 to run on the database, or remove the url"
                    .into(),
            ),
            (Some(url), StoreBackend::Postgres) => {
                if let Err(e) = url.parse() {
                    errs.push(format!("store.url is not a PostgreSQL URL: {e}"));
                }
            }
            (None, StoreBackend::Sled) => {}
        }
        let node = self.node.trim();
        if node.is_empty() || node.len() > 64 || node.chars().any(char::is_control) {
            errs.push("store.node must be 1 to 64 characters without control characters".into());
        }
        if !(1000..=60_000).contains(&self.lease_ttl_ms) {
            errs.push("store.lease_ttl_ms must be 1000..=60000".into());
        }
        if !(100..=30_000).contains(&self.lease_renew_ms) {
            errs.push("store.lease_renew_ms must be 100..=30000".into());
        } else if self.lease_renew_ms * 2 >= self.lease_ttl_ms {
            errs.push(format!(
                "store.lease_renew_ms ({}) must be below half of store.lease_ttl_ms ({}), so \
                 that one failed renewal does not cost the lease",
                self.lease_renew_ms, self.lease_ttl_ms
            ));
        }
        errs
    }
}

/// The host name, as the kernel has it (`gethostname(2)` on Linux reads the same); `vakt`
/// when it cannot be read. Read from `/proc` rather than through a crate: it is one file.
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            let name = std::fs::read_to_string(p).ok()?;
            let name = name.trim();
            (!name.is_empty()).then(|| name.to_owned())
        })
        .unwrap_or_else(|| "vakt".to_owned())
}

/// A PostgreSQL connection URL (or `key=value` string). It may hold a password, so it has
/// no `Display`, and its `Debug` ([`DatabaseUrl::redacted`]) shows user, hosts and database
/// only; [`DatabaseUrl::expose`] gives the text to connect with.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps `url`.
    pub fn new(url: impl Into<String>) -> DatabaseUrl {
        DatabaseUrl(url.into())
    }

    /// The URL itself, password and all: for connecting, never for a log.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL parsed, as tokio-postgres connects with it.
    pub fn parse(&self) -> Result<tokio_postgres::Config, tokio_postgres::Error> {
        self.0.parse()
    }

    /// `user@host:port,host:port/database`, and whether a password is given: safe to show.
    pub fn redacted(&self) -> String {
        let Ok(c) = self.parse() else {
            return "(not a PostgreSQL URL)".to_owned();
        };
        let ports = c.get_ports();
        let hosts: Vec<String> = c
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let host = match h {
                    tokio_postgres::config::Host::Tcp(h) => h.clone(),
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                };
                // One port for all hosts, one each, or the default.
                match ports.get(i).or(ports.first()) {
                    Some(p) => format!("{host}:{p}"),
                    None => host,
                }
            })
            .collect();
        let mut s = String::new();
        if let Some(u) = c.get_user() {
            s.push_str(u);
            s.push('@');
        }
        s.push_str(&hosts.join(","));
        if let Some(db) = c.get_dbname() {
            s.push('/');
            s.push_str(db);
        }
        if c.get_password().is_some() {
            s.push_str(" (password hidden)");
        }
        s
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&self.redacted())
            .finish()
    }
}

/// A database URL, or "" for none.
fn opt_database_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DatabaseUrl>, D::Error> {
    let s = String::deserialize(d)?;
    let t = s.trim();
    Ok((!t.is_empty()).then(|| DatabaseUrl::new(t)))
}

/// `[patrol]`: the patrols' QUIC link and the dispatch clocks.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PatrolConfig {
    /// QUIC listen address (UDP); `None` disables the patrol link.
    #[serde(deserialize_with = "opt_addr")]
    pub listen_quic: Option<SocketAddr>,
    /// PEM certificate chain; with `key_file`. Neither: a development certificate.
    #[serde(deserialize_with = "opt_path")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key; with `cert_file`.
    #[serde(deserialize_with = "opt_path")]
    pub key_file: Option<PathBuf>,
    /// Extra DNS names or addresses in a generated development certificate.
    pub dev_cert_names: Vec<String>,
    /// Patrol sessions at once.
    pub max_sessions: usize,
    /// Patrol sessions at once from one source (an IPv4 address or an IPv6 /64).
    pub max_sessions_per_source: usize,
    /// A dispatch not received by its patrol in this time passes to the next patrol.
    pub receipt_timeout_secs: u64,
    /// Minutes after receipt at which the console and the patrol are warned.
    pub warn_at_mins: Vec<u32>,
}

/// `[voice]`: voice calls (SIP INVITE) on the SCAIP endpoint's listeners.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VoiceConfig {
    /// Take calls at all; without, an INVITE is answered `405`.
    pub enabled: bool,
    /// Calls at once (in and out, ringing or answered); beyond, `503`.
    pub max_calls: usize,
    /// A call in nobody answers rings this long, then ends (`480`); a call out is cancelled.
    pub max_ring_secs: u64,
    /// An answered call is hung up after this (a bound on forgotten calls).
    pub max_call_secs: u64,
    /// Days a conversation's recording is kept (by its start), then deleted by vakt.
    pub recording_retention_days: u32,
    /// Where a recording past its retention is copied, gzip-compressed, before vakt deletes
    /// it; empty: not archived. A relative path is under `data_dir`.
    pub recording_archive_dir: PathBuf,
    /// The units' RTP: where it listens, the port range (the cap on calls with media).
    pub rtp: crate::voice::media::MediaOptions,
    /// The operators' browser legs (WebRTC): where they listen, the port range.
    pub webrtc: crate::voice::webrtc::WebRtcOptions,
    /// The trunks (the telecom operator's session border controllers), each
    /// `{ name = "...", sources = ["192.0.2.10", ...] }`, optionally with `sip_user` and
    /// `sip_password`: calls from these addresses are taken (after a Digest challenge when
    /// it has credentials), the caller known by number.
    pub trunks: Vec<TrunkConfig>,
    /// Minutes a unit that asks to be called back (SCAIP `cha=1`) is told to answer calls
    /// from the centre by itself (`cre`, 1..=60); 0: call-backs are not offered and the unit
    /// calls the centre as usual.
    pub callback_window_mins: u8,
}

/// One trunk of `[voice]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    /// Its name.
    pub name: String,
    /// The addresses its requests come from.
    pub sources: Vec<std::net::IpAddr>,
    /// With `sip_password`: its calls are challenged (SIP Digest, `[scaip] realm`) and must
    /// answer as this user.
    #[serde(default)]
    pub sip_user: Option<String>,
    /// The Digest password (never logged: its `Debug` is redacted).
    #[serde(default)]
    pub sip_password: Option<crate::model::SipPassword>,
    /// Where vakt sends calls out to phone numbers (`host:port`); without it the trunk
    /// only carries calls in. The first trunk with one carries every call out.
    #[serde(default, deserialize_with = "opt_addr")]
    pub outbound: Option<SocketAddr>,
    /// How calls out reach `outbound`: `udp` (from the SCAIP UDP listener) or `tcp`.
    #[serde(default = "default_trunk_transport")]
    pub transport: crate::voice::dial::TrunkTransport,
    /// The centre's number, the From and `P-Asserted-Identity` of calls out.
    #[serde(default)]
    pub from_number: String,
    /// The Digest user name vakt answers the trunk's challenge to its calls out with (with
    /// `outbound_password`).
    #[serde(default)]
    pub outbound_user: Option<String>,
    /// The Digest password of `outbound_user`. Never logged.
    #[serde(default)]
    pub outbound_password: Option<crate::model::SipPassword>,
}

fn default_trunk_transport() -> crate::voice::dial::TrunkTransport {
    crate::voice::dial::TrunkTransport::Udp
}

impl Default for VoiceConfig {
    fn default() -> Self {
        VoiceConfig {
            enabled: true,
            max_calls: 200,
            max_ring_secs: 600,
            max_call_secs: 4 * 3600,
            recording_retention_days: crate::voice::record::DEFAULT_RETENTION_DAYS,
            recording_archive_dir: PathBuf::new(),
            rtp: Default::default(),
            webrtc: Default::default(),
            trunks: Vec::new(),
            callback_window_mins: 10,
        }
    }
}

impl VoiceConfig {
    fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if !(1..=10_000).contains(&self.max_calls) {
            errs.push("voice.max_calls must be 1..=10000".into());
        }
        if !(10..=3600).contains(&self.max_ring_secs) {
            errs.push("voice.max_ring_secs must be 10..=3600".into());
        }
        if !(60..=86_400).contains(&self.max_call_secs) {
            errs.push("voice.max_call_secs must be 60..=86400".into());
        }
        if let Err(e) = self.rtp.validate() {
            errs.push(format!("voice.rtp: {e}"));
        }
        if let Err(e) = self.webrtc.validate() {
            errs.push(format!("voice.webrtc: {e}"));
        }
        if !(1..=3650).contains(&self.recording_retention_days) {
            errs.push("voice.recording_retention_days must be 1..=3650".into());
        }
        for t in &self.trunks {
            if t.name.trim().is_empty() || t.sources.is_empty() {
                errs.push("each [[voice.trunks]] needs a name and at least one source".into());
            }
            match (&t.sip_user, &t.sip_password) {
                (None, None) => {}
                (Some(u), Some(p)) => {
                    let user_ok = !u.is_empty()
                        && u.len() <= 64
                        && u.bytes()
                            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
                    if !user_ok || p.expose().is_empty() || p.expose().len() > 128 {
                        errs.push(format!(
                            "voice.trunks {:?}: sip_user must be 1 to 64 printable characters without quotes, sip_password 1 to 128 bytes",
                            t.name
                        ));
                    }
                }
                _ => errs.push(format!(
                    "voice.trunks {:?}: sip_user and sip_password go together",
                    t.name
                )),
            }
            if t.outbound.is_some() && crate::voice::dial::dialable(&t.from_number).is_none() {
                errs.push(format!(
                    "voice.trunks {:?}: an outbound trunk needs from_number (the centre's number)",
                    t.name
                ));
            }
            if t.outbound_user.is_some() != t.outbound_password.is_some() {
                errs.push(format!(
                    "voice.trunks {:?}: outbound_user and outbound_password go together",
                    t.name
                ));
            }
        }
        if self.callback_window_mins > crate::voice::dial::MAX_WINDOW_MINS {
            errs.push("voice.callback_window_mins must be 0..=60".into());
        }
        errs
    }

    /// The SIP endpoint's bounds for calls.
    pub fn invite_options(&self) -> crate::transport::sip::InviteOptions {
        crate::transport::sip::InviteOptions {
            max_dialogs: self.max_calls,
            max_ring: Duration::from_secs(self.max_ring_secs),
            max_call: Duration::from_secs(self.max_call_secs),
            ..Default::default()
        }
    }

    /// Where the recordings go (`recordings/` in `data_dir`) and how long they are kept.
    pub fn recording_options(
        &self,
        data_dir: &std::path::Path,
    ) -> crate::voice::record::RecordingOptions {
        crate::voice::record::RecordingOptions {
            retention_days: self.recording_retention_days,
            archive_dir: folder_in(data_dir, &self.recording_archive_dir),
            ..crate::voice::record::RecordingOptions::in_data_dir(data_dir)
        }
    }

    /// The calls out: from `arc_uri` to units, through the first trunk with an outbound
    /// address to numbers; `units` is what ingest learns of the units.
    pub fn dial_options(
        &self,
        arc_uri: &str,
        units: std::sync::Arc<crate::voice::dial::Units>,
    ) -> crate::voice::dial::DialOptions {
        let trunk = self.trunks.iter().find_map(|t| {
            Some(crate::voice::dial::OutboundTrunk {
                name: t.name.clone(),
                address: t.outbound?,
                transport: t.transport,
                from_number: crate::voice::dial::dialable(&t.from_number)?,
                credentials: t.outbound_user.clone().zip(t.outbound_password.clone()),
            })
        });
        crate::voice::dial::DialOptions {
            arc_uri: arc_uri.to_owned(),
            trunk,
            units,
        }
    }

    /// The switchboard's options.
    pub fn switchboard_options(&self) -> crate::voice::switchboard::SwitchboardOptions {
        crate::voice::switchboard::SwitchboardOptions {
            trunks: self
                .trunks
                .iter()
                .map(|t| crate::voice::switchboard::Trunk {
                    name: t.name.clone(),
                    sources: t.sources.clone(),
                    credentials: t.sip_user.clone().zip(t.sip_password.clone()).map(
                        |(user, password)| crate::voice::switchboard::TrunkCredentials {
                            user,
                            password,
                        },
                    ),
                })
                .collect(),
        }
    }
}

/// `[scaip]`: the SCAIP (SS 91100) endpoint: XML alarms in SIP MESSAGE requests.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScaipConfig {
    /// SIP over UDP; `None` disables it.
    #[serde(deserialize_with = "opt_addr")]
    pub listen_udp: Option<SocketAddr>,
    /// SIP over TCP; `None` disables it.
    #[serde(deserialize_with = "opt_addr")]
    pub listen_tcp: Option<SocketAddr>,
    /// SIP over TLS (SIPS); `None` disables it. Needs `cert_file` and `key_file`.
    #[serde(deserialize_with = "opt_addr")]
    pub listen_tls: Option<SocketAddr>,
    /// PEM certificate chain for `listen_tls`.
    #[serde(deserialize_with = "opt_path")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key for `listen_tls`.
    #[serde(deserialize_with = "opt_path")]
    pub key_file: Option<PathBuf>,
    /// The Digest realm devices authenticate in.
    pub realm: String,
    /// vakt's own SIP URI: the From of the `<mrs>` MESSAGEs it sends.
    pub arc_uri: String,
    /// A Digest nonce is good for this long; then the device is challenged again (stale).
    pub nonce_secs: u64,
    /// A body longer than this is answered `snu 1` (too long).
    pub max_body_bytes: usize,
    /// Messages per second one source (UDP address and port, or TCP connection) may send.
    pub rate_per_source: u32,
    /// Messages one source may send at once above its rate.
    pub rate_burst: u32,
    /// Alarms held (`snu 4`, waiting for an operator) at once; beyond, new alarms are
    /// journaled and answered `snu 6` (busy) so the devices also try their next route.
    pub max_holds: usize,
    /// How long an alarm's reference is remembered after its last message (the device
    /// polls for at most 30 minutes).
    pub session_secs: u64,
    /// `mre` sent with `snu 0` once an operator has taken the alarm: 1 duplex voice,
    /// 2 simplex microphone, 3 simplex speaker.
    pub voice_mre: u8,
    /// Where the device places its voice call: empty means its own configured receiver;
    /// else a `gsm:+46...` or `sip:...` URI sent as `tnu` with `cre 62`.
    pub voice_uri: String,
    /// TCP and TLS connections at once.
    pub max_connections: usize,
    /// TCP and TLS connections at once from one source (an IPv4 address or an IPv6 /64).
    pub max_connections_per_source: usize,
    /// A TCP or TLS connection that sends nothing for this long is closed.
    pub idle_timeout_secs: u64,
    /// Messages waiting for the journal at once; beyond, `snu 6` (busy).
    pub max_in_flight: usize,
}

impl Default for ScaipConfig {
    fn default() -> Self {
        ScaipConfig {
            listen_udp: Some(SocketAddr::from(([127, 0, 0, 1], 5060))),
            listen_tcp: Some(SocketAddr::from(([127, 0, 0, 1], 5060))),
            listen_tls: None,
            cert_file: None,
            key_file: None,
            realm: "vakt".into(),
            arc_uri: "sip:arc@vakt".into(),
            nonce_secs: 300,
            max_body_bytes: 1300,
            rate_per_source: 5,
            rate_burst: 20,
            max_holds: 10_000,
            session_secs: 3600,
            voice_mre: 1,
            voice_uri: String::new(),
            max_connections: 10_000,
            max_connections_per_source: 1000,
            idle_timeout_secs: 900,
            max_in_flight: 10_000,
        }
    }
}

impl ScaipConfig {
    fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if self.listen_tls.is_some() && (self.cert_file.is_none() || self.key_file.is_none()) {
            errs.push("scaip.listen_tls needs scaip.cert_file and scaip.key_file".into());
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            errs.push("scaip.cert_file and scaip.key_file go together".into());
        }
        let realm_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        };
        if !realm_ok(&self.realm) {
            errs.push("scaip.realm must be 1 to 64 printable characters without quotes".into());
        }
        if !(self.arc_uri.starts_with("sip:") || self.arc_uri.starts_with("sips:"))
            || self.arc_uri.len() > 128
            || !self.arc_uri.bytes().all(|b| b.is_ascii_graphic())
        {
            errs.push("scaip.arc_uri must be a sip: or sips: URI without spaces".into());
        }
        if !(30..=3600).contains(&self.nonce_secs) {
            errs.push("scaip.nonce_secs must be 30..=3600".into());
        }
        if !(256..=vakt_proto::scaip::MAX_BODY_BYTES).contains(&self.max_body_bytes) {
            errs.push(format!(
                "scaip.max_body_bytes must be 256..={}",
                vakt_proto::scaip::MAX_BODY_BYTES
            ));
        }
        if !(1..=10_000).contains(&self.rate_per_source)
            || !(1..=100_000).contains(&self.rate_burst)
        {
            errs.push(
                "scaip.rate_per_source must be 1..=10000 and scaip.rate_burst 1..=100000".into(),
            );
        }
        if !(1..=1_000_000).contains(&self.max_holds) {
            errs.push("scaip.max_holds must be 1..=1000000".into());
        }
        if !(1800..=86_400).contains(&self.session_secs) {
            errs.push(
                "scaip.session_secs must be 1800..=86400 (devices poll for up to 30 minutes)"
                    .into(),
            );
        }
        if !(1..=3).contains(&self.voice_mre) {
            errs.push("scaip.voice_mre must be 1, 2 or 3".into());
        }
        if !self.voice_uri.is_empty()
            && (!["gsm:", "sip:", "tel:"]
                .iter()
                .any(|p| self.voice_uri.starts_with(p))
                || self.voice_uri.len() > 256
                || !self.voice_uri.bytes().all(|b| b.is_ascii_graphic()))
        {
            errs.push("scaip.voice_uri must be empty or a gsm:, tel: or sip: URI".into());
        }
        if !(1..=10_000_000).contains(&self.max_connections) {
            errs.push("scaip.max_connections must be 1..=10000000".into());
        }
        if !(1..=10_000_000).contains(&self.max_connections_per_source) {
            errs.push("scaip.max_connections_per_source must be 1..=10000000".into());
        }
        if !(10..=86_400).contains(&self.idle_timeout_secs) {
            errs.push("scaip.idle_timeout_secs must be 10..=86400".into());
        }
        if !(1..=1_000_000).contains(&self.max_in_flight) {
            errs.push("scaip.max_in_flight must be 1..=1000000".into());
        }
        errs
    }
}

/// `[triage]`: Calls and the queue.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TriageConfig {
    /// After this many merged alarms a Call moves up one level.
    pub escalate_after: u32,
    /// Committed batches of Signals waiting for triage.
    pub feed_capacity: usize,
}

/// `[dc09]`: SIA DC-09 receivers.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Dc09Config {
    /// TCP listen address; `None` disables TCP.
    #[serde(deserialize_with = "opt_addr")]
    pub listen_tcp: Option<SocketAddr>,
    /// UDP listen address; `None` disables UDP.
    #[serde(deserialize_with = "opt_addr")]
    pub listen_udp: Option<SocketAddr>,
    /// How far an encrypted frame's timestamp may lag the receiver's clock.
    pub timestamp_past_secs: u64,
    /// How far an encrypted frame's timestamp may lead the receiver's clock.
    pub timestamp_future_secs: u64,
    /// Retransmission window.
    pub dedup_window_secs: u64,
    /// Bound on remembered frames for dedup.
    pub dedup_max_entries: usize,
    /// Bound on concurrent TCP connections.
    pub max_connections: usize,
    /// Bound on concurrent TCP connections from one source (an IPv4 address or an IPv6 /64).
    pub max_connections_per_source: usize,
    /// Length of the kernel's queue of connections not yet accepted.
    pub listen_backlog: u32,
    /// A TCP connection that completes no frame for this long is closed.
    pub idle_timeout_secs: u64,
    /// A frame begun (its LF received) must be complete within this, or the connection is
    /// closed.
    pub frame_timeout_secs: u64,
    /// Bound on UDP frames waiting for the journal.
    pub max_udp_in_flight: usize,
}

/// `[journal]`: group commit.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Most frames in one commit.
    pub max_batch: usize,
    /// Frames waiting for the committer.
    pub queue_capacity: usize,
    /// Period of writing last-heard times to disk.
    pub last_heard_persist_secs: u64,
    /// Memory the storage engine may use as page cache.
    pub cache_capacity_bytes: u64,
    /// Where a new data directory keeps the journal, on sled (`[store] backend = "sled"`).
    pub engine: JournalEngine,
    /// Days a Signal is kept in the journal after it was received; 0 keeps it for ever
    /// ([`crate::journal::retention`]: whole segments of the journal's own log are deleted,
    /// archived first if `archive_dir` is set).
    pub keep_days: u32,
    /// Where the Signals go, gzip-compressed JSON lines, before the journal deletes them;
    /// empty: they are not archived. A relative path is under `data_dir`.
    pub archive_dir: PathBuf,
}

/// `[journal] engine`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JournalEngine {
    /// In sled's `journal` tree, beside the other records: for a data directory whose
    /// journal is there and should stay (its retention is not swept).
    Sled,
    /// In its own segment log (`data_dir/journal/`), the default: one write and one
    /// `fdatasync` per group commit, a segment at a time deleted by retention. A data
    /// directory whose journal is in sled's tree has it moved into the log at start. Once a
    /// data directory has the log, it is used whatever this says.
    #[default]
    Log,
}

/// `[http]`: health, metrics, API.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address; `None` disables the HTTP listener.
    #[serde(deserialize_with = "opt_addr")]
    pub listen: Option<SocketAddr>,
    /// Connections at once.
    pub max_connections: usize,
    /// Connections at once from one source (an IPv4 address or an IPv6 /64).
    pub max_connections_per_source: usize,
    /// A request's header must arrive within this (from the connection's start, or the end
    /// of the previous answer on a kept-alive connection, which is closed when idle as long).
    pub header_read_timeout_secs: u64,
    /// A console session ends this long after login.
    pub session_hours: u32,
    /// Mark the session cookie `Secure` (set when a TLS proxy is in front of vakt).
    pub secure_cookie: bool,
    /// The centre's time zone (IANA name): "today" in the answer figures is local, and the
    /// console shows every time in it.
    pub time_zone: String,
    /// The console's language for users who have not chosen one, and the centre's
    /// language (a person who speaks another gets an interpreter cue).
    pub language: crate::model::ConsoleLanguage,
    /// Reverse proxies (addresses or networks) whose client-address header is believed;
    /// empty: the header is ignored and the client is the connection's peer.
    #[serde(deserialize_with = "networks")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header the trusted proxies name the client in.
    pub client_address_header: ClientAddressHeader,
    /// The console's origin as browsers see it behind a proxy that does not pass the `Host`
    /// header through (`https://larm.example.se`); `None`: the `Host` header.
    #[serde(deserialize_with = "opt_origin")]
    pub public_origin: Option<String>,
    /// Waiting Calls at this level or more urgent (0 is the most urgent) make the console
    /// ring, again and again, until someone takes them.
    pub ring_max_level: u8,
    /// The ring repeats this often while such a Call waits.
    pub ring_repeat_secs: u32,
}

pub use crate::console::client::ClientAddressHeader;

/// A list of addresses (`192.0.2.10`, `::1`) or networks (`10.0.0.0/8`, `fd00::/8`).
fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            let t = s.trim();
            t.parse::<ipnet::IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "{s:?} is not an address or network like 10.0.0.1 or 10.0.0.0/8"
                    ))
                })
        })
        .collect()
}

/// An origin `http(s)://host[:port]` (lower case, no path), or "" for none.
fn opt_origin<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    let t = s.trim().trim_end_matches('/').to_ascii_lowercase();
    if t.is_empty() {
        return Ok(None);
    }
    let host = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"));
    match host {
        Some(h) if !h.is_empty() && !h.contains(['/', '?', '#', '@', ' ']) => Ok(Some(t)),
        _ => Err(serde::de::Error::custom(format!(
            "{s:?} is not an origin like https://larm.example.se (scheme and host, no path)"
        ))),
    }
}

fn opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let s = String::deserialize(d)?;
    Ok((!s.trim().is_empty()).then(|| PathBuf::from(s.trim())))
}

fn opt_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Ok(None);
    }
    s.trim().parse().map(Some).map_err(|e| {
        serde::de::Error::custom(format!("{s:?} is not an address like 127.0.0.1:7100: {e}"))
    })
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("vakt-data"),
            shutdown_grace_secs: 10,
            dc09: Dc09Config::default(),
            journal: JournalConfig::default(),
            http: HttpConfig::default(),
            triage: TriageConfig::default(),
            patrol: PatrolConfig::default(),
            scaip: ScaipConfig::default(),
            voice: VoiceConfig::default(),
            supervision: Default::default(),
            incidents: Default::default(),
            work_orders: Default::default(),
            plans: Default::default(),
            orders: Default::default(),
            care: Default::default(),
            retention: Default::default(),
            access_review: Default::default(),
            stats: Default::default(),
            escalation: Vec::new(),
            store: StoreConfig::default(),
            staffing: Default::default(),
        }
    }
}

impl Default for PatrolConfig {
    fn default() -> Self {
        PatrolConfig {
            listen_quic: Some(SocketAddr::from(([127, 0, 0, 1], 7200))),
            cert_file: None,
            key_file: None,
            dev_cert_names: Vec::new(),
            max_sessions: 10_000,
            max_sessions_per_source: 100,
            receipt_timeout_secs: 120,
            warn_at_mins: vec![20, 25],
        }
    }
}

impl PatrolConfig {
    /// The clocks' settings.
    pub fn sla(&self) -> crate::dispatch::sla::SlaOptions {
        crate::dispatch::sla::SlaOptions {
            receipt_timeout: jiff::SignedDuration::from_secs(
                i64::try_from(self.receipt_timeout_secs).unwrap_or(i64::MAX),
            ),
            warn_at_mins: self.warn_at_mins.clone(),
        }
    }
}

impl Default for Dc09Config {
    fn default() -> Self {
        Dc09Config {
            listen_tcp: Some(SocketAddr::from(([127, 0, 0, 1], 7100))),
            listen_udp: Some(SocketAddr::from(([127, 0, 0, 1], 7100))),
            timestamp_past_secs: 40,
            timestamp_future_secs: 20,
            dedup_window_secs: 600,
            dedup_max_entries: 1_000_000,
            max_connections: 100_000,
            max_connections_per_source: 1000,
            listen_backlog: 4096,
            idle_timeout_secs: 600,
            frame_timeout_secs: 10,
            max_udp_in_flight: 10_000,
        }
    }
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            max_batch: 1024,
            queue_capacity: 65_536,
            last_heard_persist_secs: 30,
            cache_capacity_bytes: 256 * 1024 * 1024,
            engine: JournalEngine::Log,
            keep_days: crate::journal::retention::DEFAULT_KEEP_DAYS,
            archive_dir: PathBuf::new(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            max_connections: 4096,
            max_connections_per_source: 256,
            header_read_timeout_secs: 10,
            session_hours: 12,
            secure_cookie: false,
            time_zone: "Europe/Stockholm".into(),
            language: crate::model::ConsoleLanguage::Sv,
            trusted_proxies: Vec::new(),
            client_address_header: ClientAddressHeader::XForwardedFor,
            public_origin: None,
            ring_max_level: 2,
            ring_repeat_secs: 10,
        }
    }
}

impl Default for TriageConfig {
    fn default() -> Self {
        TriageConfig {
            escalate_after: 3,
            feed_capacity: 1024,
        }
    }
}

impl ScaipConfig {
    /// The SCAIP exchange's options (the rules, Digest, the bound on requests in flight).
    pub fn scaip_options(&self) -> crate::ingest::scaip::ScaipOptions {
        crate::ingest::scaip::ScaipOptions {
            max_body_bytes: self.max_body_bytes,
            max_holds: self.max_holds,
            session: jiff::SignedDuration::from_secs(
                i64::try_from(self.session_secs).unwrap_or(3600),
            ),
            voice_mre: self.voice_mre,
            voice_uri: (!self.voice_uri.is_empty()).then(|| self.voice_uri.clone()),
            realm: self.realm.clone(),
            nonce_secs: i64::try_from(self.nonce_secs).unwrap_or(300),
            max_in_flight: self.max_in_flight,
        }
    }

    /// The SIP endpoint's options.
    pub fn sip_options(&self) -> crate::transport::sip::SipOptions {
        crate::transport::sip::SipOptions {
            arc_uri: self.arc_uri.clone(),
            rate_per_source: self.rate_per_source,
            rate_burst: self.rate_burst,
            max_connections: self.max_connections,
            max_per_source: self.max_connections_per_source,
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
        }
    }
}

impl Dc09Config {
    /// The DC-09 frame rules' options.
    pub fn receiver_options(&self) -> crate::ingest::dc09::ReceiverOptions {
        crate::ingest::dc09::ReceiverOptions {
            timestamp_past_secs: self.timestamp_past_secs,
            timestamp_future_secs: self.timestamp_future_secs,
        }
    }

    /// The DC-09 TCP listener's options.
    pub fn tcp_options(&self) -> crate::transport::tcp::TcpOptions {
        crate::transport::tcp::TcpOptions {
            max_connections: self.max_connections,
            max_per_source: self.max_connections_per_source,
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            frame_timeout: Duration::from_secs(self.frame_timeout_secs),
        }
    }
}

/// A folder the configuration may name (empty: none); a relative one is under `data_dir`.
fn folder_in(data_dir: &Path, folder: &Path) -> Option<PathBuf> {
    (!folder.as_os_str().is_empty()).then(|| data_dir.join(folder))
}

impl Config {
    /// How long the journal is kept, and where it is archived (`[journal] keep_days`,
    /// `archive_dir`).
    pub fn journal_keep(&self) -> crate::journal::retention::KeepOptions {
        let j = &self.journal;
        crate::journal::retention::KeepOptions {
            keep_days: (j.keep_days != 0).then_some(j.keep_days),
            archive_dir: folder_in(&self.data_dir, &j.archive_dir),
        }
    }

    /// The journal's options (group commit from `[journal]`, the dedup window from
    /// `[dc09]`).
    pub fn journal_options(&self) -> crate::journal::JournalOptions {
        crate::journal::JournalOptions {
            max_batch: self.journal.max_batch,
            queue_capacity: self.journal.queue_capacity,
            dedup_window_secs: self.dc09.dedup_window_secs,
            dedup_max_entries: self.dc09.dedup_max_entries,
        }
    }

    /// Where the patrol link's certificate comes from: the configured files, or the
    /// development certificate in the data directory.
    pub fn patrol_identity(&self) -> crate::transport::quic::IdentitySource {
        use crate::transport::quic::IdentitySource;
        match (&self.patrol.cert_file, &self.patrol.key_file) {
            (Some(c), Some(k)) => IdentitySource::Files {
                cert: c.clone(),
                key: k.clone(),
            },
            _ => IdentitySource::Development {
                dir: self.data_dir.clone(),
                names: self.patrol.dev_cert_names.clone(),
            },
        }
    }
}

impl TriageConfig {
    /// Triage's options.
    pub fn triage_options(&self) -> crate::triage::TriageOptions {
        crate::triage::TriageOptions {
            escalate_after: self.escalate_after,
        }
    }
}

impl PatrolConfig {
    /// The patrol link's bounds.
    pub fn link_options(&self) -> crate::dispatch::patrol_link::LinkOptions {
        crate::dispatch::patrol_link::LinkOptions {
            max_sessions: self.max_sessions,
            max_sessions_per_source: self.max_sessions_per_source,
        }
    }
}

impl HttpConfig {
    /// The HTTP listener's options.
    pub fn http_options(&self) -> crate::transport::http::HttpOptions {
        crate::transport::http::HttpOptions {
            max_connections: self.max_connections,
            max_per_source: self.max_connections_per_source,
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
        }
    }

    /// The console's options.
    pub fn console_options(&self) -> crate::console::ConsoleOptions {
        crate::console::ConsoleOptions {
            session_hours: self.session_hours,
            secure_cookie: self.secure_cookie,
            tz: self.tz(),
            language: self.language,
            trusted_proxies: self.trusted_proxies.clone(),
            client_address_header: self.client_address_header,
            public_origin: self.public_origin.clone(),
            alerting: crate::console::Alerting {
                ring_max_level: self.ring_max_level,
                ring_repeat_secs: self.ring_repeat_secs,
            },
            plans: Default::default(),
            staffing: Default::default(),
            access_review: Default::default(),
            stats: Default::default(),
        }
    }
}

impl HttpConfig {
    /// The configured time zone (validated at load; UTC if it cannot be found at run time).
    pub fn tz(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(&self.time_zone).unwrap_or(jiff::tz::TimeZone::UTC)
    }
}

/// Listener ports given on the command line (`vakt serve --dc09-port` ...) or in the
/// environment, over the configuration's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ports {
    /// DC-09, TCP and UDP.
    pub dc09: Option<u16>,
    /// SCAIP, SIP over UDP and TCP (TLS keeps its own).
    pub scaip: Option<u16>,
    /// The console, HTTP.
    pub http: Option<u16>,
    /// The patrols' link, QUIC.
    pub patrol: Option<u16>,
}

/// A port was given for a protocol whose listeners are all off in the configuration.
#[derive(Debug, thiserror::Error)]
#[error("{what} is off in the configuration ({keys} = \"\"), so it has no port to move")]
pub struct ListenerOff {
    /// Which protocol: `dc09`, `scaip`, `http`, `patrol`.
    pub protocol: &'static str,
    /// The protocol, in words.
    pub what: &'static str,
    /// The configuration keys that turned it off.
    pub keys: &'static str,
}

impl Config {
    /// Retention's options: the days after the end, the centre's zone, the recordings'
    /// folder in `data_dir` and their archive, and how closed Calls are kept by age.
    pub fn retention_options(
        &self,
        data_dir: &std::path::Path,
    ) -> crate::retention::RetentionOptions {
        let r = &self.retention;
        let recordings = self.voice.recording_options(data_dir);
        crate::retention::RetentionOptions {
            days_after_end: r.subscriber_days_after_end,
            tz: self.http.tz(),
            recordings: recordings.dir,
            recording_archive: recordings.archive_dir,
            closed_calls: (r.closed_call_days != 0).then(|| crate::retention::calls::CallAge {
                days: r.closed_call_days,
                archive_dir: folder_in(data_dir, &r.archive_dir),
            }),
        }
    }

    /// Moves each listener of a protocol in `ports` to that port, keeping its address (port
    /// 0: a free port, printed at start). A listener turned off stays off; a port for a
    /// protocol with no listener on is refused.
    pub fn set_ports(&mut self, ports: Ports) -> Result<(), ListenerOff> {
        fn set(addrs: &mut [&mut Option<SocketAddr>], port: Option<u16>) -> bool {
            let Some(port) = port else { return true };
            let mut any = false;
            for a in addrs.iter_mut() {
                if let Some(a) = a.as_mut() {
                    a.set_port(port);
                    any = true;
                }
            }
            any
        }
        if !set(
            &mut [&mut self.dc09.listen_tcp, &mut self.dc09.listen_udp],
            ports.dc09,
        ) {
            return Err(ListenerOff {
                protocol: "dc09",
                what: "DC-09",
                keys: "[dc09] listen_tcp and listen_udp",
            });
        }
        if !set(
            &mut [&mut self.scaip.listen_udp, &mut self.scaip.listen_tcp],
            ports.scaip,
        ) {
            return Err(ListenerOff {
                protocol: "scaip",
                what: "SCAIP over UDP and TCP",
                keys: "[scaip] listen_udp and listen_tcp",
            });
        }
        if !set(&mut [&mut self.http.listen], ports.http) {
            return Err(ListenerOff {
                protocol: "http",
                what: "the console (HTTP)",
                keys: "[http] listen",
            });
        }
        if !set(&mut [&mut self.patrol.listen_quic], ports.patrol) {
            return Err(ListenerOff {
                protocol: "patrol",
                what: "the patrol link",
                keys: "[patrol] listen_quic",
            });
        }
        Ok(())
    }

    /// Parses and validates a configuration text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text)
    }

    /// The embedded default configuration.
    pub fn embedded() -> Config {
        // The embedded file is checked by a unit test; falling back to the code defaults
        // keeps this infallible.
        Config::from_toml(DEFAULT_TOML).unwrap_or_default()
    }

    /// Checks ranges and relations between values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errs = Vec::new();
        let d = &self.dc09;
        if self.data_dir.as_os_str().is_empty() {
            errs.push("data_dir must not be empty".to_string());
        }
        if !(1..=3600).contains(&self.shutdown_grace_secs) {
            errs.push("shutdown_grace_secs must be 1..=3600".into());
        }
        if d.timestamp_past_secs > 3600 || d.timestamp_future_secs > 3600 {
            errs.push(
                "dc09.timestamp_past_secs and timestamp_future_secs must be at most 3600".into(),
            );
        }
        if !(1..=86_400).contains(&d.dedup_window_secs) {
            errs.push("dc09.dedup_window_secs must be 1..=86400".into());
        }
        if !(1_000..=100_000_000).contains(&d.dedup_max_entries) {
            errs.push("dc09.dedup_max_entries must be 1000..=100000000".into());
        }
        if !(1..=10_000_000).contains(&d.max_connections) {
            errs.push("dc09.max_connections must be 1..=10000000".into());
        }
        if !(1..=10_000_000).contains(&d.max_connections_per_source) {
            errs.push("dc09.max_connections_per_source must be 1..=10000000".into());
        }
        if !(1..=600).contains(&d.frame_timeout_secs) {
            errs.push("dc09.frame_timeout_secs must be 1..=600".into());
        }
        if !(1..=65_535).contains(&d.listen_backlog) {
            errs.push("dc09.listen_backlog must be 1..=65535".into());
        }
        if !(1..=86_400).contains(&d.idle_timeout_secs) {
            errs.push("dc09.idle_timeout_secs must be 1..=86400".into());
        }
        if !(1..=1_000_000).contains(&d.max_udp_in_flight) {
            errs.push("dc09.max_udp_in_flight must be 1..=1000000".into());
        }
        let sc = &self.scaip;
        if d.listen_tcp.is_none()
            && d.listen_udp.is_none()
            && sc.listen_udp.is_none()
            && sc.listen_tcp.is_none()
            && sc.listen_tls.is_none()
        {
            errs.push("at least one device listener must be set (dc09 or scaip)".into());
        }
        errs.extend(sc.problems());
        errs.extend(self.voice.problems());
        let j = &self.journal;
        if !(1..=65_536).contains(&j.max_batch) {
            errs.push("journal.max_batch must be 1..=65536".into());
        }
        if !(16..=10_000_000).contains(&j.queue_capacity) {
            errs.push("journal.queue_capacity must be 16..=10000000".into());
        }
        if !(1..=3600).contains(&j.last_heard_persist_secs) {
            errs.push("journal.last_heard_persist_secs must be 1..=3600".into());
        }
        if !(1 << 20..=1 << 40).contains(&j.cache_capacity_bytes) {
            errs.push("journal.cache_capacity_bytes must be 1 MiB..=1 TiB".into());
        }
        {
            use crate::journal::retention::{MAX_KEEP_DAYS, MIN_KEEP_DAYS};
            if j.keep_days != 0 && !(MIN_KEEP_DAYS..=MAX_KEEP_DAYS).contains(&j.keep_days) {
                errs.push(format!(
                    "journal.keep_days must be 0 (for ever) or {MIN_KEEP_DAYS}..={MAX_KEEP_DAYS}"
                ));
            }
        }
        let h = &self.http;
        if !(1..=1_000_000).contains(&h.max_connections) {
            errs.push("http.max_connections must be 1..=1000000".into());
        }
        if !(1..=1_000_000).contains(&h.max_connections_per_source) {
            errs.push("http.max_connections_per_source must be 1..=1000000".into());
        }
        if !(1..=600).contains(&h.header_read_timeout_secs) {
            errs.push("http.header_read_timeout_secs must be 1..=600".into());
        }
        if !(1..=24 * 7).contains(&h.session_hours) {
            errs.push("http.session_hours must be 1..=168".into());
        }
        if h.ring_max_level > 4 {
            errs.push("http.ring_max_level must be 0..=4 (a priority level)".into());
        }
        if !(2..=300).contains(&h.ring_repeat_secs) {
            errs.push("http.ring_repeat_secs must be 2..=300".into());
        }
        if jiff::tz::TimeZone::get(&h.time_zone).is_err() {
            errs.push(format!(
                "http.time_zone {:?} is not a known IANA time zone (e.g. Europe/Stockholm)",
                h.time_zone
            ));
        }
        let t = &self.triage;
        if !(1..=100).contains(&t.escalate_after) {
            errs.push("triage.escalate_after must be 1..=100".into());
        }
        if !(1..=1_000_000).contains(&t.feed_capacity) {
            errs.push("triage.feed_capacity must be 1..=1000000".into());
        }
        let p = &self.patrol;
        if p.cert_file.is_some() != p.key_file.is_some() {
            errs.push("patrol.cert_file and patrol.key_file go together (neither: a development certificate is made)".into());
        }
        if !(1..=1_000_000).contains(&p.max_sessions) {
            errs.push("patrol.max_sessions must be 1..=1000000".into());
        }
        if !(1..=1_000_000).contains(&p.max_sessions_per_source) {
            errs.push("patrol.max_sessions_per_source must be 1..=1000000".into());
        }
        if !(10..=3600).contains(&p.receipt_timeout_secs) {
            errs.push("patrol.receipt_timeout_secs must be 10..=3600".into());
        }
        if p.warn_at_mins.len() > 10 || p.warn_at_mins.iter().any(|m| !(1..=600).contains(m)) {
            errs.push("patrol.warn_at_mins: at most 10 marks, each 1..=600 minutes".into());
        }
        if let Err(e) = self.supervision.validate() {
            errs.extend(e.lines().map(str::to_owned));
        }
        if let Err(e) = self.incidents.validate() {
            errs.extend(e.lines().map(str::to_owned));
        }
        errs.extend(self.work_orders.problems());
        errs.extend(self.orders.problems());
        errs.extend(self.care.problems());
        errs.extend(self.staffing.problems());
        errs.extend(self.retention.problems());
        errs.extend(self.access_review.problems());
        errs.extend(self.stats.problems());
        errs.extend(crate::outbox::validate_escalations(&self.escalation));
        errs.extend(self.store.problems());
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errs.join("; ")))
        }
    }

    /// The shutdown deadline.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outbound_trunk_needs_the_centres_number_and_keeps_its_password_out_of_logs() {
        let with = |extra: &str| {
            Config::from_toml(&format!(
                "[[voice.trunks]]\nname = \"sbc\"\nsources = [\"192.0.2.10\"]\n{extra}"
            ))
        };
        // In only: no outbound, nothing to dial with.
        let c = with("").expect("a trunk for calls in");
        let units = std::sync::Arc::new(crate::voice::dial::Units::default());
        assert!(
            c.voice
                .dial_options("sip:arc@vakt", units.clone())
                .trunk
                .is_none()
        );
        assert!(with("outbound = \"192.0.2.10:5060\"\n").is_err());
        assert!(with("outbound = \"192.0.2.10:5060\"\nfrom_number = \"+46 31 123 456\"\noutbound_user = \"vakt\"\n").is_err());
        assert!(with("outbound = \"192.0.2.10:5060\"\nfrom_number = \"+46 31 123 456\"\ntransport = \"sctp\"\n").is_err());
        let c = with("outbound = \"192.0.2.10:5060\"\ntransport = \"tcp\"\nfrom_number = \"+46 31 123 456\"\noutbound_user = \"vakt\"\noutbound_password = \"trunk-secret-42\"\n")
            .expect("an outbound trunk");
        let t = c
            .voice
            .dial_options("sip:arc@vakt", units)
            .trunk
            .expect("the trunk");
        assert_eq!(t.address, "192.0.2.10:5060".parse().unwrap());
        assert_eq!(t.transport, crate::voice::dial::TrunkTransport::Tcp);
        assert_eq!(t.from_number, "+4631123456");
        assert!(!format!("{t:?}").contains("trunk-secret-42"));
        assert!(!format!("{:?}", c.voice).contains("trunk-secret-42"));
        assert!(Config::from_toml("[voice]\ncallback_window_mins = 61\n").is_err());
    }

    #[test]
    fn the_store_is_sled_by_default_and_postgres_needs_a_url() {
        let d = Config::default();
        assert_eq!(d.store.backend, StoreBackend::Sled);
        assert_eq!(d.store.url, None);
        assert_eq!((d.store.lease_ttl_ms, d.store.lease_renew_ms), (5000, 1000));
        assert!(!d.store.node.is_empty(), "the host name");
        assert_eq!(
            d.store.leader_options().unwrap(),
            crate::store::pg::leader::LeaderOptions::default()
        );

        let url = "postgresql://vakt@db1:5432,db2:5433/vakt?target_session_attrs=read-write";
        let c = Config::from_toml(&format!(
            "[store]\nbackend = \"postgres\"\nurl = \"{url}\"\nnode = \"vakt-a\"\n\
             lease_ttl_ms = 3000\nlease_renew_ms = 500\n"
        ))
        .expect("a postgres store");
        assert_eq!(c.store.backend, StoreBackend::Postgres);
        assert_eq!(c.store.url.as_ref().map(DatabaseUrl::expose), Some(url));
        assert_eq!(c.store.node, "vakt-a");
        let lease = c.store.leader_options().unwrap();
        assert_eq!(
            (lease.ttl(), lease.renew()),
            (Duration::from_millis(3000), Duration::from_millis(500))
        );
        let parsed = c.store.url.as_ref().unwrap().parse().unwrap();
        assert_eq!(parsed.get_hosts().len(), 2);

        let err = |toml: &str| Config::from_toml(toml).unwrap_err().to_string();
        let e = err("[store]\nbackend = \"postgres\"\n");
        assert!(e.contains("store.url is required"), "{e}");
        let e = err("[store]\nbackend = \"postgres\"\nurl = \"\"\n");
        assert!(e.contains("store.url is required"), "{e}");
        let e = err(&format!("[store]\nurl = \"{url}\"\n"));
        assert!(e.contains("store.backend is \"sled\""), "{e}");
        let e = err(
            "[store]\nbackend = \"postgres\"\nurl = \"postgresql://vakt@db1/vakt?colour=blue\"\n",
        );
        assert!(e.contains("store.url is not a PostgreSQL URL"), "{e}");
        let e =
            err("[store]\nbackend = \"postgres\"\nurl = \"postgresql://vakt@db1:notaport/vakt\"\n");
        assert!(e.contains("store.url"), "{e}");
        let e = err("[store]\nbackend = \"mysql\"\n");
        assert!(e.contains("mysql"), "{e}");
        let e = err("[store]\nlease_ttl_ms = 2000\nlease_renew_ms = 1000\n");
        assert!(
            e.contains("store.lease_renew_ms (1000) must be below half"),
            "{e}"
        );
        let e = err("[store]\nlease_ttl_ms = 500\nlease_renew_ms = 100\n");
        assert!(e.contains("store.lease_ttl_ms must be"), "{e}");
        let e = err("[store]\nlease_renew_ms = 0\n");
        assert!(e.contains("store.lease_renew_ms must be"), "{e}");
        let e = err("[store]\nnode = \"\"\n");
        assert!(e.contains("store.node"), "{e}");
        let e = err("[store]\nhost = \"db1\"\n");
        assert!(e.contains("host"), "{e}");
    }

    #[test]
    fn the_database_password_is_never_shown() {
        let secret = "s3cret-Pa55";
        for url in [
            format!(
                "postgresql://vakt:{secret}@db1:5432,db2:5432/vakt?target_session_attrs=read-write"
            ),
            format!("postgresql://vakt@db1/vakt?password={secret}"),
            format!("host=db1,db2 user=vakt password={secret} dbname=vakt"),
        ] {
            let c = Config::from_toml(&format!(
                "[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n"
            ))
            .unwrap_or_else(|e| panic!("{url}: {e}"));
            let u = c.store.url.as_ref().unwrap();
            assert_eq!(u.expose(), url, "connects with the password");
            for shown in [
                format!("{c:?}"),
                format!("{:?}", c.store),
                format!("{u:?}"),
                u.redacted(),
            ] {
                assert!(!shown.contains(secret), "{shown}");
                assert!(shown.contains("db1"), "{shown}");
                assert!(shown.contains("password hidden"), "{shown}");
            }
        }
        // Without a password nothing is said of one; an unparsable URL is not echoed.
        let u = DatabaseUrl::new("postgresql://vakt@db1:5432,db2:5433/vakt");
        assert_eq!(u.redacted(), "vakt@db1:5432,db2:5433/vakt");
        let bad = format!("postgresql://vakt:{secret}@db1:nope/vakt");
        assert!(!format!("{:?}", DatabaseUrl::new(bad.clone())).contains(secret));
        let e = Config::from_toml(&format!(
            "[store]\nbackend = \"postgres\"\nurl = \"{bad}\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("store.url") && !e.contains(secret), "{e}");
    }

    #[test]
    fn embedded_default_equals_code_default() {
        let parsed = Config::from_toml(DEFAULT_TOML).expect("config/vakt.toml parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn retention_after_the_end_is_a_year_by_default_and_bounded() {
        let d = Config::default();
        assert_eq!(d.retention.subscriber_days_after_end, 365);
        let opts = d.retention_options(std::path::Path::new("/data"));
        assert_eq!(opts.days_after_end, 365);
        assert_eq!(opts.recordings, std::path::Path::new("/data/recordings"));
        for (days, ok) in [(30, false), (31, true), (3650, true), (3651, false)] {
            let v = Config::from_toml(&format!(
                "[retention]\nsubscriber_days_after_end = {days}\n"
            ));
            assert_eq!(v.is_ok(), ok, "{days}: {v:?}");
            if let Err(e) = v {
                assert!(e.to_string().contains("subscriber_days_after_end"), "{e}");
            }
        }
        assert!(
            Config::from_toml("[retention]\ndays = 3\n").is_err(),
            "unknown key"
        );
    }

    #[test]
    fn closed_calls_are_kept_by_default_and_their_age_is_bounded() {
        let data = std::path::Path::new("/data");
        assert_eq!(Config::default().retention_options(data).closed_calls, None);
        for (days, ok) in [
            (0, true),
            (364, false),
            (365, true),
            (3650, true),
            (3651, false),
        ] {
            let v = Config::from_toml(&format!("[retention]\nclosed_call_days = {days}\n"));
            assert_eq!(v.is_ok(), ok, "{days}: {v:?}");
            if let Err(e) = v {
                assert!(e.to_string().contains("closed_call_days"), "{e}");
            }
        }
        let c = Config::from_toml("[retention]\nclosed_call_days = 730\narchive_dir = \"arkiv\"\n")
            .unwrap();
        let age = c.retention_options(data).closed_calls.unwrap();
        assert_eq!(age.days, 730);
        assert_eq!(
            age.archive_dir.as_deref(),
            Some(std::path::Path::new("/data/arkiv"))
        );
        let c =
            Config::from_toml("[retention]\nclosed_call_days = 730\narchive_dir = \"/arkiv\"\n")
                .unwrap();
        let age = c.retention_options(data).closed_calls.unwrap();
        assert_eq!(
            age.archive_dir.as_deref(),
            Some(std::path::Path::new("/arkiv"))
        );
        let c = Config::from_toml("[retention]\nclosed_call_days = 730\n").unwrap();
        assert_eq!(
            c.retention_options(data).closed_calls.unwrap().archive_dir,
            None
        );
        // Recordings are archived where `[voice]` says, also those of Calls deleted by age.
        assert_eq!(
            Config::default().voice.recording_options(data).archive_dir,
            None
        );
        let c = Config::from_toml("[voice]\nrecording_archive_dir = \"arkiv/ljud\"\n").unwrap();
        let want = Some(std::path::PathBuf::from("/data/arkiv/ljud"));
        assert_eq!(c.voice.recording_options(data).archive_dir, want);
        assert_eq!(c.retention_options(data).recording_archive, want);
    }

    #[test]
    fn the_journal_is_kept_two_years_by_default_for_ever_with_0_and_archived_where_told() {
        let d = Config::default().journal_keep();
        assert_eq!(d.keep_days, Some(730));
        assert_eq!(d.archive_dir, None);
        let c = Config::from_toml("[journal]\nkeep_days = 0\narchive_dir = \"/arkiv/vakt\"\n")
            .unwrap()
            .journal_keep();
        assert_eq!(c.keep_days, None);
        assert_eq!(
            c.archive_dir.as_deref(),
            Some(std::path::Path::new("/arkiv/vakt"))
        );
        let c = Config::from_toml("data_dir = \"/data\"\n[journal]\narchive_dir = \"arkiv\"\n")
            .unwrap()
            .journal_keep();
        assert_eq!(
            c.archive_dir.as_deref(),
            Some(std::path::Path::new("/data/arkiv"))
        );
        for (days, ok) in [
            (0, true),
            (1, false),
            (30, false),
            (31, true),
            (3650, true),
            (3651, false),
        ] {
            let v = Config::from_toml(&format!("[journal]\nkeep_days = {days}\n"));
            assert_eq!(v.is_ok(), ok, "{days}: {v:?}");
            if let Err(e) = v {
                assert!(e.to_string().contains("journal.keep_days"), "{e}");
            }
        }
    }

    #[test]
    fn the_console_language_and_time_zone_default_to_the_centres_and_are_checked() {
        let d = Config::default();
        assert_eq!(d.http.language, crate::model::ConsoleLanguage::Sv);
        assert_eq!(d.http.time_zone, "Europe/Stockholm");
        assert_eq!(d.http.console_options().language, d.http.language);
        let nb = Config::from_toml("[http]\nlanguage = \"nb\"\ntime_zone = \"Europe/Oslo\"\n")
            .expect("nb parses");
        assert_eq!(nb.http.language, crate::model::ConsoleLanguage::Nb);
        assert!(nb.validate().is_ok());
        // A language the console does not have is refused when read.
        assert!(Config::from_toml("[http]\nlanguage = \"fi\"\n").is_err());
        // An unknown zone is refused at start, naming the key.
        let err = Config::from_toml("[http]\ntime_zone = \"Europe/Gothenburg\"\n")
            .expect_err("an unknown zone is refused")
            .to_string();
        assert!(err.contains("http.time_zone"), "{err}");
    }

    #[test]
    fn every_example_config_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("config/ exists") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n > 0, "no example config found in {}", dir.display());
    }

    #[test]
    fn ports_move_listeners_and_keep_their_addresses() {
        let mut c = Config::default();
        c.dc09.listen_udp = None;
        c.scaip.listen_tcp = Some("0.0.0.0:5060".parse().unwrap());
        c.set_ports(Ports {
            dc09: Some(17100),
            scaip: Some(15060),
            http: Some(0),
            patrol: None,
        })
        .unwrap();
        assert_eq!(c.dc09.listen_tcp, Some("127.0.0.1:17100".parse().unwrap()));
        assert_eq!(c.dc09.listen_udp, None, "a listener turned off stays off");
        assert_eq!(c.scaip.listen_udp, Some("127.0.0.1:15060".parse().unwrap()));
        assert_eq!(c.scaip.listen_tcp, Some("0.0.0.0:15060".parse().unwrap()));
        assert_eq!(c.http.listen, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(c.patrol.listen_quic, Config::default().patrol.listen_quic);
        c.http.listen = None;
        let e = c
            .set_ports(Ports {
                http: Some(8081),
                ..Ports::default()
            })
            .unwrap_err();
        assert_eq!(e.protocol, "http");
        assert!(e.to_string().contains("[http] listen"), "{e}");
    }

    #[test]
    fn unknown_key_is_an_error() {
        let err = Config::from_toml("[dc09]\nlisten_tpc = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(err.to_string().contains("listen_tpc"), "{err}");
        let err = Config::from_toml("colour = 1\n").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn empty_address_disables_and_bad_address_fails() {
        let cfg = Config::from_toml("[dc09]\nlisten_udp = \"\"\n[http]\nlisten = \"\"\n").unwrap();
        assert_eq!(cfg.dc09.listen_udp, None);
        assert_eq!(cfg.http.listen, None);
        assert!(cfg.dc09.listen_tcp.is_some());
        let err = Config::from_toml("[dc09]\nlisten_tcp = \"localhost\"\n").unwrap_err();
        assert!(err.to_string().contains("localhost"), "{err}");
    }

    #[test]
    fn the_ring_is_a_priority_level_and_a_sane_repeat() {
        let cfg = Config::from_toml("[http]\nring_max_level = 1\nring_repeat_secs = 5\n").unwrap();
        assert_eq!((cfg.http.ring_max_level, cfg.http.ring_repeat_secs), (1, 5));
        for bad in [
            "ring_max_level = 5",
            "ring_repeat_secs = 1",
            "ring_repeat_secs = 301",
        ] {
            let e = Config::from_toml(&format!("[http]\n{bad}\n")).unwrap_err();
            assert!(format!("{e:#}").contains("http.ring_"), "{bad}: {e:#}");
        }
    }

    #[test]
    fn trusted_proxies_and_the_public_origin() {
        let cfg = Config::from_toml(
            "[http]\ntrusted_proxies = [\"10.1.2.3\", \"192.168.0.7/16\", \"::1\"]\n\
             client_address_header = \"forwarded\"\npublic_origin = \"HTTPS://Larm.Example.se/\"\n",
        )
        .unwrap();
        let nets: Vec<String> = cfg
            .http
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, ["10.1.2.3/32", "192.168.0.0/16", "::1/128"]);
        assert_eq!(
            cfg.http.client_address_header,
            ClientAddressHeader::Forwarded
        );
        assert_eq!(
            cfg.http.public_origin.as_deref(),
            Some("https://larm.example.se")
        );
        for bad in [
            "trusted_proxies = [\"proxy.local\"]",
            "trusted_proxies = [\"10.0.0.0/33\"]",
            "client_address_header = \"x-real-ip\"",
            "public_origin = \"larm.example.se\"",
            "public_origin = \"https://larm.example.se/console\"",
        ] {
            let key = bad.split(' ').next().unwrap();
            let err = Config::from_toml(&format!("[http]\n{bad}\n")).unwrap_err();
            assert!(err.to_string().contains(key), "{bad}: {err}");
        }
        assert_eq!(
            Config::from_toml("[http]\npublic_origin = \"\"\n")
                .unwrap()
                .http
                .public_origin,
            None
        );
    }

    #[test]
    fn out_of_range_values_fail() {
        let err = Config::from_toml("[dc09]\nmax_connections = 0\n").unwrap_err();
        assert!(err.to_string().contains("max_connections"), "{err}");
        // DC-09 off is fine while SCAIP listens; no device listener at all is not.
        assert!(Config::from_toml("[dc09]\nlisten_tcp = \"\"\nlisten_udp = \"\"\n").is_ok());
        let err = Config::from_toml(
            "[dc09]\nlisten_tcp = \"\"\nlisten_udp = \"\"\n[scaip]\nlisten_tcp = \"\"\nlisten_udp = \"\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("at least one"), "{err}");
        let err = Config::from_toml("[scaip]\nlisten_tls = \"127.0.0.1:5061\"\n").unwrap_err();
        assert!(err.to_string().contains("scaip.listen_tls needs"), "{err}");
        let err = Config::from_toml("[scaip]\nvoice_mre = 0\nrealm = \"a b\"\n").unwrap_err();
        assert!(
            err.to_string().contains("voice_mre") && err.to_string().contains("realm"),
            "{err}"
        );
        let err = Config::from_toml("[dc09]\ndedup_window_secs = \"ten\"\n").unwrap_err();
        assert!(err.to_string().contains("dedup_window_secs"), "{err}");
    }
}
