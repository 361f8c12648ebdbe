//! Spend summed from the rows: per day (`/spend/logs` with dates), per group (`/global/spend/report`), and
//! the top keys and models. Each reads the rows once, in time order, holding only the sums.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::served::SpendRow;
use super::store::SpendStore;

/// How `/global/spend/report` groups: LiteLLM's `team` (a key without a team under "Unassigned Team"),
/// `customer` (end user) and `api_key`, and tiergate's `user`, `organization`, `model` and `tier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    Team,
    Customer,
    User,
    Organization,
    ApiKey,
    Model,
    Tier,
}

impl Grouping {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "team" => Some(Self::Team),
            "customer" => Some(Self::Customer),
            "user" => Some(Self::User),
            "organization" => Some(Self::Organization),
            "api_key" => Some(Self::ApiKey),
            "model" => Some(Self::Model),
            "tier" => Some(Self::Tier),
            _ => None,
        }
    }
}

/// Spend and tokens summed.
#[derive(Default, Clone, Copy)]
struct Sum {
    spend: f64,
    input: u64,
    output: u64,
}

impl Sum {
    fn add(&mut self, row: &SpendRow) {
        self.spend += row.spend;
        self.input = self.input.saturating_add(row.prompt_tokens);
        self.output = self.output.saturating_add(row.completion_tokens);
    }
}

fn day_of(row: &SpendRow) -> String {
    row.start_time.get(..10).unwrap_or_default().to_owned()
}

/// One day's spend: in all, per key, per user, per model.
#[derive(Default)]
struct DaySums {
    spend: f64,
    keys: BTreeMap<String, f64>,
    users: BTreeMap<String, f64>,
    models: BTreeMap<String, f64>,
}

/// `/spend/logs?start_date&end_date` summarised: per day of `days`, the day's spend, each key's, and the
/// spend per user and per model (days without rows show zeros).
pub fn by_day(store: &SpendStore, range: (u64, u64), days: &[String]) -> Result<Value, std::io::Error> {
    let mut sums: BTreeMap<String, DaySums> = days.iter().map(|day| (day.clone(), DaySums::default())).collect();
    store.for_each(range, |row| {
        let day = sums.entry(day_of(&row)).or_default();
        day.spend += row.spend;
        *day.keys.entry(row.api_key.clone()).or_default() += row.spend;
        *day.users.entry(row.user.clone()).or_default() += row.spend;
        *day.models.entry(row.model.clone()).or_default() += row.spend;
    })?;
    let days = sums.into_iter().map(|(day, DaySums { spend, keys, users, models })| {
        let mut entry = Map::new();
        entry.insert("startTime".into(), json!(day));
        entry.insert("spend".into(), json!(spend));
        for (key, spend) in keys {
            entry.insert(key, json!(spend));
        }
        entry.insert("users".into(), json!(users));
        entry.insert("models".into(), json!(models));
        Value::Object(entry)
    });
    Ok(Value::Array(days.collect()))
}

/// `/global/spend/report` in LiteLLM's shapes: per day and team, customer, user or organization; per key,
/// model or tier with each one's models. `join` fills each row's owners (team, user, organization) first.
pub fn report(
    store: &SpendStore,
    range: (u64, u64),
    grouping: Grouping,
    join: &mut dyn FnMut(&mut SpendRow),
) -> Result<Value, std::io::Error> {
    match grouping {
        Grouping::Team | Grouping::Customer | Grouping::User | Grouping::Organization => {
            daily(store, range, grouping, join)
        }
        Grouping::ApiKey | Grouping::Model | Grouping::Tier => totals(store, range, grouping),
    }
}

fn daily(
    store: &SpendStore,
    range: (u64, u64),
    grouping: Grouping,
    join: &mut dyn FnMut(&mut SpendRow),
) -> Result<Value, std::io::Error> {
    // day → group → (model, key) → (spend, tokens)
    type Detail = BTreeMap<(String, String), (f64, u64)>;
    let mut days: BTreeMap<String, BTreeMap<String, Detail>> = BTreeMap::new();
    store.for_each(range, |mut row| {
        join(&mut row);
        let group = match grouping {
            Grouping::Customer => row.end_user.clone(),
            Grouping::User => row.user.clone(),
            Grouping::Organization => row.organization_id.clone().unwrap_or_else(|| "Unassigned Organization".into()),
            _ => row.team_id.clone().unwrap_or_else(|| "Unassigned Team".to_owned()),
        };
        let detail = days.entry(day_of(&row)).or_default().entry(group).or_default();
        let sum = detail.entry((row.model.clone(), row.api_key.clone())).or_default();
        sum.0 += row.spend;
        sum.1 = sum.1.saturating_add(row.total_tokens);
    })?;
    let (list, name) = match grouping {
        Grouping::Customer => ("customers", "customer"),
        Grouping::User => ("users", "user_id"),
        Grouping::Organization => ("organizations", "organization_id"),
        _ => ("teams", "team_name"),
    };
    let days = days.into_iter().map(|(day, groups)| {
        let groups: Vec<Value> = groups
            .into_iter()
            .map(|(group, detail)| {
                let total: f64 = detail.values().map(|(spend, _)| spend).sum();
                let metadata: Vec<Value> = detail
                    .into_iter()
                    .map(|((model, key), (spend, tokens))| {
                        json!({"model": model, "api_key": key, "spend": spend, "total_tokens": tokens})
                    })
                    .collect();
                json!({name: group, "total_spend": total, "metadata": metadata})
            })
            .collect();
        json!({"group_by_day": day, list: groups})
    });
    Ok(Value::Array(days.collect()))
}

fn totals(store: &SpendStore, range: (u64, u64), grouping: Grouping) -> Result<Value, std::io::Error> {
    let mut groups: BTreeMap<String, (Sum, BTreeMap<String, Sum>)> = BTreeMap::new();
    store.for_each(range, |row| {
        let group = match grouping {
            Grouping::Model => row.model_group.clone(),
            Grouping::Tier => row.tier.clone().unwrap_or_default(),
            _ => row.api_key.clone(),
        };
        let (total, models) = groups.entry(group).or_default();
        total.add(&row);
        models.entry(row.model.clone()).or_default().add(&row);
    })?;
    let name = match grouping {
        Grouping::Model => "model",
        Grouping::Tier => "tier",
        _ => "api_key",
    };
    let sum = |sum: Sum| (sum.spend, sum.input, sum.output);
    let groups = groups.into_iter().map(|(group, (total, models))| {
        let (cost, input, output) = sum(total);
        let details: Vec<Value> = models
            .into_iter()
            .map(|(model, each)| {
                let (cost, input, output) = sum(each);
                json!({"model": model, "total_cost": cost, "total_input_tokens": input, "total_output_tokens": output})
            })
            .collect();
        json!({name: group, "total_cost": cost, "total_input_tokens": input, "total_output_tokens": output,
               "model_details": details})
    });
    Ok(Value::Array(groups.collect()))
}

/// The `limit` keys (hash hex) that spent most, with what they spent, highest first.
pub fn top_keys(store: &SpendStore, range: (u64, u64), limit: usize) -> Result<Vec<(String, f64)>, std::io::Error> {
    top(store, range, limit, |row| &row.api_key)
}

/// `/global/spend/models`: the `limit` models (upstream models) that cost most, highest first.
pub fn top_models(store: &SpendStore, range: (u64, u64), limit: usize) -> Result<Value, std::io::Error> {
    let top = top(store, range, limit, |row| &row.model)?;
    Ok(top.into_iter().map(|(model, spend)| json!({"model": model, "total_spend": spend})).collect())
}

fn top(
    store: &SpendStore,
    range: (u64, u64),
    limit: usize,
    name: impl Fn(&SpendRow) -> &String,
) -> Result<Vec<(String, f64)>, std::io::Error> {
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    store.for_each(range, |row| *sums.entry(name(&row).clone()).or_default() += row.spend)?;
    let mut sums: Vec<(String, f64)> = sums.into_iter().collect();
    sums.sort_by(|a, b| b.1.total_cmp(&a.1));
    sums.truncate(limit);
    Ok(sums)
}
