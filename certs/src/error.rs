//! The crate's error type.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use time::OffsetDateTime;

use crate::validity::{MAX_VALIDITY, MIN_VALIDITY, describe_duration};

/// Everything that can go wrong while generating, loading, issuing or writing certificates.
///
/// Messages are single lines starting with "failed to ..."; the underlying cause, when there is
/// one, is available through [`std::error::Error::source`] rather than repeated in the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A DNS name given as a subject alternative name is not a valid lowercase RFC 1123 name.
    #[error(
        "failed to validate DNS name {name:?}: {reason}; expected a lowercase RFC 1123 DNS name \
         such as \"webhook.default.svc\" (dot-separated labels of a-z, 0-9 and '-', each 1-63 \
         characters and not starting or ending with '-', at most 253 characters in total)"
    )]
    InvalidDnsName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A Service name is not a valid Kubernetes Service name (an RFC 1035 label).
    #[error(
        "failed to validate service name {name:?}: {reason}; expected a Kubernetes Service name, \
         an RFC 1035 label (1-63 characters of a-z, 0-9 and '-', starting with a letter and \
         ending with a letter or digit)"
    )]
    InvalidServiceName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A namespace is not a valid Kubernetes namespace name (an RFC 1123 label).
    #[error(
        "failed to validate namespace {name:?}: {reason}; expected a Kubernetes namespace name, \
         an RFC 1123 label (1-63 characters of a-z, 0-9 and '-', starting and ending with a \
         letter or digit)"
    )]
    InvalidNamespace {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The common name requested for a CA is unusable.
    #[error(
        "failed to validate CA common name {name:?}: {reason}; expected 1-64 characters without \
         control characters"
    )]
    InvalidCommonName {
        /// The rejected common name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A serving certificate was requested without any subject alternative name.
    #[error(
        "failed to issue serving certificate: no subject alternative names given; at least one \
         DNS name or IP address is required"
    )]
    NoSubjectNames,

    /// A requested validity period is zero, too short or absurdly long.
    #[error(
        "failed to use a {what} validity of {}: it must be between {} and {}",
        describe_duration(*requested),
        describe_duration(MIN_VALIDITY),
        describe_duration(MAX_VALIDITY)
    )]
    InvalidValidity {
        /// Which certificate the validity was requested for ("CA" or "serving certificate").
        what: &'static str,
        /// The rejected validity period.
        requested: Duration,
    },

    /// The CA certificate is no longer valid, so nothing it signs would be trusted.
    #[error("failed to issue serving certificate: the CA certificate expired at {not_after}")]
    CaExpired {
        /// When the CA certificate expired.
        not_after: OffsetDateTime,
    },

    /// Key generation, certificate construction or signing failed inside rcgen.
    #[error("failed to generate {what}")]
    Generate {
        /// What was being generated, e.g. "CA key pair".
        what: &'static str,
        /// The rcgen error.
        #[source]
        source: rcgen::Error,
    },

    /// The CA certificate PEM could not be parsed.
    #[error("failed to parse CA certificate PEM: {reason}")]
    ParseCaCertificate {
        /// What is wrong with it.
        reason: String,
    },

    /// The CA private key PEM could not be parsed.
    #[error(
        "failed to parse CA private key PEM; expected an unencrypted PKCS#8 \
         \"-----BEGIN PRIVATE KEY-----\" block"
    )]
    ParseCaKey {
        /// The rcgen error.
        #[source]
        source: rcgen::Error,
    },

    /// The CA certificate and key parsed, but cannot be used as an issuing CA.
    #[error("failed to load CA: {reason}")]
    InvalidCa {
        /// What is wrong with it (not a CA, key mismatch, unsupported subject, ...).
        reason: String,
    },

    /// A freshly issued certificate did not verify against its CA (a bug or unsupported CA).
    #[error("failed to verify the issued certificate against the CA: {reason}")]
    Verify {
        /// What did not match.
        reason: String,
    },

    /// An output file already exists and overwriting was not requested.
    #[error(
        "failed to write {}: the file already exists; pass --force to overwrite it",
        path.display()
    )]
    FileExists {
        /// The existing file.
        path: PathBuf,
    },

    /// A CA key from an earlier run is in the output directory, where it would no longer match
    /// the new CA certificate, and overwriting was not requested.
    #[error(
        "failed to write certificates: {} is left from an earlier run and would not match the new \
         ca.crt; pass --force to remove it",
        path.display()
    )]
    StaleCaKey {
        /// The existing CA key file.
        path: PathBuf,
    },

    /// The renewal policy contradicts itself, e.g. a certificate would be renewed as soon as it is issued.
    #[error("failed to accept the renewal policy: {reason}")]
    InvalidPolicy {
        /// What is wrong with it.
        reason: String,
    },

    /// A rotation plan was carried out on other inputs than it was made from (a bug in the caller).
    #[error("failed to carry out the rotation plan: {reason}")]
    InconsistentPlan {
        /// What the plan needed and did not get.
        reason: &'static str,
    },

    /// A filesystem operation failed.
    #[error("failed to {action} {}", path.display())]
    Io {
        /// What was being done, e.g. "create directory".
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// Result alias used throughout this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
