//! `ETag` on successful GETs under `/agent-api`, and `304 Not Modified` for a matching
//! `If-None-Match` (RFC 9110 §13.1.2), so partners that poll pay little for unchanged pages.

use actix_web::Error;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
// XXH3: a specified hash, so every instance and release agrees on a page's tag, and fast
// (a page of 15 lines is ~10 KB, hashed on every 200).
use xxhash_rust::xxh3::xxh3_64;

pub async fn etag(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let if_none_match = request.headers().get(header::IF_NONE_MATCH).cloned();
    let is_get = request.method() == Method::GET;
    let response = next.call(request).await?.map_into_boxed_body();
    if !is_get || response.status() != StatusCode::OK {
        return Ok(response);
    }
    let (request, response) = response.into_parts();
    let (mut response, body) = response.into_parts();
    let bytes = match body.try_into_bytes() {
        Ok(bytes) => bytes,
        // A streamed body has no bytes to hash; send it as it is.
        Err(body) => return Ok(ServiceResponse::new(request, response.set_body(body))),
    };
    // A handler that encodes its own body has tagged the unencoded page already.
    let tag = match response.headers().get(header::ETAG) {
        Some(tag) => tag.clone(),
        None => {
            let tag = weak_tag(&bytes);
            response.headers_mut().insert(header::ETAG, tag.clone());
            tag
        }
    };
    let response = if if_none_match.is_some_and(|value| matches(&value, &tag)) {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response.headers_mut().remove(header::CONTENT_TYPE);
        response.headers_mut().remove(header::CONTENT_ENCODING);
        response.set_body(BoxBody::new(()))
    } else {
        response.set_body(BoxBody::new(bytes))
    };
    Ok(ServiceResponse::new(request, response))
}

/// The tag of an unencoded body. Weak: the same page may go out gzip-, brotli- or
/// identity-encoded under one tag.
pub fn weak_tag(unencoded: &[u8]) -> HeaderValue {
    let tag = format!("W/\"{:016x}\"", xxh3_64(unencoded));
    HeaderValue::from_str(&tag).expect("hex digits are a valid header value")
}

/// Weak comparison against each tag of an `If-None-Match` list, or `*`.
fn matches(if_none_match: &HeaderValue, tag: &HeaderValue) -> bool {
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
