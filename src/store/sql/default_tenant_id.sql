select id from tenants where is_default and deleted_at is null
