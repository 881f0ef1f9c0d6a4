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
        matches!(self, Role::TownshipSupervisor | Role::CountySupervisor)
    }
}
