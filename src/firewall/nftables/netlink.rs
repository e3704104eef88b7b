//! The netlink socket: one transaction per batch, bounded waits, errors tied to their cause.
//!
//! A batch (`NFNL_MSG_BATCH_BEGIN` .. `END`) is atomic only if the kernel receives it in one
//! `sendmsg`, so the whole batch goes out as one call over libnftnl's pages, with the send
//! buffer raised to fit (100,000 bans are a few MiB). Every message asks for an ack; the
//! kernel answers each one, and a failing one with its errno, the failing message echoed and
//! (extended acks) the offset of the failing attribute, which names the element. Every
//! receive has a timeout (`SO_RCVTIMEO`): a kernel that never answers must not hang the
//! daemon.

use super::shim::{self, ElemOp};
use super::NftError;
use crate::multicast::attributes;
use nftnl::FinalizedBatch;
use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::time::Duration;

/// Receive buffer for one `recv`: the largest message the kernel sends us is an error that
/// echoes a 64 KiB request, plus its ack attributes.
const RECV_BUF: usize = 256 * 1024;
/// Socket receive buffer: room for the acks of a large batch sent at once.
const SOCKET_RCVBUF: usize = 16 * 1024 * 1024;

/// `SOL_NETLINK` options (`linux/netlink.h`).
const NETLINK_EXT_ACK: libc::c_int = 11;
/// Error message flags and attributes (`linux/netlink.h`).
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLMSGERR_ATTR_OFFS: u16 = 2;
/// `NFTA_SET_ELEM_KEY` inside a list element and `NFTA_DATA_VALUE` inside a key.
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;

/// What a message of a batch does, for error reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageInfo {
    /// The batch begin/end markers.
    Batch,
    /// A table, chain, set or rule operation.
    Object(String),
    /// An element message of one set.
    Elements {
        set: String,
        op: ElemOp,
        count: usize,
    },
}

impl std::fmt::Display for MessageInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessageInfo::Batch => f.write_str("batch marker"),
            MessageInfo::Object(what) => f.write_str(what),
            MessageInfo::Elements { set, op, count } => {
                let verb = match op {
                    ElemOp::Add => "add",
                    ElemOp::Delete => "delete",
                    ElemOp::Destroy => "destroy",
                };
                write!(f, "{verb} {count} element(s) of set {set}")
            }
        }
    }
}

/// A message the kernel refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub errno: i32,
    pub message: MessageInfo,
    /// The element the kernel pointed at (extended ack), when it did.
    pub element: Option<IpAddr>,
    /// The kernel's extended-ack text, when it sent one.
    pub detail: Option<String>,
}

/// A batch under construction, with what each of its messages does.
pub struct BatchBuilder {
    batch: nftnl::Batch,
    infos: Vec<MessageInfo>,
}

impl BatchBuilder {
    pub fn new() -> Self {
        BatchBuilder {
            batch: nftnl::Batch::new(),
            infos: Vec::new(),
        }
    }

    pub fn add(&mut self, msg: &impl nftnl::NlMsg, msg_type: nftnl::MsgType, info: MessageInfo) {
        self.batch.add(msg, msg_type);
        self.infos.push(info);
    }

    pub fn is_empty(&self) -> bool {
        self.infos.is_empty()
    }

    #[cfg(test)]
    pub fn message_count(&self) -> usize {
        self.infos.len()
    }

    fn finalize(self) -> (FinalizedBatch, Vec<MessageInfo>) {
        (self.batch.finalize(), self.infos)
    }
}

/// Size of the last batch sent, for reports and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchStats {
    pub messages: usize,
    pub bytes: usize,
}

pub struct NetlinkSocket {
    socket: mnl::Socket,
    fd: RawFd,
    timeout: Duration,
    dump_seq: u32,
    buf: Vec<u8>,
    sndbuf: usize,
    last_batch: BatchStats,
}

// SAFETY: mnl::Socket wraps a heap-allocated `struct mnl_socket` (an fd and its address)
// that libmnl never shares or caches; it has no thread affinity. It is only used through
// `&mut self`, so moving it between threads is sound. (The netns is fixed at creation.)
unsafe impl Send for NetlinkSocket {}

impl NetlinkSocket {
    /// Opens a netfilter netlink socket in the calling thread's network namespace.
    pub fn open(timeout: Duration) -> Result<Self, NftError> {
        let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(NftError::Socket)?;
        // SAFETY: the mnl_socket is live for `socket`'s lifetime; this reads its fd.
        let fd = unsafe { mnl::mnl_sys::mnl_socket_get_fd(socket.as_raw_socket()) };
        let mut this = NetlinkSocket {
            socket,
            fd,
            timeout,
            dump_seq: 0x4000_0000,
            buf: vec![0; RECV_BUF],
            sndbuf: 0,
            last_batch: BatchStats::default(),
        };
        this.set_timeout(timeout)?;
        // The kernel only pins the failing attribute for sockets that ask for it. Old
        // kernels lack the option; errors then name the message, not the element.
        let _ = this.setsockopt(libc::SOL_NETLINK, NETLINK_EXT_ACK, 1);
        this.set_buffer(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, SOCKET_RCVBUF)?;
        Ok(this)
    }

    fn set_timeout(&mut self, timeout: Duration) -> Result<(), NftError> {
        // A zero SO_RCVTIMEO would mean "wait forever".
        let timeout = timeout.max(Duration::from_millis(1));
        let tv = libc::timeval {
            tv_sec: timeout.as_secs().try_into().unwrap_or(libc::time_t::MAX),
            tv_usec: timeout.subsec_micros().into(),
        };
        // SAFETY: `tv` is a valid timeval for the duration of the call; the fd is ours.
        let rc = unsafe {
            libc::setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(NftError::Socket(io::Error::last_os_error()));
        }
        self.timeout = timeout;
        Ok(())
    }

    pub fn last_batch(&self) -> BatchStats {
        self.last_batch
    }

    /// The socket's netlink port id: the kernel's change notifications carry the port id
    /// of the socket that made the change.
    pub fn portid(&self) -> u32 {
        self.socket.portid()
    }

    fn setsockopt(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: libc::c_int,
    ) -> io::Result<()> {
        crate::multicast::setsockopt_int(self.fd, level, name, value)
    }

    /// Raises a socket buffer: the FORCE variant (CAP_NET_ADMIN, which we need anyway)
    /// ignores `net.core.[rw]mem_max`; the plain one is the fallback.
    fn set_buffer(
        &self,
        force: libc::c_int,
        plain: libc::c_int,
        size: usize,
    ) -> Result<(), NftError> {
        let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
        self.setsockopt(libc::SOL_SOCKET, force, size)
            .or_else(|_| self.setsockopt(libc::SOL_SOCKET, plain, size))
            .map_err(NftError::Socket)
    }

    /// Discards anything left from an earlier, abandoned exchange (a timed-out batch), so
    /// its late answers cannot be mistaken for this one's.
    fn drain(&mut self) {
        loop {
            // SAFETY: the buffer is ours and its length is passed; MSG_DONTWAIT never blocks.
            let n = unsafe {
                libc::recv(
                    self.fd,
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                // EAGAIN (empty) or an error such as ENOBUFS, which reading also clears.
                if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
                    continue;
                }
                return;
            }
        }
    }

    /// One receive, bounded by the socket timeout (a signal restarts it, which can stretch
    /// the wait by one timeout per signal).
    fn recv(&mut self) -> Result<usize, NftError> {
        loop {
            return match self.socket.recv_raw(&mut self.buf) {
                Ok(n) => Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    Err(NftError::Timeout(self.timeout))
                }
                Err(e) => Err(NftError::Receive(e)),
            };
        }
    }

    /// Sends a batch as one transaction and waits for every ack. The kernel applies all of
    /// it or, if any message fails, none of it.
    pub fn transact(&mut self, batch: BatchBuilder) -> Result<(), NftError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (batch, infos) = batch.finalize();
        let seqs = batch.sequence_numbers();
        let pages: Vec<&[u8]> = batch.iter().collect();
        let bytes: usize = pages.iter().map(|p| p.len()).sum();
        self.last_batch = BatchStats {
            messages: infos.len(),
            bytes,
        };
        // The kernel refuses a message larger than the send buffer (EMSGSIZE).
        let wanted = bytes + 64 * 1024;
        if wanted > self.sndbuf {
            self.set_buffer(libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, wanted)?;
            self.sndbuf = wanted;
        }
        self.drain();
        let mut iov: Vec<libc::iovec> = pages
            .iter()
            .map(|p| libc::iovec {
                iov_base: p.as_ptr().cast_mut().cast(),
                iov_len: p.len(),
            })
            .collect();
        // SAFETY: an all-zero sockaddr_nl is valid; we set the family (destination: the
        // kernel, pid 0).
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut kernel as *mut libc::sockaddr_nl).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len();
        // SAFETY: `msg` points at `kernel` and at iovecs over the batch pages, all alive
        // (borrowed from `batch`) until sendmsg returns; the kernel only reads them.
        let sent = unsafe { libc::sendmsg(self.fd, &msg, 0) };
        if sent < 0 {
            return Err(NftError::Send {
                bytes,
                messages: infos.len(),
                source: io::Error::last_os_error(),
            });
        }

        // Sequence numbers of messages expecting an ack; the batch markers only get one
        // on kernels that ack them (nftnl decides, 6.10+), and their numbers are in `seqs`.
        let first = seqs.start;
        // Our messages follow the begin marker, which has a number only if it is acked.
        let markers_acked = seqs.len() > infos.len();
        let first_message = if markers_acked { first + 1 } else { first };
        let end_marker = markers_acked.then(|| seqs.end - 1);
        let describe = |seq: u32| -> MessageInfo {
            seq.checked_sub(first_message)
                .and_then(|i| infos.get(i as usize).cloned())
                .unwrap_or(MessageInfo::Batch)
        };
        let mut pending: BTreeSet<u32> = seqs.clone().collect();
        let mut rejections: Vec<Rejection> = Vec::new();
        // A failed batch is aborted, and the kernel does not ack its end marker.
        let done = |pending: &BTreeSet<u32>, failed: bool| {
            pending.is_empty() || (failed && pending.iter().all(|s| Some(*s) == end_marker))
        };
        while !done(&pending, !rejections.is_empty()) {
            let n = match self.recv() {
                Ok(n) => n,
                // After a failure the kernel may skip the remaining acks (e.g. ENOMEM
                // aborts the batch outright): what we have is the answer.
                Err(NftError::Timeout(_)) if !rejections.is_empty() => break,
                Err(e) => return Err(e),
            };
            for reply in parse_replies(&self.buf[..n]) {
                let Reply::Ack {
                    seq,
                    errno,
                    element,
                    detail,
                } = reply
                else {
                    continue;
                };
                if !pending.remove(&seq) {
                    continue;
                }
                if errno != 0 {
                    rejections.push(Rejection {
                        errno,
                        message: describe(seq),
                        element,
                        detail,
                    });
                }
            }
        }
        if rejections.is_empty() {
            Ok(())
        } else {
            Err(NftError::Rejected(rejections))
        }
    }

    /// Runs a dump request and hands each answer message to `each`. `Ok(false)` if the
    /// kernel answered ENOENT (no such table or set).
    pub fn dump(
        &mut self,
        request: impl FnOnce(u32) -> Vec<u8>,
        mut each: impl FnMut(&[u8]),
    ) -> Result<bool, NftError> {
        self.drain();
        self.dump_seq = self.dump_seq.wrapping_add(1);
        let seq = self.dump_seq;
        let req = request(seq);
        self.socket.send(&req).map_err(|source| NftError::Send {
            bytes: req.len(),
            messages: 1,
            source,
        })?;
        loop {
            let n = self.recv()?;
            let mut offset = 0;
            while offset + 16 <= n {
                let msg = &self.buf[offset..n];
                let len = u32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]) as usize;
                if len < 16 || len > msg.len() {
                    return Err(NftError::Malformed("truncated dump message".into()));
                }
                let ty = u16::from_ne_bytes([msg[4], msg[5]]);
                let msg_seq = u32::from_ne_bytes([msg[8], msg[9], msg[10], msg[11]]);
                let msg = &msg[..len];
                offset += (len + 3) & !3;
                if msg_seq != seq {
                    continue;
                }
                match ty as i32 {
                    libc::NLMSG_DONE => return Ok(true),
                    libc::NLMSG_ERROR => {
                        let errno = error_code(msg);
                        return match errno {
                            0 => Ok(true),
                            libc::ENOENT => Ok(false),
                            errno => Err(NftError::Rejected(vec![Rejection {
                                errno,
                                message: MessageInfo::Object("dump request".into()),
                                element: None,
                                detail: None,
                            }])),
                        };
                    }
                    _ => each(msg),
                }
            }
        }
    }
}

/// An answer of the kernel to one of our messages.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Ack {
        seq: u32,
        errno: i32,
        element: Option<IpAddr>,
        detail: Option<String>,
    },
    Other,
}

fn error_code(msg: &[u8]) -> i32 {
    msg.get(16..20)
        .and_then(|b| b.try_into().ok())
        .map(|b| -i32::from_ne_bytes(b))
        .unwrap_or(libc::EPROTO)
}

fn parse_replies(buf: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < 16 || len > rest.len() {
            break;
        }
        out.push(parse_reply(&rest[..len]));
        let next = ((len + 3) & !3).min(rest.len());
        rest = &rest[next..];
    }
    out
}

/// Decodes an `NLMSG_ERROR` message: which request it answers, the errno, and from the
/// extended ack the failing element (decoded from the echoed request) and text.
fn parse_reply(msg: &[u8]) -> Reply {
    let ty = u16::from_ne_bytes([msg[4], msg[5]]);
    if ty as i32 != libc::NLMSG_ERROR || msg.len() < 36 {
        return Reply::Other;
    }
    let flags = u16::from_ne_bytes([msg[6], msg[7]]);
    let errno = error_code(msg);
    // nlmsgerr: error (4) + the request's header (16) [+ the request's payload].
    let request_header = &msg[20..36];
    let seq = u32::from_ne_bytes([
        request_header[8],
        request_header[9],
        request_header[10],
        request_header[11],
    ]);
    let request_len = u32::from_ne_bytes([
        request_header[0],
        request_header[1],
        request_header[2],
        request_header[3],
    ]) as usize;
    let (request, tlvs) = if flags & NLM_F_CAPPED != 0 || errno == 0 {
        (None, msg.get(36..).unwrap_or(&[]))
    } else {
        let end = (20 + request_len).min(msg.len());
        (
            Some(&msg[20..end]),
            msg.get((end + 3) & !3..).unwrap_or(&[]),
        )
    };
    let mut element = None;
    let mut detail = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        for (ty, value) in attributes(tlvs) {
            match ty {
                NLMSGERR_ATTR_MSG => {
                    let text = value.split(|b| *b == 0).next().unwrap_or(&[]);
                    detail = Some(String::from_utf8_lossy(text).into_owned());
                }
                NLMSGERR_ATTR_OFFS => {
                    let offset = value
                        .get(0..4)
                        .and_then(|b| b.try_into().ok())
                        .map(u32::from_ne_bytes);
                    if let (Some(offset), Some(request)) = (offset, request) {
                        element = element_at(request, offset as usize);
                    }
                }
                _ => {}
            }
        }
    }
    Reply::Ack {
        seq,
        errno,
        element,
        detail,
    }
}

/// The address of the list element at `offset` in an element request: the attribute the
/// kernel's extended ack points at is the `NFTA_LIST_ELEM` that failed.
fn element_at(request: &[u8], offset: usize) -> Option<IpAddr> {
    let elem = request.get(offset..)?;
    let (_, body) = attributes(elem).into_iter().next()?;
    let (_, key) = attributes(body)
        .into_iter()
        .find(|(ty, _)| *ty == NFTA_SET_ELEM_KEY)?;
    let (_, value) = attributes(key)
        .into_iter()
        .find(|(ty, _)| *ty == NFTA_DATA_VALUE)?;
    match value.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(value).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(value).ok()?)),
        _ => None,
    }
}

/// Builds element messages of at most `ELEMS_PER_MESSAGE` elements each: one list
/// attribute must stay under 64 KiB, and the largest element (IPv6 key, flags, timeout)
/// takes 48 bytes, so 512 of them are 24 KiB.
pub const ELEMS_PER_MESSAGE: usize = 512;

/// Appends the element messages for `elems` of one set to `batch`.
pub fn add_elements(
    batch: &mut BatchBuilder,
    table: &std::ffi::CStr,
    set_name: &str,
    family: u16,
    op: ElemOp,
    elems: &[shim::NewElem],
) -> Result<(), NftError> {
    let c_set = shim::c_name(set_name)
        .ok_or_else(|| NftError::Malformed(format!("set name {set_name:?}")))?;
    for chunk in elems.chunks(ELEMS_PER_MESSAGE) {
        let mut list = shim::ElemList::new(table, &c_set, family, op);
        for e in chunk {
            list.push(e);
        }
        let info = MessageInfo::Elements {
            set: set_name.to_string(),
            op,
            count: list.len(),
        };
        batch.add(&list, nftnl::MsgType::Add, info);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&ty.to_ne_bytes());
        out.extend_from_slice(value);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    fn header(len: usize, ty: u16, flags: u16, seq: u32) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&(len as u32).to_ne_bytes());
        h.extend_from_slice(&ty.to_ne_bytes());
        h.extend_from_slice(&flags.to_ne_bytes());
        h.extend_from_slice(&seq.to_ne_bytes());
        h.extend_from_slice(&0u32.to_ne_bytes());
        h
    }

    #[test]
    fn error_reply_names_the_failing_element() {
        // The request: header, nfgenmsg, a list with two elements; the second one fails.
        let elem = |ip: &[u8]| {
            attr(
                1 | 0x8000,
                &attr(NFTA_SET_ELEM_KEY | 0x8000, &attr(NFTA_DATA_VALUE, ip)),
            )
        };
        let first = elem(&[192, 0, 2, 1]);
        let second = elem(&[198, 51, 100, 7]);
        let list = attr(3 | 0x8000, &[first.clone(), second].concat());
        let body = [vec![1, 0, 0, 0], list].concat();
        let request = [header(16 + body.len(), 0x0a0c, 0x0405, 42), body].concat();
        // Offset of the second element: header 16 + nfgenmsg 4 + list attr header 4 + first.
        let offset = (16 + 4 + 4 + first.len()) as u32;
        let tlvs = [
            attr(NLMSGERR_ATTR_MSG, b"overlap\0"),
            attr(NLMSGERR_ATTR_OFFS, &offset.to_ne_bytes()),
        ]
        .concat();
        let payload = [(-libc::EEXIST).to_ne_bytes().to_vec(), request, tlvs].concat();
        let reply = [
            header(
                16 + payload.len(),
                libc::NLMSG_ERROR as u16,
                NLM_F_ACK_TLVS,
                42,
            ),
            payload,
        ]
        .concat();
        assert_eq!(
            parse_replies(&reply),
            vec![Reply::Ack {
                seq: 42,
                errno: libc::EEXIST,
                element: Some("198.51.100.7".parse().unwrap()),
                detail: Some("overlap".into()),
            }]
        );
    }

    #[test]
    fn plain_acks_and_other_messages() {
        let ack = |seq| {
            let payload = [0i32.to_ne_bytes().to_vec(), header(20, 0x0a0c, 0, seq)].concat();
            [
                header(
                    16 + payload.len(),
                    libc::NLMSG_ERROR as u16,
                    NLM_F_CAPPED,
                    seq,
                ),
                payload,
            ]
            .concat()
        };
        let done = header(20, libc::NLMSG_DONE as u16, 0, 9);
        let buf = [ack(7), done, vec![0; 4], ack(8)].concat();
        let replies = parse_replies(&buf);
        assert_eq!(
            replies[0],
            Reply::Ack {
                seq: 7,
                errno: 0,
                element: None,
                detail: None
            }
        );
        assert_eq!(replies[1], Reply::Other);
        // A truncated tail (here: a 4-byte NLMSG_DONE payload counted into the length) stops
        // parsing rather than reading garbage.
        assert!(replies.len() <= 3);
    }

    #[test]
    fn receiving_gives_up_after_the_timeout() {
        // Nothing was sent, so the kernel will never answer: the wait must end.
        let mut socket = NetlinkSocket::open(Duration::from_millis(50)).unwrap();
        let started = std::time::Instant::now();
        match socket.recv() {
            Err(NftError::Timeout(t)) => assert_eq!(t, Duration::from_millis(50)),
            other => panic!("{other:?}"),
        }
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(40) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
    }

    #[test]
    fn sockets_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<NetlinkSocket>();
        assert_send::<super::super::NftablesBackend>();
    }

    #[test]
    fn element_chunks_respect_the_message_limit() {
        let mut batch = BatchBuilder::new();
        let elems: Vec<shim::NewElem> = (0..1100u32)
            .map(|i| shim::NewElem {
                key: IpAddr::from(std::net::Ipv6Addr::from(
                    0x2001_0db8_u128 << 96 | u128::from(i),
                )),
                flags: 0,
                timeout: Some(Duration::from_secs(60)),
            })
            .collect();
        add_elements(&mut batch, c"banhound", "sshd-v6", 1, ElemOp::Add, &elems).unwrap();
        assert_eq!(batch.message_count(), 3);
        let (finalized, infos) = batch.finalize();
        assert_eq!(
            infos
                .iter()
                .map(|i| match i {
                    MessageInfo::Elements { count, .. } => *count,
                    _ => 0,
                })
                .collect::<Vec<_>>(),
            vec![512, 512, 76]
        );
        // Each element message stays well inside one 64 KiB list attribute.
        let bytes: Vec<u8> = finalized.iter().flat_map(|p| p.to_vec()).collect();
        let mut rest = &bytes[..];
        while rest.len() >= 16 {
            let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
            assert!(len < 32 * 1024, "message of {len} bytes");
            rest = &rest[(len + 3) & !3..];
        }
    }
}
