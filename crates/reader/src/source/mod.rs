//! Where binlog events come from: a live replica connection ([`live`], prepared by
//! [`prepare`] and streamed with its reconnect policy by [`stream`]) or files on disk
//! ([`file`]).

pub mod file;
pub mod live;
pub mod prepare;
pub mod stream;
