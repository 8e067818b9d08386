//! Prometheus metrics of the webhook, served in the text format at `/metrics` on the health listener.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `website_webhook_admission_requests_total` | counter | `endpoint`, `operation`, `verdict` | AdmissionReviews answered |
//! | `website_webhook_admission_duration_seconds` | histogram | `endpoint` | time from the request's headers to its answer |
//! | `website_webhook_refused_requests_total` | counter | `reason` | bodies not read: too large, over capacity, too slow, malformed |
//! | `website_webhook_serving_certificate_expiry_timestamp_seconds` | gauge | | `notAfter` of the served leaf certificate |
//! | `website_webhook_ca_expiry_timestamp_seconds` | gauge | | `notAfter` of the self-managed CA (self-managed mode only) |
//! | `website_webhook_certificate_rotations_total` | counter | `certificate` | CAs and serving certificates made by the self-managed mode |
//! | `website_webhook_secret_access_reviews_total` | counter | `result` | SubjectAccessReviews for Websites with credentials: `allowed`, `denied`, `unanswered` |

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rustls_pki_types::CertificateDer;

use crate::capacity::BodyError;

/// The admission endpoint a request came to.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types, reason = "label values are lowercase")]
pub enum Endpoint {
    /// `/validate`
    validate,
    /// `/mutate`
    mutate,
}

impl Endpoint {
    /// The route it is served on.
    pub fn path(self) -> &'static str {
        match self {
            Self::validate => "/validate",
            Self::mutate => "/mutate",
        }
    }
}

/// What the webhook answered.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types, reason = "label values are lowercase")]
pub enum Verdict {
    /// Admitted unchanged.
    allowed,
    /// Admitted with a defaulting patch.
    patched,
    /// Refused.
    denied,
    /// Not an AdmissionReview: answered with HTTP 400.
    malformed,
}

/// The request's operation, as the API server named it (`none` when the body was not an AdmissionReview).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(clippy::upper_case_acronyms, non_camel_case_types, reason = "the admission API's own spelling")]
pub enum Operation {
    /// `CREATE`
    CREATE,
    /// `UPDATE`
    UPDATE,
    /// `DELETE`
    DELETE,
    /// `CONNECT`
    CONNECT,
    /// No AdmissionReview to read it from.
    none,
}

impl From<&kube::core::admission::Operation> for Operation {
    fn from(operation: &kube::core::admission::Operation) -> Self {
        use kube::core::admission::Operation as Op;
        match operation {
            Op::Create => Self::CREATE,
            Op::Update => Self::UPDATE,
            Op::Delete => Self::DELETE,
            Op::Connect => Self::CONNECT,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: Endpoint,
    operation: Operation,
    verdict: Verdict,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: Endpoint,
}

/// Why a body was not read.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types, reason = "label values are lowercase")]
pub enum Refusal {
    /// Over `--max-body-bytes` (HTTP 413).
    too_large,
    /// The byte budget is spent (HTTP 429).
    over_capacity,
    /// Not received within `--body-timeout-seconds` (HTTP 408).
    timed_out,
    /// A bad `Content-Length`, or the connection failed (HTTP 400).
    unreadable,
}

impl From<&BodyError> for Refusal {
    fn from(error: &BodyError) -> Self {
        match error {
            BodyError::TooLarge { .. } => Self::too_large,
            BodyError::OverCapacity => Self::over_capacity,
            BodyError::TimedOut(_) => Self::timed_out,
            BodyError::InvalidLength | BodyError::Read(_) => Self::unreadable,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: Refusal,
}

/// Which certificate the self-managed mode made.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types, reason = "label values are lowercase")]
pub enum Certificate {
    /// A CA: the first one, or the next one of a rotation.
    ca,
    /// A serving certificate.
    serving,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    certificate: Certificate,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccessLabels {
    result: AccessResult,
}

/// What a Secret access check found.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types, reason = "label values are lowercase")]
enum AccessResult {
    allowed,
    denied,
    unanswered,
}

/// The webhook's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<EndpointLabels, Histogram>,
    refused: Family<RefusalLabels, Counter>,
    certificate_expiry: Gauge,
    ca_expiry: Gauge,
    rotations: Family<CertificateLabels, Counter>,
    access_reviews: Family<AccessLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric, with no sample yet.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("website_webhook");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "AdmissionReviews answered, by endpoint, operation and verdict",
            requests.clone(),
        );
        // From 100 µs to about 1.6 s: the answer takes microseconds, a slow body up to the body deadline.
        let duration = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0001, 4.0, 8))
        });
        registry.register_with_unit(
            "admission_duration",
            "Time from a request's headers to its answer",
            prometheus_client::registry::Unit::Seconds,
            duration.clone(),
        );
        let refused = Family::<RefusalLabels, Counter>::default();
        registry.register("refused_requests", "Request bodies not read, by reason", refused.clone());
        let certificate_expiry = Gauge::default();
        registry.register(
            "serving_certificate_expiry_timestamp_seconds",
            "notAfter of the served leaf certificate, in seconds since the Unix epoch",
            certificate_expiry.clone(),
        );
        let ca_expiry = Gauge::default();
        registry.register(
            "ca_expiry_timestamp_seconds",
            "notAfter of the self-managed CA that issues the serving certificate, in seconds since the Unix epoch",
            ca_expiry.clone(),
        );
        let rotations = Family::<CertificateLabels, Counter>::default();
        registry.register(
            "certificate_rotations",
            "Certificates the self-managed mode made, CAs and serving certificates",
            rotations.clone(),
        );
        let access_reviews = Family::<AccessLabels, Counter>::default();
        registry.register(
            "secret_access_reviews",
            "SubjectAccessReviews asking whether a user may get the Secret a Website refers to, by result",
            access_reviews.clone(),
        );
        Self { registry, requests, duration, refused, certificate_expiry, ca_expiry, rotations, access_reviews }
    }

    /// Counts a Secret access check.
    pub fn access_reviewed(&self, outcome: crate::access::Outcome) {
        use crate::access::Outcome;
        let result = match outcome {
            Outcome::Allowed => AccessResult::allowed,
            Outcome::Denied => AccessResult::denied,
            Outcome::Unanswered => AccessResult::unanswered,
        };
        self.access_reviews.get_or_create(&AccessLabels { result }).inc();
    }

    /// Counts a certificate the self-managed mode made.
    pub fn rotated(&self, certificate: Certificate) {
        self.rotations.get_or_create(&CertificateLabels { certificate }).inc();
    }

    /// Records the expiry of the self-managed CA, given in PEM.
    pub fn ca_expires(&self, ca_pem: &str) {
        use rustls_pki_types::pem::PemObject as _;
        if let Some(not_after) = CertificateDer::from_pem_slice(ca_pem.as_bytes()).ok().and_then(|ca| not_after(&ca)) {
            self.ca_expiry.set(not_after);
        }
    }

    /// Counts an answered request and how long it took.
    pub fn answered(&self, endpoint: Endpoint, operation: Operation, verdict: Verdict, seconds: f64) {
        self.requests.get_or_create(&RequestLabels { endpoint, operation, verdict }).inc();
        self.duration.get_or_create(&EndpointLabels { endpoint }).observe(seconds);
    }

    /// Counts a body that was not read.
    pub fn refused(&self, error: &BodyError) {
        self.refused.get_or_create(&RefusalLabels { reason: error.into() }).inc();
    }

    /// The metrics in the Prometheus text format, the certificate's expiry read from the `chain` served now.
    pub fn encode(&self, chain: &[CertificateDer<'_>]) -> String {
        if let Some(not_after) = chain.first().and_then(|leaf| not_after(leaf)) {
            self.certificate_expiry.set(not_after);
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// `notAfter` of a DER certificate, in seconds since the Unix epoch.
fn not_after(certificate: &CertificateDer<'_>) -> Option<i64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}
