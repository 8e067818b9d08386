//! Benchmarks and stress tests of the Website operator's binaries. Each binary in `src/bin` starts what it
//! measures, drives it from this machine's loopback only, and prints its figures; nothing here asserts a timing.
//!
//! - `webhook-stress`: the admission webhook under hostile load (large bodies, slow-drip clients) while a
//!   well-behaved client keeps sending reviews; prints peak memory, how fast slow clients are cut off, and the
//!   well-behaved client's failures.
//!
//! This library holds what the binaries share: a webhook process on test certificates, a TLS client, and memory
//! readings from `/proc`.

pub mod attack;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use website_certs::{CertificateAuthority, DEFAULT_CA_VALIDITY, DEFAULT_SERVING_VALIDITY, SubjectName};

/// A free TCP port on the loopback interface.
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// The resident set size of process `pid` now, and its peak so far (`VmRSS`, `VmHWM`), in bytes.
///
/// # Errors
/// When `/proc/<pid>/status` cannot be read, e.g. because the process has exited.
pub fn rss(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        let line = status.lines().find(|l| l.starts_with(name)).with_context(|| format!("no {name} in status"))?;
        let kib: u64 = line.split_whitespace().nth(1).context("no value")?.parse()?;
        Ok(kib * 1024)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    // Precision loss is irrelevant for a printed figure.
    #[allow(clippy::cast_precision_loss)]
    let m = bytes as f64 / (1024.0 * 1024.0);
    format!("{m:.1} MiB")
}

/// Where a webhook serves, and how to reach it over TLS.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Its HTTPS address on loopback.
    pub addr: SocketAddr,
    /// A client configuration that trusts the webhook's CA.
    pub client: Arc<ClientConfig>,
}

impl Endpoint {
    /// An endpoint at `addr` whose certificate for `localhost` chains to `ca_pem`.
    ///
    /// # Errors
    /// When `ca_pem` holds no usable certificate.
    pub fn new(addr: SocketAddr, ca_pem: &str) -> Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert?)?;
        }
        let client = Arc::new(ClientConfig::builder().with_root_certificates(roots).with_no_client_auth());
        Ok(Self { addr, client })
    }

    /// Opens a TLS connection to the webhook.
    ///
    /// # Errors
    /// When the connection or the handshake fails.
    pub async fn connect(&self) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("localhost").expect("a valid name").to_owned();
        TlsConnector::from(self.client.clone()).connect(name, tcp).await
    }
}

/// A webhook process serving on loopback with certificates of a CA made for the run. Killed on drop.
pub struct Webhook {
    child: Child,
    /// Where it serves.
    pub endpoint: Arc<Endpoint>,
    _dir: tempfile::TempDir,
}

impl Webhook {
    /// Starts `binary` with test certificates on a free port, plus `args`, and waits until it accepts connections.
    ///
    /// # Errors
    /// When the certificates cannot be made, the binary does not start, or it does not listen within 20 s.
    pub fn start(binary: &Path, args: &[String]) -> Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir()?;
        let ca = CertificateAuthority::generate("website-bench-ca", DEFAULT_CA_VALIDITY)?;
        let names = [SubjectName::Dns("localhost".into()), SubjectName::Ip(Ipv4Addr::LOCALHOST.into())];
        let serving = ca.issue_serving(&names, DEFAULT_SERVING_VALIDITY)?;
        let written =
            website_certs::write_files(dir.path(), ca.cert_pem(), serving.cert_pem(), serving.key_pem(), false)?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let child = Command::new(binary)
            .arg(format!("--tls-cert-file={}", written.tls_cert.display()))
            .arg(format!("--tls-key-file={}", written.tls_key.display()))
            .arg(format!("--listen-addr={addr}"))
            .arg("--health-addr=off")
            .args(args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("failed to start {}", binary.display()))?;
        let webhook = Self { child, endpoint: Arc::new(Endpoint::new(addr, ca.cert_pem())?), _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                bail!("{} did not listen on {addr} within 20 s", binary.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(webhook)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The build of workspace binary `name` beside this one: `$WEBSITE_BIN_DIR/<name>`, else the directory of the
/// running executable (a release build, when this one is).
///
/// # Errors
/// When it has not been built.
pub fn release_binary(name: &str) -> Result<PathBuf> {
    let dir = match std::env::var_os("WEBSITE_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()?.parent().map(Path::to_owned).context("the executable has no directory")?,
    };
    let path = dir.join(name);
    if !path.is_file() {
        bail!("{} not found: build it with `cargo build --release -p website-webhook`", path.display());
    }
    Ok(path)
}

/// An `admission.k8s.io/v1` AdmissionReview of a Website CREATE whose JSON is about `size` bytes: the padding goes
/// into an annotation.
pub fn review(uid: &str, size: usize) -> Vec<u8> {
    let mut review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "extensions.example.com", "version": "v1", "kind": "Website"},
            "resource": {"group": "extensions.example.com", "version": "v1", "resource": "websites"},
            "requestKind": {"group": "extensions.example.com", "version": "v1", "kind": "Website"},
            "requestResource": {"group": "extensions.example.com", "version": "v1", "resource": "websites"},
            "name": "kubia",
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": {
                "apiVersion": "extensions.example.com/v1",
                "kind": "Website",
                "metadata": {"name": "kubia", "namespace": "default",
                    "uid": "4c0d3c8e-6f39-4a67-8a2e-1a4f3f0d8c11",
                    "creationTimestamp": "2026-11-27T10:00:00Z",
                    "labels": {"app": "kubia", "team": "web"},
                    "annotations": {"kubectl.kubernetes.io/last-applied-configuration": ""}},
                "spec": {"gitRepo": "https://github.com/luksa/kubia-website-example.git", "ref": "main",
                    "replicas": 2, "serviceType": "ClusterIP", "port": 80, "syncIntervalSeconds": 60}
            },
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions", "fieldManager": "kubectl-create"}
        }
    });
    let base = review.to_string().len();
    let padding = "x".repeat(size.saturating_sub(base));
    review["request"]["object"]["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
        serde_json::Value::String(padding);
    review.to_string().into_bytes()
}
