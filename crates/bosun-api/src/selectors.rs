//! Kubernetes label selectors and field selectors: parsing, validation and
//! matching with the grammar, ordering and error texts of apimachinery
//! (`pkg/labels/selector.go`, `pkg/fields/selector.go`, and
//! `metav1.LabelSelectorAsSelector`).
//!
//! Validation texts follow the Kubernetes 1.32 apiserver (the release kubectl
//! 1.32 is paired with): "a qualified name ...", "must be no more than N
//! characters", and Go `%#v` rendering of list values in field errors.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as ApiLabelSelector;
use serde_json::{Map, Value};

use crate::names::{go_quote, is_qualified_name, is_valid_label_value};

/// Errors from parsing or converting selectors; `Display` is the message the
/// Kubernetes apiserver produces for the same input.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SelectorError {
    /// A label selector string that does not parse or validate, e.g.
    /// `unable to parse requirement: <nil>: Invalid value: "a/b/c": ...` or
    /// `found ',', expected: !, identifier, or 'end of string'`.
    #[error("{0}")]
    InvalidLabelSelector(String),
    /// A `metav1.LabelSelector` requirement that fails validation, e.g.
    /// `values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty`.
    #[error("{0}")]
    InvalidRequirement(String),
    /// A `matchExpressions[].operator` outside In, NotIn, Exists, DoesNotExist.
    #[error("{} is not a valid label selector operator", go_quote(.0))]
    InvalidOperator(String),
    /// A `metav1.LabelSelector` JSON whose shape is wrong (not an object,
    /// non-string label value, ...).
    #[error("invalid label selector: {0}")]
    Malformed(String),
    /// A field selector term without `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{part}'")]
    InvalidFieldSelector {
        /// The whole selector as given.
        selector: String,
        /// The offending comma-separated term.
        part: String,
    },
    /// A backslash in a field selector value not followed by `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscapeSequence(String),
    /// An unescaped `,` or `=` in a field selector value. Kubernetes formats
    /// the rune with `%v`, so the message carries its code point number.
    #[error("invalid field selector: unescaped character in value: {}", u32::from(*.0))]
    UnescapedRune(char),
}

// ---------------------------------------------------------------------------
// Field errors (the name and label checks are in `crate::names`).
// ---------------------------------------------------------------------------

/// The bad value of a field error, rendered as Kubernetes 1.32 renders it.
enum BadValue<'a> {
    Str(&'a str),
    /// A `[]string`; `None` is a nil slice.
    List(Option<&'a [String]>),
}

impl fmt::Display for BadValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadValue::Str(s) => f.write_str(&go_quote(s)),
            BadValue::List(None) => f.write_str("[]string(nil)"),
            BadValue::List(Some(items)) => {
                let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
                write!(f, "[]string{{{}}}", quoted.join(", "))
            }
        }
    }
}

/// `field.Invalid(path, value, detail).Error()`.
fn invalid(path: &str, value: BadValue<'_>, detail: &str) -> String {
    if detail.is_empty() {
        format!("{path}: Invalid value: {value}")
    } else {
        format!("{path}: Invalid value: {value}: {detail}")
    }
}

/// `ErrorList.ToAggregate().Error()`: one message as is, several deduplicated
/// and bracketed.
fn aggregate(errs: &[String]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for e in errs {
        if !seen.contains(&e.as_str()) {
            seen.push(e);
        }
    }
    if seen.len() == 1 {
        seen.concat()
    } else {
        format!("[{}]", seen.join(", "))
    }
}

// ---------------------------------------------------------------------------
// Label selectors.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LabelOp {
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: LabelOp,
    values: Vec<String>,
}

impl Requirement {
    /// Kubernetes `NewRequirement` with a nil field path.
    /// `values` is `None` for a nil Go slice (only matters for error text).
    fn new(key: &str, op: LabelOp, values: Option<Vec<String>>) -> Result<Self, String> {
        let mut errs = Vec::new();
        let key_errs = is_qualified_name(key);
        if !key_errs.is_empty() {
            errs.push(invalid("key", BadValue::Str(key), &key_errs.join("; ")));
        }
        let vals = values.as_deref().unwrap_or_default();
        let list = BadValue::List(values.as_deref());
        match op {
            LabelOp::In | LabelOp::NotIn => {
                if vals.is_empty() {
                    errs.push(invalid(
                        "values",
                        list,
                        "for 'in', 'notin' operators, values set can't be empty",
                    ));
                }
            }
            LabelOp::Equals | LabelOp::DoubleEquals | LabelOp::NotEquals => {
                if vals.len() != 1 {
                    errs.push(invalid(
                        "values",
                        list,
                        "exact-match compatibility requires one single value",
                    ));
                }
            }
            LabelOp::Exists | LabelOp::DoesNotExist => {
                if !vals.is_empty() {
                    errs.push(invalid(
                        "values",
                        list,
                        "values set must be empty for exists and does not exist",
                    ));
                }
            }
            LabelOp::GreaterThan | LabelOp::LessThan => {
                if vals.len() != 1 {
                    errs.push(invalid(
                        "values",
                        list,
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in vals.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(invalid(
                            &format!("values[{i}]"),
                            BadValue::Str(v),
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
        }
        for (i, v) in vals.iter().enumerate() {
            let v_errs = is_valid_label_value(v);
            if !v_errs.is_empty() {
                errs.push(invalid(
                    &format!("values[{i}][{key}]"),
                    BadValue::Str(v),
                    &v_errs.join("; "),
                ));
            }
        }
        if !errs.is_empty() {
            return Err(aggregate(&errs));
        }
        Ok(Requirement {
            key: key.to_string(),
            op,
            values: values.unwrap_or_default(),
        })
    }

    /// The one matcher: `label(key)` is the object's value of a label, `None` when it has
    /// no such label.
    fn matches(&self, label: &impl Fn(&str) -> Option<String>) -> bool {
        let got = label(&self.key);
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.op {
            LabelOp::In | LabelOp::Equals | LabelOp::DoubleEquals => got.is_some_and(|v| has(&v)),
            LabelOp::NotIn | LabelOp::NotEquals => got.is_none_or(|v| !has(&v)),
            LabelOp::Exists => got.is_some(),
            LabelOp::DoesNotExist => got.is_none(),
            LabelOp::GreaterThan | LabelOp::LessThan => {
                let Some(Ok(have)) = got.map(|v| v.parse::<i64>()) else {
                    return false;
                };
                let [want] = self.values.as_slice() else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.op == LabelOp::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

/// A label's value as selectors compare it (a JSON string as is; anything else rendered).
pub fn label_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.op == LabelOp::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let (op, paren) = match self.op {
            LabelOp::Exists | LabelOp::DoesNotExist => return Ok(()),
            LabelOp::Equals => ("=", false),
            LabelOp::DoubleEquals => ("==", false),
            LabelOp::NotEquals => ("!=", false),
            LabelOp::In => (" in ", true),
            LabelOp::NotIn => (" notin ", true),
            LabelOp::GreaterThan => (">", false),
            LabelOp::LessThan => ("<", false),
        };
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        if paren {
            write!(f, "{op}({})", values.join(","))
        } else {
            write!(f, "{op}{}", values.join(","))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn literal_token(s: &[u8]) -> Option<Token> {
    Some(match s {
        b")" => Token::ClosedPar,
        b"," => Token::Comma,
        b"!" => Token::DoesNotExist,
        b"==" => Token::DoubleEquals,
        b"=" => Token::Equals,
        b">" => Token::GreaterThan,
        b"in" => Token::In,
        b"<" => Token::LessThan,
        b"!=" => Token::NotEquals,
        b"notin" => Token::NotIn,
        b"(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(ch: u8) -> bool {
    matches!(ch, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special_symbol(ch: u8) -> bool {
    matches!(ch, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Byte lexer of the label selector grammar; a NUL byte reads as end of
/// input, as in Kubernetes.
struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn read(&mut self) -> u8 {
        match self.s.get(self.pos) {
            Some(b) => {
                self.pos += 1;
                *b
            }
            None => 0,
        }
    }

    fn unread(&mut self) {
        self.pos = self.pos.saturating_sub(1);
    }

    fn scan_id_or_keyword(&mut self) -> (Token, String) {
        let mut buf = Vec::new();
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if is_special_symbol(ch) || is_whitespace(ch) {
                self.unread();
                break;
            }
            buf.push(ch);
        }
        let tok = literal_token(&buf).unwrap_or(Token::Identifier);
        (tok, String::from_utf8_lossy(&buf).into_owned())
    }

    fn scan_special_symbol(&mut self) -> (Token, String) {
        let mut buf = Vec::new();
        let mut last: Option<(Token, usize)> = None;
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if !is_special_symbol(ch) {
                self.unread();
                break;
            }
            buf.push(ch);
            if let Some(tok) = literal_token(&buf) {
                last = Some((tok, buf.len()));
            } else if last.is_some() {
                self.unread();
                break;
            }
        }
        match last {
            Some((tok, len)) => (tok, String::from_utf8_lossy(&buf[..len]).into_owned()),
            None => (
                Token::Error,
                format!(
                    "error expected: keyword found '{}'",
                    String::from_utf8_lossy(&buf)
                ),
            ),
        }
    }

    fn lex(&mut self) -> (Token, String) {
        let mut ch = self.read();
        while is_whitespace(ch) {
            ch = self.read();
        }
        if ch == 0 {
            return (Token::EndOfString, String::new());
        }
        self.unread();
        if is_special_symbol(ch) {
            self.scan_special_symbol()
        } else {
            self.scan_id_or_keyword()
        }
    }
}

/// Whether `in`/`notin` are keywords (operator position) or plain values.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<(Token, String)>,
    position: usize,
}

const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

impl Parser {
    fn new(input: &str) -> Self {
        let mut lexer = Lexer {
            s: input.as_bytes(),
            pos: 0,
        };
        let mut items = Vec::new();
        loop {
            let item = lexer.lex();
            let done = item.0 == Token::EndOfString;
            items.push(item);
            if done {
                break;
            }
        }
        Parser { items, position: 0 }
    }

    fn at(&self, i: usize, ctx: Ctx) -> (Token, String) {
        let (tok, lit) = self
            .items
            .get(i)
            .cloned()
            .unwrap_or((Token::EndOfString, String::new()));
        match (ctx, tok) {
            (Ctx::Values, Token::In | Token::NotIn) => (Token::Identifier, lit),
            _ => (tok, lit),
        }
    }

    fn lookahead(&self, ctx: Ctx) -> (Token, String) {
        self.at(self.position, ctx)
    }

    fn consume(&mut self, ctx: Ctx) -> (Token, String) {
        let item = self.at(self.position, ctx);
        self.position += 1;
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut reqs = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Ctx::Values);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self
                        .parse_requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    reqs.push(r);
                    let (t, l) = self.consume(Ctx::Values);
                    match t {
                        Token::EndOfString => return Ok(reqs),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(Ctx::Values);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(format!(
                                    "found '{l2}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => {
                            return Err(format!("found '{l}', expected: ',' or 'end of string'"));
                        }
                    }
                }
                Token::EndOfString => return Ok(reqs),
                _ => {
                    return Err(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    ));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        if let Some(op) = inferred {
            return Requirement::new(&key, op, Some(Vec::new()));
        }
        let op = self.parse_operator()?;
        let values = match op {
            LabelOp::In | LabelOp::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(&key, op, Some(values.into_iter().collect()))
    }

    /// Returns the key and, for `key` / `!key`, the unary operator.
    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<LabelOp>), String> {
        let mut op = None;
        let (mut tok, mut lit) = self.consume(Ctx::Values);
        if tok == Token::DoesNotExist {
            op = Some(LabelOp::DoesNotExist);
            (tok, lit) = self.consume(Ctx::Values);
        }
        if tok != Token::Identifier {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        let errs = is_qualified_name(&lit);
        if !errs.is_empty() {
            return Err(invalid("<nil>", BadValue::Str(&lit), &errs.join("; ")));
        }
        let (next, _) = self.lookahead(Ctx::Values);
        if (next == Token::EndOfString || next == Token::Comma) && op.is_none() {
            op = Some(LabelOp::Exists);
        }
        Ok((lit, op))
    }

    fn parse_operator(&mut self) -> Result<LabelOp, String> {
        let (tok, lit) = self.consume(Ctx::KeyAndOperator);
        Ok(match tok {
            Token::In => LabelOp::In,
            Token::Equals => LabelOp::Equals,
            Token::DoubleEquals => LabelOp::DoubleEquals,
            Token::GreaterThan => LabelOp::GreaterThan,
            Token::LessThan => LabelOp::LessThan,
            Token::NotIn => LabelOp::NotIn,
            Token::NotEquals => LabelOp::NotEquals,
            _ => return Err(format!("found '{lit}', expected: {BINARY_OPERATORS}")),
        })
    }

    fn parse_values(&mut self) -> Result<BTreeSet<String>, String> {
        let (tok, lit) = self.consume(Ctx::Values);
        if tok != Token::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Ctx::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let set = self.parse_identifiers_list()?;
                let (tok, _) = self.consume(Ctx::Values);
                if tok != Token::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(set)
            }
            Token::ClosedPar => {
                self.consume(Ctx::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, String> {
        let mut set = BTreeSet::new();
        loop {
            let (tok, lit) = self.consume(Ctx::Values);
            match tok {
                Token::Identifier => {
                    set.insert(lit);
                    let (tok2, lit2) = self.lookahead(Ctx::Values);
                    match tok2 {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(set),
                        _ => return Err(format!("found '{lit2}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    // "(," "(a,)" and "(a,,b)" all carry the empty value.
                    if set.is_empty() {
                        set.insert(String::new());
                    }
                    let (tok2, _) = self.lookahead(Ctx::Values);
                    if tok2 == Token::ClosedPar {
                        set.insert(String::new());
                        return Ok(set);
                    }
                    if tok2 == Token::Comma {
                        self.consume(Ctx::Values);
                        set.insert(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, String> {
        let (tok, _) = self.lookahead(Ctx::Values);
        if tok == Token::EndOfString || tok == Token::Comma {
            return Ok(BTreeSet::from([String::new()]));
        }
        let (tok, lit) = self.consume(Ctx::Values);
        if tok == Token::Identifier {
            return Ok(BTreeSet::from([lit]));
        }
        Err(format!("found '{lit}', expected: identifier"))
    }
}

/// A Kubernetes label selector: an AND of requirements kept sorted by key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses the query-string form: `a=b,c!=d,e in (x,y),f notin (z),g,!h`
    /// (also `==`, and `>`/`<` with integers). Keys and values validated as
    /// Kubernetes does (qualified names, label values).
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut requirements = Parser::new(s)
            .parse()
            .map_err(SelectorError::InvalidLabelSelector)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// From a metav1.LabelSelector JSON (matchLabels + matchExpressions with
    /// operators In, NotIn, Exists, DoesNotExist); `null`/absent means
    /// everything; `{}` means everything (as for Deployment selectors
    /// metav1.LabelSelectorAsSelector).
    pub fn from_api(sel: &Value) -> Result<Self, SelectorError> {
        let obj = match sel {
            Value::Null => return Ok(Self::everything()),
            Value::Object(o) => o,
            other => {
                return Err(SelectorError::Malformed(format!(
                    "expected an object, got {other}"
                )));
            }
        };
        let mut requirements = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                // Sorted so that the first reported error does not depend on
                // map order.
                let mut keys: Vec<&String> = labels.keys().collect();
                keys.sort();
                for k in keys {
                    let v = match labels.get(k) {
                        Some(Value::String(s)) => s.clone(),
                        _ => {
                            return Err(SelectorError::Malformed(format!(
                                "matchLabels[{k}] must be a string"
                            )));
                        }
                    };
                    let r = Requirement::new(k, LabelOp::Equals, Some(vec![v]))
                        .map_err(SelectorError::InvalidRequirement)?;
                    requirements.push(r);
                }
            }
            Some(_) => {
                return Err(SelectorError::Malformed(
                    "matchLabels must be an object".to_string(),
                ));
            }
        }
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for (i, expr) in exprs.iter().enumerate() {
                    requirements.push(Self::expression(i, expr)?);
                }
            }
            Some(_) => {
                return Err(SelectorError::Malformed(
                    "matchExpressions must be an array".to_string(),
                ));
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// From a typed `metav1.LabelSelector` (as [`LabelSelector::from_api`]).
    pub fn from_typed(sel: &ApiLabelSelector) -> Result<Self, SelectorError> {
        let json =
            serde_json::to_value(sel).map_err(|e| SelectorError::Malformed(e.to_string()))?;
        Self::from_api(&json)
    }

    fn expression(i: usize, expr: &Value) -> Result<Requirement, SelectorError> {
        let Value::Object(expr) = expr else {
            return Err(SelectorError::Malformed(format!(
                "matchExpressions[{i}] must be an object"
            )));
        };
        let text = |name: &str| -> Result<String, SelectorError> {
            match expr.get(name) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(SelectorError::Malformed(format!(
                    "matchExpressions[{i}].{name} must be a string"
                ))),
            }
        };
        let key = text("key")?;
        let operator = text("operator")?;
        let op = match operator.as_str() {
            "In" => LabelOp::In,
            "NotIn" => LabelOp::NotIn,
            "Exists" => LabelOp::Exists,
            "DoesNotExist" => LabelOp::DoesNotExist,
            _ => return Err(SelectorError::InvalidOperator(operator)),
        };
        let mut values = Vec::new();
        match expr.get("values") {
            None | Some(Value::Null) => {}
            Some(Value::Array(vs)) => {
                for v in vs {
                    let Value::String(s) = v else {
                        return Err(SelectorError::Malformed(format!(
                            "matchExpressions[{i}].values must be strings"
                        )));
                    };
                    values.push(s.clone());
                }
            }
            Some(_) => {
                return Err(SelectorError::Malformed(format!(
                    "matchExpressions[{i}].values must be an array"
                )));
            }
        }
        // Kubernetes copies the values with append([]string(nil), ...), so an
        // empty list is a nil slice in its error text.
        let values = (!values.is_empty()).then_some(values);
        Requirement::new(&key, op, values).map_err(SelectorError::InvalidRequirement)
    }

    /// The selector that matches every object.
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// Whether the selector places no restriction.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Labels are the `metadata.labels` JSON object (or None when absent).
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.matches_by(|k| labels.and_then(|m| m.get(k)).map(label_text))
    }

    /// Labels as the typed objects keep them (`ObjectMeta::labels`).
    pub fn matches_labels(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.matches_by(|k| labels.and_then(|m| m.get(k)).cloned())
    }

    /// Matches with a lookup of label values: `label(key)` gives the object's value of that
    /// label, `None` when it has none.
    pub fn matches_by(&self, label: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| r.matches(&label))
    }
}

/// Canonical string, requirements sorted by key as Kubernetes does.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Field selectors.
// ---------------------------------------------------------------------------

/// A field selector operator; `=` and `==` are the same operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    /// `=` or `==`.
    Eq,
    /// `!=`.
    NotEq,
}

/// A Kubernetes field selector: an AND of `field=value` / `field!=value`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldSelector {
    requirements: Vec<(String, FieldOp, String)>,
}

/// Splits on commas not preceded by a backslash; escapes stay in the terms.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits at the first operator; field names have no escaping.
fn split_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        if let Some(rhs) = rest.strip_prefix("!=") {
            return Some((&term[..i], FieldOp::NotEq, rhs));
        }
        if let Some(rhs) = rest.strip_prefix("==") {
            return Some((&term[..i], FieldOp::Eq, rhs));
        }
        if let Some(rhs) = rest.strip_prefix('=') {
            return Some((&term[..i], FieldOp::Eq, rhs));
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => return Err(SelectorError::InvalidEscapeSequence(format!("\\{c}"))),
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(SelectorError::UnescapedRune(c)),
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::InvalidEscapeSequence("\\".to_string()));
    }
    Ok(out)
}

fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl FieldSelector {
    /// `metadata.name=x,status.phase!=Failed,spec.nodeName==n` (also `\,`
    /// `\=` `\\` escapes in values as Kubernetes allows). Terms are kept in
    /// the order Kubernetes gives them: sorted by their raw text.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut parts = split_terms(s);
        parts.sort_unstable();
        let mut requirements = Vec::new();
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((lhs, op, rhs)) = split_term(part) else {
                return Err(SelectorError::InvalidFieldSelector {
                    selector: s.to_string(),
                    part: part.to_string(),
                });
            };
            let value = unescape_value(rhs)?;
            // A term with neither field nor value ("=") selects everything.
            if lhs.is_empty() && value.is_empty() {
                continue;
            }
            requirements.push((lhs.to_string(), op, value));
        }
        Ok(FieldSelector { requirements })
    }

    /// The selector that matches every object.
    pub fn everything() -> Self {
        FieldSelector::default()
    }

    /// The parsed `(field, operator, unescaped value)` terms.
    pub fn requirements(&self) -> &[(String, FieldOp, String)] {
        &self.requirements
    }

    /// Whether the selector places no restriction.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Matches with a lookup of field values: `get(field)` gives the object's
    /// value of that field ("" when absent, as Kubernetes' field sets do).
    pub fn matches(&self, get: impl Fn(&str) -> String) -> bool {
        self.requirements.iter().all(|(field, op, value)| {
            let have = get(field);
            match op {
                FieldOp::Eq => have == *value,
                FieldOp::NotEq => have != *value,
            }
        })
    }
}

/// Canonical string as Kubernetes prints it: `=`/`!=` with escaped values.
impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (field, op, value)) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match op {
                FieldOp::Eq => "=",
                FieldOp::NotEq => "!=",
            };
            write!(f, "{field}{op}{}", escape_value(value))?;
        }
        Ok(())
    }
}

/// Whether an object (as JSON) passes a label and a field selector: its `metadata.labels`
/// against the first, its [`field_value`]s against the second.
pub fn matches(obj: &Value, labels: &LabelSelector, fields: &FieldSelector) -> bool {
    let l = obj.pointer("/metadata/labels").and_then(Value::as_object);
    labels.matches(l) && fields.matches(|f| field_value(obj, f))
}

/// Field value lookup on an object JSON by a dotted path (metadata.name,
/// spec.nodeName, status.phase, involvedObject.kind, ...): strings as is,
/// numbers/bools rendered, absent -> "".
pub fn field_value(obj: &Value, field: &str) -> String {
    let mut cur = obj;
    for seg in field.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null | Value::Array(_) | Value::Object(_) => String::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const NAME_PART_REGEX: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const VALUE_REGEX: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn canon(s: &str) -> String {
        LabelSelector::parse(s).unwrap().to_string()
    }

    fn err(s: &str) -> String {
        LabelSelector::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn parses_every_operator() {
        assert_eq!(canon("a=b"), "a=b");
        assert_eq!(canon("a==b"), "a==b");
        assert_eq!(canon("a!=b"), "a!=b");
        assert_eq!(canon("a in (x,y)"), "a in (x,y)");
        assert_eq!(canon("a notin (z)"), "a notin (z)");
        assert_eq!(canon("a"), "a");
        assert_eq!(canon("!a"), "!a");
        assert_eq!(canon("a>5"), "a>5");
        assert_eq!(canon("a<5"), "a<5");
    }

    #[test]
    fn spacing_variants() {
        assert_eq!(canon(" a = b "), "a=b");
        assert_eq!(canon("a\t==\tb"), "a==b");
        assert_eq!(canon("a in(x, y)"), "a in (x,y)");
        assert_eq!(canon("a  notin  ( z )"), "a notin (z)");
        assert_eq!(canon("x , ! y"), "x,!y");
        assert_eq!(canon("a!= b,c =d"), "a!=b,c=d");
        assert_eq!(canon(""), "");
        assert_eq!(canon("   "), "");
        assert!(LabelSelector::parse("  ").unwrap().is_empty());
    }

    #[test]
    fn canonical_form_sorts_keys_and_values() {
        assert_eq!(
            canon("z=1,a in (c,b,a),m notin (y,x),!d,e"),
            "a in (a,b,c),!d,e,m notin (x,y),z=1"
        );
        assert_eq!(canon("app=web,tier in (fe)"), "app=web,tier in (fe)");
        assert_eq!(
            canon("example.com/role=db,app=x"),
            "app=x,example.com/role=db"
        );
    }

    #[test]
    fn empty_values() {
        assert_eq!(canon("a="), "a=");
        assert_eq!(canon("a=,b"), "a=,b");
        assert_eq!(
            canon("x in (foo,,baz),y,z notin ()"),
            "x in (,baz,foo),y,z notin ()"
        );
        assert_eq!(canon("a in (,)"), "a in ()");
        assert_eq!(canon("a in (b,)"), "a in (,b)");
        let s = LabelSelector::parse("a=").unwrap();
        assert!(s.matches(Some(&labels(json!({"a": ""})))));
        assert!(!s.matches(Some(&labels(json!({})))));
    }

    #[test]
    fn in_and_notin_are_values_in_value_position() {
        assert_eq!(canon("in in (in,notin)"), "in in (in,notin)");
        assert_eq!(canon("a=in"), "a=in");
        assert_eq!(canon("notin"), "notin");
    }

    #[test]
    fn structural_errors() {
        assert_eq!(
            err(","),
            "found ',', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(err("a,"), "found '', expected: identifier after ','");
        assert_eq!(err("a,,b"), "found ',', expected: identifier after ','");
        assert_eq!(
            err("a b"),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(err("a=b c"), "found 'c', expected: ',' or 'end of string'");
        assert_eq!(
            err("a in"),
            "unable to parse requirement: found '' expected: '('"
        );
        assert_eq!(
            err("a in x"),
            "unable to parse requirement: found 'x' expected: '('"
        );
        assert_eq!(
            err("a in (x"),
            "unable to parse requirement: found '', expected: ',' or ')'"
        );
        assert_eq!(
            err("a in (x y)"),
            "unable to parse requirement: found 'y', expected: ',' or ')'"
        );
        assert_eq!(
            err("a in (="),
            "unable to parse requirement: found '=', expected: ',', ')' or identifier"
        );
        assert_eq!(
            err("a in (x,=)"),
            "unable to parse requirement: found '=', expected: ',', or identifier"
        );
        assert_eq!(
            err("a=(b)"),
            "unable to parse requirement: found '(', expected: identifier"
        );
        assert_eq!(
            err("!"),
            "unable to parse requirement: found '', expected: identifier"
        );
        assert_eq!(
            err("!=a"),
            "found '!=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(err("!a=b"), "found '=', expected: ',' or 'end of string'");
        assert_eq!(
            err("(a)"),
            "found '(', expected: !, identifier, or 'end of string'"
        );
    }

    fn err_or_canon(s: &str) -> String {
        match LabelSelector::parse(s) {
            Ok(sel) => sel.to_string(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn double_equals_without_value_is_empty_value() {
        assert_eq!(err_or_canon("a=="), "a==");
        assert_eq!(
            err_or_canon("a==="),
            "unable to parse requirement: found '=', expected: identifier"
        );
    }

    #[test]
    fn invalid_keys() {
        assert_eq!(
            err("a/b/c=d"),
            "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        );
        assert_eq!(
            err("-a=b"),
            format!("unable to parse requirement: <nil>: Invalid value: \"-a\": {NAME_PART_REGEX}")
        );
        assert_eq!(
            err("/a"),
            "unable to parse requirement: <nil>: Invalid value: \"/a\": prefix part must be non-empty"
        );
        assert_eq!(
            err("Example.com/a"),
            "unable to parse requirement: <nil>: Invalid value: \"Example.com/a\": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        );
        assert_eq!(
            err("example.com/"),
            format!(
                "unable to parse requirement: <nil>: Invalid value: \"example.com/\": name part must be non-empty; {NAME_PART_REGEX}"
            )
        );
        let long = "k".repeat(64);
        assert_eq!(
            err(&long),
            format!(
                "unable to parse requirement: <nil>: Invalid value: \"{long}\": name part must be no more than 63 characters"
            )
        );
        assert_eq!(
            err("a\"b"),
            format!(
                "unable to parse requirement: <nil>: Invalid value: \"a\\\"b\": {NAME_PART_REGEX}"
            )
        );
    }

    #[test]
    fn invalid_values() {
        assert_eq!(
            err("app=foo@bar"),
            format!(
                "unable to parse requirement: values[0][app]: Invalid value: \"foo@bar\": {VALUE_REGEX}"
            )
        );
        // Values are validated in sorted order, so the index is the sorted one.
        assert_eq!(
            err("app in (z, -b)"),
            format!(
                "unable to parse requirement: values[0][app]: Invalid value: \"-b\": {VALUE_REGEX}"
            )
        );
        assert_eq!(
            err("app in (a_, -b)"),
            format!(
                "unable to parse requirement: [values[0][app]: Invalid value: \"-b\": {VALUE_REGEX}, values[1][app]: Invalid value: \"a_\": {VALUE_REGEX}]"
            )
        );
        let long = "v".repeat(64);
        assert_eq!(
            err(&format!("a={long}")),
            format!(
                "unable to parse requirement: values[0][a]: Invalid value: \"{long}\": must be no more than 63 characters"
            )
        );
        assert_eq!(
            err("a>x"),
            "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
        // Negative numbers are integers but not label values.
        assert_eq!(
            err("a<-5"),
            format!(
                "unable to parse requirement: values[0][a]: Invalid value: \"-5\": {VALUE_REGEX}"
            )
        );
    }

    #[test]
    fn matching() {
        let l = labels(json!({"app": "web", "tier": "fe", "n": "10"}));
        let m =
            |s: &str, l: Option<&Map<String, Value>>| LabelSelector::parse(s).unwrap().matches(l);
        assert!(m("app=web", Some(&l)));
        assert!(m("app==web,tier=fe", Some(&l)));
        assert!(!m("app=db", Some(&l)));
        assert!(m("app!=db", Some(&l)));
        assert!(!m("app!=web", Some(&l)));
        assert!(m("app in (db,web)", Some(&l)));
        assert!(!m("app notin (db,web)", Some(&l)));
        assert!(m("app", Some(&l)));
        assert!(!m("!app", Some(&l)));
        assert!(m("n>9,n<11", Some(&l)));
        assert!(!m("n>10", Some(&l)));
        assert!(!m("app>1", Some(&l)));
        // Absent labels: negative requirements hold, positive ones fail.
        assert!(m("missing notin (x)", Some(&l)));
        assert!(m("missing!=x", Some(&l)));
        assert!(m("!missing", Some(&l)));
        assert!(!m("missing in (x)", Some(&l)));
        assert!(!m("missing=x", Some(&l)));
        assert!(!m("missing", Some(&l)));
        assert!(!m("missing<5", Some(&l)));
        assert!(m("a notin (x),!b,c!=d", None));
        assert!(!m("a", None));
        assert!(m("", None));
        assert!(LabelSelector::everything().matches(None));
        assert!(LabelSelector::everything().is_empty());
        assert_eq!(LabelSelector::everything().to_string(), "");
    }

    #[test]
    fn from_api_match_labels_and_expressions() {
        let sel = LabelSelector::from_api(&json!({
            "matchLabels": {"app": "web", "env": "prod"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["fe", "be"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "NotIn", "values": ["b"]},
                {"key": "owner", "operator": "Exists", "values": []}
            ]
        }))
        .unwrap();
        assert_eq!(
            sel.to_string(),
            "app=web,!canary,env=prod,owner,tier in (be,fe),zone notin (b)"
        );
        assert!(sel.matches(Some(&labels(
            json!({"app": "web", "env": "prod", "tier": "be", "owner": "me"})
        ))));
        assert!(!sel.matches(Some(&labels(
            json!({"app": "web", "env": "prod", "tier": "be", "owner": "me", "canary": "1"})
        ))));
        assert!(!sel.matches(Some(&labels(
            json!({"app": "web", "env": "prod", "tier": "be", "owner": "me", "zone": "b"})
        ))));
        assert!(!sel.matches(None));
    }

    #[test]
    fn from_api_everything() {
        for v in [
            json!(null),
            json!({}),
            json!({"matchLabels": {}, "matchExpressions": []}),
        ] {
            let s = LabelSelector::from_api(&v).unwrap();
            assert!(s.is_empty());
            assert!(s.matches(None));
            assert_eq!(s, LabelSelector::everything());
        }
    }

    #[test]
    fn from_api_errors() {
        let e = |v: Value| LabelSelector::from_api(&v).unwrap_err().to_string();
        assert_eq!(
            e(json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]})),
            "\"Gt\" is not a valid label selector operator"
        );
        assert_eq!(
            e(json!({"matchExpressions": [{"key": "a"}]})),
            "\"\" is not a valid label selector operator"
        );
        assert_eq!(
            e(json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})),
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
        );
        assert_eq!(
            e(
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x", "y"]}]})
            ),
            "values: Invalid value: []string{\"x\", \"y\"}: values set must be empty for exists and does not exist"
        );
        assert_eq!(
            e(json!({"matchLabels": {"a b": "c"}})),
            format!("key: Invalid value: \"a b\": {NAME_PART_REGEX}")
        );
        assert_eq!(
            e(json!({"matchLabels": {"app": "a b"}})),
            format!("values[0][app]: Invalid value: \"a b\": {VALUE_REGEX}")
        );
        assert_eq!(
            e(json!({"matchExpressions": [{"key": "", "operator": "NotIn"}]})),
            format!(
                "[key: Invalid value: \"\": name part must be non-empty; {NAME_PART_REGEX}, values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty]"
            )
        );
        assert_eq!(
            e(json!({"matchLabels": {"app": 1}})),
            "invalid label selector: matchLabels[app] must be a string"
        );
        assert_eq!(
            e(json!("app=web")),
            "invalid label selector: expected an object, got \"app=web\""
        );
    }

    #[test]
    fn non_string_label_values_are_rendered() {
        let s = LabelSelector::parse("n=5").unwrap();
        assert!(s.matches(Some(&labels(json!({"n": 5})))));
    }

    fn fparse(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap()
    }

    #[test]
    fn field_selector_parsing() {
        let s = fparse("metadata.name=x,status.phase!=Failed,spec.nodeName==n");
        assert_eq!(
            s.requirements(),
            &[
                ("metadata.name".to_string(), FieldOp::Eq, "x".to_string()),
                ("spec.nodeName".to_string(), FieldOp::Eq, "n".to_string()),
                (
                    "status.phase".to_string(),
                    FieldOp::NotEq,
                    "Failed".to_string()
                ),
            ]
        );
        assert_eq!(
            s.to_string(),
            "metadata.name=x,spec.nodeName=n,status.phase!=Failed"
        );
        assert!(fparse("").is_empty());
        assert!(fparse(",,").is_empty());
        assert!(fparse("=").is_empty());
        assert_eq!(
            fparse("a=").requirements(),
            &[("a".to_string(), FieldOp::Eq, String::new())]
        );
        // The first operator wins; the rest belongs to the value.
        assert_eq!(
            fparse("a!=\\=b").requirements(),
            &[("a".to_string(), FieldOp::NotEq, "=b".to_string())]
        );
    }

    #[test]
    fn field_selector_escapes() {
        let s = fparse(r"metadata.name=a\,b\=c\\d,spec.x=y");
        assert_eq!(
            s.requirements(),
            &[
                (
                    "metadata.name".to_string(),
                    FieldOp::Eq,
                    r"a,b=c\d".to_string()
                ),
                ("spec.x".to_string(), FieldOp::Eq, "y".to_string()),
            ]
        );
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c\\d,spec.x=y");
    }

    #[test]
    fn field_selector_errors() {
        let e = |s: &str| FieldSelector::parse(s).unwrap_err().to_string();
        assert_eq!(
            e("metadata.name"),
            "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
        );
        assert_eq!(
            e("b=1,a"),
            "invalid selector: 'b=1,a'; can't understand 'a'"
        );
        assert_eq!(
            e(r"a=b\c"),
            r"invalid field selector: invalid escape sequence: \c"
        );
        assert_eq!(
            e(r"a=b\"),
            r"invalid field selector: invalid escape sequence: \"
        );
        assert_eq!(
            e("a=b=c"),
            "invalid field selector: unescaped character in value: 61"
        );
        assert_eq!(
            e("a!=b=c"),
            "invalid field selector: unescaped character in value: 61"
        );
    }

    #[test]
    fn field_selector_matching_and_exact() {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "node-a", "priority": 5, "hostNetwork": false},
            "status": {"phase": "Running"}
        });
        let get = |f: &str| field_value(&pod, f);
        assert!(fparse("metadata.name=web-1,status.phase!=Failed").matches(get));
        assert!(!fparse("status.phase=Failed").matches(get));
        assert!(fparse("spec.nodeName==node-a").matches(get));
        assert!(fparse("spec.missing=").matches(get));
        assert!(fparse("spec.missing!=x").matches(get));
        assert!(fparse("spec.priority=5,spec.hostNetwork=false").matches(get));
        assert!(fparse("").matches(get));
    }

    #[test]
    fn field_values() {
        let ev = json!({
            "involvedObject": {"kind": "Pod", "name": "p"},
            "count": 3,
            "ratio": 1.5,
            "ok": true,
            "nothing": null,
            "list": [1]
        });
        assert_eq!(field_value(&ev, "involvedObject.kind"), "Pod");
        assert_eq!(field_value(&ev, "count"), "3");
        assert_eq!(field_value(&ev, "ratio"), "1.5");
        assert_eq!(field_value(&ev, "ok"), "true");
        assert_eq!(field_value(&ev, "nothing"), "");
        assert_eq!(field_value(&ev, "list"), "");
        assert_eq!(field_value(&ev, "involvedObject.missing"), "");
        assert_eq!(field_value(&ev, "count.deeper"), "");
    }

    #[test]
    fn one_matcher_for_json_typed_and_whole_objects() {
        let typed: ApiLabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ],
        }))
        .unwrap();
        let sel = LabelSelector::from_typed(&typed).unwrap();
        assert_eq!(sel.to_string(), "app=web,!canary,tier in (a,b)");
        let set = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(sel.matches_labels(Some(&set(&[("app", "web"), ("tier", "b")]))));
        assert!(!sel.matches_labels(Some(&set(&[("app", "web"), ("tier", "c")]))));
        assert!(!sel.matches_labels(Some(&set(&[("app", "web"), ("tier", "a"), ("canary", "")]))));
        assert!(!sel.matches_labels(None));
        assert!(LabelSelector::everything().matches_labels(None));
        let bad: ApiLabelSelector =
            serde_json::from_value(json!({"matchExpressions": [{"key": "k", "operator": "Near"}]}))
                .unwrap();
        assert_eq!(
            LabelSelector::from_typed(&bad).unwrap_err(),
            SelectorError::InvalidOperator("Near".into())
        );
        // The same selector on the JSON labels of a whole object, with a field selector.
        let pod = json!({"metadata": {"name": "p", "labels": {"app": "web", "tier": "a"}},
            "spec": {"nodeName": "n1"}});
        assert!(matches(&pod, &sel, &fparse("spec.nodeName=n1")));
        assert!(!matches(&pod, &sel, &fparse("spec.nodeName=n2")));
        assert!(!matches(
            &pod,
            &LabelSelector::parse("app=db").unwrap(),
            &FieldSelector::everything()
        ));
        assert!(matches(
            &json!({}),
            &LabelSelector::everything(),
            &FieldSelector::everything()
        ));
    }
}
