//! SMTP replies (RFC 5321 §4.2) and what an EHLO reply announces. Pure: lines in, values out.
//!
//! A reply is one or more lines that each start with the same three-digit code; every line but
//! the last puts a hyphen after the code (`250-SIZE 10240000`), the last a space or nothing
//! (`250 HELP`, `250`). [`Reader`] takes lines one at a time, so the caller owns the socket and
//! its timeouts.

/// The longest reply line accepted, in bytes with its CRLF. RFC 5321 allows 512; some servers
/// send longer texts, so there is room, but a peer cannot make allot hold an unbounded line.
pub(crate) const MAX_LINE: usize = 2048;
/// The most lines one reply may have (an EHLO reply has a dozen or two).
pub(crate) const MAX_LINES: usize = 100;

/// One complete reply: its code and the text of each line (without code and separator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// The lines' texts, one per line.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// `250 2.1.5 Ok` style, the lines joined with a space: for a sentence.
    pub fn summary(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" "))
            .trim_end()
            .to_owned()
    }
}

/// Why a line is not part of a valid reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Malformed {
    #[error("a line that does not start with a three-digit reply code: {0:?}")]
    NoCode(String),
    #[error("a continuation line with code {got} in a reply that began with {expected}")]
    CodeChanged { expected: u16, got: u16 },
    #[error("a reply of more than {MAX_LINES} lines")]
    TooManyLines,
}

/// Collects the lines of one reply.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    code: Option<u16>,
    lines: Vec<String>,
}

impl Reader {
    /// Takes one line (without its line ending); answers the reply once its last line came.
    pub fn line(&mut self, line: &str) -> Result<Option<Reply>, Malformed> {
        let (code, last, text) = split(line)?;
        if let Some(expected) = self.code
            && expected != code
        {
            return Err(Malformed::CodeChanged {
                expected,
                got: code,
            });
        }
        self.lines.push(text.to_owned());
        if last {
            self.code = None;
            return Ok(Some(Reply {
                code,
                lines: std::mem::take(&mut self.lines),
            }));
        }
        if self.lines.len() >= MAX_LINES {
            return Err(Malformed::TooManyLines);
        }
        self.code = Some(code);
        Ok(None)
    }
}

/// `(code, is the last line, text)`.
fn split(line: &str) -> Result<(u16, bool, &str), Malformed> {
    let no_code = || Malformed::NoCode(line.chars().take(80).collect());
    let bytes = line.as_bytes();
    if bytes.len() < 3
        || !bytes[..3].iter().all(u8::is_ascii_digit)
        || !(b'2'..=b'5').contains(&bytes[0])
    {
        return Err(no_code());
    }
    let code = line[..3].parse().map_err(|_| no_code())?;
    match bytes.get(3) {
        None => Ok((code, true, "")),
        Some(b' ') => Ok((code, true, &line[4..])),
        Some(b'-') => Ok((code, false, &line[4..])),
        Some(_) => Err(no_code()),
    }
}

/// What a positive EHLO reply announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Extensions {
    /// The first line: the server's name and greeting.
    pub greeting: String,
    /// Every further line, as the server wrote it (`SIZE 10240000`, `STARTTLS`).
    pub capabilities: Vec<String>,
    pub starttls: bool,
    /// From `SIZE`: the largest message in bytes; 0 when SIZE is announced without a limit
    /// (RFC 1870); `None` when SIZE is not announced or its number does not parse.
    pub size: Option<u64>,
}

impl Extensions {
    pub fn of(reply: &Reply) -> Self {
        let mut lines = reply.lines.iter();
        let greeting = lines.next().cloned().unwrap_or_default();
        let capabilities: Vec<String> = lines.cloned().collect();
        let keyword = |line: &String| {
            let mut words = line.split_ascii_whitespace();
            (
                words.next().unwrap_or("").to_ascii_uppercase(),
                words.next().map(str::to_owned),
            )
        };
        let starttls = capabilities.iter().any(|c| keyword(c).0 == "STARTTLS");
        let size = capabilities
            .iter()
            .map(keyword)
            .find(|(word, _)| word == "SIZE")
            .and_then(|(_, limit)| match limit {
                None => Some(0),
                Some(number) => number.parse().ok(),
            });
        Self {
            greeting,
            capabilities,
            starttls,
            size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(lines: &[&str]) -> Result<Vec<Reply>, Malformed> {
        let mut reader = Reader::default();
        let mut replies = Vec::new();
        for line in lines {
            if let Some(reply) = reader.line(line)? {
                replies.push(reply);
            }
        }
        Ok(replies)
    }

    #[test]
    fn a_single_line_reply_is_complete_at_once() {
        let replies = read(&["220 mx.example.com ESMTP Postfix"]).unwrap();
        assert_eq!(
            replies,
            [Reply {
                code: 220,
                lines: vec!["mx.example.com ESMTP Postfix".into()]
            }]
        );
        assert!(replies[0].is_positive());
        assert_eq!(replies[0].summary(), "220 mx.example.com ESMTP Postfix");
    }

    #[test]
    fn a_multi_line_reply_ends_at_the_line_with_a_space_or_nothing_after_the_code() {
        let replies = read(&[
            "250-mx.example.com",
            "250-PIPELINING",
            "250-SIZE 10240000",
            "250 8BITMIME",
            "554",
        ])
        .unwrap();
        assert_eq!(replies.len(), 2);
        assert_eq!(
            replies[0].lines,
            ["mx.example.com", "PIPELINING", "SIZE 10240000", "8BITMIME"]
        );
        assert_eq!(
            replies[0].text(),
            "mx.example.com\nPIPELINING\nSIZE 10240000\n8BITMIME"
        );
        assert_eq!(replies[1].code, 554);
        assert_eq!(replies[1].lines, [""]);
        assert!(!replies[1].is_positive());
        assert_eq!(replies[1].summary(), "554");
    }

    #[test]
    fn lines_that_are_not_replies_are_refused() {
        for line in [
            "SSH-2.0-OpenSSH_9.2",
            "HTTP/1.1 400 Bad Request",
            "25",
            "2500 x",
            "250_x",
            "",
            "099 x",
            "650 x",
        ] {
            assert!(
                matches!(read(&[line]), Err(Malformed::NoCode(_))),
                "{line:?}"
            );
        }
        assert_eq!(
            read(&["250-first", "251 second"]),
            Err(Malformed::CodeChanged {
                expected: 250,
                got: 251
            })
        );
        let endless: Vec<String> = (0..=MAX_LINES).map(|i| format!("250-line {i}")).collect();
        let endless: Vec<&str> = endless.iter().map(String::as_str).collect();
        assert_eq!(read(&endless), Err(Malformed::TooManyLines));
    }

    #[test]
    fn ehlo_extensions_name_starttls_and_the_size_limit() {
        let reply = Reply {
            code: 250,
            lines: vec![
                "mx.example.com Hello [192.0.2.1]".into(),
                "PIPELINING".into(),
                "SIZE 35882577".into(),
                "starttls".into(),
                "ENHANCEDSTATUSCODES".into(),
            ],
        };
        let extensions = Extensions::of(&reply);
        assert_eq!(extensions.greeting, "mx.example.com Hello [192.0.2.1]");
        assert_eq!(
            extensions.capabilities,
            [
                "PIPELINING",
                "SIZE 35882577",
                "starttls",
                "ENHANCEDSTATUSCODES"
            ]
        );
        assert!(extensions.starttls);
        assert_eq!(extensions.size, Some(35_882_577));
    }

    #[test]
    fn size_without_a_number_means_no_fixed_limit_and_absent_size_is_none() {
        let with = |lines: &[&str]| {
            Extensions::of(&Reply {
                code: 250,
                lines: lines.iter().map(|l| (*l).to_owned()).collect(),
            })
        };
        assert_eq!(with(&["mx", "SIZE"]).size, Some(0));
        assert_eq!(with(&["mx", "SIZE 0"]).size, Some(0));
        assert_eq!(with(&["mx", "SIZE lots"]).size, None);
        let bare = with(&["mx"]);
        assert_eq!(bare.size, None);
        assert!(!bare.starttls);
        assert!(bare.capabilities.is_empty());
        // A keyword merely starting with STARTTLS is not STARTTLS.
        assert!(!with(&["mx", "STARTTLSX"]).starttls);
    }
}
