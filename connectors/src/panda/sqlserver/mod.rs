//! The SQL Server source: PANDA Perio's database read through tiberius,
//! strictly with SELECT statements.
//!
//! Discovery reads INFORMATION_SCHEMA (tables, columns, primary keys) and
//! counts rows with `COUNT_BIG(*)`. A table streams in primary-key order from
//! one SELECT through a bounded channel, so memory does not grow with the
//! table. If the connection drops mid-stream, the extract reconnects and
//! resumes after the last key it delivered (keyset, no OFFSET), a bounded
//! number of times; then it fails with `SourceError::Interrupted` — a short
//! extract is never reported as complete. Values are typed to the reference
//! schema where the column is a reference column (coercing text-stored dates
//! and numbers), else to the server's own type.

pub mod client;
pub mod config;
pub mod convert;
pub mod query;
pub mod retry;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use cutover_engine::{
    Inventory, Source, SourceError, SourceItem, SourceKey, SourceRecord, SourceStream, TableInfo,
    Value, Watermark,
};
use futures::TryStreamExt;
use tokio::sync::{mpsc, Mutex};

pub use config::{Encrypt, SqlServerConfig, PASSWORD_VAR};
pub use retry::RetryPolicy;

use crate::panda::reference::{reference_table, SqlType};
use client::{connect, is_connection_loss, query_error, SqlClient};
use query::{KeyParam, Select};

/// Log filter directives a subscriber must add so patient data never reaches
/// the logs: tiberius logs every row it decodes (`TokenRow { data: … }`) at
/// TRACE under this target. The CLI applies them on top of `RUST_LOG`.
pub const LOG_DIRECTIVES_WITHOUT_PHI: &[&str] = &["tiberius::tds::stream::token=off"];

/// Rows buffered between the socket reader and the consumer.
const CHANNEL_ROWS: usize = 256;

/// A PANDA Perio SQL Server, read-only.
pub struct SqlServerSource {
    config: SqlServerConfig,
    /// Tables, columns and keys (no counts), read once.
    layout: Mutex<Option<Arc<Vec<TableInfo>>>>,
}

impl SqlServerSource {
    /// Checks the connection and the login now, so a bad host or password fails here.
    pub async fn open(config: SqlServerConfig) -> Result<SqlServerSource, SourceError> {
        let source = SqlServerSource {
            config,
            layout: Mutex::new(None),
        };
        let mut client = connect(&source.config).await?;
        let layout = source.read_layout(&mut client).await?;
        *source.layout.lock().await = Some(Arc::new(layout));
        Ok(source)
    }

    /// Opens `sqlserver:<ADO string>`'s ADO part with the password from `CUTOVER_SQL_PASSWORD`.
    pub async fn from_ado(ado: &str) -> Result<SqlServerSource, SourceError> {
        SqlServerSource::open(SqlServerConfig::from_env(ado)?).await
    }

    fn place(&self) -> String {
        self.config.describe()
    }

    async fn layout(&self) -> Result<Arc<Vec<TableInfo>>, SourceError> {
        let mut guard = self.layout.lock().await;
        if let Some(layout) = guard.as_ref() {
            return Ok(layout.clone());
        }
        let mut client = connect(&self.config).await?;
        let layout = Arc::new(self.read_layout(&mut client).await?);
        *guard = Some(layout.clone());
        Ok(layout)
    }

    async fn read_layout(&self, client: &mut SqlClient) -> Result<Vec<TableInfo>, SourceError> {
        let place = self.place();
        let tables = all_rows(client, query::TABLES, &place).await?;
        let columns = all_rows(client, query::COLUMNS, &place).await?;
        // Servers without constraint views (or CSV-backed bridges) simply report no keys.
        let keys = all_rows(client, query::PRIMARY_KEYS, &place)
            .await
            .unwrap_or_default();
        let mut out = Vec::new();
        for table in tables {
            let name = text_cell(&table, 0);
            let mut info = TableInfo {
                name: name.clone(),
                columns: Vec::new(),
                row_count: 0,
                primary_key: Vec::new(),
                modified_column: None,
            };
            for c in columns.iter().filter(|c| text_cell(c, 0) == name) {
                info.columns.push(query::column_info(c));
            }
            info.primary_key = keys
                .iter()
                .filter(|k| text_cell(k, 0) == name)
                .map(|k| text_cell(k, 1))
                .collect();
            if info.primary_key.is_empty() {
                // No declared key: use the reference key when this is a reference table that has its columns.
                if let Some(reference) = reference_table(&name) {
                    let names: Option<Vec<String>> = reference
                        .primary_key
                        .iter()
                        .map(|k| {
                            info.columns
                                .iter()
                                .find(|c| c.name.eq_ignore_ascii_case(k))
                                .map(|c| c.name.clone())
                        })
                        .collect();
                    info.primary_key = names.unwrap_or_default();
                }
            }
            info.modified_column = info
                .columns
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case("ModifiedAt"))
                .map(|c| c.name.clone());
            out.push(info);
        }
        Ok(out)
    }

    async fn table(&self, entity: &str) -> Result<TableInfo, SourceError> {
        self.layout()
            .await?
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(entity))
            .cloned()
            .ok_or_else(|| SourceError::MissingTable {
                table: entity.to_string(),
                place: self.place(),
            })
    }

    async fn count_with(&self, client: &mut SqlClient, table: &str) -> Result<u64, SourceError> {
        let place = self.place();
        let sql = format!("SELECT COUNT_BIG(*) FROM {}", query::table_ref(table));
        let row = client
            .simple_query(sql)
            .await
            .map_err(|e| query_error(&place, Some(table), e))?
            .into_row()
            .await
            .map_err(|e| query_error(&place, Some(table), e))?
            .ok_or_else(|| SourceError::Malformed {
                place: place.clone(),
                message: format!("no row count for {table}"),
            })?;
        let cell = row
            .into_iter()
            .next()
            .ok_or_else(|| SourceError::Malformed {
                place: place.clone(),
                message: "empty row count".into(),
            })?;
        match convert::convert(cell, None, false) {
            Ok(Value::Int(n)) if n >= 0 => Ok(n as u64),
            _ => Err(SourceError::Malformed {
                place,
                message: format!("the row count of {table} is not a number"),
            }),
        }
    }
}

/// Reads every row of a small catalog query, as text/int cells.
async fn all_rows(
    client: &mut SqlClient,
    sql: &str,
    place: &str,
) -> Result<Vec<Vec<Value>>, SourceError> {
    let rows = client
        .simple_query(sql)
        .await
        .map_err(|e| query_error(place, None, e))?
        .into_first_result()
        .await
        .map_err(|e| query_error(place, None, e))?;
    Ok(rows
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|cell| convert::convert(cell, None, false).unwrap_or(Value::Null))
                .collect()
        })
        .collect())
}

fn text_cell(row: &[Value], i: usize) -> String {
    match row.get(i) {
        Some(Value::Text(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

#[async_trait]
impl Source for SqlServerSource {
    fn describe(&self) -> String {
        self.place()
    }

    async fn discover(&self) -> Result<Inventory, SourceError> {
        let mut client = connect(&self.config).await?;
        let layout = self.read_layout(&mut client).await?;
        let mut tables = Vec::with_capacity(layout.len());
        for mut table in layout.iter().cloned() {
            table.row_count = self.count_with(&mut client, &table.name).await?;
            tables.push(table);
        }
        *self.layout.lock().await = Some(Arc::new(layout));
        Ok(Inventory { tables })
    }

    async fn count(&self, entity: &str) -> Result<u64, SourceError> {
        let table = self.table(entity).await?;
        let mut client = connect(&self.config).await?;
        self.count_with(&mut client, &table.name).await
    }

    async fn stream(
        &self,
        entity: &str,
        since: Option<Watermark>,
    ) -> Result<SourceStream, SourceError> {
        let table = self.table(entity).await?;
        let plan = Arc::new(Plan::new(table, since, self.place()));
        // Connect now so a refused login or a dead host fails the call, not the first item.
        let client = connect(&self.config).await?;
        let (tx, rx) = mpsc::channel(CHANNEL_ROWS);
        tokio::spawn(extract(self.config.clone(), plan, client, tx));
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })))
    }
}

/// What one table's extract reads and how it types it.
struct Plan {
    table: TableInfo,
    /// Per column: the target type and whether the server pads it (CHAR/NCHAR).
    targets: Vec<(Option<SqlType>, bool)>,
    key_indexes: Vec<usize>,
    modified_index: Option<usize>,
    /// Delta filter sent to the server (`ModifiedAt > @P1`) when the column is a real timestamp.
    watermark: Option<Watermark>,
    /// Delta filter applied here when the install keeps ModifiedAt as text (text order is not time order).
    client_watermark: Option<Watermark>,
    place: String,
}

impl Plan {
    fn new(table: TableInfo, since: Option<Watermark>, place: String) -> Plan {
        let reference = reference_table(&table.name);
        let targets = table
            .columns
            .iter()
            .map(|c| {
                let own = SqlType::parse(&c.sql_type).ok();
                let target = reference
                    .and_then(|r| r.column(&c.name))
                    .map(|rc| rc.sql_type)
                    .or(own);
                (
                    target,
                    matches!(own, Some(SqlType::Char(_) | SqlType::NChar(_))),
                )
            })
            .collect();
        let index = |name: &str| {
            table
                .columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(name))
        };
        let key_indexes = table.primary_key.iter().filter_map(|k| index(k)).collect();
        let modified_index = table.modified_column.as_deref().and_then(index);
        let since = since.filter(|_| modified_index.is_some());
        let server_side = modified_index.is_some_and(|i| {
            matches!(
                SqlType::parse(&table.columns[i].sql_type),
                Ok(SqlType::DateTime2(_) | SqlType::Date)
            )
        });
        let (watermark, client_watermark) = if server_side {
            (since, None)
        } else {
            (None, since)
        };
        Plan {
            table,
            targets,
            key_indexes,
            modified_index,
            watermark,
            client_watermark,
            place,
        }
    }

    fn select(&self, resume_after: Option<&[Value]>) -> Select {
        let modified = self
            .modified_index
            .map(|i| (&self.table.columns[i], self.watermark));
        query::select(
            &self.table,
            modified.and_then(|(c, w)| w.map(|w| (c, w))),
            resume_after,
        )
    }

    /// The row as an item, plus its key values (for resuming) when the key converted.
    fn record(
        &self,
        cells: Vec<tiberius::ColumnData<'static>>,
    ) -> (SourceItem, Option<Vec<Value>>) {
        let mut fields = BTreeMap::new();
        let mut failures = Vec::new();
        for ((cell, column), (target, padded)) in cells
            .into_iter()
            .zip(&self.table.columns)
            .zip(&self.targets)
        {
            match convert::convert(cell, *target, *padded) {
                Ok(v) => {
                    fields.insert(column.name.clone(), v);
                }
                Err(reason) => {
                    failures.push((column.name.clone(), reason));
                    fields.insert(column.name.clone(), Value::Null);
                }
            }
        }
        let key_values: Vec<Value> = self
            .key_indexes
            .iter()
            .map(|i| fields[&self.table.columns[*i].name].clone())
            .collect();
        let key_complete = !key_values.is_empty() && key_values.iter().all(|v| !v.is_null());
        let key =
            key_complete.then(|| SourceKey::from_parts(key_values.iter().map(|v| v.to_string())));
        let resume_key = key_complete.then_some(key_values);
        if !failures.is_empty() {
            let columns: Vec<&str> = failures.iter().map(|(c, _)| c.as_str()).collect();
            let reasons: Vec<String> = failures.iter().map(|(c, r)| format!("{c}: {r}")).collect();
            let item = SourceItem::Unreadable {
                entity: self.table.name.clone(),
                key: key.clone(),
                place: format!(
                    "{} table {} key {} column {}",
                    self.place,
                    self.table.name,
                    key.as_ref()
                        .map(|k| k.to_string())
                        .unwrap_or_else(|| "?".into()),
                    columns.join(", ")
                ),
                reason: reasons.join("; "),
            };
            return (item, resume_key);
        }
        let modified_at =
            self.modified_index
                .and_then(|i| match &fields[&self.table.columns[i].name] {
                    Value::DateTime(t) => Some(*t),
                    _ => None,
                });
        let record = SourceRecord {
            entity: self.table.name.clone(),
            // A keyless table (no declared or reference key) keys rows by content.
            key: key.unwrap_or_else(|| SourceKey::new(content_key(&fields))),
            fields,
            modified_at,
        };
        (SourceItem::Record(record), resume_key)
    }
}

/// A content-derived key for rows of a table without a primary key.
fn content_key(fields: &BTreeMap<String, Value>) -> String {
    let probe = SourceRecord {
        entity: String::new(),
        key: SourceKey::new(""),
        fields: fields.clone(),
        modified_at: None,
    };
    probe.content_hash()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

enum Outcome {
    Complete,
    ConsumerGone,
}

/// Reads the table into `tx`, resuming after connection losses; ends with an error item when it cannot finish.
async fn extract(
    config: SqlServerConfig,
    plan: Arc<Plan>,
    first: SqlClient,
    tx: mpsc::Sender<Result<SourceItem, SourceError>>,
) {
    let mut client = Some(first);
    let mut last_key: Option<Vec<Value>> = None;
    let mut rows_read = 0u64;
    let mut resumes = 0u32;
    loop {
        let attempt = match client.take() {
            Some(c) => Ok(c),
            None => connect(&config).await,
        };
        let result = match attempt {
            Ok(mut c) => read_once(&mut c, &plan, &tx, &mut last_key, &mut rows_read).await,
            Err(e) => Err(ReadError::Lost(e.to_string())),
        };
        let message = match result {
            Ok(Outcome::Complete | Outcome::ConsumerGone) => return,
            Err(ReadError::Fatal(e)) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
            Err(ReadError::Lost(message)) => message,
        };
        // Resuming needs a key to restart after; without one, a rerun would duplicate rows.
        let resumable =
            !plan.key_indexes.is_empty() && plan.key_indexes.len() == plan.table.primary_key.len();
        if resumable && resumes < config.retry.max_resumes {
            resumes += 1;
            tracing::warn!(table = %plan.table.name, rows_read, resumes, "SQL Server connection lost mid-stream; resuming after the last key");
            tokio::time::sleep(config.retry.delay(resumes)).await;
            continue;
        }
        let _ = tx
            .send(Err(SourceError::Interrupted {
                table: plan.table.name.clone(),
                rows_read,
                message: format!("{message} (gave up after {resumes} resume attempts)"),
            }))
            .await;
        return;
    }
}

enum ReadError {
    /// The connection broke: worth reconnecting.
    Lost(String),
    /// Anything else: reported as is.
    Fatal(SourceError),
}

async fn read_once(
    client: &mut SqlClient,
    plan: &Plan,
    tx: &mpsc::Sender<Result<SourceItem, SourceError>>,
    last_key: &mut Option<Vec<Value>>,
    rows_read: &mut u64,
) -> Result<Outcome, ReadError> {
    let select = plan.select(last_key.as_deref());
    let mut q = tiberius::Query::new(select.sql);
    for p in select.params {
        match p {
            KeyParam::Int(i) => q.bind(i),
            KeyParam::Text(s) => q.bind(s),
            KeyParam::Date(d) => q.bind(d),
            KeyParam::DateTime(t) => q.bind(t),
        }
    }
    let classify = |e: tiberius::error::Error| {
        if is_connection_loss(&e) {
            ReadError::Lost(e.to_string())
        } else {
            ReadError::Fatal(query_error(&plan.place, Some(&plan.table.name), e))
        }
    };
    let mut rows = q.query(client).await.map_err(classify)?.into_row_stream();
    while let Some(row) = rows.try_next().await.map_err(classify)? {
        let (item, key) = plan.record(row.into_iter().collect());
        if key.is_some() {
            *last_key = key;
        }
        if let (Some(w), SourceItem::Record(r)) = (plan.client_watermark, &item) {
            if r.modified_at.is_some_and(|at| at <= w.modified_after) {
                continue;
            }
        }
        if tx.send(Ok(item)).await.is_err() {
            return Ok(Outcome::ConsumerGone);
        }
        // Rows delivered to the consumer (what `Interrupted` reports).
        *rows_read += 1;
    }
    Ok(Outcome::Complete)
}
