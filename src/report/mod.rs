//! The monthly report (月报): indicator formulas and counting rules (`indicators`), counts by
//! SQL aggregation (`counts`), the report and its breakdown (`report`), yearly targets
//! (`targets`), submission, approval and locking (`approval`), and CSV/XLSX exports (`export`).

pub mod approval;
pub mod counts;
pub mod export;
pub mod indicators;
#[allow(clippy::module_inception)]
pub mod report;
pub mod targets;
