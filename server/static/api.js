// Small helpers around the JSON API. Every non-2xx answer becomes an ApiProblem.
export class ApiProblem extends Error {
  constructor(status, error) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || `HTTP_${status}`;
    this.details = error;
  }
}

const KEY = "restora.apiKey";

export function apiKey() { return localStorage.getItem(KEY) || ""; }
export function saveApiKey(key) { localStorage.setItem(KEY, key.trim()); }

// EventSource, <img> and download links cannot send headers: the key goes in the query.
export function withKey(url) {
  const key = apiKey();
  return key ? `${url}${url.includes("?") ? "&" : "?"}key=${encodeURIComponent(key)}` : url;
}

export async function api(path, options = {}) {
  let response;
  const headers = { ...(options.headers || {}) };
  if (apiKey()) headers["X-API-KEY"] = apiKey();
  try {
    response = await fetch(path, { ...options, headers });
  } catch (cause) {
    throw new ApiProblem(0, { code: "NETWORK", message: "The server could not be reached." });
  }
  const text = await response.text();
  let body = {};
  try { body = text ? JSON.parse(text) : {}; } catch { body = { error: { message: text } }; }
  if (!response.ok) throw new ApiProblem(response.status, body.error || {});
  return body;
}

export function megabytes(bytes) {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(bytes >= 1e8 ? 0 : 1)} MB` : `${Math.round(bytes / 1e3)} KB`;
}
