//! The certificate authority and the serving certificates it issues.

use std::fmt;
use std::time::Duration;

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::Pem;

use crate::names::{SubjectName, validate_dns_name};
use crate::validity;
use crate::{Error, Result};

/// Longest common name X.509 allows (`ub-common-name` in RFC 5280).
const MAX_COMMON_NAME_LEN: usize = 64;

/// A certificate authority: a self-signed CA certificate and its private key, able to issue
/// serving certificates.
///
/// Generated CAs use an ECDSA P-256 key, have `basicConstraints` `cA=TRUE, pathLen=0` (they can
/// only sign leaf certificates) and key usages `keyCertSign`, `cRLSign` and `digitalSignature`.
///
/// A CA can be persisted with [`cert_pem`](Self::cert_pem) and [`key_pem`](Self::key_pem)
/// (e.g. in a Kubernetes Secret) and loaded back with [`from_pem`](Self::from_pem) to re-issue
/// serving certificates that chain to the same, already-trusted, `caBundle`.
///
/// The [`Debug`] output never contains the private key.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: Vec<u8>,
    key_pem: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl CertificateAuthority {
    /// Generates a new self-signed CA with subject `CN=<common_name>` and a fresh ECDSA P-256
    /// key, valid from [`CLOCK_SKEW_ALLOWANCE`](crate::CLOCK_SKEW_ALLOWANCE) ago until
    /// `validity` from now.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidCommonName`] if `common_name` is empty, longer than 64 characters or
    ///   contains control characters;
    /// - [`Error::InvalidValidity`] if `validity` is outside
    ///   [`MIN_VALIDITY`](crate::MIN_VALIDITY)..=[`MAX_VALIDITY`](crate::MAX_VALIDITY);
    /// - [`Error::Generate`] if key generation or signing fails.
    pub fn generate(common_name: &str, validity: Duration) -> Result<Self> {
        validate_common_name(common_name)?;
        let (not_before, not_after) = validity::window("CA", validity)?;
        let key = generate_key("CA key pair")?;

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.not_before = not_before;
        params.not_after = not_after;

        let cert = params.self_signed(&key).map_err(|source| Error::Generate { what: "CA certificate", source })?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
            not_before,
            not_after,
        })
    }

    /// Loads a CA from its certificate and private key in PEM form, e.g. as previously returned
    /// by [`cert_pem`](Self::cert_pem) and [`key_pem`](Self::key_pem).
    ///
    /// `cert_pem` must hold exactly one `CERTIFICATE` block (text around it is ignored, and
    /// [`cert_pem`](Self::cert_pem) returns it re-encoded) and `key_pem` an unencrypted PKCS#8
    /// `PRIVATE KEY` (ECDSA P-256/P-384, Ed25519 or RSA). The certificate must be a CA
    /// (`basicConstraints` `cA=TRUE`, and `keyCertSign` if it has a key usage extension) whose
    /// public key matches the private key. Serving certificates issued by a loaded CA still get
    /// fresh ECDSA P-256 keys; they are signed with the CA key's algorithm.
    ///
    /// An expired CA loads fine (so callers can inspect [`not_after`](Self::not_after) and
    /// decide to rotate) but [`issue_serving`](Self::issue_serving) refuses to use it.
    ///
    /// # Errors
    ///
    /// - [`Error::ParseCaCertificate`] if `cert_pem` is not exactly one parseable certificate;
    /// - [`Error::ParseCaKey`] if `key_pem` is not a supported PKCS#8 private key;
    /// - [`Error::InvalidCa`] if the certificate is not a CA, does not match the key, or has a
    ///   subject that cannot be reproduced exactly in issued certificates (multi-valued RDNs).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let cert_der = single_certificate_der(cert_pem)?;
        let (rest, cert) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|err| Error::ParseCaCertificate { reason: err.to_string() })?;
        if !rest.is_empty() {
            return Err(Error::ParseCaCertificate { reason: "trailing data after the certificate".to_owned() });
        }
        check_is_ca(&cert)?;

        let key = KeyPair::from_pem(key_pem).map_err(|source| Error::ParseCaKey { source })?;
        if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
            return Err(Error::InvalidCa {
                reason: "the private key does not match the certificate's public key".to_owned(),
            });
        }

        let not_before = cert.validity().not_before.to_datetime();
        let not_after = cert.validity().not_after.to_datetime();
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), key)
            .map_err(|err| Error::InvalidCa { reason: format!("the certificate cannot be used for issuing: {err}") })?;
        let key_pem = issuer.key().serialize_pem();
        // Re-encode, so that cert_pem() (and thus the caBundle) never carries whatever text
        // surrounded the block in the input.
        let cert_pem = certificate_pem(&cert_der);
        let ca = Self { issuer, cert_pem, cert_der, key_pem, not_before, not_after };
        ca.probe()?;
        Ok(ca)
    }

    /// The CA certificate in PEM form: what goes into `ca.crt` and, base64-encoded (see
    /// [`ca_bundle_base64`](crate::ca_bundle_base64)), into a webhook's `caBundle`.
    #[must_use]
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key as an unencrypted PKCS#8 PEM block. Keep it secret: anyone holding it
    /// can mint certificates that the webhook's clients trust.
    #[must_use]
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Start of the CA certificate's validity (`notBefore`).
    #[must_use]
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// End of the CA certificate's validity (`notAfter`).
    #[must_use]
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Issues a TLS serving certificate for `names`, signed by this CA, with a fresh ECDSA
    /// P-256 key.
    ///
    /// The certificate has:
    /// - subject alternative names: `names` in the given order, duplicates removed;
    /// - subject `CN=<first name>` (omitted if that name is longer than the 64 characters
    ///   X.509 allows in a CN; clients check the SANs only);
    /// - `basicConstraints` `cA=FALSE`, key usage `digitalSignature`, extended key usage
    ///   `serverAuth`, subject and authority key identifiers;
    /// - validity from [`CLOCK_SKEW_ALLOWANCE`](crate::CLOCK_SKEW_ALLOWANCE) ago (but not before
    ///   the CA's `notBefore`) until `validity` from now, capped at the CA's `notAfter`, since a
    ///   certificate cannot usefully outlive its issuer. [`ServingCertificate::not_after`] tells
    ///   the effective end.
    ///
    /// Every issued certificate is parsed back and its signature and issuer name verified
    /// against the CA before it is returned.
    ///
    /// # Errors
    ///
    /// - [`Error::NoSubjectNames`] if `names` is empty;
    /// - [`Error::InvalidDnsName`] if a DNS name is invalid (see
    ///   [`validate_dns_name`](crate::validate_dns_name));
    /// - [`Error::InvalidValidity`] if `validity` is out of bounds;
    /// - [`Error::CaExpired`] if the CA certificate has expired;
    /// - [`Error::Generate`] if key generation or signing fails;
    /// - [`Error::Verify`] if the issued certificate does not verify against the CA.
    pub fn issue_serving(&self, names: &[SubjectName], validity: Duration) -> Result<ServingCertificate> {
        let mut unique: Vec<SubjectName> = Vec::with_capacity(names.len());
        for name in names {
            if let SubjectName::Dns(dns) = name {
                validate_dns_name(dns)?;
            }
            if !unique.contains(name) {
                unique.push(name.clone());
            }
        }
        let Some(first) = unique.first() else {
            return Err(Error::NoSubjectNames);
        };

        let (not_before, not_after) = validity::window("serving certificate", validity)?;
        if self.not_after <= validity::now() {
            return Err(Error::CaExpired { not_after: self.not_after });
        }
        let not_before = not_before.max(self.not_before);
        let not_after = not_after.min(self.not_after);

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let common_name = first.to_string();
        if common_name.len() <= MAX_COMMON_NAME_LEN {
            params.distinguished_name.push(DnType::CommonName, common_name);
        }
        params.subject_alt_names = unique.iter().map(san).collect::<Result<_>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;

        let key = generate_key("serving key pair")?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| Error::Generate { what: "serving certificate", source })?;
        self.verify_issued(cert.der())?;

        Ok(ServingCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            names: unique,
            not_before,
            not_after,
        })
    }

    /// Checks that `der` is signed by this CA's key and names this CA as its issuer
    /// byte-for-byte, which is what TLS clients need to build the chain.
    fn verify_issued(&self, der: &[u8]) -> Result<()> {
        let verify = |reason: String| Error::Verify { reason };
        let (_, issued) = x509_parser::parse_x509_certificate(der)
            .map_err(|err| verify(format!("failed to parse it back: {err}")))?;
        let (_, ca) = x509_parser::parse_x509_certificate(&self.cert_der)
            .map_err(|err| verify(format!("failed to parse the CA certificate: {err}")))?;
        if issued.issuer().as_raw() != ca.subject().as_raw() {
            return Err(verify(format!(
                "its issuer name ({}) is not encoded exactly like the CA's subject ({})",
                issued.issuer(),
                ca.subject()
            )));
        }
        issued
            .verify_signature(Some(ca.public_key()))
            .map_err(|err| verify(format!("its signature does not verify: {err}")))
    }

    /// Signs a throwaway certificate to prove, at load time, that certificates issued by this
    /// CA will chain to it.
    fn probe(&self) -> Result<()> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.not_before = self.not_before;
        params.not_after = self.not_after;
        let probe = params
            .signed_by(self.issuer.key(), &self.issuer)
            .map_err(|err| Error::InvalidCa { reason: format!("failed to sign a test certificate: {err}") })?;
        self.verify_issued(probe.der()).map_err(|err| Error::InvalidCa {
            reason: match err {
                Error::Verify { reason } => format!("a test certificate did not verify: {reason}"),
                other => other.to_string(),
            },
        })
    }
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("issuer", &self.issuer)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// A serving certificate and its private key, as issued by
/// [`CertificateAuthority::issue_serving`].
///
/// The [`Debug`] output never contains the private key.
#[derive(Clone)]
pub struct ServingCertificate {
    cert_pem: String,
    key_pem: String,
    names: Vec<SubjectName>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl ServingCertificate {
    /// The certificate in PEM form (`tls.crt`).
    #[must_use]
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key as an unencrypted PKCS#8 PEM block (`tls.key`).
    #[must_use]
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The subject alternative names, in certificate order, without duplicates.
    #[must_use]
    pub fn names(&self) -> &[SubjectName] {
        &self.names
    }

    /// Start of the certificate's validity (`notBefore`).
    #[must_use]
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// End of the certificate's validity (`notAfter`), after capping at the CA's `notAfter`.
    #[must_use]
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }
}

impl fmt::Debug for ServingCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServingCertificate")
            .field("names", &self.names)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

fn generate_key(what: &'static str) -> Result<KeyPair> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| Error::Generate { what, source })
}

fn san(name: &SubjectName) -> Result<SanType> {
    Ok(match name {
        SubjectName::Dns(dns) => SanType::DnsName(
            Ia5String::try_from(dns.as_str())
                .map_err(|source| Error::Generate { what: "subject alternative name", source })?,
        ),
        SubjectName::Ip(ip) => SanType::IpAddress(*ip),
    })
}

fn validate_common_name(name: &str) -> Result<()> {
    let invalid = |reason: &str| Error::InvalidCommonName { name: name.to_owned(), reason: reason.to_owned() };
    if name.trim().is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.chars().count() > MAX_COMMON_NAME_LEN {
        return Err(invalid("it is longer than 64 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("it contains control characters"));
    }
    Ok(())
}

/// PEM encoding of a DER certificate, in the same layout rcgen produces (64-column base64, LF).
#[must_use]
pub fn certificate_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::with_capacity(body.len() + body.len() / 64 + 64);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    // Base64 output is ASCII, so splitting it into byte chunks keeps valid UTF-8.
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// The DER bytes of the only `CERTIFICATE` block in `pem`.
fn single_certificate_der(pem: &str) -> Result<Vec<u8>> {
    let parse = |reason: String| Error::ParseCaCertificate { reason };
    let mut blocks = Pem::iter_from_buffer(pem.as_bytes());
    let first = match blocks.next() {
        None => return Err(parse("no PEM block found".to_owned())),
        Some(Err(err)) => return Err(parse(err.to_string())),
        Some(Ok(block)) => block,
    };
    if first.label != "CERTIFICATE" {
        return Err(parse(format!("expected a CERTIFICATE PEM block, found {:?}", first.label)));
    }
    if blocks.next().is_some() {
        return Err(parse("expected exactly one certificate, found more than one PEM block".to_owned()));
    }
    Ok(first.contents)
}

fn check_is_ca(cert: &X509Certificate<'_>) -> Result<()> {
    let invalid = |reason: String| Error::InvalidCa { reason };
    match cert.basic_constraints() {
        Ok(Some(constraints)) if constraints.value.ca => {}
        Ok(_) => {
            return Err(invalid(
                "the certificate is not a CA (its basicConstraints extension lacks cA=TRUE)".to_owned(),
            ));
        }
        Err(err) => return Err(invalid(format!("invalid basicConstraints: {err}"))),
    }
    match cert.key_usage() {
        Ok(Some(usage)) if !usage.value.key_cert_sign() => {
            return Err(invalid("the certificate's key usage does not include keyCertSign".to_owned()));
        }
        Ok(_) => {}
        Err(err) => return Err(invalid(format!("invalid key usage extension: {err}"))),
    }
    // rcgen copies the subject attribute by attribute and cannot represent a relative
    // distinguished name with zero or several attributes; reject those up front.
    if cert.subject().iter().any(|rdn| rdn.iter().count() != 1) {
        return Err(invalid(
            "the certificate's subject has multi-valued or empty RDNs, which are not supported".to_owned(),
        ));
    }
    Ok(())
}
