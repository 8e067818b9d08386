//! `ChildProcess`: log capture, readiness, stopping, and dying with the test binary.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use website_e2e::{ChildProcess, eventually, free_port};

/// Whether the process has disappeared or is a zombie (dead, waiting for a parent that may never
/// reap it, e.g. when the container's init does not).
fn process_is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // Fields: pid (comm) state ...; comm may contain spaces, so split after the last ')'.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

#[tokio::test]
async fn wait_for_port_fails_with_the_log_when_the_process_exits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new("sh");
    command.args(["-c", "echo 'listen tcp: bad flag --frobnicate' >&2; exit 3"]);
    let mut process = ChildProcess::spawn("broken", command, dir.path()).expect("sh starts");
    let port = free_port().expect("a free port");
    let err = process
        .wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(30))
        .await
        .expect_err("the process exits instead of listening");
    let msg = format!("{err:#}");
    assert!(msg.contains("broken exited"), "{msg}");
    assert!(msg.contains("bad flag --frobnicate"), "{msg}");
    assert!(process.log_path().starts_with(dir.path()));
}

#[tokio::test]
async fn wait_for_port_returns_once_the_process_listens() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let mut command = Command::new("python3");
    command.args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1"]);
    let mut process = ChildProcess::spawn("http", command, dir.path())?;
    process.wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(30)).await?;
    assert!(process.is_running());
    let pid = process.pid();
    let status = process.stop(Duration::from_secs(5))?;
    assert!(!status.success(), "stopped by a signal: {status}");
    assert!(process_is_dead(pid));
    Ok(())
}

#[tokio::test]
async fn a_process_ignoring_sigterm_is_killed_after_the_grace_period() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut command = Command::new("python3");
    command.args([
        "-c",
        "import signal, time\n\
         signal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
         print('ready', flush=True)\n\
         time.sleep(600)",
    ]);
    let mut process = ChildProcess::spawn("stubborn", command, dir.path())?;
    let log = process.log_path().to_path_buf();
    eventually(Duration::from_secs(10), async || {
        let text = std::fs::read_to_string(&log)?;
        // A line of its own: the log's first line quotes the command, which contains the word.
        if !text.lines().any(|line| line == "ready") {
            bail!("not ready yet: {text}");
        }
        Ok(())
    })
    .await?;
    let started = std::time::Instant::now();
    process.stop(Duration::from_millis(300))?;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(!process.is_running());
    Ok(())
}

/// The environment variable that makes [`helper_leaks_a_child_and_exits`] run.
const HELPER_ENV: &str = "WEBSITE_E2E_LEAK_HELPER";

/// Not a test of its own: run by [`children_die_with_the_test_binary`] in a separate process.
/// Starts a long-running child, prints its pid and exits without running any destructor.
#[test]
#[ignore = "helper run by children_die_with_the_test_binary"]
fn helper_leaks_a_child_and_exits() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new("sleep");
    command.arg("600");
    let child = ChildProcess::spawn("sleeper", command, dir.path()).expect("sleep starts");
    println!("LEAKED_PID={}", child.pid());
    std::mem::forget(child);
    std::process::exit(0);
}

#[tokio::test]
async fn children_die_with_the_test_binary() -> Result<()> {
    let mut helper = Command::new(std::env::current_exe()?)
        .args(["--exact", "helper_leaks_a_child_and_exits", "--ignored", "--nocapture"])
        .env(HELPER_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = helper.stdout.take().context("stdout is piped")?;
    let mut leaked = None;
    for line in BufReader::new(stdout).lines() {
        if let Some(pid) = line?.strip_prefix("LEAKED_PID=") {
            leaked = Some(pid.trim().parse::<u32>()?);
        }
    }
    let status = helper.wait()?;
    assert!(status.success(), "helper failed: {status}");
    let pid = leaked.context("the helper printed the pid of its child")?;
    eventually(Duration::from_secs(15), async || {
        if !process_is_dead(pid) {
            bail!("the leaked child {pid} still runs");
        }
        Ok(())
    })
    .await?;
    Ok(())
}
