//! `tgtctl config get` and `tgtctl apply -f FILE [--dry-run]`: the whole config as one
//! document. `apply` reads the current config and its ETag, asks the control plane for a
//! dry run (validation and the diff by resource), prints what changes field by field, and
//! then replaces the config with `If-Match`, so a change made by someone else in between
//! is refused instead of overwritten.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;
use tgt_proto::api::{ConfigDiff, DryRun, PutConfigReply};
use tgt_proto::{Config, FieldError};

use crate::client::Client;
use crate::render::{emit, json_of, to_yaml, write_stdout, Format};
use crate::{read_input, CliError, Result};

/// `tgtctl config ...`
#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Prints the whole desired config as JSON (or YAML with -o yaml); `apply -f` takes it back.
    #[command(
        after_help = "Examples:\n  tgtctl config get > tgt.json\n  tgtctl config get -o yaml"
    )]
    Get,
}

/// Runs a `config` command.
pub fn config(c: &Client, out: Format, cmd: ConfigCmd) -> Result<()> {
    match cmd {
        ConfigCmd::Get => {
            let v = json_of(&c.get::<Config>("/api/v1/config")?.body);
            // The document itself is the human form; JSON is what `apply -f` reads back.
            match out {
                Format::Yaml => write_stdout(to_yaml(&v).as_bytes()),
                _ => write_stdout(
                    (serde_json::to_string_pretty(&v).unwrap_or_default() + "\n").as_bytes(),
                ),
            }
        }
    }
    Ok(())
}

/// `tgtctl apply`.
#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// The config file (JSON, as `tgtctl config get` prints it); `-` reads standard input.
    #[arg(short, long, value_name = "FILE")]
    pub file: PathBuf,
    /// Only show what would change.
    #[arg(long)]
    pub dry_run: bool,
}

/// What `tgtctl apply -o json` prints.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ApplyReport<'a> {
    dry_run: bool,
    valid: bool,
    errors: &'a [FieldError],
    diff: &'a ConfigDiff,
    changes: &'a [String],
    applied: bool,
    /// Present once applied: the new generation (`null` if the ETag is not one).
    #[serde(skip_serializing_if = "Option::is_none")]
    generation: Option<Option<u64>>,
}

/// The items of one section as (id, JSON form) pairs.
fn items<'a, T: Serialize + 'a>(
    list: impl IntoIterator<Item = (String, &'a T)>,
) -> Vec<(String, Value)> {
    list.into_iter().map(|(k, v)| (k, json_of(v))).collect()
}

/// Every section of a config, each with the noun its lines use and its items by id.
fn sections(c: &Config) -> [(&'static str, Vec<(String, Value)>); 3] {
    [
        (
            "storage",
            items(c.storages.iter().map(|s| (s.device_id.to_string(), s))),
        ),
        (
            "portal",
            items(c.iscsi_portals.iter().map(|p| (p.id.to_string(), p))),
        ),
        (
            "target",
            items(c.iscsi_targets.iter().map(|(n, t)| (n.clone(), t))),
        ),
    ]
}

fn compact(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "(unset)".into(),
        Some(v) => v.to_string(),
    }
}

/// Field-by-field changes between two JSON objects.
fn field_changes(old: &Value, new: &Value) -> Vec<String> {
    let mut keys: Vec<&String> = old
        .as_object()
        .into_iter()
        .flatten()
        .chain(new.as_object().into_iter().flatten())
        .map(|(k, _)| k)
        .collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| format!("{k}: {} -> {}", compact(old.get(k)), compact(new.get(k))))
        .collect()
}

/// The CHAP secrets a config sets, by where they are (`target NAME`, `discovery`), for a
/// diff that says a secret is written without showing it.
fn secrets_set(c: &Config) -> Vec<String> {
    let has = |chap: Option<&tgt_proto::Chap>| {
        chap.is_some_and(|c| c.secret.is_some() || c.mutual_secret.is_some())
    };
    let mut out: Vec<String> = c
        .iscsi_targets
        .iter()
        .filter(|(_, t)| has(t.auth.as_ref().and_then(|a| a.chap.as_ref())))
        .map(|(n, _)| format!("target {n}"))
        .collect();
    let discovery = c
        .discovery
        .as_ref()
        .and_then(|d| d.auth.as_ref())
        .and_then(|a| a.chap.as_ref());
    if has(discovery) {
        out.push("discovery".into());
    }
    out
}

/// A readable diff of two configs: `+` added, `-` removed, `~` changed with its fields.
/// CHAP secrets are never shown: a file that sets one gets a line saying it is written.
pub fn describe_diff(old: &Config, new: &Config) -> Vec<String> {
    let written = secrets_set(new);
    let (mut old, mut new) = (old.clone(), new.clone());
    old.redact_secrets();
    new.redact_secrets();
    let (old, new) = (&old, &new);
    let mut lines = Vec::new();
    for ((noun, before), (_, after)) in sections(old).into_iter().zip(sections(new)) {
        for (id, v) in &after {
            match before.iter().find(|(i, _)| i == id) {
                None => lines.push(format!("+ {noun} {id}: {v}")),
                Some((_, o)) if o != v => {
                    for ch in field_changes(o, v) {
                        lines.push(format!("~ {noun} {id}: {ch}"));
                    }
                }
                Some(_) => {}
            }
        }
        for (id, _) in &before {
            if !after.iter().any(|(i, _)| i == id) {
                lines.push(format!("- {noun} {id}"));
            }
        }
    }
    if old.performance != new.performance {
        let (po, pn) = (json_of(&old.performance), json_of(&new.performance));
        for ch in field_changes(&po, &pn) {
            lines.push(format!("~ performance: {ch}"));
        }
    }
    if old.discovery != new.discovery {
        let (d_old, d_new) = (json_of(&old.discovery), json_of(&new.discovery));
        for ch in field_changes(&d_old, &d_new) {
            lines.push(format!("~ discovery: {ch}"));
        }
    }
    for w in written {
        lines.push(format!("~ {w}: CHAP secret written (not shown)"));
    }
    lines
}

/// Runs `tgtctl apply`.
pub fn apply(c: &Client, out: Format, a: &ApplyArgs) -> Result<()> {
    let text = read_input(&a.file)?;
    // Sent as written: the control plane names any unknown key or wrong type (400).
    let raw: Value = serde_json::from_str(&text).map_err(|e| {
        CliError::Usage(format!(
            "{} is not JSON: {e} (write it as `tgtctl config get` prints it)",
            a.file.display()
        ))
    })?;
    let current = c.get::<Config>("/api/v1/config")?;
    let etag = current.etag.clone().unwrap_or_else(|| "*".into());
    // An invalid config fails the dry run with the same 422 as the real request.
    let dry: DryRun = c
        .call(Method::PUT, "/api/v1/config?dry_run=true", Some(&raw), &[])
        .map_err(|e| match e {
            CliError::Api {
                status: 422,
                message,
            } => CliError::Api {
                status: 422,
                message: format!("nothing was applied: {message}"),
            },
            other => other,
        })?
        .body;
    // The control plane has just read the same document as a config, so this holds.
    let new: Config = serde_json::from_value(raw.clone())
        .map_err(|e| CliError::Usage(format!("{} is not a config: {e}", a.file.display())))?;
    let changes = describe_diff(&current.body, &new);
    let mut report = ApplyReport {
        dry_run: a.dry_run,
        valid: dry.valid,
        errors: &dry.errors,
        diff: &dry.diff,
        changes: &changes,
        applied: false,
        generation: None,
    };
    let human = |extra: &str| {
        let mut s = String::new();
        if changes.is_empty() {
            s.push_str("no changes\n");
        } else {
            for l in &changes {
                s.push_str(l);
                s.push('\n');
            }
        }
        s.push_str(extra);
        s
    };
    if !dry.valid {
        // A control plane from before dry runs failed like the real request.
        let mut msg = String::from("the config is not valid; nothing was applied");
        for e in &dry.errors {
            msg.push_str(&format!("\n  {}: {}", e.path, e.message));
        }
        emit(out, &report, || human(""));
        return Err(CliError::Api {
            status: 422,
            message: msg,
        });
    }
    if dry.diff.is_empty() {
        emit(out, &report, || {
            "no changes: the config already matches\n".into()
        });
        return Ok(());
    }
    if a.dry_run {
        emit(out, &report, || {
            human("dry run: nothing applied (run again without --dry-run to apply)\n")
        });
        return Ok(());
    }
    let reply = c
        .call::<_, PutConfigReply>(
            Method::PUT,
            "/api/v1/config",
            Some(&raw),
            &[("If-Match", etag.as_str())],
        )
        .map_err(|e| match e {
            CliError::Api { status: 412, .. } => CliError::Api {
                status: 412,
                message: "the config changed since tgtctl read it (someone else applied a change); nothing was applied: run the command again to see the new diff".into(),
            },
            other => other,
        })?;
    let generation = reply
        .etag
        .as_deref()
        .map(|t| t.trim_matches('"').to_string())
        .unwrap_or_default();
    report.applied = true;
    report.generation = Some(generation.parse::<u64>().ok());
    emit(out, &report, || {
        human(&format!("applied: config generation {generation}\n"))
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_added_removed_and_changed_fields() {
        let old: Config = serde_json::from_value(serde_json::json!({
            "storages": [{"deviceID": 1, "path": "/a"}, {"deviceID": 2, "path": "/b"}],
            "iscsiportals": [{"id": 0, "portal": "127.0.0.1:3260"}],
            "iscsitargets": {"iqn.x:t": {"luns": {"0": 1}}}
        }))
        .unwrap();
        let new: Config = serde_json::from_value(serde_json::json!({
            "storages": [{"deviceID": 1, "path": "/a2", "readOnly": true}, {"deviceID": 3, "path": "/c"}],
            "iscsiportals": [{"id": 0, "portal": "127.0.0.1:3260"}],
            "iscsitargets": {"iqn.x:t": {"luns": {"0": 1, "1": 3}}},
            "performance": {"workerThreads": 2}
        }))
        .unwrap();
        assert_eq!(
            describe_diff(&old, &new),
            vec![
                "~ storage 1: path: \"/a\" -> \"/a2\"",
                "~ storage 1: readOnly: (unset) -> true",
                "+ storage 3: {\"deviceID\":3,\"path\":\"/c\"}",
                "- storage 2",
                "~ target iqn.x:t: luns: {\"0\":1} -> {\"0\":1,\"1\":3}",
                "~ performance: workerThreads: (unset) -> 2",
            ]
        );
        assert!(describe_diff(&new, &new).is_empty());
    }

    #[test]
    fn diff_never_shows_a_secret() {
        let old = Config::default();
        let new: Config = serde_json::from_value(serde_json::json!({
            "iscsitargets": {"iqn.x:t": {"auth": {"chap": {"username": "u", "secret": "hush-hush-123"}}}},
            "discovery": {"auth": {"chap": {"username": "d", "secret": "quiet-quiet-456"}}}
        }))
        .unwrap();
        let lines = describe_diff(&old, &new).join("\n");
        assert!(!lines.contains("hush-hush"), "{lines}");
        assert!(!lines.contains("quiet-quiet"), "{lines}");
        assert!(
            lines.contains("~ target iqn.x:t: CHAP secret written (not shown)"),
            "{lines}"
        );
        assert!(
            lines.contains("~ discovery: CHAP secret written"),
            "{lines}"
        );
    }
}
