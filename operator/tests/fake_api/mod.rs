//! The in-memory API of the reconcile-pass tests: kube-fake-client, with one correction.
//!
//! kube-fake-client treats a server-side apply as a merge patch, so a field the operator stops
//! applying (a finished `operation`, a cleared message) would linger, where a real API server
//! removes it (the operator's field manager owns it and no longer sets it). Here a status apply
//! becomes a merge patch that also nulls the status fields the applied body no longer has:
//! what server-side apply does when the applier is the status's only writer, as the operator
//! is. The real behaviour is tested against the real API server (`localcluster` tests).

use http::{header, Method, Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::Value;

/// A fake client with `configure`'s resources, status applies corrected as above.
pub async fn client(
    configure: impl FnOnce(kube_fake_client::ClientBuilder) -> kube_fake_client::ClientBuilder,
) -> Client {
    let inner = configure(kube_fake_client::ClientBuilder::new())
        .build()
        .await
        .expect("fake client");
    let svc = tower::service_fn(move |req: Request<Body>| {
        let inner = inner.clone();
        async move { route(inner, req).await }
    });
    Client::new(svc, "default")
}

fn is_status_apply(req: &Request<Body>) -> bool {
    req.method() == Method::PATCH
        && req.uri().path().ends_with("/status")
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/apply-patch"))
}

async fn route(inner: Client, req: Request<Body>) -> Result<Response<Body>, kube::Error> {
    if !is_status_apply(&req) {
        return inner.send(req).await;
    }
    let (parts, body) = req.into_parts();
    let mut applied: Value =
        serde_json::from_slice(&body.collect_bytes().await?).map_err(kube::Error::SerdeError)?;
    let path = parts.uri.path().to_string();
    let object_path = path.trim_end_matches("/status");
    let get = Request::get(object_path)
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    let current: Value = inner.request(get).await?;
    if let Some(new) = applied.get_mut("status") {
        null_removed(&current["status"], new);
    }
    let patch = Request::builder()
        .method(Method::PATCH)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/merge-patch+json")
        .body(Body::from(
            serde_json::to_vec(&applied).map_err(kube::Error::SerdeError)?,
        ))
        .map_err(kube::Error::HttpError)?;
    inner.send(patch).await
}

/// Mark fields that `old` has and `new` lacks as explicit nulls (recursively in objects).
fn null_removed(old: &Value, new: &mut Value) {
    if let (Some(o), Some(n)) = (old.as_object(), new.as_object_mut()) {
        for (k, ov) in o {
            match n.get_mut(k) {
                None => {
                    n.insert(k.clone(), Value::Null);
                }
                Some(nv) => null_removed(ov, nv),
            }
        }
    }
}

#[test]
fn removed_fields_become_nulls() {
    use serde_json::json;
    let old = json!({"operation": {"kind": "Initdb"}, "primary": {"ready": true, "message": "x"}, "conditions": [1]});
    let mut new = json!({"primary": {"ready": false}, "conditions": []});
    null_removed(&old, &mut new);
    assert_eq!(
        new,
        json!({"operation": null, "primary": {"ready": false, "message": null}, "conditions": []})
    );
}
