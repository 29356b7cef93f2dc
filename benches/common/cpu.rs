//! CPU time per group of this process's threads, for the benchmarks that run the players and
//! the measured code in one process.

use std::collections::HashMap;

/// CPU seconds used so far by this process's threads, summed by `group` of each thread's
/// name (`/proc/self/task/*/schedstat`: the scheduler's own nanoseconds on a CPU; `stat`'s
/// utime and stime are sampled at the clock tick and miss threads that a timer wakes between
/// ticks, as the recordings' writers and the relays are). Empty where `/proc` is not there.
pub fn cpu_by(group: impl Fn(&str) -> &'static str) -> HashMap<&'static str, f64> {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        let dir = t.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let ns: f64 = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        *out.entry(group(name.trim())).or_insert(0.0) += ns / 1e9;
    }
    out
}
