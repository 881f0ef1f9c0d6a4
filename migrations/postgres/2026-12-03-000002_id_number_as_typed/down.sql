UPDATE persons SET id_number = NULL WHERE length(id_number) <> 18;
ALTER TABLE persons DROP CONSTRAINT persons_id_number_check;
ALTER TABLE persons ADD CONSTRAINT persons_id_number_check CHECK (length(id_number) = 18);
