//! Trigger requests and the capabilities answer captured from a real
//! MistServer (fw-51c613a4), kept beside the simulator that replays them.

use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

const TRIGGERS: &str = include_str!("../captures/triggers.jsonl");
const CAPABILITIES: &str = include_str!("../captures/capabilities.json");

/// One trigger request as Mist sent it, and what the listener answered.
#[derive(Debug, Clone, Deserialize)]
pub struct Capture {
    /// Seconds since the epoch when it arrived.
    pub t: f64,
    pub method: String,
    pub path: String,
    /// In Mist's order and spelling.
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub body_lines: Vec<String>,
    pub replied: String,
}

impl Capture {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The trigger's name (`X-Trigger`).
    pub fn trigger(&self) -> &str {
        self.header("X-Trigger").unwrap_or_default()
    }
}

/// Every captured trigger request, in the order they arrived.
pub fn triggers() -> &'static [Capture] {
    static PARSED: OnceLock<Vec<Capture>> = OnceLock::new();
    PARSED.get_or_init(|| {
        TRIGGERS
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).expect("the captures are valid JSON lines"))
            .collect()
    })
}

/// The captured requests of one trigger.
pub fn of(trigger: &str) -> impl Iterator<Item = &'static Capture> {
    triggers().iter().filter(move |c| c.trigger() == trigger)
}

/// Mist's answer to `{"capabilities": true}`.
pub fn capabilities() -> Value {
    let answer: Value = serde_json::from_str(CAPABILITIES).expect("the capabilities are JSON");
    answer.get("capabilities").cloned().unwrap_or(answer)
}
