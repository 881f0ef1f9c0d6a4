DROP INDEX persons_duplicate_key;
