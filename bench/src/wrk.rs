//! Running [wrk](https://github.com/wg/wrk), the HTTP load generator, and reading its report.
//!
//! wrk sends a GET unless a Lua script says otherwise, so each body gets a script ([`Wrk::post_script`]) that
//! reads it from a file and makes every request a `POST` of it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

/// What one wrk run reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Requests per second over the run.
    pub requests_per_sec: f64,
    /// Requests completed.
    pub requests: u64,
    /// Responses whose status was not 2xx or 3xx.
    pub non_2xx: u64,
    /// Connect, read, write and timeout errors together.
    pub socket_errors: u64,
    /// Median latency, when wrk printed its distribution.
    pub p50: Option<Duration>,
    /// 99th-percentile latency, when wrk printed its distribution.
    pub p99: Option<Duration>,
}

/// A wrk binary and a directory for its scripts (deleted on drop).
pub struct Wrk {
    binary: PathBuf,
    dir: tempfile::TempDir,
}

impl Wrk {
    /// Uses `binary` (a path, or a name looked up in `PATH`).
    ///
    /// # Errors
    /// When it cannot be run, or the script directory cannot be made.
    pub fn new(binary: &Path) -> Result<Self> {
        // `wrk -v` prints its version and exits with status 1: only whether it ran matters.
        std::process::Command::new(binary)
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| {
                format!("failed to run {} (install the Debian package wrk; scripts/bench.sh does)", binary.display())
            })?;
        Ok(Self { binary: binary.to_owned(), dir: tempfile::tempdir()? })
    }

    /// Writes `body` and a script that POSTs it as `application/json`; returns the script's path.
    ///
    /// # Errors
    /// When the files cannot be written.
    pub fn post_script(&self, name: &str, body: &[u8]) -> Result<PathBuf> {
        let body_path = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&body_path, body)?;
        let script = format!(
            "local f = assert(io.open([[{}]], \"rb\"))\n\
             wrk.body = f:read(\"*a\")\n\
             f:close()\n\
             wrk.method = \"POST\"\n\
             wrk.headers[\"Content-Type\"] = \"application/json\"\n",
            body_path.display()
        );
        let path = self.dir.path().join(format!("{name}.lua"));
        std::fs::write(&path, script)?;
        Ok(path)
    }

    /// Runs wrk against `url` with `script`, `threads` threads and `connections` keep-alive connections for
    /// `duration`.
    ///
    /// # Errors
    /// When wrk fails or prints no request rate.
    pub async fn run(
        &self,
        url: &str,
        script: &Path,
        threads: usize,
        connections: usize,
        duration: Duration,
    ) -> Result<Report> {
        let output = tokio::process::Command::new(&self.binary)
            .arg(format!("--threads={threads}"))
            .arg(format!("--connections={connections}"))
            .arg(format!("--duration={}s", duration.as_secs().max(1)))
            .arg("--latency")
            .arg(format!("--script={}", script.display()))
            .arg(url)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("failed to run {}", self.binary.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!("wrk failed ({}): {}{}", output.status, stdout, String::from_utf8_lossy(&output.stderr));
        }
        parse(&stdout).with_context(|| format!("unexpected wrk output:\n{stdout}"))
    }
}

/// Reads wrk's text report.
///
/// # Errors
/// When it holds no `Requests/sec` line.
pub fn parse(text: &str) -> Result<Report> {
    let mut report = Report::default();
    let mut rate = None;
    for line in text.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("Requests/sec:") {
            rate = Some(value.trim().parse::<f64>()?);
        } else if let Some(value) = line.strip_prefix("Non-2xx or 3xx responses:") {
            report.non_2xx = value.trim().parse()?;
        } else if let Some(errors) = line.strip_prefix("Socket errors:") {
            report.socket_errors =
                errors.split(',').filter_map(|e| e.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok())).sum();
        } else if let Some(value) = line.strip_prefix("50%") {
            report.p50 = parse_duration(value.trim());
        } else if let Some(value) = line.strip_prefix("99%") {
            report.p99 = parse_duration(value.trim());
        } else if line.contains(" requests in ") {
            report.requests = line.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
        }
    }
    report.requests_per_sec = rate.context("no Requests/sec line")?;
    Ok(report)
}

/// A wrk duration such as `612.00us`, `1.23ms` or `2.01s`.
fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
    let value: f64 = number.parse().ok()?;
    let secs = match unit {
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "Running 2s test @ https://127.0.0.1:41000/validate
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.92ms  301.12us   6.01ms   80.00%
    Req/Sec     8.33k   210.10     8.61k    70.00%
  Latency Distribution
     50%  612.00us
     75%    1.98ms
     90%    2.20ms
     99%    2.01s
  16580 requests in 2.00s, 4.25MB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:   8287.35
Transfer/sec:      2.12MB
";

    #[test]
    fn reads_the_rate_errors_and_latency_of_a_report() {
        let report = parse(OUTPUT).expect("parses");
        assert!((report.requests_per_sec - 8287.35).abs() < 1e-9);
        assert_eq!(report.requests, 16580);
        assert_eq!(report.non_2xx, 3);
        assert_eq!(report.socket_errors, 3);
        assert_eq!(report.p50, Some(Duration::from_micros(612)));
        assert_eq!(report.p99, Some(Duration::from_millis(2010)));
    }

    #[test]
    fn a_report_without_a_rate_is_an_error() {
        assert!(parse("Running 2s test\n").is_err());
    }
}
