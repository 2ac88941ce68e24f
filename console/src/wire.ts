// The server's JSON as the console reads it: the same shapes as the wire types in `arm/`.

export interface ListResult<T> {
  value: T[];
  nextLink?: string;
}

export interface CloudError {
  error?: { code?: string; message?: string };
}

export interface TokenResponse {
  access_token: string;
  expires_in: number;
}

export interface OAuthError {
  error: string;
  error_description?: string;
}

export interface Subscription {
  subscriptionId: string;
}

export interface Named {
  id: string;
  name: string;
}

export interface CommandResult {
  id: string;
  properties: CommandResultProperties;
}

export interface CommandResultProperties {
  provisioningState: string;
  exitCode?: number;
  startedAt?: string;
  finishedAt?: string;
  logs?: string;
  reason?: string;
}

export interface HistoryEntry {
  id: string;
  properties: CommandResultProperties & { command: string; submittedBy: string; submittedAt: string };
}

export interface CommandRun {
  id: string;
  name: string;
  properties: {
    provisioningState: string;
    counts: Record<string, number>;
    /** The first targets; the others at `targetsNextLink`, a page at a time. */
    targets: RunTarget[];
    targetsNextLink?: string;
  };
}

export interface RunTarget {
  clusterId: string;
  commandId?: string;
  state: string;
  exitCode?: number;
  reason?: string;
}

export interface ParameterDeclaration {
  type: "string" | "enum" | "integer" | "secret";
  pattern?: string;
  values?: string[];
  default?: string | number;
}

export interface SavedCommand {
  id: string;
  name: string;
  properties: {
    script: string;
    description?: string;
    parameters?: Record<string, ParameterDeclaration>;
  };
}

export interface ActivityEvent {
  eventTimestamp: string;
  operationName: { value: string };
  status: { value: string };
  subStatus?: { value?: string };
  caller?: string;
  resourceId: string;
}

export interface FanOutBody {
  command: string;
  context: string;
  targets: { tags: Record<string, string> };
  maxConcurrency?: string;
  maxErrors?: string;
}

/** A decision on a held command. */
export interface ApprovalDecision {
  approver: string;
  decision: "Approved" | "Rejected";
  reason: string;
  decidedAt: string;
}

/** A command held for approval, as its approvers see it (`…/commandResults/{id}/approval`). */
export interface ApprovalView {
  id: string;
  name: string;
  properties: {
    commandId: string;
    clusterId: string;
    provisioningState: string;
    command: string;
    requestedBy: string;
    requestedAt: string;
    expiresAt: string;
    approvalsNeeded: number;
    approvals: ApprovalDecision[];
    savedCommand?: string;
    parameters?: Record<string, string>;
    files: { name: string; size: number }[];
  };
}
