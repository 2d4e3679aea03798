//! Durable storage of the standalone records (actions, packages, triggers, rules and
//! activations, typed as [`super::records`] defines them) in an embedded SQLite database.
//! Every write is committed before the request that caused it is answered, so killing the
//! process between two requests loses nothing.
//!
//! The store guards its data as a hostile or careless user would test it: it holds an
//! exclusive lock on the data directory for as long as it is open (a second server refuses to
//! start, naming the holder); a finished activation record is written once and never changed;
//! every access first checks that the database file is still the one it opened, so that a
//! deleted or replaced file fails every request loudly rather than swallowing the writes; and a
//! stored record that does not parse is an error that names it.

use super::records::{ActivationRecord, Collection, Entity};
use rusqlite::{Connection, OptionalExtension, params};
use serde::de::DeserializeOwned;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The database's file name in the data directory.
const DATABASE_FILE: &str = "ow-wasm.sqlite";
/// The lock file's name in the data directory; it holds the pid of the server holding it.
const LOCK_FILE: &str = "ow-wasm.lock";

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another server holds the data directory.
    #[error(
        "The data directory {} is in use by another ow-executor standalone server ({holder}); \
         stop that server, or give this one another --data-dir.",
        data_dir.display()
    )]
    Locked {
        /// The directory.
        data_dir: PathBuf,
        /// Who holds it: its pid, as far as the lock file tells.
        holder: String,
    },
    /// A file of the data directory cannot be made, opened or checked.
    #[error("Cannot {what} {}: {source}.", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// To which file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The database file is no longer the one the store opened.
    #[error(
        "The database {} was {how} while the server was running, so nothing more can be stored \
         in it; restart the server to open the database now at that path.",
        path.display()
    )]
    DatabaseGone {
        /// The database file.
        path: PathBuf,
        /// `deleted` or `replaced`.
        how: &'static str,
    },
    /// SQLite failed.
    #[error("The standalone store failed: {0}.")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored record does not parse as its type.
    #[error(
        "The stored record of {what} cannot be read ({error}); it was not written by this \
         server. Restore the database from a backup, or delete that record."
    )]
    Corrupt {
        /// Which record: its kind and name or id.
        what: String,
        /// Why it does not parse.
        error: serde_json::Error,
    },
}

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

/// The database of one data directory, held exclusively.
#[derive(Debug)]
pub struct Store {
    connection: Mutex<Connection>,
    /// The database file, and which file it was when opened.
    path: PathBuf,
    opened: same_file::Handle,
    /// Held for as long as the store is open.
    _lock: File,
}

impl Store {
    /// Locks `data_dir` (creating it if needed) and opens (creating if needed) its database.
    /// Pending activations of a server that stopped are recorded as interrupted.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
            what: "create the data directory",
            path: data_dir.to_owned(),
            source,
        })?;
        let lock = lock_data_dir(data_dir)?;
        let path = data_dir.join(DATABASE_FILE);
        let connection = Connection::open(&path)?;
        let opened = same_file::Handle::from_path(&path).map_err(|source| StoreError::Io {
            what: "open the database",
            path: path.clone(),
            source,
        })?;
        // WAL keeps readers off the writer's back; NORMAL sync survives a killed process.
        connection.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
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
        for collection in Collection::ALL {
            connection.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {} (
                     namespace TEXT NOT NULL,
                     name TEXT NOT NULL,
                     record TEXT NOT NULL,
                     PRIMARY KEY (namespace, name)
                 );",
                collection.name()
            ))?;
        }
        let store = Self {
            connection: Mutex::new(connection),
            path,
            opened,
            _lock: lock,
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

    /// The connection, once the database file is found to be still the one opened.
    fn connection(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        let connection = self.connection.lock().expect("store lock");
        let gone = |how| StoreError::DatabaseGone {
            path: self.path.clone(),
            how,
        };
        match same_file::Handle::from_path(&self.path) {
            Ok(now) if now == self.opened => Ok(connection),
            Ok(_) => Err(gone("replaced")),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(gone("deleted")),
            Err(source) => Err(StoreError::Io {
                what: "check the database",
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// The stored record of an entity.
    pub fn entity<E: Entity>(&self, namespace: &str, name: &str) -> Result<Option<E>, StoreError> {
        let text: Option<String> = self
            .connection()?
            .query_row(
                &format!(
                    "SELECT record FROM {} WHERE namespace = ?1 AND name = ?2",
                    E::COLLECTION.name()
                ),
                [namespace, name],
                |row| row.get(0),
            )
            .optional()?;
        text.map(|text| parse(&text, || entity_name::<E>(namespace, name)))
            .transpose()
    }

    /// Stores a new entity; false (and nothing written) when one of that name exists.
    pub fn create<E: Entity>(&self, record: &E) -> Result<bool, StoreError> {
        self.write(&[Write::create(record)])
    }

    /// Replaces an entity that is still the one `read` (same version, same update time);
    /// false (and nothing written) when another update, or a delete and a new create, came
    /// first.
    pub fn update<E: Entity>(&self, record: &E, read: &E) -> Result<bool, StoreError> {
        self.write(&[Write::update(record, read)])
    }

    /// Deletes an entity; true if it existed.
    pub fn delete<E: Entity>(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        self.write(&[Write::delete::<E>(namespace, name)])
    }

    /// Makes every write of `writes` or none: true if each found what it expects (no entity
    /// of the name for a create, the one read for an update, one to delete), else false and
    /// nothing written. A rule and the trigger that links to it change together this way.
    pub fn write(&self, writes: &[Write]) -> Result<bool, StoreError> {
        let mut connection = self.connection()?;
        let transaction = connection.transaction()?;
        for write in writes {
            let table = write.collection.name();
            let changed = match &write.change {
                Change::Create(text) => transaction.execute(
                    &format!(
                        "INSERT INTO {table} (namespace, name, record) VALUES (?1, ?2, ?3)
                         ON CONFLICT (namespace, name) DO NOTHING"
                    ),
                    params![write.namespace, write.name, text],
                )?,
                Change::Update {
                    text,
                    version,
                    updated,
                } => transaction.execute(
                    &format!(
                        "UPDATE {table} SET record = ?3
                         WHERE namespace = ?1 AND name = ?2
                           AND json_extract(record, '$.version') = ?4
                           AND json_extract(record, '$.updated') = ?5"
                    ),
                    params![write.namespace, write.name, text, version, updated],
                )?,
                Change::Delete => transaction.execute(
                    &format!("DELETE FROM {table} WHERE namespace = ?1 AND name = ?2"),
                    params![write.namespace, write.name],
                )?,
            };
            if changed != 1 {
                return Ok(false); // dropping the transaction rolls it back
            }
        }
        transaction.commit()?;
        Ok(true)
    }

    /// Entities of a namespace (or of a package: `guest/utils`) by name; with `with_packages`,
    /// those of its packages too (actions, as OpenWhisk lists them), after its own.
    pub fn entities<E: Entity>(
        &self,
        namespace: &str,
        with_packages: bool,
        skip: u64,
        limit: u64,
    ) -> Result<Vec<E>, StoreError> {
        let connection = self.connection()?;
        let mut statement = connection.prepare(&format!(
            "SELECT namespace, name, record FROM {} WHERE {IN_NAMESPACE}
             ORDER BY namespace, name LIMIT ?3 OFFSET ?4",
            E::COLLECTION.name()
        ))?;
        let rows = statement.query_map(params![namespace, with_packages, limit, skip], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?;
        rows.map(|row| {
            let (namespace, name, text) = row?;
            parse(&text, || entity_name::<E>(&namespace, &name))
        })
        .collect()
    }

    /// How many entities of a collection a namespace (with its packages, if `with_packages`)
    /// holds.
    pub fn count<E: Entity>(
        &self,
        namespace: &str,
        with_packages: bool,
    ) -> Result<u64, StoreError> {
        let count = self.connection()?.query_row(
            &format!(
                "SELECT COUNT(*) FROM {} WHERE {IN_NAMESPACE}",
                E::COLLECTION.name()
            ),
            params![namespace, with_packages],
            |row| row.get(0),
        )?;
        Ok(count)
    }

    /// Records a finished activation (and forgets it as pending). A finished record is final:
    /// when one of that id is recorded already, nothing is written and the answer is false.
    pub fn put_activation(&self, record: &ActivationRecord) -> Result<bool, StoreError> {
        let mut connection = self.connection()?;
        let transaction = connection.transaction()?;
        let inserted = transaction.execute(
            "INSERT INTO activations (activation_id, namespace, name, start, record)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (activation_id) DO NOTHING",
            params![
                record.activation_id,
                record.namespace,
                record.listed_name(),
                record.start,
                to_text(record)
            ],
        )?;
        transaction.execute(
            "DELETE FROM pending_activations WHERE activation_id = ?1",
            params![record.activation_id],
        )?;
        transaction.commit()?;
        if inserted == 0 {
            tracing::warn!(
                activation_id = record.activation_id,
                "the activation was recorded already; its record stays as it was"
            );
        }
        Ok(inserted == 1)
    }

    /// Remembers an activation a client was told about (by its id) before it finished:
    /// `interrupted` is the record to keep should the server stop before it finishes. Does
    /// nothing when the activation has finished already.
    pub fn put_pending(&self, interrupted: &ActivationRecord) -> Result<(), StoreError> {
        self.connection()?.execute(
            "INSERT OR REPLACE INTO pending_activations (activation_id, record)
             SELECT ?1, ?2 WHERE NOT EXISTS
                 (SELECT 1 FROM activations WHERE activation_id = ?1)",
            params![interrupted.activation_id, to_text(interrupted)],
        )?;
        Ok(())
    }

    /// Turns the pending activations of a server that stopped into their `interrupted`
    /// records. Returns how many there were.
    fn record_interrupted(&self) -> Result<usize, StoreError> {
        let pending: Vec<(String, String)> = {
            let connection = self.connection()?;
            let mut statement =
                connection.prepare("SELECT activation_id, record FROM pending_activations")?;
            statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        for (id, record) in &pending {
            self.put_activation(&parse(record, || format!("pending activation {id}"))?)?;
        }
        Ok(pending.len())
    }

    /// One activation record.
    pub fn activation(
        &self,
        namespace: &str,
        id: &str,
    ) -> Result<Option<ActivationRecord>, StoreError> {
        let text: Option<String> = self
            .connection()?
            .query_row(
                "SELECT record FROM activations WHERE namespace = ?1 AND activation_id = ?2",
                [namespace, id],
                |row| row.get(0),
            )
            .optional()?;
        text.map(|text| parse(&text, || format!("activation {id}")))
            .transpose()
    }

    /// Activations of a namespace, newest first.
    pub fn activations(
        &self,
        namespace: &str,
        query: &ActivationQuery,
    ) -> Result<Vec<ActivationRecord>, StoreError> {
        let connection = self.connection()?;
        let mut statement = connection.prepare(&format!(
            "SELECT activation_id, record FROM activations WHERE {ACTIVATION_FILTER}
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
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
        )?;
        rows.map(|row| {
            let (id, text) = row?;
            parse(&text, || format!("activation {id}"))
        })
        .collect()
    }

    /// How many activations of a namespace match `query`'s filters (its skip and limit aside).
    pub fn count_activations(
        &self,
        namespace: &str,
        query: &ActivationQuery,
    ) -> Result<u64, StoreError> {
        let count = self.connection()?.query_row(
            &format!("SELECT COUNT(*) FROM activations WHERE {ACTIVATION_FILTER}"),
            params![namespace, query.name, query.since, query.upto],
            |row| row.get(0),
        )?;
        Ok(count)
    }
}

/// Takes the exclusive lock on `data_dir` and writes this process's pid in the lock file, or
/// says who holds it.
fn lock_data_dir(data_dir: &Path) -> Result<File, StoreError> {
    let path = data_dir.join(LOCK_FILE);
    let io_error = |what| {
        let path = path.clone();
        move |source| StoreError::Io { what, path, source }
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false) // the holder's pid stays until the lock is ours
        .open(&path)
        .map_err(io_error("open the lock file"))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path)
                .ok()
                .map(|pid| pid.trim().to_owned())
                .filter(|pid| !pid.is_empty())
                .map_or_else(
                    || "whose pid is unknown".to_owned(),
                    |pid| format!("pid {pid}"),
                );
            return Err(StoreError::Locked {
                data_dir: data_dir.to_owned(),
                holder,
            });
        }
        Err(TryLockError::Error(source)) => {
            return Err(io_error("lock the data directory with")(source));
        }
    }
    file.set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(io_error("write the pid to"))?;
    Ok(file)
}

/// How a corrupt record of an entity is named: `action guest/add`.
fn entity_name<E: Entity>(namespace: &str, name: &str) -> String {
    format!("{} {namespace}/{name}", E::COLLECTION.singular())
}

/// A record as the store keeps it.
fn to_text(record: &impl serde::Serialize) -> String {
    serde_json::to_string(record).expect("records serialize")
}

/// Reads a stored record; one that does not parse is reported with its name (`what`).
fn parse<T: DeserializeOwned>(text: &str, what: impl FnOnce() -> String) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt {
        what: what(),
        error,
    })
}

/// The entities of namespace `?1`, and of its packages if `?2`.
const IN_NAMESPACE: &str =
    "(namespace = ?1 OR (?2 AND namespace >= ?1 || '/' AND namespace < ?1 || '0'))";

/// One write of [`Store::write`]: what changes in which entity.
#[derive(Debug)]
pub struct Write {
    collection: Collection,
    namespace: String,
    name: String,
    change: Change,
}

#[derive(Debug)]
enum Change {
    Create(String),
    Update {
        text: String,
        version: String,
        updated: u64,
    },
    Delete,
}

impl Write {
    /// Stores a new entity, which no entity of its name may precede.
    pub fn create<E: Entity>(record: &E) -> Self {
        Self::of(record, Change::Create(to_text(record)))
    }

    /// Replaces the entity `read` by `record`, if it is still the one read.
    pub fn update<E: Entity>(record: &E, read: &E) -> Self {
        Self::of(
            record,
            Change::Update {
                text: to_text(record),
                version: read.version().to_string(),
                updated: read.updated(),
            },
        )
    }

    /// Stores `record`: creates it when nothing was `read`, else replaces what was read.
    pub fn put<E: Entity>(record: &E, read: Option<&E>) -> Self {
        match read {
            None => Self::create(record),
            Some(read) => Self::update(record, read),
        }
    }

    /// Deletes an entity, which must exist.
    pub fn delete<E: Entity>(namespace: &str, name: &str) -> Self {
        Self {
            collection: E::COLLECTION,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            change: Change::Delete,
        }
    }

    fn of<E: Entity>(record: &E, change: Change) -> Self {
        Self {
            collection: E::COLLECTION,
            namespace: record.namespace().to_owned(),
            name: record.name().to_owned(),
            change,
        }
    }
}

/// The activations of namespace `?1`, of the name `?2` if not null (the `name` column holds
/// [`ActivationRecord::listed_name`]: `package/name` for an action in a package), started at
/// or after `?3` and at or before `?4` when those are not null.
const ACTIVATION_FILTER: &str = "namespace = ?1
    AND (?2 IS NULL OR name = ?2)
    AND (?3 IS NULL OR start >= ?3)
    AND (?4 IS NULL OR start <= ?4)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::standalone::records::{
        ActionRecord, ActivationResponse, ActivationStatus, KeyValues, PackageRecord, RuleRecord,
        SemVer, TriggerRecord,
    };
    use serde_json::json;

    fn action(name: &str, version: &str, updated: u64) -> ActionRecord {
        serde_json::from_value(json!({
            "namespace": "guest", "name": name, "version": version, "publish": false,
            "exec": {"kind": "wasm:0.1", "code": "AA==", "binary": true, "main": "main"},
            "parameters": [], "annotations": [], "updated": updated,
            "limits": {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}
        }))
        .unwrap()
    }

    fn activation(id: &str, start: u64, status: ActivationStatus) -> ActivationRecord {
        ActivationRecord::new(
            &action("add", "0.0.1", 1),
            id,
            (start, start),
            ActivationResponse::new(status, json!({})),
            Vec::new(),
            KeyValues::default(),
        )
    }

    fn ids(records: &[ActivationRecord]) -> Vec<&str> {
        records.iter().map(|r| r.activation_id.as_str()).collect()
    }

    #[test]
    fn actions_and_activations_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert!(store.create(&action("add", "0.0.1", 1)).unwrap());
            for (id, start) in [("a", 1), ("b", 3), ("c", 2)] {
                let record = activation(id, start, ActivationStatus::Success);
                assert!(store.put_activation(&record).unwrap());
            }
        }
        let store = Store::open(dir.path()).unwrap();
        let stored: ActionRecord = store.entity("guest", "add").unwrap().unwrap();
        assert_eq!(stored, action("add", "0.0.1", 1));
        let all = ActivationQuery {
            limit: 10,
            ..Default::default()
        };
        assert_eq!(
            ids(&store.activations("guest", &all).unwrap()),
            ["b", "c", "a"],
            "newest first"
        );
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
        assert_eq!(ids(&store.activations("guest", &page).unwrap()), ["c"]);
        assert!(store.delete::<ActionRecord>("guest", "add").unwrap());
        assert!(!store.delete::<ActionRecord>("guest", "add").unwrap());
        assert!(
            store
                .entity::<ActionRecord>("guest", "add")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_second_create_and_a_stale_update_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = action("add", "0.0.1", 1);
        assert!(store.create(&first).unwrap());
        assert!(!store.create(&action("add", "9.9.9", 9)).unwrap());
        let second = action("add", "0.0.2", 2);
        assert!(store.update(&second, &first).unwrap());
        let stale = action("add", "0.0.2", 5);
        assert!(!store.update(&stale, &first).unwrap());
        assert_eq!(store.entity("guest", "add").unwrap(), Some(second));
        // Deleted and created anew at the same version while an update prepared: not the
        // action the update read.
        assert!(store.delete::<ActionRecord>("guest", "add").unwrap());
        let recreated = action("add", "0.0.1", 3);
        assert!(store.create(&recreated).unwrap());
        assert!(!store.update(&stale, &first).unwrap());
        assert_eq!(store.entity("guest", "add").unwrap(), Some(recreated));
    }

    #[test]
    fn every_collection_is_stored_as_its_type() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let package: PackageRecord = serde_json::from_value(json!({
            "namespace": "guest", "name": "utils", "version": "0.0.1", "publish": false,
            "binding": {}, "parameters": [], "annotations": [], "updated": 1
        }))
        .unwrap();
        let trigger: TriggerRecord = serde_json::from_value(json!({
            "namespace": "guest", "name": "t", "version": "0.0.1", "publish": false,
            "parameters": [], "limits": {}, "annotations": [], "updated": 1
        }))
        .unwrap();
        let rule: RuleRecord = serde_json::from_value(json!({
            "namespace": "guest", "name": "r", "version": "0.0.1", "publish": false,
            "trigger": {"path": "guest", "name": "t"}, "action": {"path": "guest", "name": "a"},
            "annotations": [], "updated": 1
        }))
        .unwrap();
        assert!(store.create(&package).unwrap());
        assert!(store.create(&trigger).unwrap());
        assert!(store.create(&rule).unwrap());
        assert_eq!(store.entity("guest", "utils").unwrap(), Some(package));
        assert_eq!(store.entity("guest", "t").unwrap(), Some(trigger));
        assert_eq!(store.entity("guest", "r").unwrap(), Some(rule));
        // One collection's names are not another's.
        assert_eq!(
            store.entity::<ActionRecord>("guest", "utils").unwrap(),
            None
        );
        assert_eq!(store.count::<PackageRecord>("guest", false).unwrap(), 1);
    }

    #[test]
    fn a_batch_of_writes_is_stored_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = action("a", "0.0.1", 1);
        assert!(store.create(&first).unwrap());
        let second = action("a", "0.0.2", 2);
        // The create of `b` would succeed, the update of `a` finds another `a`: neither.
        let stale = action("a", "0.0.1", 9);
        let refused = [
            Write::create(&action("b", "0.0.1", 1)),
            Write::update(&second, &stale),
        ];
        assert!(!store.write(&refused).unwrap());
        assert_eq!(store.entity::<ActionRecord>("guest", "b").unwrap(), None);
        assert_eq!(store.entity("guest", "a").unwrap(), Some(first.clone()));
        let accepted = [
            Write::create(&action("b", "0.0.1", 1)),
            Write::update(&second, &first),
            Write::delete::<ActionRecord>("guest", "b"),
        ];
        assert!(store.write(&accepted).unwrap());
        assert_eq!(store.entity("guest", "a").unwrap(), Some(second));
        assert_eq!(store.entity::<ActionRecord>("guest", "b").unwrap(), None);
        // Deleting what is not there fails the batch.
        assert!(!store.delete::<ActionRecord>("guest", "b").unwrap());
    }

    #[test]
    fn a_namespace_lists_its_packages_actions_after_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let in_path = |path: &str, name: &str| ActionRecord {
            namespace: path.to_owned(),
            ..action(name, "0.0.1", 1)
        };
        for (path, name) in [
            ("guest/utils", "b"),
            ("guest", "z"),
            ("guest/pkg", "a"),
            ("guest2", "x"),
            ("guest.x", "y"),
        ] {
            assert!(store.create(&in_path(path, name)).unwrap());
        }
        let listed = |records: Vec<ActionRecord>| -> Vec<String> {
            records
                .iter()
                .map(|record| format!("{}/{}", record.namespace, record.name))
                .collect()
        };
        assert_eq!(
            listed(store.entities("guest", true, 0, 10).unwrap()),
            ["guest/z", "guest/pkg/a", "guest/utils/b"]
        );
        assert_eq!(
            listed(store.entities("guest", false, 0, 10).unwrap()),
            ["guest/z"]
        );
        assert_eq!(
            listed(store.entities("guest/utils", false, 0, 10).unwrap()),
            ["guest/utils/b"]
        );
        assert_eq!(store.count::<ActionRecord>("guest", true).unwrap(), 3);
        assert_eq!(store.count::<ActionRecord>("guest", false).unwrap(), 1);
    }

    #[test]
    fn a_stored_record_that_does_not_parse_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .connection()
            .unwrap()
            .execute(
                "INSERT INTO actions (namespace, name, record) VALUES ('guest', 'add', ?1)",
                [json!({"name": "add", "version": "0.0.1"}).to_string()],
            )
            .unwrap();
        let error = store.entity::<ActionRecord>("guest", "add").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("The stored record of action guest/add cannot be read (missing field"),
            "{error}"
        );
        let error = store
            .entities::<ActionRecord>("guest", false, 0, 10)
            .unwrap_err();
        assert!(error.to_string().contains("action guest/add"), "{error}");
        let mut record = activation("x", 1, ActivationStatus::Success);
        record.version = SemVer::FIRST;
        store.put_activation(&record).unwrap();
        store
            .connection()
            .unwrap()
            .execute(
                "UPDATE activations SET record = json_set(record, '$.response.status', 'fine')",
                [],
            )
            .unwrap();
        let error = store.activation("guest", "x").unwrap_err();
        assert!(error.to_string().contains("activation x"), "{error}");
    }

    #[test]
    fn a_finished_activation_record_never_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let interrupted = activation("a", 1, ActivationStatus::InternalError);
        assert!(store.put_activation(&interrupted).unwrap());
        // A late finisher of the same activation writes nothing.
        let late = activation("a", 1, ActivationStatus::Success);
        assert!(!store.put_activation(&late).unwrap());
        assert_eq!(store.activation("guest", "a").unwrap(), Some(interrupted));
    }

    #[test]
    fn pending_activations_become_their_interrupted_records_on_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let interrupted = |id: &str| activation(id, 1, ActivationStatus::InternalError);
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_pending(&interrupted("unfinished")).unwrap();
            store.put_pending(&interrupted("finished")).unwrap();
            let done = activation("finished", 1, ActivationStatus::Success);
            store.put_activation(&done).unwrap();
            // Told about after it finished: the finished record stands.
            store.put_pending(&interrupted("finished")).unwrap();
            assert!(store.activation("guest", "unfinished").unwrap().is_none());
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.activation("guest", "unfinished").unwrap(),
            Some(interrupted("unfinished"))
        );
        assert_eq!(
            store
                .activation("guest", "finished")
                .unwrap()
                .unwrap()
                .response
                .status,
            ActivationStatus::Success
        );
        drop(store);
        // Recorded once: a third opening finds nothing pending.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.record_interrupted().unwrap(), 0);
    }

    #[test]
    fn a_second_store_on_a_held_data_directory_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        let error = Store::open(dir.path()).unwrap_err();
        assert!(matches!(error, StoreError::Locked { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .contains(&format!("(pid {})", std::process::id())),
            "{error}"
        );
        drop(first);
        Store::open(dir.path()).expect("free again once the holder is gone");
    }

    #[test]
    fn a_deleted_or_replaced_database_fails_every_access() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let database = dir.path().join(DATABASE_FILE);
        std::fs::remove_file(&database).unwrap();
        let error = store.create(&action("add", "0.0.1", 1)).unwrap_err();
        assert!(
            matches!(error, StoreError::DatabaseGone { how: "deleted", .. }),
            "{error:?}"
        );
        std::fs::write(&database, b"").unwrap();
        let error = store.entity::<ActionRecord>("guest", "add").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("was replaced while the server was running"),
            "{error}"
        );
    }
}
