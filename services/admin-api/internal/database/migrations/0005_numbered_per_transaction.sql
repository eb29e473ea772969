-- A numbering round updates one row per transaction instead of every
-- outbox row of it (a round that numbered a declarative import of a
-- million entities updated a million rows while every other writer waited
-- for its number). See the outbox package's documentation.
--
-- outbox_tx: one row per written transaction, inserted by the write's last
-- statement with its outbox rows (tx = 0, seq = nextval('outbox_seq'));
-- the round gives it its number. The rows themselves (outbox_rows) carry
-- seq and never change until published. The view outbox shows each row
-- with its transaction's number, as the table did.
ALTER TABLE outbox RENAME TO outbox_rows;

-- Rows numbered before 0004 carry seq 0: give each of their transactions
-- a key of its own (negative, below every outbox_seq value).
UPDATE outbox_rows SET seq = -tx WHERE seq = 0 AND tx > 0;

CREATE TABLE outbox_tx (
    seq   bigint PRIMARY KEY,
    tx    bigint NOT NULL DEFAULT 0,
    batch uuid NOT NULL,
    first bigint NOT NULL, -- id of its first outbox row
    cnt   integer NOT NULL
);
INSERT INTO outbox_tx (seq, tx, batch, first, cnt)
    SELECT seq, max(tx), (array_agg(batch))[1], min(id), count(*) FROM outbox_rows GROUP BY seq;
CREATE INDEX outbox_tx_unnumbered ON outbox_tx (seq) WHERE tx = 0;
CREATE UNIQUE INDEX outbox_tx_numbered ON outbox_tx (tx) WHERE tx > 0;
CREATE INDEX outbox_tx_batch ON outbox_tx (batch);

DROP INDEX outbox_unnumbered;
DROP INDEX outbox_unpublished;
ALTER TABLE outbox_rows DROP CONSTRAINT outbox_numbered_after_commit;
-- A replica of a previous version fails instead of numbering by another
-- scheme: its INSERT INTO outbox and its round's UPDATE outbox meet a
-- view that takes neither, and no outbox_rows.tx.
ALTER TABLE outbox_rows DROP COLUMN tx;
ALTER TABLE outbox_rows ALTER COLUMN seq SET NOT NULL;
-- A transaction's rows in order (the relay reads them by number through
-- outbox_tx); not partial, so marking a row published is a HOT update.
CREATE INDEX outbox_rows_seq_idx ON outbox_rows (seq, idx);

CREATE VIEW outbox AS
    SELECT r.id, r.batch, t.tx, r.seq, r.idx, r.cnt, r.key, r.op, r.type, r.entity_id, r.entity,
        r.created_at, r.published_at
    FROM outbox_rows r JOIN outbox_tx t USING (seq);
