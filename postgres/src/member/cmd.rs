//! Running PostgreSQL's programs with their output captured for reports and errors.

use std::process::{Command, Stdio};

use super::MemberError;

/// A finished program.
pub(crate) struct Ran {
    pub stdout: String,
    pub stderr: String,
    pub success: bool,
    pub status: String,
}

impl Ran {
    /// stdout and stderr together, as a person reads them.
    pub fn text(&self) -> String {
        let mut s = self.stdout.clone();
        if !s.is_empty() && !self.stderr.is_empty() {
            s.push('\n');
        }
        s.push_str(&self.stderr);
        s
    }
}

/// Prepare a command: C locale (we parse the output), no stdin, and no inherited password:
/// callers that need one pass it with [`with_password`].
pub(crate) fn prepare(mut cmd: Command) -> Command {
    cmd.env("LC_ALL", "C")
        .env("LANG", "C")
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null());
    cmd
}

/// Give a child its password through the environment (never through arguments).
pub(crate) fn with_password(mut cmd: Command, password: &str) -> Command {
    cmd.env("PGPASSWORD", password);
    cmd
}

/// Run `cmd` to completion, whatever its exit status.
pub(crate) async fn run_any(cmd: Command, step: &'static str) -> Result<Ran, MemberError> {
    let program = program_name(&cmd);
    tracing::debug!(%program, step, "running");
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let out = cmd.output().await.map_err(|e| MemberError::Command {
        step,
        program: program.clone(),
        status: "not started".into(),
        output: e.to_string(),
    })?;
    Ok(Ran {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        success: out.status.success(),
        status: out.status.to_string(),
    })
}

/// Run `cmd`; a non-zero exit is a [`MemberError::Command`] carrying the end of its output.
pub(crate) async fn run(cmd: Command, step: &'static str) -> Result<Ran, MemberError> {
    let program = program_name(&cmd);
    let ran = run_any(cmd, step).await?;
    if ran.success {
        Ok(ran)
    } else {
        Err(MemberError::Command {
            step,
            program,
            status: ran.status.clone(),
            output: tail(&ran.text(), 1500),
        })
    }
}

/// The program's file name (past a `runuser -u postgres --` prefix).
fn program_name(cmd: &Command) -> String {
    let prog = cmd.get_program().to_string_lossy().into_owned();
    let name = if prog.ends_with("runuser") {
        cmd.get_args()
            .nth(3)
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or(prog)
    } else {
        prog
    };
    name.rsplit('/').next().unwrap_or(&name).to_string()
}

/// The last `max` bytes of `s` (on a character boundary), trimmed.
pub(crate) fn tail(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}
