-- Change numbers without a lock that orders the writers (src/sync/sequence.rs): a transaction
-- numbers its changes from seq_base + ((its transaction id - seq_xid0) << 16). Numbers so far
-- stay below seq_base; later transactions have ids from seq_xid0 on.
ALTER TABLE sync_state ADD COLUMN seq_base BIGINT NOT NULL DEFAULT 1;
ALTER TABLE sync_state ADD COLUMN seq_xid0 BIGINT NOT NULL DEFAULT 0;
UPDATE sync_state SET seq_base = last_change_seq + 1,
    seq_xid0 = pg_current_xact_id()::text::bigint + 1 WHERE id = 1;
