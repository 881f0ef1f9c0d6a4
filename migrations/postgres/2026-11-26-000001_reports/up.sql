-- Yearly targets (目标管理责任书): one value per org unit, year and indicator, set by the level above.
CREATE TABLE targets (
    org_unit TEXT COLLATE "C" NOT NULL REFERENCES org_units(code),
    year INTEGER NOT NULL CHECK (year BETWEEN 2000 AND 2100),
    indicator TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('at_least', 'at_most')),
    value DOUBLE PRECISION NOT NULL,
    set_by TEXT NOT NULL,
    set_at BIGINT NOT NULL,
    PRIMARY KEY (org_unit, year, indicator)
);

-- A village's monthly report (月报) on its way up: submitted, returned or approved by the
-- township, locked by the county. `figures` holds the counts frozen at approval (JSON) and
-- `approved_seq` the change sequence they were read at; later changes are flagged, never applied.
CREATE TABLE report_submissions (
    id TEXT PRIMARY KEY,
    org_unit TEXT COLLATE "C" NOT NULL REFERENCES org_units(code),
    period TEXT NOT NULL CHECK (period ~ '^[0-9]{4}-[0-1][0-9]$'),
    status TEXT NOT NULL CHECK (status IN ('submitted', 'returned', 'approved', 'locked')),
    comment TEXT,
    first_submitted_at BIGINT NOT NULL,
    submitted_at BIGINT NOT NULL,
    submitted_by TEXT NOT NULL,
    decided_at BIGINT,
    decided_by TEXT,
    locked_at BIGINT,
    locked_by TEXT,
    approved_seq BIGINT,
    figures TEXT,
    UNIQUE (org_unit, period)
);
CREATE INDEX report_submissions_period ON report_submissions (period, org_unit);
CREATE INDEX record_versions_seq ON record_versions (change_seq);
-- Covers the report's population count (a range scan on the code, no row look-ups).
CREATE INDEX persons_population ON persons (org_unit, birth_date, sex, residence, alive, deleted);
