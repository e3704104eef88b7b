//! Wildcards in a file jail's `logpath` (`/var/log/nginx/*error.log`), as fail2ban takes
//! them: `*`, `?` and `[...]` in any part of the path, expanded against the file system into
//! the files that exist, sorted. The daemon expands them when it starts and when it reloads;
//! each file found is then followed (rotation included) like a path written out.
//!
//! Only the file system is read; nothing is run. A pattern part never matches a name
//! starting with `.` unless the part itself starts with one (as in the shell), so
//! `/var/log/*` does not reach into hidden files.

use std::path::{Component, Path, PathBuf};

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
        let part = component.as_os_str();
        let wild = matches!(component, Component::Normal(_)) && is_pattern(Path::new(part));
        found = if wild {
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
                    if (bytes.starts_with(b".") && !part.starts_with(b"."))
                        || !matches_part(part, bytes)
                    {
                        continue;
                    }
                    next.push(dir.join(&name));
                }
            }
            next
        } else {
            found.into_iter().map(|dir| dir.join(part)).collect()
        };
    }
    found.retain(|p| p.is_file());
    found.sort();
    found
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
}
