//! The open-file budget: the connection caps (and the voice calls) of a configuration checked against the
//! process's open-file limit (`RLIMIT_NOFILE`) at start, and lowered with a warning when they
//! cannot all be met (one host's connections must never take the files the store, the
//! console or another listener needs).

use super::Config;

/// Files kept for everything but the stream listeners' connections: the store (sled's
/// files), the UDP and QUIC sockets, the listeners, the outbox's connections, standard
/// streams, the runtime's own.
pub const RESERVED_FILES: u64 = 256;

/// Files a voice call may hold (`voice.max_calls` of them): the unit's RTP and RTCP sockets,
/// the browser's WebRTC socket and the recording's file.
pub const FILES_PER_CALL: u64 = 4;

/// Fewer files than this per stream listener, and vakt refuses to start.
pub const MIN_FILES_PER_LISTENER: u64 = 64;

/// The process's open-file limit cannot carry even the smallest configuration.
#[derive(Debug, thiserror::Error)]
#[error(
    "the open-file limit is {limit}, too low for vakt's {listeners} connection listeners: raise \
     it to at least {need} (`ulimit -n`, or LimitNOFILE= in the systemd unit)"
)]
pub struct TooFewFiles {
    /// The limit (`RLIMIT_NOFILE`, soft).
    pub limit: u64,
    /// Stream listeners configured.
    pub listeners: u64,
    /// The least limit that would do.
    pub need: u64,
}

/// The soft open-file limit of this process (`RLIMIT_NOFILE`); `None` when unlimited or
/// unknown.
pub fn open_files_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Lowers the connection caps of `cfg` so that every stream listener's connections, and
/// [`RESERVED_FILES`] more, fit in `limit` open files, and with them the voice calls'
/// ([`FILES_PER_CALL`] each). HTTP keeps its cap, up to a quarter of what is left after the
/// reserve, and so do the voice calls; DC-09 TCP and SCAIP (TCP and TLS, each with
/// `scaip.max_connections`) share the rest in proportion to their caps. A per-source cap
/// above its listener's cap is lowered to it. Returns one line per value changed (for a
/// warning); refuses a limit that leaves fewer than [`MIN_FILES_PER_LISTENER`] a listener.
pub fn fit_open_files(cfg: &mut Config, limit: u64) -> Result<Vec<String>, TooFewFiles> {
    let mut changed = Vec::new();
    let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let http_on = cfg.http.listen.is_some();
    let dc09_on = cfg.dc09.listen_tcp.is_some();
    let scaip_n =
        u64::from(cfg.scaip.listen_tcp.is_some()) + u64::from(cfg.scaip.listen_tls.is_some());
    let listeners = u64::from(http_on) + u64::from(dc09_on) + scaip_n;
    let budget = limit.saturating_sub(RESERVED_FILES);
    let http = if http_on {
        as_u64(cfg.http.max_connections)
    } else {
        0
    };
    let dc09 = if dc09_on {
        as_u64(cfg.dc09.max_connections)
    } else {
        0
    };
    let scaip = as_u64(cfg.scaip.max_connections).saturating_mul(scaip_n);
    let voice = if cfg.voice.enabled {
        as_u64(cfg.voice.max_calls).saturating_mul(FILES_PER_CALL)
    } else {
        0
    };
    let wanted = http.saturating_add(dc09).saturating_add(scaip);
    if wanted.saturating_add(voice) > budget {
        if budget < MIN_FILES_PER_LISTENER * listeners {
            return Err(TooFewFiles {
                limit,
                listeners,
                need: RESERVED_FILES + MIN_FILES_PER_LISTENER * listeners,
            });
        }
        let new_http = http.min(budget / 4);
        let new_calls = (voice.min(budget / 4) / FILES_PER_CALL).max(1);
        let rest = budget - new_http - (new_calls * FILES_PER_CALL).min(budget / 4);
        let devices = dc09 + scaip;
        let (new_dc09, new_scaip) = if devices <= rest {
            (dc09, scaip)
        } else {
            // u128: the caps go up to 10^7 each.
            let share = |n: u64| {
                u64::try_from(u128::from(n) * u128::from(rest) / u128::from(devices))
                    .unwrap_or(u64::MAX)
            };
            (share(dc09), share(scaip))
        };
        let mut lower = |name: &str, field: &mut usize, to: u64| {
            let to = usize::try_from(to.max(1)).unwrap_or(usize::MAX);
            if to < *field {
                changed.push(format!("{name} lowered from {} to {to}", *field));
                *field = to;
            }
        };
        if http_on {
            lower(
                "http.max_connections",
                &mut cfg.http.max_connections,
                new_http,
            );
        }
        if dc09_on {
            lower(
                "dc09.max_connections",
                &mut cfg.dc09.max_connections,
                new_dc09,
            );
        }
        if cfg.voice.enabled {
            lower("voice.max_calls", &mut cfg.voice.max_calls, new_calls);
        }
        // Each SCAIP stream listener (TCP, TLS) has `scaip.max_connections`.
        if let Some(each) = new_scaip.checked_div(scaip_n) {
            lower(
                "scaip.max_connections",
                &mut cfg.scaip.max_connections,
                each,
            );
        }
    }
    let mut clamp = |name: &str, per_source: &mut usize, cap: usize| {
        if *per_source > cap {
            changed.push(format!("{name} lowered from {} to {cap}", *per_source));
            *per_source = cap;
        }
    };
    clamp(
        "dc09.max_connections_per_source",
        &mut cfg.dc09.max_connections_per_source,
        cfg.dc09.max_connections,
    );
    clamp(
        "scaip.max_connections_per_source",
        &mut cfg.scaip.max_connections_per_source,
        cfg.scaip.max_connections,
    );
    clamp(
        "http.max_connections_per_source",
        &mut cfg.http.max_connections_per_source,
        cfg.http.max_connections,
    );
    clamp(
        "patrol.max_sessions_per_source",
        &mut cfg.patrol.max_sessions_per_source,
        cfg.patrol.max_sessions,
    );
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::default()
    }

    #[test]
    fn caps_that_fit_are_kept() {
        let mut c = cfg();
        c.dc09.max_connections = 10_000;
        assert_eq!(
            fit_open_files(&mut c, 1_048_576).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(c.dc09.max_connections, 10_000);
    }

    #[test]
    fn caps_over_the_open_file_limit_are_lowered_with_room_for_http_and_scaip() {
        let mut c = cfg();
        // The defaults: DC-09 100,000, SCAIP TCP 10,000, HTTP 4,096 against 20,000 files.
        let changed = fit_open_files(&mut c, 20_000).unwrap();
        let total = c.dc09.max_connections + c.scaip.max_connections + c.http.max_connections;
        assert!(total as u64 <= 20_000 - RESERVED_FILES, "{total}");
        assert_eq!(c.http.max_connections, 4096, "HTTP keeps its cap");
        assert!(
            c.scaip.max_connections >= 1_000,
            "{}",
            c.scaip.max_connections
        );
        assert!(
            c.dc09.max_connections >= 13_000,
            "{}",
            c.dc09.max_connections
        );
        assert!(
            changed
                .iter()
                .any(|l| l.starts_with("dc09.max_connections lowered from 100000")),
            "{changed:?}"
        );
        assert!(c.dc09.max_connections_per_source <= c.dc09.max_connections);
        // A small limit: HTTP gets at most a quarter, everyone something.
        let mut c = cfg();
        c.scaip.listen_tls = Some("127.0.0.1:5061".parse().unwrap());
        fit_open_files(&mut c, 1024).unwrap();
        let scaip = 2 * c.scaip.max_connections;
        assert!(c.http.max_connections <= (1024 - 256) / 4);
        assert!(c.dc09.max_connections + scaip + c.http.max_connections <= 1024 - 256);
        assert!(c.scaip.max_connections >= 1 && c.dc09.max_connections >= 1);
        assert!(c.http.max_connections_per_source <= c.http.max_connections);
        assert!(c.scaip.max_connections_per_source <= c.scaip.max_connections);
    }

    #[test]
    fn the_voice_calls_files_count_and_their_cap_is_lowered_beside_the_others() {
        // Enough for the connections alone, not with 2,000 calls of 4 files each.
        let mut c = cfg();
        c.dc09.max_connections = 1_000;
        c.scaip.max_connections = 1_000;
        c.http.max_connections = 1_000;
        c.voice.max_calls = 2_000;
        let changed = fit_open_files(&mut c, 8_000).unwrap();
        let budget = 8_000 - RESERVED_FILES;
        assert_eq!(
            c.voice.max_calls as u64,
            budget / 4 / FILES_PER_CALL,
            "{changed:?}"
        );
        assert!(
            changed.iter().any(
                |l| l == &format!("voice.max_calls lowered from 2000 to {}", c.voice.max_calls)
            ),
            "{changed:?}"
        );
        let files = (c.dc09.max_connections + c.scaip.max_connections + c.http.max_connections)
            as u64
            + c.voice.max_calls as u64 * FILES_PER_CALL;
        assert!(files <= budget, "{files}");
        // The connections kept their caps: they fit beside the calls.
        assert_eq!(c.dc09.max_connections, 1_000);
        // Voice off: its calls take nothing, and its cap is left alone.
        let mut c = cfg();
        c.dc09.max_connections = 1_000;
        c.scaip.max_connections = 1_000;
        c.http.max_connections = 1_000;
        c.voice.max_calls = 2_000;
        c.voice.enabled = false;
        assert_eq!(fit_open_files(&mut c, 8_000).unwrap(), Vec::<String>::new());
        assert_eq!(c.voice.max_calls, 2_000);
        // The default 200 calls fit this machine's 20,000 files with the lowered connections.
        let mut c = cfg();
        fit_open_files(&mut c, 20_000).unwrap();
        assert_eq!(c.voice.max_calls, 200);
        let files = (c.dc09.max_connections + c.scaip.max_connections + c.http.max_connections)
            as u64
            + 200 * FILES_PER_CALL;
        assert!(files <= 20_000 - RESERVED_FILES, "{files}");
    }

    #[test]
    fn a_limit_too_low_refuses_to_start() {
        let mut c = cfg();
        let e = fit_open_files(&mut c, 300).unwrap_err();
        assert_eq!((e.listeners, e.need), (3, 256 + 3 * 64));
        assert!(e.to_string().contains("raise it to at least 448"), "{e}");
    }
}
