//! Data quality: active logic-check flags by village and check, and counts for the township view.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::db::Db;
use crate::domain::checks;
use crate::domain::entities::Entity;
use crate::error::{AppError, AppResult};
use crate::orgunit;
use crate::supervise::ledgers::{flag_view, FlagView};
use crate::supervise::paging::{next_after, page_limit};
use crate::supervise::sql::{count, plain, prefix_cond, scope_cond, Query};

#[derive(Deserialize, IntoParams, Debug, Default)]
#[into_params(parameter_in = Query)]
pub struct FlagFilter {
    /// Only this org unit's subtree.
    pub village: Option<String>,
    /// Only this check code, e.g. `id_check_digit`.
    pub check: Option<String>,
    /// Only this record type.
    pub entity: Option<String>,
    /// The `next_after` of the previous page.
    pub after: Option<String>,
    /// Page size (default 50, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct FlagPage {
    pub total: i64,
    pub items: Vec<FlagView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

#[derive(diesel::QueryableByName)]
struct FlagRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    entity: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    record_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    check_code: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    org_unit: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    version: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    raised_at: i64,
}

pub fn list(db: &Db, principal: &Principal, f: &FlagFilter) -> AppResult<FlagPage> {
    let limit = page_limit(f.limit)?;
    if let Some(c) = &f.check {
        if checks::find(c).is_none() {
            return Err(AppError::BadRequest("unknown check".into()));
        }
    }
    if let Some(e) = &f.entity {
        if Entity::parse(e).is_none() {
            return Err(AppError::BadRequest("unknown entity".into()));
        }
    }
    let after: Option<(String, String, String)> = match &f.after {
        None => None,
        Some(a) => {
            let parts: Vec<&str> = a.split('|').collect();
            match parts.as_slice() {
                [e, r, c] if plain(a) => Some((e.to_string(), r.to_string(), c.to_string())),
                _ => return Err(AppError::BadRequest("bad cursor".into())),
            }
        }
    };
    db.read(|conn| {
        let scope = principal.scope(conn)?;
        let mut q = Query::new(conn);
        q.cond(scope_cond(&scope, "org_unit")).cond("active");
        if let Some(v) = &f.village {
            q.cond(prefix_cond(v, "org_unit")?);
        }
        if let Some(c) = &f.check {
            let p = q.text(c);
            q.cond(format!("check_code = {p}"));
        }
        if let Some(e) = &f.entity {
            let p = q.text(e);
            q.cond(format!("entity = {p}"));
        }
        let total = count(&q, conn, "flags")?;
        if let Some((e, r, c)) = &after {
            let (pe, pr, pc) = (q.text(e), q.text(r), q.text(c));
            q.cond(format!(
                "(entity > {pe} OR (entity = {pe} AND (record_id > {pr} OR (record_id = {pr} AND check_code > {pc}))))"
            ));
        }
        let rows: Vec<FlagRow> = q.load(
            conn,
            &format!(
                "SELECT entity, record_id, check_code, org_unit, version, raised_at FROM flags{} \
                 ORDER BY entity, record_id, check_code LIMIT {}",
                q.where_sql(),
                limit + 1
            ),
        )?;
        let more = rows.len() as i64 > limit;
        let items: Vec<FlagView> = rows
            .iter()
            .take(limit as usize)
            .map(|r| flag_view(&r.entity, &r.record_id, &r.org_unit, &r.check_code, r.version, r.raised_at))
            .collect();
        Ok(FlagPage {
            total,
            next_after: next_after(more, &items, |i| {
                format!("{}|{}|{}", i.entity, i.record_id, i.check)
            }),
            items,
        })
    })
}

#[derive(Serialize, ToSchema, Debug)]
pub struct CheckCount {
    pub check: String,
    pub zh: String,
    pub en: String,
    pub count: i64,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct VillageFlags {
    pub village: String,
    pub name: Option<String>,
    pub total: i64,
    pub checks: Vec<CheckCount>,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct FlagSummary {
    pub total: i64,
    /// Per village (villager groups counted in their village), with counts per check.
    pub villages: Vec<VillageFlags>,
    /// Per check over the whole subtree.
    pub checks: Vec<CheckCount>,
}

#[derive(diesel::QueryableByName)]
struct SumRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    org_unit: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    check_code: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn check_count(code: &str, n: i64) -> CheckCount {
    let d = checks::find(code);
    CheckCount {
        check: code.to_string(),
        zh: d.map_or("", |d| d.zh).to_string(),
        en: d.map_or("", |d| d.en).to_string(),
        count: n,
    }
}

pub fn summary(db: &Db, principal: &Principal, village: Option<&str>) -> AppResult<FlagSummary> {
    db.read(|conn| {
        let scope = principal.scope(conn)?;
        let mut q = Query::new(conn);
        q.cond(scope_cond(&scope, "org_unit")).cond("active");
        if let Some(v) = village {
            q.cond(prefix_cond(v, "org_unit")?);
        }
        let rows: Vec<SumRow> = q.load(
            conn,
            &format!(
                "SELECT org_unit, check_code, COUNT(*) AS n FROM flags{} GROUP BY org_unit, check_code",
                q.where_sql()
            ),
        )?;
        let mut by_village: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        let mut by_check: BTreeMap<String, i64> = BTreeMap::new();
        for r in rows {
            let v: String = r.org_unit.chars().take(12).collect();
            *by_village.entry(v).or_default().entry(r.check_code.clone()).or_default() += r.n;
            *by_check.entry(r.check_code).or_default() += r.n;
        }
        let codes: Vec<String> = by_village.keys().cloned().collect();
        let names: BTreeMap<String, String> = orgunit::names(conn, &codes)?;
        Ok(FlagSummary {
            total: by_check.values().sum(),
            villages: by_village
                .into_iter()
                .map(|(v, cs)| VillageFlags {
                    name: names.get(&v).cloned(),
                    total: cs.values().sum(),
                    checks: cs.iter().map(|(c, n)| check_count(c, *n)).collect(),
                    village: v,
                })
                .collect(),
            checks: by_check.iter().map(|(c, n)| check_count(c, *n)).collect(),
        })
    })
}
