DROP INDEX record_versions_checked;
