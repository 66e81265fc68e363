//! Meta and composite expressions: boolean and counting arithmetic over
//! symbols.
//!
//! Grammar (SpamAssassin's meta syntax and rspamd's composite syntax both
//! parse):
//!
//! ```text
//! expr    := or
//! or      := and   (("||" | "|" | "OR") and)*
//! and     := cmp   (("&&" | "&" | "AND") cmp)*
//! cmp     := sum   ((">" | ">=" | "<" | "<=" | "==" | "!=") sum)?
//! sum     := prod  (("+" | "-") prod)*
//! prod    := unary (("*" | "/") unary)*
//! unary   := ("!" | "NOT") unary | "-" unary | atom
//! atom    := NUMBER | "(" expr ")" | ["~" | "^" | "-"] SYMBOL
//! ```
//!
//! A symbol is 1 when it fired and 0 otherwise; an expression is true when
//! it is not 0. `~SYM`, `^SYM` and `-SYM` (before a symbol, in unary
//! position) are rspamd's per-member composite policies: drop the weight
//! only, drop the symbol only, leave both.

/// What happens to a member symbol when a composite fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Remove the symbol and its weight (rspamd's default).
    RemoveAll,
    /// Keep the symbol, drop its weight (`~`).
    RemoveWeight,
    /// Drop the symbol, keep its weight in the score (`^`).
    RemoveSymbol,
    /// Keep both (`-`; SpamAssassin metas).
    Leave,
}

impl Policy {
    pub fn from_name(name: &str) -> Option<Policy> {
        Some(match name {
            "remove_all" => Policy::RemoveAll,
            "remove_weight" => Policy::RemoveWeight,
            "remove_symbol" => Policy::RemoveSymbol,
            "leave" => Policy::Leave,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
    Add,
    Sub,
    Mul,
    Div,
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    /// A symbol and the member policy written before it, if any.
    Sym(String, Option<Policy>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
}

impl Expr {
    /// Evaluates with `value(symbol)` giving each symbol's value.
    pub fn eval(&self, value: &dyn Fn(&str) -> f64) -> f64 {
        match self {
            Expr::Num(n) => *n,
            Expr::Sym(name, _) => value(name),
            Expr::Not(e) => not(e.eval(value)),
            Expr::Neg(e) => -e.eval(value),
            Expr::Bin(op, l, r) => binary(*op, l.eval(value), || r.eval(value)),
        }
    }

    /// The same expression with each symbol replaced by the slot
    /// `slot(name)` gives it: evaluated over a slice of values, without
    /// hashing a name (a SpamAssassin ruleset has hundreds of metas).
    pub fn slotted(&self, slot: &mut impl FnMut(&str) -> u32) -> Slotted {
        match self {
            Expr::Num(n) => Slotted::Num(*n),
            Expr::Sym(name, _) => Slotted::Slot(slot(name)),
            Expr::Not(e) => Slotted::Not(Box::new(e.slotted(slot))),
            Expr::Neg(e) => Slotted::Neg(Box::new(e.slotted(slot))),
            Expr::Bin(op, l, r) => {
                Slotted::Bin(*op, Box::new(l.slotted(slot)), Box::new(r.slotted(slot)))
            }
        }
    }

    /// Every symbol named, in order, with whether it is under a negation.
    pub fn symbols(&self) -> Vec<(&str, Option<Policy>, bool)> {
        let mut out = Vec::new();
        self.walk(false, &mut out);
        out
    }

    fn walk<'a>(&'a self, negated: bool, out: &mut Vec<(&'a str, Option<Policy>, bool)>) {
        match self {
            Expr::Num(_) => {}
            Expr::Sym(name, policy) => out.push((name, *policy, negated)),
            Expr::Not(e) => e.walk(!negated, out),
            Expr::Neg(e) => e.walk(negated, out),
            Expr::Bin(_, l, r) => {
                l.walk(negated, out);
                r.walk(negated, out);
            }
        }
    }
}

/// An [`Expr`] over slots ([`Expr::slotted`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Slotted {
    Num(f64),
    Slot(u32),
    Not(Box<Slotted>),
    Neg(Box<Slotted>),
    Bin(BinOp, Box<Slotted>, Box<Slotted>),
}

impl Slotted {
    /// Appends every slot the expression reads to `out`.
    pub fn slots(&self, out: &mut Vec<u32>) {
        match self {
            Slotted::Num(_) => {}
            Slotted::Slot(slot) => out.push(*slot),
            Slotted::Not(e) | Slotted::Neg(e) => e.slots(out),
            Slotted::Bin(_, l, r) => {
                l.slots(out);
                r.slots(out);
            }
        }
    }

    /// Evaluates with `values[slot]` as each symbol's value (0 past the end).
    pub fn eval(&self, values: &[f64]) -> f64 {
        match self {
            Slotted::Num(n) => *n,
            Slotted::Slot(slot) => values.get(*slot as usize).copied().unwrap_or(0.0),
            Slotted::Not(e) => not(e.eval(values)),
            Slotted::Neg(e) => -e.eval(values),
            Slotted::Bin(op, l, r) => binary(*op, l.eval(values), || r.eval(values)),
        }
    }
}

fn not(value: f64) -> f64 {
    f64::from(u8::from(value == 0.0))
}

/// `a op b`, reading `b` only when `a` does not decide it: short-circuit
/// as Perl does, which also keeps a meta's cost small.
fn binary(op: BinOp, a: f64, b: impl FnOnce() -> f64) -> f64 {
    match op {
        BinOp::Or if a != 0.0 => return 1.0,
        BinOp::And if a == 0.0 => return 0.0,
        _ => {}
    }
    let b = b();
    let truth = |t: bool| f64::from(u8::from(t));
    match op {
        BinOp::Or | BinOp::And => truth(b != 0.0),
        BinOp::Gt => truth(a > b),
        BinOp::Ge => truth(a >= b),
        BinOp::Lt => truth(a < b),
        BinOp::Le => truth(a <= b),
        BinOp::Eq => truth(a == b),
        BinOp::Ne => truth(a != b),
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => {
            if b == 0.0 {
                0.0
            } else {
                a / b
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Num(f64),
    Ident(String),
    Op(&'static str),
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<Token>, ExprError> {
    const OPS: [&str; 17] = [
        "||", "&&", ">=", "<=", "==", "!=", "|", "&", ">", "<", "!", "+", "-", "*", "/", "~", "^",
    ];
    let mut tokens = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    'outer: while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'(' {
            tokens.push(Token::Open);
            i += 1;
            continue;
        }
        if c == b')' {
            tokens.push(Token::Close);
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            let number = &text[start..i];
            tokens.push(Token::Num(
                number
                    .parse()
                    .map_err(|_| format!("bad number `{number}`"))?,
            ));
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &text[start..i];
            match word {
                "AND" | "and" => tokens.push(Token::Op("&&")),
                "OR" | "or" => tokens.push(Token::Op("||")),
                "NOT" | "not" => tokens.push(Token::Op("!")),
                _ => tokens.push(Token::Ident(word.to_owned())),
            }
            continue;
        }
        for op in OPS {
            if text[i..].starts_with(op) {
                tokens.push(Token::Op(op));
                i += op.len();
                continue 'outer;
            }
        }
        let rest: String = text[i..].chars().take(12).collect();
        return Err(format!("unexpected `{rest}`").into());
    }
    Ok(tokens)
}

/// Parses an expression; the error says what was wrong where.
/// Why a meta expression does not parse, in words for the rule's author.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExprError(pub String);

impl From<String> for ExprError {
    fn from(message: String) -> ExprError {
        ExprError(message)
    }
}

impl From<&str> for ExprError {
    fn from(message: &str) -> ExprError {
        ExprError(message.to_owned())
    }
}

pub fn parse(text: &str) -> Result<Expr, ExprError> {
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Err("empty expression".into());
    }
    let mut parser = Parser { tokens, at: 0 };
    let expr = parser.or()?;
    if parser.at < parser.tokens.len() {
        return Err(format!(
            "unexpected {} after a complete expression",
            describe(parser.tokens.get(parser.at))
        )
        .into());
    }
    Ok(expr)
}

fn describe(token: Option<&Token>) -> String {
    match token {
        None => "end of expression".into(),
        Some(Token::Num(n)) => format!("number {n}"),
        Some(Token::Ident(s)) => format!("`{s}`"),
        Some(Token::Op(op)) => format!("`{op}`"),
        Some(Token::Open) => "`(`".into(),
        Some(Token::Close) => "`)`".into(),
    }
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek_op(&self) -> Option<&'static str> {
        match self.tokens.get(self.at) {
            Some(Token::Op(op)) => Some(op),
            _ => None,
        }
    }

    fn binary(
        &mut self,
        ops: &[(&str, BinOp)],
        next: fn(&mut Parser) -> Result<Expr, ExprError>,
        once: bool,
    ) -> Result<Expr, ExprError> {
        let mut left = next(self)?;
        while let Some(op) = self.peek_op() {
            let Some((_, bin)) = ops.iter().find(|(o, _)| *o == op) else {
                break;
            };
            self.at += 1;
            let right = next(self)?;
            left = Expr::Bin(*bin, Box::new(left), Box::new(right));
            if once {
                break;
            }
        }
        Ok(left)
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        self.binary(&[("||", BinOp::Or), ("|", BinOp::Or)], Parser::and, false)
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        self.binary(&[("&&", BinOp::And), ("&", BinOp::And)], Parser::cmp, false)
    }

    fn cmp(&mut self) -> Result<Expr, ExprError> {
        self.binary(
            &[
                (">=", BinOp::Ge),
                ("<=", BinOp::Le),
                (">", BinOp::Gt),
                ("<", BinOp::Lt),
                ("==", BinOp::Eq),
                ("!=", BinOp::Ne),
            ],
            Parser::sum,
            true,
        )
    }

    fn sum(&mut self) -> Result<Expr, ExprError> {
        self.binary(&[("+", BinOp::Add), ("-", BinOp::Sub)], Parser::prod, false)
    }

    fn prod(&mut self) -> Result<Expr, ExprError> {
        self.binary(
            &[("*", BinOp::Mul), ("/", BinOp::Div)],
            Parser::unary,
            false,
        )
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        match self.peek_op() {
            Some("!") => {
                self.at += 1;
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Some(prefix @ ("~" | "^" | "-")) => {
                self.at += 1;
                if let Some(Token::Ident(name)) = self.tokens.get(self.at) {
                    let name = name.clone();
                    self.at += 1;
                    let policy = match prefix {
                        "~" => Policy::RemoveWeight,
                        "^" => Policy::RemoveSymbol,
                        _ => Policy::Leave,
                    };
                    return Ok(Expr::Sym(name, Some(policy)));
                }
                if prefix == "-" {
                    return Ok(Expr::Neg(Box::new(self.unary()?)));
                }
                Err(format!("`{prefix}` must come right before a symbol").into())
            }
            _ => self.atom(),
        }
    }

    fn atom(&mut self) -> Result<Expr, ExprError> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        match token {
            Some(Token::Num(n)) => Ok(Expr::Num(n)),
            Some(Token::Ident(name)) => Ok(Expr::Sym(name, None)),
            Some(Token::Open) => {
                let inner = self.or()?;
                match self.tokens.get(self.at) {
                    Some(Token::Close) => {
                        self.at += 1;
                        Ok(inner)
                    }
                    other => Err(format!("expected `)`, found {}", describe(other)).into()),
                }
            }
            other => Err(format!(
                "expected a symbol, number or `(`, found {}",
                describe(other.as_ref())
            )
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str, on: &[&str]) -> f64 {
        parse(text)
            .unwrap()
            .eval(&|s| f64::from(u8::from(on.contains(&s))))
    }

    #[test]
    fn slotted_expressions_evaluate_as_named_ones() {
        let texts = [
            "A && !B",
            "(A || B) && C",
            "A + B + C >= 2",
            "(A - B) * 2 == 2",
            "A / B",
        ];
        let names = ["A", "B", "C"];
        for text in texts {
            let expr = parse(text).unwrap();
            let slotted =
                expr.slotted(&mut |name| names.iter().position(|n| *n == name).unwrap_or(9) as u32);
            for bits in 0..8u8 {
                let values: Vec<f64> = (0..3).map(|i| f64::from((bits >> i) & 1)).collect();
                let by_name = expr.eval(&|name| {
                    names
                        .iter()
                        .position(|n| *n == name)
                        .map_or(0.0, |i| values[i])
                });
                assert_eq!(slotted.eval(&values), by_name, "{text} with {bits:03b}");
            }
        }
    }

    #[test]
    fn boolean_and_counting() {
        assert_eq!(eval("A && !B", &["A"]), 1.0);
        assert_eq!(eval("A && !B", &["A", "B"]), 0.0);
        assert_eq!(eval("(A || B) && C", &["B", "C"]), 1.0);
        assert_eq!(eval("A + B + C >= 2", &["A", "C"]), 1.0);
        assert_eq!(eval("A + B + C > 2", &["A", "C"]), 0.0);
        assert_eq!(eval("A & B | C", &["C"]), 1.0);
        assert_eq!(eval("A AND NOT B", &["A"]), 1.0);
        assert_eq!(eval("(A - B) * 2 == 2", &["A"]), 1.0);
    }

    #[test]
    fn policies_prefix_symbols() {
        let e = parse("~A & ^B & -C & D - E").unwrap();
        let symbols = e.symbols();
        assert_eq!(symbols[0], ("A", Some(Policy::RemoveWeight), false));
        assert_eq!(symbols[1], ("B", Some(Policy::RemoveSymbol), false));
        assert_eq!(symbols[2], ("C", Some(Policy::Leave), false));
        assert_eq!(symbols[3], ("D", None, false));
        assert_eq!(symbols[4], ("E", None, false));
        assert!(parse("!A").unwrap().symbols()[0].2);
    }

    #[test]
    fn errors_say_what() {
        assert!(parse("A &&").unwrap_err().0.contains("end of expression"));
        assert!(parse("(A").unwrap_err().0.contains("expected `)`"));
        assert!(parse("A $ B").unwrap_err().0.contains("unexpected"));
        assert!(parse("").is_err());
    }
}
