//! The one error type of the `state` layer. Method-level variants map 1:1 to RFC 8620/8621
//! error type strings through [`Error::jmap_type`], so the JMAP layer maps them in one place.

/// Everything the store can answer instead of a result.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// RFC 8620 `cannotCalculateChanges`: the state is unknown, malformed, from another store
    /// generation, from the future, or older than the log's trim point.
    #[error("cannot calculate changes from this state")]
    CannotCalculateChanges,
    /// RFC 8620 `invalidArguments` (e.g. `maxChanges` of 0).
    #[error("invalid arguments: {0}")]
    InvalidArguments(&'static str),
    /// RFC 8620 `anchorNotFound`.
    #[error("anchor not found in the query results")]
    AnchorNotFound,
    /// RFC 8620 `tooManyChanges` (queryChanges over the client's maxChanges).
    #[error("more query changes than maxChanges")]
    TooManyChanges,
    /// RFC 8620 `unsupportedSort`: the store has no index for this sort.
    #[error("sort not supported by the store's indexes")]
    UnsupportedSort,
    /// A caller passed an id that is not a valid JMAP Id (or a keyword over 255 bytes).
    #[error("invalid id {0:?}")]
    InvalidId(String),
    /// The store on disk has a schema this build cannot read and no migration for.
    #[error("store schema version {found} does not match this build's {expected}; {hint}")]
    SchemaMismatch {
        found: u32,
        expected: u32,
        hint: &'static str,
    },
    /// Bytes on disk that do not decode: a bug or disk corruption, never a panic.
    #[error("store data is corrupt: {0}")]
    Corrupt(&'static str),
    /// RocksDB failed.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// A blocking task running a store call panicked or was cancelled.
    #[error("store task failed: {0}")]
    Task(String),
}

impl Error {
    /// The RFC 8620/8621 method-level error type string, for errors that are the client's
    /// business; `None` for server faults (the JMAP layer answers `serverFail`).
    pub fn jmap_type(&self) -> Option<&'static str> {
        match self {
            Error::CannotCalculateChanges => Some("cannotCalculateChanges"),
            Error::InvalidArguments(_) | Error::InvalidId(_) => Some("invalidArguments"),
            Error::AnchorNotFound => Some("anchorNotFound"),
            Error::TooManyChanges => Some("tooManyChanges"),
            Error::UnsupportedSort => Some("unsupportedSort"),
            Error::SchemaMismatch { .. } | Error::Corrupt(_) | Error::Rocks(_) | Error::Task(_) => {
                None
            }
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
