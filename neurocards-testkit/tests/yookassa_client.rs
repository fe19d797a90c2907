//! Contract tests of the YooKassa client against FakeYooKassa: what is sent (credentials,
//! idempotence key, body), and how every answer is classified.

use neurocards_core::secret::Secret;
use neurocards_core::yookassa::{
    Amount, CreatePayment, PaymentStatus, YooKassaClient, YooKassaError, MAX_RESPONSE_BYTES,
};
use neurocards_testkit::fake_yookassa::{notification_body, FakeYooKassa, FAKE_SHOP_ID};
use serde_json::json;
use std::time::Duration;

fn purchase(id: &str) -> CreatePayment {
    CreatePayment {
        purchase_id: id.to_owned(),
        user_id: 42,
        amount: Amount::rub(39_000),
        description: "Neurocards: 10 credits".to_owned(),
        return_url: "https://t.me/neurocards_test_bot".to_owned(),
    }
}

#[tokio::test]
async fn create_sends_credentials_key_and_body_and_the_same_key_returns_the_same_payment() {
    let fake = FakeYooKassa::start().await;
    let client = fake.client();

    let first = client.create_payment(&purchase("purchase-a")).await.expect("created");
    assert_eq!(first.status, PaymentStatus::Pending);
    assert!(!first.paid);
    assert_eq!(first.amount, Amount::rub(39_000));
    assert!(first.confirmation_url().is_some_and(|u| u.starts_with("https://")));
    assert_eq!(first.purchase_id(), Some("purchase-a"));
    assert_eq!(first.user_id(), Some(42));

    let again = client.create_payment(&purchase("purchase-a")).await.expect("same key");
    assert_eq!(again.id, first.id, "a retry with the same key returns the same payment");
    let other = client.create_payment(&purchase("purchase-b")).await.expect("new key");
    assert_ne!(other.id, first.id);

    let created = fake.payments();
    assert_eq!(created.len(), 2);
    assert_eq!(created[0].idempotence_key, "purchase-a");
    assert_eq!(
        created[0].body,
        json!({
            "amount": {"value": "390.00", "currency": "RUB"},
            "capture": true,
            "confirmation": {"type": "redirect", "return_url": "https://t.me/neurocards_test_bot"},
            "description": "Neurocards: 10 credits",
            "metadata": {"purchase_id": "purchase-a", "user_id": "42"}
        })
    );
    assert_eq!(fake.create_count(), 3);
}

#[tokio::test]
async fn get_reads_the_current_state_and_counts_reads() {
    let fake = FakeYooKassa::start().await;
    let client = fake.client();
    let created = client.create_payment(&purchase("p-get")).await.expect("created");

    let read = client.get_payment(&created.id).await.expect("read");
    assert_eq!(read, created);

    assert!(fake.set_status(&created.id, "succeeded"));
    let paid = client.get_payment(&created.id).await.expect("read");
    assert_eq!(paid.status, PaymentStatus::Succeeded);
    assert!(paid.paid);
    assert!(paid.confirmation_url().is_none());

    assert!(fake.set_amount(&created.id, "1.00", "RUB"));
    assert_eq!(client.get_payment(&created.id).await.expect("read").amount, Amount::rub(100));
    assert!(fake.set_metadata(&created.id, json!({"purchase_id": "someone-else"})));
    let lied = client.get_payment(&created.id).await.expect("read");
    assert_eq!(lied.purchase_id(), Some("someone-else"));
    assert_eq!(lied.user_id(), None);
    assert_eq!(fake.get_count(&created.id), 4);

    let missing = client.get_payment("2d4f6d8a-000f-5000-9000-000000000000").await;
    assert!(matches!(&missing, Err(e) if e.is_not_found()), "{missing:?}");

    let other = client.create_payment(&purchase("p-cancel")).await.expect("created");
    fake.set_status(&other.id, "canceled");
    let canceled = client.get_payment(&other.id).await.expect("read");
    assert_eq!(canceled.status, PaymentStatus::Canceled);
    assert!(canceled.cancellation_details.is_some());
}

#[tokio::test]
async fn wrong_credentials_are_rejected_and_the_secret_stays_out_of_the_error() {
    let fake = FakeYooKassa::start().await;
    let client = YooKassaClient::new(
        &fake.base_url(),
        FAKE_SHOP_ID,
        Secret::new("wrong-secret-value"),
        Duration::from_secs(5),
    )
    .expect("client");
    let err = client.create_payment(&purchase("p-auth")).await.expect_err("401");
    assert!(err.is_credentials(), "{err:?}");
    assert!(!err.is_retryable());
    assert!(matches!(&err, YooKassaError::Rejected { code, .. } if code == "invalid_credentials"));
    assert!(!format!("{err} {err:?}").contains("wrong-secret-value"));
    assert!(fake.payments().is_empty());
}

#[tokio::test]
async fn a_create_without_an_idempotence_key_is_refused_by_the_fake() {
    let fake = FakeYooKassa::start().await;
    let response = reqwest::Client::new()
        .post(format!("{}/payments", fake.base_url()))
        .basic_auth(FAKE_SHOP_ID, Some(fake.secret_key().expose()))
        .json(&json!({"amount": {"value": "1.00", "currency": "RUB"}}))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["code"], "invalid_request");
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_retryable_and_a_lost_answer_is_recovered_by_the_key() {
    let fake = FakeYooKassa::start().await;
    let client = fake.client();
    fake.fail_next_creates(1, 500);
    fake.fail_next_creates(1, 429);
    let err = client.create_payment(&purchase("p-500")).await.expect_err("500");
    assert!(err.is_retryable(), "{err:?}");
    assert!(matches!(err, YooKassaError::Retryable { status: Some(500), .. }));
    let err = client.create_payment(&purchase("p-500")).await.expect_err("429");
    assert!(err.is_retryable(), "{err:?}");
    assert!(fake.payments().is_empty(), "failed creates created nothing");

    fake.lose_next_create_answers(1);
    let err = client.create_payment(&purchase("p-500")).await.expect_err("lost answer");
    assert!(err.is_retryable());
    let retried = client.create_payment(&purchase("p-500")).await.expect("retry");
    assert_eq!(fake.payments().len(), 1, "the retry found the payment, it did not make another");
    assert_eq!(retried.id, fake.payments()[0].id);

    fake.fail_next_creates(1, 400);
    let err = client.create_payment(&purchase("p-400")).await.expect_err("400");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn malformed_and_oversized_answers_are_malformed() {
    let fake = FakeYooKassa::start().await;
    let client = fake.client();
    fake.respond_next_raw(200, "<html>not json</html>");
    let err = client.create_payment(&purchase("p-bad")).await.expect_err("malformed");
    assert!(matches!(err, YooKassaError::Malformed(_)), "{err:?}");

    fake.respond_next_raw(
        200,
        json!({"id": "p1", "status": "succeeded", "paid": true,
               "amount": {"value": "390.001", "currency": "RUB"}})
        .to_string(),
    );
    let err = client.get_payment("p1").await.expect_err("inexact amount");
    assert!(matches!(err, YooKassaError::Malformed(_)), "{err:?}");

    fake.respond_next_raw(
        200,
        json!({"id": "someone-else", "status": "succeeded", "paid": true,
               "amount": {"value": "390.00", "currency": "RUB"}})
        .to_string(),
    );
    let err = client.get_payment("p1").await.expect_err("another payment");
    assert!(matches!(err, YooKassaError::Malformed(_)), "{err:?}");

    let huge = format!(
        r#"{{"id":"p1","status":"pending","paid":false,"amount":{{"value":"1.00","currency":"RUB"}},"description":"{}"}}"#,
        "x".repeat(MAX_RESPONSE_BYTES * 4)
    );
    fake.respond_next_raw(200, huge);
    let err = client.get_payment("p1").await.expect_err("oversized");
    assert!(matches!(&err, YooKassaError::Malformed(m) if m.contains("larger")), "{err:?}");

    fake.respond_next_raw(503, "x".repeat(MAX_RESPONSE_BYTES * 4));
    let err = client.get_payment("p1").await.expect_err("oversized 503");
    assert!(err.is_retryable());
    assert!(err.to_string().len() < 1_000, "error text is bounded");
}

#[tokio::test]
async fn a_timeout_is_retryable() {
    let fake = FakeYooKassa::start().await;
    let client = fake.client_with_timeout(Duration::from_millis(200));
    fake.set_delay(Some(Duration::from_secs(2)));
    let err = client.get_payment("p1").await.expect_err("timeout");
    assert!(matches!(err, YooKassaError::Retryable { status: None, .. }), "{err:?}");
}

#[tokio::test]
async fn notification_bodies_parse_to_the_payment_id() {
    use neurocards_core::yookassa::Notification;
    let fake = FakeYooKassa::start().await;
    let created = fake.client().create_payment(&purchase("p-n")).await.expect("created");
    fake.set_status(&created.id, "succeeded");
    for body in [
        fake.notification("payment.succeeded", &created.id),
        notification_body("payment.succeeded", &created.id),
    ] {
        let n = Notification::parse(body.to_string().as_bytes()).expect("parses");
        assert_eq!(n.payment_id(), Some(created.id.as_str()));
        assert_eq!(n.event, "payment.succeeded");
    }
}
