//! What a rotation works on: the kept certificates, the pair being served, and when the current CA was first seen
//! trusted everywhere.

use std::fmt;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::inspect::{self, fingerprint};

/// The CA and serving certificate as kept (in the webhook's Secret), all PEM.
///
/// The [`Debug`] output names certificates by fingerprint and never contains a key.
#[derive(Clone, PartialEq, Eq)]
pub struct Material {
    /// The current CA certificate: the one that issues new serving certificates.
    pub ca_cert: String,
    /// The current CA's private key.
    pub ca_key: String,
    /// The serving certificate.
    pub tls_cert: String,
    /// The serving certificate's private key.
    pub tls_key: String,
    /// Every CA clients must trust, current first, one canonical PEM block each
    /// (see [`inspect::split_certificates`]).
    pub bundle: Vec<String>,
}

impl Material {
    /// The bundle as one PEM text: what goes into a `caBundle`.
    #[must_use]
    pub fn bundle_pem(&self) -> String {
        self.bundle.iter().map(|pem| format!("{}\n", pem.trim_end())).collect()
    }

    /// The serving certificate and its key.
    #[must_use]
    pub fn serving(&self) -> ServingPair {
        ServingPair { cert: self.tls_cert.clone(), key: self.tls_key.clone() }
    }
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bundle: Vec<String> = self.bundle.iter().map(|pem| describe(pem)).collect();
        f.debug_struct("Material")
            .field("ca_cert", &describe(&self.ca_cert))
            .field("ca_key", &"[redacted]")
            .field("tls_cert", &describe(&self.tls_cert))
            .field("tls_key", &"[redacted]")
            .field("bundle", &bundle)
            .finish()
    }
}

/// A serving certificate and its private key, PEM.
///
/// The [`Debug`] output names the certificate by fingerprint and never contains the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ServingPair {
    /// The certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

impl ServingPair {
    /// Why this pair cannot be served at `now`, if it cannot: the key does not belong to the certificate, or the
    /// certificate is not valid (yet or any more).
    #[must_use]
    pub fn unservable(&self, now: OffsetDateTime) -> Option<&'static str> {
        if !inspect::key_matches(&self.cert, &self.key) {
            Some("the serving certificate does not load with its key")
        } else if !inspect::is_valid_at(&self.cert, now) {
            Some("the serving certificate is not valid now")
        } else {
            None
        }
    }
}

impl fmt::Debug for ServingPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServingPair").field("cert", &describe(&self.cert)).field("key", &"[redacted]").finish()
    }
}

fn describe(pem: &str) -> String {
    fingerprint(pem).unwrap_or_else(|| "(not a certificate)".to_owned())
}

/// Since when a CA has been seen in the `caBundle` of every webhook configuration, as kept next to the
/// certificates so that every replica, and every restart, waits for the same moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustRecord {
    /// The CA's [`fingerprint`].
    pub ca: String,
    /// When it was first seen everywhere, to the second.
    pub since: OffsetDateTime,
}

impl TrustRecord {
    /// A record that `ca_pem` has been trusted everywhere since `since` (truncated to whole seconds, as it is
    /// written down); `None` if `ca_pem` is not a certificate.
    #[must_use]
    pub fn new(ca_pem: &str, since: OffsetDateTime) -> Option<Self> {
        let since = since.replace_nanosecond(0).unwrap_or(since);
        Some(Self { ca: fingerprint(ca_pem)?, since })
    }

    /// Whether the record is about `ca_pem`.
    #[must_use]
    pub fn is_for(&self, ca_pem: &str) -> bool {
        fingerprint(ca_pem).is_some_and(|ca| ca == self.ca)
    }

    /// Reads what its [`Display`](std::fmt::Display) wrote: `<RFC 3339 time> <fingerprint>`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let (since, ca) = text.trim().split_once(' ')?;
        let since = OffsetDateTime::parse(since, &Rfc3339).ok()?;
        ca.starts_with("sha256:").then(|| Self { ca: ca.to_owned(), since })
    }
}

impl fmt::Display for TrustRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since = self.since.format(&Rfc3339).map_err(|_| fmt::Error)?;
        write!(f, "{since} {}", self.ca)
    }
}
