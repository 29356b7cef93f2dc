//! Triage, per Signal and per claim, without storage: open a Call for a new subscriber's
//! alarm, merge a repeated press into an open Call, and "take next" (a CAS claim) then close.
//! The sink does nothing, so this is triage's own cost; the server adds the Call writer's
//! queue push and the live feed's broadcast.
//!
//! Run: `cargo bench --bench triage` (quick check: `cargo bench --bench triage -- --quick`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::hint::black_box;
use std::sync::Arc;
use vakt::model::testing;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vakt::model::{Outcome, Signal, SignalEvent};
use vakt::telemetry::CallMetrics;
use vakt::triage::closing::Closing;
use vakt::triage::{NullSink, Triage, TriageOptions};
use vakt_proto::event::Qualifier;

fn alarm(id: u64, subscriber: &str) -> Signal {
    Signal {
        id,
        received_at: jiff::Timestamp::from_second(1_800_000_000 + id as i64).unwrap(),
        line: Some("0".into()),
        subscriber: Some(subscriber.into()),
        device_type: Some("carephone".into()),
        events: vec![SignalEvent {
            name: Some("Personal Emergency".into()),
            zone: Some(1),
            group: Some(1),
            ..testing::event("CID 101", Qualifier::New)
        }],
        raw: b"\n21170027\"ADM-CID\"0001L0#1234[#1234|1101 01 001]\r".to_vec(),
        ..testing::signal()
    }
}

fn triage() -> Triage {
    Triage::new(
        TriageOptions { escalate_after: 3 },
        Arc::new(NullSink),
        CallMetrics::new(),
        1,
    )
}

fn bench(c: &mut Criterion) {
    let now = jiff::Timestamp::from_second(1_900_000_000).unwrap();
    let mut g = c.benchmark_group("triage");
    g.throughput(Throughput::Elements(1));

    // Open, take and close a Call: the whole life of a single alarm in triage.
    let t = triage();
    let mut id = 0u64;
    g.bench_function("open_take_close", |b| {
        b.iter(|| {
            id += 1;
            black_box(t.ingest(&alarm(id, "S-1"), None, now));
            let call = t.next("olle", now).expect("a call waits");
            t.close(
                call.id,
                "olle",
                &Closing::new(Outcome::AccidentalPress, "pressed by mistake"),
                now,
            )
            .expect("owner closes");
        })
    });

    // A repeated press merged into one open Call (the timeline is capped, so this stays flat).
    let t = triage();
    let mut id = 0u64;
    g.bench_function("merge_press", |b| {
        b.iter(|| {
            id += 1;
            black_box(t.ingest(&alarm(id, "S-2"), None, now));
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
