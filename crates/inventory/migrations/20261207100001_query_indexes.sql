-- Indexes the indexing test (crates/logicore/tests/indexing) found missing at production volume: without
-- them these queries read all or most of a large table. docs/indexing.md has the plans before and after.

-- Product search, `GET /api/v1/inventory/products?q=` (repo::products::list): a substring of the lowercased
-- sku or name, `LIKE '%…%'`, which no B-tree serves. pg_trgm ships with PostgreSQL's contrib (Debian's
-- postgresql-15 included) and is a trusted extension, so a database owner may create it. It goes into
-- `public`, and the operator class is named with its schema, so every service finds it whichever schema
-- created it first.
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
CREATE INDEX products_sku_trgm_idx ON products USING gin (lower(sku) public.gin_trgm_ops);
CREATE INDEX products_name_trgm_idx ON products USING gin (lower(name) public.gin_trgm_ops);

-- The ledger by reason, `GET /api/v1/inventory/movements?reason=` (repo::reads::movements): a rare reason
-- (`count`, `damage`) otherwise walks the whole ledger in id order looking for a page of it.
CREATE INDEX movements_reason_idx ON movements (reason, id);

-- The ledger by time, `?since=` / `?until=` (repo::reads::movements): "since yesterday" otherwise walks a
-- year of ledger in id order before reaching yesterday's rows.
CREATE INDEX movements_created_at_idx ON movements (created_at);
