//! Command-line flags, each with an environment-variable equivalent.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::tls::CertificateFiles;

/// Flags of `website-webhook`.
#[derive(clap::Parser, Clone, Debug)]
#[command(name = "website-webhook", version, about = "Validating and mutating admission webhook for Website objects")]
pub struct Settings {
    /// Address of the HTTPS listener that serves /validate, /mutate, /healthz and /readyz.
    #[arg(long, env = "WEBHOOK_LISTEN_ADDR", default_value = "0.0.0.0:8443")]
    pub listen_addr: SocketAddr,

    /// Address of a plain-HTTP listener that serves only /healthz and /readyz, for probes. `off` disables it.
    #[arg(long, env = "WEBHOOK_HEALTH_ADDR", default_value = "0.0.0.0:8080", value_parser = parse_optional_addr)]
    // The full path stops clap from treating the field as an optional flag: `off` is a value of its own.
    pub health_addr: std::option::Option<SocketAddr>,

    /// PEM file with the serving certificate chain, leaf first.
    #[arg(long, env = "WEBHOOK_TLS_CERT_FILE")]
    pub tls_cert_file: PathBuf,

    /// PEM file with the serving certificate's private key.
    #[arg(long, env = "WEBHOOK_TLS_KEY_FILE")]
    pub tls_key_file: PathBuf,

    /// Seconds between two checks of the certificate files for changes.
    #[arg(long, env = "WEBHOOK_TLS_RELOAD_INTERVAL_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub tls_reload_interval_seconds: u64,

    /// Largest accepted request body in bytes; larger ones get HTTP 413. The default leaves room for an
    /// AdmissionReview carrying two objects of the API server's 1.5 MiB limit.
    #[arg(long, env = "WEBHOOK_MAX_BODY_BYTES", default_value_t = 3 * 1024 * 1024 + 64 * 1024)]
    pub max_body_bytes: usize,

    /// Request bodies held at once by all requests together, in bytes; a large request beyond it gets HTTP 429 at
    /// once. Requests of at most 64 KiB, what the API server sends for an ordinary Website, may use a reserve of
    /// an eighth more.
    #[arg(long, env = "WEBHOOK_MAX_INFLIGHT_BYTES", default_value_t = 16 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(65536..=(1u64 << 34)))]
    pub max_inflight_bytes: u64,

    /// Seconds a client gets for a request's headers, and again for its body; then the connection is closed (408
    /// for a body). Keep it below the webhook configurations' timeoutSeconds.
    #[arg(long, env = "WEBHOOK_BODY_TIMEOUT_SECONDS", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=30))]
    pub body_timeout_seconds: u64,

    /// Open connections, shared among the workers; more wait until one closes.
    #[arg(long, env = "WEBHOOK_MAX_CONNECTIONS", default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub max_connections: u64,

    /// HTTP worker threads per listener (default: one per CPU).
    #[arg(long, env = "WEBHOOK_WORKERS")]
    pub workers: Option<usize>,

    /// Seconds to let in-flight requests finish after SIGTERM.
    #[arg(long, env = "WEBHOOK_SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 10)]
    pub shutdown_timeout_seconds: u64,

    /// Seconds to wait for the API server's answer to a SubjectAccessReview (whether a user may read the Secret a
    /// Website refers to); without one, the Website is refused. Keep it below the webhook configurations'
    /// timeoutSeconds.
    #[arg(long, env = "WEBHOOK_ACCESS_REVIEW_TIMEOUT_SECONDS", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=29))]
    pub access_review_timeout_seconds: u64,

    /// Log format.
    #[arg(long, env = "WEBHOOK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Self-managed certificates (off unless --self-managed-certs).
    #[command(flatten)]
    pub self_managed: crate::self_managed::Options,
}

/// How log lines are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Settings {
    /// The certificate files named by the flags.
    pub fn certificate_files(&self) -> CertificateFiles {
        CertificateFiles { cert: self.tls_cert_file.clone(), key: self.tls_key_file.clone() }
    }

    /// The limits on request bodies.
    pub fn limits(&self) -> crate::capacity::Limits {
        crate::capacity::Limits {
            max_body_bytes: self.max_body_bytes,
            max_inflight_bytes: usize::try_from(self.max_inflight_bytes).unwrap_or(usize::MAX),
            body_timeout: std::time::Duration::from_secs(self.body_timeout_seconds),
        }
    }

    /// `--max-connections` divided among the workers, at least one each.
    pub fn max_connections_per_worker(&self) -> usize {
        let workers =
            self.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
        let total = usize::try_from(self.max_connections).unwrap_or(usize::MAX);
        total.div_ceil(workers).max(1)
    }

    /// Settings for tests: both listeners on free loopback ports.
    pub fn for_tests(files: &CertificateFiles) -> Self {
        Self {
            listen_addr: ([127, 0, 0, 1], 0).into(),
            health_addr: Some(([127, 0, 0, 1], 0).into()),
            tls_cert_file: files.cert.clone(),
            tls_key_file: files.key.clone(),
            tls_reload_interval_seconds: 1,
            max_body_bytes: 3 * 1024 * 1024 + 64 * 1024,
            max_inflight_bytes: 16 * 1024 * 1024,
            body_timeout_seconds: 3,
            max_connections: 2048,
            workers: Some(1),
            shutdown_timeout_seconds: 1,
            access_review_timeout_seconds: 3,
            log_format: LogFormat::Text,
            self_managed: crate::self_managed::Options::default(),
        }
    }
}

fn parse_optional_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|e| format!("{e}; expected host:port such as 0.0.0.0:8080, or `off`"))
}
