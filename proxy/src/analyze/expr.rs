//! Expressions: what each one evaluates to, as far as sealing is concerned, and what it may
//! do with sealed values.
//!
//! [`Planner::value`] walks an expression and returns a [`Val`]: a bare sealed column, a
//! literal or parameter, `NULL`, a whole row, or anything else. Parents decide what a sealed
//! operand may undergo:
//!
//! - `=`, `<>`, `IN`, `NOT IN`, `IS [NOT] DISTINCT FROM` against a literal or parameter: a
//!   [`Purpose::Match`] seal site (deterministic and tokenized modes, pseudonyms); against a
//!   column of the same domain and mode: a [`super::plan::ColumnMatch`]; against anything
//!   else: refused.
//! - `IS [NOT] NULL`: always fine.
//! - `count(col)`, and `count(DISTINCT col)` on equality modes: fine.
//! - Everything else — ranges, `BETWEEN`, `LIKE`/`ILIKE`/`SIMILAR TO`/`~`, arithmetic, `||`,
//!   functions and aggregates, casts (even ones that look like no-ops: the value is
//!   ciphertext), `COLLATE`, `CASE` over sealed values, row constructors and arrays holding
//!   them, `= ANY (array)` — is refused naming the column and its mode.
//!
//! Calls of the functions listed in [`super::functions`] (SQL given as text, whole relations
//! named by an argument) are refused wherever they stand.
//!
//! Expression kinds the walker does not know are rendered and scanned: if the text mentions a
//! sealed table or column name, the statement is refused as unanalysable.

use pgseal_policies::ColumnId;
use sqlparser::ast::{
    BinaryOperator, DuplicateTreatment, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentClause, FunctionArguments, InTarget, Query, UnaryOperator, Value,
    WindowFrameBound, WindowSpec, WindowType,
};

use super::names::{fold, name_parts};
use super::plan::{MatchContext, MatchOp, MatchShape, Purpose};
use super::planner::Planner;
use super::scope::{self, Resolved};

/// What an expression evaluates to, for sealing.
#[derive(Clone, Debug)]
pub(crate) enum Val<'a> {
    /// A bare reference to a sealed column (possibly parenthesized), or a scalar subquery
    /// returning one. Several ids when it cannot be told which.
    Sealed {
        /// Candidate columns.
        ids: Vec<ColumnId>,
        /// The expression (for its extent).
        expr: &'a Expr,
    },
    /// A whole-row value of a relation with these sealed columns.
    Row(Vec<ColumnId>),
    /// A literal or `$n`, possibly under casts, parentheses, a typed-string prefix or a minus.
    Value(&'a Expr),
    /// `NULL` (possibly cast).
    Null,
    /// Anything else: unsealed, or computed.
    Other,
}

impl<'a> Planner<'a> {
    /// Walks an expression used in a boolean position (`WHERE`, `ON`, `HAVING`…).
    pub fn condition(&mut self, expr: &'a Expr, what: &str) {
        let val = self.value(expr);
        self.operand(&val, what);
    }

    /// Refuses a sealed operand of an operation that cannot work on sealed values.
    pub fn operand(&mut self, val: &Val<'a>, what: &str) {
        match val {
            Val::Sealed { ids, .. } => {
                if let Some(&id) = ids.first() {
                    self.refuse_op(id, what);
                }
            }
            Val::Row(ids) => {
                if let Some(&id) = ids.first() {
                    let reason = format!(
                        "{what} on a whole row holding sealed column {}",
                        self.names.describe(id)
                    );
                    self.refuse(Some(id), super::plan::RefusalKind::Unsupported, reason);
                }
            }
            Val::Value(_) | Val::Null | Val::Other => {}
        }
    }

    /// Walks an expression whose value is an operand of `what`, refusing sealed values.
    pub fn operand_expr(&mut self, expr: &'a Expr, what: &str) {
        let val = self.value(expr);
        self.operand(&val, what);
    }

    /// Walks an expression and says what it evaluates to.
    pub fn value(&mut self, expr: &'a Expr) -> Val<'a> {
        match expr {
            Expr::Identifier(ident) => self.column_ref(&[fold(ident)], expr),
            Expr::CompoundIdentifier(idents) => {
                let parts: Vec<String> = idents.iter().map(fold).collect();
                self.column_ref(&parts, expr)
            }
            Expr::Value(v) => match v.value {
                Value::Null => Val::Null,
                _ => Val::Value(expr),
            },
            Expr::TypedString(_) => Val::Value(expr),
            Expr::Nested(inner) => match self.value(inner) {
                Val::Sealed { ids, .. } => Val::Sealed { ids, expr },
                Val::Value(_) => Val::Value(expr),
                other => other,
            },
            Expr::Cast {
                expr: inner,
                data_type,
                ..
            } => match self.value(inner) {
                Val::Value(_) => Val::Value(expr),
                Val::Null => Val::Null,
                other => {
                    self.operand(&other, &format!("cast to {data_type}"));
                    Val::Other
                }
            },
            Expr::UnaryOp { op, expr: inner } => self.unary(expr, op, inner),
            Expr::BinaryOp { left, op, right } => self.binary(expr, left, op, right),
            Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
                // Stored NULL is NULL in every mode.
                self.value(inner);
                Val::Other
            }
            Expr::IsTrue(inner)
            | Expr::IsNotTrue(inner)
            | Expr::IsFalse(inner)
            | Expr::IsNotFalse(inner)
            | Expr::IsUnknown(inner)
            | Expr::IsNotUnknown(inner) => {
                self.operand_expr(inner, "IS TRUE/FALSE/UNKNOWN");
                Val::Other
            }
            Expr::IsDistinctFrom(left, right) => {
                self.equality(expr, left, right, MatchOp::IsDistinctFrom);
                Val::Other
            }
            Expr::IsNotDistinctFrom(left, right) => {
                self.equality(expr, left, right, MatchOp::IsNotDistinctFrom);
                Val::Other
            }
            Expr::In {
                expr: left,
                target,
                negated,
                ..
            } => {
                self.in_target(left, target, *negated);
                Val::Other
            }
            Expr::Between {
                expr: inner,
                low,
                high,
                ..
            } => {
                for e in [inner, low, high] {
                    self.operand_expr(e, "BETWEEN");
                }
                Val::Other
            }
            Expr::Like {
                expr: inner,
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                expr: inner,
                pattern,
                escape_char,
                ..
            }
            | Expr::SimilarTo {
                expr: inner,
                pattern,
                escape_char,
                ..
            } => {
                let what = match expr {
                    Expr::ILike { .. } => "ILIKE",
                    Expr::SimilarTo { .. } => "SIMILAR TO",
                    _ => "LIKE",
                };
                self.operand_expr(inner, what);
                self.operand_expr(pattern, what);
                if let Some(escape) = escape_char {
                    self.operand_expr(escape, what);
                }
                Val::Other
            }
            Expr::RLike {
                expr: inner,
                pattern,
                ..
            } => {
                self.operand_expr(inner, "regular expression match");
                self.operand_expr(pattern, "regular expression match");
                Val::Other
            }
            Expr::AnyOp {
                left,
                compare_op,
                right,
                ..
            }
            | Expr::AllOp {
                left,
                compare_op,
                right,
            } => {
                let what = format!("{compare_op} ANY/ALL (array)");
                self.operand_expr(left, &what);
                self.operand_expr(right, &what);
                Val::Other
            }
            Expr::Function(function) => self.function(function),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                if let Some(operand) = operand {
                    self.operand_expr(operand, "CASE");
                }
                for when in conditions {
                    if operand.is_some() {
                        self.operand_expr(&when.condition, "CASE WHEN");
                    } else {
                        self.condition(&when.condition, "CASE WHEN condition");
                    }
                    self.operand_expr(&when.result, "CASE result");
                }
                if let Some(else_result) = else_result {
                    self.operand_expr(else_result, "CASE result");
                }
                Val::Other
            }
            Expr::Exists { subquery, .. } => {
                self.subquery(subquery);
                Val::Other
            }
            Expr::Subquery(query) => {
                let outputs = self.subquery(query);
                match outputs.positional().as_deref() {
                    Some([col]) if !col.sealed.is_empty() => Val::Sealed {
                        ids: col.sealed.clone(),
                        expr,
                    },
                    Some([col]) if !col.row.is_empty() => Val::Row(col.row.clone()),
                    Some(_) => Val::Other,
                    None => match outputs.all_sealed() {
                        ids if ids.is_empty() => Val::Other,
                        ids => Val::Sealed { ids, expr },
                    },
                }
            }
            Expr::Tuple(items) => {
                for item in items {
                    self.operand_expr(item, "row constructor");
                }
                Val::Other
            }
            Expr::Array(array) => {
                for item in &array.elem {
                    self.operand_expr(item, "ARRAY[…]");
                }
                Val::Other
            }
            Expr::Interval(interval) => {
                self.operand_expr(&interval.value, "INTERVAL");
                Val::Other
            }
            Expr::Collate { expr: inner, .. } => {
                self.operand_expr(inner, "COLLATE");
                Val::Other
            }
            Expr::AtTimeZone {
                timestamp,
                time_zone,
            } => {
                self.operand_expr(timestamp, "AT TIME ZONE");
                self.operand_expr(time_zone, "AT TIME ZONE");
                Val::Other
            }
            Expr::Extract { expr: inner, .. } => {
                self.operand_expr(inner, "EXTRACT");
                Val::Other
            }
            Expr::Ceil { expr: inner, .. } | Expr::Floor { expr: inner, .. } => {
                self.operand_expr(inner, "CEIL/FLOOR");
                Val::Other
            }
            Expr::Position { expr: inner, r#in } => {
                self.operand_expr(inner, "POSITION");
                self.operand_expr(r#in, "POSITION");
                Val::Other
            }
            Expr::Substring {
                expr: inner,
                substring_from,
                substring_for,
                ..
            } => {
                self.operand_expr(inner, "SUBSTRING");
                for e in [substring_from, substring_for].into_iter().flatten() {
                    self.operand_expr(e, "SUBSTRING");
                }
                Val::Other
            }
            Expr::Trim {
                expr: inner,
                trim_what,
                trim_characters,
                ..
            } => {
                self.operand_expr(inner, "TRIM");
                if let Some(what) = trim_what {
                    self.operand_expr(what, "TRIM");
                }
                for e in trim_characters.iter().flatten() {
                    self.operand_expr(e, "TRIM");
                }
                Val::Other
            }
            Expr::Overlay {
                expr: inner,
                overlay_what,
                overlay_from,
                overlay_for,
            } => {
                for e in [inner, overlay_what, overlay_from] {
                    self.operand_expr(e, "OVERLAY");
                }
                if let Some(e) = overlay_for {
                    self.operand_expr(e, "OVERLAY");
                }
                Val::Other
            }
            Expr::IsNormalized { expr: inner, .. } => {
                self.operand_expr(inner, "IS NORMALIZED");
                Val::Other
            }
            Expr::QualifiedWildcard(name, _) => {
                let ids = self.relation_star(name);
                if ids.is_empty() {
                    Val::Other
                } else {
                    Val::Row(ids)
                }
            }
            Expr::Wildcard(_) => Val::Other,
            _ => {
                self.opaque("this expression", &expr.to_string());
                Val::Other
            }
        }
    }

    /// The sealed columns of `relation.*` (recorded as read); empty when it carries none.
    pub fn relation_star(&mut self, name: &sqlparser::ast::ObjectName) -> Vec<ColumnId> {
        let Some(parts) = name_parts(name) else {
            return Vec::new();
        };
        let Some((qualifier, rest)) = parts.split_last() else {
            return Vec::new();
        };
        let relation =
            scope::find_relation(&self.frames, qualifier, rest.last().map(|s| s.as_str()));
        let ids = relation.map(|r| r.sealed(self.names)).unwrap_or_default();
        self.read(&ids);
        ids
    }

    /// A column reference: resolved, and recorded as read when sealed.
    fn column_ref(&mut self, parts: &[String], expr: &'a Expr) -> Val<'a> {
        match scope::resolve(&self.frames, self.names, parts) {
            Resolved::Plain => Val::Other,
            Resolved::Sealed(ids) => {
                self.read(&ids);
                Val::Sealed { ids, expr }
            }
            Resolved::Row(ids) => {
                self.read(&ids);
                Val::Row(ids)
            }
        }
    }

    /// Analyses a subquery with the current frames as its outer scope.
    pub fn subquery(&mut self, query: &'a Query) -> super::scope::Outputs<'a> {
        self.query(query)
    }

    fn unary(&mut self, expr: &'a Expr, op: &UnaryOperator, inner: &'a Expr) -> Val<'a> {
        match op {
            UnaryOperator::Minus if matches!(inner, Expr::Value(v) if matches!(v.value, Value::Number(..))) => {
                Val::Value(expr)
            }
            UnaryOperator::Not => {
                self.condition(inner, "NOT");
                Val::Other
            }
            _ => {
                self.operand_expr(inner, &format!("operator {op}"));
                Val::Other
            }
        }
    }

    fn binary(
        &mut self,
        expr: &'a Expr,
        left: &'a Expr,
        op: &BinaryOperator,
        right: &'a Expr,
    ) -> Val<'a> {
        let what = match op {
            BinaryOperator::Eq => {
                self.equality(expr, left, right, MatchOp::Eq);
                return Val::Other;
            }
            BinaryOperator::NotEq => {
                self.equality(expr, left, right, MatchOp::NotEq);
                return Val::Other;
            }
            BinaryOperator::And | BinaryOperator::Or | BinaryOperator::Xor => {
                format!("{op} condition")
            }
            BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq
            | BinaryOperator::Spaceship => format!("range comparison ({op})"),
            BinaryOperator::PGRegexMatch
            | BinaryOperator::PGRegexIMatch
            | BinaryOperator::PGRegexNotMatch
            | BinaryOperator::PGRegexNotIMatch => format!("regular expression match ({op})"),
            BinaryOperator::PGLikeMatch
            | BinaryOperator::PGILikeMatch
            | BinaryOperator::PGNotLikeMatch
            | BinaryOperator::PGNotILikeMatch => format!("LIKE ({op})"),
            _ => format!("operator {op}"),
        };
        self.operand_expr(left, &what);
        self.operand_expr(right, &what);
        Val::Other
    }

    /// `left OP right` for an equality-like operator.
    fn equality(&mut self, whole: &'a Expr, left: &'a Expr, right: &'a Expr, op: MatchOp) {
        let l = self.value(left);
        let r = self.value(right);
        let what = match op {
            MatchOp::Eq => "equality (=)",
            MatchOp::NotEq => "inequality (<>)",
            MatchOp::IsDistinctFrom => "IS DISTINCT FROM",
            MatchOp::IsNotDistinctFrom => "IS NOT DISTINCT FROM",
        };
        match (&l, &r) {
            (Val::Sealed { ids: a, .. }, Val::Sealed { ids: b, .. }) => {
                let span = self.rough_range(whole);
                self.columns_equal(a, b, what, span);
            }
            (Val::Sealed { ids, expr: column }, Val::Value(value)) => {
                let shape = MatchShape::Compare {
                    op,
                    column_first: true,
                };
                self.match_site(ids, column, value, shape, what);
            }
            (Val::Value(value), Val::Sealed { ids, expr: column }) => {
                let shape = MatchShape::Compare {
                    op,
                    column_first: false,
                };
                self.match_site(ids, column, value, shape, what);
            }
            (Val::Sealed { .. }, Val::Null) | (Val::Null, Val::Sealed { .. }) => {}
            (Val::Sealed { ids, .. }, _) | (_, Val::Sealed { ids, .. }) => {
                if let Some(&id) = ids.first() {
                    self.refuse_op(
                        id,
                        &format!(
                            "{what} with a value pgseal cannot seal (only literals, parameters \
                             and columns of the same domain can be compared)"
                        ),
                    );
                }
            }
            (Val::Row(_), _) => self.operand(&l, what),
            (_, Val::Row(_)) => self.operand(&r, what),
            _ => {}
        }
    }

    /// Two sealed operands compared for equality: fine when every candidate pair shares domain
    /// and an equality mode.
    pub fn columns_equal(
        &mut self,
        a: &[ColumnId],
        b: &[ColumnId],
        what: &str,
        span: std::ops::Range<usize>,
    ) {
        for &x in a {
            for &y in b {
                if !self.names.get(x).mode.supports_equality() {
                    self.refuse_op(x, what);
                } else if !self.names.get(y).mode.supports_equality() {
                    self.refuse_op(y, what);
                } else if !self.names.comparable(x, y) {
                    let reason = format!(
                        "{what} between sealed columns {} and {} of different domains or modes: \
                         their stored values never match",
                        self.names.describe(x),
                        self.names.describe(y)
                    );
                    self.refuse(Some(x), super::plan::RefusalKind::Unsupported, reason);
                }
            }
        }
        if let (Some(&x), Some(&y)) = (a.first(), b.first()) {
            if self.names.comparable(x, y) {
                self.column_match(x, y, span);
            }
        }
    }

    /// A literal or parameter compared with a sealed column: a Match site.
    fn match_site(
        &mut self,
        ids: &[ColumnId],
        column: &'a Expr,
        value: &'a Expr,
        shape: MatchShape,
        what: &str,
    ) {
        let Some(id) = self.single_target(ids) else {
            return;
        };
        if !self.names.get(id).mode.supports_equality() {
            self.refuse_op(id, what);
            return;
        }
        let located = match self.locate(value) {
            Ok(located) => located,
            Err(why) => {
                let reason = format!(
                    "pgseal cannot seal the value compared with sealed column {} ({why}): use a \
                     parameter or a plain literal",
                    self.names.describe(id)
                );
                self.refuse_unanalysable(Some(id), reason);
                return;
            }
        };
        let Some(column_span) = self.extent(column) else {
            let reason = format!(
                "pgseal cannot locate the reference to sealed column {}",
                self.names.describe(id)
            );
            self.refuse_unanalysable(Some(id), reason);
            return;
        };
        let span = match shape {
            MatchShape::InList { .. } => located.extent.clone(),
            MatchShape::Compare { .. } => {
                let start = column_span.start.min(located.extent.start);
                let end = column_span.end.max(located.extent.end);
                start..end
            }
        };
        let context = MatchContext {
            shape,
            span,
            column_span,
        };
        self.site(located, id, Purpose::Match(context));
    }

    /// The one column a possibly ambiguous reference designates for sealing: the first
    /// candidate, when all candidates seal alike; otherwise refused.
    pub fn single_target(&mut self, ids: &[ColumnId]) -> Option<ColumnId> {
        let &first = ids.first()?;
        if let Some(&other) = ids.iter().find(|&&id| !self.names.copyable(first, id)) {
            let reason = format!(
                "ambiguous column reference: pgseal cannot tell whether it is sealed column {} \
                 or {}",
                self.names.describe(first),
                self.names.describe(other)
            );
            self.refuse_unanalysable(Some(first), reason);
            return None;
        }
        Some(first)
    }

    fn in_target(&mut self, left: &'a Expr, target: &'a InTarget, negated: bool) {
        let l = self.value(left);
        let what = if negated { "NOT IN" } else { "IN" };
        match target {
            InTarget::List(items) => {
                for item in items {
                    let r = self.value(item);
                    match (&l, &r) {
                        (Val::Sealed { ids, expr: column }, Val::Value(value)) => {
                            let shape = MatchShape::InList { negated };
                            self.match_site(ids, column, value, shape, what);
                        }
                        (Val::Sealed { .. }, Val::Null) => {}
                        (Val::Sealed { ids: a, .. }, Val::Sealed { ids: b, .. }) => {
                            let span = self.rough_range(item);
                            self.columns_equal(a, b, what, span);
                        }
                        (Val::Sealed { ids, .. }, _) => {
                            if let Some(&id) = ids.first() {
                                self.refuse_op(
                                    id,
                                    &format!("{what} (…) with a value pgseal cannot seal"),
                                );
                            }
                        }
                        (Val::Row(_), _) => self.operand(&l, what),
                        (_, Val::Sealed { .. } | Val::Row(_)) => {
                            self.operand(&r, &format!("{what} (…) list holding a sealed column"))
                        }
                        _ => {}
                    }
                }
                if items.is_empty() {
                    self.operand(&l, what);
                }
            }
            InTarget::Subquery(query) => {
                let outputs = self.subquery(query);
                let right: Vec<ColumnId> = match outputs.positional().as_deref() {
                    Some([col]) => col.sealed.clone(),
                    _ => outputs.all_sealed(),
                };
                match (&l, right.is_empty()) {
                    (Val::Sealed { ids, .. }, false) => {
                        let span = self.rough_range(left);
                        self.columns_equal(ids, &right, what, span);
                    }
                    (Val::Sealed { ids, .. }, true) => {
                        if let Some(&id) = ids.first() {
                            self.refuse_op(
                                id,
                                &format!("{what} (subquery) returning unsealed values"),
                            );
                        }
                    }
                    (Val::Row(_), _) => self.operand(&l, what),
                    (_, false) => {
                        let id = right[0];
                        self.refuse_op(id, &format!("{what} (subquery) comparing unsealed values"));
                    }
                    _ => {}
                }
            }
            InTarget::Unnest(array) => {
                self.operand(&l, "IN UNNEST(…)");
                self.operand_expr(array, "IN UNNEST(…)");
            }
            InTarget::Table { .. } => {
                self.operand(&l, what);
                self.opaque("IN table", &target.to_string());
            }
        }
    }

    fn function(&mut self, function: &'a Function) -> Val<'a> {
        // query_to_xml('select * from patients', …) and the like read what no syntax shows.
        self.refuse_listed_function(&function.name);
        let name = name_parts(&function.name)
            .and_then(|parts| parts.last().cloned())
            .unwrap_or_default();
        let what = format!("function {name}()");
        if folds_rows(&name, &function.args) && self.folds_rows.is_none() {
            self.folds_rows = Some(what.clone());
        }
        match &function.args {
            FunctionArguments::None => {}
            FunctionArguments::Subquery(query) => {
                let outputs = self.subquery(query);
                if let Some(&id) = outputs.all_sealed().first() {
                    self.refuse_op(id, &what);
                }
            }
            FunctionArguments::List(list) => {
                let distinct =
                    matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
                let is_count = name == "count" && list.args.len() == 1;
                for arg in &list.args {
                    let arg_expr = match arg {
                        FunctionArg::Named { arg, .. }
                        | FunctionArg::ExprNamed { arg, .. }
                        | FunctionArg::Unnamed(arg) => arg,
                    };
                    match arg_expr {
                        FunctionArgExpr::Expr(e) => {
                            let val = self.value(e);
                            match (&val, is_count) {
                                (Val::Sealed { ids, .. }, true) if distinct => {
                                    for &id in ids {
                                        if !self.names.get(id).mode.supports_equality() {
                                            self.refuse_op(id, "count(DISTINCT …)");
                                        }
                                    }
                                }
                                (Val::Sealed { .. }, true) => {}
                                _ => self.operand(&val, &what),
                            }
                        }
                        FunctionArgExpr::QualifiedWildcard(relation) => {
                            let ids = self.relation_star(relation);
                            if !is_count {
                                self.operand(&Val::Row(ids), &what);
                            }
                        }
                        FunctionArgExpr::Wildcard | FunctionArgExpr::WildcardWithOptions(_) => {}
                    }
                }
                for clause in &list.clauses {
                    match clause {
                        FunctionArgumentClause::OrderBy(order) => {
                            for o in order {
                                self.operand_expr(&o.expr, &format!("ORDER BY in {what}"));
                            }
                        }
                        FunctionArgumentClause::Where(e) => self.condition(e, "FILTER (WHERE …)"),
                        FunctionArgumentClause::Limit(e) => self.operand_expr(e, &what),
                        other => self.opaque("a function argument clause", &other.to_string()),
                    }
                }
            }
        }
        if let FunctionArguments::List(parameters) = &function.parameters {
            for arg in &parameters.args {
                if let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg {
                    self.operand_expr(e, &what);
                }
            }
        }
        for o in &function.within_group {
            self.operand_expr(&o.expr, &format!("WITHIN GROUP (ORDER BY …) of {what}"));
        }
        if let Some(filter) = &function.filter {
            self.condition(filter, "FILTER (WHERE …)");
        }
        if let Some(WindowType::WindowSpec(spec)) = &function.over {
            self.window(spec);
        }
        Val::Other
    }

    /// A window specification: `PARTITION BY` groups (equality modes only), `ORDER BY` is
    /// refused on sealed values.
    pub fn window(&mut self, spec: &'a WindowSpec) {
        for e in &spec.partition_by {
            let val = self.value(e);
            self.group_val(&val, "PARTITION BY");
        }
        for o in &spec.order_by {
            self.operand_expr(&o.expr, "ORDER BY in a window");
        }
        if let Some(frame) = &spec.window_frame {
            for bound in std::iter::once(&frame.start_bound).chain(&frame.end_bound) {
                if let WindowFrameBound::Preceding(Some(e)) | WindowFrameBound::Following(Some(e)) =
                    bound
                {
                    self.operand_expr(e, "window frame");
                }
            }
        }
    }

    /// A grouping key (`GROUP BY`, `DISTINCT`, `PARTITION BY`): fine on equality modes,
    /// refused on randomized columns.
    pub fn group_val(&mut self, val: &Val<'a>, what: &str) {
        match val {
            Val::Sealed { ids, .. } => self.group_ids(&ids.clone(), what),
            Val::Row(_) => self.operand(val, what),
            _ => {}
        }
    }

    /// Refuses grouping on any randomized column among `ids`.
    pub fn group_ids(&mut self, ids: &[ColumnId], what: &str) {
        for &id in ids {
            if !self.names.get(id).mode.supports_equality() {
                self.refuse_op(id, what);
            }
        }
    }
}

/// Whether a function call folds the values of many rows into one value that carries them
/// (an array, a string, a JSON or XML document): the aggregates that collect, in plain or
/// window form, and the `ARRAY(SELECT …)` constructor. Aggregates that compute (`count`,
/// `sum`, `avg`, `min`, `max`…) return statistics, not the rows, and pass.
fn folds_rows(name: &str, args: &FunctionArguments) -> bool {
    const COLLECTORS: &[&str] = &[
        "array_agg",
        "string_agg",
        "json_agg",
        "jsonb_agg",
        "json_agg_strict",
        "jsonb_agg_strict",
        "json_object_agg",
        "jsonb_object_agg",
        "json_object_agg_strict",
        "jsonb_object_agg_strict",
        "json_object_agg_unique",
        "jsonb_object_agg_unique",
        "json_object_agg_unique_strict",
        "jsonb_object_agg_unique_strict",
        "json_arrayagg",
        "json_objectagg",
        "xmlagg",
        "range_agg",
        "multirange_agg",
    ];
    COLLECTORS.contains(&name)
        || (name == "array" && matches!(args, FunctionArguments::Subquery(_)))
}
