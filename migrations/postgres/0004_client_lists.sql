-- The operators' client lists (allow, deny) at run time, with an optional expiry, and an audit
-- row for every change. A false-positive mark is an allow entry with its reason.
CREATE TABLE client_lists (
    list TEXT NOT NULL,
    client TEXT NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT,
    PRIMARY KEY (list, client)
);

CREATE TABLE client_list_audit (
    id BIGSERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    list TEXT NOT NULL,
    client TEXT NOT NULL,
    reason TEXT NOT NULL,
    expires_at_ms BIGINT
);
