-- The couple (issue 14, definition 3): a person's spouse (spouse_id, a reference to a person)
-- and the relations to the head of the household register (户口簿) beyond the first seven:
-- 儿媳, 女婿, 公婆/岳父母, 祖父母, 兄弟姐妹的配偶.
ALTER TABLE persons DROP CONSTRAINT persons_relation_check;
ALTER TABLE persons ADD CONSTRAINT persons_relation_check CHECK (relation IN ('head', 'spouse',
    'child', 'daughter_in_law', 'son_in_law', 'grandchild', 'parent', 'parent_in_law',
    'grandparent', 'sibling', 'sibling_in_law', 'other'));
ALTER TABLE persons ADD COLUMN spouse_id TEXT CHECK (length(spouse_id) = 36);
CREATE INDEX persons_spouse_id ON persons (spouse_id);
-- The married-women statement reads the spouse link too (src/report/counts.rs).
DROP INDEX persons_wcba;
CREATE INDEX persons_wcba ON persons (marital_status, sex, org_unit, birth_date, deleted, alive, residence, relation, household_id, marriage_date, spouse_id, id);

-- Status at a past date (issue 14, definition 1): each change of a person's marital status,
-- spouse, residence or alive flag keeps the value it replaced and the date the new value took
-- effect. The value on a date D is the old value of the earliest change effective after D, or
-- the current value when there is none (src/report/counts.rs). A change of marital status or
-- spouse takes effect on the new marriage date (婚姻变动日期) when the change sets one, any
-- other change on the day it was recorded (recorded_at, in China Standard Time). Written by
-- the trigger below, so every writer of persons (sync, merges, supervisors' edits) keeps it.
CREATE TABLE person_status_changes (
    person_id TEXT NOT NULL,
    org_unit TEXT NOT NULL COLLATE "C",
    field TEXT NOT NULL CHECK (field IN ('marital_status', 'spouse_id', 'residence', 'alive')),
    old_value TEXT,
    -- marital_status: the marriage date that went with the old status.
    old_since TEXT,
    effective_on TEXT NOT NULL,
    change_seq BIGINT NOT NULL,
    PRIMARY KEY (person_id, field, change_seq)
);
CREATE INDEX person_status_changes_unit ON person_status_changes (org_unit, effective_on);

CREATE FUNCTION persons_status_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    recorded TEXT := to_char(to_timestamp(NEW.recorded_at / 1000000 + 28800) AT TIME ZONE 'UTC',
        'YYYY-MM-DD');
    married TEXT := CASE WHEN NEW.marriage_date IS NOT NULL
        AND NEW.marriage_date IS DISTINCT FROM OLD.marriage_date THEN NEW.marriage_date
        ELSE recorded END;
BEGIN
    IF OLD.marital_status IS DISTINCT FROM NEW.marital_status THEN
        INSERT INTO person_status_changes VALUES (NEW.id, NEW.org_unit, 'marital_status',
            OLD.marital_status, OLD.marriage_date, married, NEW.change_seq);
    END IF;
    IF OLD.spouse_id IS DISTINCT FROM NEW.spouse_id THEN
        INSERT INTO person_status_changes VALUES (NEW.id, NEW.org_unit, 'spouse_id',
            OLD.spouse_id, NULL, married, NEW.change_seq);
    END IF;
    IF OLD.residence IS DISTINCT FROM NEW.residence THEN
        INSERT INTO person_status_changes VALUES (NEW.id, NEW.org_unit, 'residence',
            OLD.residence, NULL, recorded, NEW.change_seq);
    END IF;
    IF OLD.alive IS DISTINCT FROM NEW.alive THEN
        INSERT INTO person_status_changes VALUES (NEW.id, NEW.org_unit, 'alive',
            CASE WHEN OLD.alive THEN 'true' WHEN NOT OLD.alive THEN 'false' END, NULL,
            recorded, NEW.change_seq);
    END IF;
    IF NEW.org_unit <> OLD.org_unit THEN
        UPDATE person_status_changes SET org_unit = NEW.org_unit WHERE person_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER persons_status_changes AFTER UPDATE ON persons
    FOR EACH ROW EXECUTE FUNCTION persons_status_changes();
