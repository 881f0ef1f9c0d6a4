//! The record types of the village ledgers (台账) and their fields: the one place that says
//! which tables exist, which fields a device may set, their types and checked values (with
//! their Chinese labels), and which conflict policy each field follows.
//!
//! The migrations mirror this table; `tests/api/schema.rs` fails when they drift apart.

use serde::Serialize;
use utoipa::ToSchema;

/// How a field's concurrent edits are settled (see PROTOCOL.md, "Merge").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldPolicy {
    /// Keep the server's value and open a conflict for a supervisor (health and status facts).
    Review,
    /// The later `recorded_at` wins; the other value is kept in a closed conflict (contact details, notes).
    Latest,
}

/// One allowed value of an enumerated field, with its labels.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
pub struct Choice {
    pub value: &'static str,
    pub zh: &'static str,
    pub en: &'static str,
}

const fn c(value: &'static str, zh: &'static str, en: &'static str) -> Choice {
    Choice { value, zh, en }
}

/// The type of a field, as validated before anything reaches the database.
#[derive(Clone, Copy, Debug)]
pub enum FieldType {
    Text {
        max_len: usize,
    },
    Int {
        min: i64,
        max: i64,
    },
    Bool,
    /// ISO date `YYYY-MM-DD`.
    Date,
    Enum(&'static [Choice]),
    /// The id of another record (a UUID), e.g. a pregnancy's woman.
    Ref(Entity),
    /// A resident ID number (身份证号) as typed, up to [`crate::domain::resident_id::MAX_TYPED_LEN`]
    /// characters: its shape and check digit are logic checks (`id_format`, `id_check_digit`),
    /// not type errors, so a mistyped number is stored and flagged rather than lost.
    ResidentId,
}

#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub name: &'static str,
    pub ty: FieldType,
    pub required: bool,
    pub policy: FieldPolicy,
    /// Personal data that must never be logged and is masked or hidden in lists.
    pub personal: bool,
    pub zh: &'static str,
    pub en: &'static str,
}

const fn f(name: &'static str, ty: FieldType, zh: &'static str, en: &'static str) -> Field {
    Field {
        name,
        ty,
        required: false,
        policy: FieldPolicy::Review,
        personal: false,
        zh,
        en,
    }
}

impl Field {
    const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    const fn latest(mut self) -> Self {
        self.policy = FieldPolicy::Latest;
        self
    }
    const fn personal(mut self) -> Self {
        self.personal = true;
        self
    }
}

const NOTE: FieldType = FieldType::Text { max_len: 2000 };
const SHORT: FieldType = FieldType::Text { max_len: 100 };
const NAME: FieldType = FieldType::Text { max_len: 50 };

pub const SEX: &[Choice] = &[c("male", "男", "male"), c("female", "女", "female")];

pub const RELATION: &[Choice] = &[
    c("head", "户主", "head of household"),
    c("spouse", "配偶", "spouse"),
    c("child", "子女", "child"),
    c("daughter_in_law", "儿媳", "daughter-in-law"),
    c("son_in_law", "女婿", "son-in-law"),
    c("grandchild", "孙子女", "grandchild"),
    c("parent", "父母", "parent"),
    c("parent_in_law", "公婆/岳父母", "parent-in-law"),
    c("grandparent", "祖父母/外祖父母", "grandparent"),
    c("sibling", "兄弟姐妹", "sibling"),
    c("sibling_in_law", "兄弟姐妹的配偶", "sibling's spouse"),
    c("other", "其他", "other"),
];

pub const MARITAL_STATUS: &[Choice] = &[
    c("unmarried", "未婚", "never married"),
    c("first_marriage", "初婚", "first marriage"),
    c("remarried", "再婚", "remarried"),
    c("divorced", "离婚", "divorced"),
    c("widowed", "丧偶", "widowed"),
];

pub const RESIDENCE: &[Choice] = &[
    c("resident", "常住", "resident"),
    c("moved_out", "流出", "moved out"),
    c("moved_in", "流入", "moved in"),
];

pub const PREGNANCY_STATUS: &[Choice] = &[
    c("ongoing", "孕中", "ongoing"),
    c("ended", "已终止", "ended"),
];

pub const PREGNANCY_OUTCOME: &[Choice] = &[
    c("birth", "分娩", "birth"),
    c("miscarriage", "自然流产", "miscarriage"),
    c("induced", "人工流产/引产", "induced abortion"),
];

pub const BIRTH_PLACE: &[Choice] = &[
    c("hospital", "县级及以上医院", "hospital"),
    c("township_clinic", "乡镇卫生院", "township clinic"),
    c("home", "家中", "home"),
    c("other", "其他", "other"),
];

pub const METHOD: &[Choice] = &[
    c("iud_insertion", "上环", "IUD insertion"),
    c("iud_removal", "取环", "IUD removal"),
    c("tubal_ligation", "女扎", "tubal ligation"),
    c("vasectomy", "男扎", "vasectomy"),
    c("implant", "皮埋", "implant"),
    c("pills", "口服药", "pills"),
    c("condoms", "避孕套", "condoms"),
    c("injection", "注射", "injection"),
];

pub const VISIT_KIND: &[Choice] = &[
    c("iud_check", "查环", "IUD check"),
    c("pregnancy_check", "查孕", "pregnancy check"),
    c("disease_check", "查病", "disease check"),
    c("post_operation", "术后随访", "post-operation follow-up"),
    c("postpartum", "产后随访", "postpartum follow-up"),
    c("contraceptive", "避孕随访", "contraceptive follow-up"),
];

pub const DIRECTION: &[Choice] = &[c("out", "流出", "out"), c("in", "流入", "in")];

pub const MIGRATION_PLACE: &[Choice] = &[
    c("within_province", "省内", "within the province"),
    c("outside_province", "省外", "outside the province"),
];

pub const SUPPLY_ITEM: &[Choice] = &[
    c("condoms", "避孕套(只)", "condoms (pieces)"),
    c("film", "避孕药膜(本)", "contraceptive film (booklets)"),
    c("pills", "短效口服药(板)", "short-acting pills (strips)"),
];

pub const BENEFIT_KIND: &[Choice] = &[
    c(
        "one_child_certificate",
        "独生子女父母光荣证",
        "one-child parents' certificate",
    ),
    c("reward_assistance", "奖励扶助", "reward and assistance"),
    c("special_assistance", "特别扶助", "special assistance"),
];

/// The record types a device syncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Household,
    Person,
    Pregnancy,
    Birth,
    Death,
    Measure,
    Visit,
    Migration,
    Supply,
    Benefit,
}

pub struct EntityDef {
    pub entity: Entity,
    /// Wire name, e.g. `person`.
    pub name: &'static str,
    pub table: &'static str,
    pub zh: &'static str,
    pub en: &'static str,
    pub fields: &'static [Field],
    /// What a supervisor's ledger list may be sorted by (besides `id`, the default): fields of
    /// this type or the server columns in [`SORT_COLUMNS`]. Of personal fields only dates and a
    /// person's name (never an ID number, phone, address or note).
    pub sort_keys: &'static [&'static str],
}

/// Server-owned columns a ledger list may sort by.
pub const SORT_COLUMNS: &[&str] = &["org_unit", "updated_at"];

const HOUSEHOLD_FIELDS: &[Field] = &[
    f("household_no", SHORT, "户编号", "household number").required(),
    f(
        "address",
        FieldType::Text { max_len: 200 },
        "住址",
        "address",
    )
    .latest()
    .personal(),
    f("head_name", NAME, "户主姓名", "head of household").personal(),
    f(
        "phone",
        FieldType::Text { max_len: 20 },
        "联系电话",
        "phone",
    )
    .latest()
    .personal(),
    f(
        "one_child",
        FieldType::Bool,
        "独生子女户",
        "one-child household",
    ),
    f(
        "two_daughters",
        FieldType::Bool,
        "双女户",
        "two-daughter household",
    ),
    f("notes", NOTE, "备注", "notes").latest().personal(),
];

const PERSON_FIELDS: &[Field] = &[
    f(
        "household_id",
        FieldType::Ref(Entity::Household),
        "所属户",
        "household",
    ),
    f("name", NAME, "姓名", "name").required().personal(),
    f("sex", FieldType::Enum(SEX), "性别", "sex").required(),
    f("birth_date", FieldType::Date, "出生日期", "birth date")
        .required()
        .personal(),
    f(
        "id_number",
        FieldType::ResidentId,
        "身份证号",
        "resident ID number",
    )
    .personal(),
    f(
        "relation",
        FieldType::Enum(RELATION),
        "与户主关系",
        "relation to head",
    ),
    f(
        "marital_status",
        FieldType::Enum(MARITAL_STATUS),
        "婚姻状况",
        "marital status",
    ),
    f(
        "marriage_date",
        FieldType::Date,
        "婚姻变动日期",
        "marriage date",
    ),
    f("spouse_id", PERSON_REF, "配偶", "spouse"),
    f(
        "residence",
        FieldType::Enum(RESIDENCE),
        "户籍/居住状态",
        "residence status",
    ),
    f("alive", FieldType::Bool, "存活", "alive"),
    f(
        "phone",
        FieldType::Text { max_len: 20 },
        "联系电话",
        "phone",
    )
    .latest()
    .personal(),
    f("notes", NOTE, "备注", "notes").latest().personal(),
];

const PERSON_REF: FieldType = FieldType::Ref(Entity::Person);

const PREGNANCY_FIELDS: &[Field] = &[
    f("person_id", PERSON_REF, "孕妇", "woman").required(),
    f("detected_on", FieldType::Date, "发现日期", "detected on"),
    f("expected_date", FieldType::Date, "预产期", "expected date"),
    f(
        "parity",
        FieldType::Int { min: 1, max: 20 },
        "孩次",
        "parity",
    ),
    f(
        "within_policy",
        FieldType::Bool,
        "符合政策",
        "within policy",
    ),
    f(
        "certificate_no",
        SHORT,
        "生育服务证号",
        "birth-service certificate number",
    ),
    f(
        "status",
        FieldType::Enum(PREGNANCY_STATUS),
        "孕情状态",
        "status",
    )
    .required(),
    f(
        "outcome",
        FieldType::Enum(PREGNANCY_OUTCOME),
        "孕情结果",
        "outcome",
    ),
    f("outcome_date", FieldType::Date, "结果日期", "outcome date"),
    f("notes", NOTE, "备注", "notes").latest().personal(),
];

const BIRTH_FIELDS: &[Field] = &[
    f("mother_id", PERSON_REF, "母亲", "mother").required(),
    f("child_id", PERSON_REF, "婴儿", "child"),
    f("birth_date", FieldType::Date, "出生日期", "birth date").required(),
    f("sex", FieldType::Enum(SEX), "婴儿性别", "sex").required(),
    f(
        "parity",
        FieldType::Int { min: 1, max: 20 },
        "孩次",
        "parity",
    )
    .required(),
    f("place", FieldType::Enum(BIRTH_PLACE), "出生地点", "place"),
    f(
        "within_policy",
        FieldType::Bool,
        "符合政策",
        "within policy",
    ),
    f("notes", NOTE, "备注", "notes").latest().personal(),
];

const DEATH_FIELDS: &[Field] = &[
    f("person_id", PERSON_REF, "死者", "person").required(),
    f("death_date", FieldType::Date, "死亡日期", "death date").required(),
    f("cause", SHORT, "死亡原因", "cause").personal(),
    f("notes", NOTE, "备注", "notes").latest().personal(),
];

const MEASURE_FIELDS: &[Field] = &[
    f("person_id", PERSON_REF, "对象", "person").required(),
    f("method", FieldType::Enum(METHOD), "节育措施", "method").required(),
    f("started_on", FieldType::Date, "落实日期", "started on").required(),
    f("ended_on", FieldType::Date, "终止日期", "ended on"),
    f("provider", SHORT, "手术/服务单位", "provider"),
    f("notes", NOTE, "备注", "notes").latest().personal(),
];

const VISIT_FIELDS: &[Field] = &[
    f("person_id", PERSON_REF, "对象", "person").required(),
    f("kind", FieldType::Enum(VISIT_KIND), "随访类别", "kind").required(),
    f("due_date", FieldType::Date, "应随访日期", "due date"),
    f("visit_date", FieldType::Date, "随访日期", "visit date"),
    f("findings", NOTE, "随访情况", "findings").personal(),
    f("next_due", FieldType::Date, "下次随访日期", "next due"),
    f("notes", NOTE, "备注", "notes").latest().personal(),
];

const MIGRATION_FIELDS: &[Field] = &[
    f("person_id", PERSON_REF, "流动人员", "person").required(),
    f("direction", FieldType::Enum(DIRECTION), "流向", "direction").required(),
    f(
        "place",
        FieldType::Enum(MIGRATION_PLACE),
        "流动范围",
        "place",
    ),
    f(
        "moved_on",
        FieldType::Date,
        "流出/流入日期",
        "left or arrived on",
    )
    .required(),
    f(
        "certificate_no",
        SHORT,
        "婚育证明号",
        "marriage-and-childbearing certificate",
    ),
    f(
        "certificate_checked",
        FieldType::Bool,
        "已查证",
        "certificate checked",
    ),
    f("notes", NOTE, "备注", "notes").latest().personal(),
];

const SUPPLY_FIELDS: &[Field] = &[
    f("person_id", PERSON_REF, "领取人", "person").required(),
    f("item", FieldType::Enum(SUPPLY_ITEM), "药具", "item").required(),
    f(
        "quantity",
        FieldType::Int {
            min: 1,
            max: 10_000,
        },
        "数量",
        "quantity",
    )
    .required(),
    f("handed_on", FieldType::Date, "发放日期", "handed out on").required(),
];

const BENEFIT_FIELDS: &[Field] = &[
    f("person_id", PERSON_REF, "对象", "person"),
    f(
        "household_id",
        FieldType::Ref(Entity::Household),
        "所属户",
        "household",
    ),
    f("kind", FieldType::Enum(BENEFIT_KIND), "奖扶类别", "kind").required(),
    f(
        "year",
        FieldType::Int {
            min: 1980,
            max: 2100,
        },
        "年度",
        "year",
    )
    .required(),
    f(
        "amount_yuan",
        FieldType::Int {
            min: 0,
            max: 1_000_000,
        },
        "金额(元)",
        "amount (yuan)",
    ),
];

pub const ENTITIES: &[EntityDef] = &[
    EntityDef {
        entity: Entity::Household,
        name: "household",
        table: "households",
        zh: "家庭户",
        en: "household",
        fields: HOUSEHOLD_FIELDS,
        sort_keys: &["household_no", "org_unit", "updated_at"],
    },
    EntityDef {
        entity: Entity::Person,
        name: "person",
        table: "persons",
        zh: "人员",
        en: "person",
        fields: PERSON_FIELDS,
        sort_keys: &["name", "birth_date", "org_unit", "updated_at"],
    },
    EntityDef {
        entity: Entity::Pregnancy,
        name: "pregnancy",
        table: "pregnancies",
        zh: "孕情",
        en: "pregnancy",
        fields: PREGNANCY_FIELDS,
        sort_keys: &["expected_date", "detected_on", "updated_at"],
    },
    EntityDef {
        entity: Entity::Birth,
        name: "birth",
        table: "births",
        zh: "出生",
        en: "birth",
        fields: BIRTH_FIELDS,
        sort_keys: &["birth_date", "updated_at"],
    },
    EntityDef {
        entity: Entity::Death,
        name: "death",
        table: "deaths",
        zh: "死亡",
        en: "death",
        fields: DEATH_FIELDS,
        sort_keys: &["death_date", "updated_at"],
    },
    EntityDef {
        entity: Entity::Measure,
        name: "measure",
        table: "measures",
        zh: "节育措施",
        en: "contraceptive measure",
        fields: MEASURE_FIELDS,
        sort_keys: &["started_on", "updated_at"],
    },
    EntityDef {
        entity: Entity::Visit,
        name: "visit",
        table: "visits",
        zh: "随访",
        en: "follow-up visit",
        fields: VISIT_FIELDS,
        sort_keys: &["visit_date", "due_date", "updated_at"],
    },
    EntityDef {
        entity: Entity::Migration,
        name: "migration",
        table: "migrations_log",
        zh: "流动人口登记",
        en: "migration",
        fields: MIGRATION_FIELDS,
        sort_keys: &["moved_on", "updated_at"],
    },
    EntityDef {
        entity: Entity::Supply,
        name: "supply",
        table: "supplies",
        zh: "药具发放",
        en: "supply hand-out",
        fields: SUPPLY_FIELDS,
        sort_keys: &["handed_on", "updated_at"],
    },
    EntityDef {
        entity: Entity::Benefit,
        name: "benefit",
        table: "benefits",
        zh: "奖励扶助",
        en: "benefit",
        fields: BENEFIT_FIELDS,
        sort_keys: &["year", "updated_at"],
    },
];

/// Columns every record table has and that only the server writes. A device that sends one in
/// `set` gets its op rejected with `server_owned_field`.
pub const SERVER_OWNED: &[&str] = &[
    "id",
    "version",
    "change_seq",
    "deleted",
    "merged_into",
    "field_stamps",
    "created_at",
    "updated_at",
    "created_by",
    "updated_by",
    "updated_device",
    "recorded_at",
];

impl Entity {
    pub fn def(self) -> &'static EntityDef {
        ENTITIES
            .iter()
            .find(|d| d.entity == self)
            .expect("every entity has a definition")
    }

    pub fn parse(name: &str) -> Option<Entity> {
        ENTITIES.iter().find(|d| d.name == name).map(|d| d.entity)
    }

    pub fn name(self) -> &'static str {
        self.def().name
    }

    pub fn all() -> impl Iterator<Item = Entity> {
        ENTITIES.iter().map(|d| d.entity)
    }
}

impl EntityDef {
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Fields of this record type that point at another record, used to re-point children when
    /// two persons are merged.
    pub fn refs_to(&self, target: Entity) -> impl Iterator<Item = &'static Field> {
        self.fields
            .iter()
            .filter(move |f| matches!(f.ty, FieldType::Ref(e) if e == target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tables_are_unique() {
        let mut names: Vec<_> = ENTITIES.iter().map(|d| d.name).collect();
        let mut tables: Vec<_> = ENTITIES.iter().map(|d| d.table).collect();
        names.sort();
        names.dedup();
        tables.sort();
        tables.dedup();
        assert_eq!(names.len(), ENTITIES.len());
        assert_eq!(tables.len(), ENTITIES.len());
    }

    #[test]
    fn sort_keys_are_columns_and_not_personal() {
        for d in ENTITIES {
            for key in d.sort_keys {
                match d.field(key) {
                    Some(fld) => assert!(
                        !fld.personal
                            || matches!(fld.ty, FieldType::Date)
                            || (d.entity == Entity::Person && fld.name == "name"),
                        "{}.{key} is personal",
                        d.name
                    ),
                    None => assert!(SORT_COLUMNS.contains(key), "{}.{key}", d.name),
                }
            }
        }
    }

    /// The field app's forms (web/field/schema.js) as the server defines them.
    fn field_app_schema() -> serde_json::Value {
        use serde_json::{json, Value};
        let fields = |d: &EntityDef| -> Vec<Value> {
            d.fields
                .iter()
                .map(|fld| {
                    let mut v = json!({
                        "name": fld.name,
                        "zh": fld.zh,
                        "required": fld.required,
                        "policy": fld.policy,
                    });
                    let extra = match fld.ty {
                        FieldType::Text { max_len } => json!({"type": "text", "max_len": max_len}),
                        FieldType::Int { min, max } => json!({"type": "int", "min": min, "max": max}),
                        FieldType::Bool => json!({"type": "bool"}),
                        FieldType::Date => json!({"type": "date"}),
                        FieldType::Enum(choices) => json!({
                            "type": "enum",
                            "choices": choices.iter().map(|c| json!({"value": c.value, "zh": c.zh})).collect::<Vec<_>>(),
                        }),
                        FieldType::Ref(e) => json!({"type": "ref", "ref": e.name()}),
                        FieldType::ResidentId => json!({"type": "resident_id"}),
                    };
                    if let (Value::Object(v), Value::Object(extra)) = (&mut v, extra) {
                        v.extend(extra);
                    }
                    v
                })
                .collect()
        };
        json!({"entities": ENTITIES.iter().map(|d| json!({"name": d.name, "zh": d.zh, "fields": fields(d)})).collect::<Vec<_>>()})
    }

    #[test]
    fn field_app_schema_matches() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/web/field/schema.js");
        let text = std::fs::read_to_string(path).expect("web/field/schema.js");
        let json = text
            .split_once("export const SCHEMA = ")
            .map(|(_, rest)| rest.trim_end().trim_end_matches(';'))
            .expect("schema.js holds `export const SCHEMA = {...};`");
        let held: serde_json::Value = serde_json::from_str(json).expect("the schema is plain JSON");
        assert_eq!(
            held,
            field_app_schema(),
            "web/field/schema.js differs from src/domain/entities.rs"
        );
    }

    #[test]
    fn no_field_shadows_a_server_column() {
        for d in ENTITIES {
            for fld in d.fields {
                assert!(!SERVER_OWNED.contains(&fld.name), "{}.{}", d.name, fld.name);
                assert_ne!(fld.name, "org_unit");
            }
        }
    }
}
