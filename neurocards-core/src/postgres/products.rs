//! [`Products`] on PostgreSQL. Every read and write is scoped to the owner: a product id from
//! another user's button finds nothing.

use super::codec::{mime_str, parse_mime};
use crate::domain::{ProductId, UserId};
use crate::ports::{AccountsError, NewProduct, PhotoRef, Product, Products};
use crate::postgres::error::sqlstate;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// The PostgreSQL [`Products`].
#[derive(Debug, Clone)]
pub struct PgProducts {
    pool: PgPool,
}

impl PgProducts {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl Products for PgProducts {
    async fn create(&self, product: &NewProduct) -> Result<ProductId, AccountsError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO products (user_id, photo_file_id, photo_mime, marketplace_url, description) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(product.user_id.get())
        .bind(product.photo.as_ref().map(|p| p.telegram_file_id.as_str()))
        .bind(product.photo.as_ref().map(|p| mime_str(p.mime)))
        .bind(product.marketplace_url.as_deref())
        .bind(&product.description)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match sqlstate(&e).as_deref() {
            Some("23503") => AccountsError::UnknownUser(product.user_id),
            _ => e.into(),
        })?;
        Ok(ProductId(id))
    }

    async fn get(&self, id: ProductId, owner: UserId) -> Result<Option<Product>, AccountsError> {
        type Row =
            (i64, i64, Option<String>, Option<String>, Option<String>, String, DateTime<Utc>);
        let row: Option<Row> = sqlx::query_as(
            "SELECT id, user_id, photo_file_id, photo_mime, marketplace_url, description, \
                    created_at \
             FROM products WHERE id = $1 AND user_id = $2",
        )
        .bind(id.get())
        .bind(owner.get())
        .fetch_optional(&self.pool)
        .await?;
        let Some((id, user_id, file_id, mime, marketplace_url, description, created_at)) = row
        else {
            return Ok(None);
        };
        let photo = match (file_id, mime) {
            (Some(telegram_file_id), Some(mime)) => {
                Some(PhotoRef { telegram_file_id, mime: parse_mime(&mime)? })
            }
            _ => None,
        };
        Ok(Some(Product {
            id: ProductId(id),
            user_id: UserId(user_id),
            photo,
            marketplace_url,
            description,
            created_at,
        }))
    }

    async fn set_description(
        &self,
        id: ProductId,
        owner: UserId,
        description: &str,
    ) -> Result<bool, AccountsError> {
        let updated =
            sqlx::query("UPDATE products SET description = $3 WHERE id = $1 AND user_id = $2")
                .bind(id.get())
                .bind(owner.get())
                .bind(description)
                .execute(&self.pool)
                .await?
                .rows_affected();
        Ok(updated > 0)
    }
}
