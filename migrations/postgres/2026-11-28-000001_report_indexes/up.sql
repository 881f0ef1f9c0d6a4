-- The report's married-women statement (src/report/counts.rs) reads the married women of a
-- subtree: equality on marital status and sex first, then the org-unit range, and every column
-- the statement reads, so that SQLite answers it from the index alone (a covering index)
-- instead of reading every person of the subtree. It replaces (org_unit, sex, birth_date),
-- which a range on org_unit could not use past its first column. Marital status leads so that
-- statements with only `sex = ...` (a husband looked up by household) keep their own index.
DROP INDEX persons_wcba;
CREATE INDEX persons_wcba ON persons (marital_status, sex, org_unit, birth_date, deleted, alive, residence, relation, household_id, id);
