//! The console user's new password for `vakt users add`: on a terminal asked for twice
//! without echo, otherwise the first line of standard input. Echo is turned off and back on
//! with `rustix::termios` (safe `tcgetattr`/`tcsetattr`).

use std::io::{self, BufRead, IsTerminal};
use std::os::fd::AsFd;

use rustix::termios::{self, LocalModes, OptionalActions};

use crate::console::auth::Password;

/// The new password of `name`: on a terminal asked for twice without echo, otherwise the
/// first line of standard input (without its line end).
pub(super) fn read_password(name: &str) -> io::Result<Password> {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        let first = read_hidden(&format!("new password for {name}: "))?;
        let again = read_hidden("again: ")?;
        if first != again {
            return Err(io::Error::other("the two passwords differ"));
        }
        Ok(Password::new(first))
    } else {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        Ok(Password::new(strip_line_end(line)))
    }
}

fn strip_line_end(mut line: String) -> String {
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    line
}

/// Reads one line from the terminal on standard input with echo turned off.
fn read_hidden(prompt: &str) -> io::Result<String> {
    eprint!("{prompt}");
    let stdin = io::stdin();
    let r = read_line_unechoed(&stdin, &mut stdin.lock());
    eprintln!();
    Ok(strip_line_end(r?))
}

/// Reads one line (with its line end) from `input` while the terminal `tty` does not echo
/// what is typed, then sets the terminal back as it was, also when reading failed. When
/// `tty` is not a terminal, the line is read as it is.
fn read_line_unechoed(tty: impl AsFd, input: &mut impl BufRead) -> io::Result<String> {
    let saved = termios::tcgetattr(&tty).ok();
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        // Without it the password shows, as it would without a terminal: read on.
        let _ = termios::tcsetattr(&tty, OptionalActions::Now, &quiet);
    }
    let mut line = String::new();
    let r = input.read_line(&mut line);
    if let Some(t) = &saved {
        let _ = termios::tcsetattr(&tty, OptionalActions::Now, t);
    }
    r.map(|_| line)
}

#[cfg(test)]
mod tests {
    use std::io::{BufReader, Read, Write};
    use std::time::{Duration, Instant};

    use rustix::fs::{Mode, OFlags};
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};

    use super::*;

    fn echoes(tty: impl AsFd) -> bool {
        termios::tcgetattr(tty)
            .unwrap()
            .local_modes
            .contains(LocalModes::ECHO)
    }

    /// On a pseudo-terminal, as someone typing at `vakt users add`: what is typed while the
    /// line is read is not shown, the line comes back whole, and the terminal echoes again
    /// afterwards.
    #[test]
    fn a_password_typed_on_a_terminal_is_not_shown_and_echo_comes_back() {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let slave = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY,
            Mode::empty(),
        )
        .map(std::fs::File::from)
        .unwrap();
        let mut master = std::fs::File::from(master);
        assert!(echoes(&slave), "a new terminal echoes");

        let reader = {
            let slave = slave.try_clone().unwrap();
            std::thread::spawn(move || read_line_unechoed(&slave, &mut BufReader::new(&slave)))
        };
        // Typed once the terminal has stopped echoing (echo happens as keys arrive).
        let deadline = Instant::now() + Duration::from_secs(10);
        while echoes(&slave) {
            assert!(
                Instant::now() < deadline,
                "the terminal never stopped echoing"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        master.write_all(b"s3cret-Pass word\n").unwrap();
        let line = reader.join().unwrap().unwrap();
        assert_eq!(line, "s3cret-Pass word\n");
        assert!(echoes(&slave), "echo is back after the password");

        // What the terminal showed, up to a line typed afterwards (which it echoes).
        master.write_all(b"after\n").unwrap();
        let mut shown = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&shown).contains("after") {
            let n = master.read(&mut buf).unwrap();
            assert!(n > 0, "the terminal closed");
            shown.extend_from_slice(&buf[..n]);
        }
        let shown = String::from_utf8_lossy(&shown);
        assert!(
            !shown.contains("s3cret"),
            "the password was shown: {shown:?}"
        );
    }

    #[test]
    fn without_a_terminal_the_line_is_read_as_it_is() {
        let file = tempfile::tempfile().unwrap();
        let mut input: &[u8] = b"pass word\r\nnext\n";
        let line = read_line_unechoed(&file, &mut input).unwrap();
        assert_eq!(strip_line_end(line), "pass word");
    }
}
