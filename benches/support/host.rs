//! What the benches say about the machine they ran on.

/// The 1-, 5- and 15-minute load averages, as `/proc/loadavg` gives them (empty elsewhere).
pub fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
