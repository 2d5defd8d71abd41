//! Splits `--command-line "…"` into the exec-form `command` array, the way a POSIX shell splits words
//! (no expansion, no globbing, no operators):
//!
//! - blanks separate words; `''` and `""` make an empty word;
//! - `'…'` keeps everything literally;
//! - `"…"` keeps everything but `\"`, `\\`, `\$` and `` \` ``, which lose their backslash;
//! - outside quotes, `\c` is `c` and a backslash before a newline joins the lines.

/// A command line that does not split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("unterminated {0} quote in the command line")]
    UnterminatedQuote(char),
    #[error("the command line ends with a lone backslash")]
    TrailingBackslash,
}

/// The words of `line`.
pub fn split(line: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // True once the current word has begun, even if empty (`''`).
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\\' => match chars.next() {
                None => return Err(SplitError::TrailingBackslash),
                Some('\n') => {}
                Some(c) => {
                    word.push(c);
                    in_word = true;
                }
            },
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err(SplitError::UnterminatedQuote('\'')),
                        Some('\'') => break,
                        Some(c) => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err(SplitError::UnterminatedQuote('"')),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            None => return Err(SplitError::UnterminatedQuote('"')),
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                        },
                        Some(c) => word.push(c),
                    }
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Vec<String> {
        split(line).unwrap()
    }

    #[test]
    fn blanks_separate_words() {
        assert_eq!(
            ok("  nginx -g  'daemon off;'\t"),
            ["nginx", "-g", "daemon off;"]
        );
        assert_eq!(ok(""), Vec::<String>::new());
        assert_eq!(ok("   "), Vec::<String>::new());
    }

    #[test]
    fn quotes_group_and_concatenate() {
        assert_eq!(
            ok(r#"/bin/sh -c "echo hello; sleep 10""#),
            ["/bin/sh", "-c", "echo hello; sleep 10"]
        );
        assert_eq!(ok(r#"a"b c"'d e'f"#), ["ab cd ef"]);
        assert_eq!(ok(r#"echo '' """#), ["echo", "", ""]);
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(ok(r#"'a\b "c" $d'"#), [r#"a\b "c" $d"#]);
    }

    #[test]
    fn double_quotes_unescape_only_their_specials() {
        assert_eq!(
            ok(r#""say \"hi\" \\ \$HOME \n""#),
            [r#"say "hi" \ $HOME \n"#]
        );
        assert_eq!(ok(r#""it's""#), ["it's"]);
    }

    #[test]
    fn backslash_escapes_outside_quotes() {
        assert_eq!(ok(r"a\ b c\'d \\"), ["a b", "c'd", r"\"]);
        assert_eq!(ok("one \\\ntwo"), ["one", "two"]);
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert_eq!(
            split("echo 'oops"),
            Err(SplitError::UnterminatedQuote('\''))
        );
        assert_eq!(
            split(r#"echo "oops"#),
            Err(SplitError::UnterminatedQuote('"'))
        );
        assert_eq!(
            split(r#"echo "oops\"#),
            Err(SplitError::UnterminatedQuote('"'))
        );
        assert_eq!(split(r"echo \"), Err(SplitError::TrailingBackslash));
    }
}
