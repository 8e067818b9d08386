//! The Helm chart in `charts/website-operator`: linted and rendered in every certificate mode, accepted by a
//! real API server, installed, upgraded and uninstalled, with the webhook's self-managed certificates and its
//! caBundle injection running for real, and its RBAC checked with `kubectl auth can-i`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, ensure};
use serde_json::Value;
use website_e2e::helm::{
    CHART_NAME, can_i, chart_arg, chart_dir, helm_offline, service_account_token, service_account_user,
    write_token_kubeconfig,
};
use website_e2e::operator::{self, binary};
use website_e2e::{ChildProcess, ControlPlane, ControlPlaneOptions, eventually, free_port};

/// Namespace the chart is installed into.
const NAMESPACE: &str = "website-system";
/// Object names for release name = chart name.
const WEBHOOK: &str = "website-operator-webhook";
const CONTROLLER: &str = "website-operator-controller";
const CONFIGURATION: &str = "website-operator";
const CERT_SECRET: &str = "website-operator-webhook-tls";
const CRD_NAME: &str = "websites.extensions.example.com";
const API: &str = "website-operator-api";
const API_SERVICE: &str = "v1alpha1.extensions.example.com";

/// Values that select each certificate mode (`provided` needs a Secret name and a CA).
fn mode_values(mode: &str, ca_pem: &str) -> Vec<String> {
    let mut values = vec![format!("certificates.mode={mode}")];
    if mode == "provided" {
        values.push("certificates.provided.secretName=my-webhook-tls".into());
        values.push(format!("certificates.provided.caBundle={}", website_certs::ca_bundle_base64(ca_pem)));
    }
    values
}

const MODES: [&str; 3] = ["selfManaged", "certManager", "provided"];

fn test_ca() -> Result<String> {
    Ok(website_certs::CertificateAuthority::generate("test-ca", website_certs::days(1))?.cert_pem().to_owned())
}

/// `helm template` arguments with `--set` for each value.
fn template_args<'a>(values: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["template", CHART_NAME];
    args.extend(extra);
    for value in values {
        args.extend(["--set-string", value.as_str()]);
    }
    args
}

/// Splits rendered YAML into documents, keyed by `kind/name`.
fn documents(rendered: &str) -> Vec<(String, String)> {
    rendered
        .split("\n---")
        .filter_map(|doc| {
            let field = |key: &str| {
                doc.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().trim_matches('"').to_owned())
            };
            let kind = field("kind: ")?;
            let name = doc
                .lines()
                .skip_while(|l| *l != "metadata:")
                .find_map(|l| l.strip_prefix("  name: "))
                .map(|v| v.trim().to_owned())?;
            Some((format!("{kind}/{name}"), doc.to_owned()))
        })
        .collect()
}

fn document<'a>(docs: &'a [(String, String)], key: &str) -> Result<&'a str> {
    docs.iter()
        .find(|(k, _)| k == key)
        .map(|(_, doc)| doc.as_str())
        .ok_or_else(|| anyhow!("{key} not rendered; rendered: {:?}", docs.iter().map(|(k, _)| k).collect::<Vec<_>>()))
}

#[tokio::test]
async fn chart_copy_of_the_crd_is_the_generated_manifest() -> Result<()> {
    let chart_copy = chart_dir().join("files/website-crd.yaml");
    let text =
        std::fs::read_to_string(&chart_copy).with_context(|| format!("failed to read {}", chart_copy.display()))?;
    ensure!(
        text == website_crd::crd_yaml(),
        "{} is stale: it must be the same as {} (a symbolic link to it); run `{}`",
        chart_copy.display(),
        website_crd::CRD_MANIFEST_PATH,
        website_crd::REGENERATE_COMMAND
    );
    Ok(())
}

#[tokio::test]
async fn chart_lints_cleanly_and_renders_each_certificate_mode() -> Result<()> {
    let ca_pem = test_ca()?;
    let chart = chart_arg();
    for mode in MODES {
        let values = mode_values(mode, &ca_pem);
        let mut args = vec!["lint", "--strict", chart.as_str(), "--set", "api.enabled=true"];
        for value in &values {
            args.extend(["--set-string", value.as_str()]);
        }
        let lint = helm_offline(&args).await?;
        ensure!(lint.success(), "{mode}: helm lint failed:\n{}\n{}", lint.stdout, lint.stderr);
        ensure!(
            !lint.stdout.contains("[WARNING]") && !lint.stdout.contains("[ERROR]"),
            "{mode}: helm lint is not clean:\n{}",
            lint.stdout
        );

        let rendered = helm_offline(&template_args(&values, &[&chart, "-n", NAMESPACE, "--set", "api.enabled=true"]))
            .await?
            .ensure_success()?;
        let docs = documents(&rendered);
        let validating = document(&docs, &format!("ValidatingWebhookConfiguration/{CONFIGURATION}"))?;
        let mutating = document(&docs, &format!("MutatingWebhookConfiguration/{CONFIGURATION}"))?;
        let webhook = document(&docs, &format!("Deployment/{WEBHOOK}"))?;
        for config in [validating, mutating] {
            for expected in [
                "admissionReviewVersions: [v1]",
                "sideEffects: None",
                "failurePolicy: Fail",
                "timeoutSeconds: 5",
                "operator: NotIn",
                &format!("name: {WEBHOOK}\n        namespace: {NAMESPACE}"),
            ] {
                ensure!(config.contains(expected), "{mode}: a webhook configuration lacks {expected:?}:\n{config}");
            }
            for excluded in ["- website-system", "- kube-system"] {
                ensure!(config.lines().any(|l| l.trim() == excluded), "{mode}: {excluded} is not excluded:\n{config}");
            }
        }
        let injection = format!("cert-manager.io/inject-ca-from: {NAMESPACE}/{WEBHOOK}");
        match mode {
            "selfManaged" => {
                ensure!(
                    !validating.contains("caBundle") && !mutating.contains("caBundle"),
                    "{mode}: a static caBundle"
                );
                ensure!(webhook.contains("- --self-managed-certs") && webhook.contains("emptyDir"), "{webhook}");
                document(&docs, &format!("Secret/{CERT_SECRET}"))?;
                let role = document(&docs, &format!("Role/{WEBHOOK}"))?;
                ensure!(role.contains(&format!("resourceNames: [\"{CERT_SECRET}\"]")), "{role}");
            }
            "certManager" => {
                ensure!(validating.contains(&injection) && mutating.contains(&injection), "{mode}: no CA injection");
                document(&docs, &format!("Certificate/{WEBHOOK}"))?;
                ensure!(webhook.contains(&format!("secretName: {CERT_SECRET}")), "{webhook}");
                ensure!(document(&docs, &format!("Role/{WEBHOOK}")).is_err(), "{mode}: the webhook needs no Role");
            }
            "provided" => {
                let bundle = format!("caBundle: {}", website_certs::ca_bundle_base64(&ca_pem));
                ensure!(
                    validating.contains(&bundle) && mutating.contains(&bundle),
                    "{mode}: no caBundle:\n{validating}"
                );
                ensure!(webhook.contains("secretName: my-webhook-tls"), "{webhook}");
                ensure!(document(&docs, &format!("Secret/{CERT_SECRET}")).is_err(), "{mode}: a Secret was rendered");
            }
            _ => unreachable!("the three modes"),
        }
        // In every mode, the webhook asks the API server whether the author of a Website may get its Secret.
        ensure!(webhook.contains("automountServiceAccountToken: true"), "{mode}: no API access:\n{webhook}");
        ensure!(webhook.contains("- --access-review-timeout-seconds=3"), "{mode}: {webhook}");
        let cluster_role = document(&docs, &format!("ClusterRole/{WEBHOOK}-{NAMESPACE}"))?;
        ensure!(cluster_role.contains("resources: [subjectaccessreviews]\n    verbs: [create]"), "{cluster_role}");
        ensure!(
            cluster_role.contains("webhookconfigurations") == (mode == "selfManaged"),
            "{mode}: the configurations are the self-managed mode's only:\n{cluster_role}"
        );
        // Pod security and probes of both Deployments.
        let controller = document(&docs, &format!("Deployment/{CONTROLLER}"))?;
        for (name, deployment) in [("webhook", webhook), ("controller", controller)] {
            for expected in [
                "runAsNonRoot: true",
                "readOnlyRootFilesystem: true",
                "allowPrivilegeEscalation: false",
                "drop: [ALL]",
                "type: RuntimeDefault",
                "path: /healthz",
                "path: /readyz",
                "limits:",
                "requests:",
                "app.kubernetes.io/name: website-operator",
                "app.kubernetes.io/instance: website-operator",
                "app.kubernetes.io/component:",
            ] {
                ensure!(deployment.contains(expected), "{mode}: the {name} Deployment lacks {expected:?}");
            }
        }
        for expected in [
            "--web-image=docker.io/nginxinc/nginx-unprivileged:1.27-alpine",
            "--git-sync-image=registry.k8s.io/git-sync/git-sync:v4.4.0",
        ] {
            ensure!(controller.contains(expected), "the controller lacks {expected}");
        }
        let crd = document(&docs, &format!("CustomResourceDefinition/{CRD_NAME}"))?;
        ensure!(crd.contains("helm.sh/resource-policy: keep"), "{mode}: the CRD is not kept on uninstall");
        check_api(mode, &docs)?;
    }
    Ok(())
}

/// website-api's objects as rendered in certificate `mode`: the APIService below the CRD's priority, trusting the
/// CA of the certificate website-api serves.
fn check_api(mode: &str, docs: &[(String, String)]) -> Result<()> {
    let api_service = document(docs, &format!("APIService/{API_SERVICE}"))?;
    for expected in [
        "group: extensions.example.com",
        "version: v1alpha1",
        "versionPriority: 10",
        &format!("name: {API}\n    namespace: {NAMESPACE}"),
    ] {
        ensure!(api_service.contains(expected), "{mode}: the APIService lacks {expected:?}:\n{api_service}");
    }
    let deployment = document(docs, &format!("Deployment/{API}"))?;
    for expected in
        ["runAsNonRoot: true", "readOnlyRootFilesystem: true", "path: /readyz", "secretName: website-operator-api-tls"]
    {
        ensure!(deployment.contains(expected), "{mode}: website-api's Deployment lacks {expected:?}");
    }
    document(docs, &format!("Service/{API}"))?;
    document(docs, &format!("ClusterRoleBinding/{API}:system:auth-delegator"))?;
    document(docs, &format!("RoleBinding/{API}:extension-apiserver-authentication-reader"))?;
    if mode == "certManager" {
        ensure!(api_service.contains(&format!("cert-manager.io/inject-ca-from: {NAMESPACE}/{API}")), "{api_service}");
        document(docs, &format!("Certificate/{API}"))?;
        return Ok(());
    }
    let secret = document(docs, &format!("Secret/{API}-tls"))?;
    let ca = secret.lines().find_map(|l| l.trim().strip_prefix("ca.crt: ")).context("no ca.crt in the Secret")?;
    ensure!(api_service.contains(&format!("caBundle: {ca}")), "{mode}: the caBundle is not the Secret's CA");
    Ok(())
}

#[tokio::test]
async fn bad_values_are_refused_with_the_offending_value_named() -> Result<()> {
    let chart = chart_arg();
    let cases: &[(&[&str], &str)] = &[
        (&["webhook.timeoutSeconds=31"], "at '/webhook/timeoutSeconds': maximum: got 31, want 30"),
        (&["webhook.failurePolicy=Sometimes"], "at '/webhook/failurePolicy'"),
        (&["certificates.mode=vault"], "at '/certificates/mode'"),
        (&["certificates.mode=provided"], "at '/certificates/provided/secretName': minLength"),
        (&["webhook.urlOverride=http://127.0.0.1:8443"], "at '/webhook/urlOverride'"),
        (&["controller.replicas=11"], "at '/controller/replicas': maximum: got 11, want 10"),
        (
            &["controller.replicas=2", "controller.leaderElection.enabled=false"],
            "controller.replicas > 1 needs controller.leaderElection.enabled",
        ),
        (
            &["controller.leaderElection.renewGraceSeconds=15"],
            "renewGraceSeconds must be less than controller.leaderElection.leaseSeconds",
        ),
        (&["websites.imagePullPolicy=Sometimes"], "at '/websites/imagePullPolicy'"),
        (&["webhook.image.pullPolicy=Sometimes"], "at '/webhook/image/pullPolicy'"),
        (&["webhookReplicas=3"], "additional properties 'webhookReplicas' not allowed"),
        (&["metrics.podMonitor.interval=soon"], "at '/metrics/podMonitor/interval'"),
        (
            &["webhook.podDisruptionBudget.minAvailable=2"],
            "webhook.podDisruptionBudget.minAvailable (2) must be less than webhook.replicas (2)",
        ),
        (
            &["webhook.accessReviewTimeoutSeconds=5"],
            "webhook.accessReviewTimeoutSeconds (5) must be less than webhook.timeoutSeconds (5)",
        ),
        (
            &["certificates.selfManaged.servingRenewBeforeDays=400"],
            "servingRenewBeforeDays must be less than servingValidityDays",
        ),
        (&["api.enabled=true", "api.versionPriority=100"], "at '/api/versionPriority': maximum: got 100, want 99"),
        (
            &["api.enabled=true", "api.certificate.secretName=mine"],
            "api.certificate.caBundle (the base64 PEM of the CA that signed the certificate in api.certificate.secretName) is required",
        ),
    ];
    let mut failures = Vec::new();
    for (values, message) in cases {
        let mut args = vec!["template", CHART_NAME, chart.as_str()];
        for value in *values {
            args.extend(["--set", value]);
        }
        let out = helm_offline(&args).await?;
        if out.success() || !out.stderr.contains(message) {
            failures.push(format!("{values:?}: expected a refusal with {message:?}, got: {}", out.stderr.trim()));
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

async fn start_control_plane() -> Result<ControlPlane> {
    ControlPlane::start(ControlPlaneOptions { controller_manager: false, ..ControlPlaneOptions::default() }).await
}

/// Minimal cert-manager CRDs (Issuer, Certificate), so that the API server knows the kinds the chart renders in
/// certManager mode. cert-manager itself is not needed to check that the manifests are accepted.
fn cert_manager_crds() -> String {
    let crd = |kind: &str, plural: &str| {
        serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.cert-manager.io")},
            "spec": {"group": "cert-manager.io", "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
        })
        .to_string()
    };
    format!("{}\n---\n{}\n", crd("Issuer", "issuers"), crd("Certificate", "certificates"))
}

async fn server_version(cp: &ControlPlane) -> Result<String> {
    let out = cp.kubectl(&["version", "-o", "json"]).await?.ensure_success()?;
    let version: Value = serde_json::from_str(&out)?;
    version["serverVersion"]["gitVersion"]
        .as_str()
        .map(|v| v.trim_start_matches('v').to_owned())
        .ok_or_else(|| anyhow!("no server version in {out}"))
}

#[tokio::test]
async fn rendered_manifests_are_accepted_by_the_api_server_in_every_mode() -> Result<()> {
    let cp = start_control_plane().await?;
    operator::create_namespace(&cp, NAMESPACE).await?;
    cp.kubectl_with_stdin(&["apply", "-f", "-"], Some(&cert_manager_crds())).await?.ensure_success()?;
    for name in ["issuers.cert-manager.io", "certificates.cert-manager.io"] {
        cp.wait_for_crd_established(name).await?;
    }
    let version = server_version(&cp).await?;
    let ca_pem = test_ca()?;
    let chart = chart_arg();
    for mode in MODES {
        let values = mode_values(mode, &ca_pem);
        let extra = [chart.as_str(), "-n", NAMESPACE, "--kube-version", &version, "--set", "api.enabled=true"];
        let rendered = helm_offline(&template_args(&values, &extra)).await?.ensure_success()?;
        let out =
            cp.kubectl_with_stdin(&["apply", "--dry-run=server", "-f", "-", "-o", "name"], Some(&rendered)).await?;
        ensure!(out.success(), "{mode}: the API server refused the rendered manifests: {}", out.stderr);
        let accepted: Vec<&str> = out.stdout.lines().collect();
        let expected = documents(&rendered).len();
        ensure!(
            accepted.len() == expected,
            "{mode}: {expected} documents rendered, {} accepted: {accepted:?}",
            accepted.len()
        );
        // Kubernetes 1.20 has no policy/v1: the chart picks the PodDisruptionBudget version the server has.
        ensure!(
            accepted.contains(&format!("poddisruptionbudget.policy/{WEBHOOK}").as_str()),
            "{mode}: no PodDisruptionBudget in {accepted:?}"
        );
    }
    Ok(())
}

async fn get_json(cp: &ControlPlane, args: &[&str]) -> Result<Value> {
    let mut all = vec!["get"];
    all.extend(args);
    all.extend(["-o", "json"]);
    Ok(serde_json::from_str(&cp.kubectl(&all).await?.ensure_success()?)?)
}

/// The caBundle of each webhook of both configurations, decoded.
async fn ca_bundles(cp: &ControlPlane) -> Result<Vec<Option<String>>> {
    let mut bundles = Vec::new();
    for kind in ["validatingwebhookconfiguration", "mutatingwebhookconfiguration"] {
        let config = get_json(cp, &[kind, CONFIGURATION]).await?;
        for webhook in config["webhooks"].as_array().into_iter().flatten() {
            let bundle = webhook["clientConfig"]["caBundle"].as_str().map(decode_base64).transpose()?;
            bundles.push(bundle);
        }
    }
    Ok(bundles)
}

fn decode_base64(text: &str) -> Result<String> {
    // The tests crate has no base64 dependency; `base64 -d` is in coreutils.
    let mut child = std::process::Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    std::io::Write::write_all(child.stdin.as_mut().context("stdin")?, text.as_bytes())?;
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "invalid base64");
    Ok(String::from_utf8(out.stdout)?)
}

async fn secret_field(cp: &ControlPlane, key: &str) -> Result<Option<String>> {
    let secret = get_json(cp, &["secret", CERT_SECRET, "-n", NAMESPACE]).await?;
    secret["data"][key].as_str().map(decode_base64).transpose()
}

/// Runs the webhook binary the way the installed Deployment does (its own arguments), but listening on
/// `addr` with 127.0.0.1 in its certificate, as the webhook's ServiceAccount.
async fn run_installed_webhook(cp: &ControlPlane, addr: SocketAddr, dir: &std::path::Path) -> Result<ChildProcess> {
    let deployment = get_json(cp, &["deployment", WEBHOOK, "-n", NAMESPACE]).await?;
    let args: Vec<String> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .context("the webhook Deployment has no args")?
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    let mut command = Command::new(binary("website-webhook")?);
    for arg in &args {
        let replaced = match arg.split_once('=').map(|(flag, _)| flag) {
            Some("--listen-addr") => format!("--listen-addr={addr}"),
            Some("--health-addr") => "--health-addr=off".to_owned(),
            Some("--tls-cert-file") => format!("--tls-cert-file={}", dir.join("tls.crt").display()),
            Some("--tls-key-file") => format!("--tls-key-file={}", dir.join("tls.key").display()),
            Some("--log-format") => "--log-format=text".to_owned(),
            _ => arg.clone(),
        };
        command.arg(replaced);
    }
    let token = service_account_token(cp, NAMESPACE, WEBHOOK).await?;
    let kubeconfig = write_token_kubeconfig(cp, dir, WEBHOOK, &token)?;
    command.arg("--extra-san=127.0.0.1").env("KUBECONFIG", kubeconfig).env("RUST_LOG", "info");
    let mut webhook = cp.spawn("website-webhook", command)?;
    webhook.wait_for_port(addr, Duration::from_secs(60)).await?;
    Ok(webhook)
}

const BAD_WEBSITE: &str = r#"{"apiVersion":"extensions.example.com/v1","kind":"Website","metadata":{"name":"NAME"},"spec":{"gitRepo":"file:///etc"}}"#;
const GOOD_WEBSITE: &str = r#"{"apiVersion":"extensions.example.com/v1","kind":"Website","metadata":{"name":"NAME"},"spec":{"gitRepo":"https://github.com/luksa/kubia-website-example.git"}}"#;

/// A bad Website is refused by the webhook's own rule, and a good one is stored with the webhook's defaults.
async fn expect_webhook_admission(cp: &ControlPlane, suffix: &str) -> Result<()> {
    let bad = BAD_WEBSITE.replace("NAME", &format!("bad-{suffix}"));
    let out = cp.kubectl_with_stdin(&["create", "-n", "default", "-f", "-"], Some(&bad)).await?;
    ensure!(!out.success(), "a Website with a local path was created");
    ensure!(
        out.stderr.contains("spec.gitRepo: local paths are not supported"),
        "not refused by the webhook's rule: {}",
        out.stderr
    );
    let name = format!("good-{suffix}");
    let good = GOOD_WEBSITE.replace("NAME", &name);
    // `apply`, so that a retry after a partial success does not fail on AlreadyExists.
    cp.kubectl_with_stdin(&["apply", "-n", "default", "-f", "-"], Some(&good)).await?.ensure_success()?;
    let stored = get_json(cp, &["website", &name, "-n", "default"]).await?;
    ensure!(stored["spec"]["replicas"] == 1 && stored["spec"]["ref"] == "HEAD", "not defaulted: {stored}");
    Ok(())
}

#[tokio::test]
async fn helm_install_upgrade_and_uninstall_with_self_managed_certificates() -> Result<()> {
    let cp = start_control_plane().await?;
    operator::create_namespace(&cp, NAMESPACE).await?;
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port()?);
    let url = format!("urlOverride=https://{addr}");
    let chart = chart_arg();
    let install = [
        "install",
        CHART_NAME,
        &chart,
        "-n",
        NAMESPACE,
        "--set",
        &format!("webhook.{url}"),
        "--set",
        "certificates.selfManaged.checkIntervalSeconds=10",
    ];
    cp.helm(&install).await?.ensure_success()?;

    // Every object of the release exists.
    let manifest = cp.helm(&["get", "manifest", CHART_NAME, "-n", NAMESPACE]).await?.ensure_success()?;
    let rendered = documents(&manifest).len();
    let existing = cp.kubectl_with_stdin(&["get", "-f", "-", "-o", "name"], Some(&manifest)).await?.ensure_success()?;
    let existing: Vec<&str> = existing.lines().collect();
    ensure!(existing.len() == rendered && rendered >= 15, "{rendered} objects installed, found {existing:?}");
    ensure!(ca_bundles(&cp).await?.iter().all(Option::is_none), "a caBundle before the webhook ran");

    // The self-managed mode, run as the webhook's ServiceAccount: it fills the chart's Secret and injects its CA.
    let certs = tempfile::tempdir()?;
    let mut webhook = run_installed_webhook(&cp, addr, certs.path()).await?;
    let ca = eventually(Duration::from_secs(30), async || {
        let ca = secret_field(&cp, "ca.crt").await?.context("no ca.crt in the Secret yet")?;
        let bundles = ca_bundles(&cp).await?;
        ensure!(
            bundles.len() == 2 && bundles.iter().all(|b| b.as_deref() == Some(ca.as_str())),
            "caBundles {bundles:?}"
        );
        Ok(ca)
    })
    .await
    .with_context(|| format!("the webhook did not inject its CA:\n{}", webhook.log_tail(20)))?;
    ensure!(secret_field(&cp, "ca-bundle.crt").await?.as_deref() == Some(ca.as_str()));
    eventually(Duration::from_secs(30), async || expect_webhook_admission(&cp, "install").await)
        .await
        .with_context(|| webhook.log_tail(20))?;

    // An upgrade changes the configurations but keeps the injected caBundle and the Secret.
    let mut upgrade = install.to_vec();
    upgrade[0] = "upgrade";
    upgrade.extend(["--set", "webhook.timeoutSeconds=7"]);
    cp.helm(&upgrade).await?.ensure_success()?;
    let config = get_json(&cp, &["validatingwebhookconfiguration", CONFIGURATION]).await?;
    ensure!(config["webhooks"][0]["timeoutSeconds"] == 7, "the upgrade did not apply: {config}");
    ensure!(secret_field(&cp, "ca.crt").await?.as_deref() == Some(ca.as_str()), "the upgrade replaced the CA");
    let bundles = ca_bundles(&cp).await?;
    ensure!(bundles.iter().all(|b| b.as_deref() == Some(ca.as_str())), "the upgrade lost the caBundle: {bundles:?}");
    expect_webhook_admission(&cp, "upgrade").await.with_context(|| webhook.log_tail(20))?;

    // A restarted webhook reuses the stored CA instead of making a new one.
    webhook.stop(Duration::from_secs(10))?;
    let mut webhook = run_installed_webhook(&cp, addr, certs.path()).await?;
    expect_webhook_admission(&cp, "restart").await.with_context(|| webhook.log_tail(20))?;
    ensure!(secret_field(&cp, "ca.crt").await?.as_deref() == Some(ca.as_str()), "the restart replaced the CA");
    webhook.stop(Duration::from_secs(10))?;

    // Uninstall removes everything but the CRD, which keeps the Websites.
    cp.helm(&["uninstall", CHART_NAME, "-n", NAMESPACE]).await?.ensure_success()?;
    eventually(Duration::from_secs(30), async || {
        let out =
            cp.kubectl_with_stdin(&["get", "-f", "-", "-o", "name", "--ignore-not-found"], Some(&manifest)).await?;
        let left: Vec<&str> = out.stdout.lines().collect();
        ensure!(left == [format!("customresourcedefinition.apiextensions.k8s.io/{CRD_NAME}")], "left: {left:?}");
        Ok(())
    })
    .await?;
    let websites = cp.kubectl(&["get", "websites", "-n", "default", "-o", "name"]).await?.ensure_success()?;
    ensure!(websites.lines().count() == 3, "Websites lost on uninstall: {websites}");
    Ok(())
}

#[tokio::test]
async fn rbac_grants_each_service_account_exactly_what_it_uses() -> Result<()> {
    let cp = start_control_plane().await?;
    operator::create_namespace(&cp, NAMESPACE).await?;
    let chart = chart_arg();
    // Client-side: kube-apiserver 1.20 cannot server-side apply an APIService.
    cp.helm(&["install", CHART_NAME, &chart, "-n", NAMESPACE, "--set", "api.enabled=true", "--server-side=false"])
        .await?
        .ensure_success()?;
    // No website-api runs here: without its APIService, discovery (and so `kubectl auth can-i`) stays whole.
    cp.kubectl(&["delete", "apiservice", API_SERVICE]).await?.ensure_success()?;
    let controller = service_account_user(NAMESPACE, CONTROLLER);
    let api = service_account_user(NAMESPACE, API);
    let webhook = service_account_user(NAMESPACE, WEBHOOK);
    let apps = Some("apps");
    let ns = Some(NAMESPACE);
    let secret = format!("secrets/{CERT_SECRET}");
    let lease = format!("leases.coordination.k8s.io/{CONTROLLER}");
    let validating = format!("validatingwebhookconfigurations/{CONFIGURATION}");
    let mutating = format!("mutatingwebhookconfigurations/{CONFIGURATION}");
    // (user, verb, resource, namespace, allowed)
    let cases: Vec<(&str, &str, &str, Option<&str>, bool)> = vec![
        (&controller, "get", "websites.extensions.example.com", apps, true),
        (&controller, "list", "websites.extensions.example.com", None, true),
        (&controller, "watch", "websites.extensions.example.com", None, true),
        (&controller, "patch", "websites.extensions.example.com#status", apps, true),
        (&controller, "update", "websites.extensions.example.com#finalizers", apps, true),
        (&controller, "update", "websites.extensions.example.com", apps, false),
        (&controller, "patch", "websites.extensions.example.com", apps, false),
        (&controller, "create", "websites.extensions.example.com", apps, false),
        (&controller, "delete", "websites.extensions.example.com", apps, false),
        (&controller, "create", "deployments.apps", apps, true),
        (&controller, "patch", "deployments.apps", apps, true),
        (&controller, "get", "deployments.apps", apps, true),
        (&controller, "list", "deployments.apps", None, true),
        (&controller, "watch", "deployments.apps", None, true),
        (&controller, "delete", "deployments.apps", apps, false),
        (&controller, "create", "services", apps, true),
        (&controller, "patch", "services", apps, true),
        (&controller, "list", "services", None, true),
        (&controller, "watch", "services", None, true),
        // Only a child it created in the same reconcile, by uid, when a later child's name is someone else's.
        (&controller, "delete", "services", apps, true),
        (&controller, "create", "events.events.k8s.io", apps, true),
        (&controller, "patch", "events.events.k8s.io", apps, true),
        (&controller, "get", "secrets", apps, false),
        (&controller, "list", "secrets", None, false),
        (&controller, "get", &secret, ns, false),
        (&controller, "create", "pods", apps, false),
        (&controller, "get", "configmaps", apps, true),
        (&controller, "create", "configmaps", apps, true),
        (&controller, "patch", "configmaps", apps, true),
        (&controller, "watch", "configmaps", None, true),
        (&controller, "update", "configmaps", apps, false),
        (&controller, "delete", "configmaps", apps, true),
        (&controller, "update", "services", apps, false),
        (&controller, "update", "deployments.apps", apps, false),
        // Only with websites.egressNetworkPolicy.enabled.
        (&controller, "get", "networkpolicies.networking.k8s.io", apps, false),
        (&controller, "create", "networkpolicies.networking.k8s.io", apps, false),
        (&controller, "delete", "namespaces", None, false),
        (&controller, "patch", &validating, None, false),
        // Its Lease, by name: held with get, patch and update, watched to see it released; the chart creates it.
        (&controller, "get", &lease, ns, true),
        (&controller, "patch", &lease, ns, true),
        (&controller, "update", &lease, ns, true),
        (&controller, "watch", &lease, ns, true),
        (&controller, "delete", &lease, ns, false),
        (&controller, "create", "leases.coordination.k8s.io", ns, false),
        (&controller, "get", "leases.coordination.k8s.io/kube-controller-manager", Some("kube-system"), false),
        (&controller, "patch", "leases.coordination.k8s.io/other", ns, false),
        // Its Secret, by name: read and watched, updated with the resourceVersion read, and created by
        // server-side apply (a PATCH naming it) when deleted.
        (&webhook, "get", &secret, ns, true),
        (&webhook, "list", &secret, ns, true),
        (&webhook, "watch", &secret, ns, true),
        (&webhook, "create", &secret, ns, true),
        (&webhook, "update", &secret, ns, true),
        (&webhook, "patch", &secret, ns, true),
        (&webhook, "delete", &secret, ns, false),
        (&webhook, "get", "secrets", ns, false),
        (&webhook, "list", "secrets", ns, false),
        (&webhook, "watch", "secrets", ns, false),
        // A POST create names no object, so no resourceNames rule allows it.
        (&webhook, "create", "secrets", ns, false),
        (&webhook, "get", "secrets/other", ns, false),
        (&webhook, "create", "secrets/other", ns, false),
        (&webhook, "patch", "secrets/other", ns, false),
        (&webhook, "get", &secret, Some("default"), false),
        (&webhook, "create", &secret, Some("default"), false),
        // Its two configurations, by name: read, watched, and their caBundle patched.
        (&webhook, "get", &validating, None, true),
        (&webhook, "list", &validating, None, true),
        (&webhook, "watch", &validating, None, true),
        (&webhook, "patch", &validating, None, true),
        (&webhook, "get", &mutating, None, true),
        (&webhook, "list", &mutating, None, true),
        (&webhook, "watch", &mutating, None, true),
        (&webhook, "patch", &mutating, None, true),
        (&webhook, "delete", &validating, None, false),
        (&webhook, "update", &mutating, None, false),
        (&webhook, "create", &mutating, None, false),
        (&webhook, "list", "validatingwebhookconfigurations", None, false),
        (&webhook, "watch", "mutatingwebhookconfigurations", None, false),
        (&webhook, "patch", "validatingwebhookconfigurations/someone-elses", None, false),
        (&webhook, "watch", "validatingwebhookconfigurations/someone-elses", None, false),
        (&webhook, "get", "websites.extensions.example.com", apps, false),
        (&webhook, "create", "pods", ns, false),
        // Whether the author of a Website may get the Secret it names: asked, never read.
        (&webhook, "create", "subjectaccessreviews.authorization.k8s.io", None, true),
        (&webhook, "get", "secrets", apps, false),
        (&webhook, "create", "localsubjectaccessreviews.authorization.k8s.io", apps, false),
        (&webhook, "create", "tokenreviews.authentication.k8s.io", None, false),
        // website-api reads the v1 Websites it shows, and writes them only as the requesting user.
        (&api, "get", "websites.extensions.example.com", apps, true),
        (&api, "list", "websites.extensions.example.com", None, true),
        (&api, "watch", "websites.extensions.example.com", None, true),
        (&api, "create", "websites.extensions.example.com", apps, false),
        (&api, "update", "websites.extensions.example.com", apps, false),
        (&api, "patch", "websites.extensions.example.com", apps, false),
        (&api, "delete", "websites.extensions.example.com", apps, false),
        (&api, "impersonate", "users", None, true),
        (&api, "impersonate", "groups", None, true),
        (&api, "impersonate", "serviceaccounts", apps, true),
        // Delegated authentication and authorization (system:auth-delegator), and the request-header settings.
        (&api, "create", "subjectaccessreviews.authorization.k8s.io", None, true),
        (&api, "create", "tokenreviews.authentication.k8s.io", None, true),
        (&api, "get", "configmaps/extension-apiserver-authentication", Some("kube-system"), true),
        (&api, "get", "configmaps/other", Some("kube-system"), false),
        (&api, "get", "secrets", apps, false),
        (&api, "create", "deployments.apps", apps, false),
    ];
    let mut wrong = Vec::new();
    for (user, verb, resource, namespace, allowed) in &cases {
        let answer = can_i(&cp, user, verb, resource, *namespace).await?;
        if answer != *allowed {
            wrong.push(format!("{user} {verb} {resource} in {namespace:?}: allowed={answer}, want {allowed}"));
        }
    }
    ensure!(wrong.is_empty(), "RBAC differs from what the components use:\n{}", wrong.join("\n"));
    Ok(())
}

/// Splits concatenated PEM certificates.
fn pem_blocks(text: &str) -> Vec<String> {
    text.split_inclusive("-----END CERTIFICATE-----")
        .filter(|b| b.contains("BEGIN"))
        .map(|b| b.trim().to_owned())
        .collect()
}

#[tokio::test]
async fn an_expiring_self_managed_ca_is_rotated_without_a_failed_request() -> Result<()> {
    let cp = start_control_plane().await?;
    operator::create_namespace(&cp, NAMESPACE).await?;
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port()?);
    let chart = chart_arg();
    let url = format!("webhook.urlOverride=https://{addr}");
    cp.helm(&[
        "install",
        CHART_NAME,
        &chart,
        "-n",
        NAMESPACE,
        "--set",
        &url,
        "--set",
        "certificates.selfManaged.checkIntervalSeconds=10",
        // Any CA younger than this is due for rotation: the one below is.
        "--set",
        "certificates.selfManaged.caRenewBeforeDays=3",
        // Phase two once the new CA has been in both caBundles for this long.
        "--set",
        "certificates.selfManaged.caRotationGraceSeconds=5",
    ])
    .await?
    .ensure_success()?;
    // A CA that expires in two days, and a certificate it issued, as an earlier webhook would have left them.
    let old_ca = website_certs::CertificateAuthority::generate("old-ca", website_certs::days(2))?;
    let old_serving = old_ca.issue_serving(&[website_certs::SubjectName::Ip(addr.ip())], website_certs::days(2))?;
    let data = serde_json::json!({"stringData": {
        "ca.crt": old_ca.cert_pem(), "ca.key": old_ca.key_pem(),
        "tls.crt": old_serving.cert_pem(), "tls.key": old_serving.key_pem(),
    }});
    cp.kubectl(&["patch", "secret", CERT_SECRET, "-n", NAMESPACE, "--type=merge", "-p", &data.to_string()])
        .await?
        .ensure_success()?;

    let certs = tempfile::tempdir()?;
    let webhook = run_installed_webhook(&cp, addr, certs.path()).await?;
    let old_pem = old_ca.cert_pem().trim().to_owned();
    // Phase one: a new CA, both CAs trusted, the old CA's certificate still served.
    let new_pem = eventually(Duration::from_secs(30), async || {
        let bundle = secret_field(&cp, "ca-bundle.crt").await?.context("no ca-bundle.crt yet")?;
        let cas = pem_blocks(&bundle);
        ensure!(cas.len() == 2 && cas[1] == old_pem && cas[0] != old_pem, "bundle not rotated yet: {} CAs", cas.len());
        let bundles = ca_bundles(&cp).await?;
        ensure!(bundles.iter().all(|b| b.as_deref() == Some(bundle.as_str())), "caBundles not injected yet");
        Ok(cas[0].clone())
    })
    .await
    .with_context(|| webhook.log_tail(20))?;
    ensure!(secret_field(&cp, "ca.crt").await?.map(|c| c.trim().to_owned()) == Some(new_pem.clone()));

    // Phase two, once the new CA has been in both caBundles for the grace period: a certificate of the new CA is
    // served. Every request on the way is answered by the webhook: no TLS failure at any point.
    let mut requests = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut phase_two_seen = None;
    loop {
        let bad = BAD_WEBSITE.replace("NAME", "rotating");
        let out =
            cp.kubectl_with_stdin(&["create", "--dry-run=server", "-n", "default", "-f", "-"], Some(&bad)).await?;
        requests += 1;
        ensure!(
            out.stderr.contains("spec.gitRepo: local paths are not supported"),
            "request {requests} during the rotation was not answered by the webhook: {}\n{}",
            out.stderr,
            webhook.log_tail(20)
        );
        let served = secret_field(&cp, "tls.crt").await?;
        if phase_two_seen.is_none() && served.as_deref() != Some(old_serving.cert_pem()) {
            phase_two_seen = Some(requests);
        }
        // After the switch, keep asking for longer than the webhook's certificate reload interval (10 s).
        if phase_two_seen.is_some_and(|at| requests >= at + 40) {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no new serving certificate within 60 s:\n{}",
            webhook.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let bundles = ca_bundles(&cp).await?;
    ensure!(
        bundles.iter().all(|b| b.as_deref().map(pem_blocks) == Some(vec![new_pem.clone(), old_pem.clone()])),
        "both CAs must stay trusted until the old one expires"
    );
    Ok(())
}

#[tokio::test]
async fn network_policies_admit_only_the_served_ports_from_the_configured_sources() -> Result<()> {
    let chart = chart_arg();
    let rendered = helm_offline(&["template", CHART_NAME, &chart, "-n", NAMESPACE]).await?.ensure_success()?;
    let docs = documents(&rendered);
    let webhook = document(&docs, &format!("NetworkPolicy/{WEBHOOK}"))?;
    let controller = document(&docs, &format!("NetworkPolicy/{CONTROLLER}"))?;
    // By default: the webhook's HTTPS port from any source (the API server's address differs per cluster), its
    // health port from nobody but the kubelet, and nothing at all into the controller.
    ensure!(webhook.contains("policyTypes: [Ingress]") && webhook.contains("- port: 8443"), "{webhook}");
    ensure!(!webhook.contains("port: 8080") && !webhook.contains("from:"), "{webhook}");
    ensure!(controller.contains("ingress: []"), "{controller}");

    let narrowed = [
        "networkPolicy.apiServerSources[0].ipBlock.cidr=10.0.0.0/24",
        "networkPolicy.scrapeSources[0].namespaceSelector.matchLabels.team=monitoring",
    ];
    let mut args = vec!["template", CHART_NAME, chart.as_str(), "-n", NAMESPACE];
    for value in &narrowed {
        args.extend(["--set", value]);
    }
    let rendered = helm_offline(&args).await?.ensure_success()?;
    let docs = documents(&rendered);
    let webhook = document(&docs, &format!("NetworkPolicy/{WEBHOOK}"))?;
    let controller = document(&docs, &format!("NetworkPolicy/{CONTROLLER}"))?;
    ensure!(webhook.contains("- port: 8443") && webhook.contains("cidr: 10.0.0.0/24"), "{webhook}");
    ensure!(webhook.contains("- port: 8080") && webhook.contains("team: monitoring"), "{webhook}");
    ensure!(controller.contains("- port: 8081") && controller.contains("team: monitoring"), "{controller}");
    ensure!(!controller.contains("8443"), "{controller}");

    let off = helm_offline(&["template", CHART_NAME, &chart, "-n", NAMESPACE, "--set", "networkPolicy.enabled=false"])
        .await?
        .ensure_success()?;
    ensure!(!off.contains("kind: NetworkPolicy"), "rendered although disabled");
    Ok(())
}

#[tokio::test]
async fn both_pods_are_annotated_for_scraping_and_a_pod_monitor_is_rendered_only_when_enabled() -> Result<()> {
    let chart = chart_arg();
    let rendered = helm_offline(&["template", CHART_NAME, &chart, "-n", NAMESPACE]).await?.ensure_success()?;
    let docs = documents(&rendered);
    for (name, port) in [(WEBHOOK, 8080), (CONTROLLER, 8081)] {
        let deployment = document(&docs, &format!("Deployment/{name}"))?;
        for line in [
            "prometheus.io/scrape: \"true\"",
            &format!("prometheus.io/port: \"{port}\""),
            "prometheus.io/path: /metrics",
        ] {
            ensure!(deployment.contains(line), "{name}: no {line:?} in {deployment}");
        }
    }
    ensure!(!rendered.contains("kind: PodMonitor"), "a PodMonitor was rendered although disabled");

    let enabled = ["metrics.podMonitor.enabled=true", "metrics.podMonitor.labels.release=prometheus"];
    let mut args = vec!["template", CHART_NAME, chart.as_str(), "-n", NAMESPACE];
    for value in &enabled {
        args.extend(["--set", value]);
    }
    let rendered = helm_offline(&args).await?.ensure_success()?;
    let monitor = rendered
        .split("\n---")
        .find(|doc| doc.contains("kind: PodMonitor"))
        .ok_or_else(|| anyhow!("no PodMonitor rendered: {rendered}"))?;
    for line in ["release: prometheus", "- port: health", "path: /metrics", "values: [webhook, controller]"] {
        ensure!(monitor.contains(line), "no {line:?} in {monitor}");
    }
    Ok(())
}
