//! The test environment against the real binaries from `scripts/provision.sh`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Resource as _, ResourceExt as _};
use website_e2e::{ControlPlane, ControlPlaneOptions, eventually};

/// Long enough for kube-controller-manager's informers to sync on a busy 2-core machine.
const CONTROLLER_TIMEOUT: Duration = Duration::from_secs(120);

async fn start(controller_manager: bool) -> ControlPlane {
    let started = Instant::now();
    let control_plane =
        ControlPlane::start(ControlPlaneOptions { controller_manager, ..ControlPlaneOptions::default() })
            .await
            .expect("the control plane starts (run scripts/provision.sh if the binaries are missing)");
    eprintln!("control plane (controller manager: {controller_manager}) ready in {:?}", started.elapsed());
    control_plane
}

/// Whether no process with this id exists any more (not even as a zombie).
fn process_is_gone(pid: u32) -> bool {
    !PathBuf::from(format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn kubectl_and_the_client_talk_to_the_started_server() -> Result<()> {
    let cp = start(false).await;

    let version = cp.kubectl(&["version", "-o", "json"]).await?.ensure_success()?;
    let version: serde_json::Value = serde_json::from_str(&version)?;
    let server_version =
        version["serverVersion"]["gitVersion"].as_str().context("kubectl version shows the server's version")?;
    ensure!(server_version.starts_with("v1."), "unexpected server version {server_version}");

    let namespaces = cp.kubectl(&["get", "ns", "-o", "name"]).await?.ensure_success()?;
    for expected in ["namespace/default", "namespace/kube-system"] {
        ensure!(namespaces.lines().any(|l| l == expected), "{expected} missing from {namespaces}");
    }

    let listed: Vec<String> = Api::<Namespace>::all(cp.client())
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|ns| ns.name_any())
        .collect();
    ensure!(listed.iter().any(|n| n == "default"), "{listed:?}");

    // Input on stdin, and a failing command reported as output rather than as an error.
    let created = cp
        .kubectl_with_stdin(
            &["apply", "-f", "-", "-o", "name"],
            Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-stdin\n  namespace: default\n"),
        )
        .await?
        .ensure_success()?;
    assert_eq!(created.trim(), "configmap/from-stdin");
    let missing = cp.kubectl(&["get", "configmap", "no-such-thing"]).await?;
    assert!(!missing.success());
    assert!(missing.stderr.contains("NotFound"), "{}", missing.stderr);

    // The admin kubeconfig works on its own, and the CA and token it holds are exposed.
    let kubeconfig = std::fs::read_to_string(cp.kubeconfig_path())?;
    assert!(kubeconfig.contains(cp.server_url()));
    assert!(kubeconfig.contains(cp.token()));
    assert!(cp.ca_pem().contains("BEGIN CERTIFICATE"));
    Ok(())
}

#[tokio::test]
async fn garbage_collector_deletes_a_deployment_whose_owner_is_deleted() -> Result<()> {
    let cp = start(true).await;
    let client = cp.client();
    let ns = "gc";
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta { name: Some(ns.into()), ..ObjectMeta::default() },
                ..Namespace::default()
            },
        )
        .await?;

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let owner = config_maps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta { name: Some("owner".into()), ..ObjectMeta::default() },
                ..ConfigMap::default()
            },
        )
        .await?;
    let owner_reference = OwnerReference {
        api_version: ConfigMap::api_version(&()).into_owned(),
        kind: ConfigMap::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.uid().context("a created object has a uid")?,
        block_owner_deletion: Some(true),
        controller: Some(false),
    };

    let labels = BTreeMap::from([("app".to_owned(), "gc".to_owned())]);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "dependent", "ownerReferences": [owner_reference] },
        "spec": {
            "replicas": 1,
            "selector": LabelSelector { match_labels: Some(labels.clone()), ..LabelSelector::default() },
            "template": {
                "metadata": { "labels": labels },
                "spec": { "containers": [{ "name": "web", "image": "nginx" }] },
            },
        },
    }))?;
    deployments.create(&PostParams::default(), &deployment).await?;

    // The deployment controller runs: it creates the ReplicaSet.
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    eventually(CONTROLLER_TIMEOUT, async || {
        let count = replica_sets.list(&ListParams::default()).await?.items.len();
        ensure!(count == 1, "{count} ReplicaSets");
        Ok(())
    })
    .await
    .context("the deployment controller should create a ReplicaSet")?;

    // Foreground deletion: the owner stays (with the foregroundDeletion finalizer) until the
    // garbage collector has deleted the blocking dependent, then goes too.
    config_maps.delete("owner", &DeleteParams::foreground()).await?;
    eventually(CONTROLLER_TIMEOUT, async || {
        let left_deployment = deployments.get_opt("dependent").await?.is_some();
        let left_replica_sets = replica_sets.list(&ListParams::default()).await?.items.len();
        let left_owner = config_maps.get_opt("owner").await?.is_some();
        if left_deployment || left_replica_sets > 0 || left_owner {
            bail!(
                "still there: deployment {left_deployment}, {left_replica_sets} ReplicaSets, \
                 owner {left_owner}"
            );
        }
        Ok(())
    })
    .await
    .context("the garbage collector should delete the owner's dependents")?;
    Ok(())
}

#[tokio::test]
async fn dropping_the_control_plane_stops_every_process_and_removes_its_state() -> Result<()> {
    let cp =
        ControlPlane::start(ControlPlaneOptions { keep_state_dir: false, ..ControlPlaneOptions::default() }).await?;
    let processes: Vec<(String, u32)> = cp.processes().into_iter().map(|(name, pid)| (name.to_owned(), pid)).collect();
    let names: Vec<&str> = processes.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["etcd", "kube-apiserver", "kube-controller-manager"]);
    for (name, pid) in &processes {
        assert!(!process_is_gone(*pid), "{name} ({pid}) runs before the drop");
    }
    let state_dir = cp.state_dir().to_path_buf();
    assert!(state_dir.join("kube-apiserver.log").is_file());

    let stopping = Instant::now();
    drop(cp);
    eprintln!("control plane stopped in {:?}", stopping.elapsed());

    // Checked right after the drop, without waiting: drop stops and reaps synchronously.
    for (name, pid) in &processes {
        assert!(process_is_gone(*pid), "{name} ({pid}) still exists after the drop");
    }
    assert!(!state_dir.exists(), "{} still exists", state_dir.display());
    Ok(())
}

#[tokio::test]
async fn apply_crd_waits_until_the_crd_is_established() -> Result<()> {
    let cp = start(false).await;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("crd.yaml");
    std::fs::write(
        &path,
        r"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: { plural: widgets, singular: widget, kind: Widget }
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
",
    )?;
    let names = cp.apply_crd(&path).await?;
    assert_eq!(names, ["widgets.example.com"]);
    // Established means usable right away, without retries.
    let listed = cp.kubectl(&["get", "widgets", "-A"]).await?;
    assert!(listed.success(), "{}", listed.stderr);

    let not_a_crd = dir.path().join("cm.yaml");
    std::fs::write(&not_a_crd, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\n  namespace: default\n")?;
    let err = cp.apply_crd(&not_a_crd).await.expect_err("no CRD in the file");
    assert!(format!("{err:#}").contains("holds no CustomResourceDefinition"));
    Ok(())
}

#[tokio::test]
async fn helm_runs_against_the_control_plane() -> Result<()> {
    let cp = start(false).await;
    if cp.assets().helm.is_none() {
        eprintln!("helm is not among the assets; skipping");
        return Ok(());
    }
    let listed = cp.helm(&["list", "-A", "-o", "json"]).await?.ensure_success()?;
    assert_eq!(listed.trim(), "[]");
    Ok(())
}

#[tokio::test]
async fn start_fails_with_the_log_of_a_process_that_exits() -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;

    let real = website_e2e::Assets::locate()?;
    let dir = tempfile::tempdir()?;
    let fake_apiserver = dir.path().join("kube-apiserver");
    std::fs::write(&fake_apiserver, "#!/bin/sh\necho 'Error: unknown flag: --frobnicate' >&2\nexit 1\n")?;
    std::fs::set_permissions(&fake_apiserver, std::fs::Permissions::from_mode(0o755))?;
    let assets = website_e2e::Assets { kube_apiserver: fake_apiserver, ..real };

    let err = ControlPlane::start(ControlPlaneOptions {
        assets: Some(assets),
        controller_manager: false,
        keep_state_dir: false,
        ..ControlPlaneOptions::default()
    })
    .await
    .expect_err("the API server exits at once");
    let msg = format!("{err:#}");
    assert!(msg.contains("kube-apiserver exited (exit status: 1)"), "{msg}");
    assert!(msg.contains("unknown flag: --frobnicate"), "{msg}");
    Ok(())
}

#[tokio::test]
async fn the_aggregation_layer_publishes_the_front_proxy_ca_for_aggregated_api_servers() -> Result<()> {
    let cp = ControlPlane::start(ControlPlaneOptions {
        controller_manager: false,
        aggregation: true,
        ..ControlPlaneOptions::default()
    })
    .await?;
    let proxy = cp.front_proxy().context("the aggregation layer is on")?;
    // What an aggregated API server reads to verify the aggregator's client certificate and trust its headers.
    let config =
        Api::<ConfigMap>::namespaced(cp.client(), "kube-system").get("extension-apiserver-authentication").await?;
    let data = config.data.unwrap_or_default();
    let field = |key: &str| data.get(key).cloned().unwrap_or_default();
    ensure!(field("requestheader-client-ca-file").trim() == proxy.ca_pem.trim(), "another CA: {data:?}");
    ensure!(field("requestheader-allowed-names") == format!("[\"{}\"]", website_e2e::FRONT_PROXY_CLIENT), "{data:?}");
    ensure!(field("requestheader-username-headers") == "[\"X-Remote-User\"]", "{data:?}");
    ensure!(field("requestheader-group-headers") == "[\"X-Remote-Group\"]", "{data:?}");
    ensure!(field("requestheader-extra-headers-prefix") == "[\"X-Remote-Extra-\"]", "{data:?}");
    // The client certificate is the CA's, for the allowed name.
    let (_, ca) = x509_parser::pem::parse_x509_pem(proxy.ca_pem.as_bytes()).context("the CA's PEM")?;
    let (_, client) = x509_parser::pem::parse_x509_pem(proxy.client_cert_pem.as_bytes()).context("the client's PEM")?;
    let (ca, client) = (ca.parse_x509()?, client.parse_x509()?);
    ensure!(client.issuer() == ca.subject(), "issued by another CA");
    ensure!(client.verify_signature(Some(ca.public_key())).is_ok(), "not signed by the CA");
    let common_name = client.subject().iter_common_name().next().and_then(|n| n.as_str().ok());
    ensure!(common_name == Some(website_e2e::FRONT_PROXY_CLIENT), "{common_name:?}");
    // Without the option, no front proxy.
    let plain =
        ControlPlane::start(ControlPlaneOptions { controller_manager: false, ..ControlPlaneOptions::default() })
            .await?;
    ensure!(plain.front_proxy().is_none());
    Ok(())
}
