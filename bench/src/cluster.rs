//! The speed suite's side of a real control plane: starting one (optionally with an audit log of the requests
//! that touch Websites and their children), making Websites, switching the registered webhooks, and watching
//! until the controller (or its baseline) has converged.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use futures::{Stream, StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::PostParams;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt as _};
use website_crd::{Website, WebsiteSpec};
use website_e2e::operator::{create_namespace, register_webhooks, workspace_root};
use website_e2e::{ControlPlane, ControlPlaneOptions};

/// The namespace every Website of the suite lives in.
pub const NAMESPACE: &str = "bench";
/// The repository every Website serves.
pub const GIT_REPO: &str = "https://github.com/luksa/kubia-website-example.git";

/// What the audit policy records: one event per request (at `ResponseComplete`) that writes or gets a Website, its
/// status or one of its children, or an Event. Lists and watches are not recorded.
const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    verbs: ["create", "update", "patch", "delete", "get"]
    resources:
      - group: ""
        resources: ["configmaps", "services", "events"]
      - group: "apps"
        resources: ["deployments"]
      - group: "events.k8s.io"
        resources: ["events"]
      - group: "extensions.example.com"
        resources: ["websites", "websites/status"]
  - level: None
"#;

/// A control plane without kube-controller-manager (so nothing but the suite and the process under test writes),
/// with the Website CRD installed and the namespace [`NAMESPACE`] created. Stopped on drop.
pub struct Cluster {
    /// The control plane.
    pub cp: ControlPlane,
    /// Its audit log, when asked for.
    pub audit: Option<AuditLog>,
    /// Declared last: deleted after the API server that writes into it has stopped.
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts a control plane; with `audit`, kube-apiserver records the requests described by the policy above.
    ///
    /// # Errors
    /// When the control plane does not start or the CRD is not established.
    pub async fn start(audit: bool) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut options = ControlPlaneOptions { controller_manager: false, ..ControlPlaneOptions::default() };
        let audit = if audit {
            let policy = dir.path().join("audit-policy.yaml");
            std::fs::write(&policy, AUDIT_POLICY)?;
            let log = dir.path().join("audit.log");
            options.apiserver_args.extend([
                format!("--audit-policy-file={}", policy.display()),
                format!("--audit-log-path={}", log.display()),
                "--audit-log-format=json".into(),
                "--audit-log-mode=blocking".into(),
            ]);
            Some(AuditLog { path: log })
        } else {
            None
        };
        let cp = ControlPlane::start(options).await?;
        cp.apply_crd(workspace_root().join(website_crd::CRD_MANIFEST_PATH)).await?;
        create_namespace(&cp, NAMESPACE).await?;
        Ok(Self { cp, audit, _dir: dir })
    }

    /// The Websites of [`NAMESPACE`].
    pub fn websites(&self) -> Api<Website> {
        Api::namespaced(self.cp.client(), NAMESPACE)
    }
}

/// The name of the `i`-th Website: `site-0000`, `site-0001`, ...
pub fn site_name(i: usize) -> String {
    format!("site-{i:04}")
}

/// A Website named `name` in [`NAMESPACE`] serving [`GIT_REPO`], every other field left to its default.
pub fn website(name: &str) -> Website {
    let mut website = Website::new(name, WebsiteSpec::new(GIT_REPO));
    website.metadata.namespace = Some(NAMESPACE.into());
    website
}

/// Creates the Websites numbered `range` with `concurrency` requests in flight.
///
/// # Errors
/// When the API server refuses one.
pub async fn create_websites(api: &Api<Website>, range: std::ops::Range<usize>, concurrency: usize) -> Result<()> {
    futures::stream::iter(range)
        .map(|i| async move {
            api.create(&PostParams::default(), &website(&site_name(i)))
                .await
                .with_context(|| format!("failed to create Website {}", site_name(i)))
        })
        .buffer_unordered(concurrency)
        .try_for_each(|_| async { Ok(()) })
        .await
}

/// Which webhooks the API server calls for Websites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// None: both configurations deleted.
    None,
    /// The chart's two configurations pointing at a webhook that refuses a local-path gitRepo (`website-webhook`).
    Validating,
    /// The chart's two configurations pointing at a webhook that allows everything (`minimal-webhook`).
    AllowAll,
}

/// Registers the chart's webhook configurations for the webhook at `base_url` (or deletes them, for
/// [`Admission::None`]) and waits until the API server behaves accordingly: it refuses a Website with a local-path
/// gitRepo ([`Admission::Validating`]), or admits it while calling a webhook ([`Admission::AllowAll`]), or admits it
/// without calling any ([`Admission::None`]). Calls are counted from the API server's metrics.
///
/// # Errors
/// When the configurations cannot be written or the API server does not behave so within 30 s.
pub async fn use_webhooks(cp: &ControlPlane, admission: Admission, base_url: &str, ca_pem: &str) -> Result<()> {
    match admission {
        Admission::None => {
            cp.kubectl(&[
                "delete",
                "validatingwebhookconfiguration,mutatingwebhookconfiguration",
                website_e2e::operator::WEBHOOK_CONFIGURATION,
                "--ignore-not-found",
            ])
            .await?
            .ensure_success()?;
        }
        Admission::Validating | Admission::AllowAll => register_webhooks(cp, base_url, ca_pem, "Fail").await?,
    }
    let websites: Api<Website> = Api::namespaced(cp.client(), NAMESPACE);
    let mut probe = website("webhook-probe");
    probe.spec.git_repo = "file:///webhook-probe".into();
    let dry_run = PostParams { dry_run: true, ..PostParams::default() };
    website_e2e::eventually(Duration::from_secs(30), async || {
        let before = webhook_calls(cp).await?;
        let outcome = websites.create(&dry_run, &probe).await;
        let called = webhook_calls(cp).await? > before;
        let refused =
            matches!(&outcome, Err(kube::Error::Api(s)) if s.message.contains("local paths are not supported"));
        let now = match (called, refused) {
            (_, true) => Admission::Validating,
            (true, false) => Admission::AllowAll,
            (false, false) => Admission::None,
        };
        if now == admission {
            Ok(())
        } else {
            Err(anyhow!("the API server still behaves as with {now:?}: {outcome:?}"))
        }
    })
    .await
    .with_context(|| format!("the API server did not switch to {admission:?}"))
}

/// How many times the API server has called an admission webhook (all of them together).
async fn webhook_calls(cp: &ControlPlane) -> Result<f64> {
    let request = http::Request::get("/metrics").body(Vec::new()).context("a GET with a static path is valid")?;
    let text = cp.client().request_text(request).await.context("failed to read the API server's metrics")?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("apiserver_admission_webhook_admission_duration_seconds_count{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// kube-apiserver's audit log (JSON lines) of the requests the suite's policy records.
#[derive(Clone, Debug)]
pub struct AuditLog {
    path: PathBuf,
}

/// Requests recorded in an audit log, for [`NAMESPACE`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    /// Count per `(resource[/subresource], verb)`.
    pub by_kind: BTreeMap<(String, String), u64>,
    /// Requests answered with a status of 400 or more, per `(resource[/subresource], verb, status)`.
    pub failures: BTreeMap<(String, String, u64), u64>,
}

impl Requests {
    /// Requests that write (create, update, patch, delete) a Website, its status or a child; Events excluded.
    pub fn writes(&self) -> u64 {
        self.count(|resource, verb| resource != "events" && verb != "get")
    }

    /// Gets of a Website or a child.
    pub fn gets(&self) -> u64 {
        self.count(|resource, verb| resource != "events" && verb == "get")
    }

    /// Events written.
    pub fn events(&self) -> u64 {
        self.count(|resource, verb| resource == "events" && verb != "get")
    }

    fn count(&self, pick: impl Fn(&str, &str) -> bool) -> u64 {
        self.by_kind.iter().filter(|((r, v), _)| pick(r, v)).map(|(_, n)| n).sum()
    }

    /// Requests that failed, but for gets answered 404 (a child not there yet is an expected answer).
    pub fn failed(&self) -> u64 {
        self.failures.iter().filter(|((_, verb, code), _)| !(verb == "get" && *code == 404)).map(|(_, n)| n).sum()
    }

    /// Every count of `self` less the same count of `later`: the requests before `later` began.
    #[must_use]
    pub fn minus(&self, later: &Self) -> Self {
        let mut before = self.clone();
        for (key, n) in &later.by_kind {
            if let Some(total) = before.by_kind.get_mut(key) {
                *total = total.saturating_sub(*n);
            }
        }
        for (key, n) in &later.failures {
            if let Some(total) = before.failures.get_mut(key) {
                *total = total.saturating_sub(*n);
            }
        }
        before.by_kind.retain(|_, n| *n > 0);
        before.failures.retain(|_, n| *n > 0);
        before
    }

    /// `resource verb status count` for each failed request.
    pub fn failure_breakdown(&self) -> String {
        self.failures.iter().map(|((r, v, c), n)| format!("{r} {v} {c}: {n}")).collect::<Vec<_>>().join(", ")
    }

    /// `resource verb count` for each, e.g. `deployments create 1000, websites/status patch 1000`.
    pub fn breakdown(&self) -> String {
        self.by_kind.iter().map(|((r, v), n)| format!("{r} {v} {n}")).collect::<Vec<_>>().join(", ")
    }
}

impl AuditLog {
    /// The log's current end, to count from.
    pub fn mark(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    /// The requests recorded since `mark` (whole lines only).
    ///
    /// # Errors
    /// When the log cannot be read.
    pub fn since(&self, mark: u64) -> Result<Requests> {
        let bytes = std::fs::read(&self.path).with_context(|| format!("failed to read {}", self.path.display()))?;
        let start = usize::try_from(mark).unwrap_or(usize::MAX).min(bytes.len());
        let mut requests = Requests::default();
        for line in bytes[start..].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(event) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
            let text = |pointer: &str| event.pointer(pointer).and_then(serde_json::Value::as_str).unwrap_or_default();
            if text("/objectRef/namespace") != NAMESPACE {
                continue;
            }
            let resource = match text("/objectRef/subresource") {
                "" => text("/objectRef/resource").to_owned(),
                sub => format!("{}/{sub}", text("/objectRef/resource")),
            };
            let verb = text("/verb").to_owned();
            let code = event.pointer("/responseStatus/code").and_then(serde_json::Value::as_u64).unwrap_or(0);
            if code >= 400 {
                *requests.failures.entry((resource.clone(), verb.clone(), code)).or_default() += 1;
            }
            *requests.by_kind.entry((resource, verb)).or_default() += 1;
        }
        Ok(requests)
    }
}

/// Changes (watch events ADDED or MODIFIED) seen per kind in [`NAMESPACE`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Websites, status included.
    pub websites: u64,
    /// ConfigMaps.
    pub config_maps: u64,
    /// Deployments.
    pub deployments: u64,
    /// Services.
    pub services: u64,
}

impl Changes {
    /// All kinds together.
    pub fn total(&self) -> u64 {
        self.websites + self.config_maps + self.deployments + self.services
    }

    /// The changes since `earlier`.
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            websites: self.websites - earlier.websites,
            config_maps: self.config_maps - earlier.config_maps,
            deployments: self.deployments - earlier.deployments,
            services: self.services - earlier.services,
        }
    }
}

impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Websites {}, ConfigMaps {}, Deployments {}, Services {}",
            self.websites, self.config_maps, self.deployments, self.services
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Website,
    ConfigMap,
    Deployment,
    Service,
}

#[derive(Default)]
struct State {
    /// Per Website: whether its status reports the generation it has.
    websites: HashMap<String, bool>,
    config_maps: HashSet<String>,
    deployments: HashSet<String>,
    services: HashSet<String>,
    listed: HashSet<&'static str>,
    changes: Changes,
    last_event: Option<Instant>,
}

impl State {
    fn apply(&mut self, kind: Kind, name: String, converged: bool, counted: bool) {
        let count = |n: &mut u64| {
            if counted {
                *n += 1;
            }
        };
        match kind {
            Kind::Website => {
                count(&mut self.changes.websites);
                self.websites.insert(name, converged);
            }
            Kind::ConfigMap => {
                count(&mut self.changes.config_maps);
                self.config_maps.insert(name);
            }
            Kind::Deployment => {
                count(&mut self.changes.deployments);
                self.deployments.insert(name);
            }
            Kind::Service => {
                count(&mut self.changes.services);
                self.services.insert(name);
            }
        }
        self.last_event = Some(Instant::now());
    }

    fn delete(&mut self, kind: Kind, name: &str) {
        match kind {
            Kind::Website => self.websites.remove(name).is_some(),
            Kind::ConfigMap => self.config_maps.remove(name),
            Kind::Deployment => self.deployments.remove(name),
            Kind::Service => self.services.remove(name),
        };
        self.last_event = Some(Instant::now());
    }

    /// How many Websites have their ConfigMap, Deployment, Service and a status of their generation.
    fn converged(&self) -> usize {
        self.websites
            .iter()
            .filter(|(name, status)| {
                **status
                    && self.deployments.contains(*name)
                    && self.services.contains(*name)
                    && self.config_maps.contains(&format!("{name}-web"))
            })
            .count()
    }
}

/// Watches the Websites of [`NAMESPACE`] and their children's kinds, to tell when every Website has converged and
/// to count the changes made to them. The watches stop on drop.
pub struct Tracker {
    state: Arc<Mutex<State>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Tracker {
    /// Starts the watches and waits until each has listed what exists.
    ///
    /// # Errors
    /// When a watch has not listed within 30 s.
    pub async fn start(client: &Client) -> Result<Self> {
        let state = Arc::new(Mutex::new(State::default()));
        let config = watcher::Config::default();
        let websites = watcher::watcher(Api::<Website>::namespaced(client.clone(), NAMESPACE), config.clone())
            .map_ok(|e| map_event(e, |w: &Website| (w.name_any(), converged(w))));
        let config_maps = watcher::watcher(
            Api::<PartialObjectMeta<ConfigMap>>::namespaced(client.clone(), NAMESPACE),
            config.clone(),
        )
        .map_ok(|e| map_event(e, |m| (m.name_any(), true)));
        let deployments = watcher::watcher(
            Api::<PartialObjectMeta<Deployment>>::namespaced(client.clone(), NAMESPACE),
            config.clone(),
        )
        .map_ok(|e| map_event(e, |m| (m.name_any(), true)));
        let services =
            watcher::watcher(Api::<PartialObjectMeta<Service>>::namespaced(client.clone(), NAMESPACE), config)
                .map_ok(|e| map_event(e, |m| (m.name_any(), true)));
        let tasks = vec![
            tokio::spawn(follow(websites, Kind::Website, "websites", state.clone())),
            tokio::spawn(follow(config_maps, Kind::ConfigMap, "configmaps", state.clone())),
            tokio::spawn(follow(deployments, Kind::Deployment, "deployments", state.clone())),
            tokio::spawn(follow(services, Kind::Service, "services", state.clone())),
        ];
        let tracker = Self { state, tasks };
        let deadline = Instant::now() + Duration::from_secs(30);
        while tracker.lock().listed.len() < 4 {
            if Instant::now() > deadline {
                bail!("the watches did not list within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(tracker)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The changes seen so far.
    pub fn changes(&self) -> Changes {
        self.lock().changes
    }

    /// Waits until at least `n` Websites exist and every one has converged, printing progress every 10 s;
    /// returns when the last change that completed it was seen.
    ///
    /// # Errors
    /// When that has not happened within `timeout`.
    pub async fn wait_converged(&self, n: usize, timeout: Duration) -> Result<Instant> {
        let started = Instant::now();
        let mut next_report = started + Duration::from_secs(10);
        loop {
            let (total, done, last) = {
                let state = self.lock();
                (state.websites.len(), state.converged(), state.last_event)
            };
            if total >= n && done == total {
                return Ok(last.unwrap_or_else(Instant::now));
            }
            if started.elapsed() > timeout {
                bail!("{done} of {total} Websites converged after {timeout:?} (expected {n})");
            }
            if Instant::now() >= next_report {
                eprintln!("  ... {done} of {n} Websites converged after {:.0} s", started.elapsed().as_secs_f64());
                next_report += Duration::from_secs(10);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Whether `website`'s status reports the generation it has.
fn converged(website: &Website) -> bool {
    let generation = website.metadata.generation;
    generation.is_some() && website.status.as_ref().and_then(|s| s.observed_generation) == generation
}

/// A watch event reduced to the name (and convergence) of its object.
fn map_event<K>(event: Event<K>, key: impl Fn(&K) -> (String, bool)) -> Event<(String, bool)> {
    match event {
        Event::Apply(o) => Event::Apply(key(&o)),
        Event::InitApply(o) => Event::InitApply(key(&o)),
        Event::Delete(o) => Event::Delete(key(&o)),
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
    }
}

/// Applies a watch's events to `state` until it is aborted. Objects listed when a watch (re)starts are not counted
/// as changes; everything after is.
async fn follow(
    events: impl Stream<Item = Result<Event<(String, bool)>, watcher::Error>> + Send,
    kind: Kind,
    name: &'static str,
    state: Arc<Mutex<State>>,
) {
    let mut events = std::pin::pin!(events.default_backoff());
    while let Some(event) = events.next().await {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            Ok(Event::Apply((object, ok))) => state.apply(kind, object, ok, true),
            Ok(Event::InitApply((object, ok))) => state.apply(kind, object, ok, false),
            Ok(Event::Delete((object, _))) => state.delete(kind, &object),
            Ok(Event::InitDone) => {
                state.listed.insert(name);
            }
            Ok(Event::Init) => {}
            Err(error) => eprintln!("  (watch of {name} failed, retrying: {error})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_website_converges_with_its_three_children_and_a_current_status() {
        let mut state = State::default();
        state.apply(Kind::Website, "site-0000".into(), true, false);
        state.apply(Kind::Deployment, "site-0000".into(), true, true);
        state.apply(Kind::Service, "site-0000".into(), true, true);
        assert_eq!(state.converged(), 0, "no ConfigMap yet");
        state.apply(Kind::ConfigMap, "site-0000-web".into(), true, true);
        assert_eq!(state.converged(), 1);
        state.apply(Kind::Website, "site-0000".into(), false, true);
        assert_eq!(state.converged(), 0, "a new generation not yet observed");
        assert_eq!(state.changes, Changes { websites: 1, config_maps: 1, deployments: 1, services: 1 });
    }

    #[test]
    fn audit_requests_are_split_into_writes_gets_and_events() {
        let mut requests = Requests::default();
        for (resource, verb, n) in [
            ("deployments", "create", 3),
            ("websites/status", "patch", 2),
            ("services", "get", 5),
            ("events", "create", 1),
        ] {
            requests.by_kind.insert((resource.into(), verb.into()), n);
        }
        assert_eq!(requests.writes(), 5);
        assert_eq!(requests.gets(), 5);
        assert_eq!(requests.events(), 1);
        requests.failures.insert(("services".into(), "get".into(), 404), 5);
        requests.failures.insert(("services".into(), "create".into(), 409), 1);
        assert_eq!(requests.failed(), 1, "a get answered 404 is no failure");
        let mut later = Requests::default();
        later.by_kind.insert(("deployments".into(), "create".into()), 1);
        later.failures.insert(("services".into(), "create".into(), 409), 1);
        let before = requests.minus(&later);
        assert_eq!(before.writes(), 4);
        assert_eq!(before.failed(), 0);
    }
}
