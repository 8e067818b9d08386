//! `kubectl website`: the offline validator gives the webhook's verdicts, and every command works against the real
//! API server with the real webhook and controller, with the documented exit codes.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use serde_json::{Value, json};
use website_e2e::operator::{binary, create_namespace, mark_pods_ready, workspace_root};
use website_e2e::{ControlPlane, ControlPlaneOptions, Operator, OperatorOptions, eventually};
use website_webhook::admission::{Judgement, validate};
use website_webhook::server::parse_review;

/// Whether the validating webhook admits `object` on CREATE, as the API server sends it (defaults filled in), and
/// the fields it names when it does not.
fn webhook_verdict(object: &Value) -> (bool, Vec<String>) {
    let mut object = object.clone();
    if let Some(spec) = object.get("spec").filter(|s| !s.is_null()) {
        object["spec"] = kubectl_website::validate::with_defaults(spec);
    }
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u", "kind": {"group": "extensions.example.com", "version": "v1", "kind": "Website"},
        "resource": {"group": "extensions.example.com", "version": "v1", "resource": "websites"},
        "namespace": "default", "operation": "CREATE", "userInfo": {"username": "u"}, "object": object}});
    let body = serde_json::to_vec(&review).expect("JSON");
    let request = parse_review(&body).expect("a review");
    let verdict = match validate(&request) {
        Judgement::Final(verdict) | Judgement::IfPermitted { verdict, .. } => verdict,
    };
    let mut fields: Vec<String> =
        verdict.result.details.iter().flat_map(|d| &d.causes).map(|c| c.field.clone()).collect();
    fields.sort();
    (verdict.allowed, fields)
}

/// The plugin's offline verdict on the single Website of `text`.
fn plugin_verdict(text: &str) -> (bool, Vec<String>) {
    let mut report = kubectl_website::validate::Report::default();
    kubectl_website::validate::validate_text("manifest", text, &mut report);
    assert_eq!(report.checked, 1, "one Website in {text}");
    let mut fields: Vec<String> = report.violations.iter().map(|v| v.field.clone()).collect();
    fields.sort();
    (report.is_valid(), fields)
}

fn manifests(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("examples/ is readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            manifests(&path, found);
        } else if path.extension().is_some_and(|x| x == "yaml") {
            found.push(path);
        }
    }
}

#[test]
fn offline_validation_gives_the_webhooks_verdict_and_fields_for_every_example_and_every_git_repo_case() {
    let mut files = Vec::new();
    manifests(&workspace_root().join("examples"), &mut files);
    assert!(files.len() >= 20, "the examples: {files:?}");
    let mut cases: Vec<(String, String)> =
        files.iter().map(|f| (f.display().to_string(), std::fs::read_to_string(f).expect("readable"))).collect();
    let git_repos = [
        "https://github.com/luksa/kubia-website-example.git",
        "git@github.com:org/site.git",
        "ssh://git@[2001:db8::1]:2222/org/site.git",
        "http://git.example.com/site.git",
        "git://git.example.com/site.git",
        "file:///etc/passwd",
        "/var/lib/site",
        "ext::sh -c touch% /tmp/pwned",
        "-uhttps://e.com/r.git",
        "https://user:secret@github.com/org/site.git",
        "https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/org/site.git",
        "https://localhost/site.git",
        "https://0x7f.1/site.git",
        "https://[::ffff:127.0.0.1]/site.git",
        "https://169.254.169.254/latest/meta-data",
        "https://e.com/r.git?ref=x",
        "https://e.com/r.git#frag",
        "HTTPS://e.com/r.git",
        "https://e.com/%2Dr.git",
        "https://e.com/r\u{202e}.git",
        "ftp://e.com/r.git",
        "",
    ];
    for repo in git_repos {
        let manifest = json!({"apiVersion": "extensions.example.com/v1", "kind": "Website",
            "metadata": {"name": "case"}, "spec": {"gitRepo": repo}});
        cases.push((format!("gitRepo {repo:?}"), manifest.to_string()));
    }
    let credentials = [
        ("https://github.com/org/private.git", "HTTPS"),
        ("https://github.com/org/private.git", "SSH"),
        ("git@github.com:org/private.git", "HTTPS"),
        ("http://github.com/org/private.git", "HTTPS"),
    ];
    for (repo, kind) in credentials {
        let manifest = json!({"apiVersion": "extensions.example.com/v1", "kind": "Website", "metadata": {"name": "case"},
            "spec": {"gitRepo": repo, "credentials": {"type": kind, "secretName": "creds"}}});
        cases.push((format!("{repo} with {kind} credentials"), manifest.to_string()));
    }
    let mut differ = Vec::new();
    let mut refused = 0;
    for (what, text) in &cases {
        let object: Value = serde_yaml_ng::from_str(text).expect("a manifest");
        let webhook = webhook_verdict(&object);
        let plugin = plugin_verdict(text);
        refused += usize::from(!webhook.0);
        if webhook != plugin {
            differ.push(format!("{what}: webhook {webhook:?}, plugin {plugin:?}"));
        }
    }
    assert!(differ.is_empty(), "the plugin and the webhook disagree:\n{}", differ.join("\n"));
    assert!(refused >= 30, "the table must hold refusals as well as admissions ({refused} refused)");
}

/// `kubectl-website ARGS` with the cluster's kubeconfig, and its output.
async fn plugin(cp: &ControlPlane, args: &[&str]) -> Result<Output> {
    plugin_with(cp.kubeconfig_path(), args, None).await
}

async fn plugin_with(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Result<Output> {
    let mut command = tokio::process::Command::new(binary("kubectl-website")?);
    command
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn()?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        use tokio::io::AsyncWriteExt as _;
        input.write_all(text.as_bytes()).await?;
    }
    Ok(tokio::time::timeout(Duration::from_secs(120), child.wait_with_output()).await??)
}

fn text(output: &Output) -> (i32, String, String) {
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const NS: &str = "sites";

#[tokio::test]
async fn every_command_works_against_the_real_api_server_with_the_documented_exit_codes() -> Result<()> {
    let cp = ControlPlane::start(ControlPlaneOptions::default()).await?;
    let _op = Operator::start(&cp, OperatorOptions::default()).await?;
    create_namespace(&cp, NS).await?;
    let repo = "https://github.com/luksa/kubia-website-example.git";

    // create: checked locally first, with the webhook's messages; nothing is sent.
    let (code, _, err) = text(&plugin(&cp, &["create", "bad", "--repo", "file:///etc", "-n", NS]).await?);
    ensure!(code == 1 && err.contains("spec.gitRepo: local paths are not supported"), "{code}: {err}");
    // Both dry runs store nothing; the server's one goes through both webhooks and shows their warning once.
    let (code, out, err) = text(
        &plugin(
            &cp,
            &[
                "create",
                "plain",
                "--repo",
                "http://github.com/luksa/kubia-website-example.git",
                "-n",
                NS,
                "--dry-run=server",
            ],
        )
        .await?,
    );
    ensure!(
        code == 0 && out.trim() == "website.extensions.example.com/plain created (server dry run)",
        "{code}: {out}{err}"
    );
    ensure!(err.matches("Warning: spec.gitRepo: http://").count() == 1, "the warning, once: {err}");
    let (code, out, _) =
        text(&plugin(&cp, &["create", "draft", "--repo", repo, "-n", NS, "--dry-run=client", "-o", "yaml"]).await?);
    ensure!(code == 0 && out.contains(&format!("gitRepo: {repo}")) && out.contains("name: draft"), "{code}: {out}");
    // The real thing, then the same again: the API server's refusal exits 1.
    let (code, out, err) = text(&plugin(&cp, &["create", "kubia", "--repo", repo, "--replicas", "1", "-n", NS]).await?);
    ensure!(code == 0 && out.trim() == "website.extensions.example.com/kubia created", "{code}: {out}{err}");
    let (code, _, err) = text(&plugin(&cp, &["create", "kubia", "--repo", repo, "-n", NS]).await?);
    ensure!(code == 1 && err.contains("already exists"), "{code}: {err}");

    // list: only what was stored.
    let (code, out, err) = text(&plugin(&cp, &["list", "-n", NS]).await?);
    ensure!(code == 0, "{code}: {err}");
    let lines: Vec<&str> = out.lines().collect();
    ensure!(lines.len() == 2 && lines[0].starts_with("NAME    REPOSITORY"), "{out}");
    ensure!(lines[1].starts_with(&format!("kubia   {repo}   HEAD   ")), "{out}");
    let (code, out, _) = text(&plugin(&cp, &["list", "-A", "-o", "json"]).await?);
    let list: Value = serde_json::from_str(&out).context("list -o json")?;
    ensure!(code == 0 && list["items"].as_array().map(Vec::len) == Some(1), "{out}");

    // status: children and what to do while the pods are not available.
    let status = eventually(Duration::from_secs(60), async || {
        let (code, out, err) = text(&plugin(&cp, &["status", "kubia", "-n", NS]).await?);
        ensure!(
            code == 0 && out.contains("Deployment   kubia") && out.contains("PodsUnavailable"),
            "{code}: {out}{err}"
        );
        Ok(out)
    })
    .await?;
    ensure!(status.contains("Next:\n  - Pods are not available yet"), "{status}");
    let child = |kind: &str| status.lines().find(|l| l.trim_start().starts_with(kind)).unwrap_or_default();
    ensure!(child("Service").contains(" kubia ") && child("Service").contains(" yes "), "{status}");
    ensure!(child("Deployment").contains(" no ") && child("Deployment").contains("0/1 pods available"), "{status}");

    // wait: gives up with the last condition, then succeeds once the pods are ready.
    let (code, _, err) = text(&plugin(&cp, &["wait", "kubia", "--for=ready", "--timeout=2s", "-n", NS]).await?);
    ensure!(
        code == 1 && err.contains("timed out after 2s") && err.contains("last: Ready=False (PodsUnavailable)"),
        "{code}: {err}"
    );
    let waiting = tokio::spawn({
        let kubeconfig = cp.kubeconfig_path().to_owned();
        async move { plugin_with(&kubeconfig, &["wait", "kubia", "--timeout", "90s", "-n", NS], None).await }
    });
    eventually(Duration::from_secs(60), async || {
        ensure!(mark_pods_ready(&cp, NS, "app.kubernetes.io/instance=kubia").await? > 0, "no pods yet");
        Ok(())
    })
    .await?;
    let (code, out, err) = text(&waiting.await??);
    ensure!(code == 0 && out.trim() == "website.extensions.example.com/kubia condition met", "{code}: {out}{err}");

    // delete, then the Website is gone: status exits 1.
    let (code, out, _) = text(&plugin(&cp, &["delete", "kubia", "-n", NS]).await?);
    ensure!(code == 0 && out.trim() == "website.extensions.example.com \"kubia\" deleted", "{out}");
    let (code, _, err) = text(&plugin(&cp, &["status", "kubia", "-n", NS]).await?);
    ensure!(code == 1 && err.contains("not found"), "{code}: {err}");

    // A cluster that does not answer exits 2.
    let dir = tempfile::tempdir()?;
    let unreachable = dir.path().join("kubeconfig");
    std::fs::write(&unreachable, website_bench::unreachable_kubeconfig("https://127.0.0.1:9"))?;
    let (code, _, err) = text(&plugin_with(&unreachable, &["list"], None).await?);
    ensure!(code == 2 && err.contains("could not be reached"), "{code}: {err}");
    Ok(())
}

#[tokio::test]
async fn validate_guards_a_pipeline_offline_and_completion_works() -> Result<()> {
    let nowhere = Path::new("/nonexistent/kubeconfig");
    let examples = workspace_root().join("examples");
    let example = |name: &str| examples.join(name).display().to_string();
    let run = async |args: &[&str], stdin: Option<&str>| -> Result<(i32, String, String)> {
        Ok(text(&plugin_with(nowhere, args, stdin).await?))
    };
    let (code, _, err) =
        run(&["validate", "-f", &example("website.yaml"), "-f", &example("website-full.yaml")], None).await?;
    ensure!(code == 0 && err.contains("2 Website(s) checked in 2 file(s): 0 violation(s)"), "{code}: {err}");
    // Every invalid example fails, each finding with its file, document and field.
    let (code, out, _) = run(&["validate", "-f", &example("invalid")], None).await?;
    ensure!(code == 1, "{code}: {out}");
    let local = format!(
        "{}:1 website/local-path: spec.gitRepo: local paths are not supported",
        example("invalid/local-path.yaml")
    );
    ensure!(out.contains(&local), "{out}");
    // Warnings pass, unless --strict.
    let (code, out, _) = run(&["validate", "-f", &example("website-http.yaml")], None).await?;
    ensure!(code == 0 && out.contains("spec.gitRepo: http://") && out.contains("(warning)"), "{code}: {out}");
    let (code, _, _) = run(&["validate", "--strict", "-f", &example("website-http.yaml")], None).await?;
    ensure!(code == 1, "--strict must fail on a warning, got {code}");
    // Standard input, several documents; unreadable input exits 2.
    let two = "apiVersion: extensions.example.com/v1\nkind: Website\nmetadata: {name: a}\nspec: {gitRepo: 'https://e.com/a.git'}\n---\n\
               apiVersion: extensions.example.com/v1\nkind: Website\nmetadata: {name: b}\nspec: {gitRepo: 'https://e.com/b.git', port: 0}\n";
    let (code, out, _) = run(&["validate", "-f", "-"], Some(two)).await?;
    ensure!(code == 1 && out.trim() == "-:2 website/b: spec.port: must be between 1 and 65535, got 0", "{code}: {out}");
    let (code, _, err) = run(&["validate", "-f", "/nonexistent.yaml"], None).await?;
    ensure!(code == 2 && err.contains("cannot read /nonexistent.yaml"), "{code}: {err}");
    let (code, _, err) = run(&["validate", "-f", "-"], Some("kind: [\n")).await?;
    ensure!(code == 2 && err.contains("is not YAML"), "{code}: {err}");
    // Bad usage exits 2.
    let (code, _, err) = run(&["create", "x"], None).await?;
    ensure!(code == 2 && err.contains("--repo"), "{code}: {err}");
    // Shell completion, and kubectl's plugin completion protocol.
    let (code, out, _) = run(&["completion", "bash"], None).await?;
    ensure!(code == 0 && out.contains("kubectl-website"), "{code}");
    let (code, out, _) = run(&["__complete", "st"], None).await?;
    ensure!(code == 0 && out == "status\n:4\n", "{code}: {out:?}");
    Ok(())
}
