//! Who may do what: roles (more in the accounts issue: passwords, tokens, devices, scope).

pub mod roles;
