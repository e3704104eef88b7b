//! `banhound generate`: shell completions and man pages from the clap definitions, so they
//! never drift from the real options. Packaging runs it at build time (install.sh,
//! dist/rpm/banhound.spec, dist/deb/build-deb.sh).
//!
//! The section 1 pages are clap's, followed by the sections clap knows nothing of (EXIT
//! STATUS, FILES, ENVIRONMENT, SEE ALSO); the section 5 pages (the configuration and the
//! filter format) are written by hand in docs/man/ and carried in the binary, so that one
//! `generate man DIR` writes every page.

use crate::cli::Cli;
use anyhow::Context;
use clap::{CommandFactory, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum GenerateArgs {
    /// Print the completion script for SHELL to stdout.
    Completions {
        /// The shell the script is for.
        shell: clap_complete::Shell,
    },
    /// Write the man pages into DIR.
    Man {
        /// Where the pages go (created if missing).
        dir: PathBuf,
    },
}

/// The hand-written pages, by file name.
const SECTION_5: [(&str, &str); 2] = [
    (
        "banhound.toml.5",
        include_str!("../../docs/man/banhound.toml.5"),
    ),
    (
        "banhound-filter.5",
        include_str!("../../docs/man/banhound-filter.5"),
    ),
];

const EXIT_STATUS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success.
.TP
\fB1\fR
A failure while running (I/O, the system).
.TP
\fB2\fR
Invalid configuration, filter or arguments (the message names file, line and key); for
control commands also a jail that does not exist, a malformed address or duration, an address
that is never banned, or an unban of an address that is not banned.
.TP
\fB3\fR
The daemon is not running (nothing owns org.banhound.Banhound1 on the bus), or the bus cannot
be reached.
.TP
\fB4\fR
Access denied (changing bans as another user than root).
.PP
A command whose output pipe closes (\fBbanhound status | head \-1\fR) ends quietly, killed by
SIGPIPE.
"#;

const FILES: &str = r#".SH FILES
.TP
/usr/lib/banhound/banhound.toml, /usr/lib/banhound/jail.d/*.toml
The shipped defaults (owned by the package; \fB\-\-defaults\-dir\fR).
.TP
/usr/lib/banhound/filters/*.toml
The shipped filters.
.TP
/etc/banhound/banhound.toml, /etc/banhound/jail.d/*.toml, /etc/banhound/filters/*.toml
The admin's configuration, drop-ins and filters, layered over the defaults
(\fB\-\-config\-dir\fR); see \fBbanhound.toml\fR(5).
.TP
/var/lib/banhound/state.db
The daemon's state: bans, ban history, journal cursors and file positions
(\fB\-\-state\-dir\fR, $STATE_DIRECTORY).
.TP
/usr/lib/systemd/system/banhound.service
The systemd unit.
.TP
/usr/share/dbus-1/system.d/org.banhound.Banhound1.conf
The D-Bus policy: who may own and call org.banhound.Banhound1.
.TP
/usr/share/dbus-1/interfaces/org.banhound.Banhound1.*.xml
The control interface's introspection data.
"#;

const ENVIRONMENT: &str = r#".SH ENVIRONMENT
.TP
\fBBANHOUND_DEFAULTS_DIR\fR
The shipped defaults' directory, as \fB\-\-defaults\-dir\fR.
.TP
\fBDBUS_SYSTEM_BUS_ADDRESS\fR
The bus control commands use and the daemon serves on, as \fB\-\-bus\-address\fR.
.TP
\fBSTATE_DIRECTORY\fR
The daemon's state directory (set by systemd's StateDirectory=), as \fB\-\-state\-dir\fR.
.TP
\fBBANHOUND_LOG\fR
The daemon's log levels, in tracing's EnvFilter syntax (default "info").
"#;

/// Appended to clap's bash script: jail names where a jail goes (`status`, `ban`, `unban
/// --all`, `ignore add|remove`, `--jail`), read from the configuration as `check-config`
/// prints it, so they are the jails the daemon would run; everything else is clap's.
const BASH_JAIL_NAMES: &str = r#"
_banhound_jail_names() {
    banhound check-config 2>/dev/null | sed -n 's/^  jail \([^ ]*\) (.*/\1/p'
}
_banhound_with_jails() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
    local sub="" positional=0 all=0 i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
            --config|--config-dir|--defaults-dir|--bus-address|--for|--jail) ((i++)) ;;
            --all) all=1 ;;
            -*) ;;
            *) if [ -z "$sub" ]; then sub="${COMP_WORDS[i]}"; else ((positional++)); fi ;;
        esac
    done
    local jail=0
    case "$sub:$positional" in
        status:0|ban:0|ignore:1) jail=1 ;;
        unban:0) [ "$all" = 1 ] && jail=1 ;;
    esac
    [ "$prev" = --jail ] && jail=1
    if [ "$jail" = 1 ] && [[ "$cur" != -* ]]; then
        COMPREPLY=($(compgen -W "$(_banhound_jail_names)" -- "$cur"))
        return 0
    fi
    _banhound "$@"
}
complete -F _banhound_with_jails -o bashdefault -o default banhound
"#;

/// Added to clap's zsh script, before its last lines (which run `_banhound` when the file is
/// autoloaded): jail names from the configuration, as for bash. [`zsh_with_jails`] points
/// the jail arguments' specs at it.
const ZSH_JAIL_NAMES: &str = r#"
(( $+functions[_banhound_jails] )) ||
_banhound_jails() {
    local -a jails
    jails=(${(f)"$(banhound check-config 2>/dev/null | sed -n 's/^  jail \([^ ]*\) (.*/\1/p')"})
    compadd -- "${jails[@]}"
}

"#;

/// Appended to clap's fish script: jail names where a jail goes (the places of bash's),
/// from the configuration; `--jail`'s own entries are changed by [`fish_with_jails`].
const FISH_JAIL_NAMES: &str = r#"
function __banhound_jails
    banhound check-config 2>/dev/null | string replace -rf '^  jail (\S+) \(.*' '$1'
end
function __banhound_wants_jail
    set -l words (commandline -opc)
    set -l sub ""
    set -l positional 0
    set -l all 0
    set -l skip 0
    for word in $words[2..-1]
        if test $skip = 1
            set skip 0
            continue
        end
        switch $word
            case --config --config-dir --defaults-dir --bus-address --for --jail
                set skip 1
            case --all
                set all 1
            case '-*'
            case '*'
                if test -z "$sub"
                    set sub $word
                else
                    set positional (math $positional + 1)
                end
        end
    end
    test "$words[-1]" = --jail; and return 0
    switch "$sub:$positional"
        case status:0 ban:0 ignore:1
            return 0
        case unban:0
            test $all = 1; and return 0
    end
    return 1
end
complete -c banhound -n __banhound_wants_jail -f -a "(__banhound_jails)"
"#;

/// clap's fish script with every `--jail` taking jail names (an option that requires a
/// value is completed only by its own entry), and [`FISH_JAIL_NAMES`] after it.
fn fish_with_jails(script: &str) -> String {
    let mut out = String::with_capacity(script.len() + FISH_JAIL_NAMES.len());
    for line in script.lines() {
        out.push_str(line);
        if line.contains(" -l jail ") && line.ends_with(" -r") {
            out.push_str(" -f -a \"(__banhound_jails)\"");
        }
        out.push('\n');
    }
    out.push_str(FISH_JAIL_NAMES);
    out
}

/// clap's zsh script with the jail arguments (`status`'s, `ban`'s, `ignore`'s positional
/// JAIL, every `--jail`) completed by `_banhound_jails` instead of `_default`.
fn zsh_with_jails(script: &str) -> String {
    let mut out = String::with_capacity(script.len() + ZSH_JAIL_NAMES.len());
    for line in script.lines() {
        let spec = line.trim_start();
        let is_jail = spec.starts_with("':jail -- ")
            || spec.starts_with("'::jail -- ")
            || (spec.contains("--jail=[") && spec.contains("]:JAIL:"));
        match line.strip_suffix(":_default' \\") {
            Some(head) if is_jail => {
                out.push_str(head);
                out.push_str(":_banhound_jails' \\");
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    let tail = out
        .rfind("\nif [ \"$funcstack[1]\" = \"_banhound\" ]")
        .map_or(out.len(), |i| i + 1);
    out.insert_str(tail, ZSH_JAIL_NAMES);
    out
}

pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let mut command = Cli::command();
    match args {
        GenerateArgs::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut command, "banhound", &mut script);
            let script =
                String::from_utf8(script).context("clap wrote a script that is not UTF-8")?;
            match shell {
                clap_complete::Shell::Bash => print!("{script}{BASH_JAIL_NAMES}"),
                clap_complete::Shell::Zsh => print!("{}", zsh_with_jails(&script)),
                clap_complete::Shell::Fish => print!("{}", fish_with_jails(&script)),
                _ => print!("{script}"),
            }
            Ok(())
        }
        GenerateArgs::Man { dir } => write_man_pages(command, dir),
    }
}

fn write_man_pages(mut command: clap::Command, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Propagates the global options into every subcommand's page.
    command.build();
    let names: Vec<String> = command
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| format!("banhound-{}", s.get_name()))
        .collect();
    let main = command.clone();
    write_page(dir, "banhound.1", &render(main, &main_page_tail(&names))?)?;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("banhound-{}", sub.get_name());
        let page = sub
            .clone()
            .display_name(name.clone())
            .bin_name(name.clone());
        let tail = format!(
            "{EXIT_STATUS}.SH \"SEE ALSO\"\n\\fBbanhound\\fR(1), \\fBbanhound.toml\\fR(5)\n"
        );
        write_page(dir, &format!("{name}.1"), &render(page, &tail)?)?;
    }
    for (name, text) in SECTION_5 {
        write_page(dir, name, text.as_bytes())?;
    }
    Ok(())
}

/// EXIT STATUS, FILES, ENVIRONMENT and SEE ALSO of banhound(1).
fn main_page_tail(subcommand_pages: &[String]) -> String {
    let mut see_also: Vec<String> = subcommand_pages
        .iter()
        .map(|p| format!("\\fB{p}\\fR(1)"))
        .collect();
    see_also.extend(
        [
            "banhound.toml(5)",
            "banhound-filter(5)",
            "journalctl(1)",
            "nft(8)",
            "firewall-cmd(1)",
        ]
        .iter()
        .map(|p| {
            let (name, section) = p.split_once('(').unwrap_or((p, ""));
            format!("\\fB{name}\\fR({section}")
        }),
    );
    format!(
        "{EXIT_STATUS}{FILES}{ENVIRONMENT}.SH \"SEE ALSO\"\n{}\n",
        see_also.join(", ")
    )
}

/// clap's page with `tail` before its version section (at the end if it has none).
fn render(command: clap::Command, tail: &str) -> anyhow::Result<Vec<u8>> {
    let name = command.get_name().to_string();
    let mut out = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut out)
        .with_context(|| format!("cannot render the page of {name}"))?;
    let page = String::from_utf8(out).context("clap_mangen wrote a page that is not UTF-8")?;
    let at = page.find("\n.SH VERSION").map_or(page.len(), |i| i + 1);
    Ok(format!("{}{tail}{}", &page[..at], &page[at..]).into_bytes())
}

fn write_page(dir: &Path, name: &str, text: &[u8]) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_carry_exit_status_files_environment_and_see_also() {
        let dir = tempfile::tempdir().unwrap();
        write_man_pages(Cli::command(), dir.path()).unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        let main = read("banhound.1");
        for section in [
            ".SH \"EXIT STATUS\"",
            ".SH FILES",
            ".SH ENVIRONMENT",
            ".SH \"SEE ALSO\"",
            "banhound\\-generate",
        ] {
            assert!(main.contains(section), "banhound.1 lacks {section}");
        }
        assert!(
            main.contains("\\fBbanhound\\-ban\\fR(1)") || main.contains("\\fBbanhound-ban\\fR(1)")
        );
        let ban = read("banhound-ban.1");
        assert!(ban.contains(".SH \"EXIT STATUS\"") && ban.contains(".SH \"SEE ALSO\""));
        assert!(read("banhound-generate.1").contains(".SH \"EXIT STATUS\""));
        assert!(read("banhound.toml.5").contains("reconcile_interval"));
        assert!(read("banhound-filter.5").contains("failregex"));
    }
}
