//! `website-local`: the whole Website operator on this machine, on a real local control plane.
//!
//! `website-local up` starts etcd, kube-apiserver (with its aggregation layer) and kube-controller-manager,
//! installs the CRD, starts the webhook (registered with the API server through URL client configurations and a
//! caBundle from `website-certs`), the controller and website-api (registered with an APIService for
//! `extensions.example.com/v1alpha1`), prints how to use it, and runs until Ctrl-C or SIGTERM, when it
//! stops everything it started. `website-local stop` stops a running `up`; `website-local status` tells
//! whether one runs.
//!
//! `website-local up --with-node` also starts a node (containerd, the kubelet, kube-proxy, kube-scheduler; root
//! only) and a git server in a pod, so that Websites run as real pods and can be fetched with curl from this
//! machine. `stop` also removes what a node that was killed left behind.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use website_e2e::aggregated::AggregatedApi;
use website_e2e::node::{GitServer, Node, clean_up_after_a_killed_node};
use website_e2e::operator::workspace_root;
use website_e2e::{ControlPlane, ControlPlaneOptions, Operator, OperatorOptions};

const USAGE: &str = "usage: website-local [up [--with-node] | stop | status]";

/// Where the pid file and the stable kubeconfig live.
fn local_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WEBSITE_LOCAL_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let cache = match std::env::var_os("WEBSITE_CACHE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("XDG_CACHE_HOME") {
            Some(dir) => PathBuf::from(dir).join("website-operator"),
            None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache/website-operator"),
        },
    };
    Ok(cache.join("local"))
}

/// The pid recorded by a running `up`, if that process is still alive.
fn running_pid(pid_file: &std::path::Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    // Signal 0 checks that the process exists without touching it.
    kill(Pid::from_raw(pid), None).is_ok().then_some(pid)
}

async fn up(with_node: bool) -> Result<()> {
    let dir = local_dir()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let pid_file = dir.join("website-local.pid");
    let kubeconfig = dir.join("kubeconfig");
    if let Some(pid) = running_pid(&pid_file) {
        bail!(
            "already running (pid {pid}); use it with `export KUBECONFIG={}`, or stop it with `scripts/run.sh stop`",
            kubeconfig.display()
        );
    }
    std::fs::write(&pid_file, std::process::id().to_string())
        .with_context(|| format!("failed to write {}", pid_file.display()))?;
    let started = Instant::now();
    eprintln!("starting etcd, kube-apiserver and kube-controller-manager...");
    let cp = ControlPlane::start(ControlPlaneOptions {
        aggregation: true,
        node: with_node,
        ..ControlPlaneOptions::default()
    })
    .await?;
    let node = if with_node {
        eprintln!("starting a node: containerd, the kubelet, kube-proxy and kube-scheduler...");
        Some(Node::start(&cp).await?)
    } else {
        None
    };
    eprintln!("installing the CRD, starting the webhook and the controller...");
    let controller_args = node.as_ref().map(Node::controller_args).unwrap_or_default();
    let operator = Operator::start(&cp, OperatorOptions { controller_args, ..OperatorOptions::default() }).await?;
    eprintln!("starting website-api and registering extensions.example.com/v1alpha1...");
    let api = AggregatedApi::start(&cp).await?;
    let git = match &node {
        Some(node) => {
            eprintln!("starting a git server in a pod...");
            let git = GitServer::start(&cp, node).await?;
            git.commit(&[("index.html", "<h1>Hello from a Website on the local node</h1>\n")])?;
            Some(git)
        }
        None => None,
    };
    std::fs::copy(cp.kubeconfig_path(), &kubeconfig)
        .with_context(|| format!("failed to write {}", kubeconfig.display()))?;
    let examples = workspace_root().join("examples");
    let pods = match &git {
        Some(git) => format!(
            "Pods run on the node {node}. A git server in a pod serves {url}:\n\
             \x20 kubectl create -f - <<<'{{\"apiVersion\":\"extensions.example.com/v1\",\"kind\":\"Website\",\
             \"metadata\":{{\"name\":\"local\"}},\"spec\":{{\"gitRepo\":\"{url}\",\"syncIntervalSeconds\":5}}}}'\n\
             \x20 kubectl wait website/local --for=condition=Ready --timeout=2m\n\
             \x20 curl http://$(kubectl get service local -o jsonpath='{{.spec.clusterIP}}')/\n\
             To publish a change, commit in {work} and run `git -C {work} push {bare} HEAD:main`.\n\
             Pods reach only the pod network and Service addresses: a Website of a repository elsewhere stays \
             Ready=False.",
            node = website_e2e::node::NODE_NAME,
            url = git.url(),
            work = git.work_dir().display(),
            bare = git.bare_dir().display(),
        ),
        None => "There is no kubelet here, so pods stay Pending and the Website stays Ready=False \
                 (`scripts/run.sh --with-node` adds a node)."
            .to_owned(),
    };
    println!(
        "\nThe Website operator is running (up in {:.1} s). Logs are in {}.\n\n\
         Try it:\n\
         \x20 export KUBECONFIG={}\n\
         \x20 export PATH={}:$PATH                         # kubectl and helm of this control plane\n\
         \x20 kubectl create -f {}/website.yaml            # admitted, defaults filled in\n\
         \x20 kubectl get websites                          # or: kubectl get ws\n\
         \x20 kubectl get deployment,service kubia          # what the controller made of it\n\
         \x20 kubectl create -f {}/invalid/file-scheme.yaml # refused by the webhook\n\
         \x20 kubectl create -f {}/website-http.yaml       # admitted with a warning\n\
         \x20 kubectl get websites.v1alpha1.extensions.example.com  # the same Websites through website-api\n\n\
         {pods}\n\
         Press Ctrl-C (or run `scripts/run.sh stop`) to stop everything.",
        started.elapsed().as_secs_f64(),
        cp.state_dir().display(),
        kubeconfig.display(),
        cp.assets().dir.display(),
        examples.display(),
        examples.display(),
        examples.display(),
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("stopping...");
    drop(api);
    drop(operator);
    drop(git);
    drop(node);
    drop(cp);
    let _ = std::fs::remove_file(&kubeconfig);
    let _ = std::fs::remove_file(&pid_file);
    eprintln!("stopped");
    Ok(())
}

fn stop() -> Result<()> {
    let pid_file = local_dir()?.join("website-local.pid");
    let Some(pid) = running_pid(&pid_file) else {
        println!("not running");
        return clean_up_node();
    };
    kill(Pid::from_raw(pid), Signal::SIGTERM).with_context(|| format!("failed to signal pid {pid}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while running_pid(&pid_file).is_some() {
        if Instant::now() > deadline {
            bail!("pid {pid} did not stop within 30 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("stopped (pid {pid})");
    clean_up_node()
}

/// Removes what a killed node left (containers, network namespaces, the bridge, iptables rules), if anything.
fn clean_up_node() -> Result<()> {
    if nix::unistd::geteuid().is_root() && clean_up_after_a_killed_node()? {
        println!("removed what a killed node left behind");
    }
    Ok(())
}

fn status() -> Result<()> {
    let dir = local_dir()?;
    match running_pid(&dir.join("website-local.pid")) {
        Some(pid) => println!("running (pid {pid}); export KUBECONFIG={}", dir.join("kubeconfig").display()),
        None => println!("not running"),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    website_e2e::install_crypto_provider();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args[..] {
        [] | ["up"] => up(false).await,
        ["up", "--with-node"] | ["--with-node"] => up(true).await,
        ["stop"] => stop(),
        ["status"] => status(),
        ["-h" | "--help"] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => {
            eprintln!("error: unknown arguments {args:?}; {USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
