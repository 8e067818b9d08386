//! The shell around [`decide`] and [`execute`]: reads the Secret and both configurations, writes what the plan
//! says, keeps the files the server loads, and says whether the API server trusts the certificate being served.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use time::OffsetDateTime;
use tracing::{debug, info, warn};
use website_certs::inspect::{fingerprint, issuer_among};
use website_certs::rotation::{
    CaStep, Material, Observed, Plan, Policy, ServingPair, ServingStep, TrustRecord, decide, execute,
};
use website_certs::{SubjectName, replace_file};

use super::configurations::{self, Configuration, Configurations};
use super::{Error, FIELD_MANAGER, Options, Result, secret, watch};
use crate::metrics::{Certificate, Metrics};
use crate::readiness::Readiness;
use crate::tls::CertificateFiles;

/// Longest wait before retrying a failed check.
const RETRY_INTERVAL: Duration = Duration::from_secs(10);

/// How many times one check reads everything again after a write, or after losing a race to another replica.
const ATTEMPTS: usize = 8;

/// Shortest wait before a check that a plan asked for at a given time.
const MIN_RECHECK: Duration = Duration::from_millis(500);

/// What one check found.
#[derive(Debug, Default)]
struct Outcome {
    /// Whether the API server trusts the certificate being served (its CA is in the `caBundle` of every
    /// configuration); `None` when a configuration could not be read.
    trusted: Option<bool>,
    /// When to check again even if nothing changes (the end of a rotation's grace period).
    recheck_at: Option<OffsetDateTime>,
    /// What went wrong without stopping the check (a missing configuration, a refused patch).
    problems: Vec<Error>,
}

/// Keeps the Secret, the certificate files and the `caBundle`s in line.
pub struct CertificateKeeper {
    client: Client,
    secrets: Api<Secret>,
    secret_name: String,
    namespace: String,
    configurations: Configurations,
    files: CertificateFiles,
    policy: Policy,
    interval: Duration,
    /// This process's field manager for creating the Secret by server-side apply: two replicas creating it at the
    /// same time with different contents conflict, and the loser reads the winner's.
    creator: String,
    /// The material last read from or written to the Secret, to restore it if the Secret is deleted or emptied.
    remembered: Option<Material>,
    /// Where the CA's expiry and the rotations are counted.
    metrics: Arc<Metrics>,
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
    /// [`Error::Config`] when a required option is missing, the names are invalid or the periods contradict
    /// each other.
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
            Duration::from_secs(options.ca_rotation_grace_seconds),
            names,
        )
        .map_err(|e| Error::Config(e.to_string()))?;
        let configurations = Configurations::new(
            &client,
            options.validating_webhook_configuration.clone(),
            options.mutating_webhook_configuration.clone(),
            service_name,
            namespace.clone(),
        );
        Ok(Self {
            secrets: Api::namespaced(client.clone(), &namespace),
            client,
            secret_name,
            namespace,
            configurations,
            files,
            policy,
            interval: Duration::from_secs(options.cert_check_interval_seconds),
            creator: format!("{FIELD_MANAGER}-{}", instance_id()),
            remembered: None,
            metrics: Arc::default(),
        })
    }

    /// The same keeper, counting the certificates it makes and exposing the CA's expiry in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Checks until the certificate files can be served (the server cannot start without them), with backoff.
    pub async fn prepare(&mut self) {
        let mut delay = Duration::from_secs(1);
        loop {
            match self.check().await {
                Ok(outcome) => outcome.problems.iter().for_each(|problem| warn!(%problem, "self-managed certificates")),
                Err(error) => warn!(%error, "failed to prepare the serving certificate"),
            }
            if self.served().is_some_and(|pair| pair.unservable(OffsetDateTime::now_utc()).is_none()) {
                return;
            }
            warn!(retry_in_seconds = delay.as_secs(), "no serving certificate yet");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RETRY_INTERVAL);
        }
    }

    /// Checks at once, then whenever the Secret or a configuration changes, at the end of a rotation's grace
    /// period, and every check interval (sooner after a failed check), for as long as the returned future runs.
    /// Keeps `readiness` up to date: trusted while the CA of the certificate being served is in the `caBundle`
    /// of every configuration.
    pub async fn run(mut self, readiness: Readiness) {
        let mut changes = watch::changes(
            &self.client,
            &self.namespace,
            &self.secret_name,
            self.configurations.validating_name(),
            self.configurations.mutating_name(),
        );
        loop {
            let wait = match self.check().await {
                Ok(outcome) => {
                    if let Some(trusted) = outcome.trusted {
                        if trusted != readiness.is_ready() {
                            info!(ready = trusted, "the API server's trust in the served certificate changed");
                        }
                        readiness.set_trusted(trusted);
                    }
                    for problem in &outcome.problems {
                        warn!(%problem, "self-managed certificates");
                    }
                    let regular =
                        if outcome.problems.is_empty() { self.interval } else { self.interval.min(RETRY_INTERVAL) };
                    outcome.recheck_at.map_or(regular, |at| until(at).clamp(MIN_RECHECK, regular.max(MIN_RECHECK)))
                }
                Err(error) => {
                    warn!(%error, "failed to check the self-managed certificates; retrying");
                    self.interval.min(RETRY_INTERVAL)
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                Some(()) = changes.next() => {
                    // One check covers every change seen so far.
                    while let Some(Some(())) = changes.next().now_or_never() {}
                }
            }
        }
    }

    /// One check: brings the Secret up to date, then the `caBundle`s, then the files the server reads, reading
    /// everything again after each write until nothing changes.
    ///
    /// # Errors
    /// When the Secret cannot be read or written, a certificate cannot be made, a file cannot be written, or the
    /// Secret is lost while a configuration cannot be read (recreating it then could drop a CA still in use).
    async fn check(&mut self) -> Result<Outcome> {
        let mut race = String::from("no write succeeded");
        for _ in 0..ATTEMPTS {
            let read = self.configurations.read().await;
            let existing = self.secrets.get_opt(&self.secret_name).await.map_err(|source| Error::Kube {
                action: format!("read Secret {}/{}", self.namespace, self.secret_name),
                source,
            })?;
            let stored = existing.as_ref().and_then(secret::material);
            let lost = stored.is_none();
            let base = stored.clone().or_else(|| self.remembered.clone());
            let record = existing.as_ref().and_then(secret::record);
            let recovered = if lost {
                if read.iter().any(|configuration| !configuration.is_known()) {
                    let problem = read.into_iter().find_map(Configuration::into_problem);
                    return Err(problem.unwrap_or_else(|| Error::Config("a configuration is unreadable".into())));
                }
                configurations::trusted_anywhere(&read)
            } else {
                Vec::new()
            };
            let fallback = base.as_ref().map(|material| material.bundle.clone()).unwrap_or_default();
            let trusted = configurations::trusted_everywhere(&read, &fallback);
            let served = self.served();
            let observed = Observed {
                stored: base.as_ref(),
                record: if lost { None } else { record.as_ref() },
                trusted: &trusted,
                recovered: &recovered,
                served: served.as_ref(),
            };
            let now = OffsetDateTime::now_utc();
            let plan = decide(&observed, now, &self.policy);
            if lost || plan.changes(&observed) {
                let material = execute(&observed, &plan, &self.policy)
                    .map_err(|source| Error::Certificate { action: "renew the certificates", source })?;
                match self.write_secret(existing, &material, plan.record.as_ref()).await? {
                    Written::Yes => {
                        log_update(&self.namespace, &self.secret_name, &plan, &material, lost);
                        if plan.ca != CaStep::Keep {
                            self.metrics.rotated(Certificate::ca);
                        }
                        if matches!(plan.serving, ServingStep::Issue { .. }) {
                            self.metrics.rotated(Certificate::serving);
                        }
                        self.remembered = Some(material);
                    }
                    Written::Raced(reason) => race = reason,
                }
                continue;
            }
            let Some(material) = stored else { continue };
            self.metrics.ca_expires(&material.ca_cert);
            self.remembered = Some(material.clone());
            let injection = self.configurations.inject(&read, material.bundle_pem().as_bytes()).await;
            if let Some(reason) = injection.raced {
                race = reason;
                continue;
            }
            if injection.patched {
                continue;
            }
            self.serve(&material, served.as_ref(), &trusted, now)?;
            let known = read.iter().all(Configuration::is_known);
            let trusted_now = self.served().is_some_and(|pair| issuer_among(&pair.cert, &trusted).is_some());
            let mut problems = injection.failures;
            problems.extend(read.into_iter().filter_map(Configuration::into_problem));
            return Ok(Outcome { trusted: known.then_some(trusted_now), recheck_at: plan.recheck_at(), problems });
        }
        Err(Error::Contended {
            what: format!("Secret {}/{} and its caBundles", self.namespace, self.secret_name),
            reason: race,
        })
    }

    /// Writes the Secret: an update carrying the `resourceVersion` read, or a create by server-side apply (which
    /// RBAC authorizes by name) when there was none.
    async fn write_secret(
        &self,
        existing: Option<Secret>,
        material: &Material,
        record: Option<&TrustRecord>,
    ) -> Result<Written> {
        let name = &self.secret_name;
        let result = match existing {
            Some(existing) => {
                let secret = secret::updated(existing, material, record);
                let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PostParams::default() };
                self.secrets.replace(name, &params, &secret).await.map(drop)
            }
            None => {
                let secret = secret::created(name, &self.namespace, material, record);
                // Not forced: if another replica created it with other contents meanwhile, this conflicts.
                let params = PatchParams::apply(&self.creator);
                self.secrets.patch(name, &params, &Patch::Apply(&secret)).await.map(drop)
            }
        };
        match result {
            Ok(()) => Ok(Written::Yes),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                info!(secret = %name, "another replica changed the certificates first; reading them again");
                Ok(Written::Raced(format!("Secret {}/{name} changed while it was written", self.namespace)))
            }
            Err(source) => Err(Error::Kube { action: format!("write Secret {}/{name}", self.namespace), source }),
        }
    }

    /// The pair in the files the server loads, if both read.
    fn served(&self) -> Option<ServingPair> {
        let cert = std::fs::read_to_string(&self.files.cert).ok()?;
        let key = std::fs::read_to_string(&self.files.key).ok()?;
        Some(ServingPair { cert, key })
    }

    /// Serves the Secret's pair if nothing servable is served, or if the API server trusts the CA that issued it;
    /// otherwise keeps serving what is served.
    fn serve(
        &self,
        material: &Material,
        served: Option<&ServingPair>,
        trusted: &[String],
        now: OffsetDateTime,
    ) -> Result<()> {
        let next = material.serving();
        if served == Some(&next) {
            return Ok(());
        }
        let servable = served.is_some_and(|pair| pair.unservable(now).is_none());
        if servable && issuer_among(&next.cert, trusted).is_none() {
            debug!("keeping the served certificate: the API server does not trust the CA of the Secret's yet");
            return Ok(());
        }
        let write = |path: &std::path::Path, contents: &str, mode| {
            replace_file(path, contents, mode)
                .map_err(|source| Error::Certificate { action: "write the serving certificate", source })
        };
        // The key first: a reload that sees the new key with the old certificate fails and keeps the old pair.
        write(&self.files.key, &next.key, 0o600)?;
        write(&self.files.cert, &next.cert, 0o644)?;
        info!(
            cert = %self.files.cert.display(),
            issuer = issuer_among(&next.cert, &material.bundle).and_then(|ca| fingerprint(ca)).unwrap_or_default(),
            "serving the Secret's certificate"
        );
        Ok(())
    }
}

/// Whether a write happened.
enum Written {
    Yes,
    /// Another writer came first.
    Raced(String),
}

fn log_update(namespace: &str, name: &str, plan: &Plan, material: &Material, was_empty: bool) {
    info!(
        secret = %format!("{namespace}/{name}"),
        was_empty,
        ca = ?plan.ca,
        serving = ?plan.serving,
        trusted_cas = material.bundle.len(),
        trusted_everywhere_since = plan.record.as_ref().map(|record| record.since.to_string()),
        "updated the self-managed certificates"
    );
}

/// How long until `at`, zero if it has passed.
fn until(at: OffsetDateTime) -> Duration {
    Duration::try_from(at - OffsetDateTime::now_utc()).unwrap_or(Duration::ZERO)
}

/// This process, among the webhook's replicas: the host name (a pod's name) and the process id.
fn instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String =
        host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.')).take(80).collect();
    format!("{host}-{}", std::process::id())
}
