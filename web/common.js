/*
 * common.js: helpers shared by the customer page (/app/) and the operator
 * dashboard (/admin/), loaded as a classic script before the page's own one.
 * Everything is exposed on one global, window.MB:
 *   - api(method, path, body): a JSON call with the bearer token; throws an
 *     Error carrying the API's status, code, message, hint and details
 *     (responseError, also for the pages' own fetch calls);
 *   - token storage (sessionStorage "mbToken", first read from #token=<jwt>);
 *   - setupSignIn(): the sign-in block both pages share;
 *   - safe DOM building (el, escapeHtml) and error display;
 *   - formatting of numbers, money, dates and durations.
 */
(function () {
  'use strict';

  const TOKEN_KEY = 'mbToken';

  /* ---------------------------------------------------------------- storage */

  /* storageGet: sessionStorage.getItem that never throws (storage disabled). */
  function storageGet(key) {
    try { return window.sessionStorage.getItem(key); } catch (e) { return null; }
  }

  /* storageSet: sessionStorage.setItem, or removeItem when value is null. */
  function storageSet(key, value) {
    try {
      if (value === null || value === undefined) window.sessionStorage.removeItem(key);
      else window.sessionStorage.setItem(key, value);
    } catch (e) { /* storage unavailable: the page still works for this visit */ }
  }

  /* getToken / setToken / clearToken: the JWT of this browser tab. */
  function getToken() { return storageGet(TOKEN_KEY); }
  function setToken(token) { storageSet(TOKEN_KEY, token); }
  function clearToken() { storageSet(TOKEN_KEY, null); }

  /* takeTokenFromFragment: reads #token=<jwt> from the URL, stores it, and
     removes the fragment from the address bar. Returns the token or null. */
  function takeTokenFromFragment() {
    const hash = window.location.hash.replace(/^#/, '');
    if (!hash) return null;
    const token = new URLSearchParams(hash).get('token');
    if (!token) return null;
    setToken(token);
    window.history.replaceState(null, '', window.location.pathname + window.location.search);
    return token;
  }

  /* decodeJwt: the payload (claims) of a JWT, decoded from base64url, or
     null when the text is not a JWT. The signature is not checked here:
     the API does that. */
  function decodeJwt(token) {
    const parts = String(token || '').split('.');
    if (parts.length !== 3) return null;
    try {
      let b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
      b64 += '='.repeat((4 - (b64.length % 4)) % 4);
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const claims = JSON.parse(new TextDecoder().decode(bytes));
      return claims && typeof claims === 'object' ? claims : null;
    } catch (e) {
      return null;
    }
  }

  /* -------------------------------------------------------------------- API */

  /* api: calls the HTTP API with the stored token and JSON. Resolves to the
     parsed JSON body (null when empty). On an HTTP error, rejects with an
     Error whose message is the API's own "message", plus status, code, hint,
     details and retryAfter (the Retry-After header, if any). */
  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    const token = getToken();
    if (token) headers.Authorization = 'Bearer ' + token;
    const init = { method, headers, cache: 'no-store' };
    if (method !== 'GET' && method !== 'HEAD') {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body === undefined ? {} : body);
    }

    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      const err = new Error('The API could not be reached (' + e.message + ').');
      err.status = 0;
      throw err;
    }

    const data = await readJson(res);
    if (res.ok) return data;
    throw responseError(res, data);
  }

  /* readJson: the parsed JSON body of a response (null when empty or not
     JSON). */
  async function readJson(res) {
    const text = await res.text();
    if (!text) return null;
    try { return JSON.parse(text); } catch (e) { return null; }
  }

  /* responseError: the Error of an HTTP error response whose body (data) was
     read: its message is the API's own "message", with status, code, hint,
     details and retryAfter (the Retry-After header, if any). */
  function responseError(res, data) {
    const payload = data && typeof data === 'object' ? data : {};
    const message = typeof payload.message === 'string' && payload.message
      ? payload.message
      : ('HTTP ' + res.status + ' ' + (res.statusText || '')).trim();
    const err = new Error(message);
    err.status = res.status;
    err.code = payload.code ?? null;
    err.hint = payload.hint ?? null;
    err.details = payload.details ?? null;
    err.retryAfter = res.headers.get('Retry-After');
    return err;
  }

  /* errorText: how an error is shown: its message, and its hint (when
     present) on a line of its own. */
  function errorText(err) {
    const message = err && err.message ? err.message : String(err);
    const hint = err && err.hint !== null && err.hint !== undefined && err.hint !== '' ? String(err.hint) : '';
    return hint ? message + '\n' + hint : message;
  }

  /* showError / clearError: fill or empty an error box (role=alert). */
  function showError(box, err) {
    if (box) box.textContent = errorText(err);
  }
  function clearError(box) {
    if (box) box.textContent = '';
  }

  /* -------------------------------------------------------------------- DOM */

  /* escapeHtml: text made safe for HTML markup. The pages build their DOM
     with el() and textContent; this is for any markup built as a string. */
  function escapeHtml(value) {
    return String(value ?? '')
      .replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;').replace(/'/g, '&#39;');
  }

  /* el: creates an element. attrs: "class", "text" (textContent), "dataset"
     (an object), "hidden", "disabled", any other attribute by name. Children
     are nodes or strings (added as text, never parsed as HTML). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = String(value);
      else if (key === 'dataset') Object.assign(node.dataset, value);
      else if (key === 'hidden' || key === 'disabled') node[key] = Boolean(value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  /* ------------------------------------------------------------- formatting */

  /* fmtNumber: a number with at most maxDecimals decimals, "." as decimal
     separator, no grouping; "" for null/empty, the raw text if not numeric. */
  function fmtNumber(value, maxDecimals = 2) {
    if (value === null || value === undefined || value === '') return '';
    const n = Number(value);
    if (!Number.isFinite(n)) return String(value);
    return String(Number(n.toFixed(maxDecimals)));
  }

  /* fmtUsd: an amount in USD with exactly 4 decimals ("" for null). */
  function fmtUsd(value) {
    if (value === null || value === undefined || value === '') return '';
    const n = Number(value);
    return Number.isFinite(n) ? n.toFixed(4) : String(value);
  }

  /* fmtBytes: a size in bytes as "812 bytes", "12.4 kB" or "5 MB" (powers
     of 1024, as PostgreSQL's pg_size_bytes reads "5MB"). */
  function fmtBytes(n) {
    if (!(n >= 1024)) return n + ' bytes';
    if (n < 1024 * 1024) return fmtNumber(n / 1024, 1) + ' kB';
    return fmtNumber(n / (1024 * 1024), 1) + ' MB';
  }

  /* pad2: two-digit zero padding. */
  function pad2(n) { return String(n).padStart(2, '0'); }

  /* fmtDate: a timestamp as local "YYYY-MM-DD HH:MM:SS" ("" for null). */
  function fmtDate(value) {
    if (value === null || value === undefined || value === '') return '';
    const d = new Date(value);
    if (Number.isNaN(d.getTime())) return String(value);
    return d.getFullYear() + '-' + pad2(d.getMonth() + 1) + '-' + pad2(d.getDate()) + ' ' +
      pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
  }

  /* fmtTime: a timestamp as local "HH:MM" ("" for null). */
  function fmtTime(value) {
    if (value === null || value === undefined || value === '') return '';
    const d = new Date(value);
    if (Number.isNaN(d.getTime())) return String(value);
    return pad2(d.getHours()) + ':' + pad2(d.getMinutes());
  }

  /* fmtDuration: a number of seconds as "42 s", "3 min 05 s", "2 h 07 min"
     or "3 d 4 h" ("" for null). */
  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined || seconds === '') return '';
    let s = Math.max(0, Math.round(Number(seconds)));
    if (!Number.isFinite(s)) return String(seconds);
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + pad2(s % 60) + ' s';
    if (s < 86400) return Math.floor(s / 3600) + ' h ' + pad2(Math.floor((s % 3600) / 60)) + ' min';
    s = Math.floor(s / 3600);
    return Math.floor(s / 24) + ' d ' + (s % 24) + ' h';
  }

  /* shortId: the first 8 characters of an id, for narrow table cells. */
  function shortId(id) {
    return id === null || id === undefined ? '' : String(id).slice(0, 8);
  }

  /* ---------------------------------------------------------------- sign-in */

  /* buildSignIn: the sign-in block both pages share, in form#signin-form:
     its label and placeholder come from the form's data-label and
     data-placeholder. */
  function buildSignIn(form) {
    const el = (tag, props, children = []) => {
      const e = Object.assign(document.createElement(tag), props);
      children.forEach((c) => e.append(c));
      return e;
    };
    const input = el('input', { id: 'token', name: 'token', type: 'text', spellcheck: false,
      autocomplete: 'off', placeholder: form.dataset.placeholder || '' });
    const signedIn = el('span', { id: 'signed-in', className: 'signed-in', hidden: true }, [
      'Signed in as ', el('span', { id: 'signed-in-user' }), ' ',
      el('button', { id: 'signout', type: 'button', textContent: 'Sign out' })]);
    form.replaceChildren(el('label', { htmlFor: 'token', textContent: form.dataset.label || 'Access token' }),
      input, el('button', { id: 'signin', type: 'submit', className: 'primary', textContent: 'Sign in' }),
      signedIn);
  }

  /* setupSignIn: builds and wires the shared sign-in block (form containing input#token,
     button#signin; span#signed-in holding span#signed-in-user and
     button#signout). Signs in at once with the token of the URL fragment, or
     the one stored for this tab. Call it last, once the page is ready:
     onSignIn(token, claims) may run immediately. */
  function setupSignIn({ errorBox, onSignIn, onSignOut }) {
    buildSignIn(document.getElementById('signin-form'));
    const input = document.getElementById('token');
    const userSpan = document.getElementById('signed-in-user');
    const signedBox = document.getElementById('signed-in');
    const signOutButton = document.getElementById('signout');

    /* signIn: checks the token looks like a JWT, stores it, shows its "sub". */
    function signIn(token) {
      const claims = decodeJwt(token);
      if (!claims) {
        showError(errorBox, new Error('This is not a JWT: expected three base64url parts separated by dots.'));
        return false;
      }
      setToken(token);
      input.value = token;
      userSpan.textContent = claims.sub === undefined || claims.sub === null ? '' : String(claims.sub);
      signedBox.hidden = false;
      onSignIn(token, claims);
      return true;
    }

    input.form.addEventListener('submit', (event) => {
      event.preventDefault();
      clearError(errorBox);
      const token = input.value.trim();
      if (!token) {
        showError(errorBox, new Error('Paste an access token (JWT) first.'));
        return;
      }
      signIn(token);
    });

    signOutButton.addEventListener('click', () => {
      clearToken();
      input.value = '';
      userSpan.textContent = '';
      signedBox.hidden = true;
      clearError(errorBox);
      onSignOut();
    });

    const initial = takeTokenFromFragment() || getToken();
    if (initial) {
      input.value = initial;
      signIn(initial);
    }
  }

  window.MB = {
    api, readJson, responseError, errorText, showError, clearError,
    getToken, setToken, clearToken, takeTokenFromFragment, decodeJwt, setupSignIn,
    storageGet, storageSet,
    el, escapeHtml,
    fmtNumber, fmtBytes, fmtUsd, fmtDate, fmtTime, fmtDuration, shortId,
  };
})();
