//! Registry answers: a token service's JSON, an error body, a `WWW-Authenticate` challenge, a
//! `Content-Range` and a `Location` header, all from the same bytes.

use kiln_registry::fuzzing;

pub fn response(data: &[u8]) {
    if let Ok(token) = fuzzing::parse_token(data) {
        // It goes into an Authorization header: nothing that could end or add a header.
        assert!(
            token.bytes().all(|b| b.is_ascii_graphic()),
            "an accepted token has a byte that cannot go in a header: {token:?}"
        );
    }
    let shown = fuzzing::error_text(data);
    assert!(
        shown.chars().count() <= 20 * 310,
        "an error text of {} chars",
        shown.len()
    );
    let text = String::from_utf8_lossy(data);
    if let Some((bearer, realm, _service)) = fuzzing::parse_challenge(&text) {
        assert!(
            !bearer || realm.starts_with("https://") || realm.starts_with("http://"),
            "a bearer challenge with realm {realm:?} was accepted: {text:?}"
        );
    }
    let _ = fuzzing::range_start(&text);
    let resolved = fuzzing::resolve_location(&text);
    assert!(resolved.len() <= text.len() + 64);
}
