DROP TRIGGER persons_status_changes;
DROP TABLE person_status_changes;
-- Back to the first seven relations (the others become 'other') and no spouse link.
UPDATE persons SET relation = 'other'
WHERE relation IN ('daughter_in_law', 'son_in_law', 'parent_in_law', 'grandparent', 'sibling_in_law');
CREATE TABLE persons_new (
    id TEXT PRIMARY KEY CHECK (length(id) = 36),
    org_unit TEXT NOT NULL REFERENCES org_units(code),
    version BIGINT NOT NULL CHECK (version >= 1),
    change_seq BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    merged_into TEXT,
    field_stamps TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_device TEXT,
    household_id TEXT CHECK (length(household_id) = 36),
    name TEXT NOT NULL CHECK (length(name) <= 50),
    sex TEXT NOT NULL CHECK (sex IN ('male', 'female')),
    birth_date TEXT NOT NULL CHECK (birth_date GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]'),
    id_number TEXT CHECK (length(id_number) <= 24),
    relation TEXT CHECK (relation IN ('head', 'spouse', 'child', 'parent', 'grandchild', 'sibling', 'other')),
    marital_status TEXT CHECK (marital_status IN ('unmarried', 'first_marriage', 'remarried', 'divorced', 'widowed')),
    marriage_date TEXT CHECK (marriage_date GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]'),
    residence TEXT CHECK (residence IN ('resident', 'moved_out', 'moved_in')),
    alive BOOLEAN CHECK (alive IN (0, 1)),
    phone TEXT CHECK (length(phone) <= 20),
    notes TEXT CHECK (length(notes) <= 2000)
);
INSERT INTO persons_new SELECT id, org_unit, version, change_seq, deleted, merged_into, field_stamps,
    created_at, updated_at, recorded_at, created_by, updated_by, updated_device, household_id, name,
    sex, birth_date, id_number, relation, marital_status, marriage_date, residence, alive, phone,
    notes FROM persons;
DROP TABLE persons;
ALTER TABLE persons_new RENAME TO persons;
CREATE INDEX persons_scope_seq ON persons (org_unit, change_seq);
CREATE UNIQUE INDEX persons_change_seq ON persons (change_seq);
CREATE INDEX persons_household_id ON persons (household_id);
CREATE INDEX persons_id_number ON persons (id_number);
CREATE INDEX persons_population ON persons (org_unit, birth_date, sex, residence, alive, deleted);
CREATE INDEX persons_wcba ON persons (marital_status, sex, org_unit, birth_date, deleted, alive, residence, relation, household_id, marriage_date, id);
CREATE INDEX persons_duplicate_key ON persons (org_unit, birth_date, name);
