//! `logicore inventory import FILE.csv`: the service's own import path, with a progress bar on stderr.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

/// Imports the file and prints the report as JSON on stdout; fails when any row was rejected, so scripts
/// notice, after every valid row has been applied.
pub async fn import(config: &inventory::Config, file: &Path) -> anyhow::Result<()> {
    let total = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let progress = bar.clone();
    let report = inventory::import_csv_file(config, file, move |read, _total| {
        progress.set_position(read)
    })
    .await
    .with_context(|| format!("import of {} failed", file.display()))?;
    bar.finish_and_clear();
    let summary = serde_json::json!({
        "rows_total": report.rows_total,
        "rows_applied": report.rows_applied,
        "rows_failed": report.rows_failed,
        "products_created": report.products_created,
        "movements": report.movements,
        "errors": report.errors.iter().map(|e| serde_json::json!({
            "line": e.line, "field": e.field, "code": e.code, "message": e.message,
        })).collect::<Vec<_>>(),
        "errors_truncated": report.errors_truncated,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).context("cannot print the report")?
    );
    anyhow::ensure!(
        report.rows_failed == 0,
        "{} of {} rows were rejected (listed above); {}",
        report.rows_failed,
        report.rows_total,
        match report.rows_applied {
            0 => "no row was applied".to_owned(),
            applied => format!("the other {applied} were applied"),
        }
    );
    Ok(())
}
