//! The process' own figures for the standard `process_*` metrics, read from Linux's
//! `/proc` at each `/metrics` request. Elsewhere (or if `/proc` cannot be read) there are
//! none, and the metrics are left out.

use lb_sans_io::admin::ProcessStats;

/// Linux reports CPU times and start times in `USER_HZ` ticks, which is 100 on every
/// architecture Linux supports (it is fixed for user space, whatever the kernel's HZ).
const TICKS_PER_SECOND: f64 = 100.0;

/// This process' figures now, or `None` where `/proc` cannot tell.
pub fn stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count fields
    // after its closing parenthesis. There, field 3 (state) is index 0.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
    let cpu_ticks = field(14)? + field(15)?;
    let start_ticks = field(22)?;
    let boot_time: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let rss_kib: u64 = std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Some(ProcessStats {
        start_time_seconds: boot_time + start_ticks / TICKS_PER_SECOND,
        cpu_seconds: cpu_ticks / TICKS_PER_SECOND,
        open_fds,
        max_fds,
        resident_memory_bytes: rss_kib * 1024,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    #[allow(clippy::disallowed_methods)] // compares with the real clock
    fn this_process_has_figures_that_make_sense() {
        let s = super::stats().expect("/proc is readable on Linux");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // Started in the past, less than a day ago (a test process).
        assert!(s.start_time_seconds <= now + 1.0, "{s:?}");
        assert!(s.start_time_seconds > now - 86_400.0, "{s:?}");
        assert!(s.open_fds >= 3 && s.open_fds <= s.max_fds, "{s:?}");
        assert!(s.resident_memory_bytes > 1024 * 1024, "{s:?}");
        assert!(s.cpu_seconds >= 0.0, "{s:?}");
    }
}
