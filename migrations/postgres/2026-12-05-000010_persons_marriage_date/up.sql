-- The report's marriages of a period are found by their date (src/report/counts.rs).
CREATE INDEX persons_marriage_date ON persons (marriage_date);
