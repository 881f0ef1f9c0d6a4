//! The sync core: wire types, the pure merge engine, and the push and pull services.

pub mod merge;
