//! TLS the TDS way: during the handshake the TLS records travel inside
//! PRELOGIN packets; afterwards they go bare on the socket. The certificate
//! is self-signed, generated at start with rcgen (clients must trust it
//! explicitly, like SQL Express's own).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use crate::protocol::{HEADER_LEN, PRELOGIN};

/// A TLS acceptor with a fresh self-signed certificate for `localhost` and 127.0.0.1,
/// and that certificate in PEM (for clients that pin it as their CA).
pub fn acceptor() -> io::Result<(TlsAcceptor, String)> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(io::Error::other)?;
    let pem = certified.cert.pem();
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(io::Error::other)?
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .map_err(io::Error::other)?;
    // TLS 1.3 session tickets would follow the handshake after the client has stopped
    // unwrapping PRELOGIN packets; SQL Server sends none either.
    config.send_tls13_tickets = 0;
    Ok((TlsAcceptor::from(Arc::new(config)), pem))
}

/// Wraps handshake records in PRELOGIN packets (and unwraps the client's), then gets out of the way.
pub struct PreloginWrapped<S> {
    inner: S,
    handshaking: bool,
    header: [u8; HEADER_LEN],
    header_read: usize,
    remaining: usize,
    pending_write: Vec<u8>,
    written: usize,
    replay: Vec<u8>,
}

impl<S> PreloginWrapped<S> {
    pub fn new(inner: S) -> Self {
        PreloginWrapped {
            inner,
            handshaking: true,
            header: [0; HEADER_LEN],
            header_read: 0,
            remaining: 0,
            pending_write: Vec::new(),
            written: 0,
            replay: Vec::new(),
        }
    }

    pub fn handshake_done(&mut self) {
        self.handshaking = false;
    }

    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PreloginWrapped<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n]);
            this.replay.drain(..n);
            return Poll::Ready(Ok(()));
        }
        if !this.handshaking {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        while this.remaining == 0 {
            while this.header_read < HEADER_LEN {
                let mut hb = ReadBuf::new(&mut this.header[this.header_read..]);
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut hb))?;
                let n = hb.filled().len();
                if n == 0 {
                    return Poll::Ready(Ok(()));
                }
                this.header_read += n;
            }
            if this.header[0] != PRELOGIN {
                // The TLS reader reads ahead after the client's last handshake message; what follows
                // is already a bare TLS record (the client's LOGIN7): hand those bytes back unchanged.
                this.handshaking = false;
                this.header_read = 0;
                this.replay = this.header.to_vec();
                let n = this.replay.len().min(buf.remaining());
                buf.put_slice(&this.replay[..n]);
                this.replay.drain(..n);
                return Poll::Ready(Ok(()));
            }
            let len = u16::from_be_bytes([this.header[2], this.header[3]]) as usize;
            this.remaining = len.saturating_sub(HEADER_LEN);
            this.header_read = 0;
        }
        let max = this.remaining.min(buf.remaining());
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(max));
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut limited))?;
        let n = limited.filled().len();
        buf.advance(n);
        this.remaining -= n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PreloginWrapped<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.handshaking && this.pending_write.is_empty() {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        if this.pending_write.is_empty() {
            this.pending_write
                .extend_from_slice(&[PRELOGIN, 0x01, 0, 0, 0, 0, 0, 0]);
        }
        this.pending_write.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pending_write.is_empty() {
            if this.written == 0 {
                let len = this.pending_write.len() as u16;
                this.pending_write[2..4].copy_from_slice(&len.to_be_bytes());
            }
            while this.written < this.pending_write.len() {
                let n =
                    ready!(Pin::new(&mut this.inner)
                        .poll_write(cx, &this.pending_write[this.written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                this.written += n;
            }
            this.pending_write.clear();
            this.written = 0;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
