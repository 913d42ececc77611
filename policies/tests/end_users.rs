//! Budgets per end user and `require_end_user`: how a class declares them, and what the compiled
//! policy answers.

use pgseal_policies::{Action, BudgetScope, ClassId, CompiledPolicy, Rate};

fn problems(src: &str) -> Vec<String> {
    match CompiledPolicy::from_toml("t.toml", src) {
        Ok(_) => panic!("policy accepted:\n{src}"),
        Err(diagnostics) => diagnostics.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn a_class_gives_each_end_user_a_budget_on_top_of_the_roles() {
    let p = CompiledPolicy::from_toml(
        "t.toml",
        r#"
[classes.application]
roles = ["ehr_app"]
require_end_user = true

[classes.application.budget]
rate = "2000/second"
action = "alert"

[classes.application.end_user_budget]
rate = "60/minute"
burst = 100
per_day = 300
on_cap = "block"

[classes.billing]
roles = ["ehr_billing"]
budget = { rate = "300/minute" }
"#,
    )
    .unwrap();
    let app = p.class_of("ehr_app");
    assert!(p.requires_end_user(app));
    let role = p.budget(app);
    assert_eq!(role.scope, BudgetScope::Role);
    assert_eq!(role.action, Action::Alert);
    let each = p.end_user_budget(app).expect("end-user budget");
    assert_eq!(each.scope, BudgetScope::EndUser);
    assert_eq!(each.rate, Rate::parse("60/minute").unwrap());
    assert_eq!(each.burst, 100);
    assert_eq!(each.per_day, Some(300));
    assert_eq!(each.per_hour, None);
    assert_eq!(each.action, Action::Throttle);
    assert_eq!(each.on_cap, Action::Block);
    assert_eq!(p.class(app).end_user_budget.as_ref(), Some(each));

    // Classes that say nothing: no end-user budget, no requirement; the default class neither.
    let billing = p.class_of("ehr_billing");
    assert_eq!(p.end_user_budget(billing), None);
    assert!(!p.requires_end_user(billing));
    assert_eq!(p.end_user_budget(ClassId::DEFAULT), None);
    assert!(!p.requires_end_user(ClassId::DEFAULT));
    // The end-user budget plays no part in the default budget's strictness.
    assert_eq!(p.budget(ClassId::DEFAULT).looser_than(role), None);
}

#[test]
fn end_user_settings_are_validated_like_the_rest() {
    assert_eq!(
        problems(
            r#"
[classes.app]
roles = ["ehr_app"]
require_end_user = "yes"

[classes.app.end_user_budget]
rate = "10/fortnight"
on_cap = "throttle"
"#
        ),
        [
            "t.toml:4:20: `require_end_user` must be a boolean, found a string",
            "t.toml:7:8: rate \"10/fortnight\" is not of the form \"ROWS/UNIT\" with UNIT \
             second, minute or hour",
            "t.toml:8:10: on_cap = \"throttle\" makes no sense: a cap only frees up as the hour \
             or day rolls on, so use \"block\" or \"alert\"",
        ]
    );
    assert_eq!(
        problems(
            r#"
[classes.app]
roles = ["ehr_app"]
end_user_budget = { burst = 3 }
"#
        ),
        [
            "t.toml:4:19: [classes.app.end_user_budget] has no `rate` (for example rate = \
          \"100/minute\")"
        ]
    );
    assert_eq!(
        problems(
            r#"
[default]
require_end_user = true
"#
        ),
        ["t.toml:3:1: unknown key `require_end_user` in [default]; expected one of: view, budget"]
    );
}
