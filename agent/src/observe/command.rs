//! Running the system's own tools (`loginctl`, `systemctl`, `journalctl`,
//! `rpm`, `powershell`) behind a trait, so every reader that shells out can
//! be tested with canned outputs and every parser with real samples.

use std::fmt;
use std::io;
use std::process::Command;

/// One command line, written out as data: what the agent runs, exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLine {
    pub program: String,
    pub args: Vec<String>,
}

impl CommandLine {
    pub fn new(program: impl Into<String>, args: impl IntoIterator<Item = impl Into<String>>) -> CommandLine {
        CommandLine { program: program.into(), args: args.into_iter().map(Into::into).collect() }
    }
}

impl fmt::Display for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        for arg in &self.args {
            if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
                write!(f, " {arg:?}")?;
            } else {
                write!(f, " {arg}")?;
            }
        }
        Ok(())
    }
}

/// What a finished command said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandOutput {
    /// `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program is not installed (no systemd, no rpm, not Windows).
    #[error("`{program}` is not installed here")]
    NotFound { program: String },
    #[error("could not run `{command}`: {source}")]
    Spawn { command: String, source: io::Error },
    #[error("`{command}` exited with {code}: {stderr}")]
    Failed { command: String, code: String, stderr: String },
}

impl CommandError {
    /// The error for a command that ran and failed.
    pub fn failed(command: &CommandLine, output: &CommandOutput) -> CommandError {
        CommandError::Failed {
            command: command.to_string(),
            code: output.code.map_or_else(|| "a signal".to_owned(), |c| format!("code {c}")),
            stderr: output.stderr.trim().to_owned(),
        }
    }
}

/// Runs a command to completion and hands back its output.
pub trait CommandRunner {
    fn run(&self, command: &CommandLine) -> Result<CommandOutput, CommandError>;

    /// Runs it and insists on exit code 0.
    fn run_ok(&self, command: &CommandLine) -> Result<String, CommandError> {
        let output = self.run(command)?;
        if output.success() { Ok(output.stdout) } else { Err(CommandError::failed(command, &output)) }
    }
}

impl<R: CommandRunner + ?Sized> CommandRunner for &R {
    fn run(&self, command: &CommandLine) -> Result<CommandOutput, CommandError> {
        (**self).run(command)
    }
}

/// The real thing: `std::process::Command`, with a C locale so the tools'
/// output has the format the parsers expect.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemCommands;

impl CommandRunner for SystemCommands {
    fn run(&self, command: &CommandLine) -> Result<CommandOutput, CommandError> {
        let output = Command::new(&command.program)
            .args(&command.args)
            .env("LC_ALL", "C")
            .env("SYSTEMD_PAGER", "")
            .env("SYSTEMD_COLORS", "0")
            .output()
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => CommandError::NotFound { program: command.program.clone() },
                _ => CommandError::Spawn { command: command.to_string(), source },
            })?;
        Ok(CommandOutput {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// Canned answers by command line, for tests of the readers: the edge
/// where the real tools (or Windows) are not available.
#[derive(Clone, Debug, Default)]
pub struct ScriptedCommands {
    answers: Vec<(CommandLine, Result<CommandOutput, String>)>,
}

impl ScriptedCommands {
    pub fn new() -> ScriptedCommands {
        ScriptedCommands::default()
    }

    /// `command` exits 0 and prints `stdout`.
    pub fn answer(mut self, command: CommandLine, stdout: &str) -> ScriptedCommands {
        let output = CommandOutput { code: Some(0), stdout: stdout.to_owned(), stderr: String::new() };
        self.answers.push((command, Ok(output)));
        self
    }

    /// `command` exits with `code` and prints `stderr`.
    pub fn fail(mut self, command: CommandLine, code: i32, stderr: &str) -> ScriptedCommands {
        let output = CommandOutput { code: Some(code), stdout: String::new(), stderr: stderr.to_owned() };
        self.answers.push((command, Ok(output)));
        self
    }

    /// `command`'s program is not installed.
    pub fn missing(mut self, command: CommandLine) -> ScriptedCommands {
        let program = command.program.clone();
        self.answers.push((command, Err(program)));
        self
    }
}

impl CommandRunner for ScriptedCommands {
    fn run(&self, command: &CommandLine) -> Result<CommandOutput, CommandError> {
        match self.answers.iter().find(|(known, _)| known == command) {
            Some((_, Ok(output))) => Ok(output.clone()),
            Some((_, Err(program))) => Err(CommandError::NotFound { program: program.clone() }),
            // An unexpected command is a test's mistake: say which.
            None => Err(CommandError::Spawn {
                command: command.to_string(),
                source: io::Error::other("no scripted answer for this command"),
            }),
        }
    }
}
