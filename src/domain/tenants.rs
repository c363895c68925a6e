//! Cloud nodes (云节点), called tenants (SPEC §1).

use uuid::Uuid;

/// A tenant as a caller line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
}

/// A tenant as the partner's tenant list shows it (SPEC §2b).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSummary {
    pub id: Uuid,
    pub name: String,
    /// The tenant the legacy route serves.
    pub is_default: bool,
}
