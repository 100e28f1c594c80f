//! Credits that never overspend, without a database write per request.
//!
//! Each instance *leases* a slice of a wallet (an account's balance, or a key's spend limit) from
//! the store in one atomic statement, then reserves each request's maximum cost from its slices in
//! memory. After the response, the request is settled to its actual cost locally; a background
//! flush writes the spend to the store in batches, renews leases in use and returns idle ones.
//! The store never grants more than `balance - reserved`, so no number of instances can take a
//! wallet below zero. A crashed instance's leases expire and their unused part is refunded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_store::{LeaseGrant, Store, StoreError};
use sluice_types::{id, now_unix, ApiError, ErrorKind};

use crate::store_error;

/// Tunables (config `[credits]`).
#[derive(Clone, Debug)]
pub struct CreditSettings {
    /// A lease asks for this many times the request's maximum cost.
    pub lease_requests: i64,
    pub lease_ttl: Duration,
    pub flush_interval: Duration,
    /// An unused lease is returned after this long.
    pub idle_return: Duration,
    /// How long a request waits for the store to grant a lease (then 503).
    pub store_deadline: Duration,
}

impl Default for CreditSettings {
    fn default() -> Self {
        CreditSettings {
            lease_requests: 16,
            lease_ttl: Duration::from_secs(30),
            flush_interval: Duration::from_millis(500),
            idle_return: Duration::from_secs(2),
            store_deadline: Duration::from_secs(2),
        }
    }
}

#[derive(Debug)]
struct LocalLease {
    id: String,
    granted: i64,
    /// Settled spend, flushed or not.
    committed: i64,
    flushed: i64,
    /// Reserved by requests still running.
    in_flight: i64,
    expires_at: i64,
    last_used: Instant,
    /// Being returned to the store: no new reservations.
    closing: bool,
}

impl LocalLease {
    fn free(&self) -> i64 {
        if self.closing {
            0
        } else {
            self.granted - self.committed - self.in_flight
        }
    }
}

#[derive(Default)]
struct Budget {
    leases: Vec<LocalLease>,
    /// Leases ask for `multiplier` × the request's cost; it doubles while leases run out
    /// within a second (heavy traffic) and halves when they last long.
    multiplier: i64,
    last_acquired: Option<Instant>,
}

/// The largest lease multiplier: 65,536 requests' worth.
const MAX_MULTIPLIER: i64 = 1 << 16;

/// One wallet's part of a reservation.
#[derive(Debug)]
struct Hold {
    wallet: String,
    lease_id: String,
    amount: i64,
}

/// Why a reservation was refused.
#[derive(Debug)]
pub enum Refusal {
    /// The wallet cannot cover `required`; `available` is what it could.
    Insufficient {
        wallet: String,
        available: i64,
        required: i64,
        /// Held by reservations in flight, here or on other instances (including one that
        /// stopped: its lease is refunded within `lease_ttl_seconds`).
        reserved: i64,
    },
    Store(StoreError),
}

/// A request's reserved maximum cost. Settle it with the actual cost; dropping it unsettled
/// releases everything (nothing is charged).
pub struct Reservation {
    credits: Arc<Credits>,
    holds: Vec<Hold>,
    pub amount: i64,
}

impl Reservation {
    /// Charges `cost` and releases the rest. A cost above the reservation (a provider reporting
    /// more tokens than the bound) is charged from the instance's leased slices if they have room,
    /// never beyond them, so a wallet can never be overdrawn. Returns what was charged.
    pub fn settle(mut self, cost: i64) -> i64 {
        let cost = cost.max(0);
        let mut charged = cost.min(self.amount);
        let holds = std::mem::take(&mut self.holds);
        if cost > self.amount {
            let excess = cost - self.amount;
            let extra: Vec<Hold> = holds
                .iter()
                .map_while(|h| self.credits.take_local(&h.wallet, excess))
                .collect();
            if extra.len() == holds.len() {
                for h in &extra {
                    self.credits.finish(h, excess);
                }
                charged = cost;
            } else {
                for h in &extra {
                    self.credits.finish(h, 0);
                }
                tracing::warn!(
                    cost,
                    reserved = self.amount,
                    "usage above the reservation could not be charged in full"
                );
            }
        }
        for h in &holds {
            self.credits.finish(h, charged.min(h.amount));
        }
        charged
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        for h in std::mem::take(&mut self.holds) {
            self.credits.finish(&h, 0);
        }
    }
}

/// The per-process credit engine.
pub struct Credits {
    store: Arc<dyn Store>,
    holder: String,
    pub settings: CreditSettings,
    budgets: Mutex<HashMap<String, Arc<Mutex<Budget>>>>,
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Credits {
    pub fn new(store: Arc<dyn Store>, settings: CreditSettings) -> Arc<Credits> {
        Arc::new(Credits {
            store,
            holder: id::new_id("inst"),
            settings,
            budgets: Mutex::new(HashMap::new()),
            gates: Mutex::new(HashMap::new()),
        })
    }

    fn budget(&self, wallet: &str) -> Arc<Mutex<Budget>> {
        let mut map = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(wallet.to_owned()).or_default().clone()
    }

    fn gate(&self, wallet: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(wallet.to_owned()).or_default().clone()
    }

    /// Takes `amount` from a local lease of `wallet`, if one has room.
    fn take_local(&self, wallet: &str, amount: i64) -> Option<Hold> {
        let budget = self.budget(wallet);
        let mut b = budget.lock().unwrap_or_else(|p| p.into_inner());
        // A lease about to expire may be expired by the store's sweeper before its spend is
        // flushed; stop using it a little early.
        let usable_until = now_unix() + 2;
        let lease = b
            .leases
            .iter_mut()
            .find(|l| l.free() >= amount && l.expires_at > usable_until)?;
        lease.in_flight += amount;
        lease.last_used = Instant::now();
        Some(Hold {
            wallet: wallet.to_owned(),
            lease_id: lease.id.clone(),
            amount,
        })
    }

    fn finish(&self, h: &Hold, charged: i64) {
        let budget = self.budget(&h.wallet);
        let mut b = budget.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = b.leases.iter_mut().find(|l| l.id == h.lease_id) {
            l.in_flight -= h.amount;
            l.committed += charged.min(h.amount);
            l.last_used = Instant::now();
        }
    }

    /// Reserves `amount` from every wallet in `wallets` (all or nothing).
    pub async fn reserve(
        self: &Arc<Self>,
        wallets: &[&str],
        amount: i64,
    ) -> Result<Reservation, Refusal> {
        let mut r = Reservation {
            credits: self.clone(),
            holds: Vec::new(),
            amount,
        };
        if amount <= 0 {
            return Ok(r);
        }
        for w in wallets {
            // On refusal `r` drops and releases the holds already taken.
            let hold = self.reserve_one(w, amount).await?;
            r.holds.push(hold);
        }
        Ok(r)
    }

    async fn reserve_one(&self, wallet: &str, amount: i64) -> Result<Hold, Refusal> {
        if let Some(h) = self.take_local(wallet, amount) {
            return Ok(h);
        }
        // One lease request per wallet at a time: the others wait and then use its slice.
        let gate = self.gate(wallet);
        let _g = gate.lock().await;
        let mut returned_fragments = false;
        loop {
            if let Some(h) = self.take_local(wallet, amount) {
                return Ok(h);
            }
            let now = now_unix();
            let lease_id = id::new_id("lease");
            let want = amount.saturating_mul(self.next_multiplier(wallet));
            let expires = now + self.settings.lease_ttl.as_secs() as i64;
            let grant = tokio::time::timeout(
                self.settings.store_deadline,
                self.store.acquire_lease(
                    wallet,
                    want,
                    amount,
                    &lease_id,
                    &self.holder,
                    expires,
                    now,
                ),
            )
            .await
            .map_err(|_| Refusal::Store(StoreError::Backend("lease request timed out".into())))?
            .map_err(Refusal::Store)?;
            match grant {
                LeaseGrant::Granted(n) => {
                    let budget = self.budget(wallet);
                    let mut b = budget.lock().unwrap_or_else(|p| p.into_inner());
                    b.leases.push(LocalLease {
                        id: lease_id,
                        granted: n,
                        committed: 0,
                        flushed: 0,
                        in_flight: 0,
                        expires_at: expires,
                        last_used: Instant::now(),
                        closing: false,
                    });
                }
                // Slices too small for this request may together be enough: return them once.
                LeaseGrant::Insufficient(_) if !returned_fragments => {
                    returned_fragments = true;
                    self.return_free(wallet).await.map_err(Refusal::Store)?;
                }
                LeaseGrant::Insufficient(w) => {
                    return Err(Refusal::Insufficient {
                        wallet: wallet.to_owned(),
                        available: (w.balance - w.reserved).max(0),
                        required: amount,
                        reserved: w.reserved.max(0),
                    })
                }
                LeaseGrant::NoWallet => {
                    return Err(Refusal::Store(StoreError::Backend(format!(
                        "no wallet {wallet}"
                    ))))
                }
            }
        }
    }

    /// How many requests' worth the next lease of `wallet` asks for (see `Budget::multiplier`).
    fn next_multiplier(&self, wallet: &str) -> i64 {
        let base = self.settings.lease_requests.max(1);
        let budget = self.budget(wallet);
        let mut b = budget.lock().unwrap_or_else(|p| p.into_inner());
        let m = match b.last_acquired.map(|t| t.elapsed()) {
            None => base,
            Some(e) if e < Duration::from_secs(1) => (b.multiplier * 2).min(MAX_MULTIPLIER),
            Some(e) if e > Duration::from_secs(10) => (b.multiplier / 2).max(base),
            Some(_) => b.multiplier.max(base),
        };
        b.multiplier = m;
        b.last_acquired = Some(Instant::now());
        m
    }

    /// Gives the free part of every local lease of `wallet` back to the store.
    async fn return_free(&self, wallet: &str) -> Result<(), StoreError> {
        let work: Vec<(String, i64, i64)> = {
            let budget = self.budget(wallet);
            let mut b = budget.lock().unwrap_or_else(|p| p.into_inner());
            b.leases
                .iter_mut()
                .filter(|l| l.free() > 0)
                .map(|l| {
                    let free = l.free();
                    let spend = l.committed - l.flushed;
                    l.granted -= free;
                    l.flushed = l.committed;
                    (l.id.clone(), spend, free)
                })
                .collect()
        };
        for (lease, spend, free) in work {
            self.store
                .settle_lease(&lease, spend, free, false, None, now_unix())
                .await?;
        }
        Ok(())
    }

    /// Writes settled spend to the store, renews leases in use, returns idle ones.
    pub async fn flush(&self, close_all: bool) -> Result<(), StoreError> {
        let wallets: Vec<(String, Arc<Mutex<Budget>>)> = {
            let map = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let now = now_unix();
        let ttl = self.settings.lease_ttl.as_secs() as i64;
        for (wallet, budget) in wallets {
            // One store operation per wallet at a time (the gate is also held while leasing and
            // returning fragments): two writes racing on one lease could close it before the
            // other's spend lands, and that spend would never be charged.
            let gate = self.gate(&wallet);
            let _g = gate.lock().await;
            // Decide under the lock, talk to the store without it.
            let work: Vec<(String, i64, bool, Option<i64>)> = {
                let mut b = budget.lock().unwrap_or_else(|p| p.into_inner());
                b.leases
                    .iter_mut()
                    .filter_map(|l| {
                        let spend = l.committed - l.flushed;
                        let idle = l.in_flight == 0
                            && (close_all
                                || l.free() == 0
                                || l.last_used.elapsed() >= self.settings.idle_return);
                        let renew = (!idle && l.expires_at - now < ttl / 2).then_some(now + ttl);
                        if spend == 0 && !idle && renew.is_none() {
                            return None;
                        }
                        if idle {
                            l.closing = true;
                        }
                        l.flushed = l.committed;
                        if let Some(r) = renew {
                            l.expires_at = r;
                        }
                        Some((l.id.clone(), spend, idle, renew))
                    })
                    .collect()
            };
            for (lease, spend, close, renew) in work {
                let ok = self
                    .store
                    .settle_lease(&lease, spend, 0, close, renew, now)
                    .await;
                let mut b = budget.lock().unwrap_or_else(|p| p.into_inner());
                match ok {
                    Ok(false) => {
                        if spend > 0 {
                            tracing::warn!(
                                lease = lease.as_str(),
                                spend,
                                "lease was closed by the store (expired); its spend is not charged"
                            );
                        }
                        b.leases.retain(|l| l.id != lease);
                    }
                    Ok(true) if close => b.leases.retain(|l| l.id != lease),
                    Ok(true) => {}
                    Err(e) => {
                        // Put the spend back so the next flush retries it.
                        if let Some(l) = b.leases.iter_mut().find(|l| l.id == lease) {
                            l.flushed -= spend;
                            l.closing = false;
                        }
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs `flush` on an interval and expires other instances' dead leases, until `stop` fires.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.settings.flush_interval);
        let mut sweeps = 0u32;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            if let Err(e) = self.flush(false).await {
                tracing::warn!(error = %e, "credit flush failed; will retry");
            }
            sweeps += 1;
            if sweeps.is_multiple_of(20) {
                if let Err(e) = self.store.expire_leases(now_unix()).await {
                    tracing::warn!(error = %e, "lease expiry sweep failed");
                }
            }
        }
    }
}

/// Integer micro-credits for a request: prices are per 1M tokens; rounded up.
pub fn cost(input_price: u64, output_price: u64, prompt: u64, completion: u64) -> i64 {
    let total = (u128::from(prompt) * u128::from(input_price))
        .saturating_add(u128::from(completion) * u128::from(output_price));
    i64::try_from(total.div_ceil(1_000_000)).unwrap_or(i64::MAX)
}

/// The contract's 402 for a refusal (or 503 if the store failed). `details.reserved` says how
/// much of the wallet is held right now, so a client can tell "empty" from "busy".
pub fn refusal_error(r: Refusal, key_id: &str) -> ApiError {
    let Refusal::Insufficient {
        wallet,
        available,
        required,
        reserved,
    } = r
    else {
        return match r {
            Refusal::Store(e) => store_error(e),
            Refusal::Insufficient { .. } => ApiError::internal("unreachable refusal"),
        };
    };
    let held = if reserved > 0 {
        format!(
            " {reserved} micro-credits are held by requests in flight (a stopped instance's hold is released within its lease time)."
        )
    } else {
        String::new()
    };
    let e = if wallet == key_id {
        ApiError::new(
            ErrorKind::InsufficientCredits,
            format!("This API key has reached its spend limit (max_spend). Raise the limit or use another key.{held}"),
        )
        .with_detail("reason", "key_spend_limit")
    } else if wallet.starts_with("key_") {
        ApiError::new(
            ErrorKind::InsufficientCredits,
            format!(
                "The key that issued this API key has reached its spend limit (max_spend).{held}"
            ),
        )
        .with_detail("reason", "issuer_spend_limit")
        .with_detail("issuer_key_id", wallet)
    } else {
        ApiError::new(
            ErrorKind::InsufficientCredits,
            format!("Account credit balance is exhausted. Top up your balance to continue.{held}"),
        )
    };
    e.with_detail("balance", available)
        .with_detail("required", required)
        .with_detail("reserved", reserved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_integer_and_rounds_up() {
        assert_eq!(cost(1_000_000, 2_000_000, 10, 5), 20);
        assert_eq!(cost(150_000, 600_000, 1, 0), 1);
        assert_eq!(cost(0, 0, 100, 100), 0);
        assert_eq!(cost(u64::MAX, u64::MAX, u64::MAX, u64::MAX), i64::MAX);
    }
}
