//! Queries: `WITH`, set operations, `SELECT` (FROM and joins, projection, `WHERE`,
//! `GROUP BY`, `HAVING`, `DISTINCT`, windows, `ORDER BY`, `LIMIT`), `VALUES` and `TABLE`.
//!
//! Each query level pushes a [`Frame`]; its outputs (with the sealed column each carries) are
//! what derived tables, CTEs, `IN (subquery)`, `INSERT … SELECT` and `COPY (query)` see.
//! Rules on outputs:
//!
//! - `ORDER BY` a sealed column (by expression, output name or ordinal) is refused in every
//!   mode: neither ciphertext nor tokens keep the order of plaintexts.
//! - `GROUP BY`, `DISTINCT`, `DISTINCT ON`, and set operations that remove duplicates
//!   (`UNION`, `INTERSECT`, `EXCEPT`) need equal plaintexts stored equal: refused on randomized
//!   columns, and for set operations when a position mixes columns of different domains or a
//!   sealed column with unsealed values. `UNION ALL` compares nothing.

use sqlparser::ast::{
    Distinct, Expr, GroupByExpr, JoinConstraint, JoinOperator, NamedWindowExpr, OrderBy,
    OrderByKind, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, SetOperator,
    SetQuantifier, TableAlias, TableFactor, TableWithJoins, Value,
};

use super::expr::Val;
use super::names::{DEFAULT_SCHEMA, fold, name_parts, table_ref};
use super::plan::TableRef;
use super::planner::Planner;
use super::scope::{self, Frame, Hit, OutCol, OutItem, Outputs, Relation, Source};

impl<'a> Planner<'a> {
    /// Analyses a query (with the current frames as outer scope) and returns its outputs.
    pub fn query(&mut self, query: &'a Query) -> Outputs<'a> {
        self.frames.push(Frame::default());
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                let name = fold(&cte.alias.name);
                if with.recursive {
                    // A first, discarded pass gives the anchor's outputs, so the recursive
                    // reference carries the sealed columns it will hold.
                    let snapshot = self.snapshot();
                    self.top_frame()
                        .ctes
                        .push((name.clone(), Outputs::default()));
                    let trial = self.query(&cte.query);
                    self.restore(snapshot);
                    self.top_frame().ctes.pop();
                    let trial = trial.renamed(&alias_columns(&cte.alias));
                    self.top_frame().ctes.push((name.clone(), trial));
                    let outputs = self.query(&cte.query).renamed(&alias_columns(&cte.alias));
                    self.top_frame().ctes.pop();
                    self.top_frame().ctes.push((name, outputs));
                } else {
                    let outputs = self.query(&cte.query).renamed(&alias_columns(&cte.alias));
                    self.top_frame().ctes.push((name, outputs));
                }
            }
        }
        let outputs = self.set_expr(&query.body, query.order_by.as_ref());
        if let Some(limit) = &query.limit_clause {
            self.opaque_or_walk_limit(limit);
        }
        if let Some(fetch) = &query.fetch {
            if let Some(quantity) = &fetch.quantity {
                self.operand_expr(quantity, "FETCH");
            }
        }
        if !query.pipe_operators.is_empty() || query.for_clause.is_some() {
            self.opaque("this query clause", &query.to_string());
        }
        self.frames.pop();
        outputs
    }

    fn opaque_or_walk_limit(&mut self, limit: &'a sqlparser::ast::LimitClause) {
        match limit {
            sqlparser::ast::LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            } => {
                if let Some(limit) = limit {
                    self.operand_expr(limit, "LIMIT");
                }
                if let Some(offset) = offset {
                    self.operand_expr(&offset.value, "OFFSET");
                }
                for e in limit_by {
                    self.operand_expr(e, "LIMIT BY");
                }
            }
            sqlparser::ast::LimitClause::OffsetCommaLimit { offset, limit } => {
                self.operand_expr(offset, "OFFSET");
                self.operand_expr(limit, "LIMIT");
            }
        }
    }

    /// The innermost frame (pushed by the caller).
    pub fn top_frame(&mut self) -> &mut Frame<'a> {
        if self.frames.is_empty() {
            self.frames.push(Frame::default());
        }
        let last = self.frames.len() - 1;
        &mut self.frames[last]
    }

    fn set_expr(&mut self, body: &'a SetExpr, order_by: Option<&'a OrderBy>) -> Outputs<'a> {
        let outputs = match body {
            SetExpr::Select(select) => return self.select(select, order_by),
            SetExpr::Query(query) => self.query(query),
            SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                let l = self.set_expr(left, None);
                let r = self.set_expr(right, None);
                let dedup = !matches!(
                    (op, set_quantifier),
                    (
                        SetOperator::Union,
                        SetQuantifier::All | SetQuantifier::AllByName
                    )
                );
                self.merge_set_outputs(l, r, dedup, op)
            }
            SetExpr::Values(values) => {
                let mut cols: Vec<OutCol<'a>> = Vec::new();
                let single = values.rows.len() == 1;
                for row in &values.rows {
                    for (i, e) in row.iter().enumerate() {
                        let val = self.value(e);
                        if cols.len() <= i {
                            cols.push(OutCol::plain(Some(format!("column{}", i + 1))));
                        }
                        match val {
                            Val::Sealed { ids, .. } => cols[i].sealed.extend(ids),
                            Val::Row(ids) => cols[i].row.extend(ids),
                            Val::Value(_) if single => cols[i].expr = Some(e),
                            _ => {}
                        }
                    }
                }
                Outputs {
                    items: cols.into_iter().map(OutItem::Col).collect(),
                }
            }
            SetExpr::Insert(statement)
            | SetExpr::Update(statement)
            | SetExpr::Delete(statement) => self.dml(statement),
            SetExpr::Merge(statement) => {
                self.opaque("MERGE", &statement.to_string());
                Outputs::default()
            }
            SetExpr::Table(table) => match &table.table_name {
                Some(name) => {
                    let t = TableRef {
                        schema: table
                            .schema_name
                            .as_ref()
                            .map(fold)
                            .unwrap_or_else(|| DEFAULT_SCHEMA.to_string()),
                        table: fold(name),
                    };
                    self.table_seen(&t);
                    let sealed = self.names.sealed_columns(&t);
                    let ids: Vec<_> = sealed.iter().map(|(_, id)| *id).collect();
                    self.read(&ids);
                    Outputs {
                        items: vec![OutItem::Star(sealed)],
                    }
                }
                None => Outputs::default(),
            },
        };
        if let Some(order_by) = order_by {
            self.order_by(order_by, &outputs);
        }
        outputs
    }

    fn merge_set_outputs(
        &mut self,
        l: Outputs<'a>,
        r: Outputs<'a>,
        dedup: bool,
        op: &SetOperator,
    ) -> Outputs<'a> {
        let what = format!("{op} (removes duplicates)");
        match (l.positional(), r.positional()) {
            (Some(lc), Some(rc)) if lc.len() == rc.len() => {
                let mut items = Vec::with_capacity(lc.len());
                for (a, b) in lc.into_iter().zip(rc) {
                    if dedup && (!a.sealed.is_empty() || !b.sealed.is_empty()) {
                        self.set_position_check(&a.sealed, &b.sealed, &what);
                    }
                    let mut sealed = a.sealed.clone();
                    sealed.extend(b.sealed.iter().copied());
                    sealed.sort();
                    sealed.dedup();
                    items.push(OutItem::Col(OutCol {
                        name: a.name.clone(),
                        sealed,
                        expr: None,
                        row: [a.row.as_slice(), b.row.as_slice()].concat(),
                    }));
                }
                Outputs { items }
            }
            _ => {
                let mut all = l.all_sealed();
                all.extend(r.all_sealed());
                if dedup {
                    if let Some(&id) = all.first() {
                        self.refuse_unanalysable(
                            Some(id),
                            format!(
                                "{op} over `*`: pgseal cannot tell which values of sealed column \
                                 {} it compares",
                                self.names.describe(id)
                            ),
                        );
                    }
                }
                Outputs {
                    items: vec![OutItem::Star(
                        all.into_iter()
                            .map(|id| (self.names.get(id).column.clone(), id))
                            .collect(),
                    )],
                }
            }
        }
    }

    fn set_position_check(
        &mut self,
        a: &[pgseal_policies::ColumnId],
        b: &[pgseal_policies::ColumnId],
        what: &str,
    ) {
        if a.is_empty() || b.is_empty() {
            let id = a.first().or(b.first()).copied();
            if let Some(id) = id {
                self.refuse_op(id, &format!("{what} comparing with unsealed values"));
            }
            return;
        }
        self.columns_equal(a, b, what, 0..0);
        // columns_equal records a column match; set operations are not joins.
        self.forget_last_match();
    }

    fn select(&mut self, select: &'a Select, order_by: Option<&'a OrderBy>) -> Outputs<'a> {
        let mut evaluation = self.evaluation.take();
        self.frames.push(Frame::default());
        for from in &select.from {
            self.table_with_joins(from);
        }
        if !select.lateral_views.is_empty()
            || !select.connect_by.is_empty()
            || !select.cluster_by.is_empty()
            || !select.distribute_by.is_empty()
            || !select.sort_by.is_empty()
            || select.top.is_some()
        {
            self.opaque("this SELECT clause", &select.to_string());
        }
        let outputs = self.projection(&select.projection);
        if let Some(prewhere) = &select.prewhere {
            self.condition(prewhere, "PREWHERE");
        }
        if let Some(selection) = &select.selection {
            match evaluation.as_mut() {
                Some(builder) => self.evaluated_where(selection, builder),
                None => self.condition(selection, "WHERE condition"),
            }
        }
        match &select.group_by {
            GroupByExpr::Expressions(exprs, _) => {
                for e in exprs {
                    self.group_key(e, &outputs, "GROUP BY");
                }
            }
            GroupByExpr::All(_) => {
                let all = outputs.all_sealed();
                self.group_ids(&all, "GROUP BY ALL");
            }
        }
        if let Some(having) = &select.having {
            self.condition(having, "HAVING condition");
        }
        if let Some(qualify) = &select.qualify {
            self.condition(qualify, "QUALIFY condition");
        }
        match &select.distinct {
            // The statement pgseal evaluates: whether pgseal removes the duplicates itself (on
            // plaintext) or leaves them to the server is decided once the walk is done.
            Some(Distinct::Distinct) if evaluation.is_some() => {
                if let Some(builder) = evaluation.as_mut() {
                    builder.distinct = Some(super::evaluable::DistinctOutputs {
                        positions: outputs.positional().map(|cols| {
                            cols.iter()
                                .map(|c| match c.sealed.as_slice() {
                                    [] => super::evaluable::OutputKind::Plain,
                                    [one] => super::evaluable::OutputKind::Sealed(*one),
                                    _ => super::evaluable::OutputKind::Mixed,
                                })
                                .collect()
                        }),
                        sealed: outputs.all_sealed(),
                    });
                }
            }
            Some(Distinct::Distinct) => {
                let all = outputs.all_sealed();
                self.group_ids(&all, "DISTINCT");
            }
            Some(Distinct::On(exprs)) => {
                for e in exprs {
                    self.group_key(e, &outputs, "DISTINCT ON");
                }
            }
            Some(Distinct::All) | None => {}
        }
        for window in &select.named_window {
            if let NamedWindowExpr::WindowSpec(spec) = &window.1 {
                self.window(spec);
            }
        }
        if select.into.is_some() {
            self.changes_catalog = true;
        }
        if let Some(order_by) = order_by {
            match evaluation.as_mut() {
                Some(builder) => self.evaluated_order_by(order_by, select, &outputs, builder),
                None => self.order_by(order_by, &outputs),
            }
        }
        self.frames.pop();
        self.evaluation = evaluation;
        outputs
    }

    /// A select list (or `RETURNING` list) in the innermost frame.
    pub fn projection(&mut self, items: &'a [SelectItem]) -> Outputs<'a> {
        let mut outputs = Outputs::default();
        for item in items {
            match item {
                SelectItem::UnnamedExpr(e) => {
                    let name = output_name(e);
                    let col = self.output_col(e, name);
                    outputs.items.push(OutItem::Col(col));
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    let col = self.output_col(expr, Some(fold(alias)));
                    outputs.items.push(OutItem::Col(col));
                }
                SelectItem::ExprWithAliases { expr, aliases } => {
                    let col = self.output_col(expr, aliases.first().map(fold));
                    outputs.items.push(OutItem::Col(col));
                }
                SelectItem::Wildcard(_) => {
                    let relations = self
                        .frames
                        .last()
                        .map(|f| f.relations.clone())
                        .unwrap_or_default();
                    for relation in &relations {
                        let ids = relation.sealed(self.names);
                        self.read(&ids);
                        outputs.items.extend(relation.star(self.names));
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => match kind {
                    SelectItemQualifiedWildcardKind::ObjectName(name) => {
                        let star = self.qualified_star(name);
                        outputs.items.extend(star);
                    }
                    SelectItemQualifiedWildcardKind::Expr(e) => {
                        let val = self.value(e);
                        match val {
                            Val::Sealed { ids, .. } => {
                                if let Some(&id) = ids.first() {
                                    self.refuse_op(id, "field selection (.*)");
                                }
                            }
                            Val::Row(ids) => outputs.items.push(OutItem::Star(
                                ids.iter()
                                    .map(|&id| (self.names.get(id).column.clone(), id))
                                    .collect(),
                            )),
                            _ => outputs.items.push(OutItem::Star(Vec::new())),
                        }
                    }
                },
            }
        }
        outputs
    }

    fn qualified_star(&mut self, name: &sqlparser::ast::ObjectName) -> Vec<OutItem<'a>> {
        let Some(parts) = name_parts(name) else {
            return vec![OutItem::Star(Vec::new())];
        };
        let Some((qualifier, rest)) = parts.split_last() else {
            return vec![OutItem::Star(Vec::new())];
        };
        let schema = rest.last().map(|s| s.as_str());
        match scope::find_relation(&self.frames, qualifier, schema).cloned() {
            Some(relation) => {
                let ids = relation.sealed(self.names);
                self.read(&ids);
                relation.star(self.names)
            }
            None => vec![OutItem::Star(Vec::new())],
        }
    }

    fn output_col(&mut self, expr: &'a Expr, name: Option<String>) -> OutCol<'a> {
        let val = self.value(expr);
        let mut col = OutCol::plain(name);
        match val {
            Val::Sealed { ids, .. } => col.sealed = ids,
            Val::Row(ids) => col.row = ids,
            Val::Value(_) => col.expr = Some(expr),
            Val::Null | Val::Other => {}
        }
        col
    }

    fn group_key(&mut self, expr: &'a Expr, outputs: &Outputs<'a>, what: &str) {
        match expr {
            Expr::Value(v) => {
                if let Value::Number(n, _) = &v.value {
                    self.ordinal_key(n, outputs, what, false);
                }
            }
            Expr::Identifier(ident) => {
                let val = self.value(expr);
                if matches!(val, Val::Other) {
                    // An output name (PostgreSQL tries input columns first for GROUP BY).
                    if let Hit::Sealed(ids) = outputs.lookup(&fold(ident)) {
                        self.group_ids(&ids, what);
                    }
                } else {
                    self.group_val(&val, what);
                }
            }
            Expr::GroupingSets(sets) | Expr::Cube(sets) | Expr::Rollup(sets) => {
                for e in sets.iter().flatten() {
                    self.group_key(e, outputs, what);
                }
            }
            Expr::Tuple(items) => {
                for e in items {
                    self.group_key(e, outputs, what);
                }
            }
            _ => {
                let val = self.value(expr);
                self.group_val(&val, what);
            }
        }
    }

    /// `ORDER BY 2`, `GROUP BY 2`: the output at that position.
    fn ordinal_key(&mut self, number: &str, outputs: &Outputs<'a>, what: &str, order: bool) {
        let Ok(n) = number.parse::<usize>() else {
            return;
        };
        let ids = match outputs.positional() {
            Some(cols) => n
                .checked_sub(1)
                .and_then(|i| cols.get(i))
                .map(|c| c.sealed.clone())
                .unwrap_or_default(),
            // Positions unknown (`*` over a table): any sealed output may be the one.
            None => outputs.all_sealed(),
        };
        if order {
            if let Some(&id) = ids.first() {
                self.refuse_op(id, what);
            }
        } else {
            self.group_ids(&ids, what);
        }
    }

    pub(crate) fn order_by(&mut self, order_by: &'a OrderBy, outputs: &Outputs<'a>) {
        match &order_by.kind {
            OrderByKind::All(_) => {
                if let Some(&id) = outputs.all_sealed().first() {
                    self.refuse_op(id, "ORDER BY ALL");
                }
            }
            OrderByKind::Expressions(list) => {
                for item in list {
                    match &item.expr {
                        Expr::Value(v) if matches!(v.value, Value::Number(..)) => {
                            if let Value::Number(n, _) = &v.value {
                                self.ordinal_key(n, outputs, "ORDER BY", true);
                            }
                        }
                        Expr::Identifier(ident) => {
                            if let Hit::Sealed(ids) = outputs.lookup(&fold(ident)) {
                                if let Some(&id) = ids.first() {
                                    self.refuse_op(id, "ORDER BY");
                                }
                            }
                            self.operand_expr(&item.expr, "ORDER BY");
                        }
                        e => self.operand_expr(e, "ORDER BY"),
                    }
                }
            }
        }
    }

    /// A FROM item with its joins, added to the innermost frame.
    pub fn table_with_joins(&mut self, twj: &'a TableWithJoins) {
        self.table_factor(&twj.relation);
        for join in &twj.joins {
            let before = self.frames.last().map(|f| f.relations.len()).unwrap_or(0);
            self.table_factor(&join.relation);
            let constraint = match &join.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::Left(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::Right(c)
                | JoinOperator::RightOuter(c)
                | JoinOperator::FullOuter(c)
                | JoinOperator::CrossJoin(c)
                | JoinOperator::Semi(c)
                | JoinOperator::LeftSemi(c)
                | JoinOperator::RightSemi(c)
                | JoinOperator::Anti(c)
                | JoinOperator::LeftAnti(c)
                | JoinOperator::RightAnti(c)
                | JoinOperator::StraightJoin(c) => Some(c),
                JoinOperator::AsOf {
                    match_condition,
                    constraint,
                } => {
                    self.condition(match_condition, "JOIN MATCH_CONDITION");
                    Some(constraint)
                }
                JoinOperator::CrossApply
                | JoinOperator::OuterApply
                | JoinOperator::ArrayJoin
                | JoinOperator::LeftArrayJoin
                | JoinOperator::InnerArrayJoin => None,
            };
            match constraint {
                Some(JoinConstraint::On(e)) => self.condition(e, "JOIN … ON condition"),
                Some(JoinConstraint::Using(columns) | JoinConstraint::UsingAlias(columns, _)) => {
                    for column in columns {
                        self.join_using(column, before);
                    }
                }
                Some(JoinConstraint::Natural) => self.natural_join(),
                Some(JoinConstraint::None) | None => {}
            }
        }
    }

    fn join_using(&mut self, column: &'a sqlparser::ast::ObjectName, before: usize) {
        let Some(name) = name_parts(column).and_then(|p| p.last().cloned()) else {
            return;
        };
        let relations = self
            .frames
            .last()
            .map(|f| f.relations.clone())
            .unwrap_or_default();
        let side = |rels: &[Relation<'a>]| -> Vec<pgseal_policies::ColumnId> {
            let mut ids = Vec::new();
            for r in rels {
                if let Hit::Sealed(found) = r.lookup(self.names, &name) {
                    ids.extend(found);
                }
            }
            ids
        };
        let left = side(&relations[..before.min(relations.len())]);
        let right = side(&relations[before.min(relations.len())..]);
        self.read(&left);
        self.read(&right);
        let span = self
            .src
            .range(sqlparser::ast::Spanned::span(column))
            .unwrap_or(0..0);
        match (left.is_empty(), right.is_empty()) {
            (false, false) => self.columns_equal(&left, &right, "JOIN … USING", span),
            (true, false) | (false, true) => {
                let id = left.first().or(right.first()).copied();
                if let Some(id) = id {
                    self.refuse_op(id, "JOIN … USING with unsealed values");
                }
            }
            (true, true) => {}
        }
    }

    fn natural_join(&mut self) {
        let relations = self
            .frames
            .last()
            .map(|f| f.relations.clone())
            .unwrap_or_default();
        for relation in &relations {
            if let Some(&id) = relation.sealed(self.names).first() {
                self.refuse_unanalysable(
                    Some(id),
                    format!(
                        "NATURAL JOIN with sealed column {}: pgseal cannot tell which columns it \
                         compares; write JOIN … ON",
                        self.names.describe(id)
                    ),
                );
                return;
            }
        }
    }

    fn table_factor(&mut self, factor: &'a TableFactor) {
        let relation = match factor {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                let parts = name_parts(name).unwrap_or_default();
                if let Some(args) = args {
                    // `SELECT * FROM dblink(…) AS t(…)`: a table function.
                    self.refuse_listed_function(name);
                    for arg in &args.args {
                        if let sqlparser::ast::FunctionArg::Unnamed(
                            sqlparser::ast::FunctionArgExpr::Expr(e),
                        ) = arg
                        {
                            self.operand_expr(e, "table function");
                        } else {
                            self.opaque("a table function argument", &arg.to_string());
                        }
                    }
                    Relation {
                        name: relation_name(alias, parts.last()),
                        schema: None,
                        source: Source::Opaque,
                    }
                } else if let Some(cte) = match parts.as_slice() {
                    [single] => scope::find_cte(&self.frames, single).cloned(),
                    _ => None,
                } {
                    Relation {
                        name: relation_name(alias, parts.last()),
                        schema: None,
                        source: Source::Derived(cte.renamed(&alias_columns_opt(alias))),
                    }
                } else if let Some(table) = table_ref(name) {
                    self.table_seen(&table);
                    let renames = alias_columns_opt(alias);
                    let source = if renames.is_empty() || !self.names.is_sealed(&table) {
                        Source::Table(table.clone())
                    } else {
                        // Column aliases rename by position, which the analyzer does not know.
                        let star = Outputs {
                            items: vec![OutItem::Star(self.names.sealed_columns(&table))],
                        };
                        Source::Derived(star.renamed(&renames))
                    };
                    Relation {
                        name: relation_name(alias, Some(&table.table)),
                        schema: alias.is_none().then(|| table.schema.clone()),
                        source,
                    }
                } else {
                    self.opaque("this table name", &name.to_string());
                    Relation {
                        name: relation_name(alias, parts.last()),
                        schema: None,
                        source: Source::Opaque,
                    }
                }
            }
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
                ..
            } => {
                // A subquery in FROM sees the outer query levels, and its left siblings only
                // when LATERAL.
                let siblings = if *lateral {
                    Vec::new()
                } else {
                    std::mem::take(&mut self.top_frame().relations)
                };
                let outputs = self.query(subquery);
                if !*lateral {
                    self.top_frame().relations = siblings;
                }
                Relation {
                    name: relation_name(alias, None),
                    schema: None,
                    source: Source::Derived(outputs.renamed(&alias_columns_opt(alias))),
                }
            }
            TableFactor::TableFunction { expr, alias } => {
                self.operand_expr(expr, "table function");
                Relation {
                    name: relation_name(alias, None),
                    schema: None,
                    source: Source::Opaque,
                }
            }
            TableFactor::Function {
                name, args, alias, ..
            } => {
                let what = format!("function {name}()");
                self.refuse_listed_function(name);
                for arg in args {
                    if let sqlparser::ast::FunctionArg::Unnamed(
                        sqlparser::ast::FunctionArgExpr::Expr(e),
                    ) = arg
                    {
                        self.operand_expr(e, &what);
                    } else {
                        self.opaque("a table function argument", &arg.to_string());
                    }
                }
                Relation {
                    name: relation_name(alias, name_parts(name).unwrap_or_default().last()),
                    schema: None,
                    source: Source::Opaque,
                }
            }
            TableFactor::UNNEST {
                alias, array_exprs, ..
            } => {
                for e in array_exprs {
                    self.operand_expr(e, "unnest()");
                }
                Relation {
                    name: relation_name(alias, Some(&"unnest".to_string())),
                    schema: None,
                    source: Source::Opaque,
                }
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if alias.is_none() {
                    self.table_with_joins(table_with_joins);
                    return;
                }
                self.frames.push(Frame::default());
                self.table_with_joins(table_with_joins);
                let inner = self.frames.pop().unwrap_or_default();
                let mut outputs = Outputs::default();
                for relation in &inner.relations {
                    outputs.items.extend(relation.star(self.names));
                }
                Relation {
                    name: relation_name(alias, None),
                    schema: None,
                    source: Source::Derived(outputs.renamed(&alias_columns_opt(alias))),
                }
            }
            other => {
                self.opaque("this FROM item", &other.to_string());
                Relation {
                    name: String::new(),
                    schema: None,
                    source: Source::Opaque,
                }
            }
        };
        self.top_frame().relations.push(relation);
    }
}

/// The column names of `AS alias(a, b)`.
fn alias_columns(alias: &TableAlias) -> Vec<String> {
    alias.columns.iter().map(|c| fold(&c.name)).collect()
}

fn alias_columns_opt(alias: &Option<TableAlias>) -> Vec<String> {
    alias.as_ref().map(alias_columns).unwrap_or_default()
}

fn relation_name(alias: &Option<TableAlias>, default: Option<&String>) -> String {
    match alias {
        Some(alias) => fold(&alias.name),
        None => default.cloned().unwrap_or_default(),
    }
}

/// The name PostgreSQL gives an unaliased output column: the column's name, or the function's.
fn output_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(fold(ident)),
        Expr::CompoundIdentifier(idents) => idents.last().map(fold),
        Expr::Nested(inner) => output_name(inner),
        Expr::Function(f) => name_parts(&f.name).and_then(|p| p.last().cloned()),
        Expr::Cast { expr, .. } => output_name(expr),
        _ => None,
    }
}
