//! The controller end to end: Websites become Deployments and Services on a real API server, with real
//! server-side apply, real Deployment and ReplicaSet controllers and real garbage collection.

use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use website_crd::Website;
use website_e2e::operator::{create_namespace, workspace_root};
use website_e2e::{ControlPlane, ControlPlaneOptions, Operator, OperatorOptions, eventually};

const TIMEOUT: Duration = Duration::from_secs(60);
const SELECTOR: &str = "app.kubernetes.io/name=website,app.kubernetes.io/instance=kubia";

struct Env {
    cp: ControlPlane,
    op: Operator,
    ns: String,
}

impl Env {
    async fn start(options: OperatorOptions) -> Result<Self> {
        Self::start_with(ControlPlaneOptions::default(), options).await
    }

    async fn start_with(control_plane: ControlPlaneOptions, options: OperatorOptions) -> Result<Self> {
        let cp = ControlPlane::start(control_plane).await?;
        let mut controller_args = vec!["--log-format=text".to_owned()];
        controller_args.extend(options.controller_args.iter().cloned());
        let op = Operator::start(&cp, OperatorOptions { controller_args, ..options }).await?;
        let ns = "shop".to_owned();
        create_namespace(&cp, &ns).await?;
        Ok(Self { cp, op, ns })
    }

    fn client(&self) -> Client {
        self.cp.client()
    }

    fn websites(&self) -> Api<Website> {
        Api::namespaced(self.client(), &self.ns)
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client(), &self.ns)
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client(), &self.ns)
    }

    fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client(), &self.ns)
    }

    async fn create_website(&self, name: &str) -> Result<()> {
        let manifest = json!({"apiVersion": "extensions.example.com/v1", "kind": "Website",
            "metadata": {"name": name}, "spec": {"gitRepo": "https://github.com/luksa/kubia-website-example.git"}})
        .to_string();
        self.cp.kubectl_with_stdin(&["create", "-n", &self.ns, "-f", "-"], Some(&manifest)).await?.ensure_success()?;
        Ok(())
    }

    /// Waits until the Website `name` reports `Ready=False` with `reason`; returns the condition's message.
    async fn wait_reason(&self, name: &str, reason: &str) -> Result<String> {
        eventually(TIMEOUT, async || {
            let w = self.websites().get(name).await?;
            match w.status.as_ref().and_then(|s| s.ready_condition()) {
                Some(c) if c.reason == reason => Ok(c.message.clone()),
                other => bail!("Ready of {name} is {other:?}, want reason {reason}"),
            }
        })
        .await
        .with_context(|| format!("controller log:\n{}", self.op.controller_log(30)))
    }

    /// The Warning events recorded on the Website `name`, as (reason, message).
    async fn warnings(&self, name: &str) -> Result<Vec<(String, String)>> {
        let out = self
            .cp
            .kubectl(&[
                "get",
                "events",
                "-n",
                &self.ns,
                "--field-selector",
                &format!("involvedObject.name={name}"),
                "-o",
                "json",
            ])
            .await?
            .ensure_success()?;
        let list: serde_json::Value = serde_json::from_str(&out)?;
        Ok(list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["type"] == "Warning")
            .map(|e| (e["reason"].as_str().unwrap_or("").to_owned(), e["message"].as_str().unwrap_or("").to_owned()))
            .collect())
    }

    async fn create_example(&self, file: &str) -> Result<()> {
        let path = workspace_root().join("examples").join(file);
        self.cp.kubectl(&["create", "-n", &self.ns, "-f", &path.to_string_lossy()]).await?.ensure_success()?;
        Ok(())
    }

    /// What a kubelet would report for running, ready pods: the Deployment controller then counts them as
    /// available. No kubelet runs here.
    async fn mark_pods_ready(&self) -> Result<usize> {
        website_e2e::operator::mark_pods_ready(&self.cp, &self.ns, SELECTOR).await
    }

    async fn wait_ready(&self, want: &str) -> Result<Website> {
        eventually(TIMEOUT, async || {
            let w = self.websites().get("kubia").await?;
            let ready = w.status.as_ref().and_then(|s| s.ready_condition()).map(|c| c.status.clone());
            if ready.as_deref() == Some(want) {
                Ok(w)
            } else {
                bail!("Ready is {ready:?}, want {want}: {:?}", w.status)
            }
        })
        .await
        .with_context(|| format!("controller log:\n{}", self.op.controller_log(30)))
    }

    fn reconcile_count(&self) -> usize {
        self.op.controller_log(10_000).lines().filter(|l| l.contains("reconciled") && l.contains("kubia")).count()
    }
}

fn git_sync_args(d: &Deployment) -> Vec<String> {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| c.name == "git-sync"))
        .and_then(|c| c.args.clone())
        .unwrap_or_default()
}

fn replicas(d: &Deployment) -> Option<i32> {
    d.spec.as_ref().and_then(|s| s.replicas)
}

fn service_type(s: &Service) -> Option<String> {
    s.spec.as_ref().and_then(|s| s.type_.clone())
}

#[tokio::test]
async fn controller_creates_owned_children_and_reports_ready_once_pods_are_available() -> Result<()> {
    let env = Env::start(OperatorOptions::default()).await?;
    env.create_example("website.yaml").await?;
    let website = env.websites().get("kubia").await?;
    let uid = website.uid().context("uid")?;

    let deployment = eventually(TIMEOUT, async || Ok(env.deployments().get("kubia").await?)).await?;
    let owner = &deployment.owner_references()[0];
    ensure!(owner.kind == "Website" && owner.name == "kubia" && owner.uid == uid, "{owner:?}");
    ensure!(owner.controller == Some(true) && owner.block_owner_deletion == Some(true), "{owner:?}");
    ensure!(replicas(&deployment) == Some(1));
    let args = git_sync_args(&deployment);
    ensure!(args.contains(&"--repo=https://github.com/luksa/kubia-website-example.git".to_owned()), "{args:?}");
    ensure!(args.contains(&"--ref=HEAD".to_owned()) && args.contains(&"--period=60s".to_owned()), "{args:?}");
    // A repository's .gitmodules is never followed, and no volume can grow without bound.
    ensure!(args.contains(&"--submodules=off".to_owned()), "{args:?}");
    let pod = deployment.spec.as_ref().and_then(|s| s.template.spec.clone()).context("pod spec")?;
    let empty_dirs: Vec<_> = pod.volumes.iter().flatten().filter_map(|v| v.empty_dir.as_ref()).collect();
    ensure!(empty_dirs.len() == 3, "{empty_dirs:?}");
    ensure!(empty_dirs.iter().all(|e| e.size_limit.is_some()), "an emptyDir without sizeLimit: {empty_dirs:?}");
    for c in &pod.containers {
        let limits = c.resources.as_ref().and_then(|r| r.limits.clone()).unwrap_or_default();
        ensure!(limits.contains_key("ephemeral-storage"), "{} has no ephemeral-storage limit", c.name);
    }
    let web_config = env.config_maps().get("kubia-web").await?;
    ensure!(web_config.owner_references()[0].uid == uid, "{:?}", web_config.metadata);
    let conf = web_config.data.unwrap_or_default().remove("default.conf").unwrap_or_default();
    ensure!(conf.contains("disable_symlinks on from=$document_root;"), "{conf}");

    let service = eventually(TIMEOUT, async || Ok(env.services().get("kubia").await?)).await?;
    ensure!(service.owner_references()[0].uid == uid);
    ensure!(service_type(&service).as_deref() == Some("ClusterIP"));
    let port = &service.spec.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default()[0];
    ensure!(port.port == 80 && port.protocol.as_deref() == Some("TCP"), "{port:?}");

    let website = env.wait_ready("False").await?;
    let status = website.status.clone().context("status")?;
    ensure!(status.observed_generation == website.metadata.generation, "{status:?}");
    ensure!(status.url.as_deref() == Some("http://kubia.shop.svc.cluster.local/"), "{status:?}");
    ensure!(status.available_replicas == Some(0), "{status:?}");

    // Pods exist (the ReplicaSet controller made them) but no kubelet runs them: report them ready.
    eventually(TIMEOUT, async || {
        let n = env.mark_pods_ready().await?;
        ensure!(n == 1, "{n} pods");
        Ok(())
    })
    .await?;
    let website = env.wait_ready("True").await?;
    ensure!(website.status.as_ref().and_then(|s| s.available_replicas) == Some(1));
    let events = env.cp.kubectl(&["get", "events", "-n", &env.ns, "-o", "json"]).await?.ensure_success()?;
    ensure!(events.contains("every web server pod is available"), "no Ready event: {events}");
    ensure!(
        events.contains("created ConfigMap/kubia-web, Service/kubia, Deployment/kubia"),
        "no event for the children created: {events}"
    );
    Ok(())
}

#[tokio::test]
async fn edits_reach_the_children_and_drifted_children_are_put_back() -> Result<()> {
    let env = Env::start(OperatorOptions::default()).await?;
    env.create_example("website.yaml").await?;
    eventually(TIMEOUT, async || Ok(env.services().get("kubia").await?)).await?;

    let edit = json!({"spec": {"replicas": 3, "ref": "v2", "serviceType": "NodePort"}});
    env.websites().patch("kubia", &PatchParams::default(), &Patch::Merge(&edit)).await?;
    eventually(TIMEOUT, async || {
        let d = env.deployments().get("kubia").await?;
        let s = env.services().get("kubia").await?;
        ensure!(replicas(&d) == Some(3), "replicas {:?}", replicas(&d));
        ensure!(git_sync_args(&d).contains(&"--ref=v2".to_owned()), "{:?}", git_sync_args(&d));
        ensure!(service_type(&s).as_deref() == Some("NodePort"), "{:?}", service_type(&s));
        let w = env.websites().get("kubia").await?;
        ensure!(w.status.as_ref().and_then(|s| s.observed_generation) == w.metadata.generation, "status lags");
        Ok(())
    })
    .await?;

    // Back to ClusterIP: the node port the API server allocated must not get in the way.
    let edit = json!({"spec": {"serviceType": "ClusterIP"}});
    env.websites().patch("kubia", &PatchParams::default(), &Patch::Merge(&edit)).await?;
    eventually(TIMEOUT, async || {
        let s = env.services().get("kubia").await?;
        ensure!(service_type(&s).as_deref() == Some("ClusterIP"), "{:?}", service_type(&s));
        Ok(())
    })
    .await
    .with_context(|| env.op.controller_log(20))?;

    // Hand edits by another field manager are put back.
    env.cp.kubectl(&["scale", "deployment/kubia", "-n", &env.ns, "--replicas=7"]).await?.ensure_success()?;
    env.cp
        .kubectl(&["set", "image", "deployment/kubia", "-n", &env.ns, "git-sync=example.com/evil:latest"])
        .await?
        .ensure_success()?;
    env.cp
        .kubectl(&["patch", "service/kubia", "-n", &env.ns, "-p", r#"{"spec":{"type":"NodePort"}}"#])
        .await?
        .ensure_success()?;
    eventually(TIMEOUT, async || {
        let d = env.deployments().get("kubia").await?;
        let image = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.containers.iter().find(|c| c.name == "git-sync"))
            .and_then(|c| c.image.clone());
        ensure!(replicas(&d) == Some(3), "replicas {:?}", replicas(&d));
        ensure!(image.as_deref() == Some("registry.k8s.io/git-sync/git-sync:v4.4.0"), "image {image:?}");
        let s = env.services().get("kubia").await?;
        ensure!(service_type(&s).as_deref() == Some("ClusterIP"), "{:?}", service_type(&s));
        Ok(())
    })
    .await?;
    // The Website's events tell both stories: its own edits, and the repairs.
    eventually(TIMEOUT, async || {
        let events = env.cp.kubectl(&["get", "events", "-n", &env.ns, "-o", "json"]).await?.ensure_success()?;
        ensure!(events.contains("to the Website's new spec"), "no event for the update: {events}");
        ensure!(events.contains("put back Deployment/kubia"), "no event for the repair: {events}");
        Ok(())
    })
    .await?;

    // A deleted child comes back.
    let old_uid = env.deployments().get("kubia").await?.uid();
    env.deployments().delete("kubia", &DeleteParams::default()).await?;
    eventually(TIMEOUT, async || {
        let d = env.deployments().get("kubia").await?;
        ensure!(d.uid() != old_uid && d.metadata.deletion_timestamp.is_none(), "not recreated yet");
        ensure!(replicas(&d) == Some(3));
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_reconcile_with_nothing_to_change_writes_nothing() -> Result<()> {
    // Without kube-controller-manager nobody else writes the children (no Deployment status updates), so
    // every change of a resourceVersion would be the controller's.
    let no_kcm = ControlPlaneOptions { controller_manager: false, ..ControlPlaneOptions::default() };
    let env = Env::start_with(no_kcm, OperatorOptions::default()).await?;
    env.create_example("website.yaml").await?;
    eventually(TIMEOUT, async || Ok(env.services().get("kubia").await?)).await?;
    env.wait_ready("False").await?;
    let versions = async || -> Result<(String, String, String)> {
        Ok((
            env.websites().get("kubia").await?.resource_version().unwrap_or_default(),
            env.deployments().get("kubia").await?.resource_version().unwrap_or_default(),
            env.services().get("kubia").await?.resource_version().unwrap_or_default(),
        ))
    };
    let before = versions().await?;
    let reconciles = env.reconcile_count();
    // An annotation changes no generation but makes the controller reconcile.
    env.cp.kubectl(&["annotate", "website/kubia", "-n", &env.ns, "example.com/touched=1"]).await?.ensure_success()?;
    let annotated = env.websites().get("kubia").await?.resource_version().unwrap_or_default();
    eventually(TIMEOUT, async || {
        let n = env.reconcile_count();
        ensure!(n > reconciles, "no reconcile after the annotation yet ({n})");
        Ok(())
    })
    .await?;
    let after = versions().await?;
    ensure!(after.0 == annotated, "the reconcile rewrote the Website's status: {} -> {}", annotated, after.0);
    ensure!(after.1 == before.1, "the reconcile rewrote the Deployment: {} -> {}", before.1, after.1);
    ensure!(after.2 == before.2, "the reconcile rewrote the Service: {} -> {}", before.2, after.2);
    Ok(())
}

#[tokio::test]
async fn deleting_a_website_garbage_collects_its_children() -> Result<()> {
    let env = Env::start(OperatorOptions::default()).await?;
    env.create_example("website.yaml").await?;
    eventually(TIMEOUT, async || {
        env.deployments().get("kubia").await?;
        env.services().get("kubia").await?;
        Ok(())
    })
    .await?;
    env.cp.kubectl(&["delete", "website/kubia", "-n", &env.ns]).await?.ensure_success()?;
    eventually(TIMEOUT, async || {
        let d = env.deployments().get_opt("kubia").await?;
        let s = env.services().get_opt("kubia").await?;
        ensure!(d.is_none() && s.is_none(), "still there: deployment {}, service {}", d.is_some(), s.is_some());
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn an_invalid_website_stored_without_the_webhook_is_reported_not_served() -> Result<()> {
    let env = Env::start(OperatorOptions { webhook: false, ..OperatorOptions::default() }).await?;
    // Passes the CRD schema, breaks the semantic rules that only the webhook and the controller enforce.
    let manifest = json!({"apiVersion": "extensions.example.com/v1", "kind": "Website",
        "metadata": {"name": "kubia"}, "spec": {"gitRepo": "file:///etc"}})
    .to_string();
    env.cp.kubectl_with_stdin(&["create", "-n", &env.ns, "-f", "-"], Some(&manifest)).await?.ensure_success()?;
    let website = env.wait_ready("False").await?;
    let ready = website.status.as_ref().and_then(|s| s.ready_condition()).context("condition")?;
    ensure!(ready.reason == "InvalidSpec", "{ready:?}");
    ensure!(ready.message.contains("spec.gitRepo: local paths are not supported"), "{ready:?}");
    ensure!(env.deployments().get_opt("kubia").await?.is_none(), "an invalid Website got a Deployment");
    Ok(())
}

/// What an object looked like: enough to tell that nobody wrote it.
#[derive(Debug, PartialEq)]
struct Fingerprint {
    uid: Option<String>,
    resource_version: Option<String>,
    owners: usize,
    spec: serde_json::Value,
}

fn fingerprint<K: kube::Resource + k8s_openapi::serde::Serialize>(object: &K) -> Result<Fingerprint> {
    let meta = object.meta();
    Ok(Fingerprint {
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        owners: meta.owner_references.as_ref().map_or(0, Vec::len),
        spec: serde_json::to_value(object)?["spec"].clone(),
    })
}

#[tokio::test]
async fn websites_never_take_over_a_service_or_deployment_they_do_not_control() -> Result<()> {
    let env = Env::start(OperatorOptions::default()).await?;
    // Someone else's Service named like one Website, and someone else's Deployment named like another.
    let foreign = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "frontend"},
         "spec": {"selector": {"app": "shop"}, "ports": [{"port": 8443, "protocol": "TCP"}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "backend"},
         "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "shop-api"}},
                  "template": {"metadata": {"labels": {"app": "shop-api"}},
                               "spec": {"containers": [{"name": "api", "image": "example.com/shop-api:1"}]}}}}
    ]})
    .to_string();
    env.cp.kubectl_with_stdin(&["create", "-n", &env.ns, "-f", "-"], Some(&foreign)).await?.ensure_success()?;
    let service_before = fingerprint(&env.services().get("frontend").await?)?;
    env.create_website("frontend").await?;
    env.create_website("backend").await?;

    let message = env.wait_reason("frontend", "ChildConflict").await?;
    ensure!(message.contains("Service \"frontend\" already exists and is not controlled by this Website"), "{message}");
    let message = env.wait_reason("backend", "ChildConflict").await?;
    ensure!(message.contains("Deployment \"backend\" already exists"), "{message}");
    eventually(TIMEOUT, async || {
        let warnings = env.warnings("frontend").await?;
        ensure!(
            warnings.iter().any(|(reason, m)| reason == "ChildConflict" && m.contains("Service \"frontend\"")),
            "{warnings:?}"
        );
        Ok(())
    })
    .await?;
    // The Deployment's status moves as kube-controller-manager works on it: compare what its owners wrote.
    let deployment_before = env.deployments().get("backend").await?;
    ensure!(deployment_before.owner_references().is_empty());

    // A few retries later, nothing was written: not the foreign objects, and no children of a Website in conflict.
    tokio::time::sleep(Duration::from_secs(6)).await;
    ensure!(fingerprint(&env.services().get("frontend").await?)? == service_before, "the foreign Service was written");
    let deployment_after = env.deployments().get("backend").await?;
    ensure!(deployment_after.owner_references().is_empty(), "{:?}", deployment_after.metadata);
    ensure!(
        deployment_after.metadata.generation == deployment_before.metadata.generation,
        "the Deployment's spec changed"
    );
    ensure!(deployment_after.spec == deployment_before.spec, "the foreign Deployment was written");
    ensure!(env.deployments().get_opt("frontend").await?.is_none(), "a Website in conflict got a Deployment");
    ensure!(env.services().get_opt("backend").await?.is_none(), "a Website in conflict got a Service");
    // The ConfigMaps (and the Service of `backend`) were created before the conflict was met, and deleted again.
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client(), &env.ns);
    for name in ["frontend-web", "backend-web"] {
        ensure!(config_maps.get_opt(name).await?.is_none(), "a Website in conflict kept its ConfigMap {name}");
    }
    let log = env.op.controller_log(400);
    ensure!(
        log.contains("deleted again the children created before the conflict") && log.contains("Service/backend"),
        "the children were not created first and deleted again:\n{log}"
    );

    // Deleting a Website in conflict leaves the foreign object.
    env.cp
        .kubectl(&["delete", "website/backend", "-n", &env.ns, "--cascade=foreground", "--timeout=60s"])
        .await?
        .ensure_success()?;
    let deployment_left = env.deployments().get("backend").await?;
    ensure!(deployment_left.uid() == deployment_before.uid() && deployment_left.spec == deployment_before.spec);

    // Once the foreign Service is gone, the Website gets its own.
    env.services().delete("frontend", &DeleteParams::default()).await?;
    let own = eventually(TIMEOUT, async || {
        let s = env.services().get("frontend").await?;
        ensure!(s.uid() != service_before.uid, "still the foreign Service");
        Ok(s)
    })
    .await
    .with_context(|| env.op.controller_log(30))?;
    let website = env.websites().get("frontend").await?;
    ensure!(own.owner_references().first().map(|o| o.uid.clone()) == website.uid(), "{:?}", own.metadata);
    eventually(TIMEOUT, async || {
        let w = env.websites().get("frontend").await?;
        let reason = w.status.as_ref().and_then(|s| s.ready_condition()).map(|c| c.reason.clone());
        ensure!(reason.as_deref() != Some("ChildConflict"), "still reports the conflict");
        ensure!(env.deployments().get_opt("frontend").await?.is_some(), "no Deployment yet");
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_website_named_kubernetes_leaves_the_api_servers_own_service_as_it_was() -> Result<()> {
    let env = Env::start(OperatorOptions::default()).await?;
    let services: Api<Service> = Api::namespaced(env.client(), "default");
    let before = fingerprint(&services.get("kubernetes").await?)?;
    let manifest = json!({"apiVersion": "extensions.example.com/v1", "kind": "Website",
        "metadata": {"name": "kubernetes"}, "spec": {"gitRepo": "https://github.com/luksa/kubia-website-example.git"}})
    .to_string();
    env.cp.kubectl_with_stdin(&["create", "-n", "default", "-f", "-"], Some(&manifest)).await?.ensure_success()?;
    let websites: Api<Website> = Api::namespaced(env.client(), "default");
    let message = eventually(TIMEOUT, async || {
        let w = websites.get("kubernetes").await?;
        match w.status.as_ref().and_then(|s| s.ready_condition()) {
            Some(c) if c.reason == "ChildConflict" => Ok(c.message.clone()),
            other => bail!("Ready is {other:?}"),
        }
    })
    .await
    .with_context(|| env.op.controller_log(30))?;
    ensure!(message.contains("Service \"kubernetes\" already exists"), "{message}");
    env.cp
        .kubectl(&["delete", "website/kubernetes", "-n", "default", "--cascade=foreground", "--timeout=60s"])
        .await?
        .ensure_success()?;
    let after = fingerprint(&services.get("kubernetes").await?)?;
    ensure!(after == before, "the kubernetes Service changed:\nbefore {before:?}\nafter {after:?}");
    Ok(())
}

#[tokio::test]
async fn the_operator_can_give_each_website_an_egress_network_policy() -> Result<()> {
    let args = vec!["--egress-network-policy".to_owned(), "--egress-denied-cidrs=10.96.0.0/16".to_owned()];
    let env = Env::start(OperatorOptions { controller_args: args, ..OperatorOptions::default() }).await?;
    env.create_example("website.yaml").await?;
    let policies: Api<k8s_openapi::api::networking::v1::NetworkPolicy> = Api::namespaced(env.client(), &env.ns);
    let policy = eventually(TIMEOUT, async || Ok(policies.get("kubia").await?))
        .await
        .with_context(|| env.op.controller_log(30))?;
    let uid = env.websites().get("kubia").await?.uid();
    ensure!(policy.owner_references().first().map(|o| o.uid.clone()) == uid, "{:?}", policy.metadata);
    let spec = serde_json::to_value(policy.spec)?;
    ensure!(spec["policyTypes"] == json!(["Egress"]), "{spec}");
    let except = &spec["egress"][1]["to"][0]["ipBlock"]["except"];
    ensure!(except == &json!(["127.0.0.0/8", "169.254.0.0/16", "10.96.0.0/16"]), "{spec}");
    Ok(())
}

#[tokio::test]
async fn the_controller_is_not_ready_while_a_watch_fails_and_ready_again_once_it_recovers() -> Result<()> {
    let cp = website_e2e::ControlPlane::start(ControlPlaneOptions { controller_manager: false, ..Default::default() })
        .await?;
    let _op = Operator::start(&cp, OperatorOptions { webhook: false, controller: false, ..OperatorOptions::default() })
        .await?;
    // The controller runs as a user of its own, with the chart's rules for it.
    let user = "website-controller-e2e";
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": user},
        "rules": [
            {"apiGroups": ["extensions.example.com"], "resources": ["websites"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["extensions.example.com"], "resources": ["websites/status"], "verbs": ["patch"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch", "create", "patch"]},
            {"apiGroups": [""], "resources": ["services", "configmaps"],
             "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}]})
    .to_string();
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": user},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": user},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})
    .to_string();
    cp.kubectl_with_stdin(&["create", "-f", "-"], Some(&role)).await?.ensure_success()?;
    cp.kubectl_with_stdin(&["create", "-f", "-"], Some(&binding)).await?.ensure_success()?;
    // The admin's credentials, impersonating that user: RBAC then judges the user.
    let ca = cp.state_dir().join("controller-e2e-ca.crt");
    std::fs::write(&ca, cp.ca_pem())?;
    let kubeconfig = cp.state_dir().join("controller-e2e.kubeconfig");
    let config = json!({"apiVersion": "v1", "kind": "Config", "current-context": "e2e",
        "clusters": [{"name": "e2e", "cluster": {"server": cp.server_url(), "certificate-authority": ca}}],
        "users": [{"name": "e2e", "user": {"token": cp.token(), "as": user}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "e2e"}}]});
    std::fs::write(&kubeconfig, config.to_string())?;
    let health = std::net::SocketAddr::from(([127, 0, 0, 1], website_e2e::free_port()?));
    let mut command = std::process::Command::new(website_e2e::operator::binary("website-controller")?);
    command
        .arg(format!("--health-addr={health}"))
        .arg("--watch-timeout-seconds=2")
        // One replica, and the user has no Lease to hold.
        .arg("--leader-election=false")
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "info");
    let mut controller = cp.spawn("website-controller-restricted", command)?;
    controller.wait_for_port(health, Duration::from_secs(30)).await?;
    let readyz = async || website_e2e::operator::http_get_status(health, "/readyz").await;
    eventually(TIMEOUT, async || {
        let code = readyz().await?;
        ensure!(code == 200, "/readyz answered {code}");
        Ok(())
    })
    .await
    .with_context(|| controller.log_tail(20))?;

    // Revoked: every resumed watch is refused.
    cp.kubectl(&["delete", "clusterrolebinding", user]).await?.ensure_success()?;
    eventually(TIMEOUT, async || {
        let code = readyz().await?;
        ensure!(code == 503, "/readyz answered {code}");
        Ok(())
    })
    .await
    .with_context(|| controller.log_tail(20))?;
    let log = controller.log_tail(200);
    ensure!(log.contains("WARN") && log.contains("watch failed"), "no warning about the failing watch:\n{log}");
    ensure!(website_e2e::operator::http_get_status(health, "/healthz").await? == 200, "alive while not ready");

    // Restored: the watches recover (after their backoff) and so does readiness.
    cp.kubectl_with_stdin(&["create", "-f", "-"], Some(&binding)).await?.ensure_success()?;
    eventually(Duration::from_secs(120), async || {
        let code = readyz().await?;
        ensure!(code == 200, "/readyz answered {code}");
        Ok(())
    })
    .await
    .with_context(|| controller.log_tail(60))?;
    Ok(())
}
