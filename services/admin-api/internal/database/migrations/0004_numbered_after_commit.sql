-- Transaction numbers are taken after commit, by the relay leader, instead
-- of by the writer's last statement from outbox_counter (whose row lock
-- serialized every committing writer through its WAL flush).
--
-- A write's last statement before COMMIT, issued when every lock the
-- transaction needs is held, stamps its outbox rows with tx = 0 and one
-- ordering key, ord = nextval('outbox_order') (a sequence never blocks and
-- is not rolled back). The relay leader gives the committed, unnumbered
-- transactions that one statement sees the next numbers, gap-free, in ord
-- order, persists them (tx, relay_state.numbered_tx) and only then
-- publishes in tx order. Two transactions that conflict (one waited for a
-- lock the other held, or read what the other wrote) took their keys in
-- commit order, so they are numbered in commit order; see the README.
--
-- No constraint or trigger may be deferred to COMMIT: every lock must be
-- taken before the ordering key.

-- Stop writers that still take numbers from the counter (a replica of the
-- previous version) until the numbering moves: mixing the two numberings
-- could put a later conflicting transaction first, so outbox_counter is
-- dropped and such a writer fails instead.
LOCK TABLE outbox_counter, outbox, relay_state IN ACCESS EXCLUSIVE MODE;

CREATE SEQUENCE outbox_order AS bigint;

ALTER TABLE outbox ADD COLUMN ord bigint;
CREATE INDEX outbox_unnumbered ON outbox (ord) WHERE tx = 0;

-- The last number given; rows numbered before keep their numbers.
ALTER TABLE relay_state ADD COLUMN numbered_tx bigint NOT NULL DEFAULT 0;
UPDATE relay_state SET numbered_tx = (SELECT tx FROM outbox_counter);

DROP TABLE outbox_counter;
