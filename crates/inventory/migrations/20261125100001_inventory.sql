-- The inventory service's tables, in the `inventory` schema (the pool sets `search_path`, so names here are
-- unqualified). The database guards the invariants the service relies on: stock never negative, holds
-- never above stock unless backorders are allowed, and a ledger that can only grow.

-- UUIDv7 (RFC 9562) for rows inserted set-wise by SQL; PostgreSQL 15 has no built-in. Ids sort by creation
-- time, which cursor pagination relies on.
CREATE FUNCTION uuid_generate_v7() RETURNS uuid AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid;
$$ LANGUAGE sql VOLATILE;

CREATE TABLE warehouses (
    id         uuid PRIMARY KEY,
    -- Stored uppercase by the service, so codes are unique regardless of case.
    code       text NOT NULL,
    name       text NOT NULL,
    address    text NOT NULL DEFAULT '',
    -- Reservations draw from the lowest priority number first.
    priority   integer NOT NULL DEFAULT 100,
    active     boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT warehouses_code_key UNIQUE (code),
    CONSTRAINT warehouses_code_upper CHECK (code = upper(code)),
    CONSTRAINT warehouses_priority_range CHECK (priority BETWEEN 0 AND 1000000)
);

CREATE TABLE products (
    id              uuid PRIMARY KEY,
    sku             text NOT NULL,
    name            text NOT NULL,
    weight_grams    integer,
    reorder_point   integer NOT NULL DEFAULT 0,
    allow_backorder boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT products_sku_key UNIQUE (sku),
    CONSTRAINT products_weight_nonnegative CHECK (weight_grams IS NULL OR weight_grams >= 0),
    CONSTRAINT products_reorder_point_nonnegative CHECK (reorder_point >= 0)
);

-- One row per (product, warehouse), created on first use.
CREATE TABLE stock_levels (
    id              uuid PRIMARY KEY,
    product_id      uuid NOT NULL REFERENCES products (id),
    warehouse_id    uuid NOT NULL REFERENCES warehouses (id),
    on_hand         integer NOT NULL DEFAULT 0,
    reserved        integer NOT NULL DEFAULT 0,
    -- A copy of the product's flag, kept in step by the service: a CHECK cannot look at another table.
    allow_backorder boolean NOT NULL DEFAULT false,
    -- Available (on_hand - reserved) is at or below the product's reorder point.
    low_stock       boolean NOT NULL DEFAULT false,
    low_stock_since timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT stock_levels_product_warehouse_key UNIQUE (product_id, warehouse_id),
    CONSTRAINT stock_levels_on_hand_nonnegative CHECK (on_hand >= 0),
    CONSTRAINT stock_levels_reserved_nonnegative CHECK (reserved >= 0),
    CONSTRAINT stock_levels_reserved_within_on_hand CHECK (reserved <= on_hand OR allow_backorder)
);

CREATE INDEX stock_levels_warehouse_idx ON stock_levels (warehouse_id);
CREATE INDEX stock_levels_low_stock_idx ON stock_levels (id) WHERE low_stock;

-- The append-only ledger: every change of on_hand is one row, so on_hand = sum(delta) per stock row and
-- `resulting_on_hand` shows the level after each movement.
CREATE TABLE movements (
    id                uuid PRIMARY KEY,
    product_id        uuid NOT NULL REFERENCES products (id),
    warehouse_id      uuid NOT NULL REFERENCES warehouses (id),
    -- Denormalised so the ledger reads on its own and filters by SKU without a join.
    sku               text NOT NULL,
    delta             integer NOT NULL,
    reason            text NOT NULL,
    -- What caused it: a transfer id, an order id, an import id.
    reference         text,
    note              text,
    -- The user who did it; NULL for the service itself (e.g. the expiry sweeper).
    actor             uuid,
    resulting_on_hand integer NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- Insertion order. Writers of one stock row hold its lock, so per row this is also commit order: the
    -- row with the highest seq carries the current on_hand, across instances whose clocks differ.
    seq               bigint GENERATED ALWAYS AS IDENTITY,
    CONSTRAINT movements_delta_nonzero CHECK (delta <> 0),
    CONSTRAINT movements_resulting_nonnegative CHECK (resulting_on_hand >= 0),
    CONSTRAINT movements_reason_check CHECK (reason IN (
        'receipt', 'adjustment', 'count', 'return', 'damage',
        'transfer_in', 'transfer_out', 'import', 'shipment'))
);

CREATE INDEX movements_stock_idx ON movements (product_id, warehouse_id, id);
CREATE INDEX movements_sku_idx ON movements (sku, id);
CREATE INDEX movements_warehouse_idx ON movements (warehouse_id, id);

CREATE FUNCTION movements_are_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the stock ledger is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER movements_no_update_or_delete
    BEFORE UPDATE OR DELETE ON movements
    FOR EACH ROW EXECUTE FUNCTION movements_are_append_only();

CREATE TRIGGER movements_no_truncate
    BEFORE TRUNCATE ON movements
    FOR EACH STATEMENT EXECUTE FUNCTION movements_are_append_only();

-- held -> committed -> consumed, or held|committed -> released, or held -> expired.
CREATE TABLE reservations (
    id         uuid PRIMARY KEY,
    order_id   uuid NOT NULL,
    status     text NOT NULL DEFAULT 'held',
    expires_at timestamptz NOT NULL,
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- Reserving for an order is idempotent: the second request finds the first reservation.
    CONSTRAINT reservations_order_key UNIQUE (order_id),
    CONSTRAINT reservations_status_check CHECK (status IN ('held', 'committed', 'consumed', 'released', 'expired'))
);

-- The sweeper's scan: held reservations by expiry time.
CREATE INDEX reservations_held_expiry_idx ON reservations (expires_at) WHERE status = 'held';

CREATE TABLE reservation_lines (
    id             uuid PRIMARY KEY,
    reservation_id uuid NOT NULL REFERENCES reservations (id),
    product_id     uuid NOT NULL REFERENCES products (id),
    warehouse_id   uuid NOT NULL REFERENCES warehouses (id),
    sku            text NOT NULL,
    quantity       integer NOT NULL,
    -- Shipped so far; the rest (quantity - consumed) is what the line still holds in stock_levels.reserved.
    consumed       integer NOT NULL DEFAULT 0,
    CONSTRAINT reservation_lines_quantity_positive CHECK (quantity > 0),
    CONSTRAINT reservation_lines_consumed_range CHECK (consumed BETWEEN 0 AND quantity)
);

CREATE INDEX reservation_lines_reservation_idx ON reservation_lines (reservation_id);
CREATE INDEX reservation_lines_stock_idx ON reservation_lines (product_id, warehouse_id);

-- Consumptions already applied, so replaying one (same reservation, same reference) changes nothing.
CREATE TABLE reservation_consumptions (
    reservation_id uuid NOT NULL REFERENCES reservations (id),
    reference      text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (reservation_id, reference)
);
