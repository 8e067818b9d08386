//! Helpers for testing the Helm chart in `charts/website-operator`: running helm without a cluster, acting as a
//! ServiceAccount, and asking the API server what a ServiceAccount may do.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::operator::workspace_root;
use crate::{Assets, ControlPlane, KubectlOutput};

/// Name of the chart, and the release name the tests use.
pub const CHART_NAME: &str = "website-operator";

/// Path of the chart.
pub fn chart_dir() -> PathBuf {
    workspace_root().join("charts").join(CHART_NAME)
}

/// The chart path as a command-line argument.
pub fn chart_arg() -> String {
    chart_dir().to_string_lossy().into_owned()
}

/// Runs helm without a cluster (`lint`, `template`), with its cache, configuration and data directories in a
/// temporary directory.
///
/// # Errors
/// When helm is not provisioned or cannot be run; a failing helm is reported in the output.
pub async fn helm_offline(args: &[&str]) -> Result<KubectlOutput> {
    let assets = Assets::locate()?;
    let helm = assets.helm.ok_or_else(|| anyhow!("helm is not provisioned: run `scripts/provision.sh`"))?;
    let home = tempfile::tempdir().context("failed to create helm's home")?;
    let output = tokio::process::Command::new(&helm)
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        // No kubeconfig: `template` and `lint` must not need a cluster.
        .env("KUBECONFIG", home.path().join("no-kubeconfig"))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("failed to run {}", helm.display()))?;
    Ok(KubectlOutput {
        command: format!("helm {}", args.join(" ")),
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// `system:serviceaccount:<namespace>:<name>`, the user name of a ServiceAccount.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// Whether `user` may `verb` the `resource`, asked through `kubectl auth can-i`. `resource` is as kubectl names it
/// (`secrets/my-secret`, `deployments.apps`), optionally with `#subresource` (`websites.example.com#status`);
/// `namespace` `None` asks about all namespaces.
///
/// # Errors
/// When kubectl answers neither yes nor no.
pub async fn can_i(cp: &ControlPlane, user: &str, verb: &str, resource: &str, namespace: Option<&str>) -> Result<bool> {
    let (resource, subresource) = match resource.split_once('#') {
        Some((resource, sub)) => (resource, Some(format!("--subresource={sub}"))),
        None => (resource, None),
    };
    let as_user = format!("--as={user}");
    let mut args = vec!["auth", "can-i", verb, resource, as_user.as_str()];
    // A ServiceAccount's requests also carry its groups, which RBAC rules may name.
    args.extend(["--as-group=system:serviceaccounts", "--as-group=system:authenticated"]);
    args.extend(subresource.as_deref());
    match namespace {
        Some(ns) => args.extend(["-n", ns]),
        None => args.push("--all-namespaces"),
    }
    let out = cp.kubectl(&args).await?;
    match out.stdout.trim() {
        "yes" => Ok(true),
        "no" => Ok(false),
        other => bail!("`{}` answered {other:?}: {}", out.command, out.stderr.trim()),
    }
}

/// Writes a kubeconfig for the control plane that authenticates with `token`, and returns its path.
///
/// # Errors
/// When the file cannot be written.
pub fn write_token_kubeconfig(cp: &ControlPlane, dir: &Path, name: &str, token: &str) -> Result<PathBuf> {
    let ca_path = dir.join("apiserver-ca.crt");
    std::fs::write(&ca_path, cp.ca_pem()).with_context(|| format!("failed to write {}", ca_path.display()))?;
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "website-e2e", "cluster": {
            "server": cp.server_url(),
            "certificate-authority": ca_path,
        }}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "website-e2e", "user": name}}],
        "current-context": name,
    });
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)
        .with_context(|| format!("failed to write {}", path.display()))?;
    Ok(path)
}

/// A token of the ServiceAccount, from the TokenRequest API (`kubectl create token`).
///
/// # Errors
/// When the API server does not issue one.
pub async fn service_account_token(cp: &ControlPlane, namespace: &str, name: &str) -> Result<String> {
    let token = cp.kubectl(&["create", "token", name, "-n", namespace, "--duration=1h"]).await?.ensure_success()?;
    Ok(token.trim().to_owned())
}
