//! Netlink multicast subscriptions: the kernel tells the daemon when something it depends on
//! changed (the host's addresses, the nf_tables ruleset), so nothing has to poll for it.
//!
//! A subscription is a non-blocking netlink socket bound to the groups wanted and registered
//! with the tokio reactor ([`AsyncFd`]): the owner task sleeps until the kernel queues a
//! notification, and an idle host costs no wake-up. The kernel drops notifications when the
//! socket's receive buffer is full and says so with `ENOBUFS` on the next receive; that is
//! reported as [`Received::Overflow`] (something changed, what is unknown), so the caller
//! reads the whole state again instead of trusting a partial story.
//!
//! Only the kernel's messages count: a process with CAP_NET_ADMIN may send to a multicast
//! group too, and its datagrams (sender port id not 0) are dropped.
//!
//! The socket calls are the unsafe part, each with its `// SAFETY:` comment; messages are
//! parsed in safe code.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// One receive: notifications are small, a burst (a flushed ruleset) comes as many of them.
const RECV_BUF: usize = 64 * 1024;
/// The socket's receive buffer: room for a burst while the owner task is busy elsewhere.
const SOCKET_RCVBUF: libc::c_int = 4 * 1024 * 1024;
/// At most this many datagrams per call, so a flood of notifications cannot hold the owner
/// task; the rest are read on the next call (the socket stays readable).
const DATAGRAMS_PER_CALL: usize = 256;
/// The netlink header: length, type, flags, sequence number, sender port id.
const HEADER: usize = 16;

/// One notification: its type, the port id of the socket whose request caused it (0 for
/// the kernel's own changes), and what follows the netlink header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub kind: u16,
    pub portid: u32,
    pub payload: Vec<u8>,
}

/// What one wait brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    Messages(Vec<Message>),
    /// Notifications were lost: the state may have changed in any way.
    Overflow,
}

/// A netlink socket subscribed to multicast groups. See the module documentation.
pub struct Subscription {
    fd: AsyncFd<OwnedFd>,
    buf: Vec<u8>,
}

impl Subscription {
    /// Subscribes to `groups` (the bitmask of `nl_groups`: group N is bit N-1) of netlink
    /// `protocol`, in the calling thread's network namespace. Must be called inside a tokio
    /// runtime with I/O enabled.
    pub fn open(protocol: libc::c_int, groups: u32) -> io::Result<Subscription> {
        // SAFETY: a plain socket(2) call; the descriptor it returns is owned just below.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns or closes.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // A bigger buffer loses fewer bursts; the FORCE variant (CAP_NET_ADMIN) ignores
        // net.core.rmem_max, the plain one is the fallback, and the default works too.
        let raw_fd = fd.as_raw_fd();
        let _ = setsockopt_int(
            raw_fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            SOCKET_RCVBUF,
        )
        .or_else(|_| setsockopt_int(raw_fd, libc::SOL_SOCKET, libc::SO_RCVBUF, SOCKET_RCVBUF));
        // SAFETY: an all-zero sockaddr_nl is valid; family and groups are set below, port
        // id 0 lets the kernel choose one.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = groups;
        // SAFETY: `addr` is a valid sockaddr_nl that outlives the call, with its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the OwnedFd moved into the AsyncFd is open and stays the same descriptor
        // until the AsyncFd drops it; nothing else holds or closes it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
        Ok(Subscription {
            fd,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Waits for the kernel's next notifications and returns every one queued (up to a
    /// bound per call).
    pub async fn next(&mut self) -> io::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            let fd = guard.get_inner().as_raw_fd();
            let mut messages = Vec::new();
            let mut overflow = false;
            let mut drained = false;
            for _ in 0..DATAGRAMS_PER_CALL {
                // SAFETY: an all-zero sockaddr_nl is valid; recvfrom fills it.
                let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
                let mut from_len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
                // SAFETY: the buffer is ours and its length is passed; `from` and `from_len`
                // are valid for writes for the duration of the call; MSG_DONTWAIT never
                // blocks.
                let n = unsafe {
                    libc::recvfrom(
                        fd,
                        self.buf.as_mut_ptr().cast(),
                        self.buf.len(),
                        libc::MSG_DONTWAIT,
                        (&mut from as *mut libc::sockaddr_nl).cast(),
                        &mut from_len,
                    )
                };
                if n < 0 {
                    let error = io::Error::last_os_error();
                    match error.raw_os_error() {
                        Some(libc::EAGAIN) => {
                            drained = true;
                            break;
                        }
                        Some(libc::EINTR) => continue,
                        // Reading the error clears it; what is queued after it is still read.
                        Some(libc::ENOBUFS) => {
                            overflow = true;
                            continue;
                        }
                        _ => return Err(error),
                    }
                }
                if from.nl_pid != 0 {
                    continue;
                }
                let n = usize::try_from(n).unwrap_or(0);
                messages.extend(parse(&self.buf[..n]));
            }
            if drained {
                guard.clear_ready();
            }
            if overflow {
                return Ok(Received::Overflow);
            }
            if !messages.is_empty() {
                return Ok(Received::Messages(messages));
            }
        }
    }
}

/// `setsockopt(2)` of one `int` option: also the nftables batch socket's, so both sockets'
/// options go through this one unsafe block.
pub(crate) fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a live c_int for the duration of the call; a stale or foreign fd
    // only makes the call fail with EBADF/ENOTSOCK.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The messages of one datagram; a truncated tail is dropped, and so are the netlink
/// control messages (noop, error, done, overrun), which no notification is.
fn parse(mut buf: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    while buf.len() >= HEADER {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < HEADER || len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let portid = u32::from_ne_bytes([buf[12], buf[13], buf[14], buf[15]]);
        if i32::from(kind) >= libc::NLMSG_MIN_TYPE {
            out.push(Message {
                kind,
                portid,
                payload: buf[HEADER..len].to_vec(),
            });
        }
        let next = ((len + 3) & !3).min(buf.len());
        buf = &buf[next..];
    }
    out
}

/// The netlink attributes in `buf`: (type without the nested and byte-order bits, value).
/// A malformed tail ends the list.
pub fn attributes(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((ty, &buf[4..len]));
        let next = ((len + 3) & !3).min(buf.len());
        buf = &buf[next..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, portid: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((HEADER + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&portid.to_ne_bytes());
        m.extend_from_slice(payload);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    #[test]
    fn parses_messages_and_skips_control_and_truncated_ones() {
        let done = message(libc::NLMSG_DONE as u16, 0, &[0; 4]);
        let buf = [
            message(20, 0, &[1, 2, 3]),
            done,
            message(0x0a02, 4242, &[7; 8]),
            // Claims more than there is.
            vec![200, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        ]
        .concat();
        assert_eq!(
            parse(&buf),
            vec![
                Message {
                    kind: 20,
                    portid: 0,
                    payload: vec![1, 2, 3]
                },
                Message {
                    kind: 0x0a02,
                    portid: 4242,
                    payload: vec![7; 8]
                },
            ]
        );
    }

    #[test]
    fn attributes_stop_at_a_malformed_tail() {
        let buf = [
            vec![9, 0, 1, 0x80],
            b"banh\0".to_vec(),
            vec![0, 0, 0],
            vec![8, 0, 2, 0, 1, 2, 3, 4],
            vec![40, 0, 3, 0],
        ]
        .concat();
        assert_eq!(
            attributes(&buf),
            vec![(1, &b"banh\0"[..]), (2, &[1, 2, 3, 4][..])]
        );
    }
}
