//! Running a child process and measuring it: wall time and peak resident
//! memory (max RSS), read with `wait4(2)` when the child is reaped, so the
//! figure is the kernel's high-water mark of that process, not a sample.

use std::io::{self, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A finished child process and what it cost.
#[derive(Debug)]
pub struct Measured {
    /// How it exited.
    pub status: ExitStatus,
    /// From just before `spawn` to the moment it was reaped.
    pub wall: Duration,
    /// Peak resident set size, in KiB (`ru_maxrss` on Linux).
    pub max_rss_kib: u64,
    /// CPU time used, user plus system (`ru_utime + ru_stime`).
    pub cpu: Duration,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
}

impl Measured {
    /// Peak resident set size in MiB.
    pub fn max_rss_mib(&self) -> f64 {
        self.max_rss_kib as f64 / 1024.0
    }
}

/// Runs `cmd` to completion (stdout and stderr captured) and returns its exit
/// status, wall time and peak RSS.
///
/// The child is reaped with `wait4` instead of `Child::wait`, which is what
/// gives its own resource usage; `cmd` must not start a process that outlives
/// it and matters for the figure (only the child and the descendants it waited
/// for are counted).
// `wait4(2)` is the one way to read a child's peak memory and CPU time as it
// is reaped; std has no safe wrapper.
#[allow(unsafe_code)]
pub fn measure(mut cmd: Command) -> io::Result<Measured> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    // Read both pipes while the child runs, so a chatty child never blocks on
    // a full pipe.
    let stdout = child.stdout.take().map(read_all);
    let stderr = child.stderr.take().map(read_all);
    let pid = libc::pid_t::try_from(child.id())
        .map_err(|_| io::Error::other("child pid out of range"))?;

    let mut raw_status: libc::c_int = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own child, not reaped yet (std's `Child` only
        // reaps in `wait`/`try_wait`, which are never called on it); both
        // out-pointers are valid for writes for the duration of the call.
        let reaped = unsafe { libc::wait4(pid, &mut raw_status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    let wall = start.elapsed();

    let join = |h: Option<thread::JoinHandle<io::Result<String>>>| -> io::Result<String> {
        match h {
            Some(h) => h
                .join()
                .map_err(|_| io::Error::other("pipe reader panicked"))?,
            None => Ok(String::new()),
        }
    };
    Ok(Measured {
        status: ExitStatus::from_raw(raw_status),
        wall,
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        stdout: join(stdout)?,
        stderr: join(stderr)?,
    })
}

fn read_all(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<io::Result<String>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        pipe.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    })
}

/// Median, minimum and maximum of a series of repetitions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// The middle value (the mean of the two middle ones for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Stats {
    /// The statistics of `values`; `None` when it is empty or holds a NaN.
    pub fn of(values: &[f64]) -> Option<Stats> {
        if values.is_empty() || values.iter().any(|v| v.is_nan()) {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Stats {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_odd_and_even_counts() {
        let s = Stats::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(
            s,
            Stats {
                median: 2.0,
                min: 1.0,
                max: 3.0
            }
        );
        assert_eq!(Stats::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert_eq!(Stats::of(&[]), None);
        assert_eq!(Stats::of(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn measures_exit_code_output_and_peak_memory() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let m = measure(cmd).unwrap();
        assert_eq!(m.status.code(), Some(3));
        assert_eq!(m.stdout, "out\n");
        assert_eq!(m.stderr, "err\n");
        assert!(m.max_rss_kib > 0, "{m:?}");
    }
}
