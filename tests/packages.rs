//! The packages as CI builds them: `dist/build-packages.sh` makes the .deb (dpkg-deb) and
//! the RPMs (rpmbuild, from the source and vendored-crate tarballs) and runs rpmlint, which
//! must pass with only the filters justified in dist/rpm/banhound.rpmlintrc. Their contents
//! are checked with `dpkg-deb -c` and `rpm -qlp`.
//!
//! The short form packages the (stripped) binary under test, so CI compiles nothing more;
//! `BANHOUND_FULL_PACKAGES=1` makes rpmbuild compile from the tarballs offline as a
//! distribution build does (a release build: minutes). The .deb is installed on a booted
//! host by tests/realhost.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn find(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(find(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    found
}

#[test]
fn deb_and_rpms_build_and_rpmlint_passes() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("banhound");
    run(Command::new("strip")
        .arg("-o")
        .arg(&bin)
        .arg(env!("CARGO_BIN_EXE_banhound")));
    let out = dir.path().join("out");
    let mut build =
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/build-packages.sh"));
    build.arg(&out).env("BANHOUND_DEB_COMPRESSION", "gzip");
    if std::env::var_os("BANHOUND_FULL_PACKAGES").is_some() {
        build.env("BANHOUND_RPM_FROM_SOURCE", "1");
    } else {
        build.env("BANHOUND_BIN", &bin);
    }
    let report = run(&mut build);
    assert!(report.contains("0 errors, 0 warnings"), "rpmlint: {report}");

    let debs = find(&out, ".deb");
    assert_eq!(debs.len(), 1, "{debs:?}");
    let deb = run(Command::new("dpkg-deb").arg("-c").arg(&debs[0]));
    let rpms = find(&out, ".rpm");
    let main = rpms
        .iter()
        .find(|p| {
            p.to_string_lossy().contains("banhound-0") && !p.to_string_lossy().contains("firewalld")
        })
        .unwrap_or_else(|| panic!("{rpms:?}"));
    let firewalld = rpms
        .iter()
        .find(|p| p.to_string_lossy().contains("banhound-firewalld-"))
        .unwrap_or_else(|| panic!("{rpms:?}"));
    let rpm = run(Command::new("rpm").arg("-qlp").arg(main));
    for path in [
        "/usr/bin/banhound",
        "/usr/lib/banhound/banhound.toml",
        "/usr/lib/banhound/filters/sshd.toml",
        "/usr/share/dbus-1/system.d/org.banhound.Banhound1.conf",
        "/usr/share/dbus-1/interfaces/org.banhound.Banhound1.Manager.xml",
        "/usr/share/bash-completion/completions/banhound",
    ] {
        assert!(
            deb.contains(&format!(".{path}\n")),
            "{path} not in the .deb: {deb}"
        );
        assert!(
            rpm.lines().any(|l| l == path),
            "{path} not in the rpm: {rpm}"
        );
    }
    assert!(
        deb.contains("./lib/systemd/system/banhound.service\n"),
        "{deb}"
    );
    assert!(
        rpm.lines()
            .any(|l| l == "/usr/lib/systemd/system/banhound.service"),
        "{rpm}"
    );
    assert!(
        rpm.lines()
            .any(|l| l.starts_with("/usr/share/man/man5/banhound.toml.5")),
        "{rpm}"
    );
    assert!(!rpm.contains("50-firewalld.toml"), "{rpm}");
    let drop_in = run(Command::new("rpm").arg("-qlp").arg(firewalld));
    assert_eq!(drop_in.trim(), "/usr/lib/banhound/jail.d/50-firewalld.toml");
    let scripts = run(Command::new("rpm").arg("-qp").arg("--scripts").arg(main));
    assert!(scripts.contains("preset banhound.service"), "{scripts}");
    let provides = run(Command::new("rpm").arg("-qp").arg("--provides").arg(main));
    assert!(provides.contains("bundled(sqlite)"), "{provides}");
}
