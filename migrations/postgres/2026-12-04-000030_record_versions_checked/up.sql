-- The information accuracy (信息准确率) counts the records of a subtree received in a period:
-- a range on the org-unit code and the time received, not a scan of every version.
CREATE INDEX record_versions_checked ON record_versions (org_unit, created_at);
