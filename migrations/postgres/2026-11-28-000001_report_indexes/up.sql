-- The report's married-women statement (src/report/counts.rs) reads the married women of a
-- subtree: equality on sex and marital status first, then the org-unit range, and every column
-- the statement reads, so that SQLite answers it from the index alone (a covering index)
-- instead of scanning every person of the subtree and reading each row. It replaces the
-- (org_unit, sex, birth_date) index, which a range on org_unit could not use past its first
-- column.
DROP INDEX persons_wcba;
CREATE INDEX persons_wcba ON persons (sex, marital_status, org_unit, birth_date, deleted, alive, residence, relation, household_id, id);
