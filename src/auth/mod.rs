//! Who may do what: roles, scope (more in the accounts issue: passwords, tokens, devices).

pub mod roles;
pub mod scope;
