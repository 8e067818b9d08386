//! The webhook flooded by a hostile client while the API server keeps calling it: concurrent large bodies and
//! slow-drip connections straight at the webhook, and `create --dry-run=server` of a Website through the API
//! server every 200 ms, which calls both webhooks. Asserts outcomes only: no failed admission, memory under the
//! chart's limit, every slow-drip connection closed by the webhook. `scripts/bench.sh stress` measures the same
//! attack at full size on a release build and prints its figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use kube::Api;
use kube::api::PostParams;
use website_bench::attack::{Counts, drip, large_sender};
use website_bench::{Endpoint, mib, review, rss};
use website_crd::{Website, WebsiteSpec};
use website_e2e::{ControlPlane, ControlPlaneOptions, Operator, OperatorOptions};

/// The chart's memory limit of a webhook pod (`webhook.resources.limits.memory`).
const CHART_MEMORY_LIMIT: u64 = 128 * 1024 * 1024;

#[tokio::test]
async fn a_flood_of_large_and_slow_bodies_leaves_the_api_servers_calls_answered_and_memory_bounded() -> Result<()> {
    let cp = ControlPlane::start(ControlPlaneOptions { controller_manager: false, ..ControlPlaneOptions::default() })
        .await?;
    let op = Operator::start(&cp, OperatorOptions { controller: false, ..OperatorOptions::default() }).await?;
    let pid = op.webhook_pid().context("the webhook runs")?;
    let webhook = Arc::new(Endpoint::new(op.webhook_addr(), op.ca_pem())?);
    let stop = Arc::new(AtomicBool::new(false));

    let counts = Arc::new(Counts::default());
    let body = Arc::new(review("4f1b0e0e-0000-4000-8000-00000000b16b", 3_000_000));
    let large: Vec<_> = (0..8)
        .map(|_| tokio::spawn(large_sender(webhook.clone(), body.clone(), counts.clone(), stop.clone())))
        .collect();
    let drips: Vec<_> =
        (0..300).map(|_| tokio::spawn(drip(webhook.clone(), Duration::from_millis(500), stop.clone()))).collect();
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Ok((now, _)) = rss(pid) {
                    peak = peak.max(now);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };

    // The API server's own traffic, throughout: every dry-run create calls the mutating and validating webhooks.
    let websites: Api<Website> = Api::namespaced(cp.client(), "default");
    let dry_run = PostParams { dry_run: true, ..PostParams::default() };
    let mut sent = 0;
    let mut failures = Vec::new();
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        let mut website = Website::new(
            &format!("flood-{sent}"),
            WebsiteSpec::new("https://github.com/luksa/kubia-website-example.git"),
        );
        website.metadata.namespace = Some("default".into());
        match websites.create(&dry_run, &website).await {
            Ok(created) if created.spec.replicas == Some(1) => {}
            Ok(created) => failures.push(format!("#{sent}: not defaulted: {:?}", created.spec)),
            Err(error) => failures.push(format!("#{sent}: {error}")),
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut still_open = 0;
    for d in drips {
        if d.await?.is_none() {
            still_open += 1;
        }
    }
    for l in large {
        l.await?;
    }
    let peak = sampler.await?;

    ensure!(failures.is_empty(), "{} of {sent} admissions failed during the flood: {failures:#?}", failures.len());
    ensure!(sent >= 20, "only {sent} admissions were tried");
    ensure!(peak > 0 && peak < CHART_MEMORY_LIMIT, "the webhook's memory peaked at {}", mib(peak));
    // Each slow-drip connection started at once and the webhook gives a body 3 s: 12 s later, none may be open.
    ensure!(still_open == 0, "{still_open} of 300 slow-drip connections were still open after 12 s");
    let answered = counts.ok.load(Ordering::Relaxed) + counts.refused.load(Ordering::Relaxed);
    ensure!(answered > 0, "the large senders got no answer at all: {counts:?}");
    eprintln!(
        "flood: {sent} admissions, 0 failed; webhook peak {}; {still_open} of 300 slow-drip connections open at the end; large: {counts:?}",
        mib(peak)
    );
    Ok(())
}
