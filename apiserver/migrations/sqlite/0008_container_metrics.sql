-- Container measurements (apiserver/src/store/metrics.rs): one row per container (its name) and one
-- per group (container ''), per sample a node took. Written only for groups assigned to the node that
-- sent them; deleted by age (`--metrics-retention`). No foreign key: a deleted group's rows are read by
-- nothing (reads go through the group) and age out with the rest.

CREATE TABLE container_samples (
    group_id            TEXT NOT NULL,
    container           TEXT NOT NULL,     -- '' for the group's own row (network counters)
    at_ms               BIGINT NOT NULL,   -- the node's clock
    cpu_usage_ns        BIGINT NOT NULL,
    cpu_millicores      REAL NOT NULL,
    memory_bytes        BIGINT NOT NULL,
    rx_bytes            BIGINT NOT NULL,
    tx_bytes            BIGINT NOT NULL,
    rx_bytes_per_second REAL NOT NULL,
    tx_bytes_per_second REAL NOT NULL,
    PRIMARY KEY (group_id, at_ms, container)
) WITHOUT ROWID;
CREATE INDEX container_samples_at ON container_samples (at_ms);
