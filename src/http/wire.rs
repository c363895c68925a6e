//! The success bodies, field for field in the vendor's key order (SPEC §2): serde writes struct
//! fields in declaration order, so the order below is the contract.

use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::domain::caller_line::{CallerLine, LineUser, Tenant};
use crate::domain::page::PageMeta;
use crate::domain::query::PageRequest;
use crate::store::tenants::TenantSummary;

#[derive(Serialize)]
struct ListBody<T> {
    code: u16,
    status: &'static str,
    message: &'static str,
    meta: Meta,
    data: Vec<T>,
}

#[derive(Serialize)]
struct Meta {
    has_pages: bool,
    total: i64,
    last_page: i64,
    current_page: i64,
    /// A string in the vendor's responses (`"15"`), kept so.
    #[serde(serialize_with = "as_string")]
    per_page: i64,
}

fn as_string<S: Serializer>(value: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// The 200 envelope around one page of items.
pub fn list_response<T: Serialize>(
    message: &'static str,
    page: PageRequest,
    total: i64,
    data: Vec<T>,
) -> HttpResponse {
    let meta = PageMeta::new(page, total);
    HttpResponse::Ok().json(ListBody {
        code: 200,
        status: "success",
        message,
        meta: Meta {
            has_pages: meta.has_pages,
            total: meta.total,
            last_page: meta.last_page,
            current_page: meta.current_page,
            per_page: meta.per_page,
        },
        data,
    })
}

/// `YYYY-MM-DD HH:MM:SS` wall-clock time in the display zone.
struct WallClock(DateTime<Tz>);

impl WallClock {
    fn of(instant: Option<DateTime<Utc>>, zone: Tz) -> Option<Self> {
        instant.map(|instant| Self(instant.with_timezone(&zone)))
    }
}

impl Serialize for WallClock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0.format("%Y-%m-%d %H:%M:%S"))
    }
}

#[derive(Serialize)]
pub struct LineItem<'a> {
    id: Uuid,
    name: &'a str,
    user: Option<UserItem<'a>>,
    call_line: i32,
    deadline_at: Option<WallClock>,
    available_time: i64,
    begin_at: Option<WallClock>,
    available_at: Option<WallClock>,
    caller_number: &'a str,
    tenant: TenantItem<'a>,
    created_at: WallClock,
    updated_at: WallClock,
    description_server: Option<&'a str>,
    /// Deprecated by the vendor; always null.
    qr_code: Option<()>,
    call_number: Option<&'a str>,
}

#[derive(Serialize)]
struct UserItem<'a> {
    name: &'a str,
    email: Option<&'a str>,
    phone: Option<&'a str>,
    type_note: &'static str,
}

#[derive(Serialize)]
struct TenantItem<'a> {
    id: Uuid,
    name: &'a str,
}

impl<'a> LineItem<'a> {
    pub fn new(line: &'a CallerLine, tenant: &'a Tenant, zone: Tz) -> Self {
        let wall = |instant: DateTime<Utc>| WallClock(instant.with_timezone(&zone));
        Self {
            id: line.id,
            name: &line.name,
            user: line.user.as_ref().map(UserItem::new),
            call_line: line.call_line,
            deadline_at: WallClock::of(line.deadline_at, zone),
            available_time: line.available_time,
            begin_at: WallClock::of(line.begin_at, zone),
            available_at: WallClock::of(line.available_at(), zone),
            caller_number: &line.caller_number,
            tenant: TenantItem {
                id: tenant.id,
                name: &tenant.name,
            },
            created_at: wall(line.created_at),
            updated_at: wall(line.updated_at),
            description_server: line.description_server.as_deref(),
            qr_code: None,
            call_number: line.call_number.as_deref(),
        }
    }
}

impl<'a> UserItem<'a> {
    fn new(user: &'a LineUser) -> Self {
        Self {
            name: &user.name,
            email: user.email.as_deref(),
            phone: user.phone.as_deref(),
            type_note: user.user_type.note(),
        }
    }
}

/// An item of the tenant list (SPEC §2b).
#[derive(Serialize)]
pub struct TenantListItem<'a> {
    id: Uuid,
    name: &'a str,
    is_default: bool,
}

impl<'a> From<&'a TenantSummary> for TenantListItem<'a> {
    fn from(tenant: &'a TenantSummary) -> Self {
        Self {
            id: tenant.id,
            name: &tenant.name,
            is_default: tenant.is_default,
        }
    }
}
