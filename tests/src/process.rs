//! Child processes that cannot outlive the test binary.
//!
//! Every process started here (the control plane's own, and the operator's binaries started through
//! [`ChildProcess::spawn`]) writes its stdout and stderr to a log file and is stopped when its
//! [`ChildProcess`] is dropped: SIGTERM, then SIGKILL after a grace period, then reaped, so that its
//! pid is gone once the drop returns. Drop also runs while a test panics.
//!
//! Drop does not run when the test binary is killed or calls `process::exit`, so a second line of
//! defence covers that case: the first spawn starts a tiny watchdog (`sh`) whose standard input is a
//! pipe held open by this process for its whole life. Every child joins the watchdog's process group.
//! When this process ends, however it ends, the kernel closes the pipe, the watchdog's `read`
//! returns, and it kills the whole group.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long [`ChildProcess`]'s drop waits after SIGTERM before sending SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// How often readiness checks are repeated.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How many log lines error messages quote.
const LOG_TAIL_LINES: usize = 40;

/// A running child process whose output goes to a log file, stopped and reaped on drop.
pub struct ChildProcess {
    name: String,
    pid: u32,
    child: Child,
    log_path: PathBuf,
    exit_status: Option<ExitStatus>,
}

impl fmt::Debug for ChildProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildProcess")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("log_path", &self.log_path)
            .field("exit_status", &self.exit_status)
            .finish()
    }
}

impl ChildProcess {
    /// Starts `command`, appending its stdout and stderr to `<log_dir>/<name>.log`.
    ///
    /// Standard input is closed. The process joins the watchdog's process group (see the
    /// [module documentation](self)), so it dies with the test binary even if this value is leaked.
    ///
    /// # Errors
    ///
    /// Fails when the log file cannot be opened or the program cannot be started.
    pub fn spawn(name: &str, mut command: Command, log_dir: &Path) -> Result<Self> {
        let log_path = log_dir.join(format!("{name}.log"));
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("failed to open the log file {}", log_path.display()))?;
        writeln!(log, "=== starting {}", display_command(&command))
            .with_context(|| format!("failed to write to {}", log_path.display()))?;
        let stderr =
            log.try_clone().with_context(|| format!("failed to duplicate the handle of {}", log_path.display()))?;
        command.stdin(Stdio::null()).stdout(Stdio::from(log)).stderr(Stdio::from(stderr));
        if let Some(group) = watchdog_group() {
            command.process_group(group);
        }
        let child =
            command.spawn().with_context(|| format!("failed to start {name} ({})", display_command(&command)))?;
        Ok(Self { name: name.to_owned(), pid: child.id(), child, log_path, exit_status: None })
    }

    /// The name given to [`spawn`](Self::spawn).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The operating-system process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The file receiving the process's stdout and stderr.
    #[must_use]
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the log (fewer if the log is shorter or unreadable).
    #[must_use]
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    /// The exit status if the process has exited (and reaps it), or `None` while it runs.
    ///
    /// # Errors
    ///
    /// Fails when the operating system cannot report the child's state.
    pub fn try_exit_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.exit_status.is_none() {
            self.exit_status =
                self.child.try_wait().with_context(|| format!("failed to query the state of {}", self.name))?;
        }
        Ok(self.exit_status)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_exit_status(), Ok(None))
    }

    /// Polls `check` until it returns `true`, failing early when the process exits and after
    /// `timeout`. Errors quote the end of the process's log. `what` names the awaited condition in
    /// error messages.
    ///
    /// A `check` that does not finish is abandoned at the deadline.
    ///
    /// # Errors
    ///
    /// Fails when the process exits or the condition does not hold within `timeout`.
    pub async fn wait_until<F, Fut>(&mut self, what: &str, timeout: Duration, mut check: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status()? {
                bail!(
                    "{} exited ({status}) before {what}; last lines of {}:\n{}",
                    self.name,
                    self.log_path.display(),
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            if let Ok(true) = tokio::time::timeout_at(deadline, check()).await {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{} did not reach {what} within {timeout:?}; last lines of {}:\n{}",
                    self.name,
                    self.log_path.display(),
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits until something accepts TCP connections on `addr` (typically the port the process was
    /// told to listen on). A plain TCP connect: no HTTP or TLS handshake.
    ///
    /// # Errors
    ///
    /// Fails when the process exits first or nothing listens within `timeout`.
    pub async fn wait_for_port(&mut self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        self.wait_until(&format!("listening on {addr}"), timeout, async || {
            tokio::net::TcpStream::connect(addr).await.is_ok()
        })
        .await
    }

    /// Stops the process: SIGTERM, then SIGKILL if it is still running after `grace`; then reaps it.
    /// Returns at once with the earlier status if it had already exited.
    ///
    /// This blocks the calling thread for up to `grace`.
    ///
    /// # Errors
    ///
    /// Fails when the process can be neither signalled nor reaped.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus> {
        stop_all(&mut [&mut *self], grace);
        self.exit_status
            .ok_or_else(|| anyhow!("failed to stop {} (pid {}): it could not be reaped", self.name, self.pid))
    }
}

impl ChildProcess {
    /// Kills the process with SIGKILL, as a crash or an evicted node would, and reaps it.
    ///
    /// # Errors
    /// When it can be neither killed nor reaped.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        if self.is_running() {
            // An error means it exited in between, which the wait handles.
            let _ = self.child.kill();
            self.exit_status = Some(self.child.wait()?);
        }
        self.exit_status.ok_or_else(|| anyhow!("{} (pid {}) could not be reaped", self.name, self.pid))
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        stop_all(&mut [self], DEFAULT_GRACE);
    }
}

/// Stops several processes at once: SIGTERM to each running one, then waits for all of them
/// together for up to `grace`, then SIGKILLs and reaps those still running.
///
/// Blocks the calling thread for up to `grace` (plus the time SIGKILL takes to land).
pub fn stop_all(processes: &mut [&mut ChildProcess], grace: Duration) {
    for process in processes.iter_mut() {
        if process.is_running() {
            let pid = i32::try_from(process.pid).expect("process ids of running children fit in an i32");
            // ESRCH (already gone) is fine: the wait below reaps it.
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    while processes.iter_mut().any(|p| p.is_running()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for process in processes.iter_mut() {
        if process.is_running() {
            eprintln!(
                "website-e2e: {} (pid {}) still runs {grace:?} after SIGTERM; sending SIGKILL",
                process.name, process.pid
            );
            // SIGKILL; an error means it exited in between, which the wait handles.
            let _ = process.child.kill();
            match process.child.wait() {
                Ok(status) => process.exit_status = Some(status),
                Err(err) => eprintln!("website-e2e: failed to reap {} (pid {}): {err}", process.name, process.pid),
            }
        }
    }
}

/// The last `lines` lines of the file at `path`, reading at most its last 64 KiB.
#[must_use]
pub fn log_tail(path: &Path, lines: usize) -> String {
    const MAX_BYTES: u64 = 64 * 1024;
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("(log {} unreadable: {err})", path.display()),
    }
}

/// `program arg1 arg2 ...`, for messages.
pub(crate) fn display_command(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The watchdog shared by every child of this process; see the [module documentation](self).
static WATCHDOG: Mutex<Option<Child>> = Mutex::new(None);

/// What the watchdog runs: wait for end of input (this process's death), then kill its whole
/// process group, politely first. It ignores SIGTERM itself so that it survives its own first kill.
const WATCHDOG_SCRIPT: &str = "trap '' TERM INT HUP; read -r _; kill -TERM 0; sleep 2; kill -KILL 0";

/// The process group of the (running) watchdog, starting one if needed; `None`, with a warning
/// on stderr, if it cannot be started (children then rely on drop alone).
pub(crate) fn watchdog_group() -> Option<i32> {
    let mut slot = WATCHDOG.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(watchdog) = slot.as_mut()
        && matches!(watchdog.try_wait(), Ok(None))
    {
        return i32::try_from(watchdog.id()).ok();
    }
    let spawned = Command::new("sh")
        .args(["-c", WATCHDOG_SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    match spawned {
        Ok(watchdog) => {
            let group = i32::try_from(watchdog.id()).ok();
            *slot = Some(watchdog);
            group
        }
        Err(err) => {
            eprintln!(
                "website-e2e: warning: cannot start the watchdog (sh): {err}; \
                 child processes will be stopped on drop only"
            );
            None
        }
    }
}
