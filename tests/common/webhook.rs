//! A webhook receiver on 127.0.0.1 that acknowledges every delivery of the outbox (200) and
//! records it: what tests/supervision_e2e.rs and tests/cluster_chaos.rs share.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

/// The secret the receiver checks the signatures with (`[[escalation]] secret`).
pub const SECRET: &str = "a-webhook-secret-of-32-characters!!";

/// One webhook delivery as received.
#[derive(Clone, Debug)]
pub struct Hook {
    /// When it came (before the answer was sent).
    pub at: Instant,
    pub path: String,
    pub event: String,
    /// `X-Vakt-Delivery`.
    pub delivery: String,
    pub signature_ok: bool,
    pub body: Value,
}

/// A webhook receiver on 127.0.0.1:0 that acknowledges everything.
pub async fn receiver() -> (SocketAddr, Arc<Mutex<Vec<Hook>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let got: Arc<Mutex<Vec<Hook>>> = Arc::default();
    let addr = serve_hooks(l, got.clone());
    (addr, got)
}

/// Serves the receiver on `l`, recording into `got`.
pub fn serve_hooks(l: tokio::net::TcpListener, got: Arc<Mutex<Vec<Hook>>>) -> SocketAddr {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Uri};
    let g = got.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let g = g.clone();
        async move {
            let h = |n: &str| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            let sig = h(vakt::outbox::SIGNATURE_HEADER);
            g.lock().unwrap().push(Hook {
                at: Instant::now(),
                path: uri.path().to_string(),
                event: h(vakt::outbox::EVENT_HEADER),
                delivery: h(vakt::outbox::DELIVERY_HEADER),
                signature_ok: vakt::outbox::verify_signature(SECRET.as_bytes(), &body, &sig),
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            });
            "ok"
        }
    });
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}
