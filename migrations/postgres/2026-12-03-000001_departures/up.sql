-- Records that left an org unit (a move to another village or group): the devices of the unit
-- they left receive a tombstone with reason "moved" in commit order (`change_seq` of the move),
-- and an op a device of that unit sends to the record afterwards is answered `moved_out`.
CREATE TABLE departures (
    entity TEXT NOT NULL,
    record_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    from_org_unit TEXT NOT NULL,
    to_org_unit TEXT NOT NULL,
    change_seq BIGINT NOT NULL,
    PRIMARY KEY (entity, record_id, version)
);
CREATE INDEX departures_from ON departures (from_org_unit, change_seq);
CREATE INDEX departures_record ON departures (record_id);
