//! SIP Digest authentication of SCAIP devices (RFC 3261 §22, RFC 2617; MD5 only, Basic
//! refused) against the device registry's `sip_user` and `sip_password`.
//!
//! Nonces are stateless (an HMAC over their time and serial, `vakt_proto::sip::make_nonce`),
//! good for `nonce_secs`; a credential is good for one request: its `uri` must be the
//! request's, and its nonce count (or, without qop, its nonce) is not accepted twice. The
//! SIP endpoint ([`crate::transport::sip`]) asks through [`crate::transport::sip::ScaipHandler`]
//! and sends the `401` with the challenge made here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::model::SipPassword;
use crate::registers::devices::Registry;
use vakt_proto::sip::{self, AuthError, Message, NonceCheck};

/// Why a request is not authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unauthenticated {
    /// No credentials: challenge (not a failure).
    Challenge,
    /// Credentials that do not pass, with the metric reason; `stale` asks the device to
    /// retry with the new nonce without asking its user.
    Refused {
        /// One of the reasons of `vakt_scaip_auth_failures_total`.
        reason: &'static str,
        /// Challenge with `stale=true`.
        stale: bool,
    },
}

/// The Digest side of the SCAIP endpoint: the realm, the nonce secret, the nonce counts.
pub struct Digest {
    realm: String,
    nonce_secs: i64,
    nonce_secret: [u8; 32],
    /// Nonce counts of authenticated requests (replays refused).
    nonce_counts: Mutex<sip::NonceCounts>,
    /// The serial of the next nonce (they only go up; see `sip::NonceCounts`).
    nonce_serial: AtomicU64,
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Digest")
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

impl Digest {
    /// Digest in `realm` with nonces good for `nonce_secs`, under a new random secret.
    pub fn new(realm: String, nonce_secs: i64) -> Digest {
        let mut nonce_secret = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut nonce_secret[..]);
        Digest {
            realm,
            nonce_secs,
            nonce_secret,
            nonce_counts: Mutex::new(sip::NonceCounts::new(nonce_secs)),
            nonce_serial: AtomicU64::new(1),
        }
    }

    /// Checks the Digest credentials of a request to `uri` against `registry`; the SIP user
    /// on success. A credential is good for one request: its `uri` must be the request's,
    /// and its nonce count (or, without qop, its nonce) is not accepted twice.
    pub fn authenticate(
        &self,
        msg: &Message<'_>,
        method: &str,
        uri: &str,
        registry: &Registry,
    ) -> Result<String, Unauthenticated> {
        self.authenticate_with(msg, method, uri, |user| registry.sip_password(user))
    }

    /// As [`Digest::authenticate`], with the passwords from `password_of` (a user name to
    /// its password; `None`: unknown user): a trunk's one user, say.
    pub fn authenticate_with<'p>(
        &self,
        msg: &Message<'_>,
        method: &str,
        uri: &str,
        password_of: impl FnOnce(&str) -> Option<&'p SipPassword>,
    ) -> Result<String, Unauthenticated> {
        let Some(value) = msg.header("Authorization") else {
            return Err(Unauthenticated::Challenge);
        };
        let creds = match sip::parse_authorization(value) {
            Ok(c) => c,
            Err(e) => {
                let reason = match e {
                    AuthError::Basic => "basic",
                    _ => "malformed",
                };
                return Err(Unauthenticated::Refused {
                    reason,
                    stale: false,
                });
            }
        };
        let refused = |reason, stale| Err(Unauthenticated::Refused { reason, stale });
        if creds.realm != self.realm {
            return refused("realm", false);
        }
        if !sip::uri_matches(&creds.uri, uri) {
            return refused("uri", false);
        }
        let now = jiff::Timestamp::now().as_second();
        let fresh = sip::check_nonce(&self.nonce_secret, &creds.nonce, now, self.nonce_secs);
        if fresh == NonceCheck::Invalid {
            return refused("bad_nonce", false);
        }
        let Some(password) = password_of(&creds.username) else {
            return refused("unknown_user", false);
        };
        let ha1 = sip::ha1(&creds.username, &self.realm, password.expose());
        if !sip::verify(&creds, method, &ha1) {
            return refused("bad_response", false);
        }
        if fresh == NonceCheck::Stale {
            return refused("stale", true);
        }
        // A fresh nonce is ours and well-formed, so its parts read.
        let parts = sip::nonce_parts(&creds.nonce).unwrap_or((now, 0));
        let counted = self
            .nonce_counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check(&creds.username, &creds, parts, now);
        if let Err(e) = counted {
            // stale=true: an honest device that reused its nonce takes the new one.
            return refused(e.as_str(), true);
        }
        Ok(creds.username.into_owned())
    }

    /// A `WWW-Authenticate` value with a new nonce.
    pub fn challenge(&self, stale: bool) -> String {
        let nonce = sip::make_nonce(
            &self.nonce_secret,
            jiff::Timestamp::now().as_second(),
            self.nonce_serial.fetch_add(1, Ordering::Relaxed),
        );
        sip::challenge(&self.realm, &nonce, stale)
    }
}
