CREATE TABLE targets_old (
    org_unit TEXT NOT NULL REFERENCES org_units(code),
    year INTEGER NOT NULL CHECK (year BETWEEN 2000 AND 2100),
    indicator TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('at_least', 'at_most')),
    value DOUBLE PRECISION NOT NULL,
    set_by TEXT NOT NULL,
    set_at BIGINT NOT NULL,
    PRIMARY KEY (org_unit, year, indicator)
);
INSERT INTO targets_old (org_unit, year, indicator, direction, value, set_by, set_at)
    SELECT org_unit, year, indicator, direction, value, set_by, set_at FROM targets
    WHERE direction <> 'between';
DROP TABLE targets;
ALTER TABLE targets_old RENAME TO targets;
