//! The files of the partners' reference (`/openapi.json`, and Swagger UI's assets inside the
//! binary, nothing fetched from elsewhere, so it works offline). Each file is compressed once
//! per coding and process, not per request (the bundle is 1.5 MB: 16 ms of CPU per brotli
//! request), and carries a strong validator; the versioned assets may be cached for a day.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use utoipa_swagger_ui::Config;
use xxhash_rust::xxh3::xxh3_64;

use super::encoding::{Coding, Effort};
use super::etag::matches;

/// One file, as it is and compressed on first demand.
pub struct Asset {
    content_type: String,
    identity: Bytes,
    hash: u64,
    /// Fetched again on every use rather than cached for a day: it names the document's URL
    /// and configuration, which may change with the next release under the same name.
    revalidate: bool,
    gzip: OnceLock<Bytes>,
    brotli: OnceLock<Bytes>,
}

impl Asset {
    fn new(content_type: String, identity: Bytes, revalidate: bool) -> Self {
        Self {
            content_type,
            hash: xxh3_64(&identity),
            identity,
            revalidate,
            gzip: OnceLock::new(),
            brotli: OnceLock::new(),
        }
    }

    /// Where this file in `coding` is kept once made; `None` for the file as it is.
    fn kept(&self, coding: Coding) -> Option<&OnceLock<Bytes>> {
        match coding {
            Coding::Identity => None,
            Coding::Gzip => Some(&self.gzip),
            Coding::Brotli => Some(&self.brotli),
        }
    }

    /// This file in `coding`, if it needs no compressing now.
    fn ready(&self, coding: Coding) -> Option<Bytes> {
        match self.kept(coding) {
            None => Some(self.identity.clone()),
            Some(cell) => cell.get().cloned(),
        }
    }

    /// This file in `coding`, compressed now if it never was.
    fn body(&self, coding: Coding) -> Bytes {
        match self.kept(coding) {
            None => self.identity.clone(),
            Some(cell) => cell
                // Compressing into memory fails only short of allocation: then send it plain.
                .get_or_init(|| {
                    coding
                        .encode(&self.identity, Effort::Best)
                        .unwrap_or_else(|_| self.identity.clone())
                })
                .clone(),
        }
    }

    /// A strong validator names one representation: each coding has its own.
    fn etag(&self, coding: Coding) -> HeaderValue {
        let tag = format!("\"{:016x}-{coding:?}\"", self.hash).to_lowercase();
        HeaderValue::from_str(&tag).expect("hex digits are a valid header value")
    }

    pub async fn respond(self: Arc<Self>, request: &HttpRequest) -> HttpResponse {
        let cache_control = match self.revalidate {
            true => "public, no-cache",
            false => "public, max-age=86400",
        };
        let wanted = Coding::negotiate(request);
        let unchanged = request
            .headers()
            .get(header::IF_NONE_MATCH)
            .is_some_and(|tags| matches(tags, &self.etag(wanted)));
        if unchanged {
            return HttpResponse::NotModified()
                .insert_header((header::ETAG, self.etag(wanted)))
                .insert_header((header::CACHE_CONTROL, cache_control))
                .finish();
        }
        // Compressing a 1.5 MB file the first time takes a while: not on a worker thread.
        let (coding, body) = match self.ready(wanted) {
            Some(body) => (wanted, body),
            None => {
                let asset = self.clone();
                match web::block(move || asset.body(wanted)).await {
                    Ok(body) => (wanted, body),
                    Err(_) => (Coding::Identity, self.identity.clone()),
                }
            }
        };
        let mut response = HttpResponse::Ok();
        response
            .content_type(self.content_type.as_str())
            .insert_header((header::ETAG, self.etag(coding)))
            .insert_header((header::CACHE_CONTROL, cache_control))
            .insert_header((header::VARY, "accept-encoding"));
        if let Some(encoding) = coding.header_value() {
            response.insert_header((header::CONTENT_ENCODING, encoding));
        }
        response.body(body)
    }
}

/// The reference's files, each made once.
pub struct Reference {
    document: Arc<Asset>,
    swagger: Arc<Config<'static>>,
    files: Mutex<HashMap<String, Arc<Asset>>>,
}

impl Reference {
    pub fn new(document: &utoipa::openapi::OpenApi) -> Self {
        let json = document.to_json().expect("the document serializes");
        Self {
            document: Arc::new(Asset::new("application/json".into(), json.into(), true)),
            swagger: Arc::new(
                Config::new(["/openapi.json"])
                    .doc_expansion("full")
                    .validator_url("none")
                    .try_it_out_enabled(true)
                    // A partner's token stays in the page, not in the browser's storage.
                    .persist_authorization(false)
                    .display_request_duration(true),
            ),
            files: Mutex::default(),
        }
    }

    /// `/openapi.json`.
    pub fn document(&self) -> Arc<Asset> {
        self.document.clone()
    }

    /// The Swagger UI file at `path`, if the bundle has one.
    pub fn swagger_file(&self, path: &str) -> Option<Arc<Asset>> {
        let mut files = self.files.lock().expect("no holder panics");
        if let Some(asset) = files.get(path) {
            return Some(asset.clone());
        }
        let file = utoipa_swagger_ui::serve(path, self.swagger.clone()).ok()??;
        let revalidate = matches!(path, "" | "index.html" | "swagger-initializer.js");
        let asset = Arc::new(Asset::new(
            file.content_type,
            Bytes::from(file.bytes.into_owned()),
            revalidate,
        ));
        files.insert(path.to_string(), asset.clone());
        Some(asset)
    }
}
