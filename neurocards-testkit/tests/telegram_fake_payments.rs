//! FakeTelegram's payments in Stars, driven through teloxide as the bot drives them: invoices,
//! pre-checkout answers, the star-transaction ledger and refunds, with the fake's records.

use neurocards_core::telegram::{build_bot, BotOptions, TgBot};
use neurocards_testkit::fake_telegram::{Failure, FakeTelegram, TgUser, STARS};
use teloxide::payloads::{
    AnswerPreCheckoutQuerySetters, GetStarTransactionsSetters, SendInvoiceSetters,
};
use teloxide::prelude::*;
use teloxide::types::{
    LabeledPrice, PreCheckoutQueryId, TelegramTransactionId, TransactionPartner, UpdateKind,
};
use teloxide::{ApiError, RequestError};

fn bot(fake: &FakeTelegram) -> TgBot {
    build_bot(&fake.token(), &fake.api_url(), &BotOptions::default()).expect("bot")
}

fn description(err: &RequestError) -> String {
    match err {
        RequestError::Api(ApiError::Unknown(text)) => text.clone(),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn a_stars_invoice_is_sent_and_recorded() {
    let fake = FakeTelegram::start().await;
    let bot = bot(&fake);
    let message = bot
        .send_invoice(
            ChatId(42),
            "10 credits",
            "Ten video credits",
            "purchase-1",
            STARS,
            [LabeledPrice::new("10 credits", 50)],
        )
        .await
        .expect("sendInvoice");
    let invoice = message.invoice().expect("the message carries the invoice");
    assert_eq!(invoice.currency, "XTR");
    assert_eq!(invoice.total_amount, 50);

    let sent = fake.invoices();
    assert_eq!(sent.len(), 1);
    let sent = &sent[0];
    assert_eq!(sent.chat_id, 42);
    assert_eq!(sent.message_id, message.id.0);
    assert_eq!(sent.title, "10 credits");
    assert_eq!(sent.description, "Ten video credits");
    assert_eq!(sent.payload, "purchase-1");
    assert_eq!(sent.currency, "XTR");
    assert_eq!(sent.total_amount(), 50);
    assert_eq!(sent.provider_token, None);
    assert_eq!(fake.last_message_to(42).map(|m| m.text), Some("10 credits".to_owned()));
}

#[tokio::test]
async fn stars_invoices_that_break_the_rules_are_refused() {
    let fake = FakeTelegram::start().await;
    let bot = bot(&fake);
    let two_prices = [LabeledPrice::new("a", 10), LabeledPrice::new("b", 20)];
    let err = bot
        .send_invoice(ChatId(42), "t", "d", "p", STARS, two_prices)
        .await
        .expect_err("two prices");
    assert!(description(&err).contains("STARS_INVOICE_INVALID"), "{err}");
    let err = bot
        .send_invoice(ChatId(42), "t", "d", "p", STARS, [LabeledPrice::new("a", 10)])
        .provider_token("284685063:TEST:token")
        .await
        .expect_err("a provider token");
    assert!(description(&err).contains("STARS_INVOICE_INVALID"), "{err}");
    let err = bot
        .send_invoice(ChatId(42), "t", "d", "p", STARS, [LabeledPrice::new("a", 10)])
        .max_tip_amount(5)
        .await
        .expect_err("tips");
    assert!(description(&err).contains("STARS_INVOICE_INVALID"), "{err}");
    let err = bot
        .send_invoice(ChatId(42), "t", "d", "x".repeat(129), STARS, [LabeledPrice::new("a", 10)])
        .await
        .expect_err("payload too long");
    assert!(description(&err).contains("INVOICE_PAYLOAD_INVALID"), "{err}");
    bot.send_invoice(ChatId(42), "t", "d", "p", STARS, [LabeledPrice::new("a", 10)])
        .provider_token("")
        .await
        .expect("an empty provider token is what Stars expect");
    assert_eq!(fake.invoices().len(), 1, "only the valid invoice is recorded");
}

#[tokio::test]
async fn a_pre_checkout_query_is_answered_once() {
    let fake = FakeTelegram::start().await;
    let bot = bot(&fake);
    let ann = TgUser::new(42);

    fake.push_update(fake.pre_checkout_update(&ann, "purchase-1", 50));
    let updates = bot.get_updates().await.expect("getUpdates");
    let UpdateKind::PreCheckoutQuery(query) = &updates[0].kind else {
        panic!("not a pre-checkout query: {:?}", updates[0].kind)
    };
    assert_eq!(query.invoice_payload, "purchase-1");
    assert_eq!(query.total_amount, 50);
    assert_eq!(query.currency, "XTR");

    bot.answer_pre_checkout_query(query.id.clone(), true).await.expect("answered");
    let again = bot.answer_pre_checkout_query(query.id.clone(), true).await;
    assert!(matches!(again, Err(RequestError::Api(ApiError::InvalidQueryId))), "{again:?}");
    let unknown = bot.answer_pre_checkout_query(PreCheckoutQueryId("nope".into()), true).await;
    assert!(unknown.is_err());

    let second = fake.pre_checkout_update(&ann, "purchase-2", 50);
    let id = PreCheckoutQueryId(second["pre_checkout_query"]["id"].as_str().expect("id").into());
    let err = bot.answer_pre_checkout_query(id.clone(), false).await.expect_err("no message");
    assert!(matches!(err, RequestError::Api(_)), "{err}");
    bot.answer_pre_checkout_query(id.clone(), false)
        .error_message("This pack is no longer sold")
        .await
        .expect("a refusal with a reason");

    let answers = fake.pre_checkout_answers();
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0].pre_checkout_query_id, query.id.0);
    assert!(answers[0].ok);
    assert_eq!(answers[1].pre_checkout_query_id, id.0);
    assert!(!answers[1].ok);
    assert_eq!(answers[1].error_message.as_deref(), Some("This pack is no longer sold"));
}

#[tokio::test]
async fn a_payment_is_delivered_as_an_update_unless_it_is_lost() {
    let fake = FakeTelegram::start().await;
    let bot = bot(&fake);
    let ann = TgUser::new(42);

    let paid = fake.pay_stars(&ann, "purchase-1", 50);
    let lost = fake.pay_stars_without_update(&ann, "purchase-2", 75);
    fake.push_update(fake.successful_payment_update(&paid));

    let updates = bot.get_updates().await.expect("getUpdates");
    assert_eq!(updates.len(), 2, "the payment twice, the lost one not at all");
    for update in &updates {
        let UpdateKind::Message(m) = &update.kind else { panic!("message") };
        let payment = m.successful_payment().expect("successful_payment");
        assert_eq!(payment.telegram_payment_charge_id.0, paid.charge_id);
        assert_eq!(payment.invoice_payload, "purchase-1");
        assert_eq!(payment.total_amount, 50);
    }

    let listed = bot.get_star_transactions().await.expect("getStarTransactions");
    let ids: Vec<_> = listed.transactions.iter().map(|t| t.id.0.clone()).collect();
    assert_eq!(ids, vec![paid.charge_id.clone(), lost.charge_id.clone()]);
}

#[tokio::test]
async fn star_transactions_parse_in_teloxide_and_page_in_chronological_order() {
    let fake = FakeTelegram::start().await;
    let bot = bot(&fake);
    let ann = TgUser::new(42);
    let bob = TgUser::new(43);
    let first = fake.pay_stars_without_update(&ann, "purchase-1", 50);
    let second = fake.pay_stars_without_update(&bob, "purchase-2", 100);
    bot.refund_star_payment(UserId(42), TelegramTransactionId(first.charge_id.clone()))
        .await
        .expect("refunded");

    let all = bot.get_star_transactions().await.expect("getStarTransactions").transactions;
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].id.0, first.charge_id);
    assert_eq!(all[0].amount, 50);
    let Some(TransactionPartner::User(source)) = &all[0].source else {
        panic!("an incoming payment has a user source: {:?}", all[0])
    };
    assert_eq!(source.user.id, UserId(42));
    let invoice = source.kind.invoice_payment().expect("invoice payment");
    assert_eq!(invoice.invoice_payload.as_deref(), Some("purchase-1"));
    assert!(all[0].receiver.is_none());
    assert_eq!(all[1].id.0, second.charge_id);
    assert!(all[0].date <= all[1].date && all[1].date <= all[2].date, "chronological");
    assert_eq!(all[2].id.0, first.charge_id, "a refund keeps the charge's id");
    assert!(all[2].source.is_none());
    assert!(
        matches!(&all[2].receiver, Some(TransactionPartner::User(u)) if u.user.id == UserId(42))
    );

    let page = bot.get_star_transactions().offset(1).limit(1).await.expect("a page").transactions;
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id.0, second.charge_id);
    let past_the_end = bot.get_star_transactions().offset(10).await.expect("empty page");
    assert!(past_the_end.transactions.is_empty());
}

#[tokio::test]
async fn a_charge_is_refunded_once() {
    let fake = FakeTelegram::start().await;
    let bot = bot(&fake);
    let ann = TgUser::new(42);
    let payment = fake.pay_stars_without_update(&ann, "purchase-1", 50);
    let charge = TelegramTransactionId(payment.charge_id.clone());

    fake.fail_next_refund(Failure::bad_request("REFUND_FAILED"));
    let err = bot.refund_star_payment(UserId(42), charge.clone()).await.expect_err("scripted");
    assert!(description(&err).contains("REFUND_FAILED"), "{err}");
    assert!(fake.star_refunds().is_empty(), "a failed refund refunds nothing");

    let err = bot.refund_star_payment(UserId(43), charge.clone()).await.expect_err("other user");
    assert!(description(&err).contains("CHARGE_NOT_FOUND"), "{err}");
    let err = bot
        .refund_star_payment(UserId(42), TelegramTransactionId("stxUnknown".into()))
        .await
        .expect_err("unknown charge");
    assert!(description(&err).contains("CHARGE_NOT_FOUND"), "{err}");

    bot.refund_star_payment(UserId(42), charge.clone()).await.expect("refunded");
    let err = bot.refund_star_payment(UserId(42), charge.clone()).await.expect_err("twice");
    assert!(description(&err).contains("CHARGE_ALREADY_REFUNDED"), "{err}");

    let refunds = fake.star_refunds();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].user_id, 42);
    assert_eq!(refunds[0].charge_id, payment.charge_id);
    assert_eq!(fake.calls("refundStarPayment").len(), 5, "every call is recorded");
}
