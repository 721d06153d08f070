-- Returned shipments already put back into stock: a `shipment.status_changed` to `returned` restocks its
-- lines once, however often it is delivered or sent again. Kept apart from the ledger, whose `reference`
-- is not indexed and names other things too (transfers, imports).
CREATE TABLE shipment_returns (
    shipment_id  uuid PRIMARY KEY,
    order_id     uuid NOT NULL,
    warehouse_id uuid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
