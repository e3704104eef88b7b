//! Prometheus metrics: what `banhound metrics` prints (for node_exporter's textfile
//! collector) and what the optional `[metrics] listen` endpoint serves ([`listener`]), in
//! either of the two text formats Prometheus reads ([`Format`]).
//!
//! Both render the same figures from the same answers of the owner task — the daemon's
//! status (every jail's counters) and its health — so a scrape and the CLI never disagree,
//! and nothing here holds ban state of its own.
//!
//! Names follow the conventions of both formats: counters end in `_total`, times are seconds,
//! a jail's settings are labels of a `banhound_jail_info` sample. Label values are escaped (`\`, `"` and
//! newlines), although jail names are validated by the configuration already: a scrape must
//! stay parseable whatever the configuration holds.

pub mod listener;

use crate::bus::{Health, JailSnapshot, ServerStatus};
use crate::engine::time::Timestamp;
use std::fmt::Write;

/// Which text format to write. The two differ only in how a family is declared and ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus' text exposition format 0.0.4: what node_exporter's textfile collector and
    /// `promtool check metrics` read, and what every Prometheus version scrapes.
    Text,
    /// OpenMetrics 1.0: counter families named without `_total`, an `info` type, `# EOF`.
    OpenMetrics,
}

impl Format {
    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format a scraper asks for in its `Accept` header: OpenMetrics when it names it,
    /// as Prometheus does when it supports it; the text format otherwise.
    pub fn negotiate(accept: &[u8]) -> Format {
        if accept
            .windows(b"application/openmetrics-text".len())
            .any(|w| w.eq_ignore_ascii_case(b"application/openmetrics-text"))
        {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    /// By name, as `banhound metrics --format` and the bus take it.
    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "" | "text" => Some(Format::Text),
            "openmetrics" => Some(Format::OpenMetrics),
            _ => None,
        }
    }
}

/// The metrics text for `status` and `health` in `format`.
pub fn render(status: &ServerStatus, health: &Health, format: Format) -> String {
    let mut out = Metrics {
        text: String::new(),
        format,
    };
    out.family(
        "banhound_start_time_seconds",
        "gauge",
        "When the daemon started, in seconds since the Unix epoch.",
    );
    out.sample("banhound_start_time_seconds", &[], seconds(status.started));

    out.family(
        "banhound_jail_info",
        "info",
        "Each configured jail, with its filter and firewall backend.",
    );
    for jail in &status.jails {
        out.sample(
            "banhound_jail_info",
            &[
                ("jail", &jail.name),
                ("filter", &jail.filter),
                ("backend", &jail.backend),
                ("enabled", if jail.enabled { "true" } else { "false" }),
            ],
            1,
        );
    }
    let per_jail: [JailFamily; 4] = [
        (
            "banhound_bans_in_force",
            "gauge",
            "Bans in force in the jail.",
            |j| u64::from(j.currently_banned),
        ),
        (
            "banhound_bans_total",
            "counter",
            "Bans the jail has made since the daemon started.",
            |j| j.total_banned,
        ),
        (
            "banhound_failing_addresses",
            "gauge",
            "Addresses with failures counted in the jail's window and not banned.",
            |j| u64::from(j.currently_failed),
        ),
        (
            "banhound_failures_total",
            "counter",
            "Failures the jail has counted since the daemon started.",
            |j| j.total_failed,
        ),
    ];
    for (name, kind, help, value) in per_jail {
        out.family(name, kind, help);
        for jail in &status.jails {
            out.sample(name, &[("jail", &jail.name)], value(jail));
        }
    }
    render_reading(&mut out, status);

    out.family(
        "banhound_state_error",
        "gauge",
        "1 while the state database cannot be written (bans keep working from memory).",
    );
    out.sample(
        "banhound_state_error",
        &[],
        u64::from(health.state_error.is_some()),
    );
    out.family(
        "banhound_unsaved_changes",
        "gauge",
        "Changes waiting in memory to be written to the state database.",
    );
    out.sample("banhound_unsaved_changes", &[], health.unsaved_changes);
    out.family(
        "banhound_firewall_error",
        "gauge",
        "1 while a firewall call has failed and the firewall has not been repaired since.",
    );
    out.sample(
        "banhound_firewall_error",
        &[],
        u64::from(health.firewall_error.is_some()),
    );
    out.finish()
}

/// A per-jail family: sample name, type, help, and the jail's value.
type JailFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&JailSnapshot) -> u64,
);

fn seconds(t: Timestamp) -> u64 {
    u64::try_from(t.as_secs()).unwrap_or(0)
}

/// The text being written; writing to a `String` cannot fail.
struct Metrics {
    text: String,
    format: Format,
}

impl Metrics {
    /// Declares the family of the samples named `name` (as samples are named: counters with
    /// `_total`, info with `_info`).
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let (family, kind) = match (self.format, kind) {
            (Format::OpenMetrics, "counter") => (name.trim_end_matches("_total"), kind),
            (Format::OpenMetrics, "info") => (name.trim_end_matches("_info"), kind),
            // The text format has no info type: a gauge that is always 1.
            (Format::Text, "info") => (name, "gauge"),
            _ => (name, kind),
        };
        let _ = writeln!(self.text, "# HELP {family} {help}");
        let _ = writeln!(self.text, "# TYPE {family} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{key}=\"");
                escape_label(&mut self.text, value);
                self.text.push('"');
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    fn finish(mut self) -> String {
        if self.format == Format::OpenMetrics {
            self.text.push_str("# EOF\n");
        }
        self.text
    }
}

/// What each jail's filter read: records, misses by reason, time spent deciding.
fn render_reading(out: &mut Metrics, status: &ServerStatus) {
    let jails = || status.jails.iter().zip(&status.reading);
    out.family(
        "banhound_records_total",
        "counter",
        "Journal entries and log lines the jail's filter was given since the daemon started.",
    );
    for (jail, reading) in jails() {
        out.sample(
            "banhound_records_total",
            &[("jail", &jail.name)],
            reading.read,
        );
    }
    out.family(
        "banhound_missed_total",
        "counter",
        "Records in which the jail found no failure, by reason.",
    );
    for (jail, reading) in jails() {
        for (reason, n) in [
            ("no_match", reading.no_match),
            ("other_program", reading.other_program),
            ("not_syslog", reading.not_syslog),
            ("too_old", reading.too_old),
            ("ignoreregex", reading.ignoreregex),
        ] {
            out.sample(
                "banhound_missed_total",
                &[("jail", &jail.name), ("reason", reason)],
                n,
            );
        }
    }
    out.family(
        "banhound_matcher_seconds_total",
        "counter",
        "Time the jail spent deciding its records (filter and failure window).",
    );
    for (jail, reading) in jails() {
        out.sample(
            "banhound_matcher_seconds_total",
            &[("jail", &jail.name)],
            reading.deciding.as_secs_f64(),
        );
    }
}

/// OpenMetrics label value escaping: backslash, double quote and line feed.
fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::RecordCounts;
    use crate::engine::time::BanTime;
    use std::time::Duration;

    fn jail(name: &str) -> JailSnapshot {
        JailSnapshot {
            name: name.to_string(),
            enabled: true,
            currently_failed: 2,
            total_failed: 17,
            currently_banned: 3,
            total_banned: 5,
            findtime: Duration::from_secs(600),
            maxretry: 5,
            bantime: BanTime::For(Duration::from_secs(600)),
            filter: "sshd".to_string(),
            backend: "nftables".to_string(),
            ignoreip: Vec::new(),
        }
    }

    fn status(jails: Vec<JailSnapshot>) -> ServerStatus {
        let reading = (0..jails.len() as u64)
            .map(|i| RecordCounts {
                read: 100 + i,
                no_match: 90,
                other_program: 3,
                too_old: 1,
                deciding: Duration::from_micros(1500),
                ..RecordCounts::default()
            })
            .collect();
        ServerStatus {
            started: Timestamp::from_secs(1_700_000_000),
            jails,
            reading,
        }
    }

    #[test]
    fn every_jail_has_its_counters_in_both_formats() {
        let status = status(vec![jail("sshd"), jail("nginx")]);
        let text = render(&status, &Health::default(), Format::Text);
        let open = render(&status, &Health::default(), Format::OpenMetrics);
        for line in [
            "# TYPE banhound_bans_total counter",
            "# TYPE banhound_jail_info gauge",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
        for line in ["# TYPE banhound_bans counter", "# TYPE banhound_jail info"] {
            assert!(
                open.lines().any(|l| l == line),
                "{line} missing in:\n{open}"
            );
        }
        assert!(open.ends_with("\n# EOF\n"));
        assert!(!text.contains("# EOF"));
        // The samples are the same.
        let samples = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(samples(&text), samples(&open));
        for line in [
            "banhound_start_time_seconds 1700000000",
            "banhound_jail_info{jail=\"sshd\",filter=\"sshd\",backend=\"nftables\",enabled=\"true\"} 1",
            "banhound_bans_in_force{jail=\"sshd\"} 3",
            "banhound_bans_total{jail=\"nginx\"} 5",
            "banhound_failing_addresses{jail=\"sshd\"} 2",
            "banhound_failures_total{jail=\"nginx\"} 17",
            "banhound_records_total{jail=\"nginx\"} 101",
            "banhound_missed_total{jail=\"sshd\",reason=\"no_match\"} 90",
            "banhound_missed_total{jail=\"sshd\",reason=\"not_syslog\"} 0",
            "banhound_missed_total{jail=\"nginx\",reason=\"other_program\"} 3",
            "banhound_matcher_seconds_total{jail=\"sshd\"} 0.0015",
            "banhound_state_error 0",
            "banhound_firewall_error 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in:\n{text}");
        }
        // Each family is declared once.
        assert_eq!(open.matches("# TYPE banhound_bans counter").count(), 1);
    }

    #[test]
    fn the_format_follows_the_accept_header() {
        for (accept, format) in [
            (
                &b"application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"[..],
                Format::OpenMetrics,
            ),
            (b"Application/OpenMetrics-Text", Format::OpenMetrics),
            (b"text/plain;version=0.0.4", Format::Text),
            (b"*/*", Format::Text),
            (b"", Format::Text),
        ] {
            assert_eq!(Format::negotiate(accept), format, "{accept:?}");
        }
    }

    #[test]
    fn health_troubles_show_as_ones() {
        let health = Health {
            state_error: Some("disk full".into()),
            unsaved_changes: 12,
            firewall_error: Some("EPERM".into()),
        };
        let text = render(&status(Vec::new()), &health, Format::Text);
        assert!(text.contains("\nbanhound_state_error 1\n"));
        assert!(text.contains("\nbanhound_unsaved_changes 12\n"));
        assert!(text.contains("\nbanhound_firewall_error 1\n"));
    }

    #[test]
    fn label_values_cannot_break_out_of_their_quotes() {
        let mut hostile = jail("x");
        hostile.filter = "a\"} 1\nforged_metric 9\\".to_string();
        let text = render(&status(vec![hostile]), &Health::default(), Format::Text);
        assert!(!text.lines().any(|l| l.starts_with("forged_metric")));
        assert!(text.contains(r#"filter="a\"} 1\nforged_metric 9\\""#));
    }
}
