-- Billing (apiserver/src/billing/mod.rs has the rules). Times are Unix milliseconds: node clock for what
-- nodes report, apiserver clock for what the API decides. Quantities are exact integers of each
-- meter's unit (millicores x ms, MiB x ms, GPUs x ms).

-- Who a group was when it was metered: kept after the group is deleted, so its usage can still be
-- exported.
CREATE TABLE usage_groups (
    id             TEXT PRIMARY KEY,
    subscription   TEXT NOT NULL,
    resource_group TEXT NOT NULL,            -- as its creator wrote it
    name           TEXT NOT NULL,
    location       TEXT NOT NULL,
    tags           TEXT NOT NULL,            -- JSON object
    os_type        TEXT NOT NULL,
    cpu_millis     BIGINT NOT NULL,
    memory_mib     BIGINT NOT NULL,
    gpu            BIGINT NOT NULL,
    gpu_sku        TEXT
);
CREATE INDEX usage_groups_subscription ON usage_groups (subscription);

-- Who is billed on which node: a small integer for ledger rows to carry, so an export reads the ledger
-- alone and looks each subject up once.
CREATE TABLE usage_subjects (
    key      INTEGER PRIMARY KEY,
    group_id TEXT NOT NULL REFERENCES usage_groups(id),
    node_id  TEXT NOT NULL,
    UNIQUE (group_id, node_id)
);

-- One start of a group on a node, with the facts its billed end follows from (billing::RunFacts).
CREATE TABLE usage_runs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id        TEXT NOT NULL REFERENCES usage_groups(id),
    node_id         TEXT NOT NULL,
    subject         INTEGER NOT NULL REFERENCES usage_subjects(key),
    generation      BIGINT NOT NULL,         -- the lowest generation reported for the run
    started_ms      BIGINT NOT NULL,
    finished_ms     BIGINT,
    alive_ms        BIGINT NOT NULL,
    cap_ms          BIGINT,
    superseded_ms   BIGINT,
    os_type         TEXT NOT NULL,
    cpu_millis      BIGINT NOT NULL,
    memory_mib      BIGINT NOT NULL,
    gpu             BIGINT NOT NULL,
    gpu_sku         TEXT,
    billed_until_ms BIGINT NOT NULL,         -- the ledger holds [started_ms, billed_until_ms) for this run
    open            INTEGER NOT NULL,        -- 1: the end is not known yet; exports accrue it to now
    UNIQUE (group_id, node_id, started_ms)
);
CREATE INDEX usage_runs_open ON usage_runs (id) WHERE open = 1;
CREATE INDEX usage_runs_unfinished ON usage_runs (node_id) WHERE finished_ms IS NULL;

-- Where each group was placed, from which generation: a node's report opens a run only for a group that
-- was on that node at the report's generation (restarts and updates keep the node and bump the
-- generation, so the latest row at or below it names the node).
CREATE TABLE usage_assignments (
    group_id   TEXT NOT NULL,
    generation BIGINT NOT NULL,
    node_id    TEXT NOT NULL,
    PRIMARY KEY (group_id, generation)
);

-- Stops and deletes through the API: they end every run of the group at that generation or older.
CREATE TABLE usage_caps (
    group_id   TEXT NOT NULL,
    generation BIGINT NOT NULL,
    at_ms      BIGINT NOT NULL,
    PRIMARY KEY (group_id, generation)
);

-- Nodes declared lost, at their last heartbeat (node clock).
CREATE TABLE usage_node_losses (
    node_id TEXT NOT NULL,
    at_ms   BIGINT NOT NULL,
    PRIMARY KEY (node_id, at_ms)
);

-- The ledger. Append-only: rows are inserted, never updated or deleted. A row never crosses a UTC day
-- boundary. A negative quantity is a correction (a late fact shortened what was already written).
-- `cause` and `cause_seq` say what wrote it: a node report ('report', the node's sequence number), a
-- stop or delete ('stop'/'delete', the generation), a node loss ('lost', its time); the same cause
-- never writes a run's meter twice.
CREATE TABLE usage_ledger (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id     INTEGER NOT NULL REFERENCES usage_runs(id),
    subject    INTEGER NOT NULL,             -- the run's
    meter      TEXT NOT NULL,
    start_ms   BIGINT NOT NULL,
    end_ms     BIGINT NOT NULL CHECK (end_ms > start_ms),
    quantity   BIGINT NOT NULL,
    cause      TEXT NOT NULL,
    cause_seq  BIGINT NOT NULL,
    UNIQUE (run_id, cause, cause_seq, meter, start_ms)
);
-- Exports read this index alone, in order of start (it holds every column they need).
CREATE INDEX usage_ledger_export ON usage_ledger (start_ms, id, subject, meter, end_ms, quantity);

-- Ledger rows per UTC day (days since 1970-01-01), kept with every append: an export's row estimate
-- without counting the ledger.
CREATE TABLE usage_days (
    day  BIGINT PRIMARY KEY,
    rows BIGINT NOT NULL
);

-- The node clock of each node's latest message, so a node lost while the apiserver was down still
-- has a last heartbeat.
ALTER TABLE nodes ADD COLUMN last_node_ms BIGINT NOT NULL DEFAULT 0;
