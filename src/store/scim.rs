//! Reads for the inbound SCIM endpoint: one resource by id, and filtered, paged listings.
//! Filters arrive as a parameterised SQL condition built by `scim::filter`; values never
//! reach the SQL text.

use serde_json::Value;

use super::{Pool, Store, StoreError, on_pool};
use crate::scim_wire::ResourceType;

/// A bind parameter of a filter's SQL.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    Int(i64),
    Bool(bool),
}

/// The SQL dialect of the store (only substring search differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A condition over the table aliased `r`, with placeholders numbered from `$2`
/// (`$1` is the workspace id).
#[derive(Debug, Clone, PartialEq)]
pub struct SqlFilter {
    pub condition: String,
    pub params: Vec<Param>,
}

/// A stored resource: its document (without id and meta) and what meta is built from.
#[derive(Debug, Clone)]
pub struct StoredResource {
    pub id: String,
    pub doc: Value,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

type Row = (String, String, i64, i64, i64);

fn table(rt: ResourceType) -> &'static str {
    match rt {
        ResourceType::User => "workspace_users",
        ResourceType::Group => "workspace_groups",
    }
}

fn to_resource(row: Row) -> Result<StoredResource, StoreError> {
    let (id, doc, version, created_at, updated_at) = row;
    let doc = serde_json::from_str(&doc)
        .map_err(|e| StoreError::Invalid(format!("stored document of {id} is not JSON: {e}")))?;
    Ok(StoredResource {
        id,
        doc,
        version,
        created_at,
        updated_at,
    })
}

impl Store {
    pub fn dialect(&self) -> Dialect {
        match self.pool {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Postgres(_) => Dialect::Postgres,
        }
    }

    pub async fn scim_get(
        &self,
        rt: ResourceType,
        workspace_id: &str,
        id: &str,
    ) -> Result<Option<StoredResource>, StoreError> {
        let sql = format!(
            "SELECT id, doc, version, created_at, updated_at FROM {} WHERE workspace_id = $1 AND id = $2",
            table(rt)
        );
        let row: Option<Row> = on_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(workspace_id)
            .bind(id)
            .fetch_optional(pool)
            .await?);
        row.map(to_resource).transpose()
    }

    /// One page of resources matching `filter`, in a stable order (by id), and the total.
    pub async fn scim_list(
        &self,
        rt: ResourceType,
        workspace_id: &str,
        filter: Option<&SqlFilter>,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<StoredResource>), StoreError> {
        let condition = filter
            .map(|f| format!(" AND ({})", f.condition))
            .unwrap_or_default();
        // The table name and the condition are ours; every value is a bound parameter.
        let count_sql = format!(
            "SELECT COUNT(*) FROM {} r WHERE r.workspace_id = $1{condition}",
            table(rt)
        );
        // LIMIT and OFFSET are written as literals (numbers of ours, never request text):
        // SQLite re-prepares a statement whose LIMIT is a parameter each time it runs, which
        // cost Okta's `userName eq` lookup a fifth of its time. The first page, which every
        // lookup asks for, stays prepared; later pages are prepared once each.
        let page_sql = format!(
            "SELECT r.id, r.doc, r.version, r.created_at, r.updated_at FROM {} r WHERE r.workspace_id = $1{condition} \
             ORDER BY r.id LIMIT {} OFFSET {}",
            table(rt),
            limit.max(0),
            offset.max(0)
        );
        let params = filter.map(|f| f.params.clone()).unwrap_or_default();
        let (total, rows): (i64, Vec<Row>) = on_pool!(self, pool => {
            let mut count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count_sql)).bind(workspace_id);
            let mut page = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(page_sql))
                .persistent(offset == 0)
                .bind(workspace_id);
            for p in &params {
                match p {
                    Param::Text(s) => {
                        count = count.bind(s.clone());
                        page = page.bind(s.clone());
                    }
                    Param::Int(i) => {
                        count = count.bind(*i);
                        page = page.bind(*i);
                    }
                    Param::Bool(b) => {
                        count = count.bind(*b);
                        page = page.bind(*b);
                    }
                }
            }
            let rows: Vec<Row> = if limit > 0 { page.fetch_all(pool).await? } else { Vec::new() };
            // A short, non-empty page (or a short first page) ends the results: its length
            // gives the total without counting. Okta's `userName eq` lookups are such pages.
            let short = rows.len() < usize::try_from(limit).unwrap_or(usize::MAX);
            let total = if limit > 0 && short && (offset == 0 || !rows.is_empty()) {
                offset + i64::try_from(rows.len()).unwrap_or(i64::MAX)
            } else {
                count.fetch_one(pool).await?
            };
            (total, rows)
        });
        let resources = rows
            .into_iter()
            .map(to_resource)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((total, resources))
    }
}
