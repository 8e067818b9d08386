//! Helpers shared by the integration tests.

#![allow(dead_code, missing_docs)]

use std::net::IpAddr;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

/// The DER contents of the single PEM block in `pem`, asserting its label.
pub fn pem_der(pem: &str, label: &str) -> Vec<u8> {
    let (rest, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("valid PEM");
    assert_eq!(block.label, label);
    assert!(String::from_utf8_lossy(rest).trim().is_empty(), "unexpected data after the PEM block");
    block.contents
}

/// Parses a DER certificate, asserting there is no trailing data.
pub fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).expect("valid certificate");
    assert!(rest.is_empty(), "trailing data after the certificate");
    cert
}

/// A subject alternative name as seen in a parsed certificate.
#[derive(Debug, PartialEq, Eq)]
pub enum San {
    Dns(String),
    Ip(IpAddr),
}

/// The certificate's subject alternative names, in order.
pub fn sans(cert: &X509Certificate<'_>) -> Vec<San> {
    let Some(ext) = cert.subject_alternative_name().expect("at most one SAN extension") else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => San::Dns((*dns).to_owned()),
            GeneralName::IPAddress(bytes) => San::Ip(match bytes.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).expect("4 bytes")),
                16 => IpAddr::from(<[u8; 16]>::try_from(*bytes).expect("16 bytes")),
                len => panic!("IP SAN of {len} bytes"),
            }),
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect()
}

/// The certificate's common names.
pub fn common_names(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject().iter_common_name().map(|cn| cn.as_str().expect("UTF-8 CN").to_owned()).collect()
}

/// Asserts the certificate's public key is an ECDSA P-256 key.
pub fn assert_p256(cert: &X509Certificate<'_>) {
    use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
    let spki = cert.public_key();
    assert_eq!(spki.algorithm.algorithm, OID_KEY_TYPE_EC_PUBLIC_KEY);
    let curve = spki.algorithm.parameters.as_ref().expect("EC parameters").as_oid().expect("named curve");
    assert_eq!(curve, OID_EC_P256);
    assert_eq!(spki.parsed().expect("EC point").key_size(), 256);
}

/// Asserts that `key_pem` is a PKCS#8 ECDSA P-256 key matching `cert`'s public key.
pub fn assert_key_matches(key_pem: &str, cert: &X509Certificate<'_>) {
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{key_pem}");
    let key = rcgen::KeyPair::from_pem(key_pem).expect("valid PKCS#8 key");
    assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
    assert_eq!(key.public_key_raw(), cert.public_key().subject_public_key.data.as_ref());
}
