// tiergate admin page. The master key lives in `masterKey` only (this page's memory): it is never written to
// web storage, a cookie, a URL or the DOM. Data from the gateway is shown with textContent only.
"use strict";

let masterKey = null;
// Bumped at every login and logout: an answer that arrives after a logout is dropped, not shown.
let session = 0;
let page = 1;
const PAGE_SIZE = 25;
const PALETTE = ["#2563eb", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2"];
const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const asked = session;
  const response = await fetch(path, {
    method,
    headers: { "Authorization": "Bearer " + masterKey, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const answer = await response.json().catch(() => ({}));
  if (asked !== session) throw new Error("logged out");
  if (!response.ok) {
    const message = (answer.error && answer.error.message) || ("HTTP " + response.status);
    throw new Error(message);
  }
  return answer;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function showError(id, error) {
  $(id).textContent = error ? error.message : "";
}

async function logIn(event) {
  event.preventDefault();
  session += 1;
  masterKey = $("master-key").value;
  $("minted-key").textContent = "";
  $("minted").hidden = true;
  $("admin-error").textContent = "";
  $("master-key").value = "";
  try {
    await api("GET", "/key/list?page=1&size=1");
  } catch (error) {
    masterKey = null;
    showError("login-error", error);
    return;
  }
  showError("login-error", null);
  $("login").hidden = true;
  $("admin").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = "signed in with the master key";
  await refresh();
}

function logOut() {
  session += 1;
  masterKey = null;
  $("admin-error").textContent = "";
  $("search").value = "";
  $("mint-alias").value = "";
  $("admin").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("who").textContent = "";
  $("keys").querySelector("tbody").replaceChildren();
  $("teams").querySelector("tbody").replaceChildren();
  $("users").querySelector("tbody").replaceChildren();
  $("minted-key").textContent = "";
  $("minted").hidden = true;
  $("tiers").replaceChildren();
  $("usage").replaceChildren();
  $("usage-totals").textContent = "";
}

async function refresh() {
  await Promise.all([loadKeys(), loadTeams(), loadUsers(), loadTiers(), loadUsage()])
    .catch((error) => showError("admin-error", error));
}

// A level's own tier (`metadata.tier`); a key without one shows the team it inherits from.
function tierOf(record) {
  return (record.metadata && record.metadata.tier) || "";
}

// Teams (GET /team/list): tier, members with roles, keys, their spend, blocked or not.
async function loadTeams() {
  const teams = await api("GET", "/team/list");
  const body = $("teams").querySelector("tbody");
  body.replaceChildren();
  for (const team of teams) {
    const row = document.createElement("tr");
    cell(row, team.team_id);
    cell(row, team.team_alias);
    cell(row, tierOf(team));
    cell(row, (team.members_with_roles || []).map((m) => (m.user_id || m.user_email) + " (" + m.role + ")").join(", "));
    cell(row, String((team.keys || []).length));
    cell(row, Number(team.spend || 0).toFixed(4));
    cell(row, team.blocked ? "blocked" : "active", team.blocked ? "blocked status" : "active status");
    body.appendChild(row);
  }
}

// Users (GET /user/list, first 100): role, tier, how many keys, their spend.
async function loadUsers() {
  const answer = await api("GET", "/user/list?page_size=100");
  const body = $("users").querySelector("tbody");
  body.replaceChildren();
  for (const user of answer.users) {
    const row = document.createElement("tr");
    cell(row, user.user_id);
    cell(row, user.user_email);
    cell(row, user.user_role);
    cell(row, tierOf(user));
    cell(row, String(user.key_count));
    cell(row, Number(user.spend || 0).toFixed(4));
    body.appendChild(row);
  }
}

function limitsOf(record) {
  const parts = [];
  if (record.rpm_limit != null) parts.push("rpm " + record.rpm_limit);
  if (record.tpm_limit != null) parts.push("tpm " + record.tpm_limit);
  if (record.max_parallel_requests != null) parts.push("parallel " + record.max_parallel_requests);
  if (record.max_budget != null) parts.push("budget $" + record.max_budget);
  if (record.budget_id) parts.push("budget tier " + record.budget_id);
  return parts.join(", ");
}

async function loadKeys() {
  const answer = await api("GET", "/key/list?return_full_object=true&page=" + page + "&size=" + PAGE_SIZE);
  const query = $("search").value.trim().toLowerCase();
  const body = $("keys").querySelector("tbody");
  body.replaceChildren();
  for (const record of answer.keys) {
    const tier = tierOf(record) || (record.team_id ? "team " + record.team_id : "");
    const haystack = [record.key_alias || "", tier, record.token].join(" ").toLowerCase();
    if (query && !haystack.includes(query)) continue;
    const row = document.createElement("tr");
    row.dataset.token = record.token;
    cell(row, record.key_alias);
    cell(row, tier);
    cell(row, limitsOf(record));
    cell(row, record.spend != null ? Number(record.spend).toFixed(4) : "");
    cell(row, record.blocked ? "blocked" : "active", record.blocked ? "blocked status" : "active status");
    cell(row, record.token.slice(0, 12) + "…");
    const actions = cell(row, "");
    const toggle = document.createElement("button");
    toggle.textContent = record.blocked ? "Unblock" : "Block";
    toggle.className = "toggle";
    toggle.addEventListener("click", () => act(record.blocked ? "/key/unblock" : "/key/block", { key: record.token }));
    const remove = document.createElement("button");
    remove.textContent = "Delete";
    remove.addEventListener("click", () => {
      if (confirm("Delete this key? It stops working at once.")) act("/key/delete", { keys: [record.token] });
    });
    actions.append(toggle, " ", remove);
    body.appendChild(row);
  }
  const pages = Math.max(1, Math.ceil(answer.total_count / PAGE_SIZE));
  $("page-label").textContent = "page " + page + " of " + pages + " (" + answer.total_count + " keys)";
  $("prev").disabled = page <= 1;
  $("next").disabled = page >= pages;
}

async function act(path, body) {
  try {
    await api("POST", path, body);
    showError("admin-error", null);
    await loadKeys();
  } catch (error) {
    showError("admin-error", error);
  }
}

async function mint(event) {
  event.preventDefault();
  const body = {};
  const tier = $("mint-tier").value;
  if (tier) body.metadata = { tier };
  const alias = $("mint-alias").value.trim();
  if (alias) body.key_alias = alias;
  try {
    const answer = await api("POST", "/key/generate", body);
    $("minted-key").textContent = answer.key;
    $("minted").hidden = false;
    $("mint-alias").value = "";
    showError("admin-error", null);
    await loadKeys();
  } catch (error) {
    showError("admin-error", error);
  }
}

async function loadTiers() {
  const health = await api("GET", "/health");
  const deployments = [...health.healthy_endpoints, ...health.unhealthy_endpoints];
  const byTier = new Map();
  for (const deployment of deployments) {
    const tier = deployment.tier || "untiered";
    if (!byTier.has(tier)) byTier.set(tier, []);
    byTier.get(tier).push(deployment);
  }
  const select = $("mint-tier");
  const chosen = select.value;
  select.replaceChildren();
  for (const tier of [...byTier.keys()].filter((tier) => tier !== "untiered").sort()) {
    const option = document.createElement("option");
    option.value = option.textContent = tier;
    select.appendChild(option);
  }
  const untiered = document.createElement("option");
  untiered.value = "";
  untiered.textContent = "(no tier)";
  select.appendChild(untiered);
  if (chosen) select.value = chosen;
  const container = $("tiers");
  container.replaceChildren();
  for (const [tier, list] of [...byTier.entries()].sort()) {
    const heading = document.createElement("h3");
    heading.textContent = tier;
    const table = document.createElement("table");
    for (const deployment of list) {
      const row = document.createElement("tr");
      cell(row, deployment.model);
      cell(row, deployment.model_id);
      cell(row, deployment.api_base);
      const cooling = deployment.state !== "healthy";
      cell(row, cooling ? "cooling down until " + deployment.cooling_down_until : "healthy", cooling ? "cooling" : "active");
      cell(row, deployment.in_flight + " in flight");
      table.appendChild(row);
    }
    container.append(heading, table);
  }
}

async function loadUsage() {
  const answer = await api("GET", "/usage/history");
  const tiers = [...new Set(answer.minutes.map((minute) => minute.tier))].sort();
  const color = (tier) => PALETTE[tiers.indexOf(tier) % PALETTE.length];
  const totals = new Map();
  const byMinute = new Map();
  for (const minute of answer.minutes) {
    const total = totals.get(minute.tier) || { requests: 0, tokens: 0, spend: 0 };
    total.requests += minute.requests;
    total.tokens += minute.tokens;
    total.spend += minute.spend;
    totals.set(minute.tier, total);
    if (!byMinute.has(minute.at)) byMinute.set(minute.at, []);
    byMinute.get(minute.at).push(minute);
  }
  $("usage-totals").textContent = [...totals.entries()]
    .map(([tier, t]) => tier + ": " + t.requests + " requests, " + t.tokens + " tokens, $" + t.spend.toFixed(4))
    .join(" · ") || "No requests in the last hour.";
  const peak = Math.max(1, ...answer.minutes.map((minute) => minute.requests));
  const bars = document.createElement("div");
  bars.className = "bars";
  for (const [at, minutes] of [...byMinute.entries()].sort((a, b) => a[0] - b[0])) {
    for (const minute of minutes) {
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.height = Math.round((minute.requests / peak) * 100) + "%";
      bar.style.background = color(minute.tier);
      bar.title = new Date(at * 1000).toLocaleTimeString() + " " + minute.tier + ": " + minute.requests + " requests";
      bars.appendChild(bar);
    }
  }
  const legend = document.createElement("p");
  legend.className = "legend";
  for (const tier of tiers) {
    const item = document.createElement("span");
    item.textContent = "■ " + tier + " (requests per minute)";
    item.style.color = color(tier);
    legend.appendChild(item);
  }
  $("usage").replaceChildren(bars, legend);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", logIn);
  $("logout").addEventListener("click", logOut);
  $("refresh").addEventListener("click", refresh);
  $("mint-form").addEventListener("submit", mint);
  $("search").addEventListener("input", () => loadKeys().catch((error) => showError("admin-error", error)));
  const turn = (by) => { page += by; loadKeys().catch((error) => showError("admin-error", error)); };
  $("prev").addEventListener("click", () => turn(-1));
  $("next").addEventListener("click", () => turn(1));
});
