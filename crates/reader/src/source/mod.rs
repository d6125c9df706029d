//! Where binlog events come from: a live replica connection ([`live`], prepared by
//! [`prepare`] and streamed with its reconnect policy by [`stream`], with table definitions
//! from [`catalog`] when the binlog names no columns) or files on disk ([`file`]).

pub(crate) mod catalog;
pub(crate) mod file;
pub(crate) mod live;
pub(crate) mod prepare;
pub(crate) mod stream;
