-- A yearly target may be a band ("出生人口性别比控制在103-107之间"): direction `between`, `value`
-- its floor and `upper` its ceiling (src/report/targets.rs).
ALTER TABLE targets ADD COLUMN upper DOUBLE PRECISION;
ALTER TABLE targets DROP CONSTRAINT targets_direction_check;
ALTER TABLE targets ADD CONSTRAINT targets_direction_check
    CHECK (direction IN ('at_least', 'at_most', 'between'));
ALTER TABLE targets ADD CONSTRAINT targets_upper_check
    CHECK ((direction = 'between') = (upper IS NOT NULL) AND (upper IS NULL OR upper >= value));
