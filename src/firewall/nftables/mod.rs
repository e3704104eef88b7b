//! The nftables backend: bans as elements of kernel sets with kernel timeouts, over netlink.
//!
//! banhound owns one table, `inet banhound`, and nothing else: per jail an IPv4 and an IPv6
//! set (`flags timeout`, plus `interval` for jails with prefix bans), and a base chain
//! `input` (filter, hook input, priority -10 so it runs before the usual filter chains at 0,
//! policy accept) with the `saddr @set ... drop|reject` rules of each jail that bans on
//! input. When a jail also (or only) bans forwarded traffic (`chains = ["forward"]`), a
//! second base chain `forward` (hook forward, same priority) holds its rules; it exists
//! only while some jail uses it. A ban is a set element whose timeout is the ban's
//! remaining time, so bans expire in the kernel even while banhound is down, and a restart
//! only has to reconcile.
//!
//! Why the forward hook, for a gateway and a Docker host alike: DNAT (Docker's published
//! ports, a gateway's port forwards) happens in prerouting at priority -100 and sends a
//! packet for a container or an inner host to the forward hook, never to input, so only a
//! forward chain sees it. By then the source address is still the attacker's (masquerade
//! and SNAT come later, in postrouting) and the destination port may be the translated one,
//! so forward port rules also compare the port the connection was opened to (see
//! `rules.rs`). A prerouting chain before DNAT would see the original port but cannot tell
//! the host's own traffic from routed traffic without route lookups, and the kernel allows
//! `reject` only in input, forward and output. A drop in any base chain is final, so
//! Docker's own accepting rules (iptables-nft, `ip filter FORWARD` at priority 0) cannot
//! undo it.
//!
//! We talk netlink directly (libnftnl/libmnl) instead of running `nft`: a batch of any size
//! is one atomic transaction costing milliseconds, where a process per ban costs
//! milliseconds each. Kernel differences are probed at run time, not guessed from the
//! version (distribution kernels backport): whether re-adding an element updates its timeout
//! (newer kernels), and whether `DESTROYSETELEM` (delete-if-present, 6.3+) exists. Without
//! either (RHEL 9's 5.14, Debian 12's 6.1), a refresh or unban first reads which elements
//! exist, because deleting a missing element fails the whole batch.
//!
//! The socket belongs to the network namespace of the thread that created the backend, so
//! the backend works in whatever namespace it was made in (the tests rely on this).

mod netlink;
mod reconcile;
mod rules;
mod sets;
mod shim;
mod watch;

pub use netlink::{BatchStats, MessageInfo, Rejection};
pub use shim::ElemOp;
pub use watch::{Change, ChangeWatcher};

use crate::firewall::{BackendKind, BanEntry, Chains, Firewall, FirewallError, JailRules, Repairs};
use ipnet::IpNet;
use netlink::{BatchBuilder, NetlinkSocket};
use nftnl::{Chain, ChainType, Hook, MsgType, Policy, ProtoFamily, Table};
use sets::Family;
use shim::NewElem;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// The table banhound owns.
pub const TABLE: &str = "banhound";
const TABLE_C: &CStr = c"banhound";
/// Ahead of the conventional filter priority (0), so a banned packet is dropped before
/// other filter chains spend work on it.
pub const CHAIN_PRIORITY: i32 = -10;

/// banhound's base chains in its table, one per netfilter hook a jail can ban on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseChain {
    /// Traffic to this host; always present.
    Input,
    /// Traffic routed through this host; present while a jail bans on it.
    Forward,
}

impl BaseChain {
    pub const ALL: [BaseChain; 2] = [BaseChain::Input, BaseChain::Forward];

    /// The chain's name, which is also the hook's.
    pub fn name(self) -> &'static str {
        match self {
            BaseChain::Input => "input",
            BaseChain::Forward => "forward",
        }
    }

    fn c_name(self) -> &'static CStr {
        match self {
            BaseChain::Input => c"input",
            BaseChain::Forward => c"forward",
        }
    }

    fn hook(self) -> Hook {
        match self {
            BaseChain::Input => Hook::In,
            BaseChain::Forward => Hook::Forward,
        }
    }

    /// The hook's number as the kernel reports it (`NF_INET_LOCAL_IN`, `NF_INET_FORWARD`).
    fn hook_number(self) -> u32 {
        match self {
            BaseChain::Input => 1,
            BaseChain::Forward => 2,
        }
    }

    /// Whether a jail banning on `chains` has rules in this chain.
    pub fn used_by(self, chains: Chains) -> bool {
        match self {
            BaseChain::Input => chains.input,
            BaseChain::Forward => chains.forward,
        }
    }

    /// Whether the chain must exist for `jails`: input always (so a reconcile has one
    /// shape to check), forward only while a jail bans on it.
    fn wanted(self, jails: &[JailRules]) -> bool {
        self == BaseChain::Input || jails.iter().any(|j| self.used_by(j.chains))
    }

    /// The chain as setup creates it, in `table`.
    fn build<'t>(self, table: &'t Table) -> Chain<'t> {
        let mut chain = Chain::new(self.c_name(), table);
        chain.set_type(ChainType::Filter);
        chain.set_hook(self.hook(), CHAIN_PRIORITY);
        chain.set_policy(Policy::Accept);
        chain
    }
}
/// Default bound on every wait for the kernel.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// A set only the feature probe uses; its name is no jail's, so setup removes a leftover.
const PROBE_SET: &str = "banhound-probe";
const PROBE_SET_C: &CStr = c"banhound-probe";
/// How often a refresh or unban is retried when an element expired between reading the
/// set and deleting from it (the kernel then fails the batch with ENOENT).
const EXPIRY_RACE_RETRIES: usize = 3;
/// Up to this many hosts, the older-kernel path asks the kernel about each (cost grows with
/// the number of missing hosts); beyond, it reads the whole set (cost grows with the set).
const ASK_PER_ELEMENT_UP_TO: usize = 64;

const INET: u16 = ProtoFamily::Inet as u16;

/// Why an nftables operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot open a netfilter netlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("cannot send a batch of {messages} message(s), {bytes} bytes: {source}")]
    Send {
        bytes: usize,
        messages: usize,
        #[source]
        source: io::Error,
    },
    #[error("cannot receive from the kernel: {0}")]
    Receive(#[source] io::Error),
    #[error("the kernel did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the kernel refused the batch (nothing of it was applied): {}", describe_rejections(.0))]
    Rejected(Vec<Rejection>),
    #[error("jail name {0:?} cannot be turned into an nftables set name")]
    JailName(String),
    #[error("jail {0:?} has no protocol or no port to block")]
    NoPorts(String),
    #[error("jail {0:?} is not set up in the nftables backend")]
    UnknownJail(String),
    #[error("{target} is a network, but jail {jail:?} is not set up for prefix bans")]
    NeedsPrefixBans { jail: String, target: IpNet },
    #[error("unexpected data from the kernel: {0}")]
    Malformed(String),
    /// The kernel answered EPERM: no CAP_NET_ADMIN in the network namespace.
    #[error("{}", not_permitted_hint(.container.as_deref()))]
    NotPermitted {
        /// The kind of container (`docker`, `systemd-nspawn`) banhound runs in, if it does
        /// and the container lacks the capability itself.
        container: Option<String>,
    },
}

/// What to do about EPERM, in one message: which capability, and who must grant it.
fn not_permitted_hint(container: Option<&str>) -> String {
    let base = "the kernel refused access to nf_tables (Operation not permitted): banhound needs the CAP_NET_ADMIN capability";
    match container {
        Some(kind) => format!(
            "{base}, and it runs in a container ({kind}) that does not have it: the container must be given CAP_NET_ADMIN (e.g. `docker run --cap-add=NET_ADMIN`, `systemd-nspawn --capability=CAP_NET_ADMIN`)"
        ),
        None => format!(
            "{base}: run it as root with CAP_NET_ADMIN in its capability bounding set (as the shipped banhound.service does)"
        ),
    }
}

/// `CAP_NET_ADMIN`'s bit in /proc's capability masks.
const CAP_NET_ADMIN_BIT: u64 = 1 << 12;

/// The container banhound runs in, if it does and the container's init lacks CAP_NET_ADMIN
/// in its bounding set (then no process inside can have it); `None` on a host, or in a
/// container that has it (then it is banhound's own process that lacks it).
fn container_without_net_admin() -> Option<String> {
    let kind = container_kind()?;
    let init_has = std::fs::read_to_string("/proc/1/status")
        .ok()
        .and_then(|status| {
            let mask = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
            u64::from_str_radix(mask.trim(), 16).ok()
        })
        .is_some_and(|mask| mask & CAP_NET_ADMIN_BIT != 0);
    (!init_has).then_some(kind)
}

/// The kind of container this process runs in, as systemd, Docker and Podman mark it.
fn container_kind() -> Option<String> {
    if let Ok(kind) = std::fs::read_to_string("/run/systemd/container") {
        let kind = kind.trim();
        if !kind.is_empty() {
            return Some(kind.to_string());
        }
    }
    if let Some(kind) = std::env::var_os("container").filter(|k| !k.is_empty()) {
        return Some(kind.to_string_lossy().into_owned());
    }
    [("/.dockerenv", "docker"), ("/run/.containerenv", "podman")]
        .into_iter()
        .find(|(marker, _)| std::path::Path::new(marker).exists())
        .map(|(_, kind)| kind.to_string())
}

impl NftError {
    /// The errno of the first message the kernel refused, or of the failed system call.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NftError::Socket(e) | NftError::Receive(e) | NftError::Send { source: e, .. } => {
                e.raw_os_error()
            }
            NftError::Rejected(r) => r.first().map(|r| r.errno),
            NftError::Timeout(_) => Some(libc::ETIMEDOUT),
            NftError::NotPermitted { .. } => Some(libc::EPERM),
            _ => None,
        }
    }

    fn is_only(&self, errno: i32) -> bool {
        matches!(self, NftError::Rejected(r) if !r.is_empty() && r.iter().all(|r| r.errno == errno))
    }
}

fn describe_rejections(rejections: &[Rejection]) -> String {
    let parts: Vec<String> = rejections
        .iter()
        .map(|r| {
            let mut s = format!("{}: {}", r.message, io::Error::from_raw_os_error(r.errno));
            if let Some(addr) = r.element {
                s.push_str(&format!(" (element {addr})"));
            }
            if let Some(detail) = &r.detail {
                s.push_str(&format!(" ({detail})"));
            }
            s
        })
        .collect();
    parts.join("; ")
}

/// What the running kernel can do, probed once per backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelFeatures {
    /// Re-adding an existing element updates its timeout.
    pub timeout_update: bool,
    /// `NFT_MSG_DESTROYSETELEM` exists (delete, succeeding if missing).
    pub destroy_element: bool,
}

/// The targets of one call that go to one set.
struct SetChange {
    interval: bool,
    /// Target -> timeout (for bans).
    targets: BTreeMap<IpNet, Option<Duration>>,
}

/// The nftables backend. See the module documentation.
pub struct NftablesBackend {
    socket: NetlinkSocket,
    features: Option<KernelFeatures>,
    /// Jail name -> whether its sets are interval sets; from setup, or read from the kernel.
    jails: HashMap<String, bool>,
    /// The jails of the last setup: what a reconcile checks the kernel against.
    rules: Vec<JailRules>,
    /// The ruleset generation at which the kernel held exactly what banhound wants: set by
    /// a full reconcile, advanced by each of our own commits, cleared by anyone else's
    /// change. While the kernel's generation equals it, a reconcile has nothing to read.
    verified_gen: Option<u32>,
    next_set_id: u32,
}

impl NftablesBackend {
    /// Opens the backend in the calling thread's network namespace, with the default
    /// bound on waits for the kernel.
    pub fn new() -> Result<Self, NftError> {
        Self::with_timeout(DEFAULT_TIMEOUT)
    }

    /// As [`NftablesBackend::new`], waiting at most `timeout` for each kernel answer.
    pub fn with_timeout(timeout: Duration) -> Result<Self, NftError> {
        Ok(NftablesBackend {
            socket: NetlinkSocket::open(timeout)?,
            features: None,
            jails: HashMap::new(),
            rules: Vec::new(),
            verified_gen: None,
            next_set_id: 1,
        })
    }

    /// Size of the last batch sent to the kernel.
    pub fn last_batch(&self) -> BatchStats {
        self.socket.last_batch()
    }

    /// What the kernel supports, probing it on first use (needs the table: call after
    /// setup). Probing creates and removes a scratch set in banhound's table.
    pub fn kernel_features(&mut self) -> Result<KernelFeatures, NftError> {
        if let Some(f) = self.features {
            return Ok(f);
        }
        let features = self.probe()?;
        self.features = Some(features);
        Ok(features)
    }

    /// Overrides the probed features: to run the code paths for older kernels on a newer
    /// one (tests), or to work around a misdetection. Claiming a feature the kernel lacks
    /// makes bans fail.
    pub fn assume_kernel_features(&mut self, features: KernelFeatures) {
        self.features = Some(features);
    }

    fn set_id(&mut self) -> u32 {
        self.next_set_id = self.next_set_id.wrapping_add(1);
        self.next_set_id
    }

    fn probe(&mut self) -> Result<KernelFeatures, NftError> {
        let table = Table::new(TABLE_C, ProtoFamily::Inet);
        let id = self.set_id();
        let mut set =
            nftnl::set::Set::<Ipv4Addr>::new_named(PROBE_SET_C, id, &table, ProtoFamily::Inet);
        shim::set_flags(&mut set, shim::SET_FLAG_TIMEOUT);
        let probe_elem = |secs| NewElem {
            key: IpAddr::from([192, 0, 2, 1]),
            flags: 0,
            timeout: Some(Duration::from_secs(secs)),
        };
        let info = || MessageInfo::Object(format!("probe set {PROBE_SET}"));

        let mut batch = BatchBuilder::new();
        batch.add(&set, MsgType::Add, info());
        netlink::add_elements(
            &mut batch,
            TABLE_C,
            PROBE_SET,
            INET,
            ElemOp::Add,
            &[probe_elem(60)],
        )?;
        self.commit(batch)?;

        let result = self.probe_with_set(&probe_elem);
        let mut cleanup = BatchBuilder::new();
        cleanup.add(&set, MsgType::Del, info());
        let cleaned = self.commit(cleanup);
        let features = result?;
        cleaned?;
        Ok(features)
    }

    fn probe_with_set(
        &mut self,
        elem: &dyn Fn(u64) -> NewElem,
    ) -> Result<KernelFeatures, NftError> {
        // Re-add with a longer timeout: did the kernel take it?
        let mut batch = BatchBuilder::new();
        netlink::add_elements(
            &mut batch,
            TABLE_C,
            PROBE_SET,
            INET,
            ElemOp::Add,
            &[elem(3600)],
        )?;
        self.commit(batch)?;
        let elems = self.dump_elements(PROBE_SET)?;
        let timeout_update = elems.iter().any(|e| {
            e.expiration
                .is_some_and(|left| left > Duration::from_secs(60))
        });

        // Destroy a missing element: unknown message types fail (EINVAL, or EOPNOTSUPP).
        let missing = NewElem {
            key: IpAddr::from([192, 0, 2, 2]),
            flags: 0,
            timeout: None,
        };
        let mut batch = BatchBuilder::new();
        netlink::add_elements(
            &mut batch,
            TABLE_C,
            PROBE_SET,
            INET,
            ElemOp::Destroy,
            &[missing],
        )?;
        let destroy_element = match self.commit(batch) {
            Ok(()) => true,
            Err(e) if e.is_only(libc::EINVAL) || e.is_only(libc::EOPNOTSUPP) => false,
            Err(e) => return Err(e),
        };
        Ok(KernelFeatures {
            timeout_update,
            destroy_element,
        })
    }

    /// Sends a batch of ours as one transaction. Every committed transaction, anyone's,
    /// advances the kernel's ruleset generation by exactly one: if it moved by one since the
    /// verified generation, the only change was this one, and what was verified still holds
    /// with it. Anything else (another commit in between, a failed batch whose change the
    /// daemon still expects) leaves the next reconcile to read everything.
    fn commit(&mut self, batch: BatchBuilder) -> Result<(), NftError> {
        if batch.is_empty() {
            return Ok(());
        }
        let result = self.socket.transact(batch);
        self.verified_gen = match (self.verified_gen, &result) {
            (Some(verified), Ok(())) => self
                .generation()
                .ok()
                .filter(|now| *now == verified.wrapping_add(1)),
            _ => None,
        };
        result
    }

    /// The kernel's ruleset generation (`NFT_MSG_GETGEN`).
    fn generation(&mut self) -> Result<u32, NftError> {
        let mut generation = None;
        self.socket.dump(shim::get_gen_request, |msg| {
            if let Some(id) = shim::parse_gen(msg) {
                generation = Some(id);
            }
        })?;
        generation.ok_or_else(|| NftError::Malformed("no ruleset generation in the answer".into()))
    }

    fn dump_sets(&mut self) -> Result<Vec<shim::RawSet>, NftError> {
        let mut sets = Vec::new();
        let mut malformed = false;
        self.socket.dump(
            |seq| shim::get_sets_request(TABLE_C, INET, seq),
            |msg| match shim::parse_set(msg) {
                Some(s) => sets.push(s),
                None => malformed = true,
            },
        )?;
        if malformed {
            return Err(NftError::Malformed(
                "a set in the dump could not be parsed".into(),
            ));
        }
        Ok(sets)
    }

    fn dump_elements(&mut self, set: &str) -> Result<Vec<shim::RawElem>, NftError> {
        let c_set =
            shim::c_name(set).ok_or_else(|| NftError::Malformed(format!("set name {set:?}")))?;
        let mut elems = Vec::new();
        let mut malformed = false;
        self.socket.dump(
            |seq| shim::get_elems_request(TABLE_C, &c_set, INET, seq),
            |msg| match shim::parse_elems(msg) {
                Some(mut e) => elems.append(&mut e),
                None => malformed = true,
            },
        )?;
        if malformed {
            return Err(NftError::Malformed(format!(
                "elements of set {set} could not be parsed"
            )));
        }
        Ok(elems)
    }

    /// The jails whose sets exist in the kernel, with their interval flag.
    fn jails_in_kernel(&mut self) -> Result<HashMap<String, bool>, NftError> {
        let mut jails = HashMap::new();
        for set in self.dump_sets()? {
            if let Some((jail, _)) = sets::parse_set_name(&set.name) {
                jails.insert(jail, set.flags & shim::SET_FLAG_INTERVAL != 0);
            }
        }
        Ok(jails)
    }

    /// Whether `jail`'s sets are interval sets; `None` if it has none.
    fn jail_interval(&mut self, jail: &str) -> Result<Option<bool>, NftError> {
        if let Some(&interval) = self.jails.get(jail) {
            return Ok(Some(interval));
        }
        self.jails = self.jails_in_kernel()?;
        Ok(self.jails.get(jail).copied())
    }

    fn do_setup(&mut self, jails: &[JailRules]) -> Result<(), NftError> {
        let existing = self.dump_sets()?;
        let batch = self.setup_batch(jails, &existing)?;
        self.commit(batch)?;
        self.set_up(jails);
        Ok(())
    }

    /// Remembers what was set up, for bans (set flags) and reconciles (everything).
    fn set_up(&mut self, jails: &[JailRules]) {
        self.jails = jails
            .iter()
            .map(|j| (j.jail.clone(), j.prefix_bans))
            .collect();
        self.rules = jails.to_vec();
    }

    /// The messages that create (or repair) the table, the chain with exactly the jails'
    /// rules and the jails' sets, and delete the sets in `existing` that must go. Existing
    /// sets that stay keep their elements.
    fn setup_batch(
        &mut self,
        jails: &[JailRules],
        existing: &[shim::RawSet],
    ) -> Result<BatchBuilder, NftError> {
        let mut wanted: BTreeMap<String, (&JailRules, u32)> = BTreeMap::new();
        for jail in jails {
            for family in [Family::V4, Family::V6] {
                let name = sets::set_name(&jail.jail, family)
                    .ok_or_else(|| NftError::JailName(jail.jail.clone()))?;
                wanted.insert(name, (jail, set_flags(jail)));
            }
            if rules::jail_rules(&jail.ports, jail.blocktype, BaseChain::Input).is_empty() {
                return Err(NftError::NoPorts(jail.jail.clone()));
            }
        }
        // Sets that must go: of jails no longer configured, or with the wrong flags (a jail
        // that switched prefix bans on or off; the kernel cannot change a set's flags).
        let doomed: Vec<&str> = existing
            .iter()
            .filter(|s| {
                wanted
                    .get(&s.name)
                    .is_none_or(|(_, flags)| *flags != s.flags)
            })
            .map(|s| s.name.as_str())
            .collect();

        let table = Table::new(TABLE_C, ProtoFamily::Inet);
        let chains = BaseChain::ALL.map(|c| (c, c.build(&table), c.wanted(jails)));

        let mut batch = BatchBuilder::new();
        batch.add(
            &table,
            MsgType::Add,
            MessageInfo::Object(format!("table inet {TABLE}")),
        );
        for (base, chain, wanted) in &chains {
            let name = base.name();
            // Adding is a no-op for a chain that exists, so an unwanted one is added and
            // deleted: gone afterwards whether or not it was there, in one transaction.
            batch.add(
                chain,
                MsgType::Add,
                MessageInfo::Object(format!("chain {name}")),
            );
            // Without a handle, deleting a rule flushes the chain: the rules are rebuilt
            // below, in the same transaction, so there is no moment without them.
            batch.add(
                &nftnl::Rule::new(chain),
                MsgType::Del,
                MessageInfo::Object(format!("flush chain {name}")),
            );
            if !wanted {
                batch.add(
                    chain,
                    MsgType::Del,
                    MessageInfo::Object(format!("delete chain {name}")),
                );
            }
        }
        let mut doomed_sets = Vec::new();
        for name in &doomed {
            let c_name = shim::c_name(name)
                .ok_or_else(|| NftError::Malformed(format!("set name {name:?}")))?;
            // The key type does not matter for a deletion.
            doomed_sets.push((
                name,
                nftnl::set::Set::<Ipv4Addr>::new_named(&c_name, 0, &table, ProtoFamily::Inet),
            ));
        }
        for (name, set) in &doomed_sets {
            batch.add(
                set,
                MsgType::Del,
                MessageInfo::Object(format!("delete set {name}")),
            );
        }
        for jail in jails {
            let v4_name = sets::set_name(&jail.jail, Family::V4)
                .ok_or_else(|| NftError::JailName(jail.jail.clone()))?;
            let v6_name = sets::set_name(&jail.jail, Family::V6)
                .ok_or_else(|| NftError::JailName(jail.jail.clone()))?;
            let c = |n: &str| shim::c_name(n).ok_or_else(|| NftError::JailName(jail.jail.clone()));
            let (c4, c6) = (c(&v4_name)?, c(&v6_name)?);
            let flags = set_flags(jail);
            let (id4, id6) = (self.set_id(), self.set_id());
            let mut set4 =
                nftnl::set::Set::<Ipv4Addr>::new_named(&c4, id4, &table, ProtoFamily::Inet);
            let mut set6 =
                nftnl::set::Set::<Ipv6Addr>::new_named(&c6, id6, &table, ProtoFamily::Inet);
            shim::set_flags(&mut set4, flags);
            shim::set_flags(&mut set6, flags);
            batch.add(
                &set4,
                MsgType::Add,
                MessageInfo::Object(format!("set {v4_name}")),
            );
            batch.add(
                &set6,
                MsgType::Add,
                MessageInfo::Object(format!("set {v6_name}")),
            );
            for (base, chain, _) in chains.iter().filter(|(b, _, _)| b.used_by(jail.chains)) {
                for spec in rules::jail_rules(&jail.ports, jail.blocktype, *base) {
                    let rule = match spec.family {
                        Family::V4 => rules::build(chain, &set4, &spec),
                        Family::V6 => rules::build(chain, &set6, &spec),
                    };
                    batch.add(
                        &rule,
                        MsgType::Add,
                        MessageInfo::Object(format!(
                            "{} rule of jail {} ({spec:?})",
                            base.name(),
                            jail.jail
                        )),
                    );
                }
            }
        }
        Ok(batch)
    }

    /// Groups targets by set, checking each fits its set; later duplicates win.
    fn group(
        &mut self,
        entries: impl IntoIterator<Item = (String, IpNet, Option<Duration>)>,
        allow_unknown: bool,
    ) -> Result<BTreeMap<String, SetChange>, NftError> {
        let mut by_set: BTreeMap<String, SetChange> = BTreeMap::new();
        let mut interval_of: HashMap<String, Option<bool>> = HashMap::new();
        for (jail, target, timeout) in entries {
            let interval = match interval_of.get(&jail) {
                Some(i) => *i,
                None => {
                    let i = self.jail_interval(&jail)?;
                    interval_of.insert(jail.clone(), i);
                    i
                }
            };
            let Some(interval) = interval else {
                if allow_unknown {
                    continue;
                }
                return Err(NftError::UnknownJail(jail));
            };
            let target = target.trunc();
            if !interval && target.prefix_len() != target.max_prefix_len() {
                return Err(NftError::NeedsPrefixBans { jail, target });
            }
            let name = sets::set_name(&jail, Family::of(&target))
                .ok_or_else(|| NftError::JailName(jail.clone()))?;
            by_set
                .entry(name)
                .or_insert_with(|| SetChange {
                    interval,
                    targets: BTreeMap::new(),
                })
                .targets
                .insert(target, timeout);
        }
        Ok(by_set)
    }

    /// Which of `targets` are in `set` now. A few hosts are asked for one by one (a round
    /// trip per missing one, whatever the size of the set); many targets, or networks, by
    /// reading the whole set.
    fn present<'t>(
        &mut self,
        set: &str,
        interval: bool,
        targets: impl Iterator<Item = &'t IpNet> + Clone,
    ) -> Result<BTreeSet<IpNet>, NftError> {
        if interval || targets.clone().count() > ASK_PER_ELEMENT_UP_TO {
            let wanted: BTreeSet<&IpNet> = targets.collect();
            let (bans, _) = sets::decode(self.dump_elements(set)?, interval);
            return Ok(bans
                .into_iter()
                .map(|d| d.target)
                .filter(|t| wanted.contains(t))
                .collect());
        }
        let c_set =
            shim::c_name(set).ok_or_else(|| NftError::Malformed(format!("set name {set:?}")))?;
        // Hosts only here: the key of a host is its address.
        let mut remaining: Vec<IpNet> = targets.copied().collect();
        let mut present = BTreeSet::new();
        while !remaining.is_empty() {
            let keys: Vec<IpAddr> = remaining.iter().map(|t| t.network()).collect();
            let mut found: BTreeSet<Vec<u8>> = BTreeSet::new();
            let mut malformed = false;
            let all_found = self.socket.dump(
                |seq| shim::get_elems_of_request(TABLE_C, &c_set, INET, seq, &keys),
                |msg| match shim::parse_elems(msg) {
                    Some(elems) => found.extend(elems.into_iter().map(|e| e.key)),
                    None => malformed = true,
                },
            )?;
            if malformed {
                return Err(NftError::Malformed(format!(
                    "elements of set {set} could not be parsed"
                )));
            }
            // The kernel answered in order and stopped at the first missing key.
            let is_found = |t: &IpNet| found.contains(&shim::octets(t.network()));
            let stop = remaining.iter().position(|t| !is_found(t));
            present.extend(remaining.iter().filter(|t| is_found(t)));
            match stop {
                Some(missing) if !all_found => remaining.drain(..=missing),
                _ => break,
            };
        }
        Ok(present)
    }

    /// The messages removing `change`'s targets from `set`, if present: a destroy where the
    /// kernel has it, else a delete of those that the kernel says are there.
    fn removal(
        &mut self,
        batch: &mut BatchBuilder,
        set: &str,
        change: &SetChange,
        features: KernelFeatures,
    ) -> Result<(), NftError> {
        let (op, targets): (ElemOp, Vec<IpNet>) = if features.destroy_element {
            (ElemOp::Destroy, change.targets.keys().copied().collect())
        } else {
            let present = self.present(set, change.interval, change.targets.keys())?;
            (ElemOp::Delete, present.into_iter().collect())
        };
        let elems: Vec<NewElem> = targets
            .iter()
            .flat_map(|t| sets::encode(t, change.interval, None))
            .collect();
        netlink::add_elements(batch, TABLE_C, set, INET, op, &elems)
    }

    /// Builds and sends a batch, building it afresh when it failed only because an element
    /// to delete was gone (it expired after we looked). Destroys never fail that way.
    fn transact_retrying(
        &mut self,
        features: KernelFeatures,
        mut build: impl FnMut(&mut Self, &mut BatchBuilder) -> Result<(), NftError>,
    ) -> Result<(), NftError> {
        let mut attempt = 0;
        loop {
            let mut batch = BatchBuilder::new();
            build(self, &mut batch)?;
            match self.commit(batch) {
                Err(e)
                    if e.is_only(libc::ENOENT)
                        && !features.destroy_element
                        && attempt < EXPIRY_RACE_RETRIES =>
                {
                    attempt += 1
                }
                result => return result,
            }
        }
    }

    fn do_ban(&mut self, bans: &[BanEntry]) -> Result<(), NftError> {
        if bans.is_empty() {
            return Ok(());
        }
        let by_set = self.group(
            bans.iter().map(|b| (b.jail.clone(), b.target, b.timeout)),
            false,
        )?;
        let features = self.kernel_features()?;
        self.transact_retrying(features, |this, batch| {
            for (set, change) in &by_set {
                if !features.timeout_update {
                    // The kernel would keep an existing element's old timeout: remove it
                    // first, in the same transaction, so there is no unbanned moment.
                    this.removal(batch, set, change, features)?;
                }
                let adds: Vec<NewElem> = change
                    .targets
                    .iter()
                    .flat_map(|(t, timeout)| sets::encode(t, change.interval, *timeout))
                    .collect();
                netlink::add_elements(batch, TABLE_C, set, INET, ElemOp::Add, &adds)?;
            }
            Ok(())
        })
    }

    fn do_unban(&mut self, jail: &str, targets: &[IpNet]) -> Result<(), NftError> {
        if targets.is_empty() {
            return Ok(());
        }
        // A jail without sets has nothing banned: unbanning succeeds.
        let by_set = self.group(targets.iter().map(|t| (jail.to_string(), *t, None)), true)?;
        if by_set.is_empty() {
            return Ok(());
        }
        let features = self.kernel_features()?;
        self.transact_retrying(features, |this, batch| {
            for (set, change) in &by_set {
                this.removal(batch, set, change, features)?;
            }
            Ok(())
        })
    }

    fn do_list(&mut self) -> Result<Vec<BanEntry>, NftError> {
        let mut out = Vec::new();
        for set in self.dump_sets()? {
            let Some((jail, _)) = sets::parse_set_name(&set.name) else {
                continue;
            };
            let interval = set.flags & shim::SET_FLAG_INTERVAL != 0;
            let (bans, bad) = sets::decode(self.dump_elements(&set.name)?, interval);
            if !bad.is_empty() {
                return Err(NftError::Malformed(format!(
                    "set {} holds {} element(s) banhound did not write, first key {:02x?}",
                    set.name,
                    bad.len(),
                    bad[0]
                )));
            }
            out.extend(bans.into_iter().map(|d| BanEntry {
                jail: jail.clone(),
                target: d.target,
                timeout: d.remaining,
            }));
        }
        Ok(out)
    }

    fn do_teardown(&mut self) -> Result<(), NftError> {
        let table = Table::new(TABLE_C, ProtoFamily::Inet);
        let mut batch = BatchBuilder::new();
        batch.add(
            &table,
            MsgType::Del,
            MessageInfo::Object(format!("delete table inet {TABLE}")),
        );
        self.jails.clear();
        self.rules.clear();
        match self.commit(batch) {
            // No table: nothing to remove.
            Err(e) if e.is_only(libc::ENOENT) => Ok(()),
            result => result,
        }
    }
}

/// The flags of a jail's sets: timeouts always, intervals for prefix bans.
fn set_flags(jail: &JailRules) -> u32 {
    if jail.prefix_bans {
        shim::SET_FLAG_TIMEOUT | shim::SET_FLAG_INTERVAL
    } else {
        shim::SET_FLAG_TIMEOUT
    }
}

/// Every error of the backend's calls: EPERM becomes the one message that says what to do.
fn wrap(e: NftError) -> FirewallError {
    let e = match e.errno() {
        Some(libc::EPERM) => NftError::NotPermitted {
            container: container_without_net_admin(),
        },
        _ => e,
    };
    FirewallError {
        backend: BackendKind::Nftables,
        source: Box::new(e),
    }
}

/// The calls block for at most the kernel timeout each (netlink answers in microseconds to
/// milliseconds); they do not yield to the executor.
impl Firewall for NftablesBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Nftables
    }

    async fn setup(&mut self, jails: &[JailRules]) -> Result<(), FirewallError> {
        self.do_setup(jails).map_err(wrap)
    }

    async fn ban(&mut self, bans: &[BanEntry]) -> Result<(), FirewallError> {
        self.do_ban(bans).map_err(wrap)
    }

    async fn unban(&mut self, jail: &str, targets: &[IpNet]) -> Result<(), FirewallError> {
        self.do_unban(jail, targets).map_err(wrap)
    }

    async fn list(&mut self) -> Result<Vec<BanEntry>, FirewallError> {
        self.do_list().map_err(wrap)
    }

    async fn reconcile(&mut self, bans: &[BanEntry]) -> Result<Repairs, FirewallError> {
        self.do_reconcile(bans).map_err(wrap)
    }

    async fn teardown(&mut self) -> Result<(), FirewallError> {
        self.do_teardown().map_err(wrap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eperm_says_which_capability_and_who_must_grant_it() {
        let e = wrap(NftError::Rejected(vec![Rejection {
            errno: libc::EPERM,
            message: MessageInfo::Object("dump request".into()),
            element: None,
            detail: None,
        }]));
        let text = e.to_string();
        assert!(text.contains("CAP_NET_ADMIN"), "{text}");
        // One message: nothing of it repeated as a cause.
        assert!(std::error::Error::source(&e)
            .and_then(std::error::Error::source)
            .is_none());
        let host = not_permitted_hint(None);
        assert!(
            host.contains("CAP_NET_ADMIN") && !host.contains("container"),
            "{host}"
        );
        let docker = not_permitted_hint(Some("docker"));
        assert!(
            docker.contains("container (docker)") && docker.contains("--cap-add=NET_ADMIN"),
            "{docker}"
        );
    }
}
