//! How partners' clients may cache answers: every answer under `/agent-api` is for one
//! partner's eyes (`Cache-Control: private, no-cache`: no shared cache keeps it, and a client
//! revalidates before reuse), and a success body carries a weak `ETag` so that polling an
//! unchanged page costs a `304 Not Modified` (RFC 9110 §13.1.2). Business errors (1001/1004) ride
//! on HTTP 200 too but carry no ETag: it is set where a success body is rendered, not here.

use actix_web::Error;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
// XXH3: a specified hash, so every instance and release agrees on a page's tag, and fast
// (a page of 15 lines is ~10 KB, hashed once per rendering).
use xxhash_rust::xxh3::xxh3_64;

pub async fn revalidate(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let if_none_match = request.headers().get(header::IF_NONE_MATCH).cloned();
    let mut response = next.call(request).await?.map_into_boxed_body();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    let unchanged = response.status() == StatusCode::OK
        && if_none_match
            .zip(response.headers().get(header::ETAG))
            .is_some_and(|(wanted, tag)| matches(&wanted, tag));
    if !unchanged {
        return Ok(response);
    }
    let (request, response) = response.into_parts();
    let mut response = response.set_body(BoxBody::new(()));
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    response.headers_mut().remove(header::CONTENT_TYPE);
    response.headers_mut().remove(header::CONTENT_ENCODING);
    Ok(ServiceResponse::new(request, response))
}

/// A page's validator, a hash of its unencoded JSON. Weak: the same page may go out gzip-,
/// brotli- or identity-encoded under one tag. Kept as a number: a kept page holds no more
/// allocations than it must.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeakTag(u64);

impl WeakTag {
    pub fn of(unencoded: &[u8]) -> Self {
        Self(xxh3_64(unencoded))
    }

    pub fn header_value(self) -> HeaderValue {
        let tag = format!("W/\"{:016x}\"", self.0);
        HeaderValue::from_str(&tag).expect("hex digits are a valid header value")
    }
}

/// Weak comparison against each tag of an `If-None-Match` list, or `*`.
pub fn matches(if_none_match: &HeaderValue, tag: &HeaderValue) -> bool {
    let (Ok(value), Ok(tag)) = (if_none_match.to_str(), tag.to_str()) else {
        return false;
    };
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    value.trim() == "*"
        || value
            .split(',')
            .any(|candidate| opaque(candidate) == opaque(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_star() {
        let tag = HeaderValue::from_static("W/\"00000000000000ab\"");
        for (header, expected) in [
            ("W/\"00000000000000ab\"", true),
            ("\"00000000000000ab\"", true),
            ("\"x\", W/\"00000000000000ab\"", true),
            ("*", true),
            ("\"00000000000000ac\"", false),
            ("", false),
        ] {
            assert_eq!(
                matches(&HeaderValue::from_static(header), &tag),
                expected,
                "{header}"
            );
        }
    }
}
