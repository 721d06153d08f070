//! Layered, typed configuration: built-in defaults < `config/<LOGICORE_ENV>.toml` < `--config FILE` (or
//! `LOGICORE_CONFIG`) < environment variables.
//!
//! The loader takes the environment as an argument so tests never touch the process environment. Every leaf
//! value remembers where it came from, so `logicore config show` can explain the effective configuration, and
//! secrets are masked wherever a value is printed.

mod env;
mod http;
mod mask;
mod settings;
mod tree;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

pub use env::{ENV_ALIASES, EnvAlias};
pub use http::HttpSettings;
pub use mask::{mask_value, masked_url};
pub use settings::*;
pub use tree::Source;

const DEFAULTS: &str = include_str!("defaults.toml");

/// Where to look for configuration. Built from the process by the binary, by hand in tests.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// An explicit file (`--config PATH`); when `None`, `LOGICORE_CONFIG` from `env` is used.
    pub file: Option<PathBuf>,
    /// Directory holding per-environment files such as `production.toml`.
    pub config_dir: PathBuf,
    /// The environment variables to honour.
    pub env: HashMap<String, String>,
}

impl ConfigSources {
    /// Sources of a real process: its environment and `./config`.
    pub fn from_process(file: Option<PathBuf>) -> Self {
        Self {
            file,
            config_dir: PathBuf::from("config"),
            env: std::env::vars().collect(),
        }
    }
}

/// One problem found while loading or validating configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key, e.g. `database.pool_max`.
    pub key: String,
    /// The rule that was broken.
    pub rule: String,
    /// The offending value, masked when the key is secret.
    pub value: String,
    /// Where the value came from.
    pub source: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (value {:?}, from {})",
            self.key, self.rule, self.value, self.source
        )
    }
}

/// Every problem found, reported together so an operator can fix them in one go.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem(s)):",
            self.issues.len()
        )?;
        for issue in &self.issues {
            writeln!(f, "  - {issue}")?;
        }
        Ok(())
    }
}

/// The validated settings together with the merged tree and the source of every value.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub settings: Settings,
    tree: toml::Table,
    sources: BTreeMap<String, Source>,
}

impl LoadedConfig {
    /// The effective configuration as `key = value  # source` lines, secrets masked.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (key, value) in tree::leaves(&self.tree) {
            let source = self.sources.get(&key).cloned().unwrap_or(Source::Default);
            let shown = mask_value(&key, &value);
            out.push_str(&format!("{key} = {shown}  # {source}\n"));
        }
        out
    }

    /// Where the value of a dotted key came from; `None` for a key that does not exist.
    pub fn source_of(&self, key: &str) -> Option<Source> {
        tree::get(&self.tree, key)?;
        Some(self.sources.get(key).cloned().unwrap_or(Source::Default))
    }
}

/// Loads, merges, types and validates the configuration.
pub fn load(sources: &ConfigSources) -> Result<LoadedConfig, ConfigError> {
    let mut issues = Vec::new();
    let mut tree: toml::Table = toml::from_str(DEFAULTS).map_err(|e| ConfigError {
        issues: vec![ConfigIssue {
            key: "<defaults>".into(),
            rule: format!("built-in defaults must parse: {e}"),
            value: String::new(),
            source: Source::Default.to_string(),
        }],
    })?;
    let mut origin = BTreeMap::new();

    let environment = sources
        .env
        .get("LOGICORE_ENV")
        .cloned()
        .unwrap_or_else(|| "development".to_owned());
    let env_file = sources.config_dir.join(format!("{environment}.toml"));
    if env_file.is_file() {
        merge_file(&mut tree, &mut origin, &env_file, &mut issues);
    }
    let explicit = sources
        .file
        .clone()
        .or_else(|| sources.env.get("LOGICORE_CONFIG").map(PathBuf::from));
    if let Some(path) = explicit {
        if path.is_file() {
            merge_file(&mut tree, &mut origin, &path, &mut issues);
        } else {
            issues.push(ConfigIssue {
                key: "--config".into(),
                rule: "the configuration file must exist".into(),
                value: path.display().to_string(),
                source: "command line or LOGICORE_CONFIG".into(),
            });
        }
    }
    if sources.env.contains_key("LOGICORE_ENV") {
        tree.insert("environment".into(), toml::Value::String(environment));
        origin.insert("environment".into(), Source::Env("LOGICORE_ENV".into()));
    }
    env::apply(&mut tree, &mut origin, &sources.env, &mut issues);

    if !issues.is_empty() {
        return Err(ConfigError { issues });
    }
    let settings: Settings =
        match serde_path_to_error::deserialize(toml::Value::Table(tree.clone())) {
            Ok(settings) => settings,
            Err(err) => {
                let key = err.path().to_string();
                let value = tree::get(&tree, &key)
                    .map(|v| mask_value(&key, v))
                    .unwrap_or_default();
                let source = origin.get(&key).cloned().unwrap_or(Source::Default);
                return Err(ConfigError {
                    issues: vec![ConfigIssue {
                        key,
                        rule: err.into_inner().to_string(),
                        value,
                        source: source.to_string(),
                    }],
                });
            }
        };
    let loaded = LoadedConfig {
        settings,
        tree,
        sources: origin,
    };
    let issues = loaded.settings.validate();
    if issues.is_empty() {
        Ok(loaded)
    } else {
        Err(ConfigError {
            issues: issues
                .into_iter()
                .map(|(key, rule)| {
                    let value = tree::get(&loaded.tree, &key)
                        .map(|v| mask_value(&key, v))
                        .unwrap_or_default();
                    let source = loaded.sources.get(&key).cloned().unwrap_or(Source::Default);
                    ConfigIssue {
                        key,
                        rule,
                        value,
                        source: source.to_string(),
                    }
                })
                .collect(),
        })
    }
}

fn merge_file(
    tree: &mut toml::Table,
    origin: &mut BTreeMap<String, Source>,
    path: &Path,
    issues: &mut Vec<ConfigIssue>,
) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            issues.push(file_issue(path, format!("cannot read: {e}")));
            return;
        }
    };
    match toml::from_str::<toml::Table>(&text) {
        Ok(layer) => tree::merge(tree, layer, "", &Source::File(path.to_owned()), origin),
        Err(e) => issues.push(file_issue(path, format!("not valid TOML: {}", e.message()))),
    }
}

fn file_issue(path: &Path, rule: String) -> ConfigIssue {
    ConfigIssue {
        key: "<file>".into(),
        rule,
        value: path.display().to_string(),
        source: Source::File(path.to_owned()).to_string(),
    }
}

#[cfg(test)]
mod tests;
