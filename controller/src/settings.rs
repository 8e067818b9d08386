//! Command-line flags, each with an environment-variable equivalent.

use std::net::SocketAddr;

/// Flags of `website-controller`.
#[derive(clap::Parser, Clone, Debug)]
#[command(name = "website-controller", version, about = "Turns Website objects into a Deployment and a Service")]
pub struct Settings {
    /// Watch Websites in this namespace only (default: all namespaces).
    #[arg(long, env = "WEBSITE_NAMESPACE")]
    pub namespace: Option<String>,

    /// Address of the plain-HTTP listener for /healthz and /readyz. `off` disables it.
    #[arg(long, env = "WEBSITE_HEALTH_ADDR", default_value = "0.0.0.0:8081", value_parser = parse_optional_addr)]
    // The full path stops clap from treating the field as an optional flag: `off` is a value of its own.
    pub health_addr: std::option::Option<SocketAddr>,

    /// Most Websites reconciled at the same time.
    #[arg(long, env = "WEBSITE_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,

    /// Seconds after which the API server ends each watch, which the controller then resumes. A resumed watch is
    /// authorized anew, so this also bounds how long a revoked permission goes unnoticed by `/readyz`.
    #[arg(long, env = "WEBSITE_WATCH_TIMEOUT_SECONDS", default_value_t = 290, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub watch_timeout_seconds: u32,

    /// Log format.
    #[arg(long, env = "WEBSITE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Leader election between replicas.
    #[command(flatten)]
    pub leader_election: LeaderElection,

    /// What the controller puts into each Website's children.
    #[command(flatten)]
    pub children: ChildConfig,
}

/// Leader election: only the replica that holds a `coordination.k8s.io` Lease reconciles; the others wait, alive
/// and ready, and take over when it releases the Lease (a graceful stop) or stops renewing it (a crash).
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct LeaderElection {
    /// Elect a leader. Off: reconcile at once, which is right only when a single replica runs.
    #[arg(long = "leader-election", env = "WEBSITE_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub enabled: bool,

    /// Name of the Lease.
    #[arg(long = "leader-election-lease", env = "WEBSITE_LEADER_ELECTION_LEASE", default_value = "website-controller")]
    pub lease: String,

    /// Namespace of the Lease (default: the pod's namespace from POD_NAMESPACE, else the client's default
    /// namespace).
    #[arg(long = "leader-election-namespace", env = "WEBSITE_LEADER_ELECTION_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// This replica's identity in the Lease (default: the pod's name from POD_NAME, else the host name and the
    /// process id).
    #[arg(long = "leader-election-identity", env = "WEBSITE_LEADER_ELECTION_IDENTITY")]
    pub identity: Option<String>,

    /// Seconds a Lease stays held after its last renewal: how long a crashed leader blocks the others.
    #[arg(long = "leader-election-lease-seconds", env = "WEBSITE_LEADER_ELECTION_LEASE_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=600))]
    pub lease_seconds: u64,

    /// Seconds before the Lease expires at which the leader renews it; also the clock skew tolerated between
    /// nodes. Less than --leader-election-lease-seconds.
    #[arg(long = "leader-election-renew-grace-seconds", env = "WEBSITE_LEADER_ELECTION_RENEW_GRACE_SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=599))]
    pub renew_grace_seconds: u64,
}

impl LeaderElection {
    /// This replica's identity: the flag, else `POD_NAME`, else the host name and process id (a controller run
    /// outside a pod, as in the local control plane).
    pub fn identity(&self) -> String {
        if let Some(identity) = self.identity.clone().filter(|i| !i.is_empty()) {
            return identity;
        }
        if let Ok(pod) = std::env::var("POD_NAME")
            && !pod.is_empty()
        {
            return pod;
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        format!("{host}-{}", std::process::id())
    }
}

/// How log lines are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Operator configuration of the Deployments and Services the controller creates. Images are chosen here and
/// not per Website, so that authors of Websites cannot run images of their choosing.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct ChildConfig {
    /// Image of the web server container. It must serve the files under --web-document-root on --web-port.
    #[arg(long, env = "WEBSITE_WEB_IMAGE", default_value = "docker.io/nginxinc/nginx-unprivileged:1.27-alpine")]
    pub web_image: String,

    /// Port the web server listens on inside the pod.
    #[arg(long, env = "WEBSITE_WEB_PORT", default_value_t = 8080, value_parser = clap::value_parser!(i32).range(1..=65535))]
    pub web_port: i32,

    /// Directory the web server serves. Its parent holds the shared volume, and git-sync publishes each
    /// checkout as a symbolic link at this path.
    #[arg(long, env = "WEBSITE_WEB_DOCUMENT_ROOT", default_value = "/usr/share/nginx/html", value_parser = parse_document_root)]
    pub web_document_root: String,

    /// User ID of the web server process (the nginx-unprivileged image runs as 101).
    #[arg(long, env = "WEBSITE_WEB_RUN_AS_USER", default_value_t = 101)]
    pub web_run_as_user: i64,

    /// Image of the git-sync sidecar (version 4 flags are used).
    #[arg(long, env = "WEBSITE_GIT_SYNC_IMAGE", default_value = "registry.k8s.io/git-sync/git-sync:v4.4.0")]
    pub git_sync_image: String,

    /// User ID of the git-sync process (the git-sync image runs as 65533).
    #[arg(long, env = "WEBSITE_GIT_SYNC_RUN_AS_USER", default_value_t = 65533)]
    pub git_sync_run_as_user: i64,

    /// imagePullPolicy of both containers (default: Kubernetes' own default for the image tag).
    #[arg(long, env = "WEBSITE_IMAGE_PULL_POLICY", value_parser = ["Always", "IfNotPresent", "Never"])]
    pub image_pull_policy: Option<String>,

    /// DNS domain of the cluster, used in the URL reported in status.
    #[arg(long, env = "WEBSITE_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,

    /// Directory of the web server's server-block configuration. The controller mounts its own
    /// configuration there (a ConfigMap per Website), which serves the published checkout only.
    #[arg(long, env = "WEBSITE_WEB_CONFIG_DIR", default_value = "/etc/nginx/conf.d", value_parser = parse_absolute_dir)]
    pub web_config_dir: String,

    /// `sizeLimit` of the volume that holds the repository and its checkouts.
    #[arg(long, env = "WEBSITE_CONTENT_SIZE_LIMIT", default_value = "512Mi", value_parser = parse_quantity)]
    pub content_size_limit: String,

    /// `sizeLimit` of each container's `/tmp` volume.
    #[arg(long, env = "WEBSITE_TMP_SIZE_LIMIT", default_value = "64Mi", value_parser = parse_quantity)]
    pub tmp_size_limit: String,

    /// Ephemeral-storage request of each container.
    #[arg(long, env = "WEBSITE_EPHEMERAL_STORAGE_REQUEST", default_value = "64Mi", value_parser = parse_quantity)]
    pub ephemeral_storage_request: String,

    /// Ephemeral-storage limit of each container. The pod's emptyDirs count against the sum of its containers'
    /// limits, so keep it above the content size limit.
    #[arg(long, env = "WEBSITE_EPHEMERAL_STORAGE_LIMIT", default_value = "1Gi", value_parser = parse_quantity)]
    pub ephemeral_storage_limit: String,

    /// Give each Website an egress NetworkPolicy: its pods may reach DNS and git's ports (22, 80, 443, 9418), and
    /// nothing in link-local, loopback or --egress-denied-cidrs.
    #[arg(long, env = "WEBSITE_EGRESS_NETWORK_POLICY", default_value_t = false)]
    pub egress_network_policy: bool,

    /// Address ranges a Website's pods may never reach when --egress-network-policy is on, comma-separated,
    /// e.g. the cluster's pod and Service ranges (`10.244.0.0/16,10.96.0.0/12`). Link-local and loopback are
    /// always denied.
    #[arg(long, env = "WEBSITE_EGRESS_DENIED_CIDRS", value_delimiter = ',', value_parser = parse_cidr)]
    pub egress_denied_cidrs: Vec<String>,
}

impl Default for ChildConfig {
    fn default() -> Self {
        Self {
            web_image: "docker.io/nginxinc/nginx-unprivileged:1.27-alpine".into(),
            web_port: 8080,
            web_document_root: "/usr/share/nginx/html".into(),
            web_run_as_user: 101,
            git_sync_image: "registry.k8s.io/git-sync/git-sync:v4.4.0".into(),
            git_sync_run_as_user: 65533,
            image_pull_policy: None,
            cluster_domain: "cluster.local".into(),
            web_config_dir: "/etc/nginx/conf.d".into(),
            content_size_limit: "512Mi".into(),
            tmp_size_limit: "64Mi".into(),
            ephemeral_storage_request: "64Mi".into(),
            ephemeral_storage_limit: "1Gi".into(),
            egress_network_policy: false,
            egress_denied_cidrs: Vec::new(),
        }
    }
}

impl ChildConfig {
    /// Where the shared volume is mounted in the web server container: the document root's parent.
    pub fn web_content_dir(&self) -> &str {
        match self.web_document_root.rsplit_once('/') {
            Some(("", _)) | None => "/",
            Some((parent, _)) => parent,
        }
    }

    /// Name of the symbolic link git-sync maintains: the document root's last component.
    pub fn link_name(&self) -> &str {
        self.web_document_root.rsplit('/').next().unwrap_or_default()
    }
}

fn parse_document_root(s: &str) -> Result<String, String> {
    let trimmed = s.trim_end_matches('/');
    let ok = trimmed.starts_with('/')
        && trimmed.len() > 1
        && trimmed
            .rsplit_once('/')
            .is_some_and(|(parent, name)| !parent.is_empty() && !name.is_empty() && name != "..");
    if ok {
        Ok(trimmed.to_owned())
    } else {
        Err(format!("{s:?} must be an absolute path with a parent directory, such as /usr/share/nginx/html"))
    }
}

fn parse_absolute_dir(s: &str) -> Result<String, String> {
    let trimmed = s.trim_end_matches('/');
    if trimmed.starts_with('/') && trimmed.len() > 1 && !trimmed.split('/').any(|c| c == "..") {
        Ok(trimmed.to_owned())
    } else {
        Err(format!("{s:?} must be an absolute directory other than /, such as /etc/nginx/conf.d"))
    }
}

/// A Kubernetes quantity of bytes in its plain forms: digits with an optional binary (`Ki` … `Ei`) or decimal
/// (`k`, `M` … `E`) suffix, e.g. `512Mi`.
fn parse_quantity(s: &str) -> Result<String, String> {
    const SUFFIXES: [&str; 13] = ["", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let digits = s.chars().take_while(char::is_ascii_digit).count();
    let ok = digits > 0 && digits <= 18 && SUFFIXES.contains(&&s[digits..]);
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not a quantity of bytes; accepted: digits with an optional suffix such as 64Mi or 1Gi"))
    }
}

/// An IPv4 or IPv6 range in CIDR notation, e.g. `10.96.0.0/12`.
fn parse_cidr(s: &str) -> Result<String, String> {
    let s = s.trim();
    let bad = || format!("{s:?} is not an address range; accepted: CIDR notation such as 10.96.0.0/12 or fd00::/8");
    let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
    let addr: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(p) if p <= max && prefix.chars().all(|c| c.is_ascii_digit()) => Ok(s.to_owned()),
        _ => Err(bad()),
    }
}

fn parse_optional_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|e| format!("{e}; expected host:port such as 0.0.0.0:8081, or `off`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_match_the_documented_ones() {
        let s = Settings::try_parse_from(["website-controller"]).expect("parses");
        assert_eq!(s.children, ChildConfig::default());
        assert_eq!(s.namespace, None);
        assert_eq!(s.health_addr, Some(([0, 0, 0, 0], 8081).into()));
        let election = &s.leader_election;
        assert!(election.enabled);
        assert_eq!(
            (election.lease.as_str(), election.lease_seconds, election.renew_grace_seconds),
            ("website-controller", 15, 5)
        );
        assert_eq!((election.lease_namespace.as_deref(), election.identity.as_deref()), (None, None));
    }

    #[test]
    fn leader_election_can_be_turned_off_and_its_identity_falls_back_outside_a_pod() {
        let s = Settings::try_parse_from(["website-controller", "--leader-election=false"]).expect("parses");
        assert!(!s.leader_election.enabled);
        let named =
            Settings::try_parse_from(["website-controller", "--leader-election-identity=replica-1"]).expect("parses");
        assert_eq!(named.leader_election.identity(), "replica-1");
        // Outside a pod (no POD_NAME in the test environment): the host name and this process's id.
        if std::env::var_os("POD_NAME").is_none() {
            let identity = s.leader_election.identity();
            assert!(identity.ends_with(&format!("-{}", std::process::id())), "{identity}");
        }
        assert!(Settings::try_parse_from(["website-controller", "--leader-election-lease-seconds=1"]).is_err());
    }

    #[test]
    fn document_root_splits_into_volume_dir_and_link() {
        let c = ChildConfig::default();
        assert_eq!(c.web_content_dir(), "/usr/share/nginx");
        assert_eq!(c.link_name(), "html");
    }

    #[test]
    fn document_roots_without_a_parent_are_refused() {
        for bad in ["html", "/", "/html", "relative/html", "/a/.."] {
            assert!(parse_document_root(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(parse_document_root("/srv/www/site/").as_deref(), Ok("/srv/www/site"));
    }

    #[test]
    fn storage_quantities_and_cidrs_are_checked_by_the_parser() {
        for ok in ["64Mi", "1Gi", "500M", "1048576"] {
            assert_eq!(parse_quantity(ok).as_deref(), Ok(ok));
        }
        for bad in ["", "Mi", "1.5Gi", "64MB", "-1Gi", "1 Gi"] {
            let err = parse_quantity(bad).expect_err(bad);
            assert!(err.contains("64Mi"), "{err}");
        }
        for ok in ["10.96.0.0/12", "fd00::/8", "0.0.0.0/0"] {
            assert_eq!(parse_cidr(ok).as_deref(), Ok(ok));
        }
        for bad in ["10.96.0.0", "10.96.0.0/33", "fd00::/129", "cluster/8", "10.0.0.0/+8"] {
            assert!(parse_cidr(bad).is_err(), "{bad} accepted");
        }
        let s = Settings::try_parse_from([
            "website-controller",
            "--egress-network-policy",
            "--egress-denied-cidrs=10.244.0.0/16,10.96.0.0/12",
        ])
        .expect("parses");
        assert!(s.children.egress_network_policy);
        assert_eq!(s.children.egress_denied_cidrs, ["10.244.0.0/16", "10.96.0.0/12"]);
        let err = Settings::try_parse_from(["website-controller", "--content-size-limit=lots"]).expect_err("refused");
        assert!(err.to_string().contains("not a quantity of bytes"), "{err}");
    }

    #[test]
    fn unknown_pull_policies_are_refused_by_the_parser() {
        let err =
            Settings::try_parse_from(["website-controller", "--image-pull-policy", "Sometimes"]).expect_err("refused");
        assert!(err.to_string().contains("Sometimes"));
    }
}
