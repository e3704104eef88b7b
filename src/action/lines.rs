//! The log lines that led to a ban, for alerts (`{lines}`, fail2ban's `<matches>`), and the
//! user its filter named (`<F-USER>`: `{user}`, fail2ban's `<F-USER>`).
//!
//! The tracker keeps only failure times (it must stay small per address under a flood), so
//! the lines are kept here, and only for jails with actions: per ban target the last
//! [`LINES_PER_TARGET`] lines, neutralised and cut at [`LINE_BYTES`], for at most
//! [`TARGETS_PER_JAIL`] targets (the oldest first-seen target is forgotten first). A ban takes
//! its target's lines, and the user of its last failure that named one.

use super::template::neutralise;
use ipnet::IpNet;
use std::collections::{HashMap, VecDeque};

/// Lines kept per target: a ban needs only its last few failures shown.
pub const LINES_PER_TARGET: usize = 10;
/// A line longer than this is cut (attackers control its length).
pub const LINE_BYTES: usize = 1000;
/// Targets remembered per jail; a flood beyond it loses the lines of its oldest targets.
pub const TARGETS_PER_JAIL: usize = 4096;

/// What a ban's alerts show of the failures that led to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matched {
    /// Oldest first, neutralised.
    pub lines: Vec<String>,
    /// `<F-USER>` of the last failure that captured one, neutralised.
    pub user: Option<String>,
}

/// Nothing matched (a manual or restored ban).
pub static NO_MATCH: Matched = Matched {
    lines: Vec::new(),
    user: None,
};

#[derive(Default)]
struct Kept {
    lines: VecDeque<String>,
    user: Option<String>,
}

#[derive(Default)]
struct JailLines {
    by_target: HashMap<IpNet, Kept>,
    /// Targets in the order first seen, for eviction (may hold targets already taken).
    order: VecDeque<IpNet>,
}

/// The matched lines of the jails that have actions.
#[derive(Default)]
pub struct MatchedLines {
    jails: HashMap<String, JailLines>,
}

impl MatchedLines {
    /// Keeps lines for these jails only.
    pub fn for_jails<'a>(jails: impl Iterator<Item = &'a str>) -> MatchedLines {
        MatchedLines {
            jails: jails
                .map(|j| (j.to_string(), JailLines::default()))
                .collect(),
        }
    }

    /// Remembers a failure's line and user for `target` (a jail without actions keeps
    /// nothing).
    pub fn note(&mut self, jail: &str, target: IpNet, line: &[u8], user: Option<&[u8]>) {
        let Some(lines) = self.jails.get_mut(jail) else {
            return;
        };
        if !lines.by_target.contains_key(&target) {
            while lines.by_target.len() >= TARGETS_PER_JAIL {
                let Some(oldest) = lines.order.pop_front() else {
                    break;
                };
                lines.by_target.remove(&oldest);
            }
            // Taken targets leave stale entries in `order`; compact before it grows unbounded.
            if lines.order.len() >= 2 * TARGETS_PER_JAIL {
                let live = &lines.by_target;
                lines.order.retain(|t| live.contains_key(t));
            }
            lines.order.push_back(target);
        }
        let kept = lines.by_target.entry(target).or_default();
        if kept.lines.len() == LINES_PER_TARGET {
            kept.lines.pop_front();
        }
        kept.lines
            .push_back(neutralise(line.trim_ascii_end(), LINE_BYTES));
        if let Some(user) = user.filter(|u| !u.is_empty()) {
            kept.user = Some(neutralise(user, LINE_BYTES));
        }
    }

    /// What was kept of a target that was just banned; forgotten here.
    pub fn take(&mut self, jail: &str, target: &IpNet) -> Matched {
        self.jails
            .get_mut(jail)
            .and_then(|l| l.by_target.remove(target))
            .map(|kept| Matched {
                lines: Vec::from(kept.lines),
                user: kept.user,
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn keeps_the_last_lines_of_a_target_neutralised() {
        let mut lines = MatchedLines::for_jails(["sshd"].into_iter());
        for i in 0..15 {
            lines.note(
                "sshd",
                net("192.0.2.1/32"),
                format!("line {i}\r\n").as_bytes(),
                match i {
                    3 => Some(b"$(reboot)\n".as_slice()),
                    // A failure that names no user keeps the one before.
                    _ => None,
                },
            );
        }
        lines.note("other", net("192.0.2.1/32"), b"not kept", None);
        let taken = lines.take("sshd", &net("192.0.2.1/32"));
        assert_eq!(taken.lines.len(), LINES_PER_TARGET);
        assert_eq!(taken.lines[0], "line 5");
        assert_eq!(taken.lines[9], "line 14");
        assert_eq!(taken.user.as_deref(), Some("$(reboot)\\x0a"));
        assert_eq!(lines.take("sshd", &net("192.0.2.1/32")), Matched::default());
        assert_eq!(
            lines.take("other", &net("192.0.2.1/32")),
            Matched::default()
        );
    }

    #[test]
    fn a_flood_of_targets_stays_bounded() {
        let mut lines = MatchedLines::for_jails(["sshd"].into_iter());
        for i in 0..(3 * TARGETS_PER_JAIL as u32) {
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            lines.note("sshd", IpNet::from(std::net::IpAddr::V4(addr)), b"x", None);
        }
        let jail = &lines.jails["sshd"];
        assert_eq!(jail.by_target.len(), TARGETS_PER_JAIL);
        assert!(jail.order.len() <= 2 * TARGETS_PER_JAIL);
        // The newest are kept, the oldest forgotten.
        assert!(lines.take("sshd", &net("10.0.0.0/32")).lines.is_empty());
        let newest = std::net::Ipv4Addr::from(0x0a00_0000 + 3 * TARGETS_PER_JAIL as u32 - 1);
        assert_eq!(
            lines
                .take("sshd", &IpNet::from(std::net::IpAddr::V4(newest)))
                .lines,
            ["x"]
        );
    }
}
