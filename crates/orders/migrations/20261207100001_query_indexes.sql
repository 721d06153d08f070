-- An index the indexing test (crates/logicore/tests/indexing) found missing at production volume.
-- docs/indexing.md has the plans before and after.

-- Orders by creation time, `GET /api/v1/orders?created_after=` / `created_before=` (repo::orders::list):
-- "created since yesterday" otherwise walks every order in id order before reaching yesterday's.
CREATE INDEX orders_created_at ON orders (created_at);
