-- Resource groups (apiserver/src/http/resource_groups.rs has the rules): created by PUT, or implicitly
-- by the first container-group create into them. Names compare without case, as ARM's do.

CREATE TABLE resource_groups (
    subscription TEXT NOT NULL,              -- as container groups store it
    name         TEXT NOT NULL,              -- lower case: ARM names are case-insensitive
    name_as      TEXT NOT NULL,              -- as its creator wrote it
    location     TEXT NOT NULL,
    tags         TEXT NOT NULL,              -- JSON object
    created_ms   BIGINT NOT NULL,
    updated_ms   BIGINT NOT NULL,
    PRIMARY KEY (subscription, name)
);

-- The groups container groups named before resource groups were stored: each as its first container
-- group wrote it, with that group's location.
INSERT INTO resource_groups (subscription, name, name_as, location, tags, created_ms, updated_ms)
SELECT g.subscription, g.resource_group, g.resource_group_as, g.location, '{}', g.created_ms, g.created_ms
FROM groups g
WHERE g.seq = (SELECT MIN(h.seq) FROM groups h
               WHERE h.subscription = g.subscription AND h.resource_group = g.resource_group);
