//! Firewall backends: where a ban decision becomes dropped packets.
//!
//! Every backend implements [`Firewall`]. Calls take batches because start-up restores and
//! reconciles move thousands of bans at once, and a batch is one netlink message or one
//! D-Bus call, not one per address. Backends own only their own objects (the `inet banhound`
//! table, the `banhound-*` ipsets) and never touch anything else. [`dispatch`] sends each
//! jail's bans to the backend it uses and opens, sets up and closes them: the daemon's one
//! handle on the firewall.

pub mod dispatch;
pub mod firewalld;
pub mod log_only;
pub mod nftables;

use ipnet::IpNet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Which firewall a jail bans through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    Nftables,
    Firewalld,
    /// Decides and logs, touches no firewall: for trying a configuration safely.
    LogOnly,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Nftables => "nftables",
            BackendKind::Firewalld => "firewalld",
            BackendKind::LogOnly => "log-only",
        }
    }
}

impl FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "nftables" => Ok(BackendKind::Nftables),
            "firewalld" => Ok(BackendKind::Firewalld),
            "log-only" => Ok(BackendKind::LogOnly),
            other => Err(format!(
                "unknown backend {other:?}: expected \"auto\", \"nftables\", \"firewalld\" or \"log-only\""
            )),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to a banned address's packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockType {
    /// Silently discarded: the attacker waits for a timeout.
    Drop,
    /// Refused with a TCP reset / ICMP unreachable: fails fast, also for a mistaken ban.
    Reject,
}

impl FromStr for BlockType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "drop" => Ok(BlockType::Drop),
            "reject" => Ok(BlockType::Reject),
            other => Err(format!(
                "unknown blocktype {other:?}: expected \"drop\" or \"reject\""
            )),
        }
    }
}

/// Transport protocols a jail's port rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// An inclusive range of ports; a single port is `first == last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// Which traffic from a banned address is blocked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ports {
    /// Everything, whatever the protocol or port.
    All,
    /// Only these ports, for these protocols.
    Only {
        protocols: Vec<Protocol>,
        ports: Vec<PortRange>,
    },
}

/// Which of a banned address's packets a jail blocks, by where they go: to this host's own
/// services (`input`), or through this host to others (`forward`: the hosts behind a
/// gateway, the containers behind a Docker host's published ports), or both. The names are
/// the netfilter hooks an admin knows from `iptables -A INPUT` / `FORWARD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Chains {
    pub input: bool,
    pub forward: bool,
}

impl Chains {
    /// Only what is addressed to this host: bans protect the services whose logs they come
    /// from.
    pub const INPUT: Chains = Chains {
        input: true,
        forward: false,
    };

    /// The names of the chains, as the configuration spells them.
    pub fn names(self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.input {
            out.push("input");
        }
        if self.forward {
            out.push("forward");
        }
        out
    }
}

impl Default for Chains {
    fn default() -> Self {
        Chains::INPUT
    }
}

/// What a backend must set up for one jail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JailRules {
    pub jail: String,
    pub ports: Ports,
    pub blocktype: BlockType,
    /// Where the bans apply; at least one of the two.
    pub chains: Chains,
    /// Whether bans may be whole networks (IPv6 prefix grouping): nftables then needs
    /// interval sets.
    pub prefix_bans: bool,
}

/// One ban as a backend applies it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BanEntry {
    pub jail: String,
    pub target: IpNet,
    /// Remaining time, carried into the kernel where the backend can; `None` is permanent.
    pub timeout: Option<Duration>,
}

/// An address family: sets and ipsets hold one family each, named `<jail>-v4` / `<jail>-v6`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    /// The suffix of a set's name for this family.
    pub fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "-v4",
            Family::V6 => "-v6",
        }
    }
}

/// What a reconcile found missing or wrong in the firewall, and put right.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Repairs {
    /// What was wrong and what was done, in one sentence for the log (empty: nothing).
    pub message: String,
    /// Objects of banhound's that were missing or wrong and were re-created ("table inet
    /// banhound", "chain input", "set sshd-v4", "3 rules", "rich rule ...").
    pub objects: Vec<String>,
    /// Bans that were missing (or held too short a timeout) and were put back.
    pub restored: usize,
    /// Entries of bans no longer in force (a lifted ban whose removal failed) that were
    /// removed.
    pub removed: usize,
}

impl Repairs {
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty() && self.restored == 0 && self.removed == 0
    }
}

/// `1 ban` / `2 bans`, with thousands separators: repair counts are read by people in the
/// journal.
pub fn count_of(n: usize, singular: &str, plural: &str) -> String {
    format!(
        "{} {}",
        crate::display::thousands(n as u64),
        if n == 1 { singular } else { plural }
    )
}

/// A backend failed. The daemon keeps the ban in its state and retries on reconcile.
#[derive(Debug, thiserror::Error)]
#[error("{backend} backend: {source}")]
pub struct FirewallError {
    pub backend: BackendKind,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// A firewall that can hold banhound's bans.
///
/// All calls are idempotent: setting up twice, banning an address already banned (which
/// refreshes its timeout) or unbanning one that is not banned succeed.
#[allow(async_fn_in_trait)] // used through an enum of backends, never `dyn`
pub trait Firewall {
    fn kind(&self) -> BackendKind;
    /// Creates (or repairs) banhound's own objects for these jails; removes those of jails
    /// no longer listed.
    async fn setup(&mut self, jails: &[JailRules]) -> Result<(), FirewallError>;
    /// Adds or refreshes bans, all in one batch.
    async fn ban(&mut self, bans: &[BanEntry]) -> Result<(), FirewallError>;
    /// Removes bans of one jail, all in one batch.
    async fn unban(&mut self, jail: &str, targets: &[IpNet]) -> Result<(), FirewallError>;
    /// What the firewall holds now (timeouts as the kernel reports them), for reconciling.
    async fn list(&mut self) -> Result<Vec<BanEntry>, FirewallError>;
    /// Compares what the firewall holds with the objects of the jails last set up and with
    /// `bans`, every ban in force (timeouts are what remains), and repairs any difference in
    /// one batch: re-creates missing objects, puts back missing bans, removes entries of bans
    /// no longer in force. A ban about to expire (under a second left) is not put back.
    async fn reconcile(&mut self, bans: &[BanEntry]) -> Result<Repairs, FirewallError>;
    /// Removes everything banhound created.
    async fn teardown(&mut self) -> Result<(), FirewallError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_like_people_write_them() {
        assert_eq!(count_of(1, "ban", "bans"), "1 ban");
        assert_eq!(count_of(12_345, "ban", "bans"), "12,345 bans");
    }
}
