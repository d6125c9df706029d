//! The MySQL/MariaDB side of sameday, shared by the reader (binlog), the worker's nightly
//! batch (SQL) and `sameday check`:
//!
//! - [`config`]: the source a daemon connects to (`[source]`, `[nightly.source]`), TLS mode.
//! - [`session`]: a connection with the calls the daemons make (server facts and variables,
//!   binary logs, MariaDB JSON columns, a table's columns), errors classified in [`error`].
//! - [`dump`]: a raw binlog dump connection (events as the server sends them), for the
//!   binlog archive.
//! - [`checks`]: the server checks as [`Problem`]s, one implementation for `sameday check`
//!   and for each daemon's start-up.
//! - [`schema`]: a table's columns as a binlog table map describes them.
//! - [`catalog`]: a table's current definition from `information_schema`, which names the
//!   columns of table maps without names (`binlog_row_metadata=MINIMAL`) once checked
//!   against them.
//! - [`value`]: binlog values and SQL row values to the envelope's JSON, which must agree.

pub mod catalog;
pub mod checks;
pub mod config;
pub mod dump;
pub mod error;
pub mod schema;
pub mod session;
pub mod value;

pub use checks::Problem;
pub use config::{SourceConfig, TlsMode};
pub use error::MysqlError;
pub use session::{ServerInfo, Session, TableColumn};
