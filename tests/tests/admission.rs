//! Admission end to end: kubectl against a real API server that calls the real webhook binary.

use std::time::Duration;

use anyhow::{Result, ensure};
use serde_json::Value;
use website_e2e::operator::{self, workspace_root};
use website_e2e::{ControlPlane, ControlPlaneOptions, Operator, OperatorOptions, eventually};

async fn setup() -> Result<(ControlPlane, Operator)> {
    let cp = ControlPlane::start(ControlPlaneOptions { controller_manager: false, ..ControlPlaneOptions::default() })
        .await?;
    let op = Operator::start(&cp, OperatorOptions { controller: false, ..OperatorOptions::default() }).await?;
    Ok((cp, op))
}

fn example(path: &str) -> String {
    workspace_root().join("examples").join(path).to_string_lossy().into_owned()
}

async fn get_json(cp: &ControlPlane, ns: &str, name: &str) -> Result<Value> {
    let out = cp.kubectl(&["get", "website", name, "-n", ns, "-o", "json"]).await?.ensure_success()?;
    Ok(serde_json::from_str(&out)?)
}

async fn count_websites(cp: &ControlPlane, ns: &str) -> Result<usize> {
    let out = cp.kubectl(&["get", "websites", "-n", ns, "-o", "name"]).await?.ensure_success()?;
    Ok(out.lines().filter(|l| !l.trim().is_empty()).count())
}

#[tokio::test]
async fn kubectl_create_refuses_each_malformed_git_repo_naming_the_field_and_the_rule() -> Result<()> {
    let (cp, _op) = setup().await?;
    // (manifest, what kubectl must say after "spec.gitRepo: "). The first two are refused by the API server's
    // schema check before the webhook is asked; the others by the webhook.
    let schema_cases = [
        ("invalid/missing-git-repo.yaml", "Required value"),
        ("invalid/empty-git-repo.yaml", "Invalid value: \"\": spec.gitRepo in body should be at least 1 chars long"),
    ];
    let webhook_cases = [
        ("invalid/local-path.yaml", "local paths are not supported"),
        ("invalid/file-scheme.yaml", "local paths are not supported"),
        ("invalid/ftp-scheme.yaml", "scheme \"ftp://\" is not supported"),
        ("invalid/ext-transport.yaml", "git transport helper \"ext::\" is not supported"),
        ("invalid/leading-dash.yaml", "must not start with '-'"),
        ("invalid/whitespace.yaml", "must not contain white space or control characters"),
        ("invalid/embedded-password.yaml", "must not embed a password"),
        ("invalid/no-host.yaml", "must name a host"),
        ("invalid/no-path.yaml", "must name a repository path after the host"),
        ("invalid/access-token.yaml", "must not embed a credential: the user name starting with \"ghp_\" looks like"),
        ("invalid/metadata-address.yaml", "host \"2852039166\" is 169.254.169.254, a link-local address"),
        ("invalid/loopback-host.yaml", "host \"127.1\" is 127.0.0.1, a loopback address"),
        ("invalid/uppercase-scheme.yaml", "scheme \"HTTPS://\" must be written in lowercase"),
        ("invalid/encoded-at.yaml", "must not contain '%' in the user, host or port"),
        ("invalid/bracketed-host.yaml", "may have '[' and ']' only around an IPv6 address host"),
    ];
    let mut failures = Vec::new();
    let all = schema_cases.iter().map(|c| (c, false)).chain(webhook_cases.iter().map(|c| (c, true)));
    for ((manifest, rule), from_webhook) in all {
        // Without kubectl's own schema check, which answers first once the CRD's OpenAPI is published: the
        // messages under test are the API server's and the webhook's.
        let out = cp.kubectl(&["create", "--validate=false", "-n", "default", "-f", &example(manifest)]).await?;
        let stderr = out.stderr.trim();
        let name = manifest.trim_start_matches("invalid/").trim_end_matches(".yaml");
        if out.success()
            || !stderr.starts_with(&format!("The Website \"{name}\" is invalid"))
            || !stderr.contains(&format!("spec.gitRepo: {rule}"))
        {
            failures.push(format!("{manifest}: exit {}, stderr: {stderr}", out.status));
        }
        // The webhook's refusals also say what is accepted.
        if from_webhook
            && !stderr.contains("accepted: an https://, http://, ssh:// or git:// URL with a host and a path")
        {
            failures.push(format!("{manifest}: no hint of what is accepted: {stderr}"));
        }
    }
    ensure!(failures.is_empty(), "kubectl did not refuse as expected:\n{}", failures.join("\n"));
    ensure!(count_websites(&cp, "default").await? == 0, "a refused Website was stored");
    Ok(())
}

#[tokio::test]
async fn kubectl_shows_every_violation_of_a_website_at_once() -> Result<()> {
    let (cp, _op) = setup().await?;
    let out = cp.kubectl(&["create", "-n", "default", "-f", &example("invalid/too-many-problems.yaml")]).await?;
    ensure!(!out.success(), "created: {}", out.stdout);
    let stderr = out.stderr;
    // The webhook answers like the API server's own validation, so kubectl lists one cause per line.
    ensure!(stderr.starts_with("The Website \"kubia.site\" is invalid"), "{stderr}");
    for fragment in [
        "metadata.name: \"kubia.site\" cannot name the website's Service",
        "spec.gitRepo: scheme \"ftp://\" is not supported",
        "spec.ref: must not start with '-'",
    ] {
        ensure!(stderr.contains(fragment), "missing {fragment:?} in: {stderr}");
    }
    let out = cp.kubectl(&["create", "-n", "default", "-f", &example("invalid/out-of-bounds.yaml")]).await?;
    ensure!(!out.success(), "created: {}", out.stdout);
    ensure!(out.stderr.contains("spec.replicas") && out.stderr.contains("spec.port"), "{}", out.stderr);
    Ok(())
}

#[tokio::test]
async fn kubectl_create_stores_every_default_and_keeps_explicit_values() -> Result<()> {
    let (cp, _op) = setup().await?;
    cp.kubectl(&["create", "-n", "default", "-f", &example("website.yaml")]).await?.ensure_success()?;
    let spec = get_json(&cp, "default", "kubia").await?["spec"].clone();
    ensure!(
        spec == serde_json::json!({
            "gitRepo": "https://github.com/luksa/kubia-website-example.git",
            "ref": "HEAD", "replicas": 1, "serviceType": "ClusterIP", "port": 80, "syncIntervalSeconds": 60
        }),
        "stored spec: {spec}"
    );
    // Explicit nulls, which the API server keeps, are defaulted by the mutating webhook.
    let nulls = r#"{"apiVersion":"extensions.example.com/v1","kind":"Website","metadata":{"name":"kubia-nulls"},"spec":{"gitRepo":"https://github.com/luksa/kubia-website-example.git","ref":null,"replicas":null,"serviceType":null,"port":null,"syncIntervalSeconds":null}}"#;
    cp.kubectl_with_stdin(&["create", "-n", "default", "-f", "-"], Some(nulls)).await?.ensure_success()?;
    let spec = get_json(&cp, "default", "kubia-nulls").await?["spec"].clone();
    ensure!(
        spec == serde_json::json!({
            "gitRepo": "https://github.com/luksa/kubia-website-example.git",
            "ref": "HEAD", "replicas": 1, "serviceType": "ClusterIP", "port": 80, "syncIntervalSeconds": 60
        }),
        "stored spec: {spec}"
    );
    cp.kubectl(&["create", "-n", "default", "-f", &example("website-full.yaml")]).await?.ensure_success()?;
    let spec = get_json(&cp, "default", "kubia-full").await?["spec"].clone();
    ensure!(
        spec == serde_json::json!({
            "gitRepo": "https://github.com/luksa/kubia-website-example.git",
            "ref": "master", "replicas": 2, "serviceType": "NodePort", "port": 8080, "syncIntervalSeconds": 300
        }),
        "stored spec: {spec}"
    );
    Ok(())
}

#[tokio::test]
async fn kubectl_apply_of_a_broken_update_is_refused_and_the_object_is_unchanged() -> Result<()> {
    let (cp, _op) = setup().await?;
    cp.kubectl(&["apply", "-n", "default", "-f", &example("website.yaml")]).await?.ensure_success()?;
    let before = get_json(&cp, "default", "kubia").await?;
    let broken = r#"{"apiVersion":"extensions.example.com/v1","kind":"Website","metadata":{"name":"kubia"},"spec":{"gitRepo":"ext::sh","replicas":3}}"#;
    let out = cp.kubectl_with_stdin(&["apply", "-n", "default", "-f", "-"], Some(broken)).await?;
    ensure!(!out.success(), "the broken update was applied: {}", out.stdout);
    ensure!(out.stderr.contains("spec.gitRepo: git transport helper \"ext::\" is not supported"), "{}", out.stderr);
    let after = get_json(&cp, "default", "kubia").await?;
    ensure!(before == after, "the stored object changed:\nbefore: {before}\nafter: {after}");
    Ok(())
}

#[tokio::test]
async fn http_repository_is_admitted_with_the_webhooks_warning() -> Result<()> {
    let (cp, _op) = setup().await?;
    let out = cp.kubectl(&["create", "-n", "default", "-f", &example("website-http.yaml")]).await?;
    ensure!(out.success(), "refused: {}", out.stderr);
    ensure!(
        out.stderr.contains(
            "Warning: spec.gitRepo: http://github.com/luksa/kubia-website-example.git is fetched without encryption"
        ),
        "no warning in: {}",
        out.stderr
    );
    ensure!(count_websites(&cp, "default").await? == 1);
    Ok(())
}

#[tokio::test]
async fn server_side_dry_run_gives_the_same_verdicts_and_persists_nothing() -> Result<()> {
    let (cp, _op) = setup().await?;
    let bad = cp
        .kubectl(&["create", "--dry-run=server", "-n", "default", "-f", &example("invalid/file-scheme.yaml")])
        .await?;
    ensure!(!bad.success(), "{}", bad.stdout);
    ensure!(bad.stderr.contains("spec.gitRepo: local paths are not supported"), "{}", bad.stderr);
    let good = cp
        .kubectl(&["create", "--dry-run=server", "-n", "default", "-f", &example("website.yaml"), "-o", "json"])
        .await?
        .ensure_success()?;
    let object: Value = serde_json::from_str(&good)?;
    ensure!(object["spec"]["replicas"] == 1 && object["spec"]["ref"] == "HEAD", "dry run was not defaulted: {object}");
    let warned =
        cp.kubectl(&["create", "--dry-run=server", "-n", "default", "-f", &example("website-http.yaml")]).await?;
    ensure!(warned.success() && warned.stderr.contains("fetched without encryption"), "{}", warned.stderr);
    ensure!(count_websites(&cp, "default").await? == 0, "a dry run persisted a Website");
    Ok(())
}

#[tokio::test]
async fn with_the_webhook_down_creates_fail_closed_outside_the_excluded_namespaces() -> Result<()> {
    let (cp, mut op) = setup().await?;
    op.stop_webhook()?;
    let out = cp.kubectl(&["create", "-n", "default", "-f", &example("website.yaml")]).await?;
    ensure!(!out.success(), "created while the webhook was down: {}", out.stdout);
    ensure!(
        out.stderr.contains("failed calling webhook") && out.stderr.contains("connection refused"),
        "unclear error: {}",
        out.stderr
    );
    ensure!(count_websites(&cp, "default").await? == 0);
    // The webhook never intercepts its own namespace or kube-system, so those keep working.
    for ns in operator::EXCLUDED_NAMESPACES {
        cp.kubectl(&["create", "-n", ns, "-f", &example("website.yaml")]).await?.ensure_success()?;
    }
    // Back up, and admission works again.
    op.start_webhook(&cp).await?;
    eventually(Duration::from_secs(20), async || {
        cp.kubectl(&["create", "-n", "default", "-f", &example("website.yaml")]).await?.ensure_success()?;
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn kubectl_get_shows_the_printer_columns_and_explain_shows_the_docs() -> Result<()> {
    let (cp, _op) = setup().await?;
    cp.kubectl(&["create", "-n", "default", "-f", &example("website.yaml")]).await?.ensure_success()?;
    let table = cp.kubectl(&["get", "ws", "-n", "default"]).await?.ensure_success()?;
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    ensure!(header == ["NAME", "GITREPO", "READY", "URL", "AGE"], "header: {header:?}");
    ensure!(table.contains("kubia") && table.contains("https://github.com/luksa/kubia-website-example.git"), "{table}");
    let all = cp.kubectl(&["get", "all", "-n", "default"]).await?.ensure_success()?;
    ensure!(all.contains("website.extensions.example.com/kubia"), "kubectl get all lacks the Website: {all}");
    // The API server publishes a new CRD's OpenAPI schema, which `kubectl explain` reads, a moment after
    // the CRD is established.
    eventually(Duration::from_secs(60), async || {
        let explain = cp.kubectl(&["explain", "website.spec.gitRepo"]).await?.ensure_success()?;
        ensure!(explain.contains("The git repository whose files are served"), "{explain}");
        ensure!(explain.contains("scp-like"), "{explain}");
        let explain = cp.kubectl(&["explain", "website.spec"]).await?.ensure_success()?;
        for field in ["gitRepo", "ref", "replicas", "serviceType", "port", "syncIntervalSeconds"] {
            ensure!(explain.contains(field), "explain website.spec lacks {field}: {explain}");
        }
        Ok(())
    })
    .await?;
    Ok(())
}

/// A Website stored while no webhook was registered: its repository is one the CRD schema admits but today's
/// rules refuse, and its `ref` is an explicit null, which only the mutating webhook defaults. Then the webhooks are registered and called. The control plane
/// runs kube-controller-manager, whose garbage collector finishes foreground deletions.
async fn setup_with_a_website_stored_before_the_rules(name: &str) -> Result<(ControlPlane, Operator)> {
    let cp = ControlPlane::start(ControlPlaneOptions::default()).await?;
    let mut op =
        Operator::start(&cp, OperatorOptions { webhook: false, controller: false, ..OperatorOptions::default() })
            .await?;
    let stored = serde_json::json!({
        "apiVersion": "extensions.example.com/v1", "kind": "Website",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"gitRepo": "file:///etc", "ref": null}
    });
    cp.kubectl_with_stdin(&["create", "-f", "-"], Some(&stored.to_string())).await?.ensure_success()?;
    op.enable_webhook(&cp, &OperatorOptions::default().failure_policy).await?;
    // The mutating configuration may be picked up a moment after the validating one: wait until a server-side
    // dry run is defaulted by it, so that "no patch" below is the webhook's answer. The API server fills in a
    // missing field from the schema's defaults itself, but keeps an explicit null: only the webhook replaces that.
    let probe = r#"{"apiVersion":"extensions.example.com/v1","kind":"Website","metadata":{"name":"defaulting-probe","namespace":"default"},"spec":{"gitRepo":"https://example.com/site.git","replicas":null}}"#;
    eventually(Duration::from_secs(30), async || {
        let out = cp.kubectl_with_stdin(&["create", "--dry-run=server", "-o", "json", "-f", "-"], Some(probe)).await?;
        let object: Value = serde_json::from_str(&out.ensure_success()?)?;
        ensure!(object["spec"]["replicas"] == 1, "the mutating webhook is not called yet: {object}");
        Ok(())
    })
    .await?;
    Ok((cp, op))
}

#[tokio::test]
async fn a_website_stored_before_the_rules_can_be_labelled_annotated_and_deleted_but_a_spec_edit_must_fix_it()
-> Result<()> {
    let name = "legacy";
    let (cp, _op) = setup_with_a_website_stored_before_the_rules(name).await?;
    let website = format!("website/{name}");
    // The schema's defaults, filled in by the API server; the null ref was kept.
    let stored_spec = serde_json::json!({
        "gitRepo": "file:///etc", "ref": null, "replicas": 1, "serviceType": "ClusterIP", "port": 80,
        "syncIntervalSeconds": 60
    });
    ensure!(get_json(&cp, "default", name).await?["spec"] == stored_spec, "stored before the rules: {stored_spec}");

    // Labels and annotations leave the spec as it was: admitted as they are, and not patched either.
    cp.kubectl(&["label", "-n", "default", &website, "x=y"]).await?.ensure_success()?;
    cp.kubectl(&["annotate", "-n", "default", &website, "note=kept"]).await?.ensure_success()?;
    let object = get_json(&cp, "default", name).await?;
    ensure!(object["metadata"]["labels"]["x"] == "y", "label not stored: {object}");
    ensure!(object["metadata"]["annotations"]["note"] == "kept", "annotation not stored: {object}");
    ensure!(object["spec"] == stored_spec, "the spec changed: {object}");

    // An edit of the spec is judged on the whole spec, and says what must be fixed with it.
    let out =
        cp.kubectl(&["patch", "-n", "default", &website, "--type=merge", "-p", r#"{"spec":{"replicas":2}}"#]).await?;
    ensure!(!out.success(), "the spec edit was admitted: {}", out.stdout);
    ensure!(
        out.stderr.contains("spec.gitRepo: local paths are not supported")
            && out
                .stderr
                .contains("; the stored value already breaks the current rules and must be fixed in the same update"),
        "the refusal does not say to fix the stored repository: {}",
        out.stderr
    );
    ensure!(!out.stderr.contains("spec.replicas"), "the valid replicas were refused: {}", out.stderr);
    let after = get_json(&cp, "default", name).await?;
    ensure!(after["spec"] == stored_spec, "the refused edit changed the spec: {after}");

    // The garbage collector removes the foregroundDeletion finalizer with an update of its own. It does so only once
    // it watches Websites: it looks for new resources every 30 s, and the CRD was installed moments ago, so on a
    // loaded machine that can take two of its rounds and more.
    cp.kubectl(&["delete", "-n", "default", &website, "--cascade=foreground", "--wait=false"])
        .await?
        .ensure_success()?;
    eventually(Duration::from_secs(120), async || {
        let out = cp.kubectl(&["get", "-n", "default", &website, "-o", "json"]).await?;
        ensure!(!out.success() && out.stderr.contains("NotFound"), "still stored: {}{}", out.stdout, out.stderr);
        Ok(())
    })
    .await?;
    Ok(())
}
