//! [`Products`] on the embedded store. Every read and write is scoped to the owner: a product
//! id from another user's button finds nothing.

use super::error::accounts_error;
use super::time::from_ms;
use super::SqliteStore;
use crate::domain::{ImageMime, ProductId, UserId};
use crate::ports::{AccountsError, NewProduct, PhotoRef, Product, Products};
use anyhow::anyhow;

/// The embedded store's [`Products`].
#[derive(Debug, Clone)]
pub struct SqliteProducts {
    store: SqliteStore,
}

impl SqliteProducts {
    /// Products on `store` (a clone of it: every clone is the same store).
    pub fn new(store: &SqliteStore) -> Self {
        Self { store: store.clone() }
    }
}

fn mime_str(m: ImageMime) -> &'static str {
    match m {
        ImageMime::Jpeg => "jpeg",
        ImageMime::Png => "png",
        ImageMime::Webp => "webp",
    }
}

fn parse_mime(s: &str) -> Result<ImageMime, AccountsError> {
    match s {
        "jpeg" => Ok(ImageMime::Jpeg),
        "png" => Ok(ImageMime::Png),
        "webp" => Ok(ImageMime::Webp),
        other => Err(AccountsError::Unexpected(anyhow!(
            "products.photo_mime holds an unknown value {other:?}"
        ))),
    }
}

#[async_trait::async_trait]
impl Products for SqliteProducts {
    async fn create(&self, product: &NewProduct) -> Result<ProductId, AccountsError> {
        // Inserted only when the owner exists: an unknown owner is a typed error, not a
        // foreign-key failure.
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO products (user_id, photo_file_id, photo_mime, marketplace_url, description) \
             SELECT id, ?2, ?3, ?4, ?5 FROM users WHERE id = ?1 \
             RETURNING id",
        )
        .bind(product.user_id.get())
        .bind(product.photo.as_ref().map(|p| p.telegram_file_id.as_str()))
        .bind(product.photo.as_ref().map(|p| mime_str(p.mime)))
        .bind(product.marketplace_url.as_deref())
        .bind(&product.description)
        .fetch_optional(self.store.writer())
        .await
        .map_err(accounts_error)?;
        id.map(ProductId).ok_or(AccountsError::UnknownUser(product.user_id))
    }

    async fn get(&self, id: ProductId, owner: UserId) -> Result<Option<Product>, AccountsError> {
        type Row = (i64, i64, Option<String>, Option<String>, Option<String>, String, i64);
        let row: Option<Row> = sqlx::query_as(
            "SELECT id, user_id, photo_file_id, photo_mime, marketplace_url, description, \
                    created_at \
             FROM products WHERE id = ?1 AND user_id = ?2",
        )
        .bind(id.get())
        .bind(owner.get())
        .fetch_optional(self.store.reader())
        .await
        .map_err(accounts_error)?;
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
            created_at: from_ms(created_at),
        }))
    }

    async fn set_description(
        &self,
        id: ProductId,
        owner: UserId,
        description: &str,
    ) -> Result<bool, AccountsError> {
        let updated =
            sqlx::query("UPDATE products SET description = ?3 WHERE id = ?1 AND user_id = ?2")
                .bind(id.get())
                .bind(owner.get())
                .bind(description)
                .execute(self.store.writer())
                .await
                .map_err(accounts_error)?
                .rows_affected();
        Ok(updated > 0)
    }
}
