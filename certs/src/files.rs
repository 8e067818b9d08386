//! Writing the certificate set to a directory.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// File name of the CA certificate, as in a Kubernetes TLS Secret with a CA.
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the CA private key (written only by [`write_files_with_ca_key`]).
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of the serving certificate, as in a `kubernetes.io/tls` Secret.
pub const TLS_CERT_FILE: &str = "tls.crt";
/// File name of the serving private key, as in a `kubernetes.io/tls` Secret.
pub const TLS_KEY_FILE: &str = "tls.key";

/// Mode of certificate files (before the process umask).
const CERT_MODE: u32 = 0o644;
/// Mode of private key files: readable by the owner only.
const KEY_MODE: u32 = 0o600;

/// The paths written by [`write_files`] or [`write_files_with_ca_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFiles {
    /// `<dir>/ca.crt`.
    pub ca_cert: PathBuf,
    /// `<dir>/ca.key`, if it was written.
    pub ca_key: Option<PathBuf>,
    /// `<dir>/tls.crt`.
    pub tls_cert: PathBuf,
    /// `<dir>/tls.key`.
    pub tls_key: PathBuf,
    /// `<dir>/ca.key`, if a CA key left by an earlier run was removed because it would no longer
    /// match the new `ca.crt` (only when overwriting without writing a new CA key).
    pub removed_ca_key: Option<PathBuf>,
}

impl WrittenFiles {
    /// All written paths, in the order `ca.crt`, `ca.key` (if written), `tls.crt`, `tls.key`.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        [
            Some(self.ca_cert.as_path()),
            self.ca_key.as_deref(),
            Some(self.tls_cert.as_path()),
            Some(self.tls_key.as_path()),
        ]
        .into_iter()
        .flatten()
    }
}

/// Writes `ca.crt`, `tls.crt` and `tls.key` into `dir`, creating `dir` (and its parents) if
/// missing.
///
/// Certificates get mode `0644` and the key `0600`, both set when the file is created (never
/// widened later) and further restricted by the process umask.
///
/// Unless `overwrite` is set, no existing file is touched: all paths are checked before anything
/// is written, each file is created exclusively (`O_EXCL`, so a symlink planted at a target path
/// is not followed either), and if any file cannot be written the files created by this call are
/// removed again, so a failed call never leaves a partial set behind.
///
/// With `overwrite`, every file is first written in full to a temporary file in `dir` and then
/// renamed over its target, so each file is replaced atomically and always ends up with the
/// modes above, even if the old file was more permissive.
///
/// The CA private key is not written; use [`write_files_with_ca_key`] to keep it for re-issuing
/// serving certificates later. A `ca.key` already in `dir` would not match the new `ca.crt`, so
/// it makes the call fail unless `overwrite` is set, in which case it is removed (and reported
/// in [`WrittenFiles::removed_ca_key`]).
///
/// # Errors
///
/// - [`Error::FileExists`] if a target file exists and `overwrite` is false (nothing is written);
/// - [`Error::StaleCaKey`] if `ca.key` exists and `overwrite` is false (nothing is written);
/// - [`Error::Io`] if the directory cannot be created or a file cannot be written or removed.
pub fn write_files(
    dir: &Path,
    ca_cert_pem: &str,
    tls_cert_pem: &str,
    tls_key_pem: &str,
    overwrite: bool,
) -> Result<WrittenFiles> {
    write_set(dir, ca_cert_pem, None, tls_cert_pem, tls_key_pem, overwrite)
}

/// Like [`write_files`], and also writes the CA private key to `ca.key` (mode `0600`), so that
/// the same CA can later be loaded with
/// [`CertificateAuthority::from_pem`](crate::CertificateAuthority::from_pem) to re-issue serving
/// certificates without changing the `caBundle`.
///
/// Only do this where the directory is as protected as a Kubernetes Secret would be: the CA key
/// can mint certificates trusted by the webhook's clients.
///
/// # Errors
///
/// As [`write_files`]; `ca.key` is one more path that must not exist unless `overwrite`.
pub fn write_files_with_ca_key(
    dir: &Path,
    ca_cert_pem: &str,
    ca_key_pem: &str,
    tls_cert_pem: &str,
    tls_key_pem: &str,
    overwrite: bool,
) -> Result<WrittenFiles> {
    write_set(dir, ca_cert_pem, Some(ca_key_pem), tls_cert_pem, tls_key_pem, overwrite)
}

/// Replaces the file at `path` with `contents` (mode `mode` before the umask), atomically: the contents are
/// written in full to a temporary file next to it and renamed over it, so a reader sees the old file or the new
/// one, never half of one. Does nothing when the file already holds `contents`. Returns whether it wrote.
///
/// # Errors
///
/// [`Error::Io`] if the directory cannot be created or the file cannot be written or renamed.
pub fn replace_file(path: &Path, contents: &str, mode: u32) -> Result<bool> {
    if fs::read(path).is_ok_and(|current| current == contents.as_bytes()) {
        return Ok(false);
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|source| Error::Io { action: "create directory", path: dir.to_owned(), source })?;
    replace_all(dir, &[Planned { path: path.to_owned(), contents, mode }])?;
    sync_dir(dir)?;
    Ok(true)
}

struct Planned<'a> {
    path: PathBuf,
    contents: &'a str,
    mode: u32,
}

fn write_set(
    dir: &Path,
    ca_cert_pem: &str,
    ca_key_pem: Option<&str>,
    tls_cert_pem: &str,
    tls_key_pem: &str,
    overwrite: bool,
) -> Result<WrittenFiles> {
    fs::create_dir_all(dir).map_err(|source| Error::Io { action: "create directory", path: dir.to_owned(), source })?;

    let mut written = WrittenFiles {
        ca_cert: dir.join(CA_CERT_FILE),
        ca_key: ca_key_pem.map(|_| dir.join(CA_KEY_FILE)),
        tls_cert: dir.join(TLS_CERT_FILE),
        tls_key: dir.join(TLS_KEY_FILE),
        removed_ca_key: None,
    };
    let mut plan = vec![Planned { path: written.ca_cert.clone(), contents: ca_cert_pem, mode: CERT_MODE }];
    if let (Some(path), Some(contents)) = (&written.ca_key, ca_key_pem) {
        plan.push(Planned { path: path.clone(), contents, mode: KEY_MODE });
    }
    plan.push(Planned { path: written.tls_cert.clone(), contents: tls_cert_pem, mode: CERT_MODE });
    plan.push(Planned { path: written.tls_key.clone(), contents: tls_key_pem, mode: KEY_MODE });

    // Without a new CA key, an old one would sit next to a ca.crt it does not belong to.
    let stale_ca_key = ca_key_pem.is_none().then(|| dir.join(CA_KEY_FILE));
    if overwrite {
        replace_all(dir, &plan)?;
        if let Some(path) = stale_ca_key {
            match fs::remove_file(&path) {
                Ok(()) => written.removed_ca_key = Some(path),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(Error::Io { action: "remove stale CA key", path, source }),
            }
        }
    } else {
        create_all(&plan, stale_ca_key.as_deref())?;
    }
    sync_dir(dir)?;
    Ok(written)
}

/// Whether anything (a dangling symlink included) exists at `path`.
fn exists(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(Error::Io { action: "inspect", path: path.to_owned(), source }),
    }
}

/// Creates every planned file exclusively, after checking that none of them nor `stale_ca_key`
/// exists; on any failure removes the files it created.
fn create_all(plan: &[Planned<'_>], stale_ca_key: Option<&Path>) -> Result<()> {
    // Check every path first, so that the common "already exists" case writes nothing at all.
    for file in plan {
        if exists(&file.path)? {
            return Err(Error::FileExists { path: file.path.clone() });
        }
    }
    if let Some(path) = stale_ca_key
        && exists(path)?
    {
        return Err(Error::StaleCaKey { path: path.to_owned() });
    }
    // `create_new` still guards against a file appearing after the check.
    let mut created: Vec<&Path> = Vec::with_capacity(plan.len());
    for file in plan {
        if let Err(err) = write_new_file(&file.path, file.contents, file.mode) {
            remove_all(created);
            return Err(err);
        }
        created.push(&file.path);
    }
    Ok(())
}

/// Writes every planned file to a temporary sibling, then renames each over its target.
fn replace_all(dir: &Path, plan: &[Planned<'_>]) -> Result<()> {
    let mut staged: Vec<PathBuf> = Vec::with_capacity(plan.len());
    for file in plan {
        let temp = temp_path(dir, &file.path);
        // A leftover from a crashed run of the same process id; we own that name.
        if let Err(source) = fs::remove_file(&temp)
            && source.kind() != io::ErrorKind::NotFound
        {
            remove_all(staged.iter().map(PathBuf::as_path));
            return Err(Error::Io { action: "remove stale temporary file", path: temp, source });
        }
        if let Err(err) = write_new_file(&temp, file.contents, file.mode) {
            remove_all(staged.iter().map(PathBuf::as_path));
            return Err(err);
        }
        staged.push(temp);
    }
    for (index, (temp, file)) in staged.iter().zip(plan).enumerate() {
        if let Err(source) = fs::rename(temp, &file.path) {
            remove_all(staged[index..].iter().map(PathBuf::as_path));
            return Err(Error::Io { action: "replace", path: file.path.clone(), source });
        }
    }
    Ok(())
}

/// Creates `path` (failing if anything exists there, symlinks included) with `mode`, writes
/// `contents` and flushes them to disk. A partially written file is removed.
fn write_new_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            Error::FileExists { path: path.to_owned() }
        } else {
            Error::Io { action: "create", path: path.to_owned(), source }
        }
    })?;
    let written = file.write_all(contents.as_bytes()).and_then(|()| file.sync_all());
    if let Err(source) = written {
        drop(file);
        remove_all([path]);
        return Err(Error::Io { action: "write", path: path.to_owned(), source });
    }
    Ok(())
}

fn temp_path(dir: &Path, target: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(target.file_name().unwrap_or_default());
    name.push(format!(".{}.tmp", std::process::id()));
    dir.join(name)
}

/// Best-effort cleanup after a failure; the original error is what gets reported.
fn remove_all<'a>(paths: impl IntoIterator<Item = &'a Path>) {
    for path in paths {
        let _ = fs::remove_file(path);
    }
}

/// Makes the new directory entries durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|dir| dir.sync_all()).map_err(|source| Error::Io {
        action: "sync directory",
        path: dir.to_owned(),
        source,
    })
}
