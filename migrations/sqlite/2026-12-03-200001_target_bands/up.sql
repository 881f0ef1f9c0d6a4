-- A yearly target may be a band ("出生人口性别比控制在103-107之间"): direction `between`, `value`
-- its floor and `upper` its ceiling (src/report/targets.rs). SQLite cannot change a CHECK, so the
-- table is rebuilt (nothing references it).
CREATE TABLE targets_new (
    org_unit TEXT NOT NULL REFERENCES org_units(code),
    year INTEGER NOT NULL CHECK (year BETWEEN 2000 AND 2100),
    indicator TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('at_least', 'at_most', 'between')),
    value DOUBLE PRECISION NOT NULL,
    upper DOUBLE PRECISION,
    set_by TEXT NOT NULL,
    set_at BIGINT NOT NULL,
    PRIMARY KEY (org_unit, year, indicator),
    CHECK ((direction = 'between') = (upper IS NOT NULL) AND (upper IS NULL OR upper >= value))
);
INSERT INTO targets_new (org_unit, year, indicator, direction, value, upper, set_by, set_at)
    SELECT org_unit, year, indicator, direction, value, NULL, set_by, set_at FROM targets;
DROP TABLE targets;
ALTER TABLE targets_new RENAME TO targets;
