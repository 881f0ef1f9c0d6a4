-- The information accuracy (信息准确率) counts the records received in a period in a subtree:
-- a range on the time received, read from this index alone (it covers the columns counted), so
-- a month's figure reads that month's versions, not every version of the subtree.
CREATE INDEX record_versions_checked ON record_versions (created_at, org_unit, deleted, entity, record_id);
