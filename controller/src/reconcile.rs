//! The reconciler: from a `Website` to its Deployment, Service and status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{Span, debug, field, info, instrument, warn};
use website_crd::{Website, WebsiteStatus};

use crate::children::{self, Claim, Conflict};
use crate::events::{EventQueue, Recorder};
use crate::health::Readiness;
use crate::metrics::{Metrics, Outcome};
use crate::resources::{self, MANAGED_BY};
use crate::settings::{ChildConfig, Settings};
use crate::status::{desired_status, not_ready_status};
use crate::{Error, Result};

/// Field manager of every server-side apply the controller makes.
pub const FIELD_MANAGER: &str = "website-controller";
/// Reason of `Ready=False` for a Website that breaks the validation rules (possible only when the webhook
/// was not running when it was stored).
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";
/// Reason of `Ready=False` for a Website one of whose children's names is taken by an object it does not control.
pub const REASON_CHILD_CONFLICT: &str = "ChildConflict";
/// Reason of the event that lists the children a reconcile created.
pub const REASON_CREATED: &str = "Created";
/// Reason of the event that lists the children a reconcile updated to a new spec.
pub const REASON_UPDATED: &str = "Updated";
/// Reason of the event that lists the children a reconcile put back after they drifted.
pub const REASON_REPAIRED: &str = "Repaired";
/// Longest wait between two attempts of a Website whose children's names are taken.
pub const CONFLICT_RETRY_MAX: Duration = Duration::from_secs(30);
/// How often a Website is reconciled when nothing changes, to repair drift that no watch event reports.
pub const RESYNC_PERIOD: Duration = Duration::from_secs(300);

/// What every reconcile shares.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Images and settings of the children.
    pub config: ChildConfig,
    /// Kubernetes Events about Websites, published in the background.
    pub events: EventQueue,
    /// Consecutive failures per Website, for backoff.
    failures: Mutex<HashMap<ObjectRef<Website>, u32>>,
    /// The children the controller labelled, as last observed.
    caches: ChildCaches,
    /// What the controller last saw of each child it wrote or checked.
    verified: children::Verified,
    /// The status the controller last wrote to each Website, and over which version of it.
    statuses: StatusWrites,
    /// The controller's metrics.
    metrics: Arc<Metrics>,
}

/// Caches of the children the controller labelled, kept by the watches that trigger reconciles. A kind without a
/// cache is read from the API server.
#[derive(Clone, Default)]
pub struct ChildCaches {
    /// ConfigMaps, their metadata only.
    pub config_maps: Option<Store<PartialObjectMeta<ConfigMap>>>,
    /// Deployments, stripped (see [`strip`]): the Website's status reflects their replica counts.
    pub deployments: Option<Store<Deployment>>,
    /// Services, their metadata only.
    pub services: Option<Store<PartialObjectMeta<Service>>>,
    /// NetworkPolicies, their metadata only.
    pub network_policies: Option<Store<PartialObjectMeta<NetworkPolicy>>>,
}

impl Context {
    /// A context for `client` and `config`.
    pub fn new(client: Client, config: ChildConfig) -> Self {
        Self {
            events: EventQueue::start(Recorder::new(client.clone(), FIELD_MANAGER, std::env::var("POD_NAME").ok())),
            client,
            config,
            failures: Mutex::default(),
            caches: ChildCaches::default(),
            verified: children::Verified::default(),
            statuses: StatusWrites::default(),
            metrics: Arc::default(),
        }
    }

    /// The same context, counting in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The metrics this context counts in.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The same context, reading children from `caches` where they hold them.
    #[must_use]
    pub fn with_caches(mut self, caches: ChildCaches) -> Self {
        self.caches = caches;
        self
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<Website>, u32>> {
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one more consecutive unsuccessful reconcile of `website` and returns the count.
    fn count_attempt(&self, website: &Website) -> u32 {
        let mut failures = self.failures();
        let n = failures.entry(ObjectRef::from_obj(website)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }
}

/// The Websites' children, in one namespace.
struct ChildApis {
    config_maps: Api<ConfigMap>,
    network_policies: Api<NetworkPolicy>,
    deployments: Api<Deployment>,
    services: Api<Service>,
}

impl ChildApis {
    fn new(client: &Client, namespace: &str) -> Self {
        Self {
            config_maps: Api::namespaced(client.clone(), namespace),
            network_policies: Api::namespaced(client.clone(), namespace),
            deployments: Api::namespaced(client.clone(), namespace),
            services: Api::namespaced(client.clone(), namespace),
        }
    }
}

/// Brings `website`'s children and status in line with its spec.
///
/// The children are its web server ConfigMap, its Deployment, its Service and, when the operator turned it on,
/// its egress NetworkPolicy. They are created when absent and server-side applied with [`FIELD_MANAGER`] while
/// this Website controls them (see [`children`]), so fields someone else changed are put back, and applying an
/// unchanged object changes nothing. When any object of a child's name belongs to someone else, the Website keeps
/// no child it did not already have (one created before the conflict was met is deleted again, by uid) and writes
/// none: it reports the conflict as `Ready=False` with reason [`REASON_CHILD_CONFLICT`] and in an event, and tries
/// again with a backoff of at most [`CONFLICT_RETRY_MAX`]. The status is written only when it differs.
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
        ctx.failures().remove(&ObjectRef::from_obj(website.as_ref()));
        let config_name = resources::web_config_name(&website);
        ctx.verified.forget::<ConfigMap>(&namespace, &config_name);
        ctx.verified.forget::<Deployment>(&namespace, &name);
        ctx.verified.forget::<Service>(&namespace, &name);
        ctx.verified.forget::<NetworkPolicy>(&namespace, &name);
        ctx.statuses.forget(&website);
        ctx.metrics.reconciled(Outcome::deleted);
        return Ok(Action::await_change());
    }
    let uid = website.uid().ok_or(Error::MissingObjectKey("metadata.uid"))?;
    let websites: Api<Website> = Api::namespaced(ctx.client.clone(), &namespace);

    let violations = website_crd::validate_website(&website);
    if !violations.is_empty() {
        let message = violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        warn!(%message, "not serving an invalid Website");
        let status = not_ready_status(&website, REASON_INVALID_SPEC, &message, Time(Timestamp::now()));
        write_status(&websites, &website, status, &ctx.statuses).await?;
        publish(&ctx, &website, EventType::Warning, REASON_INVALID_SPEC, message);
        ctx.metrics.reconciled(Outcome::invalid_spec);
        return Ok(Action::await_change());
    }

    let apis = ChildApis::new(&ctx.client, &namespace);
    let web_config = resources::web_config(&website, &ctx.config)?;
    let deployment = resources::deployment(&website, &ctx.config)?;
    let service = resources::service(&website)?;
    let policy =
        ctx.config.egress_network_policy.then(|| resources::network_policy(&website, &ctx.config)).transpose()?;

    // Children the cache does not hold are absent or someone else's. A Website that reports no conflict creates them
    // straight away and reads an object only when its name is taken; one in conflict (or failing) reads them first,
    // so that its retries write nothing while an object is in the way.
    let read_first = in_conflict(&website) || ctx.failures().contains_key(&ObjectRef::from_obj(website.as_ref()));
    let caches = &ctx.caches;
    let ns = namespace.as_str();
    // The reads are independent: one round trip for all of them.
    let config_name = web_config.name_any();
    let policy_name = policy.as_ref().map(ResourceExt::name_any);
    let (config_claim, policy_claim, deployment_claim, service_claim) = futures::try_join!(
        children::claim(&apis.config_maps, caches.config_maps.as_ref(), (ns, &config_name), &uid, read_first),
        async {
            match &policy_name {
                Some(p) => {
                    children::claim(&apis.network_policies, caches.network_policies.as_ref(), (ns, p), &uid, read_first)
                        .await
                        .map(Some)
                }
                None => Ok(None),
            }
        },
        children::claim(&apis.deployments, caches.deployments.as_ref(), (ns, &name), &uid, read_first),
        children::claim(&apis.services, caches.services.as_ref(), (ns, &name), &uid, read_first),
    )?;
    // While any child belongs to someone else, the Website writes none of them.
    let foreign: Vec<Conflict> = [
        foreign(&config_claim),
        policy_claim.as_ref().and_then(foreign),
        foreign(&deployment_claim),
        foreign(&service_claim),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !foreign.is_empty() {
        return report_conflicts(&ctx, &websites, &website, &foreign).await;
    }

    // What was created, updated and put back, for the Website's events. A child applied while the status lags the
    // spec was updated to the new spec; otherwise it had drifted from it.
    let observed = website.status.as_ref().and_then(|s| s.observed_generation);
    let mut changes = Changes { spec_changed: observed != website.metadata.generation, ..Changes::default() };
    // What this reconcile created, deleted again if a later child turns out to be someone else's.
    let mut created = Created::default();
    let verified = (uid.as_str(), &ctx.verified);
    // The ConfigMap, the Service and the policy do not depend on each other: they are written at once, one round
    // trip for all. The Deployment, which starts the pods (and mounts the ConfigMap), comes after them.
    // Turning the policy off later leaves existing policies in place (the README says how to remove them): the
    // controller then needs no access to NetworkPolicies at all.
    let (config_written, policy_written, service_written) = futures::join!(
        children::write(&apis.config_maps, config_claim, &web_config, verified),
        async {
            match (policy, policy_claim) {
                (Some(policy), Some(claim)) => {
                    children::write(&apis.network_policies, claim, &policy, verified).await.map(Some)
                }
                _ => Ok(None),
            }
        },
        children::write(&apis.services, service_claim, &service, verified),
    );
    let mut conflicts = Vec::new();
    match config_written? {
        Ok((written, change)) => {
            changes.note(&written, change);
            created.config_map = (change == children::Change::Created).then_some(written);
        }
        Err(conflict) => conflicts.push(conflict),
    }
    match policy_written? {
        Some(Ok((written, change))) => {
            changes.note(&written, change);
            created.network_policy = (change == children::Change::Created).then_some(written);
        }
        Some(Err(conflict)) => conflicts.push(conflict),
        None => {}
    }
    match service_written? {
        Ok((written, change)) => {
            changes.note(&written, change);
            created.service = (change == children::Change::Created).then_some(written);
        }
        Err(conflict) => conflicts.push(conflict),
    }
    if !conflicts.is_empty() {
        created.undo(&apis, &ctx.verified).await?;
        return report_conflicts(&ctx, &websites, &website, &conflicts).await;
    }
    let deployment = match children::write(&apis.deployments, deployment_claim, &deployment, verified).await? {
        Ok((deployment, change)) => {
            changes.note(&deployment, change);
            deployment
        }
        Err(conflict) => {
            created.undo(&apis, &ctx.verified).await?;
            return report_conflicts(&ctx, &websites, &website, &[conflict]).await;
        }
    };

    let url = resources::url(&website, &ctx.config);
    let status = desired_status(&website, Some(&deployment), url, Time(Timestamp::now()));
    let became_ready = transitioned_to(&website, &status, "True");
    if write_status(&websites, &website, status, &ctx.statuses).await? {
        debug!("status updated");
    }
    changes.publish(&ctx, &website);
    if became_ready {
        publish(&ctx, &website, EventType::Normal, "Ready", "every web server pod is available".into());
    }
    ctx.failures().remove(&ObjectRef::from_obj(website.as_ref()));
    ctx.metrics.reconciled(Outcome::success);
    Ok(Action::requeue(RESYNC_PERIOD))
}

/// [`reconcile`], timed and counted in the context's metrics.
///
/// # Errors
/// Those of [`reconcile`].
pub async fn reconcile_measured(website: Arc<Website>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let result = reconcile(website, ctx.clone()).await;
    ctx.metrics.observe_duration(started.elapsed().as_secs_f64());
    if result.is_err() {
        ctx.metrics.reconciled(Outcome::error);
    }
    result
}

/// The children one reconcile created, updated to a new spec, or put back after they drifted, as `Kind/name`.
#[derive(Debug, Default)]
struct Changes {
    /// Whether the Website's spec changed since its status was last written.
    spec_changed: bool,
    created: Vec<String>,
    updated: Vec<String>,
    repaired: Vec<String>,
}

impl Changes {
    fn note<K: Resource<DynamicType = ()>>(&mut self, child: &K, change: children::Change) {
        let name = || format!("{}/{}", K::kind(&()), child.name_any());
        match change {
            children::Change::Created => self.created.push(name()),
            children::Change::Repaired if self.spec_changed => self.updated.push(name()),
            children::Change::Repaired => self.repaired.push(name()),
            children::Change::None => {}
        }
    }

    /// One event for each kind of change: a few events a Website, however many children; repeats of the same
    /// event are counted into a series by the recorder rather than posted anew.
    fn publish(self, ctx: &Context, website: &Website) {
        if !self.created.is_empty() {
            let note = format!("created {}", self.created.join(", "));
            publish(ctx, website, EventType::Normal, REASON_CREATED, note);
        }
        if !self.updated.is_empty() {
            let note = format!("updated {} to the Website's new spec", self.updated.join(", "));
            publish(ctx, website, EventType::Normal, REASON_UPDATED, note);
        }
        if !self.repaired.is_empty() {
            let note = format!(
                "put back {}, which no longer matched what the Website declares (edited by someone else?)",
                self.repaired.join(", ")
            );
            publish(ctx, website, EventType::Normal, REASON_REPAIRED, note);
        }
    }
}

/// The children one reconcile created, before the Deployment.
#[derive(Default)]
struct Created {
    config_map: Option<ConfigMap>,
    network_policy: Option<NetworkPolicy>,
    service: Option<Service>,
}

impl Created {
    /// Deletes them again: a later child belongs to someone else.
    async fn undo(self, apis: &ChildApis, verified: &children::Verified) -> Result<()> {
        let names: Vec<String> = [
            self.config_map.as_ref().map(|c| format!("ConfigMap/{}", c.name_any())),
            self.network_policy.as_ref().map(|p| format!("NetworkPolicy/{}", p.name_any())),
            self.service.as_ref().map(|s| format!("Service/{}", s.name_any())),
        ]
        .into_iter()
        .flatten()
        .collect();
        if names.is_empty() {
            return Ok(());
        }
        if let Some(service) = &self.service {
            children::undo_create(&apis.services, service, verified).await?;
        }
        if let Some(policy) = &self.network_policy {
            children::undo_create(&apis.network_policies, policy, verified).await?;
        }
        if let Some(config_map) = &self.config_map {
            children::undo_create(&apis.config_maps, config_map, verified).await?;
        }
        info!(children = %names.join(", "), "deleted again the children created before the conflict");
        Ok(())
    }
}

/// Whether the Website's status reports a child in conflict.
fn in_conflict(website: &Website) -> bool {
    website
        .status
        .as_ref()
        .and_then(WebsiteStatus::ready_condition)
        .is_some_and(|condition| condition.reason == REASON_CHILD_CONFLICT)
}

fn foreign<K>(claim: &Claim<K>) -> Option<Conflict> {
    match claim {
        Claim::Foreign(conflict) => Some(conflict.clone()),
        _ => None,
    }
}

/// Reports objects in the way as `Ready=False` and as a Warning event, and retries soon: the conflict may resolve
/// by itself (an older Website's children being garbage collected) or by someone deleting the object.
async fn report_conflicts(
    ctx: &Context,
    websites: &Api<Website>,
    website: &Website,
    conflicts: &[Conflict],
) -> Result<Action> {
    let message = conflicts.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
    for conflict in conflicts {
        ctx.metrics.conflict(conflict.kind);
    }
    ctx.metrics.reconciled(Outcome::conflict);
    let attempt = ctx.count_attempt(website);
    let delay = conflict_backoff(attempt);
    warn!(%message, attempt, retry_in_seconds = delay.as_secs(), "not writing children that are not the Website's own");
    let status = not_ready_status(website, REASON_CHILD_CONFLICT, &message, Time(Timestamp::now()));
    write_status(websites, website, status, &ctx.statuses).await?;
    publish(ctx, website, EventType::Warning, REASON_CHILD_CONFLICT, message);
    Ok(Action::requeue(delay))
}

fn transitioned_to(website: &Website, status: &WebsiteStatus, to: &str) -> bool {
    let before = website.status.as_ref().and_then(WebsiteStatus::ready_condition).map(|c| c.status.as_str());
    let after = status.ready_condition().map(|c| c.status.as_str());
    after == Some(to) && before != Some(to)
}

/// Writes `status` when it differs from what the Website has. Returns whether it wrote.
/// The status the controller last wrote to each Website, with the version of the Website it was written over: a
/// digest of both per Website (16 bytes).
///
/// A reconcile triggered again before the watch delivers the Website with its new status (a child's creation
/// triggers one) computes the same status from the same, older, Website; it is not written twice. Any other change
/// of the Website, its status included, changes its resourceVersion, and the status is compared anew.
#[derive(Debug, Default)]
pub struct StatusWrites {
    written: Mutex<HashMap<u64, u64>>,
}

impl StatusWrites {
    fn digest<T: std::hash::Hash>(value: &T) -> u64 {
        use std::hash::Hasher as _;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        value.hash(&mut hasher);
        hasher.finish()
    }

    fn key(website: &Website) -> u64 {
        Self::digest(&(website.metadata.namespace.as_deref(), website.metadata.name.as_deref()))
    }

    fn entry(website: &Website, status: &WebsiteStatus) -> Option<u64> {
        let text = serde_json::to_string(status).ok()?;
        Some(Self::digest(&(website.metadata.uid.as_deref()?, website.metadata.resource_version.as_deref()?, text)))
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u64>> {
        self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `status` was already written over this very version of `website`.
    fn already_written(&self, website: &Website, status: &WebsiteStatus) -> bool {
        Self::entry(website, status).is_some_and(|entry| self.map().get(&Self::key(website)) == Some(&entry))
    }

    fn record(&self, website: &Website, status: &WebsiteStatus) {
        if let Some(entry) = Self::entry(website, status) {
            self.map().insert(Self::key(website), entry);
        }
    }

    fn forget(&self, website: &Website) {
        self.map().remove(&Self::key(website));
    }
}

async fn write_status(
    api: &Api<Website>,
    website: &Website,
    status: WebsiteStatus,
    written: &StatusWrites,
) -> Result<bool> {
    if website.status.as_ref() == Some(&status) || written.already_written(website, &status) {
        return Ok(false);
    }
    let patch = json!({
        "apiVersion": Website::api_version(&()),
        "kind": Website::kind(&()),
        "status": status,
    });
    api.patch_status(&website.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|source| Error::Apply { kind: "Website status", source })?;
    written.record(website, &status);
    Ok(true)
}

/// Queues an event about `website`; the reconcile does not wait for it (see [`EventQueue`]).
fn publish(ctx: &Context, website: &Website, type_: EventType, reason: &str, note: String) {
    let event = Event { type_, reason: reason.into(), note: Some(note), action: "Reconcile".into(), secondary: None };
    ctx.events.send(event, website.object_ref(&()));
}

/// Retry delay after the `attempt`-th consecutive conflict: 5 s, doubling, at most [`CONFLICT_RETRY_MAX`].
pub fn conflict_backoff(attempt: u32) -> Duration {
    backoff(attempt).min(CONFLICT_RETRY_MAX)
}

/// Backoff after the `attempt`-th consecutive failure: 5 s, doubling, at most 5 minutes.
pub fn backoff(attempt: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(300))
}

/// Logs a failed reconcile, records a Warning event, and retries with exponential backoff.
pub fn error_policy(website: Arc<Website>, error: &Error, ctx: Arc<Context>) -> Action {
    let attempt = ctx.count_attempt(&website);
    let delay = backoff(attempt);
    warn!(
        namespace = website.namespace().as_deref(), name = %website.name_any(), %error, attempt,
        retry_in_seconds = delay.as_secs(), "reconcile failed"
    );
    let note = format!("{error}; retrying in {}s", delay.as_secs());
    publish(&ctx, &website, EventType::Warning, "ReconcileFailed", note);
    Action::requeue(delay)
}

type Probe = (&'static str, Box<dyn Fn() -> futures::future::BoxFuture<'static, bool> + Send + Sync>);

fn kind_name<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()) {
        std::borrow::Cow::Borrowed(kind) => kind,
        std::borrow::Cow::Owned(_) => "object",
    }
}

/// A cheap read of kind `K` with the watch's permissions: whether the API server lets the controller read it.
fn probe<K>(api: Api<K>) -> Probe
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let check = move || {
        let api = api.clone();
        Box::pin(async move { api.list_metadata(&ListParams::default().limit(1)).await.is_ok() })
            as futures::future::BoxFuture<'static, bool>
    };
    (kind_name::<K>(), Box::new(check))
}

/// Every few seconds, probes the kinds whose watch failed, and marks them recovered once they can be read again.
async fn probe_failing_watches(probes: Vec<Probe>, readiness: Readiness) {
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        for kind in readiness.failing_watches() {
            if let Some((_, check)) = probes.iter().find(|(k, _)| *k == kind)
                && check().await
            {
                info!(kind, "watch recovered");
                readiness.watch_ok(kind);
            }
        }
    }
}

/// A watch event observer that keeps `readiness` informed about the watch of `K`, and logs its errors.
fn observe<K, E>(
    readiness: &Readiness,
    metrics: &Arc<Metrics>,
) -> impl FnMut(&std::result::Result<E, watcher::Error>) + Send + 'static
where
    K: Resource<DynamicType = ()>,
{
    let (readiness, metrics) = (readiness.clone(), metrics.clone());
    let kind = kind_name::<K>();
    move |event| match event {
        Ok(_) => readiness.watch_ok(kind),
        Err(error) => {
            warn!(kind, %error, "watch failed; retrying with backoff, not ready until it recovers");
            metrics.watch_error(kind);
            readiness.watch_failed(kind, error.to_string());
        }
    }
}

/// What the caches keep of an object's metadata: what tells whose it is and whether it changed (name, uid,
/// resourceVersion, generation, owner references, deletion timestamp). Whether a child is as declared is known from
/// [`children::Verified`], or by reading it whole, so the caches need neither its spec nor the rest of its
/// metadata: memory stays small per Website.
fn strip_metadata<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    meta.annotations = None;
    meta.labels = None;
    meta.creation_timestamp = None;
}

/// What the cache keeps of a Deployment: its metadata as [`strip_metadata`] keeps it, and its replica counts and
/// status, which the Website's status reflects.
fn strip_deployment(deployment: &mut Deployment) {
    strip_metadata(deployment);
    if let Some(spec) = deployment.spec.as_mut() {
        spec.template = Default::default();
        spec.selector = Default::default();
        spec.strategy = None;
    }
    if let Some(status) = deployment.status.as_mut() {
        status.conditions = None;
    }
}

/// The children of kind `K` that the controller labelled: a stream of reconcile triggers, and the cache it keeps,
/// of what `strip` leaves of each.
#[allow(clippy::type_complexity, reason = "a stream and its store, as kube-runtime names them")]
fn owned<K>(
    api: Api<K>,
    config: &watcher::Config,
    (readiness, metrics): (&Readiness, &Arc<Metrics>),
    strip: fn(&mut K),
) -> (impl futures::Stream<Item = std::result::Result<K, watcher::Error>> + Send + 'static, Store<K>)
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector(writer, watcher::watcher(api, config.clone()).modify(strip))
        .inspect(observe::<K, _>(readiness, metrics))
        .default_backoff()
        .touched_objects();
    (stream, store)
}

/// Runs the controller until SIGTERM or SIGINT.
///
/// # Errors
/// When the Website CRD is not installed or the API server cannot be reached at start.
pub async fn run(client: Client, settings: &Settings, readiness: Readiness, metrics: Arc<Metrics>) -> Result<()> {
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let ns = settings.namespace.as_deref();
    let websites: Api<Website> = api(&client, ns);
    websites.list(&ListParams::default().limit(1)).await.map_err(Error::CrdNotReady)?;
    let (store, writer) = reflector::store();
    let watch = watcher::Config::default().timeout(settings.watch_timeout_seconds);
    let main = reflector(writer, watcher::watcher(websites, watch.clone()).modify(strip_metadata::<Website>))
        .inspect(observe::<Website, _>(&readiness, &metrics))
        .default_backoff()
        .applied_objects();
    // Only the children the controller labelled: it never watches objects it does not own.
    let children = watch.labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"));
    let (config_maps, config_map_cache) =
        owned::<PartialObjectMeta<ConfigMap>>(api(&client, ns), &children, (&readiness, &metrics), strip_metadata);
    let (deployments, deployment_cache) =
        owned::<Deployment>(api(&client, ns), &children, (&readiness, &metrics), strip_deployment);
    let (services, service_cache) =
        owned::<PartialObjectMeta<Service>>(api(&client, ns), &children, (&readiness, &metrics), strip_metadata);
    let mut caches = ChildCaches {
        config_maps: Some(config_map_cache),
        deployments: Some(deployment_cache),
        services: Some(service_cache),
        network_policies: None,
    };
    let mut controller =
        Controller::for_stream(main, store).owns_stream(config_maps).owns_stream(deployments).owns_stream(services);
    if settings.children.egress_network_policy {
        let (policies, policy_cache) = owned::<PartialObjectMeta<NetworkPolicy>>(
            api(&client, ns),
            &children,
            (&readiness, &metrics),
            strip_metadata,
        );
        controller = controller.owns_stream(policies);
        caches.network_policies = Some(policy_cache);
    }
    let controller =
        controller.with_config(ControllerConfig::default().concurrency(settings.concurrency)).shutdown_on_signal();
    let mut probes = vec![probe::<Website>(api(&client, ns)), probe::<ConfigMap>(api(&client, ns))];
    probes.push(probe::<Deployment>(api(&client, ns)));
    probes.push(probe::<Service>(api(&client, ns)));
    if settings.children.egress_network_policy {
        probes.push(probe::<NetworkPolicy>(api(&client, ns)));
    }
    tokio::spawn(probe_failing_watches(probes, readiness.clone()));
    let store = controller.store();
    metrics.count_websites_of(store.clone());
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
    let context = Arc::new(Context::new(client, settings.children.clone()).with_caches(caches).with_metrics(metrics));
    // The events queued by the last reconciles are still published on a graceful stop, for a few seconds.
    let events_drained = context.events.drained(Duration::from_secs(5));
    controller
        .run(reconcile_measured, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(namespace = object.namespace.as_deref(), name = %object.name, "reconciled"),
                Err(error) => debug!(%error, "reconcile did not complete"),
            }
        })
        .await;
    events_drained.await;
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

    #[test]
    fn the_deployment_cache_keeps_what_ownership_change_detection_and_status_read() {
        use k8s_openapi::api::apps::v1::DeploymentStatus;
        let website = {
            let mut w = Website::new("kubia", website_crd::WebsiteSpec::new("https://e.com/r.git"));
            w.metadata.namespace = Some("shop".into());
            w.metadata.uid = Some("w-uid".into());
            w
        };
        let mut d = resources::deployment(&website, &crate::settings::ChildConfig::default()).expect("builds");
        d.metadata.uid = Some("d-uid".into());
        d.metadata.resource_version = Some("42".into());
        d.metadata.generation = Some(3);
        d.status = Some(DeploymentStatus {
            available_replicas: Some(1),
            observed_generation: Some(3),
            ..DeploymentStatus::default()
        });
        let before = d.clone();
        strip_deployment(&mut d);
        assert_eq!(d.metadata.uid, before.metadata.uid);
        assert_eq!(d.metadata.resource_version, before.metadata.resource_version);
        assert_eq!(d.metadata.owner_references, before.metadata.owner_references);
        assert!(d.metadata.labels.is_none(), "labels are not kept");
        let status =
            |d: &Deployment| crate::status::desired_status(&website, Some(d), "u".into(), Time(Timestamp::UNIX_EPOCH));
        assert_eq!(status(&d), status(&before), "the Website's status is computed the same from the cache");
        let template = d.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        assert!(template.spec.is_none(), "the pod template is not kept");
    }

    #[test]
    fn conflicts_are_retried_at_least_every_thirty_seconds() {
        let secs: Vec<u64> = (1..=6).map(|n| conflict_backoff(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 30, 30, 30]);
    }
}
