// Requests to this gateway. URLs are built from location.origin: a page opened as http://user:pw@host/ui/
// cannot fetch() relative URLs in Chromium, and the browser has the basic-auth credentials for the origin.

export const origin = location.origin;

export class ApiError extends Error {
  constructor(status, text) {
    super(`${status}: ${text.trim() || "no answer"}`);
    this.status = status;
  }
}

// credentials "omit" for a function: the browser's cached basic auth for /system is not the function's business
// (the gateway passes Authorization through to functions), so it is sent only when typed in as a header.
export async function request(method, path, { json, body, headers = {}, signal, credentials = "same-origin" } = {}) {
  const init = { method, headers: { ...headers }, credentials, cache: "no-store", signal };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  return fetch(origin + path, init);
}

export async function call(method, path, options) {
  const response = await request(method, path, options);
  const text = await response.text();
  if (!response.ok) throw new ApiError(response.status, text);
  return text ? JSON.parse(text) : null;
}

// Each JSON object of an NDJSON answer, as it arrives.
export async function* ndjson(response) {
  if (!response.ok) throw new ApiError(response.status, await response.text());
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    pending += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, newline).trim();
      pending = pending.slice(newline + 1);
      if (line) yield JSON.parse(line);
    }
  }
  if (pending.trim()) yield JSON.parse(pending);
}

export const CODE_ANNOTATION = "com.pyfaasd.code";
export const DEFAULT_NAMESPACE = "openfaas-fn";

// The function's own routes (com.pyfaasd.domain, com.pyfaasd.path; docs/gateway.md "Function routes") as URLs on
// this gateway: a domain on this page's scheme and port, a path prefix on this origin.
export function routeUrls(fn) {
  const annotations = fn.annotations || {};
  const port = location.port ? `:${location.port}` : "";
  const domains = (annotations["com.pyfaasd.domain"] || "")
    .split(",")
    .map((d) => d.trim().toLowerCase().replace(/\.$/, ""))
    .filter(Boolean)
    .map((d) => `${location.protocol}//${d}${port}/`);
  const path = (annotations["com.pyfaasd.path"] || "").trim();
  return path ? [...domains, `${origin}${path.replace(/\/$/, "")}/`] : domains;
}

export function functionPath(fn) {
  const ns = fn.namespace && fn.namespace !== DEFAULT_NAMESPACE ? `.${fn.namespace}` : "";
  return `/function/${encodeURIComponent(fn.name)}${ns}`;
}
