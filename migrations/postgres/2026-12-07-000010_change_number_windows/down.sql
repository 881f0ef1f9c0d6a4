-- Back to one writer at a time: the next number follows the highest one written.
UPDATE sync_state SET last_change_seq = GREATEST(last_change_seq, seq_base - 1) WHERE id = 1;
ALTER TABLE sync_state DROP COLUMN seq_xid0;
ALTER TABLE sync_state DROP COLUMN seq_base;
