-- Leases (apiserver/src/store/leases.rs): work one replica at a time does (lease `control`: the
-- scheduler and the liveness monitor) belongs to the holder of an unexpired row.

CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,     -- the replica's id for this process
    expires_ms BIGINT NOT NULL    -- the database's clock (clock_timestamp()), never a replica's
);
