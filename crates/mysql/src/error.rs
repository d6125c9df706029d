//! Errors of the MySQL side, classified once: `transient` errors (the connection broke, the
//! server did not answer) are worth a retry on a new connection; the others (access denied,
//! a refused statement) are not. The daemons wrap this type in their own errors.

/// A failed call to the MySQL/MariaDB server at `source_addr`. Never carries credentials.
#[derive(Debug, Clone, thiserror::Error)]
#[error("MySQL source {source_addr}: {message}")]
pub struct MysqlError {
    pub source_addr: String,
    pub message: String,
    pub transient: bool,
}

impl MysqlError {
    pub fn new(source_addr: impl Into<String>, message: impl Into<String>, transient: bool) -> Self {
        Self { source_addr: source_addr.into(), message: message.into(), transient }
    }

    /// Maps a driver error of the call `what`, keeping credentials out of the message and
    /// naming the config keys to fix when access is denied.
    pub fn driver(source_addr: &str, user: &str, what: &str, e: mysql_async::Error) -> Self {
        let transient = matches!(e, mysql_async::Error::Io(_));
        let message = match &e {
            mysql_async::Error::Server(se) if se.code == ER_ACCESS_DENIED => format!(
                "{what}: access denied for user {user:?} ({}); check source.user and source.password",
                se.message
            ),
            _ => format!("{what}: {e}"),
        };
        Self::new(source_addr, message, transient)
    }

    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

/// `ER_ACCESS_DENIED_ERROR`.
const ER_ACCESS_DENIED: u16 = 1045;
