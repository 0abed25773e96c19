//! The REST client: one blocking HTTP exchange per call, problem+json turned into
//! [`CliError::Api`], and transport failures turned into [`CliError::Unreachable`] with a
//! sentence saying what to check.

use std::time::Duration;

use reqwest::blocking::{Client as Http, RequestBuilder};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, ETAG};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::CliError;

/// A JSON reply and its ETag.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The ETag header, quotes included, if any.
    pub etag: Option<String>,
    /// The body as JSON (`Null` when empty).
    pub body: Value,
}

/// A client of one control plane.
pub struct Client {
    base: String,
    token: Option<String>,
    http: Http,
}

impl Client {
    /// A client of the control plane at `base` (such as `http://127.0.0.1:8080`).
    pub fn new(base: &str, token: Option<String>) -> Result<Self, CliError> {
        let base = base.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base).map_err(|e| {
            CliError::Usage(format!(
                "--server {base:?} is not a URL such as http://127.0.0.1:8080 ({e})"
            ))
        })?;
        if parsed.scheme() != "http" {
            return Err(CliError::Usage(format!(
                "--server {base:?}: only http:// is supported; reach a TLS proxy through an SSH tunnel or run tgtctl on the host"
            )));
        }
        let http = Http::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| CliError::Other(anyhow::anyhow!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            base,
            token: token.filter(|t| !t.is_empty()),
            http,
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            r = r.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        r
    }

    /// Sends one request; any status outside 2xx is an error carrying the problem detail.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, CliError> {
        let mut r = self.request(method, path);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        if let Some(b) = body {
            r = r
                .header(CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let resp = r.send().map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let etag = resp
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.text().map_err(|e| self.unreachable(&e))?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            Ok(Reply {
                status: status.as_u16(),
                etag,
                body,
            })
        } else {
            Err(problem(status, &body))
        }
    }

    /// `GET` of a JSON resource.
    pub fn get(&self, path: &str) -> Result<Reply, CliError> {
        self.call(Method::GET, path, None, &[])
    }

    /// `GET` of a text resource such as `/metrics`.
    pub fn get_text(&self, path: &str) -> Result<String, CliError> {
        let resp = self
            .request(Method::GET, path)
            .send()
            .map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let text = resp.text().map_err(|e| self.unreachable(&e))?;
        if status.is_success() {
            Ok(text)
        } else {
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            Err(problem(status, &body))
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> CliError {
        // The innermost cause is the one a person can act on ("connection refused").
        let mut reason = e.to_string();
        let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
        while let Some(s) = src {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                reason = match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                    _ => io.to_string(),
                };
            } else {
                reason = s.to_string();
            }
            src = s.source();
        }
        if e.is_timeout() {
            reason = "no answer in time".into();
        }
        CliError::Unreachable(format!(
            "cannot reach control plane at {}: {reason} (is tgt-controlplane running? point --server or TGTCTL_SERVER at it)",
            self.base
        ))
    }
}

/// Turns an error reply into a message: the problem's title and detail, every field at
/// fault, and what to do about the common ones.
fn problem(status: StatusCode, body: &Value) -> CliError {
    let mut msg = match (body["title"].as_str(), body["detail"].as_str()) {
        (Some(t), Some(d)) => format!("{t} ({}): {d}", status.as_u16()),
        _ => match body {
            Value::String(s) => format!("HTTP {}: {s}", status.as_u16()),
            Value::Null => format!("HTTP {}", status.as_u16()),
            other => format!("HTTP {}: {other}", status.as_u16()),
        },
    };
    if let Some(errors) = body["errors"].as_array() {
        for e in errors {
            msg.push_str(&format!(
                "\n  {}: {}",
                e["path"].as_str().unwrap_or("$"),
                e["message"].as_str().unwrap_or("")
            ));
        }
    }
    let hint = match status.as_u16() {
        401 => Some("pass --token or set TGTCTL_TOKEN to the control plane's token"),
        412 => Some("it changed since it was read; read it again and retry"),
        503 => {
            Some("the data plane is not connected: is tgt-dataplane running? see `tgtctl status`")
        }
        _ => None,
    };
    if let Some(h) = hint {
        msg.push_str(&format!("\n  hint: {h}"));
    }
    CliError::Api {
        status: status.as_u16(),
        message: msg,
    }
}
