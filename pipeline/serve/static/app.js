// The page of dupq-serve: plain JS over the service's own API (no CDN, works offline).
"use strict";

const $ = (id) => document.getElementById(id);
const DEBOUNCE_MS = 250;

async function post(path, body) {
  const headers = { "Content-Type": "application/json" };
  const key = $("api-key").value;
  if (key) headers["X-API-Key"] = key;
  const response = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
  const data = await response.json();
  if (!response.ok) {
    const problems = (data.problems || []).map((p) => `${p.field}: ${p.problem}`).join("; ");
    throw new Error(problems ? `${data.error} (${problems})` : data.error);
  }
  return data;
}

async function showStatus() {
  const response = await fetch("/health");
  const health = await response.json();
  const bank = health.bank_size === null ? "no question index" : `${health.bank_size.toLocaleString()} known questions`;
  const state = health.status === "ready" ? "" : " (loading…)";
  $("status").textContent = `model ${health.model} (${health.kind}), threshold ${health.threshold.toFixed(3)}, ${bank}${state}`;
  $("key-box").hidden = !health.api_key_required;
  $("find-question").disabled = health.bank_size === null;
  if (health.status !== "ready") setTimeout(showStatus, 1000);
}

let pending = null;
let asked = 0;
function onType() {
  clearTimeout(pending);
  pending = setTimeout(findNow, DEBOUNCE_MS);
}

async function findNow() {
  const question = $("find-question").value;
  const list = $("matches");
  if (!question.trim()) {
    list.replaceChildren();
    $("find-note").textContent = "";
    return;
  }
  const mine = ++asked;  // answers to older keystrokes are dropped
  try {
    const found = await post("/find", { question, top_k: 5 });
    if (mine !== asked) return;
    list.replaceChildren(...found.matches.map((m) => {
      const item = document.createElement("li");
      item.textContent = m.question;
      const score = document.createElement("span");
      score.className = m.duplicate ? "score duplicate" : "score";
      score.textContent = `${(100 * m.probability).toFixed(1)}%${m.duplicate ? " duplicate" : ""}`;
      item.append(score);
      return item;
    }));
    $("find-note").textContent = found.matches.length ? "" : "No similar question found.";
    $("find-note").classList.remove("error");
  } catch (err) {
    if (mine !== asked) return;
    list.replaceChildren();
    $("find-note").textContent = err.message;
    $("find-note").classList.add("error");
  }
}

async function compare(event) {
  event.preventDefault();
  const verdict = $("verdict");
  try {
    const scored = await post("/score", {
      pairs: [{ question1: $("question1").value, question2: $("question2").value }],
    });
    const result = scored.results[0];
    if (result.error) throw new Error(result.error);
    const percent = (100 * result.probability).toFixed(1);
    verdict.textContent = `${result.prediction ? "Duplicate" : "Not a duplicate"}: probability ${percent}%`;
    verdict.className = result.prediction ? "duplicate" : "";
  } catch (err) {
    verdict.textContent = err.message;
    verdict.className = "error";
  }
}

$("find-question").addEventListener("input", onType);
$("compare").addEventListener("submit", compare);
showStatus().catch((err) => { $("status").textContent = `Cannot reach the service: ${err.message}`; });
