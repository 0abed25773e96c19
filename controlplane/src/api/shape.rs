//! The JSON *kind* of every value of a request body, checked against the body's OpenAPI
//! schema before serde reads it.
//!
//! serde's derived `Deserialize` of a struct also accepts a sequence (the fields in
//! declaration order), so `[null, null]` reads as a `Performance` with two fields unset and
//! `{"auth": []}` as a target with an empty `auth`. The spec declares those values as
//! objects, and clients are told to send objects; accepting an array would make a typo or
//! a confused client change the config. This check walks the body beside its schema (the
//! same schema the spec publishes, generated from the `tgt-proto` types) and refuses an
//! array wherever the schema allows only an object, naming the JSON path. Every other
//! mismatch of kind is left to serde, whose messages already name the field.

use std::sync::OnceLock;

use serde_json::{Map, Value};
use utoipa::OpenApi;

use super::openapi::ApiDoc;

/// Deepest nesting walked. The config types nest at most six levels; serde_json refuses
/// anything deeper than 128, so this only bounds the walk of a hostile body.
const DEPTH_MAX: usize = 32;

/// Why a value does not fit a schema.
enum Fault {
    /// An array where only an object fits: the body is refused, at this path.
    ArrayForObject(String),
    /// Some other kind mismatch, which serde reports in its own words.
    Other,
}

/// The component schemas of the spec, as JSON.
fn schemas() -> &'static Map<String, Value> {
    static SCHEMAS: OnceLock<Map<String, Value>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        serde_json::to_value(ApiDoc::openapi())
            .ok()
            .and_then(|v| v.pointer("/components/schemas").cloned())
            .and_then(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .unwrap_or_default()
    })
}

/// Checks `body` against the component schema named `name`; `Err` carries the JSON path
/// (in the form serde errors use, `$` for the whole body) of an array that stands where
/// only an object may.
pub fn check(name: &str, body: &Value) -> Result<(), String> {
    let Some(schema) = schemas().get(name) else {
        // Every body type is a component (a unit test checks); nothing to check against.
        return Ok(());
    };
    match walk(schema, body, &mut Vec::new(), 0) {
        Err(Fault::ArrayForObject(path)) => Err(path),
        Ok(()) | Err(Fault::Other) => Ok(()),
    }
}

/// Whether the spec has a component schema of this name (for the tests).
pub fn known(name: &str) -> bool {
    schemas().contains_key(name)
}

fn path_of(path: &[String]) -> String {
    if path.is_empty() {
        return "$".into();
    }
    let mut s = String::new();
    for seg in path {
        if seg.starts_with('[') || s.is_empty() {
            s.push_str(seg);
        } else {
            s.push('.');
            s.push_str(seg);
        }
    }
    s
}

fn kind_fits(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        _ => true,
    }
}

fn walk(schema: &Value, v: &Value, path: &mut Vec<String>, depth: usize) -> Result<(), Fault> {
    if depth > DEPTH_MAX {
        return Ok(());
    }
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let target = r
            .strip_prefix("#/components/schemas/")
            .and_then(|n| schemas().get(n));
        return match target {
            Some(s) => walk(s, v, path, depth + 1),
            None => Ok(()),
        };
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(branches) = schema.get(key).and_then(Value::as_array) {
            let mut fault = Fault::Other;
            for b in branches {
                match walk(b, v, path, depth + 1) {
                    Ok(()) => return Ok(()),
                    Err(f @ Fault::ArrayForObject(_)) => fault = f,
                    Err(Fault::Other) => {}
                }
            }
            if !branches.is_empty() {
                return Err(fault);
            }
        }
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for b in all {
            walk(b, v, path, depth + 1)?;
        }
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() && !types.iter().any(|t| kind_fits(t, v)) {
        return Err(if v.is_array() && types.contains(&"object") {
            Fault::ArrayForObject(path_of(path))
        } else {
            Fault::Other
        });
    }
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in m {
                let Some(s) = props.and_then(|p| p.get(k)).or(extra) else {
                    continue;
                };
                path.push(k.clone());
                let r = walk(s, child, path, depth + 1);
                path.pop();
                if let Err(f @ Fault::ArrayForObject(_)) = r {
                    return Err(f);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items").filter(|i| i.is_object()) {
                for (i, child) in items.iter().enumerate() {
                    path.push(format!("[{i}]"));
                    let r = walk(s, child, path, depth + 1);
                    path.pop();
                    if let Err(f @ Fault::ArrayForObject(_)) = r {
                        return Err(f);
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_request_body_type_is_a_component() {
        for name in [
            "Config",
            "Storage",
            "Portal",
            "Target",
            "LunMapping",
            "Performance",
        ] {
            assert!(known(name), "{name} is not among the component schemas");
        }
    }

    #[test]
    fn refuses_an_array_where_an_object_belongs_and_names_its_path() {
        assert_eq!(check("Performance", &json!([null, null])), Err("$".into()));
        assert_eq!(
            check("Config", &json!({"performance": [null]})),
            Err("performance".into())
        );
        assert_eq!(
            check("Config", &json!({"discovery": {"auth": []}})),
            Err("discovery.auth".into())
        );
        assert_eq!(
            check(
                "Config",
                &json!({"iscsitargets": {"iqn.2026-01.x:t": {"acl": [[]]}}})
            ),
            Err("iscsitargets.iqn.2026-01.x:t.acl".into())
        );
        assert_eq!(
            check("Config", &json!({"storages": [{"deviceID": 1}, []]})),
            Err("storages[1]".into())
        );
        assert_eq!(
            check("Target", &json!({"auth": {"chap": ["u", "s"]}})),
            Err("auth.chap".into())
        );
    }

    #[test]
    fn leaves_every_other_body_to_serde() {
        for (name, body) in [
            ("Performance", json!({})),
            ("Performance", json!({"workerThreads": "x"})),
            ("Config", json!({"storages": {}})),
            ("Config", json!({"performance": null})),
            (
                "Target",
                json!({"acl": {"initiators": ["iqn.2026-01.x:i"]}}),
            ),
            ("Target", json!({"tpgts": {"1": [0]}, "luns": {"0": 1}})),
            ("LunMapping", json!(7)),
        ] {
            assert_eq!(check(name, &body), Ok(()), "{name} {body}");
        }
    }
}
