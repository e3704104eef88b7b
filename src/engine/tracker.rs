//! The per-jail decision state: failures counted in sliding windows, bans decided, expiries
//! scheduled.
//!
//! A jail bans an address once `maxretry` failures fall within `findtime` of each other. Its
//! ban lasts `bantime`, grown for repeat offenders when escalation is configured, capped by
//! `maxtime`. The tracker also knows which bans are active and when each ends, so the daemon
//! can sleep until exactly the next expiry instead of polling. Failures come in through one
//! entry point, [`Tracker::failure`], live (they may ban) or replayed at start-up (they only
//! rebuild windows).
//!
//! Memory is bounded: at most `max_tracked` addresses have a failure window. When the table
//! is full, windows whose failures all fell out of `findtime` go first; if that is not enough,
//! the addresses whose last failure is oldest are forgotten (a tenth of the table at once, so
//! the cost is amortised). A flood of spoofed sources therefore costs a fixed amount of memory
//! and at worst delays counting for the quietest addresses, never bans an innocent one.

use crate::engine::address::{
    ban_target, ban_target_net, manual_ban_target, IgnoreList, IgnoreReason, ManualBanRefusal,
    WidestBan,
};
use crate::engine::time::{BanTime, Timestamp};
use ipnet::IpNet;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::time::Duration;

/// The tracker's tables, keyed by address. The keys are chosen by whoever sends the packets
/// that get logged, so a hash an attacker could predict would let them pile every address
/// into one bucket (HashDoS). foldhash's `RandomState` draws a per-process random seed (and
/// varies it per table), which keeps the keys unpredictable while hashing an address
/// several times faster than SipHash.
type AddressMap<V> = HashMap<IpNet, V, foldhash::fast::RandomState>;

/// How ban times grow for an address banned before.
#[derive(Clone, Debug, PartialEq)]
pub enum Growth {
    /// The n-th ban lasts `bantime * factor^(n-1)`.
    Factor(f64),
    /// The n-th ban lasts `bantime * multipliers[n-1]` (the last one repeats).
    Multipliers(Vec<f64>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Escalation {
    pub growth: Growth,
    /// No escalated ban lasts longer than this.
    pub maxtime: Option<Duration>,
    /// Bans older than this no longer count as previous offences.
    pub forget_after: Duration,
    /// Up to this much, drawn at random, is added to every ban (after `maxtime`), so that
    /// whoever runs many addresses cannot compute when one is free again (fail2ban's
    /// `bantime.rndtime`).
    pub random_extra: Option<Duration>,
    /// The bans of every jail count as previous offences, not only this jail's (fail2ban's
    /// `bantime.overalljails`).
    pub overall_jails: bool,
}

impl Escalation {
    /// The ban time of the `nth` ban (1 = first) for a base `bantime`.
    pub fn bantime(&self, base: BanTime, nth: u32) -> BanTime {
        let BanTime::For(base) = base else {
            return BanTime::Permanent;
        };
        let step = nth.saturating_sub(1);
        let multiplier = match &self.growth {
            Growth::Factor(f) => f.powi(step.min(64) as i32),
            Growth::Multipliers(m) => m.get(step as usize).or(m.last()).copied().unwrap_or(1.0),
        };
        let secs = (base.as_secs_f64() * multiplier).clamp(0.0, 10.0 * 366.0 * 86_400.0);
        let grown = Duration::from_secs_f64(secs);
        BanTime::For(match self.maxtime {
            Some(max) => grown.min(max),
            None => grown,
        })
    }

    /// `bantime` with its random extra: `fraction` (in `[0, 1)`) of `random_extra`.
    pub fn with_random_extra(&self, bantime: BanTime, fraction: f64) -> BanTime {
        match (bantime, self.random_extra) {
            // Whole seconds, as every other ban time.
            (BanTime::For(d), Some(extra)) => BanTime::For(
                d + Duration::from_secs((extra.as_secs_f64() * fraction.clamp(0.0, 1.0)) as u64),
            ),
            (other, _) => other,
        }
    }
}

/// A number drawn at random from `[0, 1)`: std's per-instance random hash keys, which is
/// all an unpredictable ban length needs (no secret depends on it).
fn random_fraction() -> f64 {
    let bits = RandomState::new().hash_one(0u8);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The settings of one jail that decide bans.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub maxretry: u32,
    pub findtime: Duration,
    pub bantime: BanTime,
    pub escalation: Option<Escalation>,
    /// IPv6 bans cover this prefix (128 = the address alone).
    pub ipv6_prefix: u8,
    pub ignore: IgnoreList,
    /// At most this many addresses have a failure window at once.
    pub max_tracked: usize,
}

/// A decision to ban.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BanDecision {
    pub target: IpNet,
    pub at: Timestamp,
    pub bantime: BanTime,
    /// Failures in the window that triggered it.
    pub failures: u32,
    /// 1 for a first offence, 2 for the second ban within `forget_after`, …
    pub offence: u32,
}

impl BanDecision {
    pub fn until(&self) -> Option<Timestamp> {
        self.bantime.until(self.at)
    }
}

/// Who failed: one address, or a network named by the filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Ip(IpAddr),
    Net(IpNet),
}

impl From<IpAddr> for Target {
    fn from(addr: IpAddr) -> Target {
        Target::Ip(addr)
    }
}

impl From<IpNet> for Target {
    fn from(net: IpNet) -> Target {
        Target::Net(net)
    }
}

/// Whether a failure is new (it may ban) or replayed at start-up (it only rebuilds windows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Live,
    Replay,
}

/// What one failure led to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Never banned: loopback, ignoreip, own address.
    Ignored(IgnoreReason),
    /// Already banned (a line still in flight, or a ban the firewall does not cover).
    AlreadyBanned,
    /// Counted; `failures` within findtime so far.
    Counted {
        failures: u32,
    },
    Ban(BanDecision),
}

/// An active ban as the tracker knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveBan {
    pub since: Timestamp,
    pub until: Option<Timestamp>,
    pub offence: u32,
}

#[derive(Debug, Default)]
struct Window {
    times: VecDeque<Timestamp>,
}

impl Window {
    fn newest(&self) -> Timestamp {
        self.times.back().copied().unwrap_or_default()
    }
}

#[derive(Clone, Copy, Debug)]
struct History {
    offences: u32,
    last: Timestamp,
}

/// Running totals for status reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub failures: u64,
    pub bans: u64,
    pub evicted: u64,
}

/// The decision state of one jail.
#[derive(Debug)]
pub struct Tracker {
    policy: Policy,
    windows: AddressMap<Window>,
    history: AddressMap<History>,
    active: AddressMap<ActiveBan>,
    expiries: BTreeSet<(Timestamp, IpNet)>,
    /// Bans lifted (by the wall clock) while the log being read was still inside them, with
    /// their end: catching up on old entries, a failure logged during a ban is not counted
    /// whether or not the wall clock has lifted that ban yet, so what is decided does not
    /// depend on when the lift ran (nor on a restart in between). Dropped once the log's
    /// time has passed their end.
    lifted: AddressMap<Timestamp>,
    /// The newest log time of a failure recorded.
    newest: Timestamp,
    totals: Totals,
}

impl Tracker {
    pub fn new(policy: Policy) -> Self {
        Tracker {
            policy,
            windows: AddressMap::default(),
            history: AddressMap::default(),
            active: AddressMap::default(),
            expiries: BTreeSet::new(),
            lifted: AddressMap::default(),
            newest: Timestamp::default(),
            totals: Totals::default(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Replaces the policy (configuration reload), keeping windows and bans.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Addresses with failures counted but not (yet) banned.
    pub fn currently_failing(&self) -> usize {
        self.windows.len()
    }

    pub fn active_bans(&self) -> impl Iterator<Item = (&IpNet, &ActiveBan)> {
        self.active.iter()
    }

    pub fn active_ban(&self, target: &IpNet) -> Option<&ActiveBan> {
        self.active.get(target)
    }

    /// A failure of `target` at `at`. Live, it counts and decides. Replayed (a failure from
    /// before the persisted position, read again at start-up), it already had its effect (any
    /// ban it caused is restored from state), so it only rebuilds the window and never bans. A
    /// subnet (fail2ban's `<SUBNET>`) is counted and banned as one, widened to the jail's IPv6
    /// prefix if that is shorter.
    pub fn failure(&mut self, target: impl Into<Target>, at: Timestamp, mode: Mode) -> Verdict {
        let target = match target.into() {
            Target::Ip(addr) => ban_target(addr, self.policy.ipv6_prefix),
            Target::Net(net) => ban_target_net(net, self.policy.ipv6_prefix),
        };
        self.record_target(target, at, mode == Mode::Live)
    }

    fn record_target(&mut self, target: IpNet, at: Timestamp, decide: bool) -> Verdict {
        if let Some(reason) = self.policy.ignore.check(&target) {
            return Verdict::Ignored(reason);
        }
        self.newest = self.newest.max(at);
        if let Some(ban) = self.active.get(&target) {
            if ban.until.is_none_or(|until| until > at) {
                return Verdict::AlreadyBanned;
            }
        }
        if let Some(&until) = self.lifted.get(&target) {
            if until > at {
                return Verdict::AlreadyBanned;
            }
            self.lifted.remove(&target);
        }
        if decide {
            self.totals.failures += 1;
        }
        // The length first: a full table is rare, and the lookup costs a hash.
        if self.windows.len() >= self.policy.max_tracked && !self.windows.contains_key(&target) {
            self.evict(at);
        }
        let findtime = self.policy.findtime;
        let maxretry = self.policy.maxretry.max(1) as usize;
        let window = self.windows.entry(target).or_default();
        let horizon = at - findtime;
        window.times.retain(|t| *t >= horizon);
        window.times.push_back(at);
        let failures = window.times.len() as u32;
        if window.times.len() < maxretry {
            return Verdict::Counted { failures };
        }
        // maxretry reached: the window is spent whether this is a live decision or a replay
        // of one that was already made.
        self.windows.remove(&target);
        if !decide {
            return Verdict::Counted { failures };
        }
        Verdict::Ban(self.ban(target, at, failures, None))
    }

    /// Bans `target` from `at` for `bantime`, or for the jail's (escalated) ban time.
    fn ban(
        &mut self,
        target: IpNet,
        at: Timestamp,
        failures: u32,
        bantime: Option<BanTime>,
    ) -> BanDecision {
        let offence = self.next_offence(&target, at);
        let bantime = bantime.unwrap_or(match &self.policy.escalation {
            Some(esc) => {
                esc.with_random_extra(esc.bantime(self.policy.bantime, offence), random_fraction())
            }
            None => self.policy.bantime,
        });
        let decision = BanDecision {
            target,
            at,
            bantime,
            failures,
            offence,
        };
        self.activate(&decision);
        decision
    }

    fn next_offence(&mut self, target: &IpNet, at: Timestamp) -> u32 {
        let Some(esc) = &self.policy.escalation else {
            return 1;
        };
        let previous = match self.history.get(target) {
            Some(h) if at.since(h.last) <= esc.forget_after => h.offences,
            _ => 0,
        };
        previous + 1
    }

    fn activate(&mut self, decision: &BanDecision) {
        self.totals.bans += 1;
        self.insert_ban(
            decision.target,
            ActiveBan {
                since: decision.at,
                until: decision.until(),
                offence: decision.offence,
            },
        );
    }

    fn insert_ban(&mut self, target: IpNet, ban: ActiveBan) {
        if let Some(old) = self.active.insert(target, ban) {
            if let Some(until) = old.until {
                self.expiries.remove(&(until, target));
            }
        }
        if let Some(until) = ban.until {
            self.expiries.insert((until, target));
        }
        if self.policy.escalation.is_some() {
            self.history.insert(
                target,
                History {
                    offences: ban.offence,
                    last: ban.since,
                },
            );
        }
        self.windows.remove(&target);
    }

    /// A ban ordered from outside (an admin) of an address (as a host network) or a network
    /// no wider than `widest` (or one ban target), checked against the ignore list
    /// ([`manual_ban_target`]).
    pub fn ban_manually(
        &mut self,
        requested: IpNet,
        widest: WidestBan,
        at: Timestamp,
        bantime: Option<BanTime>,
    ) -> Result<BanDecision, ManualBanRefusal> {
        let target = manual_ban_target(
            requested,
            self.policy.ipv6_prefix,
            widest,
            &self.policy.ignore,
        )?;
        Ok(self.ban(target, at, 0, bantime))
    }

    /// Re-installs a ban loaded from persistent state (not counted as a new ban).
    pub fn restore_ban(&mut self, target: IpNet, ban: ActiveBan) {
        self.insert_ban(target, ban);
    }

    /// Re-installs how many times `target` was banned, the last ban starting at `last`
    /// (from persistent history, for bans that have ended), so escalation survives restarts.
    /// Ignored without escalation, and when the tracker already knows a later ban.
    pub fn restore_offences(&mut self, target: IpNet, offences: u32, last: Timestamp) {
        if self.policy.escalation.is_none() {
            return;
        }
        let known = self
            .history
            .entry(target)
            .or_insert(History { offences, last });
        if last > known.last {
            *known = History { offences, last };
        }
    }

    /// Whether the bans of other jails count as offences here (`bantime.overalljails`).
    pub fn counts_offences_of_all_jails(&self) -> bool {
        self.policy
            .escalation
            .as_ref()
            .is_some_and(|esc| esc.overall_jails)
    }

    /// Another jail banned `target` at `at`: with `overall_jails`, that is one more offence
    /// here too (the target taken to this jail's IPv6 prefix); otherwise nothing.
    pub fn offence_elsewhere(&mut self, target: IpNet, at: Timestamp) {
        if !self.counts_offences_of_all_jails() {
            return;
        }
        let target = ban_target_net(target, self.policy.ipv6_prefix);
        let offences = self.next_offence(&target, at);
        let known = self
            .history
            .entry(target)
            .or_insert(History { offences, last: at });
        if at >= known.last {
            *known = History { offences, last: at };
        }
    }

    /// Re-installs, from persistent history, that another jail banned `target` `offences`
    /// times, the last at `last`: with `overall_jails`, the highest count of any jail and
    /// the latest ban are kept (what the jails stored does not say how their bans
    /// interleaved); otherwise nothing.
    pub fn restore_offences_elsewhere(&mut self, target: IpNet, offences: u32, last: Timestamp) {
        if !self.counts_offences_of_all_jails() {
            return;
        }
        let target = ban_target_net(target, self.policy.ipv6_prefix);
        let known = self
            .history
            .entry(target)
            .or_insert(History { offences, last });
        known.offences = known.offences.max(offences);
        known.last = known.last.max(last);
    }

    /// Re-installs a ban that has ended by the wall clock, from persistent state, ending at
    /// `until` in log time: failures logged before `until` (read again after a restart, or
    /// logged while stopped and read now) are not counted, as when it was in force.
    pub fn restore_lifted(&mut self, target: IpNet, until: Timestamp) {
        let end = self.lifted.entry(target).or_insert(until);
        *end = (*end).max(until);
    }

    /// Lifts a ban early; returns whether it was active. An address unbanned by hand counts
    /// again from its next failure.
    pub fn unban(&mut self, target: &IpNet) -> bool {
        match self.active.remove(target) {
            Some(ban) => {
                if let Some(until) = ban.until {
                    self.expiries.remove(&(until, *target));
                }
                true
            }
            None => false,
        }
    }

    /// When the next ban ends, for the daemon's single timer.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.expiries.first().map(|(t, _)| *t)
    }

    /// Removes and returns the bans that have ended by `now`.
    pub fn take_expired(&mut self, now: Timestamp) -> Vec<IpNet> {
        self.take_expired_at_most(now, usize::MAX)
    }

    /// As [`take_expired`](Self::take_expired), but at most `max` bans, those that ended
    /// first; the others stay due (`next_expiry() <= now`) for the next call. A flood's bans
    /// end together, thousands in the same second: the daemon lifts them in bounded steps so
    /// that control requests are answered in between.
    pub fn take_expired_at_most(&mut self, now: Timestamp, max: usize) -> Vec<IpNet> {
        let mut done = Vec::new();
        while let Some(&(until, target)) = self.expiries.first() {
            if until > now || done.len() >= max {
                break;
            }
            self.expiries.pop_first();
            self.active.remove(&target);
            if until > self.newest {
                self.lifted.insert(target, until);
            }
            done.push(target);
        }
        let newest = self.newest;
        self.lifted.retain(|_, until| *until > newest);
        if let Some(esc) = &self.policy.escalation {
            let keep = esc.forget_after;
            self.history.retain(|_, h| now.since(h.last) <= keep);
        }
        done
    }

    fn evict(&mut self, now: Timestamp) {
        let horizon = now - self.policy.findtime;
        let before = self.windows.len();
        self.windows.retain(|_, w| w.newest() >= horizon);
        let cap = self.policy.max_tracked;
        if self.windows.len() >= cap {
            // Still full of live windows: forget the quietest tenth, deterministically
            // (ties broken by address, not by hash order).
            let mut by_age: Vec<(Timestamp, IpNet)> =
                self.windows.iter().map(|(k, w)| (w.newest(), *k)).collect();
            let drop = (cap / 10).max(1).min(by_age.len());
            by_age.select_nth_unstable(drop - 1);
            for (_, k) in &by_age[..drop] {
                self.windows.remove(k);
            }
        }
        self.totals.evicted += (before - self.windows.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            maxretry: 3,
            findtime: Duration::from_secs(600),
            bantime: BanTime::For(Duration::from_secs(600)),
            escalation: None,
            ipv6_prefix: 64,
            ignore: IgnoreList::new(vec!["192.0.2.0/24".parse().unwrap()], vec![]),
            max_tracked: 1000,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_secs(1_700_000_000 + s)
    }

    #[test]
    fn bans_at_maxretry_within_findtime() {
        let mut tr = Tracker::new(policy());
        let a = ip("198.51.100.4");
        assert_eq!(
            tr.failure(a, t(0), Mode::Live),
            Verdict::Counted { failures: 1 }
        );
        assert_eq!(
            tr.failure(a, t(100), Mode::Live),
            Verdict::Counted { failures: 2 }
        );
        let Verdict::Ban(d) = tr.failure(a, t(200), Mode::Live) else {
            panic!()
        };
        assert_eq!(d.target.to_string(), "198.51.100.4/32");
        assert_eq!(d.failures, 3);
        assert_eq!(d.until(), Some(t(800)));
        assert_eq!(tr.failure(a, t(300), Mode::Live), Verdict::AlreadyBanned);
        assert_eq!(tr.next_expiry(), Some(t(800)));
    }

    #[test]
    fn window_slides() {
        let mut tr = Tracker::new(policy());
        let a = ip("198.51.100.4");
        tr.failure(a, t(0), Mode::Live);
        tr.failure(a, t(500), Mode::Live);
        // The first failure is now older than findtime.
        assert_eq!(
            tr.failure(a, t(700), Mode::Live),
            Verdict::Counted { failures: 2 }
        );
        assert!(matches!(tr.failure(a, t(800), Mode::Live), Verdict::Ban(_)));
    }

    #[test]
    fn ignores_listed_and_loopback() {
        let mut tr = Tracker::new(policy());
        for _ in 0..5 {
            assert_eq!(
                tr.failure(ip("192.0.2.9"), t(0), Mode::Live),
                Verdict::Ignored(IgnoreReason::IgnoreIp)
            );
            assert_eq!(
                tr.failure(ip("::1"), t(0), Mode::Live),
                Verdict::Ignored(IgnoreReason::Loopback)
            );
        }
        assert_eq!(
            tr.ban_manually(ip("::ffff:127.0.0.1").into(), WidestBan::HOSTS, t(0), None),
            Err(ManualBanRefusal::Ignored {
                network: "127.0.0.1/32".parse().unwrap(),
                reason: IgnoreReason::Loopback
            })
        );
        assert_eq!(tr.totals().bans, 0);
    }

    #[test]
    fn ipv6_addresses_of_one_prefix_count_together() {
        let mut tr = Tracker::new(policy());
        tr.failure(ip("2001:db8:1:2::1"), t(0), Mode::Live);
        tr.failure(ip("2001:db8:1:2::2"), t(1), Mode::Live);
        let Verdict::Ban(d) = tr.failure(ip("2001:db8:1:2::3"), t(2), Mode::Live) else {
            panic!()
        };
        assert_eq!(d.target.to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn escalates_and_caps() {
        let mut p = policy();
        p.escalation = Some(Escalation {
            growth: Growth::Factor(2.0),
            maxtime: Some(Duration::from_secs(1800)),
            forget_after: Duration::from_secs(86_400),
            random_extra: None,
            overall_jails: false,
        });
        let mut tr = Tracker::new(p);
        let a = ip("203.0.113.5");
        let mut lengths = Vec::new();
        let mut now = 0;
        for _ in 0..4 {
            let v = (0..3)
                .map(|_| tr.failure(a, t(now), Mode::Live))
                .last()
                .unwrap();
            let Verdict::Ban(d) = v else { panic!("{v:?}") };
            lengths.push((d.offence, d.bantime));
            now += 2000;
            assert_eq!(tr.take_expired(t(now)), vec![d.target]);
        }
        let secs = |s| BanTime::For(Duration::from_secs(s));
        assert_eq!(
            lengths,
            vec![
                (1, secs(600)),
                (2, secs(1200)),
                (3, secs(1800)),
                (4, secs(1800))
            ]
        );
    }

    #[test]
    fn multipliers_repeat_the_last() {
        let esc = Escalation {
            growth: Growth::Multipliers(vec![1.0, 5.0, 30.0]),
            maxtime: None,
            forget_after: Duration::from_secs(1),
            random_extra: None,
            overall_jails: false,
        };
        let base = BanTime::For(Duration::from_secs(60));
        assert_eq!(esc.bantime(base, 1), base);
        assert_eq!(esc.bantime(base, 2), BanTime::For(Duration::from_secs(300)));
        assert_eq!(
            esc.bantime(base, 9),
            BanTime::For(Duration::from_secs(1800))
        );
        assert_eq!(esc.bantime(BanTime::Permanent, 2), BanTime::Permanent);
    }

    #[test]
    fn random_extra_lengthens_each_ban_by_at_most_its_value() {
        let extra = Duration::from_secs(100);
        let esc = Escalation {
            growth: Growth::Factor(2.0),
            maxtime: Some(Duration::from_secs(600)),
            forget_after: Duration::from_secs(86_400),
            random_extra: Some(extra),
            overall_jails: false,
        };
        let base = BanTime::For(Duration::from_secs(600));
        let secs = |s: f64| BanTime::For(Duration::from_secs_f64(s));
        assert_eq!(esc.with_random_extra(base, 0.0), base);
        assert_eq!(esc.with_random_extra(base, 0.5), secs(650.0));
        // Added after maxtime, as fail2ban does.
        assert_eq!(
            esc.with_random_extra(esc.bantime(base, 3), 0.25),
            secs(625.0)
        );
        assert_eq!(
            esc.with_random_extra(BanTime::Permanent, 0.5),
            BanTime::Permanent
        );
        // Through the tracker: every ban within [bantime, bantime + extra), not all equal.
        let mut p = policy();
        p.escalation = Some(esc);
        let mut tr = Tracker::new(p);
        let mut lengths = BTreeSet::new();
        for i in 0..20u8 {
            let d = tr
                .ban_manually(
                    ip(&format!("198.51.100.{i}")).into(),
                    WidestBan::HOSTS,
                    t(0),
                    None,
                )
                .unwrap();
            let BanTime::For(length) = d.bantime else {
                panic!("{d:?}")
            };
            assert!(length >= Duration::from_secs(600) && length < Duration::from_secs(700));
            lengths.insert(length);
        }
        assert!(lengths.len() > 1, "{lengths:?}");
    }

    #[test]
    fn offences_elsewhere_count_only_with_overall_jails() {
        let escalation = |overall_jails| Escalation {
            growth: Growth::Factor(2.0),
            maxtime: None,
            forget_after: Duration::from_secs(86_400),
            random_extra: None,
            overall_jails,
        };
        let a = ip("2001:db8:7::1");
        // Another jail banned the address alone; this one bans /64s.
        let elsewhere = ban_target(a, 128);
        for (overall, offence) in [(true, 3), (false, 1)] {
            let mut p = policy();
            p.escalation = Some(escalation(overall));
            let mut tr = Tracker::new(p);
            assert_eq!(tr.counts_offences_of_all_jails(), overall);
            tr.offence_elsewhere(elsewhere, t(0));
            tr.offence_elsewhere(elsewhere, t(10));
            let d = tr
                .ban_manually(a.into(), WidestBan::HOSTS, t(1000), None)
                .unwrap();
            assert_eq!(d.target.to_string(), "2001:db8:7::/64");
            assert_eq!(d.offence, offence, "overall_jails = {overall}");
        }
        // Restored from another jail's history: the highest count is kept.
        let mut p = policy();
        p.escalation = Some(escalation(true));
        let mut tr = Tracker::new(p);
        tr.restore_offences(ban_target(a, 64), 1, t(5));
        tr.restore_offences_elsewhere(elsewhere, 3, t(0));
        tr.restore_offences_elsewhere(elsewhere, 2, t(8));
        assert_eq!(
            tr.ban_manually(a.into(), WidestBan::HOSTS, t(1000), None)
                .unwrap()
                .offence,
            4
        );
        let mut p = policy();
        p.escalation = Some(escalation(false));
        let mut tr = Tracker::new(p);
        tr.restore_offences_elsewhere(elsewhere, 3, t(0));
        assert_eq!(
            tr.ban_manually(a.into(), WidestBan::HOSTS, t(1000), None)
                .unwrap()
                .offence,
            1
        );
        // Offences older than forget_after are forgotten there too.
        let mut p = policy();
        p.escalation = Some(escalation(true));
        let mut tr = Tracker::new(p);
        tr.offence_elsewhere(elsewhere, t(0));
        let d = tr
            .ban_manually(a.into(), WidestBan::HOSTS, t(100_000), None)
            .unwrap();
        assert_eq!(d.offence, 1);
    }

    #[test]
    fn restored_offences_escalate_the_next_ban() {
        let mut p = policy();
        p.escalation = Some(Escalation {
            growth: Growth::Factor(2.0),
            maxtime: None,
            forget_after: Duration::from_secs(86_400),
            random_extra: None,
            overall_jails: false,
        });
        let mut tr = Tracker::new(p);
        let a = ip("198.51.100.7");
        tr.restore_offences(ban_target(a, 64), 2, t(0));
        let d = tr
            .ban_manually(a.into(), WidestBan::HOSTS, t(1000), None)
            .unwrap();
        assert_eq!(d.offence, 3);
        assert_eq!(d.bantime, BanTime::For(Duration::from_secs(2400)));
        // Without escalation there is nothing to remember.
        let mut plain = Tracker::new(policy());
        plain.restore_offences(ban_target(a, 64), 2, t(0));
        assert_eq!(
            plain
                .ban_manually(a.into(), WidestBan::HOSTS, t(1000), None)
                .unwrap()
                .offence,
            1
        );
    }

    #[test]
    fn replay_rebuilds_windows_without_banning() {
        let mut tr = Tracker::new(policy());
        let a = ip("198.51.100.8");
        tr.failure(a, t(0), Mode::Replay);
        tr.failure(a, t(1), Mode::Replay);
        assert_eq!(tr.totals(), Totals::default());
        // The third failure is live: it completes the rebuilt window.
        assert!(matches!(tr.failure(a, t(2), Mode::Live), Verdict::Ban(_)));
        // A replayed window that reached maxretry had its ban already: it starts afresh.
        let b = ip("198.51.100.9");
        for s in 0..3 {
            tr.failure(b, t(s), Mode::Replay);
        }
        assert_eq!(
            tr.failure(b, t(4), Mode::Live),
            Verdict::Counted { failures: 1 }
        );
    }

    #[test]
    fn a_ban_lifted_by_the_wall_clock_still_covers_older_log_times() {
        // Catching up on old entries: the ban (t(2) to t(602)) is lifted by the wall clock
        // while the log read so far is at t(100).
        let mut tr = Tracker::new(policy());
        let a = ip("198.51.100.10");
        for s in 0..3 {
            tr.failure(a, t(s), Mode::Live);
        }
        tr.failure(ip("198.51.100.11"), t(100), Mode::Live);
        assert_eq!(tr.take_expired(t(10_000)), vec![ban_target(a, 64)]);
        // Failures logged during the ban still do not count, as in a run where the lift came
        // after them; from its end on they do.
        assert_eq!(tr.failure(a, t(300), Mode::Live), Verdict::AlreadyBanned);
        assert_eq!(tr.failure(a, t(601), Mode::Live), Verdict::AlreadyBanned);
        assert_eq!(
            tr.failure(a, t(602), Mode::Live),
            Verdict::Counted { failures: 1 }
        );
        // The same for a ban restored that way after a restart, in replay as when live.
        let mut restarted = Tracker::new(policy());
        restarted.restore_lifted(ban_target(a, 64), t(602));
        restarted.failure(a, t(400), Mode::Replay);
        assert_eq!(
            restarted.failure(a, t(500), Mode::Live),
            Verdict::AlreadyBanned
        );
        assert_eq!(
            restarted.failure(a, t(700), Mode::Live),
            Verdict::Counted { failures: 1 }
        );
        // Live, the log is at the wall clock: nothing is kept.
        let mut live = Tracker::new(policy());
        for s in 0..3 {
            live.failure(a, t(s), Mode::Live);
        }
        live.failure(ip("198.51.100.11"), t(700), Mode::Live);
        live.take_expired(t(700));
        assert!(live.lifted.is_empty());
    }

    #[test]
    fn expiry_is_ordered_and_unban_cancels_it() {
        let mut tr = Tracker::new(policy());
        let d1 = tr
            .ban_manually(ip("198.51.100.1").into(), WidestBan::HOSTS, t(0), None)
            .unwrap();
        let d2 = tr
            .ban_manually(
                ip("198.51.100.2").into(),
                WidestBan::HOSTS,
                t(0),
                Some(BanTime::For(Duration::from_secs(60))),
            )
            .unwrap();
        let d3 = tr
            .ban_manually(
                ip("198.51.100.3").into(),
                WidestBan::HOSTS,
                t(0),
                Some(BanTime::Permanent),
            )
            .unwrap();
        assert_eq!(tr.next_expiry(), Some(t(60)));
        assert!(tr.unban(&d2.target));
        assert!(!tr.unban(&d2.target));
        assert_eq!(tr.next_expiry(), Some(t(600)));
        assert_eq!(tr.take_expired(t(599)), vec![]);
        assert_eq!(tr.take_expired(t(600)), vec![d1.target]);
        assert!(tr.active_ban(&d3.target).is_some());
        assert_eq!(tr.next_expiry(), None);
    }

    #[test]
    fn a_burst_of_expiries_is_taken_in_bounded_steps_earliest_first() {
        let mut tr = Tracker::new(policy());
        let targets: Vec<IpNet> = (0..5u8)
            .map(|i| {
                let ban = Some(BanTime::For(Duration::from_secs(60 + u64::from(i))));
                tr.ban_manually(
                    ip(&format!("198.51.100.{i}")).into(),
                    WidestBan::HOSTS,
                    t(0),
                    ban,
                )
                .unwrap()
                .target
            })
            .collect();
        assert_eq!(tr.take_expired_at_most(t(100), 2), targets[..2]);
        // The rest stay due, for the next step.
        assert_eq!(tr.next_expiry(), Some(t(62)));
        assert_eq!(tr.take_expired_at_most(t(100), 2), targets[2..4]);
        assert_eq!(tr.take_expired_at_most(t(100), 2), targets[4..]);
        assert_eq!(tr.take_expired_at_most(t(100), 2), vec![]);
        assert_eq!(tr.active_bans().count(), 0);
    }

    #[test]
    fn memory_is_bounded() {
        let mut p = policy();
        p.max_tracked = 100;
        p.maxretry = 1000;
        let mut tr = Tracker::new(p);
        for i in 0..10_000u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0xC633_0000 + i));
            tr.failure(a, t(i64::from(i % 50)), Mode::Live);
            assert!(tr.currently_failing() <= 100);
        }
        assert!(tr.totals().evicted >= 9_900);
    }

    #[test]
    fn subnets_are_counted_and_banned_as_one() {
        let mut tr = Tracker::new(policy());
        let net: IpNet = "198.51.100.0/24".parse().unwrap();
        for _ in 0..2 {
            assert!(matches!(
                tr.failure(net, t(0), Mode::Live),
                Verdict::Counted { .. }
            ));
        }
        match tr.failure(
            "198.51.100.9/24".parse::<IpNet>().unwrap(),
            t(1),
            Mode::Live,
        ) {
            Verdict::Ban(d) => assert_eq!(d.target, net),
            other => panic!("{other:?}"),
        }
        // A narrow IPv6 subnet is widened to the jail's /64; one that holds an ignored
        // network is never banned.
        match Tracker::new(Policy {
            maxretry: 1,
            ..policy()
        })
        .failure(
            "2001:db8::ff00/120".parse::<IpNet>().unwrap(),
            t(0),
            Mode::Live,
        ) {
            Verdict::Ban(d) => assert_eq!(d.target, "2001:db8::/64".parse::<IpNet>().unwrap()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            tr.failure("192.0.0.0/16".parse::<IpNet>().unwrap(), t(0), Mode::Live),
            Verdict::Ignored(_)
        ));
    }
}
