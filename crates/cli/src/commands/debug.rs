//! `kiln debug ...`: developer views of kiln's internals.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use kiln_frontend::syntax;

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print a Dockerfile's syntax tree in BuildKit's dump format.
    DumpAst {
        /// The Dockerfile to parse.
        file: PathBuf,
    },
}

pub fn run(command: DebugCommand) -> ExitCode {
    match command {
        DebugCommand::DumpAst { file } => dump_ast(&file),
    }
}

fn dump_ast(file: &std::path::Path) -> ExitCode {
    let name = file.display().to_string();
    let source = match std::fs::read(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: failed to read {name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match syntax::parse(&source) {
        Ok(ast) => {
            let mut out = std::io::stdout().lock();
            let mut text = ast.dump();
            text.push('\n');
            if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                eprintln!("error: failed to write the dump: {e}");
                return ExitCode::FAILURE;
            }
            let text = String::from_utf8_lossy(&source);
            for warning in &ast.warnings {
                eprint!("{}", warning.render(&name, &text));
            }
            ExitCode::SUCCESS
        }
        Err(diagnostic) => {
            eprint!(
                "{}",
                diagnostic.render(&name, &String::from_utf8_lossy(&source))
            );
            ExitCode::FAILURE
        }
    }
}
