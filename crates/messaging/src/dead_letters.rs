//! Operations on dead letters, behind `logicore events dead-letters groups|list|replay`.

use uuid::Uuid;

use crate::transport::{DeadLetter, GroupDeadLetters, Transport, TransportError};

/// Up to `limit` dead letters of consumer group `group`, oldest first.
pub async fn list_dead_letters(
    transport: &dyn Transport,
    group: &str,
    limit: usize,
) -> Result<Vec<DeadLetter>, TransportError> {
    transport.dead_letters(group, limit).await
}

/// Puts one dead letter back on the group's queue, attempts reset; `false` when there is none with that id.
pub async fn replay_dead_letter(
    transport: &dyn Transport,
    group: &str,
    event_id: Uuid,
) -> Result<bool, TransportError> {
    Ok(transport.replay(group, Some(&[event_id])).await? > 0)
}

/// Puts every dead letter of the group back on its queue; returns how many.
pub async fn replay_dead_letters(
    transport: &dyn Transport,
    group: &str,
) -> Result<u64, TransportError> {
    transport.replay(group, None).await
}

/// The consumer groups the transport knows (see [`Transport::groups`]) with their dead-letter counts.
pub async fn dead_letter_groups(
    transport: &dyn Transport,
    expected: &[&str],
) -> Result<Vec<GroupDeadLetters>, TransportError> {
    transport.groups(expected).await
}
