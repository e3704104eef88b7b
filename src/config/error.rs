//! Configuration errors that say where: file, line, key, and what is wrong.
//!
//! An admin who mistypes a duration at 3 a.m. should not have to bisect drop-ins, so every
//! error carries the position of the offending value. TOML parse errors come with a byte
//! span; the key is recovered from the text at that span (the `key =` on that line, or the
//! nearest one above it for a multi-line array) qualified by the enclosing `[table]`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A configuration file's text, kept for locating errors.
#[derive(Debug, Clone)]
pub struct SourceText {
    pub path: PathBuf,
    pub text: String,
}

impl SourceText {
    /// Reads a configuration file, which must be UTF-8 text: a byte that is not is refused
    /// at its line, column and key (`read_to_string` would say only "stream did not contain
    /// valid UTF-8").
    pub fn read(path: &Path) -> Result<SourceText, ConfigError> {
        let bytes = std::fs::read(path).map_err(|e| ConfigError::io(path, &e))?;
        match String::from_utf8(bytes) {
            Ok(text) => Ok(SourceText {
                path: path.to_path_buf(),
                text,
            }),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let bytes = e.as_bytes();
                let (line, column) = utf8_position(bytes, at);
                // The text before the byte is valid: the key is found in it.
                let before = SourceText {
                    path: path.to_path_buf(),
                    text: String::from_utf8_lossy(&bytes[..at]).into_owned(),
                };
                Err(ConfigError::NotUtf8 {
                    file: path.to_path_buf(),
                    line,
                    column,
                    key: before.key_at(at),
                    byte: bytes[at],
                })
            }
        }
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// The dotted key whose value contains `offset`, e.g. `jail.sshd.bantime`.
    pub fn key_at(&self, offset: usize) -> Option<String> {
        let line_no = self.line_of(offset);
        let lines: Vec<&str> = self.text.lines().collect();
        let mut key = None;
        let mut table: Option<String> = None;
        for i in (0..line_no.min(lines.len())).rev() {
            let l = strip_comment(lines[i]).trim();
            if let Some(header) = l.strip_prefix('[') {
                let header = header.trim_start_matches('[');
                let name = header.split(']').next().unwrap_or("").trim();
                table = Some(name.split('.').map(str::trim).collect::<Vec<_>>().join("."));
                break;
            }
            if key.is_none() {
                // A line inside a multi-line array may contain '=' too ("_COMM=sshd",):
                // only a bare key before the '=' makes it a key line.
                if let Some((k, _)) = l.split_once('=') {
                    let k = k.trim();
                    let bare = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
                    if !k.is_empty() && k.chars().all(bare) {
                        key = Some(k.to_string());
                    }
                }
            }
        }
        match (table, key) {
            (Some(t), Some(k)) => Some(format!("{t}.{k}")),
            (None, Some(k)) => Some(k),
            (Some(t), None) => Some(t),
            (None, None) => None,
        }
    }

    pub fn error_at(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        let (line, key) = match span {
            Some(s) => (Some(self.line_of(s.start)), self.key_at(s.start)),
            None => (None, None),
        };
        ConfigError::At {
            file: self.path.clone(),
            line,
            key,
            message: message.into(),
        }
    }
}

/// The 1-based line and byte column of `bytes[offset]`.
pub fn utf8_position(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line_start = memchr::memrchr(b'\n', before).map_or(0, |i| i + 1);
    (
        memchr::memchr_iter(b'\n', before).count() + 1,
        before.len() - line_start + 1,
    )
}

fn strip_comment(line: &str) -> &str {
    // Good enough for locating keys: a '#' inside a string only shortens what we look at.
    match line.find('#') {
        Some(i) if !line[..i].contains(['"', '\'']) => &line[..i],
        _ => line,
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{}", located(file, *line, key.as_deref(), message))]
    At {
        file: PathBuf,
        line: Option<usize>,
        key: Option<String>,
        message: String,
    },
    #[error("cannot read {}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error(
        "{}:{line}:{column}: {}byte 0x{byte:02x} is not UTF-8 (configuration files are UTF-8 text)",
        file.display(),
        key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default()
    )]
    NotUtf8 {
        file: PathBuf,
        line: usize,
        /// In bytes, 1-based.
        column: usize,
        key: Option<String>,
        byte: u8,
    },
}

impl ConfigError {
    pub fn io(path: &Path, err: &std::io::Error) -> Self {
        ConfigError::Io {
            path: path.to_path_buf(),
            message: err.to_string(),
        }
    }
}

fn located(file: &Path, line: Option<usize>, key: Option<&str>, message: &str) -> String {
    let mut s = file.display().to_string();
    if let Some(line) = line {
        s.push_str(&format!(":{line}"));
    }
    s.push_str(": ");
    if let Some(key) = key {
        s.push_str(&format!("{key}: "));
    }
    s.push_str(message);
    s
}

impl fmt::Display for SourceText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.path.display().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_line_and_dotted_key() {
        let src = SourceText {
            path: "/etc/banhound/banhound.toml".into(),
            text: "[defaults]\nbantime = \"1h\"\n\n[jail.sshd]\nignoreip = [\n  \"10.0.0.0/8\",\n  \"bad\",\n]\n"
                .into(),
        };
        let off = src.text.find("\"bad\"").unwrap();
        assert_eq!(src.line_of(off), 7);
        assert_eq!(src.key_at(off).as_deref(), Some("jail.sshd.ignoreip"));
        let off = src.text.find("\"1h\"").unwrap();
        assert_eq!(src.key_at(off).as_deref(), Some("defaults.bantime"));
        let e = src.error_at(Some(off..off + 4), "bad duration");
        assert_eq!(
            e.to_string(),
            "/etc/banhound/banhound.toml:2: defaults.bantime: bad duration"
        );
    }
}
