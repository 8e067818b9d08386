//! The webhook's self-managed certificates under faults, against a real API server: two replicas rotating a CA at
//! the same time, a wiped `caBundle`, a deleted Secret, and a `caBundle` injection that fails between the two
//! phases of a rotation.
//!
//! The chart is installed with its webhook configurations pointed at local URLs, and each replica is the real
//! webhook binary run with the installed Deployment's arguments, as the chart's ServiceAccount (so its RBAC is
//! what is exercised). The validating webhook calls replica A and the mutating webhook replica B, so every request
//! is answered by both; a request counts as answered when the validating webhook's own refusal comes back.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use website_e2e::self_managed::{
    self, Addresses, CONFIGURATION, Replica, Requests, ca_bundles, expect_admission, expect_served_by, secret_bundle,
    secret_text, trust_annotation, while_requesting,
};
use website_e2e::{ControlPlane, ControlPlaneOptions, eventually};

/// Chart values that make the CA of [`expiring_certificates`] due for rotation, and check often.
const ROTATE_SOON: [&str; 2] =
    ["certificates.selfManaged.caRenewBeforeDays=3", "certificates.selfManaged.checkIntervalSeconds=10"];

async fn start_control_plane() -> Result<ControlPlane> {
    ControlPlane::start(ControlPlaneOptions { controller_manager: false, ..ControlPlaneOptions::default() }).await
}

/// Fails with the failed requests, if any.
fn expect_every_request_answered(requests: &Requests, during: &str, logs: impl Fn() -> String) -> Result<()> {
    ensure!(requests.made > 0, "no request was made {during}");
    ensure!(
        requests.failures.is_empty(),
        "{} of {} requests {during} were not answered by the webhooks:\n{}\n{}",
        requests.failures.len(),
        requests.made,
        requests.failures.join("\n"),
        logs()
    );
    Ok(())
}

/// Installs the chart with `values`, the mutating webhook calling B, and starts replicas A and B in `dir`, after
/// `prepare` ran (to fill the Secret as earlier replicas would have left it).
async fn install_and_start(
    cp: &ControlPlane,
    values: &[&str],
    dir: &std::path::Path,
    prepare: impl AsyncFnOnce() -> Result<()>,
) -> Result<(Replica, Replica)> {
    let (a, b) = (Addresses::free()?, Addresses::free()?);
    self_managed::install(cp, &a, values).await?;
    self_managed::point_mutating_webhook_at(cp, &b).await?;
    prepare().await?;
    // Started together, so that both find the same Secret and act on it at the same time.
    let (dir_a, dir_b) = (dir.join("a"), dir.join("b"));
    let (a, b) = tokio::try_join!(
        Replica::start(cp, "webhook-a", a, &dir_a, &[]),
        Replica::start(cp, "webhook-b", b, &dir_b, &[]),
    )?;
    Ok((a, b))
}

/// A CA that expires in two days, and a serving certificate it issued, written to the Secret and trusted by both
/// configurations, as earlier replicas would have left them. Returns the CA and the certificate, PEM.
async fn expiring_certificates(cp: &ControlPlane) -> Result<(String, String)> {
    let (ca, serving) = self_managed::certificates(website_certs::days(2))?;
    self_managed::fill_secret(cp, &ca, &serving).await?;
    self_managed::set_ca_bundles(cp, ca.cert_pem()).await?;
    Ok((ca.cert_pem().to_owned(), serving.cert_pem().to_owned()))
}

#[tokio::test]
async fn two_replicas_rotating_an_expiring_ca_at_once_never_fail_a_request() -> Result<()> {
    let cp = start_control_plane().await?;
    let dir = tempfile::tempdir()?;
    let mut old = (String::new(), String::new());
    let values = [ROTATE_SOON[0], ROTATE_SOON[1], "certificates.selfManaged.caRotationGraceSeconds=5"];
    let started = Instant::now();
    let (a, b) = install_and_start(&cp, &values, dir.path(), async || {
        old = expiring_certificates(&cp).await?;
        Ok(())
    })
    .await?;
    let (old_ca, _) = &old;
    let logs = || format!("{}\n{}", a.log_tail(30), b.log_tail(30));

    let (requests, rotated) = while_requesting(&cp, async {
        let new_ca = eventually(Duration::from_secs(120), async || {
            let bundle = secret_bundle(&cp).await?;
            ensure!(bundle.len() == 2 && bundle[1] == *old_ca, "the bundle holds {} CAs, not [new, old]", bundle.len());
            let certificate = secret_text(&cp, "tls.crt").await?.unwrap_or_default();
            ensure!(website_certs::inspect::issued_by(&certificate, &bundle[0]), "phase two has not happened yet");
            expect_served_by(&[&a, &b], &bundle[0]).await?;
            Ok(bundle[0].clone())
        })
        .await?;
        let took = started.elapsed();
        // More requests with both replicas on the new certificate.
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok((new_ca, took))
    })
    .await;
    let (new_ca, took) = rotated.with_context(logs)?;
    eprintln!("both replicas served the new CA's certificate {took:?} after they started; {} requests", requests.made);
    expect_every_request_answered(&requests, "during the rotation", logs)?;

    // One new CA, however many replicas rotated: the losers of the race took the winner's.
    let expected = vec![new_ca.clone(), old_ca.clone()];
    let bundles = ca_bundles(&cp).await?;
    ensure!(bundles.len() == 2 && bundles.iter().all(|b| *b == expected), "caBundles are not [new, old]: {bundles:?}");
    let record = trust_annotation(&cp).await?.context("the Secret records no trusted CA")?;
    let fingerprint = website_certs::inspect::fingerprint(&new_ca).context("the new CA is a certificate")?;
    ensure!(record.ends_with(&fingerprint), "the record {record:?} is not about the new CA");

    // The metrics tell the same story: one CA made between both replicas, at least one serving certificate, and
    // the CA whose expiry they expose is the new one (the old one expired within two days).
    let cas = a.metric(CA_ROTATIONS).await? + b.metric(CA_ROTATIONS).await?;
    ensure!(cas == 1.0, "the replicas count {cas} CAs made, not 1");
    let serving = a.metric(SERVING_ROTATIONS).await? + b.metric(SERVING_ROTATIONS).await?;
    ensure!(serving >= 1.0, "no serving certificate counted");
    let in_three_days = (std::time::SystemTime::now() + Duration::from_secs(3 * 86_400))
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    for replica in [&a, &b] {
        let expiry = replica.metric(CA_EXPIRY).await?;
        ensure!(expiry > in_three_days, "the CA expiry exposed ({expiry}) is not the new CA's");
    }
    Ok(())
}

const CA_ROTATIONS: &str = r#"website_webhook_certificate_rotations_total{certificate="ca"}"#;
const SERVING_ROTATIONS: &str = r#"website_webhook_certificate_rotations_total{certificate="serving"}"#;
const CA_EXPIRY: &str = "website_webhook_ca_expiry_timestamp_seconds";

#[tokio::test]
async fn a_wiped_ca_bundle_is_restored_and_admission_works_again() -> Result<()> {
    let cp = start_control_plane().await?;
    let dir = tempfile::tempdir()?;
    // The periodic check stays at its default of 300 s: the repair comes from watching.
    let (a, b) = install_and_start(&cp, &[], dir.path(), async || Ok(())).await?;
    let logs = || format!("{}\n{}", a.log_tail(30), b.log_tail(30));
    eventually(Duration::from_secs(60), async || {
        expect_admission(&cp).await?;
        ensure!(a.is_ready().await? && b.is_ready().await?, "not ready yet");
        Ok(())
    })
    .await
    .with_context(logs)?;
    let bundle = secret_bundle(&cp).await?;

    self_managed::set_ca_bundles(&cp, "").await?;
    let wiped = Instant::now();
    eventually(Duration::from_secs(60), async || {
        let bundles = ca_bundles(&cp).await?;
        ensure!(bundles.iter().all(|b| *b == bundle), "caBundles not restored yet");
        expect_admission(&cp).await
    })
    .await
    .with_context(logs)?;
    eprintln!("the wiped caBundles were restored and requests answered {:?} after the wipe", wiped.elapsed());
    eventually(Duration::from_secs(30), async || {
        ensure!(a.is_ready().await? && b.is_ready().await?, "not ready again");
        Ok(())
    })
    .await
    .with_context(logs)?;
    ensure!(secret_bundle(&cp).await? == bundle, "the repair changed the CAs");
    Ok(())
}

#[tokio::test]
async fn a_deleted_secret_is_recreated_while_replicas_keep_answering_even_one_restarted() -> Result<()> {
    let cp = start_control_plane().await?;
    let dir = tempfile::tempdir()?;
    let (a, b) = install_and_start(&cp, &[], dir.path(), async || Ok(())).await?;
    let logs = |a: &Replica, b: &Replica| format!("{}\n{}", a.log_tail(30), b.log_tail(30));
    eventually(Duration::from_secs(60), async || {
        expect_admission(&cp).await?;
        ensure!(a.is_ready().await? && b.is_ready().await?, "not ready yet");
        Ok(())
    })
    .await
    .with_context(|| logs(&a, &b))?;
    let ca = secret_text(&cp, "ca.crt").await?.context("no CA")?;
    let certificate = secret_text(&cp, "tls.crt").await?.context("no certificate")?;

    let delete = ["delete", "secret", self_managed::CERT_SECRET, "-n", self_managed::NAMESPACE];
    let (requests, recreated) = while_requesting(&cp, async {
        cp.kubectl(&delete).await?.ensure_success()?;
        let deleted = Instant::now();
        eventually(Duration::from_secs(60), async || {
            secret_text(&cp, "tls.crt").await?.context("the Secret is not back yet")
        })
        .await?;
        let took = deleted.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(took)
    })
    .await;
    let took = recreated.with_context(|| logs(&a, &b))?;
    eprintln!("the deleted Secret was back {took:?} after the deletion; {} requests", requests.made);
    expect_every_request_answered(&requests, "while the Secret was deleted", || logs(&a, &b))?;
    ensure!(secret_text(&cp, "ca.crt").await?.as_deref() == Some(ca.as_str()), "the Secret came back with another CA");
    ensure!(
        secret_text(&cp, "tls.crt").await?.as_deref() == Some(certificate.as_str()),
        "the Secret came back with another certificate"
    );

    // Deleted again, and replica B restarted meanwhile (without the certificates it remembered): once B is ready,
    // every request is answered.
    cp.kubectl(&delete).await?.ensure_success()?;
    let b = b.restart(&cp, &[]).await?;
    eventually(Duration::from_secs(60), async || {
        ensure!(b.is_ready().await?, "the restarted replica is not ready");
        Ok(())
    })
    .await
    .with_context(|| logs(&a, &b))?;
    let (requests, settled) = while_requesting(&cp, async {
        eventually(Duration::from_secs(60), async || {
            let bundle = secret_bundle(&cp).await?;
            ensure!(!bundle.is_empty(), "the Secret is not back yet");
            let bundles = ca_bundles(&cp).await?;
            ensure!(bundles.iter().all(|b| *b == bundle), "the caBundles are not the Secret's");
            ensure!(a.is_ready().await? && b.is_ready().await?, "not both ready");
            Ok(())
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(())
    })
    .await;
    settled.with_context(|| logs(&a, &b))?;
    expect_every_request_answered(&requests, "after the restart", || logs(&a, &b))?;
    Ok(())
}

/// The mutating configuration as stored, ready to be created again: what a backup would hold.
async fn saved_mutating_configuration(cp: &ControlPlane) -> Result<String> {
    let json =
        cp.kubectl(&["get", "mutatingwebhookconfiguration", CONFIGURATION, "-o", "json"]).await?.ensure_success()?;
    let mut config: serde_json::Value = serde_json::from_str(&json)?;
    let metadata = config["metadata"].as_object_mut().context("no metadata")?;
    for field in ["resourceVersion", "uid", "creationTimestamp", "managedFields", "generation", "selfLink"] {
        metadata.remove(field);
    }
    Ok(config.to_string())
}

#[tokio::test]
async fn a_failed_injection_between_the_phases_keeps_the_old_ca_served() -> Result<()> {
    let cp = start_control_plane().await?;
    let dir = tempfile::tempdir()?;
    let mut old = (String::new(), String::new());
    // A grace long enough that phase two cannot start before the injection is made to fail.
    let values = [ROTATE_SOON[0], ROTATE_SOON[1], "certificates.selfManaged.caRotationGraceSeconds=3600"];
    let (a, b) = install_and_start(&cp, &values, dir.path(), async || {
        old = expiring_certificates(&cp).await?;
        Ok(())
    })
    .await?;
    let (old_ca, old_certificate) = &old;

    // Phase one: the new CA is in both caBundles, and the Secret records since when.
    let new_ca = eventually(Duration::from_secs(60), async || {
        let bundle = secret_bundle(&cp).await?;
        ensure!(bundle.len() == 2, "no new CA yet");
        ensure!(ca_bundles(&cp).await?.iter().all(|b| *b == bundle), "not injected yet");
        trust_annotation(&cp).await?.context("not recorded yet")?;
        Ok(bundle[0].clone())
    })
    .await
    .with_context(|| format!("{}\n{}", a.log_tail(30), b.log_tail(30)))?;

    // Now the injection fails: the mutating configuration is gone. Both replicas restart with a grace period that
    // the record has long passed, so only the failed injection can hold phase two back.
    let saved = saved_mutating_configuration(&cp).await?;
    cp.kubectl(&["delete", "mutatingwebhookconfiguration", CONFIGURATION]).await?.ensure_success()?;
    let short_grace = ["--ca-rotation-grace-seconds=2"];
    let a = a.restart(&cp, &short_grace).await?;
    let b = b.restart(&cp, &short_grace).await?;
    let logs = || format!("{}\n{}", a.log_tail(30), b.log_tail(30));
    let (requests, held) = while_requesting(&cp, async {
        eventually(Duration::from_secs(30), async || {
            ensure!(trust_annotation(&cp).await?.is_none(), "the Secret still records the new CA as trusted");
            Ok(())
        })
        .await?;
        // Several grace periods, and a periodic check of each replica.
        tokio::time::sleep(Duration::from_secs(12)).await;
        ensure!(
            secret_text(&cp, "tls.crt").await?.as_ref() == Some(old_certificate),
            "the Secret's certificate switched to the new CA"
        );
        expect_served_by(&[&a, &b], old_ca).await?;
        ensure!(!a.is_ready().await? && !b.is_ready().await?, "ready although a configuration lacks the CA");
        Ok(())
    })
    .await;
    held.with_context(logs)?;
    expect_every_request_answered(&requests, "while the injection failed", logs)?;

    // The configuration is back: phase two follows, and both replicas are ready.
    cp.kubectl_with_stdin(&["create", "-f", "-"], Some(&saved)).await?.ensure_success()?;
    let (requests, rotated) = while_requesting(&cp, async {
        eventually(Duration::from_secs(60), async || {
            expect_served_by(&[&a, &b], &new_ca).await?;
            ensure!(a.is_ready().await? && b.is_ready().await?, "not ready");
            Ok(())
        })
        .await
    })
    .await;
    rotated.with_context(logs)?;
    expect_every_request_answered(&requests, "after the repair", logs)?;
    Ok(())
}
