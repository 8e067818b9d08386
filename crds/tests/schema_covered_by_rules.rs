//! The webhook runs the CRD's JSON schema only on a spec that does not decode: for one that does, the semantic
//! rules cover every constraint of the schema. This holds them to it: whatever field the schema refuses in a
//! decodable spec, the rules refuse too.

use proptest::prelude::*;
use serde::Deserialize as _;
use serde_json::{Value, json};
use website_crd::schema::SchemaValidator;
use website_crd::{WebsiteSpec, validate};

fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z]{1,8}",
        (0..=max).prop_map(|n| "a".repeat(n)),
        (max - 2..=max + 2).prop_map(|n| format!("https://e.com/{}", "a".repeat(n.saturating_sub(14)))),
    ]
}

fn number() -> impl Strategy<Value = i64> {
    prop_oneof![-2i64..=2, 0i64..=70_000, 86_390i64..=86_410, Just(i64::from(i32::MAX)), Just(i64::from(i32::MIN))]
}

fn spec() -> impl Strategy<Value = Value> {
    (
        text(2048),
        proptest::option::of(text(255)),
        proptest::option::of(number()),
        proptest::option::of(prop_oneof![Just("ClusterIP"), Just("NodePort"), Just("LoadBalancer")]),
        proptest::option::of(number()),
        proptest::option::of(number()),
    )
        .prop_map(|(git_repo, git_ref, replicas, service_type, port, sync)| {
            let mut spec = json!({"gitRepo": git_repo});
            for (key, value) in [
                ("ref", git_ref.map(Value::from)),
                ("replicas", replicas.map(Value::from)),
                ("serviceType", service_type.map(Value::from)),
                ("port", port.map(Value::from)),
                ("syncIntervalSeconds", sync.map(Value::from)),
            ] {
                if let Some(value) = value {
                    spec[key] = value;
                }
            }
            spec
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]
    #[test]
    fn every_field_the_schema_refuses_in_a_decodable_spec_the_rules_refuse_too(spec in spec()) {
        if let Ok(decoded) = WebsiteSpec::deserialize(&spec) {
            let by_schema: Vec<String> =
                SchemaValidator::website().violations(&json!({"spec": spec})).into_iter().map(|v| v.field).collect();
            let by_rules: Vec<String> = validate(&decoded).into_iter().map(|v| v.field).collect();
            for field in &by_schema {
                prop_assert!(by_rules.contains(field), "{field} refused by the schema only: {spec}");
            }
        }
    }
}
