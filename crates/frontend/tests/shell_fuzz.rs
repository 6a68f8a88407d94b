//! Property tests: arbitrary input never panics the shell lexer, and plain words pass through.

use proptest::prelude::*;

use kiln_frontend::shell::Lexer;

fn env() -> Vec<(String, String)> {
    vec![
        ("A".into(), "a b".into()),
        ("E".into(), String::new()),
        ("P".into(), "*?\\".into()),
        ("Q".into(), "$0$$".into()),
    ]
}

/// Strings built mostly from the characters the lexer treats specially.
fn shellish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("$".to_owned()),
            Just("{".to_owned()),
            Just("}".to_owned()),
            Just(":".to_owned()),
            Just("-".to_owned()),
            Just("+".to_owned()),
            Just("?".to_owned()),
            Just("#".to_owned()),
            Just("%".to_owned()),
            Just("/".to_owned()),
            Just("*".to_owned()),
            Just("\\".to_owned()),
            Just("`".to_owned()),
            Just("'".to_owned()),
            Just("\"".to_owned()),
            Just("<".to_owned()),
            Just(" ".to_owned()),
            Just("A".to_owned()),
            Just("E".to_owned()),
            Just("P".to_owned()),
            Just("Q".to_owned()),
            Just("가".to_owned()),
            Just("\n".to_owned()),
            "[a-z0-9]{1,3}",
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_shellish_input(word in shellish(), backtick in any::<bool>(), raw in any::<bool>(), skip in any::<bool>()) {
        let lexer = Lexer::new(if backtick { '`' } else { '\\' })
            .with_raw_quotes(raw)
            .with_raw_escapes(raw)
            .with_skip_unset_env(skip);
        let env = env();
        let _ = lexer.expand(&word, &env);
        let _ = lexer.process_heredoc(&word, &env);
    }

    #[test]
    fn never_panics_on_arbitrary_input(word in any::<String>()) {
        let env = env();
        let _ = Lexer::new('\\').expand(&word, &env);
        let _ = Lexer::new('`').process_words(&word, &env);
        let _ = Lexer::heredoc().process_word(&word, &env);
    }

    #[test]
    fn plain_words_pass_through(word in "[a-zA-Z0-9_./:@=,+-]{0,30}") {
        let env = env();
        prop_assert_eq!(Lexer::new('\\').process_word(&word, &env).unwrap(), word.clone());
        let words = Lexer::new('\\').process_words(&word, &env).unwrap();
        prop_assert_eq!(words, if word.is_empty() { vec![] } else { vec![word] });
    }

    #[test]
    fn single_quotes_protect_everything_but_quotes(body in "[^']{0,30}") {
        let word = format!("'{body}'");
        prop_assert_eq!(Lexer::new('\\').process_word(&word, &env()).unwrap(), body);
    }
}
