-- One reservation of one unit, statement for statement what the service runs (claim the order, lock the
-- product's stock rows in order, hold the units, write the line), without HTTP, JSON or the pool.
\set n random(0, :skus - 1)
BEGIN;
INSERT INTO reservations (id, order_id, expires_at) VALUES (gen_random_uuid(), gen_random_uuid(), now() + interval '900 seconds') ON CONFLICT (order_id) DO NOTHING RETURNING id AS rid \gset
SELECT s.id AS sid, s.product_id AS pid, s.warehouse_id AS wid FROM stock_levels s JOIN warehouses w ON w.id = s.warehouse_id WHERE s.product_id = (SELECT id FROM products WHERE sku = 'S-' || :n) ORDER BY s.product_id, s.warehouse_id FOR UPDATE OF s \gset
UPDATE stock_levels s SET reserved = s.reserved + 1, updated_at = now() WHERE s.id = ':sid';
INSERT INTO reservation_lines (id, reservation_id, product_id, warehouse_id, sku, quantity) VALUES (gen_random_uuid(), ':rid', ':pid', ':wid', 'S-' || :n, 1);
COMMIT;
