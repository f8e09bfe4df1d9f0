//! Where a bench's CPU went, from /proc: the whole process and RocksDB's own threads, a
//! server's process tree (Dovecot's), and the machine's idle and steal shares.

/// CPU seconds (user + system) used so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSplit {
    /// The whole process, every thread.
    pub process: f64,
    /// RocksDB's flush threads (`rocksdb:high`).
    pub flush: f64,
    /// RocksDB's compaction threads (`rocksdb:low`).
    pub compaction: f64,
}

impl std::ops::Sub for CpuSplit {
    type Output = CpuSplit;
    fn sub(self, o: CpuSplit) -> CpuSplit {
        CpuSplit {
            process: self.process - o.process,
            flush: self.flush - o.flush,
            compaction: self.compaction - o.compaction,
        }
    }
}

/// The fields of a `/proc/.../stat` line after the parenthesised name (which may hold
/// spaces and parentheses itself): the process state is the first.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect()
}

/// Sums `count` clock-tick fields from the 12th after the name on (utime, stime, cutime,
/// cstime), in seconds (Linux counts 100 ticks a second).
fn stat_ticks(stat: &str, count: usize) -> f64 {
    stat_fields(stat)
        .iter()
        .skip(11)
        .take(count)
        .filter_map(|x| x.parse::<f64>().ok())
        .sum::<f64>()
        / 100.0
}

/// utime + stime of a `/proc/.../stat` line, in seconds.
fn stat_cpu(stat: &str) -> f64 {
    stat_ticks(stat, 2)
}

/// The CPU seconds a server has used so far: its master process, the children it has
/// reaped, and the children still running (Dovecot forks one `imap` process per connection
/// and reaps it when the connection closes). Grandchildren that are still running are not
/// counted. 0 when the process is gone or off Linux.
pub fn process_tree_cpu(root: u32) -> f64 {
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    let mut total = stat_ticks(&read(format!("/proc/{root}/stat").into()), 4);
    let root = root.to_string();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let stat = read(entry.path().join("stat"));
        // The parent's pid is the second field after the name.
        if stat_fields(&stat).get(1) == Some(&root.as_str()) {
            total += stat_ticks(&stat, 4);
        }
    }
    total
}

/// The machine's CPU time so far, from the first line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemCpu {
    /// Idle and waiting for I/O.
    pub idle: u64,
    /// Taken by the hypervisor for other guests.
    pub steal: u64,
    /// Everything, the two above included.
    pub total: u64,
}

impl SystemCpu {
    pub fn now() -> SystemCpu {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        SystemCpu::parse(stat.lines().next().unwrap_or(""))
    }

    fn parse(line: &str) -> SystemCpu {
        // cpu user nice system idle iowait irq softirq steal guest guest_nice
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        SystemCpu {
            idle: at(3) + at(4),
            steal: at(7),
            // guest time is already counted in user time.
            total: v.iter().take(8).sum(),
        }
    }

    /// Shares of the time since `earlier`, in percent: (idle, steal).
    pub fn shares_since(&self, earlier: &SystemCpu) -> (f64, f64) {
        let total = self.total.saturating_sub(earlier.total).max(1) as f64;
        (
            100.0 * self.idle.saturating_sub(earlier.idle) as f64 / total,
            100.0 * self.steal.saturating_sub(earlier.steal) as f64 / total,
        )
    }
}

/// The CPU used so far by this process and by its RocksDB threads (0 off Linux).
pub fn cpu_split() -> CpuSplit {
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    let mut split = CpuSplit {
        process: stat_cpu(&read("/proc/self/stat".as_ref())),
        ..CpuSplit::default()
    };
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let cpu = stat_cpu(&read(&task.path().join("stat")));
        match read(&task.path().join("comm")).trim() {
            "rocksdb:high" => split.flush += cpu,
            "rocksdb:low" => split.compaction += cpu,
            _ => {}
        }
    }
    split
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_past_an_odd_thread_name() {
        let line = "4242 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 250 70 0 0 20 0 1 0 5 6 7";
        assert!((stat_cpu(line) - 3.2).abs() < 1e-9);
        assert_eq!(stat_cpu("garbage"), 0.0);
        let now = cpu_split();
        assert!(now.process >= now.flush + now.compaction);
    }

    #[test]
    fn a_server_tree_counts_its_reaped_children() {
        let line = "7 (imap) S 1 2 3 4 5 6 7 8 9 10 250 70 30 10 20";
        assert!((stat_ticks(line, 4) - 3.6).abs() < 1e-9);
        assert_eq!(stat_fields(line).get(1), Some(&"1"));
        // A child that burns CPU and is reaped shows up in this process's tree.
        let me = std::process::id();
        let before = process_tree_cpu(me);
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        let after = process_tree_cpu(me);
        assert!(after - before >= 0.05, "{before} -> {after}");
        assert_eq!(process_tree_cpu(u32::MAX), 0.0);
    }

    #[test]
    fn system_shares_come_from_the_cpu_line() {
        let a = SystemCpu::parse("cpu  100 0 50 800 50 0 0 0 0 0");
        let b = SystemCpu::parse("cpu  150 0 100 850 50 0 0 50 7 0");
        assert_eq!((a.idle, a.steal, a.total), (850, 0, 1000));
        let (idle, steal) = b.shares_since(&a);
        assert!((idle - 25.0).abs() < 1e-9 && (steal - 25.0).abs() < 1e-9);
        assert_eq!(SystemCpu::parse("").total, 0);
    }
}
