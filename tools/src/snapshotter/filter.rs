//! containerd's filter language, as its Walk (`List`) request carries it: a list of filters,
//! of which a snapshot must match any (an empty list matches every snapshot); each filter a
//! comma-separated list of conditions that must all hold (an empty filter matches every
//! snapshot). A condition is `FIELD` (the field is present), `FIELD==VALUE`, `FIELD!=VALUE`
//! or `FIELD~=REGEX`.
//!
//! A field is a dot-separated path of names (`[A-Za-z0-9_-]+`) or quoted strings:
//! `labels."containerd.io/gc.root"`. A value is quoted or a bare run of anything but commas
//! and white space. Quotes are `"…"`, or `/…/` and `|…|` (handy for regular expressions),
//! with Go's backslash escapes (`\n`, `\\`, `\xHH`, `\uHHHH`, the closing quote, …).
//! White space between tokens is skipped.
//!
//! Matching follows containerd's snapshot adaptor: `name`, `parent` and `kind` (`active`,
//! `view`, `committed`) are always present (so a bare `parent` matches every snapshot;
//! `parent!=""` is the one with a parent), `labels.KEY` is present when the label is set
//! (the path after `labels` joined by dots is the key), any other field never is. `!=` and
//! `~=` see an absent field as the empty string; `==` needs the field present. Unlike
//! containerd, which compiles a regular expression when it first matches and then matches
//! nothing, a bad regular expression is a malformed filter.

use std::collections::HashMap;
use std::fmt;

use regex::Regex;

use super::db::Kind;

/// Parsed Walk filters: a snapshot matches when it matches any of them.
#[derive(Debug)]
pub struct Filters {
    /// `None`: no filter given, everything matches.
    any: Option<Vec<Conjunction>>,
}

/// One filter: conditions that must all hold.
#[derive(Debug)]
struct Conjunction(Vec<Condition>);

#[derive(Debug)]
struct Condition {
    path: Vec<String>,
    op: Op,
}

#[derive(Debug)]
enum Op {
    Present,
    Equal(String),
    NotEqual(String),
    Matches(Regex),
}

/// What a filter sees of a snapshot.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    /// The snapshot's key.
    pub name: &'a str,
    /// Active, view or committed.
    pub kind: Kind,
    /// The parent's key ("" for none).
    pub parent: &'a str,
    /// The snapshot's labels.
    pub labels: &'a HashMap<String, String>,
}

/// A malformed filter: which one, where (a byte offset into it) and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// The filter as given.
    pub filter: String,
    /// Where in it (bytes) the problem is.
    pub offset: usize,
    /// What the problem is.
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:?}` escapes line breaks in the filter: the message stays one line.
        write!(
            f,
            "invalid filter {:?} at byte {}: {}",
            self.filter, self.offset, self.message
        )
    }
}

impl std::error::Error for FilterError {}

impl Filters {
    /// Parses Walk's filters; the first malformed one is the error.
    pub fn parse(filters: &[String]) -> Result<Filters, FilterError> {
        if filters.is_empty() {
            return Ok(Filters { any: None });
        }
        let any = filters
            .iter()
            .map(|f| Parser::new(f).filter())
            .collect::<Result<_, _>>()?;
        Ok(Filters { any: Some(any) })
    }

    /// Whether the snapshot matches any of the filters (or there are none).
    pub fn matches(&self, subject: &Subject) -> bool {
        match &self.any {
            None => true,
            Some(any) => any.iter().any(|c| c.matches(subject)),
        }
    }
}

impl Conjunction {
    fn matches(&self, subject: &Subject) -> bool {
        self.0.iter().all(|c| c.matches(subject))
    }
}

impl Condition {
    fn matches(&self, subject: &Subject) -> bool {
        let field = subject.field(&self.path);
        match &self.op {
            Op::Present => field.is_some(),
            Op::Equal(value) => field == Some(value.as_str()),
            Op::NotEqual(value) => field.unwrap_or("") != value,
            Op::Matches(re) => re.is_match(field.unwrap_or("")),
        }
    }
}

impl<'a> Subject<'a> {
    /// The field at `path`, `None` when the snapshot does not have it.
    fn field(&self, path: &[String]) -> Option<&'a str> {
        match path {
            [f] if f == "name" => Some(self.name),
            [f] if f == "parent" => Some(self.parent),
            [f] if f == "kind" => Some(self.kind.name()),
            [f, key @ ..] if f == "labels" && !key.is_empty() => {
                self.labels.get(&key.join(".")).map(String::as_str)
            }
            _ => None,
        }
    }
}

fn is_field_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn is_quote(c: char) -> bool {
    matches!(c, '"' | '/' | '|')
}

fn is_operator_char(c: char) -> bool {
    matches!(c, '=' | '!' | '~')
}

/// A recursive-descent parser over one filter string.
struct Parser<'a> {
    input: &'a str,
    /// Byte offset of the next character.
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Parser<'a> {
        Parser { input, pos: 0 }
    }

    fn error(&self, at: usize, message: impl Into<String>) -> FilterError {
        FilterError {
            filter: self.input.to_string(),
            offset: at,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// Consumes characters while `keep` holds; returns them.
    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&keep) {
            self.bump();
        }
        &self.input[start..self.pos]
    }

    /// `filter := "" | condition ("," condition)*`
    fn filter(mut self) -> Result<Conjunction, FilterError> {
        let mut conditions = Vec::new();
        if self.input.is_empty() {
            return Ok(Conjunction(conditions));
        }
        loop {
            conditions.push(self.condition()?);
            self.skip_space();
            match self.bump() {
                None => return Ok(Conjunction(conditions)),
                Some(',') => {}
                Some(c) => {
                    let at = self.pos - c.len_utf8();
                    return Err(self.error(at, format!("unexpected {c:?}, expected `,`")));
                }
            }
        }
    }

    /// `condition := path (operator value)?`
    fn condition(&mut self) -> Result<Condition, FilterError> {
        let path = self.path()?;
        self.skip_space();
        if matches!(self.peek(), None | Some(',')) {
            return Ok(Condition {
                path,
                op: Op::Present,
            });
        }
        let op_at = self.pos;
        let operator = self.take_while(is_operator_char);
        if operator.is_empty() {
            return Err(self.error(op_at, "expected an operator (==, != or ~=)"));
        }
        let value_at = self.pos;
        let value = self.value()?;
        let op = match operator {
            "==" => Op::Equal(value),
            "!=" => Op::NotEqual(value),
            "~=" => Op::Matches(self.regex(value_at, &value)?),
            other => {
                return Err(self.error(op_at, format!("unknown operator {other:?} (==, != or ~=)")));
            }
        };
        Ok(Condition { path, op })
    }

    fn regex(&self, at: usize, pattern: &str) -> Result<Regex, FilterError> {
        Regex::new(pattern).map_err(|e| {
            // The regex crate's syntax errors span lines; their last line says what is wrong.
            let text = e.to_string();
            let why = text.lines().map(str::trim).rfind(|l| !l.is_empty());
            let why = why.unwrap_or("").trim_start_matches("error: ");
            self.error(at, format!("bad regular expression {pattern:?}: {why}"))
        })
    }

    /// `path := field ("." field)*`
    fn path(&mut self) -> Result<Vec<String>, FilterError> {
        let mut path = vec![self.field()?];
        loop {
            self.skip_space();
            if self.peek() != Some('.') {
                return Ok(path);
            }
            self.bump();
            path.push(self.field()?);
        }
    }

    /// `field := quoted | [A-Za-z0-9_-]+`
    fn field(&mut self) -> Result<String, FilterError> {
        self.skip_space();
        match self.peek() {
            Some(c) if is_quote(c) => self.quoted(),
            Some(c) if is_field_char(c) => Ok(self.take_while(is_field_char).to_string()),
            Some(c) => Err(self.error(
                self.pos,
                format!("unexpected {c:?}, expected a field name or a quoted string"),
            )),
            None => Err(self.error(self.pos, "expected a field name, found the end")),
        }
    }

    /// `value := quoted | [^,\s]+`
    fn value(&mut self) -> Result<String, FilterError> {
        self.skip_space();
        match self.peek() {
            Some(c) if is_quote(c) => self.quoted(),
            Some(c) if c != ',' => Ok(self
                .take_while(|c| c != ',' && !c.is_whitespace())
                .to_string()),
            _ => Err(self.error(self.pos, "expected a value")),
        }
    }

    /// A string between two of the same quote character, escapes decoded.
    fn quoted(&mut self) -> Result<String, FilterError> {
        let start = self.pos;
        let quote = self.bump().expect("called on a quote");
        let mut out = String::new();
        loop {
            match self.bump() {
                None | Some('\n') => {
                    return Err(self.error(start, "quoted string not terminated"));
                }
                Some(c) if c == quote => return Ok(out),
                Some('\\') => out.push(self.escape(quote)?),
                Some(c) => out.push(c),
            }
        }
    }

    /// The character a backslash escape stands for (the backslash is consumed).
    fn escape(&mut self, quote: char) -> Result<char, FilterError> {
        let at = self.pos - 1;
        let c = self.bump();
        let simple = match c {
            Some('a') => Some('\x07'),
            Some('b') => Some('\x08'),
            Some('f') => Some('\x0c'),
            Some('n') => Some('\n'),
            Some('r') => Some('\r'),
            Some('t') => Some('\t'),
            Some('v') => Some('\x0b'),
            Some('\\') => Some('\\'),
            Some(c) if c == quote => Some(c),
            _ => None,
        };
        if let Some(simple) = simple {
            return Ok(simple);
        }
        let code = match c {
            Some('x') => self.digits(16, 2),
            Some('u') => self.digits(16, 4),
            Some('U') => self.digits(16, 8),
            Some(d @ '0'..='7') => {
                let rest = self.digits(8, 2);
                rest.map(|r| (d as u32 - '0' as u32) * 64 + r)
            }
            _ => None,
        };
        let code = code.ok_or_else(|| self.error(at, "bad escape sequence"))?;
        // `\x` and octal escapes are bytes in Go: only ASCII ones make a character.
        let byte_escape = !matches!(c, Some('u' | 'U'));
        match char::from_u32(code) {
            Some(ch) if !byte_escape || ch.is_ascii() => Ok(ch),
            _ => Err(self.error(at, "escape is not a character")),
        }
    }

    /// Exactly `n` digits of `radix`, their value.
    fn digits(&mut self, radix: u32, n: usize) -> Option<u32> {
        let mut value = 0u32;
        for _ in 0..n {
            let d = self.peek()?.to_digit(radix)?;
            self.bump();
            value = value.checked_mul(radix)?.checked_add(d)?;
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Snap {
        name: &'static str,
        kind: Kind,
        parent: &'static str,
        labels: HashMap<String, String>,
    }

    impl Snap {
        fn subject(&self) -> Subject<'_> {
            Subject {
                name: self.name,
                kind: self.kind,
                parent: self.parent,
                labels: &self.labels,
            }
        }
    }

    fn snap(name: &'static str, kind: Kind, parent: &'static str, labels: &[(&str, &str)]) -> Snap {
        Snap {
            name,
            kind,
            parent,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Three snapshots: a committed base with a gc root label, an active one on it, a view.
    fn snaps() -> Vec<Snap> {
        vec![
            snap(
                "base",
                Kind::Committed,
                "",
                &[("containerd.io/gc.root", "yes"), ("team", "a b")],
            ),
            snap(
                "app",
                Kind::Active,
                "base",
                &[("team", "ops"), ("empty", "")],
            ),
            snap("look", Kind::View, "base", &[]),
        ]
    }

    /// The names of the snapshots matching `filters`.
    fn walk(filters: &[&str]) -> Vec<&'static str> {
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        let parsed = Filters::parse(&filters).unwrap_or_else(|e| panic!("{e}"));
        snaps()
            .iter()
            .filter(|s| parsed.matches(&s.subject()))
            .map(|s| s.name)
            .collect()
    }

    fn error(filter: &str) -> FilterError {
        Filters::parse(&[filter.to_string()]).expect_err(filter)
    }

    #[test]
    fn no_filter_or_an_empty_one_matches_everything() {
        assert_eq!(walk(&[]), ["base", "app", "look"]);
        assert_eq!(walk(&[""]), ["base", "app", "look"]);
        assert_eq!(walk(&["kind==view", ""]), ["base", "app", "look"]);
    }

    #[test]
    fn kind_takes_containerds_spellings() {
        assert_eq!(walk(&["kind==committed"]), ["base"]);
        assert_eq!(walk(&["kind==active"]), ["app"]);
        assert_eq!(walk(&["kind==view"]), ["look"]);
        assert_eq!(walk(&["kind!=committed"]), ["app", "look"]);
        assert!(walk(&["kind==Committed"]).is_empty());
    }

    #[test]
    fn name_and_parent() {
        assert_eq!(walk(&["name==app"]), ["app"]);
        assert_eq!(walk(&["name!=app"]), ["base", "look"]);
        assert_eq!(walk(&["parent==base"]), ["app", "look"]);
        assert_eq!(walk(&["parent==\"\""]), ["base"]);
        assert_eq!(walk(&["parent!=\"\""]), ["app", "look"]);
        // As in containerd, name and parent are always present.
        assert_eq!(walk(&["parent"]), ["base", "app", "look"]);
        assert_eq!(walk(&["name"]), ["base", "app", "look"]);
    }

    #[test]
    fn commas_are_and_filters_are_or() {
        assert_eq!(walk(&["parent==base,kind==active"]), ["app"]);
        assert!(walk(&["name==base,name==app"]).is_empty());
        assert_eq!(walk(&["name==base", "name==app"]), ["base", "app"]);
        assert_eq!(walk(&["kind==view", "labels.team==ops"]), ["app", "look"]);
        assert_eq!(walk(&[" kind == active , labels.team "]), ["app"]);
    }

    #[test]
    fn labels_present_equal_and_absent() {
        assert_eq!(walk(&["labels.team"]), ["base", "app"]);
        assert_eq!(walk(&["labels.\"containerd.io/gc.root\""]), ["base"]);
        assert_eq!(walk(&["labels.\"containerd.io/gc.root\"==yes"]), ["base"]);
        // A label set to "" is present, and equals "".
        assert_eq!(walk(&["labels.empty"]), ["app"]);
        assert_eq!(walk(&["labels.empty==\"\""]), ["app"]);
        // `==` needs the label; `!=` sees an absent one as "".
        assert!(walk(&["labels.nope==\"\""]).is_empty());
        assert_eq!(walk(&["labels.team!=ops"]), ["base", "look"]);
        assert_eq!(walk(&["labels.team!=\"\""]), ["base", "app"]);
        // Unquoted dots join the key as containerd does; unknown fields are never present.
        assert_eq!(walk(&["labels.containerd.io"]), Vec::<&str>::new());
        assert_eq!(walk(&["labels.\"containerd\".\"io/gc\".root"]), ["base"]);
        assert!(walk(&["labels"]).is_empty());
        assert!(walk(&["size"]).is_empty());
        assert!(walk(&["name.x==app"]).is_empty());
    }

    #[test]
    fn regular_expressions_search_unanchored() {
        assert_eq!(walk(&["name~=^a"]), ["app"]);
        assert_eq!(walk(&["name~=o"]), ["look"]);
        assert_eq!(walk(&["name~=^(base|look)$"]), ["base", "look"]);
        assert_eq!(walk(&["name~=/^[al]/"]), ["app", "look"]);
        assert_eq!(walk(&["labels.team~=\"^a \""]), ["base"]);
        // An absent label is "" to `~=`.
        assert_eq!(walk(&["labels.team~=^$"]), ["look"]);
    }

    #[test]
    fn quoted_values_and_escapes() {
        assert_eq!(walk(&["labels.team==\"a b\""]), ["base"]);
        assert_eq!(walk(&["labels.team==\"a\\x20b\""]), ["base"]);
        assert_eq!(walk(&["labels.team==\"a\\040b\""]), ["base"]);
        assert_eq!(walk(&["labels.team==\"a\\u0020b\""]), ["base"]);
        assert_eq!(walk(&["labels.team==|ops|"]), ["app"]);
        // A quoted comma is no separator.
        let quoted = Filters::parse(&["name==\"x,y\"".into()]).unwrap();
        let labels = HashMap::new();
        let subject = Subject {
            name: "x,y",
            kind: Kind::View,
            parent: "",
            labels: &labels,
        };
        assert!(quoted.matches(&subject));
    }

    #[test]
    fn escapes_decode_like_go() {
        let cases = [
            (r#""a\"b""#, "a\"b"),
            (r#""a\\b""#, "a\\b"),
            (r#""\t\n""#, "\t\n"),
            (r#"/a\/b/"#, "a/b"),
            (r#"|a\|b|"#, "a|b"),
            (r#""\U0001F600""#, "\u{1F600}"),
            (r#""\101""#, "A"),
        ];
        for (quoted, want) in cases {
            let mut p = Parser::new(quoted);
            assert_eq!(p.quoted().unwrap(), want, "{quoted}");
            assert_eq!(p.pos, quoted.len(), "{quoted}");
        }
    }

    #[test]
    fn bare_values_run_to_a_comma_or_space() {
        let f = Filters::parse(&["name==a.b/c:d,kind==view".into()]).unwrap();
        let Some(any) = &f.any else { panic!() };
        let conditions = &any[0].0;
        assert_eq!(conditions.len(), 2);
        assert!(matches!(&conditions[0].op, Op::Equal(v) if v == "a.b/c:d"));
        assert_eq!(conditions[1].path, ["kind"]);
    }

    #[test]
    fn malformed_filters_are_errors_that_name_them() {
        let cases = [
            ("kind=committed", 4, "unknown operator"),
            ("kind===committed", 4, "unknown operator"),
            ("kind==", 6, "expected a value"),
            ("kind==,name", 6, "expected a value"),
            ("kind committed", 5, "expected an operator"),
            ("name==a b", 8, "unexpected 'b'"),
            (",", 0, "expected a field name"),
            ("name==a,", 8, "expected a field name"),
            ("   ", 3, "expected a field name"),
            ("labels.", 7, "expected a field name"),
            ("labels.\"open", 7, "not terminated"),
            ("name==\"a\\qb\"", 8, "bad escape"),
            ("name==\"\\xff\"", 7, "not a character"),
            ("name==\"\\u12\"", 7, "bad escape"),
            ("name~=^a(", 6, "bad regular expression \"^a(\""),
            ("name~=\"(\"", 6, "bad regular expression"),
            ("$name", 0, "unexpected '$'"),
        ];
        for (filter, offset, message) in cases {
            let e = error(filter);
            assert_eq!(e.filter, filter);
            assert_eq!(e.offset, offset, "{filter}: {e}");
            assert!(e.message.contains(message), "{filter}: {e}");
            let line = e.to_string();
            assert!(line.starts_with("invalid filter "), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn one_malformed_filter_spoils_the_list() {
        let filters = ["kind==view".to_string(), "kind=view".to_string()];
        let e = Filters::parse(&filters).unwrap_err();
        assert_eq!(e.filter, "kind=view");
        let e = error("a\nb");
        assert!(e.to_string().contains(r#""a\nb""#), "{e}");
    }
}
