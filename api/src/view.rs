//! What a client gets back: stored `v1` Websites shown as `v1alpha1` objects and lists, or as a `Table` with the
//! CRD's columns, one by one or as watch events.

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use website_crd::Website;
use website_crd::v1alpha1::{api_version_v1alpha1, to_v1alpha1};

/// How a response is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `v1alpha1` objects.
    Objects,
    /// A `Table` of `meta.k8s.io` `version`, with what each row carries of its object.
    Table {
        /// `v1` or `v1beta1`.
        version: &'static str,
        /// `includeObject`.
        include: Include,
    },
}

/// What a table row carries of its object (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Include {
    /// Nothing.
    None,
    /// Its metadata, as a `PartialObjectMetadata` (the default).
    Metadata,
    /// The whole `v1alpha1` object.
    Object,
}

impl Form {
    /// The form a request asks for with its `Accept` header and `includeObject` parameter.
    ///
    /// # Errors
    /// When it accepts neither JSON nor a table (protobuf only, say): the message says what is served.
    pub fn negotiate(accept: Option<&str>, include_object: Option<&str>) -> Result<Self, String> {
        let include = match include_object {
            None | Some("" | "Metadata") => Include::Metadata,
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            Some(other) => return Err(format!("includeObject={other:?} is not one of None, Metadata, Object")),
        };
        let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
            return Ok(Self::Objects);
        };
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
            let param = |key: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| *v);
            if !matches!(media, "application/json" | "application/*" | "*/*") {
                continue;
            }
            match param("as") {
                None => return Ok(Self::Objects),
                Some("Table") if param("g").is_none_or(|g| g == "meta.k8s.io") => {
                    let version = match param("v") {
                        Some("v1beta1") => "v1beta1",
                        Some("v1") | None => "v1",
                        Some(_) => continue,
                    };
                    return Ok(Self::Table { version, include });
                }
                Some(_) => continue,
            }
        }
        Err(format!("none of the media types accepted ({accept}) is served; application/json is, also as=Table"))
    }
}

/// A stored `v1` object (a Website, or a bookmark's bare object) as `v1alpha1`.
pub fn object(stored: Value) -> Value {
    match serde_json::from_value::<Website>(stored.clone()) {
        Ok(website) => serde_json::to_value(to_v1alpha1(&website)).unwrap_or(stored),
        Err(_) => {
            // A bookmark carries only the kind and a resourceVersion.
            let mut bare = stored;
            if bare.get("kind").and_then(Value::as_str) == Some("Website") {
                bare["apiVersion"] = json!(api_version_v1alpha1());
            }
            bare
        }
    }
}

/// A stored `v1` list as a `v1alpha1` list.
pub fn list(mut stored: Value) -> Value {
    let items = stored.get_mut("items").map(Value::take).and_then(|i| match i {
        Value::Array(items) => Some(items),
        _ => None,
    });
    stored["apiVersion"] = json!(api_version_v1alpha1());
    stored["kind"] = json!("WebsiteList");
    stored["items"] = Value::Array(items.unwrap_or_default().into_iter().map(object).collect());
    stored
}

/// The columns of the CRD: the name, then its `additionalPrinterColumns`.
fn column_definitions() -> Value {
    json!([
        {"name": "Name", "type": "string", "format": "name", "priority": 0,
         "description": "Name must be unique within a namespace."},
        {"name": "GitRepo", "type": "string", "format": "", "priority": 0, "description": "The git repository served"},
        {"name": "Ready", "type": "string", "format": "", "priority": 0, "description": "Whether the website is serving"},
        {"name": "URL", "type": "string", "format": "", "priority": 0, "description": "In-cluster URL of the website"},
        {"name": "Age", "type": "date", "format": "", "priority": 0,
         "description": "CreationTimestamp is a timestamp representing the server time when this object was created."},
    ])
}

fn row(stored: &Value, include: Include, now: Timestamp) -> Value {
    let text = |v: &Value| v.as_str().map_or(Value::Null, |s| json!(s));
    let ready = stored["status"]["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == "Ready"))
        .map_or(Value::Null, |c| text(&c["status"]));
    let age = stored["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map_or_else(|| "<unknown>".to_owned(), |created| human_duration(now.as_second() - created.as_second()));
    let mut row = json!({"cells": [
        text(&stored["metadata"]["name"]),
        text(&stored["spec"]["gitRepo"]),
        ready,
        text(&stored["status"]["url"]),
        age,
    ]});
    match include {
        Include::None => {}
        Include::Metadata => {
            row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": stored["metadata"].clone()});
        }
        Include::Object => row["object"] = object(stored.clone()),
    }
    row
}

/// A `Table` of stored `v1` objects, with the list metadata `list_meta`.
pub fn table(stored: &[Value], list_meta: Value, version: &str, include: Include) -> Value {
    let now = Timestamp::now();
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": list_meta,
        "columnDefinitions": column_definitions(),
        "rows": stored.iter().map(|s| row(s, include, now)).collect::<Vec<_>>(),
    })
}

/// A stored `v1` answer (an object or a list) in `form`.
pub fn answer(stored: Value, form: Form) -> Value {
    let is_list = stored.get("items").is_some();
    match form {
        Form::Objects if is_list => list(stored),
        Form::Objects => object(stored),
        Form::Table { version, include } if is_list => {
            let items = stored["items"].as_array().cloned().unwrap_or_default();
            table(&items, stored["metadata"].clone(), version, include)
        }
        Form::Table { version, include } => {
            let meta = json!({"resourceVersion": stored["metadata"]["resourceVersion"].clone()});
            table(std::slice::from_ref(&stored), meta, version, include)
        }
    }
}

/// One line of a stored `v1` watch (`{"type": ..., "object": ...}`) in `form`; an `ERROR` event's Status, and
/// anything that is not an event, as it came.
pub fn watch_event(line: &[u8], form: Form) -> Vec<u8> {
    let Ok(mut event) = serde_json::from_slice::<Value>(line) else {
        return line.to_vec();
    };
    let kind = event["type"].as_str().unwrap_or_default().to_owned();
    if matches!(kind.as_str(), "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK") {
        let stored = event["object"].take();
        event["object"] = match form {
            Form::Table { version, include } if kind != "BOOKMARK" => {
                let meta = json!({"resourceVersion": stored["metadata"]["resourceVersion"].clone()});
                table(std::slice::from_ref(&stored), meta, version, include)
            }
            _ => object(stored),
        };
    }
    serde_json::to_vec(&event).unwrap_or_else(|_| line.to_vec())
}

/// How long ago, as kubectl shows ages (`apimachinery`'s `HumanDuration`).
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let d = (hours / 24) % 365;
        return if d == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{d}d", hours / 24 / 365) };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Value {
        json!({"apiVersion": "extensions.example.com/v1", "kind": "Website",
            "metadata": {"name": "kubia", "namespace": "shop", "resourceVersion": "7",
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"gitRepo": "https://github.com/luksa/kubia-website-example.git", "replicas": 2, "ref": "main"},
            "status": {"url": "http://kubia.shop.svc.cluster.local/",
                       "conditions": [{"type": "Ready", "status": "True", "reason": "Available", "message": "",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
    }

    #[test]
    fn kubectl_gets_a_table_and_other_clients_objects() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(Form::negotiate(Some(kubectl), None), Ok(Form::Table { version: "v1", include: Include::Metadata }));
        assert_eq!(Form::negotiate(Some("application/json"), None), Ok(Form::Objects));
        assert_eq!(Form::negotiate(None, Some("Object")), Ok(Form::Objects));
        assert_eq!(
            Form::negotiate(Some("application/json;as=Table;v=v1beta1;g=meta.k8s.io"), Some("None")),
            Ok(Form::Table { version: "v1beta1", include: Include::None })
        );
        let error = Form::negotiate(Some("application/vnd.kubernetes.protobuf"), None).expect_err("protobuf");
        assert!(error.contains("application/json"), "{error}");
        assert!(Form::negotiate(None, Some("Everything")).is_err());
    }

    #[test]
    fn a_list_shows_every_item_as_v1alpha1_without_the_fields_v1alpha1_lacks() {
        let shown = list(json!({"apiVersion": "extensions.example.com/v1", "kind": "WebsiteList",
            "metadata": {"resourceVersion": "9"}, "items": [stored()]}));
        assert_eq!(shown["apiVersion"], "extensions.example.com/v1alpha1");
        assert_eq!(shown["kind"], "WebsiteList");
        assert_eq!(shown["metadata"]["resourceVersion"], "9");
        let item = &shown["items"][0];
        assert_eq!(item["apiVersion"], "extensions.example.com/v1alpha1");
        assert_eq!(item["spec"], json!({"gitRepo": "https://github.com/luksa/kubia-website-example.git"}));
        assert_eq!(item["status"]["url"], "http://kubia.shop.svc.cluster.local/");
    }

    #[test]
    fn the_table_has_the_crds_columns() {
        let t = answer(stored(), Form::Table { version: "v1", include: Include::Metadata });
        assert_eq!(t["kind"], "Table");
        let names: Vec<_> =
            t["columnDefinitions"].as_array().expect("columns").iter().map(|c| c["name"].clone()).collect();
        assert_eq!(names, ["Name", "GitRepo", "Ready", "URL", "Age"]);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[0], "kubia");
        assert_eq!(cells[1], "https://github.com/luksa/kubia-website-example.git");
        assert_eq!(cells[2], "True");
        assert_eq!(cells[3], "http://kubia.shop.svc.cluster.local/");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn watch_events_are_shown_like_objects_and_errors_pass_unchanged() {
        let line = serde_json::to_vec(&json!({"type": "MODIFIED", "object": stored()})).expect("json");
        let event: Value = serde_json::from_slice(&watch_event(&line, Form::Objects)).expect("json");
        assert_eq!(event["type"], "MODIFIED");
        assert_eq!(event["object"]["apiVersion"], "extensions.example.com/v1alpha1");
        assert!(event["object"]["spec"].get("replicas").is_none());
        let bookmark = br#"{"type":"BOOKMARK","object":{"kind":"Website","apiVersion":"extensions.example.com/v1","metadata":{"resourceVersion":"12"}}}"#;
        let event: Value = serde_json::from_slice(&watch_event(bookmark, Form::Objects)).expect("json");
        assert_eq!(event["object"]["apiVersion"], "extensions.example.com/v1alpha1");
        assert_eq!(event["object"]["metadata"]["resourceVersion"], "12");
        let error = br#"{"type":"ERROR","object":{"kind":"Status","code":410}}"#;
        let event: Value = serde_json::from_slice(&watch_event(error, Form::Objects)).expect("json");
        assert_eq!(event["object"]["code"], 410);
        let table = Form::Table { version: "v1", include: Include::None };
        let event: Value = serde_json::from_slice(&watch_event(&line, table)).expect("json");
        assert_eq!(event["object"]["kind"], "Table");
        assert_eq!(event["object"]["rows"][0]["cells"][0], "kubia");
    }

    #[test]
    fn ages_read_as_kubectl_writes_them() {
        for (seconds, shown) in [
            (5, "5s"),
            (119, "119s"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (30 * 3600, "30h"),
            (3 * 86400 + 3600, "3d1h"),
            (400 * 86400, "400d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
            (-5, "<invalid>"),
        ] {
            assert_eq!(human_duration(seconds), shown, "{seconds}");
        }
    }
}
