//! Figures and the side-by-side table: each figure for Mailroom, the peer (Postfix or
//! Dovecot), their ratio, and Mailroom's figure as a fraction of the physical disk probe.
//! Also the small measuring helpers (percentiles, resident memory of a process tree).

use std::fmt::Write as _;
use std::time::Duration;

/// One line of the table.
pub struct Row {
    pub scenario: String,
    pub figure: String,
    pub unit: String,
    pub mailroom: Option<f64>,
    pub peer: Option<f64>,
    /// The probe figure this one is compared with (same unit), if any.
    pub probe: Option<f64>,
}

/// Everything measured in one run, plus the verification failures.
#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub failures: Vec<String>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn add(
        &mut self,
        scenario: &str,
        figure: &str,
        unit: &str,
        mailroom: Option<f64>,
        peer: Option<f64>,
        probe: Option<f64>,
    ) {
        self.rows.push(Row {
            scenario: scenario.into(),
            figure: figure.into(),
            unit: unit.into(),
            mailroom,
            peer,
            probe,
        });
    }

    pub fn fail(&mut self, what: String) {
        eprintln!("mailroom-bench: VERIFICATION FAILED: {what}");
        self.failures.push(what);
    }

    pub fn note(&mut self, what: String) {
        eprintln!("mailroom-bench: note: {what}");
        self.notes.push(what);
    }

    /// The table as Markdown.
    pub fn table(&self, peer_name: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| scenario | figure | unit | Mailroom | {peer_name} | Mailroom / peer | Mailroom / disk probe |"
        );
        let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|");
        for r in &self.rows {
            let ratio = match (r.mailroom, r.peer) {
                (Some(m), Some(p)) if p != 0.0 => format!("{:.2}", m / p),
                _ => "–".into(),
            };
            let frac = match (r.mailroom, r.probe) {
                (Some(m), Some(p)) if p != 0.0 => format!("{:.0}%", 100.0 * m / p),
                _ => "–".into(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.scenario,
                r.figure,
                r.unit,
                fmt(r.mailroom),
                fmt(r.peer),
                ratio,
                frac
            );
        }
        out
    }
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// The `p`-th percentile (0..=100) of `v` in milliseconds, nearest rank; None when empty.
pub fn percentile_ms(v: &mut [Duration], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    let i = rank.clamp(1, v.len()) - 1;
    Some(v[i].as_secs_f64() * 1000.0)
}

/// Per second, None when nothing was timed.
pub fn rate(n: usize, d: Duration) -> Option<f64> {
    let s = d.as_secs_f64();
    (s > 0.0 && n > 0).then(|| n as f64 / s)
}

/// VmRSS of one process in KiB, from /proc/<pid>/status.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds (user + system, and those of reaped children) of `pid` and its descendants,
/// from /proc/<pid>/stat (clock ticks of 1/100 s on Linux).
pub fn tree_cpu_secs(pid: u32) -> Option<f64> {
    let ticks: u64 = tree(pid)?
        .iter()
        .filter_map(|p| {
            let st = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // Fields after the command name (which is in parentheses and may hold spaces).
            let rest = &st[st.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            // utime, stime, cutime, cstime: fields 14-17, i.e. 11-14 after the name.
            Some(
                f.get(11..15)?
                    .iter()
                    .filter_map(|v| v.parse::<u64>().ok())
                    .sum::<u64>(),
            )
        })
        .sum();
    Some(ticks as f64 / 100.0)
}

/// `pid` and all its descendants.
fn tree(pid: u32) -> Option<Vec<u32>> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(st) = std::fs::read_to_string(format!("/proc/{p}/status")) {
            if let Some(pp) = st
                .lines()
                .find(|l| l.starts_with("PPid:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            {
                parents.push((p, pp));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let cur = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    Some(tree)
}

/// Sum of VmRSS over `pid` and all its descendants, in MiB (Postfix and Dovecot are process
/// trees; Mailroom is one process).
pub fn tree_rss_mib(pid: u32) -> Option<f64> {
    let tree = tree(pid)?;
    let kib: u64 = tree.iter().filter_map(|p| rss_kib(*p)).sum();
    (kib > 0).then(|| kib as f64 / 1024.0)
}
