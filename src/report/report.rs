//! The report of one org unit for one period, and its breakdown by child org unit: counts from
//! [`counts`], indicators from [`indicators`], targets and attainment from [`targets`], and for
//! months the frozen figures of locked village reports from [`approval`].

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::DbConn;
use crate::error::{AppError, AppResult};
use crate::orgunit::Level;
use crate::orgunit::{self, OrgUnit};
use crate::report::approval::{self, Change, Submission};
use crate::report::counts::{self, Counts, KeyBy, Window};
use crate::report::indicators::{self as ind, Attainment, Indicator, Rate, Rules, Target};
use crate::report::lang::{Labels, Lang};
use crate::report::targets;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PeriodKind {
    Month,
    Quarter,
    /// January 1 to the end of the given month (累计).
    Ytd,
    Year,
    /// `from` to `to`, both inclusive.
    Range,
}

/// A report period: both ends inclusive.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Period {
    pub kind: PeriodKind,
    /// `2026-10`, `2026-Q4`, `2026-01..2026-10`, `2026`, or `2026-03-01..2026-05-15`.
    pub label: String,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub days: u32,
}

fn last_day(year: i32, month: u32) -> Option<NaiveDate> {
    let (y, m) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)?.pred_opt()
}

fn parse_year(s: &str) -> Option<i32> {
    (s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
        .filter(|y| (1900..=2100).contains(y))
}

fn parse_month(s: &str) -> Option<(i32, u32)> {
    let (y, m) = s.split_once('-')?;
    let m: u32 = (m.len() == 2).then(|| m.parse().ok()).flatten()?;
    Some((parse_year(y)?, m)).filter(|_| (1..=12).contains(&m))
}

impl Period {
    fn new(kind: PeriodKind, label: String, start: NaiveDate, end: NaiveDate) -> Period {
        let days = (end - start).num_days() as u32 + 1;
        Period {
            kind,
            label,
            start,
            end,
            days,
        }
    }

    pub fn month(year: i32, month: u32) -> Option<Period> {
        let start = NaiveDate::from_ymd_opt(year, month, 1)?;
        Some(Period::new(
            PeriodKind::Month,
            format!("{year:04}-{month:02}"),
            start,
            last_day(year, month)?,
        ))
    }

    /// A month from `YYYY-MM`.
    pub fn parse_month(s: &str) -> Result<Period, String> {
        parse_month(s)
            .and_then(|(y, m)| Period::month(y, m))
            .ok_or_else(|| format!("period must be a month YYYY-MM, not {s:?}"))
    }

    /// From the query parameters: `kind` (optional when `period` or `from`/`to` say it),
    /// `period` (`YYYY-MM` month or with `kind=ytd` the year to its end, `YYYY-Qn` quarter,
    /// `YYYY` year) or `from`/`to` (`YYYY-MM-DD`, a range of at most ten years).
    pub fn parse(
        kind: Option<&str>,
        period: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Period, String> {
        let kind = match kind {
            Some(k) => Some(
                serde_json::from_value::<PeriodKind>(serde_json::Value::from(k)).map_err(|_| {
                    format!("kind must be month, quarter, ytd, year or range, not {k:?}")
                })?,
            ),
            None => None,
        };
        if kind == Some(PeriodKind::Range) || (kind.is_none() && (from.is_some() || to.is_some())) {
            let (Some(f), Some(t)) = (from, to) else {
                return Err("a range needs from and to (YYYY-MM-DD)".into());
            };
            let date = |s: &str| {
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map_err(|_| format!("not a date YYYY-MM-DD: {s:?}"))
            };
            let (s, e) = (date(f)?, date(t)?);
            if s > e || (e - s).num_days() > 3660 || s.year() < 1900 || e.year() > 2100 {
                return Err(
                    "from must not be after to, and a range spans at most ten years".into(),
                );
            }
            return Ok(Period::new(PeriodKind::Range, format!("{s}..{e}"), s, e));
        }
        let p = period.ok_or("give period (YYYY-MM, YYYY-Qn or YYYY) or from and to")?;
        let bad = || format!("period {p:?} does not fit kind");
        if let Some(y) = parse_year(p) {
            if !matches!(kind, None | Some(PeriodKind::Year)) {
                return Err(bad());
            }
            let s = NaiveDate::from_ymd_opt(y, 1, 1).ok_or_else(bad)?;
            let e = NaiveDate::from_ymd_opt(y, 12, 31).ok_or_else(bad)?;
            return Ok(Period::new(PeriodKind::Year, format!("{y}"), s, e));
        }
        if let Some((y, q)) = p.split_once(['-']).and_then(|(y, q)| {
            let q = q.strip_prefix(['Q', 'q'])?;
            Some((
                parse_year(y)?,
                q.parse::<u32>().ok().filter(|q| (1..=4).contains(q))?,
            ))
        }) {
            if !matches!(kind, None | Some(PeriodKind::Quarter)) {
                return Err(bad());
            }
            let s = NaiveDate::from_ymd_opt(y, q * 3 - 2, 1).ok_or_else(bad)?;
            let e = last_day(y, q * 3).ok_or_else(bad)?;
            return Ok(Period::new(PeriodKind::Quarter, format!("{y}-Q{q}"), s, e));
        }
        let (y, m) = parse_month(p).ok_or_else(|| format!("unreadable period {p:?}"))?;
        match kind {
            None | Some(PeriodKind::Month) => Period::month(y, m).ok_or_else(bad),
            Some(PeriodKind::Ytd) => {
                let s = NaiveDate::from_ymd_opt(y, 1, 1).ok_or_else(bad)?;
                let e = last_day(y, m).ok_or_else(bad)?;
                Ok(Period::new(PeriodKind::Ytd, format!("{y}-01..{p}"), s, e))
            }
            _ => Err(bad()),
        }
    }

    /// `YYYY-MM` for a month period.
    pub fn month_code(&self) -> Option<String> {
        (self.kind == PeriodKind::Month).then(|| self.label.clone())
    }

    /// The annualisation factor of the per-mille rates.
    pub fn annualise(&self) -> f64 {
        ind::annualise(self.days, ind::days_in_year(self.end.year()))
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UnitRef {
    pub code: String,
    pub name: String,
    pub level: String,
}

impl From<&OrgUnit> for UnitRef {
    fn from(u: &OrgUnit) -> Self {
        UnitRef {
            code: u.code.clone(),
            name: u.name.clone(),
            level: u.level.clone(),
        }
    }
}

/// One indicator of a report: its counts, its value (`null`: not applicable), and how it stands
/// against the yearly target.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct IndicatorRow {
    pub indicator: Indicator,
    pub zh: &'static str,
    /// Another Chinese name of the same figure (计划生育率 beside 符合政策生育率); `null` when
    /// there is none.
    pub also_zh: Option<&'static str>,
    pub unit: &'static str,
    pub numerator: i64,
    pub denominator: i64,
    pub value: Option<f64>,
    pub target: Option<Target>,
    /// `null` without a target or when the indicator does not apply.
    pub attainment: Option<Attainment>,
}

/// Every indicator from the counts, by the formulas of [`indicators`].
pub fn rates(c: &Counts, period: &Period) -> Vec<(Indicator, Rate)> {
    let g = |k: &str| c.get(k).copied().unwrap_or(0);
    let avg = ind::average_population(g("population_start"), g("population_end"));
    let a = period.annualise();
    let birth = ind::crude_birth_rate(g("births"), avg, a);
    let death = ind::crude_death_rate(g("deaths"), avg, a);
    let growth = ind::natural_growth_rate(&birth, &death);
    Indicator::ALL
        .into_iter()
        .map(|i| {
            let r = match i {
                Indicator::CrudeBirthRate => birth,
                Indicator::CrudeDeathRate => death,
                Indicator::NaturalGrowthRate => growth,
                Indicator::PolicyCompliantBirthRate => {
                    ind::policy_compliant_birth_rate(g("births_within_policy"), g("births"))
                }
                Indicator::SexRatioAtBirth => {
                    ind::sex_ratio_at_birth(g("births_male"), g("births_female"))
                }
                Indicator::ContraceptivePrevalence => {
                    ind::contraceptive_prevalence(g("contraceptive_users"), g("married_wcba"))
                }
                Indicator::LongActingMeasureRate => {
                    ind::long_acting_measure_rate(g("mothers_long_acting"), g("mothers"))
                }
                Indicator::CheckCoverage => {
                    ind::check_coverage(g("check_women_checked"), g("check_women_due"))
                }
                Indicator::FollowUpRate => {
                    ind::follow_up_rate(g("follow_ups_done"), g("follow_ups_due"))
                }
                Indicator::CertificateRate => ind::certificate_rate(
                    g("away_married_women_certified_end"),
                    g("away_married_women_end"),
                ),
                Indicator::CheckRate => ind::check_rate(g("in_checked"), g("migrants_in")),
                Indicator::FirstChildShare => {
                    ind::first_child_share(g("births_parity_1"), g("births"))
                }
                Indicator::HospitalDeliveryRate => {
                    ind::hospital_delivery_rate(g("births_in_facility"), g("births"))
                }
                Indicator::LongActingTimeliness => {
                    ind::long_acting_timeliness(g("mothers_timely"), g("mothers_timely_due"))
                }
                Indicator::OneChildCertificateRate => ind::one_child_certificate_rate(
                    g("households_one_child_certified"),
                    g("households_one_child"),
                ),
                Indicator::LateMarriageRate => {
                    ind::late_marriage_rate(g("women_first_married_late"), g("women_first_married"))
                }
                Indicator::InformationAccuracy => {
                    ind::information_accuracy(g("records_checked_accurate"), g("records_checked"))
                }
                Indicator::SupplyUseRate => ind::supply_use_rate(
                    g("supply_method_users_supplied"),
                    g("supply_method_users"),
                ),
                Indicator::PolicyCompliantBirthRateResident => ind::policy_compliant_birth_rate(
                    g("births_resident_within_policy"),
                    g("births_resident"),
                ),
                Indicator::PolicyCompliantBirthRateFloating => ind::policy_compliant_birth_rate(
                    g("births_floating_within_policy"),
                    g("births_floating"),
                ),
            };
            (i, r)
        })
        .collect()
}

/// The indicator rows of one unit, with its targets.
pub fn indicator_rows(c: &Counts, period: &Period, targets: &[Target]) -> Vec<IndicatorRow> {
    rates(c, period)
        .into_iter()
        .map(|(i, r)| {
            let target = targets.iter().find(|t| t.indicator == i).copied();
            IndicatorRow {
                indicator: i,
                zh: i.zh(),
                also_zh: i.also_zh(),
                unit: i.unit(),
                numerator: r.numerator,
                denominator: r.denominator,
                value: r.value,
                attainment: target.zip(r.value).map(|(t, v)| ind::attainment(v, &t)),
                target,
            }
        })
        .collect()
}

/// A count whose current value differs from the approved one.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CountChange {
    pub org_unit: String,
    pub key: String,
    pub approved: i64,
    pub current: i64,
}

/// How a month's figures stand in the approval flow.
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
pub struct ApprovalState {
    /// The village's own submission (village reports only).
    pub submission: Option<Submission>,
    /// Villages of the unit whose report for the month is locked: their figures are the frozen
    /// approved ones.
    pub locked_villages: Vec<String>,
    /// Whether any record changed after approval in a way that touches the month.
    pub changed_after_approval: bool,
    /// Those records (approved and locked villages).
    pub changes: Vec<Change>,
    /// Counts of locked villages that differ now from their approved figures.
    pub count_changes: Vec<CountChange>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Report {
    pub org_unit: UnitRef,
    pub period: Period,
    /// Average population (期内平均人口), `(start + end) / 2`.
    pub average_population: f64,
    /// Factor applied to the per-mille rates (days in year / days in period; 1 for a year).
    pub annualise: f64,
    /// Counts by key; labels in `GET /api/v1/reports` docs and the exports.
    pub counts: Counts,
    pub indicators: Vec<IndicatorRow>,
    /// Month reports only.
    pub approval: Option<ApprovalState>,
    /// The indicators' and counts' labels in the language asked for (`lang`).
    pub labels: Labels,
}

impl Report {
    /// The report with its labels in `lang`.
    pub fn in_lang(self, lang: Lang) -> Report {
        Report {
            labels: Labels::new(lang),
            ..self
        }
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BreakdownRow {
    pub org_unit: UnitRef,
    /// 1-based position when sorted by an indicator; rows whose indicator does not apply come
    /// last, without a rank.
    pub rank: Option<usize>,
    pub counts: Counts,
    pub indicators: Vec<IndicatorRow>,
}

/// A report and its breakdown from one count of the unit (the report page of the console).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReportWithBreakdown {
    pub report: Report,
    pub breakdown: Breakdown,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Breakdown {
    pub org_unit: UnitRef,
    pub period: Period,
    pub sort: Option<Indicator>,
    pub rows: Vec<BreakdownRow>,
    pub total: BreakdownRow,
    /// The indicators' and counts' labels in the language asked for (`lang`).
    pub labels: Labels,
}

impl Breakdown {
    /// The breakdown with its labels in `lang`.
    pub fn in_lang(self, lang: Lang) -> Breakdown {
        Breakdown {
            labels: Labels::new(lang),
            ..self
        }
    }
}

/// A unit's counts grouped by a key, its whole counts (the report's figures) and, for a month,
/// the approval state.
struct Grouped {
    groups: BTreeMap<String, Counts>,
    total: Counts,
    approval: Option<ApprovalState>,
}

/// The unit's counts grouped by `by`, and its whole counts, with locked villages' frozen
/// figures in place of live ones for a month.
fn grouped(
    conn: &mut DbConn,
    second: Option<&mut DbConn>,
    unit: &OrgUnit,
    period: &Period,
    by: KeyBy,
    rules: Rules,
) -> AppResult<Grouped> {
    grouped_with(conn, second, unit, period, by, rules, true)
}

/// [`grouped`], reading the records changed after approval only when `changes` is set (a
/// trend shows the figures, not the approval state).
fn grouped_with(
    conn: &mut DbConn,
    second: Option<&mut DbConn>,
    unit: &OrgUnit,
    period: &Period,
    by: KeyBy,
    rules: Rules,
    changes: bool,
) -> AppResult<Grouped> {
    let window = Window {
        org_unit: unit.code.clone(),
        start: period.start,
        end: period.end,
        rules,
    };
    let Some(month) = period.month_code() else {
        let (groups, total) = counts::count_with_total(conn, second, &window, by)?;
        return Ok(Grouped {
            groups,
            total,
            approval: None,
        });
    };
    let subs = approval::in_subtree(conn, &unit.code, &month)?;
    let mut state = ApprovalState {
        submission: subs.iter().find(|s| s.org_unit == unit.code).cloned(),
        ..Default::default()
    };
    let approved: Vec<&Submission> = subs
        .iter()
        .filter(|s| s.status == "approved" || s.status == "locked")
        .collect();
    if changes && !approved.is_empty() {
        state.changes = approval::changes_after_approval(conn, &unit.code, period, &approved)?;
        state.changed_after_approval = !state.changes.is_empty();
    }
    let locked: Vec<&Submission> = subs.iter().filter(|s| s.status == "locked").collect();
    if locked.is_empty() || by == KeyBy::Unit && level_of(unit) == Level::Village {
        let (groups, total) = counts::count_with_total(conn, second, &window, by)?;
        return Ok(Grouped {
            groups,
            total,
            approval: Some(state),
        });
    }
    // Village by village, frozen where locked, then rolled up to the requested grouping.
    let mut villages = counts::count(conn, second, &window, KeyBy::Prefix(12))?;
    for s in &locked {
        let frozen = s.frozen_counts();
        let live = villages
            .entry(s.org_unit.clone())
            .or_insert_with(counts::zero);
        state
            .count_changes
            .extend(count_changes(&s.org_unit, &frozen, live));
        *live = frozen;
        state.locked_villages.push(s.org_unit.clone());
    }
    let mut out: BTreeMap<String, Counts> = BTreeMap::new();
    let mut total = counts::zero();
    for (code, c) in villages {
        counts::add(&mut total, &c);
        let key = match by {
            KeyBy::Total => String::new(),
            KeyBy::Prefix(n) => code.chars().take(n).collect(),
            KeyBy::Unit => code,
        };
        counts::add(out.entry(key).or_insert_with(counts::zero), &c);
    }
    Ok(Grouped {
        groups: out,
        total,
        approval: Some(state),
    })
}

/// The counts of `org_unit` whose live value differs from the approved (frozen) one. A count
/// the report did not have when the month was approved is no change to that month's data.
fn count_changes(org_unit: &str, frozen: &Counts, live: &Counts) -> Vec<CountChange> {
    live.iter()
        .filter_map(|(k, v)| {
            let a = *frozen.get(k)?;
            (a != *v).then(|| CountChange {
                org_unit: org_unit.to_string(),
                key: k.clone(),
                approved: a,
                current: *v,
            })
        })
        .collect()
}

fn level_of(u: &OrgUnit) -> Level {
    orgunit::level(u)
}

/// The report of `unit` for `period`, counted by `rules`.
pub fn report(
    conn: &mut DbConn,
    second: Option<&mut DbConn>,
    unit: &OrgUnit,
    period: &Period,
    rules: Rules,
) -> AppResult<Report> {
    let g = grouped(conn, second, unit, period, KeyBy::Total, rules)?;
    report_of(conn, unit, period, g.total, g.approval)
}

fn report_of(
    conn: &mut DbConn,
    unit: &OrgUnit,
    period: &Period,
    c: Counts,
    approval: Option<ApprovalState>,
) -> AppResult<Report> {
    let targets = targets::for_unit(conn, &unit.code, period.end.year())?;
    let avg = ind::average_population(
        c.get("population_start").copied().unwrap_or(0),
        c.get("population_end").copied().unwrap_or(0),
    );
    Ok(Report {
        org_unit: unit.into(),
        period: period.clone(),
        average_population: avg,
        annualise: period.annualise(),
        indicators: indicator_rows(&c, period, &targets),
        counts: with_zeros(c),
        approval,
        labels: Labels::default(),
    })
}

fn with_zeros(mut c: Counts) -> Counts {
    for d in counts::COUNTS {
        c.entry(d.key.to_string()).or_insert(0);
    }
    c
}

/// Most months one trend covers.
pub const MAX_TREND_MONTHS: u32 = 24;

/// One month of an indicator's trend.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TrendPoint {
    /// The month, `YYYY-MM`.
    pub period: String,
    pub numerator: i64,
    pub denominator: i64,
    /// `null` when the indicator does not apply that month.
    pub value: Option<f64>,
}

/// One indicator month by month, oldest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TrendSeries {
    pub indicator: Indicator,
    pub points: Vec<TrendPoint>,
}

/// Indicators of one unit over consecutive months: each month's values are those of its
/// monthly report (locked villages with their frozen figures).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Trend {
    pub org_unit: UnitRef,
    /// The months, oldest first, `YYYY-MM`.
    pub months: Vec<String>,
    pub series: Vec<TrendSeries>,
    /// The indicators' and counts' labels in the language asked for (`lang`).
    pub labels: Labels,
}

impl Trend {
    /// The trend with its labels in `lang`.
    pub fn in_lang(self, lang: Lang) -> Trend {
        Trend {
            labels: Labels::new(lang),
            ..self
        }
    }
}

/// The `n` months ending with `last` (a month), oldest first.
pub fn months_to(last: &Period, n: u32) -> AppResult<Vec<Period>> {
    if last.kind != PeriodKind::Month {
        return Err(AppError::BadRequest(
            "a trend ends with a month YYYY-MM".into(),
        ));
    }
    if !(1..=MAX_TREND_MONTHS).contains(&n) {
        return Err(AppError::BadRequest(format!(
            "months must be 1 to {MAX_TREND_MONTHS}, not {n}"
        )));
    }
    let end = last.end.year() * 12 + last.end.month0() as i32;
    (end + 1 - n as i32..=end)
        .map(|i| {
            Period::month(i.div_euclid(12), i.rem_euclid(12) as u32 + 1)
                .ok_or_else(|| AppError::BadRequest("month out of range".into()))
        })
        .collect()
}

/// `indicators` of `unit` for each of `months`: the same figures as each month's report,
/// counted month by month in one request.
pub fn trend(
    conn: &mut DbConn,
    mut second: Option<&mut DbConn>,
    unit: &OrgUnit,
    months: &[Period],
    indicators: &[Indicator],
    rules: Rules,
) -> AppResult<Trend> {
    let mut series: Vec<TrendSeries> = indicators
        .iter()
        .map(|&indicator| TrendSeries {
            indicator,
            points: Vec::with_capacity(months.len()),
        })
        .collect();
    for period in months {
        let g = grouped_with(
            conn,
            second.as_deref_mut(),
            unit,
            period,
            KeyBy::Total,
            rules,
            false,
        )?;
        let rates = rates(&g.total, period);
        for s in &mut series {
            let r = rates
                .iter()
                .find(|(i, _)| *i == s.indicator)
                .map(|(_, r)| r)
                .ok_or_else(|| AppError::Internal("indicator without a rate".into()))?;
            s.points.push(TrendPoint {
                period: period.label.clone(),
                numerator: r.numerator,
                denominator: r.denominator,
                value: r.value,
            });
        }
    }
    Ok(Trend {
        org_unit: unit.into(),
        months: months.iter().map(|p| p.label.clone()).collect(),
        series,
        labels: Labels::default(),
    })
}

/// Sort order of a breakdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    Asc,
    Desc,
    /// Worst first: rows missing their target first, by how far (the attainment gap, which
    /// respects a floor, a ceiling or a band), then rows meeting it, least margin first; rows
    /// without a target after them, by the indicator's usual direction (lowest first for a
    /// rate pushed up, highest first for one held down).
    Worst,
}

/// One row per child org unit (groups for a village) plus the total; sorted by `sort`
/// (highest first unless `order` is `asc`; not applicable last) or by code.
pub fn breakdown(
    conn: &mut DbConn,
    second: Option<&mut DbConn>,
    unit: &OrgUnit,
    period: &Period,
    sort: Option<Indicator>,
    order: Option<Order>,
    rules: Rules,
) -> AppResult<Breakdown> {
    let g = grouped(conn, second, unit, period, breakdown_key(unit), rules)?;
    breakdown_of(conn, unit, period, sort, order, g.groups, g.total)
}

/// How a breakdown of `unit` groups: townships of a county, villages of a township, groups of
/// a village.
fn breakdown_key(unit: &OrgUnit) -> KeyBy {
    match level_of(unit) {
        Level::County => KeyBy::Prefix(9),
        Level::Township => KeyBy::Prefix(12),
        Level::Village | Level::Group => KeyBy::Unit,
    }
}

/// The report and its breakdown (the exports). The breakdown's total row (合计) is the
/// report's figure, not a sum over the children: a distinct-person count (mothers, women
/// checked, supply recipients) counts a woman with records in two villages once in the unit,
/// and once in each village's row.
pub fn report_and_breakdown(
    conn: &mut DbConn,
    second: Option<&mut DbConn>,
    unit: &OrgUnit,
    period: &Period,
    sort: Option<Indicator>,
    order: Option<Order>,
    rules: Rules,
) -> AppResult<(Report, Breakdown)> {
    let g = grouped(conn, second, unit, period, breakdown_key(unit), rules)?;
    let report = report_of(conn, unit, period, g.total, g.approval)?;
    let b = breakdown_of(
        conn,
        unit,
        period,
        sort,
        order,
        g.groups,
        report.counts.clone(),
    )?;
    Ok((report, b))
}

fn breakdown_of(
    conn: &mut DbConn,
    unit: &OrgUnit,
    period: &Period,
    sort: Option<Indicator>,
    order: Option<Order>,
    mut grouped_counts: BTreeMap<String, Counts>,
    total: Counts,
) -> AppResult<Breakdown> {
    let children = orgunit::children(conn, &unit.code)?;
    let year = period.end.year();
    let all_targets = targets::in_subtree(conn, &unit.code, year)?;
    let none: Vec<Target> = Vec::new();
    let mut rows = Vec::new();
    let row_of = |u: UnitRef, c: Counts| {
        let t = all_targets.get(&u.code).unwrap_or(&none);
        BreakdownRow {
            indicators: indicator_rows(&c, period, t),
            counts: with_zeros(c),
            org_unit: u,
            rank: None,
        }
    };
    for child in &children {
        let c = grouped_counts
            .remove(&child.code)
            .unwrap_or_else(counts::zero);
        rows.push(row_of(child.into(), c));
    }
    // Records kept on the unit itself (a village's own rows beside its groups).
    if let Some(c) = grouped_counts.remove(&unit.code) {
        rows.push(row_of(unit.into(), c));
    }
    if let Some(ind) = sort {
        let pos = Indicator::ALL
            .iter()
            .position(|i| *i == ind)
            .expect("listed");
        let desc = order != Some(Order::Asc);
        let worst = order == Some(Order::Worst);
        let held_down = ind.direction() == crate::report::indicators::Direction::AtMost;
        // Worst first: (no target, badness) with lower first.
        let badness = |r: &IndicatorRow, v: f64| match &r.attainment {
            Some(a) => (false, a.gap),
            None => (true, if held_down { -v } else { v }),
        };
        rows.sort_by(|a, b| {
            let (ra, rb) = (&a.indicators[pos], &b.indicators[pos]);
            match (ra.value, rb.value) {
                (Some(x), Some(y)) if worst => {
                    let (ka, kb) = (badness(ra, x), badness(rb, y));
                    ka.0.cmp(&kb.0)
                        .then_with(|| ka.1.partial_cmp(&kb.1).unwrap_or(std::cmp::Ordering::Equal))
                }
                (Some(x), Some(y)) => {
                    let o = x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
                    if desc {
                        o.reverse()
                    } else {
                        o
                    }
                }
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            }
            .then_with(|| a.org_unit.code.cmp(&b.org_unit.code))
        });
        for (i, r) in rows.iter_mut().enumerate() {
            if r.indicators[pos].value.is_some() {
                r.rank = Some(i + 1);
            }
        }
    }
    let own_targets = targets::for_unit(conn, &unit.code, year)?;
    let total = BreakdownRow {
        indicators: indicator_rows(&total, period, &own_targets),
        counts: with_zeros(total),
        org_unit: UnitRef {
            code: unit.code.clone(),
            name: "合计".into(),
            level: unit.level.clone(),
        },
        rank: None,
    };
    Ok(Breakdown {
        org_unit: unit.into(),
        period: period.clone(),
        sort,
        rows,
        total,
        labels: Labels::default(),
    })
}

/// Parses an indicator code for `sort`.
pub fn parse_indicator(code: &str) -> AppResult<Indicator> {
    Indicator::parse(code)
        .ok_or_else(|| AppError::BadRequest(format!("unknown indicator {code:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(kind: Option<&str>, period: Option<&str>) -> Result<Period, String> {
        Period::parse(kind, period, None, None)
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn periods_parse() {
        let m = p(None, Some("2026-02")).unwrap();
        assert_eq!(
            (m.kind, m.start, m.end, m.days),
            (PeriodKind::Month, date(2026, 2, 1), date(2026, 2, 28), 28)
        );
        let q = p(None, Some("2026-Q4")).unwrap();
        assert_eq!(
            (q.start, q.end, q.days),
            (date(2026, 10, 1), date(2026, 12, 31), 92)
        );
        let y = p(Some("ytd"), Some("2026-10")).unwrap();
        assert_eq!(
            (y.kind, y.start, y.end),
            (PeriodKind::Ytd, date(2026, 1, 1), date(2026, 10, 31))
        );
        let y = p(None, Some("2024")).unwrap();
        assert_eq!((y.days, y.annualise()), (366, 1.0));
        let r = Period::parse(None, None, Some("2026-03-01"), Some("2026-03-10")).unwrap();
        assert_eq!((r.kind, r.days), (PeriodKind::Range, 10));
        assert!((r.annualise() - 36.5).abs() < 1e-9);
        for bad in ["2026-13", "2026-Q5", "26-01", "2026-1", "x"] {
            assert!(p(None, Some(bad)).is_err(), "{bad}");
        }
        assert!(p(Some("quarter"), Some("2026-10")).is_err());
        assert!(p(Some("weekly"), Some("2026-10")).is_err());
        assert!(Period::parse(None, None, Some("2026-03-10"), Some("2026-03-01")).is_err());
        assert_eq!(
            Period::parse_month("2026-10")
                .unwrap()
                .month_code()
                .unwrap(),
            "2026-10"
        );
    }
}
