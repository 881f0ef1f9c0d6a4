//! The demo county: deterministic from a seed, realistic enough to try every screen.

pub mod names;

use std::fmt;

use crate::db::Db;
use crate::error::AppResult;

pub struct Summary {
    pub loaded: bool,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "demo loaded: {}", self.loaded)
    }
}

pub fn load(_db: &Db, _seed: u64, _force: bool) -> AppResult<Summary> {
    Ok(Summary { loaded: false })
}
