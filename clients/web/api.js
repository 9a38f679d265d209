// api.js - where the server is and how to ask it: URLs for HTTP and the WebSocket (carrying the
// page's ?token= when it has one), GET /v1/models, and turning failed requests into messages.

const pageParams = new URLSearchParams(location.search);

/** The token from the page's URL (?token=...), or "" when there is none. */
export const token = pageParams.get('token') || '';

/** An absolute http(s) URL for a server path, with the token as a query parameter. */
export function httpUrl(path) {
  const url = new URL(path, location.href);
  if (token) url.searchParams.set('token', token);
  return url.href;
}

/** The ws(s):// URL of a server path (wss: when the page came over https:), with the token. */
export function wsUrl(path) {
  const url = new URL(httpUrl(path));
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

/** Headers for fetch(): the token as a bearer token too, for servers behind proxies that drop queries. */
export function authHeaders() {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** An Error whose message is meant for people, with a short code for the page's logic. */
export class ServerError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

export const messages = {
  unreachable: 'Cannot reach the Earshot server. Is it running, and is this page served by it?',
  unauthorized: 'This server needs an access token: open the page as …/?token=YOUR_TOKEN.',
  over_capacity: 'The server is full: every session is in use. Try again in a moment.',
};

/** Makes a ServerError from an HTTP answer that is not ok (its JSON error body when it has one). */
export async function errorFromResponse(res) {
  if (res.status === 401) return new ServerError('unauthorized', messages.unauthorized);
  let code = `http_${res.status}`, detail = res.statusText;
  try {
    const body = await res.json();
    if (body && body.error) ({ code, message: detail } = body.error);
  } catch { /* not JSON */ }
  if (code === 'over_capacity') return new ServerError(code, 'The server is busy transcribing other files. Try again in a moment.');
  return new ServerError(code, `The server refused the request (${res.status}): ${detail}`);
}

/** GET /v1/models: the served model (its id, lookaheads, decoders). Throws a ServerError. */
export async function fetchModel() {
  let res;
  try {
    res = await fetch(httpUrl('/v1/models'), { headers: authHeaders(), cache: 'no-store' });
  } catch {
    throw new ServerError('unreachable', messages.unreachable);
  }
  if (!res.ok) throw await errorFromResponse(res);
  const body = await res.json();
  if (!body.data || !body.data.length) throw new ServerError('no_model', 'The server lists no model.');
  return body.data[0];
}

/**
 * Why a WebSocket could not be opened: browsers hide the HTTP status of a refused upgrade, so
 * this asks over HTTP. Returns a ServerError (unreachable, unauthorized, over_capacity or other).
 */
export async function diagnoseConnectFailure() {
  try {
    await fetchModel();
  } catch (e) {
    return e;
  }
  try {
    const res = await fetch(httpUrl('/healthz'), { cache: 'no-store' });
    if (res.status === 503) return new ServerError('over_capacity', messages.over_capacity);
  } catch { /* fall through */ }
  return new ServerError('connect_failed', 'The server refused the live connection.');
}
