//! The single progress message of each order, edited in place: "queued, position N, about M
//! minutes" → "generating k of n" → "done".
//!
//! At most once: the store grants the right to create the message to one caller ever, and
//! grants each stage only while it is later than every stage granted before (the stage's rank
//! only grows), so concurrent workers never send two messages, step back, or repeat a stage.
//! A creator that crashes between the grant and the send leaves the order without a progress
//! message; the videos and failure notices are sent regardless. Progress is cosmetic: store or
//! send errors are logged and never fail a job.

use super::Inner;
use crate::domain::{ClaimedJob, ErrorClass, Language, OrderId, UserId};
use crate::ports::{NotifyError, ProgressSlot, ProgressStage, QueuePosition, Recipient};
use std::time::Duration;

/// Rank of the "queued" stage: the lowest.
pub(crate) const RANK_QUEUED: u32 = 1;

/// Later stages have higher ranks; a "retrying" note sits between two "k of n" stages.
pub(crate) fn rank(stage: &ProgressStage) -> u32 {
    match stage {
        ProgressStage::Queued { .. } => RANK_QUEUED,
        ProgressStage::Generating { done, .. } => 10 + done.saturating_mul(10),
        ProgressStage::Retrying { done, .. } => 15 + done.saturating_mul(10),
        ProgressStage::Finished { .. } => u32::MAX,
    }
}

/// A rough wait: one typical generation per "round" of the jobs ahead over the jobs running.
pub(crate) fn eta_minutes(position: QueuePosition, typical_generation: Duration) -> u32 {
    let rounds = 1 + position.ahead / position.running.max(1);
    let secs = typical_generation.as_secs().saturating_mul(rounds);
    u32::try_from(secs.div_ceil(60)).unwrap_or(u32::MAX).max(1)
}

async fn show(inner: &Inner, order: OrderId, to: Recipient, stage: ProgressStage) {
    let slot = match inner.deps.progress.claim_stage(order, rank(&stage)).await {
        Ok(slot) => slot,
        Err(e) => {
            tracing::warn!(error = %e, "progress state unavailable; stage not shown");
            return;
        }
    };
    let existing = match slot {
        ProgressSlot::Skip => return,
        ProgressSlot::Create => None,
        ProgressSlot::Edit(m) => Some(m),
    };
    send(inner, order, to, existing, &stage).await;
}

async fn send(
    inner: &Inner,
    order: OrderId,
    to: Recipient,
    existing: Option<crate::ports::MessageRef>,
    stage: &ProgressStage,
) {
    match inner.deps.notifier.show_progress(to, existing, stage).await {
        Ok(sent) if Some(sent) != existing => {
            if let Err(e) = inner.deps.progress.set_message(order, sent).await {
                tracing::warn!(error = %e, "progress message not stored");
            }
        }
        Ok(_) => {}
        Err(NotifyError::BotBlocked) => {
            if let Err(e) = inner.deps.accounts.set_bot_blocked(to.user_id, true).await {
                tracing::warn!(error = %e, "could not record that the user blocked the bot");
            }
        }
        Err(e) => tracing::warn!(error = %e, "progress message not shown"),
    }
}

/// A job of the order started generating.
pub(crate) async fn job_started(inner: &Inner, job: &ClaimedJob) {
    let to = Recipient { user_id: job.user_id, language: job.spec.language };
    match inner.deps.progress.order_status(job.order_id).await {
        Ok(status) => {
            let stage = ProgressStage::Generating { done: status.finished(), total: status.total };
            show(inner, job.order_id, to, stage).await;
        }
        Err(e) => tracing::warn!(error = %e, "order status unavailable; progress not shown"),
    }
}

/// A job of the order will be retried after a rate-limit or temporary failure.
pub(crate) async fn job_retrying(inner: &Inner, job: &ClaimedJob, class: ErrorClass) {
    let to = Recipient { user_id: job.user_id, language: job.spec.language };
    match inner.deps.progress.order_status(job.order_id).await {
        Ok(status) => {
            let stage =
                ProgressStage::Retrying { done: status.finished(), total: status.total, class };
            show(inner, job.order_id, to, stage).await;
        }
        Err(e) => tracing::warn!(error = %e, "order status unavailable; progress not shown"),
    }
}

/// A job of the order reached a terminal state.
pub(crate) async fn job_finished(inner: &Inner, order: OrderId, user: UserId, language: Language) {
    let to = Recipient { user_id: user, language };
    match inner.deps.progress.order_status(order).await {
        Ok(status) => {
            let stage = if status.is_finished() {
                ProgressStage::Finished {
                    delivered: status.succeeded,
                    failed: status.failed,
                    total: status.total,
                }
            } else {
                ProgressStage::Generating { done: status.finished(), total: status.total }
            };
            show(inner, order, to, stage).await;
        }
        Err(e) => tracing::warn!(error = %e, "order status unavailable; progress not shown"),
    }
}

/// Sends "queued, position N" for new orders nobody has announced yet; returns how many.
pub(crate) async fn announce_new_orders(inner: &Inner, limit: u32) -> usize {
    let orders = match inner.deps.progress.claim_unannounced(RANK_QUEUED, limit).await {
        Ok(orders) => orders,
        Err(e) => {
            tracing::warn!(error = %e, "could not look for new orders to announce");
            return 0;
        }
    };
    for order in &orders {
        let position = inner.deps.progress.queue_position(order.order_id).await.unwrap_or_default();
        let stage = ProgressStage::Queued {
            order_id: order.order_id,
            total: order.total,
            position: position.ahead,
            eta_minutes: eta_minutes(position, inner.config.typical_generation),
        };
        let to = Recipient { user_id: order.user_id, language: order.language };
        send(inner, order.order_id, to, None, &stage).await;
    }
    orders.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_rank_in_the_order_the_user_sees_them() {
        let ranks = [
            rank(&ProgressStage::Queued {
                order_id: OrderId(1),
                total: 3,
                position: 9,
                eta_minutes: 5,
            }),
            rank(&ProgressStage::Generating { done: 0, total: 3 }),
            rank(&ProgressStage::Retrying { done: 0, total: 3, class: ErrorClass::Temporary }),
            rank(&ProgressStage::Generating { done: 1, total: 3 }),
            rank(&ProgressStage::Generating { done: 2, total: 3 }),
            rank(&ProgressStage::Finished { delivered: 3, failed: 0, total: 3 }),
        ];
        assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{ranks:?}");
    }

    #[test]
    fn eta_grows_with_the_work_ahead() {
        let typical = Duration::from_secs(180);
        assert_eq!(eta_minutes(QueuePosition { ahead: 0, running: 0 }, typical), 3);
        assert_eq!(eta_minutes(QueuePosition { ahead: 128, running: 64 }, typical), 9);
    }
}
