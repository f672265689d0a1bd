//! `oktasync status` and `oktasync history`: what the daemons did, read from the store (so
//! they work from any host that reaches it, daemon running or not), as text for people or
//! JSON for machines.

use serde_json::{Value, json};

use crate::cli::{CommandError, OutputFormat, open_store};
use crate::config::Settings;
use crate::store::history::{CycleRecord, FailingObject, JournalRecord, format_millis};
use crate::store::now_millis;

/// Cycles shown by `status`.
const STATUS_CYCLES: i64 = 10;
/// Failing objects shown by `status`.
const STATUS_FAILING: i64 = 50;

fn duration_ms(c: &CycleRecord) -> Option<i64> {
    c.finished_at.map(|f| f - c.started_at)
}

fn cycle_json(c: &CycleRecord) -> Value {
    json!({
        "id": c.id,
        "workspace": c.workspace_id,
        "run": c.run_id,
        "trigger": c.triggered_by,
        "instance": c.instance,
        "full": c.full_sweep,
        "dry_run": c.dry_run,
        "started_at": format_millis(c.started_at),
        "finished_at": c.finished_at.map(format_millis),
        "duration_ms": duration_ms(c),
        "outcome": c.outcome.as_deref().unwrap_or("running"),
        "summary": c.summary,
    })
}

fn failing_json(f: &FailingObject) -> Value {
    json!({
        "workspace": f.workspace_id,
        "okta_id": f.okta_id,
        "op": f.op,
        "source": f.source,
        "error": f.error,
        "failed_at": f.failed_at.map(format_millis),
        "failures": f.failures,
    })
}

fn journal_json(j: &JournalRecord) -> Value {
    json!({
        "id": j.id,
        "cycle": j.cycle_id,
        "source": j.source,
        "workspace": j.workspace_id,
        "op": j.op,
        "okta_id": j.okta_id,
        "status": j.status,
        "error": j.error,
        "created_at": format_millis(j.created_at),
        "finished_at": j.finished_at.map(format_millis),
    })
}

/// A titled list for the text output, "none" when empty.
fn section(out: &mut String, title: &str, lines: impl Iterator<Item = String>) {
    out.push_str(&format!("\n{title}:\n"));
    let mut empty = true;
    for line in lines {
        empty = false;
        out.push_str(&format!("  {line}\n"));
    }
    if empty {
        out.push_str("  none\n");
    }
}

pub async fn status(settings: &Settings, format: OutputFormat) -> anyhow::Result<u8> {
    let store = open_store(settings).await?;
    let leader = store.leader_holder().await?;
    let running = store.cycle_holder().await?;
    let cycles = store.recent_cycles(STATUS_CYCLES).await?;
    let held: Vec<_> = store
        .held_plans()
        .await?
        .into_iter()
        .filter(|h| !h.consumed)
        .collect();
    let failing = store.failing_objects(STATUS_FAILING).await?;
    store.close().await;
    match format {
        OutputFormat::Json => {
            let out = json!({
                "backend": store.backend(),
                "leader": leader.as_ref().map(|l| json!({"instance": l.instance, "detail": l.detail})),
                "cycle_running_on": running.as_ref().map(|r| r.instance.as_str()),
                "cycles": cycles.iter().map(cycle_json).collect::<Vec<_>>(),
                "held_plans": held.iter().map(|h| json!({
                    "id": h.id,
                    "workspace": h.workspace_id,
                    "deactivations": h.deactivations,
                    "approved": h.approved,
                })).collect::<Vec<_>>(),
                "failing": failing.iter().map(failing_json).collect::<Vec<_>>(),
            });
            println!("{out}");
        }
        OutputFormat::Text => {
            let mut out = String::new();
            out.push_str(&format!("store: {}\n", store.backend()));
            match &leader {
                Some(l) => out.push_str(&format!("leader: {} ({})\n", l.instance, l.detail)),
                None => out.push_str("leader: none (no daemon holds the leader lock)\n"),
            }
            if let Some(r) = &running {
                out.push_str(&format!("cycle running now on: {}\n", r.instance));
            }
            let cycle_lines = cycles.iter().map(|c| {
                format!(
                    "#{:<5} {:<12} {}  {:>8}  {:<9} {}{}  [{} {}{} on {}]",
                    c.id,
                    c.workspace_id,
                    format_millis(c.started_at),
                    duration_ms(c)
                        .map(|ms| format!("{:.1}s", ms as f64 / 1000.0))
                        .unwrap_or_else(|| "-".into()),
                    c.outcome.as_deref().unwrap_or("running"),
                    c.summary.as_deref().unwrap_or(""),
                    if c.dry_run { " (dry run)" } else { "" },
                    c.triggered_by.as_deref().unwrap_or("-"),
                    if c.full_sweep { "full" } else { "incremental" },
                    c.run_id
                        .as_deref()
                        .map(|r| format!(" run {r}"))
                        .unwrap_or_default(),
                    c.instance.as_deref().unwrap_or("?"),
                )
            });
            section(&mut out, "last cycles (newest first)", cycle_lines);
            let held_lines = held.iter().map(|h| {
                format!(
                    "{}  {}  {} deactivation(s)  {}",
                    h.id,
                    h.workspace_id,
                    h.deactivations,
                    if h.approved {
                        "approved: the next cycle applies it".to_owned()
                    } else {
                        format!("approve with: oktasync plan --approve {}", h.id)
                    }
                )
            });
            section(&mut out, "held plans", held_lines);
            let failing_lines = failing.iter().map(|f| {
                format!(
                    "{}  {} {}  failed {} time(s), last {}: {}",
                    f.workspace_id,
                    f.op,
                    f.okta_id,
                    f.failures,
                    f.failed_at.map(format_millis).unwrap_or_default(),
                    f.error.as_deref().unwrap_or(""),
                )
            });
            section(&mut out, "failing objects", failing_lines);
            print!("{out}");
        }
    }
    Ok(0)
}

/// `--since`: RFC 3339, or a duration ago. Unix milliseconds.
pub fn parse_since(value: &str, now_ms: i64) -> Result<i64, String> {
    if let Ok(t) =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
    {
        return i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| format!("--since {value:?} is out of range"));
    }
    match humantime::parse_duration(value) {
        Ok(ago) => Ok(now_ms
            - i64::try_from(ago.as_millis())
                .unwrap_or(i64::MAX)
                .min(now_ms)),
        Err(_) => Err(format!(
            "--since {value:?} is neither an RFC 3339 time (2026-01-31T12:00:00Z) nor a duration (2h, 30m)"
        )),
    }
}

pub async fn history(
    settings: &Settings,
    since: Option<&str>,
    limit: u32,
    format: OutputFormat,
) -> Result<u8, CommandError> {
    let since = match since {
        Some(value) => parse_since(value, now_millis()).map_err(CommandError::Usage)?,
        None => 0,
    };
    let store = open_store(settings).await?;
    let entries = store
        .journal_since(since, i64::from(limit))
        .await
        .map_err(anyhow::Error::from)?;
    store.close().await;
    match format {
        OutputFormat::Json => {
            let out = json!({ "entries": entries.iter().map(journal_json).collect::<Vec<_>>() });
            println!("{out}");
        }
        OutputFormat::Text => {
            let mut out = String::new();
            if entries.len() == limit as usize {
                out.push_str(&format!(
                    "(the newest {limit} entries; see more with --limit or narrow with --since)\n"
                ));
            }
            for j in &entries {
                out.push_str(&format!(
                    "{}  {:<12} {:<5} {:<10} {:<16} {:<22} {}{}\n",
                    format_millis(j.created_at),
                    j.workspace_id,
                    j.source,
                    j.cycle_id
                        .map(|c| format!("cycle {c}"))
                        .unwrap_or_else(|| "-".into()),
                    j.op,
                    j.okta_id,
                    j.status,
                    j.error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default(),
                ));
            }
            print!("{out}");
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_or_a_duration_ago() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_since("2h", now), Ok(now - 7_200_000));
        assert_eq!(
            parse_since("2023-11-14T22:13:20Z", now),
            Ok(1_700_000_000_000)
        );
        assert!(parse_since("yesterday", now).is_err());
    }
}
