//! A reader that goes away (`banhound check-config | head -1`) ends a command quietly, as it
//! ends `cat` or `ls`: SIGPIPE kills the process instead of a write failing.
//!
//! Rust ignores SIGPIPE at start, so every write to a closed pipe returns EPIPE and
//! `println!` panics with a backtrace, or a command reports an error and exits 1. The
//! one-shot commands restore the default disposition; the daemon keeps SIGPIPE ignored, so
//! a peer that closes a socket costs it one failed write, never its life.

/// Restores SIGPIPE's default action (terminate) for this process.
pub fn end_quietly_on_broken_pipe() {
    // SAFETY: signal(2) with SIG_DFL installs no handler, so no code of ours can run in
    // signal context; it is called from `main` before any thread is started, and its
    // return value (the previous disposition) is not needed.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
