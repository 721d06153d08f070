//! Layered, typed configuration: built-in defaults < `config/<LOGICORE_ENV>.toml` < `--config FILE` (or
//! `LOGICORE_CONFIG`) < environment variables.
//!
//! The loader takes the environment as an argument so tests never touch the process environment. Every leaf
//! value remembers where it came from, so `logicore config show` can explain the effective configuration, and
//! secrets are masked wherever a value is printed.

mod derive;
mod env;
mod gateway;
mod http;
mod mask;
mod reload;
mod rules;
mod section;
mod settings;
mod tree;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

pub use env::{ENV_ALIASES, EnvAlias};
pub use gateway::*;
pub use http::HttpSettings;
pub use mask::{mask_value, masked_url};
pub(crate) use reload::register_metrics as register_reload_metrics;
pub use reload::{Change, ReloadOutcome, Reloader, diff, is_reloadable};
pub use section::{Section, SectionSpec, check_sweeper};
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

/// Loads, merges, types and validates the configuration: the platform's sections and the services'
/// `sections`. Every problem is reported in one go: a key that cannot be typed is reported and its default
/// used in its place, so the rest can still be checked.
pub fn load(
    sources: &ConfigSources,
    sections: &[SectionSpec],
) -> Result<LoadedConfig, ConfigError> {
    let defaults = defaults(sections).map_err(|issue| ConfigError {
        issues: vec![issue],
    })?;
    let mut issues = Vec::new();
    let mut tree = defaults.clone();
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
    let aliases = ENV_ALIASES
        .iter()
        .chain(sections.iter().flat_map(|section| section.env_aliases));
    env::apply(&mut tree, &mut origin, &sources.env, aliases, &mut issues);
    derive::apply(&mut tree, &mut origin, sections);
    finish(tree, origin, &defaults, sections, issues)
}

/// The merged tree made into checked, typed settings: unknown sections, the rules by key name, every
/// section typed and validated, and the rules that tie sections together. `issues` holds what merging
/// found already.
fn finish(
    mut tree: toml::Table,
    origin: BTreeMap<String, Source>,
    defaults: &toml::Table,
    sections: &[SectionSpec],
    mut issues: Vec<ConfigIssue>,
) -> Result<LoadedConfig, ConfigError> {
    let defaults = defaults.clone();
    unknown_sections(&mut tree, &defaults, &origin, &mut issues);
    for (key, rule) in rules::numbers(&tree) {
        issues.push(issue_at(&tree, &origin, key.clone(), rule));
        restore_default(&mut tree, &defaults, &key);
    }
    let mut broken = Vec::new();
    for section in sections {
        match typed_section(section, &mut tree, &defaults, &origin, &mut issues) {
            Some(rules) => broken.extend(rules),
            None => return Err(ConfigError { issues }),
        }
    }
    let Some(mut settings) = typed_settings(&mut tree, &defaults, &origin, sections, &mut issues)
    else {
        return Err(ConfigError { issues });
    };
    settings.sections = sections
        .iter()
        .filter_map(|section| match tree.get(section.name) {
            Some(toml::Value::Table(table)) => Some((section.name.to_owned(), table.clone())),
            _ => None,
        })
        .collect();
    let later = settings
        .validate()
        .into_iter()
        .chain(broken)
        .chain(rules::listener_clashes(&tree));
    for (key, rule) in later {
        // A key already reported was replaced by its default; what that default breaks is no news.
        if !issues.iter().any(|issue| issue.key == key) {
            issues.push(issue_at(&tree, &origin, key, rule));
        }
    }
    if issues.is_empty() {
        Ok(LoadedConfig {
            settings,
            tree,
            sources: origin,
        })
    } else {
        Err(ConfigError { issues })
    }
}

/// The built-in defaults: the platform's and each registered section's, with the gateway's upstream for
/// every section that has a port (so `LOGICORE_GATEWAY__UPSTREAMS__<NAME>` is a known key).
fn defaults(sections: &[SectionSpec]) -> Result<toml::Table, ConfigIssue> {
    let mut defaults = section::defaults_of("platform", DEFAULTS)?;
    for section in sections {
        if defaults.contains_key(section.name) {
            return Err(ConfigIssue {
                key: section.name.to_owned(),
                rule: "a service's section must not reuse the name of another section".into(),
                value: String::new(),
                source: Source::Default.to_string(),
            });
        }
        let table = section::defaults_of(section.name, section.defaults)?;
        defaults.insert(section.name.to_owned(), toml::Value::Table(table));
    }
    derive::apply(&mut defaults, &mut BTreeMap::new(), sections);
    Ok(defaults)
}

/// Reports and drops each top-level table no default names: a service this binary does not run, or a typo.
fn unknown_sections(
    tree: &mut toml::Table,
    defaults: &toml::Table,
    origin: &BTreeMap<String, Source>,
    issues: &mut Vec<ConfigIssue>,
) {
    let unknown: Vec<String> = tree
        .keys()
        .filter(|key| !defaults.contains_key(*key))
        .cloned()
        .collect();
    for key in unknown {
        let within = format!("{key}.");
        let source = origin
            .iter()
            .find(|(leaf, _)| **leaf == key || leaf.starts_with(&within))
            .map(|(_, source)| source.to_string())
            .unwrap_or_default();
        let known: Vec<&str> = defaults
            .iter()
            .filter(|(_, value)| value.is_table())
            .map(|(name, _)| name.as_str())
            .collect();
        issues.push(ConfigIssue {
            rule: format!("unknown section; the sections are {}", known.join(", ")),
            value: String::new(),
            source,
            key: key.clone(),
        });
        tree.remove(&key);
    }
}

/// Types one registered section, repairing refused values as [`typed_settings`] does; the rules it
/// breaks, or `None` when a refusal cannot be repaired.
fn typed_section(
    section: &SectionSpec,
    tree: &mut toml::Table,
    defaults: &toml::Table,
    origin: &BTreeMap<String, Source>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<Vec<(String, String)>> {
    loop {
        let value = tree
            .get(section.name)
            .cloned()
            .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
        match (section.check)(value) {
            Ok(broken) => return Some(broken),
            Err((key, rule)) => {
                issues.push(issue_at(tree, origin, key.clone(), rule));
                if !restore_default(tree, defaults, &key) {
                    return None;
                }
            }
        }
    }
}

/// Types the tree; each value serde refuses (a wrong type, an unknown key in a file, a number too large
/// for its field) becomes an issue and is replaced by its default (or dropped), and typing starts over.
/// `None` when a refusal cannot be repaired that way.
fn typed_settings(
    tree: &mut toml::Table,
    defaults: &toml::Table,
    origin: &BTreeMap<String, Source>,
    sections: &[SectionSpec],
    issues: &mut Vec<ConfigIssue>,
) -> Option<Settings> {
    loop {
        let mut platform = tree.clone();
        for section in sections {
            platform.remove(section.name);
        }
        match serde_path_to_error::deserialize(toml::Value::Table(platform)) {
            Ok(settings) => return Some(settings),
            Err(err) => {
                let key = err.path().to_string();
                let rule = plain_rule(&err.into_inner().to_string());
                issues.push(issue_at(tree, origin, key.clone(), rule));
                if !restore_default(tree, defaults, &key) {
                    return None;
                }
            }
        }
    }
}

/// serde's message in the words of the configuration: its first line (the rest repeats the key), with Rust's
/// type names replaced by what they mean to an operator.
pub(super) fn plain_rule(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message);
    let expected_number = ["u8", "u16", "u32", "u64", "usize", "i64"]
        .iter()
        .any(|ty| first.ends_with(&format!("expected {ty}")));
    match first.strip_prefix("invalid type: ") {
        Some(rest) if expected_number => {
            let found = rest.split([',', ' ']).next().unwrap_or(rest);
            format!("must be a whole number, not a {found}")
        }
        _ if expected_number => "must be a whole number in range".to_owned(),
        _ => first.to_owned(),
    }
}

/// Puts the default back at `key` (a whole list for a key inside one), or drops a key that has none;
/// `false` when that changes nothing, so the same refusal would come back.
fn restore_default(tree: &mut toml::Table, defaults: &toml::Table, key: &str) -> bool {
    let key = key.split('[').next().unwrap_or(key);
    let current = tree::get(tree, key).cloned();
    match (tree::get(defaults, key), current) {
        (Some(default), Some(current)) if *default == current => false,
        (Some(default), _) => {
            tree::set(tree, key, default.clone());
            true
        }
        (None, Some(_)) => {
            tree::remove(tree, key);
            true
        }
        (None, None) => false,
    }
}

fn issue_at(
    tree: &toml::Table,
    origin: &BTreeMap<String, Source>,
    key: String,
    rule: String,
) -> ConfigIssue {
    let value = tree::get(tree, &key)
        .map(|v| mask_value(&key, v))
        .unwrap_or_default();
    let source = origin.get(&key).cloned().unwrap_or(Source::Default);
    ConfigIssue {
        key,
        rule,
        value,
        source: source.to_string(),
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
