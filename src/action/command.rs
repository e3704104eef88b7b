//! `kind = "command"`: a program run with an argv (never through a shell) on ban and unban.
//!
//! Each argument is a template; the same values are in the environment as `BANHOUND_JAIL`,
//! `BANHOUND_IP`, … (see [`env()`]), so a script needs no parsing of its arguments. An
//! attacker's text (the matched lines) is one argument or one variable whatever it
//! contains: no shell ever sees it.

use super::process::{self, Run, RunError};
use super::template::{Placeholder, Template};
use super::ActionEvent;
use std::collections::BTreeMap;
use std::time::Duration;

/// The argv templates of a command action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandAction {
    pub ban: Option<Vec<Template>>,
    pub unban: Option<Vec<Template>>,
}

impl CommandAction {
    /// Runs the command for this event, if the action has one for its kind.
    pub async fn run(
        &self,
        event: &ActionEvent,
        hostname: &str,
        timeout: Duration,
    ) -> Result<(), RunError> {
        let templates = match event {
            ActionEvent::Ban(_) => &self.ban,
            ActionEvent::Unban(_) => &self.unban,
        };
        let Some(templates) = templates else {
            return Ok(());
        };
        let value = |p| event.value(p, hostname);
        let argv: Vec<String> = templates.iter().map(|t| t.render(&value)).collect();
        process::run(Run {
            argv: &argv,
            env: env(event, hostname),
            stdin: None,
            timeout,
        })
        .await
        .map(drop)
    }
}

/// `BANHOUND_<PLACEHOLDER>` for every value (`BANHOUND_IP`, `BANHOUND_LINES`, …).
pub fn env(event: &ActionEvent, hostname: &str) -> BTreeMap<String, String> {
    Placeholder::ALL
        .into_iter()
        .map(|p| {
            (
                format!("BANHOUND_{}", p.name().to_ascii_uppercase()),
                event.value(p, hostname),
            )
        })
        .collect()
}
