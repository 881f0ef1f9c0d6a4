//! Yearly targets (目标管理责任书) per org unit and indicator, set by the level above: a county
//! supervisor sets the targets of the county's townships, a township supervisor those of its
//! villages.

use std::collections::BTreeMap;

use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::{now_micros, DbConn};
use crate::domain::orgunit::subtree_range;
use crate::error::{AppError, AppResult};
use crate::report::indicators::{Direction, Indicator, Target};

diesel::table! {
    targets (org_unit, year, indicator) {
        org_unit -> Text,
        year -> Integer,
        indicator -> Text,
        direction -> Text,
        value -> Double,
        set_by -> Text,
        set_at -> BigInt,
    }
}

/// A stored target.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TargetRow {
    pub org_unit: String,
    pub year: i32,
    pub indicator: Indicator,
    pub direction: Direction,
    pub value: f64,
    /// The user who set it.
    pub set_by: String,
    /// Unix microseconds.
    pub set_at: i64,
}

/// One target to set; `direction` defaults to the indicator's usual one.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetInput {
    pub indicator: Indicator,
    pub direction: Option<Direction>,
    pub value: f64,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetTargets {
    /// A township (set by its county's supervisor) or a village (by its township's supervisor).
    pub org_unit: String,
    pub year: i32,
    pub targets: Vec<TargetInput>,
}

fn direction_code(d: Direction) -> &'static str {
    match d {
        Direction::AtLeast => "at_least",
        Direction::AtMost => "at_most",
    }
}

type Raw = (String, i32, String, String, f64, String, i64);

fn from_raw(r: Raw) -> Option<TargetRow> {
    Some(TargetRow {
        org_unit: r.0,
        year: r.1,
        indicator: Indicator::parse(&r.2)?,
        direction: if r.3 == "at_most" {
            Direction::AtMost
        } else {
            Direction::AtLeast
        },
        value: r.4,
        set_by: r.5,
        set_at: r.6,
    })
}

/// Replaces the given targets of one unit and year (others stay).
pub fn set(conn: &mut DbConn, input: &SetTargets, user_id: &str) -> AppResult<Vec<TargetRow>> {
    if !(2000..=2100).contains(&input.year) {
        return Err(AppError::validation("bad_target", "year must be 2000-2100"));
    }
    if input.targets.is_empty() || input.targets.len() > 50 {
        return Err(AppError::validation("bad_target", "give 1 to 50 targets"));
    }
    for t in &input.targets {
        let max = if t.indicator == Indicator::SexRatioAtBirth {
            1000.0
        } else {
            100_000.0
        };
        if !t.value.is_finite() || t.value < -max || t.value > max {
            return Err(AppError::validation(
                "bad_target",
                "target value out of range",
            ));
        }
    }
    let now = now_micros();
    for t in &input.targets {
        let dir = direction_code(t.direction.unwrap_or(t.indicator.direction()));
        let code = t.indicator.code();
        diesel::delete(
            targets::table
                .filter(targets::org_unit.eq(&input.org_unit))
                .filter(targets::year.eq(input.year))
                .filter(targets::indicator.eq(code)),
        )
        .execute(conn)?;
        diesel::insert_into(targets::table)
            .values((
                targets::org_unit.eq(&input.org_unit),
                targets::year.eq(input.year),
                targets::indicator.eq(code),
                targets::direction.eq(dir),
                targets::value.eq(t.value),
                targets::set_by.eq(user_id),
                targets::set_at.eq(now),
            ))
            .execute(conn)?;
    }
    list(conn, &input.org_unit, input.year, false)
}

/// Targets of a unit (and, with `subtree`, of every unit below it) for a year.
pub fn list(conn: &mut DbConn, code: &str, year: i32, subtree: bool) -> AppResult<Vec<TargetRow>> {
    let mut q = targets::table.filter(targets::year.eq(year)).into_boxed();
    if subtree {
        let (lo, hi) = subtree_range(code);
        q = q
            .filter(targets::org_unit.ge(lo))
            .filter(targets::org_unit.lt(hi));
    } else {
        q = q.filter(targets::org_unit.eq(code.to_string()));
    }
    let rows: Vec<Raw> = q
        .order((targets::org_unit, targets::indicator))
        .select((
            targets::org_unit,
            targets::year,
            targets::indicator,
            targets::direction,
            targets::value,
            targets::set_by,
            targets::set_at,
        ))
        .load(conn)?;
    let mut out: Vec<TargetRow> = rows.into_iter().filter_map(from_raw).collect();
    out.sort_by_key(|t| {
        (
            t.org_unit.clone(),
            Indicator::ALL.iter().position(|i| *i == t.indicator),
        )
    });
    Ok(out)
}

fn target_of(r: &TargetRow) -> Target {
    Target {
        indicator: r.indicator,
        direction: r.direction,
        value: r.value,
    }
}

/// The targets a report of `code` for `year` is measured against.
pub fn for_unit(conn: &mut DbConn, code: &str, year: i32) -> AppResult<Vec<Target>> {
    Ok(list(conn, code, year, false)?
        .iter()
        .map(target_of)
        .collect())
}

/// The targets of every unit under `code`, by unit.
pub fn in_subtree(
    conn: &mut DbConn,
    code: &str,
    year: i32,
) -> AppResult<BTreeMap<String, Vec<Target>>> {
    let mut out: BTreeMap<String, Vec<Target>> = BTreeMap::new();
    for r in list(conn, code, year, true)? {
        out.entry(r.org_unit.clone())
            .or_default()
            .push(target_of(&r));
    }
    Ok(out)
}
