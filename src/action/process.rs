//! Running one program for an action: argv (never a shell, unless the caller runs
//! `/bin/sh` itself for a fail2ban action), an environment, optional stdin, a time limit and
//! bounded output.
//!
//! Each child gets its own process group, and a timeout kills the whole group: a fail2ban
//! action's `/bin/sh` that started `whois | mail` must not leave them running after it.

use std::collections::BTreeMap;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// What a program printed is kept up to this size (whois output, an error message).
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// Why a program did not run to a successful end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} did not finish within {}s and was killed", timeout.as_secs_f64())]
    Timeout { program: String, timeout: Duration },
    #[error("{program} failed ({status}){}", stderr_suffix(stderr))]
    Failed {
        program: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("{program}: {source}")]
    Io {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    let first = stderr.lines().next().unwrap_or("").trim();
    if first.is_empty() {
        String::new()
    } else {
        format!(": {}", super::template::neutralise(first.as_bytes(), 300))
    }
}

/// One program to run.
pub struct Run<'a> {
    pub argv: &'a [String],
    pub env: BTreeMap<String, String>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
}

/// What a program that exited 0 printed on stdout (at most [`OUTPUT_LIMIT`] bytes).
pub async fn run(spec: Run<'_>) -> Result<Vec<u8>, RunError> {
    let program = spec.argv.first().cloned().unwrap_or_default();
    let mut command = Command::new(&program);
    command
        .args(&spec.argv[1.min(spec.argv.len())..])
        .envs(&spec.env)
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| RunError::Spawn {
        program: program.clone(),
        source,
    })?;
    let group = child.id();
    let io_error = |source| RunError::Io {
        program: program.clone(),
        source,
    };
    let finish = async {
        let stdin = child.stdin.take();
        let feed = async {
            if let (Some(mut pipe), Some(data)) = (stdin, spec.stdin.as_deref()) {
                // A program that exits without reading all of it is its own business.
                let _ = pipe.write_all(data).await;
            }
        };
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let out = child.stdout.take();
        let err = child.stderr.take();
        let read_out = async {
            if let Some(out) = out {
                out.take(OUTPUT_LIMIT as u64)
                    .read_to_end(&mut stdout)
                    .await?;
            }
            Ok::<_, std::io::Error>(())
        };
        let read_err = async {
            if let Some(err) = err {
                err.take(OUTPUT_LIMIT as u64)
                    .read_to_end(&mut stderr)
                    .await?;
            }
            Ok::<_, std::io::Error>(())
        };
        let ((), read_out, read_err) = tokio::join!(feed, read_out, read_err);
        read_out.map_err(io_error)?;
        read_err.map_err(io_error)?;
        let status = child.wait().await.map_err(io_error)?;
        Ok::<_, RunError>((status, stdout, stderr))
    };
    match tokio::time::timeout(spec.timeout, finish).await {
        Err(_) => {
            if let Some(pid) = group {
                kill_group(pid);
            }
            Err(RunError::Timeout {
                program,
                timeout: spec.timeout,
            })
        }
        Ok(Err(e)) => Err(e),
        Ok(Ok((status, stdout, stderr))) if status.success() => {
            let _ = stderr;
            Ok(stdout)
        }
        Ok(Ok((status, _, stderr))) => Err(RunError::Failed {
            program,
            status,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }),
    }
}

/// Kills a process group this module started (the child is its leader).
fn kill_group(leader: u32) {
    let Ok(pid) = libc::pid_t::try_from(leader) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; `-pid` names the
    // process group the child was put in at spawn (process_group(0)), which only it and its
    // descendants are in.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[tokio::test]
    async fn output_stdin_status_and_timeout() {
        let cat = argv(&["cat"]);
        let out = run(Run {
            argv: &cat,
            env: BTreeMap::new(),
            stdin: Some(b"hello".to_vec()),
            timeout: Duration::from_secs(5),
        })
        .await
        .unwrap();
        assert_eq!(out, b"hello");
        let fail = argv(&["sh", "-c", "echo nope >&2; exit 3"]);
        let err = run(Run {
            argv: &fail,
            env: BTreeMap::new(),
            stdin: None,
            timeout: Duration::from_secs(5),
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("exit status: 3"), "{err}");
        assert!(err.to_string().contains("nope"), "{err}");
        // The group is killed: the background sleep too, or the pipe would keep it waiting.
        let hang = argv(&["sh", "-c", "sleep 30 & sleep 30"]);
        let started = std::time::Instant::now();
        let err = run(Run {
            argv: &hang,
            env: BTreeMap::new(),
            stdin: None,
            timeout: Duration::from_millis(200),
        })
        .await
        .unwrap_err();
        assert!(matches!(err, RunError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
