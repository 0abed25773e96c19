//! Write-only CHAP secrets and the rule that makes a read-modify-write work.
//!
//! No answer carries a secret, so a client that reads a target (or the whole config),
//! changes something else and writes it back sends no secret. Such a write keeps the
//! secret stored for the same place: a target's `auth.chap.secret` for the target of the
//! same name, `discovery.auth.chap.secret` for discovery, and `mutualSecret` likewise when
//! the write still names a `mutualUsername`. A write that carries a secret replaces it;
//! removing `chap` (or `auth`) removes CHAP and its secrets. The rule is published in the
//! OpenAPI description and in docs/api-changes.md.

use tgt_proto::{Auth, Chap, Config, Target};

/// Fills the secrets `new` omits from `stored`.
pub fn keep_chap(new: &mut Chap, stored: &Chap) {
    if new.secret.is_none() {
        new.secret.clone_from(&stored.secret);
    }
    if new.mutual_secret.is_none() && new.mutual_username.is_some() {
        new.mutual_secret.clone_from(&stored.mutual_secret);
    }
}

fn keep_auth(new: Option<&mut Auth>, stored: Option<&Auth>) {
    if let (Some(n), Some(s)) = (
        new.and_then(|a| a.chap.as_mut()),
        stored.and_then(|a| a.chap.as_ref()),
    ) {
        keep_chap(n, s);
    }
}

/// Fills the CHAP secrets a written target omits from the stored target of the same name.
pub fn keep_target(new: &mut Target, stored: &Target) {
    keep_auth(new.auth.as_mut(), stored.auth.as_ref());
}

/// Fills every CHAP secret a written config omits from the stored config: per target by
/// name, and for discovery.
pub fn keep_config(new: &mut Config, stored: &Config) {
    for (name, t) in &mut new.iscsi_targets {
        if let Some(s) = stored.iscsi_targets.get(name) {
            keep_target(t, s);
        }
    }
    keep_auth(
        new.discovery.as_mut().and_then(|d| d.auth.as_mut()),
        stored.discovery.as_ref().and_then(|d| d.auth.as_ref()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chap(secret: Option<&str>, mutual: Option<(&str, Option<&str>)>) -> Chap {
        Chap {
            username: "u".into(),
            secret: secret.map(str::to_string),
            mutual_username: mutual.map(|(n, _)| n.to_string()),
            mutual_secret: mutual.and_then(|(_, s)| s.map(str::to_string)),
            algorithms: None,
        }
    }

    #[test]
    fn an_omitted_secret_keeps_the_stored_one_and_a_given_one_replaces_it() {
        let stored = chap(Some("old-secret-1"), Some(("t", Some("old-secret-2"))));
        let mut n = chap(None, Some(("t", None)));
        keep_chap(&mut n, &stored);
        assert_eq!(n, stored);
        let mut n = chap(Some("new-secret-1"), Some(("t", Some("new-secret-2"))));
        keep_chap(&mut n, &stored);
        assert_eq!(n.secret.as_deref(), Some("new-secret-1"));
        assert_eq!(n.mutual_secret.as_deref(), Some("new-secret-2"));
        // Dropping mutualUsername turns mutual CHAP off; its secret does not come back.
        let mut n = chap(None, None);
        keep_chap(&mut n, &stored);
        assert_eq!(n.mutual_secret, None);
        assert_eq!(n.secret.as_deref(), Some("old-secret-1"));
    }

    #[test]
    fn a_config_keeps_secrets_per_target_name_and_for_discovery() {
        let stored: Config = serde_json::from_value(serde_json::json!({
            "iscsitargets": {"iqn.2026-01.x:a": {"auth": {"chap": {"username": "u", "secret": "secret-a-123"}}}},
            "discovery": {"auth": {"chap": {"username": "d", "secret": "secret-d-123"}}}
        }))
        .unwrap();
        let mut shown = stored.clone();
        shown.redact_secrets();
        let mut renamed = shown.clone();
        keep_config(&mut shown, &stored);
        assert_eq!(shown, stored);
        // A target of another name is another target: nothing is copied into it.
        let t = renamed.iscsi_targets.remove("iqn.2026-01.x:a").unwrap();
        renamed.iscsi_targets.insert("iqn.2026-01.x:b".into(), t);
        keep_config(&mut renamed, &stored);
        let chap = |c: &Config, n: &str| c.iscsi_targets[n].auth.clone().unwrap().chap.unwrap();
        assert_eq!(chap(&renamed, "iqn.2026-01.x:b").secret, None);
    }
}
