//! The demo county's content, generated in memory from a seed: org units, households and their
//! members, and the ledgers about them. Nothing here reads the clock or the database, so the same
//! seed always gives the same county; `demo::load` adds the server-owned columns and writes it.
//!
//! The model, in order: households (young couples with children and sometimes an elderly
//! parent, older couples, widowed elderly, a few in-migrant families), births of 2025-2026 and
//! pregnancies, deaths of elderly people, the birth ledger of the married women of childbearing
//! age, contraceptive measures, follow-up visits, migrations, supplies and benefits. Ages are
//! taken on [`reference_date`].

use std::collections::BTreeSet;

use chrono::{Datelike, Duration, Months, NaiveDate};
use rand::distributions::WeightedIndex;
use rand::prelude::*;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::names::full_name;
use crate::db::records::Fields;
use crate::domain::age::age_on;
use crate::domain::entities::Entity;
use crate::domain::resident_id;
use crate::orgunit::NewOrgUnit;
use crate::report::indicators::{WCBA_MAX_AGE, WCBA_MIN_AGE};

pub const COUNTY_CODE: &str = "130131";
pub const COUNTY_NAME: &str = "平山县";

/// Townships and their four villages (codes township + 201..204).
pub const TOWNSHIPS: &[(&str, &str, [&str; 4])] = &[
    (
        "130131100",
        "平山镇",
        ["上庄村", "下庄村", "柳林村", "石门村"],
    ),
    (
        "130131102",
        "东回舍镇",
        ["东庄村", "西沟村", "王家庄村", "李家沟村"],
    ),
    (
        "130131103",
        "温塘镇",
        ["南岗村", "北坡村", "杨树湾村", "前进村"],
    ),
];

/// The first two villages of each township keep their ledgers by villager group (一组, 二组).
const GROUPED_VILLAGES_PER_TOWNSHIP: usize = 2;
const GROUP_NAMES: [&str; 2] = ["一组", "二组"];

/// Region codes of ID numbers issued elsewhere: wives from neighbouring counties, in-migrants
/// from neighbouring provinces.
const NEIGHBOUR_COUNTIES: &[&str] = &["130123", "130125", "130129", "130130", "130132"];
const OTHER_PROVINCES: &[&str] = &["140121", "140223", "410421", "410523", "370523", "130181"];

const PHONE_PREFIXES: &[&str] = &[
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "150", "151", "152",
    "153", "155", "156", "157", "158", "159", "177", "180", "185", "186", "187", "188", "189",
];

const DEATH_CAUSES: &[(&str, u32)] = &[
    ("脑血管病", 30),
    ("心脏病", 25),
    ("恶性肿瘤", 22),
    ("呼吸系统疾病", 12),
    ("衰老", 8),
    ("意外伤害", 3),
];

/// Every age is counted on this day, and no generated date lies after it except expected dates
/// of ongoing pregnancies and next due dates.
pub fn reference_date() -> NaiveDate {
    ymd(2026, 11, 1)
}

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a valid constant date")
}

fn add_days(d: NaiveDate, n: i64) -> NaiveDate {
    d + Duration::days(n)
}

fn add_years(d: NaiveDate, years: u32) -> NaiveDate {
    d.checked_add_months(Months::new(12 * years))
        .expect("dates stay in range")
}

fn sub_years(d: NaiveDate, years: u32) -> NaiveDate {
    d.checked_sub_months(Months::new(12 * years))
        .expect("dates stay in range")
}

fn iso(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// A record before the server adds its own columns.
pub struct Draft {
    pub entity: Entity,
    pub id: String,
    pub org_unit: String,
    pub fields: Fields,
}

pub struct Generated {
    pub org_units: Vec<NewOrgUnit>,
    pub villages: usize,
    pub records: Vec<Draft>,
}

impl Generated {
    pub fn count(&self, entity: Entity) -> usize {
        self.records.iter().filter(|r| r.entity == entity).count()
    }
}

struct Village {
    code: String,
    name: &'static str,
    township: &'static str,
    /// Group codes, empty when the village keeps one ledger.
    groups: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Measure {
    Iud,
    Tubal,
    Vasectomy,
    Implant,
    Pills,
    Condoms,
    Injection,
}

impl Measure {
    fn value(self) -> &'static str {
        match self {
            Measure::Iud => "iud_insertion",
            Measure::Tubal => "tubal_ligation",
            Measure::Vasectomy => "vasectomy",
            Measure::Implant => "implant",
            Measure::Pills => "pills",
            Measure::Condoms => "condoms",
            Measure::Injection => "injection",
        }
    }

    fn long_acting(self) -> bool {
        matches!(
            self,
            Measure::Iud | Measure::Tubal | Measure::Vasectomy | Measure::Implant
        )
    }
}

struct Person {
    id: String,
    household: usize,
    name: String,
    male: bool,
    birth: NaiveDate,
    id_number: String,
    relation: &'static str,
    marital: &'static str,
    marriage: Option<NaiveDate>,
    residence: &'static str,
    alive: bool,
    phone: Option<String>,
    spouse: Option<usize>,
    /// Children in the ledger, in birth order.
    children: Vec<usize>,
    death: Option<(NaiveDate, &'static str)>,
    /// Arrival of an in-migrant, departure of an out-migrant.
    moved_on: Option<NaiveDate>,
}

struct Household {
    id: String,
    org_unit: String,
    village: usize,
    no: String,
    address: String,
    head: usize,
    members: Vec<usize>,
    migrant_region: Option<&'static str>,
}

/// Generation state: one RNG for content, one for record ids (so ids depend only on how many
/// records came before), and the ID numbers handed out so far.
struct Gen {
    rng: ChaCha8Rng,
    ids: ChaCha8Rng,
    used_numbers: BTreeSet<String>,
    villages: Vec<Village>,
    persons: Vec<Person>,
    households: Vec<Household>,
    records: Vec<Draft>,
    /// Per woman: the current measure (method, started on), to drive visits and supplies.
    current_measure: Vec<Option<(Measure, NaiveDate)>>,
    /// Women with an ongoing pregnancy: (person, detected on, expected date).
    pregnant: Vec<(usize, NaiveDate, NaiveDate)>,
    /// Births of 2025-2026 of each woman.
    recent_birth: Vec<Option<NaiveDate>>,
}

pub fn generate(seed: u64) -> Generated {
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(seed),
        ids: ChaCha8Rng::seed_from_u64(seed ^ 0x05ee_d1d5),
        used_numbers: BTreeSet::new(),
        villages: Vec::new(),
        persons: Vec::new(),
        households: Vec::new(),
        records: Vec::new(),
        current_measure: Vec::new(),
        pregnant: Vec::new(),
        recent_birth: Vec::new(),
    };
    let org_units = g.org_units();
    for v in 0..g.villages.len() {
        let n = g.rng.gen_range(64..=74);
        for seq in 1..=n {
            g.household(v, seq, n);
        }
    }
    g.recent_births();
    g.current_measure = vec![None; g.persons.len()];
    g.recent_birth.resize(g.persons.len(), None);
    g.pregnancies();
    g.deaths();
    g.birth_ledger();
    g.measures();
    g.visits();
    g.migrations();
    g.supplies();
    g.benefits();
    g.emit_households_and_persons();
    // Records in the order of `Entity`, so that a pull by change sequence sees households
    // before their members and persons before their ledgers.
    g.records.sort_by_key(|r| r.entity);
    Generated {
        org_units,
        villages: g.villages.len(),
        records: g.records,
    }
}

impl Gen {
    fn uuid(&mut self) -> String {
        let mut bytes = [0u8; 16];
        self.ids.fill_bytes(&mut bytes);
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.gen_bool(p)
    }

    fn date_between(&mut self, lo: NaiveDate, hi: NaiveDate) -> NaiveDate {
        if hi <= lo {
            return lo;
        }
        add_days(lo, self.rng.gen_range(0..=(hi - lo).num_days()))
    }

    /// A birth date of someone aged exactly `age` on the reference date.
    fn birth_for_age(&mut self, age: u32) -> NaiveDate {
        let latest = sub_years(reference_date(), age);
        add_days(latest, -self.rng.gen_range(0..365))
    }

    fn weighted<T: Copy>(&mut self, items: &[(T, u32)]) -> T {
        let w = WeightedIndex::new(items.iter().map(|i| i.1)).expect("positive weights");
        items[w.sample(&mut self.rng)].0
    }

    fn id_number(&mut self, region: &str, birth: NaiveDate, male: bool) -> String {
        loop {
            let seq = self.rng.gen_range(0..=999u16);
            let n = resident_id::generate(region, birth, seq, male);
            if self.used_numbers.insert(n[..17].to_string()) {
                return n;
            }
        }
    }

    fn phone(&mut self) -> String {
        let prefix = PHONE_PREFIXES[self.rng.gen_range(0..PHONE_PREFIXES.len())];
        format!("{prefix}{:08}", self.rng.gen_range(0..100_000_000u32))
    }

    fn org_units(&mut self) -> Vec<NewOrgUnit> {
        let unit = |code: &str, name: &str, parent: Option<&str>| NewOrgUnit {
            code: code.into(),
            name: name.into(),
            parent: parent.map(str::to_string),
        };
        let mut out = vec![unit(COUNTY_CODE, COUNTY_NAME, None)];
        for (code, name, villages) in TOWNSHIPS {
            out.push(unit(code, name, Some(COUNTY_CODE)));
            for (i, vname) in villages.iter().enumerate() {
                let vcode = format!("{code}{}", 201 + i);
                out.push(unit(&vcode, vname, Some(code)));
                let mut groups = Vec::new();
                if i < GROUPED_VILLAGES_PER_TOWNSHIP {
                    for (k, gname) in GROUP_NAMES.iter().enumerate() {
                        let gcode = format!("{vcode}G{:02}", k + 1);
                        out.push(unit(&gcode, gname, Some(&vcode)));
                        groups.push(gcode);
                    }
                }
                self.villages.push(Village {
                    code: vcode,
                    name: vname,
                    township: name,
                    groups,
                });
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn add_person(
        &mut self,
        hh: usize,
        name: String,
        male: bool,
        birth: NaiveDate,
        region: &str,
        relation: &'static str,
        marital: &'static str,
        marriage: Option<NaiveDate>,
        residence: &'static str,
    ) -> usize {
        let id = self.uuid();
        let id_number = self.id_number(region, birth, male);
        let idx = self.persons.len();
        self.persons.push(Person {
            id,
            household: hh,
            name,
            male,
            birth,
            id_number,
            relation,
            marital,
            marriage,
            residence,
            alive: true,
            phone: None,
            spouse: None,
            children: Vec::new(),
            death: None,
            moved_on: None,
        });
        self.households[hh].members.push(idx);
        idx
    }

    /// The father's surname and a given name drawn like any other.
    fn child_name(&mut self, father: usize, male: bool) -> String {
        let surname: String = self.persons[father].name.chars().take(1).collect();
        let drawn = full_name(&mut self.rng, male);
        surname + &drawn.chars().skip(1).collect::<String>()
    }

    fn marry(&mut self, a: usize, b: usize) {
        self.persons[a].spouse = Some(b);
        self.persons[b].spouse = Some(a);
    }

    fn household(&mut self, v: usize, seq: u32, of: u32) {
        let village = &self.villages[v];
        let (org_unit, group_no) = if village.groups.is_empty() {
            (village.code.clone(), self.rng.gen_range(1..=5))
        } else {
            let k = if seq <= of / 2 { 0 } else { 1 };
            (village.groups[k].clone(), k + 1)
        };
        let address = format!("{}{}组{}号", village.name, group_no, seq);
        let no = format!("{}-{:03}", &village.code[9..12], seq);
        let id = self.uuid();
        let hh = self.households.len();
        self.households.push(Household {
            id,
            org_unit,
            village: v,
            no,
            address,
            head: usize::MAX,
            members: Vec::new(),
            migrant_region: None,
        });
        match self.weighted(&[(0u8, 80), (1, 14), (2, 6)]) {
            0 => self.young_family(hh),
            1 => self.older_couple(hh),
            _ => self.widowed_elder(hh),
        }
        let head = self.households[hh].head;
        let phone = self.phone();
        self.persons[head].phone = Some(phone);
    }

    /// A couple with a husband of 25-64, their children born before 2025, sometimes his
    /// parents; a few such families moved in from elsewhere.
    fn young_family(&mut self, hh: usize) {
        let ref_date = reference_date();
        let age_band = self.weighted(&[
            ((25, 34), 30u32),
            ((35, 44), 30),
            ((45, 54), 25),
            ((55, 64), 15),
        ]);
        let h_age = self.rng.gen_range(age_band.0..=age_band.1);
        let h_birth = self.birth_for_age(h_age);
        // The wife is up to a year older or up to five years younger, and at least 21.
        let mut w_birth = add_days(h_birth, self.rng.gen_range(-365..=5 * 365));
        if age_on(w_birth, ref_date) < 21 {
            w_birth = self.birth_for_age(21);
        }
        let earliest = add_years(h_birth, 22).max(add_years(w_birth, 20));
        let marriage =
            add_days(earliest, self.rng.gen_range(0..=4 * 365)).min(add_days(ref_date, -60));

        let migrant = self.chance(0.025);
        let (h_region, w_region) = if migrant {
            let r = OTHER_PROVINCES[self.rng.gen_range(0..OTHER_PROVINCES.len())];
            (r, r)
        } else if self.chance(0.35) {
            let r = NEIGHBOUR_COUNTIES[self.rng.gen_range(0..NEIGHBOUR_COUNTIES.len())];
            (COUNTY_CODE, r)
        } else {
            (COUNTY_CODE, COUNTY_CODE)
        };
        let arrived = if migrant {
            let lo = marriage.max(ymd(2016, 1, 1));
            Some(self.date_between(lo, add_days(ref_date, -60)))
        } else {
            None
        };
        self.households[hh].migrant_region = migrant.then_some(h_region);
        let adult_residence = if migrant { "moved_in" } else { "resident" };

        let name = full_name(&mut self.rng, true);
        let husband = self.add_person(
            hh,
            name,
            true,
            h_birth,
            h_region,
            "head",
            "first_marriage",
            Some(marriage),
            adult_residence,
        );
        self.households[hh].head = husband;
        let name = full_name(&mut self.rng, false);
        let wife = self.add_person(
            hh,
            name,
            false,
            w_birth,
            w_region,
            "spouse",
            "first_marriage",
            Some(marriage),
            adult_residence,
        );
        self.marry(husband, wife);
        if self.chance(0.6) {
            let phone = self.phone();
            self.persons[wife].phone = Some(phone);
        }
        // Out-migrant workers: the husband, sometimes with his wife; children stay behind.
        if !migrant && h_age <= 50 && self.chance(0.06) {
            self.persons[husband].residence = "moved_out";
            if self.chance(0.4) {
                self.persons[wife].residence = "moved_out";
            }
        }
        if let Some(d) = arrived {
            self.persons[husband].moved_on = Some(d);
            self.persons[wife].moved_on = Some(d);
        }

        // Children born before 2025; policy held back second and third births.
        let wanted = self.weighted(&[(0usize, 4u32), (1, 38), (2, 48), (3, 10)]);
        let mut date = add_days(marriage, self.rng.gen_range(300..=900));
        let mut first_male = false;
        for k in 0..wanted {
            if date >= ymd(2025, 1, 1) || age_on(w_birth, date) > 42 {
                break;
            }
            if k == 1 && date.year() < 2016 && first_male && self.chance(0.6) {
                break;
            }
            if k == 2 && date.year() < 2021 && self.chance(0.6) {
                break;
            }
            let male = self.chance(0.53);
            if k == 0 {
                first_male = male;
            }
            self.add_child(hh, husband, wife, date, male);
            date = add_days(date, self.rng.gen_range(600..=2200));
        }

        // His parents: one widowed parent, or both.
        let parents = self.weighted(&[(0u8, 50), (1, 35), (2, 15)]);
        if parents > 0 && !migrant {
            let p_age = h_age + self.rng.gen_range(23..=32);
            if p_age <= 95 {
                let surname: String = self.persons[husband].name.chars().take(1).collect();
                let f_birth = self.birth_for_age(p_age);
                let m_birth = add_days(f_birth, self.rng.gen_range(0..=4 * 365));
                let parent_marriage = add_years(f_birth, self.rng.gen_range(21..=25));
                let father_listed = parents == 2 || self.chance(0.3);
                let mother_listed = parents == 2 || !father_listed;
                let status = if parents == 2 {
                    "first_marriage"
                } else {
                    "widowed"
                };
                let married_on = (parents == 2).then_some(parent_marriage);
                let mut listed = Vec::new();
                if father_listed {
                    let given: String = full_name(&mut self.rng, true).chars().skip(1).collect();
                    listed.push(self.add_person(
                        hh,
                        surname + &given,
                        true,
                        f_birth,
                        COUNTY_CODE,
                        "parent",
                        status,
                        married_on,
                        "resident",
                    ));
                }
                if mother_listed {
                    let name = full_name(&mut self.rng, false);
                    let m_age = age_on(m_birth, ref_date);
                    if m_age >= 40 {
                        listed.push(self.add_person(
                            hh,
                            name,
                            false,
                            m_birth,
                            COUNTY_CODE,
                            "parent",
                            status,
                            married_on,
                            "resident",
                        ));
                    }
                }
                if let [a, b] = listed[..] {
                    self.marry(a, b);
                }
            }
        }
    }

    fn add_child(
        &mut self,
        hh: usize,
        father: usize,
        mother: usize,
        birth: NaiveDate,
        male: bool,
    ) -> usize {
        let ref_date = reference_date();
        let name = self.child_name(father, male);
        let migrant_region = self.households[hh].migrant_region;
        let arrived = self.persons[father].moved_on;
        // Born before the family moved here: an in-migrant with the parents' region code.
        let (region, residence) = match (migrant_region, arrived) {
            (Some(r), Some(a)) if birth < a => (r, "moved_in"),
            _ => (COUNTY_CODE, "resident"),
        };
        let residence =
            if residence == "resident" && age_on(birth, ref_date) >= 18 && self.chance(0.3) {
                "moved_out"
            } else {
                residence
            };
        let c = self.add_person(
            hh,
            name,
            male,
            birth,
            region,
            "child",
            "unmarried",
            None,
            residence,
        );
        if residence == "moved_in" {
            self.persons[c].moved_on = arrived;
        }
        self.persons[father].children.push(c);
        self.persons[mother].children.push(c);
        c
    }

    /// A couple of 65-82 whose children have households of their own.
    fn older_couple(&mut self, hh: usize) {
        let h_age = self.rng.gen_range(65..=82);
        let h_birth = self.birth_for_age(h_age);
        let w_birth = add_days(h_birth, self.rng.gen_range(0..=4 * 365));
        let marriage = add_years(w_birth, 20).max(add_years(h_birth, 22));
        let marriage = add_days(marriage, self.rng.gen_range(0..=3 * 365));
        let name = full_name(&mut self.rng, true);
        let h = self.add_person(
            hh,
            name,
            true,
            h_birth,
            COUNTY_CODE,
            "head",
            "first_marriage",
            Some(marriage),
            "resident",
        );
        self.households[hh].head = h;
        let name = full_name(&mut self.rng, false);
        let w = self.add_person(
            hh,
            name,
            false,
            w_birth,
            COUNTY_CODE,
            "spouse",
            "first_marriage",
            Some(marriage),
            "resident",
        );
        self.marry(h, w);
    }

    fn widowed_elder(&mut self, hh: usize) {
        let male = self.chance(0.35);
        let age = self.rng.gen_range(70..=90);
        let birth = self.birth_for_age(age);
        let name = full_name(&mut self.rng, male);
        let p = self.add_person(
            hh,
            name,
            male,
            birth,
            COUNTY_CODE,
            "head",
            "widowed",
            None,
            "resident",
        );
        self.households[hh].head = p;
    }

    /// Whether a woman is married, alive and of childbearing age on `at`.
    fn is_wcba(&self, p: usize, at: NaiveDate) -> bool {
        let w = &self.persons[p];
        !w.male
            && w.alive
            && w.marital == "first_marriage"
            && w.marriage.is_some_and(|m| m <= at)
            && (WCBA_MIN_AGE..=WCBA_MAX_AGE).contains(&age_on(w.birth, at))
    }

    /// Women who could have a child on `at`: married wives in the village with a husband, 21-40,
    /// fewer than three children and none in the last 15 months.
    fn fertile_candidates(&self, at: NaiveDate, exclude: &BTreeSet<usize>) -> Vec<(usize, f64)> {
        (0..self.persons.len())
            .filter(|&p| !exclude.contains(&p))
            .filter(|&p| self.is_wcba(p, at) && self.persons[p].spouse.is_some())
            .filter(|&p| self.persons[p].residence != "moved_out")
            .filter_map(|p| {
                let w = &self.persons[p];
                let age = age_on(w.birth, at);
                let kids = w.children.len();
                if !(21..=40).contains(&age) || kids >= 3 {
                    return None;
                }
                let weight_kids = [3.0, 2.0, 0.5][kids];
                let weight_age = if age <= 30 {
                    1.0
                } else if age <= 35 {
                    0.6
                } else {
                    0.25
                };
                Some((p, weight_kids * weight_age))
            })
            .collect()
    }

    fn pick_weighted(&mut self, candidates: &[(usize, f64)], n: usize) -> Vec<usize> {
        let mut chosen: Vec<usize> = candidates
            .choose_multiple_weighted(&mut self.rng, n.min(candidates.len()), |c| c.1)
            .expect("positive weights")
            .map(|c| c.0)
            .collect();
        chosen.sort_unstable();
        chosen
    }

    /// About 10 births per 1,000 people a year from January 2025 to the reference date.
    fn recent_births(&mut self) {
        let start = ymd(2025, 1, 1);
        let end = add_days(reference_date(), -1);
        let months = 22.0;
        let target = (self.persons.len() as f64 * 0.010 * months / 12.0).round() as usize;
        let candidates = self.fertile_candidates(ymd(2025, 6, 1), &BTreeSet::new());
        for mother in self.pick_weighted(&candidates, target) {
            let w = &self.persons[mother];
            let mut lo = start.max(add_days(w.marriage.expect("married"), 280));
            if let Some(&last) = w.children.last() {
                lo = lo.max(add_days(self.persons[last].birth, 456));
            }
            let father = w.spouse.expect("has a husband");
            let hh = w.household;
            if lo > end {
                continue;
            }
            let birth = self.date_between(lo, end);
            let male = self.chance(0.52);
            self.add_child(hh, father, mother, birth, male);
        }
    }

    /// Ongoing pregnancies expected in the coming months, and a few that ended without a birth.
    fn pregnancies(&mut self) {
        let ref_date = reference_date();
        let births = self
            .persons
            .iter()
            .filter(|p| p.birth >= ymd(2025, 1, 1))
            .count();
        let mut exclude: BTreeSet<usize> = (0..self.persons.len())
            .filter(|&p| {
                self.persons[p]
                    .children
                    .last()
                    .is_some_and(|&c| self.persons[c].birth >= add_days(ref_date, -600))
            })
            .collect();
        let candidates = self.fertile_candidates(ref_date, &exclude);
        let ongoing = self.pick_weighted(&candidates, births * 2 / 5);
        for &w in &ongoing {
            let expected = add_days(ref_date, self.rng.gen_range(10..=230));
            let detected =
                add_days(expected, -280 + self.rng.gen_range(42..=90)).min(add_days(ref_date, -3));
            let parity = self.persons[w].children.len() as i64 + 1;
            let within = parity <= 3;
            let cert = self.certificate(w, detected);
            let fields = fields(&[
                ("person_id", json!(self.persons[w].id)),
                ("detected_on", json!(iso(detected))),
                ("expected_date", json!(iso(expected))),
                ("parity", json!(parity)),
                ("within_policy", json!(within)),
                ("certificate_no", opt(cert)),
                ("status", json!("ongoing")),
            ]);
            self.push(Entity::Pregnancy, w, fields);
            self.pregnant.push((w, detected, expected));
            exclude.insert(w);
        }
        let candidates = self.fertile_candidates(ref_date, &exclude);
        let ended = self.pick_weighted(&candidates, (births / 6).max(2));
        for &w in &ended {
            let outcome_date = self.date_between(ymd(2025, 2, 1), add_days(ref_date, -20));
            let detected = add_days(outcome_date, -self.rng.gen_range(15..=60));
            let expected = add_days(detected, self.rng.gen_range(200..=240));
            let outcome = if self.chance(0.6) {
                "miscarriage"
            } else {
                "induced"
            };
            let parity = self.persons[w].children.len() as i64 + 1;
            let fields = fields(&[
                ("person_id", json!(self.persons[w].id)),
                ("detected_on", json!(iso(detected))),
                ("expected_date", json!(iso(expected))),
                ("parity", json!(parity)),
                ("within_policy", json!(parity <= 3)),
                ("status", json!("ended")),
                ("outcome", json!(outcome)),
                ("outcome_date", json!(iso(outcome_date))),
            ]);
            self.push(Entity::Pregnancy, w, fields);
        }
    }

    /// A birth-service certificate (生育服务证) for most pregnancies.
    fn certificate(&mut self, woman: usize, on: NaiveDate) -> Option<String> {
        if !self.chance(0.88) {
            return None;
        }
        let v = self.households[self.persons[woman].household].village;
        let township = &self.villages[v].code[..9];
        Some(format!(
            "冀生服{township}-{}-{:04}",
            on.year(),
            self.rng.gen_range(1..10_000)
        ))
    }

    /// Elderly people who died in 2025-2026, more often the older they are; a surviving spouse
    /// becomes widowed on that day.
    fn deaths(&mut self) {
        let ref_date = reference_date();
        for p in 0..self.persons.len() {
            let age = age_on(self.persons[p].birth, ref_date);
            let yearly = match age {
                ..=64 => continue,
                65..=74 => 0.02,
                75..=84 => 0.05,
                _ => 0.12,
            };
            if !self.chance(yearly * 22.0 / 12.0) {
                continue;
            }
            let spouse = self.persons[p].spouse;
            // Someone whose spouse died already dies later, as a widow or widower.
            let lo = spouse
                .and_then(|s| self.persons[s].death)
                .map_or(ymd(2025, 1, 1), |(d, _)| add_days(d, 1));
            let hi = add_days(ref_date, -1);
            if lo > hi {
                continue;
            }
            let date = self.date_between(lo, hi);
            let cause = self.weighted(DEATH_CAUSES);
            self.persons[p].alive = false;
            self.persons[p].death = Some((date, cause));
            if let Some(s) = spouse.filter(|&s| self.persons[s].alive) {
                self.persons[s].marital = "widowed";
                self.persons[s].marriage = Some(date);
            }
            let f = fields(&[
                ("person_id", json!(self.persons[p].id)),
                ("death_date", json!(iso(date))),
                ("cause", json!(cause)),
            ]);
            self.push(Entity::Death, p, f);
        }
    }

    fn policy_allows(&mut self, parity: usize, date: NaiveDate, first_male: bool) -> bool {
        match parity {
            1 => true,
            2 => date.year() >= 2016 || !first_male || self.chance(0.3),
            3 => date.year() >= 2021 || self.chance(0.1),
            _ => false,
        }
    }

    /// The birth ledger of every married woman of childbearing age: all her children, with
    /// parities in order, and the pregnancy that ended in each birth of 2025-2026.
    fn birth_ledger(&mut self) {
        let ref_date = reference_date();
        for w in 0..self.persons.len() {
            if self.persons[w].male
                || self.persons[w].children.is_empty()
                || !(WCBA_MIN_AGE..=WCBA_MAX_AGE).contains(&age_on(self.persons[w].birth, ref_date))
            {
                continue;
            }
            let children = self.persons[w].children.clone();
            let first_male = self.persons[children[0]].male;
            for (i, &c) in children.iter().enumerate() {
                let parity = i + 1;
                let birth = self.persons[c].birth;
                let within = self.policy_allows(parity, birth, first_male);
                let within = within && (birth.year() < 2025 || self.chance(0.97));
                let place = if birth.year() >= 2010 {
                    self.weighted(&[
                        ("hospital", 55u32),
                        ("township_clinic", 40),
                        ("home", 3),
                        ("other", 2),
                    ])
                } else {
                    self.weighted(&[
                        ("hospital", 25u32),
                        ("township_clinic", 50),
                        ("home", 22),
                        ("other", 3),
                    ])
                };
                let f = fields(&[
                    ("mother_id", json!(self.persons[w].id)),
                    ("child_id", json!(self.persons[c].id)),
                    ("birth_date", json!(iso(birth))),
                    ("sex", json!(sex(self.persons[c].male))),
                    ("parity", json!(parity)),
                    ("place", json!(place)),
                    ("within_policy", json!(within)),
                ]);
                self.push(Entity::Birth, w, f);
                if birth >= ymd(2025, 1, 1) {
                    self.recent_birth[w] = Some(birth);
                    let detected = add_days(birth, -self.rng.gen_range(190..=240));
                    let expected = add_days(birth, self.rng.gen_range(-10..=14));
                    let cert = self.certificate(w, detected);
                    let f = fields(&[
                        ("person_id", json!(self.persons[w].id)),
                        ("detected_on", json!(iso(detected))),
                        ("expected_date", json!(iso(expected))),
                        ("parity", json!(parity)),
                        ("within_policy", json!(within)),
                        ("certificate_no", opt(cert)),
                        ("status", json!("ended")),
                        ("outcome", json!("birth")),
                        ("outcome_date", json!(iso(birth))),
                    ]);
                    self.push(Entity::Pregnancy, w, f);
                    // Postpartum visits on day 7 and day 42.
                    for days in [7, 42] {
                        let due = add_days(birth, days);
                        self.visit(w, "postpartum", due, 0.95, 0..=5, "产妇恢复良好，婴儿健康");
                    }
                }
            }
        }
    }

    fn provider(&mut self, woman: usize, long_acting: bool) -> String {
        let v = &self.villages[self.households[self.persons[woman].household].village];
        let (village, township) = (v.name, v.township);
        if !long_acting {
            return format!("{village}卫生室");
        }
        match self.weighted(&[(0u8, 60), (1, 25), (2, 15)]) {
            0 => format!("{township}计划生育服务站"),
            1 => format!("{township}卫生院"),
            _ => "平山县妇幼保健院".to_string(),
        }
    }

    fn push_measure(
        &mut self,
        p: usize,
        m: &str,
        started: NaiveDate,
        ended: Option<NaiveDate>,
        provider: String,
    ) {
        let f = fields(&[
            ("person_id", json!(self.persons[p].id)),
            ("method", json!(m)),
            ("started_on", json!(iso(started))),
            ("ended_on", opt(ended.map(iso))),
            ("provider", json!(provider)),
        ]);
        self.push(Entity::Measure, p, f);
    }

    /// A current measure for about nine in ten married women of childbearing age (not the
    /// pregnant, not those who gave birth in the last months), and the IUDs removed before the
    /// births of 2025-2026.
    // Persons are addressed by index throughout; the loop index is the person.
    #[allow(clippy::needless_range_loop)]
    fn measures(&mut self) {
        let ref_date = reference_date();
        let expected: Vec<Option<NaiveDate>> = {
            let mut v = vec![None; self.persons.len()];
            for &(w, _, e) in &self.pregnant {
                v[w] = Some(e);
            }
            v
        };
        for w in 0..self.persons.len() {
            if !self.is_wcba(w, ref_date) {
                continue;
            }
            let children = self.persons[w].children.clone();
            let marriage = self.persons[w].marriage.expect("married");
            let recent = self.recent_birth[w];
            // The IUD taken out before a planned birth.
            if let Some(due) = recent.or(expected[w]) {
                let conception = add_days(due, -270);
                let previous = children
                    .iter()
                    .map(|&c| self.persons[c].birth)
                    .filter(|&b| b < conception)
                    .max();
                if let Some(prev) = previous {
                    let inserted = add_days(prev, self.rng.gen_range(60..=300));
                    let removed = add_days(conception, -self.rng.gen_range(30..=120));
                    if removed > add_days(inserted, 180) && self.chance(0.6) {
                        let provider = self.provider(w, true);
                        self.push_measure(
                            w,
                            "iud_insertion",
                            inserted,
                            Some(removed),
                            provider.clone(),
                        );
                        self.push_measure(w, "iud_removal", removed, Some(removed), provider);
                    }
                }
            }
            if expected[w].is_some() {
                continue;
            }
            let last_birth = children.last().map(|&c| self.persons[c].birth);
            if let Some(b) = recent {
                // Long-acting measures follow most births, two to six months on.
                let started = add_days(b, self.rng.gen_range(60..=180));
                if started >= ref_date || !self.chance(0.9) {
                    continue;
                }
                let m = if children.len() >= 2 && self.chance(0.3) {
                    Measure::Tubal
                } else if self.chance(0.9) {
                    Measure::Iud
                } else {
                    Measure::Implant
                };
                self.current(w, m, started);
                continue;
            }
            if !self.chance(0.95) {
                continue;
            }
            let age = age_on(self.persons[w].birth, ref_date);
            let m = match children.len() {
                0 => self.weighted(&[
                    (Measure::Condoms, 60u32),
                    (Measure::Pills, 35),
                    (Measure::Injection, 5),
                ]),
                1 => self.weighted(&[
                    (Measure::Iud, 70u32),
                    (Measure::Implant, 6),
                    (Measure::Pills, 8),
                    (Measure::Condoms, 14),
                    (Measure::Injection, 2),
                ]),
                _ if age >= 30 => self.weighted(&[
                    (Measure::Iud, 55u32),
                    (Measure::Tubal, 25),
                    (Measure::Vasectomy, 4),
                    (Measure::Implant, 5),
                    (Measure::Pills, 4),
                    (Measure::Condoms, 7),
                ]),
                _ => self.weighted(&[
                    (Measure::Iud, 70u32),
                    (Measure::Implant, 8),
                    (Measure::Pills, 8),
                    (Measure::Condoms, 14),
                ]),
            };
            let started = if m.long_acting() {
                let after = last_birth.unwrap_or(marriage);
                add_days(after, self.rng.gen_range(60..=400))
            } else {
                let lo = marriage.max(add_days(ref_date, -1500));
                self.date_between(lo, add_days(ref_date, -30))
            };
            let started = started.min(add_days(ref_date, -7));
            self.current(w, m, started);
        }
    }

    fn current(&mut self, w: usize, m: Measure, started: NaiveDate) {
        // A vasectomy is the husband's operation; it counts for his wife.
        let subject = if m == Measure::Vasectomy {
            self.persons[w].spouse.expect("married")
        } else {
            w
        };
        let provider = self.provider(w, m.long_acting());
        self.push_measure(subject, m.value(), started, None, provider);
        self.current_measure[w] = Some((m, started));
        if m.long_acting() && started >= ymd(2025, 1, 1) {
            let due = add_days(started, 30);
            self.visit(
                subject,
                "post_operation",
                due,
                0.95,
                -3..=10,
                "术后恢复良好",
            );
        }
    }

    /// One visit due on `due`, done (on a day in `slack` of it, never after the reference date)
    /// with probability `p_done` when already due.
    fn visit(
        &mut self,
        p: usize,
        kind: &str,
        due: NaiveDate,
        p_done: f64,
        slack: std::ops::RangeInclusive<i64>,
        findings: &str,
    ) {
        let ref_date = reference_date();
        let done = due <= ref_date && self.chance(p_done);
        let mut f = vec![
            ("person_id", json!(self.persons[p].id)),
            ("kind", json!(kind)),
            ("due_date", json!(iso(due))),
        ];
        if done {
            let on = add_days(due, self.rng.gen_range(slack)).min(add_days(ref_date, -1));
            f.push(("visit_date", json!(iso(on))));
            f.push(("findings", json!(findings)));
        }
        self.push(Entity::Visit, p, fields(&f));
    }

    /// The three checks (三查) of each quarter for married women of childbearing age at home.
    // Persons are addressed by index throughout; the loop index is the person.
    #[allow(clippy::needless_range_loop)]
    fn visits(&mut self) {
        let ref_date = reference_date();
        let dues = [
            ymd(2025, 12, 15),
            ymd(2026, 3, 15),
            ymd(2026, 6, 15),
            ymd(2026, 9, 15),
        ];
        let pregnant_since: Vec<Option<NaiveDate>> = {
            let mut v = vec![None; self.persons.len()];
            for &(w, d, _) in &self.pregnant {
                v[w] = Some(d);
            }
            v
        };
        for w in 0..self.persons.len() {
            if !self.is_wcba(w, ref_date) || self.persons[w].residence == "moved_out" {
                continue;
            }
            for due in dues {
                if !self.is_wcba(w, due) {
                    continue;
                }
                let done = due <= ref_date && self.chance(0.9);
                let on = add_days(due, self.rng.gen_range(-14..=20)).min(add_days(ref_date, -1));
                let next_due = due.checked_add_months(Months::new(3)).expect("in range");
                let iud = matches!(self.current_measure[w], Some((Measure::Iud, s)) if s <= due);
                let pregnant = pregnant_since[w].is_some_and(|d| d <= on)
                    || self.recent_birth[w].is_some_and(|b| add_days(b, -200) <= on && on < b);
                let mut kinds = vec![];
                if iud {
                    let finding = if self.chance(0.96) {
                        "环位正常"
                    } else {
                        "环位下移，已建议复查"
                    };
                    kinds.push(("iud_check", finding));
                }
                kinds.push((
                    "pregnancy_check",
                    if pregnant {
                        "已孕，孕情已登记"
                    } else {
                        "未孕"
                    },
                ));
                let disease = self.weighted(&[
                    ("未见异常", 85u32),
                    ("宫颈炎，已建议治疗", 6),
                    ("阴道炎，已建议治疗", 6),
                    ("乳腺增生，已建议复查", 3),
                ]);
                kinds.push(("disease_check", disease));
                for (kind, finding) in kinds {
                    let mut f = vec![
                        ("person_id", json!(self.persons[w].id)),
                        ("kind", json!(kind)),
                        ("due_date", json!(iso(due))),
                    ];
                    if done {
                        f.push(("visit_date", json!(iso(on))));
                        f.push(("findings", json!(finding)));
                        f.push(("next_due", json!(iso(next_due))));
                    }
                    self.push(Entity::Visit, w, fields(&f));
                }
            }
        }
    }

    /// Registration of every out- and in-migrant; marriage-and-childbearing certificates for
    /// most out-migrant married women, checks of most in-migrants' certificates.
    fn migrations(&mut self) {
        let ref_date = reference_date();
        for p in 0..self.persons.len() {
            let direction = match self.persons[p].residence {
                "moved_out" => "out",
                "moved_in" => "in",
                _ => continue,
            };
            let birth = self.persons[p].birth;
            let moved_on = match self.persons[p].moved_on {
                Some(d) => d,
                None => {
                    let lo = add_years(birth, 18).max(ymd(2015, 1, 1));
                    self.date_between(lo, add_days(ref_date, -30))
                }
            };
            self.persons[p].moved_on = Some(moved_on);
            let mut f = vec![
                ("person_id", json!(self.persons[p].id)),
                ("direction", json!(direction)),
                ("moved_on", json!(iso(moved_on))),
            ];
            if direction == "out" {
                let place = if self.chance(0.55) {
                    "outside_province"
                } else {
                    "within_province"
                };
                f.push(("place", json!(place)));
                if self.is_wcba(p, ref_date) && self.chance(0.9) {
                    let no = format!(
                        "冀流{COUNTY_CODE}{}{:05}",
                        moved_on.year(),
                        self.rng.gen_range(1..100_000)
                    );
                    f.push(("certificate_no", json!(no)));
                }
            } else {
                let region = &self.persons[p].id_number[..2];
                let place = if region == "13" {
                    "within_province"
                } else {
                    "outside_province"
                };
                f.push(("place", json!(place)));
                let checked = self.chance(0.9);
                f.push(("certificate_checked", json!(checked)));
            }
            self.push(Entity::Migration, p, fields(&f));
        }
    }

    /// Condoms and pills handed out each quarter of 2025-2026 to the women who use them.
    fn supplies(&mut self) {
        let ref_date = reference_date();
        for w in 0..self.persons.len() {
            let Some((m, started)) = self.current_measure[w] else {
                continue;
            };
            if !matches!(m, Measure::Pills | Measure::Condoms)
                || self.persons[w].residence == "moved_out"
            {
                continue;
            }
            for q in 0..8 {
                let quarter = ymd(2025 + q / 4, (q % 4) as u32 * 3 + 1, 1);
                let on = add_days(quarter, self.rng.gen_range(0..60));
                if on < started || on >= ref_date || !self.chance(0.85) {
                    continue;
                }
                let (item, quantity) = match m {
                    Measure::Pills => ("pills", 3),
                    _ if self.chance(0.1) => ("film", self.rng.gen_range(1..=2)),
                    _ => (
                        "condoms",
                        *[20, 30, 50].choose(&mut self.rng).expect("non-empty"),
                    ),
                };
                let f = fields(&[
                    ("person_id", json!(self.persons[w].id)),
                    ("item", json!(item)),
                    ("quantity", json!(quantity)),
                    ("handed_on", json!(iso(on))),
                ]);
                self.push(Entity::Supply, w, f);
            }
        }
    }

    fn kids_of(&self, hh: usize) -> Vec<usize> {
        self.households[hh]
            .members
            .iter()
            .copied()
            .filter(|&p| self.persons[p].relation == "child")
            .collect()
    }

    /// One-child parents' certificates for one-child households whose child was born before the
    /// two-child policy; reward and assistance (960 yuan a year) for parents of 60 and over of
    /// one-child and two-daughter households.
    fn benefits(&mut self) {
        for hh in 0..self.households.len() {
            let kids = self.kids_of(hh);
            let one_child = kids.len() == 1;
            let two_daughters = kids.len() == 2 && kids.iter().all(|&k| !self.persons[k].male);
            if !(one_child || two_daughters) {
                continue;
            }
            let head = self.households[hh].head;
            let Some(spouse) = self.persons[head].spouse else {
                continue;
            };
            let (father, mother) = if self.persons[head].male {
                (head, spouse)
            } else {
                (spouse, head)
            };
            let hh_id = self.households[hh].id.clone();
            let first_birth = self.persons[kids[0]].birth;
            if one_child && first_birth.year() < 2016 && self.chance(0.8) {
                let year = (first_birth.year() + self.rng.gen_range(0..=2)).min(2016);
                let f = fields(&[
                    ("person_id", json!(self.persons[mother].id)),
                    ("household_id", json!(hh_id)),
                    ("kind", json!("one_child_certificate")),
                    ("year", json!(year)),
                ]);
                self.push(Entity::Benefit, mother, f);
            }
            if !self.chance(0.9) {
                continue;
            }
            for parent in [father, mother] {
                for year in [2025, 2026] {
                    let p = &self.persons[parent];
                    let died_before = p.death.is_some_and(|(d, _)| d.year() < year);
                    if died_before || age_on(p.birth, ymd(year, 12, 31)) < 60 {
                        continue;
                    }
                    let f = fields(&[
                        ("person_id", json!(p.id)),
                        ("household_id", json!(hh_id)),
                        ("kind", json!("reward_assistance")),
                        ("year", json!(year)),
                        ("amount_yuan", json!(960)),
                    ]);
                    self.push(Entity::Benefit, parent, f);
                }
            }
        }
    }

    fn emit_households_and_persons(&mut self) {
        for hh in 0..self.households.len() {
            let kids = self.kids_of(hh);
            let h = &self.households[hh];
            let head = &self.persons[h.head];
            let f = fields(&[
                ("household_no", json!(h.no)),
                ("address", json!(h.address)),
                ("head_name", json!(head.name)),
                ("phone", opt(head.phone.clone())),
                ("one_child", json!(kids.len() == 1)),
                (
                    "two_daughters",
                    json!(kids.len() == 2 && kids.iter().all(|&k| !self.persons[k].male)),
                ),
            ]);
            self.records.push(Draft {
                entity: Entity::Household,
                id: h.id.clone(),
                org_unit: h.org_unit.clone(),
                fields: f,
            });
        }
        for p in &self.persons {
            let h = &self.households[p.household];
            let f = fields(&[
                ("household_id", json!(h.id)),
                ("name", json!(p.name)),
                ("sex", json!(sex(p.male))),
                ("birth_date", json!(iso(p.birth))),
                ("id_number", json!(p.id_number)),
                ("relation", json!(p.relation)),
                ("marital_status", json!(p.marital)),
                ("marriage_date", opt(p.marriage.map(iso))),
                ("residence", json!(p.residence)),
                ("alive", json!(p.alive)),
                ("phone", opt(p.phone.clone())),
            ]);
            self.records.push(Draft {
                entity: Entity::Person,
                id: p.id.clone(),
                org_unit: h.org_unit.clone(),
                fields: f,
            });
        }
    }

    /// A ledger record about person `p`, kept where the person's household is.
    fn push(&mut self, entity: Entity, p: usize, fields: Fields) {
        let id = self.uuid();
        let org_unit = self.households[self.persons[p].household].org_unit.clone();
        self.records.push(Draft {
            entity,
            id,
            org_unit,
            fields,
        });
    }
}

fn sex(male: bool) -> &'static str {
    if male {
        "male"
    } else {
        "female"
    }
}

fn opt<T: serde::Serialize>(v: Option<T>) -> Value {
    v.map_or(Value::Null, |v| json!(v))
}

/// Fields without the null ones: an absent field is simply not set.
fn fields(pairs: &[(&str, Value)]) -> Fields {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::checks::{self, CheckInput};
    use crate::domain::entities::{FieldType, ENTITIES};
    use std::collections::BTreeMap;

    fn by_id(g: &Generated) -> BTreeMap<&str, &Draft> {
        g.records.iter().map(|r| (r.id.as_str(), r)).collect()
    }

    fn s<'a>(r: &'a Draft, f: &str) -> &'a str {
        r.fields[f].as_str().unwrap_or_else(|| panic!("{f}"))
    }

    #[test]
    fn same_seed_same_county() {
        let a = generate(7);
        let b = generate(7);
        let c = generate(8);
        assert_eq!(a.records.len(), b.records.len());
        for (x, y) in a.records.iter().zip(&b.records) {
            assert_eq!(
                (x.entity, &x.id, &x.org_unit, &x.fields),
                (y.entity, &y.id, &y.org_unit, &y.fields)
            );
        }
        assert_ne!(a.records[0].id, c.records[0].id);
    }

    #[test]
    fn values_fit_their_fields() {
        let g = generate(2026);
        let units: BTreeSet<&str> = g.org_units.iter().map(|u| u.code.as_str()).collect();
        let ids = by_id(&g);
        for r in &g.records {
            assert!(units.contains(r.org_unit.as_str()));
            let def = r.entity.def();
            for f in def.fields.iter().filter(|f| f.required) {
                assert!(
                    r.fields.contains_key(f.name),
                    "{}.{} missing",
                    def.name,
                    f.name
                );
            }
            for (k, v) in &r.fields {
                let f = def
                    .field(k)
                    .unwrap_or_else(|| panic!("{}.{k} unknown", def.name));
                match f.ty {
                    FieldType::Text { max_len } => {
                        assert!(v.as_str().unwrap().chars().count() <= max_len)
                    }
                    FieldType::Int { min, max } => {
                        assert!((min..=max).contains(&v.as_i64().unwrap()), "{k}")
                    }
                    FieldType::Bool => assert!(v.is_boolean()),
                    FieldType::Date => {
                        let d: NaiveDate = v.as_str().unwrap().parse().unwrap();
                        assert_eq!(iso(d), v.as_str().unwrap());
                    }
                    FieldType::Enum(choices) => {
                        assert!(
                            choices.iter().any(|c| c.value == v.as_str().unwrap()),
                            "{k}={v}"
                        )
                    }
                    FieldType::Ref(e) => {
                        assert_eq!(ids[v.as_str().unwrap()].entity, e, "{}.{k}", def.name)
                    }
                    FieldType::ResidentId => assert_eq!(v.as_str().unwrap().len(), 18),
                }
            }
        }
        assert_eq!(ENTITIES.len(), 10);
    }

    #[test]
    fn no_logic_check_fails() {
        let g = generate(2026);
        let ids = by_id(&g);
        let today = reference_date();
        let deaths: BTreeMap<&str, NaiveDate> = g
            .records
            .iter()
            .filter(|r| r.entity == Entity::Death)
            .map(|r| (s(r, "person_id"), s(r, "death_date").parse().unwrap()))
            .collect();
        let mut failures = Vec::new();
        for r in &g.records {
            let subject_id = r
                .fields
                .get("person_id")
                .or(r.fields.get("mother_id"))
                .and_then(|v| v.as_str());
            let subject = subject_id.map(|id| &ids[id].fields);
            let earlier = (r.entity == Entity::Birth).then(|| {
                g.records
                    .iter()
                    .filter(|b| b.entity == Entity::Birth && s(b, "mother_id") == s(r, "mother_id"))
                    .filter(|b| s(b, "birth_date") < s(r, "birth_date"))
                    .count() as i64
            });
            let death = match r.entity {
                Entity::Person => deaths.get(r.id.as_str()).copied(),
                _ => subject_id.and_then(|id| deaths.get(id).copied()),
            };
            let input = CheckInput {
                entity: r.entity,
                fields: &r.fields,
                today,
                subject,
                subject_death_date: death,
                earlier_births: earlier,
            };
            for c in checks::run(&input) {
                failures.push(format!("{} {}: {}", r.entity.name(), r.id, c.code));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn rates_are_realistic() {
        let g = generate(2026);
        let persons: Vec<&Draft> = g
            .records
            .iter()
            .filter(|r| r.entity == Entity::Person)
            .collect();
        let n = persons.len() as f64;
        assert!((2_700.0..3_300.0).contains(&n), "{n} persons");
        let share =
            |res: &str| persons.iter().filter(|p| s(p, "residence") == res).count() as f64 / n;
        assert!(
            (0.03..0.08).contains(&share("moved_out")),
            "{}",
            share("moved_out")
        );
        assert!(
            (0.01..0.04).contains(&share("moved_in")),
            "{}",
            share("moved_in")
        );
        let wcba: Vec<&&Draft> = persons
            .iter()
            .filter(|p| {
                crate::report::indicators::is_married_woman_of_childbearing_age(
                    s(p, "sex"),
                    s(p, "marital_status"),
                    p.fields
                        .get("marriage_date")
                        .and_then(|d| d.as_str()?.parse().ok()),
                    s(p, "birth_date").parse().unwrap(),
                    reference_date(),
                )
            })
            .collect();
        // A current measure of hers or her husband's.
        let users: BTreeSet<&str> = g
            .records
            .iter()
            .filter(|r| r.entity == Entity::Measure && !r.fields.contains_key("ended_on"))
            .map(|r| s(r, "person_id"))
            .collect();
        let husband_of: BTreeMap<&str, &str> = persons
            .iter()
            .filter(|p| s(p, "relation") == "head" && s(p, "sex") == "male")
            .map(|p| (s(p, "household_id"), p.id.as_str()))
            .collect();
        let covered = wcba
            .iter()
            .filter(|w| {
                users.contains(w.id.as_str())
                    || husband_of
                        .get(s(w, "household_id"))
                        .is_some_and(|h| users.contains(h))
            })
            .count();
        let prevalence = covered as f64 / wcba.len() as f64;
        assert!(
            (0.84..0.93).contains(&prevalence),
            "{covered} of {}",
            wcba.len()
        );
        let recent = g
            .records
            .iter()
            .filter(|r| r.entity == Entity::Birth && s(r, "birth_date") >= "2025-01-01")
            .count() as f64;
        let rate = recent / n * 1000.0 * 12.0 / 22.0;
        assert!((7.0..13.0).contains(&rate), "{rate} per mille");
        for e in [
            Entity::Death,
            Entity::Visit,
            Entity::Migration,
            Entity::Supply,
            Entity::Benefit,
        ] {
            assert!(g.count(e) > 0, "{e:?}");
        }
    }
}
