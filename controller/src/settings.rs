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

    /// Log format.
    #[arg(long, env = "WEBSITE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// What the controller puts into each Website's children.
    #[command(flatten)]
    pub children: ChildConfig,
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
    fn unknown_pull_policies_are_refused_by_the_parser() {
        let err =
            Settings::try_parse_from(["website-controller", "--image-pull-policy", "Sometimes"]).expect_err("refused");
        assert!(err.to_string().contains("Sometimes"));
    }
}
