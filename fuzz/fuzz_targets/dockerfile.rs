//! Fuzz target: arbitrary bytes as a Dockerfile through the parser, the BuildKit-format dump,
//! the typed-instruction layer and the diagnostic renderer. Any panic is a bug.

#![no_main]

use kiln_frontend::{instructions, syntax};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match syntax::parse(data) {
        Ok(ast) => {
            let _ = ast.dump();
            for warning in &ast.warnings {
                let _ = warning.render("Dockerfile", &text);
            }
            if let Err(d) = instructions::Dockerfile::from_ast(&ast) {
                let _ = d.render("Dockerfile", &text);
            }
            let _ = instructions::parse_instructions(&ast);
        }
        Err(d) => {
            // Every parse error must be located.
            assert!(d.span.is_some(), "parse error without a span: {d}");
            let _ = d.render("Dockerfile", &text);
        }
    }
});
