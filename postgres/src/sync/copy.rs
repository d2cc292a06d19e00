//! Copy one table: `COPY ... TO STDOUT` on a source snapshot worker streamed straight into
//! `COPY ... FROM STDIN` in the target transaction, BINARY when every column's type allows.

use std::time::Instant;

use futures::{SinkExt, TryStreamExt};

/// Size of the COPY messages sent to the target.
const CHUNK: usize = 64 * 1024;
use serde::Serialize;
use tokio_postgres::Client;

use crate::compare::RateLimit;
use crate::schema::{quote_ident, SqlContext, SqlError, TableInfo};

/// What was copied for one table.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableCopy {
    /// Quoted `schema.table`.
    pub table: String,
    /// Rows loaded into the target.
    pub rows: u64,
    /// COPY payload bytes streamed.
    pub bytes: u64,
    /// `binary` or `text`.
    pub format: &'static str,
    /// `table`: emptied and copied whole; `rows`: only the rows that differ replaced.
    pub method: &'static str,
    /// For `rows`: buckets compared and rows replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks: Option<super::rows::ChunkFigures>,
    /// Wall time.
    pub duration_ms: u64,
}

impl TableCopy {
    /// Nothing copied yet.
    pub(crate) fn empty(table: &TableInfo, method: &'static str) -> Self {
        Self {
            table: table.key(),
            rows: 0,
            bytes: 0,
            format: "binary",
            method,
            chunks: None,
            duration_ms: 0,
        }
    }
}

/// Copy `table` from `source` (in the snapshot) into `target` (in the target transaction,
/// where the table is empty: just created or truncated).
pub(crate) async fn copy_table(
    source: &Client,
    target: &Client,
    table: &TableInfo,
    limit: Option<&RateLimit>,
) -> Result<TableCopy, SqlError> {
    copy_rows(source, target, table, None, limit).await
}

/// Copy the rows of `table` matching `filter` (all when `None`) from `source` into `target`.
pub(crate) async fn copy_rows(
    source: &Client,
    target: &Client,
    table: &TableInfo,
    filter: Option<&str>,
    limit: Option<&RateLimit>,
) -> Result<TableCopy, SqlError> {
    let started = Instant::now();
    let cols: Vec<String> = table
        .columns
        .iter()
        .filter(|c| !c.generated)
        .map(|c| quote_ident(&c.name))
        .collect();
    let binary = table.columns.iter().all(|c| c.binary_safe);
    let format = if binary { "binary" } else { "text" };
    let list = cols.join(", ");
    let q = table.qualified();
    let what = format!("copying {q}");
    let sink = target
        .copy_in::<_, bytes::Bytes>(&format!("COPY {q} ({list}) FROM STDIN (FORMAT {format})"))
        .await
        .ctx(&what)?;
    let from = match filter {
        None => format!("{q} ({list})"),
        Some(f) => format!("(SELECT {list} FROM ONLY {q} WHERE {f})"),
    };
    let stream = source
        .copy_out(&format!("COPY {from} TO STDOUT (FORMAT {format})"))
        .await
        .ctx(&what)?;
    // The server sends one CopyData message per row; forwarding them one by one costs a
    // channel hop each in the driver. Re-chunk into 64 KiB messages (COPY data is a byte
    // stream: message boundaries need not match rows).
    let mut bytes = 0u64;
    let mut buf = bytes::BytesMut::with_capacity(CHUNK + (CHUNK >> 2));
    futures::pin_mut!(stream);
    futures::pin_mut!(sink);
    while let Some(row) = stream.try_next().await.ctx(&what)? {
        bytes += row.len() as u64;
        buf.extend_from_slice(&row);
        if buf.len() >= CHUNK {
            if let Some(l) = limit {
                l.charge(buf.len() as u64).await;
            }
            sink.send(buf.split().freeze()).await.ctx(&what)?;
        }
    }
    if !buf.is_empty() {
        sink.send(buf.split().freeze()).await.ctx(&what)?;
    }
    let rows = sink.as_mut().finish().await.ctx(&what)?;
    Ok(TableCopy {
        table: table.key(),
        rows,
        bytes,
        format,
        method: "table",
        chunks: None,
        duration_ms: crate::report::elapsed_ms(started),
    })
}
