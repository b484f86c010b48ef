//! Runtime errors. Every error names the datastore (and host) and the step; none contains a
//! password or token.

/// A failure while running a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Could not connect or authenticate.
    #[error("datastore `{store}` ({host}): cannot connect: {message}")]
    Connect {
        /// Datastore name.
        store: String,
        /// host:port.
        host: String,
        /// The driver's message (secrets removed).
        message: String,
    },
    /// Could not connect to an external store (enrichment).
    #[error("external store `{store}` ({host}): cannot connect: {message}")]
    ExternalConnect {
        /// External store name.
        store: String,
        /// host:port.
        host: String,
        /// The driver's message (secrets removed).
        message: String,
    },
    /// A statement failed.
    #[error("datastore `{store}` ({host}), step {step}: {message}")]
    Statement {
        /// Datastore name.
        store: String,
        /// host:port.
        host: String,
        /// The step id (e.g. `sink.merge`).
        step: String,
        /// The database's message.
        message: String,
    },
    /// A value does not fit the column type it is bound or read as.
    #[error("pipeline `{pipeline}`: row with key ({key}) column `{column}`: {message}")]
    Value {
        /// Pipeline name.
        pipeline: String,
        /// The row's key values, rendered.
        key: String,
        /// The column.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// Configuration needed at run time is missing or wrong (e.g. an existing sink table whose
    /// columns do not fit).
    #[error("{0}")]
    Config(String),
    /// An external store (Redis, HTTP, webhook, NATS) failed.
    #[error("{store}: {message}")]
    External {
        /// Store name.
        store: String,
        /// What happened.
        message: String,
    },
    /// An enrichment lookup (or its output expression) failed for a row under `on_error: fail`.
    #[error(
        "pipeline `{pipeline}`: enrichment `{enrichment}` (store `{store}`), row with key ({key}): {message}"
    )]
    Enrichment {
        /// Pipeline name.
        pipeline: String,
        /// Enrichment name.
        enrichment: String,
        /// External store name.
        store: String,
        /// The row's key values, rendered.
        key: String,
        /// What happened (no secrets, no query strings).
        message: String,
    },
    /// A value could not be bound as a statement parameter (or bulk-load column).
    #[error("datastore `{store}` ({host}), step {step}: parameter {index}: {message}")]
    Bind {
        /// Datastore name.
        store: String,
        /// host:port.
        host: String,
        /// The step id.
        step: String,
        /// 1-based position of the parameter (or of the column in a bulk load).
        index: usize,
        /// What is wrong (never the value itself).
        message: String,
    },
    /// A result column could not be decoded as the dtype the caller asked for.
    #[error("datastore `{store}` ({host}), step {step}: result column {column}: {message}")]
    Decode {
        /// Datastore name.
        store: String,
        /// host:port.
        host: String,
        /// The step id.
        step: String,
        /// The 1-based result column, with its name when known, and the row's key when
        /// known (`3 (`flag`) of the row id=7`).
        column: String,
        /// What is wrong.
        message: String,
    },
    /// A MySQL `LOAD DATA LOCAL INFILE` was refused (the server has `local_infile` off) or
    /// reported warnings (there MySQL turns rejected values and duplicate keys into
    /// warnings). The transaction is rolled back and the batch redone with `INSERT`s, which
    /// fail with the real error.
    #[error("datastore `{store}` ({host}), step {step}: {message}")]
    LoadRefused {
        /// Datastore name.
        store: String,
        /// host:port.
        host: String,
        /// The step id.
        step: String,
        /// What happened.
        message: String,
    },
    /// The database aborted a transaction that conflicted with another one (a deadlock, a
    /// serialization failure, a lock wait timeout) and rolled it back: running the same
    /// transaction again may well succeed.
    #[error("datastore `{store}` ({host}), step {step}: {message}")]
    Conflict {
        /// Datastore name.
        store: String,
        /// host:port.
        host: String,
        /// The step id.
        step: String,
        /// The database's message.
        message: String,
    },
    /// The run lost the run lock of its sink scope (its ClickHouse claim was taken over
    /// after its heartbeat lapsed, or the PostgreSQL/MySQL session holding the lock died):
    /// another run may be writing the same rows, so this one stopped.
    #[error("datastore `{store}`, sink table `{table}`: the run lost the lock of its sink scope ({message}); the run stopped, another run may now be writing these rows")]
    LockLost {
        /// Datastore name.
        store: String,
        /// The sink table.
        table: String,
        /// What happened.
        message: String,
    },
    /// Another run held the lock of the sink scope for longer than `apply --lock-timeout`.
    #[error("datastore `{store}`, sink table `{table}`: another run ({holder}) held the lock of the sink scope for more than {seconds} s (--lock-timeout); nothing was written")]
    LockTimeout {
        /// Datastore name.
        store: String,
        /// The sink table.
        table: String,
        /// Who holds the lock, as far as known.
        holder: String,
        /// The timeout.
        seconds: u64,
    },
    /// The receiver of a row stream was dropped before the stream ended.
    #[error("step {step}: the row consumer stopped before the result was read")]
    ConsumerGone {
        /// The step id.
        step: String,
    },
}
