//! Where binlog events come from: a live replica connection or files on disk.

pub mod file;
pub mod live;
