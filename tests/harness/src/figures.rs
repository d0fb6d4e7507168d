//! The one line format every load driver prints its figures in, so that
//! `compose/bench` can set each beside its goal:
//!
//! ```text
//! figure: projector.control-plane 41234 events/s (goal >= 50000)
//! figure: bridge.subscribers.p99 63.2 ms (goal <= 100)
//! ```

use std::fmt;

/// Which way a figure has to go to meet its goal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// Throughputs: at least this much.
    AtLeast(f64),
    /// Latencies and memory: at most this much.
    AtMost(f64),
}

impl Goal {
    pub fn met_by(self, value: f64) -> bool {
        match self {
            Self::AtLeast(goal) => value >= goal,
            Self::AtMost(goal) => value <= goal,
        }
    }
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AtLeast(goal) => write!(f, "goal >= {}", number(*goal)),
            Self::AtMost(goal) => write!(f, "goal <= {}", number(*goal)),
        }
    }
}

/// Whole numbers without decimals, others with up to three significant ones.
fn number(value: f64) -> String {
    if (value.fract() == 0.0 && value.abs() < 1e15) || value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.4}")
    }
}

/// The figure line for `name` (dotted, no spaces), e.g.
/// `figure: replay.control-plane 81234 events/s (goal >= 200000)`.
pub fn figure_line(name: &str, value: f64, unit: &str, goal: Goal) -> String {
    format!("figure: {name} {} {unit} ({goal})", number(value))
}

/// Prints [`figure_line`] on standard output.
pub fn figure(name: &str, value: f64, unit: &str, goal: Goal) {
    println!("{}", figure_line(name, value, unit, goal));
}

/// A ratio to a peer's figure measured or recorded beside ours, e.g.
/// `figure: replay.control-plane.vs-kafka-producer 0.41 ratio (peer 197000 records/s)`.
pub fn ratio(name: &str, ours: f64, peer: f64, peer_unit: &str) {
    let ratio = if peer > 0.0 { ours / peer } else { 0.0 };
    println!(
        "figure: {name} {} ratio (peer {} {peer_unit})",
        number(ratio),
        number(peer)
    );
}

/// CPU seconds this process has used so far (user and system, every
/// thread), from `/proc/self/stat`; `None` where that is not readable.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at state.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let ticks = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    Some((utime + stime) / ticks)
}

/// Resident memory of process `pid` in MB (`VmRSS` in `/proc/<pid>/status`);
/// `None` once the process is gone or where that is not readable.
pub fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::{Goal, figure_line};

    #[test]
    fn lines_carry_the_goal_and_its_direction() {
        assert_eq!(
            figure_line(
                "projector.control-plane",
                41234.4,
                "events/s",
                Goal::AtLeast(50_000.0)
            ),
            "figure: projector.control-plane 41234 events/s (goal >= 50000)"
        );
        assert_eq!(
            figure_line("bridge.subscribers.p99", 63.25, "ms", Goal::AtMost(100.0)),
            "figure: bridge.subscribers.p99 63.25 ms (goal <= 100)"
        );
        assert!(Goal::AtMost(100.0).met_by(99.9));
        assert!(super::cpu_seconds().is_some_and(|seconds| seconds >= 0.0));
        assert!(super::rss_mb(std::process::id()).is_some_and(|mb| mb > 0.0));
        assert!(!Goal::AtLeast(50_000.0).met_by(49_999.0));
    }
}
