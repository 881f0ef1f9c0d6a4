DROP INDEX persons_marriage_date;
