//! Logic checks (逻辑错误) on ledger records. A record that fails one is still stored (offline
//! work is never rejected for a logic error) and flagged for the township supervisor under the
//! check's stable code.
//!
//! Each check is one small function, named by its code, that returns `true` when the record
//! fails it. A check whose fields are missing or of the wrong type does not apply: type errors
//! are reported by field validation, and an absent optional field is no logic error.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::age::age_on;
use crate::domain::entities::Entity;
use crate::domain::resident_id::{IdError, ResidentId};

/// A record as a map from field name (see `entities`) to value: dates are `YYYY-MM-DD` strings,
/// booleans JSON booleans, integers JSON numbers.
pub type Fields = BTreeMap<String, Value>;

/// Youngest age of a mother at a birth that is not flagged.
pub const MOTHER_MIN_AGE: i32 = 15;
/// Oldest age of a mother at a birth that is not flagged.
pub const MOTHER_MAX_AGE: i32 = 55;
/// Days past the expected date after which a pregnancy must have an outcome.
pub const PREGNANCY_OVERDUE_DAYS: i64 = 30;
/// Methods (`entities::METHOD`) only a woman can have.
pub const FEMALE_ONLY_METHODS: &[&str] =
    &["iud_insertion", "iud_removal", "tubal_ligation", "implant"];
/// Methods only a man can have.
pub const MALE_ONLY_METHODS: &[&str] = &["vasectomy"];

/// A logic check: its stable code (stored with flags) and its message in both languages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct CheckDef {
    pub code: &'static str,
    pub zh: &'static str,
    pub en: &'static str,
}

/// What the checks look at: the record after the op, and the few facts about other records the
/// caller looked up for it. Nothing here reads the clock or the database.
pub struct CheckInput<'a> {
    pub entity: Entity,
    /// The record after the op.
    pub fields: &'a Fields,
    /// The server's date.
    pub today: NaiveDate,
    /// The person the record is about (`person_id`, or `mother_id` for a birth), when found.
    pub subject: Option<&'a Fields>,
    /// Date of a non-deleted death record of the subject; for a person record, of that person.
    pub subject_death_date: Option<NaiveDate>,
    /// For a birth: how many other live birth records the mother has with an earlier birth date.
    pub earlier_births: Option<i64>,
}

/// Declares the checks once: the code is the name of the function implementing it, so the list
/// and the functions cannot drift apart.
macro_rules! checks {
    ($($code:ident: $zh:literal, $en:literal;)+) => {
        /// Every logic check, in the order [`run`] reports them.
        pub const CHECKS: &[CheckDef] = &[$(CheckDef { code: stringify!($code), zh: $zh, en: $en }),+];

        /// The function of each entry of [`CHECKS`], in the same order.
        const FAILS: &[fn(&CheckInput) -> bool] = &[$($code),+];
    };
}

checks! {
    id_format:
        "身份证号格式不符(应为17位数字加1位数字或X)",
        "the ID number is malformed (it should be 17 digits and a digit or X)";
    id_check_digit:
        "身份证号校验码错误",
        "the ID number's check digit is wrong";
    id_birth_date:
        "身份证号中的出生日期与出生日期不符",
        "the birth date in the ID number differs from the birth date";
    id_sex:
        "身份证号的性别位与性别不符",
        "the sex digit of the ID number disagrees with the sex";
    mother_age:
        "母亲生育时不满15周岁或超过55周岁",
        "the mother is younger than 15 or older than 55 at the birth";
    mother_sex:
        "母亲(孕妇)性别不是女",
        "the mother (or pregnant woman) is not recorded as female";
    birth_parity:
        "孩次与母亲此前生育数不符",
        "the parity disagrees with the mother's earlier births";
    method_sex:
        "节育措施与性别不符",
        "the contraceptive method does not fit the person's sex";
    after_death:
        "记录日期晚于死亡日期",
        "the record is dated after the person's death";
    death_before_birth:
        "死亡日期早于出生日期",
        "the death date is before the birth date";
    pregnancy_overdue:
        "超过预产期30天仍无孕情结果",
        "more than 30 days past the expected date and still no outcome";
    marriage_before_birth:
        "婚姻变动日期早于出生日期",
        "the marriage date is before the birth date";
    mother_dead_without_record:
        "母亲已标记为死亡但无死亡记录",
        "the mother is marked as dead but has no death record";
}

/// The checks this record fails, in the order of [`CHECKS`].
pub fn run(input: &CheckInput) -> Vec<&'static CheckDef> {
    CHECKS
        .iter()
        .zip(FAILS)
        .filter(|(_, fails)| fails(input))
        .map(|(def, _)| def)
        .collect()
}

/// The definition of a stored flag's code, for showing its message.
pub fn find(code: &str) -> Option<&'static CheckDef> {
    CHECKS.iter().find(|def| def.code == code)
}

/// A non-empty string field. An empty string is what a form sends for a field left blank.
fn text<'f>(fields: &'f Fields, name: &str) -> Option<&'f str> {
    fields.get(name)?.as_str().filter(|s| !s.is_empty())
}

fn date(fields: &Fields, name: &str) -> Option<NaiveDate> {
    text(fields, name)?.parse().ok()
}

fn int(fields: &Fields, name: &str) -> Option<i64> {
    fields.get(name)?.as_i64()
}

/// A field of the record's subject.
fn subject_text<'f>(input: &CheckInput<'f>, name: &str) -> Option<&'f str> {
    text(input.subject?, name)
}

/// The parsed `id_number` of a person record, when it has one.
fn id_number(input: &CheckInput) -> Option<Result<ResidentId, IdError>> {
    if input.entity != Entity::Person {
        return None;
    }
    text(input.fields, "id_number").map(ResidentId::parse)
}

/// A number of the wrong length or with characters other than digits (and a final `X`). Such a
/// number is stored as typed, so the worker can correct it, but never matched as a duplicate.
fn id_format(input: &CheckInput) -> bool {
    matches!(
        id_number(input),
        Some(Err(IdError::Length | IdError::Characters))
    )
}

fn id_check_digit(input: &CheckInput) -> bool {
    matches!(id_number(input), Some(Err(IdError::CheckDigit)))
}

/// Only for a valid number: when the check digit fails, any digit may be the wrong one, and
/// `id_check_digit` (or `id_format`) already flags the number.
fn id_birth_date(input: &CheckInput) -> bool {
    let (Some(Ok(id)), Some(birth)) = (id_number(input), date(input.fields, "birth_date")) else {
        return false;
    };
    id.birth_date() != Some(birth)
}

fn id_sex(input: &CheckInput) -> bool {
    let (Some(Ok(id)), Some(sex @ ("male" | "female"))) =
        (id_number(input), text(input.fields, "sex"))
    else {
        return false;
    };
    id.sex() != sex
}

fn mother_age(input: &CheckInput) -> bool {
    if input.entity != Entity::Birth {
        return false;
    }
    let (Some(mother_born), Some(born)) = (
        input.subject.and_then(|m| date(m, "birth_date")),
        date(input.fields, "birth_date"),
    ) else {
        return false;
    };
    !(MOTHER_MIN_AGE..=MOTHER_MAX_AGE).contains(&age_on(mother_born, born))
}

/// The woman of a pregnancy is checked too: she is the mother-to-be.
fn mother_sex(input: &CheckInput) -> bool {
    matches!(input.entity, Entity::Birth | Entity::Pregnancy)
        && subject_text(input, "sex") == Some("male")
}

fn birth_parity(input: &CheckInput) -> bool {
    if input.entity != Entity::Birth {
        return false;
    }
    let (Some(parity), Some(earlier)) = (int(input.fields, "parity"), input.earlier_births) else {
        return false;
    };
    parity != earlier + 1
}

fn method_sex(input: &CheckInput) -> bool {
    if input.entity != Entity::Measure {
        return false;
    }
    let Some(method) = text(input.fields, "method") else {
        return false;
    };
    match subject_text(input, "sex") {
        Some("female") => MALE_ONLY_METHODS.contains(&method),
        Some("male") => FEMALE_ONLY_METHODS.contains(&method),
        _ => false,
    }
}

/// Uses the death record's date only: `alive = false` without a death record dates nothing.
/// A death record itself is not checked, nor a benefit (paid to survivors, per household).
fn after_death(input: &CheckInput) -> bool {
    let Some(death) = input.subject_death_date else {
        return false;
    };
    let dated_fields: &[&str] = match input.entity {
        Entity::Visit => &["visit_date"],
        Entity::Measure => &["started_on"],
        Entity::Supply => &["handed_on"],
        Entity::Pregnancy => &["detected_on", "outcome_date"],
        Entity::Birth => &["birth_date"],
        Entity::Migration => &["moved_on"],
        _ => &[],
    };
    dated_fields
        .iter()
        .filter_map(|name| date(input.fields, name))
        .any(|d| d > death)
}

/// Checked from both sides: a death record against the person's birth date, and a person's
/// (edited) birth date against their death record.
fn death_before_birth(input: &CheckInput) -> bool {
    let (death, birth) = match input.entity {
        Entity::Death => (
            date(input.fields, "death_date"),
            input.subject.and_then(|p| date(p, "birth_date")),
        ),
        Entity::Person => (input.subject_death_date, date(input.fields, "birth_date")),
        _ => return false,
    };
    matches!((death, birth), (Some(death), Some(birth)) if death < birth)
}

/// An ended pregnancy without an outcome is flagged too: the outcome is what the report counts.
fn pregnancy_overdue(input: &CheckInput) -> bool {
    if input.entity != Entity::Pregnancy {
        return false;
    }
    let Some(expected) = date(input.fields, "expected_date") else {
        return false;
    };
    let unresolved =
        text(input.fields, "status") == Some("ongoing") || text(input.fields, "outcome").is_none();
    unresolved && (input.today - expected).num_days() > PREGNANCY_OVERDUE_DAYS
}

fn marriage_before_birth(input: &CheckInput) -> bool {
    if input.entity != Entity::Person {
        return false;
    }
    matches!(
        (date(input.fields, "marriage_date"), date(input.fields, "birth_date")),
        (Some(married), Some(born)) if married < born
    )
}

/// A birth to a woman recorded as `alive = false` while no death record says when she died:
/// either the flag or the birth is wrong, and without a date `after_death` cannot tell. With a
/// death record, `after_death` judges the dates instead.
fn mother_dead_without_record(input: &CheckInput) -> bool {
    input.entity == Entity::Birth
        && input.subject_death_date.is_none()
        && input
            .subject
            .and_then(|m| m.get("alive"))
            .and_then(Value::as_bool)
            == Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::entities::ENTITIES;
    use serde_json::json;

    fn fields(v: Value) -> Fields {
        serde_json::from_value(v).unwrap()
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn input<'a>(entity: Entity, fields: &'a Fields) -> CheckInput<'a> {
        CheckInput {
            entity,
            fields,
            today: day("2024-06-30"),
            subject: None,
            subject_death_date: None,
            earlier_births: None,
        }
    }

    fn codes(input: &CheckInput) -> Vec<&'static str> {
        run(input).into_iter().map(|d| d.code).collect()
    }

    /// Asserts that `input` fails `code` when `fails`, and passes it otherwise.
    #[track_caller]
    fn assert_check(input: &CheckInput, code: &str, fails: bool) {
        assert_eq!(
            codes(input).contains(&code),
            fails,
            "{code}: {:?}",
            codes(input)
        );
    }

    fn woman() -> Fields {
        fields(json!({"name": "王秀英", "sex": "female", "birth_date": "1990-01-01"}))
    }

    fn man() -> Fields {
        fields(json!({"name": "李建国", "sex": "male", "birth_date": "1988-03-05"}))
    }

    #[test]
    fn codes_are_unique_snake_case_and_findable() {
        let mut seen = std::collections::BTreeSet::new();
        for def in CHECKS {
            assert!(seen.insert(def.code), "{}", def.code);
            assert!(def
                .code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!(!def.zh.is_empty() && !def.en.is_empty());
            assert_eq!(find(def.code), Some(def));
        }
        assert_eq!(find("nope"), None);
        assert_eq!(FAILS.len(), CHECKS.len());
    }

    #[test]
    fn messages_quote_the_thresholds() {
        let def = |code| find(code).unwrap();
        for n in [MOTHER_MIN_AGE, MOTHER_MAX_AGE] {
            assert!(def("mother_age").zh.contains(&n.to_string()));
            assert!(def("mother_age").en.contains(&n.to_string()));
        }
        let days = PREGNANCY_OVERDUE_DAYS.to_string();
        assert!(def("pregnancy_overdue").zh.contains(&days));
        assert!(def("pregnancy_overdue").en.contains(&days));
    }

    #[test]
    fn a_clean_person_passes_everything() {
        let p = fields(json!({
            "name": "王秀英", "sex": "female", "birth_date": "1949-12-31",
            "id_number": "11010519491231002X", "marriage_date": "1970-05-01",
        }));
        assert!(run(&input(Entity::Person, &p)).is_empty());
    }

    #[test]
    fn id_check_digit() {
        let id =
            |n: &str| fields(json!({"id_number": n, "sex": "female", "birth_date": "1949-12-31"}));
        for good in ["11010519491231002X", "11010519491231002x"] {
            assert_check(&input(Entity::Person, &id(good)), "id_check_digit", false);
        }
        assert_check(
            &input(Entity::Person, &id("110105194912310021")),
            "id_check_digit",
            true,
        );
        // Malformed numbers are flagged id_format only: there is no check digit to compare.
        for bad in [
            "1101051949123100",
            "11010519491231002",
            "11010519491231002Y",
            "1101051949123100211",
            "11010519491231002Ｘ",
        ] {
            let p = id(bad);
            assert_eq!(codes(&input(Entity::Person, &p)), ["id_format"], "{bad}");
        }
        // No number, a blank one, or one on another record type: nothing to check.
        assert_check(&input(Entity::Person, &woman()), "id_check_digit", false);
        assert_check(&input(Entity::Person, &id("")), "id_check_digit", false);
        assert_check(
            &input(Entity::Birth, &id("110105194912310021")),
            "id_check_digit",
            false,
        );
    }

    #[test]
    fn id_birth_date() {
        let p = |birth: &str| {
            fields(json!({"id_number": "11010519491231002X", "sex": "female", "birth_date": birth}))
        };
        assert_check(
            &input(Entity::Person, &p("1949-12-31")),
            "id_birth_date",
            false,
        );
        assert_check(
            &input(Entity::Person, &p("1949-12-30")),
            "id_birth_date",
            true,
        );
        // A number with a bad check digit is only flagged once, by id_check_digit.
        let typo = fields(json!({"id_number": "110105194912310021", "birth_date": "1980-01-01"}));
        assert_eq!(codes(&input(Entity::Person, &typo)), ["id_check_digit"]);
    }

    #[test]
    fn id_sex() {
        let p = |sex: &str| {
            fields(
                json!({"id_number": "440524188001010014", "sex": sex, "birth_date": "1880-01-01"}),
            )
        };
        assert_check(&input(Entity::Person, &p("male")), "id_sex", false);
        assert_check(&input(Entity::Person, &p("female")), "id_sex", true);
        assert_check(&input(Entity::Person, &p("unknown")), "id_sex", false);
    }

    #[test]
    fn mother_age() {
        let mother = woman(); // born 1990-01-01
        let birth = |date: &str| fields(json!({"birth_date": date, "sex": "male", "parity": 1}));
        let at = |date: &str, fails: bool| {
            let b = birth(date);
            let i = CheckInput {
                subject: Some(&mother),
                ..input(Entity::Birth, &b)
            };
            assert_check(&i, "mother_age", fails);
        };
        at("2004-12-31", true); // 14
        at("2005-01-01", false); // 15
        at("2045-12-31", false); // 55
        at("2046-01-01", true); // 56
                                // Without the mother there is nothing to compare.
        assert_check(
            &input(Entity::Birth, &birth("2004-12-31")),
            "mother_age",
            false,
        );
    }

    #[test]
    fn mother_sex() {
        let b = fields(json!({"birth_date": "2020-01-01", "sex": "female", "parity": 1}));
        let (w, m) = (woman(), man());
        for entity in [Entity::Birth, Entity::Pregnancy] {
            assert_check(
                &CheckInput {
                    subject: Some(&w),
                    ..input(entity, &b)
                },
                "mother_sex",
                false,
            );
            assert_check(
                &CheckInput {
                    subject: Some(&m),
                    ..input(entity, &b)
                },
                "mother_sex",
                true,
            );
        }
        assert_check(
            &CheckInput {
                subject: Some(&m),
                ..input(Entity::Visit, &b)
            },
            "mother_sex",
            false,
        );
    }

    #[test]
    fn birth_parity() {
        let b = fields(json!({"birth_date": "2020-01-01", "sex": "female", "parity": 2}));
        let with = |earlier| CheckInput {
            earlier_births: Some(earlier),
            ..input(Entity::Birth, &b)
        };
        assert_check(&with(1), "birth_parity", false);
        assert_check(&with(0), "birth_parity", true);
        assert_check(&with(2), "birth_parity", true);
        assert_check(&input(Entity::Birth, &b), "birth_parity", false);
    }

    #[test]
    fn method_sex() {
        let (w, m) = (woman(), man());
        let check = |method: &str, person: &Fields, fails: bool| {
            let f = fields(json!({"method": method, "started_on": "2020-01-01"}));
            let i = CheckInput {
                subject: Some(person),
                ..input(Entity::Measure, &f)
            };
            assert_check(&i, "method_sex", fails);
        };
        check("vasectomy", &w, true);
        check("vasectomy", &m, false);
        for method in ["tubal_ligation", "iud_insertion", "iud_removal", "implant"] {
            check(method, &m, true);
            check(method, &w, false);
        }
        check("condoms", &m, false);
        check("condoms", &w, false);
    }

    #[test]
    fn after_death() {
        let died = day("2023-05-01");
        let cases = [
            (Entity::Visit, "visit_date"),
            (Entity::Measure, "started_on"),
            (Entity::Supply, "handed_on"),
            (Entity::Pregnancy, "detected_on"),
            (Entity::Pregnancy, "outcome_date"),
            (Entity::Birth, "birth_date"),
            (Entity::Migration, "moved_on"),
        ];
        for (entity, field) in cases {
            for (date, fails) in [
                ("2023-05-02", true),
                ("2023-05-01", false),
                ("2023-04-30", false),
            ] {
                let f = fields(json!({ field: date }));
                let i = CheckInput {
                    subject_death_date: Some(died),
                    ..input(entity, &f)
                };
                assert_check(&i, "after_death", fails);
            }
        }
        // alive = false without a death record: no date to compare with.
        let dead = fields(json!({"sex": "female", "birth_date": "1950-01-01", "alive": false}));
        let f = fields(json!({"visit_date": "2024-01-01"}));
        let i = CheckInput {
            subject: Some(&dead),
            ..input(Entity::Visit, &f)
        };
        assert_check(&i, "after_death", false);
    }

    #[test]
    fn death_before_birth() {
        let person = woman(); // born 1990-01-01
        let death = |date: &str| fields(json!({"death_date": date}));
        let d = death("1989-12-31");
        assert_check(
            &CheckInput {
                subject: Some(&person),
                ..input(Entity::Death, &d)
            },
            "death_before_birth",
            true,
        );
        let d = death("1990-01-01");
        assert_check(
            &CheckInput {
                subject: Some(&person),
                ..input(Entity::Death, &d)
            },
            "death_before_birth",
            false,
        );
        // A person whose birth date is edited to after their recorded death.
        let i = CheckInput {
            subject_death_date: Some(day("1989-06-01")),
            ..input(Entity::Person, &person)
        };
        assert_check(&i, "death_before_birth", true);
        let i = CheckInput {
            subject_death_date: Some(day("2020-06-01")),
            ..input(Entity::Person, &person)
        };
        assert_check(&i, "death_before_birth", false);
    }

    #[test]
    fn pregnancy_overdue() {
        // today is 2024-06-30; 30 days earlier is 2024-05-31.
        let p = |v: Value| fields(v);
        let cases = [
            (
                json!({"status": "ongoing", "expected_date": "2024-05-30"}),
                true,
            ),
            (
                json!({"status": "ongoing", "expected_date": "2024-05-31"}),
                false,
            ),
            (
                json!({"status": "ended", "expected_date": "2024-01-01"}),
                true,
            ),
            (
                json!({"status": "ended", "outcome": "birth", "expected_date": "2024-01-01"}),
                false,
            ),
            (
                json!({"status": "ongoing", "outcome": "birth", "expected_date": "2024-01-01"}),
                true,
            ),
            (json!({"status": "ongoing"}), false),
        ];
        for (v, fails) in cases {
            assert_check(&input(Entity::Pregnancy, &p(v)), "pregnancy_overdue", fails);
        }
    }

    #[test]
    fn marriage_before_birth() {
        let p =
            |married: &str| fields(json!({"birth_date": "1990-01-01", "marriage_date": married}));
        assert_check(
            &input(Entity::Person, &p("1989-12-31")),
            "marriage_before_birth",
            true,
        );
        assert_check(
            &input(Entity::Person, &p("2012-10-01")),
            "marriage_before_birth",
            false,
        );
    }

    #[test]
    fn mother_dead_without_record() {
        let b = fields(json!({"birth_date": "2024-03-01", "sex": "female", "parity": 1}));
        let mut dead = woman();
        dead.insert("alive".into(), json!(false));
        let mut alive = woman();
        alive.insert("alive".into(), json!(true));
        let with = |subject: &'_ Fields, death: Option<NaiveDate>| {
            codes(&CheckInput {
                subject: Some(subject),
                subject_death_date: death,
                ..input(Entity::Birth, &b)
            })
            .contains(&"mother_dead_without_record")
        };
        assert!(with(&dead, None));
        assert!(!with(&alive, None));
        assert!(!with(&woman(), None), "alive not recorded: no flag");
        // With a death record the dates decide (after_death), not the flag.
        assert!(!with(&dead, Some(day("2024-06-01"))));
        let i = CheckInput {
            subject: Some(&dead),
            ..input(Entity::Visit, &b)
        };
        assert_check(&i, "mother_dead_without_record", false);
    }

    /// Every field of every record type, absent or given any JSON type, never panics and never
    /// flags a check on its own.
    #[test]
    fn odd_values_never_panic_or_flag() {
        let odd = [
            json!(null),
            json!(true),
            json!(-3),
            json!(1.5),
            json!(""),
            json!("x"),
            json!("2024-13-45"),
            json!([]),
            json!({}),
            json!("１２３"),
        ];
        let subject = fields(json!({"sex": 5, "birth_date": []}));
        for def in ENTITIES {
            for field in def.fields {
                for value in &odd {
                    let f = fields(json!({ field.name: value }));
                    let i = CheckInput {
                        subject: Some(&subject),
                        subject_death_date: Some(day("2000-01-01")),
                        ..input(def.entity, &f)
                    };
                    let flagged = codes(&i);
                    // The only flag a lone odd value may raise is a malformed ID number.
                    assert!(
                        flagged.is_empty()
                            || (field.name == "id_number" && flagged == ["id_format"]),
                        "{}.{} = {value}: {flagged:?}",
                        def.name,
                        field.name
                    );
                }
            }
        }
    }
}
