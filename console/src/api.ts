// Calls to the server: the signed-in token (held only here, in memory), CloudErrors as
// `ApiError`, and words a person understands for each.

import type { CloudError, OAuthError, TokenResponse } from "./wire.js";

export const API = "2024-09-01";
export const RESOURCES_API = "2022-09-01";

export class ApiError extends Error {
  constructor(public status: number, public code: string, message: string) {
    super(message);
  }
}

/** The signed-in token; empty until sign-in. */
let token = "";

export const withVersion = (path: string, version = API) => `${path}${path.includes("?") ? "&" : "?"}api-version=${version}`;

/** Words a person understands for what went wrong. */
export function explain(e: unknown): string {
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

/** Client credentials against the server's own issuer; the token is kept for later calls. */
export async function signIn(tenant: string, appId: string, secret: string): Promise<void> {
  const form = new URLSearchParams({
    grant_type: "client_credentials",
    client_id: appId,
    client_secret: secret,
    scope: "https://management.azure.com/.default",
  });
  const response = await fetch(`/${encodeURIComponent(tenant)}/oauth2/v2.0/token`, { method: "POST", body: form });
  const json = await response.json();
  if (!response.ok) {
    const refused = json as OAuthError;
    throw new ApiError(response.status, refused.error, refused.error_description ?? refused.error);
  }
  token = (json as TokenResponse).access_token;
}

/** An ARM call; the answer's body read as `T`. */
export async function call<T>(method: string, path: string, body?: unknown): Promise<{ status: number; headers: Headers; json: T }> {
  const response = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const json = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const refused = (json ?? {}) as CloudError;
    throw new ApiError(response.status, refused.error?.code ?? String(response.status), refused.error?.message ?? text);
  }
  return { status: response.status, headers: response.headers, json: json as T };
}

/** A command's output: whole, or (with a signal) followed live. */
export function logs(resultPath: string, follow: boolean, signal?: AbortSignal): Promise<Response> {
  const url = withVersion(`${resultPath}/logs`) + (follow ? "&follow=true" : "");
  return fetch(url, { headers: { Authorization: `Bearer ${token}` }, signal });
}
