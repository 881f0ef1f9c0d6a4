//! The monthly report: indicator formulas and counting rules.

pub mod indicators;
