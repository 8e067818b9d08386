//! The webhook's self-managed certificates on a [`ControlPlane`]: the Helm chart installed (its Secret, RBAC and
//! webhook configurations, pointed at local URLs), and replicas of the real webhook binary run with the installed
//! Deployment's own arguments, as its ServiceAccount.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use website_e2e::self_managed::{self, Addresses, Replica};
//! use website_e2e::{ControlPlane, ControlPlaneOptions};
//!
//! let cp = ControlPlane::start(ControlPlaneOptions { controller_manager: false, ..ControlPlaneOptions::default() })
//!     .await?;
//! let a = Addresses::free()?;
//! self_managed::install(&cp, &a, &[]).await?;
//! let dir = tempfile::tempdir()?;
//! let replica = Replica::start(&cp, "webhook-a", a, dir.path(), &[]).await?;
//! self_managed::expect_admission(&cp).await?;
//! # Ok(())
//! # }
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, ensure};
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use website_certs::{CertificateAuthority, SubjectName};

use crate::helm::{CHART_NAME, chart_arg, service_account_token, write_token_kubeconfig};
use crate::operator::{binary, create_namespace, http_get_status};
use crate::{ChildProcess, ControlPlane, free_port};

/// Namespace the chart is installed into.
pub const NAMESPACE: &str = "website-system";
/// The webhook's Deployment, Service and ServiceAccount (release name = chart name).
pub const WEBHOOK: &str = "website-operator-webhook";
/// Both webhook configurations.
pub const CONFIGURATION: &str = "website-operator";
/// The Secret holding the certificates.
pub const CERT_SECRET: &str = "website-operator-webhook-tls";
/// Secret key of the CA bundle.
pub const CA_BUNDLE_KEY: &str = "ca-bundle.crt";
/// Annotation of the Secret recording since when its CA is trusted everywhere.
pub const TRUST_ANNOTATION: &str = "webhook.extensions.example.com/ca-trusted-since";

/// A Website that only the webhook refuses (the CRD schema admits it), with the webhook's message.
const PROBE: &str = r#"{"apiVersion":"extensions.example.com/v1","kind":"Website","metadata":{"name":"probe"},"spec":{"gitRepo":"file:///etc"}}"#;
const WEBHOOK_DENIAL: &str = "spec.gitRepo: local paths are not supported";

/// Installs the chart into [`NAMESPACE`] in the self-managed mode, its webhook configurations calling
/// `https://<addresses.https>`, with extra `values` (`key=value`).
///
/// # Errors
/// When helm fails.
pub async fn install(cp: &ControlPlane, addresses: &Addresses, values: &[&str]) -> Result<()> {
    create_namespace(cp, NAMESPACE).await?;
    let chart = chart_arg();
    let url = format!("webhook.urlOverride=https://{}", addresses.https);
    let mut args = vec!["install", CHART_NAME, chart.as_str(), "-n", NAMESPACE, "--set", url.as_str()];
    for value in values {
        args.extend(["--set", value]);
    }
    cp.helm(&args).await?.ensure_success().context("failed to install the chart")?;
    Ok(())
}

/// Points the mutating webhook at another replica, so that every request is answered by both: the validating
/// webhook by the one installed, the mutating webhook by `addresses`'.
///
/// # Errors
/// When kubectl fails.
pub async fn point_mutating_webhook_at(cp: &ControlPlane, addresses: &Addresses) -> Result<()> {
    let patch = serde_json::json!([
        {"op": "replace", "path": "/webhooks/0/clientConfig/url", "value": format!("https://{}/mutate", addresses.https)}
    ]);
    cp.kubectl(&["patch", "mutatingwebhookconfiguration", CONFIGURATION, "--type=json", "-p", &patch.to_string()])
        .await?
        .ensure_success()?;
    Ok(())
}

/// Sets the `caBundle` of both configurations to `pem` (empty: wipes them), as a person with kubectl would.
///
/// # Errors
/// When kubectl fails.
pub async fn set_ca_bundles(cp: &ControlPlane, pem: &str) -> Result<()> {
    let bundle = website_certs::ca_bundle_base64(pem);
    let patch = serde_json::json!([{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": bundle}]);
    for kind in ["validatingwebhookconfiguration", "mutatingwebhookconfiguration"] {
        cp.kubectl(&["patch", kind, CONFIGURATION, "--type=json", "-p", &patch.to_string()]).await?.ensure_success()?;
    }
    Ok(())
}

/// A CA and a serving certificate it issued for the names the webhook wants, valid for `validity`.
///
/// # Errors
/// When rcgen fails.
pub fn certificates(validity: Duration) -> Result<(CertificateAuthority, website_certs::ServingCertificate)> {
    let ca = CertificateAuthority::generate("earlier-ca", validity)?;
    let mut names: Vec<SubjectName> =
        website_certs::service_dns_names(WEBHOOK, NAMESPACE)?.into_iter().map(SubjectName::Dns).collect();
    names.push(SubjectName::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let serving = ca.issue_serving(&names, validity)?;
    Ok((ca, serving))
}

/// Fills the chart's Secret with `ca` and `serving`, as an earlier webhook would have left them.
///
/// # Errors
/// When kubectl fails.
pub async fn fill_secret(
    cp: &ControlPlane,
    ca: &CertificateAuthority,
    serving: &website_certs::ServingCertificate,
) -> Result<()> {
    let data = serde_json::json!({"stringData": {
        "ca.crt": ca.cert_pem(), "ca.key": ca.key_pem(),
        "tls.crt": serving.cert_pem(), "tls.key": serving.key_pem(),
    }});
    cp.kubectl(&["patch", "secret", CERT_SECRET, "-n", NAMESPACE, "--type=merge", "-p", &data.to_string()])
        .await?
        .ensure_success()?;
    Ok(())
}

/// The certificate Secret, if it exists.
///
/// # Errors
/// When the API server cannot be asked.
pub async fn secret(cp: &ControlPlane) -> Result<Option<Secret>> {
    Ok(Api::<Secret>::namespaced(cp.client(), NAMESPACE).get_opt(CERT_SECRET).await?)
}

/// A data key of the certificate Secret, as text; `None` when the Secret or the key is missing.
///
/// # Errors
/// When the API server cannot be asked.
pub async fn secret_text(cp: &ControlPlane, key: &str) -> Result<Option<String>> {
    let secret = secret(cp).await?;
    Ok(secret.and_then(|s| s.data).and_then(|data| data.get(key).map(|v| String::from_utf8_lossy(&v.0).into_owned())))
}

/// The CAs in the certificate Secret's bundle, current first.
///
/// # Errors
/// When the API server cannot be asked.
pub async fn secret_bundle(cp: &ControlPlane) -> Result<Vec<String>> {
    Ok(secret_text(cp, CA_BUNDLE_KEY)
        .await?
        .map(|text| website_certs::inspect::split_certificates(&text))
        .unwrap_or_default())
}

/// The trust annotation of the certificate Secret.
///
/// # Errors
/// When the API server cannot be asked.
pub async fn trust_annotation(cp: &ControlPlane) -> Result<Option<String>> {
    let secret = secret(cp).await?;
    Ok(secret.and_then(|s| s.metadata.annotations).and_then(|a| a.get(TRUST_ANNOTATION).cloned()))
}

/// The CAs in each webhook's `caBundle`, validating webhooks first; a missing configuration counts as none.
///
/// # Errors
/// When the API server cannot be asked.
pub async fn ca_bundles(cp: &ControlPlane) -> Result<Vec<Vec<String>>> {
    let split = |bundle: Option<k8s_openapi::ByteString>| {
        website_certs::inspect::split_certificates(&String::from_utf8_lossy(&bundle.map(|b| b.0).unwrap_or_default()))
    };
    let mut bundles = Vec::new();
    if let Some(config) = Api::<ValidatingWebhookConfiguration>::all(cp.client()).get_opt(CONFIGURATION).await? {
        bundles.extend(config.webhooks.unwrap_or_default().into_iter().map(|w| split(w.client_config.ca_bundle)));
    }
    if let Some(config) = Api::<MutatingWebhookConfiguration>::all(cp.client()).get_opt(CONFIGURATION).await? {
        bundles.extend(config.webhooks.unwrap_or_default().into_iter().map(|w| split(w.client_config.ca_bundle)));
    }
    Ok(bundles)
}

/// One server-side dry run of a Website that only the webhook refuses: `Ok` when the webhooks answered (the
/// mutating one first, then the validating one with its refusal), else what kubectl said.
///
/// # Errors
/// When kubectl cannot be run.
pub async fn admission(cp: &ControlPlane) -> Result<Result<(), String>> {
    let out = cp.kubectl_with_stdin(&["create", "--dry-run=server", "-n", "default", "-f", "-"], Some(PROBE)).await?;
    Ok(if out.stderr.contains(WEBHOOK_DENIAL) { Ok(()) } else { Err(format!("{}{}", out.stdout, out.stderr.trim())) })
}

/// Like [`admission`], failing unless the webhooks answered.
///
/// # Errors
/// When they did not.
pub async fn expect_admission(cp: &ControlPlane) -> Result<()> {
    admission(cp).await?.map_err(|answer| anyhow!("the webhooks did not answer: {answer}"))
}

/// What [`keep_requesting`] saw.
#[derive(Debug, Default)]
pub struct Requests {
    /// How many requests were made.
    pub made: usize,
    /// The answers of those that the webhooks did not answer.
    pub failures: Vec<String>,
}

/// Makes [`admission`] requests one after the other until `stop` is set, and reports them.
pub async fn keep_requesting(cp: &ControlPlane, stop: &AtomicBool) -> Requests {
    let mut requests = Requests::default();
    while !stop.load(Ordering::Acquire) {
        requests.made += 1;
        match admission(cp).await {
            Ok(Ok(())) => {}
            Ok(Err(answer)) => requests.failures.push(format!("request {}: {answer}", requests.made)),
            Err(error) => requests.failures.push(format!("request {}: {error:#}", requests.made)),
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    requests
}

/// Runs `scenario` while [`keep_requesting`] runs, and returns both outcomes.
pub async fn while_requesting<T>(
    cp: &ControlPlane,
    scenario: impl Future<Output = Result<T>>,
) -> (Requests, Result<T>) {
    let stop = AtomicBool::new(false);
    let scenario = async {
        let result = scenario.await;
        stop.store(true, Ordering::Release);
        result
    };
    tokio::join!(keep_requesting(cp, &stop), scenario)
}

/// Where a replica listens.
#[derive(Clone, Copy, Debug)]
pub struct Addresses {
    /// The HTTPS listener (admission).
    pub https: SocketAddr,
    /// The plain-HTTP health listener (`/readyz`).
    pub health: SocketAddr,
}

impl Addresses {
    /// Two free loopback ports.
    ///
    /// # Errors
    /// When no port can be bound.
    pub fn free() -> Result<Self> {
        let at = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        Ok(Self { https: at(free_port()?), health: at(free_port()?) })
    }
}

/// A webhook process in the self-managed mode.
pub struct Replica {
    process: ChildProcess,
    name: String,
    addresses: Addresses,
    dir: PathBuf,
}

impl Replica {
    /// Runs the webhook binary with the installed Deployment's arguments, listening on `addresses`, with 127.0.0.1
    /// in its certificate, its certificate files in `dir` (reloaded every second), as the webhook's
    /// ServiceAccount. `overrides` (`--flag=value`) replace the Deployment's values of those flags. Waits until it
    /// listens.
    ///
    /// # Errors
    /// When the Deployment is missing or the process does not start listening.
    pub async fn start(
        cp: &ControlPlane,
        name: &str,
        addresses: Addresses,
        dir: &Path,
        overrides: &[&str],
    ) -> Result<Self> {
        let deployment = Api::<Deployment>::namespaced(cp.client(), NAMESPACE).get(WEBHOOK).await?;
        let args = deployment
            .spec
            .and_then(|spec| spec.template.spec)
            .and_then(|spec| spec.containers.into_iter().next())
            .and_then(|container| container.args)
            .context("the webhook Deployment has no args")?;
        let flag = |arg: &str| arg.split_once('=').map_or(arg.to_owned(), |(flag, _)| flag.to_owned());
        let mut command = Command::new(binary("website-webhook")?);
        for arg in args {
            let replaced = match flag(&arg).as_str() {
                "--listen-addr" => format!("--listen-addr={}", addresses.https),
                "--health-addr" => format!("--health-addr={}", addresses.health),
                "--tls-cert-file" => format!("--tls-cert-file={}", dir.join("tls.crt").display()),
                "--tls-key-file" => format!("--tls-key-file={}", dir.join("tls.key").display()),
                "--log-format" => "--log-format=text".to_owned(),
                other => overrides.iter().find(|o| flag(o) == other).map_or(arg.clone(), |o| (*o).to_owned()),
            };
            command.arg(replaced);
        }
        std::fs::create_dir_all(dir)?;
        let token = service_account_token(cp, NAMESPACE, WEBHOOK).await?;
        let kubeconfig = write_token_kubeconfig(cp, dir, WEBHOOK, &token)?;
        command
            .args(["--extra-san=127.0.0.1", "--tls-reload-interval-seconds=1"])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info");
        let mut process = cp.spawn(name, command)?;
        process.wait_for_port(addresses.https, Duration::from_secs(60)).await?;
        Ok(Self { process, name: name.to_owned(), addresses, dir: dir.to_owned() })
    }

    /// Stops it and starts it again with the same arguments and files.
    ///
    /// # Errors
    /// As [`Replica::start`].
    pub async fn restart(self, cp: &ControlPlane, overrides: &[&str]) -> Result<Self> {
        let Self { mut process, name, addresses, dir } = self;
        process.stop(Duration::from_secs(10))?;
        drop(process);
        Self::start(cp, &name, addresses, &dir, overrides).await
    }

    /// Where it listens.
    pub fn addresses(&self) -> Addresses {
        self.addresses
    }

    /// The value of the metric sample `series` (name and labels as exposed) on its `/metrics`; 0 when absent.
    ///
    /// # Errors
    /// When it does not answer `/metrics` with 200.
    pub async fn metric(&self, series: &str) -> Result<f64> {
        let text = crate::operator::scrape(self.addresses.health).await?;
        Ok(crate::operator::sample(&text, series).unwrap_or(0.0))
    }

    /// Whether `/readyz` answers 200.
    ///
    /// # Errors
    /// When it does not answer HTTP.
    pub async fn is_ready(&self) -> Result<bool> {
        Ok(http_get_status(self.addresses.health, "/readyz").await? == 200)
    }

    /// The certificate it serves now, as PEM, read from a TLS handshake.
    ///
    /// # Errors
    /// When the handshake fails.
    pub async fn served_certificate(&self) -> Result<String> {
        served_certificate(self.addresses.https).await
    }

    /// The end of its log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        format!("--- {}:\n{}", self.name, self.process.log_tail(lines))
    }
}

/// The leaf certificate served at `addr`, as PEM, whoever issued it.
///
/// # Errors
/// When the TLS handshake fails.
pub async fn served_certificate(addr: SocketAddr) -> Result<String> {
    tokio::task::spawn_blocking(move || handshake(addr)).await?
}

fn handshake(addr: SocketAddr) -> Result<String> {
    use rustls::pki_types::ServerName;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let mut tls = rustls::ClientConnection::new(Arc::new(config), ServerName::IpAddress(addr.ip().into()))?;
    let mut socket = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    socket.set_write_timeout(Some(Duration::from_secs(5)))?;
    while tls.is_handshaking() {
        tls.complete_io(&mut socket).with_context(|| format!("TLS handshake with {addr}"))?;
    }
    let leaf = tls.peer_certificates().and_then(|chain| chain.first()).context("no certificate served")?;
    Ok(website_certs::inspect::certificate_pem(leaf))
}

/// Accepts any server certificate (with a valid handshake signature): the tests look at it rather than trust it.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Fails unless every replica serves a certificate issued by `ca_pem`.
///
/// # Errors
/// When one does not (naming which), or a handshake fails.
pub async fn expect_served_by(replicas: &[&Replica], ca_pem: &str) -> Result<()> {
    for replica in replicas {
        let served = replica.served_certificate().await?;
        ensure!(
            website_certs::inspect::issued_by(&served, ca_pem),
            "{} serves a certificate of another CA",
            replica.name
        );
    }
    Ok(())
}
