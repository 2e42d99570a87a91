//! Latency percentiles and `/proc` sampling of the server process.

use std::time::Duration;

/// Percentile `p` (0..=100) of sorted `samples`.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Prints the percentiles of sorted `latencies`.
pub(crate) fn print_latency(latencies: &[Duration]) {
    println!(
        "latency:             p50 {:?}  p90 {:?}  p99 {:?}  p99.9 {:?}  max {:?}",
        percentile(latencies, 50.0),
        percentile(latencies, 90.0),
        percentile(latencies, 99.0),
        percentile(latencies, 99.9),
        latencies.last().copied().unwrap_or_default()
    );
}

/// One reading of a process: resident memory and CPU time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcSample {
    /// Resident set size, bytes.
    pub(crate) rss: u64,
    /// Peak resident set size since the process started (`VmHWM`), bytes.
    pub(crate) peak_rss: u64,
    /// User + system CPU time, seconds.
    pub(crate) cpu: f64,
}

/// Reads `/proc/<pid>/status` (VmRSS) and `/proc/<pid>/stat` (utime + stime, at the usual
/// 100 ticks per second). `None` if the process is not there.
pub(crate) fn sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let (rss_kb, peak_kb) = (field("VmRSS:")?, field("VmHWM:")?);
    let cpu = cpu_seconds(&format!("/proc/{pid}/stat"))?;
    Some(ProcSample {
        rss: rss_kb * 1024,
        peak_rss: peak_kb * 1024,
        cpu,
    })
}

/// User + system CPU time, seconds, from a `/proc/…/stat` file (at the usual 100 ticks per
/// second).
pub(crate) fn cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// This process's own reading.
pub(crate) fn own() -> Option<ProcSample> {
    sample(std::process::id())
}

/// Bytes as MiB with one decimal.
pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
