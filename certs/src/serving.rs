//! TLS serving shared by the servers of the project: the serving certificate, loaded from PEM files at start-up and
//! reloaded when the files change, and the rustls server configuration that serves it.
//!
//! Each TLS handshake asks [`ReloadingCertResolver`] for the current certificate, so a reload takes effect for
//! new connections without a restart, and open connections keep the certificate they started with. When new
//! files do not load (a half-written pair, a key that does not match), the old certificate stays in use.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{info, warn};

/// Why a serving certificate could not be loaded or served.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    /// A certificate or key file could not be read.
    #[error("failed to read {what} file {path}: {source}")]
    ReadPem {
        /// Which file: "TLS certificate" or "TLS key".
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key file holds no usable PEM block.
    #[error("failed to load {what} file {path}: {reason}")]
    InvalidPem {
        /// Which file: "TLS certificate" or "TLS key".
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key does not belong to the certificate, or rustls refused it.
    #[error("failed to pair the TLS key {key} with the certificate {cert}: {source}")]
    KeyPair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// rustls could not build a server configuration.
    #[error("failed to configure TLS: {0}")]
    TlsConfig(#[source] rustls::Error),
}

use ServingError as Error;

/// Result of loading and serving certificates.
pub type Result<T, E = ServingError> = std::result::Result<T, E>;

/// The crypto provider used for serving: ring, installed explicitly so that no other provider a dependency
/// might enable is picked by accident.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Paths of the PEM files holding the serving certificate chain and its private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// PKCS#8, PKCS#1 or SEC1 private key.
    pub key: PathBuf,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::ReadPem { what, path: path.to_owned(), source })
}

/// Loads and pairs a certificate chain and its key from PEM bytes.
///
/// # Errors
/// When either holds no PEM block of the right kind, or the key does not match the certificate.
pub fn certified_key(files: &CertificateFiles, cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey> {
    let invalid =
        |what: &'static str, path: &Path, reason: String| Error::InvalidPem { what, path: path.to_owned(), reason };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| invalid("TLS certificate", &files.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(invalid("TLS certificate", &files.cert, "no PEM CERTIFICATE block found".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        invalid(
            "TLS key",
            &files.key,
            format!("no PEM private key found ({e}); PKCS#8, PKCS#1 and SEC1 keys are accepted"),
        )
    })?;
    CertifiedKey::from_der(chain, key, &crypto_provider()).map_err(|source| Error::KeyPair {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    })
}

/// Hands out the current serving certificate and swaps in a new one when its files change.
pub struct ReloadingCertResolver {
    files: CertificateFiles,
    current: RwLock<Arc<CertifiedKey>>,
    /// The file contents last looked at, loaded or not, so a broken pair is reported once, not every poll.
    last_seen: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for ReloadingCertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCertResolver").field("files", &self.files).finish_non_exhaustive()
    }
}

impl ReloadingCertResolver {
    /// Loads the certificate files.
    ///
    /// # Errors
    /// When a file cannot be read or does not hold a matching certificate and key.
    pub fn load(files: CertificateFiles) -> Result<Self> {
        let cert_pem = read("TLS certificate", &files.cert)?;
        let key_pem = read("TLS key", &files.key)?;
        let key = certified_key(&files, &cert_pem, &key_pem)?;
        Ok(Self { files, current: RwLock::new(Arc::new(key)), last_seen: Mutex::new((cert_pem, key_pem)) })
    }

    /// Re-reads the files and switches to them if they changed and load. Returns whether it switched.
    ///
    /// # Errors
    /// When the files changed but do not load; the previous certificate stays in use.
    pub fn reload_if_changed(&self) -> Result<bool> {
        let cert_pem = read("TLS certificate", &self.files.cert)?;
        let key_pem = read("TLS key", &self.files.key)?;
        {
            let mut last = self.last_seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.0 == cert_pem && last.1 == key_pem {
                return Ok(false);
            }
            *last = (cert_pem.clone(), key_pem.clone());
        }
        let key = certified_key(&self.files, &cert_pem, &key_pem)?;
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(key);
        Ok(true)
    }

    /// The certificate chain currently served, leaf first.
    pub fn current_chain(&self) -> Vec<CertificateDer<'static>> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).cert.clone()
    }

    /// Polls the files every `interval` for as long as the returned future runs, logging each reload and each
    /// failed one.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match self.reload_if_changed() {
                Ok(true) => info!(cert = %self.files.cert.display(), "reloaded the TLS certificate"),
                Ok(false) => {}
                Err(error) => warn!(%error, "keeping the current TLS certificate: the changed files do not load"),
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
    }
}

/// A TLS 1.2 and 1.3 server configuration that serves whatever `resolver` holds.
///
/// # Errors
/// When rustls refuses the protocol versions (it does not with the ring provider).
pub fn server_config(resolver: Arc<ReloadingCertResolver>) -> Result<ServerConfig> {
    let config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .map_err(Error::TlsConfig)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    Ok(config)
}

/// [`server_config`] that also asks the client for a certificate and checks one it presents with `verifier`: the
/// front-proxy client certificate of an aggregated API server. Whether a client without a certificate is let in is
/// the verifier's choice (its `client_auth_mandatory`).
///
/// # Errors
/// When rustls refuses the protocol versions (it does not with the ring provider).
pub fn server_config_with_client_auth(
    resolver: Arc<ReloadingCertResolver>,
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
) -> Result<ServerConfig> {
    let config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .map_err(Error::TlsConfig)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    Ok(config)
}
