//! Org-unit storage, the one reader and writer of the `org_units` table: insert (one by one or
//! from a CSV of code,name,parent), look-ups, children, subtrees, names.

use std::collections::{BTreeMap, BTreeSet};

use diesel::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::schema::org_units;
use crate::db::{now_micros, DbConn};
use crate::error::{AppError, AppResult};
use crate::orgunit::{check_parent, subtree_range, Level};

#[derive(Clone, Debug, Serialize, Queryable, Selectable, ToSchema)]
#[diesel(table_name = org_units)]
pub struct OrgUnit {
    pub code: String,
    pub name: String,
    pub level: String,
    pub parent_code: Option<String>,
    #[serde(skip)]
    pub created_at: i64,
}

#[derive(Clone, Debug)]
pub struct NewOrgUnit {
    pub code: String,
    pub name: String,
    pub parent: Option<String>,
}

/// Inserts or renames units, parents first. Each unit's code must extend its parent's code by
/// one level, and the parent must exist (in the database or earlier in `units`).
pub fn upsert(conn: &mut DbConn, units: &[NewOrgUnit]) -> AppResult<usize> {
    upsert_reporting(conn, units, &mut |_| {})
}

/// [`upsert`], calling `done(1)` after each unit (for the import's progress bar).
pub fn upsert_reporting(
    conn: &mut DbConn,
    units: &[NewOrgUnit],
    done: &mut dyn FnMut(u64),
) -> AppResult<usize> {
    let mut sorted: Vec<&NewOrgUnit> = units.iter().collect();
    sorted.sort_by_key(|u| u.code.len());
    let now = now_micros();
    for u in &sorted {
        let (level, name) = check_unit(u)
            .map_err(|e| AppError::validation("bad_org_unit", format!("org unit {e}")))?;
        if let Some(p) = &u.parent {
            let exists: i64 = org_units::table
                .filter(org_units::code.eq(p))
                .count()
                .get_result(conn)?;
            if exists == 0 {
                return Err(AppError::validation(
                    "bad_org_unit",
                    format!("org unit {}: parent {p} does not exist", u.code),
                ));
            }
        }
        let updated = diesel::update(org_units::table.filter(org_units::code.eq(&u.code)))
            .set(org_units::name.eq(name))
            .execute(conn)?;
        if updated == 0 {
            diesel::insert_into(org_units::table)
                .values((
                    org_units::code.eq(&u.code),
                    org_units::name.eq(name),
                    org_units::level.eq(level.as_str()),
                    org_units::parent_code.eq(&u.parent),
                    org_units::created_at.eq(now),
                ))
                .execute(conn)?;
        }
        done(1);
    }
    Ok(sorted.len())
}

/// The unit's level and trimmed name, or why it cannot be stored (its code first).
fn check_unit(u: &NewOrgUnit) -> Result<(Level, &str), String> {
    let level = check_parent(&u.code, u.parent.as_deref()).map_err(|e| {
        format!(
            "{} (parent {}): {e}",
            u.code,
            u.parent.as_deref().unwrap_or("none")
        )
    })?;
    let name = u.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(format!("{}: name must have 1 to 100 characters", u.code));
    }
    Ok((level, name))
}

/// Reads `code,name,parent` rows (a header line is optional; parent empty for a county). Each
/// row's code, parent and name are checked here, so a bad row is reported by its line number
/// before anything is stored.
pub fn parse_csv(reader: impl std::io::Read) -> Result<Vec<NewOrgUnit>, String> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| format!("line {}: {e}", i + 1))?;
        let line = rec.position().map_or(i as u64 + 1, |p| p.line());
        let code = rec.get(0).unwrap_or("").trim_start_matches('\u{feff}');
        if i == 0 && code.eq_ignore_ascii_case("code") {
            continue;
        }
        if code.is_empty() {
            continue;
        }
        let name = rec.get(1).unwrap_or("").to_string();
        let parent = rec.get(2).filter(|p| !p.is_empty()).map(str::to_string);
        let unit = NewOrgUnit {
            code: code.to_string(),
            name,
            parent,
        };
        check_unit(&unit).map_err(|e| format!("line {line}: org unit {e}"))?;
        out.push(unit);
    }
    Ok(out)
}

pub fn get(conn: &mut DbConn, code: &str) -> AppResult<Option<OrgUnit>> {
    Ok(org_units::table
        .filter(org_units::code.eq(code))
        .select(OrgUnit::as_select())
        .first(conn)
        .optional()?)
}

/// All units in the subtree under `code` (itself included), by a range scan on the code.
pub fn subtree(conn: &mut DbConn, code: &str) -> AppResult<Vec<OrgUnit>> {
    let (lo, hi) = subtree_range(code);
    Ok(org_units::table
        .filter(org_units::code.ge(lo))
        .filter(org_units::code.lt(hi))
        .order(org_units::code)
        .select(OrgUnit::as_select())
        .load(conn)?)
}

pub fn children(conn: &mut DbConn, code: &str) -> AppResult<Vec<OrgUnit>> {
    Ok(org_units::table
        .filter(org_units::parent_code.eq(code))
        .order(org_units::code)
        .select(OrgUnit::as_select())
        .load(conn)?)
}

pub fn level(unit: &OrgUnit) -> Level {
    Level::parse(&unit.level).expect("the database checks levels")
}

/// The codes of the units at `level` directly under `parent`, in code order.
pub fn children_at(conn: &mut DbConn, parent: &str, level: Level) -> AppResult<Vec<String>> {
    Ok(org_units::table
        .filter(org_units::parent_code.eq(parent))
        .filter(org_units::level.eq(level.as_str()))
        .order(org_units::code)
        .select(org_units::code)
        .load(conn)?)
}

/// The codes of the units at `level` in the subtree under `code`, in code order.
pub fn subtree_at(conn: &mut DbConn, code: &str, level: Level) -> AppResult<Vec<String>> {
    let (lo, hi) = subtree_range(code);
    Ok(org_units::table
        .filter(org_units::code.ge(lo))
        .filter(org_units::code.lt(hi))
        .filter(org_units::level.eq(level.as_str()))
        .order(org_units::code)
        .select(org_units::code)
        .load(conn)?)
}

/// The names of the units among `codes` that exist, by code.
pub fn names(conn: &mut DbConn, codes: &[String]) -> AppResult<BTreeMap<String, String>> {
    Ok(org_units::table
        .filter(org_units::code.eq_any(codes))
        .select((org_units::code, org_units::name))
        .load::<(String, String)>(conn)?
        .into_iter()
        .collect())
}

/// The units among `codes` that exist and may hold records (villages and groups): what a
/// record's `org_unit` must name.
pub fn record_holders(conn: &mut DbConn, codes: &BTreeSet<String>) -> AppResult<BTreeSet<String>> {
    if codes.is_empty() {
        return Ok(BTreeSet::new());
    }
    let found: Vec<String> = org_units::table
        .filter(org_units::code.eq_any(codes))
        .filter(org_units::level.eq_any([Level::Village.as_str(), Level::Group.as_str()]))
        .select(org_units::code)
        .load(conn)?;
    Ok(found.into_iter().collect())
}

/// How many units are stored.
pub fn count(conn: &mut DbConn) -> AppResult<i64> {
    Ok(org_units::table.count().get_result(conn)?)
}
