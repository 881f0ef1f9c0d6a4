//! Checks real answers against api-spec/openapi.json (issue 13 item 7): every answer the test
//! client records (method, path, status, body) is matched to the spec's operation by its path
//! template, and its body is validated with a JSON-schema validator against that operation's
//! response schema for the status, `$ref`s resolved to the document's components. A status the
//! operation does not declare is a violation too. `TestApp` runs this on the answers it
//! recorded when it is dropped, so every API test checks the spec against what it saw.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Value};

/// One answer the test client got.
#[derive(Clone, Debug)]
pub struct Answer {
    pub method: String,
    /// The path without its query.
    pub path: String,
    pub status: u16,
    pub content_type: Option<String>,
    /// The body when it was JSON.
    pub body: Option<Value>,
}

/// The committed spec.
pub fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("api-spec/openapi.json");
        serde_json::from_str(&std::fs::read_to_string(path).expect("api-spec/openapi.json"))
            .expect("the spec is JSON")
    })
}

/// Matches one segment of a path against one segment of a template (`report.{format}`).
fn segment_matches(template: &str, seg: &str) -> bool {
    let Some(open) = template.find('{') else {
        return template == seg;
    };
    let (lit, rest) = template.split_at(open);
    let Some(seg) = seg.strip_prefix(lit) else {
        return false;
    };
    let close = rest.find('}').expect("a closed parameter");
    let after = &rest[close + 1..];
    // The parameter takes at least one character; try every split.
    (1..=seg.len()).any(|n| seg.is_char_boundary(n) && segment_matches(after, &seg[n..]))
        && !seg.is_empty()
}

/// The spec's path template for `path`: the matching one with the most literal segments
/// (as the router tries literal routes first).
pub fn template_of(path: &str) -> Option<&'static str> {
    let segs: Vec<&str> = path.split('/').collect();
    spec()["paths"]
        .as_object()?
        .keys()
        .filter(|t| {
            let ts: Vec<&str> = t.split('/').collect();
            ts.len() == segs.len() && ts.iter().zip(&segs).all(|(t, s)| segment_matches(t, s))
        })
        .max_by_key(|t| t.split('/').filter(|s| !s.contains('{')).count())
        .map(String::as_str)
}

type Compiled = Option<Arc<jsonschema::Validator>>;

/// The validator of an operation's answer for a status and content type: `Err` when the
/// operation does not declare the status, `Ok(None)` when the answer has no schema.
fn validator(template: &str, method: &str, status: u16, ct: &str) -> Result<Compiled, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Compiled>>> = OnceLock::new();
    let key = format!("{method} {template} {status} {ct}");
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap().get(&key) {
        return Ok(v.clone());
    }
    let doc = spec();
    let op = &doc["paths"][template][method];
    let mut response = op["responses"]
        .get(status.to_string())
        .or_else(|| op["responses"].get("default"))
        .ok_or_else(|| format!("status {status} is not declared"))?;
    if let Some(r) = response["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        response = &doc["components"]["responses"][name];
    }
    let content = response["content"].as_object();
    let schema = content.and_then(|c| {
        c.get(ct)
            .or_else(|| (c.len() == 1).then(|| c.values().next().unwrap()))
            .and_then(|m| m.get("schema"))
    });
    let compiled = match schema {
        None => None,
        Some(schema) => {
            let root = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "components": doc["components"],
                "allOf": [schema],
            });
            let v = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .build(&root)
                .map_err(|e| format!("the spec's schema does not compile: {e}"))?;
            Some(Arc::new(v))
        }
    };
    cache.lock().unwrap().insert(key, compiled.clone());
    Ok(compiled)
}

/// What is wrong with `answer` by the spec, if anything. Answers to paths or methods the spec
/// does not have (unknown routes, 405s) are not checked here (other tests pin those).
pub fn violations(answer: &Answer) -> Vec<String> {
    let Some(template) = template_of(&answer.path) else {
        return vec![];
    };
    let method = answer.method.to_ascii_lowercase();
    if spec()["paths"][template].get(&method).is_none() {
        return vec![];
    }
    let ct = answer
        .content_type
        .as_deref()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let what = format!(
        "{} {} ({template}) -> {}",
        answer.method, answer.path, answer.status
    );
    let compiled = match validator(template, &method, answer.status, &ct) {
        Ok(c) => c,
        Err(e) => return vec![format!("{what}: {e}")],
    };
    let (Some(v), Some(body)) = (compiled, &answer.body) else {
        return vec![];
    };
    v.iter_errors(body)
        .map(|e| format!("{what}: at {}: {e}", e.instance_path()))
        .collect()
}
