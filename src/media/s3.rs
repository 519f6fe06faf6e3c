//! The media store on S3-compatible object storage (`WAPI_MEDIA_S3_*`), so
//! that several nodes serve the same files.
//!
//! `object_store`'s own HTTP transport (its `aws` feature) brings reqwest
//! 0.13 with a second TLS crypto provider (aws-lc) beside the ring one the
//! rest of the bridge uses; rustls then cannot pick a provider on its own.
//! So the store is built from `aws-base` + `ring` and talks through the
//! bridge's reqwest client ([`Transport`]), with the platform's verified
//! certificates like every other outgoing request.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService,
};
use object_store::prefix::PrefixStore;

use super::MediaError;
use crate::config::Secret;

/// Where the files go when S3 is configured.
#[derive(Clone, Debug)]
pub struct S3Settings {
    /// `WAPI_MEDIA_S3_BUCKET`
    pub bucket: String,
    /// `WAPI_MEDIA_S3_ENDPOINT`: an S3-compatible server (MinIO, R2, Ceph,
    /// ...); absent for AWS itself. Requests use path-style addressing.
    pub endpoint: Option<String>,
    /// `WAPI_MEDIA_S3_REGION` (default `us-east-1`).
    pub region: String,
    /// `WAPI_MEDIA_S3_ACCESS_KEY_ID` and `WAPI_MEDIA_S3_SECRET_ACCESS_KEY`;
    /// without them the usual AWS sources are asked (environment, web
    /// identity, instance metadata).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    /// `WAPI_MEDIA_S3_PREFIX`: keys go under this folder of the bucket, so
    /// one bucket can serve several deployments.
    pub prefix: Option<String>,
}

/// Opens the bucket and checks that it answers, so a wrong name or key
/// stops the bridge at start rather than at the first file.
pub async fn open(s: &S3Settings) -> Result<Arc<dyn ObjectStore>, MediaError> {
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(&s.bucket)
        .with_region(&s.region)
        .with_http_connector(Transport);
    if let Some(endpoint) = &s.endpoint {
        b = b
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false)
            // The operator chose the scheme by writing the endpoint.
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let (Some(id), Some(secret)) = (&s.access_key_id, &s.secret_access_key) {
        b = b.with_access_key_id(id).with_secret_access_key(&secret.0);
    }
    let s3 = b.build().map_err(|e| MediaError::Store(e.to_string()))?;
    let store: Arc<dyn ObjectStore> = match s.prefix.as_deref().map(|p| p.trim_matches('/')) {
        Some(p) if !p.is_empty() => Arc::new(PrefixStore::new(s3, p)),
        _ => Arc::new(s3),
    };
    // A listing fails on a missing bucket or refused credentials.
    store
        .list(None)
        .try_next()
        .await
        .map_err(|e| MediaError::Store(format!("bucket {:?}: {e}", s.bucket)))?;
    Ok(store)
}

/// `object_store`'s requests sent with reqwest 0.12 (rustls on ring).
#[derive(Debug)]
struct Transport;

impl HttpConnector for Transport {
    fn connect(&self, _: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // Per request; the store writes large files in parts of 10 MiB.
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })?;
        Ok(HttpClient::new(ReqwestService(client)))
    }
}

#[derive(Debug)]
struct ReqwestService(reqwest::Client);

#[async_trait::async_trait]
impl HttpService for ReqwestService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = req.into_parts();
        let url = reqwest::Url::parse(&parts.uri.to_string())
            .map_err(|e| HttpError::new(HttpErrorKind::Request, e))?;
        let mut out = reqwest::Request::new(parts.method, url);
        *out.headers_mut() = parts.headers;
        *out.body_mut() = Some(reqwest::Body::wrap(body));
        let res = self.0.execute(out).await.map_err(error)?;
        let res: http::Response<reqwest::Body> = res.into();
        let (parts, body) = res.into_parts();
        let body = http_body_util::BodyExt::map_err(body, error);
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}

/// Sorts reqwest's errors the way `object_store`'s retries understand.
fn error(e: reqwest::Error) -> HttpError {
    let kind = if e.is_timeout() {
        HttpErrorKind::Timeout
    } else if e.is_connect() {
        HttpErrorKind::Connect
    } else if e.is_decode() {
        HttpErrorKind::Decode
    } else if e.is_body() || e.is_request() {
        HttpErrorKind::Interrupted
    } else {
        HttpErrorKind::Unknown
    };
    HttpError::new(kind, e.without_url())
}
