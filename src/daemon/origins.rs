//! The hosts a jail's journal failures were logged on, per ban target, so that a ban decided
//! on a collector (systemd-journal-remote's merged journal of a fleet) says where its failures
//! came from: "after 6 failures (from hosts web-1, web-2)".
//!
//! The tracker keeps failure times only (it must stay small per address under a flood), so
//! the hosts are kept here, as the lines for actions are ([`crate::action::lines`]): per
//! target the [`HOSTS_PER_TARGET`] hosts that failed last, each with its last failure's time,
//! for at most [`TARGETS_PER_JAIL`] targets (the oldest first-seen target is forgotten first).
//! A ban takes its target's hosts, those with a failure within the jail's findtime before it.
//! Nothing is kept until the jail has seen a failure logged on another host than this one: a
//! single host pays one comparison per failure.
//!
//! A host name is a label and nothing more: the uploading host wrote `_HOSTNAME` itself (a
//! compromised one can write any), so it never decides anything. Which address is banned
//! comes from the failure's own text; the label is shown neutralised
//! ([`crate::source::journal::host_label`]).

use crate::engine::time::Timestamp;
use crate::source::journal::host_label;
use ipnet::IpNet;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Hosts kept per target: more than a ban line should list; beyond it the hosts that failed
/// longest ago are dropped, and the list says there were more.
pub const HOSTS_PER_TARGET: usize = 8;
/// Targets remembered per jail; a flood beyond it loses the hosts of its oldest targets.
pub const TARGETS_PER_JAIL: usize = 4096;

#[derive(Debug, Default)]
struct TargetHosts {
    /// Raw `_HOSTNAME` and the time of its last failure, in the order first seen.
    hosts: Vec<(Vec<u8>, Timestamp)>,
    /// A host was dropped to stay within [`HOSTS_PER_TARGET`].
    more: bool,
}

/// The hosts a ban's failures came from, as its log line and observers show them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OriginHosts {
    /// Neutralised labels, in the order their hosts first failed.
    pub labels: Vec<String>,
    /// Other hosts failed too but were not kept.
    pub more: bool,
}

impl OriginHosts {
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `web-1, web-2` (`web-1, web-2 and more` when some were not kept).
    pub fn list(&self) -> String {
        let mut text = self.labels.join(", ");
        if self.more {
            text.push_str(" and more");
        }
        text
    }

    /// The suffix of a ban's log line and event: ` (from hosts web-1, web-2)`, nothing when
    /// empty.
    pub fn suffix(&self) -> String {
        match (self.labels.len(), self.more) {
            (0, _) => String::new(),
            (1, false) => format!(" (from host {})", self.list()),
            _ => format!(" (from hosts {})", self.list()),
        }
    }
}

/// The failure hosts of one jail's targets.
#[derive(Debug, Default)]
pub struct FailureOrigins {
    by_target: HashMap<IpNet, TargetHosts>,
    /// Targets in the order first seen, for eviction (may hold targets already taken).
    order: VecDeque<IpNet>,
    /// A failure logged on another host than this one was seen: from then on every
    /// failure's host is kept.
    other_hosts: bool,
}

impl FailureOrigins {
    /// Remembers that `target` failed on `host` at `at` (`this_host`: this host's name).
    pub fn note(&mut self, target: IpNet, host: &[u8], at: Timestamp, this_host: &[u8]) {
        if !self.other_hosts {
            if host == this_host {
                return;
            }
            self.other_hosts = true;
        }
        if !self.by_target.contains_key(&target) {
            while self.by_target.len() >= TARGETS_PER_JAIL {
                let Some(oldest) = self.order.pop_front() else {
                    break;
                };
                self.by_target.remove(&oldest);
            }
            // Taken targets leave stale entries in `order`; compact before it grows unbounded.
            if self.order.len() >= 2 * TARGETS_PER_JAIL {
                let live = &self.by_target;
                self.order.retain(|t| live.contains_key(t));
            }
            self.order.push_back(target);
        }
        let kept = self.by_target.entry(target).or_default();
        if let Some((_, last)) = kept.hosts.iter_mut().find(|(h, _)| h == host) {
            *last = (*last).max(at);
            return;
        }
        if kept.hosts.len() == HOSTS_PER_TARGET {
            if let Some(stalest) = (0..kept.hosts.len()).min_by_key(|&i| kept.hosts[i].1) {
                kept.hosts.remove(stalest);
            }
            kept.more = true;
        }
        kept.hosts.push((host.to_vec(), at));
    }

    /// The hosts of a target just banned at `at` whose last failure falls within `findtime`
    /// before it; forgotten here. Empty when every one of them is `this_host`: on a single
    /// host the ban needs no origin.
    pub fn take(
        &mut self,
        target: &IpNet,
        at: Timestamp,
        findtime: Duration,
        this_host: &[u8],
    ) -> OriginHosts {
        let Some(kept) = self.by_target.remove(target) else {
            return OriginHosts::default();
        };
        let since = at - findtime;
        let hosts: Vec<&[u8]> = kept
            .hosts
            .iter()
            .filter(|(_, last)| *last >= since)
            .map(|(h, _)| h.as_slice())
            .collect();
        if !kept.more && hosts.iter().all(|h| *h == this_host) {
            return OriginHosts::default();
        }
        OriginHosts {
            labels: hosts.into_iter().map(host_label).collect(),
            more: kept.more,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_secs(1_700_000_000 + secs)
    }

    const FINDTIME: Duration = Duration::from_secs(600);

    #[test]
    fn a_ban_names_the_hosts_that_failed_within_findtime() {
        let mut origins = FailureOrigins::default();
        let attacker = net("203.0.113.66/32");
        origins.note(attacker, b"old-host", at(0), b"collector");
        for (i, host) in [b"web-a", b"web-b", b"web-a"].iter().enumerate() {
            origins.note(attacker, *host, at(1000 + i as i64), b"collector");
        }
        origins.note(net("198.51.100.7/32"), b"web-c", at(1001), b"collector");
        let hosts = origins.take(&attacker, at(1002), FINDTIME, b"collector");
        assert_eq!(hosts.labels, ["web-a", "web-b"]);
        assert_eq!(hosts.suffix(), " (from hosts web-a, web-b)");
        // Taken: a second ban starts afresh.
        assert!(origins
            .take(&attacker, at(1002), FINDTIME, b"collector")
            .is_empty());
    }

    #[test]
    fn a_single_host_s_own_failures_name_no_host() {
        let mut origins = FailureOrigins::default();
        let attacker = net("203.0.113.66/32");
        origins.note(attacker, b"here", at(1), b"here");
        origins.note(attacker, b"here", at(2), b"here");
        // Nothing kept before another host is seen.
        assert!(origins.by_target.is_empty());
        assert!(origins.take(&attacker, at(2), FINDTIME, b"here").is_empty());
        // Once another host is seen, this host's failures are kept too.
        origins.note(attacker, b"there", at(3), b"here");
        origins.note(attacker, b"here", at(4), b"here");
        let hosts = origins.take(&attacker, at(4), FINDTIME, b"here");
        assert_eq!(hosts.suffix(), " (from hosts there, here)");
        origins.note(attacker, b"there", at(5), b"here");
        assert_eq!(
            origins.take(&attacker, at(5), FINDTIME, b"here").suffix(),
            " (from host there)"
        );
    }

    #[test]
    fn forged_host_names_are_shown_neutralised() {
        let mut origins = FailureOrigins::default();
        let attacker = net("203.0.113.66/32");
        origins.note(attacker, b"a, b) (from hosts c", at(1), b"collector");
        let hosts = origins.take(&attacker, at(1), FINDTIME, b"collector");
        assert_eq!(
            hosts.suffix(),
            " (from host a\\x2c\\x20b\\x29\\x20\\x28from\\x20hosts\\x20c)"
        );
    }

    #[test]
    fn hosts_and_targets_stay_bounded() {
        let mut origins = FailureOrigins::default();
        let attacker = net("203.0.113.66/32");
        for i in 0..(HOSTS_PER_TARGET + 3) {
            origins.note(
                attacker,
                format!("h{i}").as_bytes(),
                at(i as i64),
                b"collector",
            );
        }
        let hosts = origins.take(&attacker, at(20), FINDTIME, b"collector");
        assert_eq!(hosts.labels.len(), HOSTS_PER_TARGET);
        assert_eq!(hosts.labels[0], "h3");
        assert!(hosts.list().ends_with(", h10 and more"));
        for i in 0..(3 * TARGETS_PER_JAIL as u32) {
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            origins.note(
                IpNet::from(std::net::IpAddr::V4(addr)),
                b"h",
                at(1),
                b"collector",
            );
        }
        assert_eq!(origins.by_target.len(), TARGETS_PER_JAIL);
        assert!(origins.order.len() <= 2 * TARGETS_PER_JAIL);
    }
}
