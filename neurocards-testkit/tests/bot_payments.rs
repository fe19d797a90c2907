//! Buying credits through the real conversation, against the Telegram fake (Stars) and the
//! YooKassa fake, on both stores: invoice → pre-checkout → payment → balance; every payment
//! credited once however it is repeated; lost updates credited by reconciliation; refusals with
//! their reason; refunds; referral bonuses.

use futures::future::join_all;
use neurocards_core::domain::UserId;
use neurocards_core::payments::referral::start_argument;
use neurocards_core::payments::stars::StarsReconciler;
use neurocards_core::payments::PackCatalogue;
use neurocards_core::ports::{ChargeSource, Mismatch};
use neurocards_core::yookassa::IpAllowList;
use neurocards_testkit::bot_harness::{test_settings, BotHarness, PaymentsSetup};
use neurocards_testkit::both_stores;
use neurocards_testkit::fake_telegram::{SentInvoice, TgUser};
use neurocards_testkit::fake_yookassa::FakeYooKassa;
use std::time::Duration;

const ADMIN: i64 = 900;

fn admin_settings() -> neurocards_core::conversation::ConversationSettings {
    let mut settings = test_settings();
    settings.admin_ids.insert(UserId(ADMIN));
    settings
}

/// Opens "Buy credits", presses the Stars button of `pack` and returns the invoice sent.
async fn open_invoice(h: &BotHarness, user: &TgUser, pack: &str) -> SentInvoice {
    h.say(user, "/buy").await;
    let list = h.last(user);
    let data = format!("buy:s:{pack}");
    assert!(list.callback_data().contains(&data.as_str()), "the pack list offers {pack}: {list:?}");
    let before = h.telegram.invoices().len();
    h.press(user, &data).await;
    let invoices = h.telegram.invoices();
    assert_eq!(invoices.len(), before + 1, "one invoice per press");
    invoices.last().cloned().expect("an invoice")
}

/// Pre-checkout (answered yes) and the payment with its update; returns the charge id.
async fn pay(h: &BotHarness, user: &TgUser, invoice: &SentInvoice) -> String {
    let amount = u32::try_from(invoice.total_amount()).expect("stars");
    h.deliver(h.telegram.pre_checkout_update(user, &invoice.payload, amount)).await;
    let answer = h.telegram.pre_checkout_answers().last().cloned().expect("answered");
    assert!(answer.ok, "pre-checkout accepted: {answer:?}");
    let payment = h.telegram.pay_stars_without_update(user, &invoice.payload, amount);
    h.deliver(h.telegram.successful_payment_update(&payment)).await;
    payment.charge_id
}

both_stores! {
    async fn stars_purchase_end_to_end(store) {
        let h = BotHarness::start(store, test_settings()).await;
        let user = TgUser::new(101);
        h.onboard(&user).await;
        h.say(&user, "/buy").await;
        let list = h.last(&user);
        assert!(list.text.contains("450"), "prices in Stars: {}", list.text);
        assert!(!list.callback_data().iter().any(|d| d.starts_with("buy:y:")), "no YooKassa buttons when it is off");

        let invoice = open_invoice(&h, &user, "pack10").await;
        assert_eq!(invoice.currency, "XTR");
        assert_eq!(invoice.prices.len(), 1);
        assert_eq!(invoice.total_amount(), 450);
        assert_eq!(invoice.provider_token, None);
        assert!(invoice.payload.starts_with("p:") && invoice.payload.len() <= 128);

        pay(&h, &user, &invoice).await;
        assert_eq!(h.balance(&user).await, 10);
        let confirmation = h.last(&user);
        assert!(confirmation.text.contains("+10") && confirmation.text.contains("10"), "{}", confirmation.text);

        // The account page shows the balance; /stats shows today's purchase.
        let admin = TgUser::new(ADMIN);
        let admin_h = BotHarness::with_telegram(h.telegram.clone(), h.store.clone(), admin_settings()).await;
        admin_h.onboard(&admin).await;
        admin_h.say(&admin, "/stats").await;
        let stats = admin_h.last(&admin).text;
        assert!(stats.contains("Telegram Stars · pack10 × 1 = 450 ⭐"), "{stats}");
        assert!(h.ctx_metrics().contains("neurocards_purchases_total{rail=\"stars\",pack=\"pack10\"} 1"));
        h.store.assert_invariants().await;
    }

    async fn a_payment_delivered_many_times_to_two_replicas_is_credited_once(store) {
        let h = BotHarness::start(store, test_settings()).await;
        let replica = h.restart().await;
        let user = TgUser::new(102);
        h.onboard(&user).await;
        let invoice = open_invoice(&h, &user, "pack5").await;
        h.deliver(h.telegram.pre_checkout_update(&user, &invoice.payload, 250)).await;
        let payment = h.telegram.pay_stars_without_update(&user, &invoice.payload, 250);
        // The same update redelivered, and the same charge in fresh updates, 20 in all, at once.
        let same = h.telegram.successful_payment_update(&payment);
        let mut updates = vec![same.clone(); 10];
        updates.extend((0..10).map(|_| h.telegram.successful_payment_update(&payment)));
        let deliveries = updates.into_iter().enumerate().map(|(i, u)| {
            let target = if i % 2 == 0 { &h } else { &replica };
            target.deliver(u)
        });
        join_all(deliveries).await;
        assert_eq!(h.balance(&user).await, 5, "credited once");
        let confirmations = h.telegram.texts_to(user.id).iter().filter(|t| t.contains("+5")).count();
        assert_eq!(confirmations, 1, "one confirmation");
        let charge = h.payments.payments.charge(neurocards_core::domain::Rail::Stars, &payment.charge_id).await.expect("readable").expect("recorded");
        assert_eq!(charge.credits.get(), 5);
        // A second payment of the same invoice is real money: credited under its own charge.
        let again = h.telegram.pay_stars_without_update(&user, &invoice.payload, 250);
        h.deliver(h.telegram.successful_payment_update(&again)).await;
        assert_eq!(h.balance(&user).await, 10);
        h.store.assert_invariants().await;
    }

    async fn a_payment_whose_update_was_lost_is_credited_by_reconciliation(store) {
        let h = BotHarness::start(store, test_settings()).await;
        let user = TgUser::new(103);
        h.onboard(&user).await;
        let invoice = open_invoice(&h, &user, "pack10").await;
        h.deliver(h.telegram.pre_checkout_update(&user, &invoice.payload, 450)).await;
        // The bot crashed after Telegram confirmed the update: only the transaction remains.
        let payment = h.telegram.pay_stars_without_update(&user, &invoice.payload, 450);
        // And a payment naming nothing of ours, which reconciliation stores flagged.
        let stranger = h.telegram.pay_stars_without_update(&user, "someone-elses-payload", 7);
        assert_eq!(h.balance(&user).await, 0);

        let reconciler = StarsReconciler { bot: h.bot.clone(), service: h.payments.clone(), texts: h.ctx.texts };
        let report = reconciler.run_once().await.expect("reconciled");
        assert_eq!((report.read, report.credited, report.flagged, report.foreign), (2, 1, 1, 1), "the stranger's payment is flagged, not credited");
        assert_eq!(h.balance(&user).await, 10);
        assert!(h.last(&user).text.contains("+10"), "the payer is told");
        let again = reconciler.run_once().await.expect("reconciled");
        assert_eq!(again.credited, 0, "a second pass credits nothing");
        // The update arrives late: nothing more, and no second message.
        let messages = h.message_count(&user);
        h.deliver(h.telegram.successful_payment_update(&payment)).await;
        assert_eq!(h.balance(&user).await, 10);
        assert_eq!(h.message_count(&user), messages);
        let charge = h.payments.payments.charge(neurocards_core::domain::Rail::Stars, &payment.charge_id).await.expect("readable").expect("recorded");
        assert_eq!(charge.source, ChargeSource::Reconciliation);
        let flagged = h.payments.payments.charge(neurocards_core::domain::Rail::Stars, &stranger.charge_id).await.expect("readable").expect("kept for the operator");
        assert_eq!((flagged.mismatch, flagged.credits.get()), (Some(Mismatch::UnknownPurchase), 0));
        h.store.assert_invariants().await;
    }

    async fn pre_checkout_refuses_with_a_reason(store) {
        let h = BotHarness::start(store.clone(), test_settings()).await;
        let user = TgUser::new(104);
        let other = TgUser::new(105).language("en");
        h.onboard(&user).await;
        h.onboard(&other).await;
        let invoice = open_invoice(&h, &user, "pack10").await;
        let refusal = |h: &BotHarness| h.telegram.pre_checkout_answers().last().cloned().expect("answered");

        h.deliver(h.telegram.pre_checkout_update(&user, "p:00000000000000000000000000000000", 450)).await;
        let a = refusal(&h);
        assert!(!a.ok && a.error_message.as_deref().is_some_and(|m| m.contains("Открой покупку заново")), "{a:?}");
        h.deliver(h.telegram.pre_checkout_update(&user, &invoice.payload, 449)).await;
        let a = refusal(&h);
        assert!(!a.ok && a.error_message.as_deref().is_some_and(|m| m.contains("Цена изменилась")), "{a:?}");
        h.deliver(h.telegram.pre_checkout_update(&other, &invoice.payload, 450)).await;
        let a = refusal(&h);
        assert!(!a.ok && a.error_message.as_deref().is_some_and(|m| m.contains("another user")), "in the payer's language: {a:?}");

        // The catalogue changed since the invoice: a new price, or the pack withdrawn.
        let repriced = PackCatalogue::from_toml(
            "[[pack]]\nid = \"pack10\"\ncredits = 10\nstars = 500\nname = { ru = \"10\", en = \"10\" }\n",
        ).expect("valid");
        let h2 = BotHarness::start_with_payments(store.clone(), test_settings(), PaymentsSetup { catalogue: repriced, ..PaymentsSetup::default() }).await;
        h2.deliver(h2.telegram.pre_checkout_update(&user, &invoice.payload, 450)).await;
        let a = refusal(&h2);
        assert!(!a.ok && a.error_message.as_deref().is_some_and(|m| m.contains("Цена изменилась")), "{a:?}");
        let withdrawn = PackCatalogue::from_toml("").expect("valid");
        let h3 = BotHarness::start_with_payments(store.clone(), test_settings(), PaymentsSetup { catalogue: withdrawn, ..PaymentsSetup::default() }).await;
        h3.deliver(h3.telegram.pre_checkout_update(&user, &invoice.payload, 450)).await;
        let a = refusal(&h3);
        assert!(!a.ok && a.error_message.as_deref().is_some_and(|m| m.contains("больше не продаётся")), "{a:?}");

        // Paid once, the same invoice is refused at pre-checkout.
        pay(&h, &user, &invoice).await;
        h.deliver(h.telegram.pre_checkout_update(&user, &invoice.payload, 450)).await;
        let a = refusal(&h);
        assert!(!a.ok && a.error_message.as_deref().is_some_and(|m| m.contains("уже оплачен")), "{a:?}");
        assert_eq!(h.balance(&user).await, 10);
        assert!(h.ctx_metrics().contains("neurocards_payments_refused_total{reason=\"price_changed\"} 1"));
    }

    async fn a_payment_that_does_not_match_its_purchase_credits_nothing(store) {
        let h = BotHarness::start(store, test_settings()).await;
        let user = TgUser::new(106);
        h.onboard(&user).await;
        let invoice = open_invoice(&h, &user, "pack30").await;
        // Telegram says 1 Star was paid for a 1,150-Star purchase.
        let payment = h.telegram.pay_stars_without_update(&user, &invoice.payload, 1);
        h.deliver(h.telegram.successful_payment_update(&payment)).await;
        assert_eq!(h.balance(&user).await, 0);
        assert!(h.last(&user).text.contains("не совпала"), "{}", h.last(&user).text);
        let charge = h.payments.payments.charge(neurocards_core::domain::Rail::Stars, &payment.charge_id).await.expect("readable").expect("recorded");
        assert_eq!(charge.mismatch, Some(Mismatch::Amount));
        h.store.assert_invariants().await;
    }

    async fn refund_takes_the_pack_back_once_and_refuses_a_spent_pack(store) {
        let h = BotHarness::start(store, admin_settings()).await;
        let admin = TgUser::new(ADMIN);
        let user = TgUser::new(107);
        h.onboard(&admin).await;
        h.onboard(&user).await;
        let invoice = open_invoice(&h, &user, "pack5").await;
        let charge = pay(&h, &user, &invoice).await;
        assert_eq!(h.balance(&user).await, 5);

        h.say(&admin, &format!("/refund {charge}")).await;
        assert!(h.last(&admin).text.contains("возвращён"), "{}", h.last(&admin).text);
        assert_eq!(h.telegram.star_refunds().len(), 1);
        assert_eq!(h.balance(&user).await, 0);
        assert!(h.last(&user).text.contains("5"), "the user is told");
        h.say(&admin, &format!("/refund {charge}")).await;
        assert!(h.last(&admin).text.contains("уже возвращён"), "{}", h.last(&admin).text);
        assert_eq!(h.telegram.star_refunds().len(), 1, "not refunded twice");

        // A pack partly spent is refused, and nothing is refunded at Telegram.
        let invoice = open_invoice(&h, &user, "pack5").await;
        let spent = pay(&h, &user, &invoice).await;
        h.spend_one(&user).await;
        assert_eq!(h.balance(&user).await, 4);
        h.say(&admin, &format!("/refund {spent}")).await;
        assert!(h.last(&admin).text.contains("отклонён"), "{}", h.last(&admin).text);
        assert_eq!(h.telegram.star_refunds().len(), 1);
        assert_eq!(h.balance(&user).await, 4);

        h.say(&admin, "/refund stxNoSuchCharge").await;
        assert!(h.last(&admin).text.contains("не найден"), "{}", h.last(&admin).text);
        h.store.assert_invariants().await;
    }

    async fn a_referral_is_paid_once_and_never_to_oneself(store) {
        let h = BotHarness::start(store, test_settings()).await;
        let referrer = TgUser::new(108);
        let friend = TgUser::new(109);
        let loner = TgUser::new(110);
        h.onboard(&referrer).await;
        h.say(&friend, &format!("/start {}", start_argument(UserId(referrer.id)))).await;
        h.press(&friend, "terms").await;
        // Later links change nothing.
        h.say(&friend, &format!("/start {}", start_argument(UserId(loner.id)))).await;
        h.say(&loner, &format!("/start {}", start_argument(UserId(loner.id)))).await;
        h.press(&loner, "terms").await;

        h.press(&referrer, "account").await;
        let page = h.last(&referrer).text;
        assert!(page.contains(&format!("start={}", start_argument(UserId(referrer.id)))), "the link: {page}");

        let invoice = open_invoice(&h, &friend, "pack5").await;
        let first = h.telegram.pay_stars_without_update(&friend, &invoice.payload, 250);
        let update = h.telegram.successful_payment_update(&first);
        h.deliver(update.clone()).await;
        h.deliver(h.telegram.successful_payment_update(&first)).await;
        assert_eq!(h.balance(&referrer).await, 1, "REFERRAL_BONUS once");
        assert!(h.last(&referrer).text.contains("+1"), "the referrer is told");
        let second = open_invoice(&h, &friend, "pack5").await;
        pay(&h, &friend, &second).await;
        assert_eq!(h.balance(&referrer).await, 1, "only the first purchase earns the bonus");
        assert_eq!(h.balance(&friend).await, 10);

        let invoice = open_invoice(&h, &loner, "pack5").await;
        pay(&h, &loner, &invoice).await;
        assert_eq!(h.balance(&loner).await, 5, "no bonus for referring oneself");
        let summary = h.payments.payments.referral_summary(UserId(referrer.id)).await.expect("readable");
        assert_eq!((summary.invited, summary.paid), (1, 1));
        let none = h.payments.payments.referral_summary(UserId(loner.id)).await.expect("readable");
        assert_eq!(none.invited, 0);
        h.store.assert_invariants().await;
    }

    async fn yookassa_credits_only_what_yookassa_confirms(store) {
        let yk = FakeYooKassa::start().await;
        let setup = PaymentsSetup::with_yookassa(yk.client(), None);
        let h = BotHarness::start_with_payments(store, test_settings(), setup).await;
        let base = h.serve_http("webhook-secret-0123456789").await;
        let user = TgUser::new(111);
        h.onboard(&user).await;
        h.press(&user, "account").await;
        h.press(&user, "topup").await;
        assert!(h.last(&user).callback_data().contains(&"buy:y:pack10"), "a ₽ button per pack");
        assert!(h.last(&user).text.contains("690 ₽"), "{}", h.last(&user).text);

        h.press(&user, "buy:y:pack10").await;
        let linked = h.telegram.wait_until(Duration::from_secs(10), |tg| {
            tg.messages_to(user.id).last().is_some_and(|m| {
                m.all_buttons().iter().any(|b| b.url.is_some() && b.text.contains("Оплатить"))
            })
        }).await;
        assert!(linked, "the payment link arrives");
        let created = yk.payments();
        assert_eq!(created.len(), 1);
        let payment = created[0].clone();
        assert_eq!(payment.body["capture"], true);
        assert_eq!(payment.body["amount"]["value"], "690.00");
        assert_eq!(payment.body["metadata"]["purchase_id"].as_str(), Some(payment.idempotence_key.as_str()));

        let client = reqwest::Client::new();
        let notify = |id: &str| {
            let body = yk.notification("payment.succeeded", id);
            let req = client.post(format!("{base}/yookassa/notification")).json(&body);
            async move { req.send().await.expect("sent").status().as_u16() }
        };
        // Forged: the notification says succeeded, YooKassa says pending.
        assert_eq!(notify(&payment.id).await, 200);
        assert_eq!(h.balance(&user).await, 0);
        // Canceled at YooKassa: nothing, and the purchase is closed.
        h.press(&user, "buy:y:pack5").await;
        assert!(h.telegram.wait_until(Duration::from_secs(10), |_| yk.payments().len() == 2).await);
        let canceled = yk.payments().last().cloned().expect("created");
        yk.set_status(&canceled.id, "canceled");
        assert_eq!(notify(&canceled.id).await, 200);
        assert_eq!(h.balance(&user).await, 0);
        // A payment YooKassa does not know.
        assert_eq!(notify("2f000000-000f-5000-8000-000000000000").await, 200);
        // A body naming no payment.
        let bad = client.post(format!("{base}/yookassa/notification")).body("{}").send().await.expect("sent");
        assert_eq!(bad.status().as_u16(), 400);

        // Succeeded but the amount differs: flagged, nothing credited.
        h.press(&user, "buy:y:pack30").await;
        assert!(h.telegram.wait_until(Duration::from_secs(10), |_| yk.payments().len() == 3).await);
        let cheap = yk.payments().last().cloned().expect("created");
        yk.set_status(&cheap.id, "succeeded");
        yk.set_amount(&cheap.id, "1.00", "RUB");
        assert_eq!(notify(&cheap.id).await, 200);
        assert_eq!(h.balance(&user).await, 0);

        // Succeeded and matching: credited once, however often it is announced.
        yk.set_status(&payment.id, "succeeded");
        assert_eq!(notify(&payment.id).await, 200);
        assert_eq!(notify(&payment.id).await, 200);
        assert_eq!(h.balance(&user).await, 10);
        assert!(yk.get_count(&payment.id) >= 3, "every notification re-reads the payment");
        h.store.assert_invariants().await;
    }

    async fn yookassa_lost_notifications_are_found_by_polling_and_strangers_are_refused(store) {
        let yk = FakeYooKassa::start().await;
        let allowed = IpAllowList::parse("10.0.0.0/8").expect("valid");
        let setup = PaymentsSetup::with_yookassa(yk.client(), Some(allowed));
        let h = BotHarness::start_with_payments(store, test_settings(), setup).await;
        let base = h.serve_http("webhook-secret-0123456789").await;
        let user = TgUser::new(112);
        h.onboard(&user).await;
        h.say(&user, "/buy").await;
        h.press(&user, "buy:y:pack5").await;
        let linked = h.telegram.wait_until(Duration::from_secs(10), |tg| {
            tg.messages_to(user.id)
                .iter()
                .any(|m| m.all_buttons().iter().any(|b| b.url.is_some() && b.text.contains("Оплатить")))
        }).await;
        assert!(linked, "the payment link arrives");
        assert_eq!(yk.payments().len(), 1, "{:?}", h.telegram.texts_to(user.id));
        let payment = yk.payments()[0].clone();
        yk.set_status(&payment.id, "succeeded");
        // From 127.0.0.1, outside the allow-list.
        let status = reqwest::Client::new()
            .post(format!("{base}/yookassa/notification"))
            .json(&yk.notification("payment.succeeded", &payment.id))
            .send().await.expect("sent").status().as_u16();
        assert_eq!(status, 403);
        assert_eq!(yk.get_count(&payment.id), 0, "a stranger's notification is not even read");
        assert_eq!(h.balance(&user).await, 0);
        // The poller finds it.
        let rail = h.yookassa.clone().expect("rail");
        assert_eq!(rail.poll_once().await.expect("polled"), 1);
        assert_eq!(rail.poll_once().await.expect("polled"), 0, "paid purchases are not polled again");
        assert_eq!(h.balance(&user).await, 5);
        assert!(h.telegram.texts_to(user.id).iter().any(|t| t.contains("+5")));
        h.store.assert_invariants().await;
    }
}
