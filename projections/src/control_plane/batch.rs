//! A batch of events applied in rounds, set-based where it can be.
//!
//! One by one, each event costs four round trips (savepoint, version check,
//! change, release); here a batch costs a few statements per round:
//!
//! 1. One statement reads (and locks) the versions of every aggregate in the
//!    batch. An event at or below its aggregate's version is a duplicate.
//! 2. Round n holds the n-th new event of every aggregate. Aggregates are
//!    independent (a model row belongs to one aggregate, and references are
//!    checked within one), so the rounds keep each aggregate's order, and
//!    within a round the order does not matter.
//! 3. In each round, the events of a type [`set::applies`] to go in one
//!    statement per type ([`set::apply_all`]); the others go one by one,
//!    each in its savepoint, as [`super::apply`] does. Consecutive updates
//!    of one stream fold into one update first, so a stream renamed ten
//!    times in a batch costs one row change.
//! 4. One statement moves every aggregate's version to its last applied
//!    event. An event refused (and dead-lettered by the caller) does not
//!    move it, as one by one.
//!
//! An aggregate whose new events are not in rising sequence order (a
//! re-sent event behind a later one) is applied one by one with
//! [`super::apply`], which then decides per event exactly as it always has.

use std::collections::HashMap;

use frameworks_events::proto::v1::stream::StreamUpdated;
use frameworks_events::{Event, EventPayload, EventType};
use sqlx::{Acquire, PgConnection};

use super::{Applied, NAME, apply, apply_change, set};
use crate::ApplyError;

/// What became of each event of a batch, in the order given.
pub type BatchOutcomes = Vec<Result<Applied, ApplyError>>;

/// Applies `events` (in log order) to the model `conn` points at.
///
/// # Errors
/// A database error: the caller rolls back to a savepoint taken before the
/// call (some statements may have run) and may apply the batch one by one.
/// [`ApplyError::Database`] never appears among the outcomes.
pub async fn apply_batch(
    conn: &mut PgConnection,
    events: &[&Event],
) -> Result<BatchOutcomes, sqlx::Error> {
    let mut outcomes: Vec<Option<Result<Applied, ApplyError>>> =
        events.iter().map(|_| None).collect();

    // Each aggregate's events, in log order.
    let mut aggregates: HashMap<(&'static str, &str), Vec<usize>> = HashMap::new();
    for (index, event) in events.iter().enumerate() {
        aggregates
            .entry((event.aggregate_type().as_str(), event.aggregate_id.as_str()))
            .or_default()
            .push(index);
    }
    let versions = stored_versions(conn, aggregates.keys()).await?;

    // Rounds of new events, at most one unit per aggregate each.
    let mut rounds: Vec<Vec<Unit>> = Vec::new();
    let mut irregular = Vec::new();
    for (aggregate, indices) in &aggregates {
        let stored = versions.get(aggregate).copied().unwrap_or(0);
        let fresh: Vec<usize> = indices
            .iter()
            .copied()
            .filter(|&index| sequence(events[index]) > stored)
            .collect();
        if !fresh
            .windows(2)
            .all(|pair| sequence(events[pair[0]]) < sequence(events[pair[1]]))
        {
            irregular.extend(indices.iter().copied());
            continue;
        }
        for &index in indices {
            if sequence(events[index]) <= stored {
                outcomes[index] = Some(Ok(Applied::Duplicate));
            }
        }
        for (round, unit) in units(events, &fresh).into_iter().enumerate() {
            if rounds.len() <= round {
                rounds.push(Vec::new());
            }
            rounds[round].push(unit);
        }
    }

    // Irregular aggregates, event by event: `apply` checks each version.
    irregular.sort_unstable();
    for index in irregular {
        outcomes[index] = Some(one_by_one(conn, events[index], true).await?);
    }

    for round in rounds {
        let mut by_type: HashMap<EventType, Vec<Unit>> = HashMap::new();
        for unit in round {
            by_type
                .entry(events[unit.events[0]].event_type())
                .or_default()
                .push(unit);
        }
        for (event_type, units) in by_type {
            if set::applies(event_type) {
                let group: Vec<&Event> = units
                    .iter()
                    .map(|unit| unit.merged.as_ref().unwrap_or(events[unit.events[0]]))
                    .collect();
                let results = set::apply_all(conn, &group).await?;
                for (unit, result) in units.iter().zip(results) {
                    // A merged unit stands or falls as one: each of its
                    // events alone would have found the same row, or not.
                    for &index in &unit.events {
                        outcomes[index] = Some(match &result {
                            Ok(()) => Ok(Applied::Changed),
                            Err(refused) => Err(refused.for_event(events[index])),
                        });
                    }
                }
            } else {
                for unit in units {
                    for index in unit.events {
                        outcomes[index] = Some(one_by_one(conn, events[index], false).await?);
                    }
                }
            }
        }
    }

    // The versions of the aggregates applied in rounds.
    let mut applied: HashMap<(&'static str, &str), i64> = HashMap::new();
    for (index, outcome) in outcomes.iter().enumerate() {
        let event = events[index];
        if matches!(outcome, Some(Ok(Applied::Changed))) {
            let version = applied
                .entry((event.aggregate_type().as_str(), event.aggregate_id.as_str()))
                .or_insert(0);
            *version = (*version).max(sequence(event));
        }
    }
    advance_versions(conn, &applied).await?;

    Ok(outcomes
        .into_iter()
        .map(|outcome| outcome.expect("every event is placed in a round or decided"))
        .collect())
}

/// One aggregate's events applied as one: a run of consecutive updates
/// folds into one update with their combined effect.
struct Unit {
    events: Vec<usize>,
    merged: Option<Event>,
}

/// Groups one aggregate's new events (indices, in order) into units.
fn units(events: &[&Event], fresh: &[usize]) -> Vec<Unit> {
    let mut units: Vec<Unit> = Vec::with_capacity(fresh.len());
    for &index in fresh {
        let event = events[index];
        if let Some(last) = units.last_mut()
            && let (EventPayload::StreamUpdated(update), Some(previous)) = (
                &event.payload,
                last.merged
                    .as_ref()
                    .or_else(|| last.events.last().map(|&i| events[i])),
            )
            && let EventPayload::StreamUpdated(before) = &previous.payload
        {
            let mut merged = event.clone();
            merged.payload = EventPayload::StreamUpdated(merge_updates(before, update));
            last.events.push(index);
            last.merged = Some(merged);
            continue;
        }
        units.push(Unit {
            events: vec![index],
            merged: None,
        });
    }
    units
}

/// The effect of `before` then `after` as one update (see the statement in
/// `set`: `pull_source` cleared, replaced or kept).
fn merge_updates(before: &StreamUpdated, after: &StreamUpdated) -> StreamUpdated {
    // Named field by field, so that a new field does not compile until merged here.
    let StreamUpdated {
        name,
        description,
        record,
        ingest_mode,
        pull_source,
        pull_source_cleared,
    } = after.clone();
    let earlier_source = (!before.pull_source_cleared)
        .then(|| before.pull_source.clone())
        .flatten();
    StreamUpdated {
        name: name.or_else(|| before.name.clone()),
        description: description.or_else(|| before.description.clone()),
        record: record.or(before.record),
        ingest_mode: ingest_mode.or(before.ingest_mode),
        pull_source: if pull_source_cleared {
            None
        } else {
            pull_source.or(earlier_source)
        },
        pull_source_cleared: pull_source_cleared
            || (after.pull_source.is_none() && before.pull_source_cleared),
    }
}

fn sequence(event: &Event) -> i64 {
    i64::try_from(event.sequence).unwrap_or(i64::MAX)
}

/// One event in its own savepoint: with `apply`'s version check when
/// `checked`, or only its change (the batch moves the version).
async fn one_by_one(
    conn: &mut PgConnection,
    event: &Event,
    checked: bool,
) -> Result<Result<Applied, ApplyError>, sqlx::Error> {
    let mut savepoint = conn.begin().await?;
    let result = if checked {
        apply(savepoint.acquire().await?, event).await
    } else {
        apply_change(savepoint.acquire().await?, event)
            .await
            .map(|()| Applied::Changed)
    };
    match result {
        Ok(applied) => {
            savepoint.commit().await?;
            Ok(Ok(applied))
        }
        Err(ApplyError::Database(error)) => Err(error),
        Err(refused) => {
            savepoint.rollback().await?;
            Ok(Err(refused))
        }
    }
}

async fn stored_versions<'a>(
    conn: &mut PgConnection,
    aggregates: impl Iterator<Item = &'a (&'static str, &'a str)>,
) -> Result<HashMap<(&'static str, &'a str), i64>, sqlx::Error> {
    let keys: Vec<(&'static str, &'a str)> = aggregates.copied().collect();
    let (types, ids): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
    // Locked, as the one-by-one check locks each row it advances.
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT pv.aggregate_type, pv.aggregate_id, pv.version
         FROM projection_versions pv
         JOIN UNNEST($2::text[], $3::text[]) AS v(aggregate_type, aggregate_id)
           ON pv.aggregate_type = v.aggregate_type AND pv.aggregate_id = v.aggregate_id
         WHERE pv.projection = $1
         FOR UPDATE OF pv",
    )
    .bind(NAME)
    .bind(&types)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let index: HashMap<(&str, &str), usize> = keys
        .iter()
        .enumerate()
        .map(|(position, key)| (*key, position))
        .collect();
    Ok(rows
        .iter()
        .filter_map(|(aggregate_type, aggregate_id, version)| {
            let position = index.get(&(aggregate_type.as_str(), aggregate_id.as_str()))?;
            Some((keys[*position], *version))
        })
        .collect())
}

async fn advance_versions(
    conn: &mut PgConnection,
    applied: &HashMap<(&'static str, &str), i64>,
) -> Result<(), sqlx::Error> {
    if applied.is_empty() {
        return Ok(());
    }
    let mut types = Vec::with_capacity(applied.len());
    let mut ids = Vec::with_capacity(applied.len());
    let mut versions = Vec::with_capacity(applied.len());
    for ((aggregate_type, aggregate_id), version) in applied {
        types.push(*aggregate_type);
        ids.push(*aggregate_id);
        versions.push(*version);
    }
    sqlx::query(
        "INSERT INTO projection_versions (projection, aggregate_type, aggregate_id, version)
         SELECT $1, v.aggregate_type, v.aggregate_id, v.version
         FROM UNNEST($2::text[], $3::text[], $4::bigint[]) AS v(aggregate_type, aggregate_id, version)
         ON CONFLICT (projection, aggregate_type, aggregate_id) DO UPDATE SET version = EXCLUDED.version
           WHERE projection_versions.version < EXCLUDED.version",
    )
    .bind(NAME)
    .bind(&types)
    .bind(&ids)
    .bind(&versions)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
