//! Leader election between two controller processes on a real API server: one reconciles at a time, a killed
//! leader is replaced after the lease duration, and a leader that stops gracefully is replaced at once.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, ensure};
use website_e2e::control_plane::free_port;
use website_e2e::operator::{binary, http_get_status, sample, scrape, sum_of};
use website_e2e::process::ChildProcess;
use website_e2e::{ControlPlane, ControlPlaneOptions, Operator, OperatorOptions, eventually};

const LEASE: &str = "website-controller-e2e";
const LEASE_SECONDS: u64 = 10;
const RECONCILES: &str = r#"website_controller_reconciles_total{result="success"}"#;

/// A controller process competing for [`LEASE`] as `identity`.
struct Replica {
    identity: &'static str,
    health: SocketAddr,
    process: ChildProcess,
}

impl Replica {
    async fn start(cp: &ControlPlane, identity: &'static str) -> Result<Self> {
        let health = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port()?);
        let mut command = Command::new(binary("website-controller")?);
        command
            .arg(format!("--health-addr={health}"))
            .arg(format!("--leader-election-lease={LEASE}"))
            .arg("--leader-election-namespace=default")
            .arg(format!("--leader-election-identity={identity}"))
            .arg(format!("--leader-election-lease-seconds={LEASE_SECONDS}"))
            .arg("--leader-election-renew-grace-seconds=3")
            .env("RUST_LOG", "info,website_controller=debug");
        let mut process = cp.spawn(identity, command)?;
        process.wait_for_port(health, Duration::from_secs(30)).await?;
        // Leader or standby, it is ready.
        process
            .wait_until("ready", Duration::from_secs(30), async || {
                http_get_status(health, "/readyz").await.is_ok_and(|status| status == 200)
            })
            .await?;
        Ok(Self { identity, health, process })
    }

    async fn metric(&self, series: &str) -> Result<f64> {
        Ok(sample(&scrape(self.health).await?, series).unwrap_or(0.0))
    }

    /// Every request other than GET this process sent to the API server, whatever the resource.
    async fn writes(&self) -> Result<f64> {
        Ok(sum_of(&scrape(self.health).await?, "website_controller_api_writes_total"))
    }

    /// Waits until this process has counted `at_least` successful reconciles.
    async fn wait_for_reconciles(&self, at_least: f64) -> Result<()> {
        eventually(Duration::from_secs(15), async || {
            let reconciles = self.metric(RECONCILES).await?;
            ensure!(reconciles >= at_least, "{} leads but counted {reconciles} reconciles", self.identity);
            Ok(())
        })
        .await
    }

    async fn leading(&self) -> Result<bool> {
        Ok(self.metric("website_controller_leader").await? == 1.0)
    }
}

async fn holder(cp: &ControlPlane) -> Result<Option<String>> {
    let out = cp
        .kubectl(&["get", "lease", LEASE, "-n", "default", "-o", "jsonpath={.spec.holderIdentity}"])
        .await?
        .ensure_success()?;
    Ok(Some(out.trim().to_owned()).filter(|h| !h.is_empty()))
}

async fn create_website(cp: &ControlPlane, name: &str) -> Result<Instant> {
    let website = format!(
        r#"{{"apiVersion":"extensions.example.com/v1","kind":"Website","metadata":{{"name":"{name}","namespace":"default"}},"spec":{{"gitRepo":"https://github.com/luksa/kubia-website-example.git"}}}}"#
    );
    cp.kubectl_with_stdin(&["create", "-f", "-"], Some(&website)).await?.ensure_success()?;
    Ok(Instant::now())
}

/// How long after `since` the Website `name` got its Deployment.
async fn reconciled_after(cp: &ControlPlane, name: &str, since: Instant) -> Result<Duration> {
    eventually(Duration::from_secs(60), async || {
        cp.kubectl(&["get", "deployment", name, "-n", "default"]).await?.ensure_success()?;
        Ok(())
    })
    .await
    .with_context(|| format!("the Website {name} got no Deployment"))?;
    Ok(since.elapsed())
}

#[tokio::test]
async fn one_replica_reconciles_a_killed_leader_is_replaced_after_its_lease_and_a_stopped_one_at_once() -> Result<()> {
    let cp = ControlPlane::start(ControlPlaneOptions { controller_manager: false, ..ControlPlaneOptions::default() })
        .await?;
    let _op = Operator::start(&cp, OperatorOptions { webhook: false, controller: false, ..OperatorOptions::default() })
        .await?;
    let a = Replica::start(&cp, "replica-a").await?;
    let b = Replica::start(&cp, "replica-b").await?;
    let (mut leader, mut standby) = eventually(Duration::from_secs(30), async || {
        let name = holder(&cp).await?.ok_or_else(|| anyhow!("the Lease has no holder"))?;
        ensure!(name == a.identity || name == b.identity, "held by {name}");
        Ok(name)
    })
    .await
    .map(|name| if name == a.identity { (a, b) } else { (b, a) })?;

    // Only the holder reconciles; the other is ready, and idle.
    let since = create_website(&cp, "first").await?;
    reconciled_after(&cp, "first", since).await?;
    ensure!(leader.leading().await? && !standby.leading().await?, "both or neither lead");
    // The Deployment is written before the reconcile ends (the status comes after it), so its count follows.
    leader.wait_for_reconciles(1.0).await?;
    ensure!(standby.metric(RECONCILES).await? == 0.0, "{} reconciled while standing by", standby.identity);
    // Both use the same field manager, so the API server cannot tell them apart: their own counts of the requests
    // they sent can. The standby has written nothing at all, not even to the Lease.
    ensure!(standby.writes().await? == 0.0, "{} wrote while standing by", standby.identity);
    ensure!(leader.writes().await? >= 4.0, "{} leads but wrote {} times", leader.identity, leader.writes().await?);
    ensure!(http_get_status(standby.health, "/readyz").await? == 200, "the standby is not ready");

    // Killed: the standby takes over once the lease runs out.
    leader.process.kill()?;
    let since = create_website(&cp, "after-a-crash").await?;
    let took = reconciled_after(&cp, "after-a-crash", since).await?;
    eprintln!("after kill -9 of {}, {} reconciled a new Website in {took:?}", leader.identity, standby.identity);
    ensure!(took <= Duration::from_secs(LEASE_SECONDS + 8), "the takeover after a crash took {took:?}");
    ensure!(holder(&cp).await?.as_deref() == Some(standby.identity), "the Lease did not pass on");
    standby.wait_for_reconciles(1.0).await?;
    (leader, standby) = (standby, Replica::start(&cp, "replica-c").await?);

    // Stopped gracefully: it releases the Lease, and the standby takes over well within a lease term.
    ensure!(!standby.leading().await?, "the new replica leads beside the leader");
    ensure!(standby.writes().await? == 0.0, "{} wrote while standing by", standby.identity);
    let stopped = leader.process.stop(Duration::from_secs(10))?;
    ensure!(
        stopped.success(),
        "{} exited with {stopped} on SIGTERM:\n{}",
        leader.identity,
        leader.process.log_tail(20)
    );
    let since = create_website(&cp, "after-a-stop").await?;
    let took = reconciled_after(&cp, "after-a-stop", since).await?;
    eprintln!("after SIGTERM to {}, {} reconciled a new Website in {took:?}", leader.identity, standby.identity);
    ensure!(took < Duration::from_secs(LEASE_SECONDS / 2), "the takeover after a graceful stop took {took:?}");
    ensure!(holder(&cp).await?.as_deref() == Some(standby.identity), "the Lease did not pass on");
    Ok(())
}
