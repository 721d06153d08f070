//! Product queries. [`lookup`] is the hot read path (every reservation, adjustment and transfer resolves
//! its SKUs through it) and the single place the product cache sits.

use cache::Cache;
use messaging::Messaging;
use platform::db::{Db, violated_constraint};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::caching::{self, PRODUCT_TTL};
use crate::domain::Sku;
use crate::error::InventoryError;
use crate::events::Outbox;
use crate::models::{Product, product_columns};
use crate::repo::{TxFuture, locks, transaction};

#[derive(Debug)]
pub struct NewProduct {
    pub sku: Sku,
    pub name: String,
    pub weight_grams: Option<i32>,
    pub reorder_point: i32,
    pub allow_backorder: bool,
}

/// Fields to change; `None` leaves a field as it is, `weight_grams: Some(None)` clears the weight.
#[derive(Debug, Clone, Default)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub weight_grams: Option<Option<i32>>,
    pub reorder_point: Option<i32>,
    pub allow_backorder: Option<bool>,
}

#[derive(Debug, Default)]
pub struct ProductFilter {
    pub skus: Vec<String>,
    /// Lowercased substring of the sku or the name.
    pub q: Option<String>,
}

/// How a product is looked up.
#[derive(Debug, Clone, Copy)]
pub enum ProductKey<'a> {
    Id(Uuid),
    Sku(&'a str),
}

/// Finds a product by id or sku, through the cache. Callers use it before opening a transaction, so a
/// slow lookup never holds locks.
pub async fn lookup(
    db: &Db,
    cache: &Cache,
    key: ProductKey<'_>,
) -> Result<Option<Product>, InventoryError> {
    let (entry, tags) = caching::product_entry(key);
    cache
        .get_or_set(&entry, PRODUCT_TTL, &tags, || load(db, key))
        .await
}

async fn load(db: &Db, key: ProductKey<'_>) -> Result<Option<Product>, InventoryError> {
    const BY_ID: &str = concat!(
        "SELECT ",
        product_columns!(),
        " FROM products WHERE id = $1"
    );
    const BY_SKU: &str = concat!(
        "SELECT ",
        product_columns!(),
        " FROM products WHERE sku = $1"
    );
    let found = match key {
        ProductKey::Id(id) => {
            let query = sqlx::query_as::<_, Product>(BY_ID)
                .bind(id)
                .fetch_optional(db.pool());
            db.timed("inventory.product_by_id", query).await?
        }
        ProductKey::Sku(sku) => {
            let query = sqlx::query_as::<_, Product>(BY_SKU)
                .bind(sku)
                .fetch_optional(db.pool());
            db.timed("inventory.product_by_sku", query).await?
        }
    };
    Ok(found)
}

/// The product with this sku, or a 422 naming `field`: the sku came in a request body.
pub async fn require_sku(
    db: &Db,
    cache: &Cache,
    sku: &Sku,
    field: &str,
) -> Result<Product, InventoryError> {
    lookup(db, cache, ProductKey::Sku(sku.as_str()))
        .await?
        .ok_or_else(|| InventoryError::field(field, "UNKNOWN_SKU", "no product has this sku"))
}

/// Creates a product, then drops a cached "not found" of its SKU.
pub async fn insert(
    db: &Db,
    cache: &Cache,
    product: &NewProduct,
) -> Result<Product, InventoryError> {
    const SQL: &str = concat!(
        "INSERT INTO products (id, sku, name, weight_grams, reorder_point, allow_backorder) ",
        "VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
        product_columns!()
    );
    let query = sqlx::query_as::<_, Product>(SQL)
        .bind(Uuid::now_v7())
        .bind(product.sku.as_str())
        .bind(&product.name)
        .bind(product.weight_grams)
        .bind(product.reorder_point)
        .bind(product.allow_backorder)
        .fetch_one(db.pool());
    let product = db.timed("inventory.product_insert", query).await?;
    caching::product_changed(cache, &product).await;
    Ok(product)
}

/// Applies `patch`; a change of the backorder flag or the reorder point is carried to the product's stock
/// rows in the same transaction; the cached lookups go after the commit. `None` when there is no such
/// product.
pub async fn update(
    db: &Db,
    cache: &Cache,
    messaging: &Messaging,
    id: Uuid,
    patch: &ProductPatch,
) -> Result<Option<Product>, InventoryError> {
    let context = (id, patch.clone(), messaging.clone());
    let updated = transaction(db, context, update_body).await?;
    if let Some(product) = &updated {
        caching::product_changed(cache, product).await;
    }
    Ok(updated)
}

fn update_body(
    db: Db,
    (id, patch, messaging): (Uuid, ProductPatch, Messaging),
    conn: &mut PgConnection,
) -> TxFuture<'_, Option<Product>> {
    const SQL: &str = concat!(
        "UPDATE products SET name = COALESCE($2, name), ",
        "weight_grams = CASE WHEN $3 THEN $4 ELSE weight_grams END, ",
        "reorder_point = COALESCE($5, reorder_point), ",
        "allow_backorder = COALESCE($6, allow_backorder), updated_at = now() ",
        "WHERE id = $1 RETURNING ",
        product_columns!()
    );
    Box::pin(async move {
        let query = sqlx::query_as::<_, Product>(SQL)
            .bind(id)
            .bind(patch.name.as_deref())
            .bind(patch.weight_grams.is_some())
            .bind(patch.weight_grams.flatten())
            .bind(patch.reorder_point)
            .bind(patch.allow_backorder)
            .fetch_optional(&mut *conn);
        let Some(product) = db.timed("inventory.product_update", query).await? else {
            return Ok(None);
        };
        if patch.reorder_point.is_none() && patch.allow_backorder.is_none() {
            return Ok(Some(product));
        }
        let outbox = Outbox::new(&messaging);
        let rows = locks::lock_products(&db, conn, outbox, &[id]).await?;
        let copy = sqlx::query(
            "UPDATE stock_levels SET allow_backorder = $2, updated_at = now() \
             WHERE product_id = $1 AND allow_backorder <> $2",
        )
        .bind(id)
        .bind(product.allow_backorder)
        .execute(&mut *conn);
        match db.timed("inventory.stock_backorder_flag", copy).await {
            Err(e) if violated_constraint(&e) == Some("stock_levels_reserved_within_on_hand") => {
                return Err(InventoryError::BackordersOutstanding);
            }
            other => other?,
        };
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        locks::record_low_stock(&db, conn, outbox, &ids).await?;
        Ok(Some(product))
    })
}

/// Up to `limit` products after `after` in id (creation) order.
pub async fn list(
    db: &Db,
    filter: &ProductFilter,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Product>, InventoryError> {
    const SQL: &str = concat!(
        "SELECT ",
        product_columns!(),
        " FROM products WHERE ($1::uuid IS NULL OR id > $1) ",
        "AND (cardinality($2::text[]) = 0 OR sku = ANY($2)) ",
        // LIKE with the search text's wildcards escaped, so the trigram indexes on both serve it.
        "AND ($3::text IS NULL OR lower(sku) LIKE $3 OR lower(name) LIKE $3) ",
        "ORDER BY id LIMIT $4"
    );
    let query = sqlx::query_as::<_, Product>(SQL)
        .bind(after)
        .bind(&filter.skus)
        .bind(filter.q.as_deref().map(platform::search::contains_pattern))
        .bind(i64::from(limit))
        .fetch_all(db.pool());
    Ok(db.timed("inventory.product_list", query).await?)
}

/// The products with these skus, read on the caller's connection (inside its transaction), in sku order;
/// unknown skus are simply missing.
pub(crate) async fn by_skus_in(
    db: &Db,
    conn: &mut PgConnection,
    skus: &[&str],
) -> Result<Vec<Product>, InventoryError> {
    const SQL: &str = concat!(
        "SELECT ",
        product_columns!(),
        " FROM products WHERE sku = ANY($1) ORDER BY sku"
    );
    let query = sqlx::query_as::<_, Product>(SQL)
        .bind(skus)
        .fetch_all(&mut *conn);
    Ok(db.timed("inventory.products_by_sku", query).await?)
}
