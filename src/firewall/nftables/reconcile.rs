//! Reconcile: the kernel's view of banhound's table, read back over netlink, compared with
//! the jails set up and the bans in force, and repaired in one transaction.
//!
//! Why: the table lives in the kernel and anyone with CAP_NET_ADMIN can change it. An
//! admin's `nft flush ruleset` (or `systemctl restart nftables`, which loads a ruleset that
//! starts with one) deletes it, and every banned address gets through until the daemon
//! restarts; a ban or unban that failed (the table was gone at that moment, the kernel was
//! out of memory) is wrong until then too. The daemon calls this as soon as the kernel
//! announces someone else's change to the table (see `watch.rs`), and periodically as the
//! backstop, so such damage lasts at most one interval even when an announcement is lost.
//!
//! What is compared: the table; the base chains (`input`, and `forward` exactly while a jail
//! bans forwarded traffic: hook and priority); each chain's rules, each
//! reduced to its expressions and the attributes that decide what it matches and does (so
//! a deleted, added or edited rule is noticed, and handles or registers are not); each
//! jail's sets and their flags; and every element of every set, with its remaining timeout.
//! What is missing is re-created (objects as setup creates them, bans with the time they
//! have left), entries of bans no longer in force are removed, and all of it goes to the
//! kernel as one batch: packets never see a half-repaired table.
//!
//! Reading every element is not free: the kernel walks a hash set from its start for every
//! netlink message of a dump, so dumping 100,000 elements took 1.4-1.8 s here. So a full
//! check runs only when the ruleset may differ from what banhound last verified: the
//! kernel's ruleset generation (`NFT_MSG_GETGEN`) advances by one with every committed
//! transaction, anyone's. After a full check the generation is remembered, each of our own
//! commits advances it (see `NftablesBackend::commit`), and while the kernel still reports
//! it, nobody else changed anything and a reconcile is one round trip.

use super::{
    netlink, rules, set_flags, sets, shim, BaseChain, BatchBuilder, ElemOp, Family, KernelFeatures,
    NewElem, NftError, NftablesBackend, CHAIN_PRIORITY, EXPIRY_RACE_RETRIES, INET, TABLE, TABLE_C,
};
use crate::firewall::{count_of, BanEntry, JailRules, Repairs};
use ipnet::IpNet;
use nftnl::{ProtoFamily, Table};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// A ban with less than this left is not put back: its expiry lifts it at once anyway, and
/// the kernel may already have dropped its element a moment early.
const EXPIRING: Duration = Duration::from_secs(1);
/// An element whose kernel timeout is shorter than the ban's remaining time by more than
/// this is refreshed. Timeouts are set once per ban and then count down in step; the slack
/// covers rounding to milliseconds and the time between reading the clock and the kernel.
const TIMEOUT_SLACK: Duration = Duration::from_secs(5);

/// One of banhound's sets as it should be.
struct WantedSet {
    interval: bool,
    flags: u32,
    /// Bans to be present, with their remaining time.
    bans: BTreeMap<IpNet, Option<Duration>>,
    /// Every target in force, including those about to expire: an element of one of these
    /// is never removed.
    in_force: BTreeSet<IpNet>,
}

/// Element changes for one set.
#[derive(Default)]
struct SetRepair {
    interval: bool,
    /// Present in the kernel but no longer in force.
    stale: Vec<IpNet>,
    /// In force but missing.
    missing: Vec<(IpNet, Option<Duration>)>,
    /// In force, but the kernel would drop it too early.
    short: Vec<(IpNet, Option<Duration>)>,
}

impl NftablesBackend {
    /// See the module documentation. Retried when an element expired between the dump and
    /// the batch that deletes it (which fails the batch with `ENOENT`, applying nothing).
    pub(super) fn do_reconcile(&mut self, bans: &[BanEntry]) -> Result<Repairs, NftError> {
        let mut attempt = 0;
        loop {
            match self.reconcile_once(bans) {
                Err(e) if e.is_only(libc::ENOENT) && attempt < EXPIRY_RACE_RETRIES => attempt += 1,
                result => return result,
            }
        }
    }

    fn reconcile_once(&mut self, bans: &[BanEntry]) -> Result<Repairs, NftError> {
        let jails = self.rules.clone();
        if jails.is_empty() {
            return Ok(Repairs::default());
        }
        let generation = self.generation()?;
        if self.verified_gen == Some(generation) {
            return Ok(Repairs::default());
        }
        self.verified_gen = None;
        let mut wanted = wanted_sets(&jails, bans)?;

        let table_present = self
            .socket
            .dump(|seq| shim::get_table_request(TABLE_C, INET, seq), |_| {})?;
        let existing = if table_present {
            self.dump_sets()?
        } else {
            Vec::new()
        };
        let mut problems = Vec::new();
        let mut objects = Vec::new();
        if table_present {
            for chain in BaseChain::ALL {
                self.check_chain(chain, &jails, &mut problems, &mut objects)?;
            }
        } else {
            objects.push(format!("table inet {TABLE}"));
        }
        let mut recreated: BTreeSet<String> = BTreeSet::new();
        for (name, set) in &wanted {
            match existing.iter().find(|s| &s.name == name) {
                Some(s) if s.flags == set.flags => {}
                Some(_) => {
                    problems.push(format!("set {name} had the wrong flags"));
                    recreated.insert(name.clone());
                }
                None => {
                    if table_present {
                        problems.push(format!("set {name} missing"));
                    }
                    recreated.insert(name.clone());
                }
            }
        }
        objects.extend(recreated.iter().map(|name| format!("set {name}")));

        let mut changes: BTreeMap<String, SetRepair> = BTreeMap::new();
        for (name, set) in &mut wanted {
            let mut change = SetRepair {
                interval: set.interval,
                ..SetRepair::default()
            };
            if recreated.contains(name) {
                change.missing = std::mem::take(&mut set.bans).into_iter().collect();
            } else {
                let (present, _foreign) = sets::decode(self.dump_elements(name)?, set.interval);
                let present: BTreeMap<IpNet, Option<Duration>> = present
                    .into_iter()
                    .map(|d| (d.target, d.remaining))
                    .collect();
                for (target, timeout) in &set.bans {
                    match present.get(target) {
                        None => change.missing.push((*target, *timeout)),
                        Some(kernel) if expires_too_early(*kernel, *timeout) => {
                            change.short.push((*target, *timeout))
                        }
                        Some(_) => {}
                    }
                }
                change.stale = present
                    .keys()
                    .filter(|t| !set.in_force.contains(t))
                    .copied()
                    .collect();
            }
            changes.insert(name.clone(), change);
        }
        let missing: usize = changes.values().map(|c| c.missing.len()).sum();
        let short: usize = changes.values().map(|c| c.short.len()).sum();
        let stale: usize = changes.values().map(|c| c.stale.len()).sum();
        // A change made while we read (an admin's, a rule adding to a set) may have been
        // seen half: then nothing counts as verified, and the next reconcile reads again.
        let unchanged = self.generation()? == generation;
        let structural = !table_present || !problems.is_empty();
        if !structural && missing + short + stale == 0 {
            if unchanged {
                self.verified_gen = Some(generation);
            }
            return Ok(Repairs::default());
        }

        let mut batch = if structural {
            self.setup_batch(&jails, &existing)?
        } else {
            BatchBuilder::new()
        };
        // Without probed features (the table was never there), the conservative paths
        // work on every kernel: delete what the dump showed, remove before re-adding.
        let features = self.features.unwrap_or(KernelFeatures {
            timeout_update: false,
            destroy_element: false,
        });
        for (name, change) in &changes {
            let mut removals: Vec<NewElem> = change
                .stale
                .iter()
                .flat_map(|t| sets::encode(t, change.interval, None))
                .collect();
            if !features.timeout_update {
                removals.extend(
                    change
                        .short
                        .iter()
                        .flat_map(|(t, _)| sets::encode(t, change.interval, None)),
                );
            }
            let op = if features.destroy_element {
                ElemOp::Destroy
            } else {
                ElemOp::Delete
            };
            netlink::add_elements(&mut batch, TABLE_C, name, INET, op, &removals)?;
            let adds: Vec<NewElem> = change
                .missing
                .iter()
                .chain(&change.short)
                .flat_map(|(t, timeout)| sets::encode(t, change.interval, *timeout))
                .collect();
            netlink::add_elements(&mut batch, TABLE_C, name, INET, ElemOp::Add, &adds)?;
        }
        if unchanged {
            // Verified as of `generation`; the commit advances it by its own change.
            self.verified_gen = Some(generation);
        }
        self.commit(batch)?;
        if structural {
            self.set_up(&jails);
        }

        let message = if !table_present {
            format!(
                "nftables table inet {TABLE} was missing: re-created with {}",
                count_of(missing, "ban", "bans")
            )
        } else if structural {
            format!(
                "nftables table inet {TABLE} was damaged ({}): repaired, {} put back",
                problems.join(", "),
                count_of(missing + short, "ban", "bans")
            )
        } else {
            let mut parts = Vec::new();
            if missing > 0 {
                parts.push(format!(
                    "{} missing from banhound's sets: put back",
                    count_of(missing, "ban was", "bans were")
                ));
            }
            if short > 0 {
                parts.push(format!(
                    "{} a shorter timeout in the kernel than the ban: refreshed",
                    count_of(short, "ban had", "bans had")
                ));
            }
            if stale > 0 {
                parts.push(format!(
                    "{} no longer in force still in banhound's sets: removed",
                    count_of(stale, "ban was", "bans were")
                ));
            }
            format!("nftables: {}", parts.join("; "))
        };
        Ok(Repairs {
            message,
            objects,
            restored: missing + short,
            removed: stale,
        })
    }

    /// Checks one base chain and its rules (or, for a chain no jail needs, that it is
    /// absent); what is wrong goes to `problems` (for the log) and `objects`.
    fn check_chain(
        &mut self,
        base: BaseChain,
        jails: &[JailRules],
        problems: &mut Vec<String>,
        objects: &mut Vec<String>,
    ) -> Result<(), NftError> {
        let name = base.name();
        let mut chain = None;
        let found = self.socket.dump(
            |seq| shim::get_chain_request(TABLE_C, base.c_name(), INET, seq),
            |msg| {
                if let Some(c) = shim::parse_chain(msg) {
                    chain = Some(c);
                }
            },
        )?;
        let chain = chain.filter(|_| found);
        if !base.wanted(jails) {
            // A jail stopped banning forwarded traffic while the daemon could not set up,
            // or someone added it: setup deletes it.
            if chain.is_some() {
                problems.push(format!("chain {name} banhound did not write"));
            }
            return Ok(());
        }
        match chain {
            None => {
                problems.push(format!("chain {name} missing"));
                objects.push(format!("chain {name}"));
                return Ok(());
            }
            // Not repairable in the same batch (the kernel cannot move a chain to another
            // hook): said clearly, and the batch that tries fails with the kernel's reason.
            Some(c) if c.hook != Some(base.hook_number()) || c.priority != Some(CHAIN_PRIORITY) => {
                problems.push(format!(
                    "chain {name} is not a base chain on the {name} hook at priority {CHAIN_PRIORITY}"
                ));
            }
            Some(_) => {}
        }
        let mut present = Vec::new();
        let mut malformed = false;
        self.socket.dump(
            |seq| shim::get_rules_request(TABLE_C, base.c_name(), INET, seq),
            |msg| match shim::parse_rule(msg) {
                Some(rule) if rule.chain == name => present.push(rule.signature),
                Some(_) => {}
                None => malformed = true,
            },
        )?;
        if malformed {
            return Err(NftError::Malformed(format!(
                "a rule of chain {name} could not be parsed"
            )));
        }
        let expected = expected_rules(base, jails)?;
        let (missing, unexpected) = multiset_difference(&expected, &present);
        // The input chain's counts keep the words they always had; the forward chain's say
        // whose they are.
        let of = match base {
            BaseChain::Input => String::new(),
            BaseChain::Forward => format!(" of chain {name}"),
        };
        if missing > 0 {
            problems.push(format!(
                "{missing} of {}{of} missing",
                count_of(expected.len(), "rule", "rules")
            ));
            objects.push(format!("{}{of}", count_of(missing, "rule", "rules")));
        }
        if unexpected > 0 {
            problems.push(format!(
                "{}{of} banhound did not write",
                count_of(unexpected, "rule", "rules")
            ));
        }
        Ok(())
    }
}

/// The sets the jails need, with the bans that belong in each.
fn wanted_sets(
    jails: &[JailRules],
    bans: &[BanEntry],
) -> Result<BTreeMap<String, WantedSet>, NftError> {
    let mut wanted = BTreeMap::new();
    let mut interval_of = HashMap::new();
    for jail in jails {
        interval_of.insert(jail.jail.as_str(), jail.prefix_bans);
        for family in Family::BOTH {
            let name = sets::set_name(&jail.jail, family)
                .ok_or_else(|| NftError::JailName(jail.jail.clone()))?;
            wanted.insert(
                name,
                WantedSet {
                    interval: jail.prefix_bans,
                    flags: set_flags(jail),
                    bans: BTreeMap::new(),
                    in_force: BTreeSet::new(),
                },
            );
        }
    }
    for ban in bans {
        let Some(&interval) = interval_of.get(ban.jail.as_str()) else {
            continue;
        };
        let target = ban.target.trunc();
        // A network in a host set cannot be there (the ban itself was refused).
        if !interval && target.prefix_len() != target.max_prefix_len() {
            continue;
        }
        let Some(set) =
            sets::set_name(&ban.jail, Family::of(&target)).and_then(|name| wanted.get_mut(&name))
        else {
            continue;
        };
        set.in_force.insert(target);
        if ban.timeout.is_none_or(|left| left >= EXPIRING) {
            set.bans.insert(target, ban.timeout);
        }
    }
    Ok(wanted)
}

/// Whether an element with `kernel` left would leave before a ban with `wanted` left ends.
fn expires_too_early(kernel: Option<Duration>, wanted: Option<Duration>) -> bool {
    match (kernel, wanted) {
        (Some(_), None) => true,
        (Some(kernel), Some(wanted)) => kernel + TIMEOUT_SLACK < wanted,
        (None, _) => false,
    }
}

/// The signatures of the rules setup writes into `base` for `jails`, built by the same code
/// and read back by the same parser as the kernel's rules.
fn expected_rules(base: BaseChain, jails: &[JailRules]) -> Result<Vec<String>, NftError> {
    let table = Table::new(TABLE_C, ProtoFamily::Inet);
    let chain = base.build(&table);
    let mut out = Vec::new();
    for jail in jails.iter().filter(|j| base.used_by(j.chains)) {
        let name = |family| {
            sets::set_name(&jail.jail, family)
                .and_then(|n| shim::c_name(&n))
                .ok_or_else(|| NftError::JailName(jail.jail.clone()))
        };
        let (c4, c6) = (name(Family::V4)?, name(Family::V6)?);
        let set4 = nftnl::set::Set::<Ipv4Addr>::new_named(&c4, 0, &table, ProtoFamily::Inet);
        let set6 = nftnl::set::Set::<Ipv6Addr>::new_named(&c6, 0, &table, ProtoFamily::Inet);
        for spec in rules::jail_rules(&jail.ports, jail.blocktype, base) {
            let rule = match spec.family {
                Family::V4 => rules::build(&chain, &set4, &spec),
                Family::V6 => rules::build(&chain, &set6, &spec),
            };
            let parsed = shim::parse_rule(&shim::render_rule(&rule)).ok_or_else(|| {
                NftError::Malformed(format!("rule of jail {} could not be read back", jail.jail))
            })?;
            out.push(parsed.signature);
        }
    }
    Ok(out)
}

/// How many of `expected` are not in `present`, and how many of `present` are not in
/// `expected`, counting duplicates.
fn multiset_difference(expected: &[String], present: &[String]) -> (usize, usize) {
    let mut counts: HashMap<&str, isize> = HashMap::new();
    for e in expected {
        *counts.entry(e).or_default() += 1;
    }
    for p in present {
        *counts.entry(p).or_default() -= 1;
    }
    let missing = counts
        .values()
        .filter(|c| **c > 0)
        .map(|c| *c as usize)
        .sum();
    let unexpected = counts
        .values()
        .filter(|c| **c < 0)
        .map(|c| (-*c) as usize)
        .sum();
    (missing, unexpected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::{BlockType, PortRange, Ports, Protocol};

    fn jail(name: &str, prefix_bans: bool) -> JailRules {
        JailRules {
            jail: name.into(),
            ports: Ports::Only {
                protocols: vec![Protocol::Tcp],
                ports: vec![PortRange {
                    first: 22,
                    last: 22,
                }],
            },
            blocktype: BlockType::Reject,
            prefix_bans,
            chains: crate::firewall::Chains::INPUT,
        }
    }

    fn ban(jail: &str, target: &str, secs: Option<u64>) -> BanEntry {
        BanEntry {
            jail: jail.into(),
            target: target.parse().unwrap(),
            timeout: secs.map(Duration::from_secs),
        }
    }

    #[test]
    fn rule_signatures_name_what_a_rule_matches_and_does() {
        let rules = expected_rules(BaseChain::Input, &[jail("sshd", false)]).unwrap();
        assert_eq!(rules.len(), 2);
        assert!(rules[0].contains("lookup sshd-v4"), "{}", rules[0]);
        assert!(rules[1].contains("lookup sshd-v6"), "{}", rules[1]);
        // The port (22, big-endian) and the verdict are part of it; set ids are not.
        assert!(rules[0].contains("cmp 00000000 0016"), "{}", rules[0]);
        assert!(rules[0].ends_with("reject 01000000"), "{}", rules[0]);
        let other_port = JailRules {
            ports: Ports::Only {
                protocols: vec![Protocol::Tcp],
                ports: vec![PortRange {
                    first: 2222,
                    last: 2222,
                }],
            },
            ..jail("sshd", false)
        };
        assert_ne!(
            expected_rules(BaseChain::Input, &[other_port]).unwrap(),
            rules
        );
        // A jail that bans on input only has no rule in forward; one that bans on forward
        // too has its port rules there twice, once on the port before DNAT (`ct`).
        assert!(expected_rules(BaseChain::Forward, &[jail("sshd", false)])
            .unwrap()
            .is_empty());
        let gateway = JailRules {
            chains: crate::firewall::Chains {
                input: false,
                forward: true,
            },
            ..jail("sshd", false)
        };
        assert!(
            expected_rules(BaseChain::Input, std::slice::from_ref(&gateway))
                .unwrap()
                .is_empty()
        );
        let forward = expected_rules(BaseChain::Forward, &[gateway]).unwrap();
        assert_eq!(forward.len(), 4);
        assert_eq!(forward[0], rules[0]);
        // Key 12 (proto-dst), direction 0 (original).
        assert!(forward[1].contains("ct 0c000000 00;"), "{}", forward[1]);
    }

    #[test]
    fn wanted_sets_keep_expiring_bans_in_force_without_putting_them_back() {
        let jails = [jail("sshd", false), jail("web", true)];
        let bans = [
            ban("sshd", "192.0.2.1/32", Some(600)),
            ban("sshd", "192.0.2.2/32", Some(0)),
            ban("sshd", "2001:db8::/64", Some(600)),
            ban("web", "2001:db8:1::/64", None),
            ban("gone", "192.0.2.3/32", Some(600)),
        ];
        let wanted = wanted_sets(&jails, &bans).unwrap();
        assert_eq!(
            wanted.keys().collect::<Vec<_>>(),
            ["sshd-v4", "sshd-v6", "web-v4", "web-v6"]
        );
        let sshd4 = &wanted["sshd-v4"];
        assert_eq!(sshd4.bans.len(), 1);
        assert_eq!(sshd4.in_force.len(), 2);
        // A network cannot be in a host set: not expected there.
        assert!(wanted["sshd-v6"].in_force.is_empty());
        assert_eq!(wanted["web-v6"].bans.values().next(), Some(&None));
        assert_ne!(wanted["web-v6"].flags, sshd4.flags);
    }

    #[test]
    fn early_expiry_is_judged_with_slack() {
        let s = Duration::from_secs;
        assert!(expires_too_early(Some(s(10)), None));
        assert!(expires_too_early(Some(s(10)), Some(s(600))));
        assert!(!expires_too_early(Some(s(598)), Some(s(600))));
        assert!(!expires_too_early(None, Some(s(600))));
        assert!(!expires_too_early(None, None));
    }

    /// Runs `f` on a thread in a network namespace of its own (a fresh, empty ruleset),
    /// gone when the thread ends: nothing to clean up, even if the test process is killed.
    /// `nft`, spawned from that thread, sees the same namespace. Needs root.
    fn in_private_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: unshare only changes this thread's network namespace.
                    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
                    assert_eq!(
                        rc,
                        0,
                        "unshare(CLONE_NEWNET) (needs root): {}",
                        std::io::Error::last_os_error()
                    );
                    f()
                })
                .join()
                .unwrap()
        })
    }

    fn nft(args: &str) -> String {
        let out = std::process::Command::new("nft")
            .args(args.split(' '))
            .output()
            .expect("nft");
        assert!(
            out.status.success(),
            "nft {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn run<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    fn sorted(mut bans: Vec<BanEntry>) -> Vec<(String, IpNet)> {
        bans.sort_by(|a, b| (&a.jail, a.target).cmp(&(&b.jail, b.target)));
        bans.into_iter().map(|b| (b.jail, b.target)).collect()
    }

    #[test]
    fn reconcile_repairs_what_an_admin_flushed_deleted_or_added() {
        use crate::firewall::Firewall;
        in_private_netns(|| {
            let mut fw = NftablesBackend::new().unwrap();
            let jails = [jail("sshd", false), jail("web", true)];
            run(fw.setup(&jails)).unwrap();
            let bans = vec![
                ban("sshd", "192.0.2.1/32", Some(600)),
                ban("sshd", "192.0.2.2/32", None),
                ban("sshd", "2001:db8::5/128", Some(3600)),
                ban("web", "2001:db8:1::/64", Some(600)),
                ban("web", "198.51.100.0/24", None),
            ];
            run(fw.ban(&bans)).unwrap();
            let expected = sorted(bans.clone());
            let listed = |fw: &mut NftablesBackend| sorted(run(fw.list()).unwrap());
            let check = |fw: &mut NftablesBackend, bans: &[BanEntry]| {
                let repairs = run(fw.reconcile(bans)).unwrap();
                assert_eq!(listed(fw), expected, "after: {}", repairs.message);
                // Repaired means nothing is left to repair.
                let again = run(fw.reconcile(bans)).unwrap();
                assert!(again.is_empty(), "{again:?}");
                repairs
            };

            let intact = run(fw.reconcile(&bans)).unwrap();
            assert!(intact.is_empty(), "{intact:?}");
            // Verified now; our own commits keep it verified, so the next reconcile is one
            // round trip; anyone else's change (nft below) makes it read everything again.
            let verified = fw.verified_gen.expect("verified after a full check");
            assert_eq!(fw.generation().unwrap(), verified);
            run(fw.ban(&[ban("sshd", "192.0.2.77/32", Some(60))])).unwrap();
            run(fw.unban("sshd", &["192.0.2.77/32".parse().unwrap()])).unwrap();
            assert_eq!(fw.verified_gen, Some(verified.wrapping_add(2)));
            nft("list ruleset");
            assert_eq!(fw.generation().unwrap(), verified.wrapping_add(2));
            nft("add table ip someone_else");
            nft("delete table ip someone_else");
            assert!(run(fw.reconcile(&bans)).unwrap().is_empty());
            assert_eq!(fw.verified_gen, Some(verified.wrapping_add(4)));

            nft("flush ruleset");
            assert!(listed(&mut fw).is_empty());
            let repairs = check(&mut fw, &bans);
            assert_eq!(
                repairs.message,
                "nftables table inet banhound was missing: re-created with 5 bans"
            );
            assert_eq!((repairs.restored, repairs.removed), (5, 0));
            assert!(
                nft("list chain inet banhound input").contains("hook input priority filter - 10")
            );
            // Re-created with the time left, not the full ban time, and permanent stays so.
            let remaining = run(fw.list()).unwrap();
            let of = |t: &str| {
                remaining
                    .iter()
                    .find(|b| b.target == t.parse::<IpNet>().unwrap())
                    .unwrap()
                    .timeout
            };
            assert!(of("192.0.2.1/32").unwrap() <= Duration::from_secs(600));
            assert_eq!(of("192.0.2.2/32"), None);

            nft("delete table inet banhound");
            let repairs = check(&mut fw, &bans);
            assert_eq!(
                repairs.message,
                "nftables table inet banhound was missing: re-created with 5 bans"
            );

            nft("flush chain inet banhound input");
            let repairs = check(&mut fw, &bans);
            assert_eq!(
                repairs.message,
                "nftables table inet banhound was damaged (4 of 4 rules missing): repaired, 0 bans put back"
            );
            assert_eq!(repairs.objects, ["4 rules"]);

            let handle = nft("-a list chain inet banhound input")
                .lines()
                .find(|l| l.contains("@web-v6"))
                .and_then(|l| l.rsplit("handle ").next())
                .unwrap()
                .trim()
                .to_string();
            nft(&format!("delete rule inet banhound input handle {handle}"));
            nft("add rule inet banhound input ip saddr 203.0.113.1 accept");
            let repairs = check(&mut fw, &bans);
            assert_eq!(
                repairs.message,
                "nftables table inet banhound was damaged (1 of 4 rules missing, 1 rule banhound did not write): repaired, 0 bans put back"
            );
            assert!(!nft("list chain inet banhound input").contains("203.0.113.1"));

            // (Interval sets are only flushed here: nft would add its own interval-end
            // element at 0.0.0.0 to one, which list() reports as not banhound's.)
            nft("flush set inet banhound web-v6");
            nft("delete element inet banhound sshd-v6 { 2001:db8::5 }");
            nft("add element inet banhound sshd-v6 { 2001:db8::99 }");
            nft("delete element inet banhound sshd-v4 { 192.0.2.2 }");
            nft("add element inet banhound sshd-v4 { 192.0.2.2 timeout 5s }");
            let repairs = check(&mut fw, &bans);
            assert_eq!(
                repairs.message,
                "nftables: 2 bans were missing from banhound's sets: put back; 1 ban had a shorter timeout in the kernel than the ban: refreshed; 1 ban was no longer in force still in banhound's sets: removed"
            );
            assert_eq!((repairs.restored, repairs.removed), (3, 1));
            assert!(repairs.objects.is_empty());

            // A ban about to end is neither put back nor removed.
            let mut ending = bans.clone();
            ending[0].timeout = Some(Duration::from_millis(300));
            nft("delete element inet banhound sshd-v4 { 192.0.2.1 }");
            let repairs = run(fw.reconcile(&ending)).unwrap();
            assert!(repairs.is_empty(), "{repairs:?}");
            run(fw.ban(&bans[..1])).unwrap();
            let repairs = run(fw.reconcile(&ending)).unwrap();
            assert!(repairs.is_empty(), "{repairs:?}");

            // Other tables are the admin's: untouched by any of this.
            nft("add table ip admin");
            nft("add chain ip admin c");
            nft("add rule ip admin c ip saddr 192.0.2.1 accept");
            nft("delete table inet banhound");
            check(&mut fw, &bans);
            assert!(nft("list table ip admin").contains("ip saddr 192.0.2.1 accept"));
        });
    }

    #[test]
    fn multisets_count_duplicates() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            multiset_difference(&v(&["a", "a", "b"]), &v(&["a", "c"])),
            (2, 1)
        );
        assert_eq!(multiset_difference(&v(&["a"]), &v(&["a"])), (0, 0));
    }
}
