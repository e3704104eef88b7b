//! The raw calls of the journal source, and its only `unsafe` code: the sd-journal functions
//! the `systemd` crate does not wrap (or wraps with an allocation per call, too slow for the
//! per-entry path), and the follow thread's gettid and clock (its eventfd and poll(2) are the
//! followers' shared [`crate::source::fd_shim`]).
//!
//! Every sd-journal call borrows the `Journal`. The handle is live for as long as the
//! `Journal` exists (its `Drop` closes it), and `Journal` is neither `Send` nor `Sync`, so a
//! call always runs on the thread that opened it, as sd-journal requires. [`for_each_data`]
//! borrows it exclusively, so no other call on the handle runs while it lends out a field
//! that the next call would invalidate; the calls that only read the current entry's
//! position take `&Journal`, the others `&mut Journal`. Results are sd-journal's own
//! (a negative errno on failure); the reader checks them and names the call.

use foreign_types::ForeignType;
use libsystemd_sys::journal as ffi;
use std::ffi::CStr;
use systemd::Journal;

/// `sd_journal_add_match` of one `FIELD=value` term (sd-journal copies it).
pub(super) fn add_match(journal: &mut Journal, term: &[u8]) -> libc::c_int {
    // SAFETY: a live handle on its own thread (see the module comment); `term` is valid for
    // `term.len()` bytes during the call, and sd-journal copies what it keeps.
    unsafe { ffi::sd_journal_add_match(journal.as_ptr(), term.as_ptr().cast(), term.len()) }
}

pub(super) fn seek_head(journal: &mut Journal) -> libc::c_int {
    // SAFETY: a live handle on its own thread (see the module comment).
    unsafe { ffi::sd_journal_seek_head(journal.as_ptr()) }
}

pub(super) fn seek_realtime_usec(journal: &mut Journal, usec: u64) -> libc::c_int {
    // SAFETY: a live handle on its own thread (see the module comment).
    unsafe { ffi::sd_journal_seek_realtime_usec(journal.as_ptr(), usec) }
}

pub(super) fn seek_cursor(journal: &mut Journal, cursor: &CStr) -> libc::c_int {
    // SAFETY: a live handle on its own thread (see the module comment); `cursor` is
    // NUL-terminated and outlives the call.
    unsafe { ffi::sd_journal_seek_cursor(journal.as_ptr(), cursor.as_ptr()) }
}

pub(super) fn next(journal: &mut Journal) -> libc::c_int {
    // SAFETY: a live handle on its own thread (see the module comment).
    unsafe { ffi::sd_journal_next(journal.as_ptr()) }
}

pub(super) fn test_cursor(journal: &Journal, cursor: &CStr) -> libc::c_int {
    // SAFETY: a live handle on its own thread (see the module comment); `cursor` is
    // NUL-terminated and outlives the call.
    unsafe { ffi::sd_journal_test_cursor(journal.as_ptr(), cursor.as_ptr()) }
}

/// The current entry's receive time: (result, microseconds since the epoch).
pub(super) fn realtime_usec(journal: &Journal) -> (libc::c_int, u64) {
    let mut usec = 0u64;
    // SAFETY: a live handle on its own thread (see the module comment); `usec` is a valid
    // u64 for the call to write.
    let ret = unsafe { ffi::sd_journal_get_realtime_usec(journal.as_ptr(), &mut usec) };
    (ret, usec)
}

/// Calls `f` with each field (`NAME=value`) of the current entry, in sd-journal's order;
/// the first error (negative) ends the pass and is returned, else 0. A field is lent only
/// for the call: sd-journal reuses its memory at the next call on the handle.
pub(super) fn for_each_data(journal: &mut Journal, mut f: impl FnMut(&[u8])) -> libc::c_int {
    let j = journal.as_ptr();
    // SAFETY: a live handle on its own thread (see the module comment).
    unsafe { ffi::sd_journal_restart_data(j) };
    loop {
        let mut data: *const u8 = std::ptr::null();
        let mut len: libc::size_t = 0;
        // SAFETY: as above; `data` and `len` are valid places for the call to write.
        let ret = unsafe { ffi::sd_journal_enumerate_data(j, &mut data, &mut len) };
        if ret <= 0 {
            return ret;
        }
        // SAFETY: on success sd-journal set `data` to `len` readable bytes, valid until the
        // next call on this handle; none can happen before `f` returns, because `journal` is
        // borrowed exclusively here and `f` cannot keep the slice (it is lent per call).
        f(unsafe { std::slice::from_raw_parts(data, len) });
    }
}

/// The inotify descriptor the follow thread polls (owned by the handle).
pub(super) fn fd(journal: &mut Journal) -> libc::c_int {
    // SAFETY: a live handle on its own thread (see the module comment).
    unsafe { ffi::sd_journal_get_fd(journal.as_ptr()) }
}

/// The poll(2) events sd-journal wants on [`fd`].
pub(super) fn events(journal: &mut Journal) -> libc::c_int {
    // SAFETY: a live handle on its own thread (see the module comment).
    unsafe { ffi::sd_journal_get_events(journal.as_ptr()) }
}

/// (result, absolute CLOCK_MONOTONIC deadline in microseconds, `u64::MAX` for none).
pub(super) fn timeout(journal: &mut Journal) -> (libc::c_int, u64) {
    let mut deadline = u64::MAX;
    // SAFETY: a live handle on its own thread (see the module comment); `deadline` is a valid
    // u64 for the call to write.
    let ret = unsafe { ffi::sd_journal_get_timeout(journal.as_ptr(), &mut deadline) };
    (ret, deadline)
}

/// What [`process`] returns when the journal did not change.
pub(super) const NOP: libc::c_int = ffi::SD_JOURNAL_NOP;

/// After a wake-up: [`NOP`], APPEND or INVALIDATE (or a negative errno).
pub(super) fn process(journal: &mut Journal) -> libc::c_int {
    // SAFETY: a live handle on its own thread (see the module comment).
    unsafe { ffi::sd_journal_process(journal.as_ptr()) }
}

/// The follow thread's eventfds (stop, turning hot) and poll(2), shared with the file follower.
pub(super) use crate::source::fd_shim::{drain, eventfd, poll, signal};

/// The calling thread's id.
pub(super) fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// CLOCK_MONOTONIC in microseconds, the clock of [`timeout`]'s deadline.
pub(super) fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into a valid timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000
}
