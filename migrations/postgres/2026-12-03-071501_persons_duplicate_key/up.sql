-- The duplicate queue pairs live persons of one village sharing name and birth date: this
-- index answers that self-join by lookup, so a village where thousands of persons share a
-- birth date (but not a name) no longer compares each with each.
CREATE INDEX persons_duplicate_key ON persons (org_unit, birth_date, name);
