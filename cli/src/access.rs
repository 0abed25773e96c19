//! Access control verbs: `tgtctl target auth set|clear`, `tgtctl target acl set|clear` and
//! `tgtctl discovery auth set|clear|get`.
//!
//! Each one reads the resource with its ETag, changes only the part it is about and
//! writes it back with `If-Match`, so everything else (portal groups, LUNs, the other of
//! auth and ACL) is kept and a concurrent change is refused instead of lost. Targets are
//! edited through `/targets/{name}`; discovery, which has no resource of its own, through
//! the whole config (whose write keeps every secret it omits).
//!
//! A secret never comes from the command line, where `ps` and shell history would keep it:
//! it is read from a file (`-` for standard input) or from the terminal with echo off.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use reqwest::Method;
use serde::Serialize;
use tgt_proto::{Acl, Auth, Chap, ChapAlgorithmName, Config, Discovery, Target};

use crate::client::Client;
use crate::render::{emit, Format};
use crate::{CliError, Result};

/// Where the CHAP credentials come from.
#[derive(Args, Debug)]
pub struct ChapArgs {
    /// The CHAP name the initiator sends (CHAP_N).
    #[arg(long)]
    pub username: String,
    /// File holding the initiator's secret (`-`: standard input); without it, the secret is
    /// asked for on the terminal with echo off.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// For mutual CHAP: the name the target answers with.
    #[arg(long)]
    pub mutual_username: Option<String>,
    /// For mutual CHAP: file holding the target's secret (`-`: standard input); without it,
    /// asked for on the terminal.
    #[arg(long, value_name = "FILE", requires = "mutual_username")]
    pub mutual_secret_file: Option<PathBuf>,
    /// Algorithms accepted, comma-separated: md5, sha1, sha256, sha3-256 (default: all four;
    /// leave out md5 to refuse it).
    #[arg(long, value_delimiter = ',', value_name = "ALGS")]
    pub algorithms: Vec<String>,
}

/// `tgtctl target auth ...`
#[derive(Subcommand, Debug)]
pub enum TargetAuthCmd {
    /// Requires CHAP for logins to a target (replaces any CHAP it had; keeps its ACL).
    #[command(
        after_help = "Examples:\n  tgtctl target auth set iqn.2026-01.com.example:disk1 --username host1 --secret-file /root/host1.secret\n  tgtctl target auth set iqn.2026-01.com.example:disk1 --username host1 --mutual-username disk1 --algorithms sha256,sha3-256\n\nA secret is read from --secret-file (- for standard input) or asked for on the terminal; never from an argument."
    )]
    Set {
        /// The target's iSCSI name.
        name: String,
        /// The credentials.
        #[command(flatten)]
        chap: ChapArgs,
    },
    /// Stops requiring CHAP for a target (keeps its ACL).
    #[command(after_help = "Examples:\n  tgtctl target auth clear iqn.2026-01.com.example:disk1")]
    Clear {
        /// The target's iSCSI name.
        name: String,
    },
}

/// `tgtctl target acl ...`
#[derive(Subcommand, Debug)]
pub enum TargetAclCmd {
    /// Limits which initiators may log in to a target (and see it in discovery); replaces
    /// any ACL it had and keeps its CHAP.
    #[command(
        after_help = "Examples:\n  tgtctl target acl set iqn.2026-01.com.example:disk1 --initiator iqn.1993-08.org.debian:01:host1\n  tgtctl target acl set iqn.2026-01.com.example:disk1 --initiator iqn.1993-08.org.debian:01:host1 --network 192.0.2.0/24"
    )]
    Set {
        /// The target's iSCSI name.
        name: String,
        /// An initiator name allowed (repeatable); none given: any name.
        #[arg(long = "initiator", value_name = "IQN")]
        initiators: Vec<String>,
        /// A source network allowed, in CIDR form (repeatable); none given: any address.
        #[arg(long = "network", value_name = "CIDR")]
        networks: Vec<String>,
    },
    /// Removes a target's ACL: any initiator may log in (subject to CHAP).
    #[command(after_help = "Examples:\n  tgtctl target acl clear iqn.2026-01.com.example:disk1")]
    Clear {
        /// The target's iSCSI name.
        name: String,
    },
}

/// `tgtctl discovery ...`
#[derive(Subcommand, Debug)]
pub enum DiscoveryCmd {
    /// Shows the settings of discovery sessions (secrets are never shown).
    #[command(after_help = "Examples:\n  tgtctl discovery get\n  tgtctl discovery get -o json")]
    Get,
    /// CHAP for discovery sessions (SendTargets).
    #[command(
        subcommand,
        after_help = "Examples:\n  tgtctl discovery auth set --username disc --secret-file discovery.secret\n  tgtctl discovery auth clear"
    )]
    Auth(DiscoveryAuthCmd),
}

/// `tgtctl discovery auth ...`
#[derive(Subcommand, Debug)]
pub enum DiscoveryAuthCmd {
    /// Requires CHAP for discovery sessions.
    #[command(
        after_help = "Examples:\n  tgtctl discovery auth set --username disc --secret-file /root/discovery.secret\n\nA secret is read from --secret-file (- for standard input) or asked for on the terminal; never from an argument."
    )]
    Set {
        /// The credentials.
        #[command(flatten)]
        chap: ChapArgs,
    },
    /// Lets discovery sessions in without CHAP.
    #[command(after_help = "Examples:\n  tgtctl discovery auth clear")]
    Clear,
}

/// What `-o json` prints after an access change: the resource as the API now shows it
/// (without secrets) and where it is.
#[derive(Serialize)]
struct Changed<'a, T> {
    changed: &'a str,
    now: &'a T,
}

/// Reads a secret from `file` (`-`: standard input, first line) or, without one, from the
/// terminal with echo off; the trailing newline is not part of it.
fn read_secret(file: Option<&Path>, prompt: &str) -> Result<String> {
    let secret = match file {
        Some(p) if p.as_os_str() == "-" => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).map_err(|e| {
                CliError::Usage(format!("cannot read the secret from standard input: {e}"))
            })?;
            line
        }
        Some(p) => std::fs::read_to_string(p).map_err(|e| {
            CliError::Usage(format!("cannot read secret file {}: {e}", p.display()))
        })?,
        None => prompt_hidden(prompt)?,
    };
    let secret = secret.trim_end_matches(['\n', '\r']).to_string();
    if secret.is_empty() {
        return Err(CliError::Usage(format!("{prompt}: the secret is empty")));
    }
    Ok(secret)
}

/// Asks on the controlling terminal with echo off (termios), restoring it afterwards.
fn prompt_hidden(prompt: &str) -> Result<String> {
    use std::os::fd::AsRawFd;

    let no_tty = || {
        CliError::Usage(format!(
            "{prompt}: no terminal to ask on; give the secret in a file (--secret-file FILE, or - for standard input)"
        ))
    };
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| no_tty())?;
    let fd = tty.as_raw_fd();
    // SAFETY: termios is plain old data; tcgetattr fills it in or fails, and it is only
    // used after success.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is the open terminal above and `saved` a valid termios to fill.
    if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
        return Err(no_tty());
    }
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    quiet.c_lflag |= libc::ECHONL;
    // SAFETY: the same open terminal and a termios derived from its own settings.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
        return Err(no_tty());
    }
    let mut out = &tty;
    let _ = write!(out, "{prompt}: ");
    let _ = out.flush();
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    // SAFETY: restores the settings read above on the same terminal, whatever happened.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    read.map_err(|e| CliError::Usage(format!("{prompt}: cannot read the terminal: {e}")))?;
    Ok(line)
}

fn algorithms(names: &[String]) -> Result<Option<Vec<ChapAlgorithmName>>> {
    if names.is_empty() {
        return Ok(None);
    }
    names
        .iter()
        .map(|n| {
            serde_json::from_value(serde_json::Value::String(n.trim().to_string())).map_err(|_| {
                CliError::Usage(format!(
                    "--algorithms: {n:?} is not one of md5, sha1, sha256, sha3-256"
                ))
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// The CHAP credentials the arguments name, secrets read from their files or the terminal.
fn chap_of(a: &ChapArgs) -> Result<Chap> {
    let algorithms = algorithms(&a.algorithms)?;
    let secret = read_secret(
        a.secret_file.as_deref(),
        &format!("CHAP secret of {}", a.username),
    )?;
    let mutual_secret = match &a.mutual_username {
        Some(m) => Some(read_secret(
            a.mutual_secret_file.as_deref(),
            &format!("mutual CHAP secret of {m}"),
        )?),
        None => None,
    };
    if a.secret_file
        .as_deref()
        .is_some_and(|p| p.as_os_str() == "-")
        && a.mutual_secret_file
            .as_deref()
            .is_some_and(|p| p.as_os_str() == "-")
    {
        return Err(CliError::Usage(
            "only one of --secret-file and --mutual-secret-file can be standard input".into(),
        ));
    }
    Ok(Chap {
        username: a.username.clone(),
        secret: Some(secret),
        mutual_username: a.mutual_username.clone(),
        mutual_secret,
        algorithms,
    })
}

fn target_path(name: &str) -> String {
    format!("/api/v1/targets/{}", crate::resources::seg(name))
}

/// Reads a target, lets `edit` change it, and writes it back with `If-Match`.
fn edit_target(
    c: &Client,
    out: Format,
    name: &str,
    edit: impl FnOnce(&mut Target),
    sentence: String,
) -> Result<()> {
    let path = target_path(name);
    let cur = c.get::<Target>(&path)?;
    let mut t = cur.body;
    edit(&mut t);
    let etag = cur.etag.unwrap_or_else(|| "*".into());
    let now: Target = c
        .call(Method::PUT, &path, Some(&t), &[("If-Match", etag.as_str())])
        .map_err(stale)?
        .body;
    emit(
        out,
        &Changed {
            changed: name,
            now: &now,
        },
        || format!("{sentence}\n"),
    );
    Ok(())
}

fn stale(e: CliError) -> CliError {
    match e {
        CliError::Api { status: 412, .. } => CliError::Api {
            status: 412,
            message: "it changed since tgtctl read it; nothing was changed: run the command again"
                .into(),
        },
        other => other,
    }
}

fn describe(chap: &Chap) -> String {
    let kind = if chap.mutual_username.is_some() {
        "mutual CHAP"
    } else {
        "CHAP"
    };
    let algs = chap.algorithms.as_ref().map_or_else(
        || "any algorithm".to_string(),
        |a| {
            let names: Vec<String> = a
                .iter()
                .map(|x| {
                    serde_json::to_value(x)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                })
                .collect();
            names.join(",")
        },
    );
    format!("{kind} as {} ({algs})", chap.username)
}

/// Runs a `target auth` command.
pub fn target_auth(c: &Client, out: Format, cmd: TargetAuthCmd) -> Result<()> {
    match cmd {
        TargetAuthCmd::Set { name, chap } => {
            // Read first: a missing target is reported before a secret is asked for.
            c.get::<Target>(&target_path(&name))?;
            let chap = chap_of(&chap)?;
            let sentence = format!("target {name} now requires {}", describe(&chap));
            edit_target(
                c,
                out,
                &name,
                |t| {
                    t.auth = Some(Auth { chap: Some(chap) });
                },
                sentence,
            )
        }
        TargetAuthCmd::Clear { name } => {
            let sentence = format!("target {name} no longer requires CHAP");
            edit_target(c, out, &name, |t| t.auth = None, sentence)
        }
    }
}

/// Runs a `target acl` command.
pub fn target_acl(c: &Client, out: Format, cmd: TargetAclCmd) -> Result<()> {
    match cmd {
        TargetAclCmd::Set {
            name,
            initiators,
            networks,
        } => {
            if initiators.is_empty() && networks.is_empty() {
                return Err(CliError::Usage(
                    "give at least one --initiator or --network (tgtctl target acl clear removes the ACL)".into(),
                ));
            }
            let mut parts = Vec::new();
            if !initiators.is_empty() {
                parts.push(format!("initiators {}", initiators.join(", ")));
            }
            if !networks.is_empty() {
                parts.push(format!("networks {}", networks.join(", ")));
            }
            let sentence = format!("target {name} now admits only {}", parts.join(" from "));
            let acl = Acl {
                initiators: (!initiators.is_empty()).then_some(initiators),
                networks: (!networks.is_empty()).then_some(networks),
            };
            edit_target(c, out, &name, |t| t.acl = Some(acl), sentence)
        }
        TargetAclCmd::Clear { name } => {
            let sentence = format!("target {name} has no ACL: any initiator may log in");
            edit_target(c, out, &name, |t| t.acl = None, sentence)
        }
    }
}

/// Runs a `discovery` command.
pub fn discovery(c: &Client, out: Format, cmd: DiscoveryCmd) -> Result<()> {
    let show = |d: &Discovery| match d.auth.as_ref().and_then(|a| a.chap.as_ref()) {
        Some(chap) => format!("discovery requires {}\n", describe(chap)),
        None => "discovery needs no CHAP\n".to_string(),
    };
    let edit = |auth: Option<Auth>, sentence: String| -> Result<()> {
        let cur = c.get::<Config>("/api/v1/config")?;
        let mut config = cur.body;
        let mut d = config.discovery.take().map(|d| *d).unwrap_or_default();
        d.auth = auth;
        config.discovery = (d != Discovery::default()).then(|| Box::new(d));
        let etag = cur.etag.unwrap_or_else(|| "*".into());
        // The written config omits every secret it did not read; the control plane keeps them.
        c.call::<_, serde_json::Value>(
            Method::PUT,
            "/api/v1/config",
            Some(&config),
            &[("If-Match", etag.as_str())],
        )
        .map_err(stale)?;
        let now = c
            .get::<Config>("/api/v1/config")?
            .body
            .discovery
            .map(|d| *d)
            .unwrap_or_default();
        emit(
            out,
            &Changed {
                changed: "discovery",
                now: &now,
            },
            || format!("{sentence}\n"),
        );
        Ok(())
    };
    match cmd {
        DiscoveryCmd::Get => {
            let d = c
                .get::<Config>("/api/v1/config")?
                .body
                .discovery
                .map(|d| *d)
                .unwrap_or_default();
            emit(out, &d, || show(&d));
            Ok(())
        }
        DiscoveryCmd::Auth(DiscoveryAuthCmd::Set { chap }) => {
            let chap = chap_of(&chap)?;
            let sentence = format!("discovery now requires {}", describe(&chap));
            edit(Some(Auth { chap: Some(chap) }), sentence)
        }
        DiscoveryCmd::Auth(DiscoveryAuthCmd::Clear) => {
            edit(None, "discovery no longer requires CHAP".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_are_the_config_names() {
        assert_eq!(
            algorithms(&["sha256".into(), "sha3-256".into()]).unwrap(),
            Some(vec![ChapAlgorithmName::Sha256, ChapAlgorithmName::Sha3_256])
        );
        assert_eq!(algorithms(&[]).unwrap(), None);
        assert!(matches!(
            algorithms(&["sha512".into()]),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn a_secret_file_is_read_without_its_trailing_newline() {
        let p = std::env::temp_dir().join(format!("tgtctl-secret-{}", std::process::id()));
        std::fs::write(&p, "a secret with spaces\n").unwrap();
        assert_eq!(read_secret(Some(&p), "x").unwrap(), "a secret with spaces");
        std::fs::write(&p, "\n").unwrap();
        assert!(matches!(
            read_secret(Some(&p), "x"),
            Err(CliError::Usage(_))
        ));
        let _ = std::fs::remove_file(&p);
    }
}
