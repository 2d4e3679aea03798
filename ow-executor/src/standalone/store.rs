//! Durable storage of actions and activations in an embedded SQLite database. Every write is
//! committed before the request that caused it is answered, so killing the process between
//! two requests loses nothing.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use std::path::Path;
use std::sync::Mutex;

/// A store failure: the database cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[error("the standalone store failed: {0}")]
pub struct StoreError(#[from] rusqlite::Error);

/// Filters of an activation listing.
#[derive(Debug, Clone, Default)]
pub struct ActivationQuery {
    /// Only activations of this action.
    pub name: Option<String>,
    /// Only activations that started at or after this epoch millisecond.
    pub since: Option<u64>,
    /// Only activations that started at or before this epoch millisecond.
    pub upto: Option<u64>,
    /// How many of the newest to skip.
    pub skip: u64,
    /// How many to return.
    pub limit: u64,
}

/// The database.
#[derive(Debug)]
pub struct Store {
    connection: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) `ow-wasm.sqlite` in `data_dir`.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the data directory {}: {e}",
                data_dir.display()
            )
        })?;
        let path = data_dir.join("ow-wasm.sqlite");
        let connection = Connection::open(&path)
            .map_err(|e| anyhow::anyhow!("cannot open the database {}: {e}", path.display()))?;
        // WAL keeps readers off the writer's back; NORMAL sync survives a killed process.
        connection.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS actions (
                 namespace TEXT NOT NULL,
                 name TEXT NOT NULL,
                 record TEXT NOT NULL,
                 PRIMARY KEY (namespace, name)
             );
             CREATE TABLE IF NOT EXISTS activations (
                 activation_id TEXT PRIMARY KEY,
                 namespace TEXT NOT NULL,
                 name TEXT NOT NULL,
                 start INTEGER NOT NULL,
                 record TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS activations_by_start
                 ON activations (namespace, start DESC);
             CREATE TABLE IF NOT EXISTS pending_activations (
                 activation_id TEXT PRIMARY KEY,
                 record TEXT NOT NULL
             );",
        )?;
        let store = Self {
            connection: Mutex::new(connection),
        };
        let interrupted = store.record_interrupted()?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "activations accepted before the last stop never finished; recorded as failed"
            );
        }
        Ok(store)
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection.lock().expect("store lock")
    }

    /// The record column of the one row `query` selects by its two keys, if there is one.
    fn one_record(&self, query: &str, keys: [&str; 2]) -> Result<Option<Value>, StoreError> {
        let text: Option<String> = self
            .connection()
            .query_row(query, keys, |row| row.get(0))
            .optional()?;
        Ok(text.map(|text| parse(&text)))
    }

    /// The stored record of an action.
    pub fn action(&self, namespace: &str, name: &str) -> Result<Option<Value>, StoreError> {
        self.one_record(
            "SELECT record FROM actions WHERE namespace = ?1 AND name = ?2",
            [namespace, name],
        )
    }

    /// Stores a new action; false (and nothing written) when one of that name exists.
    pub fn create_action(
        &self,
        namespace: &str,
        name: &str,
        record: &Value,
    ) -> Result<bool, StoreError> {
        let inserted = self.connection().execute(
            "INSERT INTO actions (namespace, name, record) VALUES (?1, ?2, ?3)
             ON CONFLICT (namespace, name) DO NOTHING",
            params![namespace, name, record.to_string()],
        )?;
        Ok(inserted == 1)
    }

    /// Replaces an action that is still the one `read` (same version, same update time);
    /// false (and nothing written) when another update, or a delete and a new create, came
    /// first.
    pub fn update_action(
        &self,
        namespace: &str,
        name: &str,
        record: &Value,
        read: &Value,
    ) -> Result<bool, StoreError> {
        let updated = self.connection().execute(
            "UPDATE actions SET record = ?3
             WHERE namespace = ?1 AND name = ?2
               AND json_extract(record, '$.version') = ?4
               AND json_extract(record, '$.updated') = ?5",
            params![
                namespace,
                name,
                record.to_string(),
                read["version"].as_str().unwrap_or_default(),
                read["updated"].as_u64().unwrap_or_default()
            ],
        )?;
        Ok(updated == 1)
    }

    /// Deletes an action; true if it existed.
    pub fn delete_action(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        let deleted = self.connection().execute(
            "DELETE FROM actions WHERE namespace = ?1 AND name = ?2",
            params![namespace, name],
        )?;
        Ok(deleted > 0)
    }

    /// Actions of a namespace by name.
    pub fn actions(
        &self,
        namespace: &str,
        skip: u64,
        limit: u64,
    ) -> Result<Vec<Value>, StoreError> {
        let connection = self.connection();
        let mut statement = connection.prepare(
            "SELECT record FROM actions WHERE namespace = ?1 ORDER BY name LIMIT ?2 OFFSET ?3",
        )?;
        let rows = statement.query_map(params![namespace, limit, skip], |row| {
            row.get::<_, String>(0)
        })?;
        rows.map(|text| Ok(parse(&text?))).collect()
    }

    /// Records a finished activation (and forgets it as pending).
    pub fn put_activation(&self, record: &Value) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction()?;
        transaction.execute(
            "INSERT OR REPLACE INTO activations (activation_id, namespace, name, start, record)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                record["activationId"].as_str().unwrap_or_default(),
                record["namespace"].as_str().unwrap_or_default(),
                record["name"].as_str().unwrap_or_default(),
                record["start"].as_u64().unwrap_or_default(),
                record.to_string()
            ],
        )?;
        transaction.execute(
            "DELETE FROM pending_activations WHERE activation_id = ?1",
            params![record["activationId"].as_str().unwrap_or_default()],
        )?;
        transaction.commit()?;
        Ok(())
    }

    /// Remembers an activation a client was told about (by its id) before it finished:
    /// `interrupted` is the record to keep should the server stop before it finishes. Does
    /// nothing when the activation has finished already.
    pub fn put_pending(&self, interrupted: &Value) -> Result<(), StoreError> {
        let id = interrupted["activationId"].as_str().unwrap_or_default();
        self.connection().execute(
            "INSERT OR REPLACE INTO pending_activations (activation_id, record)
             SELECT ?1, ?2 WHERE NOT EXISTS
                 (SELECT 1 FROM activations WHERE activation_id = ?1)",
            params![id, interrupted.to_string()],
        )?;
        Ok(())
    }

    /// Turns the pending activations of a server that stopped into their `interrupted`
    /// records. Returns how many there were.
    fn record_interrupted(&self) -> Result<usize, StoreError> {
        let pending: Vec<String> = {
            let connection = self.connection();
            let mut statement = connection.prepare("SELECT record FROM pending_activations")?;
            statement
                .query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()?
        };
        for record in &pending {
            self.put_activation(&parse(record))?;
        }
        Ok(pending.len())
    }

    /// One activation record.
    pub fn activation(&self, namespace: &str, id: &str) -> Result<Option<Value>, StoreError> {
        self.one_record(
            "SELECT record FROM activations WHERE namespace = ?1 AND activation_id = ?2",
            [namespace, id],
        )
    }

    /// Activations of a namespace, newest first.
    pub fn activations(
        &self,
        namespace: &str,
        query: &ActivationQuery,
    ) -> Result<Vec<Value>, StoreError> {
        let connection = self.connection();
        let mut statement = connection.prepare(&format!(
            "SELECT record FROM activations WHERE {ACTIVATION_FILTER}
             ORDER BY start DESC, rowid DESC
             LIMIT ?5 OFFSET ?6"
        ))?;
        let rows = statement.query_map(
            params![
                namespace,
                query.name,
                query.since,
                query.upto,
                query.limit,
                query.skip
            ],
            |row| row.get::<_, String>(0),
        )?;
        rows.map(|text| Ok(parse(&text?))).collect()
    }

    /// How many activations of a namespace match `query`'s filters (its skip and limit aside).
    pub fn count_activations(
        &self,
        namespace: &str,
        query: &ActivationQuery,
    ) -> Result<u64, StoreError> {
        let count = self.connection().query_row(
            &format!("SELECT COUNT(*) FROM activations WHERE {ACTIVATION_FILTER}"),
            params![namespace, query.name, query.since, query.upto],
            |row| row.get(0),
        )?;
        Ok(count)
    }

    /// How many actions a namespace holds.
    pub fn count_actions(&self, namespace: &str) -> Result<u64, StoreError> {
        let count = self.connection().query_row(
            "SELECT COUNT(*) FROM actions WHERE namespace = ?1",
            params![namespace],
            |row| row.get(0),
        )?;
        Ok(count)
    }
}

/// The activations of namespace `?1`, of action `?2` if not null, started at or after `?3`
/// and at or before `?4` when those are not null.
const ACTIVATION_FILTER: &str = "namespace = ?1
    AND (?2 IS NULL OR name = ?2)
    AND (?3 IS NULL OR start >= ?3)
    AND (?4 IS NULL OR start <= ?4)";

/// Records are written by this module as JSON; a row that is not is reported, not hidden.
fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(
        |e| serde_json::json!({"error": format!("this stored record is corrupt: {e}")}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn actions_and_activations_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .create_action("guest", "add", &json!({"name": "add", "version": "0.0.1"}))
                .unwrap();
            for (id, start) in [("a", 1), ("b", 3), ("c", 2)] {
                store
                    .put_activation(&json!({"activationId": id, "namespace": "guest", "name": "add", "start": start}))
                    .unwrap();
            }
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.action("guest", "add").unwrap().unwrap()["version"],
            "0.0.1"
        );
        let all = store
            .activations(
                "guest",
                &ActivationQuery {
                    limit: 10,
                    ..Default::default()
                },
            )
            .unwrap();
        let ids: Vec<&str> = all
            .iter()
            .map(|r| r["activationId"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["b", "c", "a"], "newest first");
        let since = ActivationQuery {
            since: Some(2),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(store.activations("guest", &since).unwrap().len(), 2);
        let page = ActivationQuery {
            skip: 1,
            limit: 1,
            ..Default::default()
        };
        assert_eq!(
            store.activations("guest", &page).unwrap()[0]["activationId"],
            "c"
        );
        assert!(store.delete_action("guest", "add").unwrap());
        assert!(!store.delete_action("guest", "add").unwrap());
        assert!(store.action("guest", "add").unwrap().is_none());
    }

    #[test]
    fn a_second_create_and_a_stale_update_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = json!({"name": "add", "version": "0.0.1", "updated": 1});
        assert!(store.create_action("guest", "add", &first).unwrap());
        let other = json!({"version": "9.9.9"});
        assert!(!store.create_action("guest", "add", &other).unwrap());
        let second = json!({"name": "add", "version": "0.0.2", "updated": 2});
        assert!(
            store
                .update_action("guest", "add", &second, &first)
                .unwrap()
        );
        let stale = json!({"name": "add", "version": "0.0.2", "stale": true});
        assert!(!store.update_action("guest", "add", &stale, &first).unwrap());
        assert_eq!(store.action("guest", "add").unwrap().unwrap(), second);
        // Deleted and created anew at the same version while an update prepared: not the
        // action the update read.
        assert!(store.delete_action("guest", "add").unwrap());
        let recreated = json!({"name": "add", "version": "0.0.1", "updated": 3});
        assert!(store.create_action("guest", "add", &recreated).unwrap());
        assert!(!store.update_action("guest", "add", &stale, &first).unwrap());
        assert_eq!(store.action("guest", "add").unwrap().unwrap(), recreated);
    }

    #[test]
    fn pending_activations_become_their_interrupted_records_on_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let interrupted = |id: &str| {
            json!({"activationId": id, "namespace": "guest", "name": "sleep", "start": 1,
                   "response": {"status": "whisk internal error"}})
        };
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_pending(&interrupted("unfinished")).unwrap();
            store.put_pending(&interrupted("finished")).unwrap();
            let done = json!({"activationId": "finished", "namespace": "guest", "start": 1,
                              "response": {"status": "success"}});
            store.put_activation(&done).unwrap();
            // Told about after it finished: the finished record stands.
            store.put_pending(&interrupted("finished")).unwrap();
            assert!(store.activation("guest", "unfinished").unwrap().is_none());
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.activation("guest", "unfinished").unwrap().unwrap(),
            interrupted("unfinished")
        );
        assert_eq!(
            store.activation("guest", "finished").unwrap().unwrap()["response"]["status"],
            "success"
        );
        drop(store);
        // Recorded once: a third opening finds nothing pending.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.record_interrupted().unwrap(), 0);
    }
}
