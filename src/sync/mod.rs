//! The sync core: wire types, the pure merge engine, and the push and pull services.

pub mod changeset;
pub mod checks;
pub mod duplicates;
pub mod merge;
pub mod plan;
pub mod protocol;
pub mod pull;
pub mod push;
pub mod sequence;
pub mod store;
pub mod validate;
