//! Message templates: a body with `{{column}}` placeholders, filled in from
//! each CSV row.
//!
//! This module owns the template syntax and its errors. A [`Template`] is
//! parsed once from the operator's text; [`Template::bind`] resolves every
//! placeholder to a column index against the CSV header once, before the first
//! row is read, so a misspelt column stops the import up front instead of
//! producing a million messages with a hole in them. [`BoundTemplate`] then
//! renders rows without looking anything up. The module does no I/O and
//! knows nothing about SMS lengths (see [`crate::domain::text`]).
//!
//! Syntax: `{{ name }}` is a placeholder (whitespace inside the braces is
//! ignored); `{{ name | default }}` renders `default` where the cell is empty
//! (or only spaces) or the CSV has no such column; any other `{` or `}` is
//! literal text. There is no escaping and no filter.

/// Why a template could not be parsed or bound to the CSV header. The
/// `Display` text is for people and says how to fix the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{{` without a `}}` after it.
    #[error(
        "the template has an unclosed {{{{ at line {line}, column {column}; \
         close the placeholder with }}}}"
    )]
    Unclosed { line: usize, column: usize },
    /// `{{}}` or `{{  }}`.
    #[error(
        "the template has an empty placeholder at line {line}, column {column}; \
         put a column name between the braces, e.g. {{{{first_name}}}}"
    )]
    EmptyPlaceholder { line: usize, column: usize },
    /// A name with a brace in it, as in `{{{name}}}`.
    #[error(
        "the template placeholder {{{{{name}}}}} at line {line}, column {column} has a brace \
         in its name; write placeholders with exactly two braces on each side, e.g. {{{{first_name}}}}"
    )]
    BraceInName {
        name: String,
        line: usize,
        column: usize,
    },
    /// A placeholder that names no column of the CSV.
    #[error("{}", missing_column_message(.name, .available))]
    MissingColumn {
        name: String,
        available: Vec<String>,
    },
    /// A placeholder that matches no column exactly and several columns when
    /// case is ignored.
    #[error(
        "the template uses {{{{{name}}}}}, which matches several CSV columns when case is \
         ignored ({}); write it exactly as one of them",
        .candidates.join(", ")
    )]
    AmbiguousColumn {
        name: String,
        candidates: Vec<String>,
    },
}

/// A parsed template, not yet tied to a CSV header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Placeholder {
        name: String,
        default: Option<String>,
    },
}

impl Template {
    /// Splits `src` into literal text and `{{ name }}` placeholders.
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut cursor = 0;
        while let Some(open) = find_from(src, cursor, "{{") {
            literal.push_str(src.get(cursor..open).unwrap_or_default());
            let name_start = open + 2;
            let (line, column) = line_and_column(src, open);
            let Some(close) = find_from(src, name_start, "}}") else {
                return Err(TemplateError::Unclosed { line, column });
            };
            let inside = src.get(name_start..close).unwrap_or_default();
            // `{{a {{b}}`: the first `{{` is the one left open.
            if inside.contains("{{") {
                return Err(TemplateError::Unclosed { line, column });
            }
            let (name, default) = match inside.split_once('|') {
                Some((name, default)) => (name.trim(), Some(default.trim().to_owned())),
                None => (inside.trim(), None),
            };
            if name.is_empty() {
                return Err(TemplateError::EmptyPlaceholder { line, column });
            }
            if name.contains(['{', '}']) {
                return Err(TemplateError::BraceInName {
                    name: name.to_owned(),
                    line,
                    column,
                });
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Placeholder {
                name: name.to_owned(),
                default,
            });
            cursor = close + 2;
        }
        literal.push_str(src.get(cursor..).unwrap_or_default());
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    /// The distinct placeholder names, in order of first appearance.
    pub fn placeholders(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for part in &self.parts {
            if let Part::Placeholder { name, .. } = part {
                if !names.contains(&name.as_str()) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// Resolves every placeholder to a column of `headers`: the column with
    /// exactly that name, else the only one equal to it ignoring case (and a
    /// byte order mark or spaces around the header). A placeholder with a
    /// default may name no column: it then always renders its default.
    pub fn bind(&self, headers: &[String]) -> Result<BoundTemplate, TemplateError> {
        let mut parts = Vec::with_capacity(self.parts.len());
        let mut literal_len = 0;
        for part in &self.parts {
            match part {
                Part::Literal(text) => {
                    literal_len += text.len();
                    parts.push(BoundPart::Literal(text.clone()));
                }
                Part::Placeholder { name, default } => {
                    parts.push(match (column_index(name, headers), default) {
                        (Ok(index), default) => BoundPart::Column {
                            index,
                            default: default.clone(),
                        },
                        (Err(TemplateError::MissingColumn { .. }), Some(default)) => {
                            literal_len += default.len();
                            BoundPart::Literal(default.clone())
                        }
                        (Err(error), _) => return Err(error),
                    });
                }
            }
        }
        Ok(BoundTemplate { parts, literal_len })
    }
}

/// A template whose placeholders are column indexes: ready to render rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundTemplate {
    parts: Vec<BoundPart>,
    /// Bytes of literal text, to size the output buffer once.
    literal_len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum BoundPart {
    Literal(String),
    Column {
        index: usize,
        /// What an empty cell renders as; `None`: nothing.
        default: Option<String>,
    },
}

impl BoundTemplate {
    /// The message for one row. A column missing from a short row renders as
    /// an empty string.
    pub fn render(&self, record: &csv::StringRecord) -> String {
        let mut out = String::new();
        self.render_into(record, &mut out);
        out
    }

    /// Like [`BoundTemplate::render`], but clears `out` and writes into it, so
    /// one buffer serves every row. Returns whether a placeholder without a
    /// default rendered empty (`Hi , your appointment…`), which `check`
    /// warns of.
    pub fn render_into(&self, record: &csv::StringRecord, out: &mut String) -> bool {
        out.clear();
        out.reserve(self.literal_len);
        let mut left_empty = false;
        for part in &self.parts {
            match part {
                BoundPart::Literal(text) => out.push_str(text),
                BoundPart::Column { index, default } => {
                    let cell = record.get(*index).unwrap_or_default();
                    match default {
                        Some(default) if cell.trim().is_empty() => out.push_str(default),
                        _ => {
                            left_empty |= cell.trim().is_empty();
                            out.push_str(cell);
                        }
                    }
                }
            }
        }
        left_empty
    }
}

/// How many columns an error message lists before it says "and N more".
const LISTED_COLUMNS: usize = 30;

fn column_index(name: &str, headers: &[String]) -> Result<usize, TemplateError> {
    if let Some(index) = headers.iter().position(|header| header == name) {
        return Ok(index);
    }
    let wanted = name.to_lowercase();
    let matches: Vec<usize> = headers
        .iter()
        .enumerate()
        .filter(|(_, header)| clean_header(header).to_lowercase() == wanted)
        .map(|(index, _)| index)
        .collect();
    match matches.as_slice() {
        [index] => Ok(*index),
        [] => Err(TemplateError::MissingColumn {
            name: name.to_owned(),
            available: headers.to_vec(),
        }),
        several => Err(TemplateError::AmbiguousColumn {
            name: name.to_owned(),
            candidates: several
                .iter()
                .filter_map(|&index| headers.get(index).cloned())
                .collect(),
        }),
    }
}

/// A header as people see it: without a byte order mark or surrounding spaces.
fn clean_header(header: &str) -> &str {
    header.trim_start_matches('\u{FEFF}').trim()
}

fn missing_column_message(name: &str, available: &[String]) -> String {
    let mut message = format!("the template uses {{{{{name}}}}} but the CSV has no such column; ");
    if available.is_empty() {
        message.push_str("the CSV has no header row");
        return message;
    }
    message.push_str("columns are: ");
    let listed: Vec<&str> = available
        .iter()
        .take(LISTED_COLUMNS)
        .map(|header| clean_header(header))
        .collect();
    message.push_str(&listed.join(", "));
    if available.len() > LISTED_COLUMNS {
        message.push_str(&format!(" and {} more", available.len() - LISTED_COLUMNS));
    }
    match closest_header(name, available) {
        Some(header) => message.push_str(&format!("; did you mean {{{{{header}}}}}?")),
        None => message.push_str("; fix the placeholder or add the column to the CSV"),
    }
    message
}

/// The header most like `name`, if one is close enough to be a likely typo:
/// the same once case, spaces, `_` and `-` are ignored, or within a small
/// edit distance.
fn closest_header<'a>(name: &str, headers: &'a [String]) -> Option<&'a str> {
    let squash = |text: &str| -> String {
        text.chars()
            .filter(|c| !c.is_whitespace() && !matches!(c, '_' | '-' | '\u{FEFF}'))
            .flat_map(char::to_lowercase)
            .collect()
    };
    let wanted = squash(name);
    if wanted.is_empty() {
        return None;
    }
    let allowed = (wanted.chars().count() / 3).max(1);
    headers
        .iter()
        .map(|header| {
            (
                edit_distance(&wanted, &squash(header)),
                clean_header(header),
            )
        })
        .filter(|(distance, _)| *distance <= allowed)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, header)| header)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

fn find_from(haystack: &str, from: usize, needle: &str) -> Option<usize> {
    haystack
        .get(from..)
        .and_then(|rest| rest.find(needle))
        .map(|offset| from + offset)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_and_column(src: &str, offset: usize) -> (usize, usize) {
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before
        .get(line_start..)
        .map_or(0, |text| text.chars().count())
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shows a template as `L:` literal and `P:` placeholder parts.
    fn shape(template: &Template) -> Vec<String> {
        template
            .parts
            .iter()
            .map(|part| match part {
                Part::Literal(text) => format!("L:{text}"),
                Part::Placeholder {
                    name,
                    default: None,
                } => format!("P:{name}"),
                Part::Placeholder {
                    name,
                    default: Some(default),
                } => format!("P:{name}|{default}"),
            })
            .collect()
    }

    #[track_caller]
    fn check_parse(src: &str, expected: &[&str]) {
        let template = Template::parse(src).expect("template parses");
        assert_eq!(shape(&template), expected, "template {src:?}");
    }

    #[track_caller]
    fn check_parse_error(src: &str, expected: &str) {
        let error = Template::parse(src).expect_err("template is refused");
        assert_eq!(error.to_string(), expected, "template {src:?}");
    }

    fn headers(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[track_caller]
    fn check_render(src: &str, header: &[&str], row: &[&str], expected: &str) {
        let template = Template::parse(src).expect("template parses");
        let bound = template.bind(&headers(header)).expect("template binds");
        let record = csv::StringRecord::from(row.to_vec());
        assert_eq!(bound.render(&record), expected, "template {src:?}");
    }

    #[track_caller]
    fn check_bind_error(src: &str, header: &[&str], expected: &str) {
        let template = Template::parse(src).expect("template parses");
        let error = template
            .bind(&headers(header))
            .expect_err("binding is refused");
        assert_eq!(error.to_string(), expected, "template {src:?}");
    }

    #[test]
    fn parses_literals_and_placeholders() {
        check_parse("", &[]);
        check_parse("Hello", &["L:Hello"]);
        check_parse("{{name}}", &["P:name"]);
        check_parse("Hi {{ first_name }}!", &["L:Hi ", "P:first_name", "L:!"]);
        check_parse("{{a}}{{b}} {{a}}", &["P:a", "P:b", "L: ", "P:a"]);
        check_parse("{{\tfirst name\n}}", &["P:first name"]);
        check_parse("{{名前}}さん", &["P:名前", "L:さん"]);
        // Lone braces are text.
        check_parse("{x} and }", &["L:{x} and }"]);
        check_parse("a { b } c", &["L:a { b } c"]);
        check_parse("}} before", &["L:}} before"]);
        check_parse("{{a}}}", &["P:a", "L:}"]);
        check_parse("JSON: {\"k\": 1}", &["L:JSON: {\"k\": 1}"]);
    }

    #[test]
    fn a_default_fills_an_empty_cell_or_a_missing_column() {
        check_parse(
            "Hi {{ first_name | there }}",
            &["L:Hi ", "P:first_name|there"],
        );
        check_parse("{{a|}}{{b|x|y}}", &["P:a|", "P:b|x|y"]);
        let header = ["phone", "first_name"];
        check_render("Hi {{first_name|there}}", &header, &["1", "Ann"], "Hi Ann");
        check_render("Hi {{first_name|there}}", &header, &["1", ""], "Hi there");
        check_render("Hi {{first_name|there}}", &header, &["1", "  "], "Hi there");
        // A short row has no cell: the default too.
        check_render("Hi {{first_name|there}}", &header, &["1"], "Hi there");
        // No such column: always the default, never an error.
        check_render(
            "Hi {{nickname|friend}}",
            &header,
            &["1", "Ann"],
            "Hi friend",
        );
        check_parse_error(
            "Hi {{|there}}",
            "the template has an empty placeholder at line 1, column 4; put a column name \
             between the braces, e.g. {{first_name}}",
        );
    }

    #[test]
    fn rendering_says_when_a_placeholder_without_default_came_out_empty() {
        let header = headers(&["phone", "first_name", "city"]);
        let bound = |src: &str| {
            Template::parse(src)
                .expect("parses")
                .bind(&header)
                .expect("binds")
        };
        let mut out = String::new();
        let row = |cells: &[&str]| csv::StringRecord::from(cells.to_vec());
        let plain = bound("Hi {{first_name}}, see you in {{city}}");
        assert!(!plain.render_into(&row(&["1", "Ann", "Oslo"]), &mut out));
        assert!(plain.render_into(&row(&["1", "", "Oslo"]), &mut out));
        assert_eq!(out, "Hi , see you in Oslo");
        assert!(plain.render_into(&row(&["1", "Ann", " "]), &mut out));
        let defaulted = bound("Hi {{first_name|there}}");
        assert!(!defaulted.render_into(&row(&["1", "", "Oslo"]), &mut out));
        assert!(!bound("No placeholder").render_into(&row(&["1", "", ""]), &mut out));
    }

    #[test]
    fn parse_errors_say_where() {
        let unclosed = |at: &str| {
            format!("the template has an unclosed {{{{ at {at}; close the placeholder with }}}}")
        };
        for (src, at) in [
            ("Hi {{name", "line 1, column 4"),
            ("line one\nsee you {{when", "line 2, column 9"),
            ("{{a {{b}}", "line 1, column 1"),
            ("Zoë {{", "line 1, column 5"),
        ] {
            check_parse_error(src, &unclosed(at));
        }
        for src in ["Hi {{}}", "Hi {{   }}"] {
            check_parse_error(
                src,
                "the template has an empty placeholder at line 1, column 4; put a column name between the braces, e.g. {{first_name}}",
            );
        }
        check_parse_error(
            "Hi {{{name}}}",
            "the template placeholder {{{name}} at line 1, column 4 has a brace in its name; write placeholders with exactly two braces on each side, e.g. {{first_name}}",
        );
    }

    #[test]
    fn placeholders_are_distinct_and_ordered() {
        let template = Template::parse("{{b}} {{a}} {{b}} {{ c }}").expect("template parses");
        assert_eq!(template.placeholders(), ["b", "a", "c"]);
        let plain = Template::parse("no placeholders").expect("template parses");
        assert!(plain.placeholders().is_empty());
    }

    #[test]
    fn renders_rows() {
        let header = ["phone", "first_name", "last_name", "city"];
        check_render(
            "Hi {{first_name}}, see you in {{city}}.",
            &header,
            &["4155550101", "José", "García", "San José"],
            "Hi José, see you in San José.",
        );
        check_render(
            "{{first_name}} {{last_name}}",
            &header,
            &["4155550101", "Robert \"Bobby\"", "Smith, Jr."],
            "Robert \"Bobby\" Smith, Jr.",
        );
        // The row is short: the missing column renders as nothing.
        check_render(
            "Hi {{first_name}} from {{city}}!",
            &header,
            &["4155550101", "Zoë"],
            "Hi Zoë from !",
        );
        check_render("Static text", &header, &[], "Static text");
        check_render("", &header, &["x"], "");
        // Values are inserted as they are; braces in them are not expanded.
        check_render(
            "{{first_name}}",
            &header,
            &["x", "{{city}}", "y", "z"],
            "{{city}}",
        );
    }

    #[test]
    fn binds_exactly_then_ignoring_case() {
        // Exact wins over a case-insensitive match.
        check_render("{{Name}}", &["name", "Name"], &["lower", "exact"], "exact");
        check_render(
            "{{NAME}}",
            &["phone", "Name"],
            &["1", "ignored case"],
            "ignored case",
        );
        check_render("{{name}}", &["\u{FEFF}Name "], &["with bom"], "with bom");
        check_render("{{ciudad}}", &["CIUDAD"], &["León"], "León");
    }

    #[test]
    fn bind_errors_list_the_columns() {
        let header = ["phone", "first_name", "last_name", "city"];
        check_bind_error(
            "Hi {{frist_name}}",
            &header,
            "the template uses {{frist_name}} but the CSV has no such column; columns are: phone, first_name, last_name, city; did you mean {{first_name}}?",
        );
        check_bind_error(
            "Hi {{FirstName}}",
            &header,
            "the template uses {{FirstName}} but the CSV has no such column; columns are: phone, first_name, last_name, city; did you mean {{first_name}}?",
        );
        check_bind_error(
            "Your code is {{coupon}}",
            &header,
            "the template uses {{coupon}} but the CSV has no such column; columns are: phone, first_name, last_name, city; fix the placeholder or add the column to the CSV",
        );
        check_bind_error(
            "{{x}}",
            &[],
            "the template uses {{x}} but the CSV has no such column; the CSV has no header row",
        );
        check_bind_error(
            "{{name}}",
            &["Name", "NAME"],
            "the template uses {{name}}, which matches several CSV columns when case is ignored (Name, NAME); write it exactly as one of them",
        );
        let many: Vec<String> = (0..35).map(|i| format!("c{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let error = Template::parse("{{zzzzzz}}")
            .expect("template parses")
            .bind(&headers(&many))
            .expect_err("binding is refused");
        assert!(
            error.to_string().contains("c28, c29 and 5 more;"),
            "{error}"
        );
        assert_eq!(
            error,
            TemplateError::MissingColumn {
                name: "zzzzzz".to_owned(),
                available: headers(&many),
            }
        );
    }

    #[test]
    fn render_into_reuses_the_buffer() {
        let bound = Template::parse("Hi {{first_name}}")
            .expect("template parses")
            .bind(&headers(&["phone", "first_name"]))
            .expect("template binds");
        let mut out = String::from("left over from the previous row");
        bound.render_into(&csv::StringRecord::from(vec!["1", "Łukasz"]), &mut out);
        assert_eq!(out, "Hi Łukasz");
        bound.render_into(&csv::StringRecord::from(vec!["2", "王芳"]), &mut out);
        assert_eq!(out, "Hi 王芳");
    }

    #[test]
    fn edit_distances() {
        #[track_caller]
        fn check_distance(a: &str, b: &str, expected: usize) {
            assert_eq!(edit_distance(a, b), expected, "{a:?} vs {b:?}");
            assert_eq!(edit_distance(b, a), expected, "{b:?} vs {a:?}");
        }
        check_distance("", "", 0);
        check_distance("abc", "", 3);
        check_distance("frist", "first", 2);
        check_distance("kitten", "sitting", 3);
        check_distance("zoë", "zoe", 1);
    }
}
