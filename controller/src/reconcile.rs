//! The reconciler: from a `Website` to its Deployment, Service and status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{Span, debug, field, info, instrument, warn};
use website_crd::{READY_CONDITION, Website, WebsiteStatus};

use crate::health::Readiness;
use crate::resources::{self, MANAGED_BY};
use crate::settings::{ChildConfig, Settings};
use crate::status::desired_status;
use crate::{Error, Result};

/// Field manager of every server-side apply the controller makes.
pub const FIELD_MANAGER: &str = "website-controller";
/// Reason of `Ready=False` for a Website that breaks the validation rules (possible only when the webhook
/// was not running when it was stored).
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";
/// How often a Website is reconciled when nothing changes, to repair drift that no watch event reports.
pub const RESYNC_PERIOD: Duration = Duration::from_secs(300);

/// What every reconcile shares.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Images and settings of the children.
    pub config: ChildConfig,
    /// Publishes Kubernetes Events about Websites.
    pub recorder: Recorder,
    /// Consecutive failures per Website, for backoff.
    failures: Mutex<HashMap<ObjectRef<Website>, u32>>,
}

impl Context {
    /// A context for `client` and `config`.
    pub fn new(client: Client, config: ChildConfig) -> Self {
        let reporter = Reporter { controller: FIELD_MANAGER.into(), instance: std::env::var("POD_NAME").ok() };
        Self { recorder: Recorder::new(client.clone(), reporter), client, config, failures: Mutex::default() }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<Website>, u32>> {
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Brings `website`'s Deployment, Service and status in line with its spec.
///
/// Children are written by server-side apply with [`FIELD_MANAGER`], so fields someone else changed are put
/// back, and applying an unchanged object changes nothing. The status is written only when it differs.
///
/// # Errors
/// When the API server refuses a read or a write; the controller retries with backoff.
#[instrument(skip_all, fields(namespace = field::Empty, name = %website.name_any(), generation = website.metadata.generation))]
pub async fn reconcile(website: Arc<Website>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = website.namespace().ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    Span::current().record("namespace", namespace.as_str());
    let name = website.name_any();
    if website.metadata.deletion_timestamp.is_some() {
        // Garbage collection removes the children through their owner references.
        return Ok(Action::await_change());
    }
    let websites: Api<Website> = Api::namespaced(ctx.client.clone(), &namespace);

    let violations = website_crd::validate_website(&website);
    if !violations.is_empty() {
        let message = violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        warn!(%message, "not serving an invalid Website");
        let status = invalid_status(&website, &message);
        write_status(&websites, &website, status).await?;
        publish(&ctx, &website, EventType::Warning, REASON_INVALID_SPEC, message).await;
        return Ok(Action::await_change());
    }

    let deployment = resources::deployment(&website, &ctx.config)?;
    let deployment = Api::<Deployment>::namespaced(ctx.client.clone(), &namespace)
        .patch(&name, &apply_params(), &Patch::Apply(&deployment))
        .await
        .map_err(|source| Error::Apply { kind: "Deployment", source })?;
    let service = resources::service(&website)?;
    Api::<Service>::namespaced(ctx.client.clone(), &namespace)
        .patch(&name, &apply_params(), &Patch::Apply(&service))
        .await
        .map_err(|source| Error::Apply { kind: "Service", source })?;

    let url = resources::url(&website, &ctx.config);
    let status = desired_status(&website, Some(&deployment), url, Time(Timestamp::now()));
    let became_ready = transitioned_to(&website, &status, "True");
    if write_status(&websites, &website, status).await? {
        debug!("status updated");
    }
    if became_ready {
        publish(&ctx, &website, EventType::Normal, "Ready", "every web server pod is available".into()).await;
    }
    ctx.failures().remove(&ObjectRef::from_obj(website.as_ref()));
    Ok(Action::requeue(RESYNC_PERIOD))
}

fn transitioned_to(website: &Website, status: &WebsiteStatus, to: &str) -> bool {
    let before = website.status.as_ref().and_then(WebsiteStatus::ready_condition).map(|c| c.status.as_str());
    let after = status.ready_condition().map(|c| c.status.as_str());
    after == Some(to) && before != Some(to)
}

fn invalid_status(website: &Website, message: &str) -> WebsiteStatus {
    let previous = website.status.as_ref().and_then(WebsiteStatus::ready_condition);
    let unchanged =
        previous.is_some_and(|c| c.status == "False" && c.reason == REASON_INVALID_SPEC && c.message == message);
    WebsiteStatus {
        observed_generation: website.metadata.generation,
        conditions: vec![Condition {
            type_: READY_CONDITION.into(),
            status: "False".into(),
            reason: REASON_INVALID_SPEC.into(),
            message: message.to_owned(),
            observed_generation: website.metadata.generation,
            last_transition_time: match previous {
                Some(c) if unchanged => c.last_transition_time.clone(),
                _ => Time(Timestamp::now()),
            },
        }],
        ..website.status.clone().unwrap_or_default()
    }
}

/// Writes `status` when it differs from what the Website has. Returns whether it wrote.
async fn write_status(api: &Api<Website>, website: &Website, status: WebsiteStatus) -> Result<bool> {
    if website.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    let patch = json!({
        "apiVersion": Website::api_version(&()),
        "kind": Website::kind(&()),
        "status": status,
    });
    api.patch_status(&website.name_any(), &apply_params(), &Patch::Apply(&patch))
        .await
        .map_err(|source| Error::Apply { kind: "Website status", source })?;
    Ok(true)
}

async fn publish(ctx: &Context, website: &Website, type_: EventType, reason: &str, note: String) {
    let event = Event { type_, reason: reason.into(), note: Some(note), action: "Reconcile".into(), secondary: None };
    if let Err(error) = ctx.recorder.publish(&event, &website.object_ref(&())).await {
        warn!(%error, reason, "failed to publish an event");
    }
}

/// Backoff after the `attempt`-th consecutive failure: 5 s, doubling, at most 5 minutes.
pub fn backoff(attempt: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(300))
}

/// Logs a failed reconcile, records a Warning event, and retries with exponential backoff.
pub fn error_policy(website: Arc<Website>, error: &Error, ctx: Arc<Context>) -> Action {
    let attempt = {
        let mut failures = ctx.failures();
        let n = failures.entry(ObjectRef::from_obj(website.as_ref())).or_insert(0);
        *n += 1;
        *n
    };
    let delay = backoff(attempt);
    warn!(
        namespace = website.namespace().as_deref(), name = %website.name_any(), %error, attempt,
        retry_in_seconds = delay.as_secs(), "reconcile failed"
    );
    let note = format!("{error}; retrying in {}s", delay.as_secs());
    tokio::spawn(async move { publish(&ctx, &website, EventType::Warning, "ReconcileFailed", note).await });
    Action::requeue(delay)
}

/// Runs the controller until SIGTERM or SIGINT.
///
/// # Errors
/// When the Website CRD is not installed or the API server cannot be reached at start.
pub async fn run(client: Client, settings: &Settings, readiness: Readiness) -> Result<()> {
    let (websites, deployments, services): (Api<Website>, Api<Deployment>, Api<Service>) = match &settings.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone()), Api::all(client.clone())),
    };
    websites.list(&ListParams::default().limit(1)).await.map_err(Error::CrdNotReady)?;
    let children = watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"));
    let controller = Controller::new(websites, watcher::Config::default())
        .owns(deployments, children.clone())
        .owns(services, children)
        .with_config(ControllerConfig::default().concurrency(settings.concurrency))
        .shutdown_on_signal();
    let store = controller.store();
    tokio::spawn(async move {
        // The store's readiness signal wakes only the last task that polled it, and the controller itself
        // waits on it too: poll again now and then instead of waiting once.
        loop {
            match tokio::time::timeout(Duration::from_millis(500), store.wait_until_ready()).await {
                Ok(Ok(())) => {
                    readiness.set_ready();
                    info!("watching Websites");
                    break;
                }
                Ok(Err(_)) => break,
                Err(_) => continue,
            }
        }
    });
    let context = Arc::new(Context::new(client, settings.children.clone()));
    controller
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(namespace = object.namespace.as_deref(), name = %object.name, "reconciled"),
                Err(error) => debug!(%error, "reconcile did not complete"),
            }
        })
        .await;
    info!("controller stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_up_to_five_minutes() {
        let secs: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX).as_secs(), 300);
    }
}
