//! The REST client: one blocking HTTP exchange per call, problem+json turned into
//! [`CliError::Api`], and transport failures turned into [`CliError::Unreachable`] with a
//! sentence saying what to check.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::blocking::{Client as Http, RequestBuilder};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, ETAG};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tgt_proto::api::Problem;

use crate::CliError;

/// A successful reply: its body as the type the endpoint answers with, and its ETag.
#[derive(Debug, Clone)]
pub struct Reply<T> {
    /// The ETag header, quotes included, if any.
    pub etag: Option<String>,
    /// The body.
    pub body: T,
}

/// A client of one control plane.
pub struct Client {
    base: String,
    token: Option<String>,
    http: Http,
}

impl Client {
    /// A client of the control plane at `base` (such as `http://127.0.0.1:8080` or
    /// `https://tgt1.example:8443`); `ca_file` holds the certificates an https server's
    /// chain must lead to (the system's roots when absent).
    pub fn new(
        base: &str,
        token: Option<String>,
        ca_file: Option<&Path>,
    ) -> Result<Self, CliError> {
        let base = base.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base).map_err(|e| {
            CliError::Usage(format!(
                "--server {base:?} is not a URL such as http://127.0.0.1:8080 ({e})"
            ))
        })?;
        // reqwest is built with rustls but no provider of its own: the process's default
        // (ring) must be in place before any client is built, for http:// too. Installing
        // it again (it is process-wide) fails harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = Http::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60));
        let builder = match parsed.scheme() {
            "http" => builder,
            "https" => match ca_file {
                Some(path) => builder.tls_backend_preconfigured(tls_config(path)?),
                // reqwest verifies against the system's roots with the default provider.
                None => builder,
            },
            other => {
                return Err(CliError::Usage(format!(
                    "--server {base:?}: the scheme must be http or https, not {other}"
                )))
            }
        };
        let http = builder
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

    /// Sends one request and returns the body's text and the ETag; any status outside
    /// 2xx is an error carrying the problem detail.
    fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        headers: &[(&str, &str)],
    ) -> Result<(String, Option<String>), CliError> {
        let mut r = self.request(method, path);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        if let Some(b) = body {
            let text = serde_json::to_string(b).map_err(|e| {
                CliError::Other(anyhow::anyhow!("cannot encode the request body: {e}"))
            })?;
            r = r.header(CONTENT_TYPE, "application/json").body(text);
        }
        let resp = r.send().map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let etag = resp
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.text().map_err(|e| self.unreachable(&e))?;
        if status.is_success() {
            Ok((text, etag))
        } else {
            Err(problem(status, &text))
        }
    }

    /// Sends one request and reads the reply as `T`, the type the endpoint answers with.
    pub fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        headers: &[(&str, &str)],
    ) -> Result<Reply<T>, CliError> {
        let (text, etag) = self.send(method, path, body, headers)?;
        let body = serde_json::from_str(&text).map_err(|e| {
            CliError::Other(anyhow::anyhow!(
                "unexpected answer from {}{path}: {e}",
                self.base
            ))
        })?;
        Ok(Reply { etag, body })
    }

    /// `GET` of a JSON resource.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Reply<T>, CliError> {
        self.call(Method::GET, path, None::<&()>, &[])
    }

    /// `DELETE` of a resource; the reply has no body.
    pub fn delete(&self, path: &str) -> Result<(), CliError> {
        self.send(Method::DELETE, path, None::<&()>, &[])
            .map(|_| ())
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
            Err(problem(status, &text))
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

/// The TLS client setup for `--ca-file`: rustls with the ring provider, trusting only the
/// certificates in that file.
fn tls_config(path: &Path) -> Result<rustls::ClientConfig, CliError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let bad = |e: String| CliError::Usage(format!("--ca-file {}: {e}", path.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no CERTIFICATE block".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::Other(anyhow::anyhow!("cannot set up TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Turns an error reply into a message: the problem's title and detail, every field at
/// fault, and what to do about the common ones. A body that is not a problem document
/// (from a proxy, say) is shown as it is.
fn problem(status: StatusCode, text: &str) -> CliError {
    let code = status.as_u16();
    let mut msg = match serde_json::from_str::<Problem>(text) {
        Ok(p) => {
            let mut m = format!("{} ({code}): {}", p.title, p.detail);
            for e in &p.errors {
                m.push_str(&format!("\n  {}: {}", e.path, e.message));
            }
            m
        }
        Err(_) => match serde_json::from_str::<Value>(text) {
            _ if text.trim().is_empty() => format!("HTTP {code}"),
            Ok(Value::String(s)) => format!("HTTP {code}: {s}"),
            Ok(Value::Null) => format!("HTTP {code}"),
            Ok(other) => format!("HTTP {code}: {other}"),
            Err(_) => format!("HTTP {code}: {text}"),
        },
    };
    let hint = match status.as_u16() {
        401 => Some(
            "pass --token-file FILE holding the control plane's token (or set TGTCTL_TOKEN_FILE)",
        ),
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
