//! The monthly report (月报): indicator formulas and counting rules (`indicators`), counts by
//! SQL aggregation (`counts`), the report and its breakdown (`report`), yearly targets
//! (`targets`), submission, approval and locking (`approval`), CSV/XLSX exports (`export`), and the language of their labels (`lang`).

pub mod approval;
pub mod counts;
pub mod export;
pub mod indicators;
pub mod lang;
#[allow(clippy::module_inception)]
pub mod report;
pub mod targets;
