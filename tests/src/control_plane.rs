//! A real, throw-away Kubernetes control plane: etcd, kube-apiserver and kube-controller-manager.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt as _;

use crate::assets::Assets;
use crate::eventually;
use crate::process::{ChildProcess, display_command, stop_all, watchdog_group};

/// The environment variable that, set to a non-empty value other than `0`, keeps the state
/// directories of control planes after they stop (see [`ControlPlaneOptions::keep_state_dir`]).
pub const KEEP_STATE_ENV: &str = "WEBSITE_E2E_KEEP_STATE";

/// How long [`ControlPlane::wait_for_crd_established`] waits.
pub const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(60);

/// How long each stage of a control plane's shutdown (first kube-controller-manager and
/// kube-apiserver, then etcd) may take between SIGTERM and SIGKILL.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How many times [`ControlPlane::start`] picks new ports when another process took one first.
const START_ATTEMPTS: usize = 3;

/// The controllers kube-controller-manager runs by default.
pub const DEFAULT_CONTROLLERS: &[&str] =
    &["garbagecollector", "deployment", "replicaset", "serviceaccount", "serviceaccount-token", "namespace"];

/// How to start a [`ControlPlane`].
#[derive(Debug, Clone)]
pub struct ControlPlaneOptions {
    /// Whether to run kube-controller-manager (garbage collection, Deployments, ReplicaSets,
    /// namespace deletion, service accounts). Default: `true`.
    pub controller_manager: bool,
    /// The controllers kube-controller-manager runs. Default: [`DEFAULT_CONTROLLERS`].
    pub controllers: Vec<String>,
    /// The binaries to run. Default: `None`, meaning [`Assets::locate`].
    pub assets: Option<Assets>,
    /// How long each process may take to become ready. Default: 60 s.
    pub start_timeout: Duration,
    /// Keep the state directory (logs, etcd data, kubeconfig) after the control plane stops, and
    /// print its path. Default: whether `WEBSITE_E2E_KEEP_STATE` is set (and not `0`).
    pub keep_state_dir: bool,
    /// Extra command-line flags for kube-apiserver, appended after the built-in ones.
    pub apiserver_args: Vec<String>,
    /// Turn on the aggregation layer: a front-proxy CA made for the run, the request-header flags, and the client
    /// certificate the aggregator presents to aggregated API servers ([`ControlPlane::front_proxy`]). Default:
    /// `false`.
    pub aggregation: bool,
    /// Prepare for a [`Node`](crate::node::Node): kube-controller-manager also runs the controllers a node needs
    /// ([`NODE_CONTROLLERS`](crate::node::NODE_CONTROLLERS)), and the API server presents a client certificate to
    /// kubelets, from a CA made for the run ([`ControlPlane::kubelet_client_ca`]) that is the only one the node's
    /// kubelet accepts. Default: `false`.
    pub node: bool,
}

/// The aggregation layer's front proxy: the CA aggregated API servers verify the aggregator's client certificate
/// against, and that certificate (common name [`FRONT_PROXY_CLIENT`]).
#[derive(Clone, Debug)]
pub struct FrontProxy {
    /// The front-proxy CA, PEM.
    pub ca_pem: String,
    /// The aggregator's client certificate, PEM.
    pub client_cert_pem: String,
    /// Its private key, PEM.
    pub client_key_pem: String,
}

/// Common name of the aggregator's client certificate, the only one `--requestheader-allowed-names` allows.
pub const FRONT_PROXY_CLIENT: &str = "front-proxy-client";

/// A front-proxy CA and the aggregator's client certificate, valid for a day.
fn front_proxy() -> Result<FrontProxy> {
    ca_and_client("website-e2e-front-proxy-ca", FRONT_PROXY_CLIENT)
}

impl FrontProxy {
    /// Writes the CA, the client certificate and its key to `<dir>/<prefix>-ca.crt`, `<prefix>-client.crt` and
    /// `<prefix>-client.key`, readable by their owner only; returns the three paths.
    fn write(&self, dir: &Path, prefix: &str) -> Result<(PathBuf, PathBuf, PathBuf)> {
        let paths = (
            dir.join(format!("{prefix}-ca.crt")),
            dir.join(format!("{prefix}-client.crt")),
            dir.join(format!("{prefix}-client.key")),
        );
        write_private(&paths.0, self.ca_pem.as_bytes())?;
        write_private(&paths.1, self.client_cert_pem.as_bytes())?;
        write_private(&paths.2, self.client_key_pem.as_bytes())?;
        Ok(paths)
    }
}

/// A CA made for the run and a client certificate it signed for `client` (a day's validity).
fn ca_and_client(ca_name: &str, client_name: &str) -> Result<FrontProxy> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        PKCS_ECDSA_P256_SHA256,
    };
    let now = time::OffsetDateTime::now_utc();
    let window = |params: &mut CertificateParams| {
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::days(1);
    };
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("failed to generate a CA key")?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    window(&mut ca);
    let ca_cert = ca.self_signed(&ca_key).with_context(|| format!("failed to make the CA {ca_name}"))?;
    let issuer = Issuer::new(ca, ca_key);
    let client_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("failed to generate a client key")?;
    let mut client = CertificateParams::default();
    client.distinguished_name.push(DnType::CommonName, client_name);
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    window(&mut client);
    let client_cert = client
        .signed_by(&client_key, &issuer)
        .with_context(|| format!("failed to make the client certificate {client_name}"))?;
    Ok(FrontProxy {
        ca_pem: ca_cert.pem(),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
    })
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        Self {
            controller_manager: true,
            controllers: DEFAULT_CONTROLLERS.iter().map(|&c| c.to_owned()).collect(),
            assets: None,
            start_timeout: Duration::from_secs(60),
            keep_state_dir: std::env::var_os(KEEP_STATE_ENV).is_some_and(|v| !v.is_empty() && v != "0"),
            apiserver_args: Vec::new(),
            aggregation: false,
            node: false,
        }
    }
}

/// The outcome of a kubectl or helm run. A non-zero exit is not an error of the run itself: check
/// [`success`](Self::success) or use [`ensure_success`](Self::ensure_success).
#[derive(Debug, Clone)]
pub struct KubectlOutput {
    /// The command line that was run, for messages.
    pub command: String,
    /// The exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl KubectlOutput {
    /// Whether the command exited with status 0.
    #[must_use]
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Standard output when the command succeeded.
    ///
    /// # Errors
    ///
    /// Fails with the command line, exit status and standard error when the command failed.
    pub fn ensure_success(self) -> Result<String> {
        if self.success() {
            Ok(self.stdout)
        } else {
            bail!("`{}` failed ({}): {}", self.command, self.status, self.stderr.trim())
        }
    }
}

/// A running control plane, stopped and deleted on drop (also when a test panics).
///
/// ```no_run
/// # async fn example() -> anyhow::Result<()> {
/// use website_e2e::{ControlPlane, ControlPlaneOptions};
///
/// let cp = ControlPlane::start(ControlPlaneOptions::default()).await?;
/// let namespaces = cp.kubectl(&["get", "namespaces", "-o", "name"]).await?.ensure_success()?;
/// assert!(namespaces.contains("namespace/default"));
/// # Ok(())
/// # }
/// ```
pub struct ControlPlane {
    assets: Assets,
    server_url: String,
    ca_pem: String,
    token: String,
    kubeconfig_path: PathBuf,
    state_path: PathBuf,
    client: Client,
    keep_state_dir: bool,
    controller_manager: Option<ChildProcess>,
    front_proxy: Option<FrontProxy>,
    kubelet_client_ca: Option<PathBuf>,
    apiserver: ChildProcess,
    etcd: ChildProcess,
    /// Declared last so that it is deleted after the processes using it have stopped.
    state_dir: Option<TempDir>,
}

impl fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server_url", &self.server_url)
            .field("state_dir", &self.state_path)
            .field("etcd", &self.etcd)
            .field("apiserver", &self.apiserver)
            .field("controller_manager", &self.controller_manager)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and (unless disabled) kube-controller-manager on free loopback
    /// ports in a new temporary directory, and waits until the API server is ready.
    ///
    /// Installs rustls' ring crypto provider as the process default if none is installed yet.
    ///
    /// # Errors
    ///
    /// Fails when the binaries are missing (telling the user to run `scripts/provision.sh`), when a
    /// process exits early or is not ready within [`ControlPlaneOptions::start_timeout`]; the error
    /// then quotes the end of that process's log.
    pub async fn start(options: ControlPlaneOptions) -> Result<Self> {
        crate::install_crypto_provider();
        let assets = match &options.assets {
            Some(assets) => assets.clone(),
            None => Assets::locate()?,
        };
        if options.controller_manager && assets.kube_controller_manager.is_none() {
            bail!(
                "kube-controller-manager is not in {}: run `scripts/provision.sh`, \
                 or start the control plane with `controller_manager: false`",
                assets.dir.display()
            );
        }
        let mut attempt = 1;
        loop {
            match Self::start_once(&assets, &options).await {
                Ok(control_plane) => return Ok(control_plane),
                // Another process took one of the ports between our probe and the bind.
                Err(err) if attempt < START_ATTEMPTS && is_port_race(&err) => {
                    eprintln!("website-e2e: port taken while starting, retrying: {err:#}");
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// One attempt at starting, in a new state directory that is deleted when the attempt fails
    /// (unless it is to be kept).
    async fn start_once(assets: &Assets, options: &ControlPlaneOptions) -> Result<Self> {
        let state_dir = tempfile::Builder::new()
            .prefix("website-e2e-")
            .tempdir()
            .context("failed to create the state directory")?;
        match Self::launch(assets, options, state_dir.path()).await {
            Ok(mut control_plane) => {
                control_plane.state_dir = Some(state_dir);
                Ok(control_plane)
            }
            // The processes of the attempt were stopped when `launch` returned.
            Err(err) if options.keep_state_dir => {
                Err(err.context(format!("failed to start; state kept in {}", state_dir.keep().display())))
            }
            Err(err) => Err(err),
        }
    }

    /// Starts the processes, using `state` for their files.
    async fn launch(assets: &Assets, options: &ControlPlaneOptions, state: &Path) -> Result<Self> {
        let state = state.to_path_buf();
        let etcd_data = state.join("etcd");
        let cert_dir = state.join("apiserver-certs");
        for dir in [&cert_dir, &state.join("kcm-certs")] {
            std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
        }
        let [etcd_port, etcd_peer_port, apiserver_port, kcm_port] = free_ports::<4>()?;
        let timeout = options.start_timeout;

        // Service-account signing key: ECDSA P-256 (ES256 tokens). The private key is PKCS#8,
        // which the signing-key flags accept; --service-account-key-file does not read PKCS#8 EC
        // private keys before Kubernetes 1.2x, so it gets the public key (SubjectPublicKeyInfo).
        let sa_key = state.join("sa.key");
        let sa_pub = state.join("sa.pub");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("failed to generate the service-account key")?;
        write_private(&sa_key, key.serialize_pem().as_bytes())?;
        write_private(&sa_pub, key.public_key_pem().as_bytes())?;

        let token = random_token()?;
        let kcm_token = random_token()?;
        let tokens = state.join("tokens.csv");
        write_private(
            &tokens,
            format!(
                "{token},admin,admin,system:masters\n\
                 {kcm_token},system:kube-controller-manager,kube-controller-manager,system:masters\n"
            )
            .as_bytes(),
        )?;

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let etcd_peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let mut etcd = Command::new(&assets.etcd);
        etcd.arg("--name=website-e2e")
            .arg(flag("data-dir", &etcd_data))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!("--listen-peer-urls={etcd_peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={etcd_peer_url}"))
            .arg(format!("--initial-cluster=website-e2e={etcd_peer_url}"))
            .arg("--log-level=warn");
        if has_flag(&assets.etcd, "--unsafe-no-fsync").await? {
            // The data is thrown away anyway; fsync only slows the tests down.
            etcd.arg("--unsafe-no-fsync");
        }
        let mut etcd = ChildProcess::spawn("etcd", etcd, &state)?;
        etcd.wait_for_port(loopback(etcd_port), timeout).await?;

        let server_url = format!("https://127.0.0.1:{apiserver_port}");
        let mut apiserver = Command::new(&assets.kube_apiserver);
        apiserver
            .arg(format!("--etcd-servers={etcd_url}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={apiserver_port}"))
            .arg(flag("cert-dir", &cert_dir))
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg(flag("service-account-key-file", &sa_pub))
            .arg(flag("service-account-signing-key-file", &sa_key))
            .arg(flag("token-auth-file", &tokens))
            .arg("--authorization-mode=RBAC")
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            .arg("--allow-privileged=true");
        let front_proxy = if options.aggregation {
            let proxy = front_proxy()?;
            let (ca, cert, key) = proxy.write(&state, "front-proxy")?;
            apiserver
                .arg(flag("requestheader-client-ca-file", &ca))
                .arg(format!("--requestheader-allowed-names={FRONT_PROXY_CLIENT}"))
                .arg("--requestheader-username-headers=X-Remote-User")
                .arg("--requestheader-group-headers=X-Remote-Group")
                .arg("--requestheader-extra-headers-prefix=X-Remote-Extra-")
                .arg(flag("proxy-client-cert-file", &cert))
                .arg(flag("proxy-client-key-file", &key));
            Some(proxy)
        } else {
            None
        };
        let kubelet_client_ca = if options.node {
            let client = ca_and_client("website-e2e-kubelet-client-ca", "kube-apiserver-kubelet-client")?;
            let (ca, cert, key) = client.write(&state, "apiserver-kubelet")?;
            apiserver.arg(flag("kubelet-client-certificate", &cert)).arg(flag("kubelet-client-key", &key));
            Some(ca)
        } else {
            None
        };
        apiserver.args(&options.apiserver_args);
        let mut apiserver = ChildProcess::spawn("kube-apiserver", apiserver, &state)?;

        let ca_path = cert_dir.join("apiserver.crt");
        let kubeconfig_path = state.join("admin.kubeconfig");
        write_kubeconfig(&kubeconfig_path, &server_url, &ca_path, "admin", &token)?;
        let started = Instant::now();
        // The serving certificate is written before the port opens, so the client (which reads the
        // CA file when built) is built only once the port accepts connections.
        apiserver.wait_for_port(loopback(apiserver_port), timeout).await?;
        let client = client_from_kubeconfig(&kubeconfig_path).await?;
        apiserver
            .wait_until("ready (GET /readyz = ok)", timeout.saturating_sub(started.elapsed()), async || {
                let request =
                    http::Request::get("/readyz").body(Vec::new()).expect("a GET request with a static path is valid");
                matches!(client.request_text(request).await, Ok(body) if body.trim() == "ok")
            })
            .await?;
        let ca_pem =
            std::fs::read_to_string(&ca_path).with_context(|| format!("failed to read {}", ca_path.display()))?;

        let controller_manager = match (&assets.kube_controller_manager, options.controller_manager) {
            (Some(binary), true) => {
                let mut controllers = options.controllers.clone();
                if options.node {
                    controllers.extend(crate::node::NODE_CONTROLLERS.iter().map(|&c| c.to_owned()));
                }
                let kubeconfig = state.join("kube-controller-manager.kubeconfig");
                write_kubeconfig(&kubeconfig, &server_url, &ca_path, "system:kube-controller-manager", &kcm_token)?;
                let mut kcm = Command::new(binary);
                kcm.arg(flag("kubeconfig", &kubeconfig))
                    .arg(format!("--controllers={}", controllers.join(",")))
                    .arg(flag("service-account-private-key-file", &sa_key))
                    .arg(flag("root-ca-file", &ca_path))
                    .arg("--leader-elect=false")
                    .arg("--bind-address=127.0.0.1")
                    .arg(format!("--secure-port={kcm_port}"))
                    .arg(flag("cert-dir", &state.join("kcm-certs")));
                if has_flag(binary, "--port").await? {
                    // Before 1.24 it also serves plain HTTP, on 10252 unless told otherwise: that
                    // would collide between control planes running side by side.
                    kcm.arg("--port=0");
                }
                let mut kcm = ChildProcess::spawn("kube-controller-manager", kcm, &state)?;
                kcm.wait_for_port(loopback(kcm_port), timeout).await?;
                Some(kcm)
            }
            _ => None,
        };

        Ok(Self {
            assets: assets.clone(),
            server_url,
            ca_pem,
            token,
            kubeconfig_path,
            state_path: state,
            client,
            keep_state_dir: options.keep_state_dir,
            controller_manager,
            front_proxy,
            kubelet_client_ca,
            apiserver,
            etcd,
            state_dir: None,
        })
    }

    /// The aggregation layer's front proxy, when it was turned on ([`ControlPlaneOptions::aggregation`]).
    pub fn front_proxy(&self) -> Option<&FrontProxy> {
        self.front_proxy.as_ref()
    }

    /// The CA of the client certificate the API server presents to kubelets, when the control plane was started
    /// for a node ([`ControlPlaneOptions::node`]).
    #[must_use]
    pub fn kubelet_client_ca(&self) -> Option<&Path> {
        self.kubelet_client_ca.as_deref()
    }

    /// The admin kubeconfig file (token of a `system:masters` user, CA of the API server).
    #[must_use]
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// A client authenticated as the admin user.
    #[must_use]
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The API server's URL, `https://127.0.0.1:PORT`.
    #[must_use]
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The PEM certificates that the API server's serving certificate chains to (its self-signed
    /// certificate and CA from `--cert-dir`).
    #[must_use]
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The admin bearer token (user `admin`, group `system:masters`).
    #[must_use]
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The directory holding the logs (`<process>.log`), kubeconfigs, keys and etcd data.
    #[must_use]
    pub fn state_dir(&self) -> &Path {
        &self.state_path
    }

    /// The binaries in use.
    #[must_use]
    pub fn assets(&self) -> &Assets {
        &self.assets
    }

    /// The control-plane processes as `(name, pid)`: etcd, kube-apiserver and, when running,
    /// kube-controller-manager.
    #[must_use]
    pub fn processes(&self) -> Vec<(&str, u32)> {
        std::iter::once(&self.etcd)
            .chain(std::iter::once(&self.apiserver))
            .chain(self.controller_manager.as_ref())
            .map(|p| (p.name(), p.pid()))
            .collect()
    }

    /// Runs `kubectl --kubeconfig=<admin kubeconfig> ARGS...` with standard input closed.
    ///
    /// # Errors
    ///
    /// Fails only when kubectl cannot be run; a failing kubectl is reported in the output.
    pub async fn kubectl(&self, args: &[&str]) -> Result<KubectlOutput> {
        run_tool(self.kubectl_command(args), None).await
    }

    /// Like [`kubectl`](Self::kubectl), writing `input`, when given, to kubectl's standard input
    /// (for `-f -`); with `None`, standard input is closed.
    ///
    /// # Errors
    ///
    /// Fails only when kubectl cannot be run; a failing kubectl is reported in the output.
    pub async fn kubectl_with_stdin(&self, args: &[&str], input: Option<&str>) -> Result<KubectlOutput> {
        run_tool(self.kubectl_command(args), input).await
    }

    fn kubectl_command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.assets.kubectl);
        command
            .arg(flag("kubeconfig", &self.kubeconfig_path))
            .arg(flag("cache-dir", &self.state_path.join("kubectl-cache")))
            .args(args);
        command
    }

    /// Runs `helm --kubeconfig=<admin kubeconfig> ARGS...`, with helm's cache, configuration and
    /// data directories inside the state directory.
    ///
    /// # Errors
    ///
    /// Fails when helm is not among the assets or cannot be run; a failing helm is reported in
    /// the output.
    pub async fn helm(&self, args: &[&str]) -> Result<KubectlOutput> {
        let helm = self
            .assets
            .helm
            .as_ref()
            .ok_or_else(|| anyhow!("helm is not in {}: run `scripts/provision.sh`", self.assets.dir.display()))?;
        let home = self.state_path.join("helm");
        let mut command = tokio::process::Command::new(helm);
        command
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .arg(flag("kubeconfig", &self.kubeconfig_path))
            .args(args);
        run_tool(command, None).await
    }

    /// Starts another program (the webhook, the controller) as a [`ChildProcess`] logging to
    /// `<state dir>/<name>.log`. `KUBECONFIG` is set to the admin kubeconfig unless `command`
    /// sets it already.
    ///
    /// # Errors
    ///
    /// Fails when the program cannot be started.
    pub fn spawn(&self, name: &str, mut command: Command) -> Result<ChildProcess> {
        if !command.get_envs().any(|(key, _)| key == OsStr::new("KUBECONFIG")) {
            command.env("KUBECONFIG", &self.kubeconfig_path);
        }
        ChildProcess::spawn(name, command, &self.state_path)
    }

    /// Applies the CRDs in the YAML file at `path` with `kubectl apply` and waits until each is
    /// Established. Returns their names.
    ///
    /// # Errors
    ///
    /// Fails when kubectl fails, the file holds no CRD, or a CRD is not Established within
    /// [`CRD_ESTABLISHED_TIMEOUT`].
    pub async fn apply_crd(&self, path: impl AsRef<Path>) -> Result<Vec<String>> {
        let path = path.as_ref();
        let path_arg = path.to_string_lossy();
        let applied = self.kubectl(&["apply", "-f", &path_arg, "-o", "name"]).await?.ensure_success()?;
        let names: Vec<String> = applied
            .lines()
            .filter_map(|line| line.trim().strip_prefix("customresourcedefinition."))
            .filter_map(|rest| rest.split_once('/').map(|(_, name)| name.to_owned()))
            .collect();
        if names.is_empty() {
            bail!("{} holds no CustomResourceDefinition (kubectl applied: {})", path.display(), applied.trim());
        }
        for name in &names {
            self.wait_for_crd_established(name).await?;
        }
        Ok(names)
    }

    /// Waits until the CRD `name` (e.g. `websites.example.com`) has the condition
    /// `Established=True`, so that its resources can be used.
    ///
    /// # Errors
    ///
    /// Fails when that does not happen within [`CRD_ESTABLISHED_TIMEOUT`]; the message gives the
    /// last reason (not found, conditions seen).
    pub async fn wait_for_crd_established(&self, name: &str) -> Result<()> {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client());
        eventually(CRD_ESTABLISHED_TIMEOUT, async || {
            let crd = crds.get(name).await.with_context(|| format!("failed to get CRD {name}"))?;
            let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
            if conditions.iter().any(|c| c.type_ == "Established" && c.status == "True") {
                Ok(())
            } else {
                let seen: Vec<String> = conditions.iter().map(|c| format!("{}={}", c.type_, c.status)).collect();
                bail!("CRD {name} not Established yet (conditions: {seen:?})")
            }
        })
        .await
        .with_context(|| format!("CRD {name} did not become Established"))
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let processes = [Some(&self.etcd), Some(&self.apiserver)]
                .into_iter()
                .chain([self.controller_manager.as_ref()])
                .flatten();
            for process in processes {
                eprintln!(
                    "--- last lines of {} ({}):\n{}",
                    process.name(),
                    process.log_path().display(),
                    process.log_tail(20)
                );
            }
        }
        // etcd last: a terminating kube-apiserver still writes to it (it removes itself from the
        // `kubernetes` Endpoints) and, with etcd gone, retries until it is killed.
        let mut clients: Vec<&mut ChildProcess> =
            self.controller_manager.iter_mut().chain([&mut self.apiserver]).collect();
        stop_all(&mut clients, SHUTDOWN_GRACE);
        stop_all(&mut [&mut self.etcd], SHUTDOWN_GRACE);
        if let Some(dir) = self.state_dir.take() {
            if self.keep_state_dir {
                eprintln!("website-e2e: kept the control plane's state in {}", dir.keep().display());
            } else if let Err(err) = dir.close() {
                eprintln!("website-e2e: failed to remove {}: {err}", self.state_path.display());
            }
        }
    }
}

/// Picks a free TCP port on 127.0.0.1 (by binding port 0). Another process may take it before you
/// bind it yourself, so retry on "address already in use".
///
/// # Errors
///
/// Fails when no loopback port can be bound.
pub fn free_port() -> Result<u16> {
    let [port] = free_ports::<1>()?;
    Ok(port)
}

/// `N` distinct free loopback ports: all are held at once while probing.
pub(crate) fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let mut ports = [0; N];
    let mut listeners = Vec::with_capacity(N);
    for port in &mut ports {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("failed to bind 127.0.0.1:0")?;
        *port = listener.local_addr().context("failed to read the address of a bound socket")?.port();
        listeners.push(listener);
    }
    Ok(ports)
}

pub(crate) fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn is_port_race(err: &anyhow::Error) -> bool {
    let text = format!("{err:#}");
    text.contains("address already in use") || text.contains("bind: address in use")
}

/// `--name=value` with a path value.
pub(crate) fn flag(name: &str, value: &Path) -> std::ffi::OsString {
    let mut flag = std::ffi::OsString::from(format!("--{name}="));
    flag.push(value);
    flag
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(contents))
        .with_context(|| format!("failed to write {}", path.display()))
}

/// 128 random bits from the kernel, in hex.
fn random_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("failed to read /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes a kubeconfig for `user` authenticating with `token` (JSON, which is valid YAML).
fn write_kubeconfig(path: &Path, server: &str, ca_path: &Path, user: &str, token: &str) -> Result<()> {
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "website-e2e",
            "cluster": { "server": server, "certificate-authority": ca_path },
        }],
        "users": [{ "name": user, "user": { "token": token } }],
        "contexts": [{
            "name": "website-e2e",
            "context": { "cluster": "website-e2e", "user": user, "namespace": "default" },
        }],
        "current-context": "website-e2e",
    });
    let text = serde_json::to_string_pretty(&config).context("failed to encode a kubeconfig")?;
    write_private(path, text.as_bytes())
}

/// Builds a client from a kubeconfig file.
///
/// # Errors
///
/// Fails when the file cannot be read or describes no usable cluster.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client> {
    crate::install_crypto_provider();
    let kubeconfig =
        Kubeconfig::read_from(path).with_context(|| format!("failed to read the kubeconfig {}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("failed to load the kubeconfig {}", path.display()))?;
    Client::try_from(config).context("failed to build a Kubernetes client")
}

/// Whether `binary --help` lists `flag` (remembered per binary and flag).
async fn has_flag(binary: &Path, flag: &str) -> Result<bool> {
    type Known = Mutex<HashMap<(PathBuf, String), bool>>;
    static KNOWN: OnceLock<Known> = OnceLock::new();
    let known = KNOWN.get_or_init(Known::default);
    let key = (binary.to_path_buf(), flag.to_owned());
    if let Some(&answer) = known.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
        return Ok(answer);
    }
    let output = tokio::process::Command::new(binary)
        .arg("--help")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("failed to run {} --help", binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    let answer =
        text.lines().any(|line| line.trim_start().strip_prefix(flag).is_some_and(|rest| rest.starts_with([' ', '='])));
    known.lock().unwrap_or_else(PoisonError::into_inner).insert(key, answer);
    Ok(answer)
}

/// Runs a short-lived tool to completion, feeding it `input`, and captures its output.
async fn run_tool(mut command: tokio::process::Command, input: Option<&str>) -> Result<KubectlOutput> {
    let shown = display_command(command.as_std());
    command
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(group) = watchdog_group() {
        command.process_group(group);
    }
    let mut child = command.spawn().with_context(|| format!("failed to run `{shown}`"))?;
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("stdin was configured as a pipe");
        // Write concurrently with reading the output, so a large input cannot deadlock.
        let written = async move {
            let result = stdin.write_all(input.as_bytes()).await;
            drop(stdin);
            result
        };
        let (written, output) = tokio::join!(written, child.wait_with_output());
        let output = output.with_context(|| format!("failed to run `{shown}`"))?;
        match written {
            // The tool stopped reading (e.g. it failed early): its output tells why.
            Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(err).with_context(|| format!("failed to write the input of `{shown}`"));
            }
            _ => return Ok(to_output(shown, output)),
        }
    }
    let output = child.wait_with_output().await.with_context(|| format!("failed to run `{shown}`"))?;
    Ok(to_output(shown, output))
}

fn to_output(command: String, output: std::process::Output) -> KubectlOutput {
    KubectlOutput {
        command,
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn start_and_kubectl_futures_can_be_spawned() {
        // Creating a future runs nothing; this only checks the type.
        let start = ControlPlane::start(ControlPlaneOptions::default());
        assert_send(&start);
        // Never called: compiling it is the check.
        let _methods = |cp: &ControlPlane| {
            assert_send(&cp.kubectl(&["version"]));
            assert_send(&cp.kubectl_with_stdin(&["apply", "-f", "-"], Some("")));
            assert_send(&cp.helm(&["list"]));
            assert_send(&cp.apply_crd("crd.yaml"));
            assert_send(&cp.wait_for_crd_established("websites.example.com"));
        };
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports::<8>().expect("loopback ports");
        let mut sorted = ports.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ports.len());
        assert!(!ports.contains(&0));
    }

    #[test]
    fn a_failed_output_names_the_command_and_its_stderr() {
        let output = std::process::Command::new("sh")
            .args(["-c", "echo 'Error from server (NotFound)' >&2; exit 1"])
            .output()
            .expect("sh runs");
        let err = to_output("kubectl get cm nope".into(), output).ensure_success().expect_err("exit 1");
        let msg = err.to_string();
        assert!(msg.contains("`kubectl get cm nope` failed (exit status: 1)"), "{msg}");
        assert!(msg.contains("Error from server (NotFound)"), "{msg}");
    }

    #[test]
    fn port_races_are_recognised_in_process_logs() {
        let err = anyhow!(
            "etcd exited (exit status: 1) before listening; last lines:\nlisten tcp 127.0.0.1:4001: bind: address already in use"
        );
        assert!(is_port_race(&err));
        assert!(!is_port_race(&anyhow!("kube-apiserver exited: unknown flag")));
    }
}
