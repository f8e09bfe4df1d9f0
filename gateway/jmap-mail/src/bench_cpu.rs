//! Where a bench's CPU went, from /proc: the whole process, and RocksDB's own threads.

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

/// utime + stime of a `/proc/.../stat` line, in seconds (Linux counts 100 ticks a second).
fn stat_cpu(stat: &str) -> f64 {
    // Fields after the parenthesised name: utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse::<f64>().ok())
        .sum::<f64>()
        / 100.0
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
}
