mod runner;

pub mod wasi;
mod wasi_common;

pub use self::{
    runner::Runner,
    wasi_common::{
        ExistingMountConflictBehavior, MAPPED_CURRENT_DIR_DEFAULT_PATH, MappedCommand,
        MappedDirectory, MountedDirectory,
    },
};
