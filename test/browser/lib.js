/*
 * lib.js: what the browser tests (browser_test.js, upload_test.js) share:
 * their settings from the environment, TAP output, calls of the HTTP API,
 * waits with timeouts, page reads and screenshots.
 */
'use strict';

const fs = require('fs');
const path = require('path');

const API = (process.env.MB_API_URL || '').replace(/\/+$/, '');
const TOKEN_CUSTOMER = process.env.MB_TOKEN_CUSTOMER || '';
const TOKEN_OPERATOR = process.env.MB_TOKEN_OPERATOR || '';
const SHOTS_DIR = process.env.MB_SHOTS_DIR || path.join(require('os').tmpdir(), 'moverz_browser_shots');
const CHROMIUM = process.env.MB_CHROMIUM || '/usr/bin/chromium';
const WAIT_MS = 30000;         // default wait
const LONG_WAIT_MS = 60000;    // a whole batch

/* ------------------------------------------------------------------ TAP */

let testNo = 0;
let failedCount = 0;
let planPrinted = false;

function diag(text) {
  for (const line of String(text).split('\n')) console.log('#   ' + line);
}

/* ok: one TAP test; extra (any value) is printed as a diagnostic on failure. */
function ok(cond, desc, extra) {
  testNo += 1;
  if (cond) {
    console.log('ok ' + testNo + ' - ' + desc);
  } else {
    failedCount += 1;
    console.log('not ok ' + testNo + ' - ' + desc);
    if (extra !== undefined) diag(typeof extra === 'string' ? extra : JSON.stringify(extra));
  }
  return Boolean(cond);
}

/* is: ok with got/want (compared as JSON). */
function is(got, want, desc) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  return ok(g === w, desc, 'got:  ' + g + '\nwant: ' + w);
}

function plan() {
  if (planPrinted) return;
  planPrinted = true;
  console.log('1..' + testNo);
}

/* failures: how many tests failed so far. */
const failures = () => failedCount;

/* ---------------------------------------------------------------- helpers */

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/* claims: the payload of a JWT (not verified). */
function claims(token) {
  const b64 = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
  return JSON.parse(Buffer.from(b64, 'base64').toString('utf8'));
}

/* api: one JSON request to the HTTP API; resolves to {status, body}. */
async function api(method, urlPath, token, body) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = 'Bearer ' + token;
  const init = { method, headers, signal: AbortSignal.timeout(20000) };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(API + urlPath, init);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
  return { status: res.status, body: data };
}

/* apiOk: api, throwing unless the status is 2xx. */
async function apiOk(method, urlPath, token, body) {
  const r = await api(method, urlPath, token, body);
  if (r.status < 200 || r.status > 299) {
    throw new Error(method + ' ' + urlPath + ': HTTP ' + r.status + ' ' + JSON.stringify(r.body));
  }
  return r.body;
}

/* pollUntil: calls fn until it returns a truthy value or timeoutMs passes;
   resolves to the last value (falsy on timeout). */
async function pollUntil(fn, timeoutMs, intervalMs = 250) {
  const deadline = Date.now() + timeoutMs;
  let value;
  for (;;) {
    value = await fn();
    if (value || Date.now() >= deadline) return value;
    await sleep(intervalMs);
  }
}

/* waitPage: page.waitForFunction with a timeout; true, or false on timeout. */
async function waitPage(page, fn, timeoutMs, ...args) {
  try {
    await page.waitForFunction(fn, { timeout: timeoutMs || WAIT_MS, polling: 100 }, ...args);
    return true;
  } catch (e) {
    if (e && e.name === 'TimeoutError') return false;
    throw e;
  }
}

const pause = () => apiOk('POST', '/rpc/admin_pause', TOKEN_OPERATOR, {});
const resume = () => apiOk('POST', '/rpc/admin_resume', TOKEN_OPERATOR, {});
const getBatch = async (id) => (await apiOk('GET', '/api/batches/' + id, TOKEN_CUSTOMER)).batch;

/* -------------------------------------------------------------- page reads */

/* photoRows: the customer page's photo table: [{name, status, error}]. */
function photoRows(page) {
  return page.$$eval('#photos tbody tr', (rows) => rows.map((r) => ({
    name: r.cells[0].textContent,
    status: r.dataset.status,
    error: (r.querySelector('td.error-code') || {}).textContent || '',
  })));
}

/* finishedOnPage: the page shows a finished batch with its inventory. */
function finishedOnPage(status, minEvents) {
  const s = window.mbState;
  const rows = [...document.querySelectorAll('#photos tbody tr')];
  return s && s.lastEvent && s.lastEvent.inventoryReady === true && s.events.length >= minEvents &&
    document.getElementById('batch-status').textContent === status &&
    document.getElementById('progress-bar').getAttribute('aria-valuenow') === '100' &&
    !document.getElementById('inventory').hidden &&
    rows.length > 0 && rows.every((r) => r.dataset.status === 'DONE' || r.dataset.status === 'ERROR');
}

/* ------------------------------------------------------------------ pages */

const pageErrors = [];  // the JavaScript errors of every page watched

/* watchPage: records the page's JavaScript errors; its default timeout. */
function watchPage(page, name) {
  page.on('pageerror', (err) => pageErrors.push(name + ': ' + (err && err.message ? err.message : err)));
  page.setDefaultTimeout(WAIT_MS);
}

/* shot: a full-page screenshot into SHOTS_DIR; resolves to its path. */
async function shot(page, file) {
  fs.mkdirSync(SHOTS_DIR, { recursive: true });
  const target = path.join(SHOTS_DIR, file);
  await page.screenshot({ path: target, fullPage: true });
  return target;
}

/* openCustomer: a new page of the browser context on /app/, signed in with
   the customer token from the URL fragment; resolves once the workspace is
   shown. */
async function openCustomer(context, name) {
  const page = await context.newPage();
  watchPage(page, name);
  await page.setViewport({ width: 1280, height: 900 });
  await page.goto(API + '/app/#token=' + encodeURIComponent(TOKEN_CUSTOMER), { waitUntil: 'load', timeout: WAIT_MS });
  await waitPage(page, () => !document.getElementById('workspace').hidden, WAIT_MS);
  return page;
}

module.exports = {
  API, TOKEN_CUSTOMER, TOKEN_OPERATOR, SHOTS_DIR, CHROMIUM, WAIT_MS, LONG_WAIT_MS,
  diag, ok, is, plan, failures,
  sleep, claims, api, apiOk, pollUntil, waitPage, pause, resume, getBatch,
  photoRows, finishedOnPage, pageErrors, watchPage, shot, openCustomer,
};
