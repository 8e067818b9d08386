//! Any bytes as an admission request body, the way `/validate` and `/mutate` read it.
//!
//! A body that `parse_review` accepts is judged by both `validate` and `mutate`, and each answer is encoded as
//! the HTTP response would be. Properties, beyond "nothing panics":
//! - the encoded answer is an `admission.k8s.io/v1` `AdmissionReview` carrying the request's uid;
//! - it is valid JSON: it serializes, and reads back as the same value;
//! - a patch, when there is one, is base64 of a JSON Patch that applies to the request's object as sent.

#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use website_webhook::admission::{Judgement, mutate, validate};
use website_webhook::server::{encode_review, parse_review};

fuzz_target!(|body: &[u8]| {
    let Ok(request) = parse_review(body) else {
        return;
    };
    // The object as the API server sent it, which is what it applies a patch to. The parser reads only the fields
    // the rules need and skips the rest without checking it all (an invalid escape in an unread field, say), so a
    // body it accepts need not be JSON throughout; then there is no object to apply a patch to here.
    let body: Option<Value> = serde_json::from_slice(body).ok();
    let object = body.as_ref().and_then(|b| b.pointer("/request/object")).filter(|o| !o.is_null());
    // A verdict that holds only if the user may read a Secret is checked both ways: admitted, and refused.
    let (validated, refused) = match validate(&request) {
        Judgement::Final(verdict) => (verdict, None),
        Judgement::IfPermitted { verdict, access } => (verdict, Some(access.refusal(""))),
    };
    let verdicts = [("validate", validated), ("mutate", mutate(&request))];
    for (route, verdict) in verdicts.into_iter().chain(refused.map(|r| ("validate, refused access", r))) {
        let review = encode_review(&request.uid, &verdict);
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1", "{route}: {review}");
        assert_eq!(review["kind"], "AdmissionReview", "{route}: {review}");
        assert_eq!(
            review.pointer("/response/uid").and_then(Value::as_str),
            Some(&*request.uid),
            "{route}: the answer must carry the request's uid: {review}"
        );
        let text = serde_json::to_string(&review).expect("an encoded review serializes");
        let read_back: Value = serde_json::from_str(&text).expect("an encoded review is valid JSON");
        assert_eq!(read_back, review, "{route}: the encoded review must read back as itself");

        if let Some(patch) = review.pointer("/response/patch") {
            let patch = patch.as_str().expect("response.patch is a base64 string");
            let patch = base64::engine::general_purpose::STANDARD.decode(patch).expect("response.patch is base64");
            let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("response.patch is a JSON Patch");
            assert_eq!(review.pointer("/response/patchType"), Some(&Value::from("JSONPatch")), "{route}: {review}");
            if body.is_some() {
                let mut patched = object.cloned().expect("a patch comes with an object to patch");
                if let Err(e) = json_patch::patch(&mut patched, &patch) {
                    panic!("{route}: the patch does not apply to the request's object: {e}: {review}");
                }
            }
        }
    }
});
