-- The duplicates queue groups live persons by village, birth date and name. A partial index of
-- the live persons answers that grouping from the index alone (no read of the rows to test
-- `deleted` and `merged_into`); it replaces the full index, which nothing else used.
DROP INDEX persons_duplicate_key;
CREATE INDEX persons_live_duplicate_key ON persons (org_unit, birth_date, name)
    WHERE NOT deleted AND merged_into IS NULL;
