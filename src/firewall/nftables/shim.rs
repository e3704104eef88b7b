//! The unsafe part: set elements with flags and kernel timeouts, over libnftnl's C API.
//!
//! The safe `nftnl` crate can create sets and add bare keys, but it has no way to give a set
//! flags on a named set, to give an element a timeout or an interval-end flag, to choose the
//! netlink flags of an element message (its adds always carry `NLM_F_EXCL`, so re-banning
//! would fail instead of refreshing), or to read elements back. This module fills exactly
//! those gaps through the re-exported `nftnl_sys` (and the one expression the safe API lacks,
//! [`OriginalDestinationPort`]), and nothing else: every pointer is owned
//! by a Rust value that frees it on drop, so the rest of the backend stays safe code.

use nftnl::nftnl_sys as sys;
use nftnl::set::Set;
use nftnl::{MsgType, NlMsg};
use std::ffi::{c_char, c_void, CStr, CString};
use std::net::IpAddr;
use std::ptr::NonNull;
use std::time::Duration;

/// `NFT_MSG_DESTROYSETELEM` (Linux 6.3+): deletes an element and succeeds if it is missing.
/// Not in the `libc` crate yet; the value is fixed by the kernel ABI (`enum nf_tables_msg_types`).
pub const NFT_MSG_DESTROYSETELEM: u16 = 30;

/// `NFT_SET_INTERVAL` and `NFT_SET_TIMEOUT` from `linux/netfilter/nf_tables.h`.
pub const SET_FLAG_INTERVAL: u32 = libc::NFT_SET_INTERVAL as u32;
pub const SET_FLAG_TIMEOUT: u32 = libc::NFT_SET_TIMEOUT as u32;
/// `NFT_SET_ELEM_INTERVAL_END`: the element closes the interval opened by the one below it.
pub const ELEM_FLAG_INTERVAL_END: u32 = libc::NFT_SET_ELEM_INTERVAL_END as u32;

/// The largest timeout the kernel converts without `ERANGE` (`nf_msecs_to_jiffies64`).
const MAX_TIMEOUT_MS: u64 = u64::MAX / 1_000_000;

/// Gives a set created through the safe API its flags (`timeout`, `interval`).
pub fn set_flags<K>(set: &mut Set<'_, K>, flags: u32) {
    // SAFETY: `as_ptr` is the live nftnl_set owned by `set` (freed only in its Drop, which
    // cannot run while we hold `&mut`); NFTNL_SET_FLAGS is a u32 attribute.
    unsafe { sys::nftnl_set_set_u32(set.as_ptr().as_ptr(), sys::NFTNL_SET_FLAGS as u16, flags) };
}

/// Reads back the flags of a set, `None` if none were set.
#[cfg(test)]
pub fn get_flags<K>(set: &Set<'_, K>) -> Option<u32> {
    let raw = set.as_ptr().as_ptr();
    // SAFETY: `raw` is the live nftnl_set owned by `set`; getting a u32 attribute only reads.
    unsafe {
        sys::nftnl_set_is_set(raw, sys::NFTNL_SET_FLAGS as u16)
            .then(|| sys::nftnl_set_get_u32(raw, sys::NFTNL_SET_FLAGS as u16))
    }
}

/// A kernel timeout in milliseconds, as `NFTA_SET_ELEM_TIMEOUT` carries it. Zero would mean
/// "no timeout" to the kernel, so a ban with nothing left to run gets the shortest real one.
pub fn timeout_ms(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_TIMEOUT_MS)
}

/// The key bytes of an address: network byte order, 4 or 16 bytes.
pub fn octets(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// One set element as banhound writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewElem {
    /// An address, so at most 16 bytes: libnftnl copies keys into a fixed 64-byte buffer.
    pub key: IpAddr,
    /// `ELEM_FLAG_INTERVAL_END` or 0.
    pub flags: u32,
    /// `None` leaves the element without timeout: permanent.
    pub timeout: Option<Duration>,
}

/// An element message of one set: what it does to the elements it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElemOp {
    /// `NFT_MSG_NEWSETELEM` without `NLM_F_EXCL`: an existing element is not an error.
    Add,
    /// `NFT_MSG_DELSETELEM`: a missing element fails the batch with `ENOENT`.
    Delete,
    /// `NFT_MSG_DESTROYSETELEM`: a missing element is fine (Linux 6.3+).
    Destroy,
}

impl ElemOp {
    /// Message type and netlink flags of the message.
    pub fn header(self) -> (u16, u16) {
        let ack = libc::NLM_F_ACK as u16;
        match self {
            ElemOp::Add => (
                libc::NFT_MSG_NEWSETELEM as u16,
                libc::NLM_F_CREATE as u16 | ack,
            ),
            ElemOp::Delete => (libc::NFT_MSG_DELSETELEM as u16, ack),
            ElemOp::Destroy => (NFT_MSG_DESTROYSETELEM, ack),
        }
    }
}

/// The elements of one element message: an nftnl_set that only names its table and set and
/// holds elements. The caller keeps the count small enough for one netlink message (the
/// element list is one attribute, at most 64 KiB).
pub struct ElemList {
    set: NonNull<sys::nftnl_set>,
    family: u16,
    op: ElemOp,
    len: usize,
}

// SAFETY: the nftnl_set is exclusively owned by this value and libnftnl objects have no
// thread affinity; nothing else holds the pointer.
unsafe impl Send for ElemList {}

impl ElemList {
    pub fn new(table: &CStr, set_name: &CStr, family: u16, op: ElemOp) -> Self {
        // SAFETY: nftnl_set_alloc returns a fresh object or NULL; NULL is handled below.
        let raw = unsafe { sys::nftnl_set_alloc() };
        let Some(set) = NonNull::new(raw) else {
            // Out of memory: the same policy as the Rust allocator.
            std::process::abort();
        };
        // SAFETY: `set` is valid; libnftnl copies the strings (strdup), so the CStr
        // borrows need not outlive the call.
        unsafe {
            sys::nftnl_set_set_str(set.as_ptr(), sys::NFTNL_SET_TABLE as u16, table.as_ptr());
            sys::nftnl_set_set_str(set.as_ptr(), sys::NFTNL_SET_NAME as u16, set_name.as_ptr());
            sys::nftnl_set_set_u32(
                set.as_ptr(),
                sys::NFTNL_SET_FAMILY as u16,
                u32::from(family),
            );
        }
        ElemList {
            set,
            family,
            op,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn push(&mut self, elem: &NewElem) {
        // SAFETY: a fresh element or NULL, handled below.
        let raw = unsafe { sys::nftnl_set_elem_alloc() };
        let Some(e) = NonNull::new(raw) else {
            std::process::abort();
        };
        let key = octets(elem.key);
        let key_len = key.len() as u32;
        // SAFETY: `e` is valid; nftnl_set_elem_set copies `key_len` bytes from `key` (4 or
        // 16, within its NFT_DATA_VALUE_MAXLEN = 64 byte buffer). After
        // nftnl_set_elem_add the set owns `e` and frees it with the set.
        unsafe {
            sys::nftnl_set_elem_set(
                e.as_ptr(),
                sys::NFTNL_SET_ELEM_KEY as u16,
                key.as_ptr().cast::<c_void>(),
                key_len,
            );
            if elem.flags != 0 {
                sys::nftnl_set_elem_set_u32(
                    e.as_ptr(),
                    sys::NFTNL_SET_ELEM_FLAGS as u16,
                    elem.flags,
                );
            }
            if let Some(timeout) = elem.timeout {
                sys::nftnl_set_elem_set_u64(
                    e.as_ptr(),
                    sys::NFTNL_SET_ELEM_TIMEOUT as u16,
                    timeout_ms(timeout),
                );
            }
            sys::nftnl_set_elem_add(self.set.as_ptr(), e.as_ptr());
        }
        self.len += 1;
    }

    /// The elements as libnftnl holds them, read back through its getters.
    #[cfg(test)]
    pub fn elems(&self) -> Vec<RawElem> {
        let mut out = Vec::with_capacity(self.len);
        for_each_elem(self.set, |e| out.push(e));
        out
    }
}

impl Drop for ElemList {
    fn drop(&mut self) {
        // SAFETY: we own the set; this frees it and the elements it owns, once.
        unsafe { sys::nftnl_set_free(self.set.as_ptr()) };
    }
}

// SAFETY: `write` builds one message header at `buf` and appends the element list; the
// batch reserves nft_nlmsg_maxsize() (64 KiB + a page) there, and the list is kept below
// that by the caller's chunking (see ElemList).
unsafe impl NlMsg for ElemList {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, _msg_type: MsgType) {
        let (msg_type, flags) = self.op.header();
        // SAFETY: per the trait contract `buf` has room for a maximal message; the set
        // pointer is live for `&self`.
        unsafe {
            let header =
                sys::nftnl_nlmsg_build_hdr(buf.cast::<c_char>(), msg_type, self.family, flags, seq);
            sys::nftnl_set_elems_nlmsg_build_payload(header, self.set.as_ptr());
        }
    }
}

/// A request to dump the elements of one set (`NFT_MSG_GETSETELEM`, `NLM_F_DUMP`).
pub fn get_elems_request(table: &CStr, set_name: &CStr, family: u16, seq: u32) -> Vec<u8> {
    let list = ElemList::new(table, set_name, family, ElemOp::Add);
    let mut buf = vec![0u8; 4096];
    let flags = (libc::NLM_F_DUMP | libc::NLM_F_ACK) as u16;
    // SAFETY: 4096 bytes hold a header plus table and set names (each at most 256 bytes);
    // the set pointer is live. The returned length is read from the header written there.
    let len = unsafe {
        let header = sys::nftnl_nlmsg_build_hdr(
            buf.as_mut_ptr().cast::<c_char>(),
            libc::NFT_MSG_GETSETELEM as u16,
            family,
            flags,
            seq,
        );
        sys::nftnl_set_elems_nlmsg_build_payload(header, list.set.as_ptr());
        (*header).nlmsg_len as usize
    };
    buf.truncate(len);
    buf
}

/// A request for specific elements of one set (`NFT_MSG_GETSETELEM` without `NLM_F_DUMP`).
/// The kernel answers with one element message per key, in order, and stops with `ENOENT`
/// at the first key that is not in the set.
pub fn get_elems_of_request(
    table: &CStr,
    set_name: &CStr,
    family: u16,
    seq: u32,
    keys: &[IpAddr],
) -> Vec<u8> {
    let mut list = ElemList::new(table, set_name, family, ElemOp::Add);
    for key in keys {
        list.push(&NewElem {
            key: *key,
            flags: 0,
            timeout: None,
        });
    }
    // Header, names (at most 2 x 256 bytes) and per key at most 32 bytes of attributes.
    let mut buf = vec![0u8; 1024 + 32 * keys.len()];
    // SAFETY: the buffer is sized for everything written (see above); the set pointer is
    // live. The returned length is read from the header written there.
    let len = unsafe {
        let header = sys::nftnl_nlmsg_build_hdr(
            buf.as_mut_ptr().cast::<c_char>(),
            libc::NFT_MSG_GETSETELEM as u16,
            family,
            libc::NLM_F_ACK as u16,
            seq,
        );
        sys::nftnl_set_elems_nlmsg_build_payload(header, list.set.as_ptr());
        (*header).nlmsg_len as usize
    };
    buf.truncate(len);
    buf
}

/// A request to dump the sets of one table (`NFT_MSG_GETSET`, `NLM_F_DUMP`).
pub fn get_sets_request(table: &CStr, family: u16, seq: u32) -> Vec<u8> {
    // SAFETY: a fresh set or NULL, handled below.
    let Some(set) = NonNull::new(unsafe { sys::nftnl_set_alloc() }) else {
        std::process::abort();
    };
    let mut buf = vec![0u8; 4096];
    let flags = (libc::NLM_F_DUMP | libc::NLM_F_ACK) as u16;
    // SAFETY: as in get_elems_request; the set is freed right after use.
    let len = unsafe {
        sys::nftnl_set_set_str(set.as_ptr(), sys::NFTNL_SET_TABLE as u16, table.as_ptr());
        let header = sys::nftnl_nlmsg_build_hdr(
            buf.as_mut_ptr().cast::<c_char>(),
            libc::NFT_MSG_GETSET as u16,
            family,
            flags,
            seq,
        );
        sys::nftnl_set_nlmsg_build_payload(header, set.as_ptr());
        let len = (*header).nlmsg_len as usize;
        sys::nftnl_set_free(set.as_ptr());
        len
    };
    buf.truncate(len);
    buf
}

/// A request for one object by name (`GET*` without `NLM_F_DUMP`): the kernel answers with
/// the object, or `ENOENT`. `build` writes the object's payload after the header.
fn get_one_request(
    msg_type: u16,
    family: u16,
    seq: u32,
    build: impl FnOnce(*mut libc::nlmsghdr),
) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: 4096 bytes hold a header plus at most a table and a chain name (each at most
    // 256 bytes), which is all `build` adds. The length is read from the header written there.
    let len = unsafe {
        let header = sys::nftnl_nlmsg_build_hdr(
            buf.as_mut_ptr().cast::<c_char>(),
            msg_type,
            family,
            libc::NLM_F_ACK as u16,
            seq,
        );
        build(header.cast());
        (*header).nlmsg_len as usize
    };
    buf.truncate(len);
    buf
}

/// A request for table `table` (`NFT_MSG_GETTABLE`): answered with it, or `ENOENT`.
pub fn get_table_request(table: &CStr, family: u16, seq: u32) -> Vec<u8> {
    // SAFETY: a fresh table or NULL, handled below.
    let Some(t) = NonNull::new(unsafe { sys::nftnl_table_alloc() }) else {
        std::process::abort();
    };
    // SAFETY: `t` is live until freed below; libnftnl copies the name.
    let req = get_one_request(
        libc::NFT_MSG_GETTABLE as u16,
        family,
        seq,
        |header| unsafe {
            sys::nftnl_table_set_str(t.as_ptr(), sys::NFTNL_TABLE_NAME as u16, table.as_ptr());
            sys::nftnl_table_nlmsg_build_payload(header.cast(), t.as_ptr());
        },
    );
    // SAFETY: we own `t`; freed once.
    unsafe { sys::nftnl_table_free(t.as_ptr()) };
    req
}

/// A request for chain `chain` of `table` (`NFT_MSG_GETCHAIN`): answered with it, or `ENOENT`.
pub fn get_chain_request(table: &CStr, chain: &CStr, family: u16, seq: u32) -> Vec<u8> {
    // SAFETY: a fresh chain or NULL, handled below.
    let Some(c) = NonNull::new(unsafe { sys::nftnl_chain_alloc() }) else {
        std::process::abort();
    };
    // SAFETY: `c` is live until freed below; libnftnl copies the names.
    let req = get_one_request(
        libc::NFT_MSG_GETCHAIN as u16,
        family,
        seq,
        |header| unsafe {
            sys::nftnl_chain_set_str(c.as_ptr(), sys::NFTNL_CHAIN_TABLE as u16, table.as_ptr());
            sys::nftnl_chain_set_str(c.as_ptr(), sys::NFTNL_CHAIN_NAME as u16, chain.as_ptr());
            sys::nftnl_chain_nlmsg_build_payload(header.cast(), c.as_ptr());
        },
    );
    // SAFETY: we own `c`; freed once.
    unsafe { sys::nftnl_chain_free(c.as_ptr()) };
    req
}

/// A request to dump the rules of one chain (`NFT_MSG_GETRULE`, `NLM_F_DUMP`; the kernel
/// filters by table and chain).
pub fn get_rules_request(table: &CStr, chain: &CStr, family: u16, seq: u32) -> Vec<u8> {
    // SAFETY: a fresh rule or NULL, handled below.
    let Some(r) = NonNull::new(unsafe { sys::nftnl_rule_alloc() }) else {
        std::process::abort();
    };
    let mut buf = vec![0u8; 4096];
    let flags = (libc::NLM_F_DUMP | libc::NLM_F_ACK) as u16;
    // SAFETY: as in get_one_request; `r` is live until freed right after use.
    let len = unsafe {
        sys::nftnl_rule_set_str(r.as_ptr(), sys::NFTNL_RULE_TABLE as u16, table.as_ptr());
        sys::nftnl_rule_set_str(r.as_ptr(), sys::NFTNL_RULE_CHAIN as u16, chain.as_ptr());
        let header = sys::nftnl_nlmsg_build_hdr(
            buf.as_mut_ptr().cast::<c_char>(),
            libc::NFT_MSG_GETRULE as u16,
            family,
            flags,
            seq,
        );
        sys::nftnl_rule_nlmsg_build_payload(header, r.as_ptr());
        let len = (*header).nlmsg_len as usize;
        sys::nftnl_rule_free(r.as_ptr());
        len
    };
    buf.truncate(len);
    buf
}

/// A request for the ruleset generation (`NFT_MSG_GETGEN`): answered with `NEWGEN`.
pub fn get_gen_request(seq: u32) -> Vec<u8> {
    get_one_request(
        libc::NFT_MSG_GETGEN as u16,
        libc::AF_UNSPEC as u16,
        seq,
        |_| {},
    )
}

/// Parses a `NFT_MSG_NEWGEN` message: the generation id.
pub fn parse_gen(msg: &[u8]) -> Option<u32> {
    let header = whole_message(msg)?;
    // SAFETY: a fresh object or NULL, handled by `?`.
    let generation = NonNull::new(unsafe { sys::nftnl_gen_alloc() })?;
    // SAFETY: `header` is one complete, aligned message (checked above); the object lives
    // until freed below.
    unsafe {
        let g = generation.as_ptr();
        let id = (sys::nftnl_gen_nlmsg_parse(header, g) >= 0
            && sys::nftnl_gen_is_set(g, sys::NFTNL_GEN_ID as u16))
        .then(|| sys::nftnl_gen_get_u32(g, sys::NFTNL_GEN_ID as u16));
        sys::nftnl_gen_free(g);
        id
    }
}

/// A base chain as the kernel reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawChain {
    pub name: String,
    /// `NF_INET_*` hook number; `None` for a regular (non-base) chain.
    pub hook: Option<u32>,
    pub priority: Option<i32>,
}

/// Parses one `NFT_MSG_NEWCHAIN` message.
pub fn parse_chain(msg: &[u8]) -> Option<RawChain> {
    let header = whole_message(msg)?;
    // SAFETY: a fresh chain or NULL, handled by `?`.
    let chain = NonNull::new(unsafe { sys::nftnl_chain_alloc() })?;
    // SAFETY: `header` points at one complete, aligned message (checked above); `chain` is
    // live until freed below, and the name is copied into a String before that.
    unsafe {
        let c = chain.as_ptr();
        let parsed = if sys::nftnl_chain_nlmsg_parse(header, c) >= 0
            && sys::nftnl_chain_is_set(c, sys::NFTNL_CHAIN_NAME as u16)
        {
            let name = CStr::from_ptr(sys::nftnl_chain_get_str(c, sys::NFTNL_CHAIN_NAME as u16));
            let is_set = |attr: u32| sys::nftnl_chain_is_set(c, attr as u16);
            Some(RawChain {
                name: name.to_string_lossy().into_owned(),
                hook: is_set(sys::NFTNL_CHAIN_HOOKNUM)
                    .then(|| sys::nftnl_chain_get_u32(c, sys::NFTNL_CHAIN_HOOKNUM as u16)),
                priority: is_set(sys::NFTNL_CHAIN_PRIO)
                    .then(|| sys::nftnl_chain_get_s32(c, sys::NFTNL_CHAIN_PRIO as u16)),
            })
        } else {
            None
        };
        sys::nftnl_chain_free(c);
        parsed
    }
}

/// `ct original proto-dst`: the destination port the connection was opened to, before any
/// DNAT rewrote it (a Docker host's published port, not the container's), loaded into
/// register 1 for a `cmp`. The safe API's conntrack expression has no direction and no
/// port keys.
pub struct OriginalDestinationPort;

/// `IP_CT_DIR_ORIGINAL`: the direction of the packets that opened the connection.
const IP_CT_DIR_ORIGINAL: u8 = 0;

impl nftnl::expr::Expression for OriginalDestinationPort {
    fn to_expr(&self, _rule: &nftnl::Rule) -> NonNull<sys::nftnl_expr> {
        // SAFETY: a fresh expression or NULL (then we abort, as the safe API does on OOM);
        // the three attributes are a u32 register, a u32 key and a u8 direction, as
        // libnftnl's ct expression defines them. The caller owns and frees the expression.
        unsafe {
            let Some(expr) = NonNull::new(sys::nftnl_expr_alloc(c"ct".as_ptr())) else {
                std::process::abort();
            };
            let e = expr.as_ptr();
            sys::nftnl_expr_set_u32(e, sys::NFTNL_EXPR_CT_DREG as u16, libc::NFT_REG_1 as u32);
            sys::nftnl_expr_set_u32(
                e,
                sys::NFTNL_EXPR_CT_KEY as u16,
                libc::NFT_CT_PROTO_DST as u32,
            );
            sys::nftnl_expr_set_u8(e, sys::NFTNL_EXPR_CT_DIR as u16, IP_CT_DIR_ORIGINAL);
            expr
        }
    }
}

/// A rule as the kernel reported it (or as we would send it), reduced to what tells rules
/// apart: its chain, and per expression its kind and the attributes that make it match
/// what it does (never handles, registers or set ids, which differ between the rule we send
/// and the one the kernel keeps).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RawRule {
    pub chain: String,
    pub signature: String,
}

/// The attributes that matter for each kind of expression banhound uses.
fn distinguishing_attributes(kind: &str) -> &'static [u32] {
    match kind {
        "payload" => &[
            sys::NFTNL_EXPR_PAYLOAD_BASE,
            sys::NFTNL_EXPR_PAYLOAD_OFFSET,
            sys::NFTNL_EXPR_PAYLOAD_LEN,
        ],
        "meta" => &[sys::NFTNL_EXPR_META_KEY],
        "ct" => &[sys::NFTNL_EXPR_CT_KEY, sys::NFTNL_EXPR_CT_DIR],
        "cmp" => &[sys::NFTNL_EXPR_CMP_OP, sys::NFTNL_EXPR_CMP_DATA],
        "lookup" => &[sys::NFTNL_EXPR_LOOKUP_SET],
        "immediate" => &[sys::NFTNL_EXPR_IMM_VERDICT],
        // The kernel reports an ICMP code only for ICMP rejects: the type says enough.
        "reject" => &[sys::NFTNL_EXPR_REJECT_TYPE],
        _ => &[],
    }
}

/// Parses one `NFT_MSG_NEWRULE` message (a dump answer, or a rule message we built).
pub fn parse_rule(msg: &[u8]) -> Option<RawRule> {
    let header = whole_message(msg)?;
    // SAFETY: a fresh rule or NULL, handled by `?`.
    let rule = NonNull::new(unsafe { sys::nftnl_rule_alloc() })?;
    // SAFETY: `header` is one complete, aligned message (checked above); `rule` lives until
    // freed below. Expression pointers come from the rule's own iterator and are only read
    // while the rule lives; every attribute read is copied out with the length libnftnl
    // reports.
    unsafe {
        let r = rule.as_ptr();
        let mut parsed = None;
        if sys::nftnl_rule_nlmsg_parse(header, r) >= 0
            && sys::nftnl_rule_is_set(r, sys::NFTNL_RULE_CHAIN as u16)
        {
            let chain = CStr::from_ptr(sys::nftnl_rule_get_str(r, sys::NFTNL_RULE_CHAIN as u16))
                .to_string_lossy()
                .into_owned();
            let Some(iter) = NonNull::new(sys::nftnl_expr_iter_create(r)) else {
                std::process::abort();
            };
            let mut parts = Vec::new();
            let mut e = sys::nftnl_expr_iter_next(iter.as_ptr());
            while !e.is_null() {
                let kind = CStr::from_ptr(sys::nftnl_expr_get_str(e, sys::NFTNL_EXPR_NAME as u16))
                    .to_string_lossy()
                    .into_owned();
                let mut part = kind.clone();
                for &attr in distinguishing_attributes(&kind) {
                    part.push(' ');
                    if !sys::nftnl_expr_is_set(e, attr as u16) {
                        part.push('-');
                        continue;
                    }
                    let mut len: u32 = 0;
                    let data = sys::nftnl_expr_get(e, attr as u16, &mut len);
                    if data.is_null() {
                        part.push('-');
                        continue;
                    }
                    let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len as usize);
                    if attr == sys::NFTNL_EXPR_LOOKUP_SET && kind == "lookup" {
                        let name = bytes.split(|b| *b == 0).next().unwrap_or(&[]);
                        part.push_str(&String::from_utf8_lossy(name));
                    } else {
                        for b in bytes {
                            part.push_str(&format!("{b:02x}"));
                        }
                    }
                }
                parts.push(part);
                e = sys::nftnl_expr_iter_next(iter.as_ptr());
            }
            sys::nftnl_expr_iter_destroy(iter.as_ptr());
            parsed = Some(RawRule {
                chain,
                signature: parts.join("; "),
            });
        }
        sys::nftnl_rule_free(r);
        parsed
    }
}

/// A rule message built by the safe API, as bytes [`parse_rule`] reads: what the kernel
/// would receive, without the batch markers around it.
pub fn render_rule(rule: &nftnl::Rule<'_>) -> Vec<u8> {
    let mut batch = nftnl::Batch::new();
    batch.add(rule, MsgType::Add);
    let bytes: Vec<u8> = batch.finalize().iter().flat_map(|p| p.to_vec()).collect();
    // Skip the batch-begin message; the rule follows it, the batch-end message after.
    let begin = bytes
        .get(0..4)
        .and_then(|b| b.try_into().ok())
        .map_or(bytes.len(), |b| (u32::from_ne_bytes(b) as usize + 3) & !3);
    let rest = bytes.get(begin..).unwrap_or(&[]);
    let len = rest
        .get(0..4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, |b| u32::from_ne_bytes(b) as usize);
    rest.get(..len).unwrap_or(&[]).to_vec()
}

/// A set element as the kernel reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawElem {
    pub key: Vec<u8>,
    pub flags: u32,
    /// The timeout the element was given.
    pub timeout: Option<Duration>,
    /// What is left of it (the kernel reports this only for dumps).
    pub expiration: Option<Duration>,
}

/// A set as the kernel reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawSet {
    pub name: String,
    pub flags: u32,
}

/// Checks that `msg` is one whole netlink message, so libnftnl's parsers (which trust
/// `nlmsg_len`) cannot read past it.
fn whole_message(msg: &[u8]) -> Option<*const libc::nlmsghdr> {
    if msg.len() < std::mem::size_of::<libc::nlmsghdr>() {
        return None;
    }
    let len = u32::from_ne_bytes(msg[0..4].try_into().ok()?) as usize;
    if len > msg.len() || len < std::mem::size_of::<libc::nlmsghdr>() {
        return None;
    }
    if msg
        .as_ptr()
        .align_offset(std::mem::align_of::<libc::nlmsghdr>())
        != 0
    {
        return None;
    }
    Some(msg.as_ptr().cast())
}

/// Parses one `NFT_MSG_NEWSETELEM` dump message into its elements.
pub fn parse_elems(msg: &[u8]) -> Option<Vec<RawElem>> {
    let header = whole_message(msg)?;
    // SAFETY: a fresh set or NULL, handled below.
    let set = NonNull::new(unsafe { sys::nftnl_set_alloc() })?;
    // SAFETY: `header` points at one complete, aligned message (checked above) that
    // libnftnl only reads; `set` is live until freed below, after the walk.
    let ok =
        unsafe { sys::nftnl_set_elems_nlmsg_parse(header.cast_mut().cast(), set.as_ptr()) } >= 0;
    let mut out = Vec::new();
    if ok {
        for_each_elem(set, |e| out.push(e));
    }
    // SAFETY: we own `set`; freed once.
    unsafe { sys::nftnl_set_free(set.as_ptr()) };
    ok.then_some(out)
}

/// Parses one `NFT_MSG_NEWSET` dump message.
pub fn parse_set(msg: &[u8]) -> Option<RawSet> {
    let header = whole_message(msg)?;
    // SAFETY: a fresh set or NULL, handled below.
    let set = NonNull::new(unsafe { sys::nftnl_set_alloc() })?;
    // SAFETY: as in parse_elems. The name pointer is owned by `set` and copied into a
    // String before the set is freed.
    let parsed = unsafe {
        let s = set.as_ptr();
        let parsed = if sys::nftnl_set_nlmsg_parse(header.cast_mut().cast(), s) >= 0
            && sys::nftnl_set_is_set(s, sys::NFTNL_SET_NAME as u16)
        {
            let name = CStr::from_ptr(sys::nftnl_set_get_str(s, sys::NFTNL_SET_NAME as u16));
            let flags = if sys::nftnl_set_is_set(s, sys::NFTNL_SET_FLAGS as u16) {
                sys::nftnl_set_get_u32(s, sys::NFTNL_SET_FLAGS as u16)
            } else {
                0
            };
            Some(RawSet {
                name: name.to_string_lossy().into_owned(),
                flags,
            })
        } else {
            None
        };
        sys::nftnl_set_free(s);
        parsed
    };
    parsed
}

/// Walks the elements of `set`, converting each to a [`RawElem`].
fn for_each_elem(set: NonNull<sys::nftnl_set>, mut f: impl FnMut(RawElem)) {
    // SAFETY: `set` is live for the whole walk and not modified during it; the iterator is
    // destroyed before returning; element pointers are only read while the set lives, and
    // the key bytes are copied out (length as reported by libnftnl).
    unsafe {
        let Some(iter) = NonNull::new(sys::nftnl_set_elems_iter_create(set.as_ptr())) else {
            std::process::abort();
        };
        let mut e = sys::nftnl_set_elems_iter_next(iter.as_ptr());
        while !e.is_null() {
            let mut key_len: u32 = 0;
            let key_ptr = sys::nftnl_set_elem_get(e, sys::NFTNL_SET_ELEM_KEY as u16, &mut key_len);
            let key = if key_ptr.is_null() {
                Vec::new()
            } else {
                std::slice::from_raw_parts(key_ptr.cast::<u8>(), key_len as usize).to_vec()
            };
            let get_u32 = |attr: u32| {
                sys::nftnl_set_elem_is_set(e, attr as u16)
                    .then(|| sys::nftnl_set_elem_get_u32(e, attr as u16))
            };
            let get_ms = |attr: u32| {
                sys::nftnl_set_elem_is_set(e, attr as u16)
                    .then(|| Duration::from_millis(sys::nftnl_set_elem_get_u64(e, attr as u16)))
            };
            f(RawElem {
                key,
                flags: get_u32(sys::NFTNL_SET_ELEM_FLAGS).unwrap_or(0),
                timeout: get_ms(sys::NFTNL_SET_ELEM_TIMEOUT),
                expiration: get_ms(sys::NFTNL_SET_ELEM_EXPIRATION),
            });
            e = sys::nftnl_set_elems_iter_next(iter.as_ptr());
        }
        sys::nftnl_set_elems_iter_destroy(iter.as_ptr());
    }
}

/// Owned C string for names handed to libnftnl; names with a NUL byte are rejected earlier
/// (set names are built from sanitised jail names), so this cannot fail on them.
pub fn c_name(name: &str) -> Option<CString> {
    CString::new(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nftnl::{ProtoFamily, Table};
    use std::net::Ipv4Addr;

    fn list_with(elems: &[NewElem], op: ElemOp) -> ElemList {
        let mut list = ElemList::new(c"banhound", c"sshd-v6", ProtoFamily::Inet as u16, op);
        for e in elems {
            list.push(e);
        }
        list
    }

    /// Renders the message like the kernel would receive it, one batch of one message.
    fn render(list: &ElemList) -> Vec<u8> {
        let mut batch = nftnl::Batch::new();
        batch.add(list, MsgType::Add);
        let finalized = batch.finalize();
        finalized.iter().flat_map(|b| b.to_vec()).collect()
    }

    /// Walks the messages of a rendered batch: (type, flags, payload).
    fn messages(bytes: &[u8]) -> Vec<(u16, u16, Vec<u8>)> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while rest.len() >= 16 {
            let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(rest[4..6].try_into().unwrap());
            let flags = u16::from_ne_bytes(rest[6..8].try_into().unwrap());
            out.push((ty, flags, rest[16..len].to_vec()));
            rest = &rest[(len + 3) & !3..];
        }
        out
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn elem(key: &str, flags: u32, timeout: Option<Duration>) -> NewElem {
        NewElem {
            key: ip(key),
            flags,
            timeout,
        }
    }

    #[test]
    fn timeouts_are_milliseconds_never_zero() {
        assert_eq!(timeout_ms(Duration::from_secs(600)), 600_000);
        assert_eq!(timeout_ms(Duration::from_micros(1500)), 1);
        // Zero would be "no timeout" (permanent) to the kernel.
        assert_eq!(timeout_ms(Duration::ZERO), 1);
        assert_eq!(timeout_ms(Duration::MAX), MAX_TIMEOUT_MS);
    }

    #[test]
    fn elements_keep_key_flags_and_timeout() {
        let v6: Vec<u8> = (0..16).collect();
        let list = list_with(
            &[
                elem(
                    "1:203:405:607:809:a0b:c0d:e0f",
                    0,
                    Some(Duration::from_millis(2500)),
                ),
                elem(
                    "101:101:101:101:101:101:101:101",
                    ELEM_FLAG_INTERVAL_END,
                    None,
                ),
                elem("192.0.2.1", 0, Some(Duration::ZERO)),
            ],
            ElemOp::Add,
        );
        assert_eq!(list.len(), 3);
        let mut got = list.elems();
        // libnftnl keeps its element list in insertion order.
        got.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(
            got,
            vec![
                RawElem {
                    key: v6,
                    flags: 0,
                    timeout: Some(Duration::from_millis(2500)),
                    expiration: None
                },
                RawElem {
                    key: vec![1; 16],
                    flags: ELEM_FLAG_INTERVAL_END,
                    timeout: None,
                    expiration: None
                },
                RawElem {
                    key: vec![192, 0, 2, 1],
                    flags: 0,
                    timeout: Some(Duration::from_millis(1)),
                    expiration: None
                },
            ]
        );
    }

    #[test]
    fn message_headers_per_operation() {
        let e = [elem("192.0.2.1", 0, Some(Duration::from_secs(1)))];
        for (op, ty, excl) in [
            (ElemOp::Add, libc::NFT_MSG_NEWSETELEM as u16, false),
            (ElemOp::Delete, libc::NFT_MSG_DELSETELEM as u16, false),
            (ElemOp::Destroy, 30, false),
        ] {
            let msgs = messages(&render(&list_with(&e, op)));
            // begin, our message, end
            assert_eq!(msgs.len(), 3, "{op:?}");
            let (got_ty, flags, _) = &msgs[1];
            assert_eq!(
                *got_ty,
                (libc::NFNL_SUBSYS_NFTABLES as u16) << 8 | ty,
                "{op:?}"
            );
            assert_ne!(flags & libc::NLM_F_ACK as u16, 0);
            assert_eq!(flags & libc::NLM_F_EXCL as u16 != 0, excl);
        }
    }

    #[test]
    fn payload_round_trips_through_the_kernel_format() {
        // The element we send is encoded as a dump returns it, so libnftnl's dump parser
        // reads it back. (Its builder numbers list entries 1, 2, ...; the kernel accepts any
        // number but dumps and the parser use NFTA_LIST_ELEM = 1, hence one per message.)
        for sent in [
            elem("2001:db8::1", 0, Some(Duration::from_millis(90_000))),
            elem("2001:db8::2", ELEM_FLAG_INTERVAL_END, None),
            elem("192.0.2.255", 0, None),
        ] {
            let bytes = render(&list_with(std::slice::from_ref(&sent), ElemOp::Add));
            // Skip the batch-begin message (20 bytes: header + nfgenmsg).
            let len = u32::from_ne_bytes(bytes[20..24].try_into().unwrap()) as usize;
            let msg = bytes[20..20 + len].to_vec();
            let got = parse_elems(&msg).unwrap();
            assert_eq!(
                got,
                vec![RawElem {
                    key: octets(sent.key),
                    flags: sent.flags,
                    timeout: sent.timeout,
                    expiration: None
                }]
            );
            // Truncated input is refused, not read past.
            assert_eq!(parse_elems(&msg[..msg.len() - 1]), None);
        }
    }

    #[test]
    fn set_flags_are_written() {
        let table = Table::new(c"banhound", ProtoFamily::Inet);
        let mut set = Set::<Ipv4Addr>::new_named(c"sshd-v4", 1, &table, ProtoFamily::Inet);
        assert_eq!(get_flags(&set), None);
        set_flags(&mut set, SET_FLAG_TIMEOUT | SET_FLAG_INTERVAL);
        assert_eq!(get_flags(&set), Some(SET_FLAG_TIMEOUT | SET_FLAG_INTERVAL));
    }

    #[test]
    fn dump_requests_name_table_and_set() {
        let req = get_elems_request(c"banhound", c"sshd-v4", ProtoFamily::Inet as u16, 7);
        let ty = u16::from_ne_bytes(req[4..6].try_into().unwrap());
        let flags = u16::from_ne_bytes(req[6..8].try_into().unwrap());
        assert_eq!(ty & 0xff, libc::NFT_MSG_GETSETELEM as u16);
        assert_ne!(flags & libc::NLM_F_DUMP as u16, 0);
        let text = String::from_utf8_lossy(&req);
        assert!(text.contains("banhound") && text.contains("sshd-v4"));
        let keys = [ip("192.0.2.1"), ip("2020:2020::2020")];
        let req = get_elems_of_request(c"banhound", c"sshd-v4", ProtoFamily::Inet as u16, 9, &keys);
        let flags = u16::from_ne_bytes(req[6..8].try_into().unwrap());
        assert_eq!(flags & libc::NLM_F_DUMP as u16, 0);
        assert_eq!(
            u32::from_ne_bytes(req[0..4].try_into().unwrap()) as usize,
            req.len()
        );
        // (libnftnl's parser only reads dump-style lists, so look for the keys directly.)
        for key in keys.map(octets) {
            assert!(req.windows(key.len()).any(|w| w == &key[..]), "{key:?}");
        }
        let one = get_elems_of_request(c"banhound", c"sshd-v4", 1, 9, &keys[..1]);
        assert_eq!(parse_elems(&one).unwrap()[0].key, octets(keys[0]));
        let req = get_sets_request(c"banhound", ProtoFamily::Inet as u16, 8);
        assert_eq!(
            u16::from_ne_bytes(req[4..6].try_into().unwrap()) & 0xff,
            libc::NFT_MSG_GETSET as u16
        );
    }
}
