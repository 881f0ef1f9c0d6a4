//! The ledgers' record types, resident ID numbers, ages and logic checks: the rules about
//! them (org units are `crate::orgunit`).

pub mod age;
pub mod checks;
pub mod entities;
pub mod record;
pub mod resident_id;
