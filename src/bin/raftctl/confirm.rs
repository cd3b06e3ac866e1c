//! Asking before a change that costs an outage or data: say what will
//! happen, then `[y/N]` on a terminal. `--force` skips the question;
//! without a terminal the command needs `--force` and changes nothing.

use std::io::{self, BufRead, IsTerminal, Write};

use crate::exit::{Exit, Failure, Result};

/// How many unreadable answers before giving up.
const TRIES: usize = 3;

/// `y`/`yes` or `n`/`no` in any case; an empty answer takes `default`;
/// anything else is no answer.
pub fn parse_answer(line: &str, default: bool) -> Option<bool> {
    match line.trim().to_ascii_lowercase().as_str() {
        "" => Some(default),
        "y" | "yes" => Some(true),
        "n" | "no" => Some(false),
        _ => None,
    }
}

/// Asks `question` on `prompt` and reads the answer from `input`; a
/// closed input is "no".
pub fn ask(question: &str, default: bool, input: &mut dyn BufRead, prompt: &mut dyn Write) -> io::Result<bool> {
    let choices = if default { "[Y/n]" } else { "[y/N]" };
    for _ in 0..TRIES {
        write!(prompt, "{question} {choices} ")?;
        prompt.flush()?;
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            writeln!(prompt)?;
            return Ok(false);
        }
        if let Some(yes) = parse_answer(&line, default) {
            return Ok(yes);
        }
        writeln!(prompt, "please answer y or n")?;
    }
    Ok(false)
}

/// Whether a person can be asked: standard input and error are terminals.
pub fn interactive() -> bool {
    io::stdin().is_terminal() && io::stderr().is_terminal()
}

/// Shows `plan`, then asks unless `force`. Without a terminal and without
/// `--force`: exit 2 naming `--force`, nothing changed.
pub fn confirm(plan: &str, force: bool) -> Result<()> {
    decide(plan, force, interactive(), &mut io::stdin().lock(), &mut io::stderr())
}

/// [`confirm`] with its terminal given, for tests.
pub fn decide(
    plan: &str,
    force: bool,
    interactive: bool,
    input: &mut dyn BufRead,
    prompt: &mut dyn Write,
) -> Result<()> {
    if force {
        return Ok(());
    }
    if !interactive {
        return Err(Failure::usage(format!(
            "{plan}\nno terminal to confirm on: add --force to do this without being asked; nothing changed"
        )));
    }
    let _ = writeln!(prompt, "{plan}");
    match ask("Are you sure?", false, input, prompt) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::new(Exit::Refused, "aborted; nothing changed")),
        Err(e) => Err(Failure::usage(format!("read the answer: {e}; nothing changed"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(answers: &str, force: bool, interactive: bool) -> (Result<()>, String) {
        let mut prompt = Vec::new();
        let r = decide("Switch over from pg1 to pg2.", force, interactive, &mut answers.as_bytes(), &mut prompt);
        (r, String::from_utf8(prompt).expect("UTF-8"))
    }

    #[test]
    fn answers_default_to_no() {
        assert_eq!(parse_answer("Y\n", false), Some(true));
        assert_eq!(parse_answer(" yes ", false), Some(true));
        assert_eq!(parse_answer("n", true), Some(false));
        assert_eq!(parse_answer("\n", false), Some(false));
        assert_eq!(parse_answer("", true), Some(true));
        assert_eq!(parse_answer("sure", false), None);
    }

    #[test]
    fn a_terminal_is_asked_and_no_means_nothing_happens() {
        let (r, prompt) = run("y\n", false, true);
        assert!(r.is_ok(), "{prompt}");
        assert!(prompt.contains("Switch over from pg1 to pg2.") && prompt.contains("[y/N]"), "{prompt}");
        let (r, _) = run("\n", false, true);
        assert_eq!(r.err().map(|f| f.exit), Some(Exit::Refused), "Enter means no");
        let (r, prompt) = run("maybe\nyes\n", false, true);
        assert!(r.is_ok() && prompt.contains("please answer"), "{prompt}");
        let (r, _) = run("", false, true);
        assert!(r.is_err(), "a closed input is no");
    }

    #[test]
    fn without_a_terminal_only_force_proceeds() {
        let (r, prompt) = run("y\n", false, false);
        let f = r.expect_err("refused");
        assert_eq!(f.exit, Exit::Usage);
        assert!(f.message.contains("--force") && f.message.contains("nothing changed"), "{}", f.message);
        assert!(prompt.is_empty(), "nothing asked");
        assert!(run("", true, false).0.is_ok());
    }
}
