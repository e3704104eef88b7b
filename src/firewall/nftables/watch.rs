//! Changes to banhound's table by anyone else, as the kernel announces them, so the damage
//! is repaired at once instead of at the next periodic reconcile.
//!
//! `systemctl restart nftables` runs `flush ruleset`: every ban is gone until the table is
//! put back. The kernel announces every committed change of the ruleset on the nfnetlink
//! multicast group `NFNLGRP_NFTABLES`, one message per object (table, chain, rule, set,
//! element), each with the table it belongs to and, in its netlink header, the port id of
//! the socket whose transaction made it. Changes of banhound's own socket (the backend's
//! port id) are its own bans and repairs and are ignored; so are other tables' changes (an
//! admin's, Docker's, firewalld's), which cannot damage banhound's table. What is left is
//! a foreign change to `inet banhound`, and the daemon answers it with a reconcile (which
//! finds the ruleset generation moved and reads everything back).
//!
//! The socket only wakes the daemon when the ruleset changes: an idle host costs nothing.

use super::{NftError, NftablesBackend, TABLE};
use crate::multicast::{attributes, Received, Subscription};

/// `NFNLGRP_NFTABLES` (`linux/netfilter/nfnetlink.h`).
const NFNLGRP_NFTABLES: u32 = 7;
/// `NFNL_SUBSYS_NFTABLES`: the high byte of the message type.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NFT_MSG_NEWGEN`: the end of a transaction, which names no table.
const NFT_MSG_NEWGEN: u16 = 15;
/// The first attribute of every object message names its table (`NFTA_TABLE_NAME`,
/// `NFTA_CHAIN_TABLE`, `NFTA_RULE_TABLE`, `NFTA_SET_TABLE`, `NFTA_SET_ELEM_LIST_TABLE`,
/// `NFTA_OBJ_TABLE`, `NFTA_FLOWTABLE_TABLE` are all 1).
const ATTR_TABLE: u16 = 1;
/// `NFPROTO_INET`, the family of banhound's table.
const NFPROTO_INET: u8 = 1;
/// The `nfgenmsg` header before the attributes: family, version, resource id.
const NFGENMSG: usize = 4;

/// A change the backend did not make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Someone else changed banhound's table: what (`delete table`, `add element`, ...)
    /// and the netlink port id of their socket (0: the kernel itself).
    Foreign { what: &'static str, portid: u32 },
    /// Notifications were lost: banhound's table may have changed.
    Lost,
}

/// Announcements of changes to the ruleset. See the module documentation.
pub struct ChangeWatcher {
    subscription: Subscription,
    /// The port id of the backend's socket: its changes are banhound's own.
    own: u32,
}

impl NftablesBackend {
    /// Subscribes to the ruleset's change notifications in the calling thread's network
    /// namespace (the backend's own, for a backend made in this thread), inside the tokio
    /// runtime.
    pub fn watch_changes(&self) -> Result<ChangeWatcher, NftError> {
        let subscription = Subscription::open(libc::NETLINK_NETFILTER, 1 << (NFNLGRP_NFTABLES - 1))
            .map_err(NftError::Socket)?;
        Ok(ChangeWatcher {
            subscription,
            own: self.socket.portid(),
        })
    }
}

impl ChangeWatcher {
    /// Waits for the next change to banhound's table that banhound did not make.
    pub async fn next(&mut self) -> Result<Change, NftError> {
        loop {
            match self.subscription.next().await.map_err(NftError::Receive)? {
                Received::Overflow => return Ok(Change::Lost),
                Received::Messages(messages) => {
                    if let Some(change) = messages
                        .iter()
                        .find_map(|m| foreign_change(m.kind, m.portid, &m.payload, self.own))
                    {
                        return Ok(change);
                    }
                }
            }
        }
    }
}

/// The change a notification tells of, if it is someone else's change to banhound's table.
fn foreign_change(kind: u16, portid: u32, payload: &[u8], own: u32) -> Option<Change> {
    let (subsys, msg) = (kind >> 8, kind & 0xff);
    if subsys != NFNL_SUBSYS_NFTABLES || msg == NFT_MSG_NEWGEN || portid == own {
        return None;
    }
    if *payload.first()? != NFPROTO_INET {
        return None;
    }
    let (_, table) = attributes(payload.get(NFGENMSG..)?)
        .into_iter()
        .find(|(ty, _)| *ty == ATTR_TABLE)?;
    let table = table.split(|b| *b == 0).next()?;
    if table != TABLE.as_bytes() {
        return None;
    }
    Some(Change::Foreign {
        what: describe(msg),
        portid,
    })
}

/// What an `NFT_MSG_*` type does, for the log.
fn describe(msg: u16) -> &'static str {
    match msg {
        0 => "add table",
        2 => "delete table",
        3 => "add chain",
        5 => "delete chain",
        6 => "add rule",
        8 => "delete rule",
        9 => "add set",
        11 => "delete set",
        12 => "add element",
        14 => "delete element",
        _ => "change",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(family: u8, table: &[u8]) -> Vec<u8> {
        let mut p = vec![family, 0, 0, 0];
        let len = 4 + table.len() + 1;
        p.extend_from_slice(&(len as u16).to_ne_bytes());
        p.extend_from_slice(&ATTR_TABLE.to_ne_bytes());
        p.extend_from_slice(table);
        p.push(0);
        while p.len() % 4 != 0 {
            p.push(0);
        }
        p
    }

    const DELTABLE: u16 = NFNL_SUBSYS_NFTABLES << 8 | 2;
    const DELSETELEM: u16 = NFNL_SUBSYS_NFTABLES << 8 | 14;

    #[test]
    fn only_others_changes_to_banhounds_table_count() {
        let ours = notification(NFPROTO_INET, b"banhound");
        assert_eq!(
            foreign_change(DELTABLE, 777, &ours, 42),
            Some(Change::Foreign {
                what: "delete table",
                portid: 777
            })
        );
        assert_eq!(
            foreign_change(DELSETELEM, 0, &ours, 42),
            Some(Change::Foreign {
                what: "delete element",
                portid: 0
            })
        );
        // Our own change.
        assert_eq!(foreign_change(DELTABLE, 42, &ours, 42), None);
        // Another table, or a table of that name in another family.
        let filter = notification(NFPROTO_INET, b"filter");
        assert_eq!(foreign_change(DELTABLE, 777, &filter, 42), None);
        let ip = notification(2, b"banhound");
        assert_eq!(foreign_change(DELTABLE, 777, &ip, 42), None);
        // The end of a transaction, another subsystem, a truncated message.
        let newgen = NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWGEN;
        assert_eq!(foreign_change(newgen, 777, &ours, 42), None);
        assert_eq!(foreign_change(1 << 8 | 2, 777, &ours, 42), None);
        assert_eq!(foreign_change(DELTABLE, 777, &ours[..3], 42), None);
        assert_eq!(foreign_change(DELTABLE, 777, &ours[..9], 42), None);
        // A longer name that starts like ours.
        let longer = notification(NFPROTO_INET, b"banhound2");
        assert_eq!(foreign_change(DELTABLE, 777, &longer, 42), None);
    }
}
