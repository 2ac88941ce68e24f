// The approver's queue (four eyes): what waits for the signed-in principal's decision, the
// details of one (command, requester, cluster, attached files, saved command and parameters —
// secret values never reach the page), and Approve / Reject with a reason.

import { ApiError, call, explain, withVersion } from "./api.js";
import type { ApprovalView, ListResult } from "./wire.js";

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

function cell(text: string, className = ""): HTMLTableCellElement {
  return Object.assign(document.createElement("td"), { textContent: text, className });
}

/** `…/resourceGroups/rg/…/managedClusters/c1` → `rg/c1`. */
function shortCluster(clusterId: string): string {
  const parts = clusterId.split("/");
  return `${parts[4]}/${parts[parts.length - 1]}`;
}

function approvalsOf(view: ApprovalView): string {
  const given = view.properties.approvals.filter((d) => d.decision === "Approved").length;
  return `${given}/${view.properties.approvalsNeeded}`;
}

export class ApprovalQueue {
  /** The approval shown in the details panel. */
  private chosen: ApprovalView | null = null;
  private subscription = "";

  constructor(private readonly onChange: () => void) {
    $("approvals-refresh").addEventListener("click", () => this.load(this.subscription));
    $("approve").addEventListener("click", () => this.decide("approve"));
    $("reject").addEventListener("click", () => this.decide("reject"));
  }

  /** Lists what waits for the caller in `subscription`. */
  async load(subscription: string): Promise<void> {
    this.subscription = subscription;
    const body = ($("approvals") as HTMLTableElement).tBodies[0];
    try {
      const { json } = await call<ListResult<ApprovalView>>(
        "GET",
        withVersion(`/subscriptions/${subscription}/providers/Microsoft.ContainerService/pendingApprovals`),
      );
      $("approvals-empty").hidden = json.value.length > 0;
      body.replaceChildren(
        ...json.value.map((view) => {
          const p = view.properties;
          const row = document.createElement("tr");
          row.tabIndex = 0;
          row.dataset.id = view.name;
          const what = p.savedCommand ? `saved: ${p.savedCommand.split("/").pop()}` : p.command;
          row.replaceChildren(
            cell(new Date(p.requestedAt).toLocaleString()),
            cell(shortCluster(p.clusterId)),
            cell(what, "command"),
            cell(p.requestedBy),
            cell(approvalsOf(view)),
            cell(new Date(p.expiresAt).toLocaleString()),
          );
          const open = () => void this.open(view);
          row.addEventListener("click", open);
          row.addEventListener("keydown", (e) => e.key === "Enter" && open());
          return row;
        }),
      );
      if (this.chosen && !json.value.some((v) => v.name === this.chosen?.name)) this.show(null);
    } catch (e) {
      this.report(explain(e));
    }
  }

  /** The whole approval of a listed command (its attached files are read only here). */
  private async open(listed: ApprovalView): Promise<void> {
    try {
      const path = `${listed.properties.clusterId}/commandResults/${listed.name}/approval`;
      const { json } = await call<ApprovalView>("GET", withVersion(path));
      this.show(json);
    } catch (e) {
      this.report(explain(e));
    }
  }

  private show(view: ApprovalView | null): void {
    this.chosen = view;
    $("approval-detail").hidden = view === null;
    if (!view) return;
    const p = view.properties;
    $("approval-command").textContent = p.command;
    $("approval-cluster").textContent = shortCluster(p.clusterId);
    $("approval-requester").textContent = p.requestedBy;
    $("approval-count").textContent = `${approvalsOf(view)} approvals, until ${new Date(p.expiresAt).toLocaleString()}`;
    $("approval-saved").textContent = p.savedCommand
      ? `${p.savedCommand.split("/").pop()} ${Object.entries(p.parameters ?? {}).map(([k, v]) => `${k}=${v}`).join(" ")}`
      : "–";
    $("approval-files").replaceChildren(
      ...(p.files.length ? p.files : [{ name: "no files attached", size: -1 }]).map((f) =>
        Object.assign(document.createElement("li"), { textContent: f.size < 0 ? f.name : `${f.name} (${f.size} bytes)` }),
      ),
    );
    ($("approval-reason") as HTMLInputElement).value = "";
    this.report("");
  }

  private async decide(verb: "approve" | "reject"): Promise<void> {
    const view = this.chosen;
    if (!view) return;
    const reason = ($("approval-reason") as HTMLInputElement).value.trim();
    try {
      if (!reason) throw new ApiError(400, "InvalidParameter", "Say why: the reason is kept with your decision.");
      const path = `${view.properties.clusterId}/commandResults/${view.name}/${verb}`;
      const { json } = await call<ApprovalView>("POST", withVersion(path), { reason });
      const state = json.properties.provisioningState;
      // The queue is reloaded before the outcome is told, so what the page says and what it
      // lists never disagree (a decided command is no longer in the list once "it runs now" shows).
      this.chosen = null;
      await this.load(this.subscription);
      $("approval-detail").hidden = true;
      this.report(
        verb === "reject"
          ? `Rejected ${view.name}: it will not run.`
          : state === "PendingApproval"
            ? `Approved ${view.name}: ${approvalsOf(json)}, it waits for more approvers.`
            : `Approved ${view.name}: it runs now.`,
      );
      this.onChange();
    } catch (e) {
      this.report(explain(e));
    }
  }

  private report(text: string): void {
    $("approval-result").textContent = text;
  }
}
