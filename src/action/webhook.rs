//! `kind = "webhook"`: an HTTP(S) POST of a JSON body on ban and unban, with headers, a
//! time limit and retries with a growing delay.
//!
//! The body is written in the configuration as a TOML value (`body = { text = "Banned {ip}" }`)
//! whose strings are templates; it is sent as that value serialised to JSON, so an inserted
//! text is always inside one JSON string, escaped by the serialiser: no quote or brace of a
//! matched line can leave it. Header values are templates too, with control characters
//! removed.
//!
//! The request is made by `curl` (argv, body on stdin), which brings HTTPS with the
//! system's certificate store and proxy settings without a TLS stack in banhound; only
//! `http` and `https` are allowed (`--proto`), redirects are not followed.

use super::process::{self, Run};
use super::template::{Placeholder, Template, TemplateError};
use super::ActionEvent;
use std::collections::BTreeMap;
use std::time::Duration;

/// The program that makes the request.
pub const DEFAULT_CURL: &str = "curl";
/// A body larger than this is refused (the values in it are bounded; this bounds templates).
const BODY_LIMIT: usize = 256 * 1024;

/// A JSON value whose strings are templates.
#[derive(Clone, Debug, PartialEq)]
pub enum JsonTemplate {
    Text(Template),
    Plain(serde_json::Value),
    Array(Vec<JsonTemplate>),
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    pub fn from_toml(value: &toml::Value) -> Result<JsonTemplate, TemplateError> {
        Ok(match value {
            toml::Value::String(s) => JsonTemplate::Text(Template::parse(s)?),
            toml::Value::Integer(i) => JsonTemplate::Plain((*i).into()),
            toml::Value::Float(f) => JsonTemplate::Plain(
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into),
            ),
            toml::Value::Boolean(b) => JsonTemplate::Plain((*b).into()),
            toml::Value::Datetime(d) => JsonTemplate::Plain(d.to_string().into()),
            toml::Value::Array(items) => JsonTemplate::Array(
                items
                    .iter()
                    .map(JsonTemplate::from_toml)
                    .collect::<Result<_, _>>()?,
            ),
            toml::Value::Table(table) => JsonTemplate::Object(
                table
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), JsonTemplate::from_toml(v)?)))
                    .collect::<Result<_, TemplateError>>()?,
            ),
        })
    }

    pub fn render(&self, value: &dyn Fn(Placeholder) -> String) -> serde_json::Value {
        match self {
            JsonTemplate::Text(t) => t.render(value).into(),
            JsonTemplate::Plain(v) => v.clone(),
            JsonTemplate::Array(items) => items.iter().map(|i| i.render(value)).collect(),
            JsonTemplate::Object(fields) => fields
                .iter()
                .map(|(k, v)| (k.clone(), v.render(value)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    /// Every value, by placeholder name: the body when none is configured.
    fn all_values() -> JsonTemplate {
        JsonTemplate::Object(
            Placeholder::ALL
                .into_iter()
                .filter_map(|p| {
                    let t = Template::parse(&format!("{{{}}}", p.name())).ok()?;
                    Some((p.name().to_string(), JsonTemplate::Text(t)))
                })
                .collect(),
        )
    }
}

/// A validated webhook action.
#[derive(Clone, Debug)]
pub struct WebhookAction {
    url: String,
    headers: Vec<(String, Template)>,
    body: JsonTemplate,
    retries: u32,
    retry_delay: Duration,
    curl: String,
}

impl WebhookAction {
    pub fn new(
        url: &str,
        headers: Vec<(String, Template)>,
        body: Option<JsonTemplate>,
        retries: u32,
        retry_delay: Duration,
        curl: Option<String>,
    ) -> Result<WebhookAction, String> {
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        if !scheme_ok || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "url {url:?} must be an http:// or https:// URL without spaces"
            ));
        }
        if retries > 10 {
            return Err("retries must be at most 10".into());
        }
        Ok(WebhookAction {
            url: url.to_string(),
            headers,
            body: body.unwrap_or_else(JsonTemplate::all_values),
            retries,
            retry_delay,
            curl: curl.unwrap_or_else(|| DEFAULT_CURL.into()),
        })
    }

    /// Posts the event, retrying a failed request (no answer, or a status other than 2xx)
    /// after `retry_delay`, doubled each time. `timeout` bounds each attempt.
    pub async fn post(
        &self,
        event: &ActionEvent,
        hostname: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let value = |p| event.value(p, hostname);
        let body = serde_json::to_vec(&self.body.render(&value)).map_err(|e| e.to_string())?;
        if body.len() > BODY_LIMIT {
            return Err(format!(
                "the body would be {} bytes, over the limit",
                body.len()
            ));
        }
        // The URL and headers go to curl on stdin (`--config -`), not on its command line,
        // which every local user can read in /proc: they often hold the secret (a token,
        // Slack's URL). The body goes with them.
        let argv = vec![
            self.curl.clone(),
            "--silent".into(),
            "--show-error".into(),
            "--proto".into(),
            "=http,https".into(),
            "--max-time".into(),
            format!("{:.3}", timeout.as_secs_f64()),
            "--output".into(),
            "/dev/null".into(),
            "--write-out".into(),
            "%{http_code}".into(),
            "--request".into(),
            "POST".into(),
            "--config".into(),
            "-".into(),
        ];
        let mut config = String::new();
        let mut option = |name: &str, value: &str| {
            config.push_str(&format!("{name} = \"{}\"\n", curl_quoted(value)));
        };
        option("header", "Content-Type: application/json");
        for (name, template) in &self.headers {
            let text: String = template
                .render(&value)
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            option("header", &format!("{name}: {text}"));
        }
        option("url", &self.url);
        // JSON text never starts with `@` (which would name a file to curl).
        option("data-binary", &String::from_utf8_lossy(&body));
        let body = config.into_bytes();
        let mut delay = self.retry_delay;
        let mut attempt = 0;
        loop {
            let result = process::run(Run {
                argv: &argv,
                env: BTreeMap::new(),
                stdin: Some(body.clone()),
                // curl's own --max-time ends it first; this is for a curl that hangs anyway.
                timeout: timeout + Duration::from_secs(2),
            })
            .await;
            let error = match result {
                Ok(code) => {
                    let code = String::from_utf8_lossy(&code).trim().to_string();
                    if code.starts_with('2') && code.len() == 3 {
                        return Ok(());
                    }
                    // Not the URL: it often is the secret (Slack's, ntfy's topic), and this
                    // text is shown to every user of `banhound status`.
                    format!("the server answered HTTP {code}")
                }
                Err(e) => e.to_string(),
            };
            if attempt >= self.retries {
                let tries = attempt + 1;
                return Err(format!("{error} (after {tries} attempt(s))"));
            }
            attempt += 1;
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
        }
    }
}

/// `text` for a double-quoted value of a curl config file, which reads `\\`, `\"`, `\n`,
/// `\r` and `\t` as escapes.
fn curl_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_text_stays_inside_its_json_string() {
        let body: toml::Value =
            toml::from_str("text = \"Banned {ip}: {lines}\"\nn = 3\nlist = [\"{jail}\", true]")
                .unwrap();
        let template = JsonTemplate::from_toml(&body).unwrap();
        let hostile = "\", \"admin\": true, \"x\": \"\\u0000 }";
        let json = template.render(&|p| match p {
            Placeholder::Lines => hostile.to_string(),
            Placeholder::Ip => "192.0.2.1".into(),
            _ => "sshd".into(),
        });
        let text = serde_json::to_string(&json).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.as_object().unwrap().len(), 3);
        assert_eq!(parsed["text"], format!("Banned 192.0.2.1: {hostile}"));
        assert_eq!(parsed["n"], 3);
        assert_eq!(parsed["list"][1], true);
    }

    #[test]
    fn only_http_urls() {
        for bad in [
            "file:///etc/passwd",
            "https://x y",
            "gopher://x",
            "https://x\r\n",
        ] {
            assert!(
                WebhookAction::new(bad, vec![], None, 1, Duration::ZERO, None).is_err(),
                "{bad}"
            );
        }
    }
}
