//! Checks one pushed op against the record types of `domain::entities` before anything touches
//! the database: a malformed op is rejected alone with a stable code, and its payload kept.

use chrono::{DateTime, NaiveDate};
use serde_json::{Map, Value};

use crate::domain::entities::{Entity, FieldType, SERVER_OWNED};
use crate::domain::resident_id::MAX_TYPED_LEN;
use crate::error::AppError;
use crate::orgunit::level_of;
use crate::sync::merge::{Fields, OpKind};

/// A well-formed op, ready to merge.
#[derive(Clone, Debug)]
pub struct ParsedOp {
    pub seq: i64,
    pub op_id: String,
    pub entity: Entity,
    pub id: String,
    pub kind: OpKind,
    pub base_version: Option<i64>,
    /// Domain fields only; `org_unit` is taken out into its own field.
    pub set: Fields,
    pub org_unit: Option<String>,
    /// Unix microseconds, clamped to the server's clock.
    pub recorded_at: i64,
}

/// Why an op was refused, with the payload to keep.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// The parts of an op every result needs, even a rejected one.
#[derive(Clone, Debug)]
pub struct OpHeader {
    pub seq: i64,
    pub op_id: String,
    pub entity: String,
    pub id: String,
    pub kind: String,
}

/// Reads the fields that place an op in the device's sequence. Without a usable `seq` the op
/// cannot even be recorded, so the whole request is malformed (400).
pub fn header(op: &Value, index: usize) -> Result<OpHeader, AppError> {
    let obj = op
        .as_object()
        .ok_or_else(|| AppError::BadRequest(format!("ops[{index}] is not an object")))?;
    let seq = obj
        .get("seq")
        .and_then(Value::as_i64)
        .filter(|s| *s >= 1)
        .ok_or_else(|| AppError::BadRequest(format!("ops[{index}].seq must be an integer >= 1")))?;
    let text = |k: &str| -> String {
        obj.get(k)
            .and_then(Value::as_str)
            .map(|s| s.chars().take(64).collect())
            .unwrap_or_default()
    };
    Ok(OpHeader {
        seq,
        op_id: text("op_id"),
        entity: text("entity"),
        id: text("id"),
        kind: text("kind"),
    })
}

fn parse_uuid(s: &str) -> Option<String> {
    uuid::Uuid::parse_str(s)
        .ok()
        .map(|u| u.hyphenated().to_string())
}

/// Parses an op. `now` is the server's clock in unix microseconds.
pub fn parse(op: &Value, h: &OpHeader, now: i64) -> Result<ParsedOp, Refusal> {
    let obj = op.as_object().expect("header checked the op is an object");
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "seq" | "op_id" | "entity" | "id" | "kind" | "base_version" | "set" | "recorded_at"
        ) {
            return Err(Refusal::new(
                "unknown_op_field",
                format!("unknown op field `{key}`"),
            ));
        }
    }
    let op_id = obj
        .get("op_id")
        .and_then(Value::as_str)
        .and_then(parse_uuid)
        .ok_or_else(|| Refusal::new("bad_op_id", "op_id must be a UUID"))?;
    let entity = Entity::parse(&h.entity)
        .ok_or_else(|| Refusal::new("unknown_entity", "unknown record type"))?;
    let id = obj
        .get("id")
        .and_then(Value::as_str)
        .and_then(parse_uuid)
        .ok_or_else(|| Refusal::new("bad_id", "id must be a UUID"))?;
    let kind = match h.kind.as_str() {
        "create" => OpKind::Create,
        "update" => OpKind::Update,
        "delete" => OpKind::Delete,
        _ => {
            return Err(Refusal::new(
                "unknown_kind",
                "kind must be create, update or delete",
            ))
        }
    };
    let base_version = match obj.get("base_version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
            Refusal::new("bad_base_version", "base_version must be an integer >= 0")
        })?),
    };
    let recorded_at = match obj.get("recorded_at") {
        None | Some(Value::Null) => now,
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map_err(|_| Refusal::new("bad_recorded_at", "recorded_at must be RFC 3339"))?
            .timestamp_micros()
            // The device's clock may be wrong; a future stamp must not win every `latest` conflict.
            .min(now),
        Some(_) => {
            return Err(Refusal::new(
                "bad_recorded_at",
                "recorded_at must be RFC 3339",
            ))
        }
    };
    let empty = Map::new();
    let set_obj = match obj.get("set") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(Refusal::new("bad_set", "set must be an object")),
    };
    let def = entity.def();
    let mut set = Fields::new();
    let mut org_unit = None;
    for (name, value) in set_obj {
        if name == "org_unit" {
            let code = value.as_str().ok_or_else(|| {
                Refusal::new("bad_org_unit", "org_unit must be a village or group code")
            })?;
            match level_of(code) {
                Ok(l) if l.holds_records() => org_unit = Some(code.to_string()),
                _ => {
                    return Err(Refusal::new(
                        "bad_org_unit",
                        "org_unit must be a village or group code",
                    ))
                }
            }
            continue;
        }
        if SERVER_OWNED.contains(&name.as_str()) {
            return Err(Refusal::new(
                "server_owned_field",
                format!("`{name}` is set by the server only"),
            ));
        }
        let field = def.field(name).ok_or_else(|| {
            Refusal::new(
                "unknown_field",
                format!("{} has no field `{name}`", def.name),
            )
        })?;
        if value.is_null() {
            if field.required && kind != OpKind::Delete {
                return Err(Refusal::new(
                    "required_field",
                    format!("`{name}` cannot be cleared"),
                ));
            }
            set.insert(name.clone(), Value::Null);
            continue;
        }
        let normalised = check_value(field.ty, value).ok_or_else(|| {
            Refusal::new(
                "bad_field_value",
                format!("`{name}` has a value of the wrong type or out of range"),
            )
        })?;
        set.insert(name.clone(), normalised);
    }
    match kind {
        OpKind::Create => {
            if org_unit.is_none() {
                return Err(Refusal::new("required_field", "a create needs `org_unit`"));
            }
            if let Some(missing) = def
                .fields
                .iter()
                .find(|f| f.required && set.get(f.name).is_none_or(Value::is_null))
            {
                return Err(Refusal::new(
                    "required_field",
                    format!("a create needs `{}`", missing.name),
                ));
            }
        }
        OpKind::Update if set.is_empty() && org_unit.is_none() => {
            return Err(Refusal::new(
                "empty_update",
                "an update needs at least one field",
            ));
        }
        _ => {}
    }
    Ok(ParsedOp {
        seq: h.seq,
        op_id,
        entity,
        id,
        kind,
        base_version,
        set,
        org_unit,
        recorded_at,
    })
}

/// The value in its stored form, or None when it does not fit the field.
fn check_value(ty: FieldType, v: &Value) -> Option<Value> {
    match ty {
        FieldType::Text { max_len } => {
            let s = v.as_str()?;
            (s.chars().count() <= max_len && !s.contains('\0')).then(|| v.clone())
        }
        FieldType::Int { min, max } => {
            let n = v.as_i64()?;
            (min..=max).contains(&n).then(|| v.clone())
        }
        FieldType::Bool => v.is_boolean().then(|| v.clone()),
        FieldType::Date => {
            let s = v.as_str()?;
            let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
            let year = chrono::Datelike::year(&d);
            ((1900..=2100).contains(&year) && s.len() == 10).then(|| v.clone())
        }
        FieldType::Enum(choices) => {
            let s = v.as_str()?;
            choices.iter().any(|c| c.value == s).then(|| v.clone())
        }
        FieldType::Ref(_) => v.as_str().and_then(parse_uuid).map(Value::String),
        FieldType::ResidentId => {
            // Shape and check digit are logic checks (flagged, not refused): offline work is
            // never rejected for a typo. Only the length bounds what is stored.
            let s = v.as_str()?.to_ascii_uppercase();
            (s.chars().count() <= MAX_TYPED_LEN && !s.contains('\0')).then_some(Value::String(s))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000_000_000;

    fn run(op: Value) -> Result<ParsedOp, Refusal> {
        let h = header(&op, 0).unwrap();
        parse(&op, &h, NOW)
    }

    fn person_create(set: Value) -> Value {
        json!({"seq": 1, "op_id": uuid::Uuid::now_v7().to_string(), "entity": "person",
               "id": uuid::Uuid::now_v7().to_string(), "kind": "create", "set": set})
    }

    #[test]
    fn a_good_create_parses() {
        let op = person_create(
            json!({"org_unit": "130131102201", "name": "王芳", "sex": "female", "birth_date": "1990-02-03"}),
        );
        let p = run(op).unwrap();
        assert_eq!(p.org_unit.as_deref(), Some("130131102201"));
        assert_eq!(p.set.len(), 3);
        assert_eq!(p.recorded_at, NOW);
    }

    #[test]
    fn refusals_have_stable_codes() {
        let base = json!({"org_unit": "130131102201", "name": "王芳", "sex": "female", "birth_date": "1990-02-03"});
        let with = |k: &str, v: Value| {
            let mut s = base.clone();
            s[k] = v;
            run(person_create(s)).unwrap_err().code
        };
        assert_eq!(with("sex", json!("x")), "bad_field_value");
        assert_eq!(with("birth_date", json!("1990-02-30")), "bad_field_value");
        assert_eq!(with("version", json!(9)), "server_owned_field");
        assert_eq!(with("created_by", json!("me")), "server_owned_field");
        assert_eq!(with("nickname", json!("x")), "unknown_field");
        assert_eq!(with("org_unit", json!("130131102")), "bad_org_unit");
        assert_eq!(with("name", json!("长".repeat(51))), "bad_field_value");
        assert_eq!(with("name", Value::Null), "required_field");
        assert_eq!(
            with("id_number", json!("1".repeat(MAX_TYPED_LEN + 1))),
            "bad_field_value"
        );
        assert_eq!(with("id_number", json!(11010519)), "bad_field_value");
        let mut op =
            person_create(json!({"org_unit": "130131102201", "name": "王芳", "sex": "female"}));
        assert_eq!(run(op.clone()).unwrap_err().code, "required_field");
        op["entity"] = json!("spaceship");
        assert_eq!(run(op).unwrap_err().code, "unknown_entity");
    }

    #[test]
    fn malformed_id_numbers_are_kept_for_the_checks() {
        for typed in [
            "13013119900203002",
            "13013119900203002x",
            "1301311990020300251",
        ] {
            let op = person_create(json!({"org_unit": "130131102201", "name": "王芳",
                "sex": "female", "birth_date": "1990-02-03", "id_number": typed}));
            let p = run(op).unwrap();
            assert_eq!(p.set["id_number"], json!(typed.to_ascii_uppercase()));
        }
    }

    #[test]
    fn future_recorded_at_is_clamped() {
        let mut op = person_create(
            json!({"org_unit": "130131102201", "name": "王芳", "sex": "female", "birth_date": "1990-02-03"}),
        );
        op["recorded_at"] = json!("2099-01-01T00:00:00Z");
        assert_eq!(run(op).unwrap().recorded_at, NOW);
    }

    #[test]
    fn envelope_needs_a_seq() {
        assert!(header(&json!({"op_id": "x"}), 0).is_err());
        assert!(header(&json!({"seq": "1"}), 0).is_err());
        assert!(header(&json!({"seq": 0}), 0).is_err());
        assert!(header(&json!([1]), 0).is_err());
    }
}
