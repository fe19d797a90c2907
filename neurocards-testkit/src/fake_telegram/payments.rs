//! Payments in Telegram Stars: invoices, pre-checkout queries, successful payments, the bot's
//! star-transaction ledger and refunds.
//!
//! The fake follows the Bot API's rules for Stars: an `XTR` invoice has exactly one price and
//! no provider token or tips (`400 STARS_INVOICE_INVALID` otherwise); a pre-checkout query can
//! be answered once, and `ok: false` needs an `error_message`; a charge is refunded once
//! (`CHARGE_ALREADY_REFUNDED` after that, `CHARGE_NOT_FOUND` for a charge the ledger does not
//! hold for that user). [`FakeTelegram::pay_stars`] plays a user paying: it writes the
//! incoming transaction `getStarTransactions` lists and queues the `successful_payment` update;
//! [`FakeTelegram::pay_stars_without_update`] writes only the transaction, as when the update
//! is lost (or when a webhook test posts [`FakeTelegram::successful_payment_update`] itself).
//!
//! ```no_run
//! # async fn demo() {
//! use neurocards_testkit::fake_telegram::{FakeTelegram, TgUser};
//! let fake = FakeTelegram::start().await;
//! let ann = TgUser::new(42);
//! let query = fake.pre_checkout_update(&ann, "purchase-1", 50);
//! fake.push_update(query);
//! // … the bot answers the query …
//! let payment = fake.pay_stars(&ann, "purchase-1", 50);
//! fake.push_update(fake.successful_payment_update(&payment)); // delivered twice
//! # }
//! ```

use super::model::{as_i64, Failure, TgUser};
use super::payloads as p;
use super::state::{Answer, State};
use super::{lock, FakeTelegram};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};

/// The Stars currency code.
pub const STARS: &str = "XTR";

const DATE: i64 = 1_700_000_200;

/// One price line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoicePrice {
    pub label: String,
    /// In the currency's smallest unit (whole Stars for `XTR`).
    pub amount: i64,
}

/// An invoice the bot sent (and the fake accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentInvoice {
    pub chat_id: i64,
    /// The invoice message's id in the chat.
    pub message_id: i32,
    pub title: String,
    pub description: String,
    /// The bot's invoice payload (1–128 bytes).
    pub payload: String,
    pub currency: String,
    pub prices: Vec<InvoicePrice>,
    /// The provider token, when one was sent (an empty string counts as sent).
    pub provider_token: Option<String>,
}

impl SentInvoice {
    /// The sum of the prices.
    pub fn total_amount(&self) -> i64 {
        self.prices.iter().map(|p| p.amount).sum()
    }
}

/// An accepted `answerPreCheckoutQuery`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreCheckoutAnswer {
    pub pre_checkout_query_id: String,
    pub ok: bool,
    pub error_message: Option<String>,
}

/// A payment in Stars that a user made, as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StarPayment {
    /// `telegram_payment_charge_id`, also the star transaction's id.
    pub charge_id: String,
    /// The paying user.
    pub user: TgUser,
    /// The invoice payload the payment names.
    pub payload: String,
    /// Whole Stars.
    pub amount: u32,
    /// Unix time of the transaction.
    pub date: i64,
}

/// An accepted `refundStarPayment`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StarRefund {
    pub user_id: i64,
    pub charge_id: String,
}

/// The payment side of the fake's state.
#[derive(Debug, Default)]
pub(crate) struct PaymentState {
    pub invoices: Vec<SentInvoice>,
    pub pre_checkout_answers: Vec<PreCheckoutAnswer>,
    /// Queries pushed and not yet answered.
    pub open_queries: HashSet<String>,
    pub next_query: u64,
    /// The ledger, oldest first: incoming payments and outgoing refunds as `StarTransaction`s.
    pub transactions: Vec<Value>,
    pub payments: HashMap<String, StarPayment>,
    pub refunded: HashSet<String>,
    pub refunds: Vec<StarRefund>,
}

fn bad_request(what: &str) -> Answer {
    Answer::error(400, &format!("Bad Request: {what}"))
}

impl State {
    pub(crate) fn send_invoice(&mut self, params: &Value) -> Answer {
        let Some(chat_id) = params.get("chat_id").and_then(as_i64) else {
            return bad_request("chat_id is empty");
        };
        let text = |name: &str| params[name].as_str().unwrap_or_default().to_owned();
        let (title, description, payload, currency) =
            (text("title"), text("description"), text("payload"), text("currency"));
        if title.is_empty() || title.chars().count() > 32 {
            return bad_request("INVOICE_TITLE_INVALID");
        }
        if description.is_empty() || description.chars().count() > 255 {
            return bad_request("INVOICE_DESCRIPTION_INVALID");
        }
        if payload.is_empty() || payload.len() > 128 {
            return bad_request("INVOICE_PAYLOAD_INVALID");
        }
        let prices: Option<Vec<InvoicePrice>> = params["prices"].as_array().map(|prices| {
            prices
                .iter()
                .map(|p| InvoicePrice {
                    label: p["label"].as_str().unwrap_or_default().to_owned(),
                    amount: p["amount"].as_i64().unwrap_or(0),
                })
                .collect()
        });
        let Some(prices) = prices.filter(|p| !p.is_empty() && p.iter().all(|p| p.amount > 0))
        else {
            return bad_request("CURRENCY_TOTAL_AMOUNT_INVALID");
        };
        let provider_token = params["provider_token"].as_str().map(str::to_owned);
        if currency == STARS {
            let tips = params["max_tip_amount"].as_i64().is_some_and(|t| t > 0)
                || params["suggested_tip_amounts"].as_array().is_some_and(|t| !t.is_empty());
            let token = provider_token.as_deref().is_some_and(|t| !t.is_empty());
            if prices.len() != 1 || token || tips {
                return bad_request("STARS_INVOICE_INVALID");
            }
        } else if provider_token.as_deref().is_none_or(str::is_empty) {
            return bad_request("PAYMENT_PROVIDER_INVALID");
        }
        let total: i64 = prices.iter().map(|p| p.amount).sum();
        let extra = json!({
            "invoice": {
                "title": title, "description": description, "start_parameter": "",
                "currency": currency, "total_amount": total
            }
        });
        let message = self.store(
            chat_id,
            super::model::SentKind::Invoice,
            title.clone(),
            params,
            extra,
            None,
        );
        let message_id = message["message_id"].as_i64().and_then(|m| i32::try_from(m).ok());
        self.payments.invoices.push(SentInvoice {
            chat_id,
            message_id: message_id.unwrap_or_default(),
            title,
            description,
            payload,
            currency,
            prices,
            provider_token,
        });
        Answer::ok(message)
    }

    pub(crate) fn answer_pre_checkout_query(&mut self, params: &Value) -> Answer {
        let id = params["pre_checkout_query_id"].as_str().unwrap_or_default().to_owned();
        let ok = params["ok"].as_bool();
        let error_message =
            params["error_message"].as_str().filter(|m| !m.is_empty()).map(str::to_owned);
        let Some(ok) = ok else {
            return bad_request("parameter \"ok\" is required");
        };
        if !ok && error_message.is_none() {
            return bad_request("ERROR_MESSAGE_EMPTY");
        }
        if !self.payments.open_queries.remove(&id) {
            return bad_request(
                "query is too old and response timeout expired or query id is invalid",
            );
        }
        self.payments.pre_checkout_answers.push(PreCheckoutAnswer {
            pre_checkout_query_id: id,
            ok,
            error_message,
        });
        Answer::ok(json!(true))
    }

    pub(crate) fn get_star_transactions(&mut self, params: &Value) -> Answer {
        let offset = params.get("offset").and_then(as_i64).unwrap_or(0).max(0) as usize;
        let limit = params.get("limit").and_then(as_i64).unwrap_or(100).clamp(1, 100) as usize;
        let page: Vec<Value> =
            self.payments.transactions.iter().skip(offset).take(limit).cloned().collect();
        Answer::ok(json!({ "transactions": page }))
    }

    pub(crate) fn refund_star_payment(&mut self, params: &Value) -> Answer {
        let user_id = params.get("user_id").and_then(as_i64);
        let charge_id = params["telegram_payment_charge_id"].as_str().unwrap_or_default();
        let Some(payment) =
            self.payments.payments.get(charge_id).filter(|p| Some(p.user.id) == user_id).cloned()
        else {
            return bad_request("CHARGE_NOT_FOUND");
        };
        if !self.payments.refunded.insert(charge_id.to_owned()) {
            return bad_request("CHARGE_ALREADY_REFUNDED");
        }
        let date = DATE + self.payments.transactions.len() as i64;
        self.payments.transactions.push(json!({
            "id": payment.charge_id,
            "amount": payment.amount,
            "date": date,
            "receiver": user_partner(&payment.user, &payment.payload)
        }));
        self.payments
            .refunds
            .push(StarRefund { user_id: payment.user.id, charge_id: payment.charge_id });
        Answer::ok(json!(true))
    }
}

/// A `TransactionPartnerUser` for an invoice payment.
fn user_partner(user: &TgUser, payload: &str) -> Value {
    json!({
        "type": "user",
        "user": user.json(),
        "transaction_type": "invoice_payment",
        "invoice_payload": payload
    })
}

impl FakeTelegram {
    /// A `pre_checkout_query` update from `user` for `total_amount` Stars naming `payload`,
    /// shaped as Telegram sends it for Stars (`currency: "XTR"`, no `order_info`). The query
    /// can be answered once. Change `currency` in the JSON to test a wrong currency.
    pub fn pre_checkout_update(&self, user: &TgUser, payload: &str, total_amount: u32) -> Value {
        let mut state = lock(&self.state);
        state.payments.next_query += 1;
        let update_id = state.next_update_id();
        let id = format!("pcq-{update_id}-{}", state.payments.next_query);
        state.payments.open_queries.insert(id.clone());
        json!({
            "update_id": update_id,
            "pre_checkout_query": {
                "id": id,
                "from": user.json(),
                "currency": STARS,
                "total_amount": total_amount,
                "invoice_payload": payload
            }
        })
    }

    /// `user` pays `amount` Stars for the invoice `payload`: the ledger gets the incoming
    /// transaction and the `successful_payment` update is queued for `getUpdates`.
    pub fn pay_stars(&self, user: &TgUser, payload: &str, amount: u32) -> StarPayment {
        let payment = self.pay_stars_without_update(user, payload, amount);
        let update = self.successful_payment_update(&payment);
        self.push_update(update);
        payment
    }

    /// `user` pays, but no update is queued: the `successful_payment` update was lost, and only
    /// `getStarTransactions` tells of the payment.
    pub fn pay_stars_without_update(
        &self,
        user: &TgUser,
        payload: &str,
        amount: u32,
    ) -> StarPayment {
        let mut state = lock(&self.state);
        let date = DATE + state.payments.transactions.len() as i64;
        let payment = StarPayment {
            charge_id: format!("stxFake{}", uuid::Uuid::new_v4().simple()),
            user: user.clone(),
            payload: payload.to_owned(),
            amount,
            date,
        };
        state.payments.transactions.push(json!({
            "id": payment.charge_id,
            "amount": amount,
            "date": date,
            "source": user_partner(user, payload)
        }));
        state.payments.payments.insert(payment.charge_id.clone(), payment.clone());
        payment
    }

    /// A `successful_payment` message update for `payment` in the payer's chat. Each call gives
    /// a new update (new `update_id` and message id) for the same charge, as when Telegram
    /// delivers a payment twice; push the same JSON twice to redeliver one update.
    pub fn successful_payment_update(&self, payment: &StarPayment) -> Value {
        let mut state = lock(&self.state);
        let user = &payment.user;
        let message_id = state.chat(user.id).next_id();
        let mut message = p::message(message_id, user.id, user.json(), payment.date);
        message["successful_payment"] = json!({
            "currency": STARS,
            "total_amount": payment.amount,
            "invoice_payload": payment.payload,
            "telegram_payment_charge_id": payment.charge_id,
            "provider_payment_charge_id": format!("{}_{}", user.id, payment.date)
        });
        let update_id = state.next_update_id();
        json!({ "update_id": update_id, "message": message })
    }

    /// The next `refundStarPayment` fails with `failure` (nothing is refunded).
    pub fn fail_next_refund(&self, failure: Failure) {
        self.fail_next("refundStarPayment", failure);
    }

    /// Invoices the fake accepted, oldest first.
    pub fn invoices(&self) -> Vec<SentInvoice> {
        lock(&self.state).payments.invoices.clone()
    }

    /// Accepted pre-checkout answers, oldest first.
    pub fn pre_checkout_answers(&self) -> Vec<PreCheckoutAnswer> {
        lock(&self.state).payments.pre_checkout_answers.clone()
    }

    /// The star-transaction ledger as `getStarTransactions` lists it, oldest first.
    pub fn star_transactions(&self) -> Vec<Value> {
        lock(&self.state).payments.transactions.clone()
    }

    /// Accepted refunds, oldest first.
    pub fn star_refunds(&self) -> Vec<StarRefund> {
        lock(&self.state).payments.refunds.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use teloxide::types::{StarTransactions, TransactionPartner, Update, UpdateKind};

    fn parse<T: serde::de::DeserializeOwned>(v: &Value) -> T {
        serde_json::from_str(&v.to_string()).unwrap_or_else(|e| panic!("{e}: {v}"))
    }

    #[tokio::test]
    async fn stars_pre_checkout_query_without_order_info_parses() {
        let fake = FakeTelegram::start().await;
        let ann = TgUser::new(42);
        let update = fake.pre_checkout_update(&ann, "p-1", 50);
        assert!(update["pre_checkout_query"].get("order_info").is_none());
        let UpdateKind::PreCheckoutQuery(q) = parse::<Update>(&update).kind else {
            panic!("not a pre-checkout query: {update}")
        };
        assert_eq!(q.currency, "XTR");
        assert_eq!(q.total_amount, 50);
        assert_eq!(q.invoice_payload, "p-1");
        assert_eq!(q.from.id.0, 42);
    }

    #[tokio::test]
    async fn successful_payment_update_parses_and_repeats_the_charge() {
        let fake = FakeTelegram::start().await;
        let ann = TgUser::new(42);
        let payment = fake.pay_stars_without_update(&ann, "p-1", 50);
        let first = fake.successful_payment_update(&payment);
        let second = fake.successful_payment_update(&payment);
        assert_ne!(first["update_id"], second["update_id"]);
        for update in [first, second] {
            let UpdateKind::Message(m) = parse::<Update>(&update).kind else { panic!("message") };
            let paid = m.successful_payment().expect("successful_payment");
            assert_eq!(paid.telegram_payment_charge_id.0, payment.charge_id);
            assert_eq!(paid.total_amount, 50);
            assert_eq!(paid.invoice_payload, "p-1");
            assert_eq!(paid.currency, "XTR");
        }
    }

    #[tokio::test]
    async fn ledger_entries_parse_as_teloxide_star_transactions() {
        let fake = FakeTelegram::start().await;
        let ann = TgUser::new(42);
        let payment = fake.pay_stars_without_update(&ann, "p-1", 50);
        let answer = lock(&fake.state).refund_star_payment(
            &json!({ "user_id": 42, "telegram_payment_charge_id": payment.charge_id }),
        );
        assert_eq!(answer.status, 200);
        let list: StarTransactions = parse(&json!({ "transactions": fake.star_transactions() }));
        assert_eq!(list.transactions.len(), 2);
        let incoming = &list.transactions[0];
        assert_eq!(incoming.id.0, payment.charge_id);
        let Some(TransactionPartner::User(user)) = &incoming.source else { panic!("source") };
        assert_eq!(user.user.id.0, 42);
        let invoice = user.kind.invoice_payment().expect("invoice payment");
        assert_eq!(invoice.invoice_payload.as_deref(), Some("p-1"));
        assert!(list.transactions[1].receiver.is_some(), "the refund is outgoing");
    }
}
