//! A real node for a [`ControlPlane`]: containerd and runc run the pods, a CNI bridge wires them, the kubelet
//! registers the node, kube-proxy routes Service ClusterIPs to pods, and kube-scheduler places them.
//!
//! Everything it reaches stays on this machine: the kubelet and kube-proxy listen on `127.0.0.1`, pods live on a
//! bridge of their own ([`BRIDGE`], subnet [`POD_SUBNET`]), the Service range is routed through that bridge before
//! kube-proxy runs (so no ClusterIP packet takes the default route), nothing is masqueraded, pods get no name
//! server, and forwarding from the pod subnet to any other interface is dropped.
//!
//! The node needs root (network and cgroups). It is host-wide: kube-proxy's iptables chains and the bridge are
//! shared by the whole machine, so only one node runs at a time. [`Node::start`] waits for a lock file that a
//! running node holds, and a node that was killed before cleaning up is cleaned up by the next one.
//!
//! Dropping the node removes what it made and nothing else: the containers and their shims, the network namespaces
//! of its pods, its mounts, its cgroups, the iptables rules and chains that were not there before it started, the
//! route, the bridge, and its directory; changed sysctls get their former values back.
//!
//! Images are built by `scripts/images.sh` from Debian packages ([`Images`]) and imported into the node's own
//! containerd. Nothing is pulled: the controller is told to use `imagePullPolicy: Never`.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use tempfile::TempDir;

use crate::control_plane::{flag, free_ports, loopback};
use crate::operator::workspace_root;
use crate::process::{ChildProcess, stop_all};
use crate::{ControlPlane, eventually};

/// The bridge the node's pods are attached to.
pub const BRIDGE: &str = "wsnode0";
/// The pods' addresses.
pub const POD_SUBNET: &str = "10.244.0.0/24";
/// The bridge's own address: the pods' gateway, and the host's address on the pod network.
pub const GATEWAY: &str = "10.244.0.1";
/// What every pod address starts with.
const POD_PREFIX: &str = "10.244.0.";
/// The rule in FORWARD that keeps the pods off every interface but their bridge.
const FORWARD_DROP: [&str; 11] = [
    "-s",
    POD_SUBNET,
    "!",
    "-o",
    BRIDGE,
    "-m",
    "comment",
    "--comment",
    "website-node: pods reach nothing off their bridge",
    "-j",
    "DROP",
];
/// The control plane's Service range (its `--service-cluster-ip-range`).
pub const SERVICE_SUBNET: &str = "10.96.0.0/16";
/// The node's name.
pub const NODE_NAME: &str = "website-node";
/// The controllers of kube-controller-manager a node needs besides the default ones: Endpoints for kube-proxy,
/// and the node lifecycle controller, which lifts the not-ready taint once the kubelet reports Ready.
pub const NODE_CONTROLLERS: &[&str] = &["endpoint", "nodelifecycle"];
/// Where the lock that keeps nodes apart lives.
const LOCK_PATH: &str = "/run/website-e2e-node.lock";
/// The containerd namespace of the CRI plugin.
const K8S_NAMESPACE: &str = "k8s.io";
/// The cgroup (in every v1 hierarchy) under which the kubelet puts its pods.
const CGROUP_ROOT: &str = "website-node";
/// iptables tables whose chains the node's processes change.
const IPTABLES_TABLES: [&str; 4] = ["filter", "nat", "mangle", "raw"];
/// The sysctls the node's processes set, restored on clean-up.
const SYSCTLS: [&str; 3] =
    ["net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet", "net/bridge/bridge-nf-call-iptables"];

/// The images `scripts/images.sh` builds, by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    /// The pod sandbox.
    pub pause: String,
    /// Debian's nginx, with the contract of the controller's default web image.
    pub web: String,
    /// The test-only stand-in for git-sync v4 (`tests/images/git-sync-standin`), which also runs `git daemon`.
    pub git_sync: String,
    /// The docker-archive tarballs, in the order above.
    tarballs: [PathBuf; 3],
}

impl Images {
    /// Builds the images (or finds them unchanged in the cache) with `scripts/images.sh`, using `pause`.
    ///
    /// # Errors
    /// When the script fails or does not name every image.
    pub async fn build(pause: &Path) -> Result<Self> {
        let script = workspace_root().join("scripts/images.sh");
        let out = tokio::process::Command::new("bash")
            .arg(&script)
            .arg(pause)
            .output()
            .await
            .with_context(|| format!("failed to run {}", script.display()))?;
        ensure!(
            out.status.success(),
            "{} failed ({}):\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let env_file = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_owned();
        let text = fs::read_to_string(&env_file).with_context(|| format!("failed to read {env_file}"))?;
        let value = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("{env_file} names no {key}"))
        };
        Ok(Self {
            pause: value("PAUSE_IMAGE")?,
            web: value("WEB_IMAGE")?,
            git_sync: value("GIT_SYNC_IMAGE")?,
            tarballs: [value("PAUSE_TARBALL")?.into(), value("WEB_TARBALL")?.into(), value("GIT_SYNC_TARBALL")?.into()],
        })
    }
}

/// A running node. Dropping it stops its processes and removes everything it made.
pub struct Node {
    images: Images,
    dir: PathBuf,
    ctr_socket: PathBuf,
    kubelet: Option<ChildProcess>,
    kubelet_port: u16,
    kube_proxy: Option<ChildProcess>,
    scheduler: Option<ChildProcess>,
    containerd: Option<ChildProcess>,
    before: HostState,
    made_bridge: bool,
    /// Held for the node's life; closing it releases the lock.
    _lock: File,
    /// Declared last: deleted once everything above has stopped.
    _tempdir: TempDir,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node").field("dir", &self.dir).field("images", &self.images).finish_non_exhaustive()
    }
}

/// What the host had before the node started, so that clean-up removes only what the node added.
#[derive(Clone, Debug, Default)]
struct HostState {
    /// `iptables-save` lines (rules and chain names) per table.
    iptables: Vec<(String, BTreeSet<String>)>,
    netns: BTreeSet<String>,
    sysctls: Vec<(String, String)>,
}

impl HostState {
    /// The file in a node's directory that records the host's state before the node started.
    const FILE: &'static str = "host-before.json";

    fn save(&self, dir: &Path) -> Result<()> {
        let json = serde_json::json!({
            "iptables": self.iptables.iter().map(|(t, lines)| (t.clone(), serde_json::json!(lines))).collect::<serde_json::Map<_, _>>(),
            "netns": self.netns,
            "sysctls": self.sysctls.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone()))).collect::<serde_json::Map<_, _>>(),
        });
        fs::write(dir.join(Self::FILE), serde_json::to_vec(&json)?).context("failed to record the host's state")
    }

    fn load(dir: &Path) -> Option<Self> {
        let json: serde_json::Value = serde_json::from_slice(&fs::read(dir.join(Self::FILE)).ok()?).ok()?;
        let strings = |v: &serde_json::Value| -> BTreeSet<String> {
            v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect()
        };
        Some(Self {
            iptables: json["iptables"].as_object()?.iter().map(|(t, lines)| (t.clone(), strings(lines))).collect(),
            netns: strings(&json["netns"]),
            sysctls: json["sysctls"]
                .as_object()?
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect(),
        })
    }

    /// Puts back what the host had: removes the iptables rules and chains added since, and resets the sysctls.
    fn restore(&self) {
        restore_iptables(&self.iptables);
        for (sysctl, value) in &self.sysctls {
            let _ = fs::write(Path::new("/proc/sys").join(sysctl), value);
        }
    }

    fn read() -> Self {
        let iptables = IPTABLES_TABLES.iter().map(|t| ((*t).to_owned(), iptables_lines(t))).collect();
        let netns = netns_names();
        let sysctls = SYSCTLS
            .iter()
            .filter_map(|s| {
                fs::read_to_string(Path::new("/proc/sys").join(s)).ok().map(|v| ((*s).to_owned(), v.trim().to_owned()))
            })
            .collect();
        Self { iptables, netns, sysctls }
    }
}

impl Node {
    /// Starts a node for `cp` and waits until it is Ready and schedulable. `cp` must have been started for a node
    /// ([`ControlPlaneOptions::node`](crate::ControlPlaneOptions::node)).
    ///
    /// # Errors
    /// When this is not root, a part of the node is missing (run `scripts/provision.sh --with-node`), or a
    /// process does not start; the error quotes the end of its log.
    pub async fn start(cp: &ControlPlane) -> Result<Self> {
        ensure!(nix_is_root(), "a node needs root (it creates a bridge, network namespaces and cgroups)");
        let client_ca = cp
            .kubelet_client_ca()
            .ok_or_else(|| anyhow!("the control plane was not started for a node (ControlPlaneOptions::node)"))?
            .to_path_buf();
        let assets = cp.assets().dir.clone();
        let binary = |name: &str| -> Result<PathBuf> {
            let path = assets.join(name);
            ensure!(
                path.is_file(),
                "{} is missing: run `scripts/provision.sh --with-node` (it builds the node's binaries)",
                path.display()
            );
            Ok(path)
        };
        let (kubelet_bin, proxy_bin, scheduler_bin, pause_bin) =
            (binary("kubelet")?, binary("kube-proxy")?, binary("kube-scheduler")?, binary("pause")?);
        for tool in ["containerd", "ctr", "runc", "iptables", "iptables-save", "ip"] {
            ensure!(
                which(tool).is_some(),
                "{tool} is not installed: run `scripts/provision.sh --with-node` (it installs containerd, runc, the \
                 CNI plugins and iptables from Debian)"
            );
        }
        ensure!(
            Path::new("/usr/lib/cni/bridge").is_file(),
            "no CNI plugins in /usr/lib/cni: run `scripts/provision.sh --with-node`"
        );
        // Pods reach the git server through its ClusterIP, from the same bridge: the reply must pass conntrack.
        let bridge_netfilter = Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables");
        if !bridge_netfilter.exists() {
            let _ = Command::new("modprobe").arg("br_netfilter").output();
        }
        ensure!(
            bridge_netfilter.exists(),
            "the kernel module br_netfilter is not loaded and `modprobe br_netfilter` did not load it: pods could not \
             reach a Service on their own bridge"
        );
        // kube-proxy v1.20 removes IPVS rules it takes for its own leftovers, even in iptables mode.
        let ipvs = fs::read_to_string("/proc/net/ip_vs").unwrap_or_default();
        ensure!(
            !ipvs.lines().any(|l| l.starts_with("TCP") || l.starts_with("UDP") || l.starts_with("FWM")),
            "this machine has IPVS virtual servers (/proc/net/ip_vs), which kube-proxy could remove: no node here"
        );
        let images = Images::build(&pause_bin).await?;

        let (mut lock, previous) = take_lock().await?;
        // Holding the lock, whatever is left of a node is a killed run's: remove it.
        remove_leftovers(previous.as_deref());

        let tempdir = tempfile::Builder::new()
            .prefix("website-node-")
            .tempdir()
            .context("failed to create the node's directory")?;
        let dir = tempdir.path().to_path_buf();
        // Recorded in the lock file, so that the next node can clean up after this one if it is killed.
        {
            use std::io::{Seek as _, Write as _};
            lock.set_len(0)?;
            lock.rewind()?;
            lock.write_all(dir.to_string_lossy().as_bytes())?;
            lock.sync_all()?;
        }
        let before = HostState::read();
        before.save(&dir)?;
        let mut node = Self {
            images,
            ctr_socket: dir.join("containerd/containerd.sock"),
            dir,
            kubelet: None,
            kubelet_port: 0,
            kube_proxy: None,
            scheduler: None,
            containerd: None,
            before,
            made_bridge: false,
            _lock: lock,
            _tempdir: tempdir,
        };
        node.network()?;
        node.start_containerd().await?;
        node.import_images().await?;
        node.start_kubelet(cp, &kubelet_bin, &client_ca).await?;
        node.start_kube_proxy(cp, &proxy_bin).await?;
        node.start_scheduler(cp, &scheduler_bin).await?;
        node.wait_until_schedulable(cp).await?;
        Ok(node)
    }

    /// The images the node holds.
    pub fn images(&self) -> &Images {
        &self.images
    }

    /// The kubelet's API: `https://127.0.0.1:<port>`, for the API server's client certificate only.
    pub fn kubelet_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.kubelet_port)
    }

    /// The node's directory (its processes' state and logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The controller's flags that make its pods run on this node: the local images, never pulled.
    pub fn controller_args(&self) -> Vec<String> {
        vec![
            format!("--web-image={}", self.images.web),
            format!("--git-sync-image={}", self.images.git_sync),
            "--image-pull-policy=Never".to_owned(),
        ]
    }

    /// The bridge with the gateway address, and the Service range routed through it; a drop of anything the pods
    /// would forward to another interface.
    fn network(&mut self) -> Result<()> {
        // Bridged traffic through iptables, so that a reply from a Service's pod on the same bridge is un-NATed.
        // Restored on clean-up with the other sysctls.
        fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "1")
            .context("failed to set net.bridge.bridge-nf-call-iptables")?;
        run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
        self.made_bridge = true;
        run("ip", &["addr", "add", &format!("{GATEWAY}/24"), "dev", BRIDGE])?;
        run("ip", &["link", "set", BRIDGE, "up"])?;
        run("ip", &["route", "add", SERVICE_SUBNET, "dev", BRIDGE])?;
        run("iptables", &[&["-I", "FORWARD", "1"][..], &FORWARD_DROP[..]].concat())?;
        let conf_dir = self.dir.join("cni/net.d");
        fs::create_dir_all(&conf_dir)?;
        let conflist = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": "website-node",
            "plugins": [{
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": POD_SUBNET, "gateway": GATEWAY }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": self.dir.join("cni/ipam"),
                },
            }],
        });
        fs::write(conf_dir.join("10-website-node.conflist"), serde_json::to_vec_pretty(&conflist)?)?;
        Ok(())
    }

    async fn start_containerd(&mut self) -> Result<()> {
        let root = self.dir.join("containerd");
        fs::create_dir_all(&root)?;
        let config = format!(
            r#"version = 2
root = "{root}/root"
state = "{root}/state"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # This machine does not let a process lower its oom_score_adj: without this every sandbox fails to start.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
            root = root.display(),
            socket = self.ctr_socket.display(),
            pause = self.images.pause,
            cni = self.dir.join("cni/net.d").display(),
        );
        let config_path = root.join("config.toml");
        fs::write(&config_path, config)?;
        let mut command = Command::new("containerd");
        command.arg("--config").arg(&config_path).arg("--log-level=warn");
        let mut containerd = ChildProcess::spawn("containerd", command, &self.dir)?;
        let socket = self.ctr_socket.clone();
        containerd.wait_until("listening", Duration::from_secs(30), async || socket.exists()).await?;
        self.containerd = Some(containerd);
        Ok(())
    }

    async fn import_images(&self) -> Result<()> {
        for tarball in &self.images.tarballs {
            let out = self.ctr(&["images", "import", "--no-unpack=false", &tarball.display().to_string()]).await?;
            ensure!(
                out.status.success(),
                "ctr images import {} failed: {}",
                tarball.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Runs `ctr` against the node's containerd, in the Kubernetes namespace.
    async fn ctr(&self, args: &[&str]) -> Result<std::process::Output> {
        tokio::process::Command::new("ctr")
            .arg("--address")
            .arg(&self.ctr_socket)
            .args(["--namespace", K8S_NAMESPACE])
            .args(args)
            .output()
            .await
            .context("failed to run ctr")
    }

    async fn start_kubelet(&mut self, cp: &ControlPlane, binary: &Path, client_ca: &Path) -> Result<()> {
        make_cgroup_root()?;
        let [port, healthz] = free_ports::<2>()?;
        let config = serde_json::json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": "127.0.0.1",
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": format!("/{CGROUP_ROOT}"),
            "failSwapOn": false,
            // kube-proxy makes the chains it needs; the kubelet adds none of its own to the host's tables.
            "makeIPTablesUtilChains": false,
            // Only the API server, with the client certificate made for this run, may use the kubelet's API (logs,
            // exec): no other process of this machine.
            "authentication": {
                "x509": { "clientCAFile": client_ca },
                "anonymous": { "enabled": false },
                "webhook": { "enabled": false },
            },
            "authorization": { "mode": "AlwaysAllow" },
            // Pods get no name server: nothing they resolve can lead off this machine.
            "resolvConf": "",
            // The machine's disk may be nearly full; that is no reason to evict the tests' pods.
            "evictionHard": { "memory.available": "50Mi", "nodefs.available": "1%", "nodefs.inodesFree": "1%", "imagefs.available": "1%" },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": false,
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
        });
        let config_path = self.dir.join("kubelet-config.json");
        fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
        let mut command = Command::new(binary);
        command
            .arg(flag("config", &config_path))
            .arg(flag("kubeconfig", cp.kubeconfig_path()))
            .arg("--container-runtime=remote")
            .arg(format!("--container-runtime-endpoint=unix://{}", self.ctr_socket.display()))
            .arg(flag("root-dir", &self.dir.join("kubelet")))
            .arg(flag("cert-dir", &self.dir.join("kubelet/pki")))
            .arg(format!("--hostname-override={NODE_NAME}"))
            .arg("--node-ip=127.0.0.1")
            .arg(format!("--pod-infra-container-image={}", self.images.pause))
            .arg("--v=1");
        self.kubelet_port = port;
        let mut kubelet = ChildProcess::spawn("kubelet", command, &self.dir)?;
        kubelet.wait_for_port(loopback(healthz), Duration::from_secs(60)).await?;
        self.kubelet = Some(kubelet);
        Ok(())
    }

    async fn start_kube_proxy(&mut self, cp: &ControlPlane, binary: &Path) -> Result<()> {
        let [metrics, healthz] = free_ports::<2>()?;
        let mut command = Command::new(binary);
        command
            .arg(flag("kubeconfig", cp.kubeconfig_path()))
            .arg("--proxy-mode=iptables")
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--metrics-bind-address=127.0.0.1:{metrics}"))
            .arg(format!("--healthz-bind-address=127.0.0.1:{healthz}"))
            .arg(format!("--cluster-cidr={POD_SUBNET}"))
            .arg(format!("--hostname-override={NODE_NAME}"))
            // Leave the machine's conntrack settings as they are.
            .arg("--conntrack-max-per-core=0")
            .arg("--conntrack-tcp-timeout-established=0")
            .arg("--conntrack-tcp-timeout-close-wait=0")
            // kube-controller-manager runs the Endpoints controller, not the EndpointSlice one.
            .arg("--feature-gates=EndpointSliceProxying=false")
            .arg("--iptables-min-sync-period=0s")
            .arg("--v=1");
        let mut proxy = ChildProcess::spawn("kube-proxy", command, &self.dir)?;
        proxy.wait_for_port(loopback(healthz), Duration::from_secs(60)).await?;
        self.kube_proxy = Some(proxy);
        Ok(())
    }

    async fn start_scheduler(&mut self, cp: &ControlPlane, binary: &Path) -> Result<()> {
        let [port] = free_ports::<1>()?;
        let mut command = Command::new(binary);
        command
            .arg(flag("kubeconfig", cp.kubeconfig_path()))
            .arg(flag("authentication-kubeconfig", cp.kubeconfig_path()))
            .arg(flag("authorization-kubeconfig", cp.kubeconfig_path()))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={port}"))
            .arg("--port=0")
            .arg("--leader-elect=false")
            .arg(flag("cert-dir", &self.dir.join("scheduler-certs")))
            .arg("--v=1");
        let mut scheduler = ChildProcess::spawn("kube-scheduler", command, &self.dir)?;
        scheduler.wait_for_port(loopback(port), Duration::from_secs(60)).await?;
        self.scheduler = Some(scheduler);
        Ok(())
    }

    async fn wait_until_schedulable(&mut self, cp: &ControlPlane) -> Result<()> {
        let started = Instant::now();
        // The kubelet refuses a loopback node IP and then reports no address at all, and the API server could not
        // reach it for `kubectl logs`. Its address is 127.0.0.1: say so. The kubelet keeps it, since its own address
        // setter fails before it changes anything. InternalIP only: the API server would look a host name up in DNS.
        eventually(Duration::from_secs(60), async || {
            cp.kubectl(&[
                "patch",
                "node",
                NODE_NAME,
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"}]}}"#,
            ])
            .await?
            .ensure_success()?;
            Ok(())
        })
        .await
        .context("the kubelet did not register the node")?;
        let waited = eventually(Duration::from_secs(90), async || {
            let out = cp
                .kubectl(&[
                    "get",
                    "node",
                    NODE_NAME,
                    "-o",
                    r#"jsonpath={.status.conditions[?(@.type=="Ready")].status} {.spec.taints[*].key}"#,
                ])
                .await?
                .ensure_success()?;
            let (ready, taints) = out.trim().split_once(' ').unwrap_or((out.trim(), ""));
            ensure!(ready == "True", "the node is not Ready ({ready})");
            ensure!(taints.trim().is_empty(), "the node is tainted: {taints}");
            Ok(())
        })
        .await;
        if let Err(err) = waited {
            let kubelet = self.kubelet.as_ref().map(|k| k.log_tail(30)).unwrap_or_default();
            bail!("{err:#}\nkubelet log:\n{kubelet}");
        }
        eprintln!("website-e2e: node {NODE_NAME} Ready and schedulable after {:?}", started.elapsed());
        Ok(())
    }

    /// Removes the containers, shims and network namespaces of the node's pods.
    fn remove_containers(&self) {
        let ctr = |args: &[&str]| {
            Command::new("ctr")
                .arg("--address")
                .arg(&self.ctr_socket)
                .args(["--namespace", K8S_NAMESPACE])
                .args(args)
                .output()
        };
        if let Ok(out) = ctr(&["tasks", "ls", "-q"]) {
            for task in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = ctr(&["tasks", "kill", "-s", "SIGKILL", task]);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let tasks: Vec<String> = ctr(&["tasks", "ls", "-q"])
                    .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().map(str::to_owned).collect())
                    .unwrap_or_default();
                for task in &tasks {
                    let _ = ctr(&["tasks", "rm", "-f", task]);
                }
                if tasks.is_empty() || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        if let Ok(out) = ctr(&["containers", "ls", "-q"]) {
            for container in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = ctr(&["containers", "rm", container]);
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The kubelet first, so that it restarts nothing; then the containers while containerd still runs.
        let mut stopping: Vec<&mut ChildProcess> =
            [&mut self.kubelet, &mut self.scheduler].into_iter().filter_map(Option::as_mut).collect();
        stop_all(&mut stopping, Duration::from_secs(5));
        if self.containerd.is_some() {
            self.remove_containers();
        }
        let mut rest: Vec<&mut ChildProcess> =
            [&mut self.kube_proxy, &mut self.containerd].into_iter().filter_map(Option::as_mut).collect();
        stop_all(&mut rest, Duration::from_secs(5));
        for name in netns_names().difference(&self.before.netns) {
            if name.starts_with("cni-") {
                let _ = run("ip", &["netns", "delete", name]);
            }
        }
        unmount_below(&self.dir);
        remove_cgroup_root();
        self.before.restore();
        if self.made_bridge {
            let _ = run("ip", &["route", "del", SERVICE_SUBNET, "dev", BRIDGE]);
            let _ = run("ip", &["link", "del", BRIDGE]);
        }
    }
}

/// A `git daemon` in a pod of its own on the node, serving a repository that the test writes on the host (the
/// pod mounts it with a hostPath volume), behind a Service: its URL is `git://<ClusterIP>/site.git`.
#[derive(Debug)]
pub struct GitServer {
    bare: PathBuf,
    work: PathBuf,
    url: String,
}

impl GitServer {
    /// Creates the empty repository, runs the daemon's pod and Service in `default`, and waits until it is ready.
    ///
    /// # Errors
    /// When git fails, or the pod is not ready within two minutes.
    pub async fn start(cp: &ControlPlane, node: &Node) -> Result<Self> {
        let root = node.dir().join("git");
        let (bare, work) = (root.join("site.git"), root.join("work"));
        fs::create_dir_all(&work)?;
        git(&root, &["init", "-q", "--bare", "-b", "main", "site.git"])?;
        git(&work, &["init", "-q", "-b", "main"])?;
        let manifest = serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": { "name": "git-server", "namespace": "default", "labels": { "app": "git-server" } },
                    "spec": {
                        "containers": [{
                            "name": "git-daemon",
                            "image": node.images().git_sync,
                            "imagePullPolicy": "Never",
                            "command": ["git", "daemon", "--reuseaddr", "--export-all", "--base-path=/srv/git",
                                "--listen=0.0.0.0", "--port=9418", "--informative-errors", "--verbose"],
                            // The repository on the host is root's.
                            "securityContext": { "runAsUser": 0 },
                            "ports": [{ "containerPort": 9418, "name": "git" }],
                            "readinessProbe": { "tcpSocket": { "port": 9418 }, "periodSeconds": 1 },
                            "volumeMounts": [{ "name": "repos", "mountPath": "/srv/git", "readOnly": true }],
                        }],
                        "volumes": [{ "name": "repos", "hostPath": { "path": root, "type": "Directory" } }],
                    },
                },
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": { "name": "git-server", "namespace": "default" },
                    "spec": { "selector": { "app": "git-server" }, "ports": [{ "port": 9418, "targetPort": "git" }] },
                },
            ],
        });
        cp.kubectl_with_stdin(&["create", "-f", "-"], Some(&manifest.to_string())).await?.ensure_success()?;
        eventually(Duration::from_secs(120), async || {
            let ready = cp
                .kubectl(&[
                    "get",
                    "pod",
                    "git-server",
                    "-n",
                    "default",
                    "-o",
                    r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
                ])
                .await?
                .ensure_success()?;
            ensure!(ready.trim() == "True", "the git server's pod is not ready ({ready})");
            Ok(())
        })
        .await
        .context("the git server did not start")?;
        let ip = cp
            .kubectl(&["get", "service", "git-server", "-n", "default", "-o", "jsonpath={.spec.clusterIP}"])
            .await?
            .ensure_success()?;
        Ok(Self { bare, work, url: format!("git://{}/site.git", ip.trim()) })
    }

    /// The working copy on the host: commit there and push to [`GitServer::bare_dir`] to publish.
    pub fn work_dir(&self) -> &Path {
        &self.work
    }

    /// The repository the daemon serves, on the host.
    pub fn bare_dir(&self) -> &Path {
        &self.bare
    }

    /// The repository's URL, for a Website's `gitRepo`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Writes `files` (path, contents) into the working copy, commits them and pushes the commit.
    ///
    /// # Errors
    /// When a file cannot be written or git fails.
    pub fn commit(&self, files: &[(&str, &str)]) -> Result<()> {
        for (path, contents) in files {
            let path = self.work.join(path);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(&path, contents).with_context(|| format!("failed to write {}", path.display()))?;
        }
        self.push(&format!("write {}", files.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(", ")))
    }

    /// Commits a symbolic link at `path` pointing to `target`, and pushes it.
    ///
    /// # Errors
    /// When the link cannot be made or git fails.
    pub fn commit_symlink(&self, path: &str, target: &str) -> Result<()> {
        std::os::unix::fs::symlink(target, self.work.join(path))
            .with_context(|| format!("failed to link {path} to {target}"))?;
        self.push(&format!("link {path} to {target}"))
    }

    fn push(&self, message: &str) -> Result<()> {
        git(&self.work, &["add", "-A"])?;
        git(
            &self.work,
            &["-c", "user.name=website-e2e", "-c", "user.email=e2e@example.com", "commit", "-q", "-m", message],
        )?;
        git(&self.work, &["push", "-q", &self.bare.to_string_lossy(), "HEAD:main"])
    }
}

/// Runs git in `dir`.
fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("git").current_dir(dir).args(args).output().context("failed to run git")?;
    ensure!(
        out.status.success(),
        "git {} failed in {}: {}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Removes what a node killed before it could clean up left on this machine, unless a node is running (then it
/// is left alone). Returns whether there was anything to remove.
///
/// # Errors
/// When the lock file cannot be opened.
pub fn clean_up_after_a_killed_node() -> Result<bool> {
    let mut file = match File::options().read(true).write(true).open(LOCK_PATH) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(err).with_context(|| format!("failed to open {LOCK_PATH}")),
    };
    if file.try_lock().is_err() {
        return Ok(false);
    }
    let previous = previous_node_dir(&mut file)?;
    let left = previous.as_deref().is_some_and(Path::exists) || Path::new("/sys/class/net").join(BRIDGE).exists();
    remove_leftovers(previous.as_deref());
    Ok(left)
}

/// How long [`Node::start`] waits for another node (a test, or `scripts/run.sh --with-node`) to stop.
const LOCK_WAIT: Duration = Duration::from_secs(20 * 60);

/// Takes the lock that keeps nodes apart, waiting up to [`LOCK_WAIT`] for the node that holds it. Returns the lock
/// and the directory of the node that held it last (written by that node, left behind if it was killed).
async fn take_lock() -> Result<(File, Option<PathBuf>)> {
    let mut file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(LOCK_PATH)
        .with_context(|| format!("failed to open {LOCK_PATH}"))?;
    let started = Instant::now();
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                ensure!(
                    started.elapsed() < LOCK_WAIT,
                    "another node has held {LOCK_PATH} for {LOCK_WAIT:?}: stop it (`scripts/run.sh stop`) and retry"
                );
                if !told {
                    eprintln!("website-e2e: another node runs on this machine (it holds {LOCK_PATH}); waiting for it");
                    told = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(std::fs::TryLockError::Error(err)) => {
                return Err(err).with_context(|| format!("failed to lock {LOCK_PATH}"));
            }
        }
    }
    let previous = previous_node_dir(&mut file)?;
    Ok((file, previous))
}

/// The directory that the last node to hold the lock recorded in `lock`, if any.
fn previous_node_dir(lock: &mut File) -> Result<Option<PathBuf>> {
    let mut previous = String::new();
    std::io::Read::read_to_string(lock, &mut previous).with_context(|| format!("failed to read {LOCK_PATH}"))?;
    Ok(Some(PathBuf::from(previous.trim())).filter(|p| p.is_absolute()))
}

/// Removes what a killed node left. Only called with the lock held, so no node is running: `previous` is the
/// directory of the last node. Its processes (container shims, and the containers in its cgroups) are killed,
/// then its pods' network namespaces, its mounts and its directory, the bridge (and with it the route), the
/// iptables rules and chains added after its snapshot of the host, and the forwarding rule are removed.
fn remove_leftovers(previous: Option<&Path>) {
    let bridge = Path::new("/sys/class/net").join(BRIDGE).exists();
    let dir = previous.filter(|d| d.exists());
    if !bridge && dir.is_none() && cgroup_hierarchies().iter().all(|h| !h.join(CGROUP_ROOT).exists()) {
        return;
    }
    eprintln!(
        "website-e2e: removing what a killed node left behind ({})",
        previous.map_or_else(String::new, |p| p.display().to_string())
    );
    if let Some(dir) = dir {
        // The shims of its containers were started with its containerd's address, which is under its directory.
        let marker = dir.to_string_lossy().into_owned();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&marker) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
    kill_cgroup_processes();
    std::thread::sleep(Duration::from_millis(500));
    for name in netns_names() {
        if name.starts_with("cni-") && netns_is_a_pods(&name) {
            let _ = run("ip", &["netns", "delete", &name]);
        }
    }
    let before = dir.and_then(HostState::load);
    if let Some(dir) = dir {
        unmount_below(dir);
        let _ = fs::remove_dir_all(dir);
    }
    if bridge {
        let _ = run("ip", &["link", "del", BRIDGE]);
    }
    if let Some(before) = before {
        before.restore();
    }
    while run("iptables", &[&["-D", "FORWARD"][..], &FORWARD_DROP[..]].concat()).is_ok() {}
    remove_cgroup_root();
}

/// Whether network namespace `name` holds no process and an address of [`POD_SUBNET`]: a pod's of a node.
fn netns_is_a_pods(name: &str) -> bool {
    let pids = Command::new("ip").args(["netns", "pids", name]).output();
    let addrs = Command::new("ip").args(["-n", name, "-4", "-o", "addr"]).output();
    match (pids, addrs) {
        (Ok(pids), Ok(addrs)) => {
            pids.stdout.iter().all(u8::is_ascii_whitespace)
                && String::from_utf8_lossy(&addrs.stdout).contains(&format!(" {POD_PREFIX}"))
        }
        _ => false,
    }
}

/// Kills every process in the node's cgroups (containers whose shim is gone).
fn kill_cgroup_processes() {
    fn walk(dir: &Path) {
        for pid in fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().lines() {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&entry.path());
            }
        }
    }
    for hierarchy in cgroup_hierarchies() {
        let dir = hierarchy.join(CGROUP_ROOT);
        if dir.exists() {
            walk(&dir);
        }
    }
}

/// Whether this process runs as root.
fn nix_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Runs a command to completion.
fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program).args(args).output().with_context(|| format!("failed to run {program}"))?;
    ensure!(
        out.status.success(),
        "{program} {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

fn netns_names() -> BTreeSet<String> {
    fs::read_dir("/run/netns")
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned())).collect())
        .unwrap_or_default()
}

/// The cgroup v1 hierarchies mounted under /sys/fs/cgroup (one per controller set; named ones too).
fn cgroup_hierarchies() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(" - cgroup "))
        .filter_map(|line| line.split(' ').nth(4).map(PathBuf::from))
        .collect()
}

fn make_cgroup_root() -> Result<()> {
    for hierarchy in cgroup_hierarchies() {
        let dir = hierarchy.join(CGROUP_ROOT);
        fs::create_dir_all(&dir).with_context(|| format!("failed to create the cgroup {}", dir.display()))?;
    }
    Ok(())
}

/// Removes the node's cgroups, deepest first (a cgroup is removed with rmdir once it holds no process).
fn remove_cgroup_root() {
    fn remove(dir: &Path) {
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove(&entry.path());
                }
            }
        }
        let _ = fs::remove_dir(dir);
    }
    for hierarchy in cgroup_hierarchies() {
        let dir = hierarchy.join(CGROUP_ROOT);
        if dir.exists() {
            remove(&dir);
        }
    }
}

/// Unmounts everything mounted below `dir` (the kubelet's tmpfs volumes, containerd's root file systems), deepest
/// first.
fn unmount_below(dir: &Path) {
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(str::to_owned))
        .filter(|point| point.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = Command::new("umount").arg("-l").arg(&point).output();
    }
}

/// The `-A` rules and `:` chain lines of `iptables-save -t table`.
fn iptables_lines(table: &str) -> BTreeSet<String> {
    Command::new("iptables-save")
        .args(["-t", table])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.starts_with("-A ") || l.starts_with(':'))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn chain_name(line: &str) -> Option<&str> {
    line.strip_prefix(':').and_then(|rest| rest.split_whitespace().next())
}

/// Deletes the rules and then the chains that are in the tables now and were not in `before`.
fn restore_iptables(before: &[(String, BTreeSet<String>)]) {
    for (table, old) in before {
        let now = iptables_lines(table);
        let old_chains: BTreeSet<&str> = old.iter().filter_map(|l| chain_name(l)).collect();
        let new_chains: Vec<&str> =
            now.iter().filter_map(|l| chain_name(l)).filter(|c| !old_chains.contains(c)).collect();
        for rule in now.iter().filter(|l| l.starts_with("-A ") && !old.contains(*l)) {
            let Some(args) = split_rule(&rule[3..]) else { continue };
            let mut command = Command::new("iptables");
            command.args(["-t", table, "-D"]).args(&args);
            let _ = command.output();
        }
        for chain in &new_chains {
            let _ = Command::new("iptables").args(["-t", table, "-F", chain]).output();
        }
        for chain in &new_chains {
            let _ = Command::new("iptables").args(["-t", table, "-X", chain]).output();
        }
    }
}

/// Splits an `iptables-save` rule into arguments: words, with double-quoted words (backslash escapes) kept whole.
fn split_rule(rule: &str) -> Option<Vec<String>> {
    let mut args = Vec::new();
    let mut chars = rule.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut word = String::new();
        if first == '"' {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => word.push(chars.next()?),
                    '"' => break,
                    c => word.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        args.push(word);
    }
    Some(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_rules_split_into_the_arguments_that_delete_them() {
        assert_eq!(
            split_rule(
                r#"KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" -j KUBE-SVC-NPX46M4PTMTKRN6Y"#
            ),
            Some(
                [
                    "KUBE-SERVICES",
                    "-d",
                    "10.96.0.1/32",
                    "-p",
                    "tcp",
                    "-m",
                    "comment",
                    "--comment",
                    "default/kubernetes:https cluster IP",
                    "-j",
                    "KUBE-SVC-NPX46M4PTMTKRN6Y"
                ]
                .map(str::to_owned)
                .to_vec()
            )
        );
        assert_eq!(
            split_rule(r#"X --comment "a \"quoted\" word""#),
            Some(vec!["X".into(), "--comment".into(), r#"a "quoted" word"#.into()])
        );
        assert_eq!(split_rule(r#"X --comment "unterminated"#), None);
    }

    #[test]
    fn chain_lines_name_their_chain() {
        assert_eq!(chain_name(":KUBE-SERVICES - [0:0]"), Some("KUBE-SERVICES"));
        assert_eq!(chain_name("-A INPUT -j KUBE-FIREWALL"), None);
    }
}
