//! Values written as PostgreSQL `COPY ... (FORMAT csv)` fields: quoted text,
//! `text[]` array literals and pgvector `[x,y,...]` literals.

use std::fmt::Write as _;

/// One CSV row under construction; fields are separated by commas.
pub struct Row<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Row<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Row<'a> {
        Row { out, first: true }
    }

    fn sep(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    /// Always quoted, so that an empty string stays distinct from NULL.
    pub fn text(&mut self, value: &str) -> &mut Self {
        self.sep();
        quote_into(self.out, value);
        self
    }

    /// Unquoted: numbers, booleans and other values without commas or quotes.
    pub fn plain(&mut self, value: impl std::fmt::Display) -> &mut Self {
        self.sep();
        // Writing into a Vec cannot fail.
        let _ = std::io::Write::write_fmt(self.out, format_args!("{value}"));
        self
    }

    /// An unquoted empty field is NULL in CSV.
    pub fn null(&mut self) -> &mut Self {
        self.sep();
        self
    }

    pub fn opt(&mut self, value: Option<impl std::fmt::Display>) -> &mut Self {
        match value {
            Some(v) => self.plain(v),
            None => self.null(),
        }
    }

    pub fn end(&mut self) {
        self.out.push(b'\n');
    }
}

/// CSV quoting: wrap in `"` and double any `"` inside.
pub fn quote_into(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    for b in value.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// A `text[]` literal: every element double-quoted, with `"` and `\` escaped.
pub fn array_literal(items: &[String]) -> String {
    let mut s = String::with_capacity(2 + items.iter().map(|i| i.len() + 3).sum::<usize>());
    s.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        for c in item.chars() {
            if c == '"' || c == '\\' {
                s.push('\\');
            }
            s.push(c);
        }
        s.push('"');
    }
    s.push('}');
    s
}

/// A pgvector literal, `[1,-0.5,0.25]`; Rust prints floats without exponents
/// and with the fewest digits that read back to the same `f32`.
pub fn vector_literal(values: &[f32]) -> String {
    let mut s = String::with_capacity(2 + values.len() * 10);
    s.push('[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{v}");
    }
    s.push(']');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn array_literals_quote_and_escape() {
        assert_eq!(array_literal(&[]), "{}");
        assert_eq!(array_literal(&strings(&["a", "b c"])), r#"{"a","b c"}"#);
        assert_eq!(
            array_literal(&strings(&[
                r#"say "hi""#,
                r"back\slash",
                "x,y",
                "{}",
                "NULL"
            ])),
            r#"{"say \"hi\"","back\\slash","x,y","{}","NULL"}"#
        );
    }

    #[test]
    fn vector_literals_have_no_exponents() {
        assert_eq!(vector_literal(&[1.0, -0.5, 0.25]), "[1,-0.5,0.25]");
        assert_eq!(vector_literal(&[1e-7, 3.5e9]), "[0.0000001,3500000000]");
        assert_eq!(vector_literal(&[0.123456]), "[0.123456]");
    }

    #[test]
    fn csv_rows_quote_text_and_leave_null_empty() {
        let mut out = Vec::new();
        Row::new(&mut out)
            .text("a \"quoted\", value")
            .text("")
            .opt(None::<i32>)
            .opt(Some(5))
            .plain(true)
            .text(&array_literal(&strings(&["x\"y"])))
            .end();
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "\"a \"\"quoted\"\", value\",\"\",,5,true,\"{\"\"x\\\"\"y\"\"}\"\n"
        );
    }
}
