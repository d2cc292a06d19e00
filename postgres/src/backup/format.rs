//! The backup file, format version 1:
//!
//! ```text
//! "RECEIPTDB-BACKUP1\n"                       magic (18 bytes)
//! payload                                     zstd(pg_dump -Fc -Z0), age-encrypted when asked
//! manifest JSON, "\n"                         time, sizes, sha256 of the payload, LSN, ...
//! u64 big-endian length of manifest JSON + 1
//! "RDB-END1"                                  end marker (8 bytes)
//! ```
//!
//! The manifest is written last (so the payload streams and is hashed on the way) and is not
//! encrypted: it is what lets `restore` refuse a truncated or corrupt file before decrypting
//! or touching any database. It reveals the database name, sizes and server version only.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// File magic.
pub const MAGIC: &[u8] = b"RECEIPTDB-BACKUP1\n";
/// End marker.
pub const END: &[u8] = b"RDB-END1";
/// This format's version.
pub const FORMAT_VERSION: u32 = 1;

/// What a backup file says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Container format version.
    pub format_version: u32,
    /// When the dump's snapshot was taken (RFC 3339, UTC).
    pub created_at: String,
    /// The database dumped.
    pub database: String,
    /// The source's `server_version`.
    pub server_version: String,
    /// WAL position when the dump's snapshot was taken.
    pub snapshot_lsn: String,
    /// What the payload holds: `pg_dump-custom+zstd`.
    pub payload_format: String,
    /// Whether the payload is age-encrypted.
    pub encrypted: bool,
    /// Number of age recipients.
    pub recipients: usize,
    /// pg_dump output size before compression.
    pub dump_bytes: u64,
    /// Payload size as stored.
    pub payload_bytes: u64,
    /// SHA-256 of the payload as stored (hex).
    pub payload_sha256: String,
}

/// A writer that hashes and counts what passes through.
pub(crate) struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The inner writer, the byte count and the hex digest.
    pub fn finish(self) -> (W, u64, String) {
        (self.inner, self.bytes, hex(&self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Write the trailer (manifest and end marker).
pub(crate) fn write_trailer(out: &mut impl Write, manifest: &Manifest) -> io::Result<()> {
    let mut json = serde_json::to_vec(manifest).map_err(io::Error::other)?;
    json.push(b'\n');
    out.write_all(&json)?;
    out.write_all(&(json.len() as u64).to_be_bytes())?;
    out.write_all(END)
}

/// Why a file is not a usable backup.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Reading failed.
    #[error("cannot read the backup file: {0}")]
    Io(#[from] io::Error),
    /// Not our magic.
    #[error("not a receiptdb backup file (bad magic)")]
    NotABackup,
    /// No valid trailer: cut short (a copy interrupted, a full disk) or damaged at the end.
    #[error("the backup file is truncated or its end is damaged (no valid manifest trailer)")]
    Truncated,
    /// A newer or unknown container version.
    #[error("unsupported backup format version {0}")]
    Version(u32),
    /// The payload does not hash to the manifest's checksum.
    #[error("the backup file is corrupt: payload sha256 {actual}, manifest says {expected}")]
    Checksum { expected: String, actual: String },
}

/// A verified backup file: its manifest and where the payload lies.
#[derive(Debug)]
pub struct Verified {
    /// The manifest.
    pub manifest: Manifest,
    /// Payload start offset.
    pub payload_offset: u64,
}

/// Read the manifest and check the payload's size and SHA-256 against it.
pub fn verify(file: &mut File) -> Result<Verified, FormatError> {
    let len = file.metadata()?.len();
    let mut magic = vec![0u8; MAGIC.len()];
    file.seek(SeekFrom::Start(0))?;
    if file.read_exact(&mut magic).is_err() || magic != MAGIC {
        return Err(FormatError::NotABackup);
    }
    let min = (MAGIC.len() + 16) as u64;
    if len < min {
        return Err(FormatError::Truncated);
    }
    let mut tail = [0u8; 16];
    file.seek(SeekFrom::Start(len - 16))?;
    file.read_exact(&mut tail)?;
    if &tail[8..] != END {
        return Err(FormatError::Truncated);
    }
    let json_len = u64::from_be_bytes(tail[..8].try_into().map_err(|_| FormatError::Truncated)?);
    if json_len > len - min {
        return Err(FormatError::Truncated);
    }
    let json_start = len - 16 - json_len;
    let mut json = vec![0u8; json_len as usize];
    file.seek(SeekFrom::Start(json_start))?;
    file.read_exact(&mut json)?;
    let manifest: Manifest = serde_json::from_slice(&json).map_err(|_| FormatError::Truncated)?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(FormatError::Version(manifest.format_version));
    }
    let payload_len = json_start - MAGIC.len() as u64;
    if payload_len != manifest.payload_bytes {
        return Err(FormatError::Truncated);
    }
    file.seek(SeekFrom::Start(MAGIC.len() as u64))?;
    let mut hw = HashWriter::new(io::sink());
    io::copy(&mut file.take(payload_len), &mut hw)?;
    let (_, _, actual) = hw.finish();
    if actual != manifest.payload_sha256 {
        return Err(FormatError::Checksum {
            expected: manifest.payload_sha256.clone(),
            actual,
        });
    }
    Ok(Verified {
        manifest,
        payload_offset: MAGIC.len() as u64,
    })
}
