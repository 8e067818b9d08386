//! `website-api` behind the aggregation layer of a [`ControlPlane`] started with
//! [`ControlPlaneOptions::aggregation`](crate::ControlPlaneOptions::aggregation): the way the Helm chart installs
//! it, with the chart's own ServiceAccount, RBAC and APIService, and the process running on this machine.
//!
//! There is no kube-proxy here, and Endpoints refuse loopback addresses, so the Service the APIService points at
//! is of type `ExternalName` with `externalName: localhost`, and the APIService names the process's port. The
//! serving certificate is made for the name the aggregator checks, `<service>.<namespace>.svc`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Api;
use serde_json::json;
use website_certs::{CertificateAuthority, SubjectName};

use crate::operator::{OPERATOR_NAMESPACE, WEBHOOK_CONFIGURATION, binary, workspace_root};
use crate::{ChildProcess, ControlPlane, eventually, free_port};

/// The APIService's name.
pub const API_SERVICE: &str = "v1alpha1.extensions.example.com";
/// website-api's Service and ServiceAccount, as the chart names them for the release [`WEBHOOK_CONFIGURATION`].
pub const API_NAME: &str = "website-operator-api";

/// A running website-api, registered with the API server.
pub struct AggregatedApi {
    process: ChildProcess,
    addr: SocketAddr,
    health: SocketAddr,
    ca_pem: String,
}

impl AggregatedApi {
    /// Installs the chart's ServiceAccount and RBAC for website-api, starts it with that ServiceAccount's token,
    /// registers the `ExternalName` Service and the chart's APIService (its port changed to the process's), and
    /// waits until the APIService is `Available=True`.
    ///
    /// # Errors
    /// When the aggregation layer is off, a step is refused, or the APIService does not become available.
    pub async fn start(cp: &ControlPlane) -> Result<Self> {
        ensure!(cp.front_proxy().is_some(), "website-api needs a control plane started with `aggregation: true`");
        let chart = workspace_root().join("charts").join("website-operator");
        let state = cp.state_dir().join("website-api");
        std::fs::create_dir_all(&state)?;

        let rbac = render(cp, &chart, &["templates/api-serviceaccount.yaml", "templates/api-rbac.yaml"], &[]).await?;
        cp.kubectl_with_stdin(&["apply", "--server-side", "-f", "-"], Some(&rbac))
            .await?
            .ensure_success()
            .context("failed to install website-api's ServiceAccount and RBAC")?;
        let kubeconfig = service_account_kubeconfig(cp, OPERATOR_NAMESPACE, API_NAME, &state).await?;

        let service_host = format!("{API_NAME}.{OPERATOR_NAMESPACE}.svc");
        let validity = website_certs::days(2);
        let ca = CertificateAuthority::generate("website-api-ca", validity)?;
        let names = [
            SubjectName::dns(&service_host)?,
            SubjectName::dns("localhost")?,
            SubjectName::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ];
        let serving = ca.issue_serving(&names, validity)?;
        let certs = state.join("certs");
        website_certs::write_files(&certs, ca.cert_pem(), serving.cert_pem(), serving.key_pem(), true)?;

        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port()?);
        let health = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port()?);
        let mut command = Command::new(binary("website-api")?);
        command
            .arg(format!("--listen-addr={addr}"))
            .arg(format!("--health-addr={health}"))
            .arg(format!("--tls-cert-file={}", certs.join("tls.crt").display()))
            .arg(format!("--tls-key-file={}", certs.join("tls.key").display()))
            .arg("--workers=2")
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info");
        let mut process = cp.spawn("website-api", command)?;
        process.wait_for_port(health, Duration::from_secs(30)).await?;

        let service = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": API_NAME, "namespace": OPERATOR_NAMESPACE},
            "spec": {"type": "ExternalName", "externalName": "localhost",
                     "ports": [{"name": "https", "port": addr.port(), "protocol": "TCP"}]}});
        cp.kubectl_with_stdin(&["apply", "--server-side", "-f", "-"], Some(&service.to_string()))
            .await?
            .ensure_success()
            .context("failed to create website-api's Service")?;
        let ca_bundle = format!("api.certificate.caBundle={}", website_certs::ca_bundle_base64(ca.cert_pem()));
        let api_service = render(
            cp,
            &chart,
            &["templates/api-apiservice.yaml"],
            &["--set-string", "api.certificate.secretName=provided-by-the-test", "--set-string", &ca_bundle],
        )
        .await?;
        // Client-side: kube-apiserver 1.20 panics on a server-side apply of an APIService ("FieldManager must be
        // installed to run apply").
        cp.kubectl_with_stdin(&["apply", "-f", "-"], Some(&api_service))
            .await?
            .ensure_success()
            .context("failed to register the APIService")?;
        let port = json!({"spec": {"service": {"port": addr.port()}}}).to_string();
        cp.kubectl(&["patch", "apiservice", API_SERVICE, "--type=merge", "-p", &port])
            .await?
            .ensure_success()
            .context("failed to point the APIService at website-api's port")?;
        let api = Self { process, addr, health, ca_pem: ca.cert_pem().to_owned() };
        api.wait_available(cp).await?;
        Ok(api)
    }

    /// Waits until the APIService reports `Available=True` and the API server proxies discovery of
    /// `extensions.example.com/v1alpha1` to website-api (for a moment after the APIService becomes available, the
    /// API server still answers that path with its own 404).
    ///
    /// # Errors
    /// When that does not happen within 60 s; the error has the last answer and website-api's log.
    pub async fn wait_available(&self, cp: &ControlPlane) -> Result<()> {
        eventually(Duration::from_secs(60), async || {
            let out = cp
                .kubectl(&[
                    "get",
                    "apiservice",
                    API_SERVICE,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Available\")]}",
                ])
                .await?
                .ensure_success()?;
            ensure!(out.contains("\"status\":\"True\""), "not available: {out}");
            let discovery =
                cp.kubectl(&["get", "--raw", "/apis/extensions.example.com/v1alpha1"]).await?.ensure_success()?;
            ensure!(discovery.contains("\"APIResourceList\""), "discovery is not website-api's yet: {discovery}");
            Ok(())
        })
        .await
        .with_context(|| format!("website-api's log:\n{}", self.process.log_tail(30)))
    }

    /// The HTTPS address website-api listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The plain-HTTP health address.
    pub fn health_addr(&self) -> SocketAddr {
        self.health
    }

    /// The CA of its serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The last lines of its log.
    pub fn log(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

/// `templates` of the chart, rendered for the release the tests install, with website-api on.
async fn render(cp: &ControlPlane, chart: &Path, templates: &[&str], extra: &[&str]) -> Result<String> {
    let chart = chart.to_string_lossy();
    let mut args =
        vec!["template", WEBHOOK_CONFIGURATION, &chart, "--namespace", OPERATOR_NAMESPACE, "--set", "api.enabled=true"];
    for template in templates {
        args.extend(["--show-only", template]);
    }
    args.extend(extra);
    cp.helm(&args).await?.ensure_success().with_context(|| format!("failed to render {templates:?}"))
}

/// A kubeconfig with the token of the ServiceAccount `namespace/name`, made by kube-controller-manager's token
/// controller, and the API server's CA: what a pod of that ServiceAccount would use.
///
/// # Errors
/// When no token appears within 30 s.
pub async fn service_account_kubeconfig(cp: &ControlPlane, namespace: &str, name: &str, dir: &Path) -> Result<PathBuf> {
    let accounts: Api<ServiceAccount> = Api::namespaced(cp.client(), namespace);
    let secrets: Api<Secret> = Api::namespaced(cp.client(), namespace);
    let token = eventually(Duration::from_secs(30), async || {
        let account = accounts.get(name).await?;
        let secret_name = account
            .secrets
            .unwrap_or_default()
            .into_iter()
            .find_map(|s| s.name)
            .ok_or_else(|| anyhow!("ServiceAccount {namespace}/{name} has no token Secret yet"))?;
        let secret = secrets.get(&secret_name).await?;
        let token =
            secret.data.and_then(|d| d.get("token").cloned()).ok_or_else(|| anyhow!("no token in {secret_name}"))?;
        Ok(String::from_utf8(token.0)?)
    })
    .await?;
    if token.is_empty() {
        bail!("the token of {namespace}/{name} is empty");
    }
    let ca = dir.join("api-server-ca.crt");
    std::fs::write(&ca, cp.ca_pem())?;
    let path = dir.join(format!("{name}.kubeconfig"));
    let config = json!({"apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": "local", "cluster": {"server": cp.server_url(), "certificate-authority": ca}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "local", "user": name}}]});
    std::fs::write(&path, config.to_string())?;
    Ok(path)
}
