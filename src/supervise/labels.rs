//! Record types' and fields' labels (zh-CN and English) as supervisors see them.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::entities::Entity;
use crate::error::{AppError, AppResult};

/// A record type's labels.
#[derive(Serialize, ToSchema, Clone, Debug)]
pub struct Label {
    pub zh: &'static str,
    pub en: &'static str,
}

pub fn entity_label(e: Entity) -> Label {
    let d = e.def();
    Label { zh: d.zh, en: d.en }
}

pub fn field_label(e: Entity, field: &str) -> Option<Label> {
    e.def().field(field).map(|f| Label { zh: f.zh, en: f.en })
}

pub fn parse_entity(name: &str) -> AppResult<Entity> {
    Entity::parse(name).ok_or(AppError::NotFound)
}
