//! The node's own load, for heartbeats: CPU and network from /proc (rates
//! from the difference to the previous reading), memory from
//! /proc/meminfo, disk and /dev/shm (where MistServer keeps its buffers)
//! from statvfs.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// One reading of the machine.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MachineLoad {
    /// Since the previous reading (0 on the first).
    pub cpu_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    pub shm_used_bytes: u64,
    pub shm_total_bytes: u64,
    /// Since boot, all interfaces but loopback.
    pub network_rx_bytes: u64,
    pub network_tx_bytes: u64,
    /// Since the previous reading (0 on the first).
    pub bandwidth_up_bps: u64,
    pub bandwidth_down_bps: u64,
    /// How long since the previous reading.
    pub window_ms: u32,
}

#[derive(Debug, Clone, Copy)]
struct Counters {
    cpu_busy: u64,
    cpu_total: u64,
    rx: u64,
    tx: u64,
    at: Instant,
}

/// Reads the machine; remembers the last counters for rates.
#[derive(Debug)]
pub struct MachineProbe {
    proc_root: PathBuf,
    disk: PathBuf,
    shm: PathBuf,
    previous: Mutex<Option<Counters>>,
}

/// `cpu` line of /proc/stat: (busy, total) jiffies.
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is inside user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// /proc/meminfo: (total, available) in bytes.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// /proc/net/dev: received and sent bytes over every interface but `lo`.
pub fn parse_net_dev(text: &str) -> (u64, u64) {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            if name.trim() == "lo" {
                return None;
            }
            let values: Vec<u64> = counters
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            Some((*values.first()?, *values.get(8)?))
        })
        .fold((0, 0), |(rx, tx), (r, t)| (rx + r, tx + t))
}

/// Used and total bytes of the filesystem holding `path`.
fn filesystem(path: &std::path::Path) -> (u64, u64) {
    match rustix::fs::statvfs(path) {
        Ok(stats) => {
            let total = stats.f_blocks * stats.f_frsize;
            let free = stats.f_bfree * stats.f_frsize;
            (total.saturating_sub(free), total)
        }
        Err(_) => (0, 0),
    }
}

impl Default for MachineProbe {
    fn default() -> Self {
        Self::new("/proc", "/", "/dev/shm")
    }
}

impl MachineProbe {
    pub fn new(
        proc_root: impl Into<PathBuf>,
        disk: impl Into<PathBuf>,
        shm: impl Into<PathBuf>,
    ) -> Self {
        Self {
            proc_root: proc_root.into(),
            disk: disk.into(),
            shm: shm.into(),
            previous: Mutex::new(None),
        }
    }

    fn read(&self, name: &str) -> std::io::Result<String> {
        std::fs::read_to_string(self.proc_root.join(name))
    }

    /// Reads the machine now; rates cover the time since the last call.
    pub fn sample(&self) -> std::io::Result<MachineLoad> {
        let invalid = |what: &str| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("cannot read {what}"),
            )
        };
        let (cpu_busy, cpu_total) =
            parse_proc_stat(&self.read("stat")?).ok_or_else(|| invalid("/proc/stat"))?;
        let (memory_total, memory_available) =
            parse_meminfo(&self.read("meminfo")?).ok_or_else(|| invalid("/proc/meminfo"))?;
        let (rx, tx) = parse_net_dev(&self.read("net/dev")?);
        let now = Counters {
            cpu_busy,
            cpu_total,
            rx,
            tx,
            at: Instant::now(),
        };
        let previous = self
            .previous
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(now);
        let (disk_used, disk_total) = filesystem(&self.disk);
        let (shm_used, shm_total) = filesystem(&self.shm);
        let mut load = MachineLoad {
            memory_used_bytes: memory_total.saturating_sub(memory_available),
            memory_total_bytes: memory_total,
            disk_used_bytes: disk_used,
            disk_total_bytes: disk_total,
            shm_used_bytes: shm_used,
            shm_total_bytes: shm_total,
            network_rx_bytes: rx,
            network_tx_bytes: tx,
            ..MachineLoad::default()
        };
        if let Some(before) = previous {
            let elapsed = now.at.duration_since(before.at);
            let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
            let total = now.cpu_total.saturating_sub(before.cpu_total);
            if total > 0 {
                let busy = now.cpu_busy.saturating_sub(before.cpu_busy);
                load.cpu_percent = (busy as f64 / total as f64 * 100.0).clamp(0.0, 100.0);
            }
            // Counters reset when an interface goes away: no negative rates.
            load.bandwidth_down_bps =
                (now.rx.saturating_sub(before.rx) as f64 * 8.0 / seconds) as u64;
            load.bandwidth_up_bps =
                (now.tx.saturating_sub(before.tx) as f64 * 8.0 / seconds) as u64;
            load.window_ms = u32::try_from(elapsed.as_millis()).unwrap_or(u32::MAX);
        }
        Ok(load)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_read_as_counters() {
        let stat = "cpu  1911203 0 356310 2472146 29662 0 18686 363 0 0\ncpu0 1 2 3 4\n";
        let total = 1_911_203 + 356_310 + 2_472_146 + 29_662 + 18_686 + 363;
        assert_eq!(
            parse_proc_stat(stat),
            Some((total - 2_472_146 - 29_662, total))
        );
        let meminfo = "MemTotal:       24684092 kB\nMemFree: 1 kB\nMemAvailable:   22898196 kB\n";
        assert_eq!(
            parse_meminfo(meminfo),
            Some((24_684_092 * 1024, 22_898_196 * 1024))
        );
        let net = "Inter-|   Receive |  Transmit\n face |bytes    packets\n    lo: 4676745713 16303086 0 0 0 0 0 0 4676745713 16303086 0 0 0 0 0 0\n  eth0: 550490867   30122    0    0    0     0          0         0  2733279   21299    0    0    0     0       0          0\n";
        assert_eq!(
            parse_net_dev(net),
            (550_490_867, 2_733_279),
            "loopback left out"
        );
        assert_eq!(parse_proc_stat("garbage"), None);
        assert_eq!(parse_meminfo(""), None);
    }

    #[test]
    fn this_machine_reads_and_its_rates_need_two_readings() {
        let probe = MachineProbe::default();
        let first = probe.sample().unwrap_or_default();
        assert!(first.memory_total_bytes > 0 && first.disk_total_bytes > 0);
        assert_eq!((first.window_ms, first.bandwidth_up_bps), (0, 0));
        std::thread::sleep(std::time::Duration::from_millis(50));
        let second = probe.sample().unwrap_or_default();
        assert!(second.window_ms >= 50);
        assert!((0.0..=100.0).contains(&second.cpu_percent));
    }
}
