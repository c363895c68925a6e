//! The success bodies, field for field in the vendor's key order (SPEC §2): serde writes struct
//! fields in declaration order, so the order below is the contract.

use actix_web::web::Bytes;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::wall_clock::WallClock;
use crate::domain::caller_lines::{CallerLine, LineUser};
use crate::domain::page::PageMeta;
use crate::domain::query::PageRequest;
use crate::domain::tenants::{Tenant, TenantSummary};
use crate::http::error::ApiError;

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
    meta: PageMeta,
    data: Vec<T>,
}

/// The JSON text of the 200 envelope, for responses rendered once and sent many times.
pub fn list_body<T: Serialize>(
    message: &'static str,
    page: PageRequest,
    total: i64,
    data: Vec<T>,
) -> Result<Bytes, ApiError> {
    let body = ListBody {
        code: 200,
        status: "success",
        message,
        meta: PageMeta::new(page, total),
        data,
    };
    // Sized for a typical line (~650 bytes) so a page is written without regrowing, then cut
    // to its length: a kept page should hold no spare capacity.
    let mut json = Vec::with_capacity(256 + 700 * body.data.len());
    serde_json::to_writer(&mut json, &body).map_err(|error| ApiError::Internal(error.into()))?;
    json.shrink_to_fit();
    Ok(json.into())
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
        let wall = |instant: DateTime<Utc>| WallClock::new(instant, zone);
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
