//! The OpenAPI spec, checked two ways.
//!
//! Statically, `openapi/openapi.json` must validate against the official OpenAPI 3.1
//! meta-schemas (vendored in `openapi/schema/`, see its README), and pass the checks a
//! meta-schema cannot make: every `$ref` resolves, every operationId is unique, and every
//! path parameter is declared.
//!
//! Live, the real daemons answer every operation of the spec: `tgt-dataplane
//! --control-socket` and `tgt-controlplane`, configured only through REST. Each answer's
//! status must be declared for its operation, its content type must be one the spec lists
//! for that status, and its body must match that content's schema (JSON Schema 2020-12, the
//! Schema Object dialect of OpenAPI 3.1). The test fails when an operation of the spec was
//! never called, so a new endpoint needs a case here.

mod support;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use jsonschema::{Draft, Registry, Validator};
use serde_json::{json, Value};
use support::{
    start_controlplane, start_controlplane_with_token, start_socket_dataplane, workspace_root,
    Daemon, TempDir,
};

/// The URI the checked-in spec is registered under so `$ref`s into it resolve; it is never
/// fetched (the validator has no network retriever).
const SPEC_URI: &str = "https://tgt.invalid/openapi.json";

const IQN: &str = "iqn.2026-11.org.example.systest:openapi";

/// Operations deliberately not called by the live test, each with the reason. Every other
/// operation of the spec must be called, or the test fails.
const NOT_CALLED: &[(&str, &str)] = &[];

/// The HTTP methods an OpenAPI path item can hold, in the spec's spelling.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn load_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn checked_in_spec() -> Value {
    load_json(&workspace_root().join("openapi/openapi.json"))
}

/// The vendored OpenAPI 3.1 meta-schemas, each with its `$id`.
fn oas_meta_schemas() -> Vec<(String, Value)> {
    let dir = workspace_root().join("openapi/schema");
    [
        "oas-3.1.json",
        "oas-3.1-schema-base.json",
        "oas-3.1-dialect.json",
        "oas-3.1-meta.json",
    ]
    .iter()
    .map(|f| {
        let v = load_json(&dir.join(f));
        let id = v["$id"]
            .as_str()
            .unwrap_or_else(|| panic!("{f} has no $id"))
            .to_string();
        (id, v)
    })
    .collect()
}

/// Every problem the OpenAPI 3.1 meta-schemas find in `spec`: the document structure
/// (`schema`), and with `schema-base` every Schema Object against the OpenAPI dialect.
fn meta_schema_problems(spec: &Value) -> Vec<String> {
    let metas = oas_meta_schemas();
    let registry = Registry::new()
        .extend(metas.iter().map(|(id, v)| (id.as_str(), v)))
        .expect("register the OpenAPI meta-schemas")
        .prepare()
        .expect("prepare the OpenAPI meta-schemas");
    let mut problems = Vec::new();
    for (id, meta) in metas.iter().take(2) {
        let validator = jsonschema::options()
            .with_draft(Draft::Draft202012)
            .with_registry(&registry)
            .offline()
            .build(meta)
            .unwrap_or_else(|e| panic!("compile {id}: {e}"));
        problems.extend(validator.iter_errors(spec).map(|e| {
            format!(
                "{id}: at {:?}: {e} (meta-schema path {})",
                e.instance_path().as_str(),
                e.schema_path().as_str()
            )
        }));
    }
    problems
}

/// Every `$ref` of the document: (location as a JSON pointer, the reference).
fn refs(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let here = format!("{at}/{}", escape_token(k));
                if k == "$ref" {
                    if let Some(r) = child.as_str() {
                        out.push((at.to_string(), r.to_string()));
                    }
                }
                refs(child, &here, out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                refs(child, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn escape_token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Decodes the `%XX` escapes of a URI fragment.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes a JSON pointer as a URI fragment (RFC 6901 §6).
fn fragment_of(pointer: &str) -> String {
    let mut out = String::with_capacity(pointer.len());
    for c in pointer.chars() {
        if c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/".contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// `$ref`s that do not resolve within the document. Only local references are allowed:
/// the spec is served alone, so a client could not follow any other.
fn dangling_refs(spec: &Value) -> Vec<String> {
    let mut all = Vec::new();
    refs(spec, "", &mut all);
    all.into_iter()
        .filter_map(|(at, r)| {
            let Some(fragment) = r.strip_prefix('#') else {
                return Some(format!("{at}: {r:?} is not a local reference"));
            };
            match percent_decode(fragment) {
                Some(pointer) if spec.pointer(&pointer).is_some() => None,
                Some(_) => Some(format!("{at}: {r:?} points at nothing")),
                None => Some(format!("{at}: {r:?} has a bad percent-encoding")),
            }
        })
        .collect()
}

/// Every operation: (method, path template, operation object).
fn operations(spec: &Value) -> Vec<(&'static str, String, &Value)> {
    let mut out = Vec::new();
    if let Some(paths) = spec["paths"].as_object() {
        for (template, item) in paths {
            for m in METHODS {
                if let Some(op) = item.get(m) {
                    out.push((m, template.clone(), op));
                }
            }
        }
    }
    out
}

/// Operations without an operationId, and operationIds used more than once.
fn operation_id_problems(spec: &Value) -> Vec<String> {
    let mut by_id: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (m, template, op) in operations(spec) {
        let where_ = format!("{} {template}", m.to_uppercase());
        match op["operationId"].as_str() {
            Some(id) => by_id.entry(id).or_default().push(where_),
            None => problems.push(format!("{where_} has no operationId")),
        }
    }
    for (id, uses) in by_id {
        if uses.len() > 1 {
            problems.push(format!("operationId {id:?} is used by {}", uses.join(", ")));
        }
    }
    problems
}

/// Follows a local `$ref` (for parameters and responses, which may be references).
fn deref<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix('#'))
        .and_then(percent_decode)
    {
        Some(pointer) => spec.pointer(&pointer).unwrap_or(&Value::Null),
        None => v,
    }
}

/// `{name}` segments of a path template.
fn template_params(template: &str) -> BTreeSet<String> {
    template
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(str::to_string)
        .collect()
}

/// Path parameters of the template that an operation does not declare, and declared path
/// parameters that the template lacks (OpenAPI 3.1 §4.8.12.1: each template expression
/// must correspond to a path parameter).
fn path_param_problems(spec: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (m, template, op) in operations(spec) {
        let item = &spec["paths"][&template];
        let declared: BTreeSet<String> = [&item["parameters"], &op["parameters"]]
            .into_iter()
            .filter_map(Value::as_array)
            .flatten()
            .map(|p| deref(spec, p))
            .filter(|p| p["in"] == "path")
            .filter_map(|p| p["name"].as_str().map(str::to_string))
            .collect();
        let wanted = template_params(&template);
        let op_name = format!("{} {template}", m.to_uppercase());
        for missing in wanted.difference(&declared) {
            problems.push(format!(
                "{op_name}: path parameter {{{missing}}} is not declared"
            ));
        }
        for extra in declared.difference(&wanted) {
            problems.push(format!(
                "{op_name}: declares path parameter {extra:?} that the path does not have"
            ));
        }
    }
    problems
}

/// Every Schema Object of `components/schemas` must compile, with its references resolved
/// in the spec: a meta-schema checks the shape of a schema, not what its `$ref`s reach.
fn schema_compile_problems(spec: &Value) -> Vec<String> {
    let registry = spec_registry(spec);
    spec["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, _)| {
            let pointer = format!("/components/schemas/{}", escape_token(name));
            compile(&registry, &pointer)
                .err()
                .map(|e| format!("#{pointer}: {e}"))
        })
        .collect()
}

fn spec_registry(spec: &Value) -> Registry<'static> {
    Registry::new()
        .draft(Draft::Draft202012)
        .add(SPEC_URI, spec.clone())
        .expect("register the spec")
        .prepare()
        .expect("prepare the spec registry")
}

/// A validator for the schema at `pointer` in the spec.
fn compile(registry: &Registry<'static>, pointer: &str) -> Result<Validator, String> {
    let wrapper = json!({ "$ref": format!("{SPEC_URI}#{}", fragment_of(pointer)) });
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .with_registry(registry)
        .offline()
        .build(&wrapper)
        .map_err(|e| e.to_string())
}

fn assert_none(problems: Vec<String>, what: &str) {
    assert!(
        problems.is_empty(),
        "openapi/openapi.json: {what}:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn checked_in_spec_is_a_valid_openapi_3_1_document() {
    let spec = checked_in_spec();
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "not an OpenAPI 3.1 document: {}",
        spec["openapi"]
    );
    assert_none(
        meta_schema_problems(&spec),
        "does not validate against the OpenAPI 3.1 meta-schemas",
    );
}

#[test]
fn every_ref_in_the_spec_resolves() {
    let spec = checked_in_spec();
    assert_none(dangling_refs(&spec), "dangling $ref");
    assert_none(
        schema_compile_problems(&spec),
        "component schemas that do not compile",
    );
}

#[test]
fn every_operation_id_is_unique() {
    assert_none(
        operation_id_problems(&checked_in_spec()),
        "missing or repeated operationId",
    );
}

#[test]
fn every_path_parameter_is_declared() {
    assert_none(path_param_problems(&checked_in_spec()), "path parameters");
}

/// The checks above must not pass vacuously: each finds the defect it exists for.
#[test]
fn spec_checks_find_the_defects_they_look_for() {
    let good = checked_in_spec();
    let storage_get = "/paths/~1api~1v1~1storages~1{device_id}/get";

    let mut bad = good.clone();
    bad["paths"]["/api/v1/storages"]["get"]["responses"]["200"]
        .as_object_mut()
        .expect("a 200 response")
        .remove("description");
    bad["components"]["schemas"]["Storage"]["type"] = json!("integr");
    bad["info"]["license"] = json!({});
    let problems = meta_schema_problems(&bad).join("\n");
    for want in [
        "/paths/~1api~1v1~1storages/get/responses/200",
        "/components/schemas/Storage/type",
        "/info/license",
    ] {
        assert!(
            problems.contains(want),
            "the meta-schemas did not report {want}:\n{problems}"
        );
    }

    let mut bad = good.clone();
    bad["components"]["schemas"]["Storage"]["properties"]["backendType"]["oneOf"][1]["$ref"] =
        json!("#/components/schemas/NoSuchType");
    bad["paths"]["/api/v1/storages"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"]["items"]["$ref"] = json!("https://example.com/other.json#/Storage");
    let problems = dangling_refs(&bad).join("\n");
    assert!(problems.contains("NoSuchType"), "{problems}");
    assert!(problems.contains("not a local reference"), "{problems}");
    let problems = schema_compile_problems(&bad).join("\n");
    assert!(
        problems.contains("#/components/schemas/Storage"),
        "{problems}"
    );

    let mut bad = good.clone();
    let get_id = good
        .pointer(&format!("{storage_get}/operationId"))
        .cloned()
        .expect("storage GET has an operationId");
    *bad.pointer_mut("/paths/~1api~1v1~1portals~1{id}/get/operationId")
        .expect("portal GET") = get_id.clone();
    bad.pointer_mut("/paths/~1api~1v1~1status/get")
        .and_then(Value::as_object_mut)
        .expect("status GET")
        .remove("operationId");
    let problems = operation_id_problems(&bad).join("\n");
    assert!(
        problems.contains(&format!("operationId {get_id} is used by")),
        "{problems}"
    );
    assert!(
        problems.contains("GET /api/v1/status has no operationId"),
        "{problems}"
    );

    let mut bad = good.clone();
    *bad.pointer_mut(&format!("{storage_get}/parameters"))
        .expect("storage GET parameters") = json!([]);
    bad["paths"]["/api/v1/status"]["get"]["parameters"] =
        json!([{"name": "x", "in": "path", "required": true, "schema": {"type": "string"}}]);
    let problems = path_param_problems(&bad).join("\n");
    assert!(
        problems.contains(
            "GET /api/v1/storages/{device_id}: path parameter {device_id} is not declared"
        ),
        "{problems}"
    );
    assert!(
        problems.contains("GET /api/v1/status: declares path parameter \"x\""),
        "{problems}"
    );
}

// ---------------------------------------------------------------------------------------
// The live check: real answers against the spec.

/// One HTTP/1.1 answer.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The media type of the body without parameters, lowercase (`text/plain`).
    fn media_type(&self) -> Option<String> {
        self.header("content-type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }
}

/// What a request carries after its headers.
#[derive(Clone, Copy)]
enum Body<'a> {
    None,
    Json(&'a str),
    /// This many filler bytes. The server reads a body up to its limit before it refuses
    /// it, so a body of exactly one byte over the limit is read whole before the answer:
    /// no unread data is left to make the server's close a reset that loses the answer.
    Filler(usize),
}

/// One request on its own connection (`Connection: close`).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Body<'_>,
) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect to the control plane");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let (len, text) = match body {
        Body::None => (0, ""),
        Body::Json(t) => (t.len(), t),
        Body::Filler(n) => (n, ""),
    };
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !matches!(body, Body::None) {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {len}\r\n"));
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(text);
    s.write_all(req.as_bytes()).expect("send request");
    if let Body::Filler(n) = body {
        s.write_all(&vec![b' '; n]).expect("send the filler body");
    }
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {path}: read the response: {e}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let rest = raw.get(split + 4..).unwrap_or_default();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    }
}

/// Joins the chunks of a `Transfer-Encoding: chunked` body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|l| usize::from_str_radix(l.split(';').next()?.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        let Some(chunk) = raw.get(start..start + size) else {
            return out;
        };
        out.extend_from_slice(chunk);
        raw = raw.get(start + size + 2..).unwrap_or_default();
    }
}

/// Judges answers against the spec and remembers which operations answered what.
struct Checker {
    spec: Value,
    registry: Registry<'static>,
    validators: RefCell<HashMap<String, std::rc::Rc<Validator>>>,
    /// operationId → statuses seen.
    seen: RefCell<BTreeMap<String, BTreeSet<u16>>>,
}

/// The operation a request reached: its id, method and path template.
struct Op<'a> {
    id: String,
    method: &'static str,
    template: String,
    object: &'a Value,
}

impl Checker {
    fn new() -> Self {
        let spec = checked_in_spec();
        let registry = spec_registry(&spec);
        Self {
            spec,
            registry,
            validators: RefCell::new(HashMap::new()),
            seen: RefCell::new(BTreeMap::new()),
        }
    }

    /// The operation of the spec that `method path` calls: the path template whose
    /// segments match, literal segments preferred over `{parameters}`.
    fn operation(&self, method: &str, path: &str) -> Option<Op<'_>> {
        let path = path.split('?').next().unwrap_or(path);
        let segments: Vec<&str> = path.split('/').collect();
        let method = METHODS
            .into_iter()
            .find(|m| m.eq_ignore_ascii_case(method))?;
        self.spec["paths"]
            .as_object()?
            .iter()
            .filter_map(|(template, item)| {
                let t: Vec<&str> = template.split('/').collect();
                if t.len() != segments.len() {
                    return None;
                }
                let mut literal = 0;
                for (a, b) in t.iter().zip(&segments) {
                    if a.starts_with('{') && a.ends_with('}') {
                        if b.is_empty() {
                            return None;
                        }
                    } else if a == b {
                        literal += 1;
                    } else {
                        return None;
                    }
                }
                Some((literal, template, item.get(method)?))
            })
            .max_by_key(|(literal, _, _)| *literal)
            .map(|(_, template, object)| Op {
                id: object["operationId"]
                    .as_str()
                    .unwrap_or("(no operationId)")
                    .to_string(),
                method,
                template: template.clone(),
                object,
            })
    }

    fn validator(&self, pointer: &str) -> Result<std::rc::Rc<Validator>, String> {
        if let Some(v) = self.validators.borrow().get(pointer) {
            return Ok(v.clone());
        }
        let v = std::rc::Rc::new(compile(&self.registry, pointer)?);
        self.validators
            .borrow_mut()
            .insert(pointer.to_string(), v.clone());
        Ok(v)
    }

    /// Checks one answer: its status is declared for the operation, its content type is
    /// one the spec lists for that status, and its body matches that content's schema.
    fn check(&self, method: &str, path: &str, r: &Reply) -> Result<(), String> {
        let op = self
            .operation(method, path)
            .ok_or_else(|| format!("{method} {path} is not an operation of the spec"))?;
        let name = format!("{} ({} {})", op.id, op.method.to_uppercase(), op.template);
        self.seen
            .borrow_mut()
            .entry(op.id.clone())
            .or_default()
            .insert(r.status);
        let responses = &op.object["responses"];
        let status = r.status.to_string();
        let range = format!("{}XX", r.status / 100);
        let Some(key) = [status.as_str(), range.as_str(), "default"]
            .into_iter()
            .find(|k| responses.get(k).is_some())
        else {
            let declared: Vec<&String> = responses
                .as_object()
                .map(|m| m.keys().collect())
                .unwrap_or_default();
            return Err(format!(
                "{name} answered {path} with status {}, which the spec does not declare (declared: {declared:?}); body: {}",
                r.status, r.body
            ));
        };
        let response = deref(&self.spec, &responses[key]);
        let content = response["content"].as_object().filter(|c| !c.is_empty());
        let Some(content) = content else {
            return if r.body.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{name} status {}: the spec declares no body, but the answer has {:?}: {}",
                    r.status,
                    r.header("content-type"),
                    r.body
                ))
            };
        };
        let media = r.media_type().ok_or_else(|| {
            format!(
                "{name} status {}: no Content-Type; the spec declares {:?}",
                r.status,
                content.keys().collect::<Vec<_>>()
            )
        })?;
        let media_key = content
            .keys()
            .find(|k| media_matches(k, &media))
            .ok_or_else(|| {
                format!(
                    "{name} status {}: Content-Type {media} is not among the declared {:?}",
                    r.status,
                    content.keys().collect::<Vec<_>>()
                )
            })?;
        let is_json = media == "application/json" || media.ends_with("+json");
        let body: Option<Value> = if is_json {
            Some(serde_json::from_str(&r.body).map_err(|e| {
                format!(
                    "{name} status {}: the {media} body is not JSON ({e}): {}",
                    r.status, r.body
                )
            })?)
        } else {
            None
        };
        if content[media_key].get("schema").is_none() {
            return Ok(());
        }
        let body = body.ok_or_else(|| {
            format!(
                "{name} status {}: a schema is declared for {media}, which this check cannot parse",
                r.status
            )
        })?;
        // Where the response object is: in the operation, or in components when referenced.
        let response_at = responses[key]["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix('#'))
            .and_then(percent_decode)
            .unwrap_or_else(|| {
                format!(
                    "/paths/{}/{}/responses/{}",
                    escape_token(&op.template),
                    op.method,
                    escape_token(key)
                )
            });
        let pointer = format!("{response_at}/content/{}/schema", escape_token(media_key));
        let validator = self
            .validator(&pointer)
            .map_err(|e| format!("{name}: the schema at #{pointer} does not compile: {e}"))?;
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| {
                format!(
                    "at {:?}: {e} (schema path {})",
                    e.instance_path().as_str(),
                    e.schema_path().as_str()
                )
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{name} status {} {media}: the body does not match the schema #{pointer}:\n  {}\nbody: {}",
                r.status,
                errors.join("\n  "),
                r.body
            ))
        }
    }

    /// Fails unless every operation (but the listed ones) was called, and every status code
    /// the spec uses was seen at least once; returns (covered, total).
    fn assert_covered(&self, not_called: &[(&str, &str)]) -> (usize, usize) {
        let seen = self.seen.borrow();
        let all: BTreeSet<String> = operations(&self.spec)
            .iter()
            .filter_map(|(_, _, op)| op["operationId"].as_str().map(str::to_string))
            .collect();
        for (id, reason) in not_called {
            assert!(
                all.contains(*id),
                "NOT_CALLED lists {id} ({reason}), which the spec does not have"
            );
            assert!(
                !seen.contains_key(*id),
                "NOT_CALLED lists {id} ({reason}), but the test calls it: remove it from the list"
            );
        }
        let missing: Vec<&String> = all
            .iter()
            .filter(|id| !seen.contains_key(*id) && !not_called.iter().any(|(n, _)| n == id))
            .collect();
        assert!(
            missing.is_empty(),
            "operations of the spec that the live test never called (call them, or list them in NOT_CALLED with a reason): {missing:?}"
        );
        let declared: BTreeSet<u16> = operations(&self.spec)
            .iter()
            .filter_map(|(_, _, op)| op["responses"].as_object())
            .flat_map(|r| r.keys().filter_map(|k| k.parse().ok()))
            .collect();
        let seen_status: BTreeSet<u16> = seen.values().flatten().copied().collect();
        let unseen: Vec<&u16> = declared.difference(&seen_status).collect();
        assert!(
            unseen.is_empty(),
            "status codes the spec declares that no answer had: {unseen:?}"
        );
        let covered = seen.len();
        (covered, all.len())
    }

    fn report(&self) -> String {
        self.seen
            .borrow()
            .iter()
            .map(|(id, st)| format!("{id}: {st:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Whether a media-type key of the spec (which may be a range like `text/*`) covers `media`.
fn media_matches(key: &str, media: &str) -> bool {
    let key = key.to_ascii_lowercase();
    match key.strip_suffix("/*") {
        Some(_) if key == "*/*" => true,
        Some(kind) => media.split('/').next() == Some(kind),
        None => key == media,
    }
}

/// A control plane whose every answer is checked against the spec.
struct Api<'c> {
    addr: SocketAddr,
    checker: &'c Checker,
}

impl Api<'_> {
    /// Sends a request, fails the test when the answer breaks the spec, and returns it.
    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Body<'_>) -> Reply {
        let r = http(self.addr, method, path, headers, body);
        if let Err(e) = self.checker.check(method, path, &r) {
            panic!("{e}");
        }
        r
    }

    /// Sends a request and fails the test unless the answer has status `want`.
    fn expect(
        &self,
        want: u16,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Reply {
        let r = self.send(method, path, headers, body);
        assert_eq!(
            r.status, want,
            "{method} {path}: expected {want}, got {}: {}",
            r.status, r.body
        );
        r
    }

    fn get(&self, want: u16, path: &str) -> Reply {
        self.expect(want, "GET", path, &[], Body::None)
    }

    fn json(&self, want: u16, method: &str, path: &str, body: &Value) -> Reply {
        self.expect(want, method, path, &[], Body::Json(&body.to_string()))
    }

    fn raw(&self, want: u16, method: &str, path: &str, body: &str) -> Reply {
        self.expect(want, method, path, &[], Body::Json(body))
    }

    fn delete(&self, want: u16, path: &str) -> Reply {
        self.expect(want, "DELETE", path, &[], Body::None)
    }

    /// A request with `If-Match` set to a tag that matches nothing.
    fn stale(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let text = body.map(Value::to_string);
        let body = text.as_deref().map_or(Body::None, Body::Json);
        self.expect(412, method, path, &[("If-Match", "\"stale\"")], body)
    }
}

/// Polls `/api/v1/status` (checking each answer) until the data plane runs the desired
/// config, and returns that status.
fn wait_in_sync(api: &Api<'_>, dp: &mut Daemon) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = api.get(200, "/api/v1/status").json();
        if s["inSync"] == true {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "data plane not in sync in 30 s: {s}; data plane log:\n{}",
            dp.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Follows `$ref`s and picks the object branch of a `oneOf` (how the spec writes an
/// optional object): the object schema a value stands for, if it is one.
fn object_schema<'a>(spec: &'a Value, mut schema: &'a Value) -> Option<&'a Value> {
    for _ in 0..8 {
        if schema.get("$ref").is_some() {
            schema = deref(spec, schema);
        } else if let Some(branches) = schema["oneOf"].as_array() {
            schema = branches
                .iter()
                .find_map(|b| object_schema(spec, b))
                .unwrap_or(&Value::Null);
        } else {
            break;
        }
    }
    let t = &schema["type"];
    let is_object = t == "object" || t.as_array().is_some_and(|a| a.contains(&json!("object")));
    is_object.then_some(schema)
}

/// For a request body schema: an array in place of the whole body (when it is an object),
/// and for each of its properties that is an object, a body holding an array there; each
/// with the JSON path the refusal must name.
fn array_bodies(spec: &Value, schema: &Value) -> Vec<(Value, String)> {
    let Some(obj) = object_schema(spec, schema) else {
        return Vec::new();
    };
    let mut out = vec![(json!([null, null]), "$".to_string())];
    for (name, prop) in obj["properties"].as_object().into_iter().flatten() {
        if let Some(inner) = object_schema(spec, prop) {
            out.push((json!({ name: [null] }), name.clone()));
            // A map of objects (targets by name): an array as one of its values.
            let extra = &inner["additionalProperties"];
            if extra.is_object() && object_schema(spec, extra).is_some() {
                out.push((json!({ name: {"k": []} }), format!("{name}.k")));
            }
        } else if prop["items"].is_object() && object_schema(spec, &prop["items"]).is_some() {
            out.push((json!({ name: [[]] }), format!("{name}[0]")));
        }
    }
    out
}

/// A value for each path parameter of the spec, so the loops over every operation can call
/// it; a new parameter name needs an entry here.
fn sample_path(template: &str) -> String {
    template
        .split('/')
        .map(|s| match s {
            "{device_id}" => "42".to_string(),
            "{id}" => "0".to_string(),
            "{name}" => IQN.to_string(),
            "{lun}" => "0".to_string(),
            "{tsih}" => "1".to_string(),
            "{group}" => "1".to_string(),
            s if s.starts_with('{') => panic!("no sample value for path parameter {s}"),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn every_operation_answers_with_a_status_and_body_its_spec_declares() {
    let checker = Checker::new();
    let dir = TempDir::new("openapi");
    let mut dp = start_socket_dataplane(dir.path(), 1);
    let (_cp, addr) = start_controlplane(dir.path());
    let api = Api {
        addr,
        checker: &checker,
    };
    let image = |name: &str| dir.path().join(name).display().to_string();
    // Paths in a directory that does not exist: no storage on them can be opened.
    let unopenable = |name: &str| image(&format!("no-such-dir/{name}"));

    // Health and the documents that exist before any config.
    api.get(200, "/healthz");
    let served = api.get(200, "/api/v1/openapi.json").json();
    assert_eq!(
        served, checker.spec,
        "the control plane serves a spec that differs from openapi/openapi.json"
    );
    api.get(200, "/api/v1/status");
    api.get(200, "/api/v1/config");
    api.get(200, "/api/v1/storages");
    api.get(200, "/api/v1/portals");
    api.get(200, "/api/v1/targets");
    api.get(200, "/api/v1/performance");
    api.get(200, "/metrics");

    // Storages.
    let disk = json!({"deviceID": 42, "path": image("disk.img"), "size": 64 << 20});
    let r = api.json(201, "POST", "/api/v1/storages", &disk);
    assert_eq!(r.header("location"), Some("/api/v1/storages/42"));
    api.json(409, "POST", "/api/v1/storages", &disk);
    api.raw(400, "POST", "/api/v1/storages", "{\"deviceID\": ");
    api.json(
        400,
        "POST",
        "/api/v1/storages",
        &json!({"deviceID": 43, "path": "/x", "colour": 1}),
    );
    api.json(
        422,
        "POST",
        "/api/v1/storages",
        &json!({"deviceID": 43, "path": "/x", "blockSize": 1000}),
    );
    // Storage 43 cannot be opened; that is found when a LUN uses it.
    api.json(
        201,
        "POST",
        "/api/v1/storages",
        &json!({"deviceID": 43, "path": unopenable("43.img")}),
    );
    api.get(200, "/api/v1/storages");
    let r = api.get(200, "/api/v1/storages/42");
    let etag = r.header("etag").expect("a storage has an ETag").to_string();
    api.get(404, "/api/v1/storages/999");
    api.get(400, "/api/v1/storages/abc");
    api.expect(
        200,
        "PUT",
        "/api/v1/storages/42",
        &[("If-Match", &etag)],
        Body::Json(&disk.to_string()),
    );
    api.stale("PUT", "/api/v1/storages/42", Some(&disk));
    api.json(
        404,
        "PUT",
        "/api/v1/storages/999",
        &json!({"deviceID": 999, "path": "/x"}),
    );
    api.json(
        400,
        "PUT",
        "/api/v1/storages/42",
        &json!({"deviceID": 41, "path": "/x"}),
    );
    api.json(400, "PUT", "/api/v1/storages/abc", &disk);
    api.json(
        422,
        "PUT",
        "/api/v1/storages/42",
        &json!({"deviceID": 42, "path": image("disk.img"), "blockSize": 1000}),
    );

    // Portals.
    let portal = json!({"id": 0, "portal": "127.0.0.1:0"});
    let r = api.json(201, "POST", "/api/v1/portals", &portal);
    assert_eq!(r.header("location"), Some("/api/v1/portals/0"));
    api.json(409, "POST", "/api/v1/portals", &portal);
    api.raw(400, "POST", "/api/v1/portals", "[]");
    api.json(
        422,
        "POST",
        "/api/v1/portals",
        &json!({"id": 1, "portal": "no-such-host:3260"}),
    );
    // An address this test listens on: the data plane cannot bind it and refuses.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let taken = listener.local_addr().expect("address").to_string();
    api.json(
        409,
        "POST",
        "/api/v1/portals",
        &json!({"id": 1, "portal": taken}),
    );
    api.get(200, "/api/v1/portals");
    let etag = api
        .get(200, "/api/v1/portals/0")
        .header("etag")
        .expect("a portal has an ETag")
        .to_string();
    api.get(404, "/api/v1/portals/9");
    api.get(400, "/api/v1/portals/x");
    api.expect(
        200,
        "PUT",
        "/api/v1/portals/0",
        &[("If-Match", &etag)],
        Body::Json(&portal.to_string()),
    );
    api.stale("PUT", "/api/v1/portals/0", Some(&portal));
    api.json(
        404,
        "PUT",
        "/api/v1/portals/9",
        &json!({"id": 9, "portal": "127.0.0.1:0"}),
    );
    api.json(
        400,
        "PUT",
        "/api/v1/portals/0",
        &json!({"id": 1, "portal": "127.0.0.1:0"}),
    );
    api.json(
        422,
        "PUT",
        "/api/v1/portals/0",
        &json!({"id": 0, "portal": "no-such-host:3260"}),
    );
    api.json(
        409,
        "PUT",
        "/api/v1/portals/0",
        &json!({"id": 0, "portal": taken}),
    );
    drop(listener);

    // Targets.
    let target_path = format!("/api/v1/targets/{IQN}");
    let target = json!({"tpgts": {"1": [0]}});
    api.json(201, "PUT", &target_path, &target);
    api.json(200, "PUT", &target_path, &target);
    api.expect(
        412,
        "PUT",
        &target_path,
        &[("If-None-Match", "*")],
        Body::Json(&target.to_string()),
    );
    api.stale("PUT", &target_path, Some(&target));
    api.raw(400, "PUT", &target_path, "{\"tpgts\": 1}");
    api.json(422, "PUT", &target_path, &json!({"tpgts": {"1": [7]}}));
    api.get(200, "/api/v1/targets");
    api.get(200, &target_path);
    api.get(404, "/api/v1/targets/iqn.2026-11.org.example:none");
    // A name that is not UTF-8 once percent-decoded.
    api.get(400, "/api/v1/targets/%FF");
    api.get(400, "/api/v1/targets/%FF/luns");
    api.delete(400, "/api/v1/targets/%FF");

    // LUNs.
    let luns = format!("{target_path}/luns");
    api.json(201, "PUT", &format!("{luns}/0"), &json!({"deviceID": 42}));
    api.json(200, "PUT", &format!("{luns}/0"), &json!({"deviceID": 42}));
    api.stale("PUT", &format!("{luns}/0"), Some(&json!({"deviceID": 42})));
    api.json(422, "PUT", &format!("{luns}/2"), &json!({"deviceID": 999}));
    api.json(409, "PUT", &format!("{luns}/1"), &json!({"deviceID": 43}));
    api.raw(400, "PUT", &format!("{luns}/1"), "{\"deviceID\": \"x\"}");
    api.json(400, "PUT", &format!("{luns}/x"), &json!({"deviceID": 42}));
    api.json(
        404,
        "PUT",
        "/api/v1/targets/iqn.2026-11.org.example:none/luns/0",
        &json!({"deviceID": 42}),
    );
    api.get(200, &luns);
    api.get(404, "/api/v1/targets/iqn.2026-11.org.example:none/luns");
    api.get(200, &format!("{luns}/0"));
    api.get(404, &format!("{luns}/5"));
    api.get(400, &format!("{luns}/x"));
    // A LUN on a storage that stops being openable is refused by the data plane.
    api.json(
        409,
        "PUT",
        "/api/v1/storages/42",
        &json!({"deviceID": 42, "path": unopenable("42.img")}),
    );

    // What cannot be removed while it is used, or is not there.
    api.delete(409, "/api/v1/storages/42");
    api.delete(409, "/api/v1/portals/0");
    api.delete(404, "/api/v1/storages/999");
    api.delete(400, "/api/v1/storages/abc");
    api.delete(404, "/api/v1/portals/9");
    api.delete(400, "/api/v1/portals/x");
    api.delete(404, &format!("{luns}/5"));
    api.delete(400, &format!("{luns}/x"));
    api.delete(404, "/api/v1/targets/iqn.2026-11.org.example:none");
    api.stale("DELETE", "/api/v1/storages/43", None);
    api.stale("DELETE", "/api/v1/portals/0", None);
    api.stale("DELETE", &format!("{luns}/0"), None);
    api.stale("DELETE", &target_path, None);
    api.delete(204, "/api/v1/storages/43");

    // Performance.
    let perf = json!({"ioUringQueueDepth": 64});
    api.json(200, "PUT", "/api/v1/performance", &perf);
    api.get(200, "/api/v1/performance");
    api.stale("PUT", "/api/v1/performance", Some(&perf));
    api.json(
        422,
        "PUT",
        "/api/v1/performance",
        &json!({"workerThreads": 0}),
    );
    api.json(400, "PUT", "/api/v1/performance", &json!({"colour": 1}));
    api.stale("DELETE", "/api/v1/performance", None);
    api.delete(204, "/api/v1/performance");

    // ALUA: the gateway's groups, then one storage's states.
    api.get(404, "/api/v1/alua");
    let alua = json!({"targetPortGroup": 1, "peerGroups": [{"targetPortGroup": 2}]});
    api.json(200, "PUT", "/api/v1/alua", &alua);
    api.get(200, "/api/v1/alua");
    api.stale("PUT", "/api/v1/alua", Some(&alua));
    api.json(422, "PUT", "/api/v1/alua", &json!({"targetPortGroup": 0}));
    api.json(400, "PUT", "/api/v1/alua", &json!({"colour": 1}));
    api.get(200, "/api/v1/storages/42/alua");
    api.get(404, "/api/v1/storages/99/alua");
    let standby = json!({"state": "standby"});
    api.json(200, "PUT", "/api/v1/storages/42/alua/2", &standby);
    api.json(404, "PUT", "/api/v1/storages/42/alua/9", &standby);
    api.json(404, "PUT", "/api/v1/storages/99/alua/1", &standby);
    api.stale("PUT", "/api/v1/storages/42/alua/1", Some(&standby));
    api.json(
        400,
        "PUT",
        "/api/v1/storages/42/alua/1",
        &json!({"state": "sleepy"}),
    );
    // Storage 42 names peer group 2: the section cannot lose it.
    api.json(422, "PUT", "/api/v1/alua", &json!({"targetPortGroup": 1}));
    api.stale("DELETE", "/api/v1/alua", None);
    api.delete(422, "/api/v1/alua");

    // The whole config: dry runs, a replace, and the refusals.
    let r = api.get(200, "/api/v1/config");
    let config = r.json();
    let generation = r
        .header("etag")
        .expect("the config has an ETag")
        .to_string();
    let dry = api
        .json(200, "PUT", "/api/v1/config?dry_run=true", &config)
        .json();
    assert_eq!(dry["valid"], true, "{dry}");
    let mut invalid = config.clone();
    invalid["storages"][0]["blockSize"] = json!(1000);
    // A dry run of an invalid config fails with the very problem the real request gives.
    let dry = api.json(422, "PUT", "/api/v1/config?dry_run=true", &invalid);
    let real = api.json(422, "PUT", "/api/v1/config", &invalid);
    assert_eq!(dry.json(), real.json());
    assert_eq!(dry.media_type(), real.media_type());
    api.json(200, "PUT", "/api/v1/config?dry_run=false", &config);
    let applied = api
        .expect(
            200,
            "PUT",
            "/api/v1/config",
            &[("If-Match", &generation)],
            Body::Json(&config.to_string()),
        )
        .json();
    assert_eq!(applied, config);
    api.stale("PUT", "/api/v1/config", Some(&config));
    api.json(422, "PUT", "/api/v1/config", &invalid);
    api.raw(400, "PUT", "/api/v1/config", "{\"storages\": {}}");
    api.json(400, "PUT", "/api/v1/config?dry_run=maybe", &config);
    api.json(400, "PUT", "/api/v1/config?colour=1", &config);
    let mut refused = config.clone();
    refused["storages"][0]["path"] = json!(unopenable("42.img"));
    api.json(409, "PUT", "/api/v1/config", &refused);

    // Every body the spec declares as an object refuses an array in its place (serde's
    // derive would read it as the struct's fields in order), and so does every property
    // that is itself an object: 400 naming the JSON path.
    let mut array_cases = 0;
    for (m, template, op) in operations(&checker.spec) {
        let Some(schema) = op.pointer("/requestBody/content/application~1json/schema") else {
            continue;
        };
        let method = m.to_uppercase();
        let path = sample_path(&template);
        let before = api.get(200, "/api/v1/config").json();
        for (body, at) in array_bodies(&checker.spec, schema) {
            let r = api.expect(400, &method, &path, &[], Body::Json(&body.to_string()));
            assert_eq!(
                r.json()["errors"][0]["path"],
                at,
                "{method} {path} with {body}: {}",
                r.body
            );
            array_cases += 1;
        }
        assert_eq!(
            api.get(200, "/api/v1/config").json(),
            before,
            "a refused {method} {path} changed the config"
        );
    }
    assert!(array_cases >= 12, "only {array_cases} array cases");

    // Every operation with a body refuses one over the limit: the control plane's
    // `BODY_BYTES_MAX` (1 MiB).
    for (m, template, op) in operations(&checker.spec) {
        if op.get("requestBody").is_some() {
            api.expect(
                413,
                &m.to_uppercase(),
                &sample_path(&template),
                &[],
                Body::Filler((1 << 20) + 1),
            );
        }
    }

    // Sessions, and the target a session holds.
    let status = wait_in_sync(&api, &mut dp);
    let portal: SocketAddr = status["dataplane"]["portals"][0]["bound"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("portal 0 is bound once in sync: {status}"));
    api.get(200, "/readyz");
    api.get(200, "/api/v1/status");
    api.get(200, "/metrics");
    let session = tgt_system_tests::initiator::Session::login(
        portal,
        &tgt_system_tests::initiator::SessionOptions {
            target_name: Some(IQN.to_string()),
            ..Default::default()
        },
    )
    .expect("login");
    let sessions = api.get(200, "/api/v1/sessions").json();
    let tsih = sessions[0]["tsih"]
        .as_u64()
        .unwrap_or_else(|| panic!("one session: {sessions}"));
    // What login agreed is visible: the session's keys and the connection's framing.
    let neg = &sessions[0]["negotiated"];
    assert_eq!(neg["sessionType"], "Normal", "{sessions}");
    assert_eq!(neg["errorRecoveryLevel"], 0, "{sessions}");
    assert!(neg["maxBurstLength"].as_u64() > Some(0), "{sessions}");
    let conn = &sessions[0]["connections"][0];
    assert_eq!(conn["headerDigest"], "None", "{sessions}");
    assert!(
        conn["maxRecvDataSegmentLength"].as_u64() > Some(0),
        "{sessions}"
    );
    api.delete(409, &target_path);
    api.delete(400, "/api/v1/sessions/x");
    api.delete(404, "/api/v1/sessions/65000");
    api.delete(204, &format!("/api/v1/sessions/{tsih}"));
    drop(session);
    // The data plane ends the session once its connection task has stopped; poll for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.get(200, "/api/v1/sessions").json() != json!([]) {
        assert!(Instant::now() < deadline, "the closed session stays listed");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Removing what is no longer used.
    api.delete(204, &format!("{luns}/0"));
    api.delete(204, &target_path);
    api.delete(204, "/api/v1/portals/0");
    api.delete(204, "/api/v1/storages/42");
    wait_in_sync(&api, &mut dp);

    // Without a data plane: live views are 503, changes are stored.
    drop(dp);
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.send("GET", "/readyz", &[], Body::None).status != 503 {
        assert!(
            Instant::now() < deadline,
            "/readyz stays 200 without a data plane"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    api.get(503, "/api/v1/sessions");
    api.delete(503, "/api/v1/sessions/1");
    let s = api.get(200, "/api/v1/status").json();
    assert_eq!(s["dataplaneConnected"], false, "{s}");
    api.get(200, "/metrics");
    api.json(201, "POST", "/api/v1/storages", &disk);

    // With a token, every operation but the health probes refuses a call without it,
    // reads included.
    let token_dir = TempDir::new("openapi-token");
    let (_cp_token, token_addr) = start_controlplane_with_token(token_dir.path(), Some("s3cret"));
    let guarded = Api {
        addr: token_addr,
        checker: &checker,
    };
    for (m, template, op) in operations(&checker.spec) {
        let method = m.to_uppercase();
        let path = sample_path(&template);
        if ["/healthz", "/readyz"].contains(&template.as_str()) {
            continue;
        }
        let body = op.get("requestBody").map(|_| Body::Json("{}"));
        let r = guarded.expect(401, &method, &path, &[], body.unwrap_or(Body::None));
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer"),
            "{method} {path}"
        );
    }
    guarded.get(200, "/healthz");
    guarded.expect(
        200,
        "GET",
        "/api/v1/config",
        &[("Authorization", "Bearer s3cret")],
        Body::None,
    );

    let (covered, total) = checker.assert_covered(NOT_CALLED);
    eprintln!(
        "covered {covered} of {total} operations; statuses seen per operation:\n{}",
        checker.report()
    );
}

/// The checker itself: an undeclared status, a wrong content type and a body that breaks
/// the schema each fail with the operation, the status and the path of the error.
#[test]
fn response_check_names_the_operation_status_and_error_path() {
    let checker = Checker::new();
    let reply = |status: u16, ct: &str, body: &str| Reply {
        status,
        headers: vec![("Content-Type".to_string(), ct.to_string())],
        body: body.to_string(),
    };
    let ok = reply(200, "application/json", r#"{"deviceID": 1, "path": "/x"}"#);
    assert_eq!(checker.check("GET", "/api/v1/storages/1", &ok), Ok(()));

    let e = checker
        .check(
            "GET",
            "/api/v1/storages/1",
            &reply(418, "application/json", "{}"),
        )
        .expect_err("418 is not declared");
    assert!(
        e.contains("storages_get (GET /api/v1/storages/{device_id})"),
        "{e}"
    );
    assert!(e.contains("status 418"), "{e}");

    let e = checker
        .check(
            "GET",
            "/api/v1/storages/1",
            &reply(200, "application/json", r#"{"deviceID": -1, "path": "/x"}"#),
        )
        .expect_err("a negative deviceID breaks the schema");
    assert!(e.contains("storages_get"), "{e}");
    assert!(e.contains("status 200"), "{e}");
    assert!(e.contains("at \"/deviceID\""), "{e}");

    let e = checker
        .check(
            "GET",
            "/api/v1/storages",
            &reply(
                200,
                "application/json",
                r#"[{"deviceID": 1, "path": "/x", "colour": 1}]"#,
            ),
        )
        .expect_err("an unknown field breaks the schema");
    assert!(e.contains("at \"/0\""), "{e}");

    let e = checker
        .check(
            "GET",
            "/api/v1/storages/1",
            &reply(404, "application/json", r#"{"type": "x"}"#),
        )
        .expect_err("a 404 must be a problem document");
    assert!(
        e.contains("Content-Type application/json is not among"),
        "{e}"
    );

    let e = checker
        .check(
            "DELETE",
            "/api/v1/storages/1",
            &reply(204, "application/json", "{}"),
        )
        .expect_err("a 204 has no body");
    assert!(e.contains("declares no body"), "{e}");

    let e = checker
        .check("GET", "/api/v1/nothing", &ok)
        .expect_err("not an operation");
    assert!(e.contains("not an operation"), "{e}");
}
