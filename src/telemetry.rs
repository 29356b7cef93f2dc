//! Logs and metrics: tracing setup, and every metric vakt emits, named and described in one
//! place.
//!
//! Metric names are `vakt_<what>_<unit>`; labels are bounded enums (transport, protocol,
//! result, reason, flag), never accounts or addresses. Handles are registered once and kept in
//! [`Metrics`], so the hot path does no registry lookups.

use std::sync::OnceLock;

use metrics::{
    Counter, Gauge, Histogram, Unit, describe_counter, describe_gauge, describe_histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::model::{Outcome, Priority, Transport};

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Buckets for latencies in seconds: 50 µs to 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];
/// Buckets for commit batch sizes in frames.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

/// Buckets for answer times in seconds: 1 s to 30 min (the targets are 60 s and 180 s).
const ANSWER_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1800.0,
];

/// Buckets for a patrol's time from receipt to arrival in seconds: 1 to 60 min (the limit is
/// 30 min, longer in outer areas).
const ARRIVAL_BUCKETS: &[f64] = &[
    60.0, 300.0, 600.0, 900.0, 1200.0, 1500.0, 1800.0, 2100.0, 2700.0, 3600.0,
];

/// Buckets for a take-over in seconds (the lease taken to the server ready): 100 ms to 1 min
/// (the budget from a leader's death to devices served again is 10 s).
const TAKEOVER_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 20.0, 60.0,
];

/// Installs the Prometheus recorder (once per process) and returns its handle.
pub fn prometheus() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("vakt_call_answer_seconds".into()),
                ANSWER_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("vakt_dispatch_arrival_seconds".into()),
                    ARRIVAL_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("vakt_takeover_seconds".into()),
                    TAKEOVER_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_frames".into()), BATCH_BUCKETS)
            });
        let recorder = match builder {
            Ok(b) => b.build_recorder(),
            // Only fails on empty bucket lists, which are constants here.
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        // Fails only if another recorder is installed (e.g. by an embedding program); then
        // vakt's metrics go there and /metrics shows what this recorder has.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

/// How often the Prometheus recorder's upkeep runs. Histogram samples recorded between two
/// upkeeps are held one by one, so under a flood of frames a long period is memory: the
/// upkeep has its own short timer, whatever else runs periodically.
pub const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the recorder's upkeep (folds the held histogram samples) every `every` until
/// `shutdown`; returns how many upkeeps ran.
pub async fn upkeep(
    every: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) -> u64 {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once; the first upkeep one period after the start.
    tick.tick().await;
    let mut ran = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return ran,
        }
        prometheus().run_upkeep();
        ran += 1;
    }
}

/// The most the storage engine (sled) may log, whatever `RUST_LOG` says: at debug and trace
/// it writes what it stores (keys, batches: subscribers' records and notes).
pub const SLED_MAX_LEVEL: tracing::level_filters::LevelFilter =
    tracing::level_filters::LevelFilter::INFO;

/// The filter on top of `RUST_LOG`'s: sled capped at [`SLED_MAX_LEVEL`], everything else as
/// `RUST_LOG` says.
pub fn log_cap() -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new()
        .with_target("sled", SLED_MAX_LEVEL)
        .with_default(tracing::level_filters::LevelFilter::TRACE)
}

/// Sets up tracing: `RUST_LOG`-style filter (default `info`) and [`log_cap`], text or JSON
/// lines on stderr.
pub fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry();
    let _ = if json {
        registry
            .with(layer.json().with_filter(filter).with_filter(log_cap()))
            .try_init()
    } else {
        registry
            .with(layer.with_filter(filter).with_filter(log_cap()))
            .try_init()
    };
}

fn describe() {
    describe_cluster();
    describe_scaip();
    describe_recording();
    describe_retention();
    describe_voice_calls();
    describe_webrtc();
    describe_media();
    describe_sip_calls();
    describe_staffing();
    describe_counter!(
        "vakt_frames_total",
        Unit::Count,
        "DC-09 frames received, by transport, protocol (null, adm_cid, sia_dcs, other, invalid) and result (ack, duplicate, nak, duh, dropped)"
    );
    describe_counter!(
        "vakt_signals_journaled_total",
        Unit::Count,
        "Signals appended to the journal, by flag (none, unauthenticated, unknown_device, undecryptable, bad_payload)"
    );
    describe_counter!(
        "vakt_duplicates_total",
        Unit::Count,
        "Retransmitted frames ACKed again without a new journal entry"
    );
    describe_counter!("vakt_nak_total", Unit::Count, "NAK answers, by reason");
    describe_counter!("vakt_duh_total", Unit::Count, "DUH answers, by reason");
    describe_counter!(
        "vakt_frames_ignored_total",
        Unit::Count,
        "Frames deliberately left unanswered, by reason (control_token; over UDP: not_a_frame, a datagram without an LF..CR frame; rate_limited, a NAK or DUH withheld because its source had its share)"
    );
    describe_counter!(
        "vakt_heartbeats_total",
        Unit::Count,
        "NULL link tests (heartbeats) ACKed, by transport"
    );
    describe_counter!(
        "vakt_journal_errors_total",
        Unit::Count,
        "Group commits that failed; their frames got no ACK"
    );
    describe_histogram!(
        "vakt_journal_batch_frames",
        Unit::Count,
        "Frames written per group commit (one flush)"
    );
    describe_histogram!(
        "vakt_journal_commit_seconds",
        Unit::Seconds,
        "Time to write and flush one group commit"
    );
    describe_histogram!(
        "vakt_frame_ack_seconds",
        Unit::Seconds,
        "From a complete frame received to its answer ready to send, by transport"
    );
    describe_gauge!(
        "vakt_tcp_connections_open",
        Unit::Count,
        "Open DC-09 TCP connections"
    );
    describe_counter!(
        "vakt_tcp_connections_accepted_total",
        Unit::Count,
        "DC-09 TCP connections accepted"
    );
    describe_counter!(
        "vakt_tcp_connections_closed_total",
        Unit::Count,
        "DC-09 TCP connections closed, by reason (eof, idle, frame_timeout, error, shutdown, journal)"
    );
    describe_counter!(
        "vakt_tcp_accept_errors_total",
        Unit::Count,
        "Errors from accept (e.g. out of file descriptors), by listener (dc09_tcp, scaip_tcp, scaip_tls, http)"
    );
    describe_counter!(
        "vakt_connections_refused_total",
        Unit::Count,
        "Connections refused at once, by listener (dc09_tcp, scaip_tcp, scaip_tls, http, patrol_quic) and reason (per_source: the source had its maximum)"
    );
    describe_counter!(
        "vakt_udp_dropped_total",
        Unit::Count,
        "UDP datagrams dropped unanswered because too many were waiting for the journal"
    );
    describe_counter!(
        "vakt_garbage_bytes_total",
        Unit::Bytes,
        "Bytes skipped between frames (noise, NUL padding, oversized frames)"
    );
    describe_counter!(
        "vakt_dedup_evicted_total",
        Unit::Count,
        "Dedup entries forgotten before their window ended because the table was full"
    );
    // Triage and calls.
    describe_counter!(
        "vakt_calls_opened_total",
        Unit::Count,
        "Calls opened, by priority level (0 most urgent)"
    );
    describe_counter!(
        "vakt_alarms_merged_total",
        Unit::Count,
        "Alarm Signals merged into a subscriber's open Call"
    );
    describe_counter!(
        "vakt_calls_escalated_total",
        Unit::Count,
        "Calls moved to a more urgent level, by reason (repeated_presses, more_urgent_signal)"
    );
    describe_counter!(
        "vakt_signals_by_rule_total",
        Unit::Count,
        "Signals handled by rule without a Call, by rule (periodic_test, restore, status, other, incident, presence)"
    );
    describe_counter!(
        "vakt_restores_total",
        Unit::Count,
        "Restores attached to an open Call"
    );
    describe_counter!(
        "vakt_calls_closed_total",
        Unit::Count,
        "Calls closed, by outcome"
    );
    describe_histogram!(
        "vakt_call_answer_seconds",
        Unit::Seconds,
        "Answer time: from a Call's first Signal to an operator taking it"
    );
    describe_gauge!(
        "vakt_queue_calls",
        Unit::Count,
        "Calls waiting in the queue, by priority level"
    );
    describe_gauge!(
        "vakt_calls_open",
        Unit::Count,
        "Calls not yet closed (queued or claimed)"
    );
    describe_counter!(
        "vakt_triage_errors_total",
        Unit::Count,
        "Signals or Call changes triage could not read or store (each is logged)"
    );
    // Console.
    describe_gauge!(
        "vakt_websocket_sessions_open",
        Unit::Count,
        "Open console WebSocket sessions"
    );
    describe_counter!(
        "vakt_dispatches_total",
        Unit::Count,
        "Dispatches offered to a patrol, by how (operator, fallback after a receipt timeout)"
    );
    describe_counter!(
        "vakt_dispatch_steps_total",
        Unit::Count,
        "Dispatch steps, by step (received, accepted, declined, arrived, completed, cancelled, receipt_timeout, warning, breached)"
    );
    describe_counter!(
        "vakt_dispatch_receipt_timeouts_total",
        Unit::Count,
        "Dispatches not received by their patrol in time"
    );
    describe_counter!(
        "vakt_dispatch_arrivals_total",
        Unit::Count,
        "Patrol arrivals, by method (app, lock, receipt_code)"
    );
    describe_counter!(
        "vakt_dispatch_breaches_total",
        Unit::Count,
        "Dispatches whose arrival limit passed without an arrival"
    );
    describe_counter!(
        "vakt_calls_reopened_total",
        Unit::Count,
        "Closed Calls brought back to the queue: their dispatch ended without a visit and no patrol of the route was left"
    );
    describe_histogram!(
        "vakt_dispatch_arrival_seconds",
        Unit::Seconds,
        "Time from the patrol's receipt to its arrival"
    );
    describe_gauge!(
        "vakt_dispatches_live",
        Unit::Count,
        "Dispatches not yet completed (offered, received, accepted, arrived)"
    );
    describe_gauge!(
        "vakt_patrol_sessions_open",
        Unit::Count,
        "Patrols with a connected session"
    );
    describe_counter!(
        "vakt_lock_events_total",
        Unit::Count,
        "Digital-lock openings reported by lock systems, by result (arrived, ignored)"
    );
    describe_gauge!(
        "vakt_devices_supervised",
        Unit::Count,
        "Devices whose heartbeat deadlines are watched"
    );
    describe_gauge!(
        "vakt_devices_silent",
        Unit::Count,
        "Supervised devices silent now (missed their deadline, not heard since)"
    );
    describe_counter!(
        "vakt_supervision_silences_total",
        Unit::Count,
        "Devices that missed their heartbeat deadline"
    );
    describe_counter!(
        "vakt_supervision_restorations_total",
        Unit::Count,
        "Silent devices heard again"
    );
    describe_gauge!("vakt_incidents_open", Unit::Count, "Open telecom incidents");
    describe_counter!(
        "vakt_incidents_total",
        Unit::Count,
        "Telecom incidents declared, by kind (telecom_operator, area)"
    );
    describe_gauge!(
        "vakt_outbox_pending",
        Unit::Count,
        "Escalation notifications not yet acknowledged by their endpoint"
    );
    describe_gauge!(
        "vakt_outbox_failing_endpoints",
        Unit::Count,
        "Endpoints whose oldest pending notification has failed at least once"
    );
    describe_counter!(
        "vakt_outbox_attempts_total",
        Unit::Count,
        "Delivery attempts, by endpoint and result (delivered, http_error, network_error, timeout)"
    );
    describe_counter!(
        "vakt_outbox_enqueued_total",
        Unit::Count,
        "Notifications put in the outbox, by event"
    );
    describe_counter!(
        "vakt_outbox_unrouted_total",
        Unit::Count,
        "Notifications no endpoint is configured for, by recipient kind"
    );
    describe_gauge!(
        "vakt_work_orders_open",
        Unit::Count,
        "Work orders new or started"
    );
    describe_gauge!(
        "vakt_work_orders_overdue",
        Unit::Count,
        "Open work orders late (not started in 3 working days, or not done in 10 days)"
    );
    describe_gauge!(
        "vakt_orders_open",
        Unit::Count,
        "Subscribers' orders open (new alarm, change, provider change, end, lock), by lateness (in_time, overdue, return_due)"
    );
    describe_counter!(
        "vakt_work_orders_total",
        Unit::Count,
        "Work orders created, by fault (low_battery, mains_loss, tamper, device_failure, reported)"
    );
    describe_counter!(
        "vakt_logins_total",
        Unit::Count,
        "Console logins, by result (ok, bad_credentials, throttled: wrong and answered after a hold)"
    );
    describe_counter!(
        "vakt_http_rejected_total",
        Unit::Count,
        "API requests refused, by reason (no_session, ambiguous_session, forbidden, cross_origin, media_type)"
    );
}

/// Handles of the triage and Call metrics.
#[derive(Clone)]
pub struct CallMetrics {
    opened: [Counter; Priority::LEVELS],
    /// Alarms merged into an open Call.
    pub merged: Counter,
    /// Restores attached to an open Call.
    pub restores: Counter,
    /// Answer times (first Signal to first claim).
    pub answer_seconds: Histogram,
    queue: [Gauge; Priority::LEVELS],
    /// Calls not yet closed.
    pub open: Gauge,
    /// Signals or changes triage could not read or store.
    pub errors: Counter,
}

impl std::fmt::Debug for CallMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallMetrics")
    }
}

impl CallMetrics {
    /// Registers every handle (installing the recorder first if needed).
    pub fn new() -> CallMetrics {
        prometheus();
        let levels = |name: &'static str| {
            [0u8, 1, 2, 3, 4].map(|l| metrics::counter!(name, "level" => Priority(l).label()))
        };
        CallMetrics {
            opened: levels("vakt_calls_opened_total"),
            merged: metrics::counter!("vakt_alarms_merged_total"),
            restores: metrics::counter!("vakt_restores_total"),
            answer_seconds: metrics::histogram!("vakt_call_answer_seconds"),
            queue: [0u8, 1, 2, 3, 4]
                .map(|l| metrics::gauge!("vakt_queue_calls", "level" => Priority(l).label())),
            open: metrics::gauge!("vakt_calls_open"),
            errors: metrics::counter!("vakt_triage_errors_total"),
        }
    }

    /// Counts a Call opened at `level`.
    pub fn opened(&self, level: Priority) {
        self.opened[usize::from(level.0.min(4))].increment(1);
    }

    /// Sets the queue depth of `level`.
    pub fn queue_depth(&self, level: Priority, depth: usize) {
        self.queue[usize::from(level.0.min(4))].set(depth as f64);
    }

    /// Counts an escalation; `reason` is `repeated_presses` or `more_urgent_signal`.
    pub fn escalated(&self, reason: &'static str) {
        metrics::counter!("vakt_calls_escalated_total", "reason" => reason).increment(1);
    }

    /// Counts a Signal handled by rule; `rule` is one of a fixed set of names.
    pub fn rule(&self, rule: &'static str) {
        metrics::counter!("vakt_signals_by_rule_total", "rule" => rule).increment(1);
    }

    /// Counts a closed Call.
    pub fn closed(&self, outcome: Outcome) {
        metrics::counter!("vakt_calls_closed_total", "outcome" => outcome.as_str()).increment(1);
    }
}

impl Default for CallMetrics {
    fn default() -> Self {
        CallMetrics::new()
    }
}

/// Handles of the console metrics.
#[derive(Clone)]
pub struct ConsoleMetrics {
    /// Open WebSocket sessions.
    pub ws_sessions: Gauge,
}

impl std::fmt::Debug for ConsoleMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsoleMetrics")
    }
}

impl ConsoleMetrics {
    /// Registers every handle (installing the recorder first if needed).
    pub fn new() -> ConsoleMetrics {
        prometheus();
        ConsoleMetrics {
            ws_sessions: metrics::gauge!("vakt_websocket_sessions_open"),
        }
    }

    /// Counts a login attempt; `result` is `ok`, `bad_credentials` or `throttled`.
    pub fn login(&self, result: &'static str) {
        metrics::counter!("vakt_logins_total", "result" => result).increment(1);
    }

    /// Counts a refused API request; `reason` is `no_session`, `ambiguous_session`,
    /// `forbidden`, `cross_origin` or `media_type`.
    pub fn rejected(&self, reason: &'static str) {
        metrics::counter!("vakt_http_rejected_total", "reason" => reason).increment(1);
    }
}

impl Default for ConsoleMetrics {
    fn default() -> Self {
        ConsoleMetrics::new()
    }
}

fn describe_staffing() {
    describe_gauge!(
        "vakt_operators_active",
        Unit::Count,
        "Operators on duty: logged in, a console beating and used (supervisors while they work Calls)"
    );
    describe_gauge!(
        "vakt_staffing_below_floor",
        Unit::Count,
        "1 while fewer operators are on duty than [staffing] min_operators, 0 otherwise"
    );
    describe_gauge!(
        "vakt_queue_oldest_wait_seconds",
        Unit::Seconds,
        "How long the oldest Call nobody has taken has waited (0 when none waits)"
    );
    describe_gauge!(
        "vakt_queue_waiting_over_limit",
        Unit::Count,
        "Calls nobody has taken that have waited longer than [staffing] queue_wait_warn_secs"
    );
}

/// Handles of the staffing metrics (the floor of operators on duty, the queue's wait).
#[derive(Clone)]
pub struct StaffingMetrics {
    active: Gauge,
    below_floor: Gauge,
    oldest_wait: Gauge,
    over_limit: Gauge,
}

impl std::fmt::Debug for StaffingMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaffingMetrics")
    }
}

impl StaffingMetrics {
    /// Registers every handle (installing the recorder first if needed).
    pub fn new() -> StaffingMetrics {
        prometheus();
        StaffingMetrics {
            active: metrics::gauge!("vakt_operators_active"),
            below_floor: metrics::gauge!("vakt_staffing_below_floor"),
            oldest_wait: metrics::gauge!("vakt_queue_oldest_wait_seconds"),
            over_limit: metrics::gauge!("vakt_queue_waiting_over_limit"),
        }
    }

    /// Sets the figures of one assessment.
    pub fn set(&self, on_duty: usize, below_floor: bool, oldest_wait_secs: u64, over: usize) {
        self.active.set(on_duty as f64);
        self.below_floor.set(if below_floor { 1.0 } else { 0.0 });
        self.oldest_wait.set(oldest_wait_secs as f64);
        self.over_limit.set(over as f64);
    }
}

impl Default for StaffingMetrics {
    fn default() -> Self {
        StaffingMetrics::new()
    }
}

/// Label values of the `protocol` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoLabel {
    /// NULL / XNM link tests.
    Null = 0,
    /// ADM-CID.
    AdmCid = 1,
    /// SIA-DCS.
    SiaDcs = 2,
    /// Any other ID token.
    Other = 3,
    /// Not a valid frame.
    Invalid = 4,
}

/// Label values of the `result` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultLabel {
    /// Answered ACK (or *ACK).
    Ack = 0,
    /// Answered ACK as a retransmission.
    Duplicate = 1,
    /// Answered NAK.
    Nak = 2,
    /// Answered DUH.
    Duh = 3,
    /// Not answered (journal failure or overload).
    Dropped = 4,
}

const PROTOS: [&str; 5] = ["null", "adm_cid", "sia_dcs", "other", "invalid"];
const RESULTS: [&str; 5] = ["ack", "duplicate", "nak", "duh", "dropped"];
const TRANSPORTS: [Transport; 2] = [Transport::Tcp, Transport::Udp];

/// Pre-registered metric handles.
#[derive(Clone)]
pub struct Metrics {
    frames: Vec<Counter>,
    /// Signals journaled, by flag.
    pub journaled_none: Counter,
    /// Journaled with `unknown_device`.
    pub journaled_unknown: Counter,
    /// Journaled with `undecryptable`.
    pub journaled_undecryptable: Counter,
    /// Journaled with `bad_payload`.
    pub journaled_bad_payload: Counter,
    /// Journaled with `unauthenticated`.
    pub journaled_unauthenticated: Counter,
    duplicates: [Counter; 2],
    heartbeats: [Counter; 2],
    ack_seconds: [Histogram; 2],
    /// Failed group commits.
    pub journal_errors: Counter,
    /// Frames per group commit.
    pub batch_frames: Histogram,
    /// Group commit latency.
    pub commit_seconds: Histogram,
    /// Open TCP connections.
    pub tcp_open: Gauge,
    /// Accepted TCP connections.
    pub tcp_accepted: Counter,
    /// Dropped UDP datagrams.
    pub udp_dropped: Counter,
    /// Skipped bytes.
    pub garbage_bytes: Counter,
    /// Early dedup evictions.
    pub dedup_evicted: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn tidx(t: Transport) -> usize {
    match t {
        Transport::Tcp => 0,
        Transport::Udp => 1,
        // Internal Signals (supervision) are not frames, and SCAIP (the only user of TLS)
        // has its own metrics: neither reaches these.
        Transport::Internal | Transport::Tls => 0,
    }
}

impl Metrics {
    /// Registers every handle (installing the recorder first if needed).
    pub fn new() -> Metrics {
        prometheus();
        let mut frames = Vec::with_capacity(50);
        for t in TRANSPORTS {
            for p in PROTOS {
                for r in RESULTS {
                    frames.push(metrics::counter!("vakt_frames_total", "transport" => t.as_str(), "protocol" => p, "result" => r));
                }
            }
        }
        let per_t = |name: &'static str| {
            TRANSPORTS.map(|t| metrics::counter!(name, "transport" => t.as_str()))
        };
        Metrics {
            frames,
            journaled_none: metrics::counter!("vakt_signals_journaled_total", "flag" => "none"),
            journaled_unknown: metrics::counter!("vakt_signals_journaled_total", "flag" => "unknown_device"),
            journaled_undecryptable: metrics::counter!("vakt_signals_journaled_total", "flag" => "undecryptable"),
            journaled_bad_payload: metrics::counter!("vakt_signals_journaled_total", "flag" => "bad_payload"),
            journaled_unauthenticated: metrics::counter!("vakt_signals_journaled_total", "flag" => "unauthenticated"),
            duplicates: per_t("vakt_duplicates_total"),
            heartbeats: per_t("vakt_heartbeats_total"),
            ack_seconds: TRANSPORTS
                .map(|t| metrics::histogram!("vakt_frame_ack_seconds", "transport" => t.as_str())),
            journal_errors: metrics::counter!("vakt_journal_errors_total"),
            batch_frames: metrics::histogram!("vakt_journal_batch_frames"),
            commit_seconds: metrics::histogram!("vakt_journal_commit_seconds"),
            tcp_open: metrics::gauge!("vakt_tcp_connections_open"),
            tcp_accepted: metrics::counter!("vakt_tcp_connections_accepted_total"),
            udp_dropped: metrics::counter!("vakt_udp_dropped_total"),
            garbage_bytes: metrics::counter!("vakt_garbage_bytes_total"),
            dedup_evicted: metrics::counter!("vakt_dedup_evicted_total"),
        }
    }

    /// Counts one frame and its result.
    pub fn frame(&self, t: Transport, p: ProtoLabel, r: ResultLabel) {
        self.frames[tidx(t) * 25 + p as usize * 5 + r as usize].increment(1);
    }

    /// Counts a retransmission.
    pub fn duplicate(&self, t: Transport) {
        self.duplicates[tidx(t)].increment(1);
    }

    /// Counts a heartbeat.
    pub fn heartbeat(&self, t: Transport) {
        self.heartbeats[tidx(t)].increment(1);
    }

    /// Counts a frame answered at once (not journaled) and its frame-to-answer latency.
    pub fn answered(
        &self,
        t: Transport,
        p: ProtoLabel,
        r: ResultLabel,
        started: std::time::Instant,
    ) {
        self.frame(t, p, r);
        self.ack_latency(t, started.elapsed().as_secs_f64());
    }

    /// Records frame-to-answer latency.
    pub fn ack_latency(&self, t: Transport, secs: f64) {
        self.ack_seconds[tidx(t)].record(secs);
    }

    /// Counts a NAK by reason (a stable label from the codec or the receiver).
    pub fn nak(&self, reason: &'static str) {
        metrics::counter!("vakt_nak_total", "reason" => reason).increment(1);
    }

    /// Counts a DUH by reason.
    pub fn duh(&self, reason: &'static str) {
        metrics::counter!("vakt_duh_total", "reason" => reason).increment(1);
    }

    /// Counts a frame deliberately left unanswered, by reason.
    pub fn ignored(&self, reason: &'static str) {
        metrics::counter!("vakt_frames_ignored_total", "reason" => reason).increment(1);
    }

    /// Counts a closed TCP connection by reason.
    pub fn tcp_closed(&self, reason: &'static str) {
        metrics::counter!("vakt_tcp_connections_closed_total", "reason" => reason).increment(1);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The counter of connections refused by `listener` for `reason` (both from a fixed set:
/// see `vakt_connections_refused_total`).
pub fn connections_refused(listener: &'static str, reason: &'static str) -> Counter {
    prometheus();
    metrics::counter!("vakt_connections_refused_total", "listener" => listener, "reason" => reason)
}

/// Handles of the supervision metrics (devices watched, silences, restorations).
#[derive(Clone)]
pub struct SupervisionMetrics {
    /// Devices whose heartbeat deadlines are watched.
    pub supervised: Gauge,
    /// Supervised devices silent now.
    pub silent: Gauge,
    /// Devices that missed their deadline.
    pub silences: Counter,
    /// Silent devices heard again.
    pub restorations: Counter,
}

impl std::fmt::Debug for SupervisionMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SupervisionMetrics")
    }
}

impl SupervisionMetrics {
    /// Registers every handle (installing the recorder first if needed).
    pub fn new() -> SupervisionMetrics {
        prometheus();
        SupervisionMetrics {
            supervised: metrics::gauge!("vakt_devices_supervised"),
            silent: metrics::gauge!("vakt_devices_silent"),
            silences: metrics::counter!("vakt_supervision_silences_total"),
            restorations: metrics::counter!("vakt_supervision_restorations_total"),
        }
    }
}

impl Default for SupervisionMetrics {
    fn default() -> Self {
        SupervisionMetrics::new()
    }
}

/// Handles of the telecom-incident metrics.
#[derive(Clone)]
pub struct IncidentMetrics {
    /// Open telecom incidents.
    pub open: Gauge,
}

impl std::fmt::Debug for IncidentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IncidentMetrics")
    }
}

impl IncidentMetrics {
    /// Registers every handle (installing the recorder first if needed).
    pub fn new() -> IncidentMetrics {
        prometheus();
        IncidentMetrics {
            open: metrics::gauge!("vakt_incidents_open"),
        }
    }

    /// Counts an incident declared; `kind` is `telecom_operator` or `area`.
    pub fn declared(&self, kind: &'static str) {
        metrics::counter!("vakt_incidents_total", "kind" => kind).increment(1);
    }
}

impl Default for IncidentMetrics {
    fn default() -> Self {
        IncidentMetrics::new()
    }
}

/// Handles of the escalation outbox's metrics.
#[derive(Clone)]
pub struct OutboxMetrics {
    /// Notifications not yet acknowledged by their endpoint.
    pub pending: Gauge,
    /// Endpoints whose oldest pending notification has failed at least once.
    pub failing_endpoints: Gauge,
}

impl std::fmt::Debug for OutboxMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutboxMetrics")
    }
}

impl OutboxMetrics {
    /// Registers every handle (installing the recorder first if needed).
    pub fn new() -> OutboxMetrics {
        prometheus();
        OutboxMetrics {
            pending: metrics::gauge!("vakt_outbox_pending"),
            failing_endpoints: metrics::gauge!("vakt_outbox_failing_endpoints"),
        }
    }

    /// Counts a delivery attempt to `endpoint` (a configured endpoint's name: bounded by the
    /// configuration) with its `result`.
    pub fn attempt(&self, endpoint: &str, result: &'static str) {
        metrics::counter!("vakt_outbox_attempts_total", "endpoint" => endpoint.to_owned(), "result" => result)
            .increment(1);
    }

    /// Counts `n` notifications enqueued, by their event name (a fixed set).
    pub fn enqueued(&self, event: &str, n: u64) {
        metrics::counter!("vakt_outbox_enqueued_total", "event" => event.to_owned()).increment(n);
    }

    /// Counts a notification no endpoint is configured for, by recipient kind.
    pub fn unrouted(&self, kind: &'static str) {
        metrics::counter!("vakt_outbox_unrouted_total", "kind" => kind).increment(1);
    }
}

impl Default for OutboxMetrics {
    fn default() -> Self {
        OutboxMetrics::new()
    }
}

/// Handles of the work-order metrics.
#[derive(Clone)]
pub struct WorkOrderMetrics {
    /// Work orders new or started.
    pub open: Gauge,
    /// Open work orders that are late.
    pub overdue: Gauge,
}

impl std::fmt::Debug for WorkOrderMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkOrderMetrics")
    }
}

impl WorkOrderMetrics {
    /// Registers every handle (installing the recorder first if needed).
    pub fn new() -> WorkOrderMetrics {
        prometheus();
        WorkOrderMetrics {
            open: metrics::gauge!("vakt_work_orders_open"),
            overdue: metrics::gauge!("vakt_work_orders_overdue"),
        }
    }

    /// Counts a work order created, by its fault kind's stable name.
    pub fn created(&self, fault: &'static str) {
        metrics::counter!("vakt_work_orders_total", "fault" => fault).increment(1);
    }
}

/// Handles of the subscribers' order metrics.
#[derive(Clone)]
pub struct OrderMetrics {
    in_time: Gauge,
    overdue: Gauge,
    return_due: Gauge,
}

impl std::fmt::Debug for OrderMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OrderMetrics")
    }
}

impl OrderMetrics {
    /// Registers every handle (installing the recorder first if needed).
    pub fn new() -> OrderMetrics {
        prometheus();
        OrderMetrics {
            in_time: metrics::gauge!("vakt_orders_open", "lateness" => "in_time"),
            overdue: metrics::gauge!("vakt_orders_open", "lateness" => "overdue"),
            return_due: metrics::gauge!("vakt_orders_open", "lateness" => "return_due"),
        }
    }

    /// Sets the open orders: in time, overdue, and due to go back to the case officer.
    pub fn set_open(&self, in_time: usize, overdue: usize, return_due: usize) {
        self.in_time.set(in_time as f64);
        self.overdue.set(overdue as f64);
        self.return_due.set(return_due as f64);
    }
}

impl Default for OrderMetrics {
    fn default() -> Self {
        OrderMetrics::new()
    }
}

impl Default for WorkOrderMetrics {
    fn default() -> Self {
        WorkOrderMetrics::new()
    }
}

/// The gauge of patrols with a connected session.
pub fn patrol_sessions_open() -> Gauge {
    prometheus();
    metrics::gauge!("vakt_patrol_sessions_open")
}

/// The counter of accept errors of `listener` (one of the names in
/// `vakt_tcp_accept_errors_total`).
pub fn accept_errors(listener: &'static str) -> Counter {
    prometheus();
    metrics::counter!("vakt_tcp_accept_errors_total", "listener" => listener)
}

/// Handles of the dispatch metrics.
#[derive(Clone)]
pub struct DispatchMetrics {
    /// Live dispatches.
    pub live: Gauge,
    arrival_seconds: Histogram,
    receipt_timeouts: Counter,
    breaches: Counter,
    /// Closed Calls brought back to the queue after a failed dispatch.
    pub reopened: Counter,
}

impl std::fmt::Debug for DispatchMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DispatchMetrics")
    }
}

impl DispatchMetrics {
    /// Registers every handle (installing the recorder first if needed).
    pub fn new() -> DispatchMetrics {
        prometheus();
        DispatchMetrics {
            live: metrics::gauge!("vakt_dispatches_live"),
            arrival_seconds: metrics::histogram!("vakt_dispatch_arrival_seconds"),
            receipt_timeouts: metrics::counter!("vakt_dispatch_receipt_timeouts_total"),
            breaches: metrics::counter!("vakt_dispatch_breaches_total"),
            reopened: metrics::counter!("vakt_calls_reopened_total"),
        }
    }

    /// Counts a dispatch offered; `how` is `operator` or `fallback`.
    pub fn offered(&self, how: &'static str) {
        metrics::counter!("vakt_dispatches_total", "how" => how).increment(1);
    }

    /// Counts a step (a bounded set of names).
    pub fn step(&self, step: crate::model::DispatchStep) {
        use crate::model::DispatchStep;
        metrics::counter!("vakt_dispatch_steps_total", "step" => step.as_str()).increment(1);
        match step {
            DispatchStep::ReceiptTimeout => self.receipt_timeouts.increment(1),
            DispatchStep::Breached => self.breaches.increment(1),
            _ => {}
        }
    }

    /// Counts an arrival and its time from receipt.
    pub fn arrived(
        &self,
        method: crate::model::ArrivalMethod,
        after: Option<jiff::SignedDuration>,
    ) {
        metrics::counter!("vakt_dispatch_arrivals_total", "method" => method.as_str()).increment(1);
        if let Some(d) = after {
            self.arrival_seconds.record(d.as_secs_f64().max(0.0));
        }
    }

    /// Counts a lock event; `result` is `arrived` or `ignored`.
    pub fn lock_event(&self, result: &'static str) {
        metrics::counter!("vakt_lock_events_total", "result" => result).increment(1);
    }
}

impl Default for DispatchMetrics {
    fn default() -> Self {
        DispatchMetrics::new()
    }
}

/// Label values of `vakt_scaip_messages_total{result}`: what a SCAIP request was answered.
pub const SCAIP_RESULTS: [&str; 11] = [
    "ok",
    "hold",
    "voice",
    "busy",
    "duplicate",
    "too_long",
    "invalid_format",
    "wrong_data",
    "mandatory_missing",
    "ref_missing",
    "heartbeat",
];

fn describe_scaip() {
    describe_counter!(
        "vakt_scaip_messages_total",
        Unit::Count,
        "SCAIP requests (<mrq>) answered, by transport (udp, tcp, tls) and result (ok, hold, voice, busy, duplicate, too_long, invalid_format, wrong_data, mandatory_missing, ref_missing, heartbeat)"
    );
    describe_counter!(
        "vakt_scaip_sip_requests_total",
        Unit::Count,
        "SIP requests received on the SCAIP endpoint and answered at once, by method (message, options, register, invite, cancel, bye, info, update, other) and answer class (2xx, 401, 4xx, 5xx, dialog: handed to a call's dialog, which answers it)"
    );
    describe_counter!(
        "vakt_scaip_auth_failures_total",
        Unit::Count,
        "SIP Digest authentications refused, by reason (unknown_user, bad_response, stale, basic, malformed, realm, bad_nonce, uri, replay)"
    );
    describe_gauge!(
        "vakt_scaip_holds_outstanding",
        Unit::Count,
        "SCAIP alarms being held (answered snu 4 and still polling) while they wait for an operator"
    );
    describe_counter!(
        "vakt_scaip_busy_total",
        Unit::Count,
        "SCAIP requests answered snu 6 (busy), by reason (journal_full, holds_full, journal_failed)"
    );
    describe_counter!(
        "vakt_scaip_rate_limited_total",
        Unit::Count,
        "SIP requests refused with 503 because their source exceeded its rate"
    );
    describe_counter!(
        "vakt_scaip_answers_total",
        Unit::Count,
        "<mrs> MESSAGEs vakt sent to devices, by outcome (delivered: a 2xx came back; rejected: another final response; timeout: none within 32 s; send_failed)"
    );
    describe_counter!(
        "vakt_scaip_answer_rejections_total",
        Unit::Count,
        "<mrs> MESSAGEs a device answered with a final status other than 2xx (it did not get its SCAIP answer), by status (481, 3xx, 4xx, 5xx, 6xx)"
    );
    describe_gauge!(
        "vakt_scaip_connections_open",
        Unit::Count,
        "Open SIP TCP and TLS connections"
    );
    describe_histogram!(
        "vakt_scaip_answer_seconds",
        Unit::Seconds,
        "From a SCAIP request's arrival to its <mrs> being sent (journal flush included)"
    );
}

/// SCAIP metric handles (the endpoint and its alarm sessions).
#[derive(Clone)]
pub struct ScaipMetrics {
    /// Alarms held now.
    pub holds: Gauge,
    /// Open TCP/TLS connections.
    pub connections: Gauge,
    /// Requests over the rate.
    pub rate_limited: Counter,
    /// Request arrival to mrs sent.
    pub answer_seconds: Histogram,
}

impl std::fmt::Debug for ScaipMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScaipMetrics")
    }
}

impl ScaipMetrics {
    /// Registers the handles.
    pub fn new() -> ScaipMetrics {
        prometheus();
        ScaipMetrics {
            holds: metrics::gauge!("vakt_scaip_holds_outstanding"),
            connections: metrics::gauge!("vakt_scaip_connections_open"),
            rate_limited: metrics::counter!("vakt_scaip_rate_limited_total"),
            answer_seconds: metrics::histogram!("vakt_scaip_answer_seconds"),
        }
    }

    /// Counts an answered `<mrq>`; `result` is one of [`SCAIP_RESULTS`].
    pub fn message(&self, transport: Transport, result: &'static str) {
        debug_assert!(SCAIP_RESULTS.contains(&result));
        metrics::counter!("vakt_scaip_messages_total", "transport" => transport.as_str(), "result" => result)
            .increment(1);
    }

    /// Counts a SIP request by method (`message`, `options`, `register`, `other`) and the
    /// class of its answer (`2xx`, `401`, `4xx`, `5xx`).
    pub fn sip_request(&self, method: &'static str, answer: &'static str) {
        metrics::counter!("vakt_scaip_sip_requests_total", "method" => method, "answer" => answer)
            .increment(1);
    }

    /// Counts a refused authentication.
    pub fn auth_failure(&self, reason: &'static str) {
        metrics::counter!("vakt_scaip_auth_failures_total", "reason" => reason).increment(1);
    }

    /// Counts a `snu 6` answer.
    pub fn busy(&self, reason: &'static str) {
        metrics::counter!("vakt_scaip_busy_total", "reason" => reason).increment(1);
    }

    /// Counts the outcome of an `<mrs>` MESSAGE.
    pub fn answer(&self, outcome: &'static str) {
        metrics::counter!("vakt_scaip_answers_total", "outcome" => outcome).increment(1);
    }

    /// Counts an `<mrs>` MESSAGE refused with final status `code` (not 2xx).
    pub fn answer_rejected(&self, code: u16) {
        let status = match code {
            481 => "481",
            300..=399 => "3xx",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => "6xx",
        };
        metrics::counter!("vakt_scaip_answer_rejections_total", "status" => status).increment(1);
    }
}

impl Default for ScaipMetrics {
    fn default() -> Self {
        ScaipMetrics::new()
    }
}

// ---- voice: the switchboard's conversations ----

fn describe_voice_calls() {
    describe_gauge!(
        "vakt_voice_calls",
        Unit::Count,
        "Voice conversations going on now, by state (ringing: nobody has answered yet; answered: an operator is on the line)"
    );
    describe_counter!(
        "vakt_voice_calls_answered_total",
        Unit::Count,
        "Voice conversations answered, by direction (inbound: an operator answered; outbound: the far end answered)"
    );
    describe_counter!(
        "vakt_voice_calls_ended_total",
        Unit::Count,
        "Voice conversations ended, by direction and by who ended them (caller, operator, no_answer, busy, declined, timeout, failure, restart)"
    );
    describe_counter!(
        "vakt_voice_calls_abandoned_total",
        Unit::Count,
        "Inbound voice calls the caller gave up before an operator answered (left on the Call for a call back)"
    );
    describe_histogram!(
        "vakt_voice_ring_seconds",
        Unit::Seconds,
        "Time from the first ring to the answer of answered voice conversations, by direction"
    );
}

/// Handles of the switchboard's metrics (the conversations, not their media).
#[derive(Clone)]
pub struct VoiceCallMetrics {
    ringing: Gauge,
    answered: Gauge,
}

impl std::fmt::Debug for VoiceCallMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VoiceCallMetrics")
    }
}

impl VoiceCallMetrics {
    /// Registers the handles (installing the recorder first if needed).
    pub fn new() -> VoiceCallMetrics {
        prometheus();
        VoiceCallMetrics {
            ringing: metrics::gauge!("vakt_voice_calls", "state" => "ringing"),
            answered: metrics::gauge!("vakt_voice_calls", "state" => "answered"),
        }
    }

    /// The conversations going on now: `ringing` and `answered`.
    pub fn going_on(&self, ringing: usize, answered: usize) {
        self.ringing.set(ringing as f64);
        self.answered.set(answered as f64);
    }

    /// A conversation in `direction` (`inbound`, `outbound`) was answered after ringing
    /// `ring_secs`.
    pub fn answered(&self, direction: &'static str, ring_secs: f64) {
        metrics::counter!("vakt_voice_calls_answered_total", "direction" => direction).increment(1);
        metrics::histogram!("vakt_voice_ring_seconds", "direction" => direction).record(ring_secs);
    }

    /// A conversation in `direction` ended `by` (a [`crate::model::ConversationEnd`]'s
    /// name); `abandoned` when an inbound caller gave up before an answer.
    pub fn ended(&self, direction: &'static str, by: &'static str, abandoned: bool) {
        metrics::counter!("vakt_voice_calls_ended_total", "direction" => direction, "by" => by)
            .increment(1);
        if abandoned {
            metrics::counter!("vakt_voice_calls_abandoned_total").increment(1);
        }
    }
}

impl Default for VoiceCallMetrics {
    fn default() -> Self {
        Self::new()
    }
}

// ---- voice: recordings ----

/// Label values of `vakt_recording_failures_total{reason}`.
pub const RECORDING_FAILURES: [&str; 7] = [
    "create",
    "write",
    "sync",
    "queue_full",
    "too_long",
    "finish",
    "delete",
];

fn describe_recording() {
    describe_counter!(
        "vakt_recording_bytes_total",
        Unit::Bytes,
        "Audio bytes written to conversations' recordings (WAV samples, both channels)"
    );
    describe_counter!(
        "vakt_recording_failures_total",
        Unit::Count,
        "Recording failures, by reason (create: no file; write, sync: a write or fdatasync failed, the audio reads as silence; queue_full: a frame dropped, the writer behind; too_long: past the WAV size limit; finish: the last sync or the rename failed, repaired at the next start; delete: retention could not delete a file); the call goes on"
    );
    describe_counter!(
        "vakt_recordings_deleted_total",
        Unit::Count,
        "Recordings deleted by retention (each one audit-logged)"
    );
    describe_gauge!(
        "vakt_recordings_active",
        Unit::Count,
        "Recordings being written now"
    );
}

/// Handles of the recordings' metrics.
#[derive(Clone)]
pub struct RecordingMetrics {
    /// Audio bytes written.
    pub bytes: Counter,
    /// Recordings deleted by retention.
    pub deleted: Counter,
    /// Recordings being written.
    pub active: Gauge,
}

impl std::fmt::Debug for RecordingMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordingMetrics")
    }
}

impl RecordingMetrics {
    /// Registers the handles (installing the recorder first if needed).
    pub fn new() -> RecordingMetrics {
        prometheus();
        RecordingMetrics {
            bytes: metrics::counter!("vakt_recording_bytes_total"),
            deleted: metrics::counter!("vakt_recordings_deleted_total"),
            active: metrics::gauge!("vakt_recordings_active"),
        }
    }

    /// Counts a failure; `reason` is one of [`RECORDING_FAILURES`].
    pub fn failure(&self, reason: &'static str) {
        debug_assert!(RECORDING_FAILURES.contains(&reason));
        metrics::counter!("vakt_recording_failures_total", "reason" => reason).increment(1);
    }
}

impl Default for RecordingMetrics {
    fn default() -> Self {
        RecordingMetrics::new()
    }
}

// ---- retention of subscribers' data (retention) ----

fn describe_retention() {
    describe_counter!(
        "vakt_retention_subscribers_total",
        Unit::Count,
        "Subscribers whose card retention deleted and whose alarm life, orders, receipts and Calls it anonymised after the configured time after the end (each audit-logged)"
    );
    describe_counter!(
        "vakt_retention_calls_total",
        Unit::Count,
        "Calls anonymised by retention (the person's words out, a pseudonym for the subscriber)"
    );
    describe_counter!(
        "vakt_retention_closed_calls_deleted_total",
        Unit::Count,
        "Closed Calls deleted whole (timeline, dispatches, review, recordings) after [retention] closed_call_days, archived first if configured (each audit-logged)"
    );
    describe_gauge!(
        "vakt_retention_held",
        Unit::Count,
        "Subscribers due for retention but held by an order, a Call, a dispatch, keys, a receipt, a review or a conversation still open, at the last sweep"
    );
    describe_counter!(
        "vakt_retention_failures_total",
        Unit::Count,
        "Retention sweeps, one subscriber's retention, or a sweep of closed Calls by age, that failed (tried again at the next sweep)"
    );
}

/// Handles of the retention of subscribers' data after the end.
#[derive(Clone)]
pub struct RetentionMetrics {
    /// Subscribers whose card was deleted and records anonymised.
    pub subscribers: Counter,
    /// Calls anonymised.
    pub calls: Counter,
    /// Closed Calls deleted after their retention by age.
    pub closed_calls: Counter,
    /// Subscribers due but held by something still open, at the last sweep.
    pub held: Gauge,
    /// Sweeps that failed.
    pub failures: Counter,
}

impl std::fmt::Debug for RetentionMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetentionMetrics")
    }
}

impl RetentionMetrics {
    /// Registers the handles (installing the recorder first if needed).
    pub fn new() -> RetentionMetrics {
        prometheus();
        RetentionMetrics {
            subscribers: metrics::counter!("vakt_retention_subscribers_total"),
            calls: metrics::counter!("vakt_retention_calls_total"),
            closed_calls: metrics::counter!("vakt_retention_closed_calls_deleted_total"),
            held: metrics::gauge!("vakt_retention_held"),
            failures: metrics::counter!("vakt_retention_failures_total"),
        }
    }
}

impl Default for RetentionMetrics {
    fn default() -> Self {
        RetentionMetrics::new()
    }
}

// ---- WebRTC: the operators' legs in the browser (voice::webrtc) ----

/// Label values of `vakt_webrtc_offers_total{result}`.
pub const WEBRTC_OFFER_RESULTS: &[&str] = &[
    "answered",
    "no_g711",
    "bad_offer",
    "ports_exhausted",
    "failed",
];

/// Label values of `vakt_webrtc_legs_ended_total{reason}`.
pub const WEBRTC_END_REASONS: &[&str] = &[
    "closed",
    "connect_timeout",
    "idle",
    "ice_disconnected",
    "failed",
    "ended",
    "internal",
];

fn describe_webrtc() {
    describe_counter!(
        "vakt_webrtc_offers_total",
        Unit::Count,
        "Browsers' SDP offers for an operator's leg, by result (answered, no_g711, bad_offer, ports_exhausted, failed)"
    );
    describe_gauge!(
        "vakt_webrtc_legs_open",
        Unit::Count,
        "Operators' browser legs running now (each holds a UDP port of the range)"
    );
    describe_counter!(
        "vakt_webrtc_legs_ended_total",
        Unit::Count,
        "Browser legs ended, by reason (closed, connect_timeout, idle, ice_disconnected, failed, ended: by vakt, internal)"
    );
    describe_counter!(
        "vakt_webrtc_packets_total",
        Unit::Count,
        "RTP packets of the browser legs, by direction (in: from the browser, out: to it)"
    );
    describe_counter!(
        "vakt_webrtc_packets_lost_total",
        Unit::Count,
        "RTP packets of the browser legs lost, by direction (in: gaps in the browser's sequence numbers, out: as the browser's receiver reports say)"
    );
    describe_histogram!(
        "vakt_webrtc_jitter_seconds",
        Unit::Seconds,
        "Interarrival jitter of the browser legs (RFC 3550), sampled each second, by direction (in: measured by vakt, out: reported by the browser)"
    );
    describe_counter!(
        "vakt_webrtc_frames_dropped_total",
        Unit::Count,
        "Audio frames of the browser legs dropped, by direction (in: the voice core was behind, out: the browser not connected yet or the leg behind)"
    );
    describe_counter!(
        "vakt_webrtc_datagrams_dropped_total",
        Unit::Count,
        "Datagrams on the browser legs' ports dropped unread by str0m, by reason (garbage: not STUN, DTLS, RTP or RTCP; foreign: not from the negotiated browser)"
    );
}

/// Handles of the WebRTC legs' metrics.
#[derive(Clone)]
pub struct WebRtcMetrics {
    open: Gauge,
    packets_in: Counter,
    packets_out: Counter,
    lost_in: Counter,
    lost_out: Counter,
    jitter_in: Histogram,
    jitter_out: Histogram,
    dropped_in: Counter,
    dropped_out: Counter,
    garbage: Counter,
    foreign: Counter,
}

impl std::fmt::Debug for WebRtcMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebRtcMetrics")
    }
}

impl WebRtcMetrics {
    /// Registers the handles.
    pub fn new() -> WebRtcMetrics {
        prometheus();
        let packets =
            |d: &'static str| metrics::counter!("vakt_webrtc_packets_total", "direction" => d);
        let lost =
            |d: &'static str| metrics::counter!("vakt_webrtc_packets_lost_total", "direction" => d);
        let jitter =
            |d: &'static str| metrics::histogram!("vakt_webrtc_jitter_seconds", "direction" => d);
        let dropped = |d: &'static str| metrics::counter!("vakt_webrtc_frames_dropped_total", "direction" => d);
        let datagrams = |r: &'static str| metrics::counter!("vakt_webrtc_datagrams_dropped_total", "reason" => r);
        WebRtcMetrics {
            open: metrics::gauge!("vakt_webrtc_legs_open"),
            packets_in: packets("in"),
            packets_out: packets("out"),
            lost_in: lost("in"),
            lost_out: lost("out"),
            jitter_in: jitter("in"),
            jitter_out: jitter("out"),
            dropped_in: dropped("in"),
            dropped_out: dropped("out"),
            garbage: datagrams("garbage"),
            foreign: datagrams("foreign"),
        }
    }

    /// Counts an offer; `result` is one of [`WEBRTC_OFFER_RESULTS`].
    pub fn offer(&self, result: &'static str) {
        debug_assert!(WEBRTC_OFFER_RESULTS.contains(&result));
        metrics::counter!("vakt_webrtc_offers_total", "result" => result).increment(1);
    }

    /// A leg's task started.
    pub fn leg_started(&self) {
        self.open.increment(1.0);
    }

    /// A leg ended; `reason` is one of [`WEBRTC_END_REASONS`].
    pub fn leg_ended(&self, reason: &'static str) {
        debug_assert!(WEBRTC_END_REASONS.contains(&reason));
        self.open.decrement(1.0);
        metrics::counter!("vakt_webrtc_legs_ended_total", "reason" => reason).increment(1);
    }

    /// Counts RTP packets from a browser.
    pub fn packets_in(&self, n: u64) {
        self.packets_in.increment(n);
    }

    /// Counts an RTP packet to a browser.
    pub fn packet_out(&self) {
        self.packets_out.increment(1);
    }

    /// Counts packets from a browser found missing.
    pub fn lost_in(&self, n: u64) {
        if n > 0 {
            self.lost_in.increment(n);
        }
    }

    /// Counts packets a browser reported lost since its last report.
    pub fn lost_out(&self, n: u64) {
        if n > 0 {
            self.lost_out.increment(n);
        }
    }

    /// Records the jitter of a browser's packets.
    pub fn jitter_in(&self, jitter: std::time::Duration) {
        self.jitter_in.record(jitter.as_secs_f64());
    }

    /// Records the jitter a browser reports for vakt's packets.
    pub fn jitter_out(&self, jitter: std::time::Duration) {
        self.jitter_out.record(jitter.as_secs_f64());
    }

    /// Counts a frame from a browser dropped (the voice core behind).
    pub fn frame_dropped_in(&self) {
        self.dropped_in.increment(1);
    }

    /// Counts a frame for a browser dropped.
    pub fn frame_dropped_out(&self) {
        self.dropped_out.increment(1);
    }

    /// Counts a datagram dropped before str0m; `reason` is `garbage` or `foreign`.
    pub fn datagram_dropped(&self, reason: &'static str) {
        match reason {
            "garbage" => self.garbage.increment(1),
            _ => self.foreign.increment(1),
        }
    }
}

impl Default for WebRtcMetrics {
    fn default() -> Self {
        WebRtcMetrics::new()
    }
}

// ---- RTP: the SIP legs' media and the relay (voice::media) ----

/// Label values of `vakt_rtp_packets_dropped_total{reason}`.
pub const RTP_DROP_REASONS: &[&str] = &[
    "malformed",
    "rtcp",
    "stranger",
    "payload_type",
    "send_failed",
];

/// Label values of `vakt_rtp_legs_ended_total{reason}`.
pub const RTP_END_REASONS: &[&str] = &["ended", "inactive", "operator_ended", "socket"];

fn describe_media() {
    describe_gauge!(
        "vakt_rtp_legs_open",
        Unit::Count,
        "SIP legs' RTP ports in use (each an even port for RTP and the next for RTCP)"
    );
    describe_counter!(
        "vakt_rtp_legs_ended_total",
        Unit::Count,
        "Relays of SIP legs ended, by reason (ended: by vakt, the call hung up; inactive: no RTP from the unit; operator_ended: the operator's side went; socket)"
    );
    describe_counter!(
        "vakt_rtp_packets_total",
        Unit::Count,
        "RTP packets of the SIP legs, by direction (in: the units' audio taken; out: vakt's stream to them, events included)"
    );
    describe_counter!(
        "vakt_rtp_packets_dropped_total",
        Unit::Count,
        "Datagrams on the SIP legs' RTP ports dropped, by reason (malformed: not RTP; rtcp: RTCP on the RTP port, ignored; stranger: not the latched source; payload_type: not negotiated), and packets to the units not sent (send_failed)"
    );
    describe_counter!(
        "vakt_rtp_packets_lost_total",
        Unit::Count,
        "RTP packets from the units lost (RFC 3550 A.3)"
    );
    describe_histogram!(
        "vakt_rtp_jitter_seconds",
        Unit::Seconds,
        "Interarrival jitter of the units' RTP (RFC 3550 A.8), sampled each second per leg"
    );
    describe_counter!(
        "vakt_rtp_relatches_total",
        Unit::Count,
        "Times a SIP leg's RTP latched on a new source after the old one fell silent (a unit's NAT rebinding)"
    );
    describe_counter!(
        "vakt_rtp_dtmf_events_total",
        Unit::Count,
        "DTMF tones sent to units as RFC 4733 events"
    );
    describe_counter!(
        "vakt_relay_frames_dropped_total",
        Unit::Count,
        "The persons' audio frames the operator's side refused (behind, or too long for it)"
    );
}

/// Handles of the SIP legs' RTP and relay metrics.
#[derive(Clone)]
pub struct MediaMetrics {
    open: Gauge,
    packets_in: Counter,
    packets_out: Counter,
    lost: Counter,
    jitter: Histogram,
    relatches: Counter,
    dtmf: Counter,
    frames_dropped: Counter,
}

impl std::fmt::Debug for MediaMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MediaMetrics")
    }
}

impl MediaMetrics {
    /// Registers the handles.
    pub fn new() -> MediaMetrics {
        prometheus();
        let packets =
            |d: &'static str| metrics::counter!("vakt_rtp_packets_total", "direction" => d);
        MediaMetrics {
            open: metrics::gauge!("vakt_rtp_legs_open"),
            packets_in: packets("in"),
            packets_out: packets("out"),
            lost: metrics::counter!("vakt_rtp_packets_lost_total"),
            jitter: metrics::histogram!("vakt_rtp_jitter_seconds"),
            relatches: metrics::counter!("vakt_rtp_relatches_total"),
            dtmf: metrics::counter!("vakt_rtp_dtmf_events_total"),
            frames_dropped: metrics::counter!("vakt_relay_frames_dropped_total"),
        }
    }

    /// A leg took its ports.
    pub fn leg_started(&self) {
        self.open.increment(1.0);
    }

    /// A leg gave its ports back.
    pub fn leg_closed(&self) {
        self.open.decrement(1.0);
    }

    /// A relay ended; `reason` is one of [`RTP_END_REASONS`].
    pub fn relay_ended(&self, reason: &'static str) {
        debug_assert!(RTP_END_REASONS.contains(&reason));
        metrics::counter!("vakt_rtp_legs_ended_total", "reason" => reason).increment(1);
    }

    /// Counts packets taken from units and sent to them.
    pub fn packets(&self, r#in: u64, out: u64) {
        if r#in > 0 {
            self.packets_in.increment(r#in);
        }
        if out > 0 {
            self.packets_out.increment(out);
        }
    }

    /// Counts `n` datagrams dropped; `reason` is one of [`RTP_DROP_REASONS`].
    pub fn dropped(&self, reason: &'static str, n: u64) {
        debug_assert!(RTP_DROP_REASONS.contains(&reason));
        if n > 0 {
            metrics::counter!("vakt_rtp_packets_dropped_total", "reason" => reason).increment(n);
        }
    }

    /// Counts packets from units found lost.
    pub fn lost(&self, n: u64) {
        if n > 0 {
            self.lost.increment(n);
        }
    }

    /// Records a unit's jitter.
    pub fn jitter(&self, jitter: std::time::Duration) {
        self.jitter.record(jitter.as_secs_f64());
    }

    /// Counts legs latched on a new source.
    pub fn relatched(&self, n: u64) {
        if n > 0 {
            self.relatches.increment(n);
        }
    }

    /// Counts a DTMF tone sent.
    pub fn dtmf_sent(&self) {
        self.dtmf.increment(1);
    }

    /// Counts frames the operator's side refused.
    pub fn frames_dropped(&self, n: u64) {
        if n > 0 {
            self.frames_dropped.increment(n);
        }
    }
}

impl Default for MediaMetrics {
    fn default() -> Self {
        MediaMetrics::new()
    }
}

fn describe_sip_calls() {
    describe_gauge!(
        "vakt_sip_dialogs_open",
        Unit::Count,
        "SIP INVITE dialogs on the endpoint (ringing, answered, or finishing their transactions), by direction (in, out)"
    );
    describe_counter!(
        "vakt_sip_requests_refused_total",
        Unit::Count,
        "SIP call requests refused before any dialog, by reason (unauthenticated: 401; forbidden: 403; bad_request: 400; media_type: 415; extension: 420; interval: 422; full: 503 at max_dialogs; no_dialog: 481)"
    );
    describe_counter!(
        "vakt_sip_calls_ended_total",
        Unit::Count,
        "SIP calls ended, by direction (in, out) and reason (cancelled, rejected, failed, hung_up, remote_hang_up, no_ack, session_expired, unreachable, ring_timeout, max_duration, shutdown)"
    );
}

/// Metric handles of the SIP endpoint's calls (INVITE dialogs).
#[derive(Clone)]
pub struct SipCallMetrics {
    dialogs_in: Gauge,
    dialogs_out: Gauge,
}

impl std::fmt::Debug for SipCallMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SipCallMetrics")
    }
}

impl SipCallMetrics {
    /// Registers the handles.
    pub fn new() -> SipCallMetrics {
        prometheus();
        SipCallMetrics {
            dialogs_in: metrics::gauge!("vakt_sip_dialogs_open", "direction" => "in"),
            dialogs_out: metrics::gauge!("vakt_sip_dialogs_open", "direction" => "out"),
        }
    }

    /// A dialog opened (`delta` 1) or closed (-1); `direction` is `in` or `out`.
    pub fn open(&self, direction: &'static str, delta: f64) {
        match direction {
            "in" => self.dialogs_in.increment(delta),
            _ => self.dialogs_out.increment(delta),
        }
    }

    /// Counts a call request refused before any dialog (`reason` as described).
    pub fn refused(&self, reason: &'static str) {
        metrics::counter!("vakt_sip_requests_refused_total", "reason" => reason).increment(1);
    }

    /// Counts an ended call (`reason`: `End::as_str`).
    pub fn ended(&self, direction: &'static str, reason: &'static str) {
        metrics::counter!("vakt_sip_calls_ended_total", "direction" => direction, "reason" => reason)
            .increment(1);
    }
}

impl Default for SipCallMetrics {
    fn default() -> Self {
        SipCallMetrics::new()
    }
}

fn describe_cluster() {
    describe_gauge!(
        "vakt_lease_held",
        Unit::Count,
        "1 while this node holds the leader lease (leads), 0 on a standby or after the lease was lost"
    );
    describe_gauge!(
        "vakt_lease_epoch",
        Unit::Count,
        "The leader lease's fencing epoch: the one this node holds, or on a standby the latest it read"
    );
    describe_counter!(
        "vakt_lease_renewals_failed_total",
        Unit::Count,
        "Renewals of the leader lease that failed or did not answer in time (the lease is lost when they fail until it runs out)"
    );
    describe_counter!(
        "vakt_takeovers_total",
        Unit::Count,
        "Times this node took the leader lease"
    );
    describe_histogram!(
        "vakt_takeover_seconds",
        Unit::Seconds,
        "From the leader lease taken to the server ready (listeners bound, open state loaded)"
    );
    describe_gauge!(
        "vakt_db_synchronous_standbys",
        Unit::Count,
        "Standbys the database's primary waits for (pg_stat_replication sync_state sync or quorum), as the leader last read them"
    );
    describe_gauge!(
        "vakt_db_durability_degraded",
        Unit::Count,
        "1 while a commit is not known to reach a synchronous standby (none connected, synchronous_commit below on or remote_write, or the check failed), 0 while it does"
    );
}

/// Handles of the cluster's metrics: the leader lease, take-overs and the database's
/// durability. Gauges and counters of a process, whichever role it has.
#[derive(Clone)]
pub struct ClusterMetrics {
    /// 1 while this node leads.
    pub lease_held: Gauge,
    /// The lease's epoch held or last read.
    pub lease_epoch: Gauge,
    /// Renewals that failed.
    pub renewals_failed: Counter,
    /// Leases taken by this node.
    pub takeovers: Counter,
    /// Lease taken to server ready.
    pub takeover_seconds: Histogram,
    /// Synchronous standbys seen by the leader.
    pub synchronous_standbys: Gauge,
    /// 1 while commits are not known to be on a synchronous standby.
    pub durability_degraded: Gauge,
}

impl std::fmt::Debug for ClusterMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterMetrics")
    }
}

impl ClusterMetrics {
    /// Registers every handle (installing the recorder first if needed).
    pub fn new() -> ClusterMetrics {
        prometheus();
        ClusterMetrics {
            lease_held: metrics::gauge!("vakt_lease_held"),
            lease_epoch: metrics::gauge!("vakt_lease_epoch"),
            renewals_failed: metrics::counter!("vakt_lease_renewals_failed_total"),
            takeovers: metrics::counter!("vakt_takeovers_total"),
            takeover_seconds: metrics::histogram!("vakt_takeover_seconds"),
            synchronous_standbys: metrics::gauge!("vakt_db_synchronous_standbys"),
            durability_degraded: metrics::gauge!("vakt_db_durability_degraded"),
        }
    }
}

impl Default for ClusterMetrics {
    fn default() -> Self {
        ClusterMetrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sled_is_capped_whatever_rust_log_says() {
        use tracing_subscriber::Layer;
        use tracing_subscriber::layer::SubscriberExt;
        #[derive(Clone, Default)]
        struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        for directives in ["trace", "sled=trace", "info,sled::tree=trace"] {
            let buf = Buf::default();
            let w = buf.clone();
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || w.clone())
                .with_filter(tracing_subscriber::EnvFilter::new(directives))
                .with_filter(log_cap());
            let sub = tracing_subscriber::registry().with(layer);
            tracing::subscriber::with_default(sub, || {
                tracing::trace!(target: "sled::tree", "setting key S-GUNNEL");
                tracing::debug!(target: "sled::pagecache", "a batch");
                tracing::warn!(target: "sled::pagecache", "sled warns");
                tracing::info!(target: "vakt::server", "vakt says");
            });
            let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
            assert!(
                !out.contains("S-GUNNEL") && !out.contains("a batch"),
                "{directives}: {out}"
            );
            assert!(out.contains("sled warns"), "{directives}: {out}");
            assert_eq!(
                out.contains("vakt says"),
                directives != "sled=trace",
                "{directives}: {out}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn upkeep_runs_on_its_own_short_timer() {
        // Whatever `journal.last_heard_persist_secs` says (up to an hour), histogram samples
        // are folded every few seconds.
        assert!(UPKEEP_EVERY <= std::time::Duration::from_secs(5));
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(upkeep(UPKEEP_EVERY, stop.clone()));
        tokio::time::sleep(UPKEEP_EVERY * 6 + std::time::Duration::from_secs(1)).await;
        stop.cancel();
        assert_eq!(task.await.unwrap(), 6);
    }
}
