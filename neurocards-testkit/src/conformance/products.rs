//! The [`Products`] conformance suite. Each function states one guarantee and panics when it
//! does not hold. A backend's tests build a fresh [`ProductsFixture`] per test and call them.

use super::accounts::{fresh_user_id, new_user};
use neurocards_core::domain::{Credits, ImageMime, ProductId, UserId};
use neurocards_core::ports::{Accounts, AccountsError, NewProduct, PhotoRef, Products};

/// The products store and the accounts store its owners live in, on one backend.
pub trait ProductsFixture: Send + Sync {
    type Products: Products;
    type Accounts: Accounts;

    fn products(&self) -> &Self::Products;

    fn accounts(&self) -> &Self::Accounts;
}

async fn owner<F: ProductsFixture>(f: &F) -> UserId {
    let id = fresh_user_id();
    f.accounts().register(&new_user(id, "owner"), Credits::ZERO).await.expect("register");
    id
}

fn lamp(user: UserId) -> NewProduct {
    NewProduct {
        user_id: user,
        photo: Some(PhotoRef { telegram_file_id: "AgAC-file".to_owned(), mime: ImageMime::Png }),
        marketplace_url: Some("https://www.wildberries.ru/catalog/1/detail.aspx".to_owned()),
        description: "A lamp".to_owned(),
    }
}

/// A created product reads back as it was saved, for its owner.
pub async fn saved_product_reads_back<F: ProductsFixture>(f: &F) {
    let user = owner(f).await;
    let new = lamp(user);
    let id = f.products().create(&new).await.expect("create");
    let got = f.products().get(id, user).await.expect("get").expect("exists");
    assert_eq!(got.id, id);
    assert_eq!(got.user_id, user);
    assert_eq!(got.photo, new.photo);
    assert_eq!(got.marketplace_url, new.marketplace_url);
    assert_eq!(got.description, "A lamp");
    let age = chrono::Utc::now() - got.created_at;
    assert!(age.num_seconds().abs() < 60, "created now");
}

/// Every photo type and a product without photo or link round-trip.
pub async fn photos_and_bare_products_round_trip<F: ProductsFixture>(f: &F) {
    let user = owner(f).await;
    for mime in [ImageMime::Jpeg, ImageMime::Png, ImageMime::Webp] {
        let new = NewProduct {
            photo: Some(PhotoRef { telegram_file_id: format!("file-{mime:?}"), mime }),
            ..lamp(user)
        };
        let id = f.products().create(&new).await.expect("create");
        let got = f.products().get(id, user).await.expect("get").expect("exists");
        assert_eq!(got.photo, new.photo);
    }
    let bare = NewProduct {
        user_id: user,
        photo: None,
        marketplace_url: None,
        description: String::new(),
    };
    let id = f.products().create(&bare).await.expect("create without photo");
    let got = f.products().get(id, user).await.expect("get").expect("exists");
    assert_eq!((got.photo, got.marketplace_url, got.description), (None, None, String::new()));
}

/// Products get distinct ids, each reading back its own content.
pub async fn products_get_distinct_ids<F: ProductsFixture>(f: &F) {
    let user = owner(f).await;
    let a = f.products().create(&lamp(user)).await.expect("create");
    let b = f
        .products()
        .create(&NewProduct { description: "A chair".to_owned(), ..lamp(user) })
        .await
        .expect("create");
    assert_ne!(a, b);
    assert_eq!(f.products().get(a, user).await.expect("get").expect("a").description, "A lamp");
    assert_eq!(f.products().get(b, user).await.expect("get").expect("b").description, "A chair");
}

/// Another user neither sees nor edits the product; the owner edits it.
pub async fn products_belong_to_their_owner<F: ProductsFixture>(f: &F) {
    let user = owner(f).await;
    let stranger = owner(f).await;
    let id = f.products().create(&lamp(user)).await.expect("create");
    assert!(f.products().get(id, stranger).await.expect("get").is_none(), "not someone else's");
    assert!(!f.products().set_description(id, stranger, "mine now").await.expect("update"));
    assert_eq!(
        f.products().get(id, user).await.expect("get").expect("exists").description,
        "A lamp"
    );
    assert!(f.products().set_description(id, user, "A brass lamp").await.expect("update"));
    let got = f.products().get(id, user).await.expect("get").expect("exists");
    assert_eq!(got.description, "A brass lamp");
    assert_eq!(got.photo, lamp(user).photo, "only the description changed");
}

/// A product id that does not exist finds nothing and updates nothing.
pub async fn unknown_products_find_nothing<F: ProductsFixture>(f: &F) {
    let user = owner(f).await;
    let missing = ProductId(9_999_999);
    assert!(f.products().get(missing, user).await.expect("get").is_none());
    assert!(!f.products().set_description(missing, user, "x").await.expect("update"));
}

/// A product for a user who does not exist is `UnknownUser`, and nothing is stored.
pub async fn product_for_unknown_user_is_refused<F: ProductsFixture>(f: &F) {
    let nobody = fresh_user_id();
    let refused = f.products().create(&lamp(nobody)).await;
    assert!(matches!(refused, Err(AccountsError::UnknownUser(u)) if u == nobody));
    let user = owner(f).await;
    let next = f.products().create(&lamp(user)).await.expect("create");
    assert!(f.products().get(next, nobody).await.expect("get").is_none());
}
