// The gateway API: bearer token handling, JSON errors, and the daily-limit headers.

const TOKEN_KEY = 'agentgate.token';

/** An error answer from the gateway (`{code, message}`), or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, code, message, body = null) {
    super(message || code || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = code || (status ? `http_${status}` : 'network_error');
    this.body = body;
  }
}

const listeners = { unauthorized: new Set(), limit: new Set() };

/** on('unauthorized', fn(message)) fires on any 401; on('limit', fn(limit)) on new limit headers. */
export function on(event, fn) {
  listeners[event].add(fn);
  return () => listeners[event].delete(fn);
}

function emit(event, value) {
  for (const fn of listeners[event]) {
    try {
      fn(value);
    } catch (e) {
      console.error(e);
    }
  }
}

export function getToken() {
  return localStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

/** The `sub` claim of a JWT, for display only (the gateway does the real check). */
export function tokenUser(token = getToken()) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(
      [...atob(part)].map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join(''),
    );
    return JSON.parse(json).sub || '';
  } catch {
    return '';
  }
}

/** Reads `x-dailylimit-*` headers into {limit, remaining, usage, reset}, or null. */
function limitFromHeaders(headers) {
  const limit = headers.get('x-dailylimit-limit');
  const remaining = headers.get('x-dailylimit-remaining');
  if (limit === null || remaining === null) return null;
  return {
    limit: Number(limit),
    remaining: Number(remaining),
    usage: Number(headers.get('x-dailylimit-usage') ?? 0),
    reset: headers.get('x-dailylimit-reset') || '',
  };
}

/** Turns a non-2xx response into an ApiError (JSON `{code, message}` when the body is JSON). */
export async function errorFrom(res) {
  let body = null;
  let text = '';
  try {
    text = await res.text();
    body = JSON.parse(text);
  } catch {
    // Not JSON: keep the text (a proxy's error page, say).
  }
  const message = body?.message || text.slice(0, 200) || res.statusText || `HTTP ${res.status}`;
  return new ApiError(res.status, body?.code, message, body);
}

/**
 * fetch with the bearer token. Returns the raw Response for any status, except that a 401 signs
 * the user out (and still returns the response). Network failures throw ApiError(0).
 */
export async function rawFetch(path, { method = 'GET', headers = {}, body, signal, auth = true } = {}) {
  const all = { ...headers };
  const token = getToken();
  if (auth && token) all.Authorization = `Bearer ${token}`;
  if (body !== undefined && typeof body !== 'string') {
    all['Content-Type'] = 'application/json';
    body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, { method, headers: all, body, signal, cache: 'no-store' });
  } catch (e) {
    if (e?.name === 'AbortError' || signal?.aborted) throw e;
    throw new ApiError(0, 'network_error', 'Cannot reach the server. Check your connection.');
  }
  const limit = limitFromHeaders(res.headers);
  if (limit) emit('limit', limit);
  if (res.status === 401 && auth && token) {
    // Read the reason without consuming the caller's body.
    const reason = await res
      .clone()
      .json()
      .then((b) => b?.message)
      .catch(() => '');
    emit('unauthorized', reason || 'Your session is no longer valid.');
  }
  return res;
}

/** A JSON call: resolves to the parsed body (null for 204), throws ApiError otherwise. */
export async function api(path, options = {}) {
  const res = await rawFetch(path, options);
  if (!res.ok) throw await errorFrom(res);
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

export const getMessageLimit = () =>
  api('/message-limit').then((b) => {
    const limit = {
      limit: b.dailyMessageLimit,
      remaining: b.remainingMessages,
      usage: b.currentUsage,
      reset: b.nextResetTime,
    };
    emit('limit', limit);
    return limit;
  });

export const listApps = (page, limit = 10) => api(`/apps?page=${page}&limit=${limit}`);
export const getApp = (id) => api(`/apps/${encodeURIComponent(id)}`);
export const getHistory = (id) => api(`/apps/${encodeURIComponent(id)}/history`);
export const deleteApp = (id) => api(`/apps/${encodeURIComponent(id)}`, { method: 'DELETE' });
export const cancelRun = (runId) =>
  api(`/runs/${encodeURIComponent(runId)}/cancel`, { method: 'POST' });

/** The deployment of an app, or null when it was never deployed (404). */
export async function getDeployment(appId) {
  try {
    return await api(`/deployment-status/${encodeURIComponent(appId)}`);
  } catch (e) {
    if (e.status === 404) return null;
    throw e;
  }
}

/** `GET /apps/:id/read-url`, optionally for one version. */
export function getReadUrl(appId, version) {
  const query = version ? `?version=${encodeURIComponent(version)}` : '';
  return api(`/apps/${encodeURIComponent(appId)}/read-url${query}`);
}

/** `GET /apps/:id/versions`: a page of versions, newest first (`cursor` = the last page's `nextCursor`). */
export function getVersions(appId, cursor) {
  const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : '';
  return api(`/apps/${encodeURIComponent(appId)}/versions${query}`);
}

/** `GET /apps/:id/diff` → {text, truncated}: the unified diff from version `from` (0: none) to `to`. */
export async function getDiff(appId, to, from = 0) {
  const res = await rawFetch(`/apps/${encodeURIComponent(appId)}/diff?from=${from}&to=${to}`);
  if (!res.ok) throw await errorFrom(res);
  return { text: await res.text(), truncated: res.headers.get('x-diff-truncated') === 'true' };
}

/**
 * Whether the one-click dev sign-in exists: `GET /auth/dev-login` answers 200 `{enabled:true}`
 * (or 405) when enabled.
 * Anything else (404, 401 from the auth layer, a network error) hides the button.
 */
export async function devLoginAvailable() {
  try {
    const res = await fetch('/auth/dev-login', { cache: 'no-store' });
    // 405: the route exists for POST only, which is as good as a yes.
    if (res.status === 405) return true;
    if (!res.ok) return false;
    const body = await res.json().catch(() => ({}));
    return body.enabled !== false;
  } catch {
    return false;
  }
}

/** `POST /auth/dev-login` → the token (and the user it is for). */
export async function devLogin(user) {
  const res = await rawFetch('/auth/dev-login', { method: 'POST', body: { user }, auth: false });
  if (!res.ok) throw await errorFrom(res);
  return res.json();
}
