//! The audit trail of configuration changes: who asked (the client's address, and whether
//! it presented the bearer token) and what changed, field by field, with CHAP secrets only
//! ever named, never shown.
//!
//! The REST guard runs each mutating request inside [`scope`];
//! [`Service::update`](crate::service::Service::update), the one place a change is
//! committed, logs [`changes`] under [`actor`] once the change is stored.

use std::future::Future;

use serde::Serialize;
use serde_json::Value;
use tgt_proto::{Chap, Config};

tokio::task_local! {
    static ACTOR: String;
}

/// Runs `f` (a request's handling) on behalf of `who`.
pub async fn scope<F: Future>(who: String, f: F) -> F::Output {
    ACTOR.scope(who, f).await
}

/// Who the current change is made by; `control plane` outside a request.
pub fn actor() -> String {
    ACTOR
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "control plane".into())
}

fn json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn field_changes(noun: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    let keys: std::collections::BTreeSet<&String> = old
        .as_object()
        .into_iter()
        .chain(new.as_object())
        .flat_map(|m| m.keys())
        .collect();
    for k in keys {
        let (a, b) = (old.get(k), new.get(k));
        if a != b {
            let show = |v: Option<&Value>| v.map_or_else(|| "(unset)".into(), Value::to_string);
            out.push(format!("~ {noun}: {k}: {} -> {}", show(a), show(b)));
        }
    }
}

fn keyed(noun: &str, old: Vec<(String, Value)>, new: Vec<(String, Value)>, out: &mut Vec<String>) {
    for (id, v) in &new {
        match old.iter().find(|(i, _)| i == id) {
            None => out.push(format!("+ {noun} {id}: {v}")),
            Some((_, o)) if o != v => field_changes(&format!("{noun} {id}"), o, v, out),
            Some(_) => {}
        }
    }
    for (id, _) in &old {
        if !new.iter().any(|(i, _)| i == id) {
            out.push(format!("- {noun} {id}"));
        }
    }
}

fn secrets_differ(old: Option<&Chap>, new: Option<&Chap>) -> bool {
    let s = |c: Option<&Chap>| c.map(|c| (c.secret.clone(), c.mutual_secret.clone()));
    // Only when CHAP stays: adding or removing it shows as a change of `auth` already.
    old.is_some() && new.is_some() && s(old) != s(new)
}

/// What changes from `old` to `new`, one line per resource field: `+` added, `-` removed,
/// `~` changed. Secrets are removed before comparing; a changed secret is a line that says
/// so without its value.
pub fn changes(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let (mut o, mut n) = (old.clone(), new.clone());
    o.redact_secrets();
    n.redact_secrets();
    let storages = |c: &Config| {
        c.storages
            .iter()
            .map(|s| (s.device_id.to_string(), json(s)))
            .collect()
    };
    let portals = |c: &Config| {
        c.iscsi_portals
            .iter()
            .map(|p| (p.id.to_string(), json(p)))
            .collect()
    };
    let targets = |c: &Config| {
        c.iscsi_targets
            .iter()
            .map(|(k, t)| (k.clone(), json(t)))
            .collect()
    };
    keyed("storage", storages(&o), storages(&n), &mut out);
    keyed("portal", portals(&o), portals(&n), &mut out);
    keyed("target", targets(&o), targets(&n), &mut out);
    if o.performance != n.performance {
        field_changes(
            "performance",
            &json(&o.performance),
            &json(&n.performance),
            &mut out,
        );
    }
    if o.discovery != n.discovery {
        field_changes(
            "discovery",
            &json(&o.discovery),
            &json(&n.discovery),
            &mut out,
        );
    }
    let chap_of = |c: &Config, name: &str| {
        c.iscsi_targets
            .get(name)
            .and_then(|t| t.auth.as_ref())
            .and_then(|a| a.chap.clone())
    };
    for name in new.iscsi_targets.keys() {
        if secrets_differ(chap_of(old, name).as_ref(), chap_of(new, name).as_ref()) {
            out.push(format!("~ target {name}: CHAP secret changed (not shown)"));
        }
    }
    let discovery = |c: &Config| {
        c.discovery
            .as_ref()
            .and_then(|d| d.auth.as_ref())
            .and_then(|a| a.chap.clone())
    };
    if secrets_differ(discovery(old).as_ref(), discovery(new).as_ref()) {
        out.push("~ discovery: CHAP secret changed (not shown)".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(v: serde_json::Value) -> Config {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn names_each_changed_field_and_never_a_secret() {
        let old = config(serde_json::json!({
            "storages": [{"deviceID": 1, "path": "/a"}],
            "iscsitargets": {"iqn.2026-01.x:t": {"auth": {"chap": {"username": "u", "secret": "first-secret-1"}}}}
        }));
        let new = config(serde_json::json!({
            "storages": [{"deviceID": 1, "path": "/b"}, {"deviceID": 2, "path": "/c"}],
            "iscsitargets": {"iqn.2026-01.x:t": {"auth": {"chap": {"username": "u", "secret": "second-secret-2"}}}},
            "discovery": {"auth": {"chap": {"username": "d", "secret": "third-secret-3"}}}
        }));
        let lines = changes(&old, &new);
        let all = lines.join("\n");
        assert!(!all.contains("-secret-"), "{all}");
        assert!(
            lines.contains(&"~ storage 1: path: \"/a\" -> \"/b\"".to_string()),
            "{all}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("+ storage 2: ")),
            "{all}"
        );
        assert!(
            lines
                .contains(&"~ target iqn.2026-01.x:t: CHAP secret changed (not shown)".to_string()),
            "{all}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("~ discovery: auth: ")),
            "{all}"
        );
        assert!(changes(&new, &new).is_empty());
    }

    #[tokio::test]
    async fn the_actor_is_the_one_of_the_enclosing_request() {
        assert_eq!(actor(), "control plane");
        let who = scope("peer 192.0.2.1:4000".into(), async { actor() }).await;
        assert_eq!(who, "peer 192.0.2.1:4000");
    }
}
