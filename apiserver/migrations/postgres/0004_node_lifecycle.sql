-- Nodes leaving (apiserver/src/store/node_lifecycle.rs): lost, cordoned, drained, deleted; the
-- placement epoch that fences a group's copy left behind; how long a group has waited for a node.
-- The same as SQLite's 0007_node_lifecycle.sql.

ALTER TABLE nodes ADD COLUMN cordoned BIGINT NOT NULL DEFAULT 0;  -- 1: no new placement on it
ALTER TABLE nodes ADD COLUMN draining BIGINT NOT NULL DEFAULT 0;  -- 1: drained, until uncordoned

-- Bumped by every placement and by taking the group off a lost or drained node; a report carrying
-- another one is about a copy left behind and is ignored (and not metered).
ALTER TABLE groups ADD COLUMN placement BIGINT NOT NULL DEFAULT 0;
-- Since when it waits for a node (NULL: since created_ms).
ALTER TABLE groups ADD COLUMN pending_since_ms BIGINT;
-- Taken off a lost or drained node after it had finished, its restart policy not running it again:
-- not placed until started or restarted (NULL: not settled).
ALTER TABLE groups ADD COLUMN settled_ms BIGINT;

DROP INDEX groups_unplaced;
CREATE INDEX groups_unplaced ON groups (seq) WHERE node_id IS NULL AND desired = 'Running' AND settled_ms IS NULL;
