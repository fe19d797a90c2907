//! The conformance suite of the bot's read-only queries: the `/stats` figures
//! ([`StatsSource`]) and a past order's request for "Retry" ([`OrderHistory`]). Each function
//! states one guarantee and panics when it does not hold. The fixture writes the users, orders
//! and jobs with SQL, so the suite needs no other adapter of the store.

use chrono::Utc;
use neurocards_core::conversation::{DailyStats, Draft, OrderHistory, StatsSource};
use neurocards_core::domain::{
    AspectRatio, GenerationOptions, OrderId, ProductId, TemplateId, UserId, VideoFormat,
};
use std::time::Duration;

/// What an order row asks for, stored verbatim (so a template that no longer parses can be
/// stored too).
#[derive(Debug, Clone)]
pub struct StoredRequest {
    pub product_id: Option<ProductId>,
    pub template: String,
    pub wishes: Option<String>,
    pub user_prompt: Option<String>,
}

/// The queries under test and ways to create the rows they read, back-dated by `age`.
#[async_trait::async_trait]
pub trait BotQueriesFixture: Send + Sync {
    type Queries: StatsSource + OrderHistory;

    fn queries(&self) -> &Self::Queries;

    /// A user with id `id`, created `age` ago.
    async fn user(&self, id: UserId, age: Duration);

    /// A product of `owner`.
    async fn product(&self, owner: UserId) -> ProductId;

    /// An order of `owner` asking for `request`, with `jobs` jobs, all created `age` ago.
    async fn order(
        &self,
        owner: UserId,
        request: &StoredRequest,
        jobs: u32,
        age: Duration,
    ) -> OrderId;

    /// Marks the order's next undelivered job delivered with `file_id`, finished `age` ago.
    async fn deliver(&self, order: OrderId, file_id: &str, age: Duration);
}

/// The format the fixture stores with every order: vertical, 10 s, no model chosen.
fn stored_format() -> VideoFormat {
    VideoFormat {
        model: None,
        options: GenerationOptions { aspect: AspectRatio::Portrait, duration_secs: 10 },
    }
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn request(product: Option<ProductId>) -> StoredRequest {
    StoredRequest {
        product_id: product,
        template: "ugc".to_owned(),
        wishes: Some("on a kitchen table".to_owned()),
        user_prompt: None,
    }
}

/// On an empty store every figure is zero.
pub async fn stats_of_an_empty_store_are_zero<F: BotQueriesFixture>(f: &F) {
    let stats = f.queries().daily(Utc::now() - chrono::Duration::days(1)).await.expect("stats");
    assert_eq!(stats, DailyStats::default());
}

/// `users_total` counts every user; `users_new`, `orders` and `jobs` count only what was
/// created since the given moment. No key health comes from the database.
pub async fn stats_count_what_was_created_since<F: BotQueriesFixture>(f: &F) {
    let (fresh, old, recent) = (UserId(101), UserId(102), UserId(103));
    f.user(fresh, Duration::ZERO).await;
    f.user(old, 2 * DAY).await;
    f.user(recent, HOUR).await;
    f.order(fresh, &request(None), 2, Duration::ZERO).await;
    f.order(old, &request(None), 3, 3 * DAY).await;
    f.order(old, &request(None), 4, 25 * HOUR).await;
    f.order(recent, &request(None), 1, HOUR).await;

    let stats = f.queries().daily(Utc::now() - chrono::Duration::days(1)).await.expect("stats");
    assert_eq!(stats, DailyStats { users_total: 3, users_new: 2, orders: 2, jobs: 3 });
    let all = f.queries().daily(Utc::now() - chrono::Duration::days(30)).await.expect("stats");
    assert_eq!((all.users_new, all.orders, all.jobs), (3, 4, 10));
    let none = f.queries().daily(Utc::now() + chrono::Duration::hours(1)).await.expect("stats");
    assert_eq!((none.users_total, none.users_new, none.orders, none.jobs), (3, 0, 0, 0));
}

/// A past order reads back as the draft it was placed from: its product, template, wishes and
/// approved prompt — each order its own.
pub async fn order_request_returns_what_the_order_asked_for<F: BotQueriesFixture>(f: &F) {
    let owner = UserId(201);
    f.user(owner, DAY).await;
    let product = f.product(owner).await;
    let other_product = f.product(owner).await;
    let with_wishes = f.order(owner, &request(Some(product)), 1, HOUR).await;
    let own_idea = StoredRequest {
        product_id: Some(other_product),
        template: "own_idea".to_owned(),
        wishes: None,
        user_prompt: Some("A slow pan over the mug, steam rising".to_owned()),
    };
    let with_prompt = f.order(owner, &own_idea, 2, Duration::ZERO).await;

    let first = f.queries().order_request(with_wishes, owner).await.expect("reads");
    assert_eq!(
        first,
        Some(Draft {
            product_id: product,
            template: TemplateId::parse("ugc").expect("template"),
            wishes: Some("on a kitchen table".to_owned()),
            user_prompt: None,
            format: Some(stored_format()),
        })
    );
    let second = f.queries().order_request(with_prompt, owner).await.expect("reads");
    assert_eq!(
        second,
        Some(Draft {
            product_id: other_product,
            template: TemplateId::parse("own_idea").expect("template"),
            wishes: None,
            user_prompt: Some("A slow pan over the mug, steam rising".to_owned()),
            format: Some(stored_format()),
        })
    );
}

/// "My videos": the owner's delivered videos, newest first, paged, with how many there are;
/// undelivered and other users' videos never appear.
pub async fn delivered_videos_are_paged_newest_first_and_only_the_owners<F: BotQueriesFixture>(
    f: &F,
) {
    let (owner, stranger) = (UserId(601), UserId(602));
    f.user(owner, DAY).await;
    f.user(stranger, DAY).await;
    let product = f.product(owner).await;
    let old = f.order(owner, &request(Some(product)), 2, DAY).await;
    let new = f.order(owner, &request(None), 3, HOUR).await;
    let theirs = f.order(stranger, &request(None), 1, HOUR).await;
    f.deliver(old, "file-old-1", Duration::from_secs(3 * 3600)).await;
    f.deliver(old, "file-old-2", Duration::from_secs(2 * 3600)).await;
    f.deliver(new, "file-new-1", Duration::from_secs(60)).await;
    f.deliver(theirs, "file-theirs", Duration::ZERO).await;
    // One job of `new` is still waiting, one never delivered: not in the gallery.

    let q = f.queries();
    let first = q.delivered_videos(owner, 0, 2).await.expect("first page");
    assert_eq!(first.total, 3);
    let files: Vec<&str> = first.videos.iter().map(|v| v.file_id.as_str()).collect();
    assert_eq!(files, ["file-new-1", "file-old-2"]);
    assert_eq!(first.videos[0].order_id, new);
    assert_eq!(first.videos[0].product_id, None);
    assert_eq!(first.videos[1].product_id, Some(product));
    assert_eq!(first.videos[1].template, "ugc");
    assert!(first.videos[0].delivered_at > first.videos[1].delivered_at);
    let second = q.delivered_videos(owner, 2, 2).await.expect("second page");
    let files: Vec<&str> = second.videos.iter().map(|v| v.file_id.as_str()).collect();
    assert_eq!((files, second.total), (vec!["file-old-1"], 3));
    let past = q.delivered_videos(owner, 10, 2).await.expect("past the end");
    assert!(past.videos.is_empty());
    let none = q.delivered_videos(UserId(603), 0, 5).await.expect("a user without videos");
    assert_eq!(none, neurocards_core::conversation::VideoPage::default());
}

/// Only the order's owner gets it back; another user, or an order id that does not exist,
/// gets nothing.
pub async fn order_request_is_only_for_the_owner<F: BotQueriesFixture>(f: &F) {
    let (owner, stranger) = (UserId(301), UserId(302));
    f.user(owner, DAY).await;
    f.user(stranger, DAY).await;
    let product = f.product(owner).await;
    let order = f.order(owner, &request(Some(product)), 1, HOUR).await;
    assert!(f.queries().order_request(order, owner).await.expect("reads").is_some());
    assert_eq!(f.queries().order_request(order, stranger).await.expect("reads"), None);
    let missing = OrderId(order.get() + 1_000);
    assert_eq!(f.queries().order_request(missing, owner).await.expect("reads"), None);
}

/// An order that cannot be placed again as it was — it has no stored product, or its template
/// no longer parses — reads as nothing, so "Retry" starts a fresh order.
pub async fn an_order_that_cannot_be_repeated_reads_as_nothing<F: BotQueriesFixture>(f: &F) {
    let owner = UserId(401);
    f.user(owner, DAY).await;
    let product = f.product(owner).await;
    let without_product = f.order(owner, &request(None), 1, HOUR).await;
    let bad_template =
        StoredRequest { template: "Not A Template!".to_owned(), ..request(Some(product)) };
    let unparseable = f.order(owner, &bad_template, 1, HOUR).await;
    assert_eq!(f.queries().order_request(without_product, owner).await.expect("reads"), None);
    assert_eq!(f.queries().order_request(unparseable, owner).await.expect("reads"), None);
}
