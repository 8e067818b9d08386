//! Certificates for the `Website` admission webhook.
//!
//! The kube-apiserver calls admission webhooks over TLS and verifies the webhook's serving
//! certificate against the `caBundle` of the `ValidatingWebhookConfiguration` /
//! `MutatingWebhookConfiguration`. This crate provides what that needs, without cert-manager:
//!
//! - a [`CertificateAuthority`] (ECDSA P-256, self-signed) that can be generated, stored as PEM
//!   (e.g. in a Kubernetes Secret) and loaded back with [`CertificateAuthority::from_pem`];
//! - serving certificates issued by it for a Service's in-cluster DNS names
//!   ([`service_dns_names`]), extra DNS names and IP addresses
//!   ([`CertificateAuthority::issue_serving`]);
//! - the `caBundle` value ([`ca_bundle_base64`]);
//! - writing `ca.crt`, `tls.crt` and `tls.key` safely ([`write_files`], [`replace_file`]);
//! - reading certificates back ([`inspect`]);
//! - deciding when a kept CA and serving certificate are renewed, in a way that never makes a client distrust
//!   the certificate being served ([`rotation`]; the webhook's `--self-managed-certs` mode runs it).
//!
//! The `website-certs` binary wraps this for scripts: it writes the files and prints the
//! `caBundle` on stdout, e.g. `CA_BUNDLE=$(website-certs --out-dir certs --service
//! website-webhook --namespace website-system)`.
//!
//! Validity periods default to [`DEFAULT_CA_VALIDITY`] (3650 days) for the CA and
//! [`DEFAULT_SERVING_VALIDITY`] (365 days) for serving certificates, and must lie between
//! [`MIN_VALIDITY`] and [`MAX_VALIDITY`]. Every certificate's `notBefore` is backdated by
//! [`CLOCK_SKEW_ALLOWANCE`] so that peers with a slightly slow clock accept it at once.
//!
//! This crate writes files with Unix permissions and therefore builds on Unix only.
//!
//! # Example
//!
//! ```
//! use website_certs::{
//!     CertificateAuthority, DEFAULT_CA_VALIDITY, DEFAULT_SERVING_VALIDITY, SubjectName,
//!     ca_bundle_base64, service_dns_names,
//! };
//!
//! let ca = CertificateAuthority::generate("website-webhook-ca", DEFAULT_CA_VALIDITY)?;
//! let mut names: Vec<SubjectName> = service_dns_names("website-webhook", "website-system")?
//!     .into_iter()
//!     .map(SubjectName::Dns)
//!     .collect();
//! names.push(SubjectName::Ip([127, 0, 0, 1].into()));
//! let serving = ca.issue_serving(&names, DEFAULT_SERVING_VALIDITY)?;
//! assert!(serving.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
//!
//! // Later, e.g. in the controller, from the PEM kept in a Secret:
//! let same_ca = CertificateAuthority::from_pem(ca.cert_pem(), ca.key_pem())?;
//! let renewed = same_ca.issue_serving(&names, DEFAULT_SERVING_VALIDITY)?;
//! assert!(renewed.not_after() <= same_ca.not_after());
//!
//! // The caBundle for the webhook configuration stays the same.
//! let ca_bundle = ca_bundle_base64(same_ca.cert_pem());
//! assert_eq!(ca_bundle, ca_bundle_base64(ca.cert_pem()));
//! # Ok::<(), website_certs::Error>(())
//! ```

#[cfg(not(unix))]
compile_error!("website-certs sets Unix file permissions and supports Unix targets only");

mod ca;
mod error;
mod files;
pub mod inspect;
mod names;
pub mod rotation;
pub mod serving;
mod validity;

use base64::Engine as _;

pub use ca::{CertificateAuthority, ServingCertificate};
pub use error::{Error, Result};
pub use files::{
    CA_CERT_FILE, CA_KEY_FILE, TLS_CERT_FILE, TLS_KEY_FILE, WrittenFiles, replace_file, write_files,
    write_files_with_ca_key,
};
pub use names::{
    CLUSTER_DOMAIN, MAX_DNS_LABEL_LEN, MAX_DNS_NAME_LEN, SubjectName, service_dns_names, validate_dns_name,
};
pub use validity::{
    CLOCK_SKEW_ALLOWANCE, DEFAULT_CA_VALIDITY, DEFAULT_SERVING_VALIDITY, MAX_VALIDITY, MIN_VALIDITY, days,
};

/// Encodes PEM text with standard (padded) base64, as the `caBundle` field of a webhook
/// configuration's `clientConfig` expects when written in YAML or JSON.
///
/// ```
/// assert_eq!(website_certs::ca_bundle_base64("PEM\n"), "UEVNCg==");
/// ```
#[must_use]
pub fn ca_bundle_base64(pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(pem.as_bytes())
}
