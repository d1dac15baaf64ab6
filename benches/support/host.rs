//! What the benches say about the machine they ran on.
#![allow(dead_code)] // each bench uses its own part

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The 1-, 5- and 15-minute load averages, as `/proc/loadavg` gives them (empty elsewhere).
pub fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The machine's CPU time so far, from the first line of `/proc/stat`: all of it and the part
/// the hypervisor ran other guests in (steal), in USER_HZ ticks.
#[derive(Debug, Clone, Copy)]
pub struct CpuTicks {
    total: u64,
    steal: u64,
}

impl CpuTicks {
    /// The share of the CPU time since `before` that was stolen, in percent.
    pub fn steal_pct_since(self, before: CpuTicks) -> f64 {
        let total = self.total.saturating_sub(before.total).max(1);
        100.0 * self.steal.saturating_sub(before.steal) as f64 / total as f64
    }
}

/// `None` where /proc/stat is missing or older than steal accounting.
pub fn cpu_ticks() -> Option<CpuTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is already
    // inside user and nice.
    let steal = *f.get(7)?;
    Some(CpuTicks {
        total: f.iter().take(8).sum(),
        steal,
    })
}

/// Bytes this process has sent towards storage so far (`write_bytes` of `/proc/self/io`: pages
/// it dirtied in the page cache, not socket writes). `None` where the kernel does not count.
pub fn storage_written() -> Option<u64> {
    std::fs::read_to_string("/proc/self/io")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The disk on its own: the time of one commit-shaped write, `pages` 4 KiB pages at scattered
/// offsets of a `file_bytes` file in `dir` followed by `fdatasync`, as the median of `rounds`.
/// No database and no server. Scattered pages are the unkind placement: a database commit whose
/// pages sit next to each other can cost less, so this is a reference for the disk's speed in the
/// same run, not a bound on a commit.
pub fn disk_commit(dir: &Path, pages: usize, file_bytes: u64, rounds: usize) -> Duration {
    const PAGE: u64 = 4096;
    let path = dir.join("disk-probe.bin");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let slots = (file_bytes / PAGE).max(pages as u64 * 4);
    file.set_len(slots * PAGE).unwrap();
    file.sync_all().unwrap();
    let page = vec![0x5au8; PAGE as usize];
    // A fixed xorshift: the same offsets in every run, so runs differ by the disk only.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..pages {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            file.write_at(&page, (x % slots) * PAGE).unwrap();
        }
        file.sync_data().unwrap();
        times.push(t.elapsed());
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    times.sort();
    times[times.len() / 2]
}
