-- One order from HTTP create to confirmed, statement for statement what the services run on the PostgreSQL
-- transport (crates/logicore/examples/order_flow_bench.rs measures the services doing it), one order at a
-- time: the create request with its Idempotency-Key; the orders relay handing `order.created` to the
-- transport; inventory's consumer reserving in its inbox transaction and recording `inventory.reserved`;
-- inventory's relay; the orders consumer confirming and recording `order.status_changed` and
-- `order.confirmed`; the orders relay again. The services batch relay and consumer work across orders;
-- here every order pays for its own, so this is the database's limit for the same work done one by one.
\set n random(0, :skus - 1)
\set customer random(1, 1000000000)
SELECT gen_random_uuid() AS oid, gen_random_uuid() AS ekey, gen_random_uuid() AS ev1, gen_random_uuid() AS ev2,
       gen_random_uuid() AS ev3, gen_random_uuid() AS ev4, 'BENCH-' || :n AS sku \gset

-- 1. POST /api/v1/orders
BEGIN;
SELECT previous FROM (SELECT current_setting('lock_timeout') AS previous) AS p, set_config('lock_timeout', '10000ms', true);
INSERT INTO orders.idempotency_keys (subject, method, route, key, fingerprint, expires_at)
  VALUES (:customer::text, 'POST', '/api/v1/orders', ':ekey', md5(':ekey'), now() + interval '1 day')
  ON CONFLICT (subject, method, route, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint
  WHERE orders.idempotency_keys.expires_at <= now() RETURNING 1;
SELECT set_config('lock_timeout', '0', true);
INSERT INTO orders.orders (id, customer_id, status, currency, shipping_address, total_amount, pending_until, created_by)
  VALUES (':oid', gen_random_uuid(), 'pending', 'EUR',
          '{"name":"Bench","street":"1 Road","city":"Delft","postal_code":"2611","country":"NL"}', 100,
          now() + interval '15 minutes', gen_random_uuid());
INSERT INTO orders.order_lines (order_id, line_no, sku, quantity, unit_price) VALUES (':oid', 1, ':sku', 1, 100);
SELECT id, number, customer_id, status, currency, shipping_address, total_amount, reservation_id, version, created_at, updated_at FROM orders.orders WHERE id = ':oid';
SELECT order_id, sku, quantity, unit_price, quantity_shipped, quantity_delivered, quantity_returned, quantity_cancelled FROM orders.order_lines WHERE order_id = ANY(ARRAY[':oid'::uuid]) ORDER BY order_id, line_no;
INSERT INTO orders.order_events (id, order_id, kind, from_status, to_status, detail, actor_id)
  VALUES (gen_random_uuid(), ':oid', 'created', NULL, 'pending', '{"lines":1,"total_amount":100}', gen_random_uuid());
INSERT INTO orders.outbox (id, event_type, aggregate_id, envelope)
  VALUES (':ev1', 'order.created', ':oid', json_build_object('id', ':ev1', 'type', 'order.created', 'data', json_build_object('order_id', ':oid', 'lines', json_build_array(json_build_object('sku', ':sku', 'quantity', 1)))))
  RETURNING position AS p1 \gset
UPDATE orders.idempotency_keys SET status_code = 201, body = '{"status":"pending"}'
  WHERE subject = :customer::text AND method = 'POST' AND route = '/api/v1/orders' AND key = ':ekey';
COMMIT;

-- 2. orders relay: order.created to inventory's group
BEGIN;
INSERT INTO logicore_events.deliveries (group_name, event_id, event_type, aggregate_id, envelope)
  SELECT 'inventory.order-saga', id, event_type, aggregate_id, envelope FROM orders.outbox WHERE position = :p1
  RETURNING id AS d1 \gset
UPDATE orders.outbox SET sent_at = now() WHERE position = ANY(ARRAY[:p1::bigint]);
COMMIT;

-- 3. inventory consumer: claim, reserve in the inbox transaction, ack
UPDATE logicore_events.deliveries SET locked_until = now() + interval '30 seconds', attempts = attempts + 1
  WHERE id = :d1 RETURNING id, attempts, envelope::text;
BEGIN;
INSERT INTO inventory.inbox (consumer_group, event_id) VALUES ('inventory.order-saga', ':ev1') ON CONFLICT DO NOTHING;
SELECT id FROM inventory.reservations WHERE order_id = ':oid';
SELECT id AS pid FROM inventory.products WHERE sku = ':sku' \gset
INSERT INTO inventory.reservations (id, order_id, expires_at) VALUES (gen_random_uuid(), ':oid', now() + interval '900 seconds')
  ON CONFLICT (order_id) DO NOTHING RETURNING id AS rid \gset
SELECT s.id AS sid, s.warehouse_id AS wid FROM inventory.stock_levels s JOIN inventory.warehouses w ON w.id = s.warehouse_id
  WHERE s.product_id = ':pid' ORDER BY s.product_id, s.warehouse_id FOR UPDATE OF s \gset
UPDATE inventory.stock_levels s SET reserved = s.reserved + 1, updated_at = now() WHERE s.id = ':sid';
INSERT INTO inventory.reservation_lines (id, reservation_id, product_id, warehouse_id, sku, quantity)
  VALUES (gen_random_uuid(), ':rid', ':pid', ':wid', ':sku', 1);
INSERT INTO inventory.outbox (id, event_type, aggregate_id, envelope)
  VALUES (':ev2', 'inventory.reserved', ':oid', json_build_object('id', ':ev2', 'type', 'inventory.reserved', 'data', json_build_object('order_id', ':oid', 'reservation_id', ':rid')))
  RETURNING position AS p2 \gset
COMMIT;
DELETE FROM logicore_events.deliveries WHERE id = :d1;

-- 4. inventory relay: inventory.reserved to the orders group
BEGIN;
INSERT INTO logicore_events.deliveries (group_name, event_id, event_type, aggregate_id, envelope)
  SELECT 'orders.saga', id, event_type, aggregate_id, envelope FROM inventory.outbox WHERE position = :p2
  RETURNING id AS d2 \gset
UPDATE inventory.outbox SET sent_at = now() WHERE position = ANY(ARRAY[:p2::bigint]);
COMMIT;

-- 5. orders consumer: claim, confirm in the inbox transaction, ack
UPDATE logicore_events.deliveries SET locked_until = now() + interval '30 seconds', attempts = attempts + 1
  WHERE id = :d2 RETURNING id, attempts, envelope::text;
BEGIN;
INSERT INTO orders.inbox (consumer_group, event_id) VALUES ('orders.saga', ':ev2') ON CONFLICT DO NOTHING;
SELECT id, number, customer_id, status, currency, shipping_address, total_amount, reservation_id, version, created_at, updated_at FROM orders.orders WHERE id = ':oid' FOR UPDATE;
SELECT order_id, sku, quantity, unit_price, quantity_shipped, quantity_delivered, quantity_returned, quantity_cancelled FROM orders.order_lines WHERE order_id = ANY(ARRAY[':oid'::uuid]) ORDER BY order_id, line_no;
UPDATE orders.orders SET reservation_id = ':rid' WHERE id = ':oid';
INSERT INTO orders.order_allocations (order_id, sku, warehouse_id, quantity) VALUES (':oid', ':sku', ':wid', 1)
  ON CONFLICT (order_id, sku, warehouse_id) DO UPDATE SET quantity = orders.order_allocations.quantity + EXCLUDED.quantity;
UPDATE orders.orders SET status = 'confirmed', version = version + 1, updated_at = now() WHERE id = ':oid';
INSERT INTO orders.order_events (id, order_id, kind, from_status, to_status, detail, actor_id)
  VALUES (gen_random_uuid(), ':oid', 'status_changed', 'pending', 'confirmed', json_build_object('reservation_id', ':rid'), NULL);
INSERT INTO orders.outbox (id, event_type, aggregate_id, envelope)
  VALUES (':ev3', 'order.status_changed', ':oid', json_build_object('id', ':ev3', 'type', 'order.status_changed'));
INSERT INTO orders.outbox (id, event_type, aggregate_id, envelope)
  VALUES (':ev4', 'order.confirmed', ':oid', json_build_object('id', ':ev4', 'type', 'order.confirmed'))
  RETURNING position AS p4 \gset
COMMIT;
DELETE FROM logicore_events.deliveries WHERE id = :d2;

-- 6. orders relay: order.confirmed to inventory's group (order.status_changed has no subscriber)
BEGIN;
INSERT INTO logicore_events.deliveries (group_name, event_id, event_type, aggregate_id, envelope)
  SELECT 'inventory.order-saga', id, event_type, aggregate_id, envelope FROM orders.outbox WHERE position = :p4;
UPDATE orders.outbox SET sent_at = now() WHERE position = ANY(ARRAY[:p4::bigint - 1, :p4::bigint]);
COMMIT;
