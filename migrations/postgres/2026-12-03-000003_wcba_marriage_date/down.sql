DROP INDEX persons_wcba;
CREATE INDEX persons_wcba ON persons (marital_status, sex, org_unit, birth_date, deleted, alive, residence, relation, household_id, id);
