-- The couple (issue 14, definition 3): a person's spouse (spouse_id, a reference to a person)
-- and the relations to the head of the household register (户口簿) beyond the first seven:
-- 儿媳, 女婿, 公婆/岳父母, 祖父母, 兄弟姐妹的配偶. SQLite cannot change a CHECK constraint, so the
-- table is rebuilt with the same columns (and spouse_id last) and indexes.
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
    relation TEXT CHECK (relation IN ('head', 'spouse', 'child', 'daughter_in_law', 'son_in_law', 'grandchild', 'parent', 'parent_in_law', 'grandparent', 'sibling', 'sibling_in_law', 'other')),
    marital_status TEXT CHECK (marital_status IN ('unmarried', 'first_marriage', 'remarried', 'divorced', 'widowed')),
    marriage_date TEXT CHECK (marriage_date GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]'),
    residence TEXT CHECK (residence IN ('resident', 'moved_out', 'moved_in')),
    alive BOOLEAN CHECK (alive IN (0, 1)),
    phone TEXT CHECK (length(phone) <= 20),
    notes TEXT CHECK (length(notes) <= 2000),
    spouse_id TEXT CHECK (length(spouse_id) = 36)
);
INSERT INTO persons_new SELECT *, NULL FROM persons;
DROP TABLE persons;
ALTER TABLE persons_new RENAME TO persons;
CREATE INDEX persons_scope_seq ON persons (org_unit, change_seq);
CREATE UNIQUE INDEX persons_change_seq ON persons (change_seq);
CREATE INDEX persons_household_id ON persons (household_id);
CREATE INDEX persons_id_number ON persons (id_number);
CREATE INDEX persons_population ON persons (org_unit, birth_date, sex, residence, alive, deleted);
CREATE INDEX persons_wcba ON persons (marital_status, sex, org_unit, birth_date, deleted, alive, residence, relation, household_id, marriage_date, spouse_id, id);
CREATE INDEX persons_duplicate_key ON persons (org_unit, birth_date, name);
-- The married-women statement reads the spouse link too (src/report/counts.rs).
CREATE INDEX persons_spouse_id ON persons (spouse_id);

-- Status at a past date (issue 14, definition 1): each change of a person's marital status,
-- spouse, residence or alive flag keeps the value it replaced and the date the new value took
-- effect. The value on a date D is the old value of the earliest change effective after D, or
-- the current value when there is none (src/report/counts.rs). A change of marital status or
-- spouse takes effect on the new marriage date (婚姻变动日期) when the change sets one, any
-- other change on the day it was recorded (recorded_at, in China Standard Time). Written by
-- the trigger below, so every writer of persons (sync, merges, supervisors' edits) keeps it.
CREATE TABLE person_status_changes (
    person_id TEXT NOT NULL,
    org_unit TEXT NOT NULL,
    field TEXT NOT NULL CHECK (field IN ('marital_status', 'spouse_id', 'residence', 'alive')),
    old_value TEXT,
    -- marital_status: the marriage date that went with the old status.
    old_since TEXT,
    effective_on TEXT NOT NULL,
    change_seq BIGINT NOT NULL,
    PRIMARY KEY (person_id, field, change_seq)
);
CREATE INDEX person_status_changes_unit ON person_status_changes (org_unit, effective_on);

CREATE TRIGGER persons_status_changes AFTER UPDATE ON persons
BEGIN
    INSERT INTO person_status_changes
    SELECT NEW.id, NEW.org_unit, 'marital_status', OLD.marital_status, OLD.marriage_date,
        CASE WHEN NEW.marriage_date IS NOT NULL AND NEW.marriage_date IS NOT OLD.marriage_date
            THEN NEW.marriage_date ELSE date(NEW.recorded_at / 1000000 + 28800, 'unixepoch') END,
        NEW.change_seq
    WHERE OLD.marital_status IS NOT NEW.marital_status;
    INSERT INTO person_status_changes
    SELECT NEW.id, NEW.org_unit, 'spouse_id', OLD.spouse_id, NULL,
        CASE WHEN NEW.marriage_date IS NOT NULL AND NEW.marriage_date IS NOT OLD.marriage_date
            THEN NEW.marriage_date ELSE date(NEW.recorded_at / 1000000 + 28800, 'unixepoch') END,
        NEW.change_seq
    WHERE OLD.spouse_id IS NOT NEW.spouse_id;
    INSERT INTO person_status_changes
    SELECT NEW.id, NEW.org_unit, 'residence', OLD.residence, NULL,
        date(NEW.recorded_at / 1000000 + 28800, 'unixepoch'), NEW.change_seq
    WHERE OLD.residence IS NOT NEW.residence;
    INSERT INTO person_status_changes
    SELECT NEW.id, NEW.org_unit, 'alive',
        CASE WHEN OLD.alive THEN 'true' WHEN NOT OLD.alive THEN 'false' END, NULL,
        date(NEW.recorded_at / 1000000 + 28800, 'unixepoch'), NEW.change_seq
    WHERE OLD.alive IS NOT NEW.alive;
    UPDATE person_status_changes SET org_unit = NEW.org_unit
    WHERE NEW.org_unit <> OLD.org_unit AND person_id = NEW.id;
END;
