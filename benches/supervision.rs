//! Supervision at scale: 1,000,000 devices with a 30 s interval, as in production at 33,000
//! heartbeats per second.
//!
//! - `supervision/heard`: one heartbeat (lookup, lock, last-heard time), accounts in shuffled
//!   order so the caches see what a real fleet does to them, with the ticker's poll after
//!   every 33,000 heartbeats (one simulated second) included, amortised: that poll re-arms
//!   the wheel entries of devices heard since (lazy rescheduling), so this is the whole CPU
//!   cost of a heartbeat in the supervision structure;
//! - `supervision_poll/per_second`: that poll alone, after one simulated second of 33,000
//!   heartbeats (no device silent: the steady state; about 14,000 entries re-armed);
//! - printed once: memory retained per device (a counting global allocator: bytes allocated
//!   after registering the fleet minus before, divided by the devices), the time to register
//!   the fleet, to report all of them silent (one poll after another), and heartbeats per
//!   second from two threads at once.
//!
//! Run: `cargo bench --bench supervision` (quick check: `cargo bench --bench supervision --
//! --quick`). `VAKT_BENCH_DEVICES` changes the fleet size.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
#![allow(unsafe_code)] // the counting allocator that measures memory per device

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jiff::Timestamp;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use vakt::model::Device;
use vakt::supervision::{SupervisionOptions, Supervisor};

/// Counts the bytes currently allocated through the global allocator.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn add(n: usize) {
    let now = ALLOCATED.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
            add(new_size);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const T0: i64 = 1_900_000_000;
const PER_SECOND: usize = 33_000;

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(T0 + s).unwrap()
}

fn devices(n: usize) -> Vec<Device> {
    let operators = ["Telia", "Tele2", "Telenor", "Tre"];
    (0..n)
        .map(|i| Device {
            account: format!("{:08X}", 0x1000_0000 + i),
            line: None,
            receiver: None,
            key: None,
            key_format: None,
            subscriber: Some(format!("S{i:07}")),
            supervision_secs: Some(30),
            telecom_operator: Some(operators[i % 4].to_string()),
            area: Some(format!("area-{}", i % 290)),
            device_type: Some("carephone".to_string()),
            sip_user: None,
            sip_password: None,
            phone: None,
        })
        .collect()
}

fn mb(b: usize) -> f64 {
    b as f64 / 1_048_576.0
}

/// Registers the fleet; prints memory per device and the one-off figures.
fn fleet(n: usize) -> (Arc<Supervisor>, Vec<String>) {
    let devs = devices(n);
    let before = ALLOCATED.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let start = Instant::now();
    let sup = Supervisor::new(SupervisionOptions::default());
    let report = sup.sync(&devs, |_| None, at(0));
    let took = start.elapsed();
    let retained = ALLOCATED.load(Ordering::Relaxed) - before;
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert_eq!(report.added, n);
    println!(
        "supervision memory: {n} devices registered in {took:.2?}; retained {:.1} MiB = {:.1} \
         bytes/device (peak during sync +{:.1} MiB)",
        mb(retained),
        retained as f64 / n as f64,
        mb(peak)
    );
    let mut accounts: Vec<String> = devs.iter().map(|d| d.account.clone()).collect();
    drop(devs);
    accounts.shuffle(&mut StdRng::seed_from_u64(6));
    (Arc::new(sup), accounts)
}

/// One-off: every device silent at once, reported poll after poll.
fn all_silent(n: usize) {
    let sup = Supervisor::new(SupervisionOptions::default());
    sup.sync(&devices(n), |_| None, at(0));
    let start = Instant::now();
    let (mut total, mut polls) = (0, 0);
    loop {
        let p = sup.poll(at(90));
        total += p.silent.len();
        polls += 1;
        if !p.more {
            break;
        }
    }
    let took = start.elapsed();
    assert_eq!(total, n);
    println!(
        "supervision all silent: {n} silences reported in {polls} polls, {took:.2?} \
         ({:.0} ns per silence, incl. building its Silence)",
        took.as_nanos() as f64 / n as f64
    );
}

/// One-off: two threads heartbeating at once (contention on the shard locks).
fn two_threads(sup: &Arc<Supervisor>, accounts: &Arc<Vec<String>>) {
    let per_thread = 2_000_000;
    let start = Instant::now();
    let hs: Vec<_> = (0..2)
        .map(|k| {
            let sup = sup.clone();
            let accounts = accounts.clone();
            std::thread::spawn(move || {
                let mut now = at(1_000);
                for i in 0..per_thread {
                    if i % (PER_SECOND / 2) == 0 {
                        now += jiff::SignedDuration::from_secs(1);
                    }
                    let a = &accounts[(i * 2 + k) % accounts.len()];
                    black_box(sup.heard(a, now));
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let took = start.elapsed();
    println!(
        "supervision heard from 2 threads: {} heartbeats in {took:.2?} = {:.1} M/s",
        2 * per_thread,
        (2 * per_thread) as f64 / took.as_secs_f64() / 1e6
    );
}

fn bench(c: &mut Criterion) {
    let n: usize = std::env::var("VAKT_BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (sup, accounts) = fleet(n);
    let accounts = Arc::new(accounts);
    // Everyone reports once at the start, as a running fleet does.
    for (i, a) in accounts.iter().enumerate() {
        sup.heard(a, at((i / PER_SECOND) as i64));
    }
    let mut g = c.benchmark_group("supervision");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    let mut secs = 30i64;
    let mut now = at(secs);
    g.bench_function("heard", |b| {
        b.iter(|| {
            i += 1;
            if i == accounts.len() {
                i = 0;
            }
            if i % PER_SECOND == 0 {
                // A simulated second has passed: the ticker polls (amortised: 1 in 33,000).
                secs += 1;
                now = at(secs);
                sup.poll(now);
            }
            sup.heard(black_box(&accounts[i]), now)
        })
    });
    g.finish();
    let mut g = c.benchmark_group("supervision_poll");
    g.bench_function("per_second", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let now = at(secs);
                for _ in 0..PER_SECOND {
                    i += 1;
                    if i == accounts.len() {
                        i = 0;
                    }
                    sup.heard(&accounts[i], now);
                }
                secs += 1;
                let start = Instant::now();
                let p = sup.poll(at(secs));
                spent += start.elapsed();
                assert!(
                    p.silent.is_empty(),
                    "a device reporting every 30 s fell silent"
                );
            }
            spent
        })
    });
    g.finish();
    two_threads(&sup, &accounts);
    drop(sup);
    all_silent(n);
}

criterion_group!(benches, bench);
criterion_main!(benches);
