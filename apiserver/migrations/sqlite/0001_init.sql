-- Berth's schema. Written in the SQL that SQLite and PostgreSQL share, so the PostgreSQL store can run
-- the same statements. Sizes are integers (millicores, MiB); times are Unix milliseconds.

CREATE TABLE tokens (
    id            TEXT PRIMARY KEY,
    hash          TEXT NOT NULL UNIQUE,        -- SHA-256 (hex) of the whole token; the token itself is never stored
    subscriptions TEXT NOT NULL,               -- JSON array of subscription ids
    operator      INTEGER NOT NULL,
    created_ms    BIGINT NOT NULL
);

CREATE TABLE join_tokens (
    id          TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    uses_left   INTEGER NOT NULL CHECK (uses_left >= 0),
    expires_ms  BIGINT NOT NULL,
    created_ms  BIGINT NOT NULL
);

CREATE TABLE nodes (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    os_type           TEXT NOT NULL,
    cpu_millis        BIGINT NOT NULL,
    memory_mib        BIGINT NOT NULL,
    gpu               BIGINT NOT NULL,
    cpu_used          BIGINT NOT NULL DEFAULT 0,
    memory_used       BIGINT NOT NULL DEFAULT 0,
    gpu_used          BIGINT NOT NULL DEFAULT 0,
    labels            TEXT NOT NULL,
    agent_version     TEXT NOT NULL,
    status            TEXT NOT NULL,           -- Ready | NotReady
    last_heartbeat_ms BIGINT NOT NULL,
    joined_ms         BIGINT NOT NULL,
    -- The invariant the scheduler relies on: a node is never overcommitted, whatever races.
    CHECK (cpu_used >= 0 AND cpu_used <= cpu_millis),
    CHECK (memory_used >= 0 AND memory_used <= memory_mib),
    CHECK (gpu_used >= 0 AND gpu_used <= gpu)
);

CREATE TABLE groups (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,  -- creation order, never reused: paging and scheduling
    id                 TEXT NOT NULL UNIQUE,
    subscription       TEXT NOT NULL,
    resource_group     TEXT NOT NULL,            -- lower case: ARM names are case-insensitive
    resource_group_as  TEXT NOT NULL,            -- as the creator wrote it
    name               TEXT NOT NULL,
    location           TEXT NOT NULL,
    tags               TEXT NOT NULL,
    spec               TEXT NOT NULL,            -- JSON GroupSpec with secrets removed
    sealed_spec        BLOB NOT NULL,            -- the whole GroupSpec, encrypted (ChaCha20-Poly1305)
    os_type            TEXT NOT NULL,
    cpu_millis         BIGINT NOT NULL,
    memory_mib         BIGINT NOT NULL,
    gpu                BIGINT NOT NULL,
    fqdn               TEXT,
    generation         BIGINT NOT NULL,
    desired            TEXT NOT NULL,            -- Running | Stopped
    provisioning_state TEXT NOT NULL,
    node_id            TEXT REFERENCES nodes(id),
    status             BLOB,                     -- the node's last GroupStatus (protobuf)
    events             TEXT NOT NULL,            -- JSON: events the control plane adds (scheduling, node health)
    created_ms         BIGINT NOT NULL,
    updated_ms         BIGINT NOT NULL,
    UNIQUE (subscription, resource_group, name)
);
CREATE UNIQUE INDEX groups_fqdn ON groups (fqdn) WHERE fqdn IS NOT NULL;
CREATE INDEX groups_unplaced ON groups (seq) WHERE node_id IS NULL AND desired = 'Running';
CREATE INDEX groups_node ON groups (node_id) WHERE node_id IS NOT NULL;
CREATE INDEX groups_subscription ON groups (subscription, seq);

CREATE TABLE operations (
    id            TEXT PRIMARY KEY,
    subscription  TEXT NOT NULL,
    group_id      TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    kind          TEXT NOT NULL,                 -- create | update | start | restart
    generation    BIGINT NOT NULL,               -- the group generation this operation waits for
    status        TEXT NOT NULL,                 -- Pending | Succeeded | Failed | Canceled
    error_code    TEXT,
    error_message TEXT,
    started_ms    BIGINT NOT NULL,
    ended_ms      BIGINT
);
CREATE INDEX operations_pending ON operations (group_id) WHERE status = 'Pending';

-- Per-subscription usage, kept in the same transactions that create and delete groups, so a quota check
-- is one conditional UPDATE and two racing creates cannot both pass it.
CREATE TABLE subscription_usage (
    subscription TEXT PRIMARY KEY,
    groups       BIGINT NOT NULL CHECK (groups >= 0),
    cpu_millis   BIGINT NOT NULL CHECK (cpu_millis >= 0)
);
