//! Keeping memory warm, so that the first requests after a restart or a reconnect are not a
//! herd of misses.

use std::sync::Arc;
use std::time::Duration;

use super::{DefaultTenant, Freshness, Keep, Standings, standings};
use crate::store::{self, Database};

/// Keeps memory warm: every partner's standing read in one statement whenever the feed listens
/// anew, and the default tenant read whenever a tenant may have moved it, so that neither the
/// legacy route (even a stranger's answer names the successor, SPEC §3) nor a herd of partners
/// arriving after a reconnect needs the database one request at a time.
pub struct Warmth {
    pub database: Database,
    pub freshness: Arc<Freshness>,
    pub standings: Arc<Standings>,
    pub default_tenant: Arc<DefaultTenant>,
}

impl Warmth {
    /// Whether every partner's standing was read.
    pub async fn standings(&self) -> bool {
        let ticket = self.freshness.ticket();
        let limit = standings::MAX_PARTNERS as i64;
        let Ok(all) = store::partners::all_standings(&self.database, limit).await else {
            return false;
        };
        for (partner, standing) in all {
            self.standings.keep(partner, standing, ticket);
        }
        true
    }

    /// Whether the default tenant was read.
    pub async fn default_tenant(&self) -> bool {
        let read = async |_| {
            let id = store::tenants::default_tenant_id(&self.database).await?;
            Ok::<_, sqlx::Error>((id, Keep::Yes))
        };
        self.default_tenant
            .read_and_keep(&(), self.freshness.ticket(), read)
            .await
            .is_ok()
    }

    /// Reads again what the feed outdates; a failed read is tried again every second.
    pub async fn keep(self) {
        const RETRY: Duration = Duration::from_secs(1);
        let mut relistened = self.freshness.relistened();
        let mut tenants_outdated = self.freshness.tenants_outdated();
        let (mut standings_known, mut default_known) = (true, true);
        loop {
            tokio::select! {
                Ok(()) = relistened.changed() => standings_known = false,
                Ok(()) = tenants_outdated.changed() => default_known = false,
                () = tokio::time::sleep(RETRY), if !(standings_known && default_known) => {}
            }
            relistened.mark_unchanged();
            tenants_outdated.mark_unchanged();
            if !standings_known {
                standings_known = self.standings().await;
            }
            if !default_known {
                default_known = self.default_tenant().await;
            }
        }
    }
}
