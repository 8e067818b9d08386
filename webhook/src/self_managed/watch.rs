//! Noticing at once when the Secret or a configuration changes (a wiped `caBundle`, a deleted Secret), rather than
//! at the next periodic check.
//!
//! Each object is watched by name (a `metadata.name` field selector, which RBAC authorizes by `resourceNames`),
//! for its metadata only: a change of anything changes its `resourceVersion`, and no key ever travels through the
//! watch.

use std::fmt::Debug;

use futures::stream::{self, BoxStream, StreamExt as _};
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::core::v1::Secret;
use kube::api::PartialObjectMeta;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client};
use tracing::warn;

/// A stream that yields whenever the Secret `namespace/secret`, the `validating` or the `mutating` configuration
/// changes, is created or deleted, and whenever a watch (re)starts. Failed watches are logged and retried with
/// backoff.
pub(crate) fn changes(
    client: &Client,
    namespace: &str,
    secret: &str,
    validating: Option<&str>,
    mutating: Option<&str>,
) -> BoxStream<'static, ()> {
    let mut streams = vec![watch_one(Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), namespace), secret)];
    if let Some(name) = validating {
        streams.push(watch_one(Api::<PartialObjectMeta<ValidatingWebhookConfiguration>>::all(client.clone()), name));
    }
    if let Some(name) = mutating {
        streams.push(watch_one(Api::<PartialObjectMeta<MutatingWebhookConfiguration>>::all(client.clone()), name));
    }
    stream::select_all(streams).boxed()
}

fn watch_one<K>(api: Api<PartialObjectMeta<K>>, name: &str) -> BoxStream<'static, ()>
where
    K: kube::Resource<DynamicType = ()> + Clone + Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let kind = K::kind(&()).into_owned();
    let name = name.to_owned();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    watcher(api, config)
        .default_backoff()
        .filter_map(move |event| {
            let change = match event {
                Ok(_) => Some(()),
                Err(error) => {
                    warn!(%error, %kind, %name, "failed to watch; retrying");
                    None
                }
            };
            std::future::ready(change)
        })
        .boxed()
}
