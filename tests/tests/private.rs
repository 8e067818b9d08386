//! Private repositories end to end: a Website that refers to a Secret is admitted only for users who may read that
//! Secret (the webhook asks the real API server with a SubjectAccessReview), and its Deployment mounts the Secret
//! into git-sync only, with git-sync's own flags.
//!
//! Users are impersonated with `kubectl --as`, so that the API server's RBAC judges them:
//! - `author` may create and change Websites, and get only the Secret `other-creds`;
//! - `owner` may do the same, and get `site-creds` and `site-key` too.

use std::time::Duration;

use anyhow::{Result, ensure};
use serde_json::{Value, json};
use website_e2e::operator::{create_namespace, sample, scrape};
use website_e2e::{ControlPlane, ControlPlaneOptions, Operator, OperatorOptions, eventually};

const NS: &str = "private";
const TIMEOUT: Duration = Duration::from_secs(60);

async fn setup() -> Result<(ControlPlane, Operator)> {
    let cp = ControlPlane::start(ControlPlaneOptions { controller_manager: false, ..ControlPlaneOptions::default() })
        .await?;
    let op = Operator::start(&cp, OperatorOptions::default()).await?;
    create_namespace(&cp, NS).await?;
    let secrets = [
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
            "metadata": {"name": "site-creds", "namespace": NS},
            "stringData": {"username": "site-bot", "password": "s3cret-token"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/ssh-auth",
            "metadata": {"name": "site-key", "namespace": NS},
            "stringData": {"ssh-privatekey": "-----BEGIN OPENSSH PRIVATE KEY-----\n...\n", "known_hosts": "github.com ssh-ed25519 AAAA"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "other-creds", "namespace": NS},
            "stringData": {"username": "x", "password": "y"}}),
    ];
    let role = |name: &str, secrets: &[&str]| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name, "namespace": NS},
            "rules": [
                {"apiGroups": ["extensions.example.com"], "resources": ["websites"],
                 "verbs": ["get", "list", "create", "update", "patch"]},
                {"apiGroups": [""], "resources": ["secrets"], "resourceNames": secrets, "verbs": ["get"]}]})
    };
    let binding = |user: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": user, "namespace": NS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": user},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})
    };
    let objects = secrets.into_iter().chain([
        role("author", &["other-creds"]),
        binding("author"),
        role("owner", &["site-creds", "site-key"]),
        binding("owner"),
    ]);
    for object in objects {
        cp.kubectl_with_stdin(&["create", "-f", "-"], Some(&object.to_string())).await?.ensure_success()?;
    }
    Ok((cp, op))
}

fn website(name: &str, git_repo: &str, kind: &str, secret: &str) -> String {
    json!({"apiVersion": "extensions.example.com/v1", "kind": "Website", "metadata": {"name": name, "namespace": NS},
        "spec": {"gitRepo": git_repo, "credentials": {"type": kind, "secretName": secret}}})
    .to_string()
}

/// `kubectl create` of `manifest` as `user`.
async fn create_as(cp: &ControlPlane, user: &str, manifest: &str) -> Result<website_e2e::KubectlOutput> {
    cp.kubectl_with_stdin(&["create", &format!("--as={user}"), "-f", "-"], Some(manifest)).await
}

async fn exists(cp: &ControlPlane, name: &str) -> Result<bool> {
    let out = cp.kubectl(&["get", "website", name, "-n", NS, "-o", "name", "--ignore-not-found"]).await?;
    Ok(!out.ensure_success()?.trim().is_empty())
}

async fn deployment(cp: &ControlPlane, name: &str) -> Result<Value> {
    eventually(TIMEOUT, async || {
        let out = cp.kubectl(&["get", "deployment", name, "-n", NS, "-o", "json"]).await?.ensure_success()?;
        Ok(serde_json::from_str::<Value>(&out)?)
    })
    .await
}

fn container<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
}

/// What the Deployment gives git-sync of the Secret, and that the web server gets none of it.
fn check_mounted(deployment: &Value, secret: &str, flags: &[&str]) -> Result<()> {
    let pod = &deployment["spec"]["template"]["spec"];
    let volume = pod["volumes"].as_array().and_then(|vs| vs.iter().find(|v| v["secret"]["secretName"] == secret));
    let volume = volume.ok_or_else(|| anyhow::anyhow!("no volume of Secret {secret}: {pod}"))?;
    ensure!(volume["secret"]["defaultMode"] == 0o440, "the Secret's files are not group-read-only: {volume}");
    let git_sync = container(deployment, "git-sync");
    let mount = git_sync["volumeMounts"].as_array().and_then(|ms| ms.iter().find(|m| m["name"] == volume["name"]));
    ensure!(
        mount.is_some_and(|m| m["mountPath"] == "/etc/git-secret" && m["readOnly"] == true),
        "git-sync does not mount the Secret read-only at /etc/git-secret: {git_sync}"
    );
    let args = strings(&git_sync["args"]);
    for flag in flags {
        ensure!(args.iter().any(|a| a == flag), "git-sync lacks {flag}: {args:?}");
    }
    let web = container(deployment, "web");
    ensure!(
        web["volumeMounts"].as_array().into_iter().flatten().all(|m| m["name"] != volume["name"])
            && !web.to_string().contains(secret),
        "the web server gets the Secret: {web}"
    );
    Ok(())
}

#[tokio::test]
async fn only_a_user_who_may_read_the_secret_can_point_a_website_at_it() -> Result<()> {
    let (cp, op) = setup().await?;
    let private = website("shop", "https://github.com/org/private-site.git", "HTTPS", "site-creds");

    // A user who may create Websites, but not read the Secret, is refused, with a message that says why.
    let out = create_as(&cp, "author", &private).await?;
    let stderr = out.stderr.trim();
    ensure!(!out.success(), "the author created a Website with a Secret they may not read");
    ensure!(
        stderr.contains("denied the request: spec.credentials.secretName: user \"author\" may not get Secret \"site-creds\" in namespace \"private\"")
            && stderr.contains("accepted: a Secret the user may get"),
        "unexpected refusal: {stderr}"
    );
    ensure!(!exists(&cp, "shop").await?, "a refused Website was stored");
    // Server-side dry run judges the same way.
    let out = cp.kubectl_with_stdin(&["create", "--as=author", "--dry-run=server", "-f", "-"], Some(&private)).await?;
    ensure!(!out.success() && out.stderr.contains("may not get Secret"), "dry run: {}", out.stderr);
    // The Secret the author may read is accepted for them: the check is about that Secret, by name.
    let own = website("own", "https://github.com/org/own-site.git", "HTTPS", "other-creds");
    create_as(&cp, "author", &own).await?.ensure_success()?;

    // The user who may read it creates the Website, and the Deployment mounts the Secret into git-sync only.
    create_as(&cp, "owner", &private).await?.ensure_success()?;
    let d = deployment(&cp, "shop").await?;
    check_mounted(&d, "site-creds", &["--password-file=/etc/git-secret/password"])?;
    let user = container(&d, "git-sync")["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == "GITSYNC_USERNAME"))
        .cloned()
        .unwrap_or_default();
    ensure!(
        user["valueFrom"]["secretKeyRef"] == json!({"name": "site-creds", "key": "username", "optional": false}),
        "git-sync's user name does not come from the Secret: {user}"
    );

    // Confused deputy through an update: the author may change the owner's Website, but not send its credentials
    // elsewhere, nor swap in another Secret; changing anything else is fine.
    let patch_as = async |user: &str, patch: Value| {
        let patch = patch.to_string();
        cp.kubectl(&["patch", "website", "shop", "-n", NS, &format!("--as={user}"), "--type=merge", "-p", &patch]).await
    };
    for patch in [
        json!({"spec": {"gitRepo": "https://collector.example.com/loot.git"}}),
        json!({"spec": {"ref": "refs/heads/exfiltrate"}}),
        json!({"spec": {"credentials": {"secretName": "site-key", "type": "HTTPS"}}}),
    ] {
        let out = patch_as("author", patch.clone()).await?;
        ensure!(!out.success() && out.stderr.contains("user \"author\" may not get Secret"), "{patch}: {}", out.stderr);
    }
    let spec = cp.kubectl(&["get", "website", "shop", "-n", NS, "-o", "jsonpath={.spec.gitRepo} {.spec.ref}"]).await?;
    ensure!(spec.ensure_success()? == "https://github.com/org/private-site.git HEAD", "a refused update was stored");
    patch_as("author", json!({"spec": {"replicas": 2}})).await?.ensure_success()?;
    // The owner may move it.
    patch_as("owner", json!({"spec": {"ref": "v2"}})).await?.ensure_success()?;

    // Every check was counted.
    let metrics = scrape(op.webhook_health_addr()).await?;
    let count = |result: &str| {
        sample(&metrics, &format!("website_webhook_secret_access_reviews_total{{result=\"{result}\"}}")).unwrap_or(0.0)
    };
    ensure!(count("denied") >= 5.0 && count("allowed") >= 3.0 && count("unanswered") == 0.0, "{metrics}");
    Ok(())
}

#[tokio::test]
async fn credentials_must_match_the_remote_and_never_travel_unencrypted() -> Result<()> {
    let (cp, _op) = setup().await?;
    let cases = [
        (
            website("mismatch-ssh", "https://github.com/org/private-site.git", "SSH", "site-key"),
            "spec.credentials.type: SSH credentials cannot be used with an https:// remote; accepted: type HTTPS with an https:// remote, type SSH with an ssh:// or [user@]host:path remote",
        ),
        (
            website("mismatch-https", "git@github.com:org/private-site.git", "HTTPS", "site-creds"),
            "spec.credentials.type: HTTPS credentials cannot be used with an ssh:// or [user@]host:path remote",
        ),
        (
            website("cleartext", "http://git.example.com/org/private-site.git", "HTTPS", "site-creds"),
            "spec.credentials: credentials are never sent to an unencrypted http:// remote",
        ),
        (
            website("bad-name", "https://github.com/org/private-site.git", "HTTPS", "Site_Creds"),
            "spec.credentials.secretName: \"Site_Creds\" is not a Secret name",
        ),
    ];
    for (manifest, message) in cases {
        // As the owner, who may read both Secrets: the rules refuse these whoever asks.
        let out = create_as(&cp, "owner", &manifest).await?;
        ensure!(!out.success() && out.stderr.contains(message), "expected {message:?}, got: {}", out.stderr);
    }
    // The SSH key goes to git-sync with host key checking on, against the Secret's known_hosts.
    let ssh = website("ssh", "git@github.com:org/private-site.git", "SSH", "site-key");
    create_as(&cp, "owner", &ssh).await?.ensure_success()?;
    let d = deployment(&cp, "ssh").await?;
    check_mounted(
        &d,
        "site-key",
        &[
            "--ssh-key-file=/etc/git-secret/ssh-privatekey",
            "--ssh-known-hosts=true",
            "--ssh-known-hosts-file=/etc/git-secret/known_hosts",
        ],
    )?;
    // Made public again: the Secret leaves the Deployment.
    let patch = json!({"spec": {"gitRepo": "https://github.com/luksa/kubia-website-example.git", "credentials": null}});
    cp.kubectl(&["patch", "website", "ssh", "-n", NS, "--type=merge", "-p", &patch.to_string()])
        .await?
        .ensure_success()?;
    eventually(TIMEOUT, async || {
        let d = deployment(&cp, "ssh").await?;
        ensure!(!d.to_string().contains("site-key") && !d.to_string().contains("git-secret"), "still mounted: {d}");
        Ok(())
    })
    .await?;
    Ok(())
}
