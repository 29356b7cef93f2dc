//! SIPp for the tests: find it (or skip, outside CI), run a scenario of `tests/sipp/`, wait
//! for it and keep its traces.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub fn sipp_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("sipp"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("VAKT_REQUIRE_SIPP").is_none(),
            "sipp not found on PATH (install Debian's sip-tester)"
        );
        eprintln!("SKIPPED: sipp not found on PATH; install Debian's sip-tester");
    }
    found
}

/// A running SIPp and its traces.
pub struct Sipp {
    name: String,
    child: Option<Child>,
    started: Instant,
    /// It must have ended by then (its own `-timeout` is shorter).
    bound: Duration,
    dir: PathBuf,
}

impl Sipp {
    /// Runs `tests/sipp/{scenario}.xml` (one call, UDP, traces in `dir`) with `args`.
    pub fn start(sipp: &Path, dir: &Path, scenario: &str, args: &[String]) -> Sipp {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sipp")
            .join(format!("{scenario}.xml"));
        let mut all: Vec<String> = ["-t", "u1", "-timeout", "30s"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        all.extend(args.iter().cloned());
        Sipp::start_file(sipp, dir, scenario, &file, &all, Duration::from_secs(45))
    }

    /// Runs the scenario `file` once from 127.0.0.1, its traces in `dir` named after `name`,
    /// with `args` (the transport, `-timeout`, keys, the target...); it must end within
    /// `bound`.
    pub fn start_file(
        sipp: &Path,
        dir: &Path,
        name: &str,
        file: &Path,
        args: &[String],
        bound: Duration,
    ) -> Sipp {
        let trace = |what: &str| dir.join(format!("{name}_{what}.log"));
        let child = Command::new(sipp)
            .current_dir(dir)
            .arg("-sf")
            .arg(file)
            .args(["-i", "127.0.0.1", "-m", "1"])
            .args(["-timeout_error", "-nostdin"])
            .arg("-trace_err")
            .arg("-error_file")
            .arg(trace("errors"))
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(trace("messages"))
            .arg("-trace_logs")
            .arg("-log_file")
            .arg(trace("logs"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(trace("screen")).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sipp starts");
        Sipp {
            name: name.into(),
            child: Some(child),
            started: Instant::now(),
            bound,
            dir: dir.to_path_buf(),
        }
    }

    fn read(&self, what: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}_{what}.log", self.name)))
            .unwrap_or_default()
    }

    /// The scenario's `<log>` lines so far.
    pub fn log(&self) -> String {
        self.read("logs")
    }

    /// Everything SIPp wrote about the run, for assertion messages.
    pub fn report(&self, status: Option<ExitStatus>) -> String {
        let messages = self.read("messages");
        let tail: String = {
            let chars: Vec<char> = messages.chars().collect();
            chars[chars.len().saturating_sub(6000)..].iter().collect()
        };
        let screen = self.read("screen");
        let lines: Vec<&str> = screen.lines().collect();
        let screen_tail = lines[lines.len().saturating_sub(25)..].join("\n");
        format!(
            "sipp {} after {:?}: exit {status:?}\n--- errors:\n{}\n--- logs:\n{}\n--- end of messages:\n{tail}\n--- end of screen:\n{screen_tail}",
            self.name,
            self.started.elapsed(),
            self.read("errors"),
            self.log(),
        )
    }

    /// Has SIPp exited? (`Some(status)` once it has.)
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("sipp wait"))
    }

    /// Waits (bounded) for SIPp to end, asserts it succeeded and returns its `<log>` lines.
    pub async fn succeeds(mut self) -> String {
        let status = loop {
            if let Some(s) = self.exited() {
                break s;
            }
            if self.started.elapsed() > self.bound {
                self.kill();
                self.keep();
                panic!("sipp never ended\n{}", self.report(None));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.child = None;
        self.keep();
        assert!(status.success(), "{}", self.report(Some(status)));
        self.log()
    }

    /// Copies the traces to `$VAKT_ARTIFACTS/sipp/`.
    fn keep(&self) {
        let Some(dir) = std::env::var_os("VAKT_ARTIFACTS") else {
            return;
        };
        let dir = PathBuf::from(dir).join("sipp");
        std::fs::create_dir_all(&dir).unwrap();
        for what in ["errors", "messages", "logs", "screen"] {
            let name = format!("{}_{what}.log", self.name);
            let _ = std::fs::copy(self.dir.join(&name), dir.join(&name));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if self.child.is_some() {
            // The test failed before SIPp ended: its traces tell why.
            self.kill();
            self.keep();
        }
    }
}
