//! Payment counters for `/metrics`: purchases and revenue by rail and pack, duplicates, flagged
//! charges and refusals. Counted per process; Prometheus sums the replicas.

use super::service::PaymentRefusal;
use crate::domain::{PackId, Rail};
use crate::ports::Mismatch;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
struct Counts {
    purchases: BTreeMap<(Rail, String), u64>,
    revenue: BTreeMap<(Rail, String, String), i64>,
    duplicates: BTreeMap<Rail, u64>,
    flagged: BTreeMap<(Rail, &'static str), u64>,
    refused: BTreeMap<&'static str, u64>,
    reconciled: BTreeMap<Rail, u64>,
    refunds: BTreeMap<Rail, u64>,
}

/// The counters; every method is cheap and never fails.
#[derive(Debug, Default)]
pub struct PaymentMetrics {
    counts: Mutex<Counts>,
}

impl PaymentMetrics {
    fn with(&self, f: impl FnOnce(&mut Counts)) {
        let mut guard = match self.counts.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard);
    }

    /// A payment credited: one purchase of `pack`, `amount` minor units of `currency`.
    pub fn credited(&self, rail: Rail, pack: &PackId, currency: &str, amount: i64) {
        self.with(|c| {
            *c.purchases.entry((rail, pack.to_string())).or_default() += 1;
            let revenue =
                c.revenue.entry((rail, pack.to_string(), currency.to_owned())).or_default();
            *revenue = revenue.saturating_add(amount);
        });
    }

    pub fn duplicate(&self, rail: Rail) {
        self.with(|c| *c.duplicates.entry(rail).or_default() += 1);
    }

    pub fn flagged(&self, rail: Rail, mismatch: Mismatch) {
        self.with(|c| *c.flagged.entry((rail, mismatch.as_str())).or_default() += 1);
    }

    pub fn refused(&self, refusal: PaymentRefusal) {
        self.with(|c| *c.refused.entry(refusal.as_str()).or_default() += 1);
    }

    /// Payments credited by reconciliation or polling (their update or notification was lost).
    pub fn reconciled(&self, rail: Rail) {
        self.with(|c| *c.reconciled.entry(rail).or_default() += 1);
    }

    pub fn refunded(&self, rail: Rail) {
        self.with(|c| *c.refunds.entry(rail).or_default() += 1);
    }

    /// The counters in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.with(|c| {
            header(&mut out, "neurocards_purchases_total", "Payments credited, by rail and pack.");
            for ((rail, pack), n) in &c.purchases {
                out.push_str(&format!("neurocards_purchases_total{{rail=\"{rail}\",pack=\"{pack}\"}} {n}\n"));
            }
            header(
                &mut out,
                "neurocards_purchase_revenue_minor_total",
                "Revenue of credited payments in the currency's minor unit (Stars, kopecks).",
            );
            for ((rail, pack, currency), v) in &c.revenue {
                out.push_str(&format!(
                    "neurocards_purchase_revenue_minor_total{{rail=\"{rail}\",pack=\"{pack}\",currency=\"{currency}\"}} {v}\n"
                ));
            }
            header(&mut out, "neurocards_payment_duplicates_total", "Payments seen again and not credited again.");
            for (rail, n) in &c.duplicates {
                out.push_str(&format!("neurocards_payment_duplicates_total{{rail=\"{rail}\"}} {n}\n"));
            }
            header(&mut out, "neurocards_payments_flagged_total", "Payments that did not match their purchase (nothing credited).");
            for ((rail, reason), n) in &c.flagged {
                out.push_str(&format!(
                    "neurocards_payments_flagged_total{{rail=\"{rail}\",reason=\"{reason}\"}} {n}\n"
                ));
            }
            header(&mut out, "neurocards_payments_refused_total", "Payments refused before checkout, by reason.");
            for (reason, n) in &c.refused {
                out.push_str(&format!("neurocards_payments_refused_total{{reason=\"{reason}\"}} {n}\n"));
            }
            header(&mut out, "neurocards_payments_reconciled_total", "Payments credited by reconciliation or polling.");
            for (rail, n) in &c.reconciled {
                out.push_str(&format!("neurocards_payments_reconciled_total{{rail=\"{rail}\"}} {n}\n"));
            }
            header(&mut out, "neurocards_purchase_refunds_total", "Payments refunded and their credits taken back.");
            for (rail, n) in &c.refunds {
                out.push_str(&format!("neurocards_purchase_refunds_total{{rail=\"{rail}\"}} {n}\n"));
            }
        });
        out
    }
}

fn header(out: &mut String, name: &str, help: &str) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_purchases_and_revenue_by_rail_and_pack() {
        let m = PaymentMetrics::default();
        let pack = PackId::parse("pack10").expect("id");
        m.credited(Rail::Stars, &pack, "XTR", 450);
        m.credited(Rail::Stars, &pack, "XTR", 450);
        m.credited(Rail::YooKassa, &pack, "RUB", 69_000);
        m.flagged(Rail::YooKassa, Mismatch::Amount);
        let text = m.render();
        assert!(
            text.contains("neurocards_purchases_total{rail=\"stars\",pack=\"pack10\"} 2"),
            "{text}"
        );
        assert!(text.contains(
            "neurocards_purchase_revenue_minor_total{rail=\"yookassa\",pack=\"pack10\",currency=\"RUB\"} 69000"
        ));
        assert!(text
            .contains("neurocards_payments_flagged_total{rail=\"yookassa\",reason=\"amount\"} 1"));
    }
}
