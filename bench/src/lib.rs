//! Benchmarks and stress tests of the Website operator's binaries. Each binary in `src/bin` starts what it
//! measures, drives it from this machine's loopback only, and prints its figures; nothing here asserts a timing.
//!
//! - `webhook-stress`: the admission webhook under hostile load (large bodies, slow-drip clients) while a
//!   well-behaved client keeps sending reviews; prints peak memory, how fast slow clients are cut off, and the
//!   well-behaved client's failures.
//! - `website-bench`: the speed suite (`scripts/bench.sh speed`): webhook throughput and memory, the latency the
//!   webhooks add at a real API server, and the controller's convergence time, writes and memory, each printed as
//!   a ratio against a baseline measured in the same run. Start reading at its `main`; the measurements live in
//!   [`speed`], [`wrk`] and [`cluster`].
//! - `minimal-webhook`: the baseline of the webhook's figures: a correct webhook on the same HTTP and TLS stack
//!   that only echoes the review's uid.
//!
//! This library holds what the binaries share: a webhook process on test certificates, a TLS client, and memory
//! readings from `/proc`.

pub mod attack;
pub mod cluster;
pub mod speed;
pub mod stats;
pub mod wrk;

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

/// The CPU time process `pid` has used so far, all threads together, user and system (`/proc/<pid>/stat`, at
/// Linux's fixed 100 ticks per second).
///
/// # Errors
/// When `/proc/<pid>/stat` cannot be read or parsed, e.g. because the process has exited.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name, in parentheses, may hold spaces: count fields after its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).context("no command name in stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) of the whole line are the 12th and 13th after the name.
    let ticks = |i: usize| -> Result<u64> { Ok(fields.get(i).context("stat too short")?.parse()?) };
    Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

/// The load average over the last minute, as `/proc/loadavg` says (`?` when unreadable).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
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

/// A serving certificate for `localhost` and 127.0.0.1 from a CA made for the run, as files in a temporary
/// directory (deleted on drop).
pub struct Certificates {
    /// The serving certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA's certificate (PEM), for clients and `caBundle`s.
    pub ca_pem: String,
    /// A kubeconfig naming an API server where none listens: website-webhook needs one to start, and the
    /// benchmark's reviews, which carry no credentials, never make it call the API server.
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

/// A kubeconfig for an API server at `server`, without credentials.
pub fn unreachable_kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: none\n\
         clusters: [{{name: none, cluster: {{server: \"{server}\"}}}}]\n\
         users: [{{name: none, user: {{}}}}]\n\
         contexts: [{{name: none, context: {{cluster: none, user: none}}}}]\n"
    )
}

impl Certificates {
    /// Makes a CA and a serving certificate and writes them to a new temporary directory.
    ///
    /// # Errors
    /// When the certificates cannot be made or written.
    pub fn generate() -> Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir()?;
        let ca = CertificateAuthority::generate("website-bench-ca", DEFAULT_CA_VALIDITY)?;
        let names = [SubjectName::Dns("localhost".into()), SubjectName::Ip(Ipv4Addr::LOCALHOST.into())];
        let serving = ca.issue_serving(&names, DEFAULT_SERVING_VALIDITY)?;
        let written =
            website_certs::write_files(dir.path(), ca.cert_pem(), serving.cert_pem(), serving.key_pem(), false)?;
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, unreachable_kubeconfig("https://127.0.0.1:9"))?;
        Ok(Self {
            cert: written.tls_cert,
            key: written.tls_key,
            ca_pem: ca.cert_pem().to_owned(),
            kubeconfig,
            _dir: dir,
        })
    }
}

/// A webhook process serving on loopback with certificates of a CA made for the run. Killed on drop.
pub struct Webhook {
    child: Child,
    /// Where it serves.
    pub endpoint: Arc<Endpoint>,
    _certs: Arc<Certificates>,
}

impl Webhook {
    /// Starts `binary` with test certificates on a free port, plus `args`, and waits until it accepts connections.
    /// Its log goes to this process's standard error, filtered by `RUST_LOG` (default `warn`).
    ///
    /// # Errors
    /// When the certificates cannot be made, the binary does not start, or it does not listen within 20 s.
    pub fn start(binary: &Path, args: &[String]) -> Result<Self> {
        let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
        Self::start_with(binary, Arc::new(Certificates::generate()?), args, &log, Stdio::inherit())
    }

    /// Starts `binary` serving `certs` on a free port, plus `args`, with `RUST_LOG=rust_log` and its standard
    /// error to `stderr`, and waits until it accepts connections.
    ///
    /// # Errors
    /// When the binary does not start, or it does not listen within 20 s.
    pub fn start_with(
        binary: &Path,
        certs: Arc<Certificates>,
        args: &[String],
        rust_log: &str,
        stderr: Stdio,
    ) -> Result<Self> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let child = Command::new(binary)
            .arg(format!("--tls-cert-file={}", certs.cert.display()))
            .arg(format!("--tls-key-file={}", certs.key.display()))
            .arg(format!("--listen-addr={addr}"))
            .arg("--health-addr=off")
            .args(args)
            .env("RUST_LOG", rust_log)
            .env("KUBECONFIG", &certs.kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("failed to start {}", binary.display()))?;
        let endpoint = Arc::new(Endpoint::new(addr, &certs.ca_pem)?);
        let mut webhook = Self { child, endpoint, _certs: certs };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            if let Some(status) = webhook.child.try_wait()? {
                bail!("{} exited ({status}) before listening on {addr}", binary.display());
            }
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

    /// `https://127.0.0.1:<port>`, its base URL.
    pub fn url(&self) -> String {
        format!("https://{}", self.endpoint.addr)
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one `POST path` with `body` over a new connection and returns the status code and the response body.
///
/// # Errors
/// When the connection fails or the answer is not HTTP/1.1 with a Content-Length.
pub async fn post(endpoint: &Endpoint, path: &str, body: &[u8]) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = endpoint.connect().await?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    let mut response = Vec::new();
    // A server may close without a TLS close_notify: keep what arrived.
    if let Err(error) = stream.read_to_end(&mut response).await
        && response.is_empty()
    {
        return Err(error.into());
    }
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").context("no end of the response head")?;
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).context("no status code")?;
    Ok((status, body.to_owned()))
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
        bail!("{} not found: build the release binaries first (scripts/bench.sh does)", path.display());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cpu_time() {
        let pid = std::process::id();
        let (now, peak) = rss(pid).expect("readable");
        assert!(now > 0 && peak >= now);
        assert!(cpu_time(pid).is_ok());
    }

    #[test]
    fn reviews_have_about_the_size_asked_for() {
        let body = review("uid-1", 1600);
        assert!((1600..1700).contains(&body.len()), "{}", body.len());
    }
}
