//! What township and county supervisors do with the merged data (issue 5): browse the
//! ledgers, read a record's history, settle conflicts, merge duplicate persons (and undo),
//! read data-quality flags and device status, and edit records through the merge path.
//!
//! Every service loads the caller's scope from the database (`Principal::scope`); a record,
//! conflict, merge or device outside it answers 404 and never appears in a list or a count.
//! Every read of person data writes an audit row (ids only) before the answer is given.

pub mod audit;
pub mod conflicts;
pub mod devices;
pub mod duplicates;
pub mod ids;
pub mod labels;
pub mod ledgers;
pub mod paging;
pub mod quality;
pub mod record;
pub mod sql;
