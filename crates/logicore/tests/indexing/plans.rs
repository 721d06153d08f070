//! Reading auto_explain's JSON plans: every scan a statement made, and which tables count as large.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;
use sqlx::PgConnection;

/// A table holding at least this many rows (by the planner's statistics) is large: reading all of it to
/// answer one request is what this test exists to catch. The seeded big tables hold 10 000 to 1 000 000.
pub const LARGE_TABLE_ROWS: f32 = 5_000.0;

/// An index scan that reads at least this share of a large table, only to filter most of it away, is a
/// sequential scan in disguise: typically a walk of the primary key in `ORDER BY id` order looking for rows
/// a filter no index serves would pick out.
pub const MOST_OF_A_TABLE: f32 = 0.25;

/// One scan node of a plan.
#[derive(Debug, Clone)]
pub struct Scan {
    /// `Seq Scan`, `Index Scan`, `Index Only Scan`, `Bitmap Heap Scan`, …
    pub node: String,
    /// `schema.table`.
    pub table: String,
    pub index: Option<String>,
    pub condition: Option<String>,
    pub filter: Option<String>,
    pub rows: i64,
    pub removed_by_filter: i64,
}

impl Scan {
    /// Rows the scan read: those it returned and those its filter threw away.
    pub fn examined(&self) -> i64 {
        self.rows + self.removed_by_filter
    }
}

impl fmt::Display for Scan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.node, self.table)?;
        if let Some(index) = &self.index {
            write!(f, " using {index}")?;
        }
        if let Some(condition) = &self.condition {
            write!(f, " [{condition}]")?;
        }
        if let Some(filter) = &self.filter {
            write!(f, " filter [{filter}]")?;
        }
        write!(f, " rows={} removed={}", self.rows, self.removed_by_filter)
    }
}

/// The statement text of a captured plan, on one line.
pub fn query_text(plan: &Value) -> String {
    plan["Query Text"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The planner's total cost and the statement's duration (ms), for the report.
pub fn cost_and_duration(plan: &Value) -> (f64, f64) {
    (
        plan["Plan"]["Total Cost"].as_f64().unwrap_or_default(),
        plan["Duration"].as_f64().unwrap_or_default(),
    )
}

/// Every scan of a table in `plan`, sub-plans and CTEs included.
pub fn scans(plan: &Value) -> Vec<Scan> {
    let mut found = Vec::new();
    walk(&plan["Plan"], &mut found);
    found
}

fn walk(node: &Value, found: &mut Vec<Scan>) {
    let text = |key: &str| node[key].as_str().map(str::to_owned);
    if let Some(relation) = node["Relation Name"].as_str() {
        let schema = node["Schema"].as_str().unwrap_or("?");
        found.push(Scan {
            node: text("Node Type").unwrap_or_default(),
            table: format!("{schema}.{relation}"),
            index: text("Index Name"),
            condition: text("Index Cond").or_else(|| text("Recheck Cond")),
            filter: text("Filter"),
            // EXPLAIN reports rows per loop; times the loops is what the scan read in all.
            rows: node["Actual Rows"].as_i64().unwrap_or_default()
                * node["Actual Loops"].as_i64().unwrap_or(1),
            removed_by_filter: (node["Rows Removed by Filter"].as_i64().unwrap_or_default()
                + node["Rows Removed by Index Recheck"]
                    .as_i64()
                    .unwrap_or_default())
                * node["Actual Loops"].as_i64().unwrap_or(1),
        });
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        walk(child, found);
    }
}

/// `schema.table` → estimated rows of every table at or above [`LARGE_TABLE_ROWS`] (after `ANALYZE`).
pub async fn large_tables(connection: &mut PgConnection) -> HashMap<String, f32> {
    sqlx::query_as::<_, (String, f32)>(
        "SELECT n.nspname || '.' || c.relname, c.reltuples FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND c.reltuples >= $1 AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
    )
    .bind(LARGE_TABLE_ROWS)
    .fetch_all(connection)
    .await
    .unwrap_or_else(|e| panic!("table sizes: {e}"))
    .into_iter()
    .collect()
}
