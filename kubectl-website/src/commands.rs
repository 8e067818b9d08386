//! The commands that talk to the cluster: create, list, status, wait and delete.

use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use website_crd::{CredentialsKind, EffectiveSpec, GitCredentials, ServiceType, Website, WebsiteSpec};

use crate::client::Connection;
use crate::error::{Failure, Result};
use crate::output::{self, Format, age, seconds_since, table};

/// `kind.group/name`, as kubectl names what it changed.
fn resource_name(name: &str) -> String {
    format!("website.{}/{name}", website_crd::GROUP)
}

fn print_warnings(connection: &Connection) {
    for warning in connection.take_warnings() {
        eprintln!("Warning: {warning}");
    }
}

/// The flags of `create`.
#[derive(clap::Args, Clone, Debug)]
pub struct CreateArgs {
    /// Name of the Website (and of its Deployment and Service).
    pub name: String,
    /// The git repository to serve, e.g. https://github.com/luksa/kubia-website-example.git.
    #[arg(long)]
    pub repo: String,
    /// Branch, tag or commit (default HEAD).
    #[arg(long = "ref")]
    pub git_ref: Option<String>,
    /// Web server pods (default 1).
    #[arg(long)]
    pub replicas: Option<i32>,
    /// ClusterIP (default), NodePort or LoadBalancer.
    #[arg(long, value_parser = parse_service_type)]
    pub service_type: Option<ServiceType>,
    /// Port of the Service (default 80).
    #[arg(long)]
    pub port: Option<i32>,
    /// Seconds between two fetches of the repository (default 60).
    #[arg(long = "sync-interval")]
    pub sync_interval_seconds: Option<i32>,
    /// A Secret with the repository's credentials (needs --credentials-type; you must be allowed to get it).
    #[arg(long, requires = "credentials_type")]
    pub credentials_secret: Option<String>,
    /// What that Secret holds: HTTPS (username, password) or SSH (ssh-privatekey, known_hosts).
    #[arg(long, value_parser = parse_credentials_kind, requires = "credentials_secret")]
    pub credentials_type: Option<CredentialsKind>,
    /// `client`: check and print, send nothing; `server`: the API server and both webhooks judge it, nothing
    /// is stored.
    #[arg(long, value_enum)]
    pub dry_run: Option<DryRun>,
}

/// `--dry-run`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DryRun {
    /// Check locally and print; send nothing.
    Client,
    /// Send it for the API server and the webhooks to judge; store nothing.
    Server,
}

fn parse_service_type(value: &str) -> Result<ServiceType, String> {
    serde_json::from_value(serde_json::Value::String(value.to_owned()))
        .map_err(|_| format!("{value:?} is not a service type; accepted: ClusterIP, NodePort, LoadBalancer"))
}

fn parse_credentials_kind(value: &str) -> Result<CredentialsKind, String> {
    serde_json::from_value(serde_json::Value::String(value.to_owned()))
        .map_err(|_| format!("{value:?} is not a kind of credentials; accepted: HTTPS, SSH"))
}

impl CreateArgs {
    /// The Website these flags describe, in `namespace`.
    pub fn website(&self, namespace: &str) -> Website {
        let spec = WebsiteSpec {
            git_ref: self.git_ref.clone(),
            replicas: self.replicas,
            service_type: self.service_type,
            port: self.port,
            sync_interval_seconds: self.sync_interval_seconds,
            credentials: self
                .credentials_secret
                .clone()
                .zip(self.credentials_type)
                .map(|(secret_name, kind)| GitCredentials { kind, secret_name }),
            ..WebsiteSpec::new(self.repo.clone())
        };
        let mut website = Website::new(&self.name, spec);
        website.metadata.namespace = Some(namespace.to_owned());
        website
    }
}

/// Every rule `website` breaks, one per line, as the validating webhook words them; `Ok` when none.
///
/// # Errors
/// [`Failure::Invalid`] listing the violations.
pub fn check_locally(website: &Website) -> Result<()> {
    let violations = website_crd::validate_website(website);
    if violations.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = violations.iter().map(|v| format!("  {v}")).collect();
    Err(Failure::Invalid(format!("the Website {:?} is invalid:\n{}", website.name_any(), lines.join("\n"))))
}

/// `create`.
///
/// # Errors
/// An invalid Website ([`Failure::Invalid`]), or the API server's refusal.
pub async fn create(connection: Option<&Connection>, args: &CreateArgs, namespace: &str, format: Format) -> Result<()> {
    let website = args.website(namespace);
    check_locally(&website)?;
    for warning in website_crd::warnings(&website.spec) {
        eprintln!("Warning: {warning}");
    }
    let print = |website: &Website, suffix: &str| -> Result<()> {
        match format {
            Format::Json | Format::Yaml => print!("{}", structured(website, format)?),
            Format::Table | Format::Wide => println!("{} created{suffix}", resource_name(&website.name_any())),
        }
        Ok(())
    };
    let Some(connection) = connection.filter(|_| args.dry_run != Some(DryRun::Client)) else {
        return print(&website, " (dry run)");
    };
    let api: Api<Website> = Api::namespaced(connection.client.clone(), namespace);
    let params = PostParams { dry_run: args.dry_run == Some(DryRun::Server), ..PostParams::default() };
    let result = api.create(&params, &website).await;
    // The webhooks' warnings, once: the local check already printed the same ones.
    let local = website_crd::warnings(&website.spec);
    for warning in connection.take_warnings().into_iter().filter(|w| !local.contains(w)) {
        eprintln!("Warning: {warning}");
    }
    let created = result.map_err(|e| match e {
        kube::Error::Api(status) if matches!(status.code, 403 | 422) => {
            Failure::Invalid(format!("the API server refused Website {:?}: {}", website.name_any(), status.message))
        }
        other => Failure::from_kube(&format!("create Website {:?}", website.name_any()), other),
    })?;
    print(&created, if args.dry_run == Some(DryRun::Server) { " (server dry run)" } else { "" })
}

fn structured<T: serde::Serialize>(value: &T, format: Format) -> Result<String> {
    output::structured(value, format).map_err(|e| Failure::Input(format!("cannot print the result: {e}")))
}

fn ready_condition(website: &Website) -> Option<&Condition> {
    website.status.as_ref().and_then(|s| s.ready_condition())
}

/// The rows of `list`, in the order given.
pub fn list_rows(websites: &[Website], all_namespaces: bool, wide: bool) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let mut headers = vec!["NAME", "REPOSITORY", "REF", "READY", "URL", "AGE"];
    if wide {
        headers.extend(["REPLICAS", "AVAILABLE", "SERVICE-TYPE", "PORT"]);
    }
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let rows = websites
        .iter()
        .map(|w| {
            let spec = EffectiveSpec::from(&w.spec);
            let status = w.status.clone().unwrap_or_default();
            let mut row = vec![
                w.name_any(),
                spec.git_repo.clone(),
                spec.git_ref.clone(),
                ready_condition(w).map_or_else(|| "Unknown".to_owned(), |c| c.status.clone()),
                status.url.clone().unwrap_or_else(|| "<none>".to_owned()),
                age(seconds_since(w.metadata.creation_timestamp.as_ref())),
            ];
            if wide {
                row.extend([
                    spec.replicas.to_string(),
                    status.available_replicas.unwrap_or(0).to_string(),
                    spec.service_type.to_string(),
                    spec.port.to_string(),
                ]);
            }
            if all_namespaces {
                row.insert(0, w.namespace().unwrap_or_default());
            }
            row
        })
        .collect();
    (headers, rows)
}

/// `list`.
///
/// # Errors
/// The API server's refusal, or no answer.
pub async fn list(connection: &Connection, namespace: &str, all_namespaces: bool, format: Format) -> Result<()> {
    let api: Api<Website> = if all_namespaces {
        Api::all(connection.client.clone())
    } else {
        Api::namespaced(connection.client.clone(), namespace)
    };
    let mut websites = api.list(&ListParams::default()).await.map_err(|e| Failure::from_kube("list Websites", e))?;
    print_warnings(connection);
    websites.items.sort_by_key(|w| (w.namespace(), w.name_any()));
    match format {
        Format::Json | Format::Yaml => {
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": websites.items});
            print!("{}", structured(&list, format)?);
        }
        Format::Table | Format::Wide => {
            if websites.items.is_empty() {
                if all_namespaces {
                    eprintln!("No Websites found.");
                } else {
                    eprintln!("No Websites found in {namespace} namespace.");
                }
                return Ok(());
            }
            let (headers, rows) = list_rows(&websites.items, all_namespaces, format == Format::Wide);
            print!("{}", table(&headers, &rows));
        }
    }
    Ok(())
}

/// A child of a Website as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Child {
    /// Its kind.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// Whether it is there, the Website's own, and serving.
    pub ready: bool,
    /// Replicas, addresses, or what is wrong.
    pub detail: String,
}

/// What `status` reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StatusReport {
    /// The Website's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its repository.
    pub repository: String,
    /// The ref it serves.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// Its in-cluster URL, once known.
    pub url: Option<String>,
    /// Its conditions.
    pub conditions: Vec<Condition>,
    /// Its children.
    pub children: Vec<Child>,
    /// Its recent events, oldest first: (age, type, reason, message).
    pub events: Vec<[String; 4]>,
    /// What to do when it is not ready.
    pub next_steps: Vec<String>,
}

fn owner_problem<K: Resource>(object: &K, uid: &str) -> Option<String> {
    let controller = object.meta().owner_references.iter().flatten().find(|o| o.controller == Some(true));
    match controller {
        Some(owner) if owner.uid == uid => None,
        Some(owner) => Some(format!("not this Website's: controlled by {}/{}", owner.kind, owner.name)),
        None => Some("not this Website's: it has no controller".to_owned()),
    }
}

fn child<K: Resource>(
    kind: &'static str,
    name: &str,
    object: Option<&K>,
    uid: &str,
    ready: impl Fn(&K) -> (bool, String),
) -> Child {
    let (ready, detail) = match object {
        None => (false, "missing".to_owned()),
        Some(object) => match owner_problem(object, uid) {
            Some(problem) => (false, problem),
            None => ready(object),
        },
    };
    Child { kind, name: name.to_owned(), ready, detail }
}

/// The next steps for a Website that is not ready, from its status.
pub fn next_steps(website: &Website) -> Vec<String> {
    let (name, namespace) = (website.name_any(), website.namespace().unwrap_or_default());
    let Some(status) = &website.status else {
        return vec![
            "The controller has not reported on this Website yet: check that website-controller is running and \
             ready, and read its log."
                .to_owned(),
        ];
    };
    if status.observed_generation < website.metadata.generation {
        return vec!["The controller has not caught up with the latest change of the spec yet.".to_owned()];
    }
    let Some(ready) = ready_condition(website) else {
        return vec!["The controller reports no Ready condition yet.".to_owned()];
    };
    if ready.status == "True" {
        return Vec::new();
    }
    match ready.reason.as_str() {
        "ChildConflict" => vec![format!(
            "{} The Website takes the object over only once it is gone: it never changes or deletes an object it \
             does not own.",
            ready.message
        )],
        "InvalidSpec" => vec![format!(
            "The stored spec breaks the rules: `kubectl get website {name} -n {namespace} -o yaml | kubectl website \
             validate -f -` shows how; fix it with `kubectl edit website {name} -n {namespace}`."
        )],
        _ => vec![
            format!(
                "Pods are not available yet: `kubectl get pods -n {namespace} -l app.kubernetes.io/instance={name}`."
            ),
            format!(
                "For a pod that does not start, `kubectl describe pod -n {namespace} POD`; for one that serves \
                 nothing, `kubectl logs -n {namespace} POD -c git-sync` (a repository that cannot be fetched, or \
                 credentials that do not work)."
            ),
        ],
    }
}

/// `status`.
///
/// # Errors
/// The API server's refusal (a missing Website included), or no answer.
pub async fn status(connection: &Connection, namespace: &str, name: &str, format: Format) -> Result<()> {
    let client = connection.client.clone();
    let website = Api::<Website>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|e| Failure::from_kube(&format!("get Website {name:?}"), e))?;
    let uid = website.uid().unwrap_or_default();
    let read = |e| Failure::from_kube(&format!("read the children of Website {name:?}"), e);
    let web_config = format!("{name}-web");
    let (deployment, service, config_map, events) = futures::try_join!(
        async { Api::<Deployment>::namespaced(client.clone(), namespace).get_opt(name).await.map_err(read) },
        async { Api::<Service>::namespaced(client.clone(), namespace).get_opt(name).await.map_err(read) },
        async { Api::<ConfigMap>::namespaced(client.clone(), namespace).get_opt(&web_config).await.map_err(read) },
        async {
            let params = ListParams::default().fields(&format!("involvedObject.uid={uid}"));
            Api::<Event>::namespaced(client.clone(), namespace).list(&params).await.map_err(read)
        },
    )?;
    print_warnings(connection);
    let children = vec![
        child("Deployment", name, deployment.as_ref(), &uid, |d: &Deployment| {
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let available = d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0);
            (available >= want, format!("{available}/{want} pods available"))
        }),
        child("Service", name, service.as_ref(), &uid, |s: &Service| {
            let spec = s.spec.clone().unwrap_or_default();
            let ports: Vec<String> = spec.ports.iter().flatten().map(|p| p.port.to_string()).collect();
            let address = spec.cluster_ip.unwrap_or_else(|| "<pending>".to_owned());
            (true, format!("{} {address}:{}", spec.type_.unwrap_or_default(), ports.join(",")))
        }),
        child("ConfigMap", &web_config, config_map.as_ref(), &uid, |_| (true, "web server configuration".to_owned())),
    ];
    let mut events = events.items;
    events.sort_by_key(|e| event_time(e).unwrap_or_default());
    let events: Vec<[String; 4]> = events
        .iter()
        .rev()
        .take(10)
        .rev()
        .map(|e| {
            let seconds = event_time(e).map(|t| k8s_openapi::jiff::Timestamp::now().as_second() - t);
            [
                age(seconds),
                e.type_.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                e.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let spec = EffectiveSpec::from(&website.spec);
    let report = StatusReport {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        repository: spec.git_repo,
        git_ref: spec.git_ref,
        url: website.status.as_ref().and_then(|s| s.url.clone()),
        conditions: website.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default(),
        children,
        events,
        next_steps: next_steps(&website),
    };
    match format {
        Format::Json | Format::Yaml => print!("{}", structured(&report, format)?),
        Format::Table | Format::Wide => print!("{}", render_status(&report)),
    }
    Ok(())
}

/// When an event last happened, in seconds since the epoch.
fn event_time(event: &Event) -> Option<i64> {
    let series = event.series.as_ref().and_then(|s| s.last_observed_time.as_ref()).map(|t| t.0.as_second());
    series
        .or_else(|| event.last_timestamp.as_ref().map(|t| t.0.as_second()))
        .or_else(|| event.event_time.as_ref().map(|t| t.0.as_second()))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0.as_second()))
}

/// The text `status` prints.
pub fn render_status(report: &StatusReport) -> String {
    let mut out = String::new();
    let field = |out: &mut String, label: &str, value: &str| out.push_str(&format!("{label:<12}{value}\n"));
    field(&mut out, "Name:", &report.name);
    field(&mut out, "Namespace:", &report.namespace);
    field(&mut out, "Repository:", &report.repository);
    field(&mut out, "Ref:", &report.git_ref);
    field(&mut out, "URL:", report.url.as_deref().unwrap_or("<none>"));
    out.push_str("\nConditions:\n");
    if report.conditions.is_empty() {
        out.push_str("  <none>\n");
    } else {
        let rows: Vec<Vec<String>> = report
            .conditions
            .iter()
            .map(|c| vec![c.type_.clone(), c.status.clone(), c.reason.clone(), c.message.clone()])
            .collect();
        out.push_str(&indent(&table(&["TYPE", "STATUS", "REASON", "MESSAGE"], &rows)));
    }
    out.push_str("\nChildren:\n");
    let rows: Vec<Vec<String>> = report
        .children
        .iter()
        .map(|c| {
            vec![c.kind.to_owned(), c.name.clone(), if c.ready { "yes" } else { "no" }.to_owned(), c.detail.clone()]
        })
        .collect();
    out.push_str(&indent(&table(&["KIND", "NAME", "READY", "DETAIL"], &rows)));
    out.push_str("\nEvents:\n");
    if report.events.is_empty() {
        out.push_str("  <none>\n");
    } else {
        let rows: Vec<Vec<String>> = report.events.iter().map(|e| e.to_vec()).collect();
        out.push_str(&indent(&table(&["AGE", "TYPE", "REASON", "MESSAGE"], &rows)));
    }
    if !report.next_steps.is_empty() {
        out.push_str("\nNext:\n");
        for step in &report.next_steps {
            out.push_str(&format!("  - {step}\n"));
        }
    }
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// What `wait` waits for.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitFor {
    /// The `Ready` condition is `True` for the current spec.
    Ready,
}

/// Whether `website` is ready for its current spec.
pub fn is_ready(website: &Website) -> bool {
    let current = website.status.as_ref().and_then(|s| s.observed_generation) >= website.metadata.generation;
    current && ready_condition(website).is_some_and(|c| c.status == "True")
}

fn describe_ready(website: Option<&Website>) -> String {
    match website.and_then(ready_condition) {
        Some(c) => format!("Ready={} ({}): {}", c.status, c.reason, c.message),
        None => "no Ready condition yet".to_owned(),
    }
}

/// Parses a duration as kubectl writes it: `90s`, `5m`, `1h`, `1m30s`, or plain seconds.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("{text:?} is not a duration; accepted: e.g. 90s, 5m, 1h, 1m30s, or a number of seconds");
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let (mut total, mut number) = (0u64, String::new());
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(invalid()),
        };
        let value: u64 = number.parse().map_err(|_| invalid())?;
        total = total.checked_add(value.checked_mul(unit).ok_or_else(invalid)?).ok_or_else(invalid)?;
        number.clear();
    }
    if !number.is_empty() || text.is_empty() {
        return Err(invalid());
    }
    Ok(Duration::from_secs(total))
}

/// `wait`: watches the Website until it is ready, or `timeout` passes.
///
/// # Errors
/// [`Failure::WaitFailed`] with the last condition on timeout or when the Website goes away; the API server's
/// refusal (a missing Website included), or no answer.
pub async fn wait(connection: &Connection, namespace: &str, name: &str, timeout: Duration) -> Result<()> {
    let api: Api<Website> = Api::namespaced(connection.client.clone(), namespace);
    let Some(mut last) =
        api.get_opt(name).await.map_err(|e| Failure::from_kube(&format!("get Website {name:?}"), e))?
    else {
        return Err(Failure::Refused(format!("Website {name:?} not found in namespace {namespace:?}")));
    };
    let done = |website: &Website| println!("{} condition met", resource_name(&website.name_any()));
    if is_ready(&last) {
        done(&last);
        return Ok(());
    }
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(watcher(api, config));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let event = match tokio::time::timeout_at(deadline, events.next()).await {
            Err(_) => {
                return Err(Failure::WaitFailed(format!(
                    "timed out after {}s waiting for Website {name:?} to be ready; last: {}",
                    timeout.as_secs(),
                    describe_ready(Some(&last))
                )));
            }
            Ok(None) => return Err(Failure::Unreachable("the watch of the Website ended".into())),
            Ok(Some(Err(e))) => return Err(Failure::Unreachable(format!("the watch of Website {name:?} failed: {e}"))),
            Ok(Some(Ok(event))) => event,
        };
        match event {
            watcher::Event::Apply(website) | watcher::Event::InitApply(website) => last = website,
            watcher::Event::Delete(_) => {
                return Err(Failure::WaitFailed(format!("Website {name:?} was deleted while waiting for it")));
            }
            watcher::Event::Init | watcher::Event::InitDone => continue,
        }
        if is_ready(&last) {
            done(&last);
            return Ok(());
        }
    }
}

/// `delete`.
///
/// # Errors
/// The API server's refusal (a missing Website included), or no answer.
pub async fn delete(connection: &Connection, namespace: &str, name: &str) -> Result<()> {
    let api: Api<Website> = Api::namespaced(connection.client.clone(), namespace);
    api.delete(name, &DeleteParams::default())
        .await
        .map_err(|e| Failure::from_kube(&format!("delete Website {name:?}"), e))?;
    print_warnings(connection);
    println!("website.{} {name:?} deleted", website_crd::GROUP);
    Ok(())
}

/// The names of the Websites in `namespace`, for completion; none when the cluster does not answer.
pub async fn names(connection: &Connection, namespace: &str) -> Vec<String> {
    let api: Api<Website> = Api::namespaced(connection.client.clone(), namespace);
    let listed = tokio::time::timeout(Duration::from_secs(3), api.list_metadata(&ListParams::default())).await;
    match listed {
        Ok(Ok(list)) => list.items.iter().map(ResourceExt::name_any).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use website_crd::WebsiteStatus;

    fn website(name: &str, namespace: &str, spec: WebsiteSpec, ready: Option<(&str, &str, &str)>) -> Website {
        let mut website = Website::new(name, spec);
        website.metadata.namespace = Some(namespace.into());
        website.metadata.generation = Some(2);
        website.status = ready.map(|(status, reason, message)| WebsiteStatus {
            observed_generation: Some(2),
            available_replicas: Some(if status == "True" { 1 } else { 0 }),
            url: Some(format!("http://{name}.{namespace}.svc.cluster.local")),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: status.into(),
                reason: reason.into(),
                message: message.into(),
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ),
                observed_generation: Some(2),
            }],
        });
        website
    }

    fn websites() -> Vec<Website> {
        vec![
            website(
                "kubia",
                "default",
                WebsiteSpec::new("https://github.com/luksa/kubia-website-example.git"),
                Some(("True", "Available", "1 of 1 pods available")),
            ),
            website(
                "docs",
                "team-a",
                WebsiteSpec {
                    git_ref: Some("v2".into()),
                    replicas: Some(3),
                    service_type: Some(ServiceType::NodePort),
                    port: Some(8080),
                    ..WebsiteSpec::new("git@github.com:org/docs.git")
                },
                Some(("False", "PodsUnavailable", "0 of 3 pods available")),
            ),
            website("new", "default", WebsiteSpec::new("https://e.com/new.git"), None),
        ]
    }

    #[test]
    fn list_prints_the_golden_table() {
        let (headers, rows) = list_rows(&websites(), false, false);
        assert_eq!(
            table(&headers, &rows),
            "NAME    REPOSITORY                                           REF    READY     URL                                      AGE\n\
             kubia   https://github.com/luksa/kubia-website-example.git   HEAD   True      http://kubia.default.svc.cluster.local   <unknown>\n\
             docs    git@github.com:org/docs.git                          v2     False     http://docs.team-a.svc.cluster.local     <unknown>\n\
             new     https://e.com/new.git                                HEAD   Unknown   <none>                                   <unknown>\n"
        );
    }

    #[test]
    fn list_wide_across_namespaces_prints_the_golden_table() {
        let (headers, rows) = list_rows(&websites()[..2], true, true);
        assert_eq!(
            table(&headers, &rows),
            "NAMESPACE   NAME    REPOSITORY                                           REF    READY   URL                                      AGE         REPLICAS   AVAILABLE   SERVICE-TYPE   PORT\n\
             default     kubia   https://github.com/luksa/kubia-website-example.git   HEAD   True    http://kubia.default.svc.cluster.local   <unknown>   1          1           ClusterIP      80\n\
             team-a      docs    git@github.com:org/docs.git                          v2     False   http://docs.team-a.svc.cluster.local     <unknown>   3          0           NodePort       8080\n"
        );
    }

    #[test]
    fn status_prints_the_golden_report_with_next_steps() {
        let docs = &websites()[1];
        let report = StatusReport {
            name: "docs".into(),
            namespace: "team-a".into(),
            repository: "git@github.com:org/docs.git".into(),
            git_ref: "v2".into(),
            url: Some("http://docs.team-a.svc.cluster.local".into()),
            conditions: docs.status.clone().expect("status").conditions,
            children: vec![
                Child { kind: "Deployment", name: "docs".into(), ready: false, detail: "0/3 pods available".into() },
                Child { kind: "Service", name: "docs".into(), ready: true, detail: "NodePort 10.0.0.7:8080".into() },
                Child {
                    kind: "ConfigMap",
                    name: "docs-web".into(),
                    ready: true,
                    detail: "web server configuration".into(),
                },
            ],
            events: vec![["2m".into(), "Normal".into(), "Created".into(), "Created Deployment docs".into()]],
            next_steps: next_steps(docs),
        };
        assert_eq!(
            render_status(&report),
            "Name:       docs\n\
             Namespace:  team-a\n\
             Repository: git@github.com:org/docs.git\n\
             Ref:        v2\n\
             URL:        http://docs.team-a.svc.cluster.local\n\
             \n\
             Conditions:\n\
             \x20 TYPE    STATUS   REASON            MESSAGE\n\
             \x20 Ready   False    PodsUnavailable   0 of 3 pods available\n\
             \n\
             Children:\n\
             \x20 KIND         NAME       READY   DETAIL\n\
             \x20 Deployment   docs       no      0/3 pods available\n\
             \x20 Service      docs       yes     NodePort 10.0.0.7:8080\n\
             \x20 ConfigMap    docs-web   yes     web server configuration\n\
             \n\
             Events:\n\
             \x20 AGE   TYPE     REASON    MESSAGE\n\
             \x20 2m    Normal   Created   Created Deployment docs\n\
             \n\
             Next:\n\
             \x20 - Pods are not available yet: `kubectl get pods -n team-a -l app.kubernetes.io/instance=docs`.\n\
             \x20 - For a pod that does not start, `kubectl describe pod -n team-a POD`; for one that serves nothing, \
             `kubectl logs -n team-a POD -c git-sync` (a repository that cannot be fetched, or credentials that do not \
             work).\n"
        );
    }

    #[test]
    fn next_steps_follow_the_ready_condition() {
        let all = websites();
        assert_eq!(next_steps(&all[0]), Vec::<String>::new());
        assert!(next_steps(&all[2])[0].contains("has not reported on this Website yet"));
        let conflict = website(
            "shop",
            "default",
            WebsiteSpec::new("https://e.com/r.git"),
            Some(("False", "ChildConflict", "Service \"shop\" already exists and is not controlled by this Website")),
        );
        assert!(next_steps(&conflict)[0].starts_with("Service \"shop\" already exists"), "{:?}", next_steps(&conflict));
        let mut behind = all[0].clone();
        behind.metadata.generation = Some(3);
        assert!(!is_ready(&behind));
        assert!(next_steps(&behind)[0].contains("not caught up"));
        assert!(is_ready(&all[0]));
    }

    #[test]
    fn durations_read_like_kubectls() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["", "5x", "m", "5m3", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn create_checks_locally_with_the_webhooks_messages() {
        let args = CreateArgs {
            name: "Bad_Name".into(),
            repo: "file:///etc".into(),
            git_ref: None,
            replicas: Some(0),
            service_type: None,
            port: None,
            sync_interval_seconds: None,
            credentials_secret: None,
            credentials_type: None,
            dry_run: None,
        };
        let failure = check_locally(&args.website("default")).expect_err("invalid");
        assert_eq!(failure.exit_code(), 1);
        let text = failure.to_string();
        assert!(text.starts_with("the Website \"Bad_Name\" is invalid:\n  metadata.name: "), "{text}");
        assert!(text.contains("\n  spec.gitRepo: local paths are not supported"), "{text}");
        assert!(text.ends_with("\n  spec.replicas: must be between 1 and 100, got 0"), "{text}");
    }
}
