//! Locating the control-plane binaries.
//!
//! The binaries are never downloaded or built from Rust: `scripts/provision.sh` does that once and
//! prints the directory it filled. This module only finds that directory, following the same order
//! as the script:
//!
//! 1. `$KUBEBUILDER_ASSETS` (the envtest convention), when set;
//! 2. `$WEBSITE_CACHE_DIR/assets`, when `WEBSITE_CACHE_DIR` is set;
//! 3. `$XDG_CACHE_HOME/website-operator/assets`, when `XDG_CACHE_HOME` is set;
//! 4. `~/.cache/website-operator/assets`.

use std::env;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

/// The environment variable naming a directory of control-plane binaries (the envtest convention).
pub const KUBEBUILDER_ASSETS: &str = "KUBEBUILDER_ASSETS";

/// The environment variable overriding the project's cache directory (as `scripts/provision.sh` does).
pub const WEBSITE_CACHE_DIR: &str = "WEBSITE_CACHE_DIR";

/// Binaries that must be present in every assets directory.
const REQUIRED: [&str; 3] = ["etcd", "kube-apiserver", "kubectl"];

/// Paths of the control-plane binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assets {
    /// The directory the binaries were found in.
    pub dir: PathBuf,
    /// `etcd`.
    pub etcd: PathBuf,
    /// `kube-apiserver`.
    pub kube_apiserver: PathBuf,
    /// `kubectl`.
    pub kubectl: PathBuf,
    /// `kube-controller-manager`, when present (optional in a `KUBEBUILDER_ASSETS` directory,
    /// which setup-envtest fills without it).
    pub kube_controller_manager: Option<PathBuf>,
    /// `helm`, when present.
    pub helm: Option<PathBuf>,
}

impl Assets {
    /// Finds the binaries in the first directory of the search order described in the
    /// [module documentation](self).
    ///
    /// # Errors
    ///
    /// Fails, telling the user to run `scripts/provision.sh`, when the directory or one of
    /// `etcd`, `kube-apiserver`, `kubectl` is missing. Outside `KUBEBUILDER_ASSETS`,
    /// `kube-controller-manager` is required too, because the provisioning script always provides it.
    pub fn locate() -> Result<Self> {
        if let Some(dir) = env::var_os(KUBEBUILDER_ASSETS).filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            return Self::from_dir(&dir, false).with_context(|| {
                format!(
                    "{KUBEBUILDER_ASSETS}={} does not hold the control-plane binaries; \
                     unset it to use the project's cache, or run `scripts/provision.sh`",
                    dir.display()
                )
            });
        }
        let dir = default_assets_dir()?;
        Self::from_dir(&dir, true).with_context(|| {
            format!(
                "control-plane binaries not found in {}: run `scripts/provision.sh` first \
                 (or point {KUBEBUILDER_ASSETS} at a directory holding etcd, kube-apiserver and kubectl)",
                dir.display()
            )
        })
    }

    /// Reads the binaries from `dir`. `kube-controller-manager` is required only when
    /// `require_controller_manager` is true; `helm` is always optional.
    ///
    /// # Errors
    ///
    /// Fails when a required binary is missing or not executable.
    pub fn from_dir(dir: &Path, require_controller_manager: bool) -> Result<Self> {
        if !dir.is_dir() {
            bail!("{} is not a directory", dir.display());
        }
        // Absolute, so that the binaries still run after the working directory changes.
        let dir = &dir.canonicalize().with_context(|| format!("failed to resolve {}", dir.display()))?;
        let missing: Vec<&str> = REQUIRED
            .into_iter()
            .chain(require_controller_manager.then_some("kube-controller-manager"))
            .filter(|name| executable(&dir.join(name)).is_none())
            .collect();
        if !missing.is_empty() {
            bail!("{} lacks executable {}", dir.display(), missing.join(", "));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            etcd: dir.join("etcd"),
            kube_apiserver: dir.join("kube-apiserver"),
            kubectl: dir.join("kubectl"),
            kube_controller_manager: executable(&dir.join("kube-controller-manager")),
            helm: executable(&dir.join("helm")),
        })
    }
}

/// The assets directory that `scripts/provision.sh` fills when `KUBEBUILDER_ASSETS` is not set.
///
/// # Errors
///
/// Fails when neither `WEBSITE_CACHE_DIR`, `XDG_CACHE_HOME` nor `HOME` is set.
pub fn default_assets_dir() -> Result<PathBuf> {
    let non_empty = |name: &str| env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let cache = if let Some(dir) = non_empty(WEBSITE_CACHE_DIR) {
        dir
    } else if let Some(xdg) = non_empty("XDG_CACHE_HOME") {
        xdg.join("website-operator")
    } else {
        non_empty("HOME")
            .context("cannot find the cache directory: neither WEBSITE_CACHE_DIR nor HOME is set")?
            .join(".cache/website-operator")
    };
    Ok(cache.join("assets"))
}

/// `path` itself when it is an executable file (after following symbolic links).
fn executable(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).ok()?;
    (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then(|| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn fake_binary(dir: &Path, name: &str) {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").expect("write fake binary");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod fake binary");
    }

    #[test]
    fn from_dir_names_every_missing_binary() {
        let dir = tempfile::tempdir().expect("temp dir");
        fake_binary(dir.path(), "etcd");
        let err = Assets::from_dir(dir.path(), true).expect_err("binaries are missing");
        let msg = format!("{err:#}");
        assert!(msg.contains("kube-apiserver, kubectl, kube-controller-manager"), "{msg}");
    }

    #[test]
    fn from_dir_treats_controller_manager_and_helm_as_optional_when_asked() {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in REQUIRED {
            fake_binary(dir.path(), name);
        }
        let assets = Assets::from_dir(dir.path(), false).expect("required binaries exist");
        assert_eq!(assets.kube_controller_manager, None);
        assert_eq!(assets.helm, None);
        assert!(Assets::from_dir(dir.path(), true).is_err());
    }

    #[test]
    fn from_dir_ignores_non_executable_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in REQUIRED {
            fake_binary(dir.path(), name);
        }
        std::fs::write(dir.path().join("helm"), "").expect("write helm");
        let assets = Assets::from_dir(dir.path(), false).expect("required binaries exist");
        assert_eq!(assets.helm, None);
    }
}
