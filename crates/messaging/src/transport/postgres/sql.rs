//! The PostgreSQL transport's statements, with the shared schema's name baked in (identifiers cannot be bind
//! parameters), and its DDL.

/// Statements with the schema name baked in (identifiers cannot be bind parameters).
pub(super) struct Sql {
    pub(super) subscriptions: String,
    pub(super) unsubscribe_stale: String,
    pub(super) subscribe: String,
    pub(super) fan_out: String,
    pub(super) claim: String,
    pub(super) next_due: String,
    pub(super) ack: String,
    pub(super) release: String,
    pub(super) retry: String,
    pub(super) dead: String,
    pub(super) list_dead: String,
    pub(super) groups: String,
    pub(super) replay: String,
    pub(super) depth: String,
    pub(super) delete_subscriptions: String,
    pub(super) delete_deliveries: String,
}

impl Sql {
    pub(super) fn new(s: &str) -> Self {
        Self {
            // Sorted by group so a group matched by several patterns is adjacent (and deduplicated).
            subscriptions: format!(
                "SELECT group_name, pattern FROM {s}.subscriptions ORDER BY group_name"
            ),
            unsubscribe_stale: format!(
                "DELETE FROM {s}.subscriptions WHERE group_name = $1 AND pattern <> ALL($2)"
            ),
            subscribe: format!(
                "INSERT INTO {s}.subscriptions (group_name, pattern) SELECT $1, unnest($2::text[]) \
                 ON CONFLICT DO NOTHING"
            ),
            // One statement: the rows and the wake-up commit together, and ON CONFLICT makes a republished
            // event (relay crash before marking it sent) a no-op while its delivery is still pending.
            fan_out: format!(
                "WITH inserted AS ( \
                     INSERT INTO {s}.deliveries (group_name, event_id, event_type, aggregate_id, envelope) \
                     SELECT g, id, t, a, e::json \
                     FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[]) \
                          WITH ORDINALITY AS u(g, id, t, a, e, n) \
                     ORDER BY n \
                     ON CONFLICT (group_name, event_id) DO NOTHING \
                     RETURNING 1) \
                 SELECT pg_notify($6, '') FROM (SELECT 1 FROM inserted LIMIT 1) AS any_row"
            ),
            claim: format!(
                "UPDATE {s}.deliveries AS d \
                 SET locked_until = now() + make_interval(secs => $3), attempts = d.attempts + 1 \
                 FROM (SELECT id FROM {s}.deliveries \
                       WHERE group_name = $1 AND dead_at IS NULL AND next_attempt_at <= now() \
                         AND (locked_until IS NULL OR locked_until < now()) \
                       ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) AS c \
                 WHERE d.id = c.id \
                 RETURNING d.id, d.attempts, d.envelope::text"
            ),
            next_due: format!(
                "SELECT EXTRACT(EPOCH FROM min(GREATEST(next_attempt_at, \
                            COALESCE(locked_until, next_attempt_at))) - now())::float8 \
                 FROM {s}.deliveries WHERE group_name = $1 AND dead_at IS NULL"
            ),
            ack: format!("DELETE FROM {s}.deliveries WHERE id = $1"),
            release: format!(
                "UPDATE {s}.deliveries SET locked_until = NULL, attempts = GREATEST(attempts - 1, 0) \
                 WHERE id = $1 AND dead_at IS NULL"
            ),
            retry: format!(
                "UPDATE {s}.deliveries SET locked_until = NULL, last_error = $3, \
                     next_attempt_at = now() + make_interval(secs => $2) \
                 WHERE id = $1"
            ),
            dead: format!(
                "UPDATE {s}.deliveries SET dead_at = now(), locked_until = NULL, last_error = $2 \
                 WHERE id = $1"
            ),
            list_dead: format!(
                "SELECT event_id, event_type, attempts, COALESCE(last_error, ''), dead_at, envelope \
                 FROM {s}.deliveries WHERE group_name = $1 AND dead_at IS NOT NULL \
                 ORDER BY dead_at, id LIMIT $2"
            ),
            groups: format!(
                "SELECT g.group_name, count(d.id) \
                 FROM (SELECT group_name FROM {s}.subscriptions \
                       UNION SELECT DISTINCT group_name FROM {s}.deliveries) AS g \
                 LEFT JOIN {s}.deliveries AS d \
                        ON d.group_name = g.group_name AND d.dead_at IS NOT NULL \
                 GROUP BY g.group_name ORDER BY g.group_name"
            ),
            replay: format!(
                "UPDATE {s}.deliveries SET dead_at = NULL, attempts = 0, next_attempt_at = now(), \
                     locked_until = NULL, last_error = NULL \
                 WHERE group_name = $1 AND dead_at IS NOT NULL \
                   AND ($2::uuid[] IS NULL OR event_id = ANY($2))"
            ),
            depth: format!(
                "SELECT count(*) FROM {s}.deliveries WHERE group_name = $1 AND dead_at IS NULL"
            ),
            delete_subscriptions: format!("DELETE FROM {s}.subscriptions WHERE group_name = $1"),
            delete_deliveries: format!("DELETE FROM {s}.deliveries WHERE group_name = $1"),
        }
    }
}

pub(super) fn ddl(s: &str) -> String {
    format!(
        "CREATE SCHEMA IF NOT EXISTS {s}; \
         CREATE TABLE IF NOT EXISTS {s}.subscriptions ( \
             group_name TEXT NOT NULL, \
             pattern    TEXT NOT NULL, \
             PRIMARY KEY (group_name, pattern)); \
         CREATE TABLE IF NOT EXISTS {s}.deliveries ( \
             id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
             group_name      TEXT        NOT NULL, \
             event_id        UUID        NOT NULL, \
             event_type      TEXT        NOT NULL, \
             aggregate_id    TEXT        NOT NULL, \
             envelope        JSON        NOT NULL, \
             attempts        INT         NOT NULL DEFAULT 0, \
             next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(), \
             locked_until    TIMESTAMPTZ, \
             last_error      TEXT, \
             dead_at         TIMESTAMPTZ, \
             created_at      TIMESTAMPTZ NOT NULL DEFAULT now(), \
             UNIQUE (group_name, event_id)); \
         CREATE INDEX IF NOT EXISTS deliveries_ready_idx ON {s}.deliveries (group_name, id) \
             WHERE dead_at IS NULL; \
         CREATE INDEX IF NOT EXISTS deliveries_dead_idx ON {s}.deliveries (group_name, dead_at) \
             WHERE dead_at IS NOT NULL;"
    )
}

/// The schema standing in for an exchange: `logicore.events` → `logicore_events`.
pub fn bus_schema(exchange: &str) -> String {
    let name: String = exchange
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    name.chars().take(63).collect()
}
