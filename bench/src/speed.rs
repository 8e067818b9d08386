//! The speed suite behind `scripts/bench.sh speed`: every figure is measured next to a baseline in the same run,
//! on the same machine, and printed with the ratio (or difference) between them and the target it is judged by.
//! Nothing here asserts: a missed target is a `no` in the final table, a failed measurement an `error` row.
//!
//! | section | figure | baseline |
//! |---|---|---|
//! | [`webhook_memory`] | the webhook's RSS after one request and 2 s idle | the same of `minimal-webhook` |
//! | [`throughput`] | `/validate` and `/mutate` requests per second under wrk | `minimal-webhook`, rounds alternating |
//! | [`latency`] | p50/p99 of a dry-run Website create at kube-apiserver | no webhook registered; `minimal-webhook` |
//! | [`controller`] | time until N Websites have converged; writes; RSS; idle changes | a client making the same writes |

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource as _, ResourceExt as _};
use website_controller::resources;
use website_controller::settings::ChildConfig;
use website_controller::status::desired_status;
use website_crd::Website;

use crate::cluster::{self, Admission, Cluster, NAMESPACE, Tracker};
use crate::stats::{median, mib, ms, ms_delta, percentile, ratio, secs};
use crate::wrk::Wrk;
use crate::{Certificates, Webhook, cpu_time, load_average, post, review, rss};

/// Size of the AdmissionReview bodies sent to the webhooks.
pub const REVIEW_BYTES: usize = 1600;
/// Keep-alive connections of the throughput test.
pub const WRK_CONNECTIONS: usize = 16;
/// Concurrent writers: of the baseline client, and of the creation of Websites (the controller's default
/// `--concurrency` is the same).
pub const WRITERS: usize = 8;
/// Writes a Website needs at least: its ConfigMap, Deployment and Service created, and its status applied.
pub const FLOOR_WRITES_PER_WEBSITE: u64 = 4;
/// Field manager of the baseline client's writes.
const FLOOR_MANAGER: &str = "website-bench-floor";
const MIB: u64 = 1024 * 1024;

/// The parts of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// The webhooks' idle memory.
    WebhookMemory,
    /// The webhooks' requests per second.
    Throughput,
    /// Latency the webhooks add at the API server, and the controller's memory with no Website.
    Latency,
    /// The controller's convergence, writes, memory and idle writes.
    Controller,
}

/// What to run, and how much of it.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Whether this is the small CI version (the printed header says so).
    pub short: bool,
    /// The directory holding `website-webhook`, `website-controller` and `minimal-webhook`.
    pub bin_dir: PathBuf,
    /// The wrk binary.
    pub wrk: PathBuf,
    /// `--workers` of both webhooks.
    pub workers: usize,
    /// Length of one wrk run.
    pub wrk_duration: Duration,
    /// Rounds of each alternating comparison.
    pub rounds: usize,
    /// Latency samples per configuration, over all rounds.
    pub latency_samples: usize,
    /// Requests not recorded after each switch of configuration: in a first round that records nothing, then a
    /// third of it before each recorded round.
    pub latency_warmup: usize,
    /// Websites at the first convergence (N).
    pub websites: usize,
    /// Websites created after it, for the memory growth.
    pub more_websites: usize,
    /// The window in which idle writes are counted.
    pub idle: Duration,
    /// Longest wait for a convergence.
    pub convergence_timeout: Duration,
    /// The sections to run.
    pub sections: Vec<Section>,
}

/// One line of the final table.
#[derive(Clone, Debug)]
pub struct Row {
    /// What is measured.
    pub figure: String,
    /// The figure.
    pub measured: String,
    /// Its baseline, measured in the same run.
    pub baseline: String,
    /// The ratio or difference of the two, or the figure itself where there is no baseline.
    pub value: String,
    /// The target.
    pub target: String,
    /// Whether the target is met; `None` where there is no target.
    pub met: Option<bool>,
}

impl Row {
    fn new(figure: impl Into<String>, measured: String, baseline: String, value: String) -> Self {
        Self { figure: figure.into(), measured, baseline, value, target: "-".into(), met: None }
    }

    fn target(mut self, target: &str, met: bool) -> Self {
        self.target = target.into();
        self.met = Some(met);
        self
    }

    fn error(figure: &str, error: &anyhow::Error) -> Self {
        Self::new(figure, format!("error: {error:#}"), "-".into(), "-".into())
    }
}

/// Runs the sections of `settings` and prints each figure as it is measured, then the table.
///
/// # Errors
/// Only when the run cannot start at all (a binary or wrk missing); a section that fails gives `error` rows.
pub async fn run(settings: &Settings) -> Result<Vec<Row>> {
    let started = Instant::now();
    let binary = |name: &str| -> Result<PathBuf> {
        let path = settings.bin_dir.join(name);
        if !path.is_file() {
            bail!("{} not found: build the dist binaries first (scripts/bench.sh speed does)", path.display());
        }
        Ok(path)
    };
    let bins = Binaries {
        webhook: binary("website-webhook")?,
        controller: binary("website-controller")?,
        minimal: binary("minimal-webhook")?,
    };
    print_header(settings, &bins);
    let wants = |s: Section| settings.sections.contains(&s);
    let mut rows = Vec::new();

    let webhooks = if wants(Section::WebhookMemory) || wants(Section::Throughput) || wants(Section::Latency) {
        Some(Webhooks::start(settings, &bins)?)
    } else {
        None
    };
    if let Some(webhooks) = &webhooks {
        if wants(Section::WebhookMemory) {
            section("5. webhook idle memory");
            rows.extend(webhook_memory(webhooks).await.unwrap_or_else(|e| vec![Row::error("5. webhook idle RSS", &e)]));
        }
        if wants(Section::Throughput) {
            section("1. webhook throughput (wrk)");
            let wrk = Wrk::new(&settings.wrk)?;
            rows.extend(
                throughput(settings, webhooks, &wrk)
                    .await
                    .unwrap_or_else(|e| vec![Row::error("1. webhook throughput", &e)]),
            );
        }
    }
    let mut idle_controller_rss = None;
    if let (Some(webhooks), true) = (&webhooks, wants(Section::Latency)) {
        section("2. latency added at kube-apiserver (dry-run creates)");
        match latency(settings, webhooks, &bins).await {
            Ok((latency_rows, rss)) => {
                rows.extend(latency_rows);
                idle_controller_rss = rss;
            }
            Err(e) => rows.push(Row::error("2. API create latency", &e)),
        }
    }
    drop(webhooks);
    if wants(Section::Controller) {
        section("3, 4, 6. controller convergence, writes, memory and idle writes");
        if let Err(e) = controller(settings, &bins, idle_controller_rss, &mut rows).await {
            rows.push(Row::error("3, 4, 6. controller", &e));
        }
    }
    println!("\nrun took {}; load average at the end: {}", secs(started.elapsed()), load_average());
    print_table(settings, &rows);
    Ok(rows)
}

struct Binaries {
    webhook: PathBuf,
    controller: PathBuf,
    minimal: PathBuf,
}

fn section(title: &str) {
    println!("\n== {title}");
}

fn print_header(settings: &Settings, bins: &Binaries) {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned()))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or_else(|| "?".into(), |kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0));
    println!(
        "website-bench speed{}: {cpus} CPUs ({model}), {memory} RAM; loopback only; builds measured from {}",
        if settings.short { " --short (small sizes: figures not comparable with the targets)" } else { "" },
        settings.bin_dir.display()
    );
    println!(
        "webhooks: --workers={}; wrk: 1 thread, {WRK_CONNECTIONS} connections, {REVIEW_BYTES} B review, {} s x {} \
         round(s); latency: {} samples per configuration; controller: N={} then {} Websites; idle window {} s",
        settings.workers,
        settings.wrk_duration.as_secs(),
        settings.rounds,
        settings.latency_samples,
        settings.websites,
        settings.websites + settings.more_websites,
        settings.idle.as_secs()
    );
    println!("binaries: {}, {}, {}", bins.webhook.display(), bins.minimal.display(), bins.controller.display());
    println!(
        "load average at start: {} (other work on the machine moves the figures; baselines share it)",
        load_average()
    );
}

/// Prints the final table, with a `|` between columns.
pub fn print_table(settings: &Settings, rows: &[Row]) {
    let header = ["figure", "measured", "baseline", "ratio or value", "target", "met?"];
    // In the order of the figures' numbers; rows of one figure keep the order they were measured in.
    let mut rows: Vec<&Row> = rows.iter().collect();
    rows.sort_by_key(|r| r.figure.split('.').next().and_then(|n| n.parse::<u32>().ok()).unwrap_or(u32::MAX));
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            };
            [r.figure.clone(), r.measured.clone(), r.baseline.clone(), r.value.clone(), r.target.clone(), met.into()]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |row: &[String]| {
        let padded: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("| {} |", padded.join(" | "));
    };
    println!(
        "\n== summary{}",
        if settings.short { " (--short: small sizes, not comparable with the targets)" } else { "" }
    );
    line(&header.map(String::from));
    println!("|{}|", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|"));
    for row in &cells {
        line(row);
    }
}

/// The real webhook and the minimal one, on the same certificates and worker count, logging to a temporary
/// directory.
struct Webhooks {
    real: Webhook,
    minimal: Webhook,
    ca_pem: String,
    _logs: tempfile::TempDir,
}

impl Webhooks {
    fn start(settings: &Settings, bins: &Binaries) -> Result<Self> {
        let certs = Arc::new(Certificates::generate()?);
        let logs = tempfile::Builder::new().prefix("website-bench-").tempdir()?;
        let args = vec![format!("--workers={}", settings.workers)];
        let log = |name: &str| -> Result<Stdio> { Ok(std::fs::File::create(logs.path().join(name))?.into()) };
        // Both at their binaries' default log level.
        let real = Webhook::start_with(&bins.webhook, certs.clone(), &args, "info", log("website-webhook.log")?)?;
        let minimal = Webhook::start_with(&bins.minimal, certs.clone(), &args, "info", log("minimal-webhook.log")?)?;
        Ok(Self { real, minimal, ca_pem: certs.ca_pem.clone(), _logs: logs })
    }

    fn both(&self) -> [(&'static str, &Webhook); 2] {
        [("website-webhook", &self.real), ("minimal-webhook", &self.minimal)]
    }
}

/// Sends one review to `path` and checks that the answer allows it for the same uid.
async fn check_allows(webhook: &Webhook, path: &str) -> Result<()> {
    let uid = "0d9c4a52-5d70-4c4e-9a0e-1f1e1f1e1f1e";
    let (status, body) = post(&webhook.endpoint, path, &review(uid, REVIEW_BYTES)).await?;
    let answer: serde_json::Value = serde_json::from_str(&body).with_context(|| format!("not JSON: {body}"))?;
    let allowed = answer.pointer("/response/allowed").and_then(serde_json::Value::as_bool) == Some(true);
    let same_uid = answer.pointer("/response/uid").and_then(serde_json::Value::as_str) == Some(uid);
    if status != 200 || !allowed || !same_uid {
        bail!("{path} answered {status} {body}: expected 200, allowed, uid {uid}");
    }
    Ok(())
}

/// Figure 5: RSS after one request and 2 s idle.
async fn webhook_memory(webhooks: &Webhooks) -> Result<Vec<Row>> {
    for (_, webhook) in webhooks.both() {
        check_allows(webhook, "/validate").await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (real, _) = rss(webhooks.real.pid())?;
    let (minimal, _) = rss(webhooks.minimal.pid())?;
    println!("VmRSS after one request and 2 s idle: website-webhook {}, minimal-webhook {}", mib(real), mib(minimal));
    Ok(vec![
        Row::new(
            "5. webhook idle RSS (1 request, 2 s idle)",
            mib(real),
            mib(minimal),
            ratio(real as f64, minimal as f64),
        )
        .target("<= 10 MiB", real <= 10 * MIB),
    ])
}

/// Figure 1: requests per second of `/validate` and `/mutate`, alternating with the minimal webhook.
async fn throughput(settings: &Settings, webhooks: &Webhooks, wrk: &Wrk) -> Result<Vec<Row>> {
    let body = review("705ab4f5-6393-11e8-b7cc-42010a800002", REVIEW_BYTES);
    let script = wrk.post_script("review", &body)?;
    let mut rows = Vec::new();
    for path in ["/validate", "/mutate"] {
        for (_, webhook) in webhooks.both() {
            check_allows(webhook, path).await?;
        }
        // On /validate, also the minimal webhook's /static: the same stack without parsing the body.
        let mut contenders: Vec<(&str, &Webhook, &str)> =
            webhooks.both().into_iter().map(|(name, w)| (name, w, path)).collect();
        if path == "/validate" {
            contenders.push(("minimal-webhook /static (no parsing)", &webhooks.minimal, "/static"));
        }
        let mut rates = vec![Vec::new(); contenders.len()];
        let mut efficiency = vec![Vec::new(); contenders.len()];
        for round in 1..=settings.rounds {
            for (i, (name, webhook, route)) in contenders.iter().enumerate() {
                let url = format!("{}{route}", webhook.url());
                let cpu_before = cpu_time(webhook.pid())?;
                let report = wrk.run(&url, &script, 1, WRK_CONNECTIONS, settings.wrk_duration).await?;
                let cpu = cpu_time(webhook.pid())?.saturating_sub(cpu_before);
                let per_cpu_second = report.requests as f64 / cpu.as_secs_f64().max(0.01);
                let p50 = report.p50.map(ms).unwrap_or_default();
                let p99 = report.p99.map(ms).unwrap_or_default();
                let mut line = format!(
                    "{path} round {round}: {name}: {:.0} req/s (latency p50 {p50}, p99 {p99}); server CPU {:.0}% of a \
                     core, {per_cpu_second:.0} req per CPU-second; load {}",
                    report.requests_per_sec,
                    100.0 * cpu.as_secs_f64() / settings.wrk_duration.as_secs_f64(),
                    load_average()
                );
                if report.non_2xx > 0 || report.socket_errors > 0 {
                    line += &format!(" [{} non-2xx, {} socket errors]", report.non_2xx, report.socket_errors);
                }
                println!("{line}");
                rates[i].push(report.requests_per_sec);
                efficiency[i].push(per_cpu_second);
            }
            if let [real, minimal, ..] = &rates[..] {
                println!("{path} round {round}: ratio {}", ratio(real[round - 1], minimal[round - 1]));
            }
        }
        let medians: Vec<f64> = rates.iter().map(|r| median(r).unwrap_or(0.0)).collect();
        let figure = format!("1. {path} req/s (median of {})", settings.rounds);
        let row = Row::new(
            &figure,
            format!("{:.0}", medians[0]),
            format!("{:.0} (minimal)", medians[1]),
            ratio(medians[0], medians[1]),
        );
        rows.push(if path == "/validate" { row.target(">= 0.85×", medians[0] >= 0.85 * medians[1]) } else { row });
        let per_cpu: Vec<f64> = efficiency.iter().map(|r| median(r).unwrap_or(0.0)).collect();
        rows.push(Row::new(
            format!("1. {path} req per server CPU-second"),
            format!("{:.0}", per_cpu[0]),
            format!("{:.0} (minimal)", per_cpu[1]),
            ratio(per_cpu[0], per_cpu[1]),
        ));
        if let Some(fixed) = medians.get(2) {
            rows.push(Row::new(
                "1. /validate req/s vs no-parse server",
                format!("{:.0}", medians[0]),
                format!("{fixed:.0} (/static)"),
                ratio(medians[0], *fixed),
            ));
        }
    }
    Ok(rows)
}

/// Figure 2: p50 and p99 of a dry-run create through kube-apiserver with no webhook, with `website-webhook` and
/// with `minimal-webhook` registered, in alternating rounds. Then the controller's RSS with no Website, on the same
/// control plane.
async fn latency(settings: &Settings, webhooks: &Webhooks, bins: &Binaries) -> Result<(Vec<Row>, Option<u64>)> {
    let cluster = Cluster::start(false).await?;
    let cp = &cluster.cp;
    let websites = cluster.websites();
    let configurations = [
        ("no webhook", Admission::None, String::new()),
        ("website-webhook", Admission::Validating, webhooks.real.url()),
        ("minimal-webhook", Admission::AllowAll, webhooks.minimal.url()),
    ];
    let rounds = settings.rounds.max(1);
    // The samples spread over the rounds, the first ones taking one more when they do not divide evenly.
    let per_round =
        |round: usize| settings.latency_samples / rounds + usize::from(round <= settings.latency_samples % rounds);
    let probe = cluster::website("latency-probe");
    let dry_run = PostParams { dry_run: true, ..PostParams::default() };
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); configurations.len()];
    // Round 0 records nothing: a control plane that has just started (and has just installed the CRD) has
    // background work of its own for a few seconds, which would land in the first configuration's samples.
    for round in 0..=settings.rounds {
        // Each round starts with another configuration, so that none of them always runs right after the same
        // one (or right after a switch away from no webhook): over 3 rounds, each takes each place once.
        let shift = round.saturating_sub(1) % configurations.len();
        for i in (0..configurations.len()).map(|k| (k + shift) % configurations.len()) {
            let (name, admission, url) = &configurations[i];
            cluster::use_webhooks(cp, *admission, url, &webhooks.ca_pem).await?;
            let warmup = if round == 0 { settings.latency_warmup } else { settings.latency_warmup / 3 };
            for _ in 0..warmup {
                websites.create(&dry_run, &probe).await.with_context(|| format!("dry-run create with {name}"))?;
            }
            if round == 0 {
                continue;
            }
            let per_round = per_round(round);
            for _ in 0..per_round {
                let started = Instant::now();
                websites.create(&dry_run, &probe).await.with_context(|| format!("dry-run create with {name}"))?;
                samples[i].push(started.elapsed());
            }
            let this_round = &samples[i][samples[i].len() - per_round..];
            let (p50, p99) = (median(this_round).unwrap_or_default(), percentile(this_round, 99.0).unwrap_or_default());
            let (slowest, at) = this_round.iter().enumerate().map(|(i, d)| (*d, i)).max().unwrap_or_default();
            println!(
                "round {round}: {name}: p50 {}, p99 {}, slowest {} (sample {} of {per_round}); load {}",
                ms(p50),
                ms(p99),
                ms(slowest),
                at + 1,
                load_average()
            );
        }
    }
    let p = |i: usize, q: f64| percentile(&samples[i], q).unwrap_or_default();
    for (i, (name, ..)) in configurations.iter().enumerate() {
        println!(
            "{name}: {} samples, p50 {}, p99 {}, max {}",
            samples[i].len(),
            ms(p(i, 50.0)),
            ms(p(i, 99.0)),
            ms(p(i, 100.0))
        );
    }
    let (none50, none99) = (p(0, 50.0), p(0, 99.0));
    let added = |i: usize, q: f64, base: Duration| p(i, q).saturating_sub(base);
    let rows = vec![
        Row::new(
            "2. API create p50 added by website-webhook",
            ms(p(1, 50.0)),
            format!("{} (none)", ms(none50)),
            ms_delta(p(1, 50.0), none50),
        )
        .target("<= +0.5 ms", added(1, 50.0, none50) <= Duration::from_micros(500)),
        Row::new(
            "2. API create p99 added by website-webhook",
            ms(p(1, 99.0)),
            format!("{} (none)", ms(none99)),
            ms_delta(p(1, 99.0), none99),
        )
        .target("<= +2 ms", added(1, 99.0, none99) <= Duration::from_millis(2)),
        Row::new(
            "2. API create p50 added by minimal-webhook (floor)",
            ms(p(2, 50.0)),
            format!("{} (none)", ms(none50)),
            ms_delta(p(2, 50.0), none50),
        ),
        Row::new(
            "2. API create p99 added by minimal-webhook (floor)",
            ms(p(2, 99.0)),
            format!("{} (none)", ms(none99)),
            ms_delta(p(2, 99.0), none99),
        ),
    ];
    cluster::use_webhooks(cp, Admission::None, "", &webhooks.ca_pem).await?;
    let idle = match idle_controller(&cluster, bins).await {
        Ok(rss) => Some(rss),
        Err(e) => {
            println!("controller RSS with no Website: error: {e:#}");
            None
        }
    };
    Ok((rows, idle))
}

/// Starts the controller on `cluster` and returns its RSS once it is ready and 2 s idle.
async fn idle_controller(cluster: &Cluster, bins: &Binaries) -> Result<u64> {
    let started = Instant::now();
    let mut controller = start_controller(cluster, bins)?;
    wait_ready(&mut controller.process, controller.health).await?;
    let ready = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss, _) = rss(controller.process.pid())?;
    println!("controller with no Website: ready after {}, VmRSS {} after 2 s idle", secs(ready), mib(rss));
    Ok(rss)
}

struct Controller {
    process: website_e2e::ChildProcess,
    health: std::net::SocketAddr,
}

/// Starts `website-controller` with its default flags, but for a loopback health address, and its default log
/// level; it logs to the control plane's state directory.
fn start_controller(cluster: &Cluster, bins: &Binaries) -> Result<Controller> {
    let health = std::net::SocketAddr::from(([127, 0, 0, 1], crate::free_port()?));
    let mut command = Command::new(&bins.controller);
    command.arg(format!("--health-addr={health}")).env("RUST_LOG", "info");
    let process = cluster.cp.spawn("website-controller", command)?;
    Ok(Controller { process, health })
}

async fn wait_ready(process: &mut website_e2e::ChildProcess, health: std::net::SocketAddr) -> Result<()> {
    process
        .wait_until("ready (GET /readyz = 200)", Duration::from_secs(60), async || {
            matches!(website_e2e::operator::http_get_status(health, "/readyz").await, Ok(200))
        })
        .await
}

/// What one convergence run measured.
struct Convergence {
    elapsed: Duration,
    /// Write requests per Website until convergence (audit log).
    writes: f64,
    /// Changes per Website until convergence (watch events).
    changes: f64,
}

/// Figures 3, 4 and 6: the baseline client's convergence on one fresh control plane, then the controller's on
/// another, with its memory, its writes while idle, and its memory after 2 N more Websites.
async fn controller(settings: &Settings, bins: &Binaries, rss_at_zero: Option<u64>, rows: &mut Vec<Row>) -> Result<()> {
    let n = settings.websites;
    println!("Websites are created before the controller (or the baseline client) starts: the figure is then its own");
    println!("speed, not the creation rate, and the same for both (a restart or a failover with N Websites waiting).");

    let floor = match floor_convergence(settings).await {
        Ok(floor) => Some(floor),
        Err(e) => {
            rows.push(Row::error("3. baseline client convergence", &e));
            None
        }
    };

    let cluster = Cluster::start(true).await?;
    let audit = cluster.audit.clone().context("the control plane has an audit log")?;
    let websites = cluster.websites();
    let created = Instant::now();
    cluster::create_websites(&websites, 0..n, WRITERS).await?;
    println!("controller run: created {n} Websites in {}", secs(created.elapsed()));
    let tracker = Tracker::start(&cluster.cp.client()).await?;
    let (mark, before) = (audit.mark(), tracker.changes());
    let started = Instant::now();
    let mut controller = start_controller(&cluster, bins)?;
    let converged = match tracker.wait_converged(n, settings.convergence_timeout).await {
        Ok(at) => at,
        Err(e) => {
            println!("controller log:\n{}", controller.process.log_tail(20));
            return Err(e);
        }
    };
    let elapsed = converged.saturating_duration_since(started);
    let (mark_converged, changes) = (audit.mark(), tracker.changes().since(&before));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let requests = audit.since(mark)?;
    let after = audit.since(mark_converged)?;
    let to_converge = requests.minus(&after);
    let per = |x: u64| x as f64 / n as f64;
    let ours = Convergence { elapsed, writes: per(to_converge.writes()), changes: per(changes.total()) };
    println!(
        "controller: {n} Websites converged {} after it started; per Website: {:.2} writes, {:.2} gets, {:.2} changes \
         seen by watches ({changes}); {} failed requests (gets answered 404 not counted), {} events; in the 2 s after: {} writes, {} gets",
        secs(elapsed),
        ours.writes,
        per(to_converge.gets()),
        ours.changes,
        to_converge.failed(),
        to_converge.events(),
        after.writes(),
        after.gets()
    );
    println!("  requests to converge: {}", to_converge.breakdown());
    println!("  answered 400 or more: {}", to_converge.failure_breakdown());
    let (rss_n, _) = rss(controller.process.pid())?;
    println!("controller VmRSS with {n} converged Websites: {}", mib(rss_n));

    match floor {
        Some(floor) => {
            rows.push(
                Row::new(
                    format!("3. controller convergence, {n} Websites"),
                    secs(ours.elapsed),
                    format!("{} (client)", secs(floor.elapsed)),
                    ratio(ours.elapsed.as_secs_f64(), floor.elapsed.as_secs_f64()),
                )
                .target("<= 1.3×", ours.elapsed.as_secs_f64() <= 1.3 * floor.elapsed.as_secs_f64()),
            );
            rows.push(Row::new(
                "3. write requests per Website to converge",
                format!("{:.2}", ours.writes),
                format!("{:.2} (client; {FLOOR_WRITES_PER_WEBSITE} needed)", floor.writes),
                ratio(ours.writes, floor.writes),
            ));
            rows.push(Row::new(
                "3. changes per Website to converge (watch)",
                format!("{:.2}", ours.changes),
                format!("{:.2} (client)", floor.changes),
                ratio(ours.changes, floor.changes),
            ));
        }
        None => rows.push(Row::new(
            format!("3. controller convergence, {n} Websites"),
            secs(ours.elapsed),
            "error".into(),
            "-".into(),
        )),
    }
    rows.push(
        Row::new(
            format!("4. controller RSS at {n} Websites"),
            mib(rss_n),
            rss_at_zero.map_or_else(|| "-".into(), |r| format!("{} (0 Websites)", mib(r))),
            rss_at_zero.map_or_else(|| "-".into(), |r| ratio(rss_n as f64, r as f64)),
        )
        .target("<= 25 MiB", rss_n <= 25 * MIB),
    );

    // Figure 6: nothing changes; count what is written anyway.
    let (mark, before) = (audit.mark(), tracker.changes());
    tokio::time::sleep(settings.idle).await;
    let idle_changes = tracker.changes().since(&before);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_requests = audit.since(mark)?;
    println!(
        "idle {} s with {n} Websites: {} changes ({idle_changes}); {} write requests, {} gets, {} events",
        settings.idle.as_secs(),
        idle_changes.total(),
        idle_requests.writes(),
        idle_requests.gets(),
        idle_requests.events()
    );
    rows.push(
        Row::new(
            format!("6. changes while idle, {} s, {n} Websites", settings.idle.as_secs()),
            idle_changes.total().to_string(),
            "-".into(),
            format!("{} write requests", idle_requests.writes()),
        )
        .target("0", idle_changes.total() == 0),
    );

    // Figure 4: the growth of memory per Website.
    let more = settings.more_websites;
    let total = n + more;
    let started = Instant::now();
    cluster::create_websites(&websites, n..total, WRITERS).await?;
    let converged = tracker.wait_converged(total, settings.convergence_timeout).await?;
    println!(
        "{more} more Websites created and converged {} after the first was created",
        secs(converged.saturating_duration_since(started))
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_total, hwm) = rss(controller.process.pid())?;
    let growth_kib = (rss_total as f64 - rss_n as f64) / 1024.0 / more.max(1) as f64;
    println!(
        "controller VmRSS with {total} Websites: {} (peak {}); {growth_kib:.2} KiB per Website",
        mib(rss_total),
        mib(hwm)
    );
    rows.push(
        Row::new(
            format!("4. controller RSS growth per Website, {n} -> {total}"),
            format!("{growth_kib:.2} KiB"),
            format!("{} at {total}", mib(rss_total)),
            format!("{growth_kib:.2} KiB"),
        )
        .target("<= 8 KiB", growth_kib <= 8.0),
    );
    if !controller.process.is_running() {
        println!("the controller exited:\n{}", controller.process.log_tail(20));
    }
    Ok(())
}

/// The baseline of figure 3: on a fresh control plane like the controller's, a client lists the Websites and, with
/// [`WRITERS`] tasks, makes for each exactly the writes the controller must make: creates its ConfigMap, Deployment
/// and Service (the controller's own builders, default settings) and applies its status.
async fn floor_convergence(settings: &Settings) -> Result<Convergence> {
    let n = settings.websites;
    let cluster = Cluster::start(true).await?;
    let audit = cluster.audit.clone().context("the control plane has an audit log")?;
    let created = Instant::now();
    cluster::create_websites(&cluster.websites(), 0..n, WRITERS).await?;
    println!("baseline run: created {n} Websites in {}", secs(created.elapsed()));
    let client = cluster.cp.client();
    let tracker = Tracker::start(&client).await?;
    let (mark, before) = (audit.mark(), tracker.changes());
    let started = Instant::now();
    direct_writes(&client).await?;
    let converged = tracker.wait_converged(n, settings.convergence_timeout).await?;
    let elapsed = converged.saturating_duration_since(started);
    let changes = tracker.changes().since(&before);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let requests = audit.since(mark)?;
    let per = |x: u64| x as f64 / n as f64;
    println!(
        "baseline client ({WRITERS} tasks, {FLOOR_WRITES_PER_WEBSITE} writes per Website: ConfigMap, Deployment, \
         Service, status): {n} Websites converged in {}; per Website {:.2} writes, {:.2} changes; {} failed",
        secs(elapsed),
        per(requests.writes()),
        per(changes.total()),
        requests.failed()
    );
    Ok(Convergence { elapsed, writes: per(requests.writes()), changes: per(changes.total()) })
}

async fn direct_writes(client: &Client) -> Result<()> {
    let websites: Api<Website> = Api::namespaced(client.clone(), NAMESPACE);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let config = ChildConfig::default();
    let create = PostParams { field_manager: Some(FLOOR_MANAGER.into()), ..PostParams::default() };
    let apply = PatchParams::apply(FLOOR_MANAGER).force();
    let list = websites.list(&ListParams::default()).await?;
    futures::stream::iter(list.items)
        .map(|website| {
            let (websites, config_maps, deployments, services) = (&websites, &config_maps, &deployments, &services);
            let (config, create, apply) = (&config, &create, &apply);
            async move {
                config_maps.create(create, &resources::web_config(&website, config)?).await?;
                let deployment = deployments.create(create, &resources::deployment(&website, config)?).await?;
                services.create(create, &resources::service(&website)?).await?;
                let url = resources::url(&website, config);
                let status = desired_status(&website, Some(&deployment), url, Time(Timestamp::now()));
                let patch = serde_json::json!({
                    "apiVersion": Website::api_version(&()),
                    "kind": Website::kind(&()),
                    "status": status,
                });
                websites.patch_status(&website.name_any(), apply, &Patch::Apply(&patch)).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(WRITERS)
        .try_for_each(|()| async { Ok(()) })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_with_a_target_says_whether_it_is_met() {
        let row = Row::new("x", "1".into(), "2".into(), ratio(1.0, 2.0)).target(">= 0.85×", false);
        assert_eq!(row.value, "0.50×");
        assert_eq!(row.met, Some(false));
        assert_eq!(Row::new("y", "1".into(), "-".into(), "1".into()).met, None);
    }

    #[test]
    fn stats_helpers_are_reexported_for_the_rows() {
        assert_eq!(crate::stats::secs(Duration::from_millis(1500)), "1.50 s");
    }
}
