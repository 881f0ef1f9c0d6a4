-- A scratch table for `/ready`'s write probe while writes fail for lack of space: a row of
-- 64 KiB is written and deleted again in one committed transaction. Always empty.
CREATE TABLE storage_probe (filler TEXT NOT NULL);
