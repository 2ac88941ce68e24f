// End-to-end tests of the web console: a real kubeinvoke server, driven in headless Chromium
// (Debian's /usr/bin/chromium through playwright-core). Screenshots go to console/test-output/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const binary = process.env.KUBEINVOKE_BIN ?? join(here, "../../target/debug/kubeinvoke");
const shots = join(here, "../test-output");
mkdirSync(shots, { recursive: true });

let server, base, root, admin, reader, browser;

function cli(...args) {
  return execFileSync(binary, args, {
    env: { ...process.env, HOME: root, KUBEINVOKE_URL: base, KUBEINVOKE_CA: join(root, "data/tls/ca.pem") },
    encoding: "utf8",
  });
}

before(async () => {
  root = mkdtempSync(join(tmpdir(), "kubeinvoke-console-"));
  server = spawn(binary, ["serve", "--data-dir", join(root, "data"), "--listen", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "ignore"] });
  base = await new Promise((resolve, reject) => {
    let seen = "";
    server.stdout.on("data", (chunk) => {
      seen += chunk;
      const match = seen.match(/listening on\s+(\S+)/);
      if (match) resolve(match[1]);
    });
    server.on("exit", (code) => reject(new Error(`server exited ${code}`)));
  });
  admin = JSON.parse(readFileSync(join(root, "data/bootstrap-admin.json"), "utf8"));
  cli("login", "--app-id", admin.appId, "--password", admin.password, "--tenant", admin.tenant);
  cli("group", "create", "-n", "console-rg", "-l", "westeurope");
  const kubeconfig = join(root, "kubeconfig");
  writeFileSync(kubeconfig, "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster: {server: 'https://203.0.113.5:6443'}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {token: t}\n");
  cli("cluster", "create", "-g", "console-rg", "-n", "web", "--kubeconfig", kubeconfig);
  const subscription = JSON.parse(cli("group", "list", "-o", "json")).value[0].id.split("/")[2];
  reader = JSON.parse(execFileSync(binary, ["sp", "create", "--name", "console-reader", "--role", "Reader", "--scope", `/subscriptions/${subscription}`, "--data-dir", join(root, "data")], { encoding: "utf8" }));
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  server?.kill("SIGKILL");
});

async function signedIn(who, cluster = "web") {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${base}/console`);
  assert.equal(await page.inputValue("#tenant"), admin.tenant, "the tenant is filled in");
  await page.fill("#app-id", who.appId);
  await page.fill("#secret", who.password);
  await page.click("button[type=submit]");
  await page.waitForSelector("#workspace:not([hidden])");
  await page.waitForFunction((name) => document.querySelector("#cluster").value === name, cluster);
  return page;
}

test("sign in, attach a file, and see the output before the command ends", async () => {
  const page = await signedIn(admin);
  await page.screenshot({ path: join(shots, "1-signed-in.png"), fullPage: true });
  await page.fill("#command", "cat note.txt; sleep 3; echo done");
  await page.setInputFiles("#file-input", { name: "note.txt", mimeType: "text/plain", buffer: Buffer.from("hello from file\n") });
  await page.click("#run");
  await page.waitForFunction(() => document.querySelector("#output").textContent.includes("hello from file"), null, { timeout: 20000 });
  const stateWhileStreaming = await page.textContent("#state");
  assert.match(stateWhileStreaming, /Running|Accepted/, "the output arrived while the command still ran");
  await page.screenshot({ path: join(shots, "2-live-output.png"), fullPage: true });
  await page.waitForFunction(() => document.querySelector("#state").textContent.startsWith("Succeeded"), null, { timeout: 20000 });
  assert.equal(await page.textContent("#exit-code"), "0");
  assert.match(await page.textContent("#output"), /hello from file\s+done/);
  // ↑ recalls the command.
  await page.fill("#command", "");
  await page.press("#command", "ArrowUp");
  assert.equal(await page.inputValue("#command"), "cat note.txt; sleep 3; echo done");
  await page.screenshot({ path: join(shots, "3-finished.png"), fullPage: true });
});

test("a flood of escape codes leaves the page with bounded state and stays usable", async () => {
  const page = await signedIn(admin);
  // 30,000 colour changes, 100,000 bold codes with no text, then a last line.
  const flood = "i=0; while [ $i -lt 30000 ]; do printf '\\033[1;3%dmx' $((i % 8)); i=$((i+1)); done; " +
    "head -c 100000 /dev/zero | tr '\\0' '@' | sed 's/@/\\x1b[1m/g'; echo; echo flood-over";
  await page.fill("#command", flood);
  await page.click("#run");
  await page.waitForFunction(() => document.querySelector("#state").textContent.startsWith("Succeeded"), null, { timeout: 60000 });
  await page.waitForFunction(() => document.querySelector("#output").textContent.includes("flood-over"), null, { timeout: 20000 });
  const shape = await page.evaluate(() => {
    const panel = document.querySelector("#output");
    const spans = [...panel.children];
    return { spans: spans.length, longestClass: Math.max(...spans.map((s) => s.className.length)), xs: (panel.textContent.match(/x/g) || []).length };
  });
  assert.ok(shape.spans <= 2001, `the page holds ${shape.spans} spans`);
  assert.ok(shape.longestClass <= 20, `a span's class grew to ${shape.longestClass} characters`);
  assert.equal(shape.xs, 30000, "no output is lost");
  // Still responsive: a new command runs and shows.
  await page.fill("#command", "echo after-the-flood");
  await page.click("#run");
  await page.waitForFunction(() => document.querySelector("#output").textContent.includes("after-the-flood"), null, { timeout: 20000 });
});

test("files dropped on the page are attached", async () => {
  const page = await signedIn(admin);
  await page.evaluate(() => {
    const transfer = new DataTransfer();
    transfer.items.add(new File(["dropped content\n"], "dropped.txt", { type: "text/plain" }));
    const target = document.querySelector("#drop");
    target.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    target.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
  });
  assert.match(await page.textContent("#files"), /dropped\.txt/);
  // Keyboard only: type the command and press Enter.
  await page.focus("#command");
  await page.keyboard.type("cat dropped.txt");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.querySelector("#state").textContent.startsWith("Succeeded"), null, { timeout: 20000 });
  assert.equal(await page.textContent("#output"), "dropped content\n");
});

test("cancel a running command", async () => {
  const page = await signedIn(admin);
  await page.fill("#command", "echo started; sleep 60");
  await page.click("#run");
  await page.waitForFunction(() => document.querySelector("#state").textContent.startsWith("Running"), null, { timeout: 20000 });
  await page.click("#cancel");
  await page.waitForFunction(() => document.querySelector("#state").textContent.startsWith("Canceled"), null, { timeout: 20000 });
  assert.match(await page.textContent("#state"), new RegExp(`Canceled by ${admin.appId}`));
  await page.screenshot({ path: join(shots, "4-canceled.png"), fullPage: true });
});

test("open an earlier result from the history", async () => {
  const page = await signedIn(admin);
  await page.waitForSelector("#history tbody tr");
  const row = page.locator("#history tbody tr", { hasText: "cat note.txt" }).first();
  await row.click();
  await page.waitForFunction(() => document.querySelector("#output").textContent.includes("hello from file"), null, { timeout: 10000 });
  assert.match(await page.textContent("#state"), /Succeeded/);
  await page.screenshot({ path: join(shots, "5-history.png"), fullPage: true });
});

test("a Reader is told in words that the role does not allow running commands", async () => {
  const page = await signedIn(reader);
  await page.fill("#command", "echo should not run");
  await page.click("#run");
  await page.waitForSelector("#error:not([hidden])");
  const message = await page.textContent("#error");
  assert.match(message, /your role does not allow this/);
  assert.match(message, /runcommand\/action/);
  await page.screenshot({ path: join(shots, "6-reader-refused.png"), fullPage: true });
});

test("a wrong secret is refused at sign-in", async () => {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  await page.goto(`${base}/console`);
  await page.fill("#app-id", admin.appId);
  await page.fill("#secret", "wrong");
  await page.click("button[type=submit]");
  await page.waitForSelector("#error:not([hidden])");
  assert.match(await page.textContent("#error"), /Sign-in failed/);
  assert.equal(await page.isHidden("#workspace"), true);
  await page.screenshot({ path: join(shots, "0-signin-refused.png"), fullPage: true });
});

test("fan out by tag: the targets fill in live and each one's output opens", async () => {
  const kubeconfig = join(root, "kubeconfig");
  for (const name of ["fleet-a", "fleet-b", "fleet-c"]) {
    cli("cluster", "create", "-g", "console-rg", "-n", name, "--kubeconfig", kubeconfig, "--tag", "fleet=yes");
  }
  // The first cluster in the list is selected: fleet-a now.
  const page = await signedIn(admin, "fleet-a");
  await page.check('input[name="mode"][value="tags"]');
  assert.equal(await page.isVisible("#tags"), true, "the fan-out options show");
  await page.fill("#tags", "fleet=yes");
  await page.fill("#max-concurrency", "1");
  await page.fill("#command", "echo out-of-$RANDOM-run; sleep 1");
  await page.click("#run");
  // Filling in live: some target is still pending or running while another has finished.
  await page.waitForFunction(() => {
    const states = [...document.querySelectorAll("#run-targets tbody tr td:nth-child(2)")].map((td) => td.textContent);
    return states.length === 3 && states.includes("Succeeded") && states.some((s) => s === "Pending" || s === "Running" || s === "Accepted");
  }, null, { timeout: 20000 });
  await page.screenshot({ path: join(shots, "7-fan-out-live.png"), fullPage: true });
  await page.waitForFunction(() => document.querySelector("#run-summary").textContent.startsWith("run Succeeded"), null, { timeout: 30000 });
  assert.match(await page.textContent("#run-summary"), /Succeeded 3/);
  await page.click('#run-targets tbody tr[data-cluster="console-rg/fleet-b"]');
  await page.waitForFunction(() => document.querySelector("#output").textContent.includes("out-of-"), null, { timeout: 10000 });
  assert.match(await page.textContent("#state"), /Succeeded/);
  await page.screenshot({ path: join(shots, "8-fan-out-target-output.png"), fullPage: true });
  // A tag written wrongly is explained, not sent.
  await page.fill("#tags", "fleet");
  await page.click("#run");
  await page.waitForSelector("#error:not([hidden])");
  assert.match(await page.textContent("#error"), /name=value/);
});

test("run a saved command from a form: enum as a list, secret masked, values never in the page after", async () => {
  cli("saved", "create", "-n", "who-is-there", "--script", 'echo "ns=$ns level=$level"; [ "$token" = open-sesame ] && echo secret-ok',
      "--param", "ns:string:[a-z-]+", "--param", "level:enum:info,debug", "--param", "token:secret");
  const page = await signedIn(admin, "fleet-a");
  await page.check('input[name="mode"][value="saved"]');
  await page.waitForSelector('#saved-params [data-param="token"]');
  assert.equal(await page.getAttribute('#saved-params [data-param="token"]', "type"), "password", "the secret is masked");
  assert.equal(await page.evaluate(() => document.querySelector('#saved-params [data-param="level"]').tagName), "SELECT");
  await page.fill('#saved-params [data-param="ns"]', "kube-system");
  await page.selectOption('#saved-params [data-param="level"]', "debug");
  await page.fill('#saved-params [data-param="token"]', "open-sesame");
  await page.screenshot({ path: join(shots, "9-saved-form.png"), fullPage: true });
  await page.click("#run");
  await page.waitForFunction(() => document.querySelector("#state").textContent.startsWith("Succeeded"), null, { timeout: 20000 });
  assert.equal(await page.textContent("#output"), "ns=kube-system level=debug\nsecret-ok\n");
  assert.equal(await page.inputValue('#saved-params [data-param="token"]'), "", "the secret left the form once sent");
});

test("the Activity table shows who ran what", async () => {
  const page = await signedIn(admin, "fleet-a");
  await page.fill("#command", "echo for-the-record");
  await page.click("#run");
  await page.waitForFunction(() => document.querySelector("#state").textContent.startsWith("Succeeded"), null, { timeout: 20000 });
  // The log is written just after the command ends: refresh until its last event shows.
  for (let i = 0; i < 40; i++) {
    await page.click("#activity-refresh");
    await page.waitForTimeout(250);
    const rows = await page.$$eval("#activity tbody tr", (trs) => trs.map((tr) => tr.textContent));
    if (rows.some((r) => r.includes("runcommand/action") && r.includes("Succeeded") && r.includes("fleet-a"))) break;
  }
  const rows = await page.$$eval("#activity tbody tr", (trs) => trs.map((tr) => tr.textContent));
  const ours = rows.filter((r) => r.includes("runcommand/action") && r.includes("fleet-a"));
  assert.ok(ours.some((r) => r.includes("Succeeded") && r.includes(admin.appId)), rows.join("\n"));
  assert.ok(ours.some((r) => r.includes("Accepted")), rows.join("\n"));
  await page.screenshot({ path: join(shots, "10-activity.png"), fullPage: true });
});

test("four eyes: the requester's run waits for approval, the approver sees what it runs and approves", async () => {
  const kubeconfig = join(root, "kubeconfig");
  cli("cluster", "create", "-g", "console-rg", "-n", "aa-guarded", "--kubeconfig", kubeconfig, "--approval", "always", "--approvers", "1");
  const subscription = JSON.parse(cli("group", "list", "-o", "json")).value[0].id.split("/")[2];
  const approver = JSON.parse(execFileSync(binary, ["sp", "create", "--name", "console-approver", "--role", "Owner", "--scope", `/subscriptions/${subscription}`, "--data-dir", join(root, "data")], { encoding: "utf8" }));

  // First in its group's list, so the page selects it.
  const requester = await signedIn(admin, "aa-guarded");
  await requester.fill("#command", "cat plan.txt; echo four-eyes-ok");
  await requester.setInputFiles("#file-input", { name: "plan.txt", mimeType: "text/plain", buffer: Buffer.from("the plan\n") });
  await requester.click("#run");
  await requester.waitForFunction(() => document.querySelector("#state").textContent.startsWith("Waiting for approval"), null, { timeout: 20000 });
  await requester.screenshot({ path: join(shots, "11-waiting-for-approval.png"), fullPage: true });
  // Its own command never waits for the requester.
  await requester.click("#approvals-refresh");
  await requester.waitForTimeout(300);
  assert.equal(await requester.$$eval("#approvals tbody tr", (rows) => rows.length), 0);
  assert.equal(await requester.isVisible("#approvals-empty"), true);

  const page = await signedIn(approver, "aa-guarded");
  await page.waitForSelector("#approvals tbody tr", { timeout: 10000 });
  const row = await page.textContent("#approvals tbody tr");
  assert.match(row, /cat plan\.txt; echo four-eyes-ok/);
  assert.match(row, /console-rg\/aa-guarded/);
  assert.match(row, /0\/1/);
  await page.click("#approvals tbody tr");
  await page.waitForSelector("#approval-detail:not([hidden])");
  assert.equal(await page.textContent("#approval-files"), "plan.txt (9 bytes)");
  assert.match(await page.textContent("#approval-requester"), new RegExp(admin.appId));
  // A decision needs a reason.
  await page.click("#approve");
  assert.match(await page.textContent("#approval-result"), /Say why/);
  await page.screenshot({ path: join(shots, "12-approver-queue.png"), fullPage: true });
  await page.fill("#approval-reason", "read the plan");
  await page.click("#approve");
  await page.waitForFunction(() => document.querySelector("#approval-result").textContent.includes("it runs now"), null, { timeout: 10000 });
  assert.equal(await page.$$eval("#approvals tbody tr", (rows) => rows.length), 0, "nothing waits any more");

  await requester.waitForFunction(() => document.querySelector("#state").textContent.startsWith("Succeeded"), null, { timeout: 20000 });
  assert.equal(await requester.textContent("#output"), "the plan\nfour-eyes-ok\n");
  await requester.screenshot({ path: join(shots, "13-approved-and-ran.png"), fullPage: true });
});

test("a fan-out to more clusters than a run shows at once lists every target", async () => {
  // The server shows a run with its first 100 targets; the console reads the rest by the run's
  // targetsNextLink. (Last in this file: the clusters it adds would crowd the others' lists.)
  const kubeconfig = join(root, "kubeconfig");
  cli("group", "create", "-n", "big-rg", "-l", "westeurope");
  const names = Array.from({ length: 105 }, (_, i) => `big-${String(i).padStart(3, "0")}`);
  for (const name of names) cli("cluster", "create", "-g", "big-rg", "-n", name, "--kubeconfig", kubeconfig, "--tag", "big=yes");
  // The first group in the list is selected, and its first cluster: big-rg's now.
  const page = await signedIn(admin, "big-000");
  await page.check('input[name="mode"][value="tags"]');
  await page.selectOption("#scope", "subscription");
  await page.fill("#tags", "big=yes");
  await page.fill("#max-concurrency", "16");
  await page.fill("#command", "true");
  await page.click("#run");
  await page.waitForFunction(() => document.querySelector("#run-summary").textContent.startsWith("run Succeeded"), null, { timeout: 120000 });
  assert.match(await page.textContent("#run-summary"), /Succeeded 105/);
  const shown = await page.$$eval("#run-targets tbody tr td:first-child", (cells) => cells.map((td) => td.textContent));
  assert.deepEqual(shown, names.map((n) => `big-rg/${n}`), "every target once, in selection order");
});
