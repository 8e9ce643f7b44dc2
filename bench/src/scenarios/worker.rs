//! Generator worker processes (`loadgen idle-worker`, `loadgen login-worker`): one process may
//! hold at most ~20,000 sockets here, and one single-threaded process may be the bound of a
//! login storm, so a scenario can spread its sessions over children started by the parent.
//!
//! The parent and a child talk in lines: the child writes `TAG field…` lines on stdout, the
//! parent writes lines on the child's stdin and closes it to tell the child to finish.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// A worker process's slice: `argv` runs a `loadgen …-worker` for `users` sessions.
#[derive(Debug, Clone)]
pub struct WorkerSlice {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Sessions it opens.
    pub users: usize,
}

/// A running worker.
pub struct Worker {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    /// Starts the worker (killed if dropped while running).
    pub fn spawn(w: &WorkerSlice) -> std::io::Result<Worker> {
        let (prog, args) = w
            .argv
            .split_first()
            .ok_or_else(|| std::io::Error::other("empty worker command"))?;
        let mut child = Command::new(prog)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("worker without stdout"))?;
        Ok(Worker {
            child,
            lines: BufReader::new(out).lines(),
        })
    }

    /// The fields after `tag` of the next line starting with `tag` (other lines are skipped);
    /// None if the worker ended first or `limit` passed.
    pub async fn expect(&mut self, tag: &str, limit: Duration) -> Option<Vec<String>> {
        let read = async {
            while let Ok(Some(line)) = self.lines.next_line().await {
                if let Some(fields) = tagged(&line, tag) {
                    return Some(fields);
                }
            }
            None
        };
        tokio::time::timeout(limit, read).await.ok().flatten()
    }

    /// Writes one line on the worker's stdin.
    pub async fn say(&mut self, line: &str) -> std::io::Result<()> {
        let stdin = self
            .child
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("worker stdin closed"))?;
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        stdin.flush().await
    }

    /// Closes the worker's stdin (it then closes its sessions and exits) and waits for it to
    /// exit, killing it after `limit`.
    pub async fn finish(mut self, limit: Duration) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(limit, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The whitespace-separated fields after `tag` when `line` is `tag field…`.
pub fn tagged(line: &str, tag: &str) -> Option<Vec<String>> {
    let mut f = line.split_whitespace();
    (f.next() == Some(tag)).then(|| f.map(str::to_string).collect())
}

/// Waits (at most `limit`) until stdin has a line, returns it (None at end of input).
pub async fn stdin_line(limit: Duration) -> Option<String> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    tokio::time::timeout(limit, lines.next_line())
        .await
        .ok()
        .and_then(Result::ok)
        .flatten()
}

/// Waits (at most `limit`) until stdin is closed by the parent.
pub async fn stdin_closed(limit: Duration) {
    use tokio::io::AsyncReadExt as _;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    let _ = tokio::time::timeout(limit, async {
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::tagged;

    #[test]
    fn tagged_lines() {
        let cases = [
            ("READY 10 2", "READY", Some(vec!["10", "2"])),
            ("READY", "READY", Some(vec![])),
            (
                "DONE 1 0 45.5 100,200",
                "DONE",
                Some(vec!["1", "0", "45.5", "100,200"]),
            ),
            ("login error: x", "READY", None),
            ("READYX 1", "READY", None),
            ("", "READY", None),
        ];
        for (line, tag, want) in cases {
            let want = want.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
            assert_eq!(tagged(line, tag), want, "{line}");
        }
    }
}
