//! Self-managed certificates: the webhook keeps its own CA and serving certificate in a Secret, writes the serving
//! pair to the files the TLS reloader watches, and puts the Secret's CA bundle into the `caBundle` of its two
//! webhook configurations.
//!
//! What to do is decided by [`website_certs::rotation`], purely: read its module documentation for the rules
//! (two-phase CA rotation, every valid CA kept in the bundle). This module is the shell around it:
//! [`CertificateKeeper`] reads the Secret and both configurations, writes what the plan says and keeps
//! [`crate::readiness::Readiness`] up to date; `configurations` reads and patches the `caBundle`s; `secret` is
//! the Secret's layout; `watch` notices changes.
//!
//! How replicas agree:
//! - The Secret is the one truth. Every write of it carries the `resourceVersion` read; a conflict means another
//!   replica wrote first, and the keeper reads everything again and decides anew. A missing Secret is created by
//!   server-side apply with a field manager of its own per process and without forcing, so two replicas creating
//!   it with different contents conflict too.
//! - Configurations only ever get the Secret's bundle, by a JSON patch that tests the `resourceVersion` read.
//!   The configuration is read before the Secret, so a bundle that lacks a CA added since cannot be written over
//!   the injection of that CA (which changed the `resourceVersion`).
//! - Phase two of a CA rotation waits until the new CA has been in the `caBundle` of both configurations for
//!   `--ca-rotation-grace-seconds`, counted from the time recorded in the Secret's [`TRUST_ANNOTATION`], so that
//!   replicas and restarts wait for the same moment. The record goes when the CA is seen missing from a
//!   configuration, and the grace starts again once it is back.
//! - A replica serves the Secret's certificate only once the CA that issued it is in both `caBundle`s (or when
//!   it has nothing servable), so it never serves what the API server distrusts while it has a choice.
//! - A deleted or emptied Secret is recreated from the last material the keeper saw; a keeper that saw none
//!   (restarted meanwhile) makes a new CA, keeps serving what it serves, and keeps every CA the configurations
//!   trust, so that no replica's certificate stops being trusted. It does not recreate the Secret while a
//!   configuration cannot be read.

mod configurations;
mod keeper;
mod secret;
mod watch;

pub use keeper::CertificateKeeper;

/// Secret key holding every CA the webhook configurations must trust, current first, as concatenated PEM.
pub const CA_BUNDLE_KEY: &str = "ca-bundle.crt";

/// Annotation of the Secret recording since when its current CA has been in the `caBundle` of both webhook
/// configurations: `<RFC 3339 time> sha256:<fingerprint of the CA>`.
pub const TRUST_ANNOTATION: &str = "webhook.extensions.example.com/ca-trusted-since";

/// Field manager of the webhook's writes.
const FIELD_MANAGER: &str = "website-webhook";

/// Why self-managed certificates could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The flags do not describe a usable policy.
    #[error("failed to configure self-managed certificates: {0}")]
    Config(String),
    /// A certificate could not be generated or issued, or its file could not be written.
    #[error("failed to {action}: {source}")]
    Certificate {
        /// What was being done.
        action: &'static str,
        /// Why it failed.
        #[source]
        source: website_certs::Error,
    },
    /// A call to the API server failed.
    #[error("failed to {action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The API server's or the client's error.
        #[source]
        source: kube::Error,
    },
    /// A webhook configuration to keep does not exist.
    #[error("failed to find {kind} {name}: the webhook cannot put its CA there until it exists")]
    MissingConfiguration {
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
    },
    /// Other writers kept changing what one check read.
    #[error("failed to bring {what} up to date: they kept changing while being written ({reason})")]
    Contended {
        /// What.
        what: String,
        /// The last change seen.
        reason: String,
    },
}

/// Result of self-managed certificate operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Flags of the self-managed certificate mode.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Options {
    /// Keep the CA and serving certificate in a Secret, write them to --tls-cert-file/--tls-key-file, and inject the
    /// CA into the webhook configurations' caBundle; renew both before they expire. Needs access to the API server.
    #[arg(long = "self-managed-certs", env = "WEBHOOK_SELF_MANAGED_CERTS")]
    pub enabled: bool,

    /// Name of the Secret holding the certificates.
    #[arg(long, env = "WEBHOOK_CERT_SECRET_NAME", required_if_eq("enabled", "true"))]
    pub cert_secret_name: Option<String>,

    /// Namespace of that Secret and of the webhook's Service.
    #[arg(long, env = "WEBHOOK_CERT_SECRET_NAMESPACE", required_if_eq("enabled", "true"))]
    pub cert_secret_namespace: Option<String>,

    /// Name of the webhook's Service; its in-cluster DNS names go into the serving certificate.
    #[arg(long, env = "WEBHOOK_SERVICE_NAME", required_if_eq("enabled", "true"))]
    pub service_name: Option<String>,

    /// Further DNS names or IP addresses for the serving certificate (repeatable, or comma-separated).
    #[arg(long = "extra-san", env = "WEBHOOK_EXTRA_SANS", value_delimiter = ',')]
    pub extra_sans: Vec<String>,

    /// ValidatingWebhookConfiguration whose caBundle this webhook keeps.
    #[arg(long, env = "WEBHOOK_VALIDATING_CONFIGURATION")]
    pub validating_webhook_configuration: Option<String>,

    /// MutatingWebhookConfiguration whose caBundle this webhook keeps.
    #[arg(long, env = "WEBHOOK_MUTATING_CONFIGURATION")]
    pub mutating_webhook_configuration: Option<String>,

    /// Days a generated CA is valid.
    #[arg(long, env = "WEBHOOK_CA_VALIDITY_DAYS", default_value_t = 3650)]
    pub ca_validity_days: u64,

    /// Days before the CA expires that a new one is made.
    #[arg(long, env = "WEBHOOK_CA_RENEW_BEFORE_DAYS", default_value_t = 90)]
    pub ca_renew_before_days: u64,

    /// Days a serving certificate is valid.
    #[arg(long, env = "WEBHOOK_SERVING_VALIDITY_DAYS", default_value_t = 365)]
    pub serving_validity_days: u64,

    /// Days before the serving certificate expires that a new one is issued.
    #[arg(long, env = "WEBHOOK_SERVING_RENEW_BEFORE_DAYS", default_value_t = 30)]
    pub serving_renew_before_days: u64,

    /// Seconds a new CA must have been in the caBundle of both webhook configurations before certificates it
    /// issued are served (phase two of a CA rotation). API servers pick a changed configuration up at different
    /// times.
    #[arg(long, env = "WEBHOOK_CA_ROTATION_GRACE_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=86400))]
    pub ca_rotation_grace_seconds: u64,

    /// Seconds between two checks of the Secret and the webhook configurations, besides the checks that changes
    /// to them trigger.
    #[arg(long, env = "WEBHOOK_CERT_CHECK_INTERVAL_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub cert_check_interval_seconds: u64,
}
