//! The real console in headless Chromium, driven over WebDriver (chromedriver): log in, see
//! an alarm sent over DC-09 appear in the queue, take it, see the subscriber's card, write a
//! note, close it. A screenshot is saved as a test artifact.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without
//! chromedriver the test says so and passes, unless `VAKT_REQUIRE_BROWSER` is set (as
//! `.ci/run` does), when it fails.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{ClientBuilder, Locator};
use vakt::model::Role;

const OPERATOR: (&str, &str) = ("olle", "olle-password-1");

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VAKT_CHROMEDRIVER") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("chromedriver"))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn artifact_dir() -> PathBuf {
    std::env::var_os("VAKT_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
}

fn subscribers_csv() -> String {
    format!(
        "{}\nanna,Åsa Öberg,19380512-9802,Storgatan 4,123 45,Vaktby,Centrum,070-111 22 33,Hemtjänst Centrum,2,\"Nyckelskåp Centrum, krok 14\",PL-3301,4711#,Hund i hallen,\"Diabetes typ 2, insulin\",Tillsyn 3 ggr/dygn,Karin Öberg,dotter,070-222 33 44,,,,,,,sv\n",
        vakt::subscribers::CSV_HEADER
    )
}

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn operator_takes_and_closes_an_alarm_in_the_console() {
    let Some(driver_bin) = chromedriver() else {
        assert!(
            std::env::var_os("VAKT_REQUIRE_BROWSER").is_none(),
            "chromedriver not found (install Debian's chromium and chromium-driver)"
        );
        eprintln!("SKIPPED: chromedriver not found; install chromium and chromium-driver");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    vakt::cli::import_devices(dir.path(), devices_csv().as_bytes()).unwrap();
    add_user(dir.path(), ADMIN.0, Role::Admin, ADMIN.1);
    add_user(dir.path(), OPERATOR.0, Role::Operator, OPERATOR.1);
    let srv = start_with(test_config(dir.path())).await;
    let http = srv.http.unwrap();
    let mut admin = Client::login(http, ADMIN.0, ADMIN.1).await;
    let a = admin
        .send(
            "POST",
            "/api/subscribers/import",
            Some(("text/csv", subscribers_csv())),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);

    let port = free_port();
    let _driver = Driver(
        Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let mut caps = serde_json::Map::new();
    let mut chrome = serde_json::json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,800", "--lang=sv-SE"]
    });
    if let Some(bin) = std::env::var_os("VAKT_CHROMIUM") {
        chrome["binary"] = serde_json::json!(bin.to_string_lossy());
    } else if std::path::Path::new("/usr/bin/chromium").exists() {
        chrome["binary"] = serde_json::json!("/usr/bin/chromium");
    }
    caps.insert("goog:chromeOptions".into(), chrome);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let webdriver = format!("http://127.0.0.1:{port}");
    let c = wait_for("chromedriver", Duration::from_secs(30), || {
        let caps = caps.clone();
        let connector = connector.clone();
        let webdriver = webdriver.clone();
        async move {
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&webdriver)
                .await
                .ok()
        }
    })
    .await;

    // Log in.
    c.goto(&format!("http://{http}/")).await.unwrap();
    let user = c
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("#login-username"))
        .await
        .expect("login form");
    user.send_keys(OPERATOR.0).await.unwrap();
    c.find(Locator::Css("#login-password"))
        .await
        .unwrap()
        .send_keys(OPERATOR.1)
        .await
        .unwrap();
    c.find(Locator::Css("#login-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for("the live feed", Duration::from_secs(15), || async {
        let el = c.find(Locator::Css("#connection-status")).await.ok()?;
        (el.attr("data-state").await.ok()?? == "open").then_some(())
    })
    .await;

    // An alarm over DC-09 appears in the queue.
    let reply = tcp_roundtrip(
        srv.dc09_tcp.unwrap(),
        &plain("ADM-CID", 1, "1234", "#1234|1101 01 001"),
    )
    .await;
    assert_eq!(token_of(&reply), "ACK");
    let acked = Instant::now();
    let row = wait_for("the Call in the queue", Duration::from_secs(10), || async {
        c.find(Locator::Css("#queue-body tr.call-row")).await.ok()
    })
    .await;
    let appeared = acked.elapsed();
    eprintln!("ACK to row in the queue: {appeared:?}");
    assert!(
        appeared <= Duration::from_secs(1),
        "the Call took {appeared:?} to appear (the console promises 1 s)"
    );
    assert_eq!(
        row.attr("data-priority").await.unwrap().as_deref(),
        Some("1")
    );
    let row_text = row.text().await.unwrap();
    assert!(row_text.contains("Åsa Öberg"), "row: {row_text}");

    // Take it: the Call view with the subscriber's card.
    row.find(Locator::Css(".take"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let name = wait_for("the subscriber's card", Duration::from_secs(10), || async {
        let el = c
            .find(Locator::Css("#subscriber-card .subscriber-name"))
            .await
            .ok()?;
        let t = el.text().await.ok()?;
        (!t.is_empty()).then_some(t)
    })
    .await;
    assert!(name.contains("Åsa Öberg"), "card shows {name}");
    let door = c
        .find(Locator::Css("#subscriber-card .door-code"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(door.contains("4711#"), "door code shown: {door}");

    // Write a note.
    c.find(Locator::Css("#note-text"))
        .await
        .unwrap()
        .send_keys("Åsa svarar, har ramlat men är oskadd")
        .await
        .unwrap();
    c.find(Locator::Css("#note-save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        "the note in the timeline",
        Duration::from_secs(10),
        || async {
            let items = c
                .find_all(Locator::Css("#timeline li[data-type=\"note\"]"))
                .await
                .ok()?;
            (!items.is_empty()).then_some(())
        },
    )
    .await;
    let shot = c.screenshot().await.unwrap();
    let dir_out = artifact_dir();
    std::fs::create_dir_all(&dir_out).unwrap();
    let path = dir_out.join("console-call-view.png");
    std::fs::write(&path, &shot).unwrap();
    eprintln!("screenshot: {}", path.display());

    // Close it.
    c.find(Locator::Css("#close-outcome"))
        .await
        .unwrap()
        .select_by_value("handled_by_phone")
        .await
        .unwrap();
    c.find(Locator::Css("#close-note"))
        .await
        .unwrap()
        .send_keys("Ingen åtgärd behövs")
        .await
        .unwrap();
    c.find(Locator::Css("#close-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for("the queue to empty", Duration::from_secs(10), || async {
        let rows = c
            .find_all(Locator::Css("#queue-body tr.call-row"))
            .await
            .ok()?;
        rows.is_empty().then_some(())
    })
    .await;
    let shot = c.screenshot().await.unwrap();
    std::fs::write(dir_out.join("console-queue.png"), &shot).unwrap();

    // The server agrees.
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let calls = op.get("/api/calls?state=open").await.json();
    assert_eq!(calls.as_array().unwrap().len(), 0);
    let closed = op.get("/api/calls/1").await.json();
    assert_eq!(closed["outcome"], "handled_by_phone");
    c.close().await.unwrap();
    srv.stop().await.unwrap();
}
