-- Tokens expire and can be revoked (apiserver/src/auth.rs); listings show a prefix, never the secret, and
-- when a token was last used. Times are Unix milliseconds; NULL: never.

ALTER TABLE tokens ADD COLUMN prefix TEXT NOT NULL DEFAULT '';    -- `berth_<id>_` and the secret's first characters
ALTER TABLE tokens ADD COLUMN expires_ms BIGINT;
ALTER TABLE tokens ADD COLUMN revoked_ms BIGINT;
ALTER TABLE tokens ADD COLUMN last_used_ms BIGINT;               -- written every few seconds, not per request

-- Tokens issued before prefixes were kept show their id only.
UPDATE tokens SET prefix = 'berth_' || id || '_' WHERE prefix = '';
