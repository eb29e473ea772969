-- deltaplane admin-api schema: one table per entity type. body holds the
-- entity exactly as the Admin API returns it; unique keys and foreign keys
-- are mirrored into real columns so Postgres enforces them.

CREATE TABLE certificates (
    id   uuid PRIMARY KEY,
    body jsonb NOT NULL
);

CREATE TABLE ca_certificates (
    id          uuid PRIMARY KEY,
    cert_digest text UNIQUE,
    body        jsonb NOT NULL
);

CREATE TABLE services (
    id                    uuid PRIMARY KEY,
    name                  text UNIQUE,
    client_certificate_id uuid CONSTRAINT fk_services_client_certificate REFERENCES certificates (id) ON DELETE RESTRICT,
    body                  jsonb NOT NULL
);

CREATE TABLE routes (
    id         uuid PRIMARY KEY,
    name       text UNIQUE,
    service_id uuid CONSTRAINT fk_routes_service REFERENCES services (id) ON DELETE RESTRICT,
    body       jsonb NOT NULL
);
CREATE INDEX routes_service_id ON routes (service_id);

CREATE TABLE consumers (
    id        uuid PRIMARY KEY,
    username  text UNIQUE,
    custom_id text UNIQUE,
    body      jsonb NOT NULL
);

CREATE TABLE plugins (
    id            uuid PRIMARY KEY,
    name          text NOT NULL,
    instance_name text UNIQUE,
    route_id      uuid CONSTRAINT fk_plugins_route REFERENCES routes (id) ON DELETE CASCADE,
    service_id    uuid CONSTRAINT fk_plugins_service REFERENCES services (id) ON DELETE CASCADE,
    consumer_id   uuid CONSTRAINT fk_plugins_consumer REFERENCES consumers (id) ON DELETE CASCADE,
    body          jsonb NOT NULL
);
CREATE UNIQUE INDEX plugins_scope ON plugins (name,
    coalesce(route_id, '00000000-0000-0000-0000-000000000000'),
    coalesce(service_id, '00000000-0000-0000-0000-000000000000'),
    coalesce(consumer_id, '00000000-0000-0000-0000-000000000000'));
CREATE INDEX plugins_route_id ON plugins (route_id);
CREATE INDEX plugins_service_id ON plugins (service_id);
CREATE INDEX plugins_consumer_id ON plugins (consumer_id);

CREATE TABLE upstreams (
    id                    uuid PRIMARY KEY,
    name                  text UNIQUE,
    client_certificate_id uuid CONSTRAINT fk_upstreams_client_certificate REFERENCES certificates (id) ON DELETE RESTRICT,
    body                  jsonb NOT NULL
);

CREATE TABLE targets (
    id          uuid PRIMARY KEY,
    target      text NOT NULL,
    upstream_id uuid NOT NULL CONSTRAINT fk_targets_upstream REFERENCES upstreams (id) ON DELETE CASCADE,
    body        jsonb NOT NULL,
    UNIQUE (upstream_id, target)
);

CREATE TABLE snis (
    id             uuid PRIMARY KEY,
    name           text UNIQUE,
    certificate_id uuid NOT NULL CONSTRAINT fk_snis_certificate REFERENCES certificates (id) ON DELETE RESTRICT,
    body           jsonb NOT NULL
);
CREATE INDEX snis_certificate_id ON snis (certificate_id);

CREATE TABLE keyauth_credentials (
    id          uuid PRIMARY KEY,
    key         text UNIQUE,
    consumer_id uuid NOT NULL CONSTRAINT fk_keyauth_credentials_consumer REFERENCES consumers (id) ON DELETE CASCADE,
    body        jsonb NOT NULL
);
CREATE INDEX keyauth_credentials_consumer_id ON keyauth_credentials (consumer_id);

-- Transactional outbox. Rows are written with tx = 0 inside the admin
-- transaction; its last statement takes the next number from
-- outbox_counter (whose row lock serializes committing writers, so numbers
-- follow commit order and a rollback gives its number back) and stamps it
-- on the transaction's rows.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    batch        uuid NOT NULL,
    tx           bigint NOT NULL DEFAULT 0,
    idx          integer NOT NULL,
    cnt          integer NOT NULL,
    key          text NOT NULL,
    op           text NOT NULL,
    type         text NOT NULL,
    entity_id    text NOT NULL,
    entity       bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_pending_batch ON outbox (batch) WHERE tx = 0;
CREATE INDEX outbox_unpublished ON outbox (tx, idx) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

CREATE TABLE outbox_counter (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    tx  bigint NOT NULL
);
INSERT INTO outbox_counter (tx) VALUES (0);

CREATE TABLE relay_state (
    one          boolean PRIMARY KEY DEFAULT true CHECK (one),
    published_tx bigint NOT NULL,
    published_at timestamptz
);
INSERT INTO relay_state (published_tx) VALUES (0);

-- Idempotency-Key records: the first response to a keyed write.
CREATE TABLE idempotency_keys (
    key          text PRIMARY KEY,
    request_hash text NOT NULL,
    status       integer NOT NULL,
    response     bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
