// The kubeinvoke web console: sign in with a service principal, pick a cluster, run a command
// with attached files, watch its output live, cancel it, and browse the cluster's history.
// Tokens and secrets live only in this module's memory (never in storage).

export {};

const API = "2024-09-01";
const RESOURCES_API = "2022-09-01";

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

let token = "";
let history: string[] = [];
let historyIndex = -1;
let attached: File[] = [];
let current: { resultPath: string; abort: AbortController } | null = null;
/** The fan-out run being watched (its path), so Cancel stops the run rather than one command. */
let currentRun: string | null = null;

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

class ApiError extends Error {
  constructor(public status: number, public code: string, message: string) {
    super(message);
  }
}

/** Words a person understands for what went wrong. */
function explain(e: unknown): string {
  if (e instanceof ApiError) {
    switch (e.status) {
      case 401: return `Your sign-in is not valid (any more): ${e.message} Sign in again.`;
      case 403: return `You are signed in, but your role does not allow this. ${e.message}`;
      case 404: return `Not found: ${e.message}`;
      case 409: return `That cannot be done now: ${e.message}`;
      case 429: return `The server is busy running other commands. Try again in a few seconds. (${e.message})`;
      default: return e.status >= 500 ? `The server failed (${e.code}): ${e.message}` : `The request was refused (${e.code}): ${e.message}`;
    }
  }
  return `Cannot reach the server: ${e instanceof Error ? e.message : String(e)}`;
}

function showError(e: unknown | null): void {
  const box = $("error");
  box.hidden = e === null;
  box.textContent = e === null ? "" : explain(e);
}

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; headers: Headers; json: Json }> {
  const response = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const json = text ? JSON.parse(text) : null;
  if (!response.ok) {
    throw new ApiError(response.status, json?.error?.code ?? String(response.status), json?.error?.message ?? text);
  }
  return { status: response.status, headers: response.headers, json };
}

const withVersion = (path: string, version = API) => `${path}${path.includes("?") ? "&" : "?"}api-version=${version}`;

function clusterPath(): string {
  const sub = ($("subscription") as HTMLSelectElement).value;
  const group = ($("group") as HTMLSelectElement).value;
  const cluster = ($("cluster") as HTMLSelectElement).value;
  return `/subscriptions/${sub}/resourceGroups/${encodeURIComponent(group)}/providers/Microsoft.ContainerService/managedClusters/${encodeURIComponent(cluster)}`;
}

function fill(select: HTMLSelectElement, values: string[]): void {
  select.replaceChildren(...values.map((v) => new Option(v, v)));
}

async function signIn(event: Event): Promise<void> {
  event.preventDefault();
  const tenant = ($("tenant") as HTMLInputElement).value.trim();
  const form = new URLSearchParams({
    grant_type: "client_credentials",
    client_id: ($("app-id") as HTMLInputElement).value.trim(),
    client_secret: ($("secret") as HTMLInputElement).value,
    scope: "https://management.azure.com/.default",
  });
  try {
    const response = await fetch(`/${encodeURIComponent(tenant)}/oauth2/v2.0/token`, { method: "POST", body: form });
    const json = await response.json();
    if (!response.ok) throw new ApiError(response.status, json.error, json.error_description);
    token = json.access_token;
    ($("secret") as HTMLInputElement).value = "";
    $("who").textContent = `Signed in as ${($("app-id") as HTMLInputElement).value.trim()}`;
    $("signin").hidden = true;
    $("workspace").hidden = false;
    showError(null);
    await loadSubscriptions();
  } catch (e) {
    const box = $("error");
    box.hidden = false;
    box.textContent = e instanceof ApiError ? `Sign-in failed: ${e.message}` : explain(e);
    $("signin").after(box);
  }
}

async function loadSubscriptions(): Promise<void> {
  const { json } = await call("GET", withVersion("/subscriptions", RESOURCES_API));
  fill($("subscription"), json.value.map((s: Json) => s.subscriptionId));
  await loadGroups();
}

async function loadGroups(): Promise<void> {
  try {
    const sub = ($("subscription") as HTMLSelectElement).value;
    const { json } = await call("GET", withVersion(`/subscriptions/${sub}/resourcegroups`, RESOURCES_API));
    fill($("group"), json.value.map((g: Json) => g.name));
    await loadClusters();
  } catch (e) {
    showError(e);
  }
}

async function loadClusters(): Promise<void> {
  try {
    const sub = ($("subscription") as HTMLSelectElement).value;
    const group = ($("group") as HTMLSelectElement).value;
    if (!group) return fill($("cluster"), []);
    const { json } = await call("GET", withVersion(`/subscriptions/${sub}/resourceGroups/${encodeURIComponent(group)}/providers/Microsoft.ContainerService/managedClusters`));
    fill($("cluster"), json.value.map((c: Json) => c.name));
    await loadHistory();
  } catch (e) {
    showError(e);
  }
}

// ---- the context zip, built here: stored entries, as az builds it ----

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

async function zip(files: File[]): Promise<Uint8Array> {
  const encoder = new TextEncoder();
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const file of files) {
    const name = encoder.encode(file.name);
    const data = new Uint8Array(await file.arrayBuffer());
    const crc = crc32(data);
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true);
    local.setUint16(4, 20, true);
    local.setUint16(8, 0, true);
    local.setUint32(14, crc, true);
    local.setUint32(18, data.length, true);
    local.setUint32(22, data.length, true);
    local.setUint16(26, name.length, true);
    parts.push(new Uint8Array(local.buffer), name, data);
    const entry = new DataView(new ArrayBuffer(46));
    entry.setUint32(0, 0x02014b50, true);
    entry.setUint16(4, 20, true);
    entry.setUint16(6, 20, true);
    entry.setUint32(16, crc, true);
    entry.setUint32(20, data.length, true);
    entry.setUint32(24, data.length, true);
    entry.setUint16(28, name.length, true);
    entry.setUint32(42, offset, true);
    central.push(new Uint8Array(entry.buffer), name);
    offset += 30 + name.length + data.length;
  }
  const centralSize = central.reduce((n, p) => n + p.length, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, files.length, true);
  end.setUint16(10, files.length, true);
  end.setUint32(12, centralSize, true);
  end.setUint32(16, offset, true);
  const all = [...parts, ...central, new Uint8Array(end.buffer)];
  const out = new Uint8Array(all.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of all) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function base64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function showFiles(): void {
  $("files").replaceChildren(...attached.map((f) => Object.assign(document.createElement("li"), { textContent: `${f.name} (${f.size} bytes)` })));
}

// ---- output with ANSI colours ----
// The state is two fields whatever the output holds, and the page holds at most
// MAX_STYLED_SPANS spans: past that, the rest of the output is plain text in one last span. A
// flood of escape codes (or of colour changes) costs the reader's tab a bounded DOM.

interface AnsiState {
  bold: boolean;
  fg: number | null;
}

const MAX_STYLED_SPANS = 2000;
let ansi: AnsiState = { bold: false, fg: null };

function resetAnsi(): void {
  ansi = { bold: false, fg: null };
}

/** Applies one SGR sequence's parameters (`1;31`) to the state. */
function applySgr(parameters: string): void {
  for (const code of (parameters || "0").split(";").map(Number)) {
    if (code === 0) resetAnsi();
    else if (code === 1) ansi.bold = true;
    else if (code === 22) ansi.bold = false;
    else if (code === 39) ansi.fg = null;
    else if ((code >= 30 && code <= 37) || (code >= 90 && code <= 97)) ansi.fg = code;
  }
}

function ansiClass(): string {
  return [ansi.bold ? "ansi-bold" : "", ansi.fg === null ? "" : `fg-${ansi.fg}`].filter(Boolean).join(" ");
}

function appendOutput(text: string): void {
  const panel = $("output");
  // Runs of text with the same style, merged before they reach the page.
  const runs: { cls: string; text: string }[] = [];
  text.split(/\x1b\[([0-9;]*)m/).forEach((part, i) => {
    if (i % 2 === 1) return applySgr(part);
    if (!part) return;
    const cls = ansiClass();
    const last = runs[runs.length - 1];
    if (last && last.cls === cls) last.text += part;
    else runs.push({ cls, text: part });
  });
  for (const run of runs) {
    const cls = panel.childElementCount >= MAX_STYLED_SPANS ? "" : run.cls;
    const tail = panel.lastElementChild;
    if (tail instanceof HTMLSpanElement && tail.className === cls) {
      tail.append(run.text);
      continue;
    }
    const span = document.createElement("span");
    span.className = cls;
    span.textContent = run.text;
    panel.append(span);
  }
  panel.scrollTop = panel.scrollHeight;
}

function showStatus(result: Json): void {
  const p = result?.properties ?? {};
  $("state").textContent = p.provisioningState ?? "–";
  $("exit-code").textContent = p.exitCode === undefined ? "–" : String(p.exitCode);
  $("started").textContent = p.startedAt ? new Date(p.startedAt).toLocaleString() : "–";
  $("finished").textContent = p.finishedAt ? new Date(p.finishedAt).toLocaleString() : "–";
  const duration = p.startedAt && p.finishedAt ? (Date.parse(p.finishedAt) - Date.parse(p.startedAt)) / 1000 : null;
  $("duration").textContent = duration === null ? "–" : `${duration.toFixed(1)} s`;
  if (p.reason) $("state").textContent += ` (${p.reason})`;
}

async function streamOutput(resultPath: string, signal: AbortSignal): Promise<void> {
  const response = await fetch(withVersion(`${resultPath}/logs`) + "&follow=true", { headers: { Authorization: `Bearer ${token}` }, signal });
  if (!response.ok || !response.body) return;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    appendOutput(decoder.decode(value, { stream: true }));
  }
}

async function watch(resultPath: string): Promise<void> {
  const abort = new AbortController();
  current = { resultPath, abort };
  ($("cancel") as HTMLButtonElement).disabled = false;
  const streamed = streamOutput(resultPath, abort.signal).then(() => true, () => false);
  try {
    let final: Json;
    for (;;) {
      const { status, json } = await call("GET", withVersion(resultPath));
      if (status === 200) {
        final = json;
        break;
      }
      showStatus(json);
      await new Promise((r) => setTimeout(r, 500));
    }
    // The stream closes once the command has ended; the final state shows when the output is whole.
    const complete = await Promise.race([streamed, new Promise<boolean>((r) => setTimeout(() => r(false), 3000))]);
    if (!complete) {
      abort.abort();
      $("output").replaceChildren();
      resetAnsi();
      const response = await fetch(withVersion(`${resultPath}/logs`), { headers: { Authorization: `Bearer ${token}` } });
      appendOutput(response.ok ? await response.text() : final.properties.logs ?? "");
    }
    showStatus(final);
  } catch (e) {
    showError(e);
  } finally {
    abort.abort();
    current = null;
    ($("cancel") as HTMLButtonElement).disabled = true;
    await loadHistory();
    await loadActivity();
  }
}

async function run(event: Event): Promise<void> {
  event.preventDefault();
  const input = $("command") as HTMLInputElement;
  const command = input.value.trim();
  if (!command && !savedChosen()) return;
  history = [command, ...history.filter((h) => h !== command)];
  historyIndex = -1;
  showError(null);
  $("output").replaceChildren();
  resetAnsi();
  showStatus(null);
  try {
    const context = attached.length ? base64(await zip(attached)) : "";
    if (fanOutChosen()) return await runFanOut(command, context);
    if (savedChosen()) return await runSaved();
    $("fan-out").hidden = true;
    const { headers } = await call("POST", withVersion(`${clusterPath()}/runCommand`), { command, context });
    const resultUrl = new URL(headers.get("Location") ?? "", window.location.href);
    $("state").textContent = "Accepted";
    await watch(resultUrl.pathname);
  } catch (e) {
    showError(e);
  }
}

async function cancel(): Promise<void> {
  const path = currentRun ?? current?.resultPath;
  if (!path) return;
  try {
    await call("POST", withVersion(`${path}/cancel`));
  } catch (e) {
    showError(e);
  }
}

async function loadHistory(): Promise<void> {
  const body = ($("history") as HTMLTableElement).tBodies[0];
  if (!($("cluster") as HTMLSelectElement).value) return body.replaceChildren();
  try {
    const { json } = await call("GET", withVersion(`${clusterPath()}/commandResults`) + "&$top=20");
    body.replaceChildren(
      ...json.value.map((entry: Json) => {
        const p = entry.properties;
        const row = document.createElement("tr");
        row.tabIndex = 0;
        row.dataset.id = entry.id;
        const cells = [new Date(p.submittedAt).toLocaleString(), p.command, p.provisioningState, p.exitCode ?? "–", p.submittedBy];
        row.replaceChildren(...cells.map((text, i) => Object.assign(document.createElement("td"), { textContent: String(text), className: i === 1 ? "command" : "" })));
        const open = () => openResult(entry.id);
        row.addEventListener("click", open);
        row.addEventListener("keydown", (e) => e.key === "Enter" && open());
        return row;
      }),
    );
  } catch (e) {
    showError(e);
  }
}

async function openResult(id: string, cluster = clusterPath()): Promise<void> {
  const resultPath = `${cluster}/commandResults/${id}`;
  showError(null);
  $("output").replaceChildren();
  resetAnsi();
  try {
    const { json } = await call("GET", withVersion(resultPath));
    showStatus(json);
    const response = await fetch(withVersion(`${resultPath}/logs`), { headers: { Authorization: `Bearer ${token}` } });
    appendOutput(response.ok ? await response.text() : json.properties.logs ?? "");
  } catch (e) {
    showError(e);
  }
}

// ---- fan-out: one command on every cluster with the given tags ----

function fanOutChosen(): boolean {
  return document.querySelector<HTMLInputElement>('input[name="mode"]:checked')?.value === "tags";
}

/** `env=prod, team=a` → `{env: "prod", team: "a"}`; a pair without `=` is refused in words. */
function parseTags(text: string): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const pair of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const at = pair.indexOf("=");
    if (at <= 0) throw new ApiError(400, "InvalidParameter", `Write tags as name=value, separated by commas ('${pair}' is not).`);
    tags[pair.slice(0, at).trim()] = pair.slice(at + 1).trim();
  }
  if (!Object.keys(tags).length) throw new ApiError(400, "InvalidParameter", "Name at least one tag, like env=prod.");
  return tags;
}

function runScope(): string {
  const sub = ($("subscription") as HTMLSelectElement).value;
  const group = ($("group") as HTMLSelectElement).value;
  const inGroup = ($("scope") as HTMLSelectElement).value === "group";
  return `/subscriptions/${sub}${inGroup ? `/resourceGroups/${encodeURIComponent(group)}` : ""}/providers/Microsoft.ContainerService`;
}

function shortName(clusterId: string): string {
  const parts = clusterId.split("/");
  return `${parts[4]}/${parts[parts.length - 1]}`;
}

function showTargets(run: Json): void {
  const p = run.properties;
  const counts = Object.entries(p.counts as Record<string, number>).filter(([, n]) => n > 0).map(([state, n]) => `${state} ${n}`);
  $("run-summary").textContent = `run ${p.provisioningState}: ${counts.join(" · ")}`;
  const body = ($("run-targets") as HTMLTableElement).tBodies[0];
  body.replaceChildren(
    ...p.targets.map((t: Json) => {
      const row = document.createElement("tr");
      const cells = [shortName(t.clusterId), t.state, t.exitCode ?? "–", t.reason ?? ""];
      row.replaceChildren(...cells.map((text, i) => Object.assign(document.createElement("td"), { textContent: String(text), className: i === 1 ? `state-${t.state}` : "" })));
      if (t.commandId) {
        row.tabIndex = 0;
        row.dataset.cluster = shortName(t.clusterId);
        const open = () => openResult(t.commandId, t.clusterId);
        row.addEventListener("click", open);
        row.addEventListener("keydown", (e) => e.key === "Enter" && open());
      }
      return row;
    }),
  );
}

async function runFanOut(command: string, context: string): Promise<void> {
  const body: Json = { command, context, targets: { tags: parseTags(($("tags") as HTMLInputElement).value) } };
  const concurrency = ($("max-concurrency") as HTMLInputElement).value.trim();
  const errors = ($("max-errors") as HTMLInputElement).value.trim();
  if (concurrency) body.maxConcurrency = concurrency;
  if (errors) body.maxErrors = errors;
  const { headers, json } = await call("POST", withVersion(`${runScope()}/runCommand`), body);
  $("fan-out").hidden = false;
  $("state").textContent = "Fan-out accepted: open a target for its output";
  currentRun = new URL(headers.get("Location") ?? "", window.location.href).pathname;
  ($("cancel") as HTMLButtonElement).disabled = false;
  showTargets(json);
  try {
    for (;;) {
      const { status, json: run } = await call("GET", withVersion(currentRun));
      showTargets(run);
      if (status === 200) break;
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    currentRun = null;
    ($("cancel") as HTMLButtonElement).disabled = true;
  }
}

// ---- saved commands: pick one, fill in its parameters (secrets masked), run it ----

let savedCommands: Json[] = [];

function savedChosen(): boolean {
  return document.querySelector<HTMLInputElement>('input[name="mode"]:checked')?.value === "saved";
}

async function loadSaved(): Promise<void> {
  const sub = ($("subscription") as HTMLSelectElement).value;
  const group = ($("group") as HTMLSelectElement).value;
  const scopes = [`/subscriptions/${sub}`, ...(group ? [`/subscriptions/${sub}/resourceGroups/${encodeURIComponent(group)}`] : [])];
  savedCommands = [];
  for (const scope of scopes) {
    const { json } = await call("GET", withVersion(`${scope}/providers/Microsoft.ContainerService/savedCommands`));
    savedCommands.push(...json.value);
  }
  const select = $("saved") as HTMLSelectElement;
  select.replaceChildren(...savedCommands.map((c, i) => new Option(c.name, String(i))));
  showSavedForm();
}

/** One input per parameter: a list for enums, a number for integers, a masked field for secrets. */
function showSavedForm(): void {
  const chosen = savedCommands[Number(($("saved") as HTMLSelectElement).value)];
  const about = chosen?.properties.description ? `${chosen.properties.description}. ` : "";
  $("saved-description").textContent = chosen ? `${about}Runs: ${chosen.properties.script}` : "No saved commands here.";
  const fields = Object.entries((chosen?.properties.parameters ?? {}) as Record<string, Json>).map(([name, spec]) => {
    const label = document.createElement("label");
    label.textContent = `${name} (${spec.type})`;
    let field: HTMLInputElement | HTMLSelectElement;
    if (spec.type === "enum") {
      field = document.createElement("select");
      field.replaceChildren(...spec.values.map((v: string) => new Option(v, v)));
      if (spec.default) field.value = spec.default;
    } else {
      const input = document.createElement("input");
      input.type = spec.type === "secret" ? "password" : spec.type === "integer" ? "number" : "text";
      input.autocomplete = "off";
      if (spec.pattern) input.pattern = spec.pattern;
      if (spec.default !== undefined) input.placeholder = `default: ${spec.default}`;
      field = input;
    }
    field.dataset.param = name;
    field.dataset.optional = String(spec.default !== undefined);
    label.append(field);
    return label;
  });
  $("saved-params").replaceChildren(...fields);
}

async function runSaved(): Promise<void> {
  const chosen = savedCommands[Number(($("saved") as HTMLSelectElement).value)];
  if (!chosen) throw new ApiError(400, "InvalidParameter", "Pick a saved command first.");
  const parameters: Record<string, string> = {};
  for (const field of document.querySelectorAll<HTMLInputElement | HTMLSelectElement>("#saved-params [data-param]")) {
    if (field.value !== "" || field.dataset.optional !== "true") parameters[field.dataset.param ?? ""] = field.value;
  }
  $("fan-out").hidden = true;
  const { headers } = await call("POST", withVersion(`${clusterPath()}/runSavedCommand`), { savedCommand: chosen.id, parameters });
  // Secret values leave the page's memory once sent.
  for (const field of document.querySelectorAll<HTMLInputElement>('#saved-params input[type="password"]')) field.value = "";
  $("state").textContent = "Accepted";
  await watch(new URL(headers.get("Location") ?? "", window.location.href).pathname);
}

// ---- the activity log: who did what, as Azure Monitor shows it ----

async function loadActivity(): Promise<void> {
  const sub = ($("subscription") as HTMLSelectElement).value;
  const since = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
  const filter = encodeURIComponent(`eventTimestamp ge ${since}`);
  try {
    const { json } = await call("GET", `/subscriptions/${sub}/providers/Microsoft.Insights/eventtypes/management/values?api-version=2015-04-01&$filter=${filter}`);
    const short = (id: string) => id.split("/").slice(-2).join("/");
    ($("activity") as HTMLTableElement).tBodies[0].replaceChildren(
      ...json.value.slice(0, 50).map((e: Json) => {
        const row = document.createElement("tr");
        const operation = e.operationName.value.split("/").slice(-2).join("/");
        const cells = [new Date(e.eventTimestamp).toLocaleString(), operation, e.status.value + (e.subStatus?.value ? ` (${e.subStatus.value})` : ""), e.caller || "–", short(e.resourceId)];
        row.replaceChildren(...cells.map((text) => Object.assign(document.createElement("td"), { textContent: text })));
        return row;
      }),
    );
  } catch (e) {
    showError(e);
  }
}

function recall(event: KeyboardEvent): void {
  if (event.key !== "ArrowUp" && event.key !== "ArrowDown") return;
  event.preventDefault();
  historyIndex = Math.max(-1, Math.min(history.length - 1, historyIndex + (event.key === "ArrowUp" ? 1 : -1)));
  ($("command") as HTMLInputElement).value = historyIndex >= 0 ? history[historyIndex] : "";
}

function start(): void {
  const tenant = document.querySelector<HTMLMetaElement>('meta[name="kubeinvoke-tenant"]')?.content ?? "";
  ($("tenant") as HTMLInputElement).value = tenant;
  $("signin-form").addEventListener("submit", signIn);
  $("subscription").addEventListener("change", loadGroups);
  $("group").addEventListener("change", loadClusters);
  $("cluster").addEventListener("change", loadHistory);
  $("run-form").addEventListener("submit", run);
  $("cancel").addEventListener("click", cancel);
  $("refresh").addEventListener("click", loadHistory);
  $("activity-refresh").addEventListener("click", loadActivity);
  for (const radio of document.querySelectorAll<HTMLInputElement>('input[name="mode"]')) {
    radio.addEventListener("change", () => {
      $("fan-out-options").hidden = !fanOutChosen();
      $("saved-options").hidden = !savedChosen();
      ($("command") as HTMLInputElement).required = !savedChosen();
      ($("command") as HTMLInputElement).disabled = savedChosen();
      if (savedChosen()) loadSaved().catch(showError);
    });
  }
  $("saved").addEventListener("change", showSavedForm);
  $("command").addEventListener("keydown", recall);
  const input = $("file-input") as HTMLInputElement;
  input.addEventListener("change", () => {
    attached = [...attached, ...Array.from(input.files ?? [])];
    showFiles();
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    attached = [...attached, ...Array.from(e.dataTransfer?.files ?? [])];
    showFiles();
  });
  drop.addEventListener("keydown", (e) => (e.key === "Enter" || e.key === " ") && input.click());
}

start();
