//! The whole alarm hot path per frame, without sockets: decide (parse, registry lookup,
//! decrypt, build the Signal) -> journal (group commit with a real flush to disk) -> ACK bytes.
//!
//! `decide_only`: the receiver alone, no journal (so the rest of `single` and `batch64` is
//! the journal's share: sled append, flush, and the hand-over to the committer thread).
//! `single`: one frame at a time (each waits for its own flush, as one device in
//! request/response does). `batch64`: 64 frames in flight share group commits (many devices
//! at once). Frames are distinct, so none is a retransmission.
//!
//! `read1` and `read64`: the same through the conductor the TCP transport calls
//! (`ingest::Ingress` as its `FrameHandler`): the frames of one read (1 or 64) decided,
//! journaled in one group commit and answered in order, with the per-read buffers the
//! transport has; the difference to `single` and `batch64` is the conductor's share.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vakt::ingest::dc09::{Decision, FrameCtx, Receiver, ReceiverOptions};
use vakt::ingest::{FrameBatch, Ingress};
use vakt::journal::{Commit, Journal, JournalOptions};
use vakt::model::Transport;
use vakt::registers::devices::Registry;
use vakt::store::Store;
use vakt::supervision::LastHeard;
use vakt::telemetry::Metrics;
use vakt::transport::Arrival;
use vakt::transport::tcp::FrameHandler;
use vakt_proto::crypto::Key;
use vakt_proto::dc09::{self, FrameSpec, Pad};

const KEY256: &str = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF";

struct Setup {
    receiver: Receiver,
    journal: Arc<Journal>,
    /// The conductor over another receiver with the same registry, and the same journal.
    ingress: Ingress,
    _dir: tempfile::TempDir,
}

fn setup(rt: &tokio::runtime::Runtime) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let csv = format!(
        "{}\n1234,,,,,anna,90,,\n9ABC,,,{KEY256},hex,cecilia,90,,\n",
        vakt::registers::devices::CSV_HEADER_V1
    );
    let devices = vakt::registers::devices::parse_csv(csv.as_bytes()).unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.upsert_devices(&devices).unwrap();
    let metrics = Metrics::new();
    let journal = Arc::new(rt.block_on(async {
        Journal::start(
            store.clone(),
            JournalOptions {
                max_batch: 1024,
                queue_capacity: 65_536,
                dedup_window_secs: 600,
                dedup_max_entries: 1_000_000,
            },
            metrics.clone(),
            jiff::Timestamp::now(),
            None,
        )
        .unwrap()
    }));
    // The registered devices have last-heard times (an unknown account only a bounded list).
    let last_heard = Arc::new(LastHeard::new());
    last_heard.sync(devices.iter().map(|d| d.account.as_str()));
    let receiver = |devices: Vec<_>| {
        Receiver::new(
            vakt::registers::devices::Devices::new(Registry::new(devices)),
            last_heard.clone(),
            metrics.clone(),
            ReceiverOptions {
                timestamp_past_secs: 40,
                timestamp_future_secs: 20,
            },
        )
    };
    Setup {
        receiver: receiver(devices.clone()),
        ingress: Ingress::new(receiver(devices), journal.clone()),
        journal,
        _dir: dir,
    }
}

fn frame(n: u64, encrypted: bool, now: jiff::Timestamp) -> Vec<u8> {
    let (acct, key) = if encrypted {
        ("9ABC", Some(Key::from_hex(KEY256).unwrap()))
    } else {
        ("1234", None)
    };
    let data = format!("#{acct}|1101 {:02} {:03}", (n / 10_000) % 100, n % 1000);
    let spec = FrameSpec {
        id: "ADM-CID",
        seq: (n % 10_000) as u16,
        receiver: None,
        line: Some("0"),
        account: acct,
        data: data.as_bytes(),
        xdata: &[],
        timestamp: Some(now),
    };
    let mut out = Vec::new();
    match key {
        Some(k) => dc09::encode_frame_encrypted(&spec, &k, Pad::Fixed(b'P'), &mut out),
        None => dc09::encode_frame(&spec, &mut out),
    }
    out
}

/// `n` distinct frames (numbered on from `counter`) and their receive context.
fn frames(
    counter: &mut u64,
    n: u64,
    encrypted: bool,
    peer: SocketAddr,
) -> (Vec<Vec<u8>>, FrameCtx) {
    let now = jiff::Timestamp::now();
    let frames = (0..n)
        .map(|_| {
            *counter += 1;
            frame(*counter, encrypted, now)
        })
        .collect();
    let ctx = FrameCtx {
        transport: Transport::Tcp,
        peer,
        now,
    };
    (frames, ctx)
}

async fn process(s: &Setup, raw: &[u8], ctx: &FrameCtx) -> Vec<u8> {
    match s.receiver.decide(raw, ctx) {
        Decision::Answer { reply, .. } => reply,
        Decision::Journal {
            signal,
            dedup,
            reply,
            ..
        } => {
            let rx = s.journal.submit(*signal, dedup).await.unwrap();
            match rx.await.unwrap() {
                Commit::Stored(_) | Commit::Duplicate(_) => reply,
                Commit::Failed => panic!("commit failed"),
            }
        }
    }
}

/// One read of `frames` through the conductor: their answers, in order.
async fn read(s: &Setup, frames: &[Vec<u8>], ctx: &FrameCtx) -> Vec<u8> {
    let mut batch = FrameBatch::default();
    for f in frames {
        let at = Arrival {
            peer: ctx.peer,
            now: ctx.now,
            started: Instant::now(),
        };
        s.ingress.frame(f, at, &mut batch);
    }
    let mut out = Vec::new();
    s.ingress.answers(batch, &mut out).await.expect("answered");
    out
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let mut g = c.benchmark_group("hot_path");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(8));
    for encrypted in [false, true] {
        let name = if encrypted { "aes256" } else { "plain" };
        let s = setup(&rt);
        let mut counter = 0u64;
        // The receiver's share alone (parse, lookup, decrypt, Signal, ACK bytes): no journal.
        g.bench_function(format!("decide_only_{name}"), |b| {
            b.iter_custom(|iters| {
                let (frames, ctx) = frames(&mut counter, iters, encrypted, peer);
                let t = Instant::now();
                for f in &frames {
                    std::hint::black_box(s.receiver.decide(f, &ctx));
                }
                t.elapsed()
            })
        });
        g.bench_function(format!("single_{name}"), |b| {
            b.iter_custom(|iters| {
                let (frames, ctx) = frames(&mut counter, iters, encrypted, peer);
                rt.block_on(async {
                    let t = Instant::now();
                    for f in &frames {
                        std::hint::black_box(process(&s, f, &ctx).await);
                    }
                    t.elapsed()
                })
            })
        });
        g.bench_function(format!("batch64_{name}"), |b| {
            b.iter_custom(|iters| {
                let (frames, ctx) = frames(&mut counter, iters, encrypted, peer);
                rt.block_on(async {
                    let t = Instant::now();
                    for chunk in frames.chunks(64) {
                        let mut pending = Vec::with_capacity(64);
                        for f in chunk {
                            match s.receiver.decide(f, &ctx) {
                                Decision::Journal {
                                    signal,
                                    dedup,
                                    reply,
                                    ..
                                } => {
                                    pending.push((
                                        s.journal.submit(*signal, dedup).await.unwrap(),
                                        reply,
                                    ));
                                }
                                Decision::Answer { .. } => panic!("alarm frames are journaled"),
                            }
                        }
                        for (rx, reply) in pending {
                            assert!(matches!(rx.await.unwrap(), Commit::Stored(_)));
                            std::hint::black_box(reply);
                        }
                    }
                    t.elapsed()
                })
            })
        });
        for n in [1, 64] {
            g.bench_function(format!("read{n}_{name}"), |b| {
                b.iter_custom(|iters| {
                    let (frames, ctx) = frames(&mut counter, iters, encrypted, peer);
                    rt.block_on(async {
                        let t = Instant::now();
                        for chunk in frames.chunks(n) {
                            std::hint::black_box(read(&s, chunk, &ctx).await);
                        }
                        t.elapsed()
                    })
                })
            });
        }
        rt.block_on(s.journal.close());
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
