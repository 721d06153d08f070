//! A service's own section of the settings (`[users]`, `[inventory]`, …). The service's crate declares it,
//! with its defaults and rules, and the binary's service list hands it to [`super::load`], so a new service
//! adds no file here. The loader treats a registered section like its own: files and `LOGICORE_<NAME>__<KEY>`
//! variables set its keys, `config show` lists them with their sources, and every rule broken is reported
//! with the others.

use serde::de::DeserializeOwned;

use super::{ConfigError, ConfigIssue, EnvAlias, Source, mask_value, tree};

/// A service's section: `[<NAME>]` in files.
pub trait Section: DeserializeOwned {
    /// The section's name, which is also the service's.
    const NAME: &'static str;
    /// The section's keys and their defaults, as TOML: the body of `[<NAME>]`. A `port` key makes the
    /// gateway's `gateway.upstreams.<NAME>` follow it.
    const DEFAULTS: &'static str;
    /// Variables beyond `LOGICORE_<NAME>__<KEY>` that set one of the section's keys.
    const ENV_ALIASES: &'static [EnvAlias] = &[];

    /// Every rule of the section broken, reported through `check(ok, key within the section, rule)`.
    fn validate(&self, check: &mut dyn FnMut(bool, &str, &str));
}

/// The rules of a section's sweeper (a job that works through due rows in batches): `sweeper_interval_ms`
/// at least 10, `sweeper_batch` between 1 and 10000, for [`Section::validate`].
pub fn check_sweeper(check: &mut dyn FnMut(bool, &str, &str), interval_ms: u64, batch: u32) {
    check(
        interval_ms >= 10,
        "sweeper_interval_ms",
        "must be at least 10",
    );
    check(
        (1..=10_000).contains(&batch),
        "sweeper_batch",
        "must be between 1 and 10000",
    );
}

/// A dotted key and the rule its value breaks.
pub(super) type Broken = (String, String);

/// The rules a typed section breaks; or serde's refusal, at its dotted key.
pub(super) type Checked = Result<Vec<Broken>, Broken>;

/// A [`Section`] with its type erased, as the loader holds several.
#[derive(Debug, Clone, Copy)]
pub struct SectionSpec {
    pub name: &'static str,
    pub(super) defaults: &'static str,
    pub(super) env_aliases: &'static [EnvAlias],
    pub(super) check: fn(toml::Value) -> Checked,
}

impl SectionSpec {
    pub const fn of<S: Section>() -> Self {
        Self {
            name: S::NAME,
            defaults: S::DEFAULTS,
            env_aliases: S::ENV_ALIASES,
            check: check::<S>,
        }
    }
}

/// Types `value` as `S` and runs its rules, with keys prefixed by the section's name.
fn check<S: Section>(value: toml::Value) -> Checked {
    typed::<S>(value).map(|(_, broken)| broken)
}

fn typed<S: Section>(value: toml::Value) -> Result<(S, Vec<Broken>), Broken> {
    let section: S = serde_path_to_error::deserialize(value).map_err(|error| {
        let key = format!("{}.{}", S::NAME, error.path());
        (key, super::plain_rule(&error.into_inner().to_string()))
    })?;
    let mut broken = Vec::new();
    section.validate(&mut |ok, key, rule| {
        if !ok {
            broken.push((format!("{}.{key}", S::NAME), rule.to_owned()));
        }
    });
    Ok((section, broken))
}

/// The section `S` of `sections` (the loader's, or its defaults when it was not registered), typed and
/// checked against its rules.
pub(super) fn section<S: Section>(
    sections: &std::collections::BTreeMap<String, toml::Table>,
) -> Result<S, ConfigError> {
    let table = match sections.get(S::NAME) {
        Some(table) => table.clone(),
        None => defaults_of(S::NAME, S::DEFAULTS).map_err(|issue| ConfigError {
            issues: vec![issue],
        })?,
    };
    let value = toml::Value::Table(table);
    let (section, broken) = typed::<S>(value.clone()).map_err(|(key, rule)| ConfigError {
        issues: vec![issue(&value, S::NAME, key, rule)],
    })?;
    if broken.is_empty() {
        Ok(section)
    } else {
        Err(ConfigError {
            issues: broken
                .into_iter()
                .map(|(key, rule)| issue(&value, S::NAME, key, rule))
                .collect(),
        })
    }
}

/// A section's built-in defaults, parsed.
pub(super) fn defaults_of(name: &str, defaults: &str) -> Result<toml::Table, ConfigIssue> {
    toml::from_str(defaults).map_err(|e| ConfigIssue {
        key: format!("<defaults of [{name}]>"),
        rule: format!("built-in defaults must parse: {}", e.message()),
        value: String::new(),
        source: Source::Default.to_string(),
    })
}

fn issue(section: &toml::Value, name: &str, key: String, rule: String) -> ConfigIssue {
    let within = key.strip_prefix(name).and_then(|k| k.strip_prefix('.'));
    let value = match (section, within) {
        (toml::Value::Table(table), Some(within)) => tree::get(table, within)
            .map(|v| mask_value(&key, v))
            .unwrap_or_default(),
        _ => String::new(),
    };
    ConfigIssue {
        key,
        rule,
        value,
        source: "the settings given to the service".to_owned(),
    }
}
