//! What the inventory service caches, under which tags, and the invalidations its writes run after they
//! commit.
//!
//! * Product lookups (by id and by SKU, "not found" included) live long: the only writers are product
//!   create/PATCH and imports, and each invalidates after its commit.
//! * Availability lives [`AVAILABILITY_TTL`]: every stock-changing path invalidates it after commit, and
//!   the short TTL bounds the one change no write makes — a hold lapsing by itself (availability ignores
//!   expired holds the moment they lapse, before the sweeper gets to them).

use std::time::Duration;

use cache::{Cache, Key, Tag};
use uuid::Uuid;

use crate::models::{Product, Reservation};
use crate::repo::products::ProductKey;

pub const PRODUCT_TTL: Duration = Duration::from_secs(300);
pub const AVAILABILITY_TTL: Duration = Duration::from_secs(2);

/// The key of a lookup and its tags. A lookup by SKU cannot be tagged with the product's id (it is not
/// known before the load), so a product's writers also drop its SKU key by name.
pub(crate) fn product_entry(key: ProductKey<'_>) -> (Key, Vec<Tag>) {
    match key {
        ProductKey::Id(id) => (Key::product(id), vec![Tag::product(id), Tag::products()]),
        ProductKey::Sku(sku) => (Key::product_by_sku(sku), vec![Tag::products()]),
    }
}

pub(crate) fn availability_entry(product: &Product) -> (Key, Vec<Tag>) {
    (
        Key::availability(product.id),
        vec![
            Tag::product(product.id),
            Tag::availability_of_sku(&product.sku),
            Tag::availability(),
        ],
    )
}

/// After a product was created or changed: both lookups and its availability.
pub(crate) async fn product_changed(cache: &Cache, product: &Product) {
    cache
        .invalidate_keys(&[Key::product_by_sku(&product.sku)])
        .await;
    cache.invalidate_tags(&[Tag::product(product.id)]).await;
}

/// After stock of these products changed.
pub(crate) async fn stock_changed(cache: &Cache, product_ids: &[Uuid]) {
    let keys: Vec<Key> = product_ids.iter().copied().map(Key::availability).collect();
    cache.invalidate_keys(&keys).await;
}

/// After a reservation changed state: its lines name SKUs, not product ids.
pub(crate) async fn reservation_changed(cache: &Cache, reservation: &Reservation) {
    let tags: Vec<Tag> = reservation
        .lines
        .iter()
        .map(|line| Tag::availability_of_sku(&line.sku))
        .collect();
    cache.invalidate_tags(&tags).await;
}

/// After the stock of these skus changed (the saga knows skus from its events, not product ids).
pub(crate) async fn skus_changed<'a>(cache: &Cache, skus: impl IntoIterator<Item = &'a str>) {
    let tags: Vec<Tag> = skus.into_iter().map(Tag::availability_of_sku).collect();
    if !tags.is_empty() {
        cache.invalidate_tags(&tags).await;
    }
}

/// After a change that may touch the stock of any product, in bulk (the expiry sweeper, a warehouse
/// activated or reprioritised).
pub(crate) async fn all_stock_changed(cache: &Cache) {
    cache.invalidate_tags(&[Tag::availability()]).await;
}

/// After an import batch: it may have created or renamed any product and set the stock of any. One
/// coarse invalidation rather than one per product: a batch holds thousands of rows (one tag is one
/// round trip, thousands of keys would be a large script run per batch), imports are rare, and the batch
/// knows its SKUs but not the ids of products it did not create.
pub(crate) async fn bulk_import_applied(cache: &Cache) {
    cache
        .invalidate_tags(&[Tag::products(), Tag::availability()])
        .await;
}
