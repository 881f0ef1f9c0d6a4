//! The indicators of the monthly report (月报) and the counting rules (统计口径) behind them:
//! the one place for formulas and thresholds, so that a place counting differently changes them
//! here and nowhere else. The report queries count; this module turns counts into rates.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::age::age_on;

/// Youngest age (completed years at period end) of a woman of childbearing age (育龄妇女).
pub const WCBA_MIN_AGE: i32 = 15;
/// Oldest age (completed years at period end) of a woman of childbearing age.
pub const WCBA_MAX_AGE: i32 = 49;

/// Marital statuses (`entities::MARITAL_STATUS`) counted as married (已婚). Divorced and widowed
/// women are not in the denominator of the contraceptive prevalence.
pub const MARRIED_STATUSES: &[&str] = &["first_marriage", "remarried"];

/// Methods (`entities::METHOD`) counted as long-acting (长效措施). A vasectomy is the husband's
/// measure but counts for his wife, both here and for the contraceptive prevalence.
pub const LONG_ACTING_METHODS: &[&str] =
    &["iud_insertion", "tubal_ligation", "vasectomy", "implant"];

/// Methods (`entities::METHOD`) of a man that cover his wife (男扎, 避孕套): a husband's other
/// measure records (a data error, flagged by the checks) do not count for her.
pub const MALE_METHODS: &[&str] = &["vasectomy", "condoms"];

/// Visit kinds (`entities::VISIT_KIND`) of the 'three checks' (三查) behind the check coverage.
pub const THREE_CHECKS: &[&str] = &["iud_check", "pregnancy_check", "disease_check"];

/// Birth places (`entities::BIRTH_PLACE`) that count as a delivery in a medical facility (住院
/// 分娩): a county or higher hospital and a township clinic (乡镇卫生院).
pub const FACILITY_BIRTH_PLACES: &[&str] = &["hospital", "township_clinic"];

/// Days after a birth within which a long-acting measure counts as timely (长效避孕及时率), by
/// default: the setting `report.long_acting_within_days`.
pub const LONG_ACTING_WITHIN_DAYS: u32 = 90;

/// Youngest age (completed years on the wedding day) of a late first marriage of a woman (晚婚:
/// women at 23 or older, men at 25).
pub const LATE_MARRIAGE_AGE_WOMEN: i32 = 23;

/// Methods (`entities::METHOD`) that need contraceptive supplies (药具) handed out: the women
/// counted under them are the denominator of the supply use rate (药具使用率).
pub const SUPPLY_METHODS: &[&str] = &["pills", "condoms"];

/// Offset from UTC, in seconds, of the calendar days that server timestamps (when a record was
/// received and checked) are counted in: China Standard Time (北京时间, UTC+8).
pub const REPORT_UTC_OFFSET_SECS: i64 = 8 * 3600;

/// The counting rules a deployment sets (the `[report]` section of the settings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// A long-acting measure started on the day of a birth or up to this many days after it is
    /// timely (长效避孕及时率).
    pub long_acting_within_days: u32,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            long_acting_within_days: LONG_ACTING_WITHIN_DAYS,
        }
    }
}

/// Decimal places kept in every reported value.
const DECIMALS: i32 = 2;

/// A reported ratio: the counts it comes from and its value, rounded to two decimals.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, ToSchema)]
pub struct Rate {
    pub numerator: i64,
    pub denominator: i64,
    /// `None` when the denominator is zero: the indicator does not apply (no births, no women
    /// due a check), which is not the same as a rate of 0 and must not show as one.
    pub value: Option<f64>,
}

fn round(x: f64) -> f64 {
    let scale = 10f64.powi(DECIMALS);
    (x * scale).round() / scale
}

/// `numerator / denominator * 100`.
pub fn percent(numerator: i64, denominator: i64) -> Rate {
    Rate {
        numerator,
        denominator,
        value: (denominator != 0).then(|| round(numerator as f64 / denominator as f64 * 100.0)),
    }
}

/// `count / average_population * 1000 * annualise`, for the per-mille population rates.
///
/// `denominator` holds the average population rounded to a whole person, for display; the value
/// is computed from the unrounded average (which ends in .5 when the start and end populations
/// differ by an odd number).
fn per_mille(count: i64, average_population: f64, annualise: f64) -> Rate {
    Rate {
        numerator: count,
        denominator: average_population.round() as i64,
        value: (average_population > 0.0)
            .then(|| round(count as f64 / average_population * 1000.0 * annualise)),
    }
}

/// Average population of a period (期内平均人口): the mean of the populations at its start and
/// end, the usual rule when monthly counts are not kept.
pub fn average_population(start: i64, end: i64) -> f64 {
    (start + end) as f64 / 2.0
}

/// Days in the calendar year `year` (365 or 366), the `days_in_year` of [`annualise`].
pub fn days_in_year(year: i32) -> u32 {
    if NaiveDate::from_ymd_opt(year, 2, 29).is_some() {
        366
    } else {
        365
    }
}

/// Factor that turns a count over `days_in_period` days into a yearly count, so that a month's
/// or a quarter's birth rate compares with a yearly target. A period of a year or more (and an
/// empty one, which has nothing to scale) gives 1.
pub fn annualise(days_in_period: u32, days_in_year: u32) -> f64 {
    if days_in_period == 0 || days_in_period >= days_in_year {
        1.0
    } else {
        f64::from(days_in_year) / f64::from(days_in_period)
    }
}

/// 人口出生率 ‰: births in the period per thousand of the average population, times
/// [`annualise`].
pub fn crude_birth_rate(births: i64, average_population: f64, annualise: f64) -> Rate {
    per_mille(births, average_population, annualise)
}

/// 人口死亡率 ‰: deaths in the period per thousand of the average population, times
/// [`annualise`].
pub fn crude_death_rate(deaths: i64, average_population: f64, annualise: f64) -> Rate {
    per_mille(deaths, average_population, annualise)
}

/// 自然增长率 ‰: birth rate minus death rate, taken from the two reported (rounded) values so
/// that the three figures on the report add up. `None` when either rate is.
pub fn natural_growth_rate(birth_rate: &Rate, death_rate: &Rate) -> Rate {
    Rate {
        numerator: birth_rate.numerator - death_rate.numerator,
        denominator: birth_rate.denominator,
        value: birth_rate
            .value
            .zip(death_rate.value)
            .map(|(b, d)| round(b - d)),
    }
}

/// 符合政策生育率 %: births within policy / births.
pub fn policy_compliant_birth_rate(births_within_policy: i64, births: i64) -> Rate {
    percent(births_within_policy, births)
}

/// 出生人口性别比: male births per 100 female births (no unit).
pub fn sex_ratio_at_birth(male_births: i64, female_births: i64) -> Rate {
    percent(male_births, female_births)
}

/// 综合避孕率 %: married women of childbearing age (see
/// [`is_married_woman_of_childbearing_age`]) with a current measure, theirs or their husband's,
/// / married women of childbearing age.
pub fn contraceptive_prevalence(women_with_measure: i64, married_women: i64) -> Rate {
    percent(women_with_measure, married_women)
}

/// 长效措施落实率 %: women who gave birth in the period and have a measure of
/// [`LONG_ACTING_METHODS`] / women who gave birth in the period.
pub fn long_acting_measure_rate(women_with_long_acting: i64, women_who_gave_birth: i64) -> Rate {
    percent(women_with_long_acting, women_who_gave_birth)
}

/// 三查受检率 %: women checked ([`THREE_CHECKS`]) / women due a check.
pub fn check_coverage(women_checked: i64, women_due: i64) -> Rate {
    percent(women_checked, women_due)
}

/// 随访服务率 %: follow-ups done / follow-ups due.
pub fn follow_up_rate(done: i64, due: i64) -> Rate {
    percent(done, due)
}

/// 办证率 %: married women of childbearing age away (流出) at period end with a
/// marriage-and-childbearing certificate (婚育证明) / married women of childbearing age away at
/// period end. A stock at the report date, as the seeds count it ("流出已婚育龄妇女59人，办证59
/// 人，办证率100%"), not the flow of the period.
pub fn certificate_rate(with_certificate: i64, married_women_away: i64) -> Rate {
    percent(with_certificate, married_women_away)
}

/// 住院分娩率 %: births of the period in a medical facility ([`FACILITY_BIRTH_PLACES`]) /
/// births of the period.
pub fn hospital_delivery_rate(births_in_facility: i64, births: i64) -> Rate {
    percent(births_in_facility, births)
}

/// 查证率 %: in-migrants whose certificate was checked / in-migrants.
pub fn check_rate(checked: i64, in_migrants: i64) -> Rate {
    percent(checked, in_migrants)
}

/// 长效避孕及时率 %: mothers of the period's births with a long-acting measure
/// ([`LONG_ACTING_METHODS`]) started within [`Rules::long_acting_within_days`] of the birth /
/// mothers whose window is over by the period end or who already have one (a mother whose
/// window is still open without a measure is pending, outside the rate).
pub fn long_acting_timeliness(timely: i64, mothers_due: i64) -> Rate {
    percent(timely, mothers_due)
}

/// 独生子女领证率 %: one-child households (独生子女户) holding a one-child parents' certificate
/// (独生子女父母光荣证) at the period end / one-child households.
pub fn one_child_certificate_rate(certified: i64, one_child_households: i64) -> Rate {
    percent(certified, one_child_households)
}

/// 晚婚率 %: women first married in the period at [`LATE_MARRIAGE_AGE_WOMEN`] or older /
/// women first married in the period.
pub fn late_marriage_rate(late: i64, first_married: i64) -> Rate {
    percent(late, first_married)
}

/// Whether a woman born on `birth` married late (晚婚) on `married`: at least
/// [`LATE_MARRIAGE_AGE_WOMEN`] in completed years ([`age_on`]).
pub fn late_marriage(birth: NaiveDate, married: NaiveDate) -> bool {
    age_on(birth, married) >= LATE_MARRIAGE_AGE_WOMEN
}

/// [`late_marriage`] as SQL over a person row `alias` (its `birth_date` and `marriage_date`,
/// text `YYYY-MM-DD`): the completed years by year difference less one before the birthday,
/// which is [`age_on`] (a 29 February birthday falls on 1 March in common years).
pub fn late_marriage_sql(alias: &str) -> String {
    format!(
        "(CAST(substr({alias}.marriage_date, 1, 4) AS INTEGER) \
         - CAST(substr({alias}.birth_date, 1, 4) AS INTEGER) \
         - (CASE WHEN substr({alias}.marriage_date, 6, 2) || substr({alias}.marriage_date, 9, 2) \
              < substr({alias}.birth_date, 6, 2) || substr({alias}.birth_date, 9, 2) \
            THEN 1 ELSE 0 END) >= {LATE_MARRIAGE_AGE_WOMEN})"
    )
}

/// 信息准确率 %: records checked in the period (written to the server, when the logic checks
/// run) without a logic flag open at the period end / records checked in the period.
pub fn information_accuracy(accurate: i64, checked: i64) -> Rate {
    percent(accurate, checked)
}

/// 药具使用率 %: married women of childbearing age whose measure is one of
/// [`SUPPLY_METHODS`] and who (or whose husband) received supplies in the period / married
/// women of childbearing age whose measure is one of them.
pub fn supply_use_rate(supplied: i64, supply_method_users: i64) -> Rate {
    percent(supplied, supply_method_users)
}

/// 一孩率 %: first births / births.
pub fn first_child_share(first_births: i64, births: i64) -> Rate {
    percent(first_births, births)
}

/// Whether a person was married on `at` (the period end): of a married status
/// ([`MARRIED_STATUSES`]) and married by then, so that a wedding recorded after a period does
/// not change that period's report. Without a marriage date the status alone decides.
pub fn married_on(marital_status: &str, marriage_date: Option<NaiveDate>, at: NaiveDate) -> bool {
    MARRIED_STATUSES.contains(&marital_status) && marriage_date.is_none_or(|d| d <= at)
}

/// [`married_on`] as SQL over a status and a marriage date given as SQL expressions (e.g. the
/// status a person had on a past date, from the history of status changes).
pub fn married_at_sql(status: &str, marriage_date: &str, at: &str) -> String {
    let statuses: Vec<String> = MARRIED_STATUSES.iter().map(|v| format!("'{v}'")).collect();
    format!(
        "({status} IN ({}) AND ({marriage_date} IS NULL OR {marriage_date} <= {at}))",
        statuses.join(", ")
    )
}

/// Whether a person is a married woman of childbearing age (已婚育龄妇女) on `at`, the
/// period end: female, married on `at` ([`married_on`]) and aged
/// [`WCBA_MIN_AGE`]..=[`WCBA_MAX_AGE`].
pub fn is_married_woman_of_childbearing_age(
    sex: &str,
    marital_status: &str,
    marriage_date: Option<NaiveDate>,
    birth_date: NaiveDate,
    at: NaiveDate,
) -> bool {
    sex == "female"
        && married_on(marital_status, marriage_date, at)
        && (WCBA_MIN_AGE..=WCBA_MAX_AGE).contains(&age_on(birth_date, at))
}

/// The birth dates, both ends inclusive, of people aged [`WCBA_MIN_AGE`]..=[`WCBA_MAX_AGE`] on
/// `at`, so that SQL can count with `birth_date BETWEEN ? AND ?` on an index instead of computing
/// ages row by row. Agrees with [`age_on`].
pub fn wcba_birth_date_bounds(at: NaiveDate) -> (NaiveDate, NaiveDate) {
    let earliest = latest_birth_for_age(WCBA_MAX_AGE + 1, at)
        .succ_opt()
        .unwrap_or(NaiveDate::MAX);
    (earliest, latest_birth_for_age(WCBA_MIN_AGE, at))
}

/// The last birth date of someone at least `age` on `at`: the same month and day `age` years
/// earlier, or 28 February when `at` is 29 February and that year is common (a 29 February
/// birthday falls on 1 March then, see [`age_on`]).
fn latest_birth_for_age(age: i32, at: NaiveDate) -> NaiveDate {
    let year = at.year() - age;
    NaiveDate::from_ymd_opt(year, at.month(), at.day())
        .or_else(|| NaiveDate::from_ymd_opt(year, 2, 28))
        // Only for `at` within `age` years of chrono's earliest date: nobody is born before it.
        .unwrap_or(NaiveDate::MIN)
}

/// Which way a target points: a floor for the service rates, a ceiling for the birth rate, or a
/// band with both ("出生人口性别比控制在103-107之间").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    AtLeast,
    AtMost,
    /// From [`Target::value`] (the floor) to [`Target::upper`] (the ceiling), both inclusive.
    Between,
}

impl Direction {
    /// Stable code, as serialised and stored with targets.
    pub fn code(self) -> &'static str {
        match self {
            Direction::AtLeast => "at_least",
            Direction::AtMost => "at_most",
            Direction::Between => "between",
        }
    }

    pub fn parse(code: &str) -> Option<Direction> {
        [Direction::AtLeast, Direction::AtMost, Direction::Between]
            .into_iter()
            .find(|d| d.code() == code)
    }
}

/// The indicators of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Indicator {
    CrudeBirthRate,
    CrudeDeathRate,
    NaturalGrowthRate,
    PolicyCompliantBirthRate,
    SexRatioAtBirth,
    ContraceptivePrevalence,
    LongActingMeasureRate,
    CheckCoverage,
    FollowUpRate,
    CertificateRate,
    CheckRate,
    FirstChildShare,
    HospitalDeliveryRate,
    LongActingTimeliness,
    OneChildCertificateRate,
    LateMarriageRate,
    InformationAccuracy,
    SupplyUseRate,
    PolicyCompliantBirthRateResident,
    PolicyCompliantBirthRateFloating,
}

impl Indicator {
    /// Every indicator, in the order of the report.
    pub const ALL: [Indicator; 20] = [
        Indicator::CrudeBirthRate,
        Indicator::CrudeDeathRate,
        Indicator::NaturalGrowthRate,
        Indicator::PolicyCompliantBirthRate,
        Indicator::SexRatioAtBirth,
        Indicator::ContraceptivePrevalence,
        Indicator::LongActingMeasureRate,
        Indicator::CheckCoverage,
        Indicator::FollowUpRate,
        Indicator::CertificateRate,
        Indicator::CheckRate,
        Indicator::FirstChildShare,
        Indicator::HospitalDeliveryRate,
        Indicator::LongActingTimeliness,
        Indicator::OneChildCertificateRate,
        Indicator::LateMarriageRate,
        Indicator::InformationAccuracy,
        Indicator::SupplyUseRate,
        Indicator::PolicyCompliantBirthRateResident,
        Indicator::PolicyCompliantBirthRateFloating,
    ];

    /// Stable code, as serialised and stored with targets.
    pub fn code(self) -> &'static str {
        match self {
            Indicator::CrudeBirthRate => "crude_birth_rate",
            Indicator::CrudeDeathRate => "crude_death_rate",
            Indicator::NaturalGrowthRate => "natural_growth_rate",
            Indicator::PolicyCompliantBirthRate => "policy_compliant_birth_rate",
            Indicator::SexRatioAtBirth => "sex_ratio_at_birth",
            Indicator::ContraceptivePrevalence => "contraceptive_prevalence",
            Indicator::LongActingMeasureRate => "long_acting_measure_rate",
            Indicator::CheckCoverage => "check_coverage",
            Indicator::FollowUpRate => "follow_up_rate",
            Indicator::CertificateRate => "certificate_rate",
            Indicator::CheckRate => "check_rate",
            Indicator::FirstChildShare => "first_child_share",
            Indicator::HospitalDeliveryRate => "hospital_delivery_rate",
            Indicator::LongActingTimeliness => "long_acting_timeliness",
            Indicator::OneChildCertificateRate => "one_child_certificate_rate",
            Indicator::LateMarriageRate => "late_marriage_rate",
            Indicator::InformationAccuracy => "information_accuracy",
            Indicator::SupplyUseRate => "supply_use_rate",
            Indicator::PolicyCompliantBirthRateResident => "policy_compliant_birth_rate_resident",
            Indicator::PolicyCompliantBirthRateFloating => "policy_compliant_birth_rate_floating",
        }
    }

    pub fn parse(code: &str) -> Option<Indicator> {
        Indicator::ALL.into_iter().find(|i| i.code() == code)
    }

    pub fn zh(self) -> &'static str {
        match self {
            Indicator::CrudeBirthRate => "人口出生率",
            Indicator::CrudeDeathRate => "人口死亡率",
            Indicator::NaturalGrowthRate => "自然增长率",
            Indicator::PolicyCompliantBirthRate => "符合政策生育率",
            Indicator::SexRatioAtBirth => "出生人口性别比",
            Indicator::ContraceptivePrevalence => "综合避孕率",
            Indicator::LongActingMeasureRate => "长效措施落实率",
            Indicator::CheckCoverage => "三查受检率",
            Indicator::FollowUpRate => "随访服务率",
            Indicator::CertificateRate => "办证率",
            Indicator::CheckRate => "查证率",
            Indicator::FirstChildShare => "一孩率",
            Indicator::HospitalDeliveryRate => "住院分娩率",
            Indicator::LongActingTimeliness => "长效避孕及时率",
            Indicator::OneChildCertificateRate => "独生子女领证率",
            Indicator::LateMarriageRate => "晚婚率",
            Indicator::InformationAccuracy => "信息准确率",
            Indicator::SupplyUseRate => "药具使用率",
            Indicator::PolicyCompliantBirthRateResident => "符合政策生育率(常住)",
            Indicator::PolicyCompliantBirthRateFloating => "符合政策生育率(流动)",
        }
    }

    /// Another Chinese name of the same figure that users search for: the seeds call the
    /// policy-compliant birth rate 计划生育率.
    pub fn also_zh(self) -> Option<&'static str> {
        match self {
            Indicator::PolicyCompliantBirthRate => Some("计划生育率"),
            _ => None,
        }
    }

    /// [`Indicator::also_zh`] in English.
    pub fn also_en(self) -> Option<&'static str> {
        match self {
            Indicator::PolicyCompliantBirthRate => Some("family planning rate"),
            _ => None,
        }
    }

    pub fn en(self) -> &'static str {
        match self {
            Indicator::CrudeBirthRate => "crude birth rate",
            Indicator::CrudeDeathRate => "crude death rate",
            Indicator::NaturalGrowthRate => "natural growth rate",
            Indicator::PolicyCompliantBirthRate => "policy-compliant birth rate",
            Indicator::SexRatioAtBirth => "sex ratio at birth",
            Indicator::ContraceptivePrevalence => "contraceptive prevalence",
            Indicator::LongActingMeasureRate => "long-acting measure rate",
            Indicator::CheckCoverage => "check coverage",
            Indicator::FollowUpRate => "follow-up rate",
            Indicator::CertificateRate => "certificate rate (out-migrants)",
            Indicator::CheckRate => "certificate check rate (in-migrants)",
            Indicator::FirstChildShare => "first-child share",
            Indicator::HospitalDeliveryRate => "hospital delivery rate",
            Indicator::LongActingTimeliness => "long-acting measure timeliness",
            Indicator::OneChildCertificateRate => "one-child certificate rate",
            Indicator::LateMarriageRate => "late marriage rate",
            Indicator::InformationAccuracy => "information accuracy",
            Indicator::SupplyUseRate => "contraceptive supply use rate",
            Indicator::PolicyCompliantBirthRateResident => {
                "policy-compliant birth rate, resident mothers"
            }
            Indicator::PolicyCompliantBirthRateFloating => {
                "policy-compliant birth rate, floating mothers"
            }
        }
    }

    /// `‰`, `%`, or empty for the sex ratio (males per 100 females).
    pub fn unit(self) -> &'static str {
        match self {
            Indicator::CrudeBirthRate
            | Indicator::CrudeDeathRate
            | Indicator::NaturalGrowthRate => "‰",
            Indicator::SexRatioAtBirth => "",
            _ => "%",
        }
    }

    /// The usual direction of a target on this indicator: the population rates and the sex ratio
    /// are held down, the service rates pushed up.
    pub fn direction(self) -> Direction {
        match self {
            Indicator::CrudeBirthRate
            | Indicator::CrudeDeathRate
            | Indicator::NaturalGrowthRate
            | Indicator::SexRatioAtBirth => Direction::AtMost,
            _ => Direction::AtLeast,
        }
    }
}

/// A yearly target (目标管理责任书) on one indicator, e.g. contraceptive prevalence at least 88%,
/// or a band: sex ratio at birth between 103 and 107.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Target {
    pub indicator: Indicator,
    pub direction: Direction,
    /// In the indicator's unit: the floor (`at_least`, and `between`) or the ceiling
    /// (`at_most`).
    pub value: f64,
    /// The ceiling of a band (`between`); `null` otherwise.
    pub upper: Option<f64>,
}

impl Target {
    /// The floor, if the target has one.
    pub fn floor(&self) -> Option<f64> {
        match self.direction {
            Direction::AtLeast | Direction::Between => Some(self.value),
            Direction::AtMost => None,
        }
    }

    /// The ceiling, if the target has one.
    pub fn ceiling(&self) -> Option<f64> {
        match self.direction {
            Direction::AtMost => Some(self.value),
            Direction::Between => self.upper,
            Direction::AtLeast => None,
        }
    }
}

/// Which side of its target a value missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Below the floor (`at_least`, or under a band).
    BelowFloor,
    /// Above the ceiling (`at_most`, or over a band).
    AboveCeiling,
}

/// How a reported value stands against its target.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, ToSchema)]
pub struct Attainment {
    pub met: bool,
    /// Points (percentage points, per-mille points) by which the value is better than the target
    /// when positive, worse when negative, e.g. "21 points above target". For a band: the
    /// distance to the nearer bound when inside it, minus the distance to the bound crossed when
    /// outside. Rounded to 2 decimals.
    pub gap: f64,
    /// The side missed; `null` when met.
    pub missed: Option<Missed>,
}

/// Compares a reported value with its target. An indicator that does not apply
/// ([`Rate::value`] `None`) has no attainment; the caller shows it as not applicable.
pub fn attainment(rate_value: f64, target: &Target) -> Attainment {
    let above_floor = target.floor().map(|f| round(rate_value - f));
    let below_ceiling = target.ceiling().map(|c| round(c - rate_value));
    let missed = if above_floor.is_some_and(|g| g < 0.0) {
        Some(Missed::BelowFloor)
    } else if below_ceiling.is_some_and(|g| g < 0.0) {
        Some(Missed::AboveCeiling)
    } else {
        None
    };
    let gap = match (above_floor, below_ceiling) {
        (Some(a), Some(b)) => a.min(b),
        (Some(g), None) | (None, Some(g)) => g,
        (None, None) => 0.0,
    };
    Attainment {
        met: missed.is_none(),
        gap,
        missed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn worked_examples_from_work_reports() {
        assert_eq!(contraceptive_prevalence(1096, 1206).value, Some(90.88));
        assert_eq!(policy_compliant_birth_rate(106, 110).value, Some(96.36));
        assert_eq!(policy_compliant_birth_rate(298, 302).value, Some(98.68));
        // The source report gives 1,623 of 1,836 as "89%": it rounded (and up, from 88.399...).
        // Two decimals are kept here, as for every other indicator.
        assert_eq!(check_coverage(1623, 1836).value, Some(88.40));
    }

    #[test]
    fn rate_keeps_its_counts() {
        let r = follow_up_rate(3, 4);
        assert_eq!((r.numerator, r.denominator, r.value), (3, 4, Some(75.0)));
    }

    #[test]
    fn birth_rate_of_a_31_day_month_is_annualised() {
        // 10 births in January; 12,000 people on 1 January, 12,010 on 31 January.
        let avg = average_population(12_000, 12_010);
        assert_eq!(avg, 12_005.0);
        let r = crude_birth_rate(10, avg, annualise(31, days_in_year(2023)));
        // 10 / 12,005 * 1000 = 0.833 for the month; * 365 / 31 = 9.8077...
        assert_eq!(r.value, Some(9.81));
        assert_eq!((r.numerator, r.denominator), (10, 12_005));
        // Unannualised it would read 0.83, which no yearly target compares with.
        assert_eq!(crude_birth_rate(10, avg, 1.0).value, Some(0.83));
    }

    #[test]
    fn annualise_only_scales_periods_under_a_year() {
        assert_eq!(annualise(366, 366), 1.0);
        assert_eq!(annualise(365, 365), 1.0);
        assert_eq!(annualise(0, 365), 1.0);
        assert_eq!(annualise(73, 365), 5.0);
        assert_eq!(days_in_year(2024), 366);
        assert_eq!(days_in_year(1900), 365);
        assert_eq!(days_in_year(2000), 366);
    }

    #[test]
    fn average_population_may_end_in_a_half() {
        assert_eq!(average_population(100, 101), 100.5);
        assert_eq!(crude_death_rate(1, 100.5, 1.0).denominator, 101);
        assert_eq!(crude_death_rate(1, 100.5, 1.0).value, Some(9.95));
    }

    #[test]
    fn natural_growth_is_birth_minus_death() {
        let births = crude_birth_rate(120, 10_000.0, 1.0);
        let deaths = crude_death_rate(65, 10_000.0, 1.0);
        let growth = natural_growth_rate(&births, &deaths);
        assert_eq!(growth.value, Some(5.5));
        assert_eq!(growth.numerator, 55);
        // Float noise of the subtraction is rounded away: 12.5 - 9.62 is 2.880000000000001.
        let b = Rate {
            numerator: 0,
            denominator: 1,
            value: Some(12.5),
        };
        let d = Rate {
            numerator: 0,
            denominator: 1,
            value: Some(9.62),
        };
        assert_eq!(natural_growth_rate(&b, &d).value, Some(2.88));
        let none = crude_death_rate(0, 0.0, 1.0);
        assert_eq!(natural_growth_rate(&births, &none).value, None);
        assert_eq!(natural_growth_rate(&none, &deaths).value, None);
    }

    #[test]
    fn sex_ratio_is_males_per_hundred_females() {
        assert_eq!(sex_ratio_at_birth(110, 100).value, Some(110.0));
        assert_eq!(sex_ratio_at_birth(3, 0).value, None);
        assert_eq!(Indicator::SexRatioAtBirth.unit(), "");
    }

    #[test]
    fn zero_denominators_do_not_apply() {
        for r in [
            policy_compliant_birth_rate(0, 0),
            contraceptive_prevalence(0, 0),
            long_acting_measure_rate(0, 0),
            check_coverage(0, 0),
            follow_up_rate(0, 0),
            certificate_rate(0, 0),
            check_rate(0, 0),
            first_child_share(0, 0),
            crude_birth_rate(0, average_population(0, 0), 1.0),
            crude_death_rate(0, 0.0, annualise(31, 365)),
        ] {
            assert_eq!(r.value, None);
        }
        // A real zero stays a zero.
        assert_eq!(first_child_share(0, 7).value, Some(0.0));
    }

    #[test]
    fn none_serialises_as_null() {
        let json = serde_json::to_value(check_rate(0, 0)).unwrap();
        assert_eq!(json["value"], serde_json::Value::Null);
    }

    #[test]
    fn indicator_codes_round_trip_and_are_unique() {
        for i in Indicator::ALL {
            assert_eq!(Indicator::parse(i.code()), Some(i));
            assert_eq!(serde_json::to_value(i).unwrap(), i.code());
            assert!(!i.zh().is_empty() && !i.en().is_empty());
        }
        let mut codes: Vec<_> = Indicator::ALL.iter().map(|i| i.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Indicator::ALL.len());
        assert_eq!(Indicator::parse("nope"), None);
        assert_eq!(
            Indicator::PolicyCompliantBirthRate.also_zh(),
            Some("计划生育率")
        );
        for i in Indicator::ALL {
            assert_eq!(i.also_zh().is_some(), i.also_en().is_some());
        }
        assert_eq!(Indicator::CrudeBirthRate.unit(), "‰");
        assert_eq!(Indicator::CheckCoverage.unit(), "%");
        assert_eq!(Indicator::CrudeBirthRate.direction(), Direction::AtMost);
        assert_eq!(
            Indicator::ContraceptivePrevalence.direction(),
            Direction::AtLeast
        );
    }

    #[test]
    fn attainment_gap_is_positive_when_better() {
        let floor = Target {
            indicator: Indicator::ContraceptivePrevalence,
            direction: Direction::AtLeast,
            value: 88.0,
            upper: None,
        };
        assert_eq!(
            attainment(90.88, &floor),
            Attainment {
                met: true,
                gap: 2.88,
                missed: None,
            }
        );
        assert_eq!(
            attainment(88.0, &floor),
            Attainment {
                met: true,
                gap: 0.0,
                missed: None,
            }
        );
        assert_eq!(
            attainment(85.5, &floor),
            Attainment {
                met: false,
                gap: -2.5,
                missed: Some(Missed::BelowFloor),
            }
        );

        let ceiling = Target {
            indicator: Indicator::CrudeBirthRate,
            direction: Direction::AtMost,
            value: 10.0,
            upper: None,
        };
        assert_eq!(
            attainment(9.81, &ceiling),
            Attainment {
                met: true,
                gap: 0.19,
                missed: None,
            }
        );
        assert_eq!(
            attainment(12.5, &ceiling),
            Attainment {
                met: false,
                gap: -2.5,
                missed: Some(Missed::AboveCeiling),
            }
        );
    }

    #[test]
    fn attainment_of_a_band_says_which_side_was_missed() {
        // 出生人口性别比控制在103-107之间.
        let band = Target {
            indicator: Indicator::SexRatioAtBirth,
            direction: Direction::Between,
            value: 103.0,
            upper: Some(107.0),
        };
        let at = |v| attainment(v, &band);
        // Inside: the distance to the nearer bound.
        assert_eq!(
            at(105.5),
            Attainment {
                met: true,
                gap: 1.5,
                missed: None
            }
        );
        assert!(at(103.0).met);
        assert_eq!(at(107.0).gap, 0.0);
        // 58 boys to 52 girls: 111.54, 4.54 above the ceiling.
        assert_eq!(
            at(111.54),
            Attainment {
                met: false,
                gap: -4.54,
                missed: Some(Missed::AboveCeiling)
            }
        );
        assert_eq!(
            at(100.0),
            Attainment {
                met: false,
                gap: -3.0,
                missed: Some(Missed::BelowFloor)
            }
        );
        assert_eq!(band.floor(), Some(103.0));
        assert_eq!(band.ceiling(), Some(107.0));
        for d in [Direction::AtLeast, Direction::AtMost, Direction::Between] {
            assert_eq!(Direction::parse(d.code()), Some(d));
            assert_eq!(serde_json::to_value(d).unwrap(), d.code());
        }
    }

    #[test]
    fn married_woman_of_childbearing_age() {
        let at = date(2024, 12, 31);
        let ok =
            |sex, status, birth| is_married_woman_of_childbearing_age(sex, status, None, birth, at);
        assert!(ok("female", "first_marriage", date(1990, 1, 1)));
        assert!(ok("female", "remarried", date(1975, 1, 1)));
        assert!(ok("female", "first_marriage", date(2009, 12, 31))); // 15 today
        assert!(!ok("female", "first_marriage", date(2010, 1, 1))); // 14
        assert!(ok("female", "first_marriage", date(1975, 1, 1))); // 49
        assert!(!ok("female", "first_marriage", date(1974, 12, 31))); // 50 today
        assert!(!ok("male", "first_marriage", date(1990, 1, 1)));
        for status in ["unmarried", "divorced", "widowed", ""] {
            assert!(!ok("female", status, date(1990, 1, 1)));
        }
        // Married after the period end: not yet married on it.
        let wed = |d| {
            is_married_woman_of_childbearing_age(
                "female",
                "first_marriage",
                Some(d),
                date(1990, 1, 1),
                at,
            )
        };
        assert!(wed(date(2024, 12, 31)));
        assert!(!wed(date(2025, 1, 1)));
    }

    #[test]
    fn late_marriage_is_23_completed_years_on_the_wedding_day() {
        assert!(!late_marriage(date(2000, 5, 10), date(2023, 5, 9)));
        assert!(late_marriage(date(2000, 5, 10), date(2023, 5, 10)));
        assert!(late_marriage(date(1990, 1, 1), date(2023, 5, 9)));
        // A 29 February birthday falls on 1 March in common years, as in `age_on`.
        assert!(!late_marriage(date(2000, 2, 29), date(2023, 2, 28)));
        assert!(late_marriage(date(2000, 2, 29), date(2023, 3, 1)));
        assert!(late_marriage_sql("p").contains(">= 23"));
    }

    /// The SQL form of the late-marriage rule agrees with [`late_marriage`] on SQLite, around
    /// every birthday of a leap year and a common one, leap days included.
    #[test]
    fn late_marriage_sql_agrees_with_the_rule() {
        use diesel::{Connection, QueryableByName, RunQueryDsl};
        #[derive(QueryableByName)]
        struct Late {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            late: i32,
        }
        let mut c = diesel::SqliteConnection::establish(":memory:").unwrap();
        let mut birth = date(2000, 1, 1);
        while birth <= date(2001, 12, 31) {
            let birthday = |y| NaiveDate::from_ymd_opt(y, birth.month(), birth.day());
            let around = birthday(2023).unwrap_or(date(2023, 3, 1));
            for married in [
                around.pred_opt().unwrap(),
                around,
                around.succ_opt().unwrap(),
            ] {
                let sql = format!(
                    "SELECT CASE WHEN {} THEN 1 ELSE 0 END AS late FROM (SELECT '{birth}' AS birth_date, \
                     '{married}' AS marriage_date) p",
                    late_marriage_sql("p")
                );
                let got: Vec<Late> = diesel::sql_query(sql).load(&mut c).unwrap();
                assert_eq!(
                    got[0].late == 1,
                    late_marriage(birth, married),
                    "{birth} {married}"
                );
            }
            birth = birth.succ_opt().unwrap();
        }
    }

    #[test]
    fn timeliness_of_the_seeds() {
        // "长效避孕及时率为82%": e.g. 41 of 50 mothers.
        assert_eq!(long_acting_timeliness(41, 50).value, Some(82.0));
        assert_eq!(long_acting_timeliness(0, 0).value, None);
        assert_eq!(Rules::default().long_acting_within_days, 90);
        for i in [
            Indicator::LongActingTimeliness,
            Indicator::InformationAccuracy,
            Indicator::PolicyCompliantBirthRateFloating,
        ] {
            assert_eq!((i.unit(), i.direction()), ("%", Direction::AtLeast));
        }
    }

    #[test]
    fn long_acting_and_three_checks_use_entity_values() {
        use crate::domain::entities::{METHOD, VISIT_KIND};
        for m in SUPPLY_METHODS {
            assert!(METHOD.iter().any(|c| c.value == *m), "{m}");
        }
        for m in LONG_ACTING_METHODS {
            assert!(METHOD.iter().any(|c| c.value == *m), "{m}");
        }
        for k in THREE_CHECKS {
            assert!(VISIT_KIND.iter().any(|c| c.value == *k), "{k}");
        }
    }

    /// The bounds hold exactly the birth dates `age_on` puts in the age range: checked at the
    /// bounds and one day outside, for every day of 31 years (8 leap days among them).
    #[test]
    fn wcba_bounds_agree_with_age_on_every_day() {
        let in_range = |b, at| (WCBA_MIN_AGE..=WCBA_MAX_AGE).contains(&age_on(b, at));
        let mut at = date(2000, 1, 1);
        while at <= date(2030, 12, 31) {
            let (earliest, latest) = wcba_birth_date_bounds(at);
            assert!(in_range(earliest, at), "{at}");
            assert!(in_range(latest, at), "{at}");
            assert!(!in_range(earliest.pred_opt().unwrap(), at), "{at}");
            assert!(!in_range(latest.succ_opt().unwrap(), at), "{at}");
            at = at.succ_opt().unwrap();
        }
    }

    #[test]
    fn wcba_bounds_on_leap_days() {
        // 2024-02-29: 15 means born by 2009-02-28 (a 2009-03-01 baby is still 14); 50 means born
        // by 1974-02-28, so the earliest woman of 49 was born 1974-03-01.
        assert_eq!(
            wcba_birth_date_bounds(date(2024, 2, 29)),
            (date(1974, 3, 1), date(2009, 2, 28))
        );
        // 2023-02-28 looking back to leap years: a 2008-02-29 baby turns 15 on 2023-03-01.
        assert_eq!(
            wcba_birth_date_bounds(date(2023, 2, 28)),
            (date(1973, 3, 1), date(2008, 2, 28))
        );
    }

    proptest! {
        #[test]
        fn wcba_bounds_agree_with_age_on(at_days in 0i64..80_000, birth_days in 0i64..80_000) {
            let origin = date(1940, 1, 1);
            let at = origin + chrono::Duration::days(at_days);
            let birth = origin + chrono::Duration::days(birth_days);
            let (earliest, latest) = wcba_birth_date_bounds(at);
            let by_bounds = earliest <= birth && birth <= latest;
            let by_age = (WCBA_MIN_AGE..=WCBA_MAX_AGE).contains(&age_on(birth, at));
            prop_assert_eq!(by_bounds, by_age);
        }

        #[test]
        fn percent_is_rounded_to_two_decimals(n in 0i64..100_000, d in 1i64..100_000) {
            let v = percent(n, d).value.unwrap();
            prop_assert!((v * 100.0 - (v * 100.0).round()).abs() < 1e-6);
            prop_assert!((v - n as f64 / d as f64 * 100.0).abs() <= 0.005 + 1e-9);
        }
    }
}
