//! The model file: written atomically (a temp file, synced, renamed over the old one) by one
//! training at a time, and only by a training the current run of the model actor started.
//!
//! The [`Store`] outlives restarts of the model actor. Each training takes a [`Ticket`] (its
//! version and the store's epoch); a restart of the actor bumps the epoch, so a training it
//! abandoned finds its ticket stale when it comes to save and never lands. Versions come from the
//! store too: each ticket gets the next one, and a version a failed or abandoned training took is
//! never handed out again.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::error::ModelError;
use crate::ml::Watermark;
use crate::protocol::ModelSummary;

/// The model file in the node's state dir.
pub const MODEL_FILE: &str = "model.msgpack";

/// The model file's contents: the pipeline, the summary that goes with it, and how far the
/// shard had been read when it was trained (new rows start there).
#[derive(Serialize, Deserialize)]
pub struct Stored {
    pub summary: ModelSummary,
    pub model: Bytes,
    #[serde(default)]
    pub watermark: Watermark,
    /// The drift reference (`ml::Reference` bytes).
    #[serde(default)]
    pub reference: Option<Bytes>,
}

/// A training's right to save: its version, and the epoch it was started in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub version: u64,
    epoch: u64,
}

struct State {
    epoch: u64,
    last_version: u64,
}

pub struct Store {
    dir: PathBuf,
    state: Mutex<State>,
    /// `[testing] save_pause_ms`: a pause between write and rename.
    pause: Duration,
}

impl Store {
    /// The store of `dir`, and the model persisted there, if any.
    pub fn open(dir: PathBuf, pause: Duration) -> (Store, Option<Stored>) {
        let stored = load(&dir);
        let last_version = stored.as_ref().map_or(0, |s| s.summary.version);
        let store = Store {
            dir,
            state: Mutex::new(State {
                epoch: 0,
                last_version,
            }),
            pause,
        };
        (store, stored)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A ticket for a new training, with the next version.
    pub fn begin(&self) -> Ticket {
        let mut state = self.lock();
        state.last_version += 1;
        Ticket {
            version: state.last_version,
            epoch: state.epoch,
        }
    }

    /// Every ticket handed out so far is stale: their trainings were abandoned.
    pub fn abandon_all(&self) {
        self.lock().epoch += 1;
    }

    /// Saves `stored` under `ticket`, unless the ticket went stale. The check and the rename
    /// happen under one lock, so an abandoned training can never land.
    pub fn save(&self, ticket: Ticket, stored: &Stored) -> Result<(), ModelError> {
        let body = rmp_serde::to_vec_named(stored)?;
        let state = self.lock();
        if state.epoch != ticket.epoch {
            return Err(ModelError::Abandoned);
        }
        let tmp = self.dir.join(format!("{MODEL_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            fs::create_dir_all(&self.dir)?;
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            if !self.pause.is_zero() {
                tracing::info!(
                    "model file written, pausing {} ms before the rename",
                    self.pause.as_millis()
                );
                std::thread::sleep(self.pause);
            }
            fs::rename(&tmp, self.dir.join(MODEL_FILE))?;
            fs::File::open(&self.dir)?.sync_all()
        };
        let saved = write().map_err(|source| ModelError::Save {
            dir: self.dir.clone(),
            source,
        });
        drop(state);
        saved
    }

    /// The persisted model, read again (after a restart of the model actor).
    pub fn reload(&self) -> Option<Stored> {
        let _state = self.lock();
        load(&self.dir)
    }
}

/// Loads the persisted model, if any. A file that does not parse is moved aside, not trusted.
fn load(dir: &Path) -> Option<Stored> {
    // A temp file is what a crash in the middle of saving leaves; the model file is intact.
    let _ = fs::remove_file(dir.join(format!("{MODEL_FILE}.tmp")));
    let path = dir.join(MODEL_FILE);
    let body = fs::read(&path).ok()?;
    match rmp_serde::from_slice::<Stored>(&body) {
        Ok(stored) => Some(stored),
        Err(e) => {
            set_aside(&path, &e);
            None
        }
    }
}

/// Moves a model file that cannot be used out of the way, saying why.
pub fn set_aside(path: &Path, why: &dyn std::fmt::Display) {
    let aside = path.with_extension("msgpack.corrupt");
    tracing::error!(
        "{} is not a valid model ({why}); moved to {}",
        path.display(),
        aside.display()
    );
    let _ = fs::rename(path, aside);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(version: u64) -> Stored {
        Stored {
            summary: ModelSummary {
                node: "n1".into(),
                version,
                rows_train: 1,
                rows_valid: 0,
                train_ms: 0,
                valid: None,
                kind: "tree".into(),
                cv_score: None,
            },
            model: Bytes::from_static(b"model"),
            watermark: Watermark::default(),
            reference: None,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn versions_are_never_reused_and_stale_tickets_never_land() {
        let dir = temp_dir("tickets");
        let (store, none) = Store::open(dir.clone(), Duration::ZERO);
        assert!(none.is_none());
        let abandoned = store.begin();
        store.abandon_all();
        let current = store.begin();
        assert_eq!((abandoned.version, current.version), (1, 2));
        assert!(matches!(
            store.save(abandoned, &stored(abandoned.version)),
            Err(ModelError::Abandoned)
        ));
        assert!(store.reload().is_none(), "the abandoned model landed");
        store
            .save(current, &stored(current.version))
            .expect("a current ticket saves");
        let (again, loaded) = Store::open(dir.clone(), Duration::ZERO);
        assert_eq!(loaded.map(|s| s.summary.version), Some(2));
        assert_eq!(
            again.begin().version,
            3,
            "numbering goes on after a restart"
        );
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_corrupt_file_is_set_aside() {
        let dir = temp_dir("corrupt");
        fs::create_dir_all(&dir).expect("a temp dir");
        fs::write(dir.join(MODEL_FILE), b"not a model").expect("written");
        let (_store, loaded) = Store::open(dir.clone(), Duration::ZERO);
        assert!(loaded.is_none());
        assert!(dir.join("model.msgpack.corrupt").exists());
        let _ = fs::remove_dir_all(dir);
    }
}
