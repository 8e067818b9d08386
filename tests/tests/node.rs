//! Websites served by real pods: a node (containerd, the kubelet, kube-proxy, kube-scheduler) joins the local control
//! plane, the controller's Deployment runs Debian's nginx beside the git-sync stand-in, and a git daemon in a pod of
//! its own serves a repository that the test writes.
//!
//! One node for the whole file: the node is host-wide, so the scenarios run in one test, one after another.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, ensure};
use serde_json::Value;
use website_e2e::node::{GitServer, Node};
use website_e2e::operator;
use website_e2e::{ControlPlane, ControlPlaneOptions, Operator, OperatorOptions, eventually};

/// The Websites' `syncIntervalSeconds`: the least the schema accepts, so that a new commit shows quickly.
const SYNC_SECONDS: u64 = 5;

#[tokio::test]
async fn websites_run_as_real_pods_served_updated_scaled_and_an_unreachable_repository_stays_not_ready() -> Result<()> {
    let started = Instant::now();
    let cp = ControlPlane::start(ControlPlaneOptions { node: true, ..ControlPlaneOptions::default() }).await?;
    let node = Node::start(&cp).await?;
    let _op =
        Operator::start(&cp, OperatorOptions { controller_args: node.controller_args(), ..OperatorOptions::default() })
            .await?;
    let git = GitServer::start(&cp, &node).await?;
    git.commit(&[("index.html", "<h1>first</h1>\n"), ("about/index.html", "<p>about</p>\n")])?;
    // A link out of the checkout, and one to the repository's own metadata: neither may be served.
    git.commit_symlink("passwd", "/etc/passwd")?;
    git.commit_symlink("config", "../../.git/config")?;
    eprintln!("website-e2e: node, operator and git server up after {:?}", started.elapsed());

    // A repository nobody answers for: a Service with no pods behind it, so every fetch is refused at once.
    cp.kubectl_with_stdin(
        &["create", "-f", "-"],
        Some(r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"nobody","namespace":"default"},"spec":{"ports":[{"port":9418}],"selector":{"app":"nobody"}}}"#),
    )
    .await?
    .ensure_success()?;
    let nobody = service_ip(&cp, "nobody").await?;
    create_website(&cp, "unreachable", &format!("git://{nobody}/site.git")).await?;
    let unreachable_created = Instant::now();

    // Served: both containers run, the Website is Ready from real pod readiness, and its Service answers.
    create_website(&cp, "site", &git.url()).await?;
    let since = Instant::now();
    wait_ready(&cp, "site", 1).await?;
    eprintln!("website-e2e: a new Website was Ready=True after {:?}", since.elapsed());
    let pods = pods_of(&cp, "site").await?;
    ensure!(pods.len() == 1, "expected 1 pod, found {}", pods.len());
    let statuses = pods[0]["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
    ensure!(
        statuses.len() == 2 && statuses.iter().all(|c| c["ready"] == true && c["state"]["running"].is_object()),
        "both containers should run and be ready: {statuses:?}"
    );
    // The API server reaches the kubelet (at 127.0.0.1) for logs: git-sync published the commit.
    let pod = pods[0]["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    let log = cp.kubectl(&["logs", &pod, "-c", "git-sync"]).await?.ensure_success()?;
    ensure!(log.contains("published ") && log.contains(&git.url()), "git-sync's log does not say it published: {log}");
    // Nobody else gets in: without the API server's client certificate, the kubelet answers 401.
    for path in ["/pods", &format!("/containerLogs/default/{pod}/git-sync")] {
        let out = tokio::process::Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", &format!("{}{path}", node.kubelet_url())])
            .output()
            .await
            .context("failed to run curl")?;
        let code = String::from_utf8_lossy(&out.stdout);
        ensure!(code == "401", "the kubelet answered {code} to {path} without a client certificate");
    }
    let site = SocketAddr::new(service_ip(&cp, "site").await?, 80);
    let (status, body) = http_get(site, "/").await?;
    ensure!(status == 200 && body == "<h1>first</h1>\n", "GET / through the ClusterIP: {status} {body:?}");
    let (status, body) = http_get(site, "/about/").await?;
    ensure!(status == 200 && body == "<p>about</p>\n", "GET /about/ through the ClusterIP: {status} {body:?}");

    // Nothing but the checkout: not the repository, not what a link in it points at.
    for path in ["/.git/config", "/.git/HEAD", "/.git", "/passwd", "/config", "/../.git/config", "/%2e%2e/.git/config"]
    {
        let (status, body) = http_get(site, path).await?;
        ensure!(
            status == 404 || status == 403 || status == 400,
            "GET {path} answered {status}: {body:?} (only the checkout's files may be served)"
        );
        ensure!(!body.contains("root:") && !body.contains("[core]"), "GET {path} leaked {body:?}");
    }

    // A new commit is served within the sync interval, plus the time to fetch and publish it.
    git.commit(&[("index.html", "<h1>second</h1>\n")])?;
    let pushed = Instant::now();
    eventually(Duration::from_secs(SYNC_SECONDS + 30), async || {
        let (status, body) = http_get(site, "/").await?;
        ensure!(status == 200 && body == "<h1>second</h1>\n", "still serving {status} {body:?}");
        Ok(())
    })
    .await
    .context("the new commit was not served")?;
    eprintln!("website-e2e: a pushed commit was served after {:?} (sync interval {SYNC_SECONDS} s)", pushed.elapsed());

    // Three replicas: three ready pods behind the Service, each serving the same checkout.
    cp.kubectl(&["patch", "website", "site", "--type=merge", "-p", r#"{"spec":{"replicas":3}}"#])
        .await?
        .ensure_success()?;
    let since = Instant::now();
    wait_ready(&cp, "site", 3).await?;
    eprintln!("website-e2e: scaled to 3 ready pods in {:?}", since.elapsed());
    let endpoints = eventually(Duration::from_secs(30), async || {
        let out = cp
            .kubectl(&["get", "endpoints", "site", "-o", "jsonpath={.subsets[*].addresses[*].ip}"])
            .await?
            .ensure_success()?;
        let ips: Vec<IpAddr> = out.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
        ensure!(ips.len() == 3, "the Service has {} ready endpoints: {out}", ips.len());
        Ok(ips)
    })
    .await?;
    for ip in endpoints {
        let (status, body) = http_get(SocketAddr::new(ip, 8080), "/").await?;
        ensure!(status == 200 && body == "<h1>second</h1>\n", "pod {ip} serves {status} {body:?}");
    }

    // The unreachable repository: the Website is not ready, its web server is not ready, and nothing restarts,
    // for longer than the web server's liveness probe would take to restart it (10 s + 3 × 20 s).
    let wait = Duration::from_secs(75).saturating_sub(unreachable_created.elapsed());
    tokio::time::sleep(wait).await;
    let website = get_json(&cp, &["get", "website", "unreachable"]).await?;
    let ready = ready_condition(&website).ok_or_else(|| anyhow!("no Ready condition: {website}"))?;
    ensure!(ready["status"] == "False", "a Website with an unreachable repository is Ready: {ready}");
    let pods = pods_of(&cp, "unreachable").await?;
    ensure!(pods.len() == 1, "expected 1 pod of the unreachable Website, found {}", pods.len());
    for container in pods[0]["status"]["containerStatuses"].as_array().cloned().unwrap_or_default() {
        ensure!(container["restartCount"] == 0, "a container restarted: {container}");
        ensure!(container["state"]["running"].is_object(), "a container is not running: {container}");
        if container["name"] == "web" {
            ensure!(container["ready"] == false, "the web server is ready without a checkout: {container}");
        }
    }
    eprintln!("website-e2e: the node's scenarios took {:?} in all", started.elapsed());
    Ok(())
}

async fn create_website(cp: &ControlPlane, name: &str, repo: &str) -> Result<()> {
    let website = serde_json::json!({
        "apiVersion": "extensions.example.com/v1",
        "kind": "Website",
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "gitRepo": repo, "syncIntervalSeconds": SYNC_SECONDS },
    });
    cp.kubectl_with_stdin(&["create", "-f", "-"], Some(&website.to_string())).await?.ensure_success()?;
    Ok(())
}

async fn get_json(cp: &ControlPlane, args: &[&str]) -> Result<Value> {
    let mut args = args.to_vec();
    args.extend(["-n", "default", "-o", "json"]);
    Ok(serde_json::from_str(&cp.kubectl(&args).await?.ensure_success()?)?)
}

fn ready_condition(website: &Value) -> Option<&Value> {
    website["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready")
}

/// Waits until the Website is Ready=True with `replicas` available pods.
async fn wait_ready(cp: &ControlPlane, name: &str, replicas: u64) -> Result<()> {
    eventually(Duration::from_secs(180), async || {
        let website = get_json(cp, &["get", "website", name]).await?;
        let ready = ready_condition(&website).ok_or_else(|| anyhow!("no Ready condition yet"))?;
        ensure!(
            ready["status"] == "True" && website["status"]["availableReplicas"] == replicas,
            "not Ready with {replicas} pods: {ready}"
        );
        Ok(())
    })
    .await
    .with_context(|| format!("the Website {name} did not become Ready with {replicas} pod(s)"))
}

async fn pods_of(cp: &ControlPlane, website: &str) -> Result<Vec<Value>> {
    let list = get_json(cp, &["get", "pods", "-l", &format!("app.kubernetes.io/instance={website}")]).await?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

async fn service_ip(cp: &ControlPlane, name: &str) -> Result<IpAddr> {
    let ip = cp
        .kubectl(&["get", "service", name, "-n", "default", "-o", "jsonpath={.spec.clusterIP}"])
        .await?
        .ensure_success()?;
    ip.trim().parse().with_context(|| format!("the Service {name} has no ClusterIP: {ip:?}"))
}

/// A plain-HTTP GET through the node's network ([`operator::http_get`]), given 10 s: a ClusterIP without a route
/// would otherwise hang.
async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    tokio::time::timeout(Duration::from_secs(10), operator::http_get(addr, path))
        .await
        .map_err(|_| anyhow!("GET http://{addr}{path} timed out"))?
        .with_context(|| format!("GET http://{addr}{path}"))
}
