//! `fieldsync simulate` end to end: a small run of field devices over HTTP against an
//! in-process server, with collisions, resends and offline days, whose checks must all pass.

use crate::both;
use crate::common::*;
use fieldsync::simulate::{self, Options};

both!(small_simulation_verifies, |b| {
    let pg = (b == Backend::Postgres).then(fresh_pg_database);
    let opts = Options {
        spawn: true,
        database_url: pg.as_ref().map(|(url, _, _)| url.clone()),
        devices: 6,
        days: 3,
        ops_per_day: 25,
        concurrency: 3,
        conflict_rate: 0.2,
        resend_rate: 0.3,
        offline_rate: 0.3,
        seed: 7,
        ..Options::default()
    };
    let report = simulate::run(&opts);
    if let Some((_, admin, name)) = &pg {
        drop_pg_database(admin, name);
    }
    let report = report.expect("simulation ran");
    assert!(report.passed(), "{report}");
    assert_eq!(report.rejected, 0, "{report}");
    assert!(report.collisions > 0, "{report}");
    assert!(report.resends > 0, "{report}");
    assert_eq!(report.conflicts[0] + report.conflicts[1], report.collisions);
    assert_eq!(report.conflicts[0], report.conflicts[2]);
    assert_eq!(report.conflicts[1], report.conflicts[3]);
});
