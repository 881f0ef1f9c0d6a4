DROP INDEX duplicate_dismissals_scope;
DROP TABLE duplicate_dismissals;
