//! The `context` of a run: a base64 zip of the caller's files, checked at submission and
//! unpacked into the command's working directory.
//!
//! Checking at submission means a bad context is a 400 naming `context`, never a `Failed`
//! result later. Extraction enforces the same limits on the bytes actually inflated, because
//! a zip's declared sizes can lie.

use std::fs;
use std::io::{self, Cursor, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use zip::ZipArchive;

/// Bounds on what a context may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextLimits {
    pub max_entries: usize,
    pub max_unpacked_bytes: u64,
}

impl Default for ContextLimits {
    fn default() -> Self {
        ContextLimits { max_entries: 10_000, max_unpacked_bytes: 256 * 1024 * 1024 }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ContextError {
    #[error("'context' is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("'context' is not a zip archive: {0}")]
    NotZip(zip::result::ZipError),
    #[error("'context' has {0} entries, more than the limit of {1}")]
    TooManyEntries(usize, usize),
    #[error("'context' unpacks to more than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("'context' entry {0:?} has an unsafe path (absolute, or leaving the working directory)")]
    UnsafePath(String),
    #[error("'context' entry {0:?} is a symbolic link, which is not allowed")]
    Symlink(String),
    #[error("'context' entry {0:?} is a device, FIFO or socket, which is not allowed")]
    SpecialFile(String),
    #[error("'context' has more than one entry named {0:?}")]
    Duplicate(String),
    #[error("'context' entry {name:?} declares {declared} bytes but holds {actual}")]
    SizeMismatch { name: String, declared: u64, actual: String },
    #[error("'context' entry {name:?} inflates {ratio}:1, beyond the limit of {MAX_RATIO}:1 for a zip bomb")]
    CompressionRatio { name: String, ratio: u64 },
    #[error("'context' entry {name:?} could not be read: {source}")]
    Corrupt { name: String, source: zip::result::ZipError },
}

/// Highest compression ratio accepted for entries larger than [`RATIO_FLOOR`]; text compresses
/// ~10:1, a zip bomb thousands to one.
const MAX_RATIO: u64 = 200;
const RATIO_FLOOR: u64 = 1024 * 1024;

/// Base64 as clients send it: standard alphabet, padding optional, line breaks anywhere
/// (az uses `base64.encodebytes`, a newline every 76 characters).
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes and checks a submitted context. An absent or empty context is no files.
pub(crate) fn decode(raw: Option<&str>, limits: ContextLimits) -> Result<Vec<u8>, ContextError> {
    let compact: String = raw.unwrap_or_default().chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Ok(Vec::new());
    }
    let bytes = LENIENT_BASE64.decode(compact)?;
    check(&bytes, limits)?;
    Ok(bytes)
}

/// Encodes bytes the way the contract's examples do (standard, padded).
pub(crate) fn encode(bytes: &[u8]) -> String {
    general_purpose::STANDARD.encode(bytes)
}

/// Decodes base64 leniently, for other write-only properties such as a kubeconfig.
pub(crate) fn decode_base64(raw: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let compact: String = raw.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    LENIENT_BASE64.decode(compact)
}

/// Checks everything about a context without writing anything: structure, names, types,
/// duplicates, limits, and that each entry really inflates to its declared size.
pub(crate) fn check(bytes: &[u8], limits: ContextLimits) -> Result<(), ContextError> {
    let mut archive = ZipArchive::new(Cursor::new(bytes)).map_err(ContextError::NotZip)?;
    if archive.len() > limits.max_entries {
        return Err(ContextError::TooManyEntries(archive.len(), limits.max_entries));
    }
    if archive.has_duplicate_names() {
        return Err(ContextError::Duplicate(duplicate_name(bytes).unwrap_or_else(|| "<unknown>".into())));
    }
    let mut seen = std::collections::HashSet::new();
    let mut total: u64 = 0;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(ContextError::NotZip)?;
        let name = entry_name(&entry);
        let path = safe_path(&entry)?;
        if entry.unix_mode().is_some_and(|mode| !matches!(mode & 0o170000, 0 | 0o100000 | 0o040000)) {
            return Err(ContextError::SpecialFile(name));
        }
        if !seen.insert(path) {
            return Err(ContextError::Duplicate(name));
        }
        let declared = entry.size();
        let compressed = entry.compressed_size().max(1);
        if declared > RATIO_FLOOR && declared / compressed > MAX_RATIO {
            return Err(ContextError::CompressionRatio { name, ratio: declared / compressed });
        }
        total = total.saturating_add(declared);
        if total > limits.max_unpacked_bytes {
            return Err(ContextError::TooLarge(limits.max_unpacked_bytes));
        }
        let actual = io::copy(&mut (&mut entry).take(declared + 1), &mut io::sink())
            .map_err(|e| ContextError::Corrupt { name: name.clone(), source: zip::result::ZipError::Io(e) })?;
        if actual != declared {
            let actual = if actual > declared { "more".to_string() } else { actual.to_string() };
            return Err(ContextError::SizeMismatch { name, declared, actual });
        }
    }
    Ok(())
}

/// The files of a checked context: each name and its unpacked size, in the zip's order
/// (directories left out). A zip that cannot be read lists nothing.
pub(crate) fn files(bytes: &[u8]) -> Vec<(String, u64)> {
    let Ok(mut archive) = ZipArchive::new(Cursor::new(bytes)) else { return Vec::new() };
    (0..archive.len())
        .filter_map(|index| {
            let entry = archive.by_index_raw(index).ok()?;
            (!entry.is_dir()).then(|| (entry_name(&entry), entry.size()))
        })
        .collect()
}

/// The first name that appears twice in the central directory (the reader keeps only one).
fn duplicate_name(bytes: &[u8]) -> Option<String> {
    const CENTRAL_HEADER: [u8; 4] = 0x02014b50u32.to_le_bytes();
    let u16_at = |at: usize| bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let mut seen = std::collections::HashSet::new();
    let mut at = 0;
    while let Some(offset) = bytes.get(at..)?.windows(4).position(|w| w == CENTRAL_HEADER) {
        let start = at + offset;
        let (name_len, extra_len, comment_len) = (u16_at(start + 28)?, u16_at(start + 30)?, u16_at(start + 32)?);
        let name = String::from_utf8_lossy(bytes.get(start + 46..start + 46 + name_len)?).into_owned();
        if !seen.insert(name.clone()) {
            return Some(name);
        }
        at = start + 46 + name_len + extra_len + comment_len;
    }
    None
}

fn entry_name<R: Read>(entry: &zip::read::ZipFile<'_, R>) -> String {
    entry.name().map(|n| n.into_owned()).unwrap_or_else(|_| "<name not valid text>".to_string())
}

fn safe_path<R: Read>(entry: &zip::read::ZipFile<'_, R>) -> Result<PathBuf, ContextError> {
    if entry.is_symlink() {
        return Err(ContextError::Symlink(entry_name(entry)));
    }
    let name = entry_name(entry);
    // enclosed_name() would quietly make `/etc/x` relative; an absolute name is refused instead.
    let absolute = name.starts_with('/') || name.starts_with('\\') || name.as_bytes().get(1) == Some(&b':');
    match entry.enclosed_name() {
        Some(path) if !absolute && path.components().count() > 0 => Ok(path),
        _ => Err(ContextError::UnsafePath(name)),
    }
}

/// Unpacks a checked context into `dir`, counting the bytes really inflated against the limit.
pub(crate) fn extract(bytes: &[u8], dir: &Path, limits: ContextLimits) -> Result<(), ExtractError> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mut archive = ZipArchive::new(Cursor::new(bytes)).map_err(ContextError::NotZip)?;
    let mut budget = limits.max_unpacked_bytes;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(ContextError::NotZip)?;
        let relative = safe_path(&entry)?;
        let target = dir.join(relative);
        if entry.is_dir() {
            fs::create_dir_all(&target)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        // Keep the owner's execute bit (scripts), never setuid/setgid, never group/other write.
        let mode = entry.unix_mode().map_or(0o644, |m| (m & 0o755) | 0o600);
        let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&target)?;
        let written = io::copy(&mut (&mut entry).take(budget + 1), &mut file).map_err(|source| {
            ExtractError::Context(ContextError::Corrupt {
                name: entry_name(&entry),
                source: zip::result::ZipError::Io(source),
            })
        })?;
        if written > budget {
            return Err(ContextError::TooLarge(limits.max_unpacked_bytes).into());
        }
        budget -= written;
        file.flush()?;
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ExtractError {
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error("writing the working directory failed: {0}")]
    Io(#[from] io::Error),
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use zip::write::SimpleFileOptions;

    pub(crate) fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in files {
            out.start_file(*name, SimpleFileOptions::default()).unwrap();
            out.write_all(data).unwrap();
        }
        out.finish().unwrap().into_inner()
    }

    #[test]
    fn accepts_base64_with_line_breaks() {
        let zip = zip_of(&[("a.txt", b"hello")]);
        let encoded = encode(&zip);
        let wrapped: String =
            encoded.as_bytes().chunks(76).map(|c| format!("{}\n", std::str::from_utf8(c).unwrap())).collect();
        assert_eq!(decode(Some(&wrapped), ContextLimits::default()).unwrap(), zip);
        assert!(decode(Some(""), ContextLimits::default()).unwrap().is_empty());
        assert!(decode(None, ContextLimits::default()).unwrap().is_empty());
    }

    #[test]
    fn refuses_what_is_not_a_safe_zip() {
        let limits = ContextLimits::default();
        assert!(matches!(decode(Some("%%%"), limits), Err(ContextError::Base64(_))));
        assert!(matches!(decode(Some(&encode(b"plain text")), limits), Err(ContextError::NotZip(_))));
        for escaping in ["../evil", "/etc/evil", "a/../../evil", "C:/evil", "\\\\host\\evil"] {
            let zip = zip_of(&[(escaping, b"x")]);
            assert!(matches!(decode(Some(&encode(&zip)), limits), Err(ContextError::UnsafePath(_))), "{escaping}");
        }
        let many = zip_of(&[("a", b"1"), ("b", b"2"), ("c", b"3")]);
        let small = ContextLimits { max_entries: 2, ..limits };
        assert!(matches!(decode(Some(&encode(&many)), small), Err(ContextError::TooManyEntries(3, 2))));
        let tiny = ContextLimits { max_unpacked_bytes: 2, ..limits };
        assert!(matches!(decode(Some(&encode(&many)), tiny), Err(ContextError::TooLarge(2))));
    }

    #[test]
    fn extracts_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        let zip = zip_of(&[("a.txt", b"hello"), ("sub/dir/b.yaml", b"kind: Pod")]);
        extract(&zip, dir.path(), ContextLimits::default()).unwrap();
        assert_eq!(fs::read(dir.path().join("a.txt")).unwrap(), b"hello");
        assert_eq!(fs::read(dir.path().join("sub/dir/b.yaml")).unwrap(), b"kind: Pod");
    }
}
