//! The README's `run` command (`scripts/run.sh` runs `website-local up`): it brings the whole operator up on a
//! local control plane, refuses to start twice, and `stop` takes everything down again.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use website_e2e::operator::{binary, workspace_root};
use website_e2e::{Assets, ChildProcess, eventually};

fn website_local(state: &Path, args: &[&str]) -> Result<std::process::Output> {
    Command::new(binary("website-local")?)
        .args(args)
        .env("WEBSITE_LOCAL_DIR", state)
        .output()
        .context("failed to run website-local")
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Result<std::process::Output> {
    let assets = Assets::locate()?;
    Command::new(&assets.kubectl)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(args)
        .output()
        .context("kubectl")
}

#[tokio::test]
async fn up_serves_the_operator_refuses_a_second_start_and_stop_takes_it_all_down() -> Result<()> {
    let state = tempfile::tempdir()?;
    let logs = tempfile::tempdir()?;
    let mut command = Command::new(binary("website-local")?);
    command.arg("up").env("WEBSITE_LOCAL_DIR", state.path());
    let mut up = ChildProcess::spawn("website-local", command, logs.path())?;
    let kubeconfig = state.path().join("kubeconfig");
    up.wait_until("it wrote its kubeconfig", Duration::from_secs(120), || {
        let exists = kubeconfig.is_file();
        async move { exists }
    })
    .await?;
    let printed = up.log_tail(40);
    ensure!(printed.contains(&format!("export KUBECONFIG={}", kubeconfig.display())), "{printed}");

    // The webhook refuses a bad Website; a good one gets defaults and a Deployment from the controller.
    let examples = workspace_root().join("examples");
    let bad = kubectl(&kubeconfig, &["create", "-f", &examples.join("invalid/file-scheme.yaml").to_string_lossy()])?;
    let stderr = String::from_utf8_lossy(&bad.stderr);
    ensure!(!bad.status.success() && stderr.contains("spec.gitRepo: local paths are not supported"), "{stderr}");
    let good = kubectl(&kubeconfig, &["create", "-f", &examples.join("website.yaml").to_string_lossy()])?;
    ensure!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
    eventually(Duration::from_secs(60), async || {
        let out = kubectl(&kubeconfig, &["get", "deployment", "kubia", "-o", "name"])?;
        ensure!(out.status.success(), "no Deployment yet: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    })
    .await?;

    let api_server = api_server(&kubeconfig)?;

    // A second start says so instead of starting twice.
    let again = website_local(state.path(), &["up"])?;
    let stderr = String::from_utf8_lossy(&again.stderr);
    ensure!(!again.status.success(), "a second `up` started");
    ensure!(stderr.contains(&format!("already running (pid {})", up.pid())), "{stderr}");
    let status = website_local(state.path(), &["status"])?;
    ensure!(String::from_utf8_lossy(&status.stdout).contains(&format!("running (pid {})", up.pid())));

    // `stop` ends `up`, which stops what it started and removes its files.
    let stop = website_local(state.path(), &["stop"])?;
    ensure!(stop.status.success(), "{}", String::from_utf8_lossy(&stop.stderr));
    let exit = up.stop(Duration::from_secs(30))?;
    ensure!(exit.success(), "`up` exited with {exit}:\n{}", up.log_tail(20));
    ensure!(!kubeconfig.exists(), "the kubeconfig of a stopped instance was left behind");
    ensure!(std::net::TcpStream::connect(api_server).is_err(), "the API server at {api_server} still answers");
    let status = website_local(state.path(), &["status"])?;
    ensure!(String::from_utf8_lossy(&status.stdout).trim() == "not running");
    Ok(())
}

/// The `host:port` of the API server a kubeconfig (JSON, as the harness writes it) points at.
fn api_server(kubeconfig: &Path) -> Result<std::net::SocketAddr> {
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(kubeconfig)?)?;
    let server = config["clusters"][0]["cluster"]["server"].as_str().context("the kubeconfig names no server")?;
    let host_port = server.trim_start_matches("https://").trim_end_matches('/');
    host_port.parse().with_context(|| format!("server {server:?} is not https://IP:PORT"))
}
