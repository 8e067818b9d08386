//! The `Website` custom resource: spec, status and the effective (defaulted) view of a spec.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the `Website` resource.
pub const GROUP: &str = "extensions.example.com";
/// API version of the `Website` resource.
pub const VERSION: &str = "v1";
/// Name of the `Ready` condition in `status.conditions`.
pub const READY_CONDITION: &str = "Ready";

/// Bounds of `spec.replicas`.
pub const REPLICAS_RANGE: std::ops::RangeInclusive<i32> = 1..=100;
/// Bounds of `spec.port`.
pub const PORT_RANGE: std::ops::RangeInclusive<i32> = 1..=65535;
/// Bounds of `spec.syncIntervalSeconds`.
pub const SYNC_INTERVAL_RANGE: std::ops::RangeInclusive<i32> = 5..=86400;
/// Longest accepted `spec.gitRepo`.
pub const GIT_REPO_MAX_LEN: usize = 2048;
/// Longest accepted `spec.ref`.
pub const REF_MAX_LEN: usize = 255;
/// Longest accepted `spec.credentials.secretName`: a Secret's name is a DNS subdomain.
pub const SECRET_NAME_MAX_LEN: usize = 253;

/// A static website served from a git repository.
///
/// The operator turns each `Website` into a Deployment (a web server plus a git-sync sidecar that keeps a
/// checkout of `gitRepo` in a shared volume) and a Service in front of it.
#[allow(clippy::duplicated_attributes, reason = "each printcolumn(...) names its own type_")]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "extensions.example.com",
    version = "v1",
    kind = "Website",
    plural = "websites",
    singular = "website",
    shortname = "ws",
    category = "all",
    namespaced,
    status = "WebsiteStatus",
    derive = "PartialEq",
    doc = "A static website served from a git repository: the operator runs a web server that serves the repository's files, and a Service in front of it.",
    printcolumn(
        name = "GitRepo",
        type_ = "string",
        json_path = ".spec.gitRepo",
        description = "The git repository served"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the website is serving"
    ),
    printcolumn(
        name = "URL",
        type_ = "string",
        json_path = ".status.url",
        description = "In-cluster URL of the website"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = declare_defaults)]
pub struct WebsiteSpec {
    /// The git repository whose files are served, e.g. `https://github.com/luksa/kubia-website-example.git`.
    /// Accepted forms: `https://`, `http://`, `ssh://` and `git://` URLs (scheme in lowercase) with a host and a
    /// path, and scp-like `[user@]host:path`; IPv6 hosts in brackets. Refused: credentials (passwords, access
    /// tokens: a private repository's go in `credentials`), query strings and fragments, a user, host or path
    /// starting with `-`, and loopback, unspecified and link-local hosts. At most 2048 characters; stored and
    /// fetched exactly as written.
    #[schemars(length(min = 1, max = 2048))]
    pub git_repo: String,

    /// The branch, tag or commit to serve. Defaults to `HEAD`, the remote's default branch.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub git_ref: Option<String>,

    /// Number of web server pods. Defaults to 1; between 1 and 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: Option<i32>,

    /// How the website is exposed: `ClusterIP` (the default: inside the cluster only), `NodePort` (also on a port
    /// of every node) or `LoadBalancer` (also through a cloud load balancer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<ServiceType>,

    /// Port of the website's Service. Defaults to 80; between 1 and 65535.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,

    /// Seconds between two fetches of the repository. Defaults to 60; between 5 and 86400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 5, max = 86400))]
    pub sync_interval_seconds: Option<i32>,

    /// Credentials for a private repository: a Secret in the Website's namespace, mounted into git-sync only.
    /// Whoever creates the Website, or changes its `gitRepo`, `ref` or `credentials`, must be allowed to `get` that
    /// Secret. Never used with an `http://` or `git://` remote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<GitCredentials>,
}

/// A reference to the Secret that holds a private repository's credentials.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitCredentials {
    /// What the Secret holds: `HTTPS` (keys `username` and `password`, a password or access token) for an
    /// `https://` remote, or `SSH` (keys `ssh-privatekey` and `known_hosts`) for an `ssh://` or `[user@]host:path`
    /// remote.
    #[serde(rename = "type")]
    pub kind: CredentialsKind,

    /// Name of the Secret, in the Website's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// Which credentials a Secret holds, and so which remotes they can be used with.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum CredentialsKind {
    /// A user name and a password or access token, for an `https://` remote (Secret keys `username` and
    /// `password`).
    #[serde(rename = "HTTPS")]
    Https,
    /// A private key and the server's host keys, for an `ssh://` or `[user@]host:path` remote (Secret keys
    /// `ssh-privatekey` and `known_hosts`).
    #[serde(rename = "SSH")]
    Ssh,
}

impl CredentialsKind {
    /// The value as written in a spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Https => "HTTPS",
            Self::Ssh => "SSH",
        }
    }

    /// The Secret keys git-sync reads for this kind.
    pub fn secret_keys(self) -> &'static [&'static str] {
        match self {
            Self::Https => &[HTTPS_USERNAME_KEY, HTTPS_PASSWORD_KEY],
            Self::Ssh => &[SSH_PRIVATE_KEY_KEY, SSH_KNOWN_HOSTS_KEY],
        }
    }
}

impl std::fmt::Display for CredentialsKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Secret key of the user name of `HTTPS` credentials (as in a `kubernetes.io/basic-auth` Secret).
pub const HTTPS_USERNAME_KEY: &str = "username";
/// Secret key of the password or access token of `HTTPS` credentials (as in a `kubernetes.io/basic-auth` Secret).
pub const HTTPS_PASSWORD_KEY: &str = "password";
/// Secret key of the private key of `SSH` credentials (as in a `kubernetes.io/ssh-auth` Secret).
pub const SSH_PRIVATE_KEY_KEY: &str = "ssh-privatekey";
/// Secret key of the `known_hosts` file of `SSH` credentials: the server's host keys, which are always checked.
pub const SSH_KNOWN_HOSTS_KEY: &str = "known_hosts";

/// Declares every field's default in the schema (`default`), for the API server to fill in what a manifest leaves
/// out: the values of [`crate::defaults`], so that the schema, the mutating webhook and the controller agree.
fn declare_defaults(schema: &mut schemars::Schema) {
    let Ok(serde_json::Value::Object(defaults)) = serde_json::to_value(crate::defaults(&WebsiteSpec::new(""))) else {
        return;
    };
    let Some(properties) = schema.get_mut("properties").and_then(serde_json::Value::as_object_mut) else {
        return;
    };
    for (field, value) in defaults {
        if let Some(property) = properties.get_mut(&field).and_then(serde_json::Value::as_object_mut)
            && field != "gitRepo"
        {
            property.insert("default".into(), value);
        }
    }
}

impl WebsiteSpec {
    /// A spec serving `git_repo` with every other field left to its default.
    pub fn new(git_repo: impl Into<String>) -> Self {
        Self {
            git_repo: git_repo.into(),
            git_ref: None,
            replicas: None,
            service_type: None,
            port: None,
            sync_interval_seconds: None,
            credentials: None,
        }
    }
}

/// How the website is exposed: `ClusterIP` (the default: inside the cluster only), `NodePort` (also on a port of
/// every node) or `LoadBalancer` (also through a cloud load balancer).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    #[default]
    ClusterIP,
    /// Also reachable on a port of every node.
    NodePort,
    /// Also reachable through a cloud load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The Kubernetes `Service.spec.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}

impl std::fmt::Display for ServiceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The observed state of a `Website`, written by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebsiteStatus {
    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Web server pods that are available to serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,

    /// In-cluster URL of the website's Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// Current conditions. `Ready` is `True` when every desired web server pod is available.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl WebsiteStatus {
    /// The `Ready` condition, if the controller has reported one.
    pub fn ready_condition(&self) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == READY_CONDITION)
    }
}
