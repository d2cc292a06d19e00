//! Copy one table: `COPY ... TO STDOUT` on a source snapshot worker streamed straight into
//! `COPY ... FROM STDIN` in the target transaction, BINARY when every column's type allows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::{SinkExt, TryStreamExt};
use serde::Serialize;
use tokio_postgres::Client;

use crate::schema::{quote_ident, SqlContext, SqlError, TableInfo};

/// What was copied for one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableCopy {
    /// Quoted `schema.table`.
    pub table: String,
    /// Rows loaded into the target.
    pub rows: u64,
    /// COPY payload bytes streamed.
    pub bytes: u64,
    /// `binary` or `text`.
    pub format: &'static str,
    /// Wall time.
    pub duration_ms: u64,
}

/// Copy `table` from `source` (in the snapshot) into `target` (in the target transaction,
/// where the table is empty: just created or truncated).
pub(crate) async fn copy_table(
    source: &Client,
    target: &Client,
    table: &TableInfo,
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
    let stream = source
        .copy_out(&format!("COPY {q} ({list}) TO STDOUT (FORMAT {format})"))
        .await
        .ctx(&what)?;
    let bytes = AtomicU64::new(0);
    let stream = stream.map_ok(|chunk| {
        bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        chunk
    });
    futures::pin_mut!(stream);
    futures::pin_mut!(sink);
    sink.send_all(&mut stream).await.ctx(&what)?;
    let rows = sink.as_mut().finish().await.ctx(&what)?;
    Ok(TableCopy {
        table: table.key(),
        rows,
        bytes: bytes.into_inner(),
        format,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}
