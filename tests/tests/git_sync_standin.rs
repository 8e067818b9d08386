//! The test-only git-sync stand-in (`tests/images/git-sync-standin`) keeps git-sync v4's contract where the
//! controller relies on it: the on-disk layout, the atomic relative link, `--max-failures`, and a refusal of any
//! flag it does not implement. It runs here under busybox's shell, as in its image.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context as _, Result, ensure};
use website_e2e::operator::workspace_root;

fn busybox() -> Result<PathBuf> {
    let path = PathBuf::from("/bin/busybox");
    ensure!(path.is_file(), "busybox is not installed: run `scripts/provision.sh --with-node` (busybox-static)");
    Ok(path)
}

fn standin(args: &[&str]) -> Result<Output> {
    let script = workspace_root().join("tests/images/git-sync-standin");
    Command::new(busybox()?)
        .arg("sh")
        .arg(script)
        .args(args)
        .env("HOME", std::env::temp_dir())
        .output()
        .context("failed to run the stand-in")
}

fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("git").current_dir(dir).args(args).output()?;
    ensure!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// A repository with one commit holding `index.html`; its URL.
fn repository(dir: &Path, contents: &str) -> Result<String> {
    let work = dir.join("work");
    std::fs::create_dir_all(&work)?;
    git(&work, &["init", "-q", "-b", "main"])?;
    std::fs::write(work.join("index.html"), contents)?;
    git(&work, &["add", "."])?;
    git(&work, &["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "one"])?;
    Ok(format!("file://{}", work.display()))
}

#[test]
fn a_sync_publishes_a_worktree_through_a_relative_link_beside_the_repository() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let repo = repository(dir.path(), "<h1>one</h1>")?;
    let root = dir.path().join("root");
    let root_arg = format!("--root={}", root.display());
    let out = standin(&[
        &format!("--repo={repo}"),
        "--ref=main",
        &root_arg,
        "--link=html",
        "--period=1s",
        "--depth=1",
        "--submodules=off",
        "--max-failures=-1",
        "--one-time",
    ])?;
    ensure!(out.status.success(), "the stand-in failed: {}", String::from_utf8_lossy(&out.stderr));
    ensure!(root.join(".git").is_dir(), "the repository is not at <root>/.git");
    let link = std::fs::read_link(root.join("html"))?;
    let link = link.to_string_lossy();
    let hash = link.strip_prefix(".worktrees/").context("the link is not relative to .worktrees")?;
    ensure!(hash.len() == 40 && hash.chars().all(|c| c.is_ascii_hexdigit()), "the link names no commit: {link}");
    ensure!(std::fs::read_to_string(root.join("html/index.html"))? == "<h1>one</h1>", "the checkout is not served");
    let leftovers: Vec<_> = std::fs::read_dir(&root)?.flatten().map(|e| e.file_name()).collect();
    ensure!(leftovers.len() == 3, "only .git, .worktrees and the link are in the root: {leftovers:?}");
    Ok(())
}

#[test]
fn a_failing_repository_ends_the_stand_in_after_max_failures_and_never_with_minus_one() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("root");
    let root_arg = format!("--root={}", root.display());
    let missing = format!("--repo=file://{}/missing", dir.path().display());
    let out = standin(&[&missing, &root_arg, "--period=10ms", "--max-failures=2"])?;
    let log = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(1), "expected exit 1 after 3 failures, got {}: {log}", out.status);
    ensure!(log.contains("(3 in a row)") && !log.contains("(4 in a row)"), "3 attempts were made: {log}");
    // -1 retries forever: still running after many failures.
    let mut child = Command::new(busybox()?)
        .arg("sh")
        .arg(workspace_root().join("tests/images/git-sync-standin"))
        .args([missing.as_str(), root_arg.as_str(), "--period=10ms", "--max-failures=-1"])
        .stderr(std::process::Stdio::null())
        .spawn()?;
    std::thread::sleep(std::time::Duration::from_secs(2));
    let running = child.try_wait()?.is_none();
    child.kill()?;
    child.wait()?;
    ensure!(running, "the stand-in gave up with --max-failures=-1");
    Ok(())
}

#[test]
fn a_flag_the_stand_in_does_not_implement_is_refused_not_ignored() -> Result<()> {
    for flag in ["--password-file=/etc/git-secret/password", "--submodules=recursive", "--repo", "--bogus=1"] {
        let out = standin(&["--repo=git://example.invalid/x.git", "--root=/nonexistent", flag])?;
        let log = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.code() == Some(2), "{flag}: expected exit 2, got {}: {log}", out.status);
        ensure!(log.contains("not implemented") || log.contains("required"), "{flag}: the refusal says why: {log}");
    }
    Ok(())
}
