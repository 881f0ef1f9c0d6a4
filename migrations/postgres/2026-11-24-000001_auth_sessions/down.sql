DROP INDEX refresh_tokens_user;
DROP INDEX refresh_tokens_device;
DELETE FROM refresh_tokens WHERE device_id IS NULL;
ALTER TABLE refresh_tokens ALTER COLUMN device_id SET NOT NULL;
