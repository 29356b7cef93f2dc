//! QUIC for the patrol link (`proto/patrol.md`): TLS 1.3 with rustls and its ring provider
//! only (set explicitly, never a process default), ALPN `vakt-patrol/1`, keep-alive and idle
//! timeout for patrols that move between mobile networks.
//!
//! The server's certificate comes from the configuration, or, for development, a self-signed
//! certificate is made on first start and kept in the data directory; its SHA-256
//! fingerprint is what a patrol client pins (`vakt patrol --fingerprint`). Clients verify
//! either against a CA file or against that pinned fingerprint.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

/// ALPN of the patrol protocol.
pub const ALPN: &[u8] = b"vakt-patrol/1";

/// A connection with nothing received for this long is closed (QUIC idle timeout).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// QUIC keep-alive interval, well inside the idle timeout and typical mobile NAT timeouts.
/// It also bounds how long a patrol takes to notice that the node it talked to died: its
/// next PING reaches the node that took over, which answers with a stateless reset
/// ([`endpoint_config`]). 5 s keeps a take-over (about 5 s) plus that within the 10 s a
/// patrol may be away; a PING is a few dozen bytes.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// What the stateless-reset key is derived under (with the identity's private key).
const RESET_KEY_LABEL: &[u8] = b"vakt patrol link: stateless reset key, v1";

/// File names of the development certificate in the data directory.
pub const DEV_CERT_FILE: &str = "patrol-dev-cert.pem";
/// File name of the development certificate's key in the data directory.
pub const DEV_KEY_FILE: &str = "patrol-dev-key.pem";

/// What can go wrong setting up QUIC.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// A certificate or key file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {detail}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The development certificate could not be made.
    #[error("cannot make a development certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// TLS refused the configuration.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// QUIC refused the TLS configuration.
    #[error("QUIC: {0}")]
    Quic(String),
}

/// A certificate chain and its key, with the fingerprint of the end-entity certificate.
pub struct Identity {
    /// The chain, end-entity first.
    pub certs: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the end-entity certificate (what clients pin).
    pub fingerprint: [u8; 32],
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is left out.
        f.debug_struct("Identity")
            .field("certs", &self.certs.len())
            .field("fingerprint", &fingerprint_hex(&self.fingerprint))
            .finish_non_exhaustive()
    }
}

/// SHA-256 of a certificate.
pub fn fingerprint(cert: &CertificateDer<'_>) -> [u8; 32] {
    Sha256::digest(cert.as_ref()).into()
}

/// A fingerprint as colon-separated upper-case hex (`AB:CD:...`), as tools print them.
pub fn fingerprint_hex(fp: &[u8; 32]) -> String {
    fp.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses a fingerprint given with or without colons, any case.
pub fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex.trim(), &mut out).ok()?;
    Some(out)
}

fn pem_err(path: &Path, detail: impl std::fmt::Display) -> QuicError {
    QuicError::Pem {
        path: path.to_owned(),
        detail: detail.to_string(),
    }
}

/// Reads a PEM certificate chain and key.
pub fn load_identity(cert_file: &Path, key_file: &Path) -> Result<Identity, QuicError> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| pem_err(cert_file, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(cert_file, e))?;
    let Some(first) = certs.first() else {
        return Err(pem_err(cert_file, "no certificate in the file"));
    };
    let fingerprint = fingerprint(first);
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| pem_err(key_file, e))?;
    Ok(Identity {
        certs,
        key,
        fingerprint,
    })
}

/// The development identity in `data_dir`: read if it is there, else made (self-signed for
/// `localhost`, `127.0.0.1` and `::1`, plus `extra_names`) and written, the key readable by
/// the owner only. Returns whether it was made now.
pub fn dev_identity(
    data_dir: &Path,
    extra_names: &[String],
) -> Result<(Identity, bool), QuicError> {
    let cert_path = data_dir.join(DEV_CERT_FILE);
    let key_path = data_dir.join(DEV_KEY_FILE);
    if cert_path.is_file() && key_path.is_file() {
        return Ok((load_identity(&cert_path, &key_path)?, false));
    }
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    names.extend(extra_names.iter().cloned());
    let made = rcgen::generate_simple_self_signed(names)?;
    write_file(
        &key_path,
        made.signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_file(&cert_path, made.cert.pem().as_bytes(), 0o644)?;
    Ok((load_identity(&cert_path, &key_path)?, true))
}

/// Where a server's certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentitySource {
    /// A PEM certificate chain and key.
    Files {
        /// The chain.
        cert: PathBuf,
        /// The key.
        key: PathBuf,
    },
    /// The development certificate kept in `dir` ([`dev_identity`]), made with `names`
    /// when it is not there.
    Development {
        /// The data directory.
        dir: PathBuf,
        /// Extra DNS names or addresses.
        names: Vec<String>,
    },
}

impl IdentitySource {
    /// Reads (or, for the development certificate, makes) the identity; a certificate made
    /// now is logged with a warning.
    pub fn load(&self) -> Result<Identity, QuicError> {
        match self {
            IdentitySource::Files { cert, key } => load_identity(cert, key),
            IdentitySource::Development { dir, names } => {
                let (id, made) = dev_identity(dir, names)?;
                if made {
                    tracing::warn!(
                        dir = %dir.display(),
                        "made a self-signed development certificate for the patrol link; configure patrol.cert_file and key_file for patrols on real networks"
                    );
                }
                Ok(id)
            }
        }
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), QuicError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| QuicError::File {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)
}

/// The one crypto provider of vakt's TLS (ring).
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    // 60 s fits in a VarInt; the fallback keeps quinn's default.
    if let Ok(idle) = quinn::IdleTimeout::try_from(IDLE_TIMEOUT) {
        t.max_idle_timeout(Some(idle));
    }
    // One stream per patrol session; a few more let a client reopen one without waiting.
    t.max_concurrent_bidi_streams(4u32.into());
    t.max_concurrent_uni_streams(0u32.into());
    t
}

/// The server side: TLS 1.3 only, ALPN `vakt-patrol/1`, the ring provider.
pub fn server_config(id: &Identity) -> Result<quinn::ServerConfig, QuicError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(id.certs.clone(), id.key.clone_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| QuicError::Quic(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport()));
    Ok(cfg)
}

/// The patrol link's endpoint, its stateless-reset key derived from the identity's private
/// key. Every node of a cluster serves the same certificate (the patrols pin it or its CA),
/// so every node derives the same key. A node that takes over from a dead leader then
/// answers a packet of the dead leader's connection (a patrol's next PING, through the moved
/// address) with a stateless reset the patrol accepts: the patrol knows at once that its
/// connection is gone and reconnects, instead of waiting out the idle timeout (60 s) on a
/// reset it would have to ignore. The key is an HMAC under a fixed label, so it reveals
/// nothing of the private key.
pub fn endpoint_config(id: &Identity) -> quinn::EndpointConfig {
    use ring::hmac;
    let derived = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, id.key.secret_der()),
        RESET_KEY_LABEL,
    );
    let mut config = quinn::EndpointConfig::new(Arc::new(hmac::Key::new(
        hmac::HMAC_SHA256,
        derived.as_ref(),
    )));
    // A node answers only packets whose connection id it could have made (quinn's ids carry
    // a keyed check): the ids are keyed alike on every node, so the node that took over
    // recognises the dead leader's ids as ones to reset.
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&derived.as_ref()[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    config
}

/// How a client checks the server.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Certificates signed by these CAs (a PEM file's certificates).
    Ca(Vec<CertificateDer<'static>>),
    /// Exactly the certificate with this SHA-256 fingerprint (the development certificate).
    Pinned([u8; 32]),
}

/// Reads the CA certificates of a PEM file.
pub fn load_ca(path: &Path) -> Result<Trust, QuicError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(path, e))?;
    if certs.is_empty() {
        return Err(pem_err(path, "no certificate in the file"));
    }
    Ok(Trust::Ca(certs))
}

/// The client side (patrol clients and tests).
pub fn client_config(trust: &Trust) -> Result<quinn::ClientConfig, QuicError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let mut tls = match trust {
        Trust::Ca(certs) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs {
                roots.add(c.clone())?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Pinned(fp) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                fingerprint: *fp,
                provider: provider(),
            }))
            .with_no_client_auth(),
    };
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| QuicError::Quic(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport()));
    Ok(cfg)
}

/// Accepts exactly the certificate with the pinned fingerprint (whatever its names or
/// issuer), and checks the handshake signatures with it as usual.
#[derive(Debug)]
struct Pinned {
    fingerprint: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if fingerprint(end_entity) == self.fingerprint {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server's certificate is not the pinned one".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_once(endpoint: quinn::Endpoint) {
        let Some(incoming) = endpoint.accept().await else {
            return;
        };
        let conn = incoming.await.expect("handshake");
        assert_eq!(
            conn.handshake_data()
                .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                .and_then(|h| h.protocol),
            Some(ALPN.to_vec())
        );
        let (mut send, mut recv) = conn.accept_bi().await.expect("stream");
        let mut len = [0u8; 4];
        recv.read_exact(&mut len).await.expect("length");
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        recv.read_exact(&mut body).await.expect("body");
        send.write_all(&len).await.expect("echo");
        send.write_all(&body).await.expect("echo");
        send.finish().expect("finish");
        conn.closed().await;
    }

    async fn roundtrip(server: &Identity, trust: &Trust) -> Result<Vec<u8>, String> {
        let ep = quinn::Endpoint::server(
            server_config(server).map_err(|e| e.to_string())?,
            "127.0.0.1:0".parse().unwrap(),
        )
        .map_err(|e| e.to_string())?;
        let addr = ep.local_addr().map_err(|e| e.to_string())?;
        let srv = tokio::spawn(echo_once(ep.clone()));
        let mut client =
            quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).map_err(|e| e.to_string())?;
        client.set_default_client_config(client_config(trust).map_err(|e| e.to_string())?);
        let conn = client
            .connect(addr, "localhost")
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let msg = br#"{"type":"ping","seq":1}"#;
        send.write_all(&(msg.len() as u32).to_be_bytes())
            .await
            .map_err(|e| e.to_string())?;
        send.write_all(msg).await.map_err(|e| e.to_string())?;
        let back = recv.read_to_end(1024).await.map_err(|e| e.to_string())?;
        conn.close(0u32.into(), b"done");
        srv.abort();
        ep.close(0u32.into(), b"done");
        Ok(back[4..].to_vec())
    }

    #[tokio::test]
    async fn dev_certificate_is_made_once_and_pinned_by_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let (id, made) = dev_identity(dir.path(), &[]).unwrap();
        assert!(made);
        let (again, made) = dev_identity(dir.path(), &[]).unwrap();
        assert!(!made, "kept in the data directory");
        assert_eq!(id.fingerprint, again.fingerprint);
        let mode = std::fs::metadata(dir.path().join(DEV_KEY_FILE))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o077,
            0,
            "the key is the owner's only"
        );
        assert!(!format!("{id:?}").contains("PRIVATE"));
        let hex = fingerprint_hex(&id.fingerprint);
        assert_eq!(parse_fingerprint(&hex), Some(id.fingerprint));

        let back = roundtrip(&id, &Trust::Pinned(id.fingerprint))
            .await
            .unwrap();
        assert_eq!(back, br#"{"type":"ping","seq":1}"#);
    }

    /// The address patrols reach (a moving address, as keepalived's): forwards the client's
    /// datagrams to the node in `to` and the node's back, on one socket each way.
    async fn moving_address(
        to: tokio::sync::watch::Receiver<std::net::SocketAddr>,
    ) -> std::net::SocketAddr {
        let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = front.local_addr().unwrap();
        let client = Arc::new(std::sync::Mutex::new(None));
        let (f, b, c) = (front.clone(), back.clone(), client.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = f.recv_from(&mut buf).await {
                *c.lock().unwrap() = Some(from);
                let node = *to.borrow();
                let _ = b.send_to(&buf[..n], node).await;
            }
        });
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, _)) = back.recv_from(&mut buf).await {
                let to = *client.lock().unwrap();
                if let Some(to) = to {
                    let _ = front.send_to(&buf[..n], to).await;
                }
            }
        });
        addr
    }

    fn node(config: quinn::EndpointConfig, id: &Identity) -> quinn::Endpoint {
        quinn::Endpoint::new(
            config,
            Some(server_config(id).unwrap()),
            std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
            Arc::new(quinn::TokioRuntime),
        )
        .unwrap()
    }

    /// A patrol connected to a node that dies without a word (the moving address now leads
    /// to the other node, and the first sends nothing) hears a stateless reset from the node
    /// that serves the address with the same identity, at its next packet. A node with a key
    /// of its own could not reset it: the patrol would wait out the idle timeout.
    #[tokio::test]
    async fn a_node_serving_the_same_identity_resets_a_dead_nodes_connections() {
        let dir = tempfile::tempdir().unwrap();
        let (id, _) = dev_identity(dir.path(), &[]).unwrap();
        for same_key in [true, false] {
            let config = |id: &Identity| {
                if same_key {
                    endpoint_config(id)
                } else {
                    quinn::EndpointConfig::default()
                }
            };
            let a = node(config(&id), &id);
            let b = node(config(&id), &id);
            let (lead, to) = tokio::sync::watch::channel(a.local_addr().unwrap());
            let addr = moving_address(to).await;
            let accepted = tokio::spawn({
                let a = a.clone();
                async move { a.accept().await.unwrap().await.unwrap() }
            });
            let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
            client
                .set_default_client_config(client_config(&Trust::Pinned(id.fingerprint)).unwrap());
            let conn = client.connect(addr, "localhost").unwrap().await.unwrap();
            let _held = accepted.await.unwrap();
            // Node a dies; the address moves to node b.
            lead.send(b.local_addr().unwrap()).unwrap();
            // The patrol's next packet (a keep-alive within KEEP_ALIVE) reaches b.
            let ended = tokio::time::timeout(KEEP_ALIVE * 2, conn.closed()).await;
            if same_key {
                assert!(
                    matches!(ended, Ok(quinn::ConnectionError::Reset)),
                    "{ended:?}"
                );
            } else {
                assert!(ended.is_err(), "a foreign reset was accepted: {ended:?}");
            }
            b.close(0u32.into(), b"done");
            a.close(0u32.into(), b"done");
        }
    }

    #[tokio::test]
    async fn a_wrong_pin_or_an_unknown_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (id, _) = dev_identity(dir.path(), &[]).unwrap();
        let other = tempfile::tempdir().unwrap();
        let (stranger, _) = dev_identity(other.path(), &[]).unwrap();
        assert!(
            roundtrip(&id, &Trust::Pinned(stranger.fingerprint))
                .await
                .is_err()
        );
        assert!(
            roundtrip(&id, &Trust::Ca(stranger.certs.clone()))
                .await
                .is_err()
        );
        // Its own certificate as the CA works (self-signed for localhost).
        let ca = load_ca(&dir.path().join(DEV_CERT_FILE)).unwrap();
        assert!(roundtrip(&id, &ca).await.is_ok());
    }
}
