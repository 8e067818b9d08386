//! The Secret's layout: the certificates in its data, the trust record in an annotation.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use website_certs::inspect::split_certificates;
use website_certs::rotation::{Material, TrustRecord};
use website_certs::{CA_CERT_FILE, CA_KEY_FILE, TLS_CERT_FILE, TLS_KEY_FILE};

use super::{CA_BUNDLE_KEY, TRUST_ANNOTATION};

/// The certificates in the Secret's data; `None` when a key is missing or not UTF-8 (an empty Secret, e.g. the
/// chart's, or an emptied one).
pub(crate) fn material(secret: &Secret) -> Option<Material> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| data.get(key).and_then(|v| String::from_utf8(v.0.clone()).ok());
    let ca_cert = text(CA_CERT_FILE)?;
    let bundle = split_certificates(&text(CA_BUNDLE_KEY).unwrap_or_else(|| ca_cert.clone()));
    Some(Material {
        ca_key: text(CA_KEY_FILE)?,
        tls_cert: text(TLS_CERT_FILE)?,
        tls_key: text(TLS_KEY_FILE)?,
        ca_cert,
        bundle,
    })
}

/// The trust record in the Secret's annotation, if there is a readable one.
pub(crate) fn record(secret: &Secret) -> Option<TrustRecord> {
    secret.metadata.annotations.as_ref()?.get(TRUST_ANNOTATION).and_then(|text| TrustRecord::parse(text))
}

/// The Secret's data for `material`.
fn data(material: &Material) -> BTreeMap<String, ByteString> {
    [
        (CA_CERT_FILE, material.ca_cert.clone()),
        (CA_KEY_FILE, material.ca_key.clone()),
        (TLS_CERT_FILE, material.tls_cert.clone()),
        (TLS_KEY_FILE, material.tls_key.clone()),
        (CA_BUNDLE_KEY, material.bundle_pem()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), ByteString(value.into_bytes())))
    .collect()
}

/// `existing` holding `material` and `record`, everything else (its resourceVersion above all) as read.
pub(crate) fn updated(mut existing: Secret, material: &Material, record: Option<&TrustRecord>) -> Secret {
    existing.data = Some(data(material));
    existing.string_data = None;
    let annotations = existing.metadata.annotations.get_or_insert_with(BTreeMap::new);
    match record {
        Some(record) => annotations.insert(TRUST_ANNOTATION.to_owned(), record.to_string()),
        None => annotations.remove(TRUST_ANNOTATION),
    };
    existing
}

/// A new Secret `namespace/name` holding `material` and `record`, as a server-side apply body.
pub(crate) fn created(name: &str, namespace: &str, material: &Material, record: Option<&TrustRecord>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            annotations: record.map(|record| BTreeMap::from([(TRUST_ANNOTATION.to_owned(), record.to_string())])),
            ..ObjectMeta::default()
        },
        data: Some(data(material)),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use website_certs::rotation::{Observed, Policy, decide, execute};
    use website_certs::{SubjectName, days};

    fn fresh() -> Material {
        let policy = Policy::new(
            days(3650),
            days(90),
            days(365),
            days(30),
            std::time::Duration::from_secs(60),
            vec![SubjectName::Dns("webhook.system.svc".into())],
        )
        .expect("a valid policy");
        let observed = Observed::default();
        let plan = decide(&observed, time::OffsetDateTime::now_utc(), &policy);
        execute(&observed, &plan, &policy).expect("generates")
    }

    #[test]
    fn material_and_record_survive_the_round_trip_through_the_secret() {
        let material = fresh();
        let record = TrustRecord::new(&material.ca_cert, time::OffsetDateTime::now_utc());
        let secret = created("webhook-tls", "system", &material, record.as_ref());
        assert_eq!(super::material(&secret), Some(material.clone()));
        assert_eq!(super::record(&secret), record);
        let cleared = updated(secret, &material, None);
        assert_eq!(super::record(&cleared), None);
        assert_eq!(super::material(&cleared), Some(material));
    }

    #[test]
    fn an_empty_or_partial_secret_holds_no_material() {
        let material = fresh();
        let mut partial = created("webhook-tls", "system", &material, None);
        partial.data.as_mut().map(|data| data.remove(CA_KEY_FILE));
        for secret in [Secret::default(), partial] {
            assert_eq!(super::material(&secret), None);
        }
    }

    #[test]
    fn a_secret_without_a_bundle_trusts_its_ca() {
        let material = fresh();
        let mut secret = created("webhook-tls", "system", &material, None);
        secret.data.as_mut().map(|data| data.remove(CA_BUNDLE_KEY));
        assert_eq!(super::material(&secret).map(|m| m.bundle), Some(vec![material.ca_cert]));
    }
}
