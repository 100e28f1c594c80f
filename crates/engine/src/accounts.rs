//! Accounts: created and listed by admins; each has a plan (what it may own) and a rate tier.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_store::{Account, AccountStore, Store, StoreError};
use sluice_types::validation::Errors;
use sluice_types::{id, ApiError, Plan, Scope, Tier};

use crate::list::{self, List};
use crate::{store_error, Engine, Principal};

/// The account that owns the operator's admin keys.
pub const ADMIN_ACCOUNT_ID: &str = "acct_admin";

/// `POST /v1/accounts` body. Fields are loosely typed so that every problem is reported at once.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct AccountRequest {
    pub name: Option<Value>,
    pub plan: Option<Value>,
    pub tier: Option<Value>,
}

/// An account as the API shows it.
#[derive(Serialize, Debug, PartialEq)]
pub struct AccountView {
    pub id: String,
    pub object: &'static str,
    pub name: String,
    pub plan: &'static str,
    pub tier: Value,
    pub created_at: i64,
}

impl From<Account> for AccountView {
    fn from(a: Account) -> Self {
        AccountView {
            id: a.id,
            object: "account",
            name: a.name,
            plan: a.plan.as_str(),
            tier: a.tier.to_json(),
            created_at: a.created_at,
        }
    }
}

/// Validates a name: a string of 1–100 characters.
pub(crate) fn check_name(errors: &mut Errors, value: Option<&Value>) -> Option<String> {
    match value {
        None | Some(Value::Null) => {
            errors.add("name", "required", "name is required");
            None
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            errors.add("name", "min_length", "name must not be empty");
            None
        }
        Some(Value::String(s)) if s.chars().count() > 100 => {
            errors.add("name", "max_length", "name must be at most 100 characters");
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.add("name", "invalid_type", "name must be a string");
            None
        }
    }
}

impl AccountRequest {
    /// Every problem at once, or the account to create.
    pub fn validate(self) -> Result<Account, ApiError> {
        let mut errors = Errors::new();
        let name = check_name(&mut errors, self.name.as_ref());
        let plan = match &self.plan {
            None | Some(Value::Null) => Some(Plan::default()),
            Some(Value::String(s)) if Plan::parse(s).is_some() => Plan::parse(s),
            Some(_) => {
                errors.add(
                    "plan",
                    "invalid_enum",
                    format!("plan must be one of: {}", Plan::NAMES.join(", ")),
                );
                None
            }
        };
        let tier = match &self.tier {
            None | Some(Value::Null) => Some(Tier::default()),
            Some(v) => {
                let t = Tier::from_json(v);
                if t.is_none() {
                    errors.add(
                        "tier",
                        "invalid_enum",
                        "tier must be one of: 1, 3, 5, \"unlimited\"",
                    );
                }
                t
            }
        };
        errors.finish()?;
        match (name, plan, tier) {
            (Some(name), Some(plan), Some(tier)) => Ok(Account {
                id: id::new_id("acct"),
                name,
                plan,
                tier,
                created_at: sluice_types::now_unix(),
            }),
            _ => Err(ApiError::internal(
                "account validation passed without values",
            )),
        }
    }
}

/// Creates the admin account if it is missing; concurrent starts may race, which is fine.
pub async fn ensure_admin_account(store: &dyn AccountStore) -> Result<(), ApiError> {
    if store
        .get_account(ADMIN_ACCOUNT_ID)
        .await
        .map_err(store_error)?
        .is_some()
    {
        return Ok(());
    }
    let admin = Account {
        id: ADMIN_ACCOUNT_ID.to_owned(),
        name: "admin".to_owned(),
        plan: Plan::Enterprise,
        tier: Tier::Unlimited,
        created_at: sluice_types::now_unix(),
    };
    match store.create_account(&admin).await {
        Ok(()) | Err(StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(store_error(e)),
    }
}

/// Stores a validated account (mapping a taken name to 409) and credits its starting grant.
pub async fn insert(
    store: &dyn Store,
    account: Account,
    starting_grant: i64,
) -> Result<Account, ApiError> {
    match store.create_account(&account).await {
        Ok(()) => {}
        Err(StoreError::Conflict { .. }) => {
            return Err(ApiError::conflict("account", "name", &account.name))
        }
        Err(e) => return Err(store_error(e)),
    }
    if starting_grant > 0 {
        store
            .top_up(
                &account.id,
                starting_grant,
                "starting grant",
                sluice_types::now_unix(),
            )
            .await
            .map_err(store_error)?;
    }
    Ok(account)
}

impl Engine {
    pub async fn create_account(
        &self,
        by: &Principal,
        req: AccountRequest,
    ) -> Result<AccountView, ApiError> {
        by.require(Scope::Admin)?;
        let account = req.validate()?;
        Ok(insert(&*self.store, account, self.settings.starting_grant)
            .await?
            .into())
    }

    pub async fn list_accounts(
        &self,
        by: &Principal,
        limit: Option<&str>,
        after: Option<&str>,
    ) -> Result<List<AccountView>, ApiError> {
        by.require(Scope::Admin)?;
        let (page, limit) = list::page(limit, after)?;
        let rows = self.store.list_accounts(&page).await.map_err(store_error)?;
        let views = rows.into_iter().map(AccountView::from).collect();
        Ok(list::finish(views, limit, |a: &AccountView| &a.id))
    }

    /// Changes an account's plan and/or rate tier (admins only).
    pub async fn update_account(
        &self,
        by: &Principal,
        id: &str,
        req: AccountRequest,
    ) -> Result<AccountView, ApiError> {
        by.require(Scope::Admin)?;
        let mut errors = Errors::new();
        if req.name.is_some() {
            errors.add(
                "name",
                "invalid_type",
                "an account's name cannot be changed",
            );
        }
        let plan = match &req.plan {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if Plan::parse(s).is_some() => Plan::parse(s),
            Some(_) => {
                errors.add(
                    "plan",
                    "invalid_enum",
                    format!("plan must be one of: {}", Plan::NAMES.join(", ")),
                );
                None
            }
        };
        let tier = match &req.tier {
            None | Some(Value::Null) => None,
            Some(v) => {
                let t = Tier::from_json(v);
                if t.is_none() {
                    errors.add(
                        "tier",
                        "invalid_enum",
                        "tier must be one of: 1, 3, 5, \"unlimited\"",
                    );
                }
                t
            }
        };
        errors.finish()?;
        let updated = self
            .store
            .update_account(id, plan, tier)
            .await
            .map_err(store_error)?
            .map(AccountView::from)
            .ok_or_else(|| ApiError::not_found("account", id));
        // A cached key carries its account's tier. After the write: a key read that began
        // before it is refused by the generation check.
        if updated.is_ok() {
            self.keys.invalidate();
            self.announce_key_change().await;
        }
        updated
    }

    /// Admins see any account; others only their own (another's is `not_owner`).
    pub async fn get_account(&self, by: &Principal, id: &str) -> Result<AccountView, ApiError> {
        let account = self
            .store
            .get_account(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| ApiError::not_found("account", id))?;
        if !by.may_act_in(&account.id) {
            return Err(ApiError::not_owner("account"));
        }
        Ok(account.into())
    }
}
