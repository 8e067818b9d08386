//! The generated CA and serving certificates, parsed back and checked field by field, and
//! verified the way TLS clients verify them.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{San, assert_key_matches, assert_p256, common_names, parse, pem_der, sans};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use time::OffsetDateTime;
use website_certs::{
    CLOCK_SKEW_ALLOWANCE, CertificateAuthority, Error, ServingCertificate, SubjectName, days, service_dns_names,
};

const ONE_MINUTE: Duration = Duration::from_secs(60);

fn service_names() -> Vec<SubjectName> {
    service_dns_names("website-webhook", "website-system")
        .expect("valid service")
        .into_iter()
        .map(SubjectName::Dns)
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("valid IP")
}

/// Asserts `actual` is within a minute of `expected`.
fn assert_close(actual: OffsetDateTime, expected: OffsetDateTime, what: &str) {
    let diff = (actual - expected).abs();
    assert!(diff <= ONE_MINUTE, "{what}: {actual} is {diff} away from {expected}");
}

/// Verifies `serving` against `ca` as a TLS client would (rustls' webpki): chain, signature,
/// validity at `now`, serverAuth EKU and each name in `names`.
fn webpki_verify(ca: &CertificateAuthority, serving: &ServingCertificate, names: &[&str]) {
    let ca_der = CertificateDer::from(pem_der(ca.cert_pem(), "CERTIFICATE"));
    let leaf_der = CertificateDer::from(pem_der(serving.cert_pem(), "CERTIFICATE"));
    let anchor = webpki::anchor_from_trusted_cert(&ca_der).expect("CA usable as trust anchor");
    let leaf = webpki::EndEntityCert::try_from(&leaf_der).expect("leaf parses for webpki");
    leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &[],
        UnixTime::now(),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .expect("leaf chains to the CA for serverAuth");
    for name in names {
        let server_name = ServerName::try_from(*name).expect("valid server name");
        leaf.verify_is_valid_for_subject_name(&server_name)
            .unwrap_or_else(|err| panic!("leaf not valid for {name}: {err:?}"));
    }
}

#[test]
fn ca_is_a_self_signed_p256_ca_with_the_requested_validity() {
    let now = OffsetDateTime::now_utc();
    let ca = CertificateAuthority::generate("website-webhook-ca", days(3650)).expect("CA");
    let der = pem_der(ca.cert_pem(), "CERTIFICATE");
    let cert = parse(&der);

    let constraints = cert.basic_constraints().expect("one basicConstraints").expect("basicConstraints present");
    assert!(constraints.critical);
    assert!(constraints.value.ca);
    assert_eq!(constraints.value.path_len_constraint, Some(0));
    let usage = cert.key_usage().expect("one keyUsage").expect("keyUsage");
    assert!(usage.value.key_cert_sign());
    assert!(usage.value.crl_sign());
    assert!(cert.extended_key_usage().expect("no dup").is_none());

    assert_eq!(common_names(&cert), ["website-webhook-ca"]);
    assert_eq!(cert.subject().as_raw(), cert.issuer().as_raw());
    cert.verify_signature(None).expect("self-signed");
    assert_p256(&cert);
    assert_key_matches(ca.key_pem(), &cert);

    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    assert_eq!(not_before, ca.not_before());
    assert_eq!(not_after, ca.not_after());
    assert_close(not_after, now + Duration::from_secs(3650 * 86_400), "CA notAfter");
    assert_close(not_before, now - CLOCK_SKEW_ALLOWANCE, "CA notBefore");
}

#[test]
fn serving_certificate_has_exactly_the_requested_names_and_server_usage() {
    let now = OffsetDateTime::now_utc();
    let ca = CertificateAuthority::generate("website-webhook-ca", days(30)).expect("CA");
    let mut names = service_names();
    names.push(SubjectName::dns("webhook.example.com").expect("valid"));
    names.push(SubjectName::Ip(ip("127.0.0.1")));
    names.push(SubjectName::Ip(ip("::1")));
    let serving = ca.issue_serving(&names, days(7)).expect("serving");
    assert_eq!(serving.names(), names);

    let der = pem_der(serving.cert_pem(), "CERTIFICATE");
    let cert = parse(&der);
    assert_eq!(
        sans(&cert),
        [
            San::Dns("website-webhook".to_owned()),
            San::Dns("website-webhook.website-system".to_owned()),
            San::Dns("website-webhook.website-system.svc".to_owned()),
            San::Dns("website-webhook.website-system.svc.cluster.local".to_owned()),
            San::Dns("webhook.example.com".to_owned()),
            San::Ip(ip("127.0.0.1")),
            San::Ip(ip("::1")),
        ]
    );
    assert_eq!(common_names(&cert), ["website-webhook"]);

    let constraints = cert.basic_constraints().expect("one basicConstraints").expect("explicit basicConstraints");
    assert!(!constraints.value.ca);
    let eku = cert.extended_key_usage().expect("one EKU").expect("EKU present");
    assert!(eku.value.server_auth);
    assert!(!eku.value.client_auth && !eku.value.any && eku.value.other.is_empty());
    let usage = cert.key_usage().expect("one keyUsage").expect("keyUsage");
    assert!(usage.critical);
    assert!(usage.value.digital_signature());
    assert!(!usage.value.key_cert_sign());

    assert_p256(&cert);
    assert_key_matches(serving.key_pem(), &cert);

    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    assert_eq!(not_after, serving.not_after());
    assert_eq!(not_before, serving.not_before());
    assert_close(not_after, now + Duration::from_secs(7 * 86_400), "notAfter");
    assert_close(not_before, now - CLOCK_SKEW_ALLOWANCE, "notBefore");
    assert!(not_before >= ca.not_before());
}

#[test]
fn serving_certificate_is_signed_by_the_ca() {
    let ca = CertificateAuthority::generate("website-webhook-ca", days(30)).expect("CA");
    let serving = ca.issue_serving(&service_names(), days(1)).expect("serving");
    let ca_der = pem_der(ca.cert_pem(), "CERTIFICATE");
    let ca_cert = parse(&ca_der);
    let leaf_der = pem_der(serving.cert_pem(), "CERTIFICATE");
    let leaf = parse(&leaf_der);

    assert_eq!(leaf.issuer().as_raw(), ca_cert.subject().as_raw());
    leaf.verify_signature(Some(ca_cert.public_key())).expect("signed by the CA key");

    // And not by some other CA with the same name.
    let other = CertificateAuthority::generate("website-webhook-ca", days(30)).expect("CA");
    let other_der = pem_der(other.cert_pem(), "CERTIFICATE");
    let other_cert = parse(&other_der);
    assert_eq!(leaf.issuer().as_raw(), other_cert.subject().as_raw());
    assert!(leaf.verify_signature(Some(other_cert.public_key())).is_err());

    webpki_verify(
        &ca,
        &serving,
        &["website-webhook.website-system.svc", "website-webhook.website-system.svc.cluster.local"],
    );
}

#[test]
fn webpki_rejects_names_that_were_not_requested() {
    let ca = CertificateAuthority::generate("ca", days(1)).expect("CA");
    let serving = ca.issue_serving(&[SubjectName::dns("a.example").expect("valid")], days(1)).expect("serving");
    let leaf_der = CertificateDer::from(pem_der(serving.cert_pem(), "CERTIFICATE"));
    let leaf = webpki::EndEntityCert::try_from(&leaf_der).expect("parses");
    let other = ServerName::try_from("b.example").expect("valid");
    assert!(leaf.verify_is_valid_for_subject_name(&other).is_err());
}

#[test]
fn rustls_completes_a_handshake_with_the_issued_certificate() {
    let ca = CertificateAuthority::generate("website-webhook-ca", days(1)).expect("CA");
    let serving = ca.issue_serving(&service_names(), days(1)).expect("serving");
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    let chain = vec![CertificateDer::from(pem_der(serving.cert_pem(), "CERTIFICATE"))];
    let key = PrivateKeyDer::try_from(pem_der(serving.key_pem(), "PRIVATE KEY")).expect("PKCS#8 key");
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("rustls accepts the certificate and key");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(pem_der(ca.cert_pem(), "CERTIFICATE"))).expect("CA accepted as root");
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();

    let server_name = ServerName::try_from("website-webhook.website-system.svc").expect("valid server name");
    let mut client = rustls::ClientConnection::new(Arc::new(client_config), server_name).expect("client connection");
    let mut server = rustls::ServerConnection::new(Arc::new(server_config)).expect("server connection");

    // Shuttle TLS records between the two ends in memory until the handshake completes.
    for _ in 0..10 {
        if !client.is_handshaking() && !server.is_handshaking() {
            break;
        }
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).expect("client writes");
        }
        server.read_tls(&mut buf.as_slice()).expect("server reads");
        server.process_new_packets().expect("server accepts the handshake");
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).expect("server writes");
        }
        client.read_tls(&mut buf.as_slice()).expect("client reads");
        client.process_new_packets().expect("client verifies the server certificate");
    }
    assert!(!client.is_handshaking() && !server.is_handshaking());
}

#[test]
fn duplicate_names_are_written_once_in_first_seen_order() {
    let ca = CertificateAuthority::generate("ca", days(1)).expect("CA");
    let names = [
        SubjectName::dns("b.example").expect("valid"),
        SubjectName::Ip(ip("10.0.0.1")),
        SubjectName::dns("a.example").expect("valid"),
        SubjectName::dns("b.example").expect("valid"),
        SubjectName::Ip(ip("10.0.0.1")),
    ];
    let serving = ca.issue_serving(&names, days(1)).expect("serving");
    let der = pem_der(serving.cert_pem(), "CERTIFICATE");
    assert_eq!(
        sans(&parse(&der)),
        [San::Dns("b.example".to_owned()), San::Ip(ip("10.0.0.1")), San::Dns("a.example".to_owned()),]
    );
    assert_eq!(serving.names().len(), 3);
}

#[test]
fn ip_only_certificate_uses_the_ip_as_common_name() {
    let ca = CertificateAuthority::generate("ca", days(1)).expect("CA");
    let serving = ca.issue_serving(&[SubjectName::Ip(ip("192.0.2.10"))], days(1)).expect("serving");
    let der = pem_der(serving.cert_pem(), "CERTIFICATE");
    let cert = parse(&der);
    assert_eq!(common_names(&cert), ["192.0.2.10"]);
    assert_eq!(sans(&cert), [San::Ip(ip("192.0.2.10"))]);
}

#[test]
fn long_first_name_is_kept_as_san_but_not_as_common_name() {
    let long = format!("{}.example.com", "a".repeat(60));
    let ca = CertificateAuthority::generate("ca", days(1)).expect("CA");
    let serving = ca.issue_serving(&[SubjectName::dns(&long).expect("valid")], days(1)).expect("serving");
    let der = pem_der(serving.cert_pem(), "CERTIFICATE");
    let cert = parse(&der);
    assert!(common_names(&cert).is_empty());
    assert_eq!(sans(&cert), [San::Dns(long)]);
    let san = cert.subject_alternative_name().expect("one SAN extension").expect("SAN present");
    assert!(san.critical, "SAN must be critical when the subject is empty");
}

#[test]
fn serving_validity_is_capped_at_the_ca_expiry() {
    let ca = CertificateAuthority::generate("ca", days(10)).expect("CA");
    let serving = ca.issue_serving(&service_names(), days(365)).expect("serving");
    assert_eq!(serving.not_after(), ca.not_after());
    let der = pem_der(serving.cert_pem(), "CERTIFICATE");
    assert_eq!(parse(&der).validity().not_after.to_datetime(), ca.not_after());
}

#[test]
fn issuing_rejects_empty_and_invalid_input() {
    let ca = CertificateAuthority::generate("ca", days(1)).expect("CA");

    let err = ca.issue_serving(&[], days(1)).expect_err("no names");
    assert!(matches!(err, Error::NoSubjectNames), "{err:?}");
    assert!(err.to_string().contains("at least one DNS name or IP address is required"), "{err}");

    // Hand-built variants are validated too, not only those from `SubjectName::dns`.
    for bad in ["", "UPPER.example", "under_score", "*.example.com", "10.0.0.1"] {
        let err = ca.issue_serving(&[SubjectName::Dns(bad.to_owned())], days(1)).expect_err("invalid DNS name");
        assert!(matches!(&err, Error::InvalidDnsName { name, .. } if name == bad), "{bad:?}: {err:?}");
    }

    for validity in [Duration::ZERO, Duration::from_secs(59), days(36_501)] {
        let err = ca.issue_serving(&service_names(), validity).expect_err("validity out of bounds");
        assert!(
            matches!(err, Error::InvalidValidity { what: "serving certificate", requested } if requested == validity),
            "{err:?}"
        );
    }
}

#[test]
fn ca_generation_rejects_bad_common_names_and_validity() {
    for bad in ["", "   ", "a\nb", &"x".repeat(65)] {
        let err = CertificateAuthority::generate(bad, days(1)).expect_err("invalid CN");
        assert!(matches!(&err, Error::InvalidCommonName { name, .. } if name == bad), "{bad:?}: {err:?}");
    }
    assert!(CertificateAuthority::generate(&"x".repeat(64), days(1)).is_ok());
    for validity in [Duration::ZERO, days(36_501)] {
        let err = CertificateAuthority::generate("ca", validity).expect_err("invalid validity");
        assert!(matches!(err, Error::InvalidValidity { what: "CA", .. }), "{err:?}");
    }
}

#[test]
fn from_pem_round_trip_issues_certificates_that_chain_to_the_same_ca() {
    let ca = CertificateAuthority::generate("website-webhook-ca", days(30)).expect("CA");
    let loaded = CertificateAuthority::from_pem(ca.cert_pem(), ca.key_pem()).expect("loads");
    assert_eq!(loaded.cert_pem(), ca.cert_pem());
    assert_eq!(loaded.not_before(), ca.not_before());
    assert_eq!(loaded.not_after(), ca.not_after());
    // The key PEM round-trips too, so a loaded CA can be stored again unchanged.
    assert_eq!(loaded.key_pem(), ca.key_pem());

    let serving = loaded.issue_serving(&service_names(), days(1)).expect("serving from loaded CA");
    let ca_der = pem_der(ca.cert_pem(), "CERTIFICATE");
    let ca_cert = parse(&ca_der);
    let leaf_der = pem_der(serving.cert_pem(), "CERTIFICATE");
    let leaf = parse(&leaf_der);
    assert_eq!(leaf.issuer().as_raw(), ca_cert.subject().as_raw());
    leaf.verify_signature(Some(ca_cert.public_key())).expect("signed by the original CA key");

    // The authority key identifier points at the original CA's subject key identifier.
    let aki = leaf
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        })
        .expect("AKI present");
    let ski = ca_cert
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(ski) => Some(ski.0.to_vec()),
            _ => None,
        })
        .expect("SKI present");
    assert_eq!(aki, ski);

    webpki_verify(&ca, &serving, &["website-webhook.website-system.svc"]);
}

#[test]
fn from_pem_rejects_unusable_input() {
    let ca = CertificateAuthority::generate("ca", days(1)).expect("CA");
    let other = CertificateAuthority::generate("ca", days(1)).expect("CA");
    let serving = ca.issue_serving(&service_names(), days(1)).expect("serving");

    let err = CertificateAuthority::from_pem(serving.cert_pem(), serving.key_pem()).expect_err("leaf is not a CA");
    assert!(matches!(&err, Error::InvalidCa { reason } if reason.contains("not a CA")), "{err:?}");

    let err = CertificateAuthority::from_pem(ca.cert_pem(), other.key_pem()).expect_err("mismatched key");
    assert!(matches!(&err, Error::InvalidCa { reason } if reason.contains("does not match")), "{err:?}");

    let err = CertificateAuthority::from_pem(ca.cert_pem(), ca.cert_pem()).expect_err("certificate as key");
    assert!(matches!(err, Error::ParseCaKey { .. }), "{err:?}");

    let err = CertificateAuthority::from_pem(ca.key_pem(), ca.key_pem()).expect_err("key as certificate");
    assert!(matches!(&err, Error::ParseCaCertificate { reason } if reason.contains("PRIVATE KEY")), "{err:?}");

    let err = CertificateAuthority::from_pem("not a pem", ca.key_pem()).expect_err("garbage");
    assert!(matches!(err, Error::ParseCaCertificate { .. }), "{err:?}");

    // Text around the block (as openssl writes it) is dropped from the loaded CA's PEM.
    let decorated = format!("subject=CN = ca\r\n\r\n{}\n# trailing comment\n", ca.cert_pem().replace('\n', "\r\n"));
    let loaded = CertificateAuthority::from_pem(&decorated, ca.key_pem()).expect("decorated PEM loads");
    assert_eq!(loaded.cert_pem(), ca.cert_pem());

    let two = format!("{}{}", ca.cert_pem(), other.cert_pem());
    let err = CertificateAuthority::from_pem(&two, ca.key_pem()).expect_err("two certificates");
    assert!(matches!(&err, Error::ParseCaCertificate { reason } if reason.contains("exactly one")), "{err:?}");
}

#[test]
fn debug_output_never_contains_private_keys() {
    let ca = CertificateAuthority::generate("ca", days(1)).expect("CA");
    let serving = ca.issue_serving(&service_names(), days(1)).expect("serving");
    let key_body = |pem: &str| pem.lines().nth(1).expect("key body").to_owned();
    let ca_debug = format!("{ca:?}");
    let serving_debug = format!("{serving:?}");
    assert!(!ca_debug.contains(&key_body(ca.key_pem())), "{ca_debug}");
    assert!(!ca_debug.contains("PRIVATE KEY"), "{ca_debug}");
    assert!(!serving_debug.contains(&key_body(serving.key_pem())), "{serving_debug}");
    assert!(!serving_debug.contains("PRIVATE KEY"), "{serving_debug}");
}

#[test]
fn ca_bundle_is_standard_base64_of_the_pem() {
    use base64::Engine as _;
    let ca = CertificateAuthority::generate("ca", days(1)).expect("CA");
    let bundle = website_certs::ca_bundle_base64(ca.cert_pem());
    assert!(!bundle.contains('\n'));
    let decoded = base64::engine::general_purpose::STANDARD.decode(&bundle).expect("standard base64");
    assert_eq!(decoded, ca.cert_pem().as_bytes());
}

#[test]
fn certificate_types_can_be_shared_across_tasks() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<CertificateAuthority>();
    assert_send_sync::<ServingCertificate>();
    assert_send_sync::<Error>();
}
