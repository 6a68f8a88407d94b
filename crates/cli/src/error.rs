//! Errors as the CLI prints them: the message and its causes on one line, each cause once.
//!
//! Library errors keep their causes as `source()`, and some also name the cause in their own
//! message (`failed to read X: permission denied`); a cause whose text the line already holds
//! is not repeated.

/// `outer: cause: root cause`, without repeats.
pub fn chain(e: &anyhow::Error) -> String {
    chain_of(e.as_ref())
}

/// [`chain`] for any error with sources.
pub fn chain_of(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut next = Some(e);
    while let Some(cause) = next {
        next = cause.source();
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_appear_once() {
        let io = std::io::Error::other("disk full");
        let e = anyhow::Error::new(io).context("failed to write x: disk full");
        assert_eq!(chain(&e), "failed to write x: disk full");
        let e = anyhow::anyhow!("root").context("middle").context("top");
        assert_eq!(chain(&e), "top: middle: root");
    }
}
