//! `website-bench`: the speed suite of the Website operator (`scripts/bench.sh speed [--short]`).
//!
//! It measures, on this machine's loopback, the webhook's throughput and idle memory, the latency the webhooks
//! add at a real kube-apiserver, and the controller's convergence time, writes, memory and idle writes; each next
//! to a baseline measured in the same run (a minimal webhook on the same stack, no webhook, a client making only
//! the writes the controller must make). It prints every figure, then a table with the ratios and targets. It
//! asserts nothing: a missed target is a `no` in the table. See `website_bench::speed` for what each figure is.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use website_bench::speed::{self, Section, Settings};

#[derive(Parser, Debug)]
#[command(name = "website-bench", about = "The Website operator's speed suite: figures against same-run baselines")]
struct Args {
    /// The small version (wrk 2 s x 1 round, 50 latency samples, N=100 then 300 Websites, 5 s idle), to prove the
    /// command works; explicit flags below still override it.
    #[arg(long)]
    short: bool,
    /// Directory of the measured binaries: website-webhook, website-controller, minimal-webhook (scripts/bench.sh
    /// gives the dist profile's; default: this executable's).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The wrk binary.
    #[arg(long, default_value = "wrk")]
    wrk: PathBuf,
    /// `--workers` of both webhooks.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Seconds of each wrk run (default 10; --short 2).
    #[arg(long)]
    wrk_seconds: Option<u64>,
    /// Rounds of each alternating comparison (default 3; --short 1).
    #[arg(long)]
    rounds: Option<usize>,
    /// Latency samples per configuration (default 1000; --short 50).
    #[arg(long)]
    latency_samples: Option<usize>,
    /// Websites at the first convergence, N (default 1000; --short 100).
    #[arg(long)]
    websites: Option<usize>,
    /// Websites added after it for the memory growth (default 2 N).
    #[arg(long)]
    more_websites: Option<usize>,
    /// Seconds of the idle window (default 30; --short 5).
    #[arg(long)]
    idle_seconds: Option<u64>,
    /// Longest wait for a convergence, in seconds.
    #[arg(long, default_value_t = 900)]
    convergence_timeout_seconds: u64,
    /// The sections to run, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    sections: Vec<Section>,
}

impl Args {
    fn settings(self) -> Result<Settings> {
        let short = self.short;
        let pick = |given: Option<u64>, full: u64, small: u64| given.unwrap_or(if short { small } else { full });
        let bin_dir = match self.bin_dir {
            Some(dir) => dir,
            None => website_bench::release_binary("website-bench")?.parent().map(PathBuf::from).unwrap_or_default(),
        };
        let websites = self.websites.unwrap_or(if short { 100 } else { 1000 });
        let latency_samples = self.latency_samples.unwrap_or(if short { 50 } else { 1000 });
        let sections = if self.sections.is_empty() {
            vec![Section::WebhookMemory, Section::Throughput, Section::Latency, Section::Controller]
        } else {
            self.sections
        };
        Ok(Settings {
            short,
            bin_dir,
            wrk: self.wrk,
            workers: self.workers,
            wrk_duration: Duration::from_secs(pick(self.wrk_seconds, 10, 2)),
            rounds: self.rounds.unwrap_or(if short { 1 } else { 3 }).max(1),
            latency_samples,
            latency_warmup: if short { 10 } else { 30 },
            websites,
            more_websites: self.more_websites.unwrap_or(2 * websites),
            idle: Duration::from_secs(pick(self.idle_seconds, 30, 5)),
            convergence_timeout: Duration::from_secs(self.convergence_timeout_seconds),
            sections,
        })
    }
}

#[tokio::main]
async fn main() -> Result<ExitCode> {
    let settings = Args::parse().settings()?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // On a signal the run is dropped, and with it every process it started (webhooks, controller, control planes).
    let signal = tokio::select! {
        result = speed::run(&settings) => {
            // A section that could not be measured fails the command: it proves nothing about the figures.
            let rows = result?;
            let failed: Vec<&str> =
                rows.iter().filter(|row| row.measured.starts_with("error:")).map(|row| row.figure.as_str()).collect();
            if failed.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("website-bench: not measured: {}", failed.join("; "));
            return Ok(ExitCode::FAILURE);
        }
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = terminate.recv() => "terminated",
    };
    eprintln!("website-bench: {signal}; stopped what the run had started");
    Ok(ExitCode::from(130))
}
