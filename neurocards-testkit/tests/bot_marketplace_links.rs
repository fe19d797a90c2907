//! A marketplace link instead of a photo: the bot takes the product page's main image from a
//! local fake marketplace, shows it for confirmation before anything is stored or charged, and
//! asks for a photo when the link gives none. Through the real conversation, on both stores.

use neurocards_testkit::bot_harness::{test_settings, BotHarness, JPEG};
use neurocards_testkit::both_stores;
use neurocards_testkit::fake_marketplace::{FakeMarketplace, ProductPage};
use neurocards_testkit::fake_telegram::{FakeTelegram, SentKind, TgUser};
use neurocards_testkit::system::TestSystem;
use std::sync::Arc;
use std::time::Duration;

const MUG: &str = "https://www.ozon.ru/product/mug-123/";

async fn products_of(h: &BotHarness, user: &TgUser) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM products WHERE user_id = {}", user.id);
    let (n,): (i64,) = h.store.row(&sql).await;
    n
}

both_stores! {
    async fn a_link_s_image_is_confirmed_then_ordered_and_delivered(store) {
        let mut system = TestSystem::start(store).await;
        system.start_worker();
        let shop = FakeMarketplace::start().await;
        shop.add("/product/mug-123/", ProductPage::WithImage(JPEG.to_vec()));
        let h = BotHarness::with_marketplace(
            system.telegram.clone(),
            system.store.clone(),
            test_settings(),
            Arc::new(shop.images()),
        )
        .await;
        let user = TgUser::new(80_001).language("en");
        h.onboard(&user).await;
        h.grant(&user, 5).await;
        h.press(&user, "create").await;
        h.say(&user, &format!("Here it is: {MUG}")).await;

        // The page's image, shown with "Yes" — nothing stored or charged yet.
        let shown = h.last(&user);
        assert!(matches!(shown.kind, SentKind::Photo(_)), "{:?}", shown.kind);
        assert!(shown.text.contains("main image of the product page"), "{}", shown.text);
        assert!(shown.callback_data().contains(&"lnk:ok"));
        assert!(shown.callback_data().contains(&"create"), "or send an own photo");
        assert_eq!(shop.page_reads(), 1);
        assert_eq!(products_of(&h, &user).await, 0);
        assert_eq!(h.balance(&user).await, 5);

        // A text in between gets the step's hint and its buttons again.
        h.say(&user, "hm").await;
        assert!(h.last(&user).callback_data().contains(&"lnk:ok"));

        h.press(&user, "lnk:ok").await;
        let asked = h.last(&user).text;
        assert!(asked.contains("Product image saved") && asked.contains("describe the product"));
        h.say(&user, "Ceramic mug, 350 ml, dishwasher safe").await;
        h.press(&user, "tpl:ugc").await;
        h.press(&user, "skip").await;
        h.press(&user, "cnt:1").await;
        let start = h.button_data(&user, "🚀");
        h.press(&user, &start).await;

        // The product is the confirmed image, with the link beside it.
        let sql = format!(
            "SELECT photo_file_id, marketplace_url FROM products WHERE user_id = {}",
            user.id
        );
        let (photo, link): (Option<String>, Option<String>) = h.store.row(&sql).await;
        assert_eq!(photo, shown.file_id, "the image Telegram keeps for the shown photo");
        assert_eq!(link.as_deref(), Some(MUG));

        // The worker makes the video from it; the order costs its one credit, no refund.
        let delivered = system
            .telegram
            .wait_until(Duration::from_secs(60), |tg| !tg.videos_to(user.id).is_empty())
            .await;
        assert!(delivered, "{:?}", system.telegram.texts_to(user.id));
        system.wait_all_terminal(Duration::from_secs(30)).await;
        assert_eq!(h.balance(&user).await, 4);
        system.assert_invariants().await;
    }

    async fn a_link_without_a_usable_image_asks_for_a_photo_and_charges_nothing(store) {
        let shop = FakeMarketplace::start().await;
        shop.add("/catalog/1/detail.aspx", ProductPage::WithoutImage);
        shop.add("/catalog/2/detail.aspx", ProductPage::WithNonImage(b"<html>".to_vec()));
        let telegram = FakeTelegram::start().await;
        let images = Arc::new(shop.images());
        let h = BotHarness::with_marketplace(telegram, store, test_settings(), images).await;
        for (user, expected, describe) in [
            (TgUser::new(80_011).language("en"), "couldn't take a product image", "describe the"),
            (TgUser::new(80_012).language("ru"), "Не получилось взять картинку", "опиши товар"),
        ] {
            h.onboard(&user).await;
            h.grant(&user, 5).await;
            h.press(&user, "create").await;
            for link in [
                "https://www.wildberries.ru/catalog/1/detail.aspx",
                "https://www.wildberries.ru/catalog/2/detail.aspx",
                "https://www.wildberries.ru/catalog/3/detail.aspx",
            ] {
                h.say(&user, link).await;
                let answer = h.last(&user);
                assert!(answer.text.contains(expected), "{link}: {}", answer.text);
                assert!(matches!(answer.kind, SentKind::Text), "no image shown for {link}");
            }
            assert_eq!(products_of(&h, &user).await, 0, "nothing stored from a failed link");
            // Still at the photo step: a real photo goes on to the description.
            h.send_photo(&user).await;
            assert!(h.last(&user).text.contains(describe), "{}", h.last(&user).text);
            assert_eq!(h.balance(&user).await, 5, "nothing charged");
            assert_eq!(h.orders_of(&user).await, 0);
        }
    }

    async fn russian_sellers_confirm_a_link_or_send_their_own_photo(store) {
        let shop = FakeMarketplace::start().await;
        shop.add("/product/42", ProductPage::WithImage(JPEG.to_vec()));
        let telegram = FakeTelegram::start().await;
        let images = Arc::new(shop.images());
        let h = BotHarness::with_marketplace(telegram, store, test_settings(), images).await;
        let user = TgUser::new(80_021).language("ru");
        h.onboard(&user).await;
        h.press(&user, "create").await;
        h.say(&user, "market.yandex.ru/product/42").await;
        let shown = h.last(&user);
        assert!(shown.text.contains("главная картинка со страницы товара"), "{}", shown.text);
        let labels: Vec<String> = shown.all_buttons().iter().map(|b| b.text.clone()).collect();
        assert!(labels.iter().any(|l| l.contains("Да, с этой картинкой")), "{labels:?}");
        assert!(labels.iter().any(|l| l.contains("Пришлю своё фото")), "{labels:?}");

        // "Send my own photo": back to the photo question; the own photo replaces the link.
        h.press(&user, "create").await;
        h.send_photo(&user).await;
        assert!(h.last(&user).text.contains("опиши товар"), "{}", h.last(&user).text);
        // The old "Yes" no longer applies.
        h.press_on(&user, shown.message_id, "lnk:ok").await;
        h.say(&user, "Кружка керамическая, 350 мл").await;
        let sql = format!("SELECT marketplace_url FROM products WHERE user_id = {}", user.id);
        let (link,): (Option<String>,) = h.store.row(&sql).await;
        assert_eq!(link, None, "an own photo carries no link");
    }
}
