//! The two mappings of MySQL values to the change envelope's JSON, side by side: values
//! decoded from the binlog ([`binlog`], the reader's CDC path) and values of SQL result rows
//! ([`sql`], the nightly batch). They must agree byte for byte, or the batch and the worker
//! would name the same event differently; the workspace test `value_mappings` proves it for
//! every column type against a real server.

pub mod binlog;
pub mod json_check;
pub mod json_text;
pub mod sql;

pub use sql::RowDecoder;
