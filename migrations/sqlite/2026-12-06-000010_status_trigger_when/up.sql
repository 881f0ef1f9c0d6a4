-- The status-history trigger (2026-12-04-000040) runs only for an update that changes one of
-- the fields it records (or the person's org unit, which its rows carry): most updates of a
-- person change none of them, and the trigger's body then did nothing, once per row.
DROP TRIGGER persons_status_changes;
CREATE TRIGGER persons_status_changes AFTER UPDATE ON persons
    WHEN OLD.marital_status IS NOT NEW.marital_status
        OR OLD.spouse_id IS NOT NEW.spouse_id
        OR OLD.residence IS NOT NEW.residence
        OR OLD.alive IS NOT NEW.alive
        OR OLD.org_unit IS NOT NEW.org_unit
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
