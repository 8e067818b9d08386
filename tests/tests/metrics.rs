//! Both components' Prometheus metrics, scraped from their health listeners after admissions at a real API
//! server and reconciles by the real controller.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use website_e2e::operator::{sample, scrape, workspace_root};
use website_e2e::{ControlPlane, ControlPlaneOptions, Operator, OperatorOptions, eventually};

const ALLOWED: &str =
    r#"website_webhook_admission_requests_total{endpoint="validate",operation="CREATE",verdict="allowed"}"#;
const DENIED: &str =
    r#"website_webhook_admission_requests_total{endpoint="validate",operation="CREATE",verdict="denied"}"#;
const MUTATED: &str =
    r#"website_webhook_admission_requests_total{endpoint="mutate",operation="CREATE",verdict="allowed"}"#;
const SUCCESSES: &str = r#"website_controller_reconciles_total{result="success"}"#;
const DURATIONS: &str = "website_controller_reconcile_duration_seconds_count";
const NOT_READY: &str = r#"website_controller_websites{ready="False"}"#;

#[tokio::test]
async fn a_scrape_after_admissions_and_reconciles_shows_the_counters_moving() -> Result<()> {
    let cp = ControlPlane::start(ControlPlaneOptions { controller_manager: false, ..ControlPlaneOptions::default() })
        .await?;
    let op = Operator::start(&cp, OperatorOptions::default()).await?;
    let (webhook, controller) = (op.webhook_health_addr(), op.controller_health_addr().context("the controller runs")?);
    let before = scrape(webhook).await?;
    let count = |text: &str, series: &str| sample(text, series).unwrap_or(0.0);

    let example = workspace_root().join("examples").join("website.yaml");
    cp.kubectl(&["create", "-n", "default", "-f", &example.to_string_lossy()]).await?.ensure_success()?;
    let refused = r#"{"apiVersion":"extensions.example.com/v1","kind":"Website","metadata":{"name":"refused","namespace":"default"},"spec":{"gitRepo":"file:///etc"}}"#;
    let out = cp.kubectl_with_stdin(&["create", "-f", "-"], Some(refused)).await?;
    ensure!(!out.success(), "a file:// repository was admitted");

    let after = scrape(webhook).await?;
    ensure!(count(&after, ALLOWED) >= count(&before, ALLOWED) + 1.0, "no admission counted:\n{after}");
    ensure!(count(&after, DENIED) >= count(&before, DENIED) + 1.0, "no denial counted:\n{after}");
    ensure!(count(&after, MUTATED) >= count(&before, MUTATED) + 1.0, "no mutation counted:\n{after}");
    let expiry = sample(&after, "website_webhook_serving_certificate_expiry_timestamp_seconds")
        .context("no certificate expiry")?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
    ensure!(expiry > now, "the served certificate expired at {expiry}, now is {now}");

    // No kubelet runs here, so the Website's pods never become available: it is reconciled, and not ready.
    eventually(Duration::from_secs(30), async || {
        let text = scrape(controller).await?;
        ensure!(count(&text, SUCCESSES) >= 1.0, "no successful reconcile counted:\n{text}");
        ensure!(count(&text, DURATIONS) >= 1.0, "no reconcile timed:\n{text}");
        ensure!(count(&text, NOT_READY) == 1.0, "the Website is not counted as not ready:\n{text}");
        Ok(())
    })
    .await
}
