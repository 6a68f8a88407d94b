//! The Dockerfile frontend: text in, a typed and located program out (and, later, an LLB graph).
//!
//! `syntax` parses lossless-enough lines into an AST with spans, `instructions` turns that AST
//! into one typed variant per instruction, `shell` expands words the way BuildKit's shell lexer
//! does, and `dockerignore` matches build-context paths.

#![deny(unsafe_code)]

pub mod change;
pub mod checks;
pub mod diagnostic;
pub mod dockerignore;
pub mod instructions;
pub mod lower;
pub mod print;
pub mod shell;
pub mod syntax;
