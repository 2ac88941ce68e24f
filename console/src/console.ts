// The kubeinvoke web console: sign in with a service principal, pick a cluster, run a command
// with attached files, watch its output live, cancel it, and browse the cluster's history. This
// module is the page; `api.ts` holds the token and talks to the server, `zip.ts` builds the
// context, `ansi.ts` renders coloured output, `wire.ts` types what the server answers.

import { ApiError, RESOURCES_API, call, explain, logs, signIn as requestToken, withVersion } from "./api.js";
import { AnsiOutput } from "./ansi.js";
import { ApprovalQueue } from "./approvals.js";
import type {
  ActivityEvent, CommandResult, CommandRun, FanOutBody, HistoryEntry, ListResult, Named, ParameterDeclaration,
  RunTarget, SavedCommand, Subscription,
} from "./wire.js";
import { base64, zip } from "./zip.js";

/** What the page remembers between events; secrets are never part of it. */
const state = {
  /** Commands typed here, newest first, for arrow-key recall. */
  history: [] as string[],
  historyIndex: -1,
  attached: [] as File[],
  /** The command being watched, so Cancel and a new run can stop following it. */
  current: null as { resultPath: string; abort: AbortController } | null,
  /** The fan-out run being watched (its path), so Cancel stops the run rather than one command. */
  currentRun: null as string | null,
  savedCommands: [] as SavedCommand[],
};

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

const output = new AnsiOutput($("output"));

/** What waits for the signed-in principal's approval; a decision refreshes the history. */
const approvals = new ApprovalQueue(() => void loadHistory());

/** How the page names a command's state: a held one waits for an approver. */
function stateLabel(state: string | undefined): string {
  return state === "PendingApproval" ? "Waiting for approval" : state ?? "–";
}

function showError(e: unknown | null): void {
  const box = $("error");
  box.hidden = e === null;
  box.textContent = e === null ? "" : explain(e);
}

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
  try {
    await requestToken(tenant, ($("app-id") as HTMLInputElement).value.trim(), ($("secret") as HTMLInputElement).value);
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
  const { json } = await call<ListResult<Subscription>>("GET", withVersion("/subscriptions", RESOURCES_API));
  fill($("subscription"), json.value.map((s) => s.subscriptionId));
  await loadGroups();
  await approvals.load(($("subscription") as HTMLSelectElement).value);
}

async function loadGroups(): Promise<void> {
  try {
    const sub = ($("subscription") as HTMLSelectElement).value;
    const { json } = await call<ListResult<Named>>("GET", withVersion(`/subscriptions/${sub}/resourcegroups`, RESOURCES_API));
    fill($("group"), json.value.map((g) => g.name));
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
    const { json } = await call<ListResult<Named>>("GET", withVersion(`/subscriptions/${sub}/resourceGroups/${encodeURIComponent(group)}/providers/Microsoft.ContainerService/managedClusters`));
    fill($("cluster"), json.value.map((c) => c.name));
    await loadHistory();
  } catch (e) {
    showError(e);
  }
}

function showFiles(): void {
  $("files").replaceChildren(...state.attached.map((f) => Object.assign(document.createElement("li"), { textContent: `${f.name} (${f.size} bytes)` })));
}

function showStatus(result: CommandResult | null): void {
  const p: Partial<CommandResult["properties"]> = result?.properties ?? {};
  $("state").textContent = stateLabel(p.provisioningState);
  $("exit-code").textContent = p.exitCode === undefined ? "–" : String(p.exitCode);
  $("started").textContent = p.startedAt ? new Date(p.startedAt).toLocaleString() : "–";
  $("finished").textContent = p.finishedAt ? new Date(p.finishedAt).toLocaleString() : "–";
  const duration = p.startedAt && p.finishedAt ? (Date.parse(p.finishedAt) - Date.parse(p.startedAt)) / 1000 : null;
  $("duration").textContent = duration === null ? "–" : `${duration.toFixed(1)} s`;
  if (p.reason) $("state").textContent += ` (${p.reason})`;
}

async function streamOutput(resultPath: string, signal: AbortSignal): Promise<void> {
  const response = await logs(resultPath, true, signal);
  if (!response.ok || !response.body) return;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    output.append(decoder.decode(value, { stream: true }));
  }
}

async function watch(resultPath: string): Promise<void> {
  const abort = new AbortController();
  state.current = { resultPath, abort };
  ($("cancel") as HTMLButtonElement).disabled = false;
  const streamed = streamOutput(resultPath, abort.signal).then(() => true, () => false);
  try {
    let final: CommandResult;
    for (;;) {
      const { status, json } = await call<CommandResult>("GET", withVersion(resultPath));
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
      output.clear();
      const response = await logs(resultPath, false);
      output.append(response.ok ? await response.text() : final.properties.logs ?? "");
    }
    showStatus(final);
  } catch (e) {
    showError(e);
  } finally {
    abort.abort();
    state.current = null;
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
  state.history = [command, ...state.history.filter((h) => h !== command)];
  state.historyIndex = -1;
  showError(null);
  output.clear();
  showStatus(null);
  try {
    const context = state.attached.length ? base64(await zip(state.attached)) : "";
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
  const path = state.currentRun ?? state.current?.resultPath;
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
    const { json } = await call<ListResult<HistoryEntry>>("GET", withVersion(`${clusterPath()}/commandResults`) + "&$top=20");
    body.replaceChildren(
      ...json.value.map((entry) => {
        const p = entry.properties;
        const row = document.createElement("tr");
        row.tabIndex = 0;
        row.dataset.id = entry.id;
        const cells = [new Date(p.submittedAt).toLocaleString(), p.command, stateLabel(p.provisioningState), p.exitCode ?? "–", p.submittedBy];
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
  output.clear();
  try {
    const { json } = await call<CommandResult>("GET", withVersion(resultPath));
    showStatus(json);
    const response = await logs(resultPath, false);
    output.append(response.ok ? await response.text() : json.properties.logs ?? "");
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

function showTargets(run: CommandRun): void {
  const p = run.properties;
  const counts = Object.entries(p.counts).filter(([, n]) => n > 0).map(([state, n]) => `${state} ${n}`);
  $("run-summary").textContent = `run ${p.provisioningState}: ${counts.join(" · ")}`;
  const body = ($("run-targets") as HTMLTableElement).tBodies[0];
  body.replaceChildren(
    ...p.targets.map((t) => {
      const row = document.createElement("tr");
      const cells = [shortName(t.clusterId), t.state, t.exitCode ?? "–", t.reason ?? ""];
      row.replaceChildren(...cells.map((text, i) => Object.assign(document.createElement("td"), { textContent: String(text), className: i === 1 ? `state-${t.state}` : "" })));
      if (t.commandId) {
        row.tabIndex = 0;
        row.dataset.cluster = shortName(t.clusterId);
        const command = t.commandId;
        const open = () => openResult(command, t.clusterId);
        row.addEventListener("click", open);
        row.addEventListener("keydown", (e) => e.key === "Enter" && open());
      }
      return row;
    }),
  );
}

/** A run with all its targets: the first come with it, the others by `targetsNextLink`. */
async function readRun(runPath: string): Promise<{ status: number; run: CommandRun }> {
  const { status, json: run } = await call<CommandRun>("GET", withVersion(runPath));
  for (let next = run.properties.targetsNextLink; next; ) {
    const link = new URL(next, window.location.href);
    const { json: page } = await call<ListResult<RunTarget>>("GET", link.pathname + link.search);
    run.properties.targets.push(...page.value);
    next = page.nextLink;
  }
  delete run.properties.targetsNextLink;
  return { status, run };
}

async function runFanOut(command: string, context: string): Promise<void> {
  const body: FanOutBody = { command, context, targets: { tags: parseTags(($("tags") as HTMLInputElement).value) } };
  const concurrency = ($("max-concurrency") as HTMLInputElement).value.trim();
  const errors = ($("max-errors") as HTMLInputElement).value.trim();
  if (concurrency) body.maxConcurrency = concurrency;
  if (errors) body.maxErrors = errors;
  const { headers, json } = await call<CommandRun>("POST", withVersion(`${runScope()}/runCommand`), body);
  $("fan-out").hidden = false;
  $("state").textContent = "Fan-out accepted: open a target for its output";
  const runPath = new URL(headers.get("Location") ?? "", window.location.href).pathname;
  state.currentRun = runPath;
  ($("cancel") as HTMLButtonElement).disabled = false;
  showTargets(json);
  try {
    for (;;) {
      const { status, run } = await readRun(runPath);
      showTargets(run);
      if (status === 200) break;
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    state.currentRun = null;
    ($("cancel") as HTMLButtonElement).disabled = true;
  }
}

// ---- saved commands: pick one, fill in its parameters (secrets masked), run it ----

function savedChosen(): boolean {
  return document.querySelector<HTMLInputElement>('input[name="mode"]:checked')?.value === "saved";
}

async function loadSaved(): Promise<void> {
  const sub = ($("subscription") as HTMLSelectElement).value;
  const group = ($("group") as HTMLSelectElement).value;
  const scopes = [`/subscriptions/${sub}`, ...(group ? [`/subscriptions/${sub}/resourceGroups/${encodeURIComponent(group)}`] : [])];
  state.savedCommands = [];
  for (const scope of scopes) {
    const { json } = await call<ListResult<SavedCommand>>("GET", withVersion(`${scope}/providers/Microsoft.ContainerService/savedCommands`));
    state.savedCommands.push(...json.value);
  }
  const select = $("saved") as HTMLSelectElement;
  select.replaceChildren(...state.savedCommands.map((c, i) => new Option(c.name, String(i))));
  showSavedForm();
}

/** One input per parameter: a list for enums, a number for integers, a masked field for secrets. */
function showSavedForm(): void {
  const chosen: SavedCommand | undefined = state.savedCommands[Number(($("saved") as HTMLSelectElement).value)];
  const about = chosen?.properties.description ? `${chosen.properties.description}. ` : "";
  $("saved-description").textContent = chosen ? `${about}Runs: ${chosen.properties.script}` : "No saved commands here.";
  const fields = Object.entries(chosen?.properties.parameters ?? {}).map(([name, spec]: [string, ParameterDeclaration]) => {
    const label = document.createElement("label");
    label.textContent = `${name} (${spec.type})`;
    let field: HTMLInputElement | HTMLSelectElement;
    if (spec.type === "enum") {
      field = document.createElement("select");
      field.replaceChildren(...(spec.values ?? []).map((v) => new Option(v, v)));
      if (spec.default) field.value = String(spec.default);
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
  const chosen: SavedCommand | undefined = state.savedCommands[Number(($("saved") as HTMLSelectElement).value)];
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
    const { json } = await call<ListResult<ActivityEvent>>("GET", `/subscriptions/${sub}/providers/Microsoft.Insights/eventtypes/management/values?api-version=2015-04-01&$filter=${filter}`);
    const short = (id: string) => id.split("/").slice(-2).join("/");
    ($("activity") as HTMLTableElement).tBodies[0].replaceChildren(
      ...json.value.slice(0, 50).map((e) => {
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
  state.historyIndex = Math.max(-1, Math.min(state.history.length - 1, state.historyIndex + (event.key === "ArrowUp" ? 1 : -1)));
  ($("command") as HTMLInputElement).value = state.historyIndex >= 0 ? state.history[state.historyIndex] : "";
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
    state.attached = [...state.attached, ...Array.from(input.files ?? [])];
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
    state.attached = [...state.attached, ...Array.from(e.dataTransfer?.files ?? [])];
    showFiles();
  });
  drop.addEventListener("keydown", (e) => (e.key === "Enter" || e.key === " ") && input.click());
}

start();
