DROP INDEX persons_population;
DROP INDEX record_versions_seq;
DROP TABLE report_submissions;
DROP TABLE targets;
