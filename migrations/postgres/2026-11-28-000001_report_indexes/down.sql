DROP INDEX persons_wcba;
CREATE INDEX persons_wcba ON persons (org_unit, sex, birth_date);
