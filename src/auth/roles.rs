use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user's role. Field workers sync their villages; supervisors read their subtree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 村计生专干 / 信息员
    Worker,
    /// 乡镇计生办
    TownshipSupervisor,
    /// 县卫健局
    CountySupervisor,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Worker,
        Role::TownshipSupervisor,
        Role::CountySupervisor,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Worker => "worker",
            Role::TownshipSupervisor => "township_supervisor",
            Role::CountySupervisor => "county_supervisor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn is_supervisor(self) -> bool {
        SUPERVISORS.contains(&self)
    }

    /// The role names, for messages: `worker, township_supervisor, county_supervisor, admin`.
    pub fn names() -> String {
        Role::ALL.map(Role::as_str).join(", ")
    }
}

/// The sets of roles the route table and the services name, each defined once here.
///
/// Township and county supervisors: the supervisor API, reports and targets.
pub const SUPERVISORS: &[Role] = &[Role::TownshipSupervisor, Role::CountySupervisor];

/// Admins and the supervisors, who manage the devices and villages of their subtree.
pub const MANAGERS: &[Role] = &[
    Role::Admin,
    Role::TownshipSupervisor,
    Role::CountySupervisor,
];

/// Who submits a village's monthly report: its worker, or a township supervisor for it.
pub const REPORT_SUBMITTERS: &[Role] = &[Role::Worker, Role::TownshipSupervisor];

/// Field workers only (push, pull, registering a device).
pub const WORKERS: &[Role] = &[Role::Worker];

/// Admins only (accounts, the audit log).
pub const ADMINS: &[Role] = &[Role::Admin];

/// Township supervisors only (approving and returning reports).
pub const TOWNSHIP_SUPERVISORS: &[Role] = &[Role::TownshipSupervisor];

/// County supervisors only (locking a month).
pub const COUNTY_SUPERVISORS: &[Role] = &[Role::CountySupervisor];

/// Where a resident ID number (身份证号) is shown to a caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdContext {
    /// Many persons at once: ledger lists, the duplicate and dismissed-pair lists, the conflict
    /// queue, a device's rejected ops.
    List,
    /// One record: its detail and the records linked to it, its history (versions, ops and
    /// conflicts), one conflict, and the records a merge, its undo or a resolution answers.
    Record,
}

/// How an ID number is shown: in full, or masked to its region code and last four characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdNumberView {
    Full,
    Masked,
}

impl IdNumberView {
    pub fn masked(self) -> bool {
        self == IdNumberView::Masked
    }
}

/// The one rule for showing ID numbers in the supervisor API (every answer of `supervise::*`
/// that holds a person's fields, a field value or an op payload goes through it):
///
/// - Lists are masked for everyone: a list is for finding a person, and the region code and
///   last four characters are enough to tell two persons apart (the filter `id_number=` takes
///   the full number).
/// - One record is shown in full to a township supervisor (乡镇计生办), who reconciles records
///   with the villages and the household register, and masked to a county supervisor (县卫健局),
///   who compares townships: duplicates share the number, so a masked value still shows the pair.
/// - Workers and admins do not read the supervisor API; should they, they get masked values.
///
/// Exports (`report::export`) are always masked. Masking itself is `ResidentId::mask`.
pub fn id_number_view(role: Role, ctx: IdContext) -> IdNumberView {
    match (role, ctx) {
        (Role::TownshipSupervisor, IdContext::Record) => IdNumberView::Full,
        _ => IdNumberView::Masked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_numbers_full_only_in_a_township_supervisors_record_view() {
        for role in Role::ALL {
            assert_eq!(id_number_view(role, IdContext::List), IdNumberView::Masked);
        }
        assert_eq!(
            id_number_view(Role::TownshipSupervisor, IdContext::Record),
            IdNumberView::Full
        );
        for role in [Role::CountySupervisor, Role::Worker, Role::Admin] {
            assert_eq!(
                id_number_view(role, IdContext::Record),
                IdNumberView::Masked
            );
        }
    }
}
