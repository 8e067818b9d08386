//! The children of a `Website`: pure builders for its Deployment, Service, web server ConfigMap and, when the
//! operator asks for it, egress NetworkPolicy.
//!
//! The pod runs two containers sharing one `emptyDir` volume: git-sync clones `spec.gitRepo` at `spec.ref`
//! every `spec.syncIntervalSeconds`, without submodules, and publishes each checkout through a symbolic link, and
//! the web server serves that link's target. Both run as non-root users with read-only root file systems and no
//! capabilities, and every volume and container has a storage bound.
//!
//! git-sync v4 keeps the repository's `.git` directory at the root of the volume and each checkout under
//! `.worktrees/<hash>`, whose own `.git` is a file. The web server's configuration ([`web_server_config`])
//! therefore follows no symbolic link below the document root and serves no path with a `.git` component: a
//! repository cannot publish its own `.git`, nor anything outside the published checkout.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec,
    TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use website_crd::{
    CredentialsKind, EffectiveSpec, GitCredentials, HTTPS_PASSWORD_KEY, HTTPS_USERNAME_KEY, SSH_KNOWN_HOSTS_KEY,
    SSH_PRIVATE_KEY_KEY, Website,
};

use crate::settings::ChildConfig;
use crate::{Error, Result};

/// Value of `app.kubernetes.io/managed-by` on every child.
pub const MANAGED_BY: &str = "website-operator";
/// Value of `app.kubernetes.io/name` on every child.
pub const APP_NAME: &str = "website";
/// Name of the web server container and of its port.
pub const WEB_CONTAINER: &str = "web";
/// Name of the git-sync container.
pub const GIT_SYNC_CONTAINER: &str = "git-sync";
/// Where git-sync keeps its checkouts inside its own container.
pub const GIT_SYNC_ROOT: &str = "/git";

/// Key of the web server's configuration in its ConfigMap: the file name inside the configuration directory.
pub const WEB_CONFIG_KEY: &str = "default.conf";
/// TCP ports git reaches remotes on: ssh, http, https and the git protocol.
pub const GIT_PORTS: [i32; 4] = [22, 80, 443, 9418];
/// Ranges a Website's pods never reach when the egress NetworkPolicy is on: loopback and link-local (cloud
/// metadata services live at 169.254.169.254 and fd00:ec2::254 is reached through fe80::/10 neighbours).
pub const ALWAYS_DENIED_CIDRS: [&str; 4] = ["127.0.0.0/8", "169.254.0.0/16", "::1/128", "fe80::/10"];

const CONTENT_VOLUME: &str = "content";
const WEB_CONFIG_VOLUME: &str = "web-config";
const WEB_TMP_VOLUME: &str = "web-tmp";
const GIT_SYNC_TMP_VOLUME: &str = "git-sync-tmp";

/// Name of the ConfigMap that holds a Website's web server configuration.
pub fn web_config_name(website: &Website) -> String {
    format!("{}-web", website.name_any())
}

/// Labels that select a Website's pods. They never change for the life of the Website, as a Deployment's
/// selector is immutable.
pub fn selector_labels(website: &Website) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
        ("app.kubernetes.io/instance".to_owned(), website.name_any()),
    ])
}

/// Labels on every child and on the pods.
pub fn labels(website: &Website) -> BTreeMap<String, String> {
    let mut labels = selector_labels(website);
    labels.insert("app.kubernetes.io/component".into(), "web-server".into());
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    labels
}

fn owner_reference(website: &Website) -> Result<OwnerReference> {
    let mut owner = website.controller_owner_ref(&()).ok_or(Error::MissingObjectKey("metadata.uid"))?;
    // Foreground deletion of the Website waits for its children.
    owner.block_owner_deletion = Some(true);
    Ok(owner)
}

fn child_metadata(website: &Website) -> Result<ObjectMeta> {
    named_child_metadata(website, website.name_any())
}

fn named_child_metadata(website: &Website, name: String) -> Result<ObjectMeta> {
    Ok(ObjectMeta {
        name: Some(name),
        namespace: Some(website.namespace().ok_or(Error::MissingObjectKey("metadata.namespace"))?),
        labels: Some(labels(website)),
        owner_references: Some(vec![owner_reference(website)?]),
        ..ObjectMeta::default()
    })
}

fn restricted_security_context(run_as_user: i64) -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(run_as_user),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Capabilities::default() }),
        ..SecurityContext::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn resources(cpu: &str, memory: &str, memory_limit: &str, config: &ChildConfig) -> ResourceRequirements {
    let quantity = |q: &str| Quantity(q.to_owned());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), quantity(cpu)),
            ("memory".to_owned(), quantity(memory)),
            ("ephemeral-storage".to_owned(), quantity(&config.ephemeral_storage_request)),
        ])),
        limits: Some(BTreeMap::from([
            ("memory".to_owned(), quantity(memory_limit)),
            ("ephemeral-storage".to_owned(), quantity(&config.ephemeral_storage_limit)),
        ])),
        ..ResourceRequirements::default()
    }
}

fn web_container(config: &ChildConfig) -> Container {
    let port = || IntOrString::String(WEB_CONTAINER.into());
    // Ready once the first checkout is published and served: until then the document root is missing.
    let readiness = Probe {
        http_get: Some(HTTPGetAction { path: Some("/".into()), port: port(), ..HTTPGetAction::default() }),
        initial_delay_seconds: Some(2),
        period_seconds: Some(5),
        ..Probe::default()
    };
    // Alive while it accepts connections: a slow or failing clone is no reason to restart the web server.
    let liveness = Probe {
        tcp_socket: Some(TCPSocketAction { port: port(), ..TCPSocketAction::default() }),
        initial_delay_seconds: Some(10),
        period_seconds: Some(20),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    Container {
        name: WEB_CONTAINER.into(),
        image: Some(config.web_image.clone()),
        image_pull_policy: config.image_pull_policy.clone(),
        ports: Some(vec![ContainerPort {
            name: Some(WEB_CONTAINER.into()),
            container_port: config.web_port,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(readiness),
        liveness_probe: Some(liveness),
        security_context: Some(restricted_security_context(config.web_run_as_user)),
        resources: Some(resources("10m", "16Mi", "64Mi", config)),
        volume_mounts: Some(vec![
            mount(CONTENT_VOLUME, config.web_content_dir(), true),
            mount(WEB_CONFIG_VOLUME, &config.web_config_dir, true),
            // nginx writes its pid and temporary files here; the root file system is read-only.
            mount(WEB_TMP_VOLUME, "/tmp", false),
        ]),
        ..Container::default()
    }
}

/// Where git-sync sees the Secret of a private repository's credentials (git-sync's own default directory).
pub const GIT_CREDENTIALS_DIR: &str = "/etc/git-secret";
/// Name of the volume of that Secret, mounted into git-sync only.
const GIT_CREDENTIALS_VOLUME: &str = "git-credentials";
/// File mode of the Secret's files: readable by their group, which is the pod's `fsGroup`, git-sync's user; a
/// private key must not be readable by everyone.
const GIT_CREDENTIALS_MODE: i32 = 0o440;

/// git-sync v4's flags and environment for `credentials`: the Secret's files are read from
/// [`GIT_CREDENTIALS_DIR`]; the user name of HTTPS credentials comes from the Secret through the environment (git-sync
/// has no flag for a user name file). Host keys are always checked against the Secret's `known_hosts`.
fn credential_flags(credentials: &GitCredentials) -> (Vec<String>, Vec<EnvVar>) {
    let file = |key: &str| format!("{GIT_CREDENTIALS_DIR}/{key}");
    match credentials.kind {
        CredentialsKind::Https => (
            vec![format!("--password-file={}", file(HTTPS_PASSWORD_KEY))],
            vec![EnvVar {
                name: "GITSYNC_USERNAME".into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: credentials.secret_name.clone(),
                        key: HTTPS_USERNAME_KEY.into(),
                        optional: Some(false),
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            }],
        ),
        CredentialsKind::Ssh => (
            vec![
                format!("--ssh-key-file={}", file(SSH_PRIVATE_KEY_KEY)),
                "--ssh-known-hosts=true".to_owned(),
                format!("--ssh-known-hosts-file={}", file(SSH_KNOWN_HOSTS_KEY)),
            ],
            Vec::new(),
        ),
    }
}

fn git_sync_container(spec: &EffectiveSpec, config: &ChildConfig) -> Container {
    let mut args = vec![
        format!("--repo={}", spec.git_repo),
        format!("--ref={}", spec.git_ref),
        format!("--root={GIT_SYNC_ROOT}"),
        format!("--link={}", config.link_name()),
        format!("--period={}s", spec.sync_interval_seconds),
        "--depth=1".to_owned(),
        // A repository's .gitmodules may name any URL, which no rule here checks: never follow it.
        "--submodules=off".to_owned(),
        // Keep retrying a failing remote instead of crash-looping: the web server keeps serving the last
        // good checkout.
        "--max-failures=-1".to_owned(),
    ];
    let mut env = vec![EnvVar { name: "HOME".into(), value: Some("/tmp".into()), ..EnvVar::default() }];
    let mut mounts = vec![mount(CONTENT_VOLUME, GIT_SYNC_ROOT, false), mount(GIT_SYNC_TMP_VOLUME, "/tmp", false)];
    if let Some(credentials) = &spec.credentials {
        let (flags, vars) = credential_flags(credentials);
        args.extend(flags);
        env.extend(vars);
        mounts.push(mount(GIT_CREDENTIALS_VOLUME, GIT_CREDENTIALS_DIR, true));
    }
    Container {
        name: GIT_SYNC_CONTAINER.into(),
        image: Some(config.git_sync_image.clone()),
        image_pull_policy: config.image_pull_policy.clone(),
        args: Some(args),
        env: Some(env),
        security_context: Some(restricted_security_context(config.git_sync_run_as_user)),
        resources: Some(resources("10m", "32Mi", "256Mi", config)),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

fn empty_dir(name: &str, size_limit: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity(size_limit.to_owned())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The web server's server block: it serves the checkout git-sync publishes at the document root, and nothing else.
///
/// - `disable_symlinks on from=$document_root` follows the document root itself (git-sync's link to the current
///   worktree) but no symbolic link below it, so a link in the repository cannot reach the repository's `.git`,
///   an older worktree or a file of the container;
/// - no path with a `.git` component is served (each worktree's `.git` file names the repository's location);
/// - no directory listings, no version in headers.
pub fn web_server_config(config: &ChildConfig) -> String {
    format!(
        "# Written by website-controller: serves the published checkout and nothing else.\n\
         server {{\n\
         \x20   listen {port};\n\
         \x20   server_name _;\n\
         \x20   server_tokens off;\n\
         \x20   autoindex off;\n\
         \x20   root {root};\n\
         \x20   # The document root is git-sync's link to the current worktree: follow it, and no link below it.\n\
         \x20   disable_symlinks on from=$document_root;\n\
         \x20   location ~ (^|/)\\.git(/|$) {{\n\
         \x20       return 404;\n\
         \x20   }}\n\
         \x20   location / {{\n\
         \x20       index index.html index.htm;\n\
         \x20   }}\n\
         }}\n",
        port = config.web_port,
        root = config.web_document_root,
    )
}

/// The ConfigMap holding `website`'s web server configuration ([`web_server_config`]).
///
/// # Errors
/// When the Website lacks a namespace or uid (it was not read from the API server).
pub fn web_config(website: &Website, config: &ChildConfig) -> Result<ConfigMap> {
    Ok(ConfigMap {
        metadata: named_child_metadata(website, web_config_name(website))?,
        data: Some(BTreeMap::from([(WEB_CONFIG_KEY.to_owned(), web_server_config(config))])),
        ..ConfigMap::default()
    })
}

/// The egress NetworkPolicy of `website`'s pods: DNS anywhere, and git's ports anywhere but loopback, link-local
/// and the operator's denied ranges. Host names can resolve to any address, so this, and not the gitRepo rules,
/// is what keeps a repository URL from reaching the cluster's own services.
///
/// # Errors
/// When the Website lacks a namespace or uid (it was not read from the API server).
pub fn network_policy(website: &Website, config: &ChildConfig) -> Result<NetworkPolicy> {
    let spec = EffectiveSpec::from(&website.spec);
    let port = |protocol: &str, port: i32| NetworkPolicyPort {
        protocol: Some(protocol.into()),
        port: Some(IntOrString::Int(port)),
        ..NetworkPolicyPort::default()
    };
    let mut git_ports: Vec<i32> = GIT_PORTS.to_vec();
    if let Some(p) = website_crd::git::GitRepo::parse(&spec.git_repo).ok().and_then(|r| r.port()).map(i32::from)
        && !git_ports.contains(&p)
    {
        git_ports.push(p);
    }
    let denied = ALWAYS_DENIED_CIDRS.iter().map(|c| (*c).to_owned()).chain(config.egress_denied_cidrs.iter().cloned());
    let (denied_v6, denied_v4): (Vec<String>, Vec<String>) = denied.partition(|c| c.contains(':'));
    let block = |cidr: &str, except: Vec<String>| NetworkPolicyPeer {
        ip_block: Some(IPBlock { cidr: cidr.into(), except: Some(except) }),
        ..NetworkPolicyPeer::default()
    };
    Ok(NetworkPolicy {
        metadata: child_metadata(website)?,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(website)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Egress".into()]),
            egress: Some(vec![
                NetworkPolicyEgressRule { ports: Some(vec![port("UDP", 53), port("TCP", 53)]), to: None },
                NetworkPolicyEgressRule {
                    ports: Some(git_ports.into_iter().map(|p| port("TCP", p)).collect()),
                    to: Some(vec![block("0.0.0.0/0", denied_v4), block("::/0", denied_v6)]),
                },
            ]),
            ..NetworkPolicySpec::default()
        }),
    })
}

/// The Deployment that serves `website`.
///
/// # Errors
/// When the Website lacks a namespace or uid (it was not read from the API server).
pub fn deployment(website: &Website, config: &ChildConfig) -> Result<Deployment> {
    let spec = EffectiveSpec::from(&website.spec);
    let pod_labels = labels(website);
    let mut volumes = vec![
        empty_dir(CONTENT_VOLUME, &config.content_size_limit),
        Volume {
            name: WEB_CONFIG_VOLUME.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: web_config_name(website),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        empty_dir(WEB_TMP_VOLUME, &config.tmp_size_limit),
        empty_dir(GIT_SYNC_TMP_VOLUME, &config.tmp_size_limit),
    ];
    if let Some(credentials) = &spec.credentials {
        // The whole Secret, so that a missing key shows up as git-sync's own start-up error naming the file.
        volumes.push(Volume {
            name: GIT_CREDENTIALS_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(credentials.secret_name.clone()),
                default_mode: Some(GIT_CREDENTIALS_MODE),
                optional: Some(false),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    Ok(Deployment {
        metadata: child_metadata(website)?,
        spec: Some(DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector { match_labels: Some(selector_labels(website)), ..LabelSelector::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), ..ObjectMeta::default() }),
                spec: Some(PodSpec {
                    containers: vec![web_container(config), git_sync_container(&spec, config)],
                    volumes: Some(volumes),
                    // The pods call no Kubernetes API.
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        // Lets both users write to the shared volume.
                        fs_group: Some(config.git_sync_run_as_user),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    })
}

/// The Service in front of `website`'s pods.
///
/// # Errors
/// When the Website lacks a namespace or uid (it was not read from the API server).
pub fn service(website: &Website) -> Result<Service> {
    let spec = EffectiveSpec::from(&website.spec);
    Ok(Service {
        metadata: child_metadata(website)?,
        spec: Some(ServiceSpec {
            type_: Some(spec.service_type.as_str().into()),
            selector: Some(selector_labels(website)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: spec.port,
                target_port: Some(IntOrString::String(WEB_CONTAINER.into())),
                // Server-side apply in Kubernetes 1.20 needs the protocol, a key of the ports list.
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// The in-cluster URL of `website`'s Service.
pub fn url(website: &Website, config: &ChildConfig) -> String {
    let spec = EffectiveSpec::from(&website.spec);
    let ns = website.namespace().unwrap_or_default();
    let port = if spec.port == 80 { String::new() } else { format!(":{}", spec.port) };
    format!("http://{}.{ns}.svc.{}{port}/", website.name_any(), config.cluster_domain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use website_crd::{ServiceType, WebsiteSpec};

    fn website(spec: WebsiteSpec) -> Website {
        let mut w = Website::new("kubia", spec);
        w.metadata.namespace = Some("shop".into());
        w.metadata.uid = Some("3f8b1c3e-0000-4000-8000-000000000001".into());
        w
    }

    fn spec() -> WebsiteSpec {
        WebsiteSpec::new("https://github.com/luksa/kubia-website-example.git")
    }

    fn pod_spec(d: &Deployment) -> &PodSpec {
        d.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec")
    }

    fn container<'a>(d: &'a Deployment, name: &str) -> &'a Container {
        pod_spec(d).containers.iter().find(|c| c.name == name).expect("container")
    }

    #[test]
    fn deployment_is_owned_by_the_website_as_its_controller() {
        let d = deployment(&website(spec()), &ChildConfig::default()).expect("builds");
        assert_eq!(d.metadata.name.as_deref(), Some("kubia"));
        assert_eq!(d.metadata.namespace.as_deref(), Some("shop"));
        let owners = d.metadata.owner_references.expect("owner");
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "Website");
        assert_eq!(owners[0].api_version, "extensions.example.com/v1");
        assert_eq!(owners[0].name, "kubia");
        assert_eq!(owners[0].uid, "3f8b1c3e-0000-4000-8000-000000000001");
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(owners[0].block_owner_deletion, Some(true));
    }

    #[test]
    fn git_sync_gets_the_v4_flags_from_the_effective_spec() {
        let s = WebsiteSpec { git_ref: Some("v2".into()), sync_interval_seconds: Some(300), ..spec() };
        let d = deployment(&website(s), &ChildConfig::default()).expect("builds");
        let git_sync = container(&d, GIT_SYNC_CONTAINER);
        assert_eq!(git_sync.image.as_deref(), Some("registry.k8s.io/git-sync/git-sync:v4.4.0"));
        assert_eq!(
            git_sync.args.as_deref().expect("args"),
            [
                "--repo=https://github.com/luksa/kubia-website-example.git",
                "--ref=v2",
                "--root=/git",
                "--link=html",
                "--period=300s",
                "--depth=1",
                "--submodules=off",
                "--max-failures=-1"
            ]
        );
        assert!(git_sync.env.iter().flatten().all(|e| !e.name.starts_with("GIT_SYNC_")), "no v3 environment variables");
    }

    /// git-sync v4.4's documented long flags (its README's manual), checked in with where they were read.
    const GIT_SYNC_V4_4_FLAGS: &str = include_str!("git-sync-v4.4-flags.txt");

    #[test]
    fn every_flag_and_variable_given_to_git_sync_is_one_that_git_sync_v4_4_documents() {
        let documented: Vec<&str> =
            GIT_SYNC_V4_4_FLAGS.lines().filter(|l| l.starts_with("--")).map(str::trim).collect();
        assert!(documented.len() >= 40 && documented.contains(&"--repo"), "the list was read: {documented:?}");
        let deployments = [
            deployment(&website(spec()), &ChildConfig::default()).expect("builds"),
            with_credentials("https://github.com/org/private.git", CredentialsKind::Https),
            with_credentials("git@github.com:org/private.git", CredentialsKind::Ssh),
        ];
        let mut seen = 0;
        for d in &deployments {
            let git_sync = container(d, GIT_SYNC_CONTAINER);
            for arg in git_sync.args.iter().flatten() {
                let name = arg.split_once('=').map_or(arg.as_str(), |(name, _)| name);
                assert!(documented.contains(&name), "{arg}: {name} is not a documented git-sync v4.4 flag");
                seen += 1;
            }
            // Its variables are the flags' own ($GITSYNC_<FLAG>), and HOME.
            for var in git_sync.env.iter().flatten().filter(|e| e.name != "HOME") {
                let flag =
                    var.name.strip_prefix("GITSYNC_").map(|f| format!("--{}", f.to_lowercase().replace('_', "-")));
                assert!(
                    flag.as_deref().is_some_and(|f| documented.contains(&f)),
                    "{} is not the variable of a documented git-sync v4.4 flag",
                    var.name
                );
            }
        }
        assert!(seen >= 8 * 3 + 4, "every Deployment's arguments were checked ({seen})");
    }

    fn with_credentials(git_repo: &str, kind: CredentialsKind) -> Deployment {
        let s = WebsiteSpec {
            credentials: Some(GitCredentials { kind, secret_name: "site-creds".into() }),
            ..WebsiteSpec::new(git_repo)
        };
        deployment(&website(s), &ChildConfig::default()).expect("builds")
    }

    fn credential_args(d: &Deployment) -> Vec<String> {
        let args = container(d, GIT_SYNC_CONTAINER).args.clone().expect("args");
        args.into_iter().skip(8).collect()
    }

    #[test]
    fn https_credentials_reach_git_sync_through_a_password_file_and_the_user_name_variable() {
        let d = with_credentials("https://github.com/org/private.git", CredentialsKind::Https);
        assert_eq!(credential_args(&d), ["--password-file=/etc/git-secret/password"]);
        let git_sync = container(&d, GIT_SYNC_CONTAINER);
        let user = git_sync.env.iter().flatten().find(|e| e.name == "GITSYNC_USERNAME").expect("user name");
        let key = user.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).expect("from the Secret");
        assert_eq!((key.name.as_str(), key.key.as_str(), key.optional), ("site-creds", "username", Some(false)));
    }

    #[test]
    fn ssh_credentials_reach_git_sync_with_host_key_checking_on() {
        let d = with_credentials("git@github.com:org/private.git", CredentialsKind::Ssh);
        assert_eq!(
            credential_args(&d),
            [
                "--ssh-key-file=/etc/git-secret/ssh-privatekey",
                "--ssh-known-hosts=true",
                "--ssh-known-hosts-file=/etc/git-secret/known_hosts"
            ]
        );
        assert!(container(&d, GIT_SYNC_CONTAINER).env.iter().flatten().all(|e| e.value_from.is_none()));
    }

    #[test]
    fn the_secret_is_mounted_read_only_into_git_sync_and_nowhere_else() {
        for kind in [CredentialsKind::Https, CredentialsKind::Ssh] {
            let d = with_credentials("https://github.com/org/private.git", kind);
            let volume =
                pod_spec(&d).volumes.iter().flatten().find(|v| v.name == GIT_CREDENTIALS_VOLUME).expect("volume");
            let secret = volume.secret.as_ref().expect("a Secret volume");
            assert_eq!(secret.secret_name.as_deref(), Some("site-creds"));
            assert_eq!(secret.default_mode, Some(0o440));
            assert_eq!(secret.optional, Some(false));
            let git_sync = container(&d, GIT_SYNC_CONTAINER);
            let m = git_sync.volume_mounts.iter().flatten().find(|m| m.name == GIT_CREDENTIALS_VOLUME).expect("mount");
            assert_eq!((m.mount_path.as_str(), m.read_only), ("/etc/git-secret", Some(true)));
            let web = container(&d, WEB_CONTAINER);
            assert!(web.volume_mounts.iter().flatten().all(|m| m.name != GIT_CREDENTIALS_VOLUME));
            assert!(web.env.iter().flatten().all(|e| e.value_from.is_none()));
        }
        // A public repository: no Secret anywhere.
        let d = deployment(&website(spec()), &ChildConfig::default()).expect("builds");
        assert!(pod_spec(&d).volumes.iter().flatten().all(|v| v.secret.is_none()));
        assert_eq!(credential_args(&d), Vec::<String>::new());
    }

    #[test]
    fn web_server_serves_the_link_git_sync_publishes() {
        let d = deployment(&website(spec()), &ChildConfig::default()).expect("builds");
        let web = container(&d, WEB_CONTAINER);
        let git_sync = container(&d, GIT_SYNC_CONTAINER);
        let mount_of = |c: &Container| {
            c.volume_mounts
                .iter()
                .flatten()
                .find(|m| m.name == CONTENT_VOLUME)
                .map(|m| m.mount_path.clone())
                .expect("mount")
        };
        // git-sync writes <root>/<link>; the web server sees the same volume at the document root's parent.
        assert_eq!(mount_of(git_sync), "/git");
        assert_eq!(mount_of(web), "/usr/share/nginx");
        assert_eq!(format!("{}/{}", mount_of(web), ChildConfig::default().link_name()), "/usr/share/nginx/html");
        let web_mount = web.volume_mounts.iter().flatten().find(|m| m.name == CONTENT_VOLUME).expect("mount");
        assert_eq!(web_mount.read_only, Some(true));
        let probe = web.readiness_probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("readiness probe");
        assert_eq!(probe.port, IntOrString::String("web".into()));
        assert_eq!(probe.path.as_deref(), Some("/"));
        // Liveness does not depend on the content having arrived.
        let liveness = web.liveness_probe.as_ref().expect("liveness probe");
        assert!(liveness.http_get.is_none());
        assert_eq!(liveness.tcp_socket.as_ref().map(|t| t.port.clone()), Some(IntOrString::String("web".into())));
        assert_eq!(web.ports.as_ref().expect("ports")[0].container_port, 8080);
    }

    #[test]
    fn containers_run_restricted() {
        let d = deployment(&website(spec()), &ChildConfig::default()).expect("builds");
        for c in &pod_spec(&d).containers {
            let sc = c.security_context.as_ref().expect("security context");
            assert_eq!(sc.run_as_non_root, Some(true), "{}", c.name);
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
            assert_eq!(sc.capabilities.as_ref().and_then(|c| c.drop.clone()), Some(vec!["ALL".to_owned()]));
            assert!(c.resources.as_ref().and_then(|r| r.limits.as_ref()).is_some(), "{} has limits", c.name);
        }
        let pod = pod_spec(&d);
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(
            pod.security_context.as_ref().and_then(|s| s.seccomp_profile.as_ref()).map(|p| p.type_.as_str()),
            Some("RuntimeDefault")
        );
    }

    #[test]
    fn every_volume_and_container_has_a_storage_bound_from_the_configuration() {
        let config = ChildConfig {
            content_size_limit: "2Gi".into(),
            tmp_size_limit: "32Mi".into(),
            ephemeral_storage_request: "100Mi".into(),
            ephemeral_storage_limit: "3Gi".into(),
            ..ChildConfig::default()
        };
        let d = deployment(&website(spec()), &config).expect("builds");
        let pod = pod_spec(&d);
        let limits: BTreeMap<String, Option<String>> = pod
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.empty_dir.as_ref().map(|e| (v.name.clone(), e.size_limit.clone().map(|q| q.0))))
            .collect();
        assert_eq!(
            limits,
            BTreeMap::from([
                (CONTENT_VOLUME.to_owned(), Some("2Gi".to_owned())),
                (WEB_TMP_VOLUME.to_owned(), Some("32Mi".to_owned())),
                (GIT_SYNC_TMP_VOLUME.to_owned(), Some("32Mi".to_owned())),
            ])
        );
        for c in &pod.containers {
            let r = c.resources.as_ref().expect("resources");
            let get = |m: &Option<BTreeMap<String, Quantity>>| {
                m.as_ref().and_then(|m| m.get("ephemeral-storage")).map(|q| q.0.clone())
            };
            assert_eq!(get(&r.requests).as_deref(), Some("100Mi"), "{}", c.name);
            assert_eq!(get(&r.limits).as_deref(), Some("3Gi"), "{}", c.name);
        }
    }

    #[test]
    fn the_web_server_gets_the_generated_configuration_read_only() {
        let w = website(spec());
        let config = ChildConfig::default();
        let d = deployment(&w, &config).expect("builds");
        let volume = pod_spec(&d).volumes.iter().flatten().find(|v| v.name == WEB_CONFIG_VOLUME).expect("volume");
        assert_eq!(volume.config_map.as_ref().map(|c| c.name.as_str()), Some("kubia-web"));
        let web = container(&d, WEB_CONTAINER);
        let m = web.volume_mounts.iter().flatten().find(|m| m.name == WEB_CONFIG_VOLUME).expect("mount");
        assert_eq!((m.mount_path.as_str(), m.read_only), ("/etc/nginx/conf.d", Some(true)));
        let git_sync = container(&d, GIT_SYNC_CONTAINER);
        assert!(git_sync.volume_mounts.iter().flatten().all(|m| m.name != WEB_CONFIG_VOLUME));

        let cm = web_config(&w, &config).expect("builds");
        assert_eq!(cm.metadata.name.as_deref(), Some("kubia-web"));
        assert_eq!(cm.metadata.owner_references.expect("owner")[0].controller, Some(true));
        let text = cm.data.expect("data").remove(WEB_CONFIG_KEY).expect("default.conf");
        assert_eq!(text, web_server_config(&config));
    }

    #[test]
    fn the_web_server_configuration_serves_the_checkout_only() {
        let config =
            ChildConfig { web_port: 8088, web_document_root: "/srv/site/html".into(), ..ChildConfig::default() };
        let text = web_server_config(&config);
        for line in [
            "listen 8088;",
            "root /srv/site/html;",
            "disable_symlinks on from=$document_root;",
            "location ~ (^|/)\\.git(/|$) {",
            "return 404;",
            "autoindex off;",
        ] {
            assert!(text.lines().any(|l| l.trim() == line), "{line:?} missing from:\n{text}");
        }
        assert_eq!(text.matches('{').count(), text.matches('}').count(), "balanced blocks:\n{text}");
    }

    #[test]
    fn the_egress_policy_allows_dns_and_git_ports_and_denies_local_and_configured_ranges() {
        let config = ChildConfig {
            egress_denied_cidrs: vec!["10.244.0.0/16".into(), "fd00:10::/64".into()],
            ..ChildConfig::default()
        };
        let w = website(spec());
        let p = network_policy(&w, &config).expect("builds");
        assert_eq!(p.metadata.name.as_deref(), Some("kubia"));
        assert_eq!(p.metadata.owner_references.expect("owner")[0].controller, Some(true));
        let spec = p.spec.expect("spec");
        assert_eq!(spec.pod_selector.and_then(|s| s.match_labels), Some(selector_labels(&w)));
        assert_eq!(spec.policy_types.as_deref(), Some(&["Egress".to_owned()][..]));
        assert!(spec.ingress.is_none(), "ingress to the web server stays open");
        let egress = spec.egress.expect("egress");
        assert_eq!(egress.len(), 2);
        let ports = |i: usize| -> Vec<(String, i32)> {
            egress[i]
                .ports
                .iter()
                .flatten()
                .map(|p| {
                    let port = match p.port {
                        Some(IntOrString::Int(n)) => n,
                        _ => 0,
                    };
                    (p.protocol.clone().unwrap_or_default(), port)
                })
                .collect()
        };
        assert_eq!(ports(0), [("UDP".to_owned(), 53), ("TCP".to_owned(), 53)]);
        assert!(egress[0].to.is_none(), "DNS anywhere");
        assert_eq!(ports(1), GIT_PORTS.iter().map(|p| ("TCP".to_owned(), *p)).collect::<Vec<_>>());
        let blocks: Vec<(String, Vec<String>)> = egress[1]
            .to
            .iter()
            .flatten()
            .filter_map(|peer| peer.ip_block.clone())
            .map(|b| (b.cidr, b.except.unwrap_or_default()))
            .collect();
        assert_eq!(
            blocks,
            [
                ("0.0.0.0/0".to_owned(), vec!["127.0.0.0/8".into(), "169.254.0.0/16".into(), "10.244.0.0/16".into()]),
                ("::/0".to_owned(), vec!["::1/128".into(), "fe80::/10".into(), "fd00:10::/64".into()]),
            ]
        );
    }

    #[test]
    fn the_egress_policy_also_opens_the_port_the_git_repo_names() {
        let w = website(WebsiteSpec::new("ssh://git@git.example.com:2222/org/site.git"));
        let p = network_policy(&w, &ChildConfig::default()).expect("builds");
        let egress = p.spec.and_then(|s| s.egress).expect("egress");
        let ports: Vec<IntOrString> = egress[1].ports.iter().flatten().filter_map(|p| p.port.clone()).collect();
        assert_eq!(ports.last(), Some(&IntOrString::Int(2222)));
        assert_eq!(ports.len(), GIT_PORTS.len() + 1);
        let w = website(WebsiteSpec::new("https://git.example.com:443/org/site.git"));
        let p = network_policy(&w, &ChildConfig::default()).expect("builds");
        assert_eq!(p.spec.and_then(|s| s.egress).expect("egress")[1].ports.as_ref().map(Vec::len), Some(4));
    }

    #[test]
    fn replicas_and_images_follow_spec_and_configuration() {
        let config = ChildConfig {
            web_image: "registry.example.com/web:1".into(),
            git_sync_image: "registry.example.com/git-sync:4".into(),
            image_pull_policy: Some("Always".into()),
            ..ChildConfig::default()
        };
        let d = deployment(&website(WebsiteSpec { replicas: Some(3), ..spec() }), &config).expect("builds");
        assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(3));
        assert_eq!(container(&d, WEB_CONTAINER).image.as_deref(), Some("registry.example.com/web:1"));
        assert_eq!(container(&d, GIT_SYNC_CONTAINER).image.as_deref(), Some("registry.example.com/git-sync:4"));
        assert_eq!(container(&d, WEB_CONTAINER).image_pull_policy.as_deref(), Some("Always"));
    }

    #[test]
    fn selector_is_stable_and_matches_the_pod_labels() {
        let d = deployment(&website(spec()), &ChildConfig::default()).expect("builds");
        let selector = d.spec.as_ref().and_then(|s| s.selector.match_labels.clone()).expect("selector");
        let pod_labels =
            d.spec.as_ref().and_then(|s| s.template.metadata.as_ref()).and_then(|m| m.labels.clone()).expect("labels");
        assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
        assert_eq!(selector.len(), 2);
        assert_eq!(pod_labels.get("app.kubernetes.io/managed-by").map(String::as_str), Some("website-operator"));
    }

    #[test]
    fn service_exposes_the_spec_port_with_an_explicit_protocol() {
        let s =
            service(&website(WebsiteSpec { service_type: Some(ServiceType::NodePort), port: Some(8088), ..spec() }))
                .expect("builds");
        let spec = s.spec.expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("NodePort"));
        let ports = spec.ports.expect("ports");
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].port, 8088);
        assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
        assert_eq!(ports[0].target_port, Some(IntOrString::String("web".into())));
        assert_eq!(spec.selector, Some(selector_labels(&website(self::spec()))));
        assert_eq!(s.metadata.owner_references.expect("owner")[0].controller, Some(true));
    }

    #[test]
    fn service_defaults_to_cluster_ip_on_port_80() {
        let s = service(&website(spec())).expect("builds").spec.expect("spec");
        assert_eq!(s.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(s.ports.expect("ports")[0].port, 80);
    }

    #[test]
    fn url_names_the_service_and_a_non_default_port() {
        let config = ChildConfig::default();
        assert_eq!(url(&website(spec()), &config), "http://kubia.shop.svc.cluster.local/");
        assert_eq!(
            url(&website(WebsiteSpec { port: Some(8080), ..spec() }), &config),
            "http://kubia.shop.svc.cluster.local:8080/"
        );
    }

    #[test]
    fn objects_not_read_from_the_server_are_refused() {
        let mut w = website(spec());
        w.metadata.uid = None;
        assert!(matches!(deployment(&w, &ChildConfig::default()), Err(Error::MissingObjectKey("metadata.uid"))));
        let mut w = website(spec());
        w.metadata.namespace = None;
        assert!(matches!(service(&w), Err(Error::MissingObjectKey("metadata.namespace"))));
    }
}
