DROP TRIGGER persons_status_changes ON persons;
DROP FUNCTION persons_status_changes();
DROP TABLE person_status_changes;
DROP INDEX persons_spouse_id;
DROP INDEX persons_wcba;
CREATE INDEX persons_wcba ON persons (marital_status, sex, org_unit, birth_date, deleted, alive, residence, relation, household_id, marriage_date, id);
ALTER TABLE persons DROP COLUMN spouse_id;
-- Back to the first seven relations (the others become 'other').
UPDATE persons SET relation = 'other'
WHERE relation IN ('daughter_in_law', 'son_in_law', 'parent_in_law', 'grandparent', 'sibling_in_law');
ALTER TABLE persons DROP CONSTRAINT persons_relation_check;
ALTER TABLE persons ADD CONSTRAINT persons_relation_check CHECK (relation IN ('head', 'spouse',
    'child', 'parent', 'grandchild', 'sibling', 'other'));
