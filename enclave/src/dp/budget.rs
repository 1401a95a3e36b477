//! A dataset's privacy budget in zCDP, with reserve-at-approval and spend-before-delivery.
//!
//! Owns [`PrivacyBudget`], a ledger the host persists (serde) and updates at three points of
//! a job's life (DESIGN §6, §8):
//! 1. **approval**: [`PrivacyBudget::reserve`] — refused if reserved + spent + cost would
//!    exceed the total, so a node refuses the job before it starts;
//! 2. **before the first output share leaves the node**: [`PrivacyBudget::spend`] (the host
//!    persists the ledger, then releases the output frames: see
//!    [`crate::analytics::Plan::confirm_spend`]);
//! 3. **abort before any output share left**: [`PrivacyBudget::release`] returns the
//!    reservation. After a spend nothing is ever refunded (no fairness once a share is out).
//!
//! Amounts are exact decimals ([`Decimal`]); a job id is the host's job hash (hex).

use super::DpError;
use crate::decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a job's charge stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChargeState {
    /// Reserved at approval; may still be released.
    Reserved,
    /// Spent: an output share may have left the node.
    Spent,
}

/// One job's charge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    /// zCDP cost.
    pub rho: Decimal,
    /// State.
    pub state: ChargeState,
}

/// Why the budget refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// The job would exceed the dataset's budget.
    #[error("{0}")]
    Exceeded(Box<Shortfall>),
    /// The job already has a charge (approvals are single-use; a re-run is a new job).
    #[error("job {0} already has a charge on this budget: a re-run is a new job")]
    AlreadyCharged(String),
    /// No reservation for the job.
    #[error("job {0} has no reservation on this budget")]
    NotReserved(String),
    /// The job's charge was already spent: it can never be released.
    #[error("job {0} already spent its charge: nothing is refunded once an output share left")]
    AlreadySpent(String),
}

/// The numbers behind [`BudgetError::Exceeded`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "job {job} costs ρ = {requested}, but dataset {dataset:?} has only ρ = {available} left (total {total}, spent {spent}, reserved {reserved}); lower the job's ρ or refuse it"
)]
pub struct Shortfall {
    /// Dataset.
    pub dataset: String,
    /// Job.
    pub job: String,
    /// Requested cost.
    pub requested: Decimal,
    /// What is left.
    pub available: Decimal,
    /// Total budget.
    pub total: Decimal,
    /// Spent so far.
    pub spent: Decimal,
    /// Reserved by other jobs.
    pub reserved: Decimal,
}

/// A dataset's budget ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacyBudget {
    /// Dataset name.
    pub dataset: String,
    /// Total zCDP budget.
    pub total: Decimal,
    /// Charges by job id.
    pub charges: BTreeMap<String, Charge>,
}

impl PrivacyBudget {
    /// A fresh budget.
    pub fn new(dataset: impl Into<String>, total: Decimal) -> Self {
        Self {
            dataset: dataset.into(),
            total,
            charges: BTreeMap::new(),
        }
    }

    fn sum(&self, state: ChargeState) -> Decimal {
        self.charges
            .values()
            .filter(|c| c.state == state)
            .fold(Decimal::ZERO, |a, c| a.checked_add(c.rho).unwrap_or(a))
    }

    /// Spent so far.
    pub fn spent(&self) -> Decimal {
        self.sum(ChargeState::Spent)
    }

    /// Reserved by jobs not yet delivered.
    pub fn reserved(&self) -> Decimal {
        self.sum(ChargeState::Reserved)
    }

    /// What a new job may still reserve.
    pub fn available(&self) -> Decimal {
        self.spent()
            .checked_add(self.reserved())
            .and_then(|used| self.total.checked_sub(used))
            .unwrap_or(Decimal::ZERO)
    }

    /// Reserves `rho` for `job` (at approval).
    pub fn reserve(&mut self, job: &str, rho: Decimal) -> Result<(), BudgetError> {
        if self.charges.contains_key(job) {
            return Err(BudgetError::AlreadyCharged(job.to_owned()));
        }
        let available = self.available();
        if rho > available {
            return Err(BudgetError::Exceeded(Box::new(Shortfall {
                dataset: self.dataset.clone(),
                job: job.to_owned(),
                requested: rho,
                available,
                total: self.total,
                spent: self.spent(),
                reserved: self.reserved(),
            })));
        }
        self.charges.insert(
            job.to_owned(),
            Charge {
                rho,
                state: ChargeState::Reserved,
            },
        );
        Ok(())
    }

    /// Turns `job`'s reservation into a spend (before any output share leaves the node).
    /// Idempotent for an already spent job.
    pub fn spend(&mut self, job: &str) -> Result<Decimal, BudgetError> {
        let c = self
            .charges
            .get_mut(job)
            .ok_or_else(|| BudgetError::NotReserved(job.to_owned()))?;
        c.state = ChargeState::Spent;
        Ok(c.rho)
    }

    /// Returns `job`'s reservation (it aborted before any output share left the node).
    pub fn release(&mut self, job: &str) -> Result<(), BudgetError> {
        match self.charges.get(job) {
            None => Err(BudgetError::NotReserved(job.to_owned())),
            Some(c) if c.state == ChargeState::Spent => {
                Err(BudgetError::AlreadySpent(job.to_owned()))
            }
            Some(_) => {
                self.charges.remove(job);
                Ok(())
            }
        }
    }

    /// Checks the ledger's invariant (after loading it): spent + reserved ≤ total.
    pub fn validate(&self) -> Result<(), DpError> {
        let used = self
            .spent()
            .checked_add(self.reserved())
            .ok_or_else(|| DpError::Other("budget ledger overflows".into()))?;
        if used > self.total {
            return Err(DpError::Other(format!(
                "budget ledger of dataset {:?} is inconsistent: {used} charged of {}",
                self.dataset, self.total
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().expect("decimal")
    }

    #[test]
    fn reserve_spend_release() {
        let mut b = PrivacyBudget::new("patients", d("1"));
        b.reserve("job-a", d("0.4")).expect("fits");
        b.reserve("job-b", d("0.5")).expect("fits");
        let e = b.reserve("job-c", d("0.2")).expect_err("over");
        assert_eq!(
            e.to_string(),
            "job job-c costs ρ = 0.2, but dataset \"patients\" has only ρ = 0.1 left (total 1, spent 0, reserved 0.9); lower the job's ρ or refuse it"
        );
        assert_eq!(
            b.reserve("job-a", d("0.01")),
            Err(BudgetError::AlreadyCharged("job-a".into()))
        );
        assert_eq!(b.spend("job-a"), Ok(d("0.4")));
        assert_eq!(
            b.release("job-a"),
            Err(BudgetError::AlreadySpent("job-a".into()))
        );
        b.release("job-b").expect("not spent");
        assert_eq!(b.available(), d("0.6"));
        assert_eq!(b.spent(), d("0.4"));
        assert_eq!(
            b.release("job-x"),
            Err(BudgetError::NotReserved("job-x".into()))
        );
        let json = serde_json::to_string(&b).expect("json");
        let back: PrivacyBudget = serde_json::from_str(&json).expect("back");
        assert_eq!(back, b);
        back.validate().expect("consistent");
        let mut bad = back;
        bad.total = d("0.1");
        assert!(bad.validate().is_err());
    }
}
