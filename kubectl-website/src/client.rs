//! The connection to the cluster, chosen like kubectl's (`--kubeconfig`, `--context`, `-n`), with the API server's
//! `Warning` headers kept for the user: kube's `Api` drops them, so a layer on the client reads them off every
//! response.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::{Failure, Result};

/// Where the cluster is: kubectl's flags.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Target {
    /// Path of the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then a pod's service account).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,

    /// The namespace (default: the context's namespace, else `default`).
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
}

/// A client, its namespace, and the warnings the API server has sent so far.
#[derive(Clone)]
pub struct Connection {
    /// The client.
    pub client: kube::Client,
    /// `-n`, else the context's namespace.
    pub namespace: String,
    warnings: Arc<Mutex<Vec<String>>>,
}

impl Connection {
    /// Connects as kubectl would with the same flags. Nothing is sent until the first request.
    ///
    /// # Errors
    /// [`Failure::Unreachable`] when no kubeconfig is found or it does not describe a usable cluster.
    pub async fn open(target: &Target) -> Result<Self> {
        let options = KubeConfigOptions { context: target.context.clone(), ..KubeConfigOptions::default() };
        let unusable = |e: &dyn std::fmt::Display| Failure::Unreachable(format!("cannot use the kubeconfig: {e}"));
        // KUBECONFIG may list several files, as for kubectl; set but empty, it counts as unset.
        let kubeconfig = target
            .kubeconfig
            .clone()
            .or_else(|| std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()).map(PathBuf::from));
        let config = match &kubeconfig {
            Some(path) => {
                let mut merged: Option<Kubeconfig> = None;
                for file in std::env::split_paths(path).filter(|p| !p.as_os_str().is_empty()) {
                    let read = Kubeconfig::read_from(&file)
                        .map_err(|e| Failure::Unreachable(format!("cannot read kubeconfig {}: {e}", file.display())))?;
                    merged = Some(match merged {
                        Some(earlier) => earlier.merge(read).map_err(|e| unusable(&e))?,
                        None => read,
                    });
                }
                let merged = merged.ok_or_else(|| Failure::Unreachable("--kubeconfig names no file".into()))?;
                kube::Config::from_custom_kubeconfig(merged, &options).await.map_err(|e| unusable(&e))?
            }
            // No kubeconfig: a pod's service account, as kubectl uses it.
            None => match kube::Config::from_kubeconfig(&options).await {
                Ok(config) => config,
                Err(error) if target.context.is_none() => kube::Config::incluster().map_err(|in_cluster| {
                    Failure::Unreachable(format!(
                        "cannot find the cluster: no usable kubeconfig ({error}), and not in a pod ({in_cluster}); \
                         pass --kubeconfig or set KUBECONFIG"
                    ))
                })?,
                Err(error) => return Err(unusable(&error)),
            },
        };
        let namespace = target.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
        let warnings = Arc::new(Mutex::new(Vec::new()));
        let seen = warnings.clone();
        let keep_warnings = tower::util::MapResponseLayer::new(move |response: http::Response<_>| {
            let texts = response.headers().get_all(http::header::WARNING).iter().filter_map(|v| v.to_str().ok());
            let mut seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            seen.extend(texts.map(warning_text));
            response
        });
        let client =
            kube::client::ClientBuilder::try_from(config).map_err(|e| unusable(&e))?.with_layer(&keep_warnings).build();
        Ok(Self { client, namespace, warnings })
    }

    /// The warnings received since the last call.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// The text of a `Warning` header: `299 - "text"` (RFC 7234), unquoted.
pub fn warning_text(header: &str) -> String {
    let Some(quoted) = header.strip_prefix("299 - ") else { return header.to_owned() };
    let quoted = quoted.trim();
    match quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
        Some(text) => text.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => quoted.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_headers_are_unquoted() {
        assert_eq!(
            warning_text(r#"299 - "spec.gitRepo: http://e.com/r.git is fetched without \"encryption\"""#),
            r#"spec.gitRepo: http://e.com/r.git is fetched without "encryption""#
        );
        assert_eq!(warning_text("199 agent \"other\""), "199 agent \"other\"");
    }
}
