//! The success bodies, field for field in the vendor's key order (SPEC §2): serde writes struct
//! fields in declaration order, so the order below is the contract.

use actix_web::http::header::ContentType;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, ResponseError};
use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Serialize, Serializer};
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::ApiError;
use crate::domain::caller_line::{CallerLine, LineUser, Tenant};
use crate::domain::page::PageMeta;
use crate::domain::query::PageRequest;
use crate::store::tenants::TenantSummary;

/// 成功响应 · The success envelope.
#[derive(Serialize, ToSchema)]
pub struct ListBody<T> {
    /// 200
    #[schema(example = 200, minimum = 200, maximum = 200)]
    code: u16,
    /// `success`
    #[schema(value_type = String, example = "success", pattern = "^success$")]
    status: &'static str,
    /// 提示信息 · message
    #[schema(value_type = String)]
    message: &'static str,
    meta: Meta,
    data: Vec<T>,
}

/// 分页信息 · Paging.
#[derive(Serialize, ToSchema)]
pub struct Meta {
    /// `current_page != 1 || current_page < last_page`(沿用原接口定义 · the vendor's definition)
    has_pages: bool,
    /// 符合条件的总数 · matching rows
    total: i64,
    /// max(1, ceil(total / per_page))
    last_page: i64,
    /// 请求的页码 · the requested page
    current_page: i64,
    /// 每页条数,字符串 · page size, as a string (`"15"`)
    #[serde(serialize_with = "as_string")]
    #[schema(value_type = String, example = "15", pattern = "^[1-9][0-9]*$")]
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
    match list_body(message, page, total, data) {
        Ok(body) => HttpResponse::Ok()
            .content_type(ContentType::json())
            .body(body),
        Err(error) => error.error_response(),
    }
}

/// The JSON text of the 200 envelope, for responses rendered once and sent many times.
pub fn list_body<T: Serialize>(
    message: &'static str,
    page: PageRequest,
    total: i64,
    data: Vec<T>,
) -> Result<Bytes, ApiError> {
    let meta = PageMeta::new(page, total);
    let body = ListBody {
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
    };
    // Sized for a typical line (~650 bytes) so a page is written without regrowing.
    let mut json = Vec::with_capacity(256 + 700 * body.data.len());
    serde_json::to_writer(&mut json, &body).map_err(|error| ApiError::Internal(error.into()))?;
    Ok(json.into())
}

/// `YYYY-MM-DD HH:MM:SS` wall-clock time in the display zone.
struct WallClock(DateTime<Tz>);

impl WallClock {
    fn of(instant: Option<DateTime<Utc>>, zone: Tz) -> Option<Self> {
        instant.map(|instant| Self(instant.with_timezone(&zone)))
    }
}

/// Written digit by digit into a fixed buffer: a response holds up to 600 of these, and both a
/// strftime pattern and `core::fmt` per field were measurable shares of the service's CPU
/// (`perf`, bench/).
impl Serialize for WallClock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let t = self.0.naive_local();
        let Ok(year) = u32::try_from(t.year()) else {
            return serializer.collect_str(self);
        };
        if year > 9999 {
            return serializer.collect_str(self);
        }
        let mut text = *b"0000-00-00 00:00:00";
        for (at, width, value) in [
            (0, 4, year),
            (5, 2, t.month()),
            (8, 2, t.day()),
            (11, 2, t.hour()),
            (14, 2, t.minute()),
            (17, 2, t.second()),
        ] {
            let mut rest = value;
            for digit in text[at..at + width].iter_mut().rev() {
                *digit = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
        }
        serializer.serialize_str(std::str::from_utf8(&text).expect("ASCII digits"))
    }
}

/// The general form, for years outside 0..=9999 (no real line has one).
impl std::fmt::Display for WallClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.0.naive_local();
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

/// 线路 · A caller line. Times are `YYYY-MM-DD HH:MM:SS` in the display zone (UTC+08:00).
#[derive(Serialize, ToSchema)]
pub struct LineItem<'a> {
    /// 线路 id · line id
    id: Uuid,
    /// 线路名称 · line name
    #[schema(value_type = String)]
    name: &'a str,
    /// 分配的用户,未分配为 null · the user it is allocated to, null when unallocated
    #[schema(required = true)]
    user: Option<UserItem<'a>>,
    /// 总并发 · total concurrency
    call_line: i32,
    /// 最终截止时间 · final deadline
    #[schema(required = true, value_type = Option<String>, example = "2023-06-14 00:00:00")]
    deadline_at: Option<WallClock>,
    /// 分配时间(秒) · allocated seconds
    available_time: i64,
    /// 开始使用时间 · when use began
    #[schema(required = true, value_type = Option<String>, example = "2022-06-14 14:05:36")]
    begin_at: Option<WallClock>,
    /// 可用截止 = begin_at + available_time;与 deadline_at 较早者为服务结束 · usable until; service ends at the earlier of this and deadline_at
    #[schema(required = true, value_type = Option<String>, example = "2023-06-14 14:05:36")]
    available_at: Option<WallClock>,
    /// 线路名(内部) · internal line name
    #[schema(value_type = String)]
    caller_number: &'a str,
    /// 云节点 · the cloud node
    tenant: TenantItem<'a>,
    /// 创建时间 · created
    #[schema(value_type = String, example = "2022-06-14 14:03:19")]
    created_at: WallClock,
    /// 更新时间 · updated
    #[schema(value_type = String, example = "2022-07-26 15:19:16")]
    updated_at: WallClock,
    /// 描述 · description
    #[schema(required = true, value_type = Option<String>)]
    description_server: Option<&'a str>,
    /// 已废弃,恒为 null · deprecated by the vendor, always null
    #[schema(required = true, value_type = Option<String>)]
    qr_code: Option<()>,
    /// 主叫号码,字符串 · calling number, a string
    #[schema(required = true, value_type = Option<String>, example = "223")]
    call_number: Option<&'a str>,
}

/// 用户 · The user a line is allocated to.
#[derive(Serialize, ToSchema)]
pub struct UserItem<'a> {
    #[schema(value_type = String)]
    name: &'a str,
    #[schema(required = true, value_type = Option<String>)]
    email: Option<&'a str>,
    #[schema(required = true, value_type = Option<String>)]
    phone: Option<&'a str>,
    /// 伙伴 / 客户 / 子账户
    #[schema(value_type = String, example = "客户")]
    type_note: &'static str,
}

/// 云节点 · A cloud node.
#[derive(Serialize, ToSchema)]
pub struct TenantItem<'a> {
    id: Uuid,
    #[schema(value_type = String, example = "云节点一")]
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

/// 云节点 · An item of the tenant list.
#[derive(Serialize, ToSchema)]
pub struct TenantListItem<'a> {
    id: Uuid,
    #[schema(value_type = String, example = "云节点一")]
    name: &'a str,
    /// 是否默认云节点(旧接口所用) · the default node, which the legacy route serves
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn wall_clock_is_zero_padded_local_time() {
        let instant = Utc.with_ymd_and_hms(2023, 12, 31, 16, 5, 9).unwrap();
        let shown = WallClock::of(Some(instant), chrono_tz::Asia::Shanghai).unwrap();
        assert_eq!(shown.to_string(), "2024-01-01 00:05:09");
        assert_eq!(
            serde_json::to_string(&shown).unwrap(),
            "\"2024-01-01 00:05:09\""
        );
    }

    #[test]
    fn every_year_is_written_as_the_general_form_writes_it() {
        for year in [-1, 0, 7, 999, 1970, 9999, 10_000, 200_000] {
            let instant = Utc.with_ymd_and_hms(year, 2, 3, 4, 5, 6).unwrap();
            let shown = WallClock::of(Some(instant), chrono_tz::UTC).unwrap();
            assert_eq!(
                serde_json::to_string(&shown).unwrap(),
                format!("\"{shown}\""),
                "{year}"
            );
        }
    }
}
