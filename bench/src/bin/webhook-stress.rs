//! `webhook-stress`: the admission webhook under the attack of a hostile client, from this machine's loopback.
//!
//! For `--duration-secs`, it runs at once:
//! - `--large` connections, each sending `--large-bytes` AdmissionReviews back to back as fast as it can;
//! - `--drips` connections that send a request's headers, announcing a large body, then drip the body one byte at
//!   a time;
//! - one well-behaved client sending a 1.6 KB review every `--probe-interval-ms`, as the API server would.
//!
//! It prints the webhook's idle and peak memory, what the large senders got, how long the webhook kept each
//! slow-drip connection open, and how many of the well-behaved client's requests failed (no HTTP 200 with an
//! allowed AdmissionReview within `--probe-timeout-ms`). It asserts nothing: it is a measuring tool.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use tokio::sync::Mutex;
use website_bench::attack::{Counts, drip, exchange, large_sender};
use website_bench::{Endpoint, Webhook, mib, release_binary, review, rss};

#[derive(Parser, Debug)]
#[command(name = "webhook-stress", about = "Measures the admission webhook under hostile load")]
struct Args {
    /// The webhook binary (default: the release build in the target directory).
    #[arg(long)]
    webhook: Option<PathBuf>,
    /// Seconds the attack lasts.
    #[arg(long, default_value_t = 20)]
    duration_secs: u64,
    /// Connections sending large reviews back to back.
    #[arg(long, default_value_t = 64)]
    large: usize,
    /// Size of each large review.
    #[arg(long, default_value_t = 3_000_000)]
    large_bytes: usize,
    /// Connections that drip their body.
    #[arg(long, default_value_t = 1000)]
    drips: usize,
    /// Milliseconds between two bytes of a dripped body.
    #[arg(long, default_value_t = 500)]
    drip_interval_ms: u64,
    /// Milliseconds between two requests of the well-behaved client.
    #[arg(long, default_value_t = 200)]
    probe_interval_ms: u64,
    /// How long the well-behaved client waits for an answer: the API server's webhook timeout.
    #[arg(long, default_value_t = 5000)]
    probe_timeout_ms: u64,
    /// Extra flags for the webhook.
    #[arg(last = true)]
    webhook_args: Vec<String>,
}

struct Probe {
    sent: u64,
    failed: u64,
    latencies: Vec<Duration>,
    failures: Vec<String>,
}

async fn well_behaved(webhook: Arc<Endpoint>, args: Arc<Args>, stop: Arc<AtomicBool>) -> Probe {
    let body = review("705ab4f5-6393-11e8-b7cc-42010a800002", 1600);
    let mut probe = Probe { sent: 0, failed: 0, latencies: Vec::new(), failures: Vec::new() };
    let mut connection = None;
    let timeout = Duration::from_millis(args.probe_timeout_ms);
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep_until(next.into()).await;
        next += Duration::from_millis(args.probe_interval_ms);
        probe.sent += 1;
        let started = Instant::now();
        let attempt = tokio::time::timeout(timeout, async {
            // The API server keeps connections alive and opens a new one when needed.
            if connection.is_none() {
                connection = Some(webhook.connect().await?);
            }
            let stream = connection.as_mut().expect("connected above");
            exchange(stream, &body).await
        })
        .await;
        match attempt {
            Ok(Ok(200)) => probe.latencies.push(started.elapsed()),
            outcome => {
                connection = None;
                probe.failed += 1;
                if probe.failures.len() < 5 {
                    probe.failures.push(format!("after {:?}: {outcome:?}", started.elapsed()));
                }
            }
        }
    }
    probe
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() - 1) * p / 100]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Arc::new(Args::parse());
    let binary = match &args.webhook {
        Some(path) => path.clone(),
        None => release_binary("website-webhook")?,
    };
    let process = Webhook::start(&binary, &args.webhook_args)?;
    let pid = process.pid();
    let webhook = process.endpoint.clone();
    // Warm up: one request, then the idle reading.
    let mut warm = webhook.connect().await?;
    exchange(&mut warm, &review("warm-up", 1600)).await?;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle, _) = rss(pid)?;

    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(Mutex::new(idle));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok((now, _)) = rss(pid) {
                    let mut p = peak.lock().await;
                    *p = (*p).max(now);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let probe = tokio::spawn(well_behaved(webhook.clone(), args.clone(), stop.clone()));
    let counts = Arc::new(Counts::default());
    let body = Arc::new(review("4f1b0e0e-0000-4000-8000-00000000b16b", args.large_bytes));
    let large: Vec<_> = (0..args.large)
        .map(|_| tokio::spawn(large_sender(webhook.clone(), body.clone(), counts.clone(), stop.clone())))
        .collect();
    let interval = Duration::from_millis(args.drip_interval_ms);
    let drips: Vec<_> = (0..args.drips).map(|_| tokio::spawn(drip(webhook.clone(), interval, stop.clone()))).collect();

    tokio::time::sleep(Duration::from_secs(args.duration_secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut closed: Vec<Duration> = Vec::new();
    let mut open = 0usize;
    for d in drips {
        match d.await {
            Ok(Some(t)) => closed.push(t),
            _ => open += 1,
        }
    }
    for l in large {
        let _ = l.await;
    }
    let probe = probe.await?;
    let _ = sampler.await;
    let (after, hwm) = rss(pid)?;
    let peak = *peak.lock().await;

    closed.sort();
    let mut latencies = probe.latencies.clone();
    latencies.sort();
    println!(
        "webhook-stress: {} s; {} connections sending {} B reviews; {} slow-drip connections (1 byte / {} ms); \
         1 well-behaved client every {} ms",
        args.duration_secs, args.large, args.large_bytes, args.drips, args.drip_interval_ms, args.probe_interval_ms
    );
    println!("webhook: {} {}", binary.display(), args.webhook_args.join(" "));
    println!("memory: idle {}, peak {} (VmHWM {}), after {}", mib(idle), mib(peak), mib(hwm), mib(after));
    println!(
        "large reviews: {} answered 200, {} refused for capacity (429/503), {} too large (413), {} other, \
         {} connection errors",
        counts.ok.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
        counts.too_large.load(Ordering::Relaxed),
        counts.other_status.load(Ordering::Relaxed),
        counts.io_errors.load(Ordering::Relaxed)
    );
    println!(
        "slow-drip: {} of {} closed by the webhook (median after {:?}, slowest after {:?}); {} still open at the end",
        closed.len(),
        args.drips,
        percentile(&closed, 50),
        closed.last().copied().unwrap_or_default(),
        open
    );
    println!(
        "well-behaved client: {} sent, {} failed; latency p50 {:?}, p99 {:?}, max {:?}",
        probe.sent,
        probe.failed,
        percentile(&latencies, 50),
        percentile(&latencies, 99),
        latencies.last().copied().unwrap_or_default()
    );
    for failure in &probe.failures {
        println!("  failure {failure}");
    }
    Ok(())
}
