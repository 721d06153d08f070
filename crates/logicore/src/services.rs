//! The services this binary runs. A service is one line in [`SERVICES`]: its section of the settings is
//! loaded and checked with the rest, `logicore <name>` runs it alone, `logicore all` runs it beside the
//! others and the gateway, `logicore migrate` migrates it, and the gateway merges its OpenAPI document. Only commands of its own (`users create-admin`, `inventory
//! import`) need more, in `cli.rs`.

use platform::config::SectionSpec;
use skeleton::Entry;

pub const SERVICES: &[Entry] = &[
    Entry::of::<users::Users>(),
    Entry::of::<inventory::Inventory>(),
    Entry::of::<orders::Orders>(),
];

/// The service of this name.
pub fn named(name: &str) -> Option<&'static Entry> {
    SERVICES.iter().find(|entry| entry.name == name)
}

/// The services' sections of the settings, for the loader.
pub fn sections() -> Vec<SectionSpec> {
    SERVICES.iter().map(|entry| entry.section).collect()
}

/// The OpenAPI documents of every service, which the gateway merges.
pub fn specs() -> Vec<utoipa::openapi::OpenApi> {
    SERVICES.iter().map(|entry| (entry.openapi)()).collect()
}

/// The services' names, for help and error messages.
pub fn names() -> String {
    SERVICES
        .iter()
        .map(|entry| entry.name)
        .collect::<Vec<_>>()
        .join(", ")
}
