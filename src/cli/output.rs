//! Writing command output to standard output. A reader that closes the pipe early, as
//! `cedargate validate --format json | head -1` does, ends the output quietly instead of
//! making the process panic.

use std::io::{ErrorKind, Write};
use std::process::ExitCode;

use super::EXIT_ERROR;

/// Writes `text` and a newline to standard output. A closed pipe counts as a normal end,
/// so the command keeps its exit code; any other write error is reported on standard
/// error and returns [`EXIT_ERROR`] as the error.
pub fn print_line(text: &str) -> Result<(), ExitCode> {
    let mut stdout = std::io::stdout().lock();
    let written = writeln!(stdout, "{text}").and_then(|()| stdout.flush());
    match written {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == ErrorKind::BrokenPipe => Ok(()),
        Err(err) => {
            eprintln!("error: failed to write to standard output: {err}");
            Err(ExitCode::from(EXIT_ERROR))
        }
    }
}
