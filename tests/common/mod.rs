//! Test support shared by the integration tests that need real journal files: entries
//! written in the journal export format and turned into a `.journal` file by
//! systemd-journal-remote (Debian 12: /lib/systemd/systemd-journal-remote), so the files are
//! exactly what systemd itself writes, not something banhound's own code produced.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";
const BOOT_ID: &str = "5a1d8c3e9f0b4e6d8a7c2b1e0f9d8c7b";
/// 2023-11-14T22:13:20Z: journal-file entries are placed around here.
pub const T0: i64 = 1_700_000_000_000_000;

/// A field value needs the binary-safe form when it is not plain single-line text.
fn needs_binary_form(value: &[u8]) -> bool {
    std::str::from_utf8(value).is_err() || value.iter().any(|&b| b < 0x20 || b == 0x7f)
}

/// Journal export format (the input of systemd-journal-remote), binary-safe.
#[derive(Default)]
pub struct Export(Vec<u8>);

impl Export {
    /// One entry received at `realtime` (microseconds since the epoch, at or after [`T0`]).
    pub fn entry(&mut self, realtime: i64, fields: &[(&str, &[u8])]) -> &mut Self {
        let monotonic = realtime - T0 + 1_000_000;
        write!(
            self.0,
            "__REALTIME_TIMESTAMP={realtime}\n__MONOTONIC_TIMESTAMP={monotonic}\n_BOOT_ID={BOOT_ID}\n"
        )
        .unwrap();
        for (name, value) in fields {
            if needs_binary_form(value) {
                self.0.extend_from_slice(name.as_bytes());
                self.0.push(b'\n');
                self.0
                    .extend_from_slice(&(value.len() as u64).to_le_bytes());
                self.0.extend_from_slice(value);
                self.0.push(b'\n');
            } else {
                self.0.extend_from_slice(name.as_bytes());
                self.0.push(b'=');
                self.0.extend_from_slice(value);
                self.0.push(b'\n');
            }
        }
        self.0.push(b'\n');
        self
    }

    /// Writes `dir/name.journal` with systemd-journal-remote.
    pub fn write_journal(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.journal"));
        let mut child = Command::new(JOURNAL_REMOTE)
            .arg("-o")
            .arg(&path)
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("systemd-journal-remote runs");
        child.stdin.take().unwrap().write_all(&self.0).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "journal-remote: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    }
}
