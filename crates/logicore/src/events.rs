//! `logicore events dead-letters groups|list|replay`: which consumer groups hold dead letters, what a group
//! gave up on, and sending it back.
//!
//! Works on whichever transport the configuration selects (RabbitMQ's dead-letter queue of the group, or the
//! PostgreSQL transport's delivery table), so operators use one command in every deployment.

use anyhow::Context;
use platform::config::Settings;
use platform::db::Db;
use serde_json::json;

use crate::cli::DeadLettersCommand;

pub async fn dead_letters(settings: &Settings, command: DeadLettersCommand) -> anyhow::Result<()> {
    let mut registry = platform::metrics::registry("logicore_cli");
    // The PostgreSQL transport keeps its tables in the exchange's schema; the connection needs no other.
    let bus_schema = settings.messaging.exchange.replace('.', "_");
    let db = Db::connect(&settings.database, &bus_schema, &mut registry)
        .await
        .context("cannot connect to the database")?;
    let metrics = messaging::Metrics::register(&mut registry);
    let transport = messaging::connect(&settings.messaging, &db, &metrics)
        .await
        .context("cannot reach the event transport")?;
    let outcome = run(transport.as_ref(), command).await;
    transport.close().await;
    db.close().await;
    outcome
}

/// The services' own consumer groups: the ones a RabbitMQ transport, which cannot list queues, probes for.
const SERVICE_GROUPS: &[&str] = &[
    users::PROFILE_CACHE_GROUP,
    inventory::SAGA_GROUP,
    orders::SAGA_GROUP,
];

async fn run(
    transport: &dyn messaging::Transport,
    command: DeadLettersCommand,
) -> anyhow::Result<()> {
    let groups = messaging::dead_letter_groups(transport, SERVICE_GROUPS)
        .await
        .context("cannot list the consumer groups")?;
    // A mistyped group would otherwise read as "0 dead letters", which looks like good news.
    let known = |group: &str| {
        let names: Vec<&str> = groups.iter().map(|g| g.group.as_str()).collect();
        anyhow::ensure!(
            names.contains(&group),
            "unknown consumer group {group:?}; known groups: {}",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        );
        Ok(())
    };
    match command {
        DeadLettersCommand::Groups => {
            for group in &groups {
                println!("{}\t{}", group.group, group.dead_letters);
            }
            Ok(())
        }
        DeadLettersCommand::List { group, limit } => {
            known(&group)?;
            let letters = messaging::list_dead_letters(transport, &group, limit as usize)
                .await
                .with_context(|| format!("cannot list the dead letters of {group}"))?;
            for letter in &letters {
                println!(
                    "{}",
                    json!({
                        "event_id": letter.event_id,
                        "type": letter.event_type,
                        "group": letter.group,
                        "attempts": letter.attempts,
                        "last_error": letter.last_error,
                        "dead_lettered_at": letter.dead_lettered_at,
                        "envelope": letter.envelope,
                    })
                );
            }
            eprintln!("{} dead letter(s) in {group}", letters.len());
            Ok(())
        }
        DeadLettersCommand::Replay {
            group,
            id: Some(id),
            ..
        } => {
            known(&group)?;
            let found = messaging::replay_dead_letter(transport, &group, id)
                .await
                .with_context(|| format!("cannot replay {id} of {group}"))?;
            anyhow::ensure!(found, "{group} has no dead letter {id}");
            eprintln!("replayed {id} to {group}");
            Ok(())
        }
        DeadLettersCommand::Replay {
            group, id: None, ..
        } => {
            known(&group)?;
            let replayed = messaging::replay_dead_letters(transport, &group)
                .await
                .with_context(|| format!("cannot replay the dead letters of {group}"))?;
            eprintln!("replayed {replayed} dead letter(s) to {group}");
            Ok(())
        }
    }
}
