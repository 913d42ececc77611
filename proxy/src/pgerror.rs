//! One-line descriptions of tokio-postgres errors for pgseal's own connections (the seeder,
//! the migrator, `policy check`, the budget store): the server's message and SQLSTATE, or the
//! connection error with its causes — never the URL or a password.

/// A tokio-postgres error in one line.
pub fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
