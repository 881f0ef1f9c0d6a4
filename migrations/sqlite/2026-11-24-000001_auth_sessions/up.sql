-- Supervisors and admins sign in without a device, and a field worker's first sign-in (to
-- register a phone) has none yet: their refresh-token families carry no device.
CREATE TABLE refresh_tokens_new (
    id TEXT PRIMARY KEY,
    family_id TEXT NOT NULL,
    device_id TEXT REFERENCES devices(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    token_hash TEXT NOT NULL UNIQUE,
    successor_id TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    revoked_at BIGINT
);
INSERT INTO refresh_tokens_new SELECT * FROM refresh_tokens;
DROP TABLE refresh_tokens;
ALTER TABLE refresh_tokens_new RENAME TO refresh_tokens;
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_device ON refresh_tokens (device_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
