-- admin-api deletes cascading children itself, each with its own outbox
-- event. Postgres must never delete a child silently (the data planes
-- would keep it), so the cascading foreign keys become RESTRICT: a child
-- the application missed makes the delete fail instead.
ALTER TABLE plugins
    DROP CONSTRAINT fk_plugins_route,
    DROP CONSTRAINT fk_plugins_service,
    DROP CONSTRAINT fk_plugins_consumer,
    ADD CONSTRAINT fk_plugins_route FOREIGN KEY (route_id) REFERENCES routes (id) ON DELETE RESTRICT,
    ADD CONSTRAINT fk_plugins_service FOREIGN KEY (service_id) REFERENCES services (id) ON DELETE RESTRICT,
    ADD CONSTRAINT fk_plugins_consumer FOREIGN KEY (consumer_id) REFERENCES consumers (id) ON DELETE RESTRICT;

ALTER TABLE targets
    DROP CONSTRAINT fk_targets_upstream,
    ADD CONSTRAINT fk_targets_upstream FOREIGN KEY (upstream_id) REFERENCES upstreams (id) ON DELETE RESTRICT;

ALTER TABLE keyauth_credentials
    DROP CONSTRAINT fk_keyauth_credentials_consumer,
    ADD CONSTRAINT fk_keyauth_credentials_consumer FOREIGN KEY (consumer_id) REFERENCES consumers (id) ON DELETE RESTRICT;

CREATE INDEX targets_upstream_id ON targets (upstream_id);
