-- The status-history trigger (2026-12-04-000040) runs only for an update that changes one of
-- the fields it records (or the person's org unit, which its rows carry): most updates of a
-- person change none of them, and the trigger's body then did nothing, once per row.
DROP TRIGGER persons_status_changes ON persons;
CREATE TRIGGER persons_status_changes AFTER UPDATE ON persons
    FOR EACH ROW
    WHEN (OLD.marital_status IS DISTINCT FROM NEW.marital_status
        OR OLD.spouse_id IS DISTINCT FROM NEW.spouse_id
        OR OLD.residence IS DISTINCT FROM NEW.residence
        OR OLD.alive IS DISTINCT FROM NEW.alive
        OR OLD.org_unit IS DISTINCT FROM NEW.org_unit)
    EXECUTE FUNCTION persons_status_changes();
