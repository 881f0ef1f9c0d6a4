//! The ledgers' record types, org units, and the rules about them.

pub mod entities;
pub mod orgunit;
