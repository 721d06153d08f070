//! The benchmark's upstream: answers every request with the same small JSON document, kept alive, so
//! nginx and the gateway are compared in front of something that costs next to nothing.
//!
//! `cargo run --release -p gateway --example static_upstream -- 127.0.0.1:9101`

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;

const BODY: &str =
    r#"{"id":"0190c0de-0000-7000-8000-000000000001","email":"bench@example.com","role":"admin"}"#;

async fn answer() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], BODY)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9101".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    let app = Router::new().fallback(answer);
    axum::serve(listener, app).await
}
