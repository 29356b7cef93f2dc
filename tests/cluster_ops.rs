//! Operating a cluster: what `/ready` says of each node and what `/metrics` counts of the
//! lease, take-overs and the database's durability, on two `vakt serve` nodes over a real
//! PostgreSQL primary with a synchronous standby; and `/ready` of a single node on sled.
//!
//! The example set-up in `deploy/` is checked here too: every `vakt_*` metric its Grafana
//! dashboard queries exists in src/telemetry.rs, and every configuration in it parses (vakt's
//! with `Config::load`, the YAML files as YAML when python3 with PyYAML is there).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
#![forbid(unsafe_code)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::node::{VaktNode, alarm};
use common::postgres::Postgres;
use common::{http_get, metric};

/// `/ready` as JSON, asked for by `Accept` (`by_accept`) or by `?format=json`.
async fn ready_json(http: SocketAddr, by_accept: bool) -> (u16, serde_json::Value) {
    let mut c = common::Client::new(http);
    let a = if by_accept {
        c.extra_header("accept", "application/json");
        c.get("/ready").await
    } else {
        c.get("/ready?format=json").await
    };
    assert_eq!(
        a.header("content-type"),
        Some("application/json"),
        "{}",
        a.body
    );
    (a.status, a.json())
}

/// Waits (bounded) until `/ready` on `http` answers a body containing `what`. A refused
/// connection is waited out too: a node says it is on standby before its listener is bound.
async fn ready_says(http: SocketAddr, what: &str, timeout: Duration) -> (u16, String) {
    common::wait_for(&format!("/ready to say {what:?}"), timeout, || async {
        tokio::net::TcpStream::connect(http).await.ok()?;
        let (status, body) = http_get(http, "/ready").await;
        body.contains(what).then_some((status, body))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_says_what_it_is_and_the_lease_and_durability_are_in_the_metrics() {
    let Some(pg) = Postgres::pair("on") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = pg.primary.url();

    let mut a = VaktNode::start(dir.path(), &url, "a");
    a.wait_for("vakt ready", Duration::from_secs(60));
    let b = VaktNode::start(dir.path(), &url, "b");
    b.wait_for("on standby", Duration::from_secs(60));

    // The leader: 200, its epoch and the durability read from the database (one synchronous
    // standby, commits waiting for its flush).
    let (status, body) =
        ready_says(a.http, "durability: synchronous", Duration::from_secs(15)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        "ready: leader (epoch 1); durability: synchronous (on, 1 synchronous standby)\n"
    );
    for by_accept in [true, false] {
        let (status, j) = ready_json(a.http, by_accept).await;
        assert_eq!(status, 200, "{j}");
        assert_eq!(j["ready"], true, "{j}");
        assert_eq!(j["role"], "leader", "{j}");
        assert_eq!(j["node"], "a", "{j}");
        assert_eq!(j["epoch"], 1, "{j}");
        assert_eq!(j["durability"]["state"], "synchronous", "{j}");
        assert_eq!(j["durability"]["synchronous_commit"], "on", "{j}");
        assert_eq!(j["durability"]["synchronous_standbys"], 1, "{j}");
        assert_eq!(j["durability"]["degraded"], false, "{j}");
    }

    // The standby: 503 naming the leader, in text and JSON; its metrics are served too.
    let (status, body) = ready_says(b.http, "the leader is a", Duration::from_secs(10)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("standby"), "{body}");
    let (status, j) = ready_json(b.http, false).await;
    assert_eq!(status, 503, "{j}");
    assert_eq!(j["role"], "standby", "{j}");
    assert_eq!(j["node"], "b", "{j}");
    assert_eq!(j["leader"], "a", "{j}");

    assert_eq!(metric(a.http, "vakt_lease_held").await, 1.0);
    assert_eq!(metric(a.http, "vakt_lease_epoch").await, 1.0);
    assert_eq!(metric(a.http, "vakt_takeovers_total").await, 1.0);
    assert_eq!(metric(a.http, "vakt_takeover_seconds_count").await, 1.0);
    let took = metric(a.http, "vakt_takeover_seconds_sum").await;
    assert!(took > 0.0 && took < 60.0, "{took}");
    assert_eq!(metric(a.http, "vakt_db_synchronous_standbys").await, 1.0);
    assert_eq!(metric(a.http, "vakt_db_durability_degraded").await, 0.0);
    let (_, text) = http_get(b.http, "/metrics").await;
    assert!(text.contains("vakt_lease_held 0"), "{text}");
    assert!(text.contains("vakt_lease_epoch 1"), "{text}");
    assert!(text.contains("vakt_takeovers_total 0"), "{text}");
    assert_eq!(
        metric(a.http, "vakt_lease_renewals_failed_total").await,
        0.0
    );

    // A renewal that fails (its connection ended while it waits for the lease's row) is
    // counted; the next one, on a new connection, keeps the lease.
    let locker = common::postgres::connect(&url).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE leader_lease IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ended = pg
        .query(
            &pg.primary,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'vakt leader' AND wait_event_type = 'Lock'",
        )
        .unwrap();
    assert_ne!(ended.trim(), "0", "a renewal waited for the lock");
    locker.batch_execute("COMMIT").await.unwrap();
    common::wait_for(
        "a failed renewal counted",
        Duration::from_secs(10),
        || async {
            (metric(a.http, "vakt_lease_renewals_failed_total").await >= 1.0).then_some(())
        },
    )
    .await;
    assert_eq!(alarm(a.dc09, 1, "7101").await.unwrap(), "ACK");
    assert_eq!(metric(a.http, "vakt_lease_held").await, 1.0);
    assert_eq!(metric(a.http, "vakt_lease_epoch").await, 1.0);

    // The leader's machine dies: the standby takes over and counts it.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed = Instant::now();
    let (status, body) =
        ready_says(b.http, "ready: leader (epoch 2)", Duration::from_secs(60)).await;
    println!(
        "/ready of the standby answered 200 {} ms after kill -9 of the leader",
        killed.elapsed().as_millis()
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(alarm(b.dc09, 2, "7102").await.unwrap(), "ACK");
    assert_eq!(metric(b.http, "vakt_lease_held").await, 1.0);
    assert_eq!(metric(b.http, "vakt_lease_epoch").await, 2.0);
    assert_eq!(metric(b.http, "vakt_takeovers_total").await, 1.0);
    assert_eq!(metric(b.http, "vakt_takeover_seconds_count").await, 1.0);
    println!(
        "lease taken to server ready on the new leader: {:.3} s",
        metric(b.http, "vakt_takeover_seconds_sum").await
    );

    // The primary stops waiting for its standby (as Patroni's synchronous mode does, unless
    // strict, when the standby is lost): the leader says a commit is on one machine now, and
    // the metrics say durability is degraded. (With the standby asked for and gone, as in
    // strict mode, no commit ends, the lease's renewals included: the leader steps down.)
    pg.query(
        &pg.primary,
        "ALTER SYSTEM SET synchronous_standby_names = ''",
    )
    .unwrap();
    pg.query(&pg.primary, "SELECT pg_reload_conf()").unwrap();
    let (status, body) =
        ready_says(b.http, "durability: primary only", Duration::from_secs(30)).await;
    assert_eq!(status, 200, "a leader still leads: {body}");
    let (_, j) = ready_json(b.http, true).await;
    assert_eq!(j["durability"]["state"], "primary_only", "{j}");
    assert_eq!(j["durability"]["degraded"], true, "{j}");
    assert_eq!(metric(b.http, "vakt_db_synchronous_standbys").await, 0.0);
    assert_eq!(metric(b.http, "vakt_db_durability_degraded").await, 1.0);
    assert_eq!(alarm(b.dc09, 3, "7103").await.unwrap(), "ACK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_on_a_primary_without_a_standby_says_a_commit_is_on_one_machine() {
    let Some(pg) = Postgres::single() else { return };
    let dir = tempfile::tempdir().unwrap();
    let a = VaktNode::start(dir.path(), &pg.primary.url(), "a");
    a.wait_for("vakt ready", Duration::from_secs(60));
    let (status, body) = ready_says(a.http, "durability: primary", Duration::from_secs(15)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        "ready: leader (epoch 1); durability: primary only (no synchronous standby: a commit is on one machine)\n"
    );
    assert_eq!(metric(a.http, "vakt_db_durability_degraded").await, 1.0);
    assert_eq!(metric(a.http, "vakt_db_synchronous_standbys").await, 0.0);
}

#[tokio::test]
async fn a_single_node_on_sled_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let running = common::start(dir.path()).await;
    let http = running.http.unwrap();
    let (status, body) = http_get(http, "/ready").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "ready: single node (sled, fsync)\n")
    );
    let (status, j) = ready_json(http, false).await;
    assert_eq!(status, 200);
    assert_eq!(j["role"], "single", "{j}");
    assert_eq!(j["durability"]["degraded"], false, "{j}");
    running.stop().await.unwrap();
}

// ---- deploy/ ----

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir`, recursively, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The metric names src/telemetry.rs declares (every `"vakt_..."` literal in it).
fn declared_metrics() -> BTreeSet<String> {
    let src = std::fs::read_to_string(repo().join("src/telemetry.rs")).unwrap();
    vakt_names(&src)
        .into_iter()
        .filter(|n| src.contains(&format!("\"{n}\"")))
        .collect()
}

/// Every `vakt_[a-z0-9_]+` word in `text`.
fn vakt_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_';
    let mut i = 0;
    while let Some(at) = text[i..].find("vakt_") {
        let start = i + at;
        let before_ok = start == 0 || !(word(b[start - 1]) || b[start - 1].is_ascii_uppercase());
        let mut end = start + 5;
        while end < b.len() && word(b[end]) {
            end += 1;
        }
        if before_ok && end > start + 5 {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    out
}

/// A series name as queried (`vakt_x_seconds_bucket`) to the metric it belongs to.
fn metric_of(series: &str, declared: &BTreeSet<String>) -> Option<String> {
    if declared.contains(series) {
        return Some(series.to_string());
    }
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|s| series.strip_suffix(s))
        .find(|m| declared.contains(*m))
        .map(str::to_string)
}

/// Every Prometheus expression of the dashboard's panels.
fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| exprs(x, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_queries_only_metrics_vakt_has_and_covers_each_area() {
    let declared = declared_metrics();
    assert!(declared.contains("vakt_frame_ack_seconds"), "{declared:?}");
    let path = repo().join("deploy/grafana/dashboards/vakt.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        dashboard["uid"], "vakt",
        "a stable uid for links and provisioning"
    );
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    assert!(all.len() >= 20, "{} queries", all.len());
    let mut used = BTreeSet::new();
    for e in &all {
        for series in vakt_names(e) {
            match metric_of(&series, &declared) {
                Some(m) => {
                    used.insert(m);
                }
                None => panic!("the dashboard queries {series}, which vakt does not have: {e}"),
            }
        }
    }
    // Each area the issue names has at least one panel over one of its metrics.
    for m in [
        "vakt_frames_total",
        "vakt_frame_ack_seconds",
        "vakt_journal_commit_seconds",
        "vakt_queue_calls",
        "vakt_call_answer_seconds",
        "vakt_dispatch_breaches_total",
        "vakt_dispatch_arrival_seconds",
        "vakt_devices_silent",
        "vakt_incidents_open",
        "vakt_outbox_pending",
        "vakt_lease_held",
        "vakt_lease_epoch",
        "vakt_lease_renewals_failed_total",
        "vakt_takeovers_total",
        "vakt_takeover_seconds",
        "vakt_db_synchronous_standbys",
        "vakt_db_durability_degraded",
    ] {
        assert!(used.contains(m), "no panel over {m}");
    }
    // Every panel has a title and at least one query, and the ids are unique.
    let mut ids = BTreeSet::new();
    for p in dashboard["panels"].as_array().unwrap() {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "id {} twice",
            p["id"]
        );
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()), "{p}");
        if p["type"] != "row" {
            let mut q = Vec::new();
            exprs(p, &mut q);
            assert!(!q.is_empty(), "panel {} queries nothing", p["title"]);
        }
    }
    // The provisioning file points at the folder the dashboard is in.
    let provider =
        std::fs::read_to_string(repo().join("deploy/grafana/provisioning/dashboards/vakt.yml"))
            .unwrap();
    assert!(
        provider.contains("path: /etc/vakt/grafana/dashboards"),
        "{provider}"
    );
}

#[test]
fn a_name_that_is_not_a_metric_fails_the_dashboard_check() {
    let declared = declared_metrics();
    let queried = vakt_names("sum(rate(vakt_frames_total[5m])) / vakt_no_such_thing");
    assert_eq!(queried.len(), 2);
    assert!(metric_of("vakt_frames_total", &declared).is_some());
    assert!(metric_of("vakt_frame_ack_seconds_bucket", &declared).is_some());
    assert!(metric_of("vakt_no_such_thing", &declared).is_none());
    assert!(
        metric_of("vakt_session", &declared).is_none(),
        "the cookie is no metric"
    );
}

#[test]
fn every_example_configuration_parses() {
    let mut vakt_configs = 0;
    let mut yaml = Vec::new();
    let mut examples = files(&repo().join("deploy"));
    examples.push(repo().join("config/cluster-node.toml"));
    for f in &examples {
        let name = f.file_name().unwrap().to_str().unwrap();
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
        match ext {
            "toml" => {
                let cfg = vakt::config::Config::load(f)
                    .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                assert_eq!(
                    cfg.store.backend,
                    vakt::config::StoreBackend::Postgres,
                    "{name}"
                );
                cfg.store
                    .leader_options()
                    .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                vakt_configs += 1;
            }
            "yml" | "yaml" => {
                let text = std::fs::read_to_string(f).unwrap();
                assert!(!text.contains('\t'), "{}: a tab in YAML", f.display());
                yaml.push(f.clone());
            }
            "json" => {
                serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(f).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            }
            _ => {}
        }
    }
    assert!(
        vakt_configs >= 4,
        "three nodes' configurations and config/'s"
    );
    // The node names differ, and the three differ only where a node does.
    let names: BTreeSet<String> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            let cfg = vakt::config::Config::load(
                &repo().join(format!("deploy/vakt/cluster-node-{n}.toml")),
            )
            .unwrap();
            cfg.store.node
        })
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    // Patroni: synchronous replication in strict mode on every node, never its default.
    for n in 1..=3 {
        let f = repo().join(format!("deploy/patroni/patroni-db{n}.yml"));
        let text = std::fs::read_to_string(&f).unwrap();
        for line in [
            "synchronous_mode: true",
            "synchronous_mode_strict: true",
            &format!("name: db{n}"),
        ] {
            assert!(text.contains(line), "{}: no {line:?}", f.display());
        }
    }
    // Parsed as YAML where a parser is at hand (python3 with PyYAML, as Debian's patroni
    // package brings it).
    let python = Command::new("python3")
        .args(["-c", "import yaml"])
        .status()
        .is_ok_and(|s| s.success());
    if !python {
        eprintln!("note: python3 with PyYAML missing; the YAML files were not parsed");
        return;
    }
    for f in &yaml {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); assert isinstance(d, dict), 'not a mapping'",
            ])
            .arg(f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
