//! Test environment for the Website operator: a real Kubernetes control plane for end-to-end
//! tests and for running everything locally, in the spirit of controller-runtime's envtest.
//!
//! Start with [`ControlPlane::start`]: it runs etcd, kube-apiserver and kube-controller-manager on
//! free loopback ports in a temporary directory, waits until the API server is ready, and gives
//! you a [`kube::Client`], an admin kubeconfig file and [`kubectl`](ControlPlane::kubectl) /
//! [`helm`](ControlPlane::helm) runners. Dropping it stops every process and deletes the directory,
//! also when a test panics (the panic message is then followed by the end of each process's log).
//!
//! ```no_run
//! use std::time::Duration;
//! use website_e2e::{ControlPlane, ControlPlaneOptions, eventually};
//!
//! # async fn example() -> anyhow::Result<()> {
//! let cp = ControlPlane::start(ControlPlaneOptions::default()).await?;
//! cp.apply_crd("crds/website.yaml").await?;
//! cp.kubectl(&["delete", "websites", "--all", "-A", "--wait=false"]).await?.ensure_success()?;
//! eventually(Duration::from_secs(30), async || {
//!     let left = cp.kubectl(&["get", "websites", "-A", "-o", "name"]).await?.ensure_success()?;
//!     anyhow::ensure!(left.trim().is_empty(), "websites left: {left}");
//!     Ok(())
//! })
//! .await?;
//! # Ok(())
//! # }
//! ```
//!
//! The operator's own binaries are started with [`ControlPlane::spawn`] (or
//! [`ChildProcess::spawn`]), which logs to the state directory and stops them on drop;
//! [`ChildProcess::wait_for_port`] waits until they listen.
//!
//! The binaries come from `scripts/provision.sh`, never from Rust: see [`assets`] for where they
//! are looked up (`KUBEBUILDER_ASSETS` first). Set `WEBSITE_E2E_KEEP_STATE=1` to keep the state
//! directories (logs, kubeconfig) of finished control planes.
//!
//! The webhook's self-managed certificates (the Helm chart installed, webhook replicas run as its ServiceAccount)
//! have helpers of their own in [`self_managed`].
//!
//! `website-api`, the aggregated API server, is registered by [`aggregated::AggregatedApi`] on a control plane
//! started with the aggregation layer on.
//!
//! Processes cannot outlive the test binary: besides drop, a watchdog kills them when the test
//! binary dies in any way (see [`process`]).

pub mod aggregated;
pub mod assets;
pub mod control_plane;
pub mod helm;
pub mod node;
pub mod operator;
pub mod process;
pub mod self_managed;

use std::time::Duration;

pub use anyhow::Result;
pub use assets::Assets;
pub use control_plane::{
    ControlPlane, ControlPlaneOptions, FRONT_PROXY_CLIENT, FrontProxy, KubectlOutput, client_from_kubeconfig, free_port,
};
pub use operator::{Operator, OperatorOptions};
pub use process::ChildProcess;

/// Interval between the attempts of [`eventually`] (it starts at a tenth of this).
const EVENTUALLY_MAX_INTERVAL: Duration = Duration::from_millis(500);

/// Installs rustls' ring crypto provider as the process default, unless one is installed already.
/// [`ControlPlane::start`] calls it; call it yourself before building TLS configurations otherwise.
pub fn install_crypto_provider() {
    // An error only means that a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Calls `check` until it returns `Ok`, for at most `timeout`, and returns that value.
///
/// Attempts are spaced 50 ms apart at first, growing to 500 ms. An attempt still running at the
/// deadline is abandoned. Use it for every assertion about something that happens asynchronously
/// (the controller reconciling, the garbage collector deleting): fail inside `check` with a message
/// describing what was seen instead, and that message ends up in the timeout error.
///
/// # Errors
///
/// Fails when `check` has not returned `Ok` within `timeout`, with the last error of `check`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut interval = EVENTUALLY_MAX_INTERVAL / 10;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let last_error = match tokio::time::timeout_at(deadline, check()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(err)) => err,
            Err(_) => anyhow::anyhow!("the last attempt was still running at the deadline"),
        };
        if tokio::time::Instant::now() + interval >= deadline {
            return Err(last_error.context(format!("condition not met within {timeout:?} ({attempts} attempts)")));
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(EVENTUALLY_MAX_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::bail;

    #[tokio::test]
    async fn eventually_returns_the_first_success() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let value = eventually(Duration::from_secs(5), async || {
            let calls = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            if calls < 3 {
                bail!("not yet");
            }
            Ok(calls)
        })
        .await
        .expect("succeeds on the third call");
        assert_eq!(value, 3);
    }

    #[tokio::test]
    async fn eventually_reports_the_last_error_on_timeout() {
        let err = eventually(Duration::from_millis(300), async || -> Result<()> { bail!("replicas were 0") })
            .await
            .expect_err("never succeeds");
        let msg = format!("{err:#}");
        assert!(msg.contains("condition not met within 300ms"), "{msg}");
        assert!(msg.contains("replicas were 0"), "{msg}");
    }

    #[tokio::test]
    async fn eventually_abandons_a_hanging_attempt_at_the_deadline() {
        let started = tokio::time::Instant::now();
        let err = eventually(Duration::from_millis(200), async || -> Result<()> {
            std::future::pending::<()>().await;
            Ok(())
        })
        .await
        .expect_err("never finishes");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(format!("{err:#}").contains("still running at the deadline"));
    }
}
