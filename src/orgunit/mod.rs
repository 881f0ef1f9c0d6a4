//! Org units, their rules and their storage, in one place. Units and their statistical
//! division codes: county (6 digits) > township (9) > village or residents' committee (12) >
//! villager group (the village code and a local suffix). Because a child's code extends its
//! parent's, a subtree is a code-prefix range. The rules (levels, codes, parents, subtree
//! ranges) are here; the `org_units` table is read and written only by [`store`].

pub mod store;

pub use store::{
    children, children_at, count, get, level, names, parse_csv, record_holders, subtree,
    subtree_at, upsert, upsert_reporting, NewOrgUnit, OrgUnit,
};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// 县/区
    County,
    /// 乡/镇/街道
    Township,
    /// 村/居委会
    Village,
    /// 村民小组
    Group,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::County => "county",
            Level::Township => "township",
            Level::Village => "village",
            Level::Group => "group",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        [Level::County, Level::Township, Level::Village, Level::Group]
            .into_iter()
            .find(|l| l.as_str() == s)
    }

    pub fn zh(self) -> &'static str {
        match self {
            Level::County => "县",
            Level::Township => "乡镇",
            Level::Village => "村",
            Level::Group => "村民小组",
        }
    }

    pub fn parent(self) -> Option<Level> {
        match self {
            Level::County => None,
            Level::Township => Some(Level::County),
            Level::Village => Some(Level::Township),
            Level::Group => Some(Level::Village),
        }
    }

    /// Records are kept at villages and groups; only these can own a ledger record.
    pub fn holds_records(self) -> bool {
        matches!(self, Level::Village | Level::Group)
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("a division code has only digits, then for a group up to 8 letters or digits")]
    Characters,
    #[error(
        "a division code has 6 (county), 9 (township), 12 (village) or 13-20 (group) characters"
    )]
    Length,
    #[error("the parent's code must be the code's prefix at the level above")]
    Parent,
}

/// The level a code's shape implies.
pub fn level_of(code: &str) -> Result<Level, CodeError> {
    if !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(CodeError::Characters);
    }
    let digits = code.bytes().take(12).all(|b| b.is_ascii_digit());
    match code.len() {
        6 | 9 | 12 if !digits => Err(CodeError::Characters),
        6 => Ok(Level::County),
        9 => Ok(Level::Township),
        12 => Ok(Level::Village),
        13..=20 if digits => Ok(Level::Group),
        13..=20 => Err(CodeError::Characters),
        _ => Err(CodeError::Length),
    }
}

/// Checks that `parent` is the unit directly above `code`.
pub fn check_parent(code: &str, parent: Option<&str>) -> Result<Level, CodeError> {
    let level = level_of(code)?;
    match (level.parent(), parent) {
        (None, None) => Ok(level),
        (Some(pl), Some(p)) if code.starts_with(p) && level_of(p) == Ok(pl) => Ok(level),
        _ => Err(CodeError::Parent),
    }
}

/// The half-open range `[lo, hi)` of codes in the subtree under `code`, for index range scans.
/// Codes are ASCII letters and digits, all below `~`, so `code + "~"` bounds the subtree.
pub fn subtree_range(code: &str) -> (String, String) {
    (code.to_string(), format!("{code}~"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_from_code_shape() {
        assert_eq!(level_of("130131"), Ok(Level::County));
        assert_eq!(level_of("130131102"), Ok(Level::Township));
        assert_eq!(level_of("130131102201"), Ok(Level::Village));
        assert_eq!(level_of("130131102201G01"), Ok(Level::Group));
        assert_eq!(level_of("13013"), Err(CodeError::Length));
        assert_eq!(level_of("13013A"), Err(CodeError::Characters));
        assert_eq!(level_of("130131-02"), Err(CodeError::Characters));
    }

    #[test]
    fn parent_must_be_prefix_one_level_up() {
        assert!(check_parent("130131", None).is_ok());
        assert!(check_parent("130131102", Some("130131")).is_ok());
        assert!(check_parent("130131102", Some("130132")).is_err());
        assert!(check_parent("130131102201", Some("130131")).is_err());
        assert!(check_parent("130131102", None).is_err());
    }

    #[test]
    fn subtree_range_contains_descendants_only() {
        let (lo, hi) = subtree_range("130131102");
        for inside in [
            "130131102",
            "130131102201",
            "130131102201G1",
            "130131102999",
        ] {
            assert!(inside >= lo.as_str() && inside < hi.as_str(), "{inside}");
        }
        for outside in ["130131103", "130131101999", "1301311030"] {
            assert!(
                !(outside >= lo.as_str() && outside < hi.as_str()),
                "{outside}"
            );
        }
    }
}
