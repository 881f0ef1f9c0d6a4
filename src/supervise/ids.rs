//! How supervisors see resident ID numbers: in full or masked, by role and context
//! (`roles::id_number_view`), in records, field values, op payloads and op results.

use serde_json::{Map, Value};

pub use crate::auth::roles::{IdContext, IdNumberView};
use crate::auth::Principal;
use crate::domain::entities::Entity;
use crate::domain::resident_id::ResidentId;

/// How `principal` sees ID numbers in `ctx`: the one rule, `roles::id_number_view`.
pub fn ids_for(principal: &Principal, ctx: IdContext) -> IdNumberView {
    crate::auth::roles::id_number_view(principal.role, ctx)
}

/// A value held in an ID-number field, masked by the one rule, [`ResidentId::mask`]: text as
/// it is; anything else a device may have sent in its place (a number, an array) as its JSON
/// text.
fn mask_any(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::String(s) => Value::String(ResidentId::mask(s)),
        other => Value::String(ResidentId::mask(&other.to_string())),
    }
}

/// Masks the ID number in a person's fields.
pub fn mask_fields(entity: Entity, fields: &mut Map<String, Value>) {
    if entity == Entity::Person {
        if let Some(v) = fields.get_mut("id_number") {
            *v = mask_any(v);
        }
    }
}

/// A record's fields (or, with `field`, one field's value) as `ids` shows them.
pub fn id_value(entity: Entity, field: Option<&str>, v: Value, ids: IdNumberView) -> Value {
    if !ids.masked() || entity != Entity::Person {
        return v;
    }
    match (field, v) {
        (Some("id_number"), v) => mask_any(&v),
        (None, Value::Object(mut m)) => {
            mask_fields(entity, &mut m);
            Value::Object(m)
        }
        (_, v) => v,
    }
}

/// An op as a device sent it (a stored payload), as `ids` shows it: an `id_number` in its
/// `set` masked, whatever the op's record type (only persons have one; an op of another or an
/// unknown type that carries one was refused, and its payload is masked all the same).
pub fn id_payload(mut payload: Value, ids: IdNumberView) -> Value {
    if let Some(set) = payload.get_mut("set") {
        *set = id_value(Entity::Person, None, set.take(), ids);
    }
    payload
}

/// An op's stored result, as `ids` shows it: the values of its conflicts masked.
pub fn id_result(entity: &str, mut result: Value, ids: IdNumberView) -> Value {
    let Some(e) = Entity::parse(entity) else {
        return result;
    };
    if let Some(cs) = result.get_mut("conflicts").and_then(Value::as_array_mut) {
        for c in cs {
            let field = c.get("field").and_then(Value::as_str).map(str::to_string);
            for k in ["base_value", "server_value", "device_value"] {
                if let Some(v) = c.get_mut(k) {
                    *v = id_value(e, field.as_deref(), v.take(), ids);
                }
            }
        }
    }
    result
}
