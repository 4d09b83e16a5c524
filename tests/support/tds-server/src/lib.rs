//! A test-only TDS 7.4 server: a SQLite database (laid out per the cutover
//! database contract) served on 127.0.0.1 over a real socket, so the SQL
//! Server connector is tested at the protocol level, not through mocks.
//!
//! It speaks PRELOGIN (no TLS, login-only TLS, or full TLS with a generated
//! self-signed certificate), LOGIN7 (SQL logins; a bad password gets error
//! 18456), SQL batches and `sp_executesql` RPCs, and answers with
//! COLMETADATA / ROW / NBCROW / DONE / ERROR tokens. Around that: a SQL
//! Browser responder for named instances, a statement log with a select-only
//! mode (the read-only check), and a fault plan that drops the connection
//! mid-stream.

pub mod protocol;
pub mod sql;
pub mod tls;
pub mod types;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use protocol::Encryption;
use protocol::{token, PacketWriter, Param};
use sql::TokenSink;

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The SQLite database to serve.
    pub database: PathBuf,
    /// The database name logins must ask for (empty = any) and the catalog name in INFORMATION_SCHEMA.
    pub database_name: String,
    /// SQL logins: (user, password).
    pub logins: Vec<(String, String)>,
    /// The server's PRELOGIN encryption stance.
    pub encryption: Encryption,
    /// When set, a SQL Browser responder answers for this instance name on its own UDP port.
    pub instance_name: Option<String>,
    /// Refuse (and log as a violation) every statement that is not a SELECT.
    pub select_only: bool,
    /// Negotiated packet size.
    pub packet_size: usize,
}

impl ServerConfig {
    pub fn new(database: impl Into<PathBuf>) -> Self {
        ServerConfig {
            database: database.into(),
            database_name: "PANDA".into(),
            logins: vec![("panda_ro".into(), "panda-test-pw".into())],
            encryption: Encryption::NotSupported,
            instance_name: None,
            select_only: true,
            packet_size: 4096,
        }
    }
}

/// One statement the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedStatement {
    /// `batch` or `rpc`.
    pub via: &'static str,
    pub sql: String,
    /// False when select-only mode refused it.
    pub accepted: bool,
}

/// Connection-dropping fault injection: the next `times` result sets are cut after `after_rows` rows.
#[derive(Debug, Default)]
struct Faults {
    after_rows: AtomicU64,
    times: AtomicU32,
    dropped: AtomicU32,
}

struct Shared {
    config: ServerConfig,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    certificate_pem: Option<String>,
    log: Mutex<Vec<LoggedStatement>>,
    faults: Faults,
    connections: AtomicU64,
    logins_refused: AtomicU64,
}

/// A running server; stops when dropped.
pub struct TdsServer {
    addr: SocketAddr,
    browser_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for TdsServer {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

impl TdsServer {
    /// Binds 127.0.0.1 on a free port (and a UDP port for the SQL Browser when an instance is named).
    pub async fn start(config: ServerConfig) -> io::Result<TdsServer> {
        // Fail now, not at the first login, if the database cannot be opened.
        sql::open(&config.database, &config.database_name)
            .map_err(|e| io::Error::other(format!("{}: {e}", config.database.display())))?;
        let (acceptor, certificate_pem) = match config.encryption {
            Encryption::NotSupported => (None, None),
            _ => {
                let (acceptor, pem) = tls::acceptor()?;
                (Some(acceptor), Some(pem))
            }
        };
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            acceptor,
            certificate_pem,
            log: Mutex::new(Vec::new()),
            faults: Faults::default(),
            connections: AtomicU64::new(0),
            logins_refused: AtomicU64::new(0),
        });
        let mut tasks = Vec::new();
        let accept_shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = accept_shared.clone();
                shared.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(stream, shared).await {
                        tracing::debug!("TDS test server: connection ended: {e}");
                    }
                });
            }
        }));
        let mut browser_addr = None;
        if let Some(instance) = shared.config.instance_name.clone() {
            let socket = UdpSocket::bind("127.0.0.1:0").await?;
            browser_addr = Some(socket.local_addr()?);
            tasks.push(tokio::spawn(browse(socket, instance, addr.port())));
        }
        Ok(TdsServer {
            addr,
            browser_addr,
            shared,
            tasks,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The SQL Browser's UDP port (when an instance name was configured).
    pub fn browser_port(&self) -> Option<u16> {
        self.browser_addr.map(|a| a.port())
    }

    /// The server's self-signed certificate (PEM) when TLS is on.
    pub fn certificate_pem(&self) -> Option<&str> {
        self.shared.certificate_pem.as_deref()
    }

    /// Every statement received so far, in order.
    pub fn statements(&self) -> Vec<LoggedStatement> {
        self.shared.log.lock().expect("log lock").clone()
    }

    /// Statements refused by select-only mode.
    pub fn violations(&self) -> Vec<LoggedStatement> {
        self.statements()
            .into_iter()
            .filter(|s| !s.accepted)
            .collect()
    }

    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    pub fn logins_refused(&self) -> u64 {
        self.shared.logins_refused.load(Ordering::SeqCst)
    }

    /// Cuts the next `times` result sets after `after_rows` rows by dropping the connection.
    pub fn drop_connection_after(&self, after_rows: u64, times: u32) {
        self.shared
            .faults
            .after_rows
            .store(after_rows, Ordering::SeqCst);
        self.shared.faults.times.store(times, Ordering::SeqCst);
    }

    /// How many connections the fault plan has dropped.
    pub fn connections_dropped(&self) -> u32 {
        self.shared.faults.dropped.load(Ordering::SeqCst)
    }
}

/// The SQL Browser ([MC-SQLR]): answers CLNT_UCAST_INST (0x04 + name) for our instance with SVR_RESP.
async fn browse(socket: UdpSocket, instance: String, tcp_port: u16) {
    let mut buf = [0u8; 1024];
    while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
        let asked = String::from_utf8_lossy(&buf[1..n])
            .trim_end_matches('\0')
            .to_string();
        let matches = match buf[0] {
            0x04 => asked.eq_ignore_ascii_case(&instance),
            0x02 | 0x03 => true,
            _ => false,
        };
        if !matches {
            continue;
        }
        let text = format!("ServerName;CUTOVER-TEST;InstanceName;{instance};IsClustered;No;Version;15.0.2000.5;tcp;{tcp_port};;");
        let mut reply = vec![0x05];
        reply.extend_from_slice(&(text.len() as u16).to_le_bytes());
        reply.extend_from_slice(text.as_bytes());
        let _ = socket.send_to(&reply, peer).await;
    }
}

/// The socket before and after TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tls::PreloginWrapped<TcpStream>>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_write(cx, data),
            Conn::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

async fn serve_connection(tcp: TcpStream, shared: Arc<Shared>) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    let config = &shared.config;
    let mut conn = Conn::Plain(tcp);

    // PRELOGIN and the encryption decision (mirroring the client's negotiation).
    let (ty, payload) = protocol::read_message(&mut conn)
        .await?
        .ok_or_else(|| invalid("closed before PRELOGIN".into()))?;
    if ty != protocol::PRELOGIN {
        return Err(invalid(format!(
            "expected PRELOGIN, got packet type 0x{ty:02X}"
        )));
    }
    let prelogin = protocol::parse_prelogin(&payload)?;
    use Encryption::*;
    // Like SQL Server: a server that merely supports TLS (OFF) switches it on when the client asks for it.
    let stance = match (prelogin.encryption, config.encryption) {
        (On | Required, Off) => On,
        (_, stance) => stance,
    };
    protocol::write_message(
        &mut conn,
        protocol::TABULAR_RESULT,
        &protocol::prelogin_reply(stance),
        config.packet_size,
    )
    .await?;
    let (tls, login_only) = match (prelogin.encryption, stance) {
        (NotSupported, NotSupported) => (false, false),
        (Off, Off) => (true, true),
        // The client refuses this combination and hangs up.
        (On | Required, Off | NotSupported) => return Ok(()),
        _ => (true, false),
    };
    if tls {
        let acceptor = shared
            .acceptor
            .clone()
            .ok_or_else(|| invalid("client wants TLS but the server has none".into()))?;
        let Conn::Plain(tcp) = conn else {
            unreachable!("TLS starts on the plain socket")
        };
        let mut stream = acceptor.accept(tls::PreloginWrapped::new(tcp)).await?;
        stream.get_mut().0.handshake_done();
        conn = Conn::Tls(Box::new(stream));
    }

    // LOGIN7
    let (ty, payload) = protocol::read_message(&mut conn)
        .await?
        .ok_or_else(|| invalid("closed before LOGIN7".into()))?;
    if ty != protocol::LOGIN7 {
        return Err(invalid(format!(
            "expected LOGIN7, got packet type 0x{ty:02X}"
        )));
    }
    let login = protocol::parse_login7(&payload)?;
    if login_only {
        // Login-only encryption: the client drops TLS right after sending LOGIN7.
        let Conn::Tls(stream) = conn else {
            unreachable!("login-only TLS ran a handshake")
        };
        let (wrapped, _) = stream.into_inner();
        conn = Conn::Plain(wrapped.into_inner());
    }
    let mut reply = Vec::new();
    let password_ok = config
        .logins
        .iter()
        .any(|(u, p)| *u == login.user && *p == login.password);
    if !password_ok {
        shared.logins_refused.fetch_add(1, Ordering::SeqCst);
        token::message(
            &mut reply,
            true,
            18456,
            14,
            &format!("Login failed for user '{}'.", login.user),
        );
        token::done(&mut reply, protocol::DONE_ERROR, 0, 0);
        protocol::write_message(
            &mut conn,
            protocol::TABULAR_RESULT,
            &reply,
            config.packet_size,
        )
        .await?;
        return Ok(());
    }
    if !config.database_name.is_empty()
        && !login.database.is_empty()
        && !login.database.eq_ignore_ascii_case(&config.database_name)
    {
        token::message(
            &mut reply,
            true,
            4060,
            11,
            &format!(
                "Cannot open database \"{}\" requested by the login. The login failed.",
                login.database
            ),
        );
        token::done(&mut reply, protocol::DONE_ERROR, 0, 0);
        protocol::write_message(
            &mut conn,
            protocol::TABULAR_RESULT,
            &reply,
            config.packet_size,
        )
        .await?;
        return Ok(());
    }
    let packet_size = config.packet_size;
    token::env_change(&mut reply, 1, &config.database_name, "master");
    token::message(
        &mut reply,
        false,
        5701,
        0,
        &format!("Changed database context to '{}'.", config.database_name),
    );
    token::login_ack(&mut reply);
    token::env_change(
        &mut reply,
        4,
        &packet_size.to_string(),
        &packet_size.to_string(),
    );
    token::done(&mut reply, 0, 0, 0);
    protocol::write_message(&mut conn, protocol::TABULAR_RESULT, &reply, packet_size).await?;

    let db = sql::open(&config.database, &config.database_name).map_err(io::Error::other)?;
    let db = Arc::new(Mutex::new(db));
    loop {
        let Some((ty, payload)) = protocol::read_message(&mut conn).await? else {
            return Ok(());
        };
        let (via, statements, params) = match ty {
            protocol::SQL_BATCH => (
                "batch",
                sql::split_statements(&protocol::parse_sql_batch(&payload)?),
                Vec::new(),
            ),
            protocol::RPC => match protocol::parse_rpc(&payload) {
                Ok(rpc) => ("rpc", sql::split_statements(&rpc.statement), rpc.params),
                Err(e) => {
                    let mut out = Vec::new();
                    token::message(&mut out, true, 2812, 16, &e.to_string());
                    token::done(&mut out, protocol::DONE_ERROR, 0, 0);
                    protocol::write_message(&mut conn, protocol::TABULAR_RESULT, &out, packet_size)
                        .await?;
                    continue;
                }
            },
            protocol::ATTENTION => {
                let mut out = Vec::new();
                token::done(&mut out, protocol::DONE_ATTN, 0, 0);
                protocol::write_message(&mut conn, protocol::TABULAR_RESULT, &out, packet_size)
                    .await?;
                continue;
            }
            other => return Err(invalid(format!("unsupported packet type 0x{other:02X}"))),
        };
        if !answer(&mut conn, &shared, &db, via, statements, params).await? {
            // The fault plan dropped the connection.
            let _ = conn.shutdown().await;
            return Ok(());
        }
    }
}

enum Chunk {
    Tokens(Vec<u8>),
    DropConnection,
}

struct ChannelSink<'a> {
    buf: Vec<u8>,
    tx: mpsc::Sender<Chunk>,
    faults: &'a Faults,
    rows: u64,
}

impl sql::TokenSink for ChannelSink<'_> {
    fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
    fn flush(&mut self) -> bool {
        if self.buf.is_empty() {
            return true;
        }
        self.tx
            .blocking_send(Chunk::Tokens(std::mem::take(&mut self.buf)))
            .is_ok()
    }
    fn row_sent(&mut self) -> bool {
        self.rows += 1;
        let after = self.faults.after_rows.load(Ordering::SeqCst);
        self.rows == after
            && self
                .faults
                .times
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| t.checked_sub(1))
                .is_ok()
    }
    fn drop_connection(&mut self) {
        self.faults.dropped.fetch_add(1, Ordering::SeqCst);
        // What was encoded so far goes out (a partial result), then the connection is cut.
        self.flush();
        let _ = self.tx.blocking_send(Chunk::DropConnection);
    }
}

/// Runs a batch's statements and streams the response. Returns false when the connection was dropped on purpose.
async fn answer(
    conn: &mut Conn,
    shared: &Arc<Shared>,
    db: &Arc<Mutex<rusqlite::Connection>>,
    via: &'static str,
    statements: Vec<String>,
    params: Vec<(String, Param)>,
) -> io::Result<bool> {
    let (tx, mut rx) = mpsc::channel::<Chunk>(4);
    let worker_shared = shared.clone();
    let worker_db = db.clone();
    let worker = tokio::task::spawn_blocking(move || {
        let db = worker_db.lock().expect("database lock");
        let mut sink = ChannelSink {
            buf: Vec::new(),
            tx,
            faults: &worker_shared.faults,
            rows: 0,
        };
        let count = statements.len();
        if count == 0 {
            token::done(&mut sink.buf, 0, 0, 0);
            sink.flush();
            return;
        }
        for (i, statement) in statements.iter().enumerate() {
            let more = i + 1 < count;
            let accepted = !worker_shared.config.select_only || sql::is_select(statement);
            worker_shared
                .log
                .lock()
                .expect("log lock")
                .push(LoggedStatement {
                    via,
                    sql: statement.clone(),
                    accepted,
                });
            if !accepted {
                token::message(
                    &mut sink.buf,
                    true,
                    3906,
                    16,
                    "Failed to update database \"PANDA\" because the database is read-only (test server: SELECT only).",
                );
                token::done(
                    &mut sink.buf,
                    protocol::DONE_ERROR | if more { protocol::DONE_MORE } else { 0 },
                    0,
                    0,
                );
                if !sink.flush() {
                    return;
                }
                continue;
            }
            sink.rows = 0;
            if !sql::run_statement(&db, statement, &params, more, &mut sink) {
                return;
            }
        }
    });
    let mut writer = PacketWriter::new(protocol::TABULAR_RESULT, shared.config.packet_size);
    let mut dropped = false;
    while let Some(chunk) = rx.recv().await {
        match chunk {
            Chunk::Tokens(bytes) => {
                writer.extend(&bytes);
                writer.write_full(conn).await?;
            }
            Chunk::DropConnection => {
                dropped = true;
                break;
            }
        }
    }
    drop(rx);
    worker.await.map_err(io::Error::other)?;
    if dropped {
        conn.flush().await?;
        return Ok(false);
    }
    writer.finish(conn).await?;
    Ok(true)
}
