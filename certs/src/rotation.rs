//! Renewing a kept CA and serving certificate without a client ever distrusting the certificate being served.
//!
//! [`decide`] is a pure function of what is kept ([`Material`]), what the clients trust now, what is being served,
//! and the clock; [`execute`] carries its [`Plan`] out (generating keys). The webhook's `--self-managed-certs`
//! mode keeps the material in a Secret, the clients' trust in the `caBundle` of its webhook configurations, and
//! runs these two on every check, in every replica.
//!
//! The rules:
//! - Every CA that has not expired stays in the bundle, whatever else happens (a new CA is added, never swapped
//!   in), so a certificate that some replica still serves stays trusted. Expired CAs leave it.
//! - A CA is replaced [`Policy::ca_renew_before`] its expiry, in two phases. Phase one adds a new CA to the bundle
//!   and keeps the serving certificate. Phase two issues the serving certificate from the new CA, and starts only
//!   once the new CA has been seen in every client's bundle for [`Policy::ca_rotation_grace`]
//!   ([`TrustRecord`]), since several API servers pick a changed configuration up at different times.
//! - A serving certificate is renewed [`Policy::serving_renew_before`] its expiry, or when its names differ from
//!   the wanted ones. Renewed by the CA that issued it, nothing changes for clients, so it is not held back.
//! - A certificate that cannot be served at all (expired, no key, from an unknown CA) is replaced at once.
//! - When the kept material is lost, a new CA is made, phase one of a rotation: the pair being served keeps being
//!   served, and the CAs clients trust now stay in the bundle.

mod material;

use std::time::Duration;

use time::OffsetDateTime;

use crate::inspect::{issued_by, issuer_among, not_after, subject_names};
use crate::{CertificateAuthority, Error, Result, SubjectName};

pub use material::{Material, ServingPair, TrustRecord};

/// Common name of generated CAs.
pub const CA_COMMON_NAME: &str = "website-webhook-ca";

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
    /// How long a new CA must have been trusted by every client before certificates it issued are served.
    pub ca_rotation_grace: Duration,
    /// Subject alternative names of the serving certificate.
    pub names: Vec<SubjectName>,
}

impl Policy {
    /// Checks that renewal happens within the validity, so that a fresh certificate is not renewed at once.
    ///
    /// # Errors
    /// [`Error::InvalidPolicy`] when a renew-before period is not shorter than its validity, the grace period
    /// is not shorter than the CA's renew-before period, or there are no names.
    pub fn new(
        ca_validity: Duration,
        ca_renew_before: Duration,
        serving_validity: Duration,
        serving_renew_before: Duration,
        ca_rotation_grace: Duration,
        names: Vec<SubjectName>,
    ) -> Result<Self> {
        let invalid = |reason: String| Err(Error::InvalidPolicy { reason });
        if ca_renew_before >= ca_validity {
            return invalid(format!(
                "the CA's renew-before ({ca_renew_before:?}) must be shorter than its validity ({ca_validity:?})"
            ));
        }
        if serving_renew_before >= serving_validity {
            return invalid(format!(
                "the serving certificate's renew-before ({serving_renew_before:?}) must be shorter than its \
                 validity ({serving_validity:?})"
            ));
        }
        if ca_rotation_grace >= ca_renew_before {
            return invalid(format!(
                "the CA rotation grace ({ca_rotation_grace:?}) must be shorter than the CA's renew-before \
                 ({ca_renew_before:?}), or the old CA could expire before certificates of the new one are served"
            ));
        }
        if names.is_empty() {
            return invalid("the serving certificate needs at least one name".to_owned());
        }
        Ok(Self { ca_validity, ca_renew_before, serving_validity, serving_renew_before, ca_rotation_grace, names })
    }
}

/// What [`decide`] looks at.
#[derive(Clone, Copy, Debug, Default)]
pub struct Observed<'a> {
    /// The kept material; `None` when there is none (or it is incomplete).
    pub stored: Option<&'a Material>,
    /// The kept record of when the current CA was first trusted by every client.
    pub record: Option<&'a TrustRecord>,
    /// The CAs every client trusts now (in the `caBundle` of every webhook configuration), canonical PEM.
    pub trusted: &'a [String],
    /// CAs that clients trust now but that the kept material no longer lists, because it was lost: they stay
    /// trusted while valid. Empty when the material was kept.
    pub recovered: &'a [String],
    /// The pair being served, if any.
    pub served: Option<&'a ServingPair>,
}

/// What happens to the CA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaStep {
    /// It stays.
    Keep,
    /// There is none (or it does not load, or it expired): a new one is made.
    Generate,
    /// It expires soon: a new one is made and trusted next to it (phase one of a rotation).
    Rotate,
}

/// What happens to the serving certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServingStep {
    /// The kept one stays.
    Keep,
    /// The kept material was lost, and the pair being served is kept instead.
    Adopt,
    /// A new one is issued now.
    Issue {
        /// Issued by the CA being replaced in this same step, which clients trust already (a [`CaStep::Rotate`]
        /// whose kept certificate cannot be served).
        by_previous_ca: bool,
        /// Why.
        reason: String,
    },
    /// The kept one stays for now, although it should be replaced: clients do not trust the current CA for long
    /// enough yet (phase two of a rotation has not started).
    Await {
        /// Why it should be replaced.
        reason: String,
        /// When the wait ends if nothing changes; `None` while the current CA is not trusted everywhere.
        until: Option<OffsetDateTime>,
    },
}

/// The outcome of [`decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The CA's step.
    pub ca: CaStep,
    /// The serving certificate's step.
    pub serving: ServingStep,
    /// The CAs to trust afterwards that exist already, each once; a CA made by this step goes before them.
    pub bundle: Vec<String>,
    /// The record to keep afterwards: `None` while the current CA is not trusted by every client.
    pub record: Option<TrustRecord>,
}

impl Plan {
    /// Whether carrying the plan out changes what is kept.
    #[must_use]
    pub fn changes(&self, observed: &Observed<'_>) -> bool {
        let Some(stored) = observed.stored else { return true };
        self.ca != CaStep::Keep
            || !matches!(self.serving, ServingStep::Keep | ServingStep::Await { .. })
            || self.bundle != stored.bundle
            || self.record.as_ref() != observed.record
    }

    /// When the plan would change by the passage of time alone: the end of an [`ServingStep::Await`].
    #[must_use]
    pub fn recheck_at(&self) -> Option<OffsetDateTime> {
        match &self.serving {
            ServingStep::Await { until, .. } => *until,
            _ => None,
        }
    }
}

/// Decides what to do, given what is observed at `now`. See the [module documentation](self) for the rules.
#[must_use]
pub fn decide(observed: &Observed<'_>, now: OffsetDateTime, policy: &Policy) -> Plan {
    let stored = observed.stored;
    let current = stored
        .and_then(|stored| CertificateAuthority::from_pem(&stored.ca_cert, &stored.ca_key).ok())
        .filter(|ca| ca.not_after() > now);
    let mut bundle = Vec::new();
    if let Some(ca) = &current {
        bundle.push(ca.cert_pem().to_owned());
    }
    let known = stored.map(|stored| stored.bundle.as_slice()).unwrap_or_default();
    for pem in known.iter().chain(observed.recovered) {
        if not_after(pem).is_some_and(|end| end > now) && !bundle.contains(pem) {
            bundle.push(pem.clone());
        }
    }
    let (Some(ca), Some(stored)) = (current, stored) else {
        return Plan {
            ca: CaStep::Generate,
            serving: keep_serving_while_it_works(observed, &bundle, now),
            bundle,
            record: None,
        };
    };
    let problem = serving_problem(&stored.serving(), &ca, &bundle, now, policy);
    if ca.not_after() <= now + policy.ca_renew_before {
        // Phase one: the certificate being served stays, so that clients trust the new CA before they see any
        // certificate it issued.
        let serving = match problem {
            Some(Problem::Unservable(reason)) => ServingStep::Issue { by_previous_ca: true, reason },
            Some(Problem::Stale(_)) | None => ServingStep::Keep,
        };
        return Plan { ca: CaStep::Rotate, serving, bundle, record: None };
    }
    let record = if observed.trusted.iter().any(|pem| pem == ca.cert_pem()) {
        match observed.record {
            Some(record) if record.is_for(ca.cert_pem()) => Some(record.clone()),
            _ => TrustRecord::new(ca.cert_pem(), now),
        }
    } else {
        None
    };
    let serving = match problem {
        None => ServingStep::Keep,
        Some(Problem::Unservable(reason)) => ServingStep::Issue { by_previous_ca: false, reason },
        // Renewed by the CA that issued it, the certificate changes nothing for clients.
        Some(Problem::Stale(reason)) if issued_by(&stored.tls_cert, ca.cert_pem()) => {
            ServingStep::Issue { by_previous_ca: false, reason }
        }
        // Phase two of a rotation: only once every client has trusted the new CA for the grace period.
        Some(Problem::Stale(reason)) => {
            let until = record.as_ref().map(|record| record.since + policy.ca_rotation_grace);
            match until {
                Some(until) if now >= until => ServingStep::Issue { by_previous_ca: false, reason },
                _ => ServingStep::Await { reason, until },
            }
        }
    };
    Plan { ca: CaStep::Keep, serving, bundle, record }
}

/// For a new CA: the kept pair if it can still be served and its CA stays trusted, else the pair being served
/// under the same conditions, else a new certificate from the new CA.
fn keep_serving_while_it_works(observed: &Observed<'_>, bundle: &[String], now: OffsetDateTime) -> ServingStep {
    let works = |pair: &ServingPair| pair.unservable(now).is_none() && issuer_among(&pair.cert, bundle).is_some();
    if observed.stored.is_some_and(|stored| works(&stored.serving())) {
        ServingStep::Keep
    } else if observed.served.is_some_and(works) {
        ServingStep::Adopt
    } else {
        ServingStep::Issue { by_previous_ca: false, reason: "a new CA was made".to_owned() }
    }
}

enum Problem {
    /// It cannot be served at all.
    Unservable(String),
    /// It works, but should be replaced.
    Stale(String),
}

fn serving_problem(
    pair: &ServingPair,
    ca: &CertificateAuthority,
    bundle: &[String],
    now: OffsetDateTime,
    policy: &Policy,
) -> Option<Problem> {
    if let Some(reason) = pair.unservable(now) {
        return Some(Problem::Unservable(reason.to_owned()));
    }
    if issuer_among(&pair.cert, bundle).is_none() {
        return Some(Problem::Unservable("the serving certificate was not issued by a trusted CA".to_owned()));
    }
    let end = not_after(&pair.cert)?;
    if end <= now + policy.serving_renew_before {
        return Some(Problem::Stale(format!("the serving certificate expires at {end}")));
    }
    if !issued_by(&pair.cert, ca.cert_pem()) {
        return Some(Problem::Stale("the serving certificate was issued by a previous CA".to_owned()));
    }
    let names = subject_names(&pair.cert);
    if names.len() != policy.names.len() || !policy.names.iter().all(|name| names.contains(name)) {
        return Some(Problem::Stale("the serving certificate's names differ from the wanted ones".to_owned()));
    }
    None
}

/// Carries out `plan`, made by [`decide`] from `observed`: generates what it asks for and returns the material to
/// keep.
///
/// # Errors
/// When a certificate cannot be generated or issued, or `observed` lacks what the plan keeps (it was made from
/// other inputs).
pub fn execute(observed: &Observed<'_>, plan: &Plan, policy: &Policy) -> Result<Material> {
    let stored = observed.stored;
    let previous = || -> Result<CertificateAuthority> {
        let stored = stored.ok_or(Error::InconsistentPlan { reason: "it keeps a CA, but none is kept" })?;
        CertificateAuthority::from_pem(&stored.ca_cert, &stored.ca_key)
    };
    let ca = match plan.ca {
        CaStep::Keep => previous()?,
        CaStep::Generate | CaStep::Rotate => CertificateAuthority::generate(CA_COMMON_NAME, policy.ca_validity)?,
    };
    let mut bundle = vec![ca.cert_pem().to_owned()];
    for pem in &plan.bundle {
        if !bundle.contains(pem) {
            bundle.push(pem.clone());
        }
    }
    let serving = match &plan.serving {
        ServingStep::Keep | ServingStep::Await { .. } => stored
            .ok_or(Error::InconsistentPlan { reason: "it keeps the serving certificate, but none is kept" })?
            .serving(),
        ServingStep::Adopt => observed
            .served
            .ok_or(Error::InconsistentPlan { reason: "it keeps the served pair, but none is served" })?
            .clone(),
        ServingStep::Issue { by_previous_ca, .. } => {
            let issued = if *by_previous_ca {
                previous()?.issue_serving(&policy.names, policy.serving_validity)?
            } else {
                ca.issue_serving(&policy.names, policy.serving_validity)?
            };
            ServingPair { cert: issued.cert_pem().to_owned(), key: issued.key_pem().to_owned() }
        }
    };
    Ok(Material {
        ca_cert: ca.cert_pem().to_owned(),
        ca_key: ca.key_pem().to_owned(),
        tls_cert: serving.cert,
        tls_key: serving.key,
        bundle,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::split_certificates;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);
    const GRACE: Duration = Duration::from_secs(60);

    fn policy() -> Policy {
        Policy::new(
            DAY * 3650,
            DAY * 90,
            DAY * 365,
            DAY * 30,
            GRACE,
            vec![SubjectName::Dns("webhook.system.svc".into()), SubjectName::Ip([127, 0, 0, 1].into())],
        )
        .expect("a valid policy")
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn carry_out(observed: &Observed<'_>, at: OffsetDateTime, policy: &Policy) -> (Plan, Material) {
        let plan = decide(observed, at, policy);
        let material = execute(observed, &plan, policy).expect("carried out");
        (plan, material)
    }

    fn fresh() -> Material {
        carry_out(&Observed::default(), now(), &policy()).1
    }

    /// Material whose CA expires in `days` days, with a serving certificate from it for the policy's names.
    fn expiring_in(days: u32) -> Material {
        let ca = CertificateAuthority::generate("old-ca", DAY * days).expect("generates");
        let serving = ca.issue_serving(&policy().names, DAY * days).expect("issues");
        Material {
            ca_cert: ca.cert_pem().to_owned(),
            ca_key: ca.key_pem().to_owned(),
            tls_cert: serving.cert_pem().to_owned(),
            tls_key: serving.key_pem().to_owned(),
            bundle: vec![ca.cert_pem().to_owned()],
        }
    }

    /// The material and its record as kept once the current CA is in every `caBundle` since `since`.
    fn trusted_since(material: &Material, since: OffsetDateTime) -> TrustRecord {
        TrustRecord::new(&material.ca_cert, since).expect("a certificate")
    }

    #[test]
    fn an_empty_secret_gets_a_new_ca_trusted_alone_and_a_certificate_for_every_name() {
        let material = fresh();
        assert_eq!(material.bundle, vec![material.ca_cert.clone()]);
        assert!(issued_by(&material.tls_cert, &material.ca_cert));
        assert_eq!(subject_names(&material.tls_cert), policy().names);
    }

    #[test]
    fn fresh_material_trusted_everywhere_is_kept_as_it_is() {
        let material = fresh();
        let record = trusted_since(&material, now());
        let observed = Observed {
            stored: Some(&material),
            record: Some(&record),
            trusted: &material.bundle,
            ..Observed::default()
        };
        let plan = decide(&observed, now(), &policy());
        assert!(!plan.changes(&observed), "{plan:?}");
        assert_eq!(plan.recheck_at(), None);
    }

    #[test]
    fn a_ca_first_seen_in_every_configuration_is_recorded_with_the_time() {
        let material = fresh();
        let at = now();
        let observed = Observed { stored: Some(&material), trusted: &material.bundle, ..Observed::default() };
        let plan = decide(&observed, at, &policy());
        assert_eq!(plan.record, TrustRecord::new(&material.ca_cert, at));
        assert!(plan.changes(&observed), "the record must be kept");
        assert_eq!((plan.ca, plan.serving), (CaStep::Keep, ServingStep::Keep));
    }

    #[test]
    fn a_ca_missing_from_a_configuration_loses_its_record() {
        let material = fresh();
        let record = trusted_since(&material, now());
        let observed = Observed { stored: Some(&material), record: Some(&record), trusted: &[], ..Observed::default() };
        let plan = decide(&observed, now(), &policy());
        assert_eq!(plan.record, None);
        assert!(plan.changes(&observed));
    }

    #[test]
    fn material_debug_output_never_shows_a_key() {
        let material = fresh();
        let text = format!("{material:?} {:?}", material.serving());
        for secret in [&material.ca_key, &material.tls_key] {
            let body = secret.lines().nth(1).expect("a PEM body line");
            assert!(!text.contains(body), "a key in {text}");
        }
        assert!(text.contains("[redacted]") && text.contains("sha256:"), "{text}");
    }

    #[test]
    fn a_serving_certificate_near_expiry_is_reissued_by_the_same_ca_without_waiting() {
        let material = fresh();
        let later = CertificateAuthority::from_pem(&material.ca_cert, &material.ca_key).expect("loads").not_before()
            + DAY * 340;
        // Not even trusted everywhere: a certificate from the same CA changes nothing for clients.
        let observed = Observed { stored: Some(&material), ..Observed::default() };
        let (plan, next) = carry_out(&observed, later, &policy());
        assert_eq!(plan.ca, CaStep::Keep);
        assert!(matches!(&plan.serving, ServingStep::Issue { reason, .. } if reason.contains("expires")), "{plan:?}");
        assert_eq!(next.ca_cert, material.ca_cert);
        assert_eq!(next.bundle, material.bundle, "the caBundle must not change");
        assert_ne!(next.tls_cert, material.tls_cert);
    }

    #[test]
    fn phase_one_of_a_rotation_adds_a_new_ca_and_keeps_the_served_certificate() {
        let material = expiring_in(2);
        let policy = Policy { ca_renew_before: DAY * 3, ..policy() };
        let record = trusted_since(&material, now() - DAY);
        let observed = Observed {
            stored: Some(&material),
            record: Some(&record),
            trusted: &material.bundle,
            ..Observed::default()
        };
        let (plan, rotating) = carry_out(&observed, now(), &policy);
        assert_eq!(plan.ca, CaStep::Rotate);
        assert_eq!(plan.serving, ServingStep::Keep);
        assert_eq!(plan.record, None, "the new CA is not trusted anywhere yet");
        assert_ne!(rotating.ca_cert, material.ca_cert);
        assert_eq!(rotating.bundle, vec![rotating.ca_cert.clone(), material.ca_cert.clone()]);
        assert_eq!(rotating.tls_cert, material.tls_cert);
    }

    #[test]
    fn phase_two_waits_until_the_new_ca_is_in_every_configuration() {
        let policy = Policy { ca_renew_before: DAY * 3, ..policy() };
        let (_, rotating) =
            carry_out(&Observed { stored: Some(&expiring_in(2)), ..Observed::default() }, now(), &policy);
        // Only the old CA is trusted everywhere (one configuration lacks the new one), however long we wait.
        let old_only = &rotating.bundle[1..];
        for later in [now(), now() + GRACE * 10, now() + DAY] {
            let observed = Observed { stored: Some(&rotating), trusted: old_only, ..Observed::default() };
            let plan = decide(&observed, later, &policy);
            assert!(matches!(&plan.serving, ServingStep::Await { until: None, .. }), "{plan:?}");
            assert_eq!(plan.record, None);
            assert!(!plan.changes(&observed), "nothing to write while waiting: {plan:?}");
        }
    }

    #[test]
    fn phase_two_starts_a_grace_period_after_the_new_ca_is_seen_everywhere() {
        let policy = Policy { ca_renew_before: DAY * 3, ..policy() };
        let (_, rotating) =
            carry_out(&Observed { stored: Some(&expiring_in(2)), ..Observed::default() }, now(), &policy);
        let seen = now();
        let first = Observed { stored: Some(&rotating), trusted: &rotating.bundle, ..Observed::default() };
        let plan = decide(&first, seen, &policy);
        let record = plan.record.clone().expect("the new CA is recorded as trusted");
        assert_eq!(record, trusted_since(&rotating, seen));
        assert_eq!(plan.recheck_at(), Some(record.since + GRACE));
        assert!(matches!(plan.serving, ServingStep::Await { .. }), "{plan:?}");

        // Any replica reading the record waits for the same moment.
        let kept = Observed { record: Some(&record), ..first };
        let just_before = decide(&kept, record.since + GRACE - Duration::from_secs(1), &policy);
        assert!(matches!(just_before.serving, ServingStep::Await { until: Some(_), .. }), "{just_before:?}");
        let (plan, rotated) = carry_out(&kept, record.since + GRACE, &policy);
        assert!(matches!(&plan.serving, ServingStep::Issue { by_previous_ca: false, .. }), "{plan:?}");
        assert!(issued_by(&rotated.tls_cert, &rotated.ca_cert));
        assert_eq!(rotated.bundle, rotating.bundle, "both CAs stay trusted");
        let settled = Observed { stored: Some(&rotated), ..kept };
        assert!(!decide(&settled, record.since + GRACE, &policy).changes(&settled));
    }

    #[test]
    fn a_record_of_another_ca_does_not_open_the_gate() {
        let policy = Policy { ca_renew_before: DAY * 3, ..policy() };
        let old = expiring_in(2);
        let (_, rotating) = carry_out(&Observed { stored: Some(&old), ..Observed::default() }, now(), &policy);
        let stale = trusted_since(&old, now() - DAY);
        let observed = Observed {
            stored: Some(&rotating),
            record: Some(&stale),
            trusted: &rotating.bundle[1..],
            ..Observed::default()
        };
        let plan = decide(&observed, now(), &policy);
        assert!(matches!(plan.serving, ServingStep::Await { until: None, .. }), "{plan:?}");
        assert_eq!(plan.record, None);
    }

    #[test]
    fn a_regenerated_ca_keeps_every_still_valid_ca_in_the_bundle() {
        let material = fresh();
        let other = expiring_in(2);
        let broken = Material {
            ca_key: other.ca_key.clone(),
            bundle: vec![material.ca_cert.clone(), other.ca_cert.clone()],
            ..material.clone()
        };
        let observed = Observed { stored: Some(&broken), ..Observed::default() };
        let (plan, next) = carry_out(&observed, now(), &policy());
        assert_eq!(plan.ca, CaStep::Generate);
        assert_eq!(next.bundle, vec![next.ca_cert.clone(), material.ca_cert.clone(), other.ca_cert.clone()]);
        // The kept certificate works and its CA stays trusted: it is still served, until phase two.
        assert_eq!(plan.serving, ServingStep::Keep);
        assert_eq!(next.tls_cert, material.tls_cert);
    }

    #[test]
    fn a_lost_secret_keeps_the_served_pair_and_the_cas_the_configurations_trust() {
        let served_by = fresh();
        let other = expiring_in(2);
        let in_configurations = vec![served_by.ca_cert.clone(), other.ca_cert.clone()];
        let served = served_by.serving();
        let observed = Observed { recovered: &in_configurations, served: Some(&served), ..Observed::default() };
        let (plan, next) = carry_out(&observed, now(), &policy());
        assert_eq!((plan.ca, &plan.serving), (CaStep::Generate, &ServingStep::Adopt));
        assert_eq!(next.serving(), served);
        assert_eq!(next.bundle, vec![next.ca_cert.clone(), served_by.ca_cert.clone(), other.ca_cert.clone()]);
    }

    #[test]
    fn a_served_pair_from_an_untrusted_ca_is_not_kept_for_a_new_ca() {
        let served = fresh().serving();
        let observed = Observed { served: Some(&served), ..Observed::default() };
        let (plan, next) = carry_out(&observed, now(), &policy());
        assert!(matches!(plan.serving, ServingStep::Issue { .. }), "{plan:?}");
        assert!(issued_by(&next.tls_cert, &next.ca_cert));
        assert_eq!(next.bundle, vec![next.ca_cert.clone()]);
    }

    #[test]
    fn an_expired_ca_leaves_the_bundle() {
        let material = fresh();
        let short = CertificateAuthority::generate("old", DAY).expect("generates");
        let with_old =
            Material { bundle: vec![material.ca_cert.clone(), short.cert_pem().to_owned()], ..material.clone() };
        let record = trusted_since(&with_old, now());
        let observed = Observed {
            stored: Some(&with_old),
            record: Some(&record),
            trusted: &with_old.bundle,
            ..Observed::default()
        };
        assert!(!decide(&observed, now(), &policy()).changes(&observed), "the old CA is still valid");
        let plan = decide(&observed, now() + DAY * 2, &policy());
        assert_eq!(plan.bundle, vec![material.ca_cert.clone()]);
        assert_eq!((plan.ca, plan.serving), (CaStep::Keep, ServingStep::Keep));
    }

    #[test]
    fn an_expired_ca_is_replaced_and_leaves_the_bundle() {
        let material = expiring_in(1);
        let observed = Observed { stored: Some(&material), ..Observed::default() };
        let (plan, next) = carry_out(&observed, now() + DAY * 2, &policy());
        assert_eq!(plan.ca, CaStep::Generate);
        assert_eq!(next.bundle, vec![next.ca_cert.clone()]);
    }

    #[test]
    fn unservable_contents_are_replaced_at_once() {
        let material = fresh();
        let other = fresh();
        let policy = policy();
        let cases: Vec<(&str, Material, &str)> = vec![
            ("garbage CA", Material { ca_cert: "junk".into(), bundle: Vec::new(), ..material.clone() }, "new CA"),
            ("foreign key", Material { tls_key: other.tls_key.clone(), ..material.clone() }, "does not load"),
            (
                "foreign certificate",
                Material { tls_cert: other.tls_cert.clone(), tls_key: other.tls_key.clone(), ..material.clone() },
                "not issued by a trusted CA",
            ),
        ];
        for (case, stored, reason) in cases {
            let observed = Observed { stored: Some(&stored), ..Observed::default() };
            let (plan, next) = carry_out(&observed, now(), &policy);
            assert!(
                matches!(&plan.serving, ServingStep::Issue { reason: r, .. } if r.contains(reason)),
                "{case}: {plan:?}"
            );
            assert!(issued_by(&next.tls_cert, &next.ca_cert), "{case}");
            let record = trusted_since(&next, now());
            let settled = Observed { stored: Some(&next), record: Some(&record), trusted: &next.bundle, ..observed };
            assert!(!decide(&settled, now(), &policy).changes(&settled), "{case}: not settled");
        }
    }

    #[test]
    fn an_unservable_certificate_during_phase_one_is_reissued_by_the_trusted_old_ca() {
        let old = expiring_in(2);
        let policy = Policy { ca_renew_before: DAY * 3, ..policy() };
        let broken = Material { tls_key: fresh().tls_key, ..old.clone() };
        let observed = Observed { stored: Some(&broken), ..Observed::default() };
        let (plan, next) = carry_out(&observed, now(), &policy);
        assert_eq!(plan.ca, CaStep::Rotate);
        assert!(matches!(plan.serving, ServingStep::Issue { by_previous_ca: true, .. }), "{plan:?}");
        assert!(issued_by(&next.tls_cert, &old.ca_cert));
    }

    #[test]
    fn a_change_of_names_reissues_the_certificate() {
        let material = fresh();
        let policy = Policy { names: vec![SubjectName::Dns("webhook.other.svc".into())], ..policy() };
        let plan = decide(&Observed { stored: Some(&material), ..Observed::default() }, now(), &policy);
        assert!(matches!(&plan.serving, ServingStep::Issue { reason, .. } if reason.contains("names")), "{plan:?}");
    }

    #[test]
    fn renewal_periods_must_be_shorter_than_validity_and_the_grace_shorter_than_renewal() {
        let name = || vec![SubjectName::Dns("a".into())];
        let cases = [
            (Policy::new(DAY, DAY, DAY * 2, DAY, GRACE, name()), "CA's renew-before"),
            (Policy::new(DAY * 2, DAY, DAY, DAY * 2, GRACE, name()), "serving certificate's renew-before"),
            (Policy::new(DAY * 2, DAY, DAY * 2, DAY, DAY, name()), "CA rotation grace"),
            (Policy::new(DAY * 2, DAY, DAY * 2, DAY, GRACE, Vec::new()), "at least one name"),
        ];
        for (result, message) in cases {
            let err = result.expect_err("refused");
            assert!(err.to_string().starts_with("failed to ") && err.to_string().contains(message), "{err}");
        }
    }

    #[test]
    fn trust_records_survive_the_round_trip_through_text() {
        let material = fresh();
        let record = trusted_since(&material, now());
        let text = record.to_string();
        assert_eq!(TrustRecord::parse(&text), Some(record.clone()), "{text}");
        assert!(record.is_for(&material.ca_cert));
        assert!(!record.is_for(&fresh().ca_cert));
        for junk in ["", "yesterday sha256:00", "2025-01-01T00:00:00Z md5:00"] {
            assert_eq!(TrustRecord::parse(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn the_bundle_text_splits_back_into_the_same_cas() {
        let material = fresh();
        let two = Material { bundle: vec![material.ca_cert.clone(), expiring_in(2).ca_cert], ..material };
        assert_eq!(split_certificates(&two.bundle_pem()), two.bundle);
    }
}
