//! `[[escalation]]`: the webhook endpoints that receive escalation events.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Who an endpoint (and an event) is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecipientKind {
    /// A telecom provider (told at once about an incident on its network).
    Telecom,
    /// A home-care provider (given the extra-visit list of its subscribers).
    CareProvider,
    /// An installer or supplier of devices (given work orders).
    Installer,
    /// The municipality's care system (told of executions started and ended, health
    /// changes received, key handovers signed and alarms handled), by municipality.
    CareSystem,
}

impl RecipientKind {
    /// The stable name, as in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientKind::Telecom => "telecom",
            RecipientKind::CareProvider => "care_provider",
            RecipientKind::Installer => "installer",
            RecipientKind::CareSystem => "care_system",
        }
    }
}

impl fmt::Display for RecipientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The key an endpoint signs its bodies with. `Debug` never prints it, and it cannot be
/// serialised.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> WebhookSecret {
        WebhookSecret(s.into())
    }

    /// The secret itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for WebhookSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(WebhookSecret)
    }
}

/// Shortest secret accepted (bytes): HMAC-SHA256 keys shorter than this are guessable.
pub const MIN_SECRET_BYTES: usize = 16;

/// Longest endpoint name (bytes).
pub const MAX_NAME_BYTES: usize = 64;

/// Longest URL (bytes).
pub const MAX_URL_BYTES: usize = 2048;

/// One `[[escalation]]` endpoint: a webhook that receives the events of one kind of
/// recipient, signed with its own secret.
///
/// ```toml
/// [[escalation]]
/// name = "telia-noc"
/// kind = "telecom"
/// url = "https://noc.example.net/vakt"
/// secret = "a long random string shared with the receiver"
/// matches = ["Telia"]
/// ```
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// Unique name (letters, digits, `.`, `_`, `-`; at most 64): in logs, metrics and the
    /// console. The store keeps the pending deliveries under it: renaming an endpoint leaves
    /// them behind until the old name is configured again.
    pub name: String,
    /// Which recipients it is for: `telecom`, `care_provider`, `installer` or
    /// `care_system` (matched by municipality).
    pub kind: RecipientKind,
    /// Where events are POSTed: an `http` or `https` URL (no user name or password in it;
    /// the body is signed instead). Redirects are not followed. Plain `http` sends personal
    /// data unencrypted: use it only on a trusted network.
    pub url: String,
    /// The key of the HMAC-SHA256 signature in `X-Vakt-Signature` (at least 16 bytes), shared
    /// with the receiver. Never logged.
    pub secret: WebhookSecret,
    /// The telecom operators, care provider ids or installers (as in the registers) this
    /// endpoint is for, compared without regard to case; empty = every one of its kind.
    #[serde(default)]
    pub matches: Vec<String>,
}

/// Shows the URL's origin only: its path or query may hold a token.
impl fmt::Debug for EscalationConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EscalationConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &format_args!("{}/…", self.origin()))
            .field("secret", &self.secret)
            .field("matches", &self.matches)
            .finish()
    }
}

impl EscalationConfig {
    /// Whether an event for `kind` and `key` goes to this endpoint.
    pub fn accepts(&self, kind: RecipientKind, key: &str) -> bool {
        if kind != self.kind {
            return false;
        }
        if self.matches.is_empty() {
            return true;
        }
        let key = key.trim().to_lowercase();
        self.matches.iter().any(|m| m.trim().to_lowercase() == key)
    }

    /// The URL's scheme, host and port, without path or query (which may hold a token): what
    /// logs may show.
    pub fn origin(&self) -> String {
        match self.url.parse::<hyper::Uri>() {
            Ok(u) => format!(
                "{}://{}",
                u.scheme_str().unwrap_or("?"),
                u.authority().map(|a| a.as_str()).unwrap_or("?")
            ),
            Err(_) => "<invalid url>".into(),
        }
    }

    /// Whether the URL is plain `http` to a host other than this machine.
    pub fn is_plain_http_remote(&self) -> bool {
        match self.url.parse::<hyper::Uri>() {
            Ok(u) => {
                u.scheme_str() == Some("http")
                    && !matches!(
                        u.host()
                            .map(|h| h.trim_start_matches('[').trim_end_matches(']')),
                        Some("localhost" | "::1") | None
                    )
                    && !u.host().is_some_and(|h| h.starts_with("127."))
            }
            Err(_) => false,
        }
    }

    /// What is wrong with this endpoint (empty if nothing), each problem naming it.
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        let name = &self.name;
        if name.is_empty()
            || name.len() > MAX_NAME_BYTES
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            errs.push(format!(
                "escalation name {name:?} must be 1..=64 letters, digits, '.', '_' or '-'"
            ));
        }
        if let Some(p) = url_problem(&self.url) {
            errs.push(format!("escalation {name:?}: url {p}"));
        }
        if self.secret.expose().len() < MIN_SECRET_BYTES {
            errs.push(format!(
                "escalation {name:?}: secret must be at least {MIN_SECRET_BYTES} bytes"
            ));
        }
        if self.matches.iter().any(|m| m.trim().is_empty()) {
            errs.push(format!(
                "escalation {name:?}: matches must not hold an empty name"
            ));
        }
        errs
    }
}

/// Why a URL cannot be used (never echoes the URL, which may hold a token).
fn url_problem(url: &str) -> Option<&'static str> {
    if url.len() > MAX_URL_BYTES {
        return Some("is longer than 2048 bytes");
    }
    let Ok(u) = url.parse::<hyper::Uri>() else {
        return Some("is not a valid URL");
    };
    if !matches!(u.scheme_str(), Some("http" | "https")) {
        return Some("must start with http:// or https://");
    }
    let Some(auth) = u.authority() else {
        return Some("has no host");
    };
    if auth.as_str().contains('@') {
        return Some("must not hold a user name or password (the body is signed instead)");
    }
    if auth.host().is_empty() {
        return Some("has no host");
    }
    None
}

/// What is wrong with a list of endpoints: each one's problems, and names used twice.
pub fn validate(endpoints: &[EscalationConfig]) -> Vec<String> {
    let mut errs = Vec::new();
    for (i, e) in endpoints.iter().enumerate() {
        errs.extend(e.problems());
        if endpoints[..i].iter().any(|o| o.name == e.name) {
            errs.push(format!("escalation name {:?} is used twice", e.name));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        escalation: Vec<EscalationConfig>,
    }

    fn parse(s: &str) -> Result<Vec<EscalationConfig>, toml::de::Error> {
        toml::from_str::<File>(s).map(|f| f.escalation)
    }

    const GOOD: &str = r#"
        [[escalation]]
        name = "telia-noc"
        kind = "telecom"
        url = "https://noc.example.net/hooks/vakt?token=abc"
        secret = "0123456789abcdef-very-secret"
        matches = ["Telia"]

        [[escalation]]
        name = "hemtjanst"
        kind = "care_provider"
        url = "http://127.0.0.1:9000/x"
        secret = "another-long-secret-here"
    "#;

    #[test]
    fn parses_validates_and_hides_the_secret() {
        let e = parse(GOOD).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].kind, RecipientKind::Telecom);
        assert_eq!(e[1].kind, RecipientKind::CareProvider);
        assert!(e[1].matches.is_empty());
        assert_eq!(validate(&e), Vec::<String>::new());
        let dbg = format!("{e:?}");
        assert!(!dbg.contains("very-secret"), "{dbg}");
        assert!(!dbg.contains("token=abc"), "{dbg}");
        assert!(dbg.contains("https://noc.example.net/…"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
        assert_eq!(e[0].origin(), "https://noc.example.net");
        assert!(!e[0].is_plain_http_remote());
        assert!(!e[1].is_plain_http_remote());
    }

    #[test]
    fn rejects_unknown_keys_and_kinds() {
        assert!(parse(&GOOD.replace("matches", "match")).is_err());
        assert!(parse(&GOOD.replace("\"telecom\"", "\"telco\"")).is_err());
        assert!(parse(&GOOD.replace("secret = \"another-long-secret-here\"\n", "")).is_err());
    }

    #[test]
    fn finds_problems() {
        let mut e = parse(GOOD).unwrap();
        e[1].name = "telia-noc".into();
        e[0].secret = WebhookSecret::new("short");
        e[0].matches.push(" ".into());
        let errs = validate(&e);
        assert!(errs.iter().any(|p| p.contains("at least 16")), "{errs:?}");
        assert!(errs.iter().any(|p| p.contains("used twice")), "{errs:?}");
        assert!(errs.iter().any(|p| p.contains("empty name")), "{errs:?}");
        for (url, why) in [
            ("ftp://x.example/", "http"),
            ("/relative", "http"),
            ("https://user:pw@x.example/", "user name"),
            ("not a url", "valid"),
        ] {
            let mut one = parse(GOOD).unwrap().remove(0);
            one.url = url.into();
            let p = one.problems();
            assert!(p.iter().any(|p| p.contains(why)), "{url}: {p:?}");
            assert!(!p.iter().any(|p| p.contains("pw@")), "never echo the URL");
        }
        let mut one = parse(GOOD).unwrap().remove(0);
        one.name = "bad name".into();
        assert_eq!(one.problems().len(), 1);
        one.url = "http://10.1.2.3/hook".into();
        assert!(one.is_plain_http_remote());
    }

    #[test]
    fn selects_by_kind_and_match() {
        let e = parse(GOOD).unwrap();
        assert!(e[0].accepts(RecipientKind::Telecom, "telia"));
        assert!(e[0].accepts(RecipientKind::Telecom, " TELIA "));
        assert!(!e[0].accepts(RecipientKind::Telecom, "Tele2"));
        assert!(!e[0].accepts(RecipientKind::CareProvider, "Telia"));
        assert!(e[1].accepts(RecipientKind::CareProvider, "anyone"));
        assert!(!e[1].accepts(RecipientKind::Installer, "anyone"));
    }
}
