//! Analytics generations: database `<base>_g<N>` per generation, and a
//! `generations` table in database `<base>` whose newest row per generation
//! is its state. A switch is one inserted block of rows, which ClickHouse
//! writes atomically.

use chrono::{DateTime, Utc};
use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};

use super::Generations;
use crate::analytics::{self, ClickHouseSettings, schema};

#[derive(Debug, Row, Serialize, Deserialize)]
struct StateRow {
    generation: u32,
    state: String,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    at: DateTime<Utc>,
    /// Orders rows written in the same second.
    seq: u64,
}

#[derive(Clone)]
pub struct ClickHouseGenerations {
    client: Client,
    base: String,
}

impl std::fmt::Debug for ClickHouseGenerations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseGenerations")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl ClickHouseGenerations {
    /// Creates the base database and its register if missing.
    pub async fn open(settings: &ClickHouseSettings) -> Result<Self, clickhouse::error::Error> {
        let client = settings.client();
        let base = settings.database.clone();
        client
            .query(&format!("CREATE DATABASE IF NOT EXISTS {base}"))
            .execute()
            .await?;
        client
            .query(&format!(
                "CREATE TABLE IF NOT EXISTS {base}.generations (
                     generation UInt32, state String, at DateTime('UTC'), seq UInt64
                 ) ENGINE = MergeTree() ORDER BY (generation, seq)"
            ))
            .execute()
            .await?;
        Ok(Self { client, base })
    }

    /// The database holding `generation`.
    pub fn database(base: &str, generation: u32) -> String {
        format!("{base}_g{generation}")
    }

    /// Each generation's current state, by generation.
    async fn states(&self) -> Result<Vec<(u32, String)>, clickhouse::error::Error> {
        #[derive(Debug, Row, Deserialize)]
        struct Current {
            generation: u32,
            state: String,
        }
        let rows: Vec<Current> = self
            .client
            .query(&format!(
                "SELECT generation, argMax(state, seq) AS state FROM {}.generations
                 GROUP BY generation ORDER BY generation",
                self.base
            ))
            .fetch_all()
            .await?;
        Ok(rows
            .into_iter()
            .filter(|r| r.state != "discarded")
            .map(|r| (r.generation, r.state))
            .collect())
    }

    async fn in_state(&self, state: &str) -> Result<Vec<u32>, clickhouse::error::Error> {
        Ok(self
            .states()
            .await?
            .into_iter()
            .filter(|(_, s)| s == state)
            .map(|(g, _)| g)
            .collect())
    }

    /// Every table's columns and types in `database`, in a stable order.
    async fn columns(
        &self,
        database: &str,
    ) -> Result<Vec<(String, String, String)>, clickhouse::error::Error> {
        #[derive(Debug, Row, Deserialize)]
        struct Column {
            table: String,
            name: String,
            #[serde(rename = "type")]
            kind: String,
        }
        let columns: Vec<Column> = self
            .client
            .query(
                "SELECT table, name, type FROM system.columns WHERE database = ?
                 ORDER BY table, name",
            )
            .bind(database)
            .fetch_all()
            .await?;
        Ok(columns
            .into_iter()
            .map(|c| (c.table, c.name, c.kind))
            .collect())
    }

    /// Writes new states in one block: readers see all of them or none.
    async fn record(&self, changes: &[(u32, &str)]) -> Result<(), clickhouse::error::Error> {
        let seq: u64 = self
            .client
            .query(&format!(
                "SELECT max(seq) + 1 FROM {}.generations",
                self.base
            ))
            .fetch_one()
            .await?;
        let mut insert = self
            .client
            .clone()
            .with_database(&self.base)
            .insert::<StateRow>("generations")
            .await?;
        for (i, (generation, state)) in changes.iter().enumerate() {
            insert
                .write(&StateRow {
                    generation: *generation,
                    state: (*state).to_owned(),
                    at: Utc::now(),
                    seq: seq + i as u64,
                })
                .await?;
        }
        insert.end().await
    }
}

impl Generations for ClickHouseGenerations {
    type Error = clickhouse::error::Error;

    fn projection(&self) -> &'static str {
        analytics::NAME
    }

    async fn live(&self) -> Result<Option<u32>, Self::Error> {
        Ok(self.in_state("live").await?.pop())
    }

    async fn building(&self) -> Result<Option<u32>, Self::Error> {
        Ok(self.in_state("building").await?.pop())
    }

    async fn retired(&self) -> Result<Vec<u32>, Self::Error> {
        self.in_state("retired").await
    }

    async fn begin(&self) -> Result<u32, Self::Error> {
        let states = self.states().await?;
        if states.iter().any(|(_, s)| s == "building") {
            return Err(clickhouse::error::Error::Custom(
                "an analytics generation is already building".into(),
            ));
        }
        let top: u32 = self
            .client
            .query(&format!(
                "SELECT max(generation) FROM {}.generations",
                self.base
            ))
            .fetch_one()
            .await?;
        let generation = top + 1;
        let database = Self::database(&self.base, generation);
        self.client
            .query(&format!("DROP DATABASE IF EXISTS {database}"))
            .execute()
            .await?;
        schema::create(&self.client, &database).await?;
        self.record(&[(generation, "building")]).await?;
        Ok(generation)
    }

    async fn switch(&self, generation: u32) -> Result<(), Self::Error> {
        let states = self.states().await?;
        if !states.contains(&(generation, "building".to_owned())) {
            return Err(clickhouse::error::Error::Custom(format!(
                "analytics generation {generation} is not building"
            )));
        }
        let mut changes: Vec<(u32, &str)> = states
            .iter()
            .filter(|(_, s)| s == "live")
            .map(|(g, _)| (*g, "retired"))
            .collect();
        changes.push((generation, "live"));
        self.record(&changes).await
    }

    /// Compares the generation's tables and columns with those this build's
    /// DDL creates, in a scratch database: ClickHouse keeps no record of the
    /// DDL a database was made with, but its catalogue says what it holds.
    async fn schema_current(&self, generation: u32) -> Result<bool, Self::Error> {
        let probe = format!("{}_schema_probe", self.base);
        self.client
            .query(&format!("DROP DATABASE IF EXISTS {probe}"))
            .execute()
            .await?;
        schema::create(&self.client, &probe).await?;
        let expected = self.columns(&probe).await;
        self.client
            .query(&format!("DROP DATABASE IF EXISTS {probe}"))
            .execute()
            .await?;
        let actual = self
            .columns(&Self::database(&self.base, generation))
            .await?;
        Ok(expected? == actual)
    }

    async fn discard(&self, generation: u32) -> Result<(), Self::Error> {
        let states = self.states().await?;
        if states.contains(&(generation, "live".to_owned())) {
            return Ok(());
        }
        self.record(&[(generation, "discarded")]).await?;
        self.client
            .query(&format!(
                "DROP DATABASE IF EXISTS {}",
                Self::database(&self.base, generation)
            ))
            .execute()
            .await
    }

    async fn applied(&self, generation: u32) -> Result<Vec<(String, i32, i64)>, Self::Error> {
        analytics::applied_marks(&self.client, &Self::database(&self.base, generation)).await
    }
}
