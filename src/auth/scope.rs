//! Scope: the org units a user may read (and, for a field worker, write), always loaded from
//! the database on each request, never taken from a token's claims.

use diesel::prelude::*;
use sha2::{Digest, Sha256};

use crate::auth::roles::Role;
use crate::db::schema::{user_villages, users};
use crate::db::DbConn;
use crate::error::AppResult;
use crate::orgunit::subtree_range;

/// A set of subtrees, each named by its root's code. A record is in scope when its org unit
/// lies in one of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    roots: Vec<String>,
}

impl Scope {
    pub fn new(mut roots: Vec<String>) -> Scope {
        roots.sort();
        roots.dedup();
        // A root inside another root adds nothing.
        let mut kept: Vec<String> = Vec::new();
        for r in roots {
            if !kept.iter().any(|k| r.starts_with(k.as_str())) {
                kept.push(r);
            }
        }
        Scope { roots: kept }
    }

    pub fn empty() -> Scope {
        Scope { roots: Vec::new() }
    }

    pub fn roots(&self) -> &[String] {
        &self.roots
    }

    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    pub fn contains(&self, code: &str) -> bool {
        self.roots.iter().any(|r| code.starts_with(r.as_str()))
    }

    /// Half-open code ranges for index range scans, one per root.
    pub fn ranges(&self) -> Vec<(String, String)> {
        self.roots.iter().map(|r| subtree_range(r)).collect()
    }

    /// The ranges of the roots that are org-unit codes (ASCII letters and digits, as validated
    /// when org units are created); a root of any other shape is left out. The one rule for
    /// which ranges reach SQL, bound ([`crate::sync::pull`]) or written ([`Scope::sql_condition`]).
    pub fn sql_ranges(&self) -> Vec<(String, String)> {
        self.ranges()
            .into_iter()
            .filter(|(lo, _)| lo.bytes().all(|b| b.is_ascii_alphanumeric()))
            .collect()
    }

    /// `col` within the scope's subtrees, as SQL text (`1 = 0` for an empty scope): the
    /// [`Scope::sql_ranges`], safe to write into the SQL text.
    pub fn sql_condition(&self, col: &str) -> String {
        let parts: Vec<String> = self
            .sql_ranges()
            .into_iter()
            .map(|(lo, hi)| format!("({col} >= '{lo}' AND {col} < '{hi}')"))
            .collect();
        if parts.is_empty() {
            "1 = 0".into()
        } else {
            format!("({})", parts.join(" OR "))
        }
    }

    /// Changes whenever the scope changes; a device whose last pull had another fingerprint
    /// must reset.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for r in &self.roots {
            h.update(r.as_bytes());
            h.update(b"\n");
        }
        hex::encode(&h.finalize()[..12])
    }
}

/// The scope of a user: a worker's assigned villages or groups; a supervisor's org unit
/// subtree; an admin manages accounts and reads no ledger.
pub fn for_user(conn: &mut DbConn, user_id: &str, role: Role) -> AppResult<Scope> {
    match role {
        Role::Worker => {
            let units: Vec<String> = user_villages::table
                .filter(user_villages::user_id.eq(user_id))
                .select(user_villages::org_unit)
                .load(conn)?;
            Ok(Scope::new(units))
        }
        Role::TownshipSupervisor | Role::CountySupervisor => {
            let unit: Option<Option<String>> = users::table
                .filter(users::id.eq(user_id))
                .select(users::org_unit)
                .first(conn)
                .optional()?;
            Ok(Scope::new(unit.flatten().into_iter().collect()))
        }
        Role::Admin => Ok(Scope::empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_roots_collapse_and_contain_by_prefix() {
        let s = Scope::new(vec![
            "130131102201".into(),
            "130131102".into(),
            "130131103201".into(),
        ]);
        assert_eq!(s.roots(), ["130131102", "130131103201"]);
        assert!(s.contains("130131102202"));
        assert!(s.contains("130131103201G1"));
        assert!(!s.contains("130131103202"));
        assert!(!Scope::empty().contains("130131"));
    }

    #[test]
    fn sql_condition_is_a_range_per_root() {
        let s = Scope::new(vec!["130131102".into(), "130131103201".into()]);
        assert_eq!(
            s.sql_condition("org_unit"),
            "((org_unit >= '130131102' AND org_unit < '130131102~') OR \
             (org_unit >= '130131103201' AND org_unit < '130131103201~'))"
        );
        assert_eq!(Scope::empty().sql_condition("org_unit"), "1 = 0");
        assert_eq!(
            Scope::new(vec!["13'; --".into()]).sql_condition("c"),
            "1 = 0"
        );
    }

    #[test]
    fn fingerprint_follows_the_roots() {
        let a = Scope::new(vec!["130131102201".into()]);
        let b = Scope::new(vec!["130131102201".into(), "130131102202".into()]);
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(
            a.fingerprint(),
            Scope::new(vec!["130131102201".into()]).fingerprint()
        );
    }
}
