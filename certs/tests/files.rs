//! Writing the certificate set: modes, refusal to overwrite, all-or-nothing behaviour.

use std::fs;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::Path;

use website_certs::{Error, WrittenFiles, write_files, write_files_with_ca_key};

const CA: &str = "ca certificate\n";
const CERT: &str = "tls certificate\n";
const KEY: &str = "tls key\n";
const CA_KEY: &str = "ca key\n";

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("file exists").permissions().mode() & 0o777
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).expect("readable")
}

/// The names in `dir`, sorted, to catch stray temporary files.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("dir exists")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn writes_the_three_files_with_key_mode_0600_into_a_new_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("nested/out");
    let written = write_files(&dir, CA, CERT, KEY, false).expect("written");

    assert_eq!(
        written,
        WrittenFiles {
            ca_cert: dir.join("ca.crt"),
            ca_key: None,
            tls_cert: dir.join("tls.crt"),
            tls_key: dir.join("tls.key"),
            removed_ca_key: None,
        }
    );
    assert_eq!(written.paths().collect::<Vec<_>>(), [dir.join("ca.crt"), dir.join("tls.crt"), dir.join("tls.key")]);
    assert_eq!(entries(&dir), ["ca.crt", "tls.crt", "tls.key"]);
    assert_eq!(read(&written.ca_cert), CA);
    assert_eq!(read(&written.tls_cert), CERT);
    assert_eq!(read(&written.tls_key), KEY);
    assert_eq!(mode(&written.tls_key), 0o600);
    // Certificates are public; never more than 0644 (the umask may remove more).
    assert_eq!(mode(&written.ca_cert) & !0o644, 0);
    assert_eq!(mode(&written.tls_cert) & !0o644, 0);
}

#[test]
fn writes_the_ca_key_with_mode_0600_when_asked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let written = write_files_with_ca_key(tmp.path(), CA, CA_KEY, CERT, KEY, false).expect("written");
    let ca_key = written.ca_key.clone().expect("ca.key written");
    assert_eq!(ca_key, tmp.path().join("ca.key"));
    assert_eq!(read(&ca_key), CA_KEY);
    assert_eq!(mode(&ca_key), 0o600);
    assert_eq!(mode(&written.tls_key), 0o600);
    assert_eq!(written.paths().count(), 4);
    assert_eq!(entries(tmp.path()), ["ca.crt", "ca.key", "tls.crt", "tls.key"]);
}

#[test]
fn refuses_to_overwrite_without_force_and_leaves_existing_files_untouched() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    write_files(dir, CA, CERT, KEY, false).expect("first write");

    let err = write_files(dir, "new ca\n", "new cert\n", "new key\n", false).expect_err("second write must fail");
    assert!(matches!(&err, Error::FileExists { path } if path == &dir.join("ca.crt")), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("ca.crt"), "{message}");
    assert!(message.contains("already exists"), "{message}");
    assert!(message.contains("--force"), "{message}");

    assert_eq!(read(&dir.join("ca.crt")), CA);
    assert_eq!(read(&dir.join("tls.crt")), CERT);
    assert_eq!(read(&dir.join("tls.key")), KEY);
    assert_eq!(entries(dir), ["ca.crt", "tls.crt", "tls.key"]);
}

#[test]
fn checks_every_path_before_writing_any() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    // Only the last file of the set exists.
    fs::write(dir.join("tls.key"), "precious\n").expect("seed");

    let err = write_files(dir, CA, CERT, KEY, false).expect_err("tls.key exists");
    assert!(matches!(&err, Error::FileExists { path } if path == &dir.join("tls.key")), "{err:?}");
    // Nothing else was created, and the existing file is unchanged.
    assert_eq!(entries(dir), ["tls.key"]);
    assert_eq!(read(&dir.join("tls.key")), "precious\n");

    // The optional ca.key counts as part of the set too.
    let tmp = tempfile::tempdir().expect("tempdir");
    fs::write(tmp.path().join("ca.key"), "old ca key\n").expect("seed");
    let err = write_files_with_ca_key(tmp.path(), CA, CA_KEY, CERT, KEY, false).expect_err("ca.key exists");
    assert!(matches!(err, Error::FileExists { .. }), "{err:?}");
    assert_eq!(entries(tmp.path()), ["ca.key"]);
}

#[test]
fn a_symlink_at_a_target_path_counts_as_existing_and_is_not_followed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("out");
    fs::create_dir(&dir).expect("mkdir");
    let elsewhere = tmp.path().join("elsewhere");
    symlink(&elsewhere, dir.join("tls.key")).expect("symlink");

    let err = write_files(&dir, CA, CERT, KEY, false).expect_err("dangling symlink exists");
    assert!(matches!(err, Error::FileExists { .. }), "{err:?}");
    assert!(!elsewhere.exists(), "the symlink target must not be created");
}

#[test]
fn force_replaces_every_file_and_tightens_the_key_mode() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    fs::write(dir.join("ca.crt"), "old ca\n").expect("seed");
    fs::write(dir.join("tls.key"), "old key\n").expect("seed");
    fs::set_permissions(dir.join("tls.key"), fs::Permissions::from_mode(0o644)).expect("chmod");

    let written = write_files(dir, CA, CERT, KEY, true).expect("forced write");
    assert_eq!(read(&written.ca_cert), CA);
    assert_eq!(read(&written.tls_cert), CERT);
    assert_eq!(read(&written.tls_key), KEY);
    assert_eq!(mode(&written.tls_key), 0o600);
    // No temporary files are left behind.
    assert_eq!(entries(dir), ["ca.crt", "tls.crt", "tls.key"]);
}

#[test]
fn io_errors_name_the_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("not-a-dir");
    fs::write(&file, "").expect("seed");
    let err = write_files(&file.join("sub"), CA, CERT, KEY, false).expect_err("parent is a file");
    assert!(matches!(&err, Error::Io { action: "create directory", .. }), "{err:?}");
    assert!(err.to_string().starts_with("failed to create directory "), "{err}");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

#[test]
fn a_stale_ca_key_blocks_writing_without_force_and_is_removed_with_force() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    write_files_with_ca_key(dir, CA, CA_KEY, CERT, KEY, false).expect("first set with ca.key");
    fs::remove_file(dir.join("ca.crt")).expect("rm");
    fs::remove_file(dir.join("tls.crt")).expect("rm");
    fs::remove_file(dir.join("tls.key")).expect("rm");

    // Only ca.key is left: a new set without a CA key would not match it.
    let err = write_files(dir, CA, CERT, KEY, false).expect_err("stale ca.key");
    assert!(matches!(&err, Error::StaleCaKey { path } if path == &dir.join("ca.key")), "{err:?}");
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(entries(dir), ["ca.key"]);

    let written = write_files(dir, CA, CERT, KEY, true).expect("forced");
    assert_eq!(written.removed_ca_key, Some(dir.join("ca.key")));
    assert_eq!(entries(dir), ["ca.crt", "tls.crt", "tls.key"]);

    // Writing a new CA key with force replaces it instead.
    let written = write_files_with_ca_key(dir, CA, "new ca key\n", CERT, KEY, true).expect("forced");
    assert_eq!(written.removed_ca_key, None);
    assert_eq!(read(&dir.join("ca.key")), "new ca key\n");
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
}
