//! The counts of the monthly report (月报), by SQL aggregation over the ledger tables: one
//! statement per table (three for persons), each grouped by org unit, on both SQLite and
//! PostgreSQL. Records are never loaded into memory; every statement is a range scan on the
//! org-unit code (a subtree is a code-prefix range) with `COUNT`/`SUM` over `CASE`.
//!
//! # Counting rules (统计口径) applied here
//!
//! The formulas, the age range of a woman of childbearing age, the married statuses, the
//! long-acting methods and the three checks live in [`crate::report::indicators`]. The rules
//! that decide which rows are counted are these:
//!
//! - Only live rows count: a deleted (or merged-away) record counts nowhere.
//! - **Population at a date D** (时点人口): live persons born on or before D, alive at D and
//!   resident at D. The current `alive` and `residence` fields are not enough for a past date
//!   (a person who died or left in the period was in the population at its start), so both are
//!   read from the dated ledgers:
//!   - *Alive at D*: no death record (live, `death_date`) on or before D. A person marked dead
//!     (`alive` false) without any death record counts as dead from the day that was recorded
//!     (the status history below).
//!   - *Resident at D*, from the migration ledger (`migrations_log`: `direction`, `moved_on`):
//!     the latest migration dated on or before D decides (`in`: in the population, `out`: not;
//!     two on one day: the later recorded, by change sequence). With none dated on or before D
//!     but later ones, the state before the first later one: a later `out` means the person was
//!     resident, a later `in` that they were not. With no migration at all, the `residence` at
//!     D decides: resident (常住), moved in (流入) or unset count, moved out (流出) does not.
//!   - *A status field at D* (marital status with its marriage date, spouse link, residence,
//!     alive), from `person_status_changes` (kept by a trigger on every update of a person):
//!     the replaced value of the earliest change of that field effective after D, or the current
//!     value when there is none. A change of marital status or spouse is effective on the new
//!     marriage date when it sets one, any other change on the day it was recorded.
//!   - A person's death and migration records (and, below, births and measures) are those
//!     kept in the report's subtree: the ledgers of the person's village.
//!
//!   So a report for a past month does not change when someone dies or moves today.
//!   **Population at period start** is the population on the day before the first day of the
//!   period by the same rule; the **average population** is `(start + end) / 2`
//!   ([`indicators::average_population`]). **Moved out at end** (流出): persons alive and born
//!   by period end who are away at it: the latest migration by then is `out`; or none by then
//!   and the first later one is `in` for a person not registered as moved in (a local coming
//!   back; someone registered as 流入 was not here before arriving, so is neither in the
//!   population nor away); or no migration at all and the current status is moved out. **Moved in at end**: persons in the population at period end
//!   whose residence status is moved in (流入).
//! - **Married women of childbearing age** (已婚育龄妇女): in the population at period end (the
//!   rule above), female, married at period end (a married status at the end, and its marriage
//!   date, when recorded, on or before the end: [`indicators::married_on`]), aged 15-49 at period end (birth-date bounds from
//!   [`indicators::wcba_birth_date_bounds`]). Their **living children**: live birth records with
//!   them as mother, born by period end, whose child is alive at period end by the rule above.
//! - A **current measure** at period end: started on or before the end, not ended by then, not
//!   an IUD removal (an operation, not a method). A woman's measure is hers or her husband's of
//!   [`indicators::MALE_METHODS`]. Her husband is the couple's: the person her `spouse_id`
//!   names at period end; when it names none, a man whose `spouse_id` names her (as it stands
//!   now); his measures count wherever they are kept. Only without any spouse link, the male
//!   head or spouse of her household while she is its head or spouse. A woman with several
//!   counts once, under the first of [`METHOD_PRIORITY`].
//! - **Long-acting measure rate**: mothers of the births in the period, with a current measure
//!   of [`indicators::LONG_ACTING_METHODS`] (hers, or her husband's vasectomy by the same
//!   couple rule) at period end.
//! - **Births in a facility** (住院分娩): births of the period whose place is one of
//!   [`indicators::FACILITY_BIRTH_PLACES`]; a birth without a recorded place is not one.
//! - **Four operations** (四术) in the period: IUD insertions, IUD removals and sterilisations by
//!   their `started_on`, induced abortions by the pregnancy's `outcome_date`.
//! - **Checks** (三查): women with a check of [`indicators::THREE_CHECKS`] due in the period
//!   (`due_date`); checked when one of those was done (`visit_date`) by period end.
//!   **Follow-ups** (the other visit kinds): visits due in the period, done by period end.
//! - **Migrants** are flows: migration records moved in the period. Out-migrant married women:
//!   out-records of women married and of childbearing age at period end; certified when the
//!   record has a certificate number. In-migrants checked: in-records with
//!   `certificate_checked`.
//! - **Persons away at period end** (a stock, as the seeds report 流出人口 and 办证率): persons
//!   born and alive at period end whose latest migration record dated by then is `out`, counted
//!   in the village keeping that record, by its destination (`place`: 省内 within the province,
//!   省外 outside it; a record without a destination counts in neither). Of them, the married
//!   women of childbearing age at period end, and those whose latest out-record carries a
//!   marriage-and-childbearing certificate number: the 办证率. (`moved_out_end` also counts
//!   persons away by their status alone, without a dated record.)
//! - **Supplies**: quantities handed out in the period, and their distinct recipients.
//! - **Households** (独生子女户, 双女户): live households of the subtree flagged so in the
//!   register today; the flags have no date, so these follow the current register.
//! - **Benefits** are yearly: records of the years the period touches, recipients and yuan.
//! - **Issue 14's indicators** ([`indicator_statements`]): long-acting timeliness by each
//!   mother's last birth of the period and her window of [`indicators::Rules`] days; one-child
//!   certificates held by the period end's year; one-son households from the one-child flag and
//!   the household's children; marriages of the period by the bride; records checked by the
//!   server's receipt time and flags open at the period end; supply use over the women ranked
//!   under pills or condoms; births by the mother's residence on the day of the birth.
//!
//! Distinct-person counts (mothers, women checked) are distinct within an org unit row; a
//! roll-up sums its villages.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use diesel::prelude::*;
use diesel::sql_types::Text;

use crate::db::stmt::{Bind, Stmt as SqlStmt};
use crate::db::DbConn;
use crate::error::{AppError, AppResult};
use crate::orgunit::subtree_range;
use crate::report::indicators::{
    self, FACILITY_BIRTH_PLACES, LONG_ACTING_METHODS, MALE_METHODS, SUPPLY_METHODS, THREE_CHECKS,
};

/// Counts by key (see [`COUNTS`]).
pub type Counts = BTreeMap<String, i64>;

/// Order in which a woman's current measures are ranked when she has several: the one counted
/// under "users by method".
pub const METHOD_PRIORITY: &[&str] = &[
    "tubal_ligation",
    "vasectomy",
    "iud_insertion",
    "implant",
    "injection",
    "pills",
    "condoms",
];

/// One count of the report, with its Chinese and English labels.
pub struct CountDef {
    pub key: &'static str,
    pub zh: &'static str,
    pub en: &'static str,
}

const fn d(key: &'static str, zh: &'static str, en: &'static str) -> CountDef {
    CountDef { key, zh, en }
}

/// Every count of the report, in report order.
pub const COUNTS: &[CountDef] = &[
    d("population_start", "期初人口", "population at period start"),
    d("population_end", "期末人口", "population at period end"),
    d(
        "population_end_male",
        "期末人口(男)",
        "population at end, male",
    ),
    d(
        "population_end_female",
        "期末人口(女)",
        "population at end, female",
    ),
    d("moved_in_end", "期末流入人口", "moved-in persons at end"),
    d("moved_out_end", "期末流出人口", "moved-out persons at end"),
    d("births", "出生人数", "births"),
    d("births_male", "出生(男)", "male births"),
    d("births_female", "出生(女)", "female births"),
    d("births_parity_1", "一孩", "first births"),
    d("births_parity_2", "二孩", "second births"),
    d("births_parity_3plus", "多孩", "third or later births"),
    d(
        "births_in_facility",
        "住院分娩数",
        "births in a hospital or township clinic",
    ),
    d(
        "births_within_policy",
        "符合政策出生",
        "births within policy",
    ),
    d(
        "births_within_policy_1",
        "内一",
        "first births within policy",
    ),
    d(
        "births_within_policy_2",
        "内二",
        "second births within policy",
    ),
    d(
        "births_within_policy_3plus",
        "内多",
        "later births within policy",
    ),
    d("deaths", "死亡人数", "deaths"),
    d(
        "married_wcba",
        "已婚育龄妇女",
        "married women of childbearing age",
    ),
    d("wcba_children_0", "零孩", "with no living child"),
    d("wcba_children_1", "一孩妇女", "with one living child"),
    d("wcba_children_2", "二孩妇女", "with two living children"),
    d("wcba_children_3plus", "多孩妇女", "with three or more"),
    d(
        "contraceptive_users",
        "避孕措施落实人数",
        "with a current measure",
    ),
    d("users_tubal_ligation", "女扎", "tubal ligation"),
    d("users_vasectomy", "男扎", "vasectomy"),
    d("users_iud_insertion", "上环", "IUD"),
    d("users_implant", "皮埋", "implant"),
    d("users_injection", "注射", "injection"),
    d("users_pills", "口服药", "pills"),
    d("users_condoms", "避孕套", "condoms"),
    d("mothers", "生育妇女", "women who gave birth"),
    d(
        "mothers_long_acting",
        "生育妇女落实长效措施",
        "of whom with a long-acting measure",
    ),
    d("ops_iud_insertion", "上环手术", "IUD insertions"),
    d("ops_iud_removal", "取环手术", "IUD removals"),
    d("ops_tubal_ligation", "女扎手术", "tubal ligations"),
    d("ops_vasectomy", "男扎手术", "vasectomies"),
    d("ops_induced", "人流/引产", "induced abortions"),
    d("ops_total", "四术合计", "four operations, total"),
    d("ops_implant", "皮埋手术", "implants"),
    d("pregnancies_detected", "新发现孕情", "pregnancies detected"),
    d("pregnancy_miscarriages", "自然流产", "miscarriages"),
    d("check_women_due", "应查人数", "women due a check"),
    d("check_women_checked", "实查人数", "women checked"),
    d("checks_done", "期内三查次数", "checks done in period"),
    d("follow_ups_due", "应随访次数", "follow-ups due"),
    d("follow_ups_done", "已随访次数", "follow-ups done"),
    d("visits_done", "期内随访总次数", "visits done in period"),
    d("migrants_out", "流出人数", "moved out"),
    d("migrants_in", "流入人数", "moved in"),
    d(
        "out_married_women",
        "流出已婚育龄妇女",
        "out-migrant married women",
    ),
    d(
        "out_married_women_certified",
        "流出已婚育龄妇女办证",
        "of whom with a certificate",
    ),
    d("certificates_issued", "办理婚育证明", "certificates issued"),
    d(
        "away_end_within_province",
        "期末流出(省内)",
        "away at end, within the province",
    ),
    d(
        "away_end_outside_province",
        "期末流出(省外)",
        "away at end, outside the province",
    ),
    d(
        "away_married_women_end",
        "期末流出已婚育龄妇女",
        "married women of childbearing age away at end",
    ),
    d(
        "away_married_women_certified_end",
        "期末流出已婚育龄妇女办证",
        "of whom with a certificate",
    ),
    d("in_checked", "流入人员查证", "in-migrants checked"),
    d("supply_condoms", "避孕套(只)", "condoms (pieces)"),
    d(
        "supply_film",
        "避孕药膜(本)",
        "contraceptive film (booklets)",
    ),
    d(
        "supply_pills",
        "短效口服药(板)",
        "short-acting pills (strips)",
    ),
    d("supply_recipients", "药具领取人数", "supply recipients"),
    d("households_one_child", "独生子女户", "one-child households"),
    d(
        "households_two_daughters",
        "双女户",
        "two-daughter households",
    ),
    d(
        "benefit_one_child_certificate",
        "独生子女父母光荣证(人)",
        "one-child certificates",
    ),
    d(
        "benefit_one_child_certificate_yuan",
        "独生子女父母光荣证(元)",
        "one-child certificates, yuan",
    ),
    d(
        "benefit_reward_assistance",
        "奖励扶助(人)",
        "reward and assistance",
    ),
    d(
        "benefit_reward_assistance_yuan",
        "奖励扶助(元)",
        "reward and assistance, yuan",
    ),
    d(
        "benefit_special_assistance",
        "特别扶助(人)",
        "special assistance",
    ),
    d(
        "benefit_special_assistance_yuan",
        "特别扶助(元)",
        "special assistance, yuan",
    ),
    d(
        "mothers_timely_due",
        "产妇应及时落实长效措施",
        "mothers due a timely long-acting measure",
    ),
    d(
        "mothers_timely",
        "产后及时落实长效措施",
        "of whom with one in time",
    ),
    d(
        "mothers_timely_pending",
        "产后落实期限未满",
        "mothers whose window is still open",
    ),
    d(
        "one_child_certificates_held",
        "独生子女领证(累计)",
        "one-child certificates held (cumulative)",
    ),
    d(
        "households_one_child_certified",
        "独生子女户已领证",
        "one-child households with a certificate",
    ),
    d("households_one_son", "独男户", "one-son households"),
    d(
        "new_couples",
        "当年新婚对数",
        "couples married in the period",
    ),
    d(
        "women_first_married",
        "初婚妇女",
        "women first married in the period",
    ),
    d(
        "women_first_married_late",
        "晚婚妇女",
        "of whom married late (23 or older)",
    ),
    d(
        "records_checked",
        "期内核查记录",
        "records checked in the period",
    ),
    d(
        "records_checked_accurate",
        "无逻辑错误记录",
        "of which without an open logic flag",
    ),
    d(
        "supply_method_users",
        "使用药具已婚育龄妇女",
        "married women using pills or condoms",
    ),
    d(
        "supply_method_users_supplied",
        "其中期内领取药具",
        "of whom supplied in the period",
    ),
    d(
        "births_resident",
        "常住人口出生",
        "births to resident mothers",
    ),
    d(
        "births_resident_within_policy",
        "常住人口符合政策出生",
        "births to resident mothers within policy",
    ),
    d(
        "births_floating",
        "流动人口出生",
        "births to floating mothers",
    ),
    d(
        "births_floating_within_policy",
        "流动人口符合政策出生",
        "births to floating mothers within policy",
    ),
];

/// How rows are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyBy {
    /// One row, keyed `""`.
    Total,
    /// By the first `n` characters of the org unit code (9: townships, 12: villages).
    Prefix(usize),
    /// By the exact org unit (a village's groups).
    Unit,
}

/// What to count: the subtree under `org_unit`, between `start` and `end` (both inclusive).
#[derive(Clone, Debug)]
pub struct Window {
    pub org_unit: String,
    pub start: NaiveDate,
    pub end: NaiveDate,
    /// The deployment's counting rules (settings `[report]`).
    pub rules: indicators::Rules,
}

/// A SQL text with `:name` parameters, bound in order of occurrence.
struct Stmt {
    /// When set, the body of a materialised `WITH x AS (...)`: computed once per row, so that
    /// the aggregates may refer to its correlated columns many times.
    with: Option<String>,
    from: String,
    aggs: Vec<(&'static str, String)>,
    /// Its values are added to those of another statement with the same keys (a correction).
    adds: bool,
    /// PostgreSQL: plan its joins as hash joins (see [`count`]); its look-ups must then be
    /// written without joins (as [`husband_select`] is).
    hash_joins: bool,
    /// Runs on the second connection when the counts are read through two
    /// ([`run_split`]): the married-women statement, about as long as all the others together.
    beside: bool,
}

impl Stmt {
    /// Whether one of its counts is of distinct persons or records (`COUNT(DISTINCT ...)`),
    /// which a sum over units would count twice when they have rows in two units.
    fn counts_distinct(&self) -> bool {
        self.aggs.iter().any(|(_, a)| a.contains("DISTINCT"))
    }

    fn new(from: String, aggs: Vec<(&'static str, String)>) -> Stmt {
        Stmt {
            with: None,
            from,
            aggs,
            adds: false,
            hash_joins: false,
            beside: false,
        }
    }
}

fn list(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
    quoted.join(", ")
}

fn when(cond: &str) -> String {
    format!("COALESCE(SUM(CASE WHEN {cond} THEN 1 ELSE 0 END), 0)")
}

fn sum_of(cond: &str, value: &str) -> String {
    format!("COALESCE(SUM(CASE WHEN {cond} THEN {value} ELSE 0 END), 0)")
}

fn range(alias: &str) -> String {
    format!("{alias}.org_unit >= :lo AND {alias}.org_unit < :hi AND NOT {alias}.deleted")
}

/// A measure current at period end (alias `m`).
const CURRENT: &str = "NOT m.deleted AND m.method <> 'iud_removal' AND m.started_on <= :e \
     AND (m.ended_on IS NULL OR m.ended_on > :e)";

fn method_rank() -> String {
    let whens: Vec<String> = METHOD_PRIORITY
        .iter()
        .enumerate()
        .map(|(i, m)| format!("WHEN '{m}' THEN {}", i + 1))
        .collect();
    format!("CASE m.method {} END", whens.join(" "))
}

/// The sort key of a migration record (alias `m`): its date, its change sequence (fixed width),
/// its direction. The greatest key of a person's records is the latest record, the least the
/// first, and the key ends with the direction.
const MIGRATION_KEY: &str =
    "m.moved_on || CAST(m.change_seq + 1000000000000000 AS TEXT) || m.direction";

/// Joins to a person (alias `p`) the migration records deciding residence at period start
/// (`mg.at_s`: the latest dated before `:s`) and end (`mg.at_e`: the latest dated by `:e`), and
/// the first (`mg.at_0`); the date of the earliest death record (`dt.dd`); and the person's
/// status fields on the day before the period (`ss`) and at its end (`se`, see
/// [`status_changes_join`]). One grouped pass over each ledger of the subtree, not a lookup per
/// person.
fn dated_status_joins() -> String {
    format!(
        "LEFT JOIN (SELECT m.person_id AS pid, \
           MAX(CASE WHEN m.moved_on < :s THEN {MIGRATION_KEY} END) AS at_s, \
           MAX(CASE WHEN m.moved_on <= :e THEN {MIGRATION_KEY} END) AS at_e, \
           MIN({MIGRATION_KEY}) AS at_0 \
         FROM migrations_log m WHERE {} GROUP BY m.person_id) mg ON mg.pid = p.id \
         LEFT JOIN (SELECT d.person_id AS pid, MIN(d.death_date) AS dd \
         FROM deaths d WHERE {} GROUP BY d.person_id) dt ON dt.pid = p.id {} {}",
        range("m"),
        range("d"),
        status_changes_join("ss", ">= :s"),
        status_changes_join("se", "> :e")
    )
}

/// The sort key of a status change (alias `s`, table `person_status_changes`): the date it took
/// effect (10 characters), its change sequence (16), the marriage date of the old status (10,
/// `0000-00-00` for none), then `v` and the old value, or `n` for none. The least key of a
/// person's changes effective after a date holds the value the field had on that date.
const CHANGE_KEY: &str = "s.effective_on || CAST(s.change_seq + 1000000000000000 AS TEXT) \
     || COALESCE(s.old_since, '0000-00-00') || COALESCE('v' || s.old_value, 'n')";

/// Status fields kept in `person_status_changes`, with the column each gets in
/// [`status_changes_join`].
const STATUS_FIELDS: [(&str, &str); 4] = [
    ("marital_status", "ms"),
    ("spouse_id", "sp"),
    ("residence", "rs"),
    ("alive", "al"),
];

/// Joins to a person (alias `p`) as `alias` the least [`CHANGE_KEY`] of each status field over
/// the person's changes effective `after` (e.g. `> :e`: after the period end), one grouped pass
/// over the changes of the subtree. A field without such a change had its current value then.
fn status_changes_join(alias: &str, after: &str) -> String {
    let cols: Vec<String> = STATUS_FIELDS
        .iter()
        .map(|(field, col)| {
            format!("MIN(CASE WHEN s.field = '{field}' THEN {CHANGE_KEY} END) AS {col}")
        })
        .collect();
    format!(
        "LEFT JOIN (SELECT s.person_id AS pid, {} FROM person_status_changes s \
           WHERE s.org_unit >= :lo AND s.org_unit < :hi AND s.effective_on {after} \
           GROUP BY s.person_id) {alias} ON {alias}.pid = p.id",
        cols.join(", ")
    )
}

/// A person's (alias `p`) status field at the date of the join `alias` ([`status_changes_join`]):
/// `col` one of [`STATUS_FIELDS`], `current` the column.
fn status_at(alias: &str, col: &str, current: &str) -> String {
    status_from_key(&format!("{alias}.{col}"), current)
}

/// A status field from `key`, the least [`CHANGE_KEY`] of its changes effective after a date
/// (joined by [`status_changes_join`] or looked up by [`status_key_lookup`]): the value it
/// replaced, or `current` when there is no such change. The one reading of the history.
fn status_from_key(key: &str, current: &str) -> String {
    format!(
        "(CASE WHEN {key} IS NULL THEN {current} \
           WHEN substr({key}, 37, 1) = 'v' THEN substr({key}, 38) END)"
    )
}

/// The marriage date that went with the marital status of `key` ([`status_from_key`]).
fn marriage_date_from_key(key: &str, current: &str) -> String {
    format!(
        "(CASE WHEN {key} IS NULL THEN {current} \
           ELSE NULLIF(substr({key}, 27, 10), '0000-00-00') END)"
    )
}

/// The least [`CHANGE_KEY`] of the `field` changes of one person (`pid`, an SQL expression)
/// effective `after` (e.g. `> :e`): a lookup by person, for a few rows (the mothers of a
/// period's births), where [`status_changes_join`] is one grouped pass for many.
fn status_key_lookup(pid: &str, field: &str, after: &str) -> String {
    format!(
        "(SELECT MIN({CHANGE_KEY}) FROM person_status_changes s WHERE s.person_id = {pid} \
           AND s.field = '{field}' AND s.effective_on {after})"
    )
}

/// Married at the date of the join `alias`: the marital status and marriage date then. The
/// one rule of "married at the period end" (with `alias` joined `> :e`).
fn married_at(alias: &str, at: &str) -> String {
    let status = status_at(alias, "ms", "p.marital_status");
    let since = marriage_date_from_key(&format!("{alias}.ms"), "p.marriage_date");
    indicators::married_at_sql(&status, &since, at)
}

/// The spouse a woman (alias `w`) had at period end, looked up in her spouse-link changes.
fn spouse_at_end_lookup(w: &str) -> String {
    status_from_key(
        &status_key_lookup(&format!("{w}.id"), "spouse_id", "> :e"),
        &format!("{w}.spouse_id"),
    )
}

/// Her husband (`h`) for a woman `w` (a row with `id`, `household_id` and `relation`) whose
/// spouse at period end is `spouse`: the one rule of the couple. The man her link names; when
/// it names none, a man whose link names her; only when no live person's link names her
/// either, the male head or spouse of her household while she is its head or spouse. Returns
/// `MIN(per_man)` over those men, `per_man` a scalar over `h` (e.g. a look-up of his
/// measures): NULL when there is none.
///
/// Written as look-ups within look-ups, without a join, so that the plan is an index look-up
/// per woman and per man whatever the planner's setting (the married-women statement turns
/// nested loops off, [`Stmt::hash_joins`], and a join here would then hash a whole ledger for
/// each woman).
fn husband_select(w: &str, spouse: &str, per_man: &str) -> String {
    let q = |branch: String| {
        format!(
            "(SELECT MIN({per_man}) FROM persons h WHERE {branch} AND NOT h.deleted \
               AND h.sex = 'male')"
        )
    };
    format!(
        "(CASE WHEN {spouse} IS NOT NULL THEN {} \
           WHEN EXISTS (SELECT 1 FROM persons l WHERE l.spouse_id = {w}.id AND NOT l.deleted) \
             THEN {} \
           WHEN {w}.relation IN ('head', 'spouse') THEN {} END)",
        q(format!("h.id = {spouse}")),
        q(format!("h.spouse_id = {w}.id")),
        q(format!(
            "h.household_id = {w}.household_id AND h.id <> {w}.id \
             AND h.relation IN ('head', 'spouse')"
        )),
    )
}

/// `MIN(value)` over her husband's ([`husband_select`]) measures of [`MALE_METHODS`] (alias
/// `m`, wherever kept) meeting `cond`: "her husband's measure covers her". NULL when none.
fn husband_measure(w: &str, spouse: &str, value: &str, cond: &str) -> String {
    husband_select(
        w,
        spouse,
        &format!(
            "(SELECT MIN({value}) FROM measures m WHERE m.person_id = h.id \
               AND m.method IN ({}) AND {cond})",
            list(MALE_METHODS)
        ),
    )
}

/// Not marked dead at the date of the join `alias` (unset counts as alive).
fn alive_flag_at(alias: &str) -> String {
    format!(
        "(CASE WHEN {alias}.al IS NULL THEN (p.alive IS NULL OR p.alive) \
           ELSE {alias}.al NOT LIKE '%vfalse' END)"
    )
}

/// The conditions of the population rule at period start and end (alias `p`), from the dated
/// ledgers (`dated`: with [`dated_status_joins`]) or, for a person without death or migration
/// records, from the current status alone (what the dated form reduces to when `mg` and `dt`
/// are empty).
struct PopulationRule {
    alive_start: String,
    alive_end: String,
    resident_start: String,
    resident_end: String,
    away_end: String,
    moved_in_end: String,
}

impl PopulationRule {
    fn new(dated: bool) -> PopulationRule {
        if !dated {
            let alive_now = "(p.alive IS NULL OR p.alive)";
            let resident_now = "(p.residence IS NULL OR p.residence <> 'moved_out')";
            return PopulationRule {
                alive_start: alive_now.into(),
                alive_end: alive_now.into(),
                resident_start: resident_now.into(),
                resident_end: resident_now.into(),
                away_end: "p.residence = 'moved_out'".into(),
                moved_in_end: "p.residence = 'moved_in'".into(),
            };
        }
        // The alive flag and residence status on the day before the period (`ss`) and at its
        // end (`se`), from the history of status changes.
        let residence = |at: &str| status_at(at, "rs", "p.residence");
        let resident_flag = |at: &str| {
            let r = residence(at);
            format!("({r} IS NULL OR {r} <> 'moved_out')")
        };
        // Alive when the earliest death record is after the date, or there is none and `p`
        // was not marked dead then.
        let alive = |after: &str, at: &str| {
            format!(
                "(dt.dd {after} OR (dt.dd IS NULL AND {}))",
                alive_flag_at(at)
            )
        };
        // The deciding migration `at`; none by then: the opposite of the first one; none at all:
        // the status then. `away` is spelt out, not `NOT resident` (SQL's NOT NULL is NULL).
        let resident = |mg_at: &str, at: &str| {
            format!(
                "({mg_at} LIKE '%in' OR ({mg_at} IS NULL AND mg.at_0 LIKE '%out') \
                 OR (mg.at_0 IS NULL AND {}))",
                resident_flag(at)
            )
        };
        // Away (流出) before a later `in` only for a local coming back: a person registered as
        // moved in (流入) was not here before arriving, and not away from here either.
        let r_end = residence("se");
        let away = format!(
            "(mg.at_e LIKE '%out' \
             OR (mg.at_e IS NULL AND mg.at_0 LIKE '%in' AND ({r_end} IS NULL OR {r_end} <> 'moved_in')) \
             OR (mg.at_0 IS NULL AND {r_end} = 'moved_out'))"
        );
        PopulationRule {
            alive_start: alive(">= :s", "ss"),
            alive_end: alive("> :e", "se"),
            resident_start: resident("mg.at_s", "ss"),
            resident_end: resident("mg.at_e", "se"),
            away_end: away,
            moved_in_end: format!("{r_end} = 'moved_in'"),
        }
    }

    /// In the population at period end, birth-date bound aside.
    fn at_end(&self) -> String {
        format!("{} AND {}", self.alive_end, self.resident_end)
    }

    /// The conditions of the persons statement's counts (rows: persons born by period end).
    fn conditions(&self) -> Vec<(&'static str, String)> {
        let end = self.at_end();
        vec![
            (
                "population_start",
                format!(
                    "p.birth_date < :s AND {} AND {}",
                    self.alive_start, self.resident_start
                ),
            ),
            ("population_end", end.clone()),
            ("population_end_male", format!("{end} AND p.sex = 'male'")),
            (
                "population_end_female",
                format!("{end} AND p.sex = 'female'"),
            ),
            ("moved_in_end", format!("{end} AND {}", self.moved_in_end)),
            (
                "moved_out_end",
                format!("{} AND {}", self.alive_end, self.away_end),
            ),
        ]
    }
}

fn statements() -> Vec<Stmt> {
    // Married at period end: by status and marriage date then (one rule, `indicators::married_on`),
    // with the person's status changes joined as `se`.
    let married = married_at("se", ":e");
    let three = list(THREE_CHECKS);
    let long = list(LONG_ACTING_METHODS);
    let rank = method_rank();
    let mut out = Vec::new();

    // Persons: population at start and end, moved in and out at end. One scan of the persons
    // of the subtree by their current status, which is the dated rule for everyone without a
    // death or migration record or a status change effective in or after the period; then, for
    // the few with one (found from those ledgers, by
    // primary key: `CROSS JOIN` keeps SQLite from scanning the persons and probing the few),
    // the dated rule's count minus the current status's.
    let (now, dated) = (PopulationRule::new(false), PopulationRule::new(true));
    let born = format!("{} AND p.birth_date <= :e", range("p"));
    out.push(Stmt::new(
        format!("persons p WHERE {born}"),
        now.conditions()
            .into_iter()
            .map(|(k, c)| (k, when(&c)))
            .collect(),
    ));
    let mut correction = Stmt::new(
        format!(
            "(SELECT m.person_id AS pid FROM migrations_log m WHERE {} \
               UNION SELECT d.person_id AS pid FROM deaths d WHERE {} \
               UNION SELECT s.person_id AS pid FROM person_status_changes s \
                 WHERE s.org_unit >= :lo AND s.org_unit < :hi AND s.effective_on >= :s) r \
             CROSS JOIN persons p {} WHERE p.id = r.pid AND {born}",
            range("m"),
            range("d"),
            dated_status_joins()
        ),
        dated
            .conditions()
            .into_iter()
            .zip(now.conditions())
            .map(|((k, d), (_, n))| {
                (
                    k,
                    format!(
                        "COALESCE(SUM((CASE WHEN {d} THEN 1 ELSE 0 END) \
                         - (CASE WHEN {n} THEN 1 ELSE 0 END)), 0)"
                    ),
                )
            })
            .collect(),
    );
    correction.adds = true;
    out.push(correction);

    // Married women of childbearing age: living children and current measures, joined from
    // one grouped pass over births and measures each (hash joins, not a lookup per woman).
    let (nc, mr) = ("x.nc", "x.r");
    let mut aggs = vec![
        ("married_wcba", "COUNT(*)".to_string()),
        ("wcba_children_0", when(&format!("{nc} = 0"))),
        ("wcba_children_1", when(&format!("{nc} = 1"))),
        ("wcba_children_2", when(&format!("{nc} = 2"))),
        ("wcba_children_3plus", when(&format!("{nc} >= 3"))),
        ("contraceptive_users", when(&format!("{mr} IS NOT NULL"))),
    ];
    const USERS: [&str; 7] = [
        "users_tubal_ligation",
        "users_vasectomy",
        "users_iud_insertion",
        "users_implant",
        "users_injection",
        "users_pills",
        "users_condoms",
    ];
    for (i, key) in USERS.iter().enumerate() {
        debug_assert!(key.ends_with(METHOD_PRIORITY[i]));
        aggs.push((key, when(&format!("{mr} = {}", i + 1))));
    }
    let (mrange, brange) = (range("m"), range("b"));
    let least = |a: &str, b: &str| {
        format!(
            "(CASE WHEN {a} IS NULL THEN {b} WHEN {b} IS NULL OR {a} <= {b} THEN {a} ELSE {b} END)"
        )
    };
    // Her husband's measures by the one couple rule ([`husband_measure`]), her spouse at
    // period end from the history.
    let spouse = status_at("se", "sp", "p.spouse_id");
    let couple = husband_measure("p", &spouse, &rank, CURRENT);
    // 药具使用率: of these women, those whose measure, ranked as for users by method, is a
    // supply method (so their number is users of pills plus condoms); supplied: a hand-out in
    // the period to her or to her husband by the same couple rule.
    let supply_ranks: Vec<String> = METHOD_PRIORITY
        .iter()
        .enumerate()
        .filter(|(_, m)| SUPPLY_METHODS.contains(m))
        .map(|(i, _)| (i + 1).to_string())
        .collect();
    let supply_ranks = supply_ranks.join(", ");
    let handed = "NOT s.deleted AND s.handed_on >= :s AND s.handed_on <= :e";
    let supplied = format!(
        "(EXISTS (SELECT 1 FROM supplies s WHERE s.person_id = q.id AND {handed}) \
         OR {} IS NOT NULL)",
        husband_select(
            "q",
            "q.spouse",
            &format!("(SELECT MIN(1) FROM supplies s WHERE s.person_id = h.id AND {handed})")
        )
    );
    aggs.push((
        "supply_method_users",
        when(&format!("x.r IN ({supply_ranks})")),
    ));
    aggs.push((
        "supply_method_users_supplied",
        when(&format!("x.r IN ({supply_ranks}) AND x.sup = 1")),
    ));
    // Living children: each birth's child looked up by id (a scalar look-up, which PostgreSQL
    // never turns into a join: as `NOT EXISTS` it became an anti-join hashing every person).
    // A child marked dead without a death record: dead from the day that was recorded.
    let child_marked_dead = "COALESCE((SELECT COALESCE(s.old_value, 'true') \
           FROM person_status_changes s WHERE s.person_id = c.id AND s.field = 'alive' \
             AND s.effective_on > :e ORDER BY s.effective_on, s.change_seq LIMIT 1), \
         CASE WHEN c.alive IS NULL OR c.alive THEN 'true' ELSE 'false' END) = 'false'";
    let r = least("q.own", "q.couple");
    // `q` is materialised so that each woman's couple look-ups run once, not once for each use
    // of `q.couple` in `r`; `supplied` is asked only of supply users (in a `CASE`, which
    // PostgreSQL evaluates lazily: in `NULL AND x` it would evaluate `x` for every woman
    // without a measure).
    out.push(Stmt {
        with: Some(format!(
            "WITH q AS MATERIALIZED (\
             SELECT p.org_unit AS org_unit, p.id AS id, p.household_id AS household_id, \
               p.relation AS relation, {spouse} AS spouse, COALESCE(bc.nc, 0) AS nc, \
               om.r AS own, {couple} AS couple \
             FROM persons p {joins} \
             LEFT JOIN (SELECT b.mother_id AS pid, COUNT(*) AS nc FROM births b \
               WHERE {brange} AND b.birth_date <= :e \
                 AND COALESCE((SELECT CASE WHEN c.deleted \
                   OR EXISTS (SELECT 1 FROM deaths cd WHERE cd.person_id = c.id \
                     AND NOT cd.deleted AND cd.death_date <= :e) \
                   OR (NOT EXISTS (SELECT 1 FROM deaths cd \
                     WHERE cd.person_id = c.id AND NOT cd.deleted) AND {child_marked_dead}) \
                   THEN 1 ELSE 0 END FROM persons c WHERE c.id = b.child_id), 0) = 0 \
               GROUP BY b.mother_id) bc ON bc.pid = p.id \
             LEFT JOIN (SELECT m.person_id AS pid, MIN({rank}) AS r FROM measures m \
               WHERE {mrange} AND {CURRENT} GROUP BY m.person_id) om ON om.pid = p.id \
             WHERE {prange} AND {at_end} AND p.sex = 'female' \
               AND {married} AND p.birth_date >= :wlo AND p.birth_date <= :whi) \
             SELECT q.org_unit AS org_unit, q.nc AS nc, {r} AS r, \
               CASE WHEN {r} IN ({supply_ranks}) THEN CASE WHEN {supplied} THEN 1 ELSE 0 END \
                 ELSE 0 END AS sup FROM q",
            joins = dated_status_joins(),
            prange = range("p"),
            at_end = dated.at_end(),
            married = married_at("se", ":e"),
        )),
        from: "x".into(),
        aggs,
        adds: false,
        hash_joins: true,
        beside: true,
    });

    // Mothers of the period's births, with a long-acting measure: hers, or her husband's
    // vasectomy by the couple rule ([`husband_measure`], her spouse at period end).
    let husbands_long = husband_measure(
        "w",
        &spouse_at_end_lookup("w"),
        "1",
        &format!("m.method IN ({long}) AND {CURRENT}"),
    );
    out.push(Stmt {
        with: Some(format!(
            "SELECT y.org_unit AS org_unit, \
               CASE WHEN EXISTS (SELECT 1 FROM measures m WHERE m.person_id = y.mother_id \
                      AND m.method IN ({long}) AND {CURRENT}) \
                 OR EXISTS (SELECT 1 FROM persons w WHERE w.id = y.mother_id \
                      AND {husbands_long} IS NOT NULL) \
               THEN 1 ELSE 0 END AS la \
             FROM (SELECT DISTINCT b.org_unit, b.mother_id FROM births b \
                   WHERE {} AND b.birth_date >= :s AND b.birth_date <= :e) y",
            range("b"),
        )),
        from: "x".into(),
        aggs: vec![
            ("mothers", "COUNT(*)".into()),
            ("mothers_long_acting", "COALESCE(SUM(x.la), 0)".into()),
        ],
        adds: false,
        hash_joins: false,
        beside: false,
    });

    out.push(Stmt {
        with: None,
        from: format!(
            "births x WHERE {} AND x.birth_date >= :s AND x.birth_date <= :e",
            range("x")
        ),
        aggs: vec![
            ("births", "COUNT(*)".into()),
            ("births_male", when("x.sex = 'male'")),
            ("births_female", when("x.sex = 'female'")),
            ("births_parity_1", when("x.parity = 1")),
            ("births_parity_2", when("x.parity = 2")),
            ("births_parity_3plus", when("x.parity >= 3")),
            ("births_within_policy", when("x.within_policy")),
            (
                "births_in_facility",
                when(&format!("x.place IN ({})", list(FACILITY_BIRTH_PLACES))),
            ),
            (
                "births_within_policy_1",
                when("x.within_policy AND x.parity = 1"),
            ),
            (
                "births_within_policy_2",
                when("x.within_policy AND x.parity = 2"),
            ),
            (
                "births_within_policy_3plus",
                when("x.within_policy AND x.parity >= 3"),
            ),
        ],
        adds: false,
        hash_joins: false,
        beside: false,
    });

    out.push(Stmt {
        with: None,
        from: format!(
            "deaths x WHERE {} AND x.death_date >= :s AND x.death_date <= :e",
            range("x")
        ),
        aggs: vec![("deaths", "COUNT(*)".into())],
        adds: false,
        hash_joins: false,
        beside: false,
    });

    out.push(Stmt {
        with: None,
        from: format!(
            "measures x WHERE {} AND x.started_on >= :s AND x.started_on <= :e",
            range("x")
        ),
        aggs: vec![
            ("ops_iud_insertion", when("x.method = 'iud_insertion'")),
            ("ops_iud_removal", when("x.method = 'iud_removal'")),
            ("ops_tubal_ligation", when("x.method = 'tubal_ligation'")),
            ("ops_vasectomy", when("x.method = 'vasectomy'")),
            ("ops_implant", when("x.method = 'implant'")),
        ],
        adds: false,
        hash_joins: false,
        beside: false,
    });

    let outcome_in = "x.outcome_date >= :s AND x.outcome_date <= :e";
    let detected_in = "x.detected_on >= :s AND x.detected_on <= :e";
    out.push(Stmt {
        with: None,
        from: format!(
            "pregnancies x WHERE {} AND (({outcome_in}) OR ({detected_in}))",
            range("x")
        ),
        aggs: vec![
            (
                "ops_induced",
                when(&format!("x.outcome = 'induced' AND {outcome_in}")),
            ),
            (
                "pregnancy_miscarriages",
                when(&format!("x.outcome = 'miscarriage' AND {outcome_in}")),
            ),
            ("pregnancies_detected", when(detected_in)),
        ],
        adds: false,
        hash_joins: false,
        beside: false,
    });

    let due = "x.due_date >= :s AND x.due_date <= :e";
    let done = "x.visit_date IS NOT NULL AND x.visit_date <= :e";
    let visited = "x.visit_date >= :s AND x.visit_date <= :e";
    let check = format!("x.kind IN ({three})");
    out.push(Stmt {
        with: None,
        from: format!("visits x WHERE {} AND (({due}) OR ({visited}))", range("x")),
        aggs: vec![
            (
                "check_women_due",
                format!("COUNT(DISTINCT CASE WHEN {check} AND {due} THEN x.person_id END)"),
            ),
            (
                "check_women_checked",
                format!(
                    "COUNT(DISTINCT CASE WHEN {check} AND {due} AND {done} THEN x.person_id END)"
                ),
            ),
            ("checks_done", when(&format!("{check} AND {visited}"))),
            ("follow_ups_due", when(&format!("NOT ({check}) AND {due}"))),
            (
                "follow_ups_done",
                when(&format!("NOT ({check}) AND {due} AND {done}")),
            ),
            ("visits_done", when(visited)),
        ],
        adds: false,
        hash_joins: false,
        beside: false,
    });

    let wcba_at_end =
        format!("p.sex = 'female' AND {married} AND p.birth_date >= :wlo AND p.birth_date <= :whi");
    let certified = "x.certificate_no IS NOT NULL AND x.certificate_no <> ''";
    out.push(Stmt {
        with: None,
        from: format!(
            "migrations_log x LEFT JOIN persons p ON p.id = x.person_id {} \
             WHERE {} AND x.moved_on >= :s AND x.moved_on <= :e",
            status_changes_join("se", "> :e"),
            range("x")
        ),
        aggs: vec![
            ("migrants_out", when("x.direction = 'out'")),
            ("migrants_in", when("x.direction = 'in'")),
            (
                "out_married_women",
                when(&format!("x.direction = 'out' AND {wcba_at_end}")),
            ),
            (
                "out_married_women_certified",
                when(&format!(
                    "x.direction = 'out' AND {wcba_at_end} AND {certified}"
                )),
            ),
            (
                "certificates_issued",
                when(&format!("x.direction = 'out' AND {certified}")),
            ),
            (
                "in_checked",
                when("x.direction = 'in' AND x.certificate_checked"),
            ),
        ],
        adds: false,
        hash_joins: false,
        beside: false,
    });

    // Persons away at period end: the latest migration record of each person dated by then
    // (by the key of the population rule), when it is an `out`.
    let latest_key = MIGRATION_KEY.replace("m.", "x.");
    out.push(Stmt {
        with: None,
        from: format!(
            "(SELECT m.person_id AS pid, MAX({MIGRATION_KEY}) AS k FROM migrations_log m \
               WHERE {} AND m.moved_on <= :e GROUP BY m.person_id) l \
             CROSS JOIN migrations_log x CROSS JOIN persons p \
             LEFT JOIN (SELECT d.person_id AS pid, MIN(d.death_date) AS dd \
               FROM deaths d WHERE {} GROUP BY d.person_id) dt ON dt.pid = p.id {} \
             WHERE x.person_id = l.pid AND {latest_key} = l.k AND {} \
               AND p.id = l.pid AND NOT p.deleted AND p.birth_date <= :e AND x.direction = 'out' \
               AND (dt.dd > :e OR (dt.dd IS NULL AND {}))",
            range("m"),
            range("d"),
            status_changes_join("se", "> :e"),
            range("x"),
            alive_flag_at("se")
        ),
        aggs: vec![
            (
                "away_end_within_province",
                when("x.place = 'within_province'"),
            ),
            (
                "away_end_outside_province",
                when("x.place = 'outside_province'"),
            ),
            ("away_married_women_end", when(&wcba_at_end)),
            (
                "away_married_women_certified_end",
                when(&format!("{wcba_at_end} AND {certified}")),
            ),
        ],
        adds: false,
        hash_joins: false,
        beside: false,
    });

    out.push(Stmt {
        with: None,
        from: format!(
            "supplies x WHERE {} AND x.handed_on >= :s AND x.handed_on <= :e",
            range("x")
        ),
        aggs: vec![
            ("supply_condoms", sum_of("x.item = 'condoms'", "x.quantity")),
            ("supply_film", sum_of("x.item = 'film'", "x.quantity")),
            ("supply_pills", sum_of("x.item = 'pills'", "x.quantity")),
            ("supply_recipients", "COUNT(DISTINCT x.person_id)".into()),
        ],
        adds: false,
        hash_joins: false,
        beside: false,
    });

    let mut aggs = Vec::new();
    for (kind, n, yuan) in [
        (
            "one_child_certificate",
            "benefit_one_child_certificate",
            "benefit_one_child_certificate_yuan",
        ),
        (
            "reward_assistance",
            "benefit_reward_assistance",
            "benefit_reward_assistance_yuan",
        ),
        (
            "special_assistance",
            "benefit_special_assistance",
            "benefit_special_assistance_yuan",
        ),
    ] {
        let cond = format!("x.kind = '{kind}'");
        aggs.push((n, when(&cond)));
        aggs.push((yuan, sum_of(&cond, "COALESCE(x.amount_yuan, 0)")));
    }
    out.push(Stmt {
        with: None,
        from: format!(
            "benefits x WHERE {} AND x.year >= :ys AND x.year <= :ye",
            range("x"),
        ),
        aggs,
        adds: false,
        hash_joins: false,
        beside: false,
    });
    // Households flagged in the register (户底册). The flags carry no date: the current
    // register, whatever the period.
    out.push(Stmt {
        with: None,
        from: format!("households x WHERE {}", range("x")),
        aggs: vec![
            ("households_one_child", when("x.one_child")),
            ("households_two_daughters", when("x.two_daughters")),
        ],
        adds: false,
        hash_joins: false,
        beside: false,
    });
    out
}

/// `date` (an SQL expression, text `YYYY-MM-DD`) plus `days`, as text `YYYY-MM-DD`.
fn date_plus_days(postgres: bool, date: &str, days: u32) -> String {
    if postgres {
        format!("to_char(CAST({date} AS DATE) + {days}, 'YYYY-MM-DD')")
    } else {
        format!("date({date}, '+{days} days')")
    }
}

/// Unix microseconds of the start of `day` in the report's calendar
/// ([`indicators::REPORT_UTC_OFFSET_SECS`]).
fn day_start_micros(day: NaiveDate) -> i64 {
    day.and_time(chrono::NaiveTime::MIN)
        .and_utc()
        .timestamp_micros()
        - indicators::REPORT_UTC_OFFSET_SECS * 1_000_000
}

/// The statements of the indicators added for issue 14: long-acting timeliness, one-child
/// certificates held, marriages, one-son households, information accuracy, supply use, and
/// births by the mother's residence. Each is its own statement, beside those of [`statements`].
fn indicator_statements(w: &Window, postgres: bool) -> Vec<Stmt> {
    let long = list(LONG_ACTING_METHODS);
    let mut out = Vec::new();

    // 长效避孕及时率: each mother of the period's births once (by her last birth in it), with
    // her window `we` = birth date + N days; timely when a long-acting measure (hers, or her
    // husband's vasectomy by the couple rule of [`husband_measure`]) started
    // between the birth and the window's end, and by the period end.
    let we = date_plus_days(postgres, "y.bd", w.rules.long_acting_within_days);
    let in_window = "m.started_on >= y.bd AND m.started_on <= y.we AND m.started_on <= :e \
                     AND NOT m.deleted";
    out.push(Stmt {
        with: Some(format!(
            "SELECT z.org_unit AS org_unit, z.we AS we, \
               CASE WHEN EXISTS (SELECT 1 FROM measures m WHERE m.person_id = z.mid \
                      AND m.method IN ({long}) AND {iw}) \
                 OR EXISTS (SELECT 1 FROM persons wf WHERE wf.id = z.mid \
                      AND {husbands} IS NOT NULL) \
               THEN 1 ELSE 0 END AS t \
             FROM (SELECT y.org_unit AS org_unit, y.mid AS mid, y.bd AS bd, {we} AS we \
               FROM (SELECT b.org_unit AS org_unit, b.mother_id AS mid, MAX(b.birth_date) AS bd \
                 FROM births b WHERE {} AND b.birth_date >= :s AND b.birth_date <= :e \
                 GROUP BY b.org_unit, b.mother_id) y) z",
            range("b"),
            iw = in_window.replace("y.", "z."),
            husbands = husband_measure(
                "wf",
                &spouse_at_end_lookup("wf"),
                "1",
                &format!("m.method IN ({long}) AND {}", in_window.replace("y.", "z."))
            ),
        )),
        from: "x".into(),
        aggs: vec![
            ("mothers_timely_due", when("x.t = 1 OR x.we <= :e")),
            ("mothers_timely", "COALESCE(SUM(x.t), 0)".into()),
            ("mothers_timely_pending", when("x.t = 0 AND x.we > :e")),
        ],
        adds: false,
        hash_joins: false,
        beside: false,
    });

    // One-child parents' certificates held at the period end: every certificate record of a
    // year up to the period's, whenever issued; a holder (its household, or the person's, or
    // the person without one) counts once.
    let certificate = |alias: &str| {
        format!(
            "{} AND {alias}.kind = 'one_child_certificate' AND {alias}.year <= :ye",
            range(alias)
        )
    };
    out.push(Stmt::new(
        format!(
            "benefits x LEFT JOIN persons p ON p.id = x.person_id WHERE {}",
            certificate("x")
        ),
        vec![(
            "one_child_certificates_held",
            "COUNT(DISTINCT COALESCE(x.household_id, p.household_id, x.person_id))".into(),
        )],
    ));
    out.push(Stmt::new(
        format!(
            "(SELECT DISTINCT COALESCE(c.household_id, cp.household_id) AS hh \
               FROM benefits c LEFT JOIN persons cp ON cp.id = c.person_id WHERE {}) hc \
             CROSS JOIN households x WHERE x.id = hc.hh AND {} AND x.one_child",
            certificate("c"),
            range("x")
        ),
        vec![("households_one_child_certified", "COUNT(*)".into())],
    ));

    // 独男户: counted like 独生子女户 (the register's one-child flag), when the household's
    // children (relation `child`, live, not marked dead) are sons only: the greatest of 1 for
    // a son and 2 for a daughter is 1. A scalar look-up per flagged household, by the
    // household index: as `EXISTS`, PostgreSQL made it a merge join over the whole index.
    out.push(Stmt::new(
        format!(
            "households x WHERE {} AND x.one_child \
             AND (SELECT MAX(CASE c.sex WHEN 'male' THEN 1 WHEN 'female' THEN 2 END) \
               FROM persons c WHERE c.household_id = x.id AND NOT c.deleted \
                 AND c.relation = 'child' AND (c.alive IS NULL OR c.alive)) = 1",
            range("x"),
        ),
        vec![("households_one_son", "COUNT(*)".into())],
    ));

    // Marriages of the period, counted by the woman (a couple is one bride): 当年新婚对数; of
    // them, first marriages (status `first_marriage`) and late ones (晚婚).
    // Marital status and marriage date at the period end, from the history (joined as `se`),
    // so a divorce or remarriage after the period does not change it. The women looked at:
    // those whose recorded marriage date is on or after the period start, and those whose
    // marital status changed after its end (their date then may differ), found by the
    // marriage-date index and the history, not by a scan of every person.
    let since_end = marriage_date_from_key("se.ms", "p.marriage_date");
    out.push(Stmt {
        with: Some(format!(
            "SELECT y.org_unit AS org_unit, y.birth_date AS birth_date, \
               y.marriage_date AS marriage_date, y.ms AS ms FROM (\
             SELECT p.org_unit AS org_unit, p.birth_date AS birth_date, \
               {since_end} AS marriage_date, {status} AS ms \
             FROM persons p {joins} WHERE {} AND p.sex = 'female' \
               AND p.id IN (SELECT c.id FROM persons c WHERE c.marriage_date >= :s AND {} \
                 UNION SELECT s.person_id FROM person_status_changes s \
                 WHERE s.field = 'marital_status' AND s.effective_on > :e \
                   AND s.org_unit >= :lo AND s.org_unit < :hi)) y \
             WHERE y.marriage_date >= :s AND y.marriage_date <= :e",
            range("p"),
            range("c"),
            status = status_at("se", "ms", "p.marital_status"),
            joins = status_changes_join("se", "> :e"),
        )),
        from: "x".into(),
        aggs: vec![
            ("new_couples", "COUNT(*)".into()),
            ("women_first_married", when("x.ms = 'first_marriage'")),
            (
                "women_first_married_late",
                when(&format!(
                    "x.ms = 'first_marriage' AND {}",
                    indicators::late_marriage_sql("x")
                )),
            ),
        ],
        adds: false,
        hash_joins: false,
        beside: false,
    });

    // 信息准确率: records with a version received (and checked) in the period, by the
    // version's village; accurate when none of the record's flags was open at the period end.
    // Record ids are UUIDs, unique across the ledgers: a record is its id.
    let key = "x.record_id";
    out.push(Stmt::new(
        format!(
            "record_versions x WHERE {} AND x.created_at >= :us_from AND x.created_at < :us_to",
            range("x")
        ),
        vec![
            ("records_checked", format!("COUNT(DISTINCT {key})")),
            (
                "records_checked_accurate",
                format!(
                    "COUNT(DISTINCT CASE WHEN NOT EXISTS (SELECT 1 FROM flags f \
                       WHERE f.entity = x.entity AND f.record_id = x.record_id \
                         AND f.raised_at < :us_to \
                         AND (f.cleared_at IS NULL OR f.cleared_at >= :us_to)) \
                     THEN {key} END)"
                ),
            ),
        ],
    ));

    // 符合政策生育率 by the mother's residence on the day of the birth: floating (流动) when
    // away then (the latest migration by that day is `out`), a registered in-migrant (流入)
    // who had arrived, before the first record when that is an `in`, or, without any
    // migration record, registered as moved out or in; resident (常住) otherwise, and when the
    // mother is not on record.
    let key_b = MIGRATION_KEY;
    let mrange = range("m");
    // Her registered residence on the day of the birth, from the history.
    let residence_then = status_from_key(
        &status_key_lookup("b.mother_id", "residence", "> b.birth_date"),
        "p.residence",
    );
    let floating = "(y.at_b LIKE '%out' OR (y.at_b LIKE '%in' AND y.res = 'moved_in') \
         OR (y.at_b IS NULL AND y.at_0 LIKE '%in') \
         OR (y.at_0 IS NULL AND y.res IN ('moved_out', 'moved_in')))";
    out.push(Stmt {
        with: Some(format!(
            "SELECT y.org_unit AS org_unit, y.wp AS wp, \
               CASE WHEN {floating} THEN 1 ELSE 0 END AS fl \
             FROM (SELECT b.org_unit AS org_unit, \
                 CASE WHEN b.within_policy THEN 1 ELSE 0 END AS wp, {residence_then} AS res, \
                 (SELECT MAX({key_b}) FROM migrations_log m WHERE m.person_id = b.mother_id \
                   AND {mrange} AND m.moved_on <= b.birth_date) AS at_b, \
                 (SELECT MIN({key_b}) FROM migrations_log m WHERE m.person_id = b.mother_id \
                   AND {mrange}) AS at_0 \
               FROM births b LEFT JOIN persons p ON p.id = b.mother_id \
               WHERE {} AND b.birth_date >= :s AND b.birth_date <= :e) y",
            range("b")
        )),
        from: "x".into(),
        aggs: vec![
            ("births_resident", when("x.fl = 0")),
            (
                "births_resident_within_policy",
                when("x.fl = 0 AND x.wp = 1"),
            ),
            ("births_floating", when("x.fl = 1")),
            (
                "births_floating_within_policy",
                when("x.fl = 1 AND x.wp = 1"),
            ),
        ],
        adds: false,
        hash_joins: false,
        beside: false,
    });
    out
}

#[derive(QueryableByName)]
struct KeyedJson {
    #[diesel(sql_type = Text)]
    k: String,
    #[diesel(sql_type = Text)]
    j: String,
}

/// Runs one count statement with its `:name` values bound, typed. It is not kept prepared: each
/// report plans its statements for the window's values (a prepared copy measured no faster on
/// either database, bench/analysis.md).
fn load_keyed(
    conn: &mut DbConn,
    sql: &str,
    params: &[(&str, Bind<'_>)],
) -> AppResult<Vec<KeyedJson>> {
    Ok(SqlStmt::named(sql, params).uncached().load_on(conn)?)
}

fn key_expr(by: KeyBy) -> String {
    match by {
        KeyBy::Total => "CAST('' AS TEXT)".into(),
        KeyBy::Prefix(n) => format!("substr(x.org_unit, 1, {n})"),
        KeyBy::Unit => "x.org_unit".into(),
    }
}

/// Every count of [`COUNTS`] for the window, one entry per group key (only keys with any row;
/// callers fill the rest with [`zero`]).
pub fn count(
    conn: &mut DbConn,
    second: Option<&mut DbConn>,
    w: &Window,
    by: KeyBy,
) -> AppResult<BTreeMap<String, Counts>> {
    let mut out = run_split(conn, second, w, by, |_| true)?;
    for counts in out.values_mut() {
        for d in COUNTS {
            counts.entry(d.key.to_string()).or_insert(0);
        }
        derive(counts);
    }
    Ok(out)
}

/// [`count`] grouped by `by`, and the whole window's counts beside it, from one run of the
/// statements: a count over rows each keyed to one unit is the sum of its groups; only the
/// statements with a distinct-person count ([`Stmt::counts_distinct`]: a woman with visits in
/// two villages is one woman checked in the township) run again for the whole window.
pub fn count_with_total(
    conn: &mut DbConn,
    second: Option<&mut DbConn>,
    w: &Window,
    by: KeyBy,
) -> AppResult<(BTreeMap<String, Counts>, Counts)> {
    let groups = count(conn, second, w, by)?;
    if by == KeyBy::Total {
        let total = groups.get("").cloned().unwrap_or_else(zero);
        return Ok((groups, total));
    }
    let mut total = zero();
    for c in groups.values() {
        add(&mut total, c);
    }
    if let Some(whole) = run(conn, w, KeyBy::Total, Stmt::counts_distinct)?.remove("") {
        total.extend(whole);
    }
    derive(&mut total);
    Ok((groups, total))
}

/// Runs the statements `pick` selects over the window, grouped by `by`; with `second` (a
/// second connection in the same snapshot, [`crate::db::Db::read_split`]) the statements
/// marked [`Stmt::beside`] run on it, on a thread of their own, while the others run on
/// `conn`. Each count comes from one statement (the persons' corrections add to theirs), so the
/// two lanes' counts add up to one run's. (Cutting the subtree in two instead did not halve
/// the work: PostgreSQL scans the whole persons table for either half.)
fn run_split(
    conn: &mut DbConn,
    second: Option<&mut DbConn>,
    w: &Window,
    by: KeyBy,
    pick: impl Fn(&Stmt) -> bool + Sync,
) -> AppResult<BTreeMap<String, Counts>> {
    let Some(second) = second else {
        return run(conn, w, by, pick);
    };
    let (first, other) = std::thread::scope(|scope| {
        let other = scope.spawn(|| run(second, w, by, |s| pick(s) && s.beside));
        let first = run(conn, w, by, |s| pick(s) && !s.beside);
        let other = other
            .join()
            .unwrap_or_else(|_| Err(AppError::Internal("report count thread panicked".into())));
        (first, other)
    });
    let mut out = first?;
    for (k, c) in other? {
        add(out.entry(k).or_default(), &c);
    }
    Ok(out)
}

/// Runs the statements `pick` selects, grouped by `by`: their counts only, not yet
/// [`derive`]d.
fn run(
    conn: &mut DbConn,
    w: &Window,
    by: KeyBy,
    pick: impl Fn(&Stmt) -> bool,
) -> AppResult<BTreeMap<String, Counts>> {
    let postgres = matches!(conn, DbConn::Postgres(_));
    if postgres {
        // These statements are short aggregates with many expressions: PostgreSQL's JIT would
        // spend longer compiling them (over a second on a county) than they take to run.
        diesel::sql_query("SET LOCAL jit = off").execute(conn)?;
    }
    let mut nestloop_off = false;
    let (lo, hi) = subtree_range(&w.org_unit);
    let (wlo, whi) = indicators::wcba_birth_date_bounds(w.end);
    let s = w.start.format("%Y-%m-%d").to_string();
    let e = w.end.format("%Y-%m-%d").to_string();
    let wlo = wlo.format("%Y-%m-%d").to_string();
    let whi = whi.format("%Y-%m-%d").to_string();
    let (ys, ye) = (i64::from(w.start.year()), i64::from(w.end.year()));
    let us_from = day_start_micros(w.start);
    let us_to = day_start_micros(w.end.succ_opt().unwrap_or(w.end));
    let params: [(&str, Bind); 10] = [
        ("lo", Bind::Text(Some(&lo))),
        ("hi", Bind::Text(Some(&hi))),
        ("s", Bind::Text(Some(&s))),
        ("e", Bind::Text(Some(&e))),
        ("wlo", Bind::Text(Some(&wlo))),
        ("whi", Bind::Text(Some(&whi))),
        ("ys", Bind::Int(Some(ys))),
        ("ye", Bind::Int(Some(ye))),
        ("us_from", Bind::Int(Some(us_from))),
        ("us_to", Bind::Int(Some(us_to))),
    ];
    let key = key_expr(by);
    let mut out: BTreeMap<String, Counts> = BTreeMap::new();
    for stmt in statements()
        .into_iter()
        .chain(indicator_statements(w, postgres))
        .filter(|s| pick(s))
    {
        let aggs: Vec<&str> = stmt.aggs.iter().map(|(_, a)| a.as_str()).collect();
        // The key column is named after the statement's alias `x`; persons use `p` (and so do
        // the corrections, keyed by the person's unit).
        let from = &stmt.from;
        let key = if from.starts_with("persons p") || stmt.adds {
            key.replace("x.", "p.")
        } else {
            key.clone()
        };
        let json = if postgres {
            format!("CAST(json_build_array({}) AS TEXT)", aggs.join(", "))
        } else {
            format!("json_array({})", aggs.join(", "))
        };
        let group = if by == KeyBy::Total {
            String::new()
        } else {
            format!(" GROUP BY {key}")
        };
        let with = match &stmt.with {
            Some(body) => format!("WITH x AS MATERIALIZED ({body}) "),
            None => String::new(),
        };
        let sql = format!("{with}SELECT {key} AS k, {json} AS j FROM {from}{group}");
        let started = std::time::Instant::now();
        if postgres && stmt.hash_joins != nestloop_off {
            // The married-women statement joins the women of the subtree to small per-person
            // aggregates of the ledgers: a hash join is right at every size, and everything
            // else in it is a look-up per row. The planner misjudges how many women pass the
            // married-at-end rule (a few rows, for 25,000 in a township), and the nested
            // loops it then picks rescan the aggregates per woman: 4.3 s instead of 0.4 s on
            // the 300,000-person county, 67 s before any ANALYZE (bench/analysis.md).
            nestloop_off = stmt.hash_joins;
            let on = if nestloop_off { "off" } else { "on" };
            diesel::sql_query(format!("SET LOCAL enable_nestloop = {on}")).execute(conn)?;
        }
        tracing::trace!(%sql, "report count statement");
        let rows = load_keyed(conn, &sql, &params)?;
        tracing::debug!(
            table = if stmt.adds {
                "correction"
            } else {
                from.split_whitespace().next().unwrap_or("")
            },
            rows = rows.len(),
            ms = started.elapsed().as_millis() as u64,
            "report count statement"
        );
        for row in rows {
            let values: Vec<serde_json::Value> = serde_json::from_str(&row.j)
                .map_err(|e| AppError::Internal(format!("count row: {e}")))?;
            let entry = out.entry(row.k).or_default();
            for ((name, _), v) in stmt.aggs.iter().zip(values) {
                let n = v
                    .as_i64()
                    .or_else(|| v.as_f64().map(|f| f.round() as i64))
                    .unwrap_or(0);
                if stmt.adds {
                    *entry.entry((*name).to_string()).or_insert(0) += n;
                } else {
                    entry.insert((*name).to_string(), n);
                }
            }
        }
    }
    Ok(out)
}

/// Counts computed from other counts.
fn derive(c: &mut Counts) {
    let g = |k: &str| c.get(k).copied().unwrap_or(0);
    let total = g("ops_iud_insertion")
        + g("ops_iud_removal")
        + g("ops_tubal_ligation")
        + g("ops_vasectomy")
        + g("ops_induced");
    c.insert("ops_total".into(), total);
}

/// All counts at zero (an org unit without records).
pub fn zero() -> Counts {
    COUNTS.iter().map(|d| (d.key.to_string(), 0)).collect()
}

/// Sums rows (a roll-up of villages).
pub fn add(into: &mut Counts, other: &Counts) {
    for (k, v) in other {
        *into.entry(k.clone()).or_insert(0) += v;
    }
}

/// The label of a count key.
pub fn def(key: &str) -> Option<&'static CountDef> {
    COUNTS.iter().find(|d| d.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value of the window is bound, never written into the SQL: the texts depend on the
    /// statement, the grouping and the rules only.
    #[test]
    fn statement_texts_do_not_depend_on_the_window() {
        let text = |start: (i32, u32, u32), end: (i32, u32, u32), postgres: bool| -> Vec<String> {
            let d = |(y, m, dd): (i32, u32, u32)| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
            let w = Window {
                org_unit: "130131102".into(),
                start: d(start),
                end: d(end),
                rules: Default::default(),
            };
            statements()
                .into_iter()
                .chain(indicator_statements(&w, postgres))
                .map(|st| format!("{:?} {} {:?}", st.with, st.from, st.aggs))
                .collect()
        };
        for postgres in [false, true] {
            let a = text((2026, 10, 1), (2026, 10, 31), postgres);
            assert_eq!(a, text((2019, 1, 1), (2024, 12, 31), postgres));
            assert_eq!(a, text((2026, 2, 1), (2026, 2, 28), postgres));
        }
    }

    #[test]
    fn every_count_is_produced_once() {
        let s = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let w = Window {
            org_unit: "130131".into(),
            start: s,
            end: s,
            rules: Default::default(),
        };
        let mut all = statements();
        all.extend(indicator_statements(&w, false));
        let mut keys: Vec<&str> = all
            .iter()
            .filter(|st| !st.adds)
            .flat_map(|st| st.aggs.iter().map(|(k, _)| *k))
            .collect();
        for st in all.iter().filter(|st| st.adds) {
            assert!(st.aggs.iter().all(|(k, _)| keys.contains(k)));
        }
        keys.push("ops_total");
        keys.sort_unstable();
        let mut defs: Vec<&str> = COUNTS.iter().map(|d| d.key).collect();
        defs.sort_unstable();
        assert_eq!(keys, defs);
        for m in METHOD_PRIORITY {
            assert!(crate::domain::entities::METHOD
                .iter()
                .any(|c| c.value == *m));
        }
    }
}
