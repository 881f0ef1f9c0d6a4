DELETE FROM targets WHERE direction = 'between';
ALTER TABLE targets DROP CONSTRAINT targets_upper_check;
ALTER TABLE targets DROP CONSTRAINT targets_direction_check;
ALTER TABLE targets ADD CONSTRAINT targets_direction_check CHECK (direction IN ('at_least', 'at_most'));
ALTER TABLE targets DROP COLUMN upper;
