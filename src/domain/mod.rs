//! The ledgers' record types, org units, and the rules about them.

pub mod checks;
pub mod entities;
pub mod orgunit;
pub mod record;
pub mod resident_id;
