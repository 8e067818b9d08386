//! `website-api` through the real aggregation layer of kube-apiserver: `extensions.example.com/v1alpha1` as a second
//! view of the CRD's `v1` Websites, with kubectl, and its authentication and authorization from outside.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use website_crd::Website;
use website_e2e::aggregated::AggregatedApi;
use website_e2e::operator::create_namespace;
use website_e2e::{ControlPlane, ControlPlaneOptions, Operator, OperatorOptions, eventually};

const TIMEOUT: Duration = Duration::from_secs(30);
const REPO: &str = "https://github.com/luksa/kubia-website-example.git";
const V1ALPHA1: &str = "websites.v1alpha1.extensions.example.com";

struct Env {
    cp: ControlPlane,
    api: AggregatedApi,
    _op: Operator,
    ns: String,
}

impl Env {
    async fn start(options: OperatorOptions) -> Result<Self> {
        let cp =
            ControlPlane::start(ControlPlaneOptions { aggregation: true, ..ControlPlaneOptions::default() }).await?;
        let op = Operator::start(&cp, options).await?;
        let api = AggregatedApi::start(&cp).await?;
        let ns = "shop".to_owned();
        create_namespace(&cp, &ns).await?;
        Ok(Self { cp, api, _op: op, ns })
    }

    async fn kubectl(&self, args: &[&str]) -> Result<website_e2e::KubectlOutput> {
        let mut all = vec!["-n", &self.ns];
        all.extend(args);
        self.cp.kubectl(&all).await
    }

    async fn kubectl_stdin(&self, args: &[&str], input: &Value) -> Result<website_e2e::KubectlOutput> {
        let mut all = vec!["-n", &self.ns];
        all.extend(args);
        self.cp.kubectl_with_stdin(&all, Some(&input.to_string())).await
    }

    fn websites(&self) -> Api<Website> {
        Api::namespaced(self.cp.client(), &self.ns)
    }

    /// Grants `user` what the chart's docs suggest for Website authors: Websites (every version), nothing else.
    async fn grant_website_author(&self, user: &str) -> Result<()> {
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "website-author", "namespace": self.ns},
            "rules": [{"apiGroups": ["extensions.example.com"], "resources": ["websites"],
                       "verbs": ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]}]});
        let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": format!("website-author-{user}"), "namespace": self.ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "website-author"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]});
        self.kubectl_stdin(
            &["apply", "-f", "-"],
            &json!({"apiVersion": "v1", "kind": "List", "items": [role, binding]}),
        )
        .await?
        .ensure_success()?;
        Ok(())
    }
}

fn v1alpha1(name: &str, repo: &str) -> Value {
    json!({"apiVersion": "extensions.example.com/v1alpha1", "kind": "Website",
        "metadata": {"name": name}, "spec": {"gitRepo": repo}})
}

fn v1(name: &str, repo: &str) -> Value {
    json!({"apiVersion": "extensions.example.com/v1", "kind": "Website",
        "metadata": {"name": name, "labels": {"team": "web"}}, "spec": {"gitRepo": repo, "replicas": 2, "ref": "main"}})
}

#[tokio::test]
async fn v1alpha1_is_a_second_view_of_the_same_websites_through_the_aggregator() -> Result<()> {
    let env = Env::start(OperatorOptions::default()).await?;
    // v1 stays the group's preferred version: `kubectl get ws` reads v1.
    let group: Value = serde_json::from_str(
        &env.cp.kubectl(&["get", "--raw", "/apis/extensions.example.com"]).await?.ensure_success()?,
    )?;
    ensure!(group["preferredVersion"]["version"] == "v1", "{group}");
    let versions: Vec<&str> =
        group["versions"].as_array().context("versions")?.iter().filter_map(|v| v["version"].as_str()).collect();
    ensure!(versions.contains(&"v1alpha1"), "{group}");

    env.kubectl_stdin(&["create", "-f", "-"], &v1("kubia", REPO)).await?.ensure_success()?;
    let read = env.kubectl(&["get", "ws", "-o", "jsonpath={.items[*].apiVersion}"]).await?.ensure_success()?;
    ensure!(read.trim() == "extensions.example.com/v1", "kubectl get ws read {read}");

    // The same Website through v1alpha1, with the CRD's columns.
    let table = env.kubectl(&["get", V1ALPHA1]).await?.ensure_success()?;
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    ensure!(header == ["NAME", "GITREPO", "READY", "URL", "AGE"], "{table}");
    ensure!(table.lines().nth(1).is_some_and(|row| row.starts_with("kubia") && row.contains(REPO)), "{table}");
    let shown: Value =
        serde_json::from_str(&env.kubectl(&["get", V1ALPHA1, "kubia", "-o", "json"]).await?.ensure_success()?)?;
    ensure!(shown["apiVersion"] == "extensions.example.com/v1alpha1", "{shown}");
    ensure!(shown["spec"] == json!({"gitRepo": REPO}), "v1alpha1 shows only gitRepo: {shown}");
    // Label selectors pass through.
    let selected = env.kubectl(&["get", V1ALPHA1, "-l", "team=web", "-o", "name"]).await?.ensure_success()?;
    ensure!(selected.trim() == "website.extensions.example.com/kubia", "{selected}");
    let none = env.kubectl(&["get", V1ALPHA1, "-l", "team=ops", "-o", "name"]).await?.ensure_success()?;
    ensure!(none.trim().is_empty(), "{none}");
    // So do field selectors.
    let named = env.kubectl(&["get", V1ALPHA1, "--field-selector", "metadata.name=kubia", "-o", "name"]).await?;
    ensure!(named.ensure_success()?.trim() == "website.extensions.example.com/kubia", "field selector");
    let other = env.kubectl(&["get", V1ALPHA1, "--field-selector", "metadata.name=blog", "-o", "name"]).await?;
    ensure!(other.ensure_success()?.trim().is_empty(), "field selector");

    // A Website created through v1alpha1 is a v1 Website with the defaults, and the controller serves it.
    env.kubectl_stdin(&["create", "-f", "-"], &v1alpha1("blog", REPO)).await?.ensure_success()?;
    let stored = env.websites().get("blog").await?;
    ensure!(stored.spec.replicas == Some(1) && stored.spec.git_ref.as_deref() == Some("HEAD"), "{:?}", stored.spec);
    let deployments: Api<Deployment> = Api::namespaced(env.cp.client(), &env.ns);
    eventually(TIMEOUT, async || Ok(deployments.get("blog").await?))
        .await
        .context("the controller made no Deployment")?;

    // Writing through v1alpha1 keeps the v1 fields it does not show.
    let patch = json!({"spec": {"gitRepo": "https://github.com/luksa/kubia-website-example-2.git"}}).to_string();
    env.kubectl(&["patch", V1ALPHA1, "kubia", "--type=merge", "-p", &patch]).await?.ensure_success()?;
    let kept = env.websites().get("kubia").await?;
    ensure!(kept.spec.git_repo.ends_with("example-2.git"), "{:?}", kept.spec);
    ensure!(
        kept.spec.replicas == Some(2) && kept.spec.git_ref.as_deref() == Some("main"),
        "v1 fields lost: {:?}",
        kept.spec
    );

    // kubectl explain and kubectl's own validation read website-api's OpenAPI, merged by the aggregator.
    let explained = eventually(TIMEOUT, async || {
        let out = env.kubectl(&["explain", "websites.spec", "--api-version=extensions.example.com/v1alpha1"]).await?;
        ensure!(
            out.success() && out.stdout.contains("VERSION:  extensions.example.com/v1alpha1"),
            "{}{}",
            out.stdout,
            out.stderr
        );
        Ok(out.stdout)
    })
    .await?;
    ensure!(explained.contains("gitRepo") && !explained.contains("replicas"), "{explained}");
    let out = env
        .kubectl_stdin(
            &["create", "-f", "-"],
            &json!({
        "apiVersion": "extensions.example.com/v1alpha1", "kind": "Website", "metadata": {"name": "extra"},
        "spec": {"gitRepo": REPO, "replicas": 3}}),
        )
        .await?;
    ensure!(!out.success() && out.stderr.contains("unknown field \"replicas\""), "{}", out.stderr);
    // Past kubectl's validation, a field v1alpha1 does not have is refused by name by website-api, not dropped.
    let out = env
        .kubectl_stdin(
            &["create", "--validate=false", "-f", "-"],
            &json!({
        "apiVersion": "extensions.example.com/v1alpha1", "kind": "Website", "metadata": {"name": "extra"},
        "spec": {"gitRepo": REPO, "replicas": 3}}),
        )
        .await?;
    ensure!(!out.success() && out.stderr.contains("spec.replicas"), "{}", out.stderr);

    // Server-side dry run stores nothing.
    env.kubectl_stdin(&["create", "--dry-run=server", "-f", "-"], &v1alpha1("dry", REPO)).await?.ensure_success()?;
    ensure!(env.websites().get_opt("dry").await?.is_none(), "a dry run stored the Website");

    // An update with a stale resourceVersion gets 409.
    let mut stale: Value =
        serde_json::from_str(&env.kubectl(&["get", V1ALPHA1, "blog", "-o", "json"]).await?.ensure_success()?)?;
    env.kubectl(&["label", "ws", "blog", "changed=yes"]).await?.ensure_success()?;
    stale["spec"]["gitRepo"] = json!("https://github.com/luksa/other.git");
    let out = env.kubectl_stdin(&["replace", "-f", "-"], &stale).await?;
    ensure!(!out.success(), "a stale update was accepted");
    ensure!(out.stderr.contains("Operation cannot be fulfilled") && out.stderr.contains("modified"), "{}", out.stderr);
    let raw = env
        .cp
        .kubectl_with_stdin(
            &[
                "replace",
                "--raw",
                &format!("/apis/extensions.example.com/v1alpha1/namespaces/{}/websites/blog", env.ns),
                "-f",
                "-",
            ],
            Some(&stale.to_string()),
        )
        .await?;
    ensure!(raw.stderr.contains("Error from server (Conflict)"), "{}{}", raw.stdout, raw.stderr);

    // delete and deletecollection, with a selector.
    env.kubectl(&["delete", V1ALPHA1, "blog"]).await?.ensure_success()?;
    ensure!(env.websites().get_opt("blog").await?.is_none_or(|w| w.metadata.deletion_timestamp.is_some()));
    env.kubectl_stdin(&["create", "-f", "-"], &v1("docs", REPO)).await?.ensure_success()?;
    env.kubectl(&["delete", V1ALPHA1, "-l", "team=web"]).await?.ensure_success()?;
    eventually(TIMEOUT, async || {
        let left = env.websites().list(&Default::default()).await?;
        let names: Vec<_> = left.items.iter().filter_map(|w| w.metadata.name.clone()).collect();
        ensure!(names.is_empty(), "left: {names:?}");
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn website_api_itself_refuses_a_bad_git_repo_with_the_field_and_the_rule() -> Result<()> {
    // No admission webhook: what refuses a v1alpha1 Website can only be website-api.
    let env = Env::start(OperatorOptions { webhook: false, controller: false, ..OperatorOptions::default() }).await?;
    let out = env.kubectl_stdin(&["create", "-f", "-"], &v1alpha1("bad", "file:///etc/passwd")).await?;
    ensure!(!out.success(), "admitted");
    ensure!(out.stderr.contains("The Website \"bad\" is invalid: spec.gitRepo: local paths"), "{}", out.stderr);
    ensure!(out.stderr.contains("accepted:"), "the message does not say what is accepted: {}", out.stderr);
    ensure!(env.websites().get_opt("bad").await?.is_none());
    // The same repository through v1, with no webhook registered, is stored: the CRD schema alone admits it.
    env.kubectl_stdin(&["create", "-f", "-"], &v1("bad", "file:///etc/passwd")).await?.ensure_success()?;
    Ok(())
}

#[tokio::test]
async fn watches_authorization_and_impersonation_go_through_the_aggregation_model() -> Result<()> {
    let env = Env::start(OperatorOptions { controller: false, ..OperatorOptions::default() }).await?;
    env.kubectl_stdin(&["create", "-f", "-"], &v1("kubia", REPO)).await?.ensure_success()?;

    // kubectl get -w through v1alpha1 sees a change made through v1.
    let watch = env.kubectl(&[
        "get",
        V1ALPHA1,
        "-w",
        "--request-timeout=10s",
        "-o",
        "custom-columns=NAME:.metadata.name,REPO:.spec.gitRepo",
    ]);
    let change = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let patch = json!({"spec": {"gitRepo": "https://github.com/luksa/changed.git"}}).to_string();
        env.kubectl(&["patch", "ws", "kubia", "--type=merge", "-p", &patch]).await?.ensure_success()
    };
    let (watched, changed) = tokio::join!(watch, change);
    changed?;
    let watched = watched?;
    ensure!(watched.stdout.contains("https://github.com/luksa/changed.git"), "{}\n{}", watched.stdout, watched.stderr);

    // A user without rights is refused by the main API server (403).
    let out = env.kubectl(&["get", V1ALPHA1, "--as", "nobody"]).await?;
    ensure!(!out.success() && out.stderr.contains("Forbidden") && out.stderr.contains("\"nobody\""), "{}", out.stderr);

    // A write through v1alpha1 reaches the webhooks as the requesting user: the Secret-access check of a Website with
    // credentials judges alice, who may edit Websites but not read the Secret.
    env.grant_website_author("alice").await?;
    let private = json!({"apiVersion": "extensions.example.com/v1", "kind": "Website", "metadata": {"name": "private"},
        "spec": {"gitRepo": "https://github.com/org/private.git", "credentials": {"type": "HTTPS", "secretName": "creds"}}});
    env.kubectl_stdin(&["create", "-f", "-"], &private).await?.ensure_success()?;
    let patch = json!({"spec": {"gitRepo": "https://github.com/org/other-private.git"}}).to_string();
    let out = env.kubectl(&["patch", V1ALPHA1, "private", "--type=merge", "-p", &patch, "--as", "alice"]).await?;
    ensure!(!out.success(), "alice changed a private Website's repository without access to its Secret");
    ensure!(out.stderr.contains("\"alice\"") && out.stderr.contains("creds"), "{}", out.stderr);
    // The same patch of a public Website is hers to make.
    env.kubectl(&["patch", V1ALPHA1, "kubia", "--type=merge", "-p", &patch, "--as", "alice"])
        .await?
        .ensure_success()?;

    // Directly, skipping the aggregator: the front-proxy client certificate and an unprivileged user are refused by
    // website-api's own delegated authorization (403); the same certificate for an admin is served.
    let front = env.cp.front_proxy().context("aggregation is on")?.clone();
    let list = format!("/apis/extensions.example.com/v1alpha1/namespaces/{}/websites", env.ns);
    let cert = Some((front.client_cert_pem.as_str(), front.client_key_pem.as_str()));
    let (code, body) = https_get(&env.api, cert, &list, &[("X-Remote-User", "mallory")]).await?;
    ensure!(code == 403, "{code}: {body}");
    ensure!(body.contains("User \\\"mallory\\\" cannot list resource \\\"websites\\\""), "{body}");
    let (code, body) =
        https_get(&env.api, cert, &list, &[("X-Remote-User", "admin"), ("X-Remote-Group", "system:masters")]).await?;
    ensure!(code == 200 && body.contains("\"WebsiteList\""), "{code}: {body}");
    // Forged headers on a connection without the certificate: 401, whoever they name.
    let (code, body) =
        https_get(&env.api, None, &list, &[("X-Remote-User", "admin"), ("X-Remote-Group", "system:masters")]).await?;
    ensure!(code == 401 && body.contains("no client certificate"), "{code}: {body}");
    // A certificate signed by another CA does not get past the handshake.
    let other = website_certs::CertificateAuthority::generate("mallory-ca", website_certs::days(1))?;
    let forged =
        other.issue_serving(&[website_certs::SubjectName::dns("front-proxy-client")?], website_certs::days(1))?;
    let refused =
        https_get(&env.api, Some((forged.cert_pem(), forged.key_pem())), &list, &[("X-Remote-User", "admin")]).await;
    ensure!(refused.is_err(), "a certificate of another CA was accepted: {refused:?}");
    ensure!(env.api.log(200).contains("refused by the authorizer"), "{}", env.api.log(50));
    Ok(())
}

/// A GET to website-api directly (not through the aggregator), with an optional client certificate: the status code
/// and the body.
async fn https_get(
    api: &AggregatedApi,
    client: Option<(&str, &str)>,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String)> {
    website_e2e::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(api.ca_pem().as_bytes())?)?;
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder.with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(cert.as_bytes())?],
            PrivateKeyDer::from_pem_slice(key.as_bytes())?,
        )?,
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(api.addr()).await?;
    let mut tls = connector.connect(ServerName::try_from("localhost")?, tcp).await?;
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAccept: application/json\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    tls.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let code = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).context("not HTTP")?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((code, body))
}
