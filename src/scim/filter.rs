//! SCIM filters (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2): the one seam over the `scim_v2`
//! parser, and our evaluator over stored resources.
//!
//! The parser's AST is converted into the types below at this seam, so nothing else in the crate
//! depends on `scim_v2`.
//!
//! Evaluation works on canonical resources: core and common attributes at the top level under
//! their schema-cased names, extension attributes inside the object keyed by the extension URN.
//! Names are resolved against `schema.rs`, so `caseExact`, `type` and multi-valuedness come from
//! the same table that `/Schemas` publishes.

use crate::scim::error::ScimError;
use crate::scim::schema::{AttrDef, AttrType, Mutability, ResourceKind, Returned, Uniqueness};
use scim_v2::filter as sf;
use serde_json::Value;
use std::cmp::Ordering;
use std::fmt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// An attribute reference: optional schema URN, attribute name, optional sub-attribute.
/// Names are kept as written; resolution against the schema is case-insensitive.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrRef {
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl AttrRef {
    /// A plain top-level (or, inside a value path, element-relative) attribute name.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            urn: None,
            name: name.into(),
            sub: None,
        }
    }
}

impl fmt::Display for AttrRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        write!(f, "{}", self.name)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Lt,
    Ge,
    Le,
}

impl CompOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CompOp::Eq => "eq",
            CompOp::Ne => "ne",
            CompOp::Co => "co",
            CompOp::Sw => "sw",
            CompOp::Ew => "ew",
            CompOp::Gt => "gt",
            CompOp::Lt => "lt",
            CompOp::Ge => "ge",
            CompOp::Le => "le",
        }
    }

    fn is_ordering(self) -> bool {
        matches!(self, CompOp::Gt | CompOp::Lt | CompOp::Ge | CompOp::Le)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Present(AttrRef),
    /// The value is the JSON literal from the filter: string, number, `true`, `false` or `null`.
    Compare(AttrRef, CompOp, Value),
    /// `attr[inner]`: true when some element of the multi-valued `attr` matches `inner`, whose
    /// attribute names are relative to the elements (`emails[type eq "work"]`).
    ValuePath(AttrRef, Box<Filter>),
    Not(Box<Filter>),
    And(Vec<Filter>),
    Or(Vec<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum PatchPath {
    Attr(AttrRef),
    /// `attr[filter]` or `attr[filter].sub`.
    Value {
        attr: AttrRef,
        filter: Filter,
        sub: Option<String>,
    },
}

/// Renders the filter in the RFC 7644 grammar, so that parsing the text gives this filter back
/// (the fuzz targets check that). Parentheses appear only where precedence needs them (an `or`
/// inside an `and`) and around `not`'s operand, so the text nests no deeper than the parsed
/// input did; string values are JSON literals.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Present(r) => write!(f, "{r} pr"),
            Filter::Compare(r, op, v) => write!(f, "{r} {} {v}", op.as_str()),
            Filter::ValuePath(r, inner) => write!(f, "{r}[{inner}]"),
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::And(items) => join(f, items, " and ", |i| {
                matches!(i, Filter::And(_) | Filter::Or(_))
            }),
            Filter::Or(items) => join(f, items, " or ", |i| matches!(i, Filter::Or(_))),
        }
    }
}

// A nested `and` directly inside `and` (or `or` inside `or`) never comes out of the parser, which
// flattens them; it is still bracketed so that rendering any hand-built tree keeps its grouping.
fn join(
    f: &mut fmt::Formatter<'_>,
    items: &[Filter],
    sep: &str,
    bracket: impl Fn(&Filter) -> bool,
) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        if bracket(item) {
            write!(f, "({item})")?;
        } else {
            write!(f, "{item}")?;
        }
    }
    Ok(())
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatchPath::Attr(r) => write!(f, "{r}"),
            PatchPath::Value { attr, filter, sub } => {
                write!(f, "{attr}[{filter}]")?;
                match sub {
                    Some(s) => write!(f, ".{s}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// An equality on an indexed attribute that a filter requires, so that the store can look up
/// candidates instead of scanning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexHint {
    Id(String),
    UserName(String),
    ExternalId(String),
    DisplayName(String),
}

impl IndexHint {
    /// Lower is more selective: `id` names one resource, `displayName` is only unique per kind.
    fn rank(&self) -> u8 {
        match self {
            IndexHint::Id(_) => 0,
            IndexHint::UserName(_) => 1,
            IndexHint::ExternalId(_) => 2,
            IndexHint::DisplayName(_) => 3,
        }
    }
}

/// Longest filter accepted, in bytes. Real IdP filters are well under 1 KiB; a batch lookup of a
/// hundred ids fits comfortably.
pub const MAX_FILTER_LEN: usize = 16 * 1024;

/// Most comparisons (`pr` included) one filter or PATCH path may make. A query evaluates every
/// comparison against every candidate resource, and an `or` defeats the index lookup, so the work
/// grows with this number times the store size: about 0.2 µs per comparison and resource in a
/// release build; 600 `eq` terms over 25,000 users took about 3 s here, as long as 600 `co`.
/// Okta and Entra send one or two; a hundred keeps a hundred-id batch lookup working while
/// bounding a hostile filter at about a hundred times the cost of a one-term one. The parser's
/// own cap (`MAX_FILTER_TERMS`, 1,024) is too loose for that.
pub const MAX_FILTER_COMPARISONS: usize = 100;

/// Most `co`/`sw`/`ew` comparisons one filter or PATCH path may make. A substring match lowercases
/// both sides and searches, on every candidate resource, and no index can answer it; a 600-term
/// `co` filter took 0.7 s. IdPs never send one, and a person searching ORs a handful of
/// attributes, so fifty is generous.
pub const MAX_SUBSTRING_COMPARISONS: usize = 50;

/// What evaluating a filter costs per resource (or per element, inside a value path).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterCost {
    /// Every comparison and `pr`.
    pub comparisons: usize,
    /// Those of them that are `co`, `sw` or `ew`.
    pub substring: usize,
}

/// Counts the comparisons of a filter.
pub fn cost(filter: &Filter) -> FilterCost {
    let mut c = FilterCost::default();
    add_cost(filter, &mut c);
    c
}

// The parser bounds nesting at `MAX_FILTER_DEPTH`, so this recursion is shallow.
fn add_cost(filter: &Filter, c: &mut FilterCost) {
    match filter {
        Filter::Present(_) => c.comparisons += 1,
        Filter::Compare(_, op, _) => {
            c.comparisons += 1;
            if matches!(op, CompOp::Co | CompOp::Sw | CompOp::Ew) {
                c.substring += 1;
            }
        }
        Filter::ValuePath(_, inner) | Filter::Not(inner) => add_cost(inner, c),
        Filter::And(items) | Filter::Or(items) => items.iter().for_each(|f| add_cost(f, c)),
    }
}

/// Refuses a filter over [`MAX_SUBSTRING_COMPARISONS`] or [`MAX_FILTER_COMPARISONS`], naming
/// the limit and the count. The substring limit is checked first because it is the tighter one.
fn check_cost(filter: &Filter, what: &str) -> Result<(), String> {
    let c = cost(filter);
    if c.substring > MAX_SUBSTRING_COMPARISONS {
        return Err(format!(
            "the {what} makes {} co/sw/ew comparisons; the limit is \
             {MAX_SUBSTRING_COMPARISONS}",
            c.substring
        ));
    }
    if c.comparisons > MAX_FILTER_COMPARISONS {
        return Err(format!(
            "the {what} makes {} comparisons; the limit is {MAX_FILTER_COMPARISONS}",
            c.comparisons
        ));
    }
    Ok(())
}

/// `schemas` is on every resource (RFC 7643 §3) but in no schema's attribute list, and clients
/// filter on it (`schemas eq "urn:…:enterprise:2.0:User"`, RFC 7644 §3.4.2.2), so it gets a
/// definition here. URIs are compared case-insensitively, as schema URNs are everywhere else.
pub static SCHEMAS_ATTR: AttrDef = AttrDef {
    name: "schemas",
    ty: AttrType::Reference,
    multi: true,
    required: true,
    case_exact: false,
    mutability: Mutability::ReadOnly,
    returned: Returned::Always,
    uniqueness: Uniqueness::None,
    description: "The schema URIs the resource conforms to.",
    sub: &[],
    canonical: &[],
    reference_types: &["uri"],
};

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// Parses a `filter` query parameter. Errors are `400 invalidFilter`, except a filter over the
/// cost limits ([`MAX_FILTER_COMPARISONS`], [`MAX_SUBSTRING_COMPARISONS`]), which is
/// `400 tooMany`: it is well-formed, only more work than this server will do (RFC 7644 §3.12).
pub fn parse_filter(input: &str) -> Result<Filter, ScimError> {
    let input = check_length(input, "filter").map_err(ScimError::invalid_filter)?;
    if let Some(f) = simple_comparison(input) {
        return Ok(f);
    }
    parse_filter_by_grammar(input)
}

/// [`parse_filter`] without the shortcut for one comparison: every filter through the grammar.
pub fn parse_filter_by_grammar(input: &str) -> Result<Filter, ScimError> {
    let input = check_length(input, "filter").map_err(ScimError::invalid_filter)?;
    let parsed = input.parse::<sf::Filter>().or_else(|first| {
        // Entra filters on `emails[type eq "work"].value eq "…"`, a PATCH-path shape the RFC
        // filter grammar lacks; it means the same as the value filter with the comparison
        // moved inside the brackets. Errors still describe what the client sent.
        rewrite_value_path_subattrs(input)
            .and_then(|rewritten| rewritten.parse::<sf::Filter>().ok())
            .ok_or_else(|| ScimError::invalid_filter(describe_parse_error(input, &first, "filter")))
    })?;
    let filter = convert_filter(parsed);
    check_cost(&filter, "filter").map_err(ScimError::too_many)?;
    Ok(filter)
}

/// Parses a PATCH `path`. Errors are `400 invalidPath`, the cost limits of a value filter
/// included: `tooMany` is for queries (RFC 7644 §3.12), and the path is what gets refused.
pub fn parse_path(input: &str) -> Result<PatchPath, ScimError> {
    let input = check_length(input, "path").map_err(ScimError::invalid_path)?;
    if let Some(name) = plain_attr_name(input) {
        return Ok(PatchPath::Attr(AttrRef::named(name)));
    }
    parse_path_by_grammar(input)
}

/// [`parse_path`] without the shortcut for a plain attribute name.
pub fn parse_path_by_grammar(input: &str) -> Result<PatchPath, ScimError> {
    let input = check_length(input, "path").map_err(ScimError::invalid_path)?;
    match input.parse::<sf::PatchPath>() {
        Ok(sf::PatchPath::Attr(a)) => Ok(PatchPath::Attr(convert_attr(a))),
        Ok(sf::PatchPath::Value(vp)) => {
            let filter = convert_val_filter(vp.filter);
            check_cost(&filter, "path").map_err(ScimError::invalid_path)?;
            Ok(PatchPath::Value {
                attr: convert_attr(vp.attr),
                filter,
                sub: vp.sub_attr,
            })
        }
        Err(e) => Err(ScimError::invalid_path(describe_parse_error(
            input, &e, "path",
        ))),
    }
}

// The shortcuts below answer the shapes IdPs send on every lookup and PATCH (`userName eq
// "…"`, `members`) without the grammar's lexer, which builds a lazy DFA afresh for every input:
// that was about a sixth of the CPU of a `userName eq` lookup. Each accepts only inputs that
// the grammar reads the same way (a single-token attribute name that is no keyword, spaces, an
// operator, a string without escapes or control characters) and leaves everything else to the
// grammar; `fuzzing::filter` checks that both agree wherever a shortcut answers.

/// Words the grammar's lexer may read as something other than an attribute name (literals,
/// operators, logical words). Names spelt like them go through the grammar.
const KEYWORDS: [&str; 16] = [
    "true", "false", "null", "not", "and", "or", "pr", "eq", "ne", "co", "sw", "ew", "gt", "lt",
    "ge", "le",
];

/// `input` when it is one `ATTRNAME` token (`[a-zA-Z][a-zA-Z0-9_-]*`, RFC 7644 §3.10) that is
/// no keyword.
pub fn plain_attr_name(input: &str) -> Option<&str> {
    let mut bytes = input.bytes();
    let first_is_alpha = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let keyword = KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(input));
    (first_is_alpha && rest_ok && !keyword).then_some(input)
}

/// `ATTRNAME SP op SP "string"` (trimmed input), the filter Okta and Entra send to look up a
/// user or group before writing it; `None` for anything else.
pub fn simple_comparison(input: &str) -> Option<Filter> {
    let (name, rest) = input.split_once(' ')?;
    let name = plain_attr_name(name)?;
    let rest = rest.trim_start_matches(' ');
    let (op, rest) = rest.split_once(' ')?;
    let op = COMPARISONS
        .iter()
        .find(|(word, _)| word.eq_ignore_ascii_case(op))
        .map(|(_, op)| *op)?;
    let quoted = rest.trim_start_matches(' ');
    let value = quoted.strip_prefix('"')?.strip_suffix('"')?;
    // Escapes, inner quotes and control characters are the grammar's (and JSON's) to judge.
    if value.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        return None;
    }
    Some(Filter::Compare(
        AttrRef::named(name),
        op,
        Value::String(value.to_string()),
    ))
}

const COMPARISONS: [(&str, CompOp); 9] = [
    ("eq", CompOp::Eq),
    ("ne", CompOp::Ne),
    ("co", CompOp::Co),
    ("sw", CompOp::Sw),
    ("ew", CompOp::Ew),
    ("gt", CompOp::Gt),
    ("lt", CompOp::Lt),
    ("ge", CompOp::Ge),
    ("le", CompOp::Le),
];

/// Trims the input and refuses empty or oversized ones before the parser sees them, so that a
/// huge query string costs no parser work.
fn check_length<'a>(input: &'a str, what: &str) -> Result<&'a str, String> {
    if input.len() > MAX_FILTER_LEN {
        return Err(format!(
            "the {what} is {} bytes long; the limit is {MAX_FILTER_LEN}",
            input.len()
        ));
    }
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    Ok(trimmed)
}

/// Rewrites every `attr[inner].sub op value` (and `attr[inner].sub pr`) into
/// `attr[(inner) and sub op value]`. `None` when there is nothing to rewrite.
fn rewrite_value_path_subattrs(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len() + 16);
    let mut copied = 0;
    let mut open: Option<usize> = None;
    let mut changed = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => i = skip_string(bytes, i),
            b'[' => {
                open = Some(i);
                i += 1;
            }
            b']' => match (open.take(), trailing_comparison(input, i + 1)) {
                (Some(o), Some(t)) if o >= copied => {
                    out.push_str(input.get(copied..=o)?);
                    out.push('(');
                    out.push_str(input.get(o + 1..i)?);
                    out.push_str(") and ");
                    out.push_str(t.sub);
                    out.push(' ');
                    out.push_str(t.op);
                    if let Some(v) = t.value {
                        out.push(' ');
                        out.push_str(v);
                    }
                    out.push(']');
                    copied = t.end;
                    i = t.end;
                    changed = true;
                }
                _ => i += 1,
            },
            _ => i += 1,
        }
    }
    if !changed {
        return None;
    }
    out.push_str(input.get(copied..)?);
    Some(out)
}

/// Index just past the JSON string literal starting at `start` (or the end of input when it is
/// unterminated, which the parser then reports).
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

struct Trailing<'a> {
    sub: &'a str,
    op: &'a str,
    value: Option<&'a str>,
    end: usize,
}

/// Recognises `.sub op value` or `.sub pr` at `pos` (just after a closing bracket).
fn trailing_comparison(input: &str, pos: usize) -> Option<Trailing<'_>> {
    let bytes = input.as_bytes();
    if bytes.get(pos) != Some(&b'.') {
        return None;
    }
    let name_start = pos + 1;
    let name_end = scan(bytes, name_start, |b| {
        b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
    });
    if !bytes.get(name_start).is_some_and(u8::is_ascii_alphabetic) {
        return None;
    }
    let op_start = scan(bytes, name_end, |b| b.is_ascii_whitespace());
    if op_start == name_end {
        return None;
    }
    let op_end = scan(bytes, op_start, |b| b.is_ascii_alphabetic());
    let op = input.get(op_start..op_end)?;
    let sub = input.get(name_start..name_end)?;
    if op.eq_ignore_ascii_case("pr") {
        return Some(Trailing {
            sub,
            op,
            value: None,
            end: op_end,
        });
    }
    if !COMPARE_OPS.iter().any(|o| o.eq_ignore_ascii_case(op)) {
        return None;
    }
    let value_start = scan(bytes, op_end, |b| b.is_ascii_whitespace());
    if value_start == op_end {
        return None;
    }
    let value_end = match bytes.get(value_start) {
        Some(b'"') => skip_string(bytes, value_start),
        Some(_) => scan(bytes, value_start, |b| {
            !b.is_ascii_whitespace() && !matches!(b, b'(' | b')' | b'[' | b']')
        }),
        None => return None,
    };
    if value_end == value_start {
        return None;
    }
    Some(Trailing {
        sub,
        op,
        value: Some(input.get(value_start..value_end)?),
        end: value_end,
    })
}

const COMPARE_OPS: [&str; 9] = ["eq", "ne", "co", "sw", "ew", "gt", "lt", "ge", "le"];

fn scan(bytes: &[u8], from: usize, keep: impl Fn(u8) -> bool) -> usize {
    let mut i = from;
    while bytes.get(i).is_some_and(|&b| keep(b)) {
        i += 1;
    }
    i
}

/// Turns a parser error into a sentence a client developer can act on.
fn describe_parse_error(input: &str, err: &sf::ParseError, what: &str) -> String {
    match err {
        sf::ParseError::InvalidToken { location } => {
            let rest = input.get(*location..).unwrap_or("");
            match rest.chars().next() {
                Some('"') => format!("unterminated string at position {location} of the {what}"),
                Some('\'') => format!(
                    "unexpected character ' at position {location} of the {what}: strings take \
                     double quotes"
                ),
                Some(c) => {
                    format!("unexpected character '{c}' at position {location} of the {what}")
                }
                None => format!("the {what} ends unexpectedly"),
            }
        }
        sf::ParseError::UnrecognizedEof { expected, .. } => format!(
            "the {what} ends too early: expected {}",
            describe_expected(expected)
        ),
        sf::ParseError::UnrecognizedToken {
            token: (start, token, end),
            expected,
        } => {
            let token = token.trim();
            // Keywords only lex as keywords when whitespace follows, so a filter cut short after
            // `eq` or `and` reports the keyword itself as the odd token.
            if *end >= input.len() {
                if let Some(missing) = missing_after_keyword(token) {
                    return format!("the {what} ends after '{token}': expected {missing}");
                }
            }
            let hint = if token == "." && input.get(..*start).is_some_and(|s| s.ends_with(']')) {
                " (a sub-attribute after a value filter needs a comparison: \
                 emails[type eq \"work\"].value eq \"…\")"
            } else {
                ""
            };
            format!(
                "unexpected '{token}' at position {start} of the {what}: expected {}{hint}",
                describe_expected(expected)
            )
        }
        sf::ParseError::ExtraToken {
            token: (start, token, _),
        } => format!(
            "unexpected '{}' at position {start} after the end of the {what}",
            token.trim()
        ),
        sf::ParseError::User { error } => match error {
            sf::FilterActionError::DepthExceeded(_) => format!(
                "the {what} nests more than {} levels deep",
                sf::MAX_FILTER_DEPTH
            ),
            sf::FilterActionError::TooManyTerms(_) => format!(
                "the {what} has more than {} comparisons",
                sf::MAX_FILTER_TERMS
            ),
            sf::FilterActionError::InvalidCompValue(e) => {
                format!("invalid comparison value in the {what}: {e}")
            }
            other => format!("invalid attribute name in the {what}: {other}"),
        },
    }
}

/// Collapses the parser's terminal names into the handful of things a person would type.
fn describe_expected(expected: &[String]) -> String {
    let mut words: Vec<&str> = Vec::new();
    for terminal in expected {
        let word = match terminal.trim_matches('"') {
            "AttrNameTok" | "AttrPathTok" => "an attribute name",
            "StringLit" | "NumberLit" | "true" | "false" | "null" => {
                "a value (a quoted string, a number, true, false or null)"
            }
            "eq" | "ne" | "co" | "sw" | "ew" | "gt" | "lt" | "ge" | "le" | "pr" => {
                "an operator (eq, ne, co, sw, ew, gt, lt, ge, le, pr)"
            }
            "and" => "'and'",
            "or" => "'or'",
            "not" => "'not'",
            "(" => "'('",
            ")" => "')'",
            "[" => "'['",
            "]" => "']'",
            "." => "'.'",
            _ => continue,
        };
        if !words.contains(&word) {
            words.push(word);
        }
    }
    match words.split_last() {
        None => "something else".to_string(),
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

fn missing_after_keyword(token: &str) -> Option<&'static str> {
    if COMPARE_OPS.iter().any(|o| o.eq_ignore_ascii_case(token)) {
        Some("a value (a quoted string, a number, true, false or null)")
    } else if token.eq_ignore_ascii_case("and") || token.eq_ignore_ascii_case("or") {
        Some("another expression")
    } else if token.eq_ignore_ascii_case("not") {
        Some("'(' and an expression")
    } else {
        None
    }
}

fn convert_attr(p: sf::AttrPath) -> AttrRef {
    AttrRef {
        urn: p.uri,
        name: p.name,
        sub: p.sub_attr,
    }
}

fn convert_op(op: sf::CompareOp) -> CompOp {
    match op {
        sf::CompareOp::Eq => CompOp::Eq,
        sf::CompareOp::Ne => CompOp::Ne,
        sf::CompareOp::Co => CompOp::Co,
        sf::CompareOp::Sw => CompOp::Sw,
        sf::CompareOp::Ew => CompOp::Ew,
        sf::CompareOp::Gt => CompOp::Gt,
        sf::CompareOp::Lt => CompOp::Lt,
        sf::CompareOp::Ge => CompOp::Ge,
        sf::CompareOp::Le => CompOp::Le,
    }
}

fn convert_value(v: sf::CompValue) -> Value {
    match v {
        sf::CompValue::False => Value::Bool(false),
        sf::CompValue::True => Value::Bool(true),
        sf::CompValue::Null => Value::Null,
        sf::CompValue::Number(n) => Value::Number(n),
        sf::CompValue::Str(s) => Value::String(s),
    }
}

fn convert_exp(e: sf::AttrExp) -> Filter {
    match e {
        sf::AttrExp::Present(p) => Filter::Present(convert_attr(p)),
        sf::AttrExp::Comparison(p, op, v) => {
            Filter::Compare(convert_attr(p), convert_op(op), convert_value(v))
        }
    }
}

// The parser bounds nesting at `MAX_FILTER_DEPTH`, so these recursions are shallow.
fn convert_filter(f: sf::Filter) -> Filter {
    match f {
        sf::Filter::Attr(e) => convert_exp(e),
        sf::Filter::ValuePath(vp) => Filter::ValuePath(
            convert_attr(vp.attr),
            Box::new(convert_val_filter(*vp.filter)),
        ),
        sf::Filter::Not(inner) => Filter::Not(Box::new(convert_filter(*inner))),
        sf::Filter::And(items) => Filter::And(items.into_iter().map(convert_filter).collect()),
        sf::Filter::Or(items) => Filter::Or(items.into_iter().map(convert_filter).collect()),
    }
}

fn convert_val_filter(f: sf::ValFilter) -> Filter {
    match f {
        sf::ValFilter::Attr(e) => convert_exp(e),
        sf::ValFilter::Not(inner) => Filter::Not(Box::new(convert_val_filter(*inner))),
        sf::ValFilter::And(items) => {
            Filter::And(items.into_iter().map(convert_val_filter).collect())
        }
        sf::ValFilter::Or(items) => Filter::Or(items.into_iter().map(convert_val_filter).collect()),
    }
}

// ---------------------------------------------------------------------------------------------
// Resolution and validation
// ---------------------------------------------------------------------------------------------

/// A top-level attribute reference resolved against a resource kind.
#[derive(Clone, Copy)]
struct Resolved {
    /// The extension URN whose object holds the attribute, `None` for core/common attributes.
    extension: Option<&'static str>,
    def: &'static AttrDef,
    sub: Option<&'static AttrDef>,
}

fn resolve_top(kind: ResourceKind, r: &AttrRef) -> Result<Resolved, ScimError> {
    let core_or_none = r
        .urn
        .as_deref()
        .is_none_or(|u| u.eq_ignore_ascii_case(kind.core().id));
    let (extension, def) = if core_or_none && r.name.eq_ignore_ascii_case(SCHEMAS_ATTR.name) {
        (None, &SCHEMAS_ATTR)
    } else {
        let found = kind.resolve(r.urn.as_deref(), &r.name).ok_or_else(|| {
            ScimError::invalid_filter(format!(
                "the filter names \"{r}\", which is not an attribute of {}",
                kind.name()
            ))
        })?;
        (found.extension, found.def)
    };
    let sub = match &r.sub {
        None => None,
        Some(s) => Some(def.sub_attr(s).ok_or_else(|| {
            ScimError::invalid_filter(format!(
                "the filter names \"{r}\", but {} has no sub-attribute \"{s}\"",
                def.name
            ))
        })?),
    };
    Ok(Resolved {
        extension,
        def,
        sub,
    })
}

/// Resolves a name inside a value filter: a sub-attribute of `parent`.
fn resolve_in(parent: &AttrDef, r: &AttrRef) -> Result<&'static AttrDef, ScimError> {
    let unknown = || {
        ScimError::invalid_filter(format!(
            "the value filter on {} names \"{r}\", which is not one of its sub-attributes",
            parent.name
        ))
    };
    if r.urn.is_some() || r.sub.is_some() {
        return Err(unknown());
    }
    parent.sub_attr(&r.name).ok_or_else(unknown)
}

/// The definition a comparison is made against: the named sub-attribute, else the `value`
/// sub-attribute of a complex attribute (RFC 7644 §3.4.2.2: `emails co "x"` compares
/// `emails.value`), else the attribute itself.
fn compared_def(def: &'static AttrDef, sub: Option<&'static AttrDef>) -> &'static AttrDef {
    sub.or_else(|| {
        if def.is_complex() {
            def.sub_attr("value")
        } else {
            None
        }
    })
    .unwrap_or(def)
}

/// Checks a filter against the schema of `kind`: every attribute and sub-attribute must exist,
/// complex attributes are only compared through a sub-attribute, and booleans and binaries are
/// not ordered (RFC 7644 §3.4.2.2). Errors are `400 invalidFilter`.
pub fn validate(filter: &Filter, kind: ResourceKind) -> Result<(), ScimError> {
    match filter {
        Filter::Present(r) => resolve_top(kind, r).map(|_| ()),
        Filter::Compare(r, op, lit) => {
            let res = resolve_top(kind, r)?;
            check_comparison(compared_def(res.def, res.sub), r, *op, lit)
        }
        Filter::ValuePath(r, inner) => {
            let res = resolve_top(kind, r)?;
            if r.sub.is_some() || !res.def.is_complex() {
                return Err(ScimError::invalid_filter(format!(
                    "\"{r}[…]\": a value filter applies to a complex attribute such as emails or \
                     members, not to {r}"
                )));
            }
            validate_in(inner, res.def)
        }
        Filter::Not(inner) => validate(inner, kind),
        Filter::And(items) | Filter::Or(items) => items.iter().try_for_each(|f| validate(f, kind)),
    }
}

fn validate_in(filter: &Filter, parent: &AttrDef) -> Result<(), ScimError> {
    match filter {
        Filter::Present(r) => resolve_in(parent, r).map(|_| ()),
        Filter::Compare(r, op, lit) => {
            let def = resolve_in(parent, r)?;
            check_comparison(compared_def(def, None), r, *op, lit)
        }
        Filter::ValuePath(r, _) => Err(ScimError::invalid_filter(format!(
            "value filters cannot be nested (\"{r}[…]\" inside {}[…])",
            parent.name
        ))),
        Filter::Not(inner) => validate_in(inner, parent),
        Filter::And(items) | Filter::Or(items) => {
            items.iter().try_for_each(|f| validate_in(f, parent))
        }
    }
}

fn check_comparison(def: &AttrDef, r: &AttrRef, op: CompOp, lit: &Value) -> Result<(), ScimError> {
    let refuse = |why: String| {
        Err(ScimError::invalid_filter(format!(
            "\"{r} {} {lit}\": {why}",
            op.as_str()
        )))
    };
    match def.ty {
        AttrType::Complex => refuse(format!(
            "{} is complex; compare one of its sub-attributes instead",
            def.name
        )),
        AttrType::Boolean | AttrType::Binary if op.is_ordering() => refuse(format!(
            "{} is a {}, which has no order (RFC 7644 §3.4.2.2)",
            def.name,
            def.ty.as_str()
        )),
        AttrType::Boolean if !lit.is_null() && as_bool(lit).is_none() => refuse(format!(
            "{} is a boolean; compare it with true or false",
            def.name
        )),
        AttrType::DateTime if op.is_ordering() && instant(lit).is_none() => refuse(format!(
            "{} is a dateTime; the value must be an RFC 3339 timestamp such as \
             \"2011-05-13T04:42:34Z\"",
            def.name
        )),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

/// Where the names of a filter are resolved: a whole resource, or one element of a multi-valued
/// complex attribute (the inside of a value path).
#[derive(Clone, Copy)]
enum Scope<'a> {
    Resource(ResourceKind, &'a Value),
    Element(&'a AttrDef, &'a Value),
}

/// Evaluates a filter against a stored resource of the given kind (canonical JSON).
/// A filter that does not fit the schema is an error even when no resource would match, so that
/// a typo is reported rather than answered with an empty list.
pub fn matches(filter: &Filter, kind: ResourceKind, resource: &Value) -> Result<bool, ScimError> {
    validate(filter, kind)?;
    Ok(eval(filter, Scope::Resource(kind, resource)))
}

/// Evaluates a filter that [`validate`] accepted for `kind` against a stored resource, for
/// callers that report a bad filter before they look at any resource (the store's queries).
pub fn matches_checked(filter: &Filter, kind: ResourceKind, resource: &Value) -> bool {
    eval(filter, Scope::Resource(kind, resource))
}

/// Evaluates the inner filter of a value path against one element of the multi-valued
/// attribute `parent`. Names the schema does not know match nothing.
pub fn matches_element(filter: &Filter, parent: &AttrDef, element: &Value) -> bool {
    eval(filter, Scope::Element(parent, element))
}

fn eval(filter: &Filter, scope: Scope<'_>) -> bool {
    match filter {
        Filter::And(items) => items.iter().all(|f| eval(f, scope)),
        Filter::Or(items) => items.iter().any(|f| eval(f, scope)),
        Filter::Not(inner) => !eval(inner, scope),
        Filter::Present(r) => match lookup(r, scope) {
            Some((def, value, Some(sub))) => {
                leaves(def, value, Some(sub)).1.into_iter().any(is_present)
            }
            Some((_, value, None)) => value.is_some_and(is_present),
            None => false,
        },
        Filter::Compare(r, op, lit) => match lookup(r, scope) {
            Some((def, value, sub)) => {
                let (leaf_def, values) = leaves(def, value, sub);
                compare_all(leaf_def, &values, *op, lit)
            }
            // An unknown name is absent: only `ne` holds.
            None => *op == CompOp::Ne && !lit.is_null(),
        },
        Filter::ValuePath(r, inner) => {
            let Scope::Resource(kind, resource) = scope else {
                return false;
            };
            let Ok(res) = resolve_top(kind, r) else {
                return false;
            };
            match attr_value(resource, &res) {
                Some(Value::Array(items)) => items
                    .iter()
                    .any(|el| eval(inner, Scope::Element(res.def, el))),
                Some(el @ Value::Object(_)) => eval(inner, Scope::Element(res.def, el)),
                _ => false,
            }
        }
    }
}

/// The attribute a reference names in this scope: its definition, its value if present, and the
/// sub-attribute the reference selects.
fn lookup<'a>(
    r: &AttrRef,
    scope: Scope<'a>,
) -> Option<(
    &'static AttrDef,
    Option<&'a Value>,
    Option<&'static AttrDef>,
)> {
    match scope {
        Scope::Resource(kind, resource) => {
            let res = resolve_top(kind, r).ok()?;
            Some((res.def, attr_value(resource, &res), res.sub))
        }
        Scope::Element(parent, element) => {
            let def = resolve_in(parent, r).ok()?;
            Some((def, get_ci(element, def.name), None))
        }
    }
}

fn attr_value<'a>(resource: &'a Value, res: &Resolved) -> Option<&'a Value> {
    let container = match res.extension {
        Some(urn) => get_ci(resource, urn)?,
        None => resource,
    };
    get_ci(container, res.def.name)
}

/// Object member by key: the exact key first, then case-insensitively, since clients and older
/// stored data do not always use the schema's casing.
pub(crate) fn get_ci<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    let obj = value.as_object()?;
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// The scalar values a comparison looks at, with the definition that governs them: each element
/// of a multi-valued attribute, and inside complex values the selected sub-attribute (or
/// `value` when none is named).
fn leaves<'a>(
    def: &'static AttrDef,
    value: Option<&'a Value>,
    sub: Option<&'static AttrDef>,
) -> (&'static AttrDef, Vec<&'a Value>) {
    let leaf_def = compared_def(def, sub);
    let Some(value) = value else {
        return (leaf_def, Vec::new());
    };
    let items: Vec<&Value> = match value {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    if std::ptr::eq(leaf_def, def) {
        return (leaf_def, items);
    }
    let values = items
        .into_iter()
        .filter_map(|item| match item {
            Value::Object(_) => get_ci(item, leaf_def.name),
            // A bare scalar where a complex value belongs is read as its `value`.
            scalar if sub.is_none() => Some(scalar),
            _ => None,
        })
        .collect();
    (leaf_def, values)
}

/// RFC 7644 §3.4.2.2 `pr`: "has a non-empty value". Empty strings, arrays and objects and
/// nulls count as absent.
fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => a.iter().any(is_present),
        Value::Object(o) => o.values().any(is_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

fn compare_all(def: &AttrDef, values: &[&Value], op: CompOp, lit: &Value) -> bool {
    if lit.is_null() {
        let present = values.iter().any(|v| is_present(v));
        return match op {
            CompOp::Eq => !present,
            CompOp::Ne => present,
            _ => false,
        };
    }
    match op {
        // `ne` is the negation of `eq`, so it holds for absent attributes and for a multi-valued
        // attribute none of whose values is equal.
        CompOp::Ne => !values.iter().any(|v| compare_one(def, v, CompOp::Eq, lit)),
        _ => values.iter().any(|v| compare_one(def, v, op, lit)),
    }
}

fn compare_one(def: &AttrDef, value: &Value, op: CompOp, lit: &Value) -> bool {
    match def.ty {
        AttrType::Complex => false,
        AttrType::Boolean => match (as_bool(value), as_bool(lit), op) {
            (Some(a), Some(b), CompOp::Eq) => a == b,
            (Some(a), Some(b), CompOp::Ne) => a != b,
            _ => false,
        },
        AttrType::DateTime if matches!(op, CompOp::Eq | CompOp::Ne) || op.is_ordering() => {
            match (instant(value), instant(lit)) {
                (Some(a), Some(b)) => ordered(op, a.cmp(&b)),
                _ => compare_text(def.case_exact, value, op, lit),
            }
        }
        AttrType::Decimal | AttrType::Integer
            if matches!(op, CompOp::Eq | CompOp::Ne) || op.is_ordering() =>
        {
            match (number(value), number(lit)) {
                (Some(a), Some(b)) => a.partial_cmp(&b).is_some_and(|o| ordered(op, o)),
                _ => false,
            }
        }
        _ => compare_text(def.case_exact, value, op, lit),
    }
}

fn ordered(op: CompOp, o: Ordering) -> bool {
    match op {
        CompOp::Eq => o == Ordering::Equal,
        CompOp::Ne => o != Ordering::Equal,
        CompOp::Gt => o == Ordering::Greater,
        CompOp::Ge => o != Ordering::Less,
        CompOp::Lt => o == Ordering::Less,
        CompOp::Le => o != Ordering::Greater,
        CompOp::Co | CompOp::Sw | CompOp::Ew => false,
    }
}

fn compare_text(case_exact: bool, value: &Value, op: CompOp, lit: &Value) -> bool {
    let (Some(a), Some(b)) = (text(value), text(lit)) else {
        return false;
    };
    let (a, b) = if case_exact {
        (a, b)
    } else {
        (a.to_lowercase(), b.to_lowercase())
    };
    match op {
        CompOp::Co => a.contains(&b),
        CompOp::Sw => a.starts_with(&b),
        CompOp::Ew => a.ends_with(&b),
        _ => ordered(op, a.cmp(&b)),
    }
}

/// Scalars as text, so that `employeeNumber eq 42` finds `"42"`.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Booleans, including the strings Entra sends (`roles[primary eq "True"]`).
fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn instant(v: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(v.as_str()?, &Rfc3339).ok()
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Store helpers
// ---------------------------------------------------------------------------------------------

/// An indexed equality that every match must satisfy, if there is one: a top-level `eq` on
/// `id`, `userName` (users), `externalId` or `displayName` (groups), alone or as a term of the
/// top-level `and`. The most selective one wins.
pub fn index_hint(filter: &Filter, kind: ResourceKind) -> Option<IndexHint> {
    match filter {
        Filter::And(items) => items
            .iter()
            .filter_map(|f| index_hint(f, kind))
            .min_by_key(IndexHint::rank),
        Filter::Compare(r, CompOp::Eq, Value::String(v)) if r.sub.is_none() => {
            let res = kind.resolve(r.urn.as_deref(), &r.name)?;
            if res.extension.is_some() {
                return None;
            }
            match (kind, res.def.name) {
                (_, "id") => Some(IndexHint::Id(v.clone())),
                (ResourceKind::User, "userName") => Some(IndexHint::UserName(v.clone())),
                (_, "externalId") => Some(IndexHint::ExternalId(v.clone())),
                (ResourceKind::Group, "displayName") => Some(IndexHint::DisplayName(v.clone())),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Whether the filter mentions the (top-level) attribute `name`, case-insensitively.
pub fn references(filter: &Filter, name: &str) -> bool {
    match filter {
        Filter::Present(r) | Filter::Compare(r, _, _) | Filter::ValuePath(r, _) => {
            r.name.eq_ignore_ascii_case(name)
        }
        Filter::Not(inner) => references(inner, name),
        Filter::And(items) | Filter::Or(items) => items.iter().any(|f| references(f, name)),
    }
}

/// The ids a filter asks about, when that is all it asks of the reference list `name` (group
/// `members`, user `groups`): every mention of `name` is `name[value eq "…"]` (an `or` of such
/// terms allowed inside the brackets) or `name.value eq "…"`. Each such term holds exactly when
/// that one id is in the list (`value` is compared case-exactly), so the list restricted to
/// those ids answers the filter as the whole list would: the store looks the ids up instead of
/// reading every member (Entra's membership check on a large group). `None` for any other
/// mention (`members pr`, `members[display eq …]`, `members[not (value eq …)]`, a non-string
/// literal).
pub fn reference_values(filter: &Filter, name: &str) -> Option<Vec<String>> {
    let mut ids = Vec::new();
    if !collect_reference_values(filter, name, &mut ids) {
        return None;
    }
    ids.sort();
    ids.dedup();
    Some(ids)
}

fn collect_reference_values(filter: &Filter, name: &str, ids: &mut Vec<String>) -> bool {
    match filter {
        Filter::Present(r) | Filter::Compare(r, _, _) | Filter::ValuePath(r, _)
            if !r.name.eq_ignore_ascii_case(name) =>
        {
            true
        }
        Filter::Compare(r, CompOp::Eq, Value::String(v))
            if r.sub
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("value")) =>
        {
            ids.push(v.clone());
            true
        }
        Filter::ValuePath(r, inner) if r.sub.is_none() => value_terms(inner, ids),
        Filter::Present(_) | Filter::Compare(..) | Filter::ValuePath(..) => false,
        Filter::Not(inner) => collect_reference_values(inner, name, ids),
        Filter::And(items) | Filter::Or(items) => {
            items.iter().all(|f| collect_reference_values(f, name, ids))
        }
    }
}

/// Inside `name[…]`: `value eq "…"`, or an `or` of such terms.
fn value_terms(inner: &Filter, ids: &mut Vec<String>) -> bool {
    match inner {
        Filter::Compare(r, CompOp::Eq, Value::String(v))
            if r.urn.is_none() && r.sub.is_none() && r.name.eq_ignore_ascii_case("value") =>
        {
            ids.push(v.clone());
            true
        }
        Filter::Or(items) => items.iter().all(|f| value_terms(f, ids)),
        _ => false,
    }
}

#[cfg(test)]
// A failing test is a panic; the lints exist to keep panics out of the server, not the tests.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::scim::error::ScimType;
    use crate::scim::schema::{ENTERPRISE_USER_SCHEMA, GROUP_ATTRS, USER_ATTRS, USER_SCHEMA};
    use serde_json::json;

    /// RFC 7643 §8.2's Barbara Jensen, trimmed, with the surname of the RFC 7644 filter example.
    fn bjensen() -> Value {
        json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "701984",
            "userName": "bjensen",
            "name": {"formatted": "Ms. Barbara J Jensen, III", "familyName": "O'Malley", "givenName": "Barbara"},
            "title": "Tour Guide",
            "userType": "Employee",
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "ims": [{"value": "someaimhandle", "type": "aim"}],
            "roles": [{"value": "admin", "primary": true}],
            "meta": {
                "resourceType": "User",
                "created": "2010-01-23T04:56:22Z",
                "lastModified": "2011-05-13T04:42:34Z"
            },
            ENTERPRISE_USER_SCHEMA: {
                "employeeNumber": "701984",
                "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}
            }
        })
    }

    /// An intern with an empty title (which `pr` must treat as absent) and a later timestamp.
    fn jsmith() -> Value {
        json!({
            "schemas": [USER_SCHEMA],
            "id": "b1",
            "userName": "JSmith",
            "name": {"familyName": "Smith", "givenName": "John"},
            "title": "",
            "userType": "Intern",
            "active": false,
            "emails": [{"value": "jsmith@example.org", "type": "work"}],
            "meta": {"created": "2012-01-01T00:00:00Z", "lastModified": "2012-01-01T00:00:00Z"}
        })
    }

    /// A contractor reachable only over XMPP at foo.com.
    fn cdoe() -> Value {
        json!({
            "schemas": [USER_SCHEMA],
            "id": "c1",
            "userName": "cdoe",
            "userType": "Contractor",
            "emails": [{"value": "cdoe@other.net", "type": "work"}],
            "ims": [{"value": "cdoe@foo.com", "type": "xmpp"}],
            "meta": {"lastModified": "2009-12-31T23:59:59Z"}
        })
    }

    fn user_matches(filter: &str, user: &Value) -> bool {
        let f = match parse_filter(filter) {
            Ok(f) => f,
            Err(e) => panic!("{filter}: {e}"),
        };
        match matches(&f, ResourceKind::User, user) {
            Ok(b) => b,
            Err(e) => panic!("{filter}: {e}"),
        }
    }

    /// Which of bjensen, jsmith and cdoe the filter selects.
    fn selects(filter: &str) -> [bool; 3] {
        [bjensen(), jsmith(), cdoe()].map(|u| user_matches(filter, &u))
    }

    fn filter_error(filter: &str) -> ScimError {
        match parse_filter(filter).and_then(|f| validate(&f, ResourceKind::User).map(|()| f)) {
            Ok(f) => panic!("{filter} was accepted as {f:?}"),
            Err(e) => e,
        }
    }

    fn assert_invalid_filter(filter: &str) {
        let e = filter_error(filter);
        assert_eq!(
            (e.status, e.scim_type),
            (400, Some(ScimType::InvalidFilter)),
            "{filter}: {e}"
        );
        assert!(!e.detail.is_empty());
        // The detail is for people: no Debug dumps of parser internals.
        for internal in ["Unrecognized", "AttrNameTok", "StringLit", "Token", "{"] {
            assert!(!e.detail.contains(internal), "{filter}: {}", e.detail);
        }
    }

    // --- RFC 7644 §3.4.2.2, the seventeen examples ---------------------------------------------

    #[test]
    fn rfc_username_eq() {
        assert_eq!(selects(r#"userName eq "bjensen""#), [true, false, false]);
    }

    #[test]
    fn rfc_family_name_co() {
        assert_eq!(
            selects(r#"name.familyName co "O'Malley""#),
            [true, false, false]
        );
    }

    #[test]
    fn rfc_username_sw() {
        assert_eq!(selects(r#"userName sw "J""#), [false, true, false]);
    }

    #[test]
    fn rfc_urn_qualified_username_sw() {
        assert_eq!(
            selects(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#),
            [false, true, false]
        );
    }

    #[test]
    fn rfc_title_pr() {
        // jsmith's title is "", which is not a value.
        assert_eq!(selects("title pr"), [true, false, false]);
    }

    #[test]
    fn rfc_last_modified_orderings() {
        // bjensen is exactly at the instant, jsmith after, cdoe before.
        let at = "2011-05-13T04:42:34Z";
        assert_eq!(
            selects(&format!(r#"meta.lastModified gt "{at}""#)),
            [false, true, false]
        );
        assert_eq!(
            selects(&format!(r#"meta.lastModified ge "{at}""#)),
            [true, true, false]
        );
        assert_eq!(
            selects(&format!(r#"meta.lastModified lt "{at}""#)),
            [false, false, true]
        );
        assert_eq!(
            selects(&format!(r#"meta.lastModified le "{at}""#)),
            [true, false, true]
        );
    }

    #[test]
    fn date_times_compare_as_instants_not_text() {
        // The same instant written with another offset.
        assert_eq!(
            selects(r#"meta.lastModified eq "2011-05-13T06:42:34+02:00""#),
            [true, false, false]
        );
        assert_eq!(
            selects(r#"meta.lastModified gt "2011-05-13T06:42:33.5+02:00""#),
            [true, true, false]
        );
    }

    #[test]
    fn rfc_title_pr_and_user_type() {
        assert_eq!(
            selects(r#"title pr and userType eq "Employee""#),
            [true, false, false]
        );
    }

    #[test]
    fn rfc_title_pr_or_user_type() {
        assert_eq!(
            selects(r#"title pr or userType eq "Intern""#),
            [true, true, false]
        );
    }

    #[test]
    fn rfc_schemas_eq_extension() {
        assert_eq!(
            selects(r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#),
            [true, false, false]
        );
    }

    #[test]
    fn rfc_user_type_and_grouped_or() {
        let f = r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#;
        assert_eq!(selects(f), [true, false, false]);
        // The second branch of the `or`: an employee with only an example.org address.
        let mut u = bjensen();
        u["emails"] = json!([{"value": "b@example.org", "type": "work"}]);
        assert!(user_matches(f, &u));
        u["emails"] = json!([{"value": "b@example.net", "type": "work"}]);
        assert!(!user_matches(f, &u));
    }

    #[test]
    fn rfc_user_type_ne_and_not() {
        let f = r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#;
        assert_eq!(selects(f), [false, false, true]);
        // `ne` holds when the attribute is absent.
        let mut u = cdoe();
        if let Some(o) = u.as_object_mut() {
            o.remove("userType");
        }
        assert!(user_matches(f, &u));
    }

    #[test]
    fn rfc_user_type_and_emails_type() {
        let f = r#"userType eq "Employee" and (emails.type eq "work")"#;
        assert_eq!(selects(f), [true, false, false]);
        let mut u = bjensen();
        u["emails"] = json!([{"value": "b@example.com", "type": "home"}]);
        assert!(!user_matches(f, &u));
    }

    #[test]
    fn rfc_user_type_and_value_path() {
        let f = r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#;
        assert_eq!(selects(f), [true, false, false]);
        // Both conditions must hold for the same element, not for two different ones.
        let mut u = bjensen();
        u["emails"] = json!([
            {"value": "b@other.net", "type": "work"},
            {"value": "b@example.com", "type": "home"}
        ]);
        assert!(!user_matches(f, &u));
        assert!(user_matches(
            r#"userType eq "Employee" and emails.type eq "work" and emails.value co "@example.com""#,
            &u
        ));
    }

    #[test]
    fn rfc_two_value_paths_or() {
        let f = r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#;
        assert_eq!(selects(f), [true, false, true]);
    }

    // --- Operator semantics --------------------------------------------------------------------

    #[test]
    fn precedence_and_binds_tighter_than_or() {
        // false or (true and false) = false; (false or true) and false would also be false, so
        // pick operands where the two readings differ.
        let f = r#"userName eq "nobody" or userName eq "bjensen" and userType eq "Intern""#;
        assert_eq!(selects(f), [false, false, false]);
        let f = r#"userType eq "Intern" or userName eq "bjensen" and title pr"#;
        assert_eq!(selects(f), [true, true, false]);
        let f = r#"(userType eq "Intern" or userName eq "bjensen") and title pr"#;
        assert_eq!(selects(f), [true, false, false]);
    }

    #[test]
    fn keywords_and_operators_are_case_insensitive() {
        assert_eq!(
            selects(r#"USERNAME EQ "BJENSEN" AND Title PR"#),
            [true, false, false]
        );
        assert_eq!(
            selects(r#"Not (userName Eq "bjensen")"#),
            [false, true, true]
        );
    }

    #[test]
    fn ew_gt_lt_on_strings() {
        assert_eq!(selects(r#"userName ew "SMITH""#), [false, true, false]);
        assert_eq!(selects(r#"userName gt "c""#), [false, true, true]);
        assert_eq!(selects(r#"userName lt "c""#), [true, false, false]);
    }

    #[test]
    fn comparisons_on_absent_attributes() {
        assert_eq!(selects(r#"nickName eq "x""#), [false, false, false]);
        assert_eq!(selects(r#"nickName ne "x""#), [true, true, true]);
        assert_eq!(selects(r#"nickName co "x""#), [false, false, false]);
        assert_eq!(selects("nickName eq null"), [true, true, true]);
        assert_eq!(selects("title ne null"), [true, false, false]);
    }

    #[test]
    fn pr_treats_empty_values_as_absent() {
        let mut u = cdoe();
        for empty in [json!(""), json!([]), json!({}), Value::Null, json!([{}])] {
            u["emails"] = empty.clone();
            assert!(!user_matches("emails pr", &u), "{empty}");
        }
        u["name"] = json!({"givenName": ""});
        assert!(!user_matches("name pr", &u));
        assert!(!user_matches("name.givenName pr", &u));
        u["name"] = json!({"givenName": "C"});
        assert!(user_matches("name pr", &u));
        assert!(user_matches("name.givenName pr", &u));
    }

    #[test]
    fn case_exactness_follows_the_schema() {
        // userName is caseExact=false, id and externalId are caseExact=true.
        assert_eq!(selects(r#"userName eq "JSMITH""#), [false, true, false]);
        assert_eq!(selects(r#"id eq "C1""#), [false, false, false]);
        assert_eq!(selects(r#"id eq "c1""#), [false, false, true]);
    }

    #[test]
    fn booleans_accept_entra_strings() {
        assert_eq!(selects("active eq true"), [true, false, false]);
        assert_eq!(selects(r#"active eq "False""#), [false, true, false]);
        assert_eq!(selects(r#"roles[primary eq "True"]"#), [true, false, false]);
        assert_eq!(
            selects(r#"roles[primary eq "TRUE"].value eq "admin""#),
            [true, false, false]
        );
        assert_eq!(selects(r#"roles.primary eq "true""#), [true, false, false]);
    }

    #[test]
    fn enterprise_extension_attributes() {
        let ext = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        assert_eq!(
            selects(&format!(r#"{ext}:employeeNumber eq "701984""#)),
            [true, false, false]
        );
        assert_eq!(
            selects(&format!(
                r#"{ext}:manager.value eq "26118915-6090-4610-87e4-49d8ca9f808d""#
            )),
            [true, false, false]
        );
        // Case-insensitive URN and names.
        let upper = ext.to_uppercase().replace("URN:", "urn:");
        assert_eq!(
            selects(&format!(r#"{upper}:EmployeeNumber pr"#)),
            [true, false, false]
        );
        // A complex attribute without a sub-attribute compares its `value`.
        assert_eq!(
            selects(&format!(
                r#"{ext}:manager eq "26118915-6090-4610-87e4-49d8ca9f808d""#
            )),
            [true, false, false]
        );
        // An extension attribute is not reachable without its URN.
        assert_invalid_filter(r#"employeeNumber eq "701984""#);
    }

    #[test]
    fn json_keys_are_looked_up_case_insensitively() {
        let u = json!({"schemas": [USER_SCHEMA], "id": "x", "USERNAME": "Alice", "Emails": [{"Value": "a@x.com", "TYPE": "work"}]});
        assert!(user_matches(r#"userName eq "alice""#, &u));
        assert!(user_matches(
            r#"emails[type eq "work"].value eq "a@x.com""#,
            &u
        ));
    }

    #[test]
    fn escaped_quotes_in_values() {
        let mut u = cdoe();
        u["displayName"] = json!(r#"The "Boss""#);
        assert!(user_matches(r#"displayName eq "The \"Boss\"""#, &u));
    }

    // --- Filters the IdPs send (idp-scim-behaviors.md §2.4, §2.8, §4 item 15) -------------------

    #[test]
    fn idp_username_eq_is_case_insensitive() {
        let alice = json!({"schemas": [USER_SCHEMA], "id": "a", "userName": "alice@example.com", "active": false});
        assert!(user_matches(r#"userName eq "ALICE@example.com""#, &alice));
        assert!(!user_matches(r#"userName eq "alice@example.co""#, &alice));
    }

    #[test]
    fn idp_external_id_and_id_eq() {
        assert_eq!(selects(r#"externalId eq "701984""#), [true, false, false]);
        assert_eq!(selects(r#"id eq "b1""#), [false, true, false]);
    }

    #[test]
    fn idp_display_name_eq_on_groups() {
        let g = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g", "displayName": "Engineering"});
        let f = parse_filter(r#"displayName eq "ENGINEERING""#).unwrap();
        assert!(matches(&f, ResourceKind::Group, &g).unwrap());
        let f = parse_filter(r#"displayName eq "Engineers""#).unwrap();
        assert!(!matches(&f, ResourceKind::Group, &g).unwrap());
    }

    #[test]
    fn idp_value_path_with_sub_attribute_as_filter() {
        let f = parse_filter(r#"emails[type eq "work"].value eq "bjensen@example.com""#).unwrap();
        assert_eq!(
            f,
            Filter::ValuePath(
                AttrRef::named("emails"),
                Box::new(Filter::And(vec![
                    Filter::Compare(AttrRef::named("type"), CompOp::Eq, json!("work")),
                    Filter::Compare(
                        AttrRef::named("value"),
                        CompOp::Eq,
                        json!("bjensen@example.com")
                    ),
                ]))
            )
        );
        assert_eq!(
            selects(r#"emails[type eq "work"].value eq "BJENSEN@example.com""#),
            [true, false, false]
        );
        // The home address is not the work address.
        assert_eq!(
            selects(r#"emails[type eq "work"].value eq "babs@jensen.org""#),
            [false, false, false]
        );
        // An `or` inside the brackets keeps its meaning after the rewrite.
        assert_eq!(
            selects(
                r#"emails[type eq "home" or type eq "work"].value co "example" and userName pr"#
            ),
            [true, true, false]
        );
        assert_eq!(
            selects(r#"emails[type eq "work"].value pr"#),
            [true, true, true]
        );
        assert_eq!(
            selects(r#"not (emails[type eq "work"].Value   EQ  "cdoe@other.net")"#),
            [true, true, false]
        );
        // A `]` or `.value eq` inside a string is not rewritten.
        assert_eq!(
            selects(r#"displayName eq "x].value eq y""#),
            [false, false, false]
        );
    }

    #[test]
    fn idp_emails_value_eq() {
        assert_eq!(
            selects(r#"emails.value eq "babs@jensen.org""#),
            [true, false, false]
        );
        assert_eq!(
            selects(r#"emails eq "jsmith@example.org""#),
            [false, true, false]
        );
    }

    #[test]
    fn a_membership_filter_answers_the_same_on_the_members_it_names() {
        let members = [("u1", "Alice"), ("u2", "Bob"), ("u3", "Carol")];
        let group = |only: Option<&[String]>| {
            let list: Vec<Value> = members
                .iter()
                .filter(|(id, _)| only.is_none_or(|o| o.iter().any(|x| x == id)))
                .map(|(id, name)| json!({"value": id, "display": name, "type": "User"}))
                .collect();
            json!({"id": "g", "displayName": "Eng", "members": list})
        };
        let restricted = [
            r#"id eq "g" and members[value eq "u2"]"#,
            r#"id eq "g" and members[value eq "u9"]"#,
            r#"id eq "g" and members[value eq "U2"]"#,
            r#"members[value eq "u9" or value eq "u3"]"#,
            r#"not (members[value eq "u1"])"#,
            r#"members.value eq "u3" and not (members.value eq "u9")"#,
            r#"MEMBERS[VALUE eq "u1"] or displayName eq "Other""#,
            r#"displayName eq "Eng""#,
        ];
        for text in restricted {
            let f = parse_filter(text).unwrap();
            let ids = reference_values(&f, "members").unwrap_or_else(|| panic!("{text}"));
            assert!(
                ids.iter().all(|id| text.contains(id.as_str())),
                "{text}: {ids:?}"
            );
            let whole = matches(&f, ResourceKind::Group, &group(None)).unwrap();
            let named = matches(&f, ResourceKind::Group, &group(Some(&ids))).unwrap();
            assert_eq!(whole, named, "{text}");
        }
        // Each of these depends on members the filter does not name: the whole list is read.
        for text in [
            r#"members pr"#,
            r#"members[display eq "Bob"]"#,
            r#"members[not (value eq "u1")]"#,
            r#"members[value ne "u1"]"#,
            r#"members[value eq "u1" and type eq "User"]"#,
            r#"members[type eq "User"].value eq "u1""#,
            r#"members.display eq "Bob""#,
            r#"members.value pr"#,
        ] {
            let f = parse_filter(text).unwrap();
            assert_eq!(reference_values(&f, "members"), None, "{text}");
        }
    }

    #[test]
    fn idp_group_membership_check() {
        let group = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "g",
            "displayName": "Eng",
            "members": [{"value": "u1", "display": "Alice"}, {"value": "u2"}]
        });
        let check = |f: &str| {
            let f = parse_filter(f).unwrap();
            matches(&f, ResourceKind::Group, &group).unwrap()
        };
        assert!(check(r#"id eq "g" and members[value eq "u2"]"#));
        assert!(!check(r#"id eq "g" and members[value eq "u3"]"#));
        assert!(!check(r#"id eq "h" and members[value eq "u1"]"#));
        // Member ids are caseExact.
        assert!(!check(r#"id eq "g" and members[value eq "U1"]"#));
        let f = parse_filter(r#"id eq "g" and members[value eq "u2"]"#).unwrap();
        assert!(references(&f, "members"));
        assert!(references(&f, "ID"));
        assert!(!references(&f, "value"));
        assert!(!references(
            &parse_filter(r#"displayName eq "Eng""#).unwrap(),
            "members"
        ));
        assert!(references(
            &parse_filter(r#"not (members.value eq "u")"#).unwrap(),
            "Members"
        ));
    }

    // --- Malformed filters --------------------------------------------------------------------

    #[test]
    fn malformed_filters_are_invalid_filter() {
        for f in [
            "",
            "   ",
            r#"(userName eq "a""#,
            r#"userName eq "a")"#,
            r#"((userName eq "a")"#,
            r#"userName xx "a""#,
            r#"userName equals "a""#,
            "userName eq",
            "userName eq ",
            r#"userName "a""#,
            r#"userName eq "a" zzz"#,
            r#"userName eq "a" and"#,
            r#"userName eq "a" )("#,
            r#"userName eq "abc"#,
            "userName eq 'abc'",
            r#"not userName eq "a""#,
            r#"emails[type eq "work""#,
            r#"emails[type eq "work"].value"#,
            r#"emails[type eq "work"].value eq"#,
            r#"emails[value[type eq "x"] pr]"#,
            r#"name..givenName eq "a""#,
            r#"1userName eq "a""#,
        ] {
            assert_invalid_filter(f);
        }
        assert!(filter_error("userName eq")
            .detail
            .contains("expected a value"));
        assert!(filter_error(r#"(userName eq "a""#).detail.contains("')'"));
        assert!(filter_error(r#"userName xx "a""#)
            .detail
            .contains("operator"));
    }

    #[test]
    fn unknown_attributes_and_bad_comparisons_fail_validation() {
        for f in [
            r#"nosuch eq "x""#,
            r#"name.nosuch eq "x""#,
            r#"emails[nosuch eq "x"]"#,
            r#"emails[value.x eq "x"]"#,
            r#"userName.x eq "x""#,
            r#"urn:example:params:scim:schemas:Custom:userName eq "x""#,
            r#"urn:ietf:params:scim:schemas:core:2.0:Group:displayName eq "x""#,
            "active gt true",
            r#"roles[primary ge "True"]"#,
            "x509Certificates.value lt \"x\"",
            r#"active eq "yes""#,
            r#"meta.created gt "yesterday""#,
            r#"name eq "Barbara""#,
            r#"userName[value eq "x"]"#,
            r#"emails.value[type eq "x"]"#,
        ] {
            assert_invalid_filter(f);
        }
        assert!(filter_error(r#"nosuch eq "x""#).detail.contains("nosuch"));
        assert!(filter_error(r#"name.nosuch eq "x""#)
            .detail
            .contains("nosuch"));
        assert!(filter_error("active gt true").detail.contains("active"));
        // `matches` refuses too, so a typo is never answered with an empty list.
        let f = parse_filter(r#"nosuch eq "x""#).unwrap();
        assert!(matches(&f, ResourceKind::User, &bjensen()).is_err());
        // Group filters are checked against the Group schema.
        let f = parse_filter(r#"userName eq "x""#).unwrap();
        assert!(validate(&f, ResourceKind::Group).is_err());
        assert!(validate(&f, ResourceKind::User).is_ok());
    }

    #[test]
    fn hostile_filters_are_refused_without_overflow() {
        let deep = format!("{}userName eq \"a\"{}", "(".repeat(1000), ")".repeat(1000));
        assert_invalid_filter(&deep);
        let nots = format!(
            "{}userName eq \"a\"{}",
            "not (".repeat(1000),
            ")".repeat(1000)
        );
        assert_invalid_filter(&nots);
        let unbalanced = "(".repeat(10_000);
        assert_invalid_filter(&unbalanced);
        let huge = format!("userName eq \"{}\"", "a".repeat(1 << 20));
        let e = filter_error(&huge);
        assert_eq!(e.scim_type, Some(ScimType::InvalidFilter));
        assert!(e.detail.contains("limit"));
        let many = vec![r#"id eq "x""#; 1100].join(" or ");
        assert!(many.len() < MAX_FILTER_LEN);
        assert_invalid_filter(&many);
        // A hundred-id batch lookup is fine.
        let batch = (0..100)
            .map(|i| format!(r#"id eq "{i}""#))
            .collect::<Vec<_>>()
            .join(" or ");
        assert!(parse_filter(&batch).is_ok());
        let e = match parse_path(&"x".repeat(MAX_FILTER_LEN + 1)) {
            Err(e) => e,
            Ok(p) => panic!("{p:?}"),
        };
        assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
    }

    fn or_of(n: usize, term: impl Fn(usize) -> String) -> String {
        (0..n).map(term).collect::<Vec<_>>().join(" or ")
    }

    #[test]
    fn substring_comparisons_are_capped_with_too_many() {
        let co = |n| or_of(n, |i| format!(r#"displayName co "x{i}""#));
        assert!(parse_filter(&co(MAX_SUBSTRING_COMPARISONS)).is_ok());
        // The issue's 600-term filter: well-formed, but more work than the server will do.
        for f in [
            co(600),
            co(MAX_SUBSTRING_COMPARISONS + 1),
            or_of(MAX_SUBSTRING_COMPARISONS + 1, |i| {
                let op = ["co", "sw", "ew"][i % 3];
                format!(r#"emails[value {op} "x{i}"]"#)
            }),
        ] {
            let e = filter_error(&f);
            assert_eq!((e.status, e.scim_type), (400, Some(ScimType::TooMany)));
            assert!(
                e.detail.contains("co/sw/ew") && e.detail.contains("limit is 50"),
                "{}",
                e.detail
            );
        }
        assert!(filter_error(&co(600)).detail.contains("600"));
    }

    #[test]
    fn comparisons_are_capped_with_too_many() {
        let eq = |n| or_of(n, |i| format!(r#"title eq "t{i}""#));
        assert!(parse_filter(&eq(MAX_FILTER_COMPARISONS)).is_ok());
        let e = filter_error(&eq(MAX_FILTER_COMPARISONS + 1));
        assert_eq!(e.scim_type, Some(ScimType::TooMany));
        assert!(
            e.detail.contains("101 comparisons") && e.detail.contains("limit is 100"),
            "{}",
            e.detail
        );
        // `pr` and the inside of value paths count too.
        let mixed = or_of(MAX_FILTER_COMPARISONS + 1, |i| match i % 3 {
            0 => "title pr".to_string(),
            1 => format!(r#"emails[type eq "t{i}"]"#),
            _ => format!(r#"not (userName eq "u{i}")"#),
        });
        assert_eq!(filter_error(&mixed).scim_type, Some(ScimType::TooMany));
        assert_eq!(
            cost(&parse_filter(r#"emails[type eq "work" and value co "x"] or title pr"#).unwrap()),
            FilterCost {
                comparisons: 3,
                substring: 1
            }
        );
    }

    #[test]
    fn patch_paths_share_the_cost_limits_as_invalid_path() {
        let path = |n| format!("emails[{}]", or_of(n, |i| format!(r#"value co "x{i}""#)));
        assert!(parse_path(&path(MAX_SUBSTRING_COMPARISONS)).is_ok());
        let e = match parse_path(&path(MAX_SUBSTRING_COMPARISONS + 1)) {
            Err(e) => e,
            Ok(p) => panic!("{p:?}"),
        };
        assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
        assert!(e.detail.contains("limit is 50"), "{}", e.detail);
    }

    // --- PATCH paths ---------------------------------------------------------------------------

    #[test]
    fn parses_patch_paths() {
        assert_eq!(
            parse_path("userName").unwrap(),
            PatchPath::Attr(AttrRef::named("userName"))
        );
        assert_eq!(
            parse_path("name.givenName").unwrap(),
            PatchPath::Attr(AttrRef {
                urn: None,
                name: "name".into(),
                sub: Some("givenName".into())
            })
        );
        assert_eq!(
            parse_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value")
                .unwrap(),
            PatchPath::Attr(AttrRef {
                urn: Some(ENTERPRISE_USER_SCHEMA.into()),
                name: "manager".into(),
                sub: Some("value".into())
            })
        );
        assert_eq!(
            parse_path(r#"emails[type eq "work"].value"#).unwrap(),
            PatchPath::Value {
                attr: AttrRef::named("emails"),
                filter: Filter::Compare(AttrRef::named("type"), CompOp::Eq, json!("work")),
                sub: Some("value".into()),
            }
        );
        assert_eq!(
            parse_path(r#"members[value eq "u1"]"#).unwrap(),
            PatchPath::Value {
                attr: AttrRef::named("members"),
                filter: Filter::Compare(AttrRef::named("value"), CompOp::Eq, json!("u1")),
                sub: None,
            }
        );
        for bad in [
            "",
            "emails[",
            r#"emails[type eq "work"]."#,
            "userName eq \"x\"",
            "a..b",
        ] {
            let e = parse_path(bad).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidPath), "{bad}");
        }
    }

    #[test]
    fn matches_element_evaluates_relative_to_the_parent() {
        let emails = USER_ATTRS.iter().find(|a| a.name == "emails").unwrap();
        let roles = USER_ATTRS.iter().find(|a| a.name == "roles").unwrap();
        let members = GROUP_ATTRS.iter().find(|a| a.name == "members").unwrap();
        let PatchPath::Value { filter, .. } =
            parse_path(r#"emails[type eq "WORK" and primary eq true]"#).unwrap()
        else {
            panic!()
        };
        assert!(matches_element(
            &filter,
            emails,
            &json!({"type": "work", "primary": true, "value": "x"})
        ));
        assert!(!matches_element(
            &filter,
            emails,
            &json!({"type": "work", "value": "x"})
        ));
        let PatchPath::Value { filter, .. } =
            parse_path(r#"roles[primary eq "True"].value"#).unwrap()
        else {
            panic!()
        };
        assert!(matches_element(
            &filter,
            roles,
            &json!({"primary": true, "value": "r"})
        ));
        assert!(matches_element(
            &filter,
            roles,
            &json!({"primary": "true", "value": "r"})
        ));
        assert!(!matches_element(&filter, roles, &json!({"primary": false})));
        let PatchPath::Value { filter, .. } = parse_path(r#"members[value eq "u1"]"#).unwrap()
        else {
            panic!()
        };
        assert!(matches_element(&filter, members, &json!({"value": "u1"})));
        assert!(!matches_element(&filter, members, &json!({"value": "U1"})));
        // Unknown sub-attributes match nothing, and `not` of nothing is everything.
        let f = parse_filter("nosuch pr").unwrap();
        assert!(!matches_element(&f, members, &json!({"nosuch": "x"})));
    }

    // --- Store helpers -------------------------------------------------------------------------

    #[test]
    fn index_hints() {
        let hint = |f: &str, kind| index_hint(&parse_filter(f).unwrap(), kind);
        use ResourceKind::{Group, User};
        assert_eq!(
            hint(r#"userName eq "Alice""#, User),
            Some(IndexHint::UserName("Alice".into()))
        );
        assert_eq!(
            hint(r#"USERNAME eq "Alice""#, User),
            Some(IndexHint::UserName("Alice".into()))
        );
        assert_eq!(
            hint(
                r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "a""#,
                User
            ),
            Some(IndexHint::UserName("a".into()))
        );
        assert_eq!(
            hint(r#"externalId eq "e""#, User),
            Some(IndexHint::ExternalId("e".into()))
        );
        assert_eq!(
            hint(r#"displayName eq "Eng""#, Group),
            Some(IndexHint::DisplayName("Eng".into()))
        );
        assert_eq!(hint(r#"displayName eq "Eng""#, User), None);
        assert_eq!(hint(r#"userName eq "a""#, Group), None);
        assert_eq!(
            hint(r#"id eq "g" and members[value eq "u"]"#, Group),
            Some(IndexHint::Id("g".into()))
        );
        assert_eq!(
            hint(r#"userName eq "a" and id eq "i" and active eq true"#, User),
            Some(IndexHint::Id("i".into()))
        );
        assert_eq!(
            hint(
                r#"active eq true and (externalId eq "e" and title pr)"#,
                User
            ),
            Some(IndexHint::ExternalId("e".into()))
        );
        for none in [
            r#"userName eq "a" or id eq "b""#,
            r#"not (userName eq "a")"#,
            r#"userName ne "a""#,
            r#"userName co "a""#,
            r#"emails[value eq "a"]"#,
            "id eq 5",
            r#"title pr or (id eq "x" and title pr)"#,
        ] {
            assert_eq!(hint(none, User), None, "{none}");
        }
    }
}
