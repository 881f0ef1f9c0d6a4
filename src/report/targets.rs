//! Yearly targets (目标管理责任书) per org unit and indicator, set by the level above: a county
//! supervisor sets the targets of the county's townships, a township supervisor those of its
//! villages.

use std::collections::BTreeMap;

use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::{now_micros, DbConn};
use crate::error::{AppError, AppResult};
use crate::orgunit::subtree_range;
use crate::report::indicators::{Direction, Indicator, Target};

diesel::table! {
    targets (org_unit, year, indicator) {
        org_unit -> Text,
        year -> Integer,
        indicator -> Text,
        direction -> Text,
        value -> Double,
        upper -> Nullable<Double>,
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
    /// The floor (`at_least`, `between`) or the ceiling (`at_most`).
    pub value: f64,
    /// The ceiling of a band (`between`); `null` otherwise.
    pub upper: Option<f64>,
    /// The user who set it.
    pub set_by: String,
    /// Unix microseconds.
    pub set_at: i64,
}

/// One target to set; `direction` defaults to the indicator's usual one, or to `between` when
/// `upper` is given. A band (`between`) has `value` as its floor and `upper` as its ceiling,
/// e.g. the sex ratio at birth between 103 and 107.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetInput {
    pub indicator: Indicator,
    pub direction: Option<Direction>,
    pub value: f64,
    /// The ceiling of a band; only with `direction` `between` (or none).
    pub upper: Option<f64>,
}

impl TargetInput {
    /// The direction to store: the given one, else `between` with an `upper`, else the
    /// indicator's usual one.
    fn direction(&self) -> Direction {
        self.direction.unwrap_or(if self.upper.is_some() {
            Direction::Between
        } else {
            self.indicator.direction()
        })
    }
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetTargets {
    /// A township (set by its county's supervisor) or a village (by its township's supervisor).
    pub org_unit: String,
    pub year: i32,
    pub targets: Vec<TargetInput>,
}

type Raw = (String, i32, String, String, f64, Option<f64>, String, i64);

fn from_raw(r: Raw) -> Option<TargetRow> {
    Some(TargetRow {
        org_unit: r.0,
        year: r.1,
        indicator: Indicator::parse(&r.2)?,
        direction: Direction::parse(&r.3)?,
        value: r.4,
        upper: r.5,
        set_by: r.6,
        set_at: r.7,
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
        let in_range = |v: f64| v.is_finite() && (-max..=max).contains(&v);
        if !in_range(t.value) || t.upper.is_some_and(|u| !in_range(u)) {
            return Err(AppError::validation(
                "bad_target",
                "target value out of range",
            ));
        }
        match (t.direction(), t.upper) {
            (Direction::Between, None) => {
                return Err(AppError::validation(
                    "bad_target",
                    "a band (between) needs upper, its ceiling",
                ))
            }
            (Direction::Between, Some(u)) if u < t.value => {
                return Err(AppError::validation(
                    "bad_target",
                    "a band's upper must not be below its value (the floor)",
                ))
            }
            (Direction::AtLeast | Direction::AtMost, Some(_)) => {
                return Err(AppError::validation(
                    "bad_target",
                    "upper is only for a band (direction between)",
                ))
            }
            _ => {}
        }
    }
    let now = now_micros();
    for t in &input.targets {
        let dir = t.direction().code();
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
                targets::upper.eq(t.upper),
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
            targets::upper,
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
        upper: r.upper,
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
