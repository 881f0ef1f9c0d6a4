DROP INDEX persons_live_duplicate_key;
CREATE INDEX persons_duplicate_key ON persons (org_unit, birth_date, name);
