//! The documented parameters: the tenant id in the path, and the query rules of SPEC §2 with
//! the configured page-size bounds.

use serde_json::json;
use utoipa::openapi::KnownFormat;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, SchemaType, Type};

use crate::domain::query::PageLimits;

pub(super) fn uuid_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::String))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
}

fn integer(minimum: i64, maximum: i64, default: i64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::Integer))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(minimum))
        .maximum(Some(maximum))
        .default(Some(json!(default)))
}

fn query(name: &str, description: &str, schema: ObjectBuilder) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

pub(super) fn page_parameters(limits: PageLimits) -> Vec<Parameter> {
    vec![
        query(
            "page",
            "页码,≥ 1;超过最后一页返回空 data · page number, ≥ 1; past the last page, `data` is empty",
            integer(1, i64::MAX, 1),
        ),
        query(
            "per_page",
            &format!(
                "每页条数,1 到 {max} · page size, 1 to {max}",
                max = limits.max_per_page
            ),
            integer(1, limits.max_per_page, limits.default_per_page),
        ),
    ]
}

pub(super) fn filter_parameters() -> Vec<Parameter> {
    vec![
        query(
            "user_id",
            "只返回分配给该用户的线路 · only lines allocated to this user",
            uuid_schema(),
        ),
        query(
            "unused",
            "true/1:只返回未分配的线路;false/0:只返回已分配的;缺省返回全部 · \
             true/1: only unallocated lines; false/0: only allocated ones; absent: all",
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::String))
                .enum_values(Some(["true", "false", "1", "0"])),
        ),
    ]
}
