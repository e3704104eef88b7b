//! Wildcards in a file jail's `logpath` (`/var/log/nginx/*error.log`), as fail2ban takes
//! them: `*`, `?` and `[...]` in any part of the path, expanded against the file system into
//! the files that exist, sorted. The daemon expands them when it starts and when it reloads,
//! and again whenever a name appears in a directory where a matching file could be
//! ([`WildcardWatch`]: inotify, no timer), so that a file created or renamed in between (a new
//! vhost's log, a log rotated in under a matching name) is followed from then on; each file
//! found is then followed (rotation included) like a path written out.
//!
//! Only the file system is read; nothing is run. A pattern part never matches a name
//! starting with `.` unless the part itself starts with one (as in the shell), so
//! `/var/log/*` does not reach into hidden files.

use crate::source::fd_shim::{drain, inotify, inotify_watch};
use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Whether `path` holds a wildcard, and so names files by pattern.
pub fn is_pattern(path: &Path) -> bool {
    path.as_os_str()
        .as_encoded_bytes()
        .iter()
        .any(|b| matches!(b, b'*' | b'?' | b'['))
}

/// The existing files `pattern` names, sorted; a path without wildcards is itself, whether
/// it exists or not (it is waited for).
pub fn expand(pattern: &Path) -> Vec<PathBuf> {
    if !is_pattern(pattern) {
        return vec![pattern.to_path_buf()];
    }
    let mut found = vec![PathBuf::new()];
    for component in pattern.components() {
        found = step(found, component);
    }
    found.retain(|p| p.is_file());
    found.sort();
    found
}

/// The paths one more component of a pattern leads to from `found`: every entry of each
/// that a wildcard part matches, or each joined with a plain part.
fn step(found: Vec<PathBuf>, component: Component<'_>) -> Vec<PathBuf> {
    let part = component.as_os_str();
    let wild = matches!(component, Component::Normal(_)) && is_pattern(Path::new(part));
    if !wild {
        return found.into_iter().map(|dir| dir.join(part)).collect();
    }
    let part = part.as_encoded_bytes();
    let mut next = Vec::new();
    for dir in &found {
        let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        }) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let bytes = name.as_encoded_bytes();
            if (bytes.starts_with(b".") && !part.starts_with(b".")) || !matches_part(part, bytes) {
                continue;
            }
            next.push(dir.join(&name));
        }
    }
    next
}

/// The existing directories in which a new name can make `pattern` match a new file: its
/// file's directory, and when that has wildcards, every directory its parts lead through
/// from the last one without (where a new matching directory would appear). Sorted.
fn watched_directories(pattern: &Path) -> Vec<PathBuf> {
    let Some(parent) = pattern.parent().filter(|_| is_pattern(pattern)) else {
        return Vec::new();
    };
    let mut found = vec![PathBuf::new()];
    let mut dirs = Vec::new();
    let mut wild_seen = false;
    for component in parent.components() {
        if !wild_seen && is_pattern(Path::new(component.as_os_str())) {
            wild_seen = true;
            dirs.extend(found.iter().filter(|d| d.is_dir()).cloned());
        }
        found = step(found, component);
        if wild_seen {
            dirs.extend(found.iter().filter(|d| d.is_dir()).cloned());
        }
    }
    if !wild_seen {
        dirs.extend(found.into_iter().filter(|d| d.is_dir()));
    }
    dirs.sort();
    dirs.dedup();
    dirs
}

/// An inotify watch on the directories where files of wildcard patterns can appear: it
/// wakes when a name is created or moved into one of them. It says only that something may
/// have changed; the caller expands the patterns again (and watches anew, for directories
/// that appeared).
pub struct WildcardWatch {
    fd: AsyncFd<OwnedFd>,
}

impl WildcardWatch {
    /// Watches the directories of `patterns` (paths without wildcards are left out); `None`
    /// when there is none to watch. Needs the tokio runtime.
    pub fn new(patterns: &[PathBuf]) -> io::Result<Option<WildcardWatch>> {
        let mut dirs: Vec<PathBuf> = patterns
            .iter()
            .flat_map(|p| watched_directories(p))
            .collect();
        dirs.sort();
        dirs.dedup();
        if dirs.is_empty() {
            return Ok(None);
        }
        let fd = inotify()?;
        for dir in &dirs {
            let path = CString::new(dir.as_os_str().as_bytes())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            match inotify_watch(
                &fd,
                &path,
                libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_ONLYDIR,
            ) {
                Ok(()) => {}
                // Gone (or replaced by a file) since it was listed: nothing appears in it.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {}
                Err(e) => return Err(e),
            }
        }
        // SAFETY: the OwnedFd moved into the AsyncFd is open and stays the same descriptor
        // until the AsyncFd drops it; nothing else holds or closes it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
        Ok(Some(WildcardWatch { fd }))
    }

    /// Waits until a name appeared in a watched directory; what queued up meanwhile (a
    /// rotation renames and creates at once) is one change.
    pub async fn changed(&self) -> io::Result<()> {
        let mut ready = self.fd.readable().await?;
        drain(ready.get_inner());
        ready.clear_ready();
        Ok(())
    }
}

/// The next change of `watch`; never, without one.
pub async fn next_change(watch: &Option<WildcardWatch>) -> io::Result<()> {
    match watch {
        Some(watch) => watch.changed().await,
        None => std::future::pending().await,
    }
}

/// Whether `name` matches the wildcard part `pattern` (`*`, `?`, `[abc]`, `[a-z]`, `[!x]`).
/// Iterative with one backtrack point per `*`, so a hostile pattern costs at most the
/// product of the two lengths.
fn matches_part(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
                continue;
            }
            Some(b'?') => {
                p += 1;
                n += 1;
                continue;
            }
            Some(b'[') => {
                if let Some((matched, end)) = class(pattern, p, name[n]) {
                    if matched {
                        p = end;
                        n += 1;
                        continue;
                    }
                } else if name[n] == b'[' {
                    // An unclosed `[` is itself.
                    p += 1;
                    n += 1;
                    continue;
                }
            }
            Some(&c) if c == name[n] => {
                p += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, sn)) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The class `[...]` starting at `open`: whether `c` is in it, and where it ends; `None`
/// when it is not closed.
fn class(pattern: &[u8], open: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = open + 1;
    let negated = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let &b = pattern.get(i)?;
        if b == b']' && !first {
            return Some((matched != negated, i + 1));
        }
        first = false;
        match (pattern.get(i + 1), pattern.get(i + 2)) {
            (Some(b'-'), Some(&hi)) if hi != b']' => {
                matched |= (b..=hi).contains(&c);
                i += 3;
            }
            _ => {
                matched |= b == c;
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_match_as_in_the_shell() {
        for (pattern, name, want) in [
            ("*error.log", "error.log", true),
            ("*error.log", "site-error.log", true),
            ("*error.log", "error.log.1", false),
            ("access?.log", "access1.log", true),
            ("access?.log", "access.log", false),
            ("[ab]*.log", "b-site.log", true),
            ("[!ab]*.log", "b-site.log", false),
            ("[a-c]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("x[", "x[", true),
            ("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
        ] {
            assert_eq!(
                matches_part(pattern.as_bytes(), name.as_bytes()),
                want,
                "{pattern} {name}"
            );
        }
    }

    #[test]
    fn expands_existing_files_in_any_part_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "a/error.log",
            "a/x-error.log",
            "b/error.log",
            "a/.hidden-error.log",
        ] {
            let path = root.join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        std::fs::create_dir_all(root.join("a/dir-error.log")).unwrap();
        let got = expand(&root.join("*/*error.log"));
        let want: Vec<PathBuf> = ["a/error.log", "a/x-error.log", "b/error.log"]
            .iter()
            .map(|f| root.join(f))
            .collect();
        assert_eq!(got, want);
        assert!(expand(&root.join("c/*.log")).is_empty());
        // A path without wildcards stands, existing or not.
        let plain = root.join("missing.log");
        assert_eq!(expand(&plain), vec![plain]);
    }

    #[test]
    fn watches_where_a_matching_file_or_directory_can_appear() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["nginx", "sites/a/logs", "sites/b/logs", "sites/c"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let paths = |v: &[&str]| v.iter().map(|d| root.join(d)).collect::<Vec<_>>();
        assert_eq!(
            watched_directories(&root.join("nginx/*error.log")),
            paths(&["nginx"])
        );
        assert_eq!(
            watched_directories(&root.join("sites/*/logs/*.log")),
            paths(&[
                "sites",
                "sites/a",
                "sites/a/logs",
                "sites/b",
                "sites/b/logs",
                "sites/c"
            ])
        );
        // Nothing to watch for a plain path, nor under a directory that does not exist.
        assert!(watched_directories(&root.join("nginx/error.log")).is_empty());
        assert!(watched_directories(&root.join("missing/*.log")).is_empty());
    }

    #[tokio::test]
    async fn the_watch_wakes_when_a_name_appears() {
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let pattern = dir.path().join("*-error.log");
        let watch = WildcardWatch::new(std::slice::from_ref(&pattern))
            .unwrap()
            .unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(100), watch.changed()).await;
        assert!(quiet.is_err(), "woke without a change");
        std::fs::write(dir.path().join("new-error.log"), "").unwrap();
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("woken by the new file")
            .unwrap();
        assert_eq!(expand(&pattern), vec![dir.path().join("new-error.log")]);
        assert!(WildcardWatch::new(&[dir.path().join("plain.log")])
            .unwrap()
            .is_none());
    }
}
