-- Transaction numbers are given after commit instead of by the writer's
-- last statement under outbox_counter's row lock (which every committing
-- writer held through its WAL flush: commits were serialized). See the
-- outbox package's documentation for the scheme and why it keeps commit
-- order.
--
-- A write's last statement inserts its outbox rows with tx = 0 and one
-- ordering key, seq = nextval('outbox_seq') (a sequence never blocks).
-- After COMMIT, a numbering round (serialized by an advisory lock) gives
-- the committed, unnumbered transactions it sees the next numbers from
-- outbox_counter in seq order and commits them before anything is
-- published or answered.
CREATE SEQUENCE outbox_seq AS bigint;

ALTER TABLE outbox ADD COLUMN seq bigint;
-- Rows numbered before keep their numbers.
UPDATE outbox SET seq = 0;
-- A writer of the previous version (a replica not upgraded yet) takes its
-- number under the counter's lock and inserts numbered rows without seq:
-- mixing the two numberings could number a later conflicting write first,
-- so such a write fails instead.
ALTER TABLE outbox ADD CONSTRAINT outbox_numbered_after_commit CHECK (tx = 0 OR seq IS NOT NULL);

-- Unnumbered rows, in numbering order. The old index on batch (rows with
-- tx = 0) was never populated (rows were inserted numbered); now it would
-- be on every insert for nothing.
DROP INDEX outbox_pending_batch;
CREATE INDEX outbox_unnumbered ON outbox (seq) WHERE tx = 0;
