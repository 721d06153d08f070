//! What happens to a shipment: creation against what inventory holds, assignment, tracking events (the
//! status machine, late events, proof of delivery) and cancellation. Like `ordering`, every function runs in
//! the caller's transaction; the order row is always locked before the shipment row.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use messaging::events::{
    ShipmentAssigned, ShipmentCancelled, ShipmentCreated, ShipmentDelivered, ShipmentLine,
};
use platform::FieldError;
use platform::db::Db;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{IncidentReason, ProofKind, ShipmentStatus};
use crate::error::OrdersError;
use crate::events::Recorder;
use crate::metrics::Fact;
use crate::models::{Location, ShipmentRow, ShipmentView, TrackingEventView};
use crate::ordering;
use crate::repo::orders::{self, Happened, Progress};
use crate::repo::shipments::{self, NewShipment, NewTracking};
use crate::state::Caller;

/// Tracking numbers: `LC` and 16 Crockford base-32 characters from 80 random bits, so they can be handed
/// out publicly without being guessable or enumerable.
pub fn tracking_number() -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let random = Uuid::new_v4().as_u128();
    let mut number = String::with_capacity(18);
    number.push_str("LC");
    for index in 0..16 {
        let digit = (random >> (index * 5)) & 0x1f;
        number.push(char::from(ALPHABET[digit as usize]));
    }
    number
}

#[derive(Debug, Clone)]
pub struct ShipmentRequest {
    pub order_id: Uuid,
    pub warehouse_id: Uuid,
    /// (sku, quantity), skus distinct.
    pub lines: Vec<(String, i64)>,
    pub proof_required: bool,
    pub actor: Uuid,
}

/// A shipment takes only what inventory holds for the order at that warehouse and no live shipment took.
pub async fn create(
    db: &Db,
    conn: &mut PgConnection,
    recorder: &Recorder<'_>,
    request: &ShipmentRequest,
) -> Result<ShipmentView, OrdersError> {
    let order = orders::load(db, conn, request.order_id, true)
        .await?
        .ok_or(OrdersError::NotFound("order"))?;
    if !order.status.ships() {
        return Err(OrdersError::InvalidTransition {
            entity: "order",
            from: order.status.as_str(),
            to: "shipped",
        });
    }
    let left: HashMap<String, i64> = orders::shippable(db, conn, order.id)
        .await?
        .into_iter()
        .filter(|(_, warehouse, _, _)| *warehouse == request.warehouse_id)
        .map(|(sku, _, held, taken)| (sku, held - taken))
        .collect();
    let short: Vec<FieldError> = request
        .lines
        .iter()
        .enumerate()
        .filter_map(|(index, (sku, quantity))| {
            let available = left.get(sku).copied().unwrap_or(0);
            (*quantity > available).then(|| {
                FieldError::new(
                    format!("lines[{index}].quantity"),
                    "EXCEEDS_SHIPPABLE",
                    format!("{available} of {sku} are confirmed at this warehouse and not yet in a shipment"),
                )
            })
        })
        .collect();
    if !short.is_empty() {
        return Err(OrdersError::NothingToShip(short));
    }
    let shipment = NewShipment {
        id: Uuid::now_v7(),
        order_id: order.id,
        warehouse_id: request.warehouse_id,
        tracking_number: tracking_number(),
        proof_required: request.proof_required,
        lines: request.lines.clone(),
        created_by: request.actor,
    };
    shipments::insert(db, conn, &shipment).await?;
    orders::append_timeline(
        db,
        conn,
        order.id,
        Happened::note(
            "shipment_created",
            Some(request.actor),
            json!({"shipment_id": shipment.id, "warehouse_id": shipment.warehouse_id}),
        ),
    )
    .await?;
    let payload = ShipmentCreated {
        shipment_id: shipment.id,
        order_id: order.id,
        warehouse_id: shipment.warehouse_id,
        tracking_number: shipment.tracking_number.clone(),
        lines: shipment
            .lines
            .iter()
            .map(|(sku, quantity)| ShipmentLine {
                sku: sku.clone(),
                quantity: *quantity,
            })
            .collect(),
    };
    recorder.record(conn, order.id, &payload).await?;
    recorder.note(Fact::ShipmentCreated);
    shipments::load(db, conn, shipment.id)
        .await?
        .ok_or(OrdersError::NotFound("shipment"))
}

/// Locks the shipment's order, then the shipment. 404 when there is no such shipment or the caller may not
/// see it (drivers see only theirs; customers those of their orders).
pub async fn lock(
    db: &Db,
    conn: &mut PgConnection,
    id: Uuid,
    caller: Caller,
) -> Result<ShipmentRow, OrdersError> {
    let order_id = shipments::order_of(db, conn, id)
        .await?
        .ok_or(OrdersError::NotFound("shipment"))?;
    let order = orders::load(db, conn, order_id, true)
        .await?
        .ok_or(OrdersError::NotFound("shipment"))?;
    let shipment = shipments::row(db, conn, id, true)
        .await?
        .ok_or(OrdersError::NotFound("shipment"))?;
    let visible = match caller {
        Caller::Staff(_) => true,
        Caller::Driver(driver) => shipment.driver_id == Some(driver),
        Caller::Customer(customer) => order.customer_id == customer,
    };
    if visible {
        Ok(shipment)
    } else {
        Err(OrdersError::NotFound("shipment"))
    }
}

fn line_pairs(view_lines: &[crate::models::ShipmentLineView]) -> Vec<(String, i64)> {
    view_lines
        .iter()
        .map(|l| (l.sku.clone(), l.quantity))
        .collect()
}

/// Assigns (or, before pickup, reassigns) a driver.
pub async fn assign(
    db: &Db,
    conn: &mut PgConnection,
    recorder: &Recorder<'_>,
    shipment: &ShipmentRow,
    driver: Uuid,
    actor: Uuid,
) -> Result<ShipmentView, OrdersError> {
    if shipment.status != ShipmentStatus::Assigned {
        shipment.status.transition(ShipmentStatus::Assigned)?;
    }
    shipments::set_driver(db, conn, shipment.id, driver, ShipmentStatus::Assigned).await?;
    if shipment.status != ShipmentStatus::Assigned {
        let lines = line_pairs(&shipments::lines(db, conn, shipment.id).await?);
        recorder
            .shipment_status(conn, shipment, &lines, ShipmentStatus::Assigned, None)
            .await?;
    }
    orders::append_timeline(
        db,
        conn,
        shipment.order_id,
        Happened::note(
            "shipment_assigned",
            Some(actor),
            json!({"shipment_id": shipment.id, "driver_id": driver}),
        ),
    )
    .await?;
    let payload = ShipmentAssigned {
        shipment_id: shipment.id,
        order_id: shipment.order_id,
        driver_id: driver,
    };
    recorder.record(conn, shipment.order_id, &payload).await?;
    shipments::load(db, conn, shipment.id)
        .await?
        .ok_or(OrdersError::NotFound("shipment"))
}

/// Cancels a shipment still at the warehouse; its lines may go into another shipment.
pub async fn cancel(
    db: &Db,
    conn: &mut PgConnection,
    recorder: &Recorder<'_>,
    shipment: &ShipmentRow,
    reason: Option<String>,
    actor: Uuid,
) -> Result<ShipmentView, OrdersError> {
    shipment.status.transition(ShipmentStatus::Cancelled)?;
    shipments::set_status(db, conn, shipment.id, ShipmentStatus::Cancelled, Utc::now()).await?;
    let lines = line_pairs(&shipments::lines(db, conn, shipment.id).await?);
    recorder
        .shipment_status(
            conn,
            shipment,
            &lines,
            ShipmentStatus::Cancelled,
            reason.clone(),
        )
        .await?;
    orders::append_timeline(
        db,
        conn,
        shipment.order_id,
        Happened::note(
            "shipment_cancelled",
            Some(actor),
            json!({"shipment_id": shipment.id, "reason": reason}),
        ),
    )
    .await?;
    let payload = ShipmentCancelled {
        shipment_id: shipment.id,
        order_id: shipment.order_id,
        reason,
    };
    recorder.record(conn, shipment.order_id, &payload).await?;
    shipments::load(db, conn, shipment.id)
        .await?
        .ok_or(OrdersError::NotFound("shipment"))
}

#[derive(Debug, Clone)]
pub struct TrackingRequest {
    pub status: ShipmentStatus,
    pub reason: Option<IncidentReason>,
    pub description: Option<String>,
    pub location: Option<Location>,
    pub occurred_at: DateTime<Utc>,
    pub actor: Uuid,
}

/// Records a tracking event. One that happened before the shipment's current status was reached (late), or
/// that repeats the current status (a position update), is stored and moves nothing; any other status the
/// machine does not allow is 409. `delivered` needs the proof first when the shipment requires one.
pub async fn track(
    db: &Db,
    conn: &mut PgConnection,
    recorder: &Recorder<'_>,
    shipment: &ShipmentRow,
    request: &TrackingRequest,
) -> Result<TrackingEventView, OrdersError> {
    let late = request.occurred_at < shipment.status_at;
    let repeat = request.status == shipment.status;
    let applies = !late && !repeat;
    if applies {
        shipment.status.transition(request.status)?;
        if request.status == ShipmentStatus::Delivered
            && shipment.proof_required
            && shipments::proof(db, conn, shipment.id).await?.is_none()
        {
            return Err(OrdersError::ProofRequired);
        }
    }
    let event = shipments::insert_tracking(
        db,
        conn,
        shipment.id,
        &NewTracking {
            status: request.status,
            reason: request.reason,
            description: request.description.clone(),
            location: request.location.clone(),
            occurred_at: request.occurred_at,
            recorded_by: request.actor,
            applied: applies,
        },
    )
    .await?;
    if !applies {
        return Ok(event);
    }
    // A status cannot have been reached in the future: an event from a device whose clock runs a little
    // ahead (within the tolerated skew) must not make every later event from elsewhere look late.
    let reached_at = request.occurred_at.min(Utc::now());
    shipments::set_status(db, conn, shipment.id, request.status, reached_at).await?;
    let lines = line_pairs(&shipments::lines(db, conn, shipment.id).await?);
    recorder
        .shipment_status(
            conn,
            shipment,
            &lines,
            request.status,
            request.reason.map(|r| r.as_str().to_owned()),
        )
        .await?;
    orders::append_timeline(
        db,
        conn,
        shipment.order_id,
        Happened {
            kind: "shipment_status_changed",
            from: Some(shipment.status.as_str().to_owned()),
            to: Some(request.status.as_str().to_owned()),
            detail: json!({"shipment_id": shipment.id, "reason": request.reason}),
            actor: Some(request.actor),
        },
    )
    .await?;
    let progress = match request.status {
        ShipmentStatus::PickedUp => Some(Progress::Shipped),
        ShipmentStatus::Delivered => Some(Progress::Delivered),
        ShipmentStatus::Returned => Some(Progress::Returned),
        _ => None,
    };
    if request.status == ShipmentStatus::Delivered {
        let proof = shipments::proof(db, conn, shipment.id).await?;
        recorder.note(Fact::Delivered {
            proof: proof.is_some(),
        });
        let payload = ShipmentDelivered {
            shipment_id: shipment.id,
            order_id: shipment.order_id,
            delivered_at: request.occurred_at,
            receiver_name: proof.map(|p| p.receiver_name),
        };
        recorder.record(conn, shipment.order_id, &payload).await?;
    }
    if let Some(progress) = progress {
        orders::add_progress(db, conn, shipment.order_id, progress, &lines).await?;
        ordering::follow_lines(db, conn, recorder, shipment.order_id, Some(request.actor)).await?;
    }
    Ok(event)
}

#[derive(Debug, Clone)]
pub struct ProofRequest {
    pub kind: ProofKind,
    pub receiver_name: String,
    pub reference: String,
    pub actor: Uuid,
}

/// The proof of delivery, once, while the shipment is out for delivery.
pub async fn prove(
    db: &Db,
    conn: &mut PgConnection,
    shipment: &ShipmentRow,
    request: &ProofRequest,
) -> Result<ShipmentView, OrdersError> {
    if shipment.status != ShipmentStatus::OutForDelivery {
        return Err(OrdersError::InvalidTransition {
            entity: "shipment",
            from: shipment.status.as_str(),
            to: ShipmentStatus::Delivered.as_str(),
        });
    }
    if shipments::proof(db, conn, shipment.id).await?.is_some() {
        return Err(OrdersError::ProofExists);
    }
    shipments::insert_proof(
        db,
        conn,
        shipment.id,
        request.kind,
        &request.receiver_name,
        &request.reference,
        request.actor,
    )
    .await?;
    orders::append_timeline(
        db,
        conn,
        shipment.order_id,
        Happened::note(
            "proof_of_delivery",
            Some(request.actor),
            json!({"shipment_id": shipment.id, "type": request.kind}),
        ),
    )
    .await?;
    shipments::load(db, conn, shipment.id)
        .await?
        .ok_or(OrdersError::NotFound("shipment"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_numbers_are_unique_and_unambiguous() {
        let numbers: std::collections::HashSet<String> =
            (0..10_000).map(|_| tracking_number()).collect();
        assert_eq!(numbers.len(), 10_000);
        for number in numbers.iter().take(100) {
            assert_eq!(number.len(), 18);
            assert!(number.starts_with("LC"));
            assert!(
                number[2..]
                    .chars()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
            );
            assert!(!number[2..].contains(['I', 'L', 'O', 'U']), "{number}");
        }
    }
}
