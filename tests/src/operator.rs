//! The operator on a [`ControlPlane`]: the CRD, the webhook (with certificates from `website-certs`, registered
//! through the Helm chart's own webhook configurations pointed at its local URL) and the controller, each as its
//! real binary.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use website_e2e::{ControlPlane, ControlPlaneOptions, Operator, OperatorOptions};
//!
//! let cp = ControlPlane::start(ControlPlaneOptions::default()).await?;
//! let operator = Operator::start(&cp, OperatorOptions::default()).await?;
//! let out = cp.kubectl(&["create", "-f", "examples/invalid/file-scheme.yaml"]).await?;
//! assert!(out.stderr.contains("spec.gitRepo"));
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{Patch, PatchParams};
use website_certs::{CertificateAuthority, SubjectName};

use crate::{ChildProcess, ControlPlane, eventually, free_port};

/// Release name the chart's webhook configurations are rendered with, and so the name of both.
pub const WEBHOOK_CONFIGURATION: &str = "website-operator";
/// Name of the validating webhook inside its configuration.
pub const VALIDATING_WEBHOOK: &str = "validate.websites.extensions.example.com";
/// Name of the mutating webhook inside its configuration.
pub const MUTATING_WEBHOOK: &str = "default.websites.extensions.example.com";
/// Namespace the operator would run in; the webhooks never intercept requests in it.
pub const OPERATOR_NAMESPACE: &str = "website-system";
/// The label Kubernetes 1.21 and later put on every namespace; the webhooks' namespace selector uses it.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// Namespaces the webhooks never intercept, so that a broken webhook cannot block the cluster's own
/// namespace or the operator's.
pub const EXCLUDED_NAMESPACES: [&str; 2] = ["kube-system", OPERATOR_NAMESPACE];

/// Path of the workspace root: from `CARGO_MANIFEST_DIR` as cargo sets it when it runs tests (so a build
/// reused from another checkout still finds this checkout's files), else the directory this crate was built
/// in, else the current directory.
pub fn workspace_root() -> PathBuf {
    let is_root = |dir: &Path| dir.join(website_crd::CRD_MANIFEST_PATH).is_file();
    let from_env = std::env::var_os("CARGO_MANIFEST_DIR").and_then(|d| Path::new(&d).parent().map(Path::to_owned));
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_owned);
    from_env.into_iter().chain(built_in).find(|d| is_root(d)).unwrap_or_else(|| PathBuf::from("."))
}

/// Path of one of the operator's binaries: `$WEBSITE_BIN_DIR/<name>`, or the workspace's `target/debug/<name>`.
///
/// # Errors
/// When the binary has not been built.
pub fn binary(name: &str) -> Result<PathBuf> {
    let dir = match std::env::var_os("WEBSITE_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"))
            .join("debug"),
    };
    let path = dir.join(name);
    if !path.is_file() {
        bail!("{} not found: build the operator first with `cargo build --workspace --bins`", path.display());
    }
    Ok(path)
}

/// What [`Operator::start`] runs.
#[derive(Clone, Debug)]
pub struct OperatorOptions {
    /// Run the webhook and register its configurations. Default: true.
    pub webhook: bool,
    /// Run the controller. Default: true.
    pub controller: bool,
    /// `failurePolicy` of both webhooks. Default: `Fail`.
    pub failure_policy: String,
    /// Extra flags for the controller.
    pub controller_args: Vec<String>,
}

impl Default for OperatorOptions {
    fn default() -> Self {
        Self { webhook: true, controller: true, failure_policy: "Fail".into(), controller_args: Vec::new() }
    }
}

/// The running operator. Its processes stop when it is dropped; the objects it registered stay.
pub struct Operator {
    webhook: Option<ChildProcess>,
    controller: Option<ChildProcess>,
    webhook_addr: SocketAddr,
    webhook_health: SocketAddr,
    controller_health: Option<SocketAddr>,
    ca_pem: String,
    certs_dir: PathBuf,
}

impl Operator {
    /// Installs the CRD, then starts what `options` asks for and waits until it works: the webhook until the
    /// API server calls it, the controller until it reports ready.
    ///
    /// # Errors
    /// When a binary is missing, does not start, or does not become ready in time.
    pub async fn start(cp: &ControlPlane, options: OperatorOptions) -> Result<Self> {
        cp.apply_crd(workspace_root().join(website_crd::CRD_MANIFEST_PATH)).await?;
        label_namespaces(cp).await?;
        let certs_dir = cp.state_dir().join("webhook-certs");
        let ca_pem = write_certificates(&certs_dir)?;
        let webhook_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port()?);
        let webhook_health = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port()?);
        let mut operator = Self {
            webhook: None,
            controller: None,
            webhook_addr,
            webhook_health,
            controller_health: None,
            ca_pem,
            certs_dir,
        };
        if options.webhook {
            operator.enable_webhook(cp, &options.failure_policy).await?;
        }
        if options.controller {
            let health = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port()?);
            let mut command = Command::new(binary("website-controller")?);
            command
                .arg(format!("--health-addr={health}"))
                .args(&options.controller_args)
                .env("RUST_LOG", "info,website_controller=debug");
            let mut controller = cp.spawn("website-controller", command)?;
            controller.wait_for_port(health, Duration::from_secs(30)).await?;
            wait_for_ready(&mut controller, health).await?;
            operator.controller = Some(controller);
            operator.controller_health = Some(health);
        }
        Ok(operator)
    }

    /// Starts the webhook, registers its configurations with `failure_policy` and waits until the API server
    /// calls it: what [`Operator::start`] does when [`OperatorOptions::webhook`] is set. Call it yourself after
    /// starting without the webhook to first store objects that no webhook judged.
    ///
    /// # Errors
    /// When the webhook does not start, its configurations are refused or the API server does not call it.
    pub async fn enable_webhook(&mut self, cp: &ControlPlane, failure_policy: &str) -> Result<()> {
        self.start_webhook(cp).await?;
        register_webhooks(cp, &self.webhook_url(), &self.ca_pem, failure_policy).await?;
        wait_until_webhook_is_called(cp).await
    }

    /// Starts (or restarts) the webhook process on its address.
    ///
    /// # Errors
    /// When it does not start listening.
    pub async fn start_webhook(&mut self, cp: &ControlPlane) -> Result<()> {
        let mut command = Command::new(binary("website-webhook")?);
        command
            .arg(format!("--listen-addr={}", self.webhook_addr))
            .arg(format!("--health-addr={}", self.webhook_health))
            .arg(format!("--tls-cert-file={}", self.certs_dir.join("tls.crt").display()))
            .arg(format!("--tls-key-file={}", self.certs_dir.join("tls.key").display()))
            .env("RUST_LOG", "info");
        let mut webhook = cp.spawn("website-webhook", command)?;
        webhook.wait_for_port(self.webhook_addr, Duration::from_secs(30)).await?;
        self.webhook = Some(webhook);
        Ok(())
    }

    /// Stops the webhook process, leaving its configurations registered.
    ///
    /// # Errors
    /// When it does not stop.
    pub fn stop_webhook(&mut self) -> Result<()> {
        if let Some(mut webhook) = self.webhook.take() {
            webhook.stop(Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Stops the controller process.
    ///
    /// # Errors
    /// When it does not stop.
    pub fn stop_controller(&mut self) -> Result<()> {
        if let Some(mut controller) = self.controller.take() {
            controller.stop(Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// `https://127.0.0.1:<port>`, where the webhook listens.
    pub fn webhook_url(&self) -> String {
        format!("https://{}", self.webhook_addr)
    }

    /// Address of the webhook's plain-HTTP health and metrics listener.
    pub fn webhook_health_addr(&self) -> SocketAddr {
        self.webhook_health
    }

    /// Address of the controller's plain-HTTP health and metrics listener, when it runs.
    pub fn controller_health_addr(&self) -> Option<SocketAddr> {
        self.controller_health
    }

    /// The webhook's HTTPS address on loopback.
    pub fn webhook_addr(&self) -> SocketAddr {
        self.webhook_addr
    }

    /// The webhook process's id, while it runs.
    pub fn webhook_pid(&self) -> Option<u32> {
        self.webhook.as_ref().map(ChildProcess::pid)
    }

    /// The CA that signed the webhook's serving certificate, in PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The last lines of the controller's log, for failure messages.
    pub fn controller_log(&self, lines: usize) -> String {
        self.controller.as_ref().map(|c| c.log_tail(lines)).unwrap_or_default()
    }

    /// The last lines of the webhook's log, for failure messages.
    pub fn webhook_log(&self, lines: usize) -> String {
        self.webhook.as_ref().map(|c| c.log_tail(lines)).unwrap_or_default()
    }
}

/// Writes a CA and a serving certificate for 127.0.0.1 and `localhost` to `dir`; returns the CA's PEM.
fn write_certificates(dir: &Path) -> Result<String> {
    let validity = website_certs::days(2);
    let ca = CertificateAuthority::generate("website-webhook-ca", validity)?;
    let names = [SubjectName::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)), SubjectName::dns("localhost")?];
    let serving = ca.issue_serving(&names, validity)?;
    website_certs::write_files(dir, ca.cert_pem(), serving.cert_pem(), serving.key_pem(), true)?;
    Ok(ca.cert_pem().to_owned())
}

/// Gives every namespace the `kubernetes.io/metadata.name` label that Kubernetes 1.21 and later set
/// themselves, and creates the operator's namespace.
async fn label_namespaces(cp: &ControlPlane) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(cp.client());
    for name in ["default", "kube-system", "kube-public", OPERATOR_NAMESPACE] {
        let ns = serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {NAMESPACE_NAME_LABEL: name}}
        });
        namespaces
            .patch(name, &PatchParams::apply("website-e2e"), &Patch::Apply(&ns))
            .await
            .with_context(|| format!("failed to label namespace {name}"))?;
    }
    Ok(())
}

/// Creates a namespace carrying the label that newer API servers set by themselves.
///
/// # Errors
/// When the API server refuses.
pub async fn create_namespace(cp: &ControlPlane, name: &str) -> Result<()> {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(NAMESPACE_NAME_LABEL.to_owned(), name.to_owned())])),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(cp.client())
        .patch(name, &PatchParams::apply("website-e2e"), &Patch::Apply(&ns))
        .await
        .with_context(|| format!("failed to create namespace {name}"))?;
    Ok(())
}

/// Registers the validating and mutating webhook configurations for a webhook at `base_url`: the Helm chart's
/// own, rendered with its development-only `webhook.urlOverride` and the `provided` certificate mode, so that
/// the tests and the local run exercise exactly what the chart installs.
///
/// # Errors
/// When helm cannot render them or the API server refuses them.
pub async fn register_webhooks(cp: &ControlPlane, base_url: &str, ca_pem: &str, failure_policy: &str) -> Result<()> {
    let chart = workspace_root().join("charts").join("website-operator");
    let url = format!("webhook.urlOverride={base_url}");
    let ca_bundle = format!("certificates.provided.caBundle={}", website_certs::ca_bundle_base64(ca_pem));
    let policy = format!("webhook.failurePolicy={failure_policy}");
    let rendered = cp
        .helm(&[
            "template",
            WEBHOOK_CONFIGURATION,
            &chart.to_string_lossy(),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--show-only",
            "templates/webhook-configurations.yaml",
            "--set-string",
            &url,
            "--set",
            "certificates.mode=provided",
            "--set-string",
            &ca_bundle,
            "--set-string",
            "certificates.provided.secretName=unused",
            "--set-string",
            &policy,
        ])
        .await?
        .ensure_success()
        .context("failed to render the chart's webhook configurations")?;
    cp.kubectl_with_stdin(&["apply", "--server-side", "--force-conflicts", "-f", "-"], Some(&rendered))
        .await?
        .ensure_success()
        .context("failed to register the webhook configurations")?;
    Ok(())
}

/// The API server picks up new webhook configurations a moment after they are written: waits until a
/// server-side dry run of an invalid Website is refused by the webhook.
async fn wait_until_webhook_is_called(cp: &ControlPlane) -> Result<()> {
    let probe = r#"{"apiVersion":"extensions.example.com/v1","kind":"Website","metadata":{"name":"webhook-probe","namespace":"default"},"spec":{"gitRepo":"file:///webhook-probe"}}"#;
    eventually(Duration::from_secs(30), async || {
        let out = cp.kubectl_with_stdin(&["create", "--dry-run=server", "-f", "-"], Some(probe)).await?;
        // The webhook's own rule: the CRD schema alone would admit this repository.
        if out.stderr.contains("spec.gitRepo: local paths are not supported") {
            Ok(())
        } else {
            Err(anyhow!("the webhook is not called yet: {}{}", out.stdout, out.stderr))
        }
    })
    .await
    .context("the API server did not start calling the webhook")
}

async fn wait_for_ready(controller: &mut ChildProcess, addr: SocketAddr) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if !controller.is_running() {
            bail!("the controller exited:\n{}", controller.log_tail(20));
        }
        let answer = match http_get_status(addr, "/readyz").await {
            Ok(200) => return Ok(()),
            Ok(status) => format!("/readyz answered {status}"),
            Err(e) => format!("/readyz failed: {e}"),
        };
        if tokio::time::Instant::now() >= deadline {
            bail!("the controller did not become ready ({answer}):\n{}", controller.log_tail(20));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Status code of a plain-HTTP GET.
///
/// # Errors
/// When the connection fails or the answer is not HTTP.
pub async fn http_get_status(addr: SocketAddr, path: &str) -> Result<u16> {
    Ok(http_get(addr, path).await?.0)
}

/// Status code and body of a plain-HTTP GET.
///
/// # Errors
/// When the connection fails or the answer is not HTTP.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP response: {response:?}"))?;
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// The Prometheus text a component serves at `/metrics` on its plain-HTTP listener at `addr`.
///
/// # Errors
/// When it does not answer, or answers other than 200.
pub async fn scrape(addr: SocketAddr) -> Result<String> {
    let (status, text) = http_get(addr, "/metrics").await?;
    anyhow::ensure!(status == 200, "/metrics on {addr} answered {status}: {text}");
    Ok(text)
}

/// The sum of every sample of `metric` (its name, any labels) in Prometheus text.
pub fn sum_of(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|line| line.strip_prefix(metric).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The value of the sample `series` (name and labels, exactly as exposed) in Prometheus text, if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// What a kubelet would report for running, ready pods in `namespace` matching the label `selector`: the Deployment
/// controller then counts them as available. No kubelet runs here. Returns how many pods were marked.
///
/// # Errors
/// When the pods cannot be listed or patched.
pub async fn mark_pods_ready(cp: &ControlPlane, namespace: &str, selector: &str) -> Result<usize> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::ResourceExt as _;
    let pods: Api<Pod> = Api::namespaced(cp.client(), namespace);
    let list = pods.list(&kube::api::ListParams::default().labels(selector)).await?;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    for pod in &list.items {
        let status = serde_json::json!({"status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            ]
        }});
        pods.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(&status)).await?;
    }
    Ok(list.items.len())
}
