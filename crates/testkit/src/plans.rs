//! The plans of the statements services really run, as PostgreSQL's `auto_explain` reports them.
//!
//! [`PlanCapture::install`] creates the test database with `auto_explain` preloaded into every session (a
//! database-level setting, so the services' pools need no change) and its output sent to the client as a
//! WARNING. sqlx turns each such notice into a `tracing` event (target `sqlx::postgres::notice`); a layer on
//! the global subscriber keeps the plans. A test then drives the real endpoints and jobs and inspects the
//! plan of every statement they ran, so what it checks cannot drift from the code.

use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};

use crate::{TestDb, admin_url};

/// Where sqlx reports the notices a connection receives.
const NOTICE_TARGET: &str = "sqlx::postgres::notice";

/// Session settings of the test database: every statement's plan, with schema names (`log_verbose`) and
/// actual row counts (`log_analyze`, without the per-node timing it would cost), to the client only: the
/// server's own log, which other tests share, gets none of it.
///
/// And generic plans by default: a test sees a statement's first runs, which get plans made for their
/// values, but from the sixth run on a connection PostgreSQL may pick a generic plan blind to them. Services
/// ask for custom plans on their connections (`platform::db`), which overrides this; a connection that did
/// not would show its worst plans here.
const SETTINGS: &[(&str, &str)] = &[
    ("plan_cache_mode", "force_generic_plan"),
    ("session_preload_libraries", "auto_explain"),
    ("auto_explain.log_min_duration", "0"),
    ("auto_explain.log_format", "json"),
    ("auto_explain.log_level", "warning"),
    ("auto_explain.log_verbose", "on"),
    ("auto_explain.log_analyze", "on"),
    ("auto_explain.log_timing", "off"),
    ("log_min_messages", "error"),
];

/// The plans captured so far; one sink per process, as the subscriber is global.
#[derive(Clone, Default)]
pub struct PlanCapture {
    plans: Arc<Mutex<Vec<Value>>>,
}

impl PlanCapture {
    /// Creates `db` with `auto_explain` on for every connection to it (so call it before any service
    /// connects) and starts collecting plans.
    pub async fn install(db: &TestDb) -> Self {
        let mut admin = PgConnection::connect(&admin_url())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test server: {e}"));
        let name = platform::db::quote_ident(&db.name);
        execute(&mut admin, format!("CREATE DATABASE {name}")).await;
        for (key, value) in SETTINGS {
            execute(
                &mut admin,
                format!("ALTER DATABASE {name} SET {key} = '{value}'"),
            )
            .await;
        }
        static CAPTURE: OnceLock<PlanCapture> = OnceLock::new();
        CAPTURE
            .get_or_init(|| {
                let capture = PlanCapture::default();
                let layer = NoticeLayer(capture.clone())
                    .with_filter(Targets::new().with_target(NOTICE_TARGET, LevelFilter::WARN));
                tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
                    .unwrap_or_else(|e| panic!("plan capture needs the global subscriber: {e}"));
                capture
            })
            .clone()
    }

    /// The plans captured since the last call, each auto_explain's JSON document (`Query Text`, `Plan`)
    /// with the statement's `Duration` in milliseconds.
    pub fn take(&self) -> Vec<Value> {
        std::mem::take(&mut *self.plans.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

async fn execute(connection: &mut PgConnection, sql: String) {
    connection
        .execute(AssertSqlSafe(sql.clone()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

struct NoticeLayer(PlanCapture);

impl<S: tracing::Subscriber> Layer<S> for NoticeLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut message = Message(None);
        event.record(&mut message);
        // "duration: 0.123 ms  plan:\n{...}"; other warnings carry no plan. The duration goes into the
        // document as `Duration` (milliseconds).
        let Some(text) = message.0 else { return };
        let plan = text
            .find('{')
            .and_then(|at| serde_json::from_str::<Value>(&text[at..]).ok());
        if let Some(mut plan) = plan {
            let duration = text
                .strip_prefix("duration: ")
                .and_then(|rest| rest.split_once(' '))
                .and_then(|(ms, _)| ms.parse::<f64>().ok());
            plan["Duration"] = duration.into();
            self.0
                .plans
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(plan);
        }
    }
}

struct Message(Option<String>);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" && self.0.is_none() {
            self.0 = Some(format!("{value:?}"));
        }
    }
}
