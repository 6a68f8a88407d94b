//! Listings as Docker prints them: rows as JSON objects keyed by Docker's field names, through
//! the command's default table or the user's `--format`.

use serde_json::Value;

use crate::format::{self, Listing};

/// Prints `rows` with `format` (or the listing's default table). A template error prints
/// nothing and fails, as Docker does.
pub fn print(format: Option<&str>, listing: &Listing, rows: &[Value]) -> anyhow::Result<()> {
    let text = format::render_rows(format, listing, rows)?;
    print!("{text}");
    Ok(())
}

/// `docker inspect [--format]`: every object, then the errors of those that failed.
/// Returns whether every object rendered.
pub fn print_inspect(format: Option<&str>, items: &[Value]) -> anyhow::Result<bool> {
    let inspected = format::render_inspect(format, items)?;
    print!("{}", inspected.output);
    for e in &inspected.errors {
        eprintln!("error: {e}");
    }
    Ok(inspected.errors.is_empty())
}
