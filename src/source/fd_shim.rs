//! The raw syscalls of the follow threads, and the only `unsafe` code they share: the stop
//! eventfd both followers (journal and files) sleep on, poll(2), and the inotify calls of
//! the file follower. Each function checks what the kernel returned and gives back an owned
//! descriptor or an `io::Error`; no raw descriptor leaves this module unowned.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A new non-blocking eventfd, for asking a follow thread to stop.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: a plain syscall; the result is checked before use.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    owned(fd)
}

/// Adds one to an eventfd (wakes whoever polls it). A full counter, the only failure on a
/// valid eventfd, leaves it readable anyway, so the result does not matter.
pub fn signal(eventfd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64 to an open descriptor.
    unsafe {
        libc::write(
            eventfd.as_raw_fd(),
            (&one as *const u64).cast(),
            std::mem::size_of::<u64>(),
        )
    };
}

/// poll(2) on `fds` for at most `timeout_ms` (-1: no limit).
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: libc::c_int) -> io::Result<libc::c_int> {
    // SAFETY: `fds` is a valid array of `fds.len()` pollfds, borrowed for the call.
    let ret = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

/// A new non-blocking inotify instance.
pub fn inotify() -> io::Result<OwnedFd> {
    // SAFETY: a plain syscall; the result is checked before use.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    owned(fd)
}

/// Watches `path` for the events of `mask` on the inotify instance `inotify`.
pub fn inotify_watch(inotify: &OwnedFd, path: &CStr, mask: u32) -> io::Result<()> {
    // SAFETY: an open descriptor and a NUL-terminated path, both borrowed for the call.
    if unsafe { libc::inotify_add_watch(inotify.as_raw_fd(), path.as_ptr(), mask) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads and drops whatever is queued on a non-blocking descriptor, until it is empty.
pub fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 4096];
    // SAFETY: reads into a valid buffer of `buf.len()` bytes from an open descriptor.
    while unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

/// The descriptor a syscall returned, owned, or the error it reported.
fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created by the caller's syscall and nothing else owns or closes it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
