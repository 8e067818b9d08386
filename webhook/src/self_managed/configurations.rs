//! The two webhook configurations: which CAs their `caBundle`s trust, and putting the Secret's bundle there.
//!
//! Only the webhooks that call this webhook count: those pointing at its Service, or at a URL (development).
//! Every write is a JSON patch that first tests the configuration's `resourceVersion` as read, so a bundle read
//! before another replica's write can never replace that write's bundle.

use std::fmt;

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use tracing::info;
use website_certs::inspect::split_certificates;

use super::{Error, FIELD_MANAGER};

/// Which kind of configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A `ValidatingWebhookConfiguration`.
    Validating,
    /// A `MutatingWebhookConfiguration`.
    Mutating,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Validating => "ValidatingWebhookConfiguration",
            Self::Mutating => "MutatingWebhookConfiguration",
        })
    }
}

/// A webhook of a configuration that calls this webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Owned {
    /// Its position in `webhooks`.
    pub(crate) index: usize,
    /// Its name.
    pub(crate) name: String,
    /// Its `caBundle`, decoded.
    pub(crate) ca_bundle: Option<Vec<u8>>,
}

/// A configuration as read.
#[derive(Debug)]
pub(crate) enum State {
    /// It exists.
    Found {
        /// The `resourceVersion` read.
        resource_version: String,
        /// Its webhooks that call this webhook.
        owned: Vec<Owned>,
    },
    /// It does not exist: nothing trusts this webhook through it.
    Missing,
    /// It could not be read.
    Unreadable(kube::Error),
}

/// One configuration as read.
#[derive(Debug)]
pub(crate) struct Configuration {
    pub(crate) kind: Kind,
    pub(crate) name: String,
    pub(crate) state: State,
}

impl Configuration {
    /// The CAs every webhook of this configuration that calls this webhook trusts; `None` when none calls it
    /// (so it constrains nothing). A missing or unreadable configuration trusts nothing.
    fn trusted(&self) -> Option<Vec<String>> {
        let State::Found { owned, .. } = &self.state else { return Some(Vec::new()) };
        let mut bundles = owned.iter().map(|webhook| {
            split_certificates(&String::from_utf8_lossy(webhook.ca_bundle.as_deref().unwrap_or_default()))
        });
        let first = bundles.next()?;
        Some(bundles.fold(first, |all, next| all.into_iter().filter(|ca| next.contains(ca)).collect()))
    }

    /// Whether this configuration was read (found or known missing).
    pub(crate) fn is_known(&self) -> bool {
        !matches!(self.state, State::Unreadable(_))
    }

    /// What is wrong with it, for the log: missing or unreadable.
    pub(crate) fn into_problem(self) -> Option<Error> {
        let (kind, name) = (self.kind, self.name);
        match self.state {
            State::Found { .. } => None,
            State::Missing => Some(Error::MissingConfiguration { kind: kind.to_string(), name }),
            State::Unreadable(source) => Some(Error::Kube { action: format!("read {kind} {name}"), source }),
        }
    }
}

/// The CAs trusted by every webhook of every configuration that calls this webhook. With no such webhook
/// at all, `fallback`.
pub(crate) fn trusted_everywhere(configurations: &[Configuration], fallback: &[String]) -> Vec<String> {
    configurations
        .iter()
        .filter_map(Configuration::trusted)
        .reduce(|all, next| all.into_iter().filter(|ca| next.contains(ca)).collect())
        .unwrap_or_else(|| fallback.to_vec())
}

/// The CAs trusted by any webhook of any configuration that calls this webhook, each once.
pub(crate) fn trusted_anywhere(configurations: &[Configuration]) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for configuration in configurations {
        if let State::Found { owned, .. } = &configuration.state {
            for webhook in owned {
                let text = String::from_utf8_lossy(webhook.ca_bundle.as_deref().unwrap_or_default());
                for ca in split_certificates(&text) {
                    if !all.contains(&ca) {
                        all.push(ca);
                    }
                }
            }
        }
    }
    all
}

/// A JSON patch that puts `bundle` into the `caBundle` of each of `owned` that differs, provided the
/// configuration is still at `resource_version` and each webhook still sits where it was read. `None` when
/// nothing differs.
pub(crate) fn bundle_patch(resource_version: &str, owned: &[Owned], bundle: &[u8]) -> Option<json_patch::Patch> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bundle);
    let stale: Vec<&Owned> = owned.iter().filter(|webhook| webhook.ca_bundle.as_deref() != Some(bundle)).collect();
    if stale.is_empty() {
        return None;
    }
    let mut ops =
        vec![serde_json::json!({"op": "test", "path": "/metadata/resourceVersion", "value": resource_version})];
    for webhook in stale {
        let at = format!("/webhooks/{}", webhook.index);
        ops.push(serde_json::json!({"op": "test", "path": format!("{at}/name"), "value": webhook.name}));
        ops.push(serde_json::json!({"op": "add", "path": format!("{at}/clientConfig/caBundle"), "value": encoded}));
    }
    Some(serde_json::from_value(serde_json::Value::Array(ops)).expect("the operations are well-formed"))
}

/// The outcome of [`Configurations::inject`].
#[derive(Debug, Default)]
pub(crate) struct Injection {
    /// A configuration was patched: what was read is out of date.
    pub(crate) patched: bool,
    /// A configuration changed between the read and the patch; read again.
    pub(crate) raced: Option<String>,
    /// Patches the API server refused otherwise.
    pub(crate) failures: Vec<Error>,
}

/// The configurations this webhook keeps the `caBundle` of.
#[derive(Clone)]
pub(crate) struct Configurations {
    validating: Option<(Api<ValidatingWebhookConfiguration>, String)>,
    mutating: Option<(Api<MutatingWebhookConfiguration>, String)>,
    service_name: String,
    namespace: String,
}

impl Configurations {
    /// The configurations named (either may be absent), whose webhooks call the Service `namespace/service_name`.
    pub(crate) fn new(
        client: &Client,
        validating: Option<String>,
        mutating: Option<String>,
        service_name: String,
        namespace: String,
    ) -> Self {
        Self {
            validating: validating.map(|name| (Api::all(client.clone()), name)),
            mutating: mutating.map(|name| (Api::all(client.clone()), name)),
            service_name,
            namespace,
        }
    }

    /// The name of the validating configuration, if one is kept.
    pub(crate) fn validating_name(&self) -> Option<&str> {
        self.validating.as_ref().map(|(_, name)| name.as_str())
    }

    /// The name of the mutating configuration, if one is kept.
    pub(crate) fn mutating_name(&self) -> Option<&str> {
        self.mutating.as_ref().map(|(_, name)| name.as_str())
    }

    /// Whether a webhook with `config` calls this webhook: its own Service, or a URL (development override).
    fn owns(&self, config: &WebhookClientConfig) -> bool {
        match &config.service {
            Some(service) => service.name == self.service_name && service.namespace == self.namespace,
            None => config.url.is_some(),
        }
    }

    fn owned(&self, webhooks: impl Iterator<Item = (String, WebhookClientConfig)>) -> Vec<Owned> {
        webhooks
            .enumerate()
            .filter(|(_, (_, config))| self.owns(config))
            .map(|(index, (name, config))| Owned { index, name, ca_bundle: config.ca_bundle.map(|b| b.0) })
            .collect()
    }

    /// Reads both configurations.
    pub(crate) async fn read(&self) -> Vec<Configuration> {
        let mut read = Vec::new();
        if let Some((api, name)) = &self.validating {
            read.push(
                self.read_one(api, name, Kind::Validating, |c| webhooks(c.webhooks, |w| (w.name, w.client_config)))
                    .await,
            );
        }
        if let Some((api, name)) = &self.mutating {
            read.push(
                self.read_one(api, name, Kind::Mutating, |c| webhooks(c.webhooks, |w| (w.name, w.client_config))).await,
            );
        }
        read
    }

    async fn read_one<K>(
        &self,
        api: &Api<K>,
        name: &str,
        kind: Kind,
        split: impl FnOnce(K) -> Vec<(String, WebhookClientConfig)>,
    ) -> Configuration
    where
        K: Resource + Clone + fmt::Debug + serde::de::DeserializeOwned,
    {
        let state = match api.get_opt(name).await {
            Ok(Some(config)) => {
                let resource_version = config.meta().resource_version.clone().unwrap_or_default();
                State::Found { resource_version, owned: self.owned(split(config).into_iter()) }
            }
            Ok(None) => State::Missing,
            Err(error) => State::Unreadable(error),
        };
        Configuration { kind, name: name.to_owned(), state }
    }

    /// Puts `bundle` into every `caBundle` of `read` that calls this webhook and differs.
    pub(crate) async fn inject(&self, read: &[Configuration], bundle: &[u8]) -> Injection {
        let mut injection = Injection::default();
        for configuration in read {
            let State::Found { resource_version, owned } = &configuration.state else { continue };
            let Some(patch) = bundle_patch(resource_version, owned, bundle) else { continue };
            let patch = Patch::Json::<()>(patch);
            let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() };
            let name = &configuration.name;
            let result = match (configuration.kind, &self.validating, &self.mutating) {
                (Kind::Validating, Some((api, _)), _) => api.patch(name, &params, &patch).await.map(drop),
                (Kind::Mutating, _, Some((api, _))) => api.patch(name, &params, &patch).await.map(drop),
                _ => continue,
            };
            let kind = configuration.kind;
            match result {
                Ok(()) => {
                    info!(configuration = %name, %kind, "injected the CA bundle");
                    injection.patched = true;
                }
                // 422: a `test` failed (the configuration changed since it was read); 409 and 404 likewise.
                Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409 | 422) => {
                    injection.raced = Some(format!("{kind} {name} changed while its caBundle was written"));
                }
                Err(source) => injection
                    .failures
                    .push(Error::Kube { action: format!("patch the caBundle of {kind} {name}"), source }),
            }
        }
        injection
    }
}

fn webhooks<W>(
    webhooks: Option<Vec<W>>,
    split: impl Fn(W) -> (String, WebhookClientConfig),
) -> Vec<(String, WebhookClientConfig)> {
    webhooks.unwrap_or_default().into_iter().map(split).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use website_certs::{CertificateAuthority, days};

    fn ca() -> String {
        CertificateAuthority::generate("ca", days(1)).expect("generates").cert_pem().to_owned()
    }

    fn found(bundles: &[&[&str]]) -> Configuration {
        let owned = bundles
            .iter()
            .enumerate()
            .map(|(index, cas)| Owned { index, name: format!("w{index}"), ca_bundle: Some(cas.concat().into_bytes()) })
            .collect();
        Configuration {
            kind: Kind::Validating,
            name: "c".into(),
            state: State::Found { resource_version: "1".into(), owned },
        }
    }

    #[test]
    fn a_ca_is_trusted_everywhere_only_when_every_calling_webhook_has_it() {
        let (a, b) = (ca(), ca());
        let both = found(&[&[&a, &b]]);
        let only_a = found(&[&[&a], &[&a, &b]]);
        assert_eq!(trusted_everywhere(&[both, only_a], &[]), vec![a.clone()]);
        let missing = Configuration { kind: Kind::Mutating, name: "m".into(), state: State::Missing };
        assert_eq!(trusted_everywhere(&[found(&[&[&a]]), missing], &[]), Vec::<String>::new());
        // A configuration none of whose webhooks calls this one constrains nothing.
        assert_eq!(trusted_everywhere(&[found(&[]), found(&[&[&b]])], &[]), vec![b.clone()]);
        assert_eq!(trusted_everywhere(&[], std::slice::from_ref(&a)), vec![a.clone()]);
        assert_eq!(trusted_anywhere(&[found(&[&[&a]]), found(&[&[&b, &a]])]), vec![a, b]);
    }

    #[test]
    fn the_bundle_patch_tests_the_resource_version_and_touches_only_webhooks_whose_bundle_differs() {
        let owned = vec![
            Owned { index: 0, name: "a".into(), ca_bundle: Some(b"old".to_vec()) },
            Owned { index: 2, name: "c".into(), ca_bundle: Some(b"new".to_vec()) },
            Owned { index: 3, name: "d".into(), ca_bundle: None },
        ];
        let patch = bundle_patch("42", &owned, b"new").expect("two bundles differ");
        assert_eq!(
            serde_json::to_value(&patch).expect("serializes"),
            serde_json::json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
                {"op": "test", "path": "/webhooks/0/name", "value": "a"},
                {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "bmV3"},
                {"op": "test", "path": "/webhooks/3/name", "value": "d"},
                {"op": "add", "path": "/webhooks/3/clientConfig/caBundle", "value": "bmV3"},
            ])
        );
        assert_eq!(bundle_patch("42", &owned[1..2], b"new"), None);
    }
}
