//! platform::db against a real PostgreSQL.

use platform::db::{Db, Isolation, copy_rows};
use platform::metrics::{MetricsHandle, registry};
use sqlx::Row;

async fn connect(db: &testkit::TestDb) -> (Db, prometheus_client::registry::Registry) {
    let settings = testkit::settings(&[("DATABASE_URL", &db.url), ("DB_POOL_MAX", "8")]);
    let mut registry = registry("platform-test");
    let handle = Db::connect(&settings.database, "things", &mut registry)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    (handle, registry)
}

#[tokio::test]
async fn a_missing_database_and_schema_are_created_on_first_connect() {
    let test_db = testkit::TestDb::new();
    let (db, registry) = connect(&test_db).await;
    let schema: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(db.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(schema, "things");
    let text = MetricsHandle::new(registry).render();
    assert!(
        text.contains("db_pool_max_connections{service=\"platform-test\"} 8"),
        "{text}"
    );
    assert!(text.contains("db_pool_connections{"), "{text}");
    db.close().await;
}

#[tokio::test]
async fn serializable_transactions_are_retried_until_no_update_is_lost() {
    let test_db = testkit::TestDb::new();
    let (db, _registry) = connect(&test_db).await;
    sqlx::query("CREATE TABLE counter (id int PRIMARY KEY, value int NOT NULL)")
        .execute(db.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("INSERT INTO counter VALUES (1, 0)")
        .execute(db.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    const WRITERS: i32 = 24;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                db.transaction(Isolation::Serializable, async |tx| {
                    // Read-modify-write: without serializable isolation and retries, updates get lost.
                    let value: i32 = sqlx::query_scalar("SELECT value FROM counter WHERE id = 1")
                        .fetch_one(&mut *tx)
                        .await?;
                    sqlx::query("UPDATE counter SET value = $1 WHERE id = 1")
                        .bind(value + 1)
                        .execute(&mut *tx)
                        .await?;
                    Ok::<_, sqlx::Error>(())
                })
                .await
            })
        })
        .collect();
    for task in tasks {
        task.await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("transaction failed after retries: {e}"));
    }
    let value: i32 = sqlx::query_scalar("SELECT value FROM counter WHERE id = 1")
        .fetch_one(db.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(value, WRITERS);
    db.close().await;
}

#[tokio::test]
async fn a_failing_transaction_body_rolls_everything_back() {
    let test_db = testkit::TestDb::new();
    let (db, _registry) = connect(&test_db).await;
    sqlx::query("CREATE TABLE items (name text PRIMARY KEY)")
        .execute(db.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let result = db
        .transaction(Isolation::ReadCommitted, async |tx| {
            sqlx::query("INSERT INTO items VALUES ('a')")
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO items VALUES ('a')")
                .execute(&mut *tx)
                .await?;
            Ok::<_, sqlx::Error>(())
        })
        .await;
    assert!(result.is_err());
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(db.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count, 0, "nothing half-written");
    db.close().await;
}

#[tokio::test]
async fn copy_rows_inserts_every_row_with_awkward_values_and_nulls() {
    let test_db = testkit::TestDb::new();
    let (db, registry) = connect(&test_db).await;
    sqlx::query("CREATE TABLE products (n int PRIMARY KEY, name text, note text)")
        .execute(db.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = (0..20_000).map(|n| {
        let name = format!("item \"{n}\", with comma\nand newline");
        let note = (n % 2 == 0).then(|| "even".to_owned());
        [Some(n.to_string()), Some(name), note]
    });
    let mut connection = db.acquire().await.unwrap_or_else(|e| panic!("{e}"));
    let copied = db
        .timed(
            "products.copy",
            copy_rows(&mut connection, "products (n, name, note)", rows),
        )
        .await
        .unwrap_or_else(|e| panic!("copy: {e}"));
    assert_eq!(copied, 20_000);
    let row = sqlx::query("SELECT name, note FROM products WHERE n = 7")
        .fetch_one(&mut *connection)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        row.get::<String, _>("name"),
        "item \"7\", with comma\nand newline"
    );
    assert_eq!(row.get::<Option<String>, _>("note"), None);
    let nulls: i64 = sqlx::query_scalar("SELECT count(*) FROM products WHERE note IS NULL")
        .fetch_one(&mut *connection)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(nulls, 10_000);
    drop(connection);
    let text = MetricsHandle::new(registry).render();
    assert!(
        text.contains(
            "db_query_duration_seconds_count{service=\"platform-test\",query=\"products.copy\"} 1"
        ),
        "{text}"
    );
    db.close().await;
}

#[tokio::test]
async fn values_postgresql_refuses_are_client_errors_and_its_own_faults_are_not() {
    let test_db = testkit::TestDb::new();
    let (db, _registry) = connect(&test_db).await;
    sqlx::query("CREATE TABLE things (name text, n int, at timestamptz)")
        .execute(db.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let nul = sqlx::query("INSERT INTO things (name) VALUES ($1)")
        .bind("a\0b")
        .execute(db.pool())
        .await
        .expect_err("a NUL is refused");
    let overflow = sqlx::query("INSERT INTO things (n) VALUES ($1)")
        .bind(3_000_000_000_i64)
        .execute(db.pool())
        .await
        .expect_err("an int4 overflow is refused");
    for refused in [nul, overflow] {
        let problem = platform::Problem::database(&refused);
        assert_eq!(
            (problem.status, problem.code.as_str()),
            (400, "UNSTORABLE_VALUE"),
            "{refused}"
        );
    }
    let fault = sqlx::query("SELECT 1 / 0")
        .execute(db.pool())
        .await
        .expect_err("division by zero");
    assert_eq!(platform::Problem::database(&fault).status, 500);
    db.close().await;
}
