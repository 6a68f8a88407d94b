//! Runs BuildKit's shell-expansion data files (`envVarTest`, `wordsTest`) against our lexer.
//!
//! The files live in the shared conformance directory, never in this repository; when it is
//! absent the tests print that they were skipped and pass.

use std::path::PathBuf;

use kiln_frontend::shell::Lexer;

fn shared_shell_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("KILN_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    let dir = base.join("conformance/buildkit-parser/shell");
    dir.is_dir().then_some(dir)
}

fn read_data(name: &str) -> Option<String> {
    let Some(dir) = shared_shell_dir() else {
        println!(
            "skipped: shared conformance dir (conformance/buildkit-parser/shell) not found; set KILN_SHARED_DIR"
        );
        return None;
    };
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) => panic!("failed to read {}: {e}", path.display()),
    }
}

#[test]
fn env_var_test() {
    let Some(text) = read_data("envVarTest") else {
        return;
    };
    let env: Vec<(String, String)> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let lexer = Lexer::new('\\');
    let mut failures = Vec::new();
    let mut checked = 0;
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(
            fields.len(),
            3,
            "line {lineno}: expected 3 fields in {line:?}"
        );
        let (platform, input, expected) = (fields[0], fields[1], fields[2]);
        match platform {
            "A" | "U" => {}
            "W" => continue,
            other => panic!("line {lineno}: unknown platform {other:?}"),
        }
        checked += 1;
        let got = lexer.process_word(input, &env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(value), expected) => expected != "error" && value == expected,
            (Err(_), _) => false,
        };
        if !ok {
            failures.push(format!(
                "line {lineno}: {input:?} expected {expected:?}, got {got:?}"
            ));
        }
    }
    assert!(
        checked > 200,
        "only {checked} cases found; is the data file truncated?"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn words_test() {
    let Some(text) = read_data("wordsTest") else {
        return;
    };
    let lexer = Lexer::new('\\');
    let mut env: Vec<(String, String)> = Vec::new();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        if line.starts_with('#') {
            continue;
        }
        if let Some(entry) = line.strip_prefix("ENV ") {
            let entry = entry.trim_start_matches(' ');
            let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
            env.push((k.to_owned(), v.to_owned()));
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(
            parts.len(),
            2,
            "line {lineno}: expected exactly one | in {line:?}"
        );
        let input = parts[0].trim();
        let expected: Vec<&str> = parts[1].trim_start_matches(' ').split(',').collect();
        checked += 1;
        let got = match lexer.process_words(input, &env) {
            Ok(words) => words,
            Err(_) => vec!["error".to_owned()],
        };
        if got != expected {
            failures.push(format!(
                "line {lineno}: {input:?} expected {expected:?}, got {got:?}"
            ));
        }
    }
    assert!(
        checked > 20,
        "only {checked} cases found; is the data file truncated?"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
