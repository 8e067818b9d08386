//! Command-line flags (each also read from an environment variable).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use website_certs::serving::CertificateFiles;

/// `website-api`: serves `extensions.example.com/v1alpha1` Websites behind the API server's aggregation layer.
#[derive(Parser, Clone, Debug)]
#[command(version, about)]
pub struct Settings {
    /// Address of the HTTPS listener the aggregator proxies to.
    #[arg(long, env = "WEBSITE_API_LISTEN_ADDR", default_value = "0.0.0.0:8443")]
    pub listen_addr: SocketAddr,

    /// Serving certificate (PEM), reloaded when it changes. The APIService's `caBundle` must validate it for
    /// `<service>.<namespace>.svc`.
    #[arg(long, env = "WEBSITE_API_TLS_CERT_FILE", default_value = "/etc/website-api/tls/tls.crt")]
    pub tls_cert_file: PathBuf,

    /// Private key of the serving certificate (PEM).
    #[arg(long, env = "WEBSITE_API_TLS_KEY_FILE", default_value = "/etc/website-api/tls/tls.key")]
    pub tls_key_file: PathBuf,

    /// How often the certificate files are checked for changes, in seconds.
    #[arg(long, env = "WEBSITE_API_TLS_RELOAD_INTERVAL_SECONDS", default_value_t = 10)]
    pub tls_reload_interval_seconds: u64,

    /// How often the front-proxy CA and the allowed names are read again from
    /// `kube-system/extension-apiserver-authentication`, in seconds.
    #[arg(long, env = "WEBSITE_API_AUTHENTICATION_REFRESH_SECONDS", default_value_t = 60)]
    pub authentication_refresh_seconds: u64,

    /// How long an answer of the API server's authorizer (a SubjectAccessReview) is reused, in seconds; 0: never.
    #[arg(long, env = "WEBSITE_API_AUTHORIZATION_CACHE_TTL_SECONDS", default_value_t = 10)]
    pub authorization_cache_ttl_seconds: u64,

    /// How long to wait for the API server's authorizer before answering 503, in seconds.
    #[arg(long, env = "WEBSITE_API_AUTHORIZATION_TIMEOUT_SECONDS", default_value_t = 5)]
    pub authorization_timeout_seconds: u64,

    /// Largest request body accepted, in bytes (the API server's own limit is 3 MiB).
    #[arg(long, env = "WEBSITE_API_MAX_BODY_BYTES", default_value_t = 3 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Address of the plain-HTTP listener for `/healthz`, `/livez` and `/readyz` (they are also served on the
    /// HTTPS listener).
    #[arg(long, env = "WEBSITE_API_HEALTH_ADDR")]
    pub health_addr: Option<SocketAddr>,

    /// Worker threads (default: one per CPU).
    #[arg(long, env = "WEBSITE_API_WORKERS")]
    pub workers: Option<usize>,

    /// Log format.
    #[arg(long, env = "WEBSITE_API_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
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

    /// [`Settings::authorization_cache_ttl_seconds`] as a duration.
    pub fn authorization_cache_ttl(&self) -> Duration {
        Duration::from_secs(self.authorization_cache_ttl_seconds)
    }
}
