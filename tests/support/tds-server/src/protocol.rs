//! The TDS 7.4 wire format the server speaks ([MS-TDS]): packet framing,
//! PRELOGIN, LOGIN7, the response tokens, and the RPC parameters of
//! `sp_executesql`. Multi-byte integers are little-endian except the packet
//! header's length and SPID and the LOGINACK TDS version.

use std::io;

use chrono::{Duration, NaiveDate};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const HEADER_LEN: usize = 8;
pub const SQL_BATCH: u8 = 0x01;
pub const RPC: u8 = 0x03;
pub const TABULAR_RESULT: u8 = 0x04;
pub const ATTENTION: u8 = 0x06;
pub const LOGIN7: u8 = 0x10;
pub const PRELOGIN: u8 = 0x12;

const STATUS_EOM: u8 = 0x01;

pub const DONE_MORE: u16 = 0x01;
pub const DONE_ERROR: u16 = 0x02;
pub const DONE_COUNT: u16 = 0x10;
pub const DONE_ATTN: u16 = 0x20;
pub const CMD_SELECT: u16 = 0xC1;

/// The TDS version the server acknowledges (7.4).
pub const TDS_74: u32 = 0x7400_0004;

/// Reads one message (all packets up to EOM). `None` when the peer closed before a header.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut payload = Vec::new();
    let mut first_type = None;
    loop {
        let mut header = [0u8; HEADER_LEN];
        match r.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && first_type.is_none() => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
        let len = u16::from_be_bytes([header[2], header[3]]) as usize;
        if len < HEADER_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "packet length shorter than its header",
            ));
        }
        let start = payload.len();
        payload.resize(start + len - HEADER_LEN, 0);
        r.read_exact(&mut payload[start..]).await?;
        first_type.get_or_insert(header[0]);
        if header[1] & STATUS_EOM != 0 {
            return Ok(Some((first_type.unwrap_or(header[0]), payload)));
        }
    }
}

/// Splits a response into packets of the negotiated size; only the last carries EOM.
pub struct PacketWriter {
    packet_type: u8,
    packet_size: usize,
    pending: Vec<u8>,
    packet_id: u8,
}

impl PacketWriter {
    pub fn new(packet_type: u8, packet_size: usize) -> Self {
        PacketWriter {
            packet_type,
            packet_size: packet_size.max(512),
            pending: Vec::new(),
            packet_id: 1,
        }
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    fn packet(&mut self, body_len: usize, last: bool) -> Vec<u8> {
        let mut packet = Vec::with_capacity(body_len + HEADER_LEN);
        packet.push(self.packet_type);
        packet.push(if last { STATUS_EOM } else { 0 });
        packet.extend_from_slice(&((body_len + HEADER_LEN) as u16).to_be_bytes());
        packet.extend_from_slice(&[0, 0, self.packet_id, 0]);
        packet.extend(self.pending.drain(..body_len));
        self.packet_id = self.packet_id.wrapping_add(1);
        packet
    }

    /// Writes every full packet buffered so far (not the remainder).
    pub async fn write_full<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> io::Result<()> {
        let body = self.packet_size - HEADER_LEN;
        let mut out = Vec::new();
        // Keep at least one byte back so the message always ends with a packet carrying EOM.
        while self.pending.len() > body {
            out.extend(self.packet(body, false));
        }
        if !out.is_empty() {
            w.write_all(&out).await?;
        }
        Ok(())
    }

    /// Writes the rest, the last packet flagged end-of-message, and flushes.
    pub async fn finish<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> io::Result<()> {
        self.write_full(w).await?;
        let rest = self.pending.len();
        let last = self.packet(rest, true);
        w.write_all(&last).await?;
        w.flush().await
    }
}

/// PRELOGIN ENCRYPTION values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    Off = 0,
    On = 1,
    NotSupported = 2,
    Required = 3,
}

impl Encryption {
    fn from_wire(b: u8) -> Encryption {
        match b {
            0 => Encryption::Off,
            1 => Encryption::On,
            3 => Encryption::Required,
            _ => Encryption::NotSupported,
        }
    }
}

/// What the client asked for in PRELOGIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prelogin {
    pub encryption: Encryption,
    pub instance: Option<String>,
}

pub fn parse_prelogin(payload: &[u8]) -> io::Result<Prelogin> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, format!("PRELOGIN: {m}"));
    let mut encryption = Encryption::NotSupported;
    let mut instance = None;
    let mut i = 0;
    loop {
        let token = *payload
            .get(i)
            .ok_or_else(|| bad("option table not terminated"))?;
        if token == 0xFF {
            break;
        }
        let field = payload
            .get(i + 1..i + 5)
            .ok_or_else(|| bad("option entry cut short"))?;
        let offset = u16::from_be_bytes([field[0], field[1]]) as usize;
        let len = u16::from_be_bytes([field[2], field[3]]) as usize;
        let data = payload
            .get(offset..offset + len)
            .ok_or_else(|| bad("option data out of range"))?;
        match token {
            0x01 if len >= 1 => encryption = Encryption::from_wire(data[0]),
            0x02 => {
                let name: String = data
                    .iter()
                    .take_while(|b| **b != 0)
                    .map(|b| *b as char)
                    .collect();
                if !name.is_empty() {
                    instance = Some(name);
                }
            }
            _ => {}
        }
        i += 5;
    }
    Ok(Prelogin {
        encryption,
        instance,
    })
}

pub fn prelogin_reply(encryption: Encryption) -> Vec<u8> {
    // VERSION (15.0.2000), ENCRYPTION, INSTOPT (valid: a lone NUL), THREADID, MARS off.
    let options: [(u8, Vec<u8>); 5] = [
        (0x00, vec![15, 0, 0x07, 0xD0, 0, 0]),
        (0x01, vec![encryption as u8]),
        (0x02, vec![0]),
        (0x03, vec![0, 0, 0, 0]),
        (0x04, vec![0]),
    ];
    let mut table = Vec::new();
    let mut data = Vec::new();
    let data_start = options.len() * 5 + 1;
    for (token, value) in &options {
        table.push(*token);
        table.extend_from_slice(&((data_start + data.len()) as u16).to_be_bytes());
        table.extend_from_slice(&(value.len() as u16).to_be_bytes());
        data.extend_from_slice(value);
    }
    table.push(0xFF);
    table.extend(data);
    table
}

/// The parts of LOGIN7 the server checks.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub user: String,
    pub password: String,
    pub database: String,
    pub app_name: String,
    pub packet_size: u32,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

pub fn parse_login7(payload: &[u8]) -> io::Result<Login> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, format!("LOGIN7: {m}"));
    if payload.len() < 94 {
        return Err(bad("shorter than the 94-byte fixed part"));
    }
    let u16_at = |at: usize| u16::from_le_bytes([payload[at], payload[at + 1]]) as usize;
    let field = |at: usize| -> io::Result<&[u8]> {
        let (offset, chars) = (u16_at(at), u16_at(at + 2));
        payload
            .get(offset..offset + chars * 2)
            .ok_or_else(|| bad("string field out of range"))
    };
    let utf16 = |bytes: &[u8]| -> String {
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    };
    let password: Vec<u8> = field(44)?
        .iter()
        .map(|b| (b ^ 0xA5).rotate_left(4))
        .collect();
    Ok(Login {
        user: utf16(field(40)?),
        password: utf16(&password),
        app_name: utf16(field(48)?),
        database: utf16(field(68)?),
        packet_size: u32::from_le_bytes([payload[8], payload[9], payload[10], payload[11]]),
    })
}

fn b_varchar(out: &mut Vec<u8>, s: &str) {
    let units: Vec<u16> = s.encode_utf16().collect();
    out.push(units.len() as u8);
    units
        .iter()
        .for_each(|u| out.extend_from_slice(&u.to_le_bytes()));
}

fn us_varchar(out: &mut Vec<u8>, s: &str) {
    let units: Vec<u16> = s.encode_utf16().collect();
    out.extend_from_slice(&(units.len() as u16).to_le_bytes());
    units
        .iter()
        .for_each(|u| out.extend_from_slice(&u.to_le_bytes()));
}

/// Response token encoders.
pub mod token {
    use super::*;

    pub fn env_change(out: &mut Vec<u8>, kind: u8, new: &str, old: &str) {
        let mut body = vec![kind];
        b_varchar(&mut body, new);
        b_varchar(&mut body, old);
        out.push(0xE3);
        out.extend_from_slice(&(body.len() as u16).to_le_bytes());
        out.extend(body);
    }

    pub fn login_ack(out: &mut Vec<u8>) {
        let mut body = vec![1];
        body.extend_from_slice(&TDS_74.to_be_bytes());
        b_varchar(&mut body, "Microsoft SQL Server");
        body.extend_from_slice(&[15, 0, 0x07, 0xD0]);
        out.push(0xAD);
        out.extend_from_slice(&(body.len() as u16).to_le_bytes());
        out.extend(body);
    }

    /// ERROR (0xAA) or INFO (0xAB).
    pub fn message(out: &mut Vec<u8>, error: bool, number: i32, class: u8, text: &str) {
        let mut body = Vec::new();
        body.extend_from_slice(&number.to_le_bytes());
        body.push(1); // state
        body.push(class);
        us_varchar(&mut body, text);
        b_varchar(&mut body, "CUTOVER-TDS-TEST");
        b_varchar(&mut body, "");
        body.extend_from_slice(&1i32.to_le_bytes());
        out.push(if error { 0xAA } else { 0xAB });
        out.extend_from_slice(&(body.len() as u16).to_le_bytes());
        out.extend(body);
    }

    pub fn done(out: &mut Vec<u8>, status: u16, command: u16, rows: u64) {
        out.push(0xFD);
        out.extend_from_slice(&status.to_le_bytes());
        out.extend_from_slice(&command.to_le_bytes());
        out.extend_from_slice(&rows.to_le_bytes());
    }

    pub fn col_metadata(out: &mut Vec<u8>, columns: &[(String, crate::types::ColType, bool)]) {
        out.push(0x81);
        out.extend_from_slice(&(columns.len() as u16).to_le_bytes());
        for (name, ty, nullable) in columns {
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&(if *nullable { 0x0001u16 } else { 0 }).to_le_bytes());
            ty.write_type_info(out);
            b_varchar(out, name);
        }
    }
}

/// A decoded `sp_executesql` parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

/// `sp_executesql`: the statement and its `@P1…@Pn` values in order.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecuteSql {
    pub statement: String,
    pub params: Vec<(String, Param)>,
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let slice = self
            .buf
            .get(self.at..self.at + n)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "RPC: message cut short"))?;
        self.at += n;
        Ok(slice)
    }
    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> io::Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> io::Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    fn le_uint(&mut self, n: usize) -> io::Result<u64> {
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(self.take(n)?);
        Ok(u64::from_le_bytes(v))
    }
    fn plp(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.u64()? == u64::MAX {
            return Ok(None);
        }
        let mut out = Vec::new();
        loop {
            let chunk = self.u32()? as usize;
            if chunk == 0 {
                return Ok(Some(out));
            }
            out.extend_from_slice(self.take(chunk)?);
        }
    }
}

/// Skips ALL_HEADERS at the start of a batch or RPC message; returns where the body starts.
pub fn skip_all_headers(payload: &[u8]) -> io::Result<usize> {
    let total = payload
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "ALL_HEADERS missing"))?;
    if total > payload.len() || total < 4 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "ALL_HEADERS length out of range",
        ));
    }
    Ok(total)
}

pub fn parse_sql_batch(payload: &[u8]) -> io::Result<String> {
    let body = &payload[skip_all_headers(payload)?..];
    let units: Vec<u16> = body
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    Ok(String::from_utf16_lossy(&units))
}

/// Decodes an RPC request for `sp_executesql` (procedure id 10). Other procedures are refused.
pub fn parse_rpc(payload: &[u8]) -> io::Result<ExecuteSql> {
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, format!("RPC: {m}"));
    let mut r = Reader {
        buf: payload,
        at: skip_all_headers(payload)?,
    };
    let name_len = r.u16()?;
    if name_len != 0xFFFF {
        let name = r.take(name_len as usize * 2)?;
        let units: Vec<u16> = name
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        return Err(bad(format!(
            "only sp_executesql is supported, not {}",
            String::from_utf16_lossy(&units)
        )));
    }
    let proc_id = r.u16()?;
    if proc_id != 10 {
        return Err(bad(format!(
            "only sp_executesql (id 10) is supported, not procedure id {proc_id}"
        )));
    }
    r.u16()?; // option flags
    let mut values = Vec::new();
    while r.at < payload.len() {
        let name_chars = r.u8()? as usize;
        let name_bytes = r.take(name_chars * 2)?;
        let units: Vec<u16> = name_bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let name = String::from_utf16_lossy(&units);
        r.u8()?; // status flags
        values.push((name, read_param_value(&mut r)?));
    }
    let mut values = values.into_iter();
    let statement = match values.next() {
        Some((_, Param::Text(s))) => s,
        _ => {
            return Err(bad(
                "the first sp_executesql parameter must be the statement text".into(),
            ))
        }
    };
    // The second parameter is the declaration list (absent when there are no parameters).
    let params: Vec<(String, Param)> = values.skip(1).collect();
    Ok(ExecuteSql { statement, params })
}

fn read_param_value(r: &mut Reader<'_>) -> io::Result<Param> {
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, format!("RPC parameter: {m}"));
    let ty = r.u8()?;
    let utf16 = |b: &[u8]| {
        let units: Vec<u16> = b
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    };
    let epoch = NaiveDate::from_ymd_opt(1, 1, 1).expect("valid date");
    Ok(match ty {
        // INTN, BITN
        0x26 | 0x68 => {
            r.u8()?;
            match r.u8()? as usize {
                0 => Param::Null,
                n => {
                    let v = r.le_uint(n)?;
                    let shift = 64 - 8 * n as u32;
                    Param::Int(((v << shift) as i64) >> shift)
                }
            }
        }
        // FLTN
        0x6D => {
            r.u8()?;
            match r.u8()? {
                0 => Param::Null,
                4 => {
                    Param::Float(f32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes")) as f64)
                }
                _ => Param::Float(f64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"))),
            }
        }
        // NVARCHAR / NCHAR, BIGVARCHAR / BIGCHAR, BIGVARBINARY / BIGBINARY
        0xE7 | 0xEF | 0xA7 | 0xAF | 0xA5 | 0xAD => {
            let max = r.u16()?;
            if matches!(ty, 0xE7 | 0xEF | 0xA7 | 0xAF) {
                r.take(5)?;
            }
            let bytes = if max == 0xFFFF {
                r.plp()?
            } else {
                match r.u16()? {
                    0xFFFF => None,
                    n => Some(r.take(n as usize)?.to_vec()),
                }
            };
            match (bytes, ty) {
                (None, _) => Param::Null,
                (Some(b), 0xE7 | 0xEF) => Param::Text(utf16(&b)),
                (Some(b), 0xA7 | 0xAF) => Param::Text(b.iter().map(|c| *c as char).collect()),
                (Some(b), _) => Param::Bytes(b),
            }
        }
        // DATEN
        0x28 => match r.u8()? {
            0 => Param::Null,
            _ => {
                let days = r.le_uint(3)? as i64;
                Param::Text(
                    (epoch + Duration::days(days))
                        .format("%Y-%m-%d")
                        .to_string(),
                )
            }
        },
        // DATETIME2N / TIMEN / DATETIMEOFFSETN
        0x29..=0x2B => {
            let scale = r.u8()? as u32;
            let len = r.u8()? as usize;
            if len == 0 {
                return Ok(Param::Null);
            }
            let time_len = match scale {
                0..=2 => 3,
                3..=4 => 4,
                _ => 5,
            };
            let increments = r.le_uint(time_len)?;
            let nanos = increments * 10u64.pow(9 - scale);
            let time = chrono::NaiveTime::from_hms_opt(0, 0, 0).expect("midnight")
                + Duration::nanoseconds(nanos as i64);
            if ty == 0x29 {
                return Ok(Param::Text(time.format("%H:%M:%S%.3f").to_string()));
            }
            let days = r.le_uint(3)? as i64;
            if ty == 0x2B {
                r.take(2)?;
            }
            let at = (epoch + Duration::days(days)).and_time(time);
            Param::Text(at.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        }
        // DECIMALN / NUMERICN
        0x6A | 0x6C => {
            r.u8()?;
            r.u8()?;
            let scale = r.u8()?;
            match r.u8()? as usize {
                0 => Param::Null,
                n => {
                    let sign = r.u8()?;
                    let mut mag = [0u8; 16];
                    mag[..n - 1].copy_from_slice(r.take(n - 1)?);
                    let mut value = u128::from_le_bytes(mag) as i128;
                    if sign == 0 {
                        value = -value;
                    }
                    let d = rust_decimal::Decimal::try_from_i128_with_scale(value, scale.into())
                        .map_err(|e| bad(e.to_string()))?;
                    Param::Text(d.to_string())
                }
            }
        }
        other => return Err(bad(format!("unsupported parameter type 0x{other:02X}"))),
    })
}

pub async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    packet_type: u8,
    body: &[u8],
    packet_size: usize,
) -> io::Result<()> {
    let mut writer = PacketWriter::new(packet_type, packet_size);
    writer.extend(body);
    writer.finish(w).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_unscrambled_xor_then_nibble_swap() {
        // Client: swap nibbles, then XOR 0xA5.
        let scramble = |b: u8| b.rotate_left(4) ^ 0xA5;
        let mut payload = vec![0u8; 94];
        let mut strings = Vec::new();
        let mut put = |at: usize, s: &str, scrambled: bool, payload: &mut Vec<u8>| {
            let offset = 94 + strings.len();
            let mut bytes: Vec<u8> = s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
            if scrambled {
                bytes = bytes.into_iter().map(scramble).collect();
            }
            payload[at..at + 2].copy_from_slice(&(offset as u16).to_le_bytes());
            payload[at + 2..at + 4]
                .copy_from_slice(&(s.encode_utf16().count() as u16).to_le_bytes());
            strings.extend(bytes);
        };
        put(40, "panda_ro", false, &mut payload);
        put(44, "s3cr€t", true, &mut payload);
        put(48, "tiberius", false, &mut payload);
        put(68, "PANDA", false, &mut payload);
        payload.extend(strings);
        let login = parse_login7(&payload).unwrap();
        assert_eq!(login.user, "panda_ro");
        assert_eq!(login.password, "s3cr€t");
        assert_eq!(login.database, "PANDA");
        assert!(!format!("{login:?}").contains("s3cr"));
    }

    #[test]
    fn prelogin_reply_round_trips_through_the_parser() {
        let parsed = parse_prelogin(&prelogin_reply(Encryption::Required)).unwrap();
        assert_eq!(parsed.encryption, Encryption::Required);
        assert_eq!(parsed.instance, None);
    }

    #[tokio::test]
    async fn long_responses_split_into_full_packets_and_only_the_last_ends_the_message() {
        let mut wire = Vec::new();
        write_message(&mut wire, TABULAR_RESULT, &vec![9u8; 10_000], 4096)
            .await
            .unwrap();
        let mut cursor = &wire[..];
        let mut statuses = Vec::new();
        let mut lengths = Vec::new();
        while !cursor.is_empty() {
            let len = u16::from_be_bytes([cursor[2], cursor[3]]) as usize;
            statuses.push(cursor[1]);
            lengths.push(len);
            cursor = &cursor[len..];
        }
        assert_eq!(statuses, vec![0, 0, 1]);
        assert_eq!(lengths[..2], [4096, 4096]);
        let (ty, payload) = read_message(&mut &wire[..]).await.unwrap().unwrap();
        assert_eq!((ty, payload.len()), (TABULAR_RESULT, 10_000));
    }
}
