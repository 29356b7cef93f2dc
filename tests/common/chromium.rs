//! Headless Chromium over chromedriver (fantoccini) for the tests that need a real browser,
//! scripts run in its page, and screenshots kept as artifacts.
//!
//! Without chromedriver a test says so and passes, unless `VAKT_REQUIRE_BROWSER` is set (as
//! `.ci/run` does). `VAKT_CHROMEDRIVER` and `VAKT_CHROMIUM` name other binaries.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// chromedriver in a process group of its own, with the Chromium it starts; the whole group
/// is killed when dropped. Killing chromedriver alone would leave its Chromium (a browser
/// and a dozen renderers) running after every test, each taking CPU from the rest of the
/// suite.
pub struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let group = rustix::process::Pid::from_child(&self.0);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VAKT_CHROMEDRIVER") {
        return Some(p.into());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("chromedriver"))
        .find(|p| p.is_file())
}

/// Headless Chromium with `args` besides the usual ones; `None` (the test is skipped)
/// without chromedriver, unless `VAKT_REQUIRE_BROWSER` is set.
pub async fn launch(args: &[String]) -> Option<(Driver, fantoccini::Client)> {
    let Some(bin) = chromedriver() else {
        assert!(
            std::env::var_os("VAKT_REQUIRE_BROWSER").is_none(),
            "chromedriver not found (install Debian's chromium and chromium-driver)"
        );
        eprintln!("SKIPPED: chromedriver not found; install chromium and chromium-driver");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Driver(
        Command::new(bin)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let mut all: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,800",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    all.extend(args.iter().cloned());
    let mut chrome = serde_json::json!({ "args": all });
    if let Some(b) = std::env::var_os("VAKT_CHROMIUM") {
        chrome["binary"] = serde_json::json!(b.to_string_lossy());
    } else if std::path::Path::new("/usr/bin/chromium").exists() {
        chrome["binary"] = serde_json::json!("/usr/bin/chromium");
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), chrome);
    let webdriver = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match fantoccini::ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&webdriver)
            .await
        {
            Ok(c) => return Some((driver, c)),
            Err(e) => {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "chromedriver: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Runs `js` in the page (an async function body; `arg` is `arguments[0]`) and returns what
/// it resolves to; a script that throws fails the test.
pub async fn run_js(c: &fantoccini::Client, js: &str, arg: serde_json::Value) -> serde_json::Value {
    let script = format!(
        "const done = arguments[arguments.length - 1]; const arg = arguments[0];\n\
         (async () => {{ {js} }})().then(done, e => done('ERROR ' + e));"
    );
    let v = c
        .execute_async(&script, vec![arg])
        .await
        .expect("script runs");
    if let Some(s) = v.as_str() {
        assert!(!s.starts_with("ERROR"), "{s}");
    }
    v
}

/// Where screenshots go: `VAKT_ARTIFACTS`, else the target's test folder.
pub fn artifact_dir() -> PathBuf {
    std::env::var_os("VAKT_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
}

/// Saves a screenshot of the page as `name` among the artifacts.
pub async fn screenshot(c: &fantoccini::Client, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    let dir = artifact_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}
