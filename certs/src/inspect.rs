//! Reading certificates back: what a bundle holds, who issued a certificate, when it ends, for which names.
//!
//! Every function here takes PEM text and answers `None` or `false` for text that does not parse, so callers
//! treat unreadable input like missing input.

use std::net::IpAddr;

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

use crate::SubjectName;
pub use crate::ca::certificate_pem;

/// Splits concatenated PEM (a `caBundle`, say) into its `CERTIFICATE` blocks, each re-encoded alone, so that two
/// encodings of one certificate compare equal. Other blocks and text between blocks are dropped.
///
/// ```
/// let ca = website_certs::CertificateAuthority::generate("ca", website_certs::days(1))?;
/// let bundle = format!("comment\n{}\n{}", ca.cert_pem(), ca.cert_pem());
/// assert_eq!(website_certs::inspect::split_certificates(&bundle), vec![ca.cert_pem(), ca.cert_pem()]);
/// # Ok::<(), website_certs::Error>(())
/// ```
#[must_use]
pub fn split_certificates(text: &str) -> Vec<String> {
    Pem::iter_from_buffer(text.as_bytes())
        .filter_map(std::result::Result::ok)
        .filter(|pem| pem.label == "CERTIFICATE")
        .filter(|pem| x509_parser::parse_x509_certificate(&pem.contents).is_ok())
        .map(|pem| certificate_pem(&pem.contents))
        .collect()
}

/// The DER bytes of the first `CERTIFICATE` block of `pem`.
fn der(pem: &str) -> Option<Vec<u8>> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    (block.label == "CERTIFICATE").then_some(block.contents)
}

fn with_certificate<T>(pem: &str, read: impl FnOnce(&X509Certificate<'_>) -> T) -> Option<T> {
    let der = der(pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(read(&cert))
}

/// End of the certificate's validity (`notAfter`).
#[must_use]
pub fn not_after(pem: &str) -> Option<OffsetDateTime> {
    with_certificate(pem, |cert| cert.validity().not_after.to_datetime())
}

/// Whether the certificate is valid at `now` (between `notBefore` and `notAfter`).
#[must_use]
pub fn is_valid_at(pem: &str, now: OffsetDateTime) -> bool {
    with_certificate(pem, |cert| {
        cert.validity().not_before.to_datetime() <= now && now < cert.validity().not_after.to_datetime()
    })
    .unwrap_or(false)
}

/// Whether `ca_pem` issued `cert_pem`: the issuer name is the CA's subject, byte for byte, and the signature
/// verifies with the CA's key.
#[must_use]
pub fn issued_by(cert_pem: &str, ca_pem: &str) -> bool {
    let (Some(cert), Some(ca)) = (der(cert_pem), der(ca_pem)) else { return false };
    let (Ok((_, cert)), Ok((_, ca))) =
        (x509_parser::parse_x509_certificate(&cert), x509_parser::parse_x509_certificate(&ca))
    else {
        return false;
    };
    cert.issuer().as_raw() == ca.subject().as_raw() && cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// The first of `cas` that issued `cert_pem`.
#[must_use]
pub fn issuer_among<'a>(cert_pem: &str, cas: &'a [String]) -> Option<&'a String> {
    cas.iter().find(|ca| issued_by(cert_pem, ca))
}

/// `sha256:` and the lowercase hex SHA-256 of the certificate's DER: a short, stable name for it.
#[must_use]
pub fn fingerprint(pem: &str) -> Option<String> {
    let der = der(pem)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &der);
    let hex: String = digest.as_ref().iter().map(|byte| format!("{byte:02x}")).collect();
    Some(format!("sha256:{hex}"))
}

/// The certificate's DNS and IP subject alternative names, in certificate order.
#[must_use]
pub fn subject_names(pem: &str) -> Vec<SubjectName> {
    with_certificate(pem, |cert| {
        let Ok(Some(san)) = cert.subject_alternative_name() else { return Vec::new() };
        san.value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some(SubjectName::Dns((*dns).to_owned())),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => <[u8; 4]>::try_from(*bytes).ok().map(|b| SubjectName::Ip(IpAddr::from(b))),
                    16 => <[u8; 16]>::try_from(*bytes).ok().map(|b| SubjectName::Ip(IpAddr::from(b))),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    })
    .unwrap_or_default()
}

/// Whether `key_pem` (PKCS#8) is the private key of `cert_pem`.
#[must_use]
pub fn key_matches(cert_pem: &str, key_pem: &str) -> bool {
    let Ok(key) = rcgen::KeyPair::from_pem(key_pem) else { return false };
    with_certificate(cert_pem, |cert| cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CertificateAuthority, days};

    fn names() -> Vec<SubjectName> {
        vec![SubjectName::Dns("webhook.system.svc".into()), SubjectName::Ip([127, 0, 0, 1].into())]
    }

    #[test]
    fn a_serving_certificate_is_issued_by_its_ca_only() -> crate::Result<()> {
        let ca = CertificateAuthority::generate("ca", days(2))?;
        let other = CertificateAuthority::generate("ca", days(2))?;
        let serving = ca.issue_serving(&names(), days(1))?;
        assert!(issued_by(serving.cert_pem(), ca.cert_pem()));
        assert!(!issued_by(serving.cert_pem(), other.cert_pem()), "same name, other key");
        assert!(!issued_by("junk", ca.cert_pem()));
        let cas = vec![other.cert_pem().to_owned(), ca.cert_pem().to_owned()];
        assert_eq!(issuer_among(serving.cert_pem(), &cas), Some(&cas[1]));
        Ok(())
    }

    #[test]
    fn certificates_are_read_back_with_their_names_dates_and_key() -> crate::Result<()> {
        let ca = CertificateAuthority::generate("ca", days(2))?;
        let serving = ca.issue_serving(&names(), days(1))?;
        assert_eq!(subject_names(serving.cert_pem()), names());
        assert_eq!(not_after(serving.cert_pem()), Some(serving.not_after()));
        assert!(is_valid_at(serving.cert_pem(), serving.not_after() - time::Duration::SECOND));
        assert!(!is_valid_at(serving.cert_pem(), serving.not_after()));
        assert!(key_matches(serving.cert_pem(), serving.key_pem()));
        assert!(!key_matches(serving.cert_pem(), ca.key_pem()));
        Ok(())
    }

    #[test]
    fn a_fingerprint_names_one_certificate() -> crate::Result<()> {
        let a = CertificateAuthority::generate("ca", days(2))?;
        let b = CertificateAuthority::generate("ca", days(2))?;
        let fingerprint_a = fingerprint(a.cert_pem()).expect("a certificate");
        assert!(fingerprint_a.starts_with("sha256:") && fingerprint_a.len() == 7 + 64, "{fingerprint_a}");
        assert_eq!(fingerprint(&format!("text before\n{}", a.cert_pem())), Some(fingerprint_a.clone()));
        assert_ne!(fingerprint(b.cert_pem()), Some(fingerprint_a));
        assert_eq!(fingerprint("junk"), None);
        Ok(())
    }
}
