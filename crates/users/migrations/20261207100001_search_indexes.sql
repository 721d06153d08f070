-- Indexes the indexing test (crates/logicore/tests/indexing) found missing at production volume.
-- docs/indexing.md has the plans before and after.

-- Account search, `GET /api/v1/users?q=` (repo::list): a substring of the (lowercase) email or the
-- lowercased full name, `LIKE '%…%'`, which no B-tree serves. pg_trgm ships with PostgreSQL's contrib
-- (Debian's postgresql-15 included) and is a trusted extension, so a database owner may create it. It goes
-- into `public`, and the operator class is named with its schema, so every service finds it whichever
-- schema created it first.
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
CREATE INDEX users_email_trgm_idx ON users USING gin (email public.gin_trgm_ops);
CREATE INDEX users_full_name_trgm_idx ON users USING gin (lower(full_name) public.gin_trgm_ops);
