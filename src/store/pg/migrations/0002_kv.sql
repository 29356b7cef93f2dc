-- Every record of the store but the journal: one row per key of each tree (src/store/kv.rs).
-- The trees and their keys are the embedded store's (Calls, timelines, users, sessions, the
-- audit log, the directory, dispatches, the outbox, incidents, work orders, plans...), and
-- the values the same JSON, so one codec serves both backends. bytea compares byte by byte,
-- as sled orders its keys, so ordered scans see the same order on both.
CREATE TABLE kv (
    tree text NOT NULL,
    key bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (tree, key)
);
