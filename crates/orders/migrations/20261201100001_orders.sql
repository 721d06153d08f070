-- Orders, their lines and timeline, shipments with their lines, tracking events and proofs of delivery.
-- Statuses are checked here as well as in `domain`, so no write can leave an unknown one behind.

CREATE SEQUENCE order_number_seq START 1000;

CREATE TABLE orders (
    id               uuid        PRIMARY KEY,
    -- Human-readable, sequential: what a customer quotes on the phone.
    number           bigint      NOT NULL UNIQUE DEFAULT nextval('order_number_seq'),
    customer_id      uuid        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('pending', 'confirmed', 'rejected', 'expired',
                                     'cancelled', 'partially_shipped', 'shipped', 'delivered')),
    currency         char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    shipping_address jsonb       NOT NULL,
    total_amount     bigint      NOT NULL CHECK (total_amount >= 0),
    reservation_id   uuid,
    -- Bumped by every change: the ETag, and what If-Match compares.
    version          integer     NOT NULL DEFAULT 1,
    -- A pending order still pending at this time expires.
    pending_until    timestamptz NOT NULL,
    created_by       uuid        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_customer ON orders (customer_id, id);
CREATE INDEX orders_status ON orders (status, id);
CREATE INDEX orders_pending_until ON orders (pending_until) WHERE status = 'pending';

CREATE TABLE order_lines (
    order_id           uuid    NOT NULL REFERENCES orders (id),
    line_no            integer NOT NULL,
    sku                text    NOT NULL,
    quantity           integer NOT NULL CHECK (quantity > 0),
    unit_price         bigint  CHECK (unit_price >= 0),
    quantity_shipped   integer NOT NULL DEFAULT 0 CHECK (quantity_shipped >= 0),
    quantity_delivered integer NOT NULL DEFAULT 0 CHECK (quantity_delivered >= 0),
    quantity_returned  integer NOT NULL DEFAULT 0 CHECK (quantity_returned >= 0),
    quantity_cancelled integer NOT NULL DEFAULT 0 CHECK (quantity_cancelled >= 0),
    PRIMARY KEY (order_id, line_no),
    UNIQUE (order_id, sku),
    CONSTRAINT order_lines_shipped_within_quantity CHECK (quantity_shipped + quantity_cancelled <= quantity),
    CONSTRAINT order_lines_settled_within_shipped CHECK (quantity_delivered + quantity_returned <= quantity_shipped)
);

-- Where inventory holds each line (from `inventory.reserved`): shipments may only take what is held at
-- their warehouse.
CREATE TABLE order_allocations (
    order_id     uuid    NOT NULL REFERENCES orders (id),
    sku          text    NOT NULL,
    warehouse_id uuid    NOT NULL,
    quantity     integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, sku, warehouse_id)
);

-- The append-only timeline of an order.
CREATE TABLE order_events (
    id          uuid        PRIMARY KEY,
    order_id    uuid        NOT NULL REFERENCES orders (id),
    kind        text        NOT NULL,
    from_status text,
    to_status   text,
    detail      jsonb       NOT NULL DEFAULT '{}',
    actor_id    uuid,
    occurred_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_events_order ON order_events (order_id, id);

CREATE TABLE shipments (
    id              uuid        PRIMARY KEY,
    order_id        uuid        NOT NULL REFERENCES orders (id),
    warehouse_id    uuid        NOT NULL,
    tracking_number text        NOT NULL UNIQUE,
    driver_id       uuid,
    status          text        NOT NULL CHECK (status IN ('pending', 'assigned', 'picked_up', 'in_transit',
                                    'out_for_delivery', 'delivery_failed', 'delivered', 'returned', 'cancelled')),
    proof_required  boolean     NOT NULL,
    version         integer     NOT NULL DEFAULT 1,
    -- When the current status was reached (by the tracking event's occurred_at): older events are late.
    status_at       timestamptz NOT NULL DEFAULT now(),
    created_by      uuid        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX shipments_order ON shipments (order_id, id);
CREATE INDEX shipments_driver ON shipments (driver_id, id);
CREATE INDEX shipments_status ON shipments (status, id);

CREATE TABLE shipment_lines (
    shipment_id uuid    NOT NULL REFERENCES shipments (id),
    sku         text    NOT NULL,
    quantity    integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (shipment_id, sku)
);

CREATE TABLE tracking_events (
    id          uuid        PRIMARY KEY,
    shipment_id uuid        NOT NULL REFERENCES shipments (id),
    status      text        NOT NULL,
    reason      text,
    description text,
    location    jsonb,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    recorded_by uuid        NOT NULL,
    -- false: stored for the record but it moved nothing (late, or a repeat of the current status).
    applied     boolean     NOT NULL
);
CREATE INDEX tracking_events_shipment ON tracking_events (shipment_id, occurred_at, id);

CREATE TABLE delivery_proofs (
    shipment_id   uuid        PRIMARY KEY REFERENCES shipments (id),
    kind          text        NOT NULL CHECK (kind IN ('signature', 'photo', 'scan')),
    receiver_name text        NOT NULL,
    reference     text        NOT NULL,
    recorded_by   uuid        NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);

-- The timeline, tracking events and proofs are history: nothing rewrites it.
CREATE FUNCTION refuse_history_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER order_events_append_only BEFORE UPDATE OR DELETE ON order_events
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER tracking_events_append_only BEFORE UPDATE OR DELETE ON tracking_events
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER delivery_proofs_append_only BEFORE UPDATE OR DELETE ON delivery_proofs
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
