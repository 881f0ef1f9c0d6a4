-- Supervisors and admins sign in without a device, and a field worker's first sign-in (to
-- register a phone) has none yet: their refresh-token families carry no device.
ALTER TABLE refresh_tokens ALTER COLUMN device_id DROP NOT NULL;
CREATE INDEX refresh_tokens_device ON refresh_tokens (device_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
