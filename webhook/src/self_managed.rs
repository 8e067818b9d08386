//! Self-managed certificates: the webhook keeps its own CA and serving certificate in a Secret, writes them to
//! the files the TLS reloader watches, and puts the CA into the `caBundle` of its two webhook configurations.
//!
//! The decision is a pure function, [`decide`], of what the Secret holds and the clock; [`execute`] carries it
//! out (generating keys) and [`CertificateKeeper`] is the thin shell that reads and writes the API server.
//!
//! Rotation keeps every request working:
//! - the serving certificate is re-issued [`Policy::serving_renew_before`] its expiry, by the same CA, so the
//!   `caBundle` does not change;
//! - the CA is replaced [`Policy::ca_renew_before`] its expiry in two steps. First a new CA is made and added to
//!   the bundle next to the old one, while the serving certificate (issued by the old CA) stays in use. One check
//!   interval later the API server has long seen both CAs, and the serving certificate is re-issued by the new
//!   CA. The old CA leaves the bundle when it expires, and with it every certificate it issued.
//!
//! Several replicas share the Secret: writes carry the `resourceVersion` they read (a conflict means another
//! replica changed it first, so the keeper reads it again and decides anew), and a create that finds the Secret
//! already there reads it instead.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use time::OffsetDateTime;
use tracing::{info, warn};
use website_certs::{CA_CERT_FILE, CA_KEY_FILE, CertificateAuthority, SubjectName, TLS_CERT_FILE, TLS_KEY_FILE};
use x509_parser::pem::Pem;

use crate::tls::{CertificateFiles, certified_key};

/// Secret key holding every CA the webhook configurations must trust, current first, as concatenated PEM.
pub const CA_BUNDLE_KEY: &str = "ca-bundle.crt";

/// Common name of generated CAs.
pub const CA_COMMON_NAME: &str = "website-webhook-ca";

/// Longest wait before retrying a failed check.
const RETRY_INTERVAL: Duration = Duration::from_secs(10);

/// How many times one check re-reads the Secret after losing a write race to another replica.
const WRITE_ATTEMPTS: usize = 5;

/// Why self-managed certificates could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The flags do not describe a usable policy.
    #[error("failed to configure self-managed certificates: {0}")]
    Config(String),
    /// A certificate could not be generated or issued.
    #[error("failed to {action}: {source}")]
    Certificate {
        /// What was being done.
        action: &'static str,
        /// Why it failed.
        #[source]
        source: website_certs::Error,
    },
    /// A call to the API server failed.
    #[error("failed to {action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The API server's or the client's error.
        #[source]
        source: kube::Error,
    },
    /// Another replica kept changing the Secret.
    #[error("failed to update Secret {0}: it changed under us {WRITE_ATTEMPTS} times in a row")]
    Contended(String),
    /// A certificate file could not be written.
    #[error("failed to write {path}: {source}")]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Result of self-managed certificate operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Flags of the self-managed certificate mode.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Options {
    /// Keep the CA and serving certificate in a Secret, write them to --tls-cert-file/--tls-key-file, and inject the
    /// CA into the webhook configurations' caBundle; renew both before they expire. Needs access to the API server.
    #[arg(long = "self-managed-certs", env = "WEBHOOK_SELF_MANAGED_CERTS")]
    pub enabled: bool,

    /// Name of the Secret holding the certificates.
    #[arg(long, env = "WEBHOOK_CERT_SECRET_NAME", required_if_eq("enabled", "true"))]
    pub cert_secret_name: Option<String>,

    /// Namespace of that Secret and of the webhook's Service.
    #[arg(long, env = "WEBHOOK_CERT_SECRET_NAMESPACE", required_if_eq("enabled", "true"))]
    pub cert_secret_namespace: Option<String>,

    /// Name of the webhook's Service; its in-cluster DNS names go into the serving certificate.
    #[arg(long, env = "WEBHOOK_SERVICE_NAME", required_if_eq("enabled", "true"))]
    pub service_name: Option<String>,

    /// Further DNS names or IP addresses for the serving certificate (repeatable, or comma-separated).
    #[arg(long = "extra-san", env = "WEBHOOK_EXTRA_SANS", value_delimiter = ',')]
    pub extra_sans: Vec<String>,

    /// ValidatingWebhookConfiguration whose caBundle this webhook keeps.
    #[arg(long, env = "WEBHOOK_VALIDATING_CONFIGURATION")]
    pub validating_webhook_configuration: Option<String>,

    /// MutatingWebhookConfiguration whose caBundle this webhook keeps.
    #[arg(long, env = "WEBHOOK_MUTATING_CONFIGURATION")]
    pub mutating_webhook_configuration: Option<String>,

    /// Days a generated CA is valid.
    #[arg(long, env = "WEBHOOK_CA_VALIDITY_DAYS", default_value_t = 3650)]
    pub ca_validity_days: u64,

    /// Days before the CA expires that a new one is made.
    #[arg(long, env = "WEBHOOK_CA_RENEW_BEFORE_DAYS", default_value_t = 90)]
    pub ca_renew_before_days: u64,

    /// Days a serving certificate is valid.
    #[arg(long, env = "WEBHOOK_SERVING_VALIDITY_DAYS", default_value_t = 365)]
    pub serving_validity_days: u64,

    /// Days before the serving certificate expires that a new one is issued.
    #[arg(long, env = "WEBHOOK_SERVING_RENEW_BEFORE_DAYS", default_value_t = 30)]
    pub serving_renew_before_days: u64,

    /// Seconds between two checks of the Secret and the webhook configurations.
    #[arg(long, env = "WEBHOOK_CERT_CHECK_INTERVAL_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub cert_check_interval_seconds: u64,
}

/// When certificates are made and renewed, and for which names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Validity of a new CA.
    pub ca_validity: Duration,
    /// How long before the CA's expiry it is replaced.
    pub ca_renew_before: Duration,
    /// Validity of a new serving certificate.
    pub serving_validity: Duration,
    /// How long before the serving certificate's expiry it is replaced.
    pub serving_renew_before: Duration,
    /// Subject alternative names of the serving certificate.
    pub names: Vec<SubjectName>,
}

impl Policy {
    /// Checks that renewal happens within the validity, so a fresh certificate is not renewed at once.
    ///
    /// # Errors
    /// [`Error::Config`] when a renew-before period is not shorter than its validity, or there are no names.
    pub fn new(
        ca_validity: Duration,
        ca_renew_before: Duration,
        serving_validity: Duration,
        serving_renew_before: Duration,
        names: Vec<SubjectName>,
    ) -> Result<Self> {
        if ca_renew_before >= ca_validity {
            return Err(Error::Config(format!(
                "the CA's renew-before ({ca_renew_before:?}) must be shorter than its validity ({ca_validity:?})"
            )));
        }
        if serving_renew_before >= serving_validity {
            return Err(Error::Config(format!(
                "the serving certificate's renew-before ({serving_renew_before:?}) must be shorter than its validity ({serving_validity:?})"
            )));
        }
        if names.is_empty() {
            return Err(Error::Config("the serving certificate needs at least one name".into()));
        }
        Ok(Self { ca_validity, ca_renew_before, serving_validity, serving_renew_before, names })
    }
}

/// The certificates as kept in the Secret, all PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Material {
    /// The current CA certificate.
    pub ca_cert: String,
    /// The current CA key.
    pub ca_key: String,
    /// The serving certificate.
    pub tls_cert: String,
    /// The serving key.
    pub tls_key: String,
    /// Every CA to trust, current first, one PEM block each.
    pub bundle: Vec<String>,
}

impl Material {
    /// Reads the Secret's data; `None` when a key is missing or not UTF-8 (an empty Secret, e.g. the chart's).
    pub fn from_secret_data(data: &BTreeMap<String, ByteString>) -> Option<Self> {
        let text = |key: &str| data.get(key).and_then(|v| String::from_utf8(v.0.clone()).ok());
        let ca_cert = text(CA_CERT_FILE)?;
        let bundle = match text(CA_BUNDLE_KEY) {
            Some(bundle) => split_pem(&bundle),
            None => vec![ca_cert.clone()],
        };
        Some(Self {
            ca_key: text(CA_KEY_FILE)?,
            tls_cert: text(TLS_CERT_FILE)?,
            tls_key: text(TLS_KEY_FILE)?,
            ca_cert,
            bundle,
        })
    }

    /// The Secret's data.
    pub fn to_secret_data(&self) -> BTreeMap<String, ByteString> {
        [
            (CA_CERT_FILE, self.ca_cert.clone()),
            (CA_KEY_FILE, self.ca_key.clone()),
            (TLS_CERT_FILE, self.tls_cert.clone()),
            (TLS_KEY_FILE, self.tls_key.clone()),
            (CA_BUNDLE_KEY, self.bundle_pem()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
        .collect()
    }

    /// The bundle as one PEM text: what goes into `caBundle`.
    pub fn bundle_pem(&self) -> String {
        self.bundle.iter().map(|pem| format!("{}\n", pem.trim_end())).collect()
    }
}

/// Splits concatenated PEM into its blocks, each re-encoded alone.
fn split_pem(text: &str) -> Vec<String> {
    Pem::iter_from_buffer(text.as_bytes())
        .filter_map(std::result::Result::ok)
        .filter(|pem| pem.label == "CERTIFICATE")
        .map(|pem| certificate_pem(&pem.contents))
        .collect()
}

fn certificate_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> =
        b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64 is ASCII")).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

/// What the CA needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaStep {
    /// Keep it.
    Keep,
    /// There is none (or it does not load): make one, trusted alone.
    Generate,
    /// It expires soon: make a new one and trust both.
    Rotate,
}

/// What the serving certificate needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServingStep {
    /// Keep it.
    Keep,
    /// Issue a new one from the current CA, for the given reason.
    Issue(String),
}

/// The outcome of [`decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The CA's step.
    pub ca: CaStep,
    /// The serving certificate's step.
    pub serving: ServingStep,
    /// The CAs to trust afterwards that are already known (the new CA of a Generate or Rotate comes first).
    pub bundle: Vec<String>,
}

impl Plan {
    /// Whether nothing changes.
    pub fn is_noop(&self, stored: &Material) -> bool {
        self.ca == CaStep::Keep && self.serving == ServingStep::Keep && self.bundle == stored.bundle
    }
}

fn not_after_of(pem: &str) -> Option<OffsetDateTime> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some(cert.validity().not_after.to_datetime())
}

/// Decides what to do, given what the Secret holds (`None`: nothing usable) and the time.
pub fn decide(stored: Option<&Material>, now: OffsetDateTime, policy: &Policy) -> Plan {
    let generate = || Plan { ca: CaStep::Generate, serving: ServingStep::Issue("new CA".into()), bundle: Vec::new() };
    let Some(stored) = stored else { return generate() };
    let Ok(ca) = CertificateAuthority::from_pem(&stored.ca_cert, &stored.ca_key) else { return generate() };
    if ca.not_after() <= now {
        return generate();
    }
    // Trust the current CA and every other that has not expired yet, each once.
    let mut bundle = vec![ca.cert_pem().to_owned()];
    for pem in &stored.bundle {
        let live = not_after_of(pem).is_some_and(|end| end > now);
        if live && !bundle.contains(pem) {
            bundle.push(pem.clone());
        }
    }
    let serving = serving_problem(stored, &ca, now, policy);
    if ca.not_after() <= now + policy.ca_renew_before {
        // Phase one of a CA rotation: a serving certificate that still works stays, so that the API server
        // trusts the new CA before any certificate it issued is served.
        let serving = match serving {
            Some(ServingProblem::Unusable(reason)) => ServingStep::Issue(reason),
            Some(ServingProblem::Stale(_)) | None => ServingStep::Keep,
        };
        return Plan { ca: CaStep::Rotate, serving, bundle };
    }
    let serving = match serving {
        Some(ServingProblem::Unusable(reason) | ServingProblem::Stale(reason)) => ServingStep::Issue(reason),
        None => ServingStep::Keep,
    };
    Plan { ca: CaStep::Keep, serving, bundle }
}

enum ServingProblem {
    /// It cannot be served at all.
    Unusable(String),
    /// It works, but should be replaced.
    Stale(String),
}

fn serving_problem(
    stored: &Material,
    ca: &CertificateAuthority,
    now: OffsetDateTime,
    policy: &Policy,
) -> Option<ServingProblem> {
    let files = CertificateFiles { cert: TLS_CERT_FILE.into(), key: TLS_KEY_FILE.into() };
    if let Err(e) = certified_key(&files, stored.tls_cert.as_bytes(), stored.tls_key.as_bytes()) {
        return Some(ServingProblem::Unusable(format!("the serving certificate does not load: {e}")));
    }
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(stored.tls_cert.as_bytes()) else {
        return Some(ServingProblem::Unusable("the serving certificate is not PEM".into()));
    };
    let Ok(cert) = pem.parse_x509() else {
        return Some(ServingProblem::Unusable("the serving certificate does not parse".into()));
    };
    let not_after = cert.validity().not_after.to_datetime();
    if not_after <= now {
        return Some(ServingProblem::Unusable("the serving certificate has expired".into()));
    }
    if !issued_by_any(&cert, &stored.bundle, now) {
        return Some(ServingProblem::Unusable("the serving certificate was not issued by a trusted CA".into()));
    }
    if not_after <= now + policy.serving_renew_before {
        return Some(ServingProblem::Stale(format!("the serving certificate expires at {not_after}")));
    }
    if !issued_by(&cert, ca.cert_pem()) {
        return Some(ServingProblem::Stale("the serving certificate was issued by the previous CA".into()));
    }
    let names = san_names(&cert);
    if !policy.names.iter().all(|n| names.contains(n)) || names.len() != policy.names.len() {
        return Some(ServingProblem::Stale("the serving certificate's names differ from the wanted ones".into()));
    }
    None
}

fn issued_by(cert: &x509_parser::certificate::X509Certificate<'_>, ca_pem: &str) -> bool {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()) else { return false };
    let Ok(ca) = pem.parse_x509() else { return false };
    cert.issuer().as_raw() == ca.subject().as_raw() && cert.verify_signature(Some(ca.public_key())).is_ok()
}

fn issued_by_any(cert: &x509_parser::certificate::X509Certificate<'_>, bundle: &[String], now: OffsetDateTime) -> bool {
    bundle.iter().any(|ca| not_after_of(ca).is_some_and(|end| end > now) && issued_by(cert, ca))
}

fn san_names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<SubjectName> {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(san)) = cert.subject_alternative_name() else { return Vec::new() };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(SubjectName::Dns((*dns).to_owned())),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes).ok().map(|b| SubjectName::Ip(b.into())),
                16 => <[u8; 16]>::try_from(*bytes).ok().map(|b| SubjectName::Ip(b.into())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Carries out `plan`: generates what it asks for. Returns the new material.
///
/// # Errors
/// When a certificate cannot be generated or the stored CA no longer loads.
pub fn execute(stored: Option<&Material>, plan: &Plan, policy: &Policy) -> Result<Material> {
    let generate = |action| {
        CertificateAuthority::generate(CA_COMMON_NAME, policy.ca_validity)
            .map_err(|source| Error::Certificate { action, source })
    };
    let (ca, mut bundle) = match (&plan.ca, stored) {
        (CaStep::Keep, Some(stored)) => (
            CertificateAuthority::from_pem(&stored.ca_cert, &stored.ca_key)
                .map_err(|source| Error::Certificate { action: "load the CA", source })?,
            Vec::new(),
        ),
        (CaStep::Rotate, Some(_)) => (generate("generate the next CA")?, Vec::new()),
        (CaStep::Generate, _) | (_, None) => (generate("generate a CA")?, Vec::new()),
    };
    bundle.push(ca.cert_pem().to_owned());
    for pem in &plan.bundle {
        if !bundle.contains(pem) {
            bundle.push(pem.clone());
        }
    }
    let keep_serving = matches!(plan.serving, ServingStep::Keep) && plan.ca != CaStep::Generate;
    let (tls_cert, tls_key) = match stored {
        Some(stored) if keep_serving => (stored.tls_cert.clone(), stored.tls_key.clone()),
        _ => {
            // During a rotation's first phase the serving certificate is issued by the old CA when it must be
            // replaced anyway; otherwise by the current one.
            let issuer = match (&plan.ca, stored) {
                (CaStep::Rotate, Some(stored)) => CertificateAuthority::from_pem(&stored.ca_cert, &stored.ca_key)
                    .map_err(|source| Error::Certificate { action: "load the CA", source })?,
                _ => CertificateAuthority::from_pem(ca.cert_pem(), ca.key_pem())
                    .map_err(|source| Error::Certificate { action: "load the CA", source })?,
            };
            let serving = issuer
                .issue_serving(&policy.names, policy.serving_validity)
                .map_err(|source| Error::Certificate { action: "issue the serving certificate", source })?;
            (serving.cert_pem().to_owned(), serving.key_pem().to_owned())
        }
    };
    Ok(Material { ca_cert: ca.cert_pem().to_owned(), ca_key: ca.key_pem().to_owned(), tls_cert, tls_key, bundle })
}

/// Keeps the Secret, the certificate files and the caBundles in line: the shell around [`decide`] and [`execute`].
#[derive(Clone)]
pub struct CertificateKeeper {
    secrets: Api<Secret>,
    validating: Api<ValidatingWebhookConfiguration>,
    mutating: Api<MutatingWebhookConfiguration>,
    secret_name: String,
    namespace: String,
    service_name: String,
    validating_name: Option<String>,
    mutating_name: Option<String>,
    files: CertificateFiles,
    policy: Policy,
    interval: Duration,
}

impl std::fmt::Debug for CertificateKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateKeeper")
            .field("secret", &format!("{}/{}", self.namespace, self.secret_name))
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl CertificateKeeper {
    /// A keeper for the options, writing to `files`.
    ///
    /// # Errors
    /// [`Error::Config`] when a required option is missing or the names are invalid.
    pub fn new(client: Client, options: &Options, files: CertificateFiles) -> Result<Self> {
        let missing = |flag: &str| Error::Config(format!("--{flag} is required with --self-managed-certs"));
        let secret_name = options.cert_secret_name.clone().ok_or_else(|| missing("cert-secret-name"))?;
        let namespace = options.cert_secret_namespace.clone().ok_or_else(|| missing("cert-secret-namespace"))?;
        let service_name = options.service_name.clone().ok_or_else(|| missing("service-name"))?;
        let mut names: Vec<SubjectName> = website_certs::service_dns_names(&service_name, &namespace)
            .map_err(|e| Error::Config(e.to_string()))?
            .into_iter()
            .map(SubjectName::Dns)
            .collect();
        for extra in &options.extra_sans {
            let name: SubjectName =
                extra.parse().map_err(|e: website_certs::Error| Error::Config(format!("--extra-san: {e}")))?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let day = |n: u64| Duration::from_secs(n * 24 * 60 * 60);
        let policy = Policy::new(
            day(options.ca_validity_days),
            day(options.ca_renew_before_days),
            day(options.serving_validity_days),
            day(options.serving_renew_before_days),
            names,
        )?;
        Ok(Self {
            secrets: Api::namespaced(client.clone(), &namespace),
            validating: Api::all(client.clone()),
            mutating: Api::all(client),
            secret_name,
            namespace,
            service_name,
            validating_name: options.validating_webhook_configuration.clone(),
            mutating_name: options.mutating_webhook_configuration.clone(),
            files,
            policy,
            interval: Duration::from_secs(options.cert_check_interval_seconds),
        })
    }

    /// One check: brings the Secret up to date, then the files the server reads, then the caBundles.
    ///
    /// # Errors
    /// When the API server refuses a read or write, or a file cannot be written.
    pub async fn check(&self) -> Result<Material> {
        let material = self.prepare().await?;
        self.inject_ca_bundle(&material).await?;
        Ok(material)
    }

    /// The Secret and the files, without the caBundles: what the server needs to start.
    async fn prepare(&self) -> Result<Material> {
        let material = self.ensure_secret().await?;
        self.write_files(&material)?;
        Ok(material)
    }

    /// Retries until the certificate files are written, with backoff (the webhook cannot serve without them),
    /// then tries once to inject the caBundles; [`CertificateKeeper::run`] retries that if it failed.
    ///
    /// Returns whether everything succeeded.
    pub async fn prepare_until_ready(&self) -> bool {
        let mut delay = Duration::from_secs(1);
        let material = loop {
            match self.prepare().await {
                Ok(material) => break material,
                Err(error) => {
                    warn!(%error, retry_in_seconds = delay.as_secs(), "failed to prepare the serving certificate");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_INTERVAL);
                }
            }
        };
        match self.inject_ca_bundle(&material).await {
            Ok(()) => true,
            Err(error) => {
                warn!(%error, "failed to inject the CA bundle; retrying");
                false
            }
        }
    }

    /// Checks every interval for as long as the returned future runs, sooner after a failed check. Call it after
    /// [`CertificateKeeper::prepare_until_ready`], passing what that returned.
    pub async fn run(self, mut last_ok: bool) {
        loop {
            tokio::time::sleep(if last_ok { self.interval } else { self.interval.min(RETRY_INTERVAL) }).await;
            last_ok = match self.check().await {
                Ok(_) => true,
                Err(error) => {
                    warn!(%error, "failed to check the self-managed certificates; retrying");
                    false
                }
            };
        }
    }

    async fn ensure_secret(&self) -> Result<Material> {
        let name = &self.secret_name;
        for _ in 0..WRITE_ATTEMPTS {
            let existing = self
                .secrets
                .get_opt(name)
                .await
                .map_err(|source| Error::Kube { action: format!("read Secret {}/{name}", self.namespace), source })?;
            let stored = existing.as_ref().and_then(|s| s.data.as_ref()).and_then(Material::from_secret_data);
            let plan = decide(stored.as_ref(), OffsetDateTime::now_utc(), &self.policy);
            if let Some(stored) = stored.as_ref().filter(|stored| plan.is_noop(stored)) {
                return Ok(stored.clone());
            }
            let material = execute(stored.as_ref(), &plan, &self.policy)?;
            let result = match existing {
                Some(mut secret) => {
                    // `replace` sends the resourceVersion we read: a concurrent writer makes it fail with 409.
                    secret.data = Some(material.to_secret_data());
                    secret.string_data = None;
                    self.secrets.replace(name, &PostParams::default(), &secret).await.map(drop)
                }
                None => {
                    let secret = Secret {
                        metadata: ObjectMeta { name: Some(name.clone()), ..ObjectMeta::default() },
                        data: Some(material.to_secret_data()),
                        type_: Some("Opaque".into()),
                        ..Secret::default()
                    };
                    self.secrets.create(&PostParams::default(), &secret).await.map(drop)
                }
            };
            match result {
                Ok(()) => {
                    info!(secret = %name, ca = ?plan.ca, serving = ?plan.serving, trusted_cas = material.bundle.len(),
                        "updated the self-managed certificates");
                    return Ok(material);
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    info!(secret = %name, "another replica updated the certificates first; reading them again");
                }
                Err(source) => {
                    return Err(Error::Kube { action: format!("write Secret {}/{name}", self.namespace), source });
                }
            }
        }
        Err(Error::Contended(format!("{}/{name}", self.namespace)))
    }

    /// Whether this webhook serves behind `config`: its own Service, or a URL (development override).
    fn owns(&self, config: &WebhookClientConfig) -> bool {
        match &config.service {
            Some(service) => service.name == self.service_name && service.namespace == self.namespace,
            None => config.url.is_some(),
        }
    }

    async fn inject_ca_bundle(&self, material: &Material) -> Result<()> {
        let bundle = material.bundle_pem().into_bytes();
        if let Some(name) = &self.validating_name {
            self.inject_into(&self.validating, name, &bundle, |c: ValidatingWebhookConfiguration| {
                c.webhooks.unwrap_or_default().into_iter().map(|w| (w.name, w.client_config)).collect()
            })
            .await?;
        }
        if let Some(name) = &self.mutating_name {
            self.inject_into(&self.mutating, name, &bundle, |c: MutatingWebhookConfiguration| {
                c.webhooks.unwrap_or_default().into_iter().map(|w| (w.name, w.client_config)).collect()
            })
            .await?;
        }
        Ok(())
    }

    /// Puts `bundle` into the `caBundle` of the webhooks of configuration `name` that point at this webhook.
    async fn inject_into<K>(
        &self,
        api: &Api<K>,
        name: &str,
        bundle: &[u8],
        webhooks: impl FnOnce(K) -> Vec<(String, WebhookClientConfig)>,
    ) -> Result<()>
    where
        K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    {
        let kind = K::kind(&());
        let config =
            api.get(name).await.map_err(|source| Error::Kube { action: format!("read {kind} {name}"), source })?;
        if let Some(patch) = self.bundle_patch(webhooks(config), bundle) {
            api.patch(name, &PatchParams::default(), &patch)
                .await
                .map_err(|source| Error::Kube { action: format!("patch the caBundle of {kind} {name}"), source })?;
            info!(configuration = %name, %kind, "injected the CA bundle");
        }
        Ok(())
    }

    fn bundle_patch(&self, webhooks: Vec<(String, WebhookClientConfig)>, bundle: &[u8]) -> Option<Patch<()>> {
        bundle_patch(webhooks, bundle, |c| self.owns(c))
    }

    fn write_files(&self, material: &Material) -> Result<()> {
        // The key first: a reload that sees a new key with the old certificate fails and keeps the old pair.
        write_if_changed(&self.files.key, material.tls_key.as_bytes(), 0o600)?;
        write_if_changed(&self.files.cert, material.tls_cert.as_bytes(), 0o644)
    }
}

/// See [`CertificateKeeper::bundle_patch`].
fn bundle_patch(
    webhooks: Vec<(String, WebhookClientConfig)>,
    bundle: &[u8],
    owns: impl Fn(&WebhookClientConfig) -> bool,
) -> Option<Patch<()>> {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bundle);
    let mut ops = Vec::new();
    for (index, (name, config)) in webhooks.iter().enumerate() {
        if !owns(config) || config.ca_bundle.as_ref().is_some_and(|b| b.0 == bundle) {
            continue;
        }
        ops.push(serde_json::json!({"op": "test", "path": format!("/webhooks/{index}/name"), "value": name}));
        ops.push(serde_json::json!({"op": "add", "path": format!("/webhooks/{index}/clientConfig/caBundle"), "value": encoded}));
    }
    if ops.is_empty() {
        return None;
    }
    let patch: json_patch::Patch =
        serde_json::from_value(serde_json::Value::Array(ops)).expect("the operations are well-formed");
    Some(Patch::Json(patch))
}

fn write_if_changed(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if std::fs::read(path).is_ok_and(|current| current == contents) {
        return Ok(());
    }
    let error = |source| Error::Write { path: path.to_owned(), source };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(error)?;
    // Written next to the target and renamed over it, so the reloader never reads half a file.
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("cert")));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(error)?;
    file.write_all(contents).and_then(|()| file.sync_all()).map_err(error)?;
    std::fs::rename(&tmp, path).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    fn policy() -> Policy {
        Policy::new(
            DAY * 3650,
            DAY * 90,
            DAY * 365,
            DAY * 30,
            vec![SubjectName::Dns("webhook.system.svc".into()), SubjectName::Ip([127, 0, 0, 1].into())],
        )
        .expect("a valid policy")
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn fresh() -> Material {
        let plan = decide(None, now(), &policy());
        execute(None, &plan, &policy()).expect("generates")
    }

    fn ca_of(material: &Material) -> CertificateAuthority {
        CertificateAuthority::from_pem(&material.ca_cert, &material.ca_key).expect("loads")
    }

    fn parse(pem: &str) -> x509_parser::certificate::X509Certificate<'static> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
        let der: &'static [u8] = Box::leak(pem.contents.into_boxed_slice());
        x509_parser::parse_x509_certificate(der).expect("a certificate").1
    }

    #[test]
    fn an_empty_secret_gets_a_new_ca_trusted_alone_and_a_certificate_for_every_name() {
        let material = fresh();
        assert_eq!(material.bundle, vec![material.ca_cert.clone()]);
        let cert = parse(&material.tls_cert);
        assert!(issued_by(&cert, &material.ca_cert));
        assert_eq!(san_names(&cert), policy().names);
        assert_eq!(Material::from_secret_data(&BTreeMap::new()), None);
    }

    #[test]
    fn fresh_material_is_kept_as_it_is() {
        let material = fresh();
        let plan = decide(Some(&material), now(), &policy());
        assert!(plan.is_noop(&material), "{plan:?}");
    }

    #[test]
    fn material_survives_the_round_trip_through_the_secret() {
        let material = fresh();
        assert_eq!(Material::from_secret_data(&material.to_secret_data()), Some(material));
    }

    #[test]
    fn a_serving_certificate_near_expiry_is_reissued_by_the_same_ca() {
        let material = fresh();
        let later = ca_of(&material).not_before() + DAY * 340;
        let plan = decide(Some(&material), later, &policy());
        assert_eq!(plan.ca, CaStep::Keep);
        assert!(matches!(&plan.serving, ServingStep::Issue(reason) if reason.contains("expires")), "{plan:?}");
        let next = execute(Some(&material), &plan, &policy()).expect("issues");
        assert_eq!(next.ca_cert, material.ca_cert);
        assert_eq!(next.bundle, material.bundle, "the caBundle must not change");
        assert_ne!(next.tls_cert, material.tls_cert);
    }

    #[test]
    fn an_expiring_ca_is_rotated_in_two_phases_trusting_both_cas_in_between() {
        let material = fresh();
        let old_ca = ca_of(&material);
        // Ten days on, with a renewal window that makes the CA due; the serving certificate is still fresh, so
        // phase one keeps it.
        let plan = decide(Some(&material), now() + DAY * 10, &Policy { ca_renew_before: DAY * 3649, ..policy() });
        assert_eq!(plan.ca, CaStep::Rotate);
        assert_eq!(plan.serving, ServingStep::Keep, "phase one keeps serving the old CA's certificate");
        let rotating = execute(Some(&material), &plan, &policy()).expect("rotates");
        assert_ne!(rotating.ca_cert, material.ca_cert);
        assert_eq!(rotating.bundle, vec![rotating.ca_cert.clone(), old_ca.cert_pem().to_owned()]);
        assert_eq!(rotating.tls_cert, material.tls_cert);
        // Phase two, at the next check: the certificate is re-issued by the new CA, and both stay trusted.
        let plan = decide(Some(&rotating), now(), &policy());
        assert_eq!(plan.ca, CaStep::Keep);
        assert!(matches!(&plan.serving, ServingStep::Issue(r) if r.contains("previous CA")), "{plan:?}");
        let rotated = execute(Some(&rotating), &plan, &policy()).expect("issues");
        assert!(issued_by(&parse(&rotated.tls_cert), &rotated.ca_cert));
        assert_eq!(rotated.bundle, rotating.bundle);
        assert!(decide(Some(&rotated), now(), &policy()).is_noop(&rotated));
    }

    #[test]
    fn an_expired_ca_leaves_the_bundle() {
        let material = fresh();
        let short = CertificateAuthority::generate("old", DAY).expect("generates");
        let with_old =
            Material { bundle: vec![material.ca_cert.clone(), short.cert_pem().to_owned()], ..material.clone() };
        assert!(decide(Some(&with_old), now(), &policy()).is_noop(&with_old), "the old CA is still valid");
        let plan = decide(Some(&with_old), now() + DAY * 2, &policy());
        assert_eq!(plan.bundle, vec![material.ca_cert.clone()]);
        assert_eq!((plan.ca, plan.serving), (CaStep::Keep, ServingStep::Keep));
    }

    #[test]
    fn unusable_contents_are_replaced() {
        let material = fresh();
        let other = fresh();
        let policy = policy();
        let cases: Vec<(&str, Material, &str)> = vec![
            ("garbage CA", Material { ca_cert: "junk".into(), ..material.clone() }, "new CA"),
            ("foreign key", Material { tls_key: other.tls_key.clone(), ..material.clone() }, "does not load"),
            (
                "foreign certificate",
                Material { tls_cert: other.tls_cert.clone(), tls_key: other.tls_key.clone(), ..material.clone() },
                "not issued by a trusted CA",
            ),
        ];
        for (case, stored, reason) in cases {
            let plan = decide(Some(&stored), now(), &policy);
            assert!(matches!(&plan.serving, ServingStep::Issue(r) if r.contains(reason)), "{case}: {plan:?}");
            let next = execute(Some(&stored), &plan, &policy).expect("replaces");
            assert!(issued_by(&parse(&next.tls_cert), &next.ca_cert), "{case}");
            assert!(decide(Some(&next), now(), &policy).is_noop(&next), "{case}: not settled");
        }
    }

    #[test]
    fn a_change_of_names_reissues_the_certificate() {
        let material = fresh();
        let policy = Policy { names: vec![SubjectName::Dns("webhook.other.svc".into())], ..policy() };
        let plan = decide(Some(&material), now(), &policy);
        assert!(matches!(&plan.serving, ServingStep::Issue(r) if r.contains("names")), "{plan:?}");
    }

    #[test]
    fn renewal_periods_must_be_shorter_than_validity() {
        let err = Policy::new(DAY, DAY, DAY * 2, DAY, vec![SubjectName::Dns("a".into())]).expect_err("refused");
        assert!(err.to_string().contains("CA's renew-before"), "{err}");
        let err = Policy::new(DAY * 2, DAY, DAY, DAY * 2, vec![SubjectName::Dns("a".into())]).expect_err("refused");
        assert!(err.to_string().contains("serving certificate's renew-before"), "{err}");
    }

    #[test]
    fn the_bundle_patch_touches_only_owned_webhooks_whose_bundle_differs() {
        let config = |url: Option<&str>, bundle: &[u8]| WebhookClientConfig {
            url: url.map(str::to_owned),
            ca_bundle: Some(ByteString(bundle.to_vec())),
            service: None,
        };
        let webhooks = vec![
            ("a".to_owned(), config(Some("https://127.0.0.1/validate"), b"old")),
            ("b".to_owned(), config(Some("https://127.0.0.1/mutate"), b"new")),
            ("c".to_owned(), config(None, b"old")),
        ];
        let Some(Patch::Json(patch)) = bundle_patch(webhooks, b"new", |c| c.url.is_some()) else {
            panic!("a JSON patch is needed");
        };
        let ops = serde_json::to_value(&patch).expect("serializes");
        assert_eq!(
            ops,
            serde_json::json!([
                {"op": "test", "path": "/webhooks/0/name", "value": "a"},
                {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "bmV3"},
            ])
        );
        assert!(bundle_patch(vec![("b".into(), config(Some("u"), b"new"))], b"new", |_| true).is_none());
    }
}
