DROP TRIGGER persons_status_changes ON persons;
CREATE TRIGGER persons_status_changes AFTER UPDATE ON persons
    FOR EACH ROW EXECUTE FUNCTION persons_status_changes();
