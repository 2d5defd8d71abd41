-- What was in one apiserver's memory and every replica must see (apiserver/src/store/exec_sessions.rs,
-- agent_endpoints.rs): exec and attach sessions not yet opened, and where each node's agent serves.
-- The same as SQLite's 0005_replica_state.sql.

CREATE TABLE exec_sessions (
    id             TEXT PRIMARY KEY,
    password_hash  BYTEA NOT NULL,              -- SHA-256 of the password; the password is never stored
    kind           TEXT NOT NULL,               -- exec | attach
    command        TEXT NOT NULL,               -- JSON array (exec); '[]' for attach
    tty            BIGINT NOT NULL,
    stdin          BIGINT NOT NULL,
    term_rows      BIGINT NOT NULL,
    term_cols      BIGINT NOT NULL,
    token_id       TEXT NOT NULL,               -- the token that asked (for the log)
    subscription   TEXT NOT NULL,
    resource_group TEXT NOT NULL,               -- lower case, as groups.resource_group
    group_name     TEXT NOT NULL,
    group_id       TEXT NOT NULL,
    container      TEXT NOT NULL,
    expires_ms     BIGINT NOT NULL
);

CREATE INDEX exec_sessions_by_expiry ON exec_sessions (expires_ms);

-- The URL of the node's AgentService from its latest Hello; NULL: it serves none (or has not said).
ALTER TABLE nodes ADD COLUMN agent_endpoint TEXT;
