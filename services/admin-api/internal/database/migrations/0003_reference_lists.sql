-- A service's ca_certificates (a list of ids in its body) are mirrored
-- into a join table so that Postgres enforces them like every other
-- reference: a service cannot reference a missing CA certificate, and a
-- referenced CA certificate cannot be deleted, whatever the concurrency
-- (the foreign key checks lock the referenced row). Join rows are not
-- entities: they go with their service.
CREATE TABLE services_ca_certificates (
    owner_id uuid NOT NULL CONSTRAINT fk_services_ca_certificates_owner REFERENCES services (id) ON DELETE CASCADE,
    ref_id   uuid NOT NULL CONSTRAINT fk_services_ca_certificates_ref REFERENCES ca_certificates (id) ON DELETE RESTRICT,
    PRIMARY KEY (owner_id, ref_id)
);
CREATE INDEX services_ca_certificates_ref_id ON services_ca_certificates (ref_id);

-- Existing references; one to a CA certificate already gone cannot be
-- mirrored (it stays in the body, as before this migration).
INSERT INTO services_ca_certificates (owner_id, ref_id)
SELECT DISTINCT s.id, c.id
FROM services s
CROSS JOIN LATERAL jsonb_array_elements_text(CASE WHEN jsonb_typeof(s.body->'ca_certificates') = 'array' THEN s.body->'ca_certificates' ELSE '[]'::jsonb END) AS r(ref)
JOIN ca_certificates c ON c.id::text = lower(r.ref);
