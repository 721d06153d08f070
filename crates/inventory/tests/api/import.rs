use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use platform::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, ok, spawn_app, spawn_app_with};

async fn import(app: &TestApp, csv: String) -> (StatusCode, Value) {
    let response = ok(app
        .client
        .post(app.server.url("/api/v1/inventory/import"))
        .bearer_auth(app.token(Role::Manager))
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await);
    let status = response.status();
    (status, testkit::json(response).await)
}

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    ok(sqlx::query_scalar(sql).fetch_one(app.db.pool()).await)
}

#[tokio::test]
async fn a_100k_row_file_applies_every_valid_row_and_names_each_bad_one_by_line() {
    const ROWS: usize = 100_000;
    let app = spawn_app().await;
    app.warehouse("MAIN", 1).await;
    app.warehouse("SPARE", 2).await;
    let mut csv = String::from("sku,name,warehouse_code,quantity,reorder_point\n");
    let mut bad_lines = Vec::new();
    for i in 0..ROWS {
        let line = i + 2;
        // Every 1000th row is broken in one of three ways.
        match (i % 1000 == 999).then_some(i / 1000 % 3) {
            Some(0) => writeln!(csv, "SKU-{i},\"Item, {i}\",MAIN,lots"),
            Some(1) => writeln!(csv, "SKU-{i},Item {i},NOWHERE,5"),
            Some(_) => writeln!(csv, ",Item {i},MAIN,5,1"),
            None if i % 2 == 0 => writeln!(csv, "SKU-{i},\"Item, {i}\",MAIN,{},2", i % 50),
            None => writeln!(csv, "SKU-{i},Item {i},spare,{}", i % 50),
        }
        .unwrap_or_default();
        if i % 1000 == 999 {
            bad_lines.push(line as u64);
        }
    }
    let (status, report) = import(&app, csv).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["rows_total"], ROWS);
    assert_eq!(report["rows_failed"], bad_lines.len());
    assert_eq!(report["rows_applied"], ROWS - bad_lines.len());
    assert_eq!(report["errors_truncated"], false);
    let lines: Vec<u64> = report["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["line"].as_u64())
        .collect();
    assert_eq!(lines, bad_lines);
    let codes: Vec<&str> = report["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .take(3)
        .filter_map(|e| e["code"].as_str())
        .collect();
    assert_eq!(codes, ["INVALID_TYPE", "UNKNOWN_WAREHOUSE", "REQUIRED"]);

    let products = count(&app, "SELECT count(*) FROM products").await;
    assert_eq!(products as usize, ROWS - bad_lines.len());
    assert_eq!(report["products_created"], products);
    // Rows with quantity 0 set nothing, so they write no ledger row.
    let movements = count(&app, "SELECT count(*) FROM movements").await;
    assert_eq!(report["movements"], movements);
    assert_eq!(
        count(&app, "SELECT sum(on_hand) FROM stock_levels").await,
        {
            (0..ROWS)
                .filter(|i| i % 1000 != 999)
                .map(|i| (i % 50) as i64)
                .sum::<i64>()
        }
    );
    let (_, named) = app
        .get("/api/v1/inventory/products?sku=SKU-10", Role::Admin)
        .await;
    assert_eq!(named["data"][0]["name"], "Item, 10");
    assert_eq!(named["data"][0]["reorder_point"], 2);
    app.assert_ledger_explains_stock().await;
}

#[tokio::test]
async fn importing_the_same_file_again_changes_nothing() {
    let app = spawn_app().await;
    app.warehouse("MAIN", 1).await;
    let csv = "A-1,Anvil,MAIN,5\nB-1,Bolt,main,7,2\n".to_owned();
    let (_, first) = import(&app, csv.clone()).await;
    assert_eq!(first["rows_applied"], 2, "{first}");
    assert_eq!(first["products_created"], 2);
    assert_eq!(first["movements"], 2);
    let (_, second) = import(&app, csv).await;
    assert_eq!(second["rows_applied"], 2);
    assert_eq!(second["products_created"], 0);
    assert_eq!(second["movements"], 0);
    let (_, ledger) = app
        .get("/api/v1/inventory/movements?reason=import", Role::Admin)
        .await;
    assert_eq!(ledger["data"][0]["reference"], first["id"]);
}

#[tokio::test]
async fn an_import_sets_levels_keeps_reservations_whole_and_lets_the_last_row_win() {
    let app = spawn_app().await;
    let main = app.warehouse("MAIN", 1).await;
    let product = app.product("A-1", json!({"reorder_point": 1})).await;
    app.receive("A-1", main, 10).await;
    let (status, _) = app
        .reserve(Uuid::now_v7(), json!([{"sku": "A-1", "quantity": 6}]))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let csv = "A-1,Anvil,MAIN,4\nB-1,Bolt,MAIN,1\nB-1,Bolt v2,MAIN,9,4\n".to_owned();
    let (_, report) = import(&app, csv).await;
    assert_eq!(report["rows_failed"], 1, "{report}");
    assert_eq!(report["errors"][0]["line"], 1);
    assert_eq!(report["errors"][0]["code"], "STOCK_BELOW_RESERVED");
    assert_eq!(report["rows_applied"], 2);
    assert_eq!(
        app.totals(product).await,
        (10, 6, 4),
        "the refused row changed nothing"
    );
    let (_, b) = app
        .get("/api/v1/inventory/products?sku=B-1", Role::Admin)
        .await;
    assert_eq!(b["data"][0]["name"], "Bolt v2");
    assert_eq!(b["data"][0]["reorder_point"], 4);
    let b_id = crate::helpers::id_of(&b["data"][0]);
    assert_eq!(app.totals(b_id).await, (9, 0, 9));
    app.assert_ledger_explains_stock().await;
}

#[tokio::test]
async fn an_import_needs_csv_within_the_size_limit() {
    let app = spawn_app_with(&[("LOGICORE_INVENTORY__IMPORT_MAX_BYTES", "2048")]).await;
    app.warehouse("MAIN", 1).await;
    let (status, body) = app
        .post("/api/v1/inventory/import", Role::Admin, json!({"rows": []}))
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let big: String = (0..200).map(|i| format!("SKU-{i},Item,MAIN,1\n")).collect();
    let (status, body) = import(&app, big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE");
    let (status, report) = import(&app, String::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["rows_total"], 0);
}

#[tokio::test]
async fn importing_a_file_reports_progress_up_to_its_size() {
    let app = spawn_app().await;
    app.warehouse("MAIN", 1).await;
    let path = std::env::temp_dir().join(format!("inventory-import-{}.csv", Uuid::now_v7()));
    let csv: String = (0..5000)
        .map(|i| format!("SKU-{i},Item {i},MAIN,{}\n", i % 7))
        .collect();
    ok(std::fs::write(&path, &csv));
    let seen = AtomicU64::new(0);
    let total_seen = AtomicU64::new(0);
    let report = inventory::import_csv_file(&app.config, &path, |read, total| {
        seen.store(read, Ordering::Relaxed);
        total_seen.store(total, Ordering::Relaxed);
    })
    .await;
    let _ = std::fs::remove_file(&path);
    let report = ok(report);
    assert_eq!(report.rows_applied, 5000);
    assert_eq!(seen.load(Ordering::Relaxed), csv.len() as u64);
    assert_eq!(total_seen.load(Ordering::Relaxed), csv.len() as u64);
    app.assert_ledger_explains_stock().await;
}

#[tokio::test]
async fn columns_are_matched_by_header_name_in_any_order_and_case() {
    let app = spawn_app().await;
    app.warehouse("MAIN", 1).await;
    let csv =
        " Quantity ,Reorder_Point,WAREHOUSE_CODE,sku,Name\n5,2,MAIN,A-1,Anvil\n7,,main,B-1,Bolt\n";
    let (status, report) = import(&app, csv.to_owned()).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["rows_applied"], 2, "{report}");
    let (_, anvil) = app
        .get("/api/v1/inventory/products?sku=A-1", Role::Admin)
        .await;
    assert_eq!(anvil["data"][0]["name"], "Anvil");
    assert_eq!(anvil["data"][0]["reorder_point"], 2);
    let anvil_id = crate::helpers::id_of(&anvil["data"][0]);
    assert_eq!(app.totals(anvil_id).await, (5, 0, 5));
}

#[tokio::test]
async fn a_header_with_an_extra_or_a_missing_column_applies_no_row_and_names_the_columns() {
    let app = spawn_app().await;
    app.warehouse("MAIN", 1).await;
    let (status, problem) = import(
        &app,
        "sku,name,warehouse_code,quantity,colour\nA-1,Anvil,MAIN,5,red\n".to_owned(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "colour", "{problem}");
    assert_eq!(problem["errors"][0]["code"], "UNKNOWN_COLUMN");

    let (status, problem) = import(&app, "name,sku,quantity\nAnvil,A-1,5\n".to_owned()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let missing: Vec<(&str, &str)> = problem["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["field"].as_str()?, e["code"].as_str()?)))
        .collect();
    assert_eq!(missing, [("warehouse_code", "MISSING_COLUMN")]);
    assert!(problem["request_id"].is_string(), "{problem}");
    assert_eq!(count(&app, "SELECT count(*) FROM products").await, 0);
}
