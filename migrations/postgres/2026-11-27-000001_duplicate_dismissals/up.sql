-- Pairs of persons a supervisor judged to be two different people, or whose merge was undone:
-- never listed as potential duplicates and never merged automatically again, until the
-- dismissal is withdrawn (the row deleted). person_a < person_b, as in duplicate_candidates.
CREATE TABLE duplicate_dismissals (
    person_a TEXT NOT NULL,
    person_b TEXT NOT NULL,
    org_unit TEXT COLLATE "C" NOT NULL,
    reason TEXT NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 500),
    dismissed_by TEXT NOT NULL,
    dismissed_at BIGINT NOT NULL,
    -- The undone merge that dismissed the pair, if that is how it came about.
    merge_id TEXT,
    PRIMARY KEY (person_a, person_b)
);
CREATE INDEX duplicate_dismissals_scope ON duplicate_dismissals (org_unit);

-- Undone merges used to mark their pair 'dismissed' in duplicate_candidates: carry them over.
INSERT INTO duplicate_dismissals (person_a, person_b, org_unit, reason, dismissed_by, dismissed_at)
SELECT person_a, person_b, org_unit, 'merge undone', COALESCE(decided_by, ''), COALESCE(decided_at, created_at)
FROM duplicate_candidates WHERE status = 'dismissed';
