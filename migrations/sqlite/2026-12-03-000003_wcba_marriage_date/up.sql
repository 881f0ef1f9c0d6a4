-- Married women of childbearing age are married at the period end by their marriage date too
-- (src/report/counts.rs): the covering index of that statement carries the date.
DROP INDEX persons_wcba;
CREATE INDEX persons_wcba ON persons (marital_status, sex, org_unit, birth_date, deleted, alive, residence, relation, household_id, marriage_date, id);
