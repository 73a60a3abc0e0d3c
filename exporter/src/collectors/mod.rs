//! The collectors of services and the host, one module each. A collector
//! owns its config section (serde, with its defaults), its flags
//! (`clap::Args`, flattened into the CLI by [`crate::config`]), its
//! `ENTRY` (name, role, default, help) and its `start`, which receives
//! only the sections it reads. They are built from
//! [`crate::collector_kit`]; the log collectors are in [`crate::logs`];
//! the table that lists them all is `crate::config::collectors::ALL`.

pub mod app;
pub mod backup;
pub mod backup_check;
pub mod backup_drill;
pub mod database;
pub mod host;
pub mod pg_custom_dump;
pub mod redis;
