//! Typed keys and tags. Building them here (not with `format!` at call sites) keeps every service's key
//! layout in one place, so a writer invalidates exactly the key a reader fills.

use std::fmt;

use uuid::Uuid;

/// A cache key, relative to the configured prefix (the backend adds the prefix).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    /// A user's profile.
    pub fn user(id: Uuid) -> Self {
        Self(format!("user:{id}"))
    }

    /// A user's preferences document.
    pub fn user_preferences(id: Uuid) -> Self {
        Self(format!("user:{id}:preferences"))
    }

    /// A product looked up by id.
    pub fn product(id: Uuid) -> Self {
        Self(format!("product:{id}"))
    }

    /// A product looked up by SKU.
    pub fn product_by_sku(sku: impl AsRef<str>) -> Self {
        Self(format!("product:sku:{}", sku.as_ref()))
    }

    /// The stock availability of one product (short TTL: it moves with every reservation).
    pub fn availability(product_id: Uuid) -> Self {
        Self(format!("availability:{product_id}"))
    }

    /// The result of a read-mostly query (see [`crate::CachedQueries`]): `query:<name>:<params as JSON>`.
    /// `name` is the query's metric name (`inventory.warehouse_list`); `params` everything its result
    /// depends on, e.g. `json!([filter.codes, filter.active, after, limit])`. JSON keeps distinct parameter
    /// lists distinct (`["a,b"]` is not `["a","b"]`).
    pub fn query(name: &str, params: &serde_json::Value) -> Self {
        Self(format!("query:{name}:{params}"))
    }

    /// Anything else: `namespace:part:part…`. The namespace keeps unrelated callers apart.
    pub fn custom<I, P>(namespace: &str, parts: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: fmt::Display,
    {
        let mut key = namespace.to_owned();
        for part in parts {
            key.push(':');
            key.push_str(&part.to_string());
        }
        Self(key)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A group of keys invalidated together, e.g. everything derived from one product.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// Everything cached about one user (profile, preferences…).
    pub fn user(id: Uuid) -> Self {
        Self(format!("user:{id}"))
    }

    /// Everything cached about one product (by id, by SKU, its availability…).
    pub fn product(id: Uuid) -> Self {
        Self(format!("product:{id}"))
    }

    /// Every availability entry (e.g. after a bulk import).
    pub fn availability() -> Self {
        Self("availability".to_owned())
    }

    /// Every product lookup, by id or SKU, "not found" included (e.g. after a bulk import, which may
    /// create or change any product).
    pub fn products() -> Self {
        Self("products".to_owned())
    }

    /// The availability of the product with this SKU, for writers that know only SKUs (reservation
    /// lines). Sound because a product's SKU never changes.
    pub fn availability_of_sku(sku: impl AsRef<str>) -> Self {
        Self(format!("availability:sku:{}", sku.as_ref()))
    }

    /// Every cached query result that reads a table, for its writers to invalidate after they commit.
    /// Qualify the table with its schema (`inventory.warehouses`): services can share one Redis.
    pub fn table(qualified: &str) -> Self {
        Self(format!("table:{qualified}"))
    }

    pub fn custom(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Tag {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_different_entities_never_collide() {
        let id = Uuid::nil();
        let keys = [
            Key::user(id),
            Key::user_preferences(id),
            Key::product(id),
            Key::product_by_sku(id.to_string()),
            Key::availability(id),
        ];
        let unique: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len());
        assert_eq!(
            Key::custom("order", [1, 2]).as_str(),
            "order:1:2",
            "custom keys join their parts with colons"
        );
        assert_eq!(
            Key::query(
                "inventory.warehouse_list",
                &serde_json::json!([["A,B"], null, 50])
            )
            .as_str(),
            r#"query:inventory.warehouse_list:[["A,B"],null,50]"#
        );
        assert_ne!(
            Key::query("q", &serde_json::json!([["a,b"]])),
            Key::query("q", &serde_json::json!([["a", "b"]])),
            "parameters are JSON-encoded, not joined"
        );
        assert_eq!(
            Tag::table("inventory.warehouses").as_str(),
            "table:inventory.warehouses"
        );
    }
}
