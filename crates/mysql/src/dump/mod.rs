//! A raw binlog dump connection: registers as a replica, sends COM_BINLOG_DUMP and hands
//! over every event exactly as the server sent it (header, body and checksum bytes), the
//! way `mysqlbinlog --read-from-remote-server --raw` receives them.
//!
//! Why not `mysql_async`'s binlog stream, which the live reader uses: it parses every event
//! (the raw bytes are gone) and cannot ask MariaDB for its ANNOTATE_ROWS events (dump flag
//! `BINLOG_SEND_ANNOTATE_ROWS_EVENT`), so a copy made through it would miss bytes of the
//! file. This connection does only what a dump needs: the handshake (TLS as
//! `[source] tls` says, `mysql_native_password` and `caching_sha2_password`), a few `SET`
//! statements, COM_REGISTER_SLAVE and COM_BINLOG_DUMP, then packets until the end.
//!
//! - As a MariaDB replica of GTID capability (4), so GTID, GTID_LIST and BINLOG_CHECKPOINT
//!   events arrive unchanged, and with ANNOTATE_ROWS requested.
//! - `@master_binlog_checksum` is the server's own, so events keep their checksums.
//! - Every read has a deadline: a server that stops sending is an error, never a hang.

mod tls;
mod wire;

use std::time::Duration;

use mysql_common::constants::{CapabilityFlags, UTF8MB4_GENERAL_CI};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{AuthPlugin, AuthSwitchRequest, ComRegisterSlave, HandshakePacket, HandshakeResponse};
use mysql_common::proto::MySerialize;
use tokio::net::TcpStream;

use crate::config::SourceConfig;
use crate::error::MysqlError;
use wire::{Marker, Wire};

/// A connect or a read that gets nothing within this is given up (and is transient).
const IO_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_PACKET: u32 = 1 << 30;
const COM_QUERY: u8 = 0x03;
const COM_BINLOG_DUMP: u8 = 0x12;
/// Return EOF at the end of the binlog instead of waiting for more.
const BINLOG_DUMP_NON_BLOCK: u16 = 0x01;
/// MariaDB: send ANNOTATE_ROWS events (they are part of the file).
const BINLOG_SEND_ANNOTATE_ROWS_EVENT: u16 = 0x02;
/// MariaDB replica capability: understands GTIDs (and everything below).
const MARIADB_CAPABILITY_GTID: u8 = 4;
const ER_ACCESS_DENIED: u16 = 1045;

/// A connection that dumps the binlog as raw events.
pub struct BinlogDump {
    wire: Wire<Box<dyn wire::Io>>,
    addr: String,
    user: String,
    mariadb: bool,
}

impl BinlogDump {
    /// Connects and logs in as `cfg` says (host, port, user, password, TLS).
    pub async fn connect(cfg: &SourceConfig) -> Result<Self, MysqlError> {
        crate::session::install_tls_provider();
        let addr = cfg.address();
        let io_err = |what: &str, e: std::io::Error| MysqlError::new(addr.clone(), format!("{what}: {e}"), true);
        let tls = tls::client_config(cfg).map_err(|e| MysqlError::new(addr.clone(), e, false))?;
        let tcp = deadline(&addr, "connect", TcpStream::connect((cfg.host.as_str(), cfg.port))).await?;
        tcp.set_nodelay(true).map_err(|e| io_err("connect", e))?;
        let mut wire = Wire::new(tcp);
        let greeting = deadline(&addr, "read the server greeting", wire.read_packet()).await?;
        if greeting.first() == Some(&0xFF) {
            let (code, message) = wire::parse_err(&greeting);
            return Err(MysqlError::new(addr, format!("the server refused the connection: {message} ({code})"), true));
        }
        let handshake = ParseBuf(&greeting)
            .parse::<HandshakePacket<'_>>(())
            .map_err(|e| MysqlError::new(addr.clone(), format!("unreadable server greeting: {e}"), false))?;
        let mariadb = handshake.maria_db_server_version_parsed().is_some();
        let version = handshake
            .maria_db_server_version_parsed()
            .or_else(|| handshake.server_version_parsed())
            .unwrap_or((0, 0, 0));
        let mut nonce = handshake.scramble_1_ref().to_vec();
        nonce.extend_from_slice(handshake.scramble_2_ref().unwrap_or_default());
        nonce.resize(20, 0);
        let mut caps = CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_LONG_PASSWORD
            | CapabilityFlags::CLIENT_LONG_FLAG
            | CapabilityFlags::CLIENT_TRANSACTIONS
            | CapabilityFlags::CLIENT_PLUGIN_AUTH;
        if tls.is_some() {
            caps |= CapabilityFlags::CLIENT_SSL;
        }
        let server_caps = handshake.capabilities();
        if tls.is_some() && !server_caps.contains(CapabilityFlags::CLIENT_SSL) {
            return Err(MysqlError::new(
                addr,
                "source.tls asks for TLS but the server does not offer it; enable TLS on the server or set source.tls",
                false,
            ));
        }
        let caps = caps & server_caps;
        let plugin = match handshake.auth_plugin() {
            Some(AuthPlugin::CachingSha2Password) => AuthPlugin::CachingSha2Password,
            _ => AuthPlugin::MysqlNativePassword,
        };
        let secure = tls.is_some();
        let wire: Wire<Box<dyn wire::Io>> = match tls {
            Some(config) => {
                let ssl = mysql_common::packets::SslRequest::new(caps, MAX_PACKET, UTF8MB4_GENERAL_CI as u8);
                let mut buf = Vec::new();
                ssl.serialize(&mut buf);
                deadline(&addr, "request TLS", wire.write_packet(&buf)).await?;
                let (tcp, seq) = wire.into_io();
                let stream = deadline(&addr, "TLS handshake", tls::connect(config, &cfg.host, tcp)).await?;
                Wire::with_seq(Box::new(stream), seq)
            }
            None => {
                let (tcp, seq) = wire.into_io();
                Wire::with_seq(Box::new(tcp), seq)
            }
        };
        let mut dump = Self { wire, addr, user: cfg.user.clone(), mariadb };
        let login = Login { password: cfg.password.expose(), secure, plugin, nonce };
        dump.authenticate(login, version, caps).await?;
        Ok(dump)
    }

    /// Whether the server is MariaDB (from its greeting).
    pub fn is_mariadb(&self) -> bool {
        self.mariadb
    }

    /// Runs a statement that returns no rows (`SET ...`).
    pub async fn run(&mut self, sql: &str) -> Result<(), MysqlError> {
        let mut payload = vec![COM_QUERY];
        payload.extend_from_slice(sql.as_bytes());
        self.command(sql, &payload).await
    }

    /// Registers as replica `server_id` and asks for `file` from `pos` until the end of the
    /// binlog (non-blocking). Events then come from [`Self::next_event_into`].
    pub async fn request(&mut self, server_id: u32, file: &str, pos: u32) -> Result<(), MysqlError> {
        self.run("SET @master_binlog_checksum = @@global.binlog_checksum").await?;
        if self.mariadb {
            self.run(&format!("SET @mariadb_slave_capability = {MARIADB_CAPABILITY_GTID}")).await?;
        }
        let mut register = Vec::new();
        ComRegisterSlave::new(server_id).serialize(&mut register);
        self.command("register as a replica", &register).await?;
        let mut flags = BINLOG_DUMP_NON_BLOCK;
        if self.mariadb {
            flags |= BINLOG_SEND_ANNOTATE_ROWS_EVENT;
        }
        let mut dump = vec![COM_BINLOG_DUMP];
        dump.extend_from_slice(&pos.to_le_bytes());
        dump.extend_from_slice(&flags.to_le_bytes());
        dump.extend_from_slice(&server_id.to_le_bytes());
        dump.extend_from_slice(file.as_bytes());
        self.wire.reset_seq();
        deadline(&self.addr, "request the binlog", self.wire.write_packet(&dump)).await
    }

    /// Appends the next event (its raw bytes, as in the file) to `out`; `false` at the end of
    /// the binlog. A server error (e.g. 1236, the file was purged) is not transient.
    pub async fn next_event_into(&mut self, out: &mut Vec<u8>) -> Result<bool, MysqlError> {
        let (marker, payload) = deadline(&self.addr, "read the binlog", self.wire.read_event_into(out)).await?;
        match marker {
            Marker::Ok => Ok(true),
            Marker::Eof if payload.len() < 9 => Ok(false),
            Marker::Err => {
                let (code, message) = wire::parse_err(&payload);
                Err(MysqlError::new(self.addr.clone(), format!("binlog dump: {message} ({code})"), false))
            }
            _ => Err(MysqlError::new(
                self.addr.clone(),
                format!("binlog dump: unexpected packet of {} bytes starting {:#04x}", payload.len(), payload[0]),
                true,
            )),
        }
    }

    /// Sends one command and expects OK.
    async fn command(&mut self, what: &str, payload: &[u8]) -> Result<(), MysqlError> {
        self.wire.reset_seq();
        deadline(&self.addr, what, self.wire.write_packet(payload)).await?;
        let reply = deadline(&self.addr, what, self.wire.read_packet()).await?;
        match reply.first() {
            Some(0x00) => Ok(()),
            Some(0xFF) => {
                let (code, message) = wire::parse_err(&reply);
                Err(MysqlError::new(self.addr.clone(), format!("{what}: {message} ({code})"), false))
            }
            _ => Err(MysqlError::new(self.addr.clone(), format!("{what}: unexpected reply"), false)),
        }
    }

    async fn authenticate(
        &mut self,
        mut login: Login<'_>,
        version: (u16, u16, u16),
        caps: CapabilityFlags,
    ) -> Result<(), MysqlError> {
        let data = login.scramble(&self.addr)?;
        let response = HandshakeResponse::new(
            Some(data),
            version,
            Some(self.user.as_bytes()),
            None::<&[u8]>,
            Some(login.plugin.clone()),
            caps,
            None,
            MAX_PACKET,
        );
        let mut buf = Vec::new();
        response.serialize(&mut buf);
        deadline(&self.addr, "log in", self.wire.write_packet(&buf)).await?;
        let mut switched = false;
        loop {
            let reply = deadline(&self.addr, "log in", self.wire.read_packet()).await?;
            match reply.first().copied() {
                Some(0x00) => return Ok(()),
                Some(0xFF) => {
                    let (code, message) = wire::parse_err(&reply);
                    let hint = if code == ER_ACCESS_DENIED { "; check source.user and source.password" } else { "" };
                    return Err(MysqlError::new(
                        self.addr.clone(),
                        format!("log in as {:?}: {message} ({code}){hint}", self.user),
                        false,
                    ));
                }
                Some(0xFE) if !switched => {
                    switched = true;
                    let switch = ParseBuf(&reply).parse::<AuthSwitchRequest<'_>>(()).map_err(|e| {
                        MysqlError::new(self.addr.clone(), format!("unreadable auth switch request: {e}"), false)
                    })?;
                    login.plugin = switch.auth_plugin().into_owned();
                    login.nonce = switch.plugin_data().to_vec();
                    let data = login.scramble(&self.addr)?;
                    deadline(&self.addr, "log in", self.wire.write_packet(&data)).await?;
                }
                Some(0x01) if matches!(login.plugin, AuthPlugin::CachingSha2Password) => match reply.get(1) {
                    Some(0x03) => {} // fast authentication succeeded; OK follows
                    Some(0x04) => self.full_sha2_auth(&login).await?,
                    _ => return Err(MysqlError::new(self.addr.clone(), "log in: unexpected auth data", false)),
                },
                _ => return Err(MysqlError::new(self.addr.clone(), "log in: unexpected reply", false)),
            }
        }
    }

    /// `caching_sha2_password` without a cached entry: the password in clear over TLS, else
    /// RSA-encrypted with the server's public key.
    async fn full_sha2_auth(&mut self, login: &Login<'_>) -> Result<(), MysqlError> {
        let mut pass = login.password.as_bytes().to_vec();
        pass.push(0);
        if login.secure {
            return deadline(&self.addr, "log in", self.wire.write_packet(&pass)).await;
        }
        deadline(&self.addr, "log in", self.wire.write_packet(&[0x02])).await?;
        let key = deadline(&self.addr, "log in", self.wire.read_packet()).await?;
        for (i, b) in pass.iter_mut().enumerate() {
            *b ^= login.nonce[i % login.nonce.len()];
        }
        let encrypted = mysql_common::crypto::encrypt(&pass, key.get(1..).unwrap_or_default());
        deadline(&self.addr, "log in", self.wire.write_packet(&encrypted)).await
    }
}

/// What the login exchange needs.
struct Login<'a> {
    password: &'a str,
    secure: bool,
    plugin: AuthPlugin<'static>,
    nonce: Vec<u8>,
}

impl Login<'_> {
    /// The auth data for the current plugin and nonce (empty for an empty password).
    fn scramble(&self, addr: &str) -> Result<Vec<u8>, MysqlError> {
        let pass = Some(self.password);
        let data = match &self.plugin {
            AuthPlugin::MysqlNativePassword | AuthPlugin::CachingSha2Password => {
                self.plugin.gen_data(pass, &self.nonce)
            }
            AuthPlugin::MysqlClearPassword if self.secure => self.plugin.gen_data(pass, &self.nonce),
            other => {
                return Err(MysqlError::new(
                    addr,
                    format!(
                        "the server asks for authentication plugin {:?}, which the binlog archive's dump connection \
                         does not speak; give the replication user mysql_native_password or caching_sha2_password",
                        String::from_utf8_lossy(other.as_bytes())
                    ),
                    false,
                ))
            }
        };
        let mut out = Vec::new();
        if let Some(d) = data {
            d.serialize(&mut out);
        }
        Ok(out)
    }
}

/// Runs `fut` with the I/O deadline; a timeout or an I/O error is transient.
async fn deadline<T>(
    addr: &str,
    what: &str,
    fut: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, MysqlError> {
    match tokio::time::timeout(IO_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(MysqlError::new(addr, format!("{what}: {e}"), true)),
        Err(_) => Err(MysqlError::new(addr, format!("{what}: no answer within {} s", IO_TIMEOUT.as_secs()), true)),
    }
}
