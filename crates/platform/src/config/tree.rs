//! Helpers over the merged TOML tree: deep merge with source tracking, leaf listing, lookup by dotted key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    /// Not set, so computed from other keys (named in the text).
    Derived(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Derived(from) => write!(f, "derived from {from}"),
        }
    }
}

/// Merges `layer` into `base`: tables merge key by key, anything else (including arrays) replaces.
pub(super) fn merge(
    base: &mut toml::Table,
    layer: toml::Table,
    prefix: &str,
    source: &Source,
    origin: &mut BTreeMap<String, Source>,
) {
    for (key, value) in layer {
        let path = join(prefix, &key);
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(incoming)) => {
                merge(existing, incoming, &path, source, origin);
            }
            (_, value) => {
                mark(&path, &value, source, origin);
                base.insert(key, value);
            }
        }
    }
}

fn mark(path: &str, value: &toml::Value, source: &Source, origin: &mut BTreeMap<String, Source>) {
    if let toml::Value::Table(table) = value {
        for (key, inner) in table {
            mark(&join(path, key), inner, source, origin);
        }
    } else {
        origin.insert(path.to_owned(), source.clone());
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Every leaf as `(dotted.key, value)`, in key order; arrays count as leaves.
pub(super) fn leaves(table: &toml::Table) -> Vec<(String, toml::Value)> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
        for (key, value) in table {
            let path = join(prefix, key);
            match value {
                toml::Value::Table(inner) => walk(&path, inner, out),
                other => out.push((path, other.clone())),
            }
        }
    }
    let mut out = Vec::new();
    walk("", table, &mut out);
    out
}

/// The value at a dotted key, if any.
pub(super) fn get<'t>(table: &'t toml::Table, dotted: &str) -> Option<&'t toml::Value> {
    let mut parts = dotted.split('.');
    let mut current = table.get(parts.next()?)?;
    for part in parts {
        current = current.as_table()?.get(part)?;
    }
    Some(current)
}

/// Sets the value at a dotted key, creating intermediate tables.
pub(super) fn set(table: &mut toml::Table, dotted: &str, value: toml::Value) {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(inner) = entry else {
            return;
        };
        current = inner;
    }
    current.insert(last.to_owned(), value);
}

/// Removes the value at a dotted key, if any.
pub(super) fn remove(table: &mut toml::Table, dotted: &str) {
    let (parent, last) = match dotted.rsplit_once('.') {
        Some((parent, last)) => (get_mut(table, parent), last),
        None => (Some(table), dotted),
    };
    if let Some(parent) = parent {
        parent.remove(last);
    }
}

fn get_mut<'t>(table: &'t mut toml::Table, dotted: &str) -> Option<&'t mut toml::Table> {
    dotted
        .split('.')
        .try_fold(table, |current, part| current.get_mut(part)?.as_table_mut())
}
