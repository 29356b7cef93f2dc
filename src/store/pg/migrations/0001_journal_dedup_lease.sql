-- The journal, its dedup window and the leader lease.

-- One row per journaled Signal. `id` is written by the leader's journal (consecutive, as in
-- the embedded store), not taken from a sequence: a sequence is not transactional and would
-- leave gaps after a rolled-back commit. `payload` is the JSON of the record as bytes, not
-- jsonb: jsonb refuses some valid JSON (`\u0000` in a device's text), and an alarm that was
-- received must never be refused by the database.
CREATE TABLE journal (
    id bigint PRIMARY KEY,
    -- The retransmission key (a 128-bit digest), when the Signal takes part in dedup.
    dedup_key bytea,
    received_at timestamptz NOT NULL,
    payload bytea NOT NULL
);
CREATE INDEX journal_received_at ON journal (received_at);

-- The dedup window: the newest journal record of each retransmission key still inside the
-- window; rows older than the window are deleted by the writer.
CREATE TABLE dedup_window (
    dedup_key bytea PRIMARY KEY,
    journal_id bigint NOT NULL REFERENCES journal (id),
    received_at timestamptz NOT NULL
);
CREATE INDEX dedup_window_received_at ON dedup_window (received_at);

-- The leader lease: one row. `epoch` grows by one on every take-over and fences the writes
-- of the leader that held it (src/store/pg/lease.rs). The unique constraint on `epoch`
-- makes a take-over (which changes it) conflict with the `FOR KEY SHARE` lock that every
-- fenced transaction holds, while a renewal (which changes only `expires_at`) does not.
CREATE TABLE leader_lease (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    holder text,
    epoch bigint NOT NULL UNIQUE,
    expires_at timestamptz NOT NULL
);
INSERT INTO leader_lease (id, holder, epoch, expires_at) VALUES (true, NULL, 0, '-infinity');
