#!/usr/bin/env node
/*
 * browser_test.js: the customer page (/app/) and the operator dashboard
 * (/admin/) driven in a real headless Chromium through puppeteer-core,
 * against a running nginx + Nchan + PostgREST + moverz_batch stack whose
 * photos are analysed by the fake AI service (test/fake_ai).  The photo
 * files of the customer page are tested by upload_test.js, in between;
 * shared helpers: lib.js.
 *
 * Run by test/e2e/45_browser.sh; by hand:
 *   MB_API_URL=http://127.0.0.1:PORT MB_TOKEN_CUSTOMER=<jwt> MB_TOKEN_OPERATOR=<jwt> \
 *   MB_SHOTS_DIR=/tmp/shots node test/browser/browser_test.js
 * Optional: MB_PROJECT_NAME (the project the customer creates), MB_CHROMIUM
 * (default /usr/bin/chromium), FAKE_AI_URL (the fake's counters are then
 * checked too).
 *
 * Prints TAP ("ok N - ...", "not ok N - ...", then "1..N"); exit status 1 on
 * any failure. Every wait has a timeout, the browser is always closed and
 * processing is always left resumed (POST /rpc/admin_resume).
 */
'use strict';

const fs = require('fs');
const path = require('path');
const puppeteer = require('puppeteer-core');
const {
  API, TOKEN_CUSTOMER, TOKEN_OPERATOR, CHROMIUM, WAIT_MS, LONG_WAIT_MS,
  diag, ok, is, plan, failures,
  sleep, claims, api, apiOk, pollUntil, waitPage, pause, resume, getBatch,
  photoRows, finishedOnPage, pageErrors, watchPage, shot, openCustomer,
} = require('./lib.js');
const { uploadTests } = require('./upload_test.js');

const DEMO_FILE = path.join(__dirname, '..', '..', 'web', 'customer', 'demo-photos.json');
const OVERALL_MS = 6 * 60000;  // the watchdog of the whole run

/* fmtNumber: as web/common.js shows a volume (at most 2 decimals). */
function fmtNumber(value, maxDecimals = 2) {
  return String(Number(Number(value).toFixed(maxDecimals)));
}

/* ---------------------------------------------------- the expected answers */

/* What test/fake_ai/fake_analyze.c answers (see test/fake_ai/README.md):
   the room is the request's, else the first filename rule that matches,
   else "other"; the items come from items=label:qty:vol,... (a missing
   quantity is 1, a missing or non-numeric volume 0); a host ending in
   ".invalid" or fault=unreachable answers 422 NETWORK_ERROR. */
const ROOM_RULES = [
  ['salon', 'living_room'], ['living', 'living_room'], ['lounge', 'living_room'],
  ['chambre', 'bedroom'], ['bedroom', 'bedroom'], ['cuisine', 'kitchen'], ['kitchen', 'kitchen'],
  ['sdb', 'bathroom'], ['bath', 'bathroom'], ['bureau', 'office'], ['office', 'office'],
  ['garage', 'garage'], ['entree', 'hallway'], ['hall', 'hallway'],
  ['salle_a_manger', 'dining_room'], ['dining', 'dining_room'],
];

function fakeRoom(photo) {
  if (photo.roomType) return photo.roomType;
  const name = String(photo.filename || '').toLowerCase();
  for (const [needle, room] of ROOM_RULES) if (name.includes(needle)) return room;
  return 'other';
}

/* micro: a decimal volume as an exact integer number of 1e-6 m3 (BigInt). */
function micro(text) {
  const m = /^(\d+)(?:\.(\d{1,6}))?$/.exec(text);
  if (!m) return 0n;  // non-numeric: the fake answers 0
  return BigInt(m[1]) * 1000000n + BigInt((m[2] || '').padEnd(6, '0'));
}

function fakeFails(photo) {
  const u = new URL(photo.url);
  return u.hostname.endsWith('.invalid') || u.searchParams.get('fault') === 'unreachable';
}

function fakeItems(photo) {
  const raw = new URL(photo.url).searchParams.get('items');
  if (raw === null) throw new Error(photo.filename + ': no items= in its URL, the fake would answer from a hash');
  if (raw === '') return [];
  return raw.split(',').map((part) => {
    const [label, qty, vol] = part.split(':');
    const quantity = qty === undefined || qty === '' ? 1 : parseInt(qty, 10);
    return { label, quantity, volume: micro(vol === undefined ? '' : vol) };
  });
}

/* expectedInventory: {failed: [filenames], done: [filenames], totalItems,
   totalMicro, rooms: [[roomType, items, micro]] sorted by room}. */
function expectedInventory(photos) {
  const rooms = new Map();
  const result = { failed: [], done: [], totalItems: 0, totalMicro: 0n, rooms: [] };
  for (const p of photos) {
    if (fakeFails(p)) {
      result.failed.push(p.filename);
      continue;
    }
    result.done.push(p.filename);
    const room = fakeRoom(p);
    const r = rooms.get(room) || { items: 0, micro: 0n };
    for (const item of fakeItems(p)) {
      r.items += item.quantity;
      r.micro += BigInt(item.quantity) * item.volume;
    }
    rooms.set(room, r);
  }
  for (const [room, r] of rooms) {
    result.totalItems += r.items;
    result.totalMicro += r.micro;
    result.rooms.push([room, r.items, r.micro]);
  }
  result.rooms.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return result;
}

const microToNumber = (m) => Number(m) / 1e6;
const toMicro = (n) => BigInt(Math.round(Number(n) * 1e6));

/* summaryRows: an inventorySummary as [[roomType, items, micro-string]], sorted. */
function summaryRows(summary) {
  return (summary.rooms || []).map((r) => [r.roomType, Number(r.itemsCount), String(toMicro(r.volume_m3))])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/* -------------------------------------------------------------- page reads */

/* inventoryShown: what the customer page shows of the inventory. */
function inventoryShown(page) {
  return page.evaluate(() => ({
    visible: !document.getElementById('inventory').hidden &&
             document.getElementById('inventory').getClientRects().length > 0,
    totalItems: document.getElementById('total-items').textContent,
    totalVolume: document.getElementById('total-volume').textContent,
    rooms: [...document.querySelectorAll('#rooms tbody tr')].map((r) => [...r.cells].map((c) => c.textContent)),
  }));
}

/* ------------------------------------------------------------------- main */

/* customerTests: the customer page. Returns what the operator tests need. */
async function customerTests(browser, ctx) {
  const sub = String(claims(TOKEN_CUSTOMER).sub);
  const projectName = process.env.MB_PROJECT_NAME || 'browser e2e ' + sub;
  // Sign-in from the fragment.
  const page = await openCustomer(browser, '/app/');
  is(await page.$eval('#signed-in-user', (e) => e.textContent), sub, '/app/ signs in from #token=: #signed-in-user shows the sub');
  is(await page.evaluate(() => window.location.hash), '', 'the token is removed from the address bar');

  // A new project, through the form; it becomes the selected one.
  await page.type('#new-project', projectName);
  await page.click('#create-project');
  const selected = await waitPage(page, (name) => {
    const sel = document.getElementById('project');
    return sel.selectedIndex >= 0 && sel.options[sel.selectedIndex].textContent === name && sel.value !== '';
  }, WAIT_MS, projectName);
  ok(selected, 'a project created with #new-project + #create-project is selected in #project');
  ctx.projectId = await page.$eval('#project', (e) => e.value);
  const projects = (await apiOk('GET', '/api/projects?perPage=100', TOKEN_CUSTOMER)).projects || [];
  ok(projects.some((p) => p.id === ctx.projectId && p.name === projectName),
     'the API lists that project for the customer', projects);

  // The demo photos.
  const demo = JSON.parse(fs.readFileSync(DEMO_FILE, 'utf8'));
  const expected = expectedInventory(demo);
  ctx.expected = expected;
  diag('expected from demo-photos.json: ' + expected.done.length + ' DONE, failed ' + expected.failed.join(',') +
       ', ' + expected.totalItems + ' items, ' + microToNumber(expected.totalMicro) + ' m3');
  await page.click('#use-demo');
  const filled = await waitPage(page, (n) => document.getElementById('urls').value.split('\n').filter(Boolean).length === n,
                                WAIT_MS, demo.length);
  ok(filled, '#use-demo fills #urls with the ' + demo.length + ' demo photos');

  // Submit with processing paused, so that the page's stream is connected
  // before anything happens and sees every change.
  await pause();
  try {
    await page.click('#submit');
    const live = await waitPage(page, () => window.mbState.batchId && window.mbState.events.length >= 1 &&
                                document.getElementById('stream-state').textContent === 'live', WAIT_MS);
    ok(live, '#submit creates a batch and the page follows it live (EventSource)');
    ctx.batchId = await page.evaluate(() => window.mbState.batchId);
    const first = await page.evaluate(() => window.mbState.events[0] || null);
    is(first && [first.batchId, first.status, first.counts && first.counts.total],
       [ctx.batchId, 'QUEUED', demo.length], 'the first event is the batch as created (QUEUED, 7 photos)');
  } finally {
    await resume();
  }
  if (!ctx.batchId) throw new Error('no batch was created from the page');

  const finished = await waitPage(page, finishedOnPage, LONG_WAIT_MS, 'PARTIAL', 2);
  ok(finished, 'the batch ends PARTIAL on the page, with its inventory', await page.evaluate(() => ({
    status: document.getElementById('batch-status').textContent,
    events: window.mbState.events.length, last: window.mbState.lastEvent,
  })));
  const st = await page.evaluate(() => ({
    width: document.getElementById('progress-fill').style.width,
    now: document.getElementById('progress-bar').getAttribute('aria-valuenow'),
    status: document.getElementById('batch-status').textContent,
    events: window.mbState.events.length, gets: window.mbState.gets,
    last: window.mbState.lastEvent, stream: document.getElementById('stream-state').textContent,
  }));
  is([st.width, st.now], ['100%', '100'], 'the progress bar reaches 100 (#progress-fill width, aria-valuenow)');
  // the fill has a CSS width transition: wait until it is drawn full
  ok(await waitPage(page, () => {
    const fill = document.getElementById('progress-fill').getBoundingClientRect().width;
    return Math.abs(fill - document.getElementById('progress-bar').clientWidth) < 1;
  }, 5000), 'the progress bar is drawn full');
  is(st.status, 'PARTIAL', '#batch-status shows PARTIAL');
  ok(st.events >= 2, 'the progress came through the stream (' + st.events + ' events)', st);
  ok(st.last && st.last.inventoryReady === true && st.last.status === 'PARTIAL',
     'the last event is PARTIAL with inventoryReady: true', st.last);
  ok(st.gets <= st.events + 1, 'no polling: ' + st.gets + ' GET(s) for ' + st.events + ' event(s)', st);
  is(st.stream, 'finished', 'the stream is closed as finished');

  // Photos.
  const rows = await photoRows(page);
  is(rows.length, demo.length, 'the photo table has ' + demo.length + ' rows');
  is(rows.filter((r) => r.status === 'ERROR').map((r) => [r.name, r.error]),
     expected.failed.map((f) => [f, 'NETWORK_ERROR']), 'the unreachable photo (' + expected.failed.join(', ') + ') is ERROR, NETWORK_ERROR');
  is(rows.filter((r) => r.status === 'DONE').map((r) => r.name).sort(), expected.done.slice().sort(),
     'the ' + expected.done.length + ' other photos are DONE');

  // Inventory: the page, the API, and what the fake answered.
  const inv = await inventoryShown(page);
  ok(inv.visible, '#inventory is visible');
  is(inv.totalItems, String(expected.totalItems), '#total-items = the sum of the fake\'s quantities (' + expected.totalItems + ')');
  is(inv.totalVolume, fmtNumber(microToNumber(expected.totalMicro)),
     '#total-volume = the sum of quantity x volume (' + fmtNumber(microToNumber(expected.totalMicro)) + ')');
  is(inv.rooms.map((r) => r.join('|')).sort(),
     expected.rooms.map(([room, items, m]) => [room, String(items), fmtNumber(microToNumber(m))].join('|')).sort(),
     '#rooms: one row per room with its items and volume');
  const batch = await getBatch(ctx.batchId);
  const summary = batch.inventorySummary || {};
  is([batch.status, Number(summary.totalItems), String(toMicro(summary.totalVolume))],
     ['PARTIAL', expected.totalItems, String(expected.totalMicro)],
     'GET /api/batches/:id: PARTIAL, inventorySummary totals as expected');
  is(summaryRows(summary), expected.rooms.map(([room, items, m]) => [room, items, String(m)]),
     'GET /api/batches/:id: inventorySummary rooms as expected');
  is(inv.rooms.map((r) => r[0]), (summary.rooms || []).map((r) => r.roomType), '#rooms in the API\'s order');
  ctx.summary = summary;
  ctx.failedPhoto = (batch.photos || []).find((p) => p.status === 'ERROR') || null;
  ctx.customerShot = await shot(page, 'customer.png');
  ok(fs.statSync(ctx.customerShot).size > 0, 'customer page screenshot taken');

  // Retry of the PARTIAL batch from the page (paused until the stream is
  // back, so that the re-run is seen live).
  ok(await page.$eval('#retry', (b) => !b.hidden && b.getClientRects().length > 0), '#retry is visible for the PARTIAL batch');
  const runBefore = await photoRun(ctx.batchId, ctx.failedPhoto && ctx.failedPhoto.id);
  await page.evaluate((name) => {
    window.__retrySeen = [];
    const seen = () => {
      const row = [...document.querySelectorAll('#photos tbody tr')].find((r) => r.cells[0].textContent === name);
      const status = row ? row.dataset.status : null;
      if (status && window.__retrySeen[window.__retrySeen.length - 1] !== status) window.__retrySeen.push(status);
    };
    window.__retryObserver = new MutationObserver(seen);
    window.__retryObserver.observe(document.querySelector('#photos tbody'), { childList: true, subtree: true, attributes: true });
  }, expected.failed[0]);
  const eventsBefore = st.events;
  await pause();
  try {
    await page.click('#retry');
    const rerun = await waitPage(page, (n) => window.mbState.events.length > n &&
                                 document.getElementById('batch-status').textContent !== 'PARTIAL' &&
                                 document.getElementById('stream-state').textContent === 'live', WAIT_MS, eventsBefore);
    ok(rerun, 'after #retry the batch runs again and the page follows it live',
       await page.evaluate(() => [document.getElementById('batch-status').textContent, window.mbState.events.length]));
  } finally {
    await resume();
  }
  const refinished = await waitPage(page, finishedOnPage, LONG_WAIT_MS, 'PARTIAL', eventsBefore + 2);
  const seen = await page.evaluate(() => { window.__retryObserver.disconnect(); return window.__retrySeen; });
  ok(refinished, 'the retried batch ends PARTIAL again (events ' + eventsBefore + ' -> ' +
     (await page.evaluate(() => window.mbState.events.length)) + ')');
  ok(seen.length >= 2 && seen.slice(0, -1).some((s) => s === 'PENDING' || s === 'PROCESSING') && seen[seen.length - 1] === 'ERROR',
     'the failed photo\'s row went ' + seen.join(' -> '), seen);
  const runAfter = await photoRun(ctx.batchId, ctx.failedPhoto && ctx.failedPhoto.id);
  ok(reran(runBefore, runAfter), 'the failed photo was analysed again and failed again (' + runText(runBefore) +
     ' -> ' + runText(runAfter) + ', ' + runAfter.errorCode + ')', { before: runBefore, after: runAfter });
  const inv2 = await inventoryShown(page);
  is([inv2.totalItems, inv2.totalVolume, inv2.rooms], [inv.totalItems, inv.totalVolume, inv.rooms], 'the same inventory after the retry');
  const st2 = await page.evaluate(() => ({ events: window.mbState.events.length, gets: window.mbState.gets }));
  ok(st2.gets <= st2.events + 1, 'still no polling after the retry: ' + st2.gets + ' GET(s) for ' + st2.events + ' event(s)', st2);

  // An API error is shown in the API's words.
  await page.$eval('#urls', (e) => { e.value = ''; });
  await page.type('#urls', 'ftp://x/y.jpg');
  await page.click('#submit');
  const shown = await waitPage(page, () => document.getElementById('error').textContent.includes('imageUrls[0]'), WAIT_MS);
  const errText = await page.$eval('#error', (e) => e.textContent);
  ok(shown, 'an invalid URL: #error shows the API\'s message (' + JSON.stringify(errText) + ')');
  is(await page.evaluate(() => window.mbState.batchId), ctx.batchId, 'the batch on screen stays');

  // The stream over WebSocket, same URL, for a batch still queued.
  await pause();
  try {
    const created = await apiOk('POST', '/api/batches', TOKEN_CUSTOMER, {
      projectId: ctx.projectId,
      imageUrls: [{ filename: 'ws.jpg', url: 'https://photos.example.com/ws.jpg?items=lamp:1:0.1' }],
    });
    const wsUrl = API.replace('http', 'ws') + '/api/batches/' + created.batchId + '/stream?access_token=' +
                  encodeURIComponent(TOKEN_CUSTOMER);
    const got = await page.evaluate((url) => new Promise((resolve) => {
      const ws = new WebSocket(url);
      const done = (v) => { clearTimeout(timer); try { ws.close(); } catch (e) { /* closed */ } resolve(v); };
      const timer = setTimeout(() => done({ error: 'no message in 15 s' }), 15000);
      ws.onmessage = (m) => done({ data: String(m.data) });
      ws.onclose = (e) => done({ error: 'closed with code ' + e.code });
    }), wsUrl);
    let msg = null;
    try { msg = JSON.parse(got.data); } catch (e) { msg = null; }
    ok(msg !== null, 'a WebSocket on the stream URL gets a JSON message first', got);
    is(msg && [msg.batchId, msg.status], [created.batchId, 'QUEUED'], 'that first message is the batch\'s current state (QUEUED)');
  } finally {
    await resume();
  }
  await page.close();
}

/* photoRun: how a photo last ran, as the operator API says: {status,
   attempts, finishedAt, errorCode}, plus calls: the fake AI service's count
   of calls for it when FAKE_AI_URL is set (else null). A retry sets
   attempts back to 0 (reopen_photos), so a re-run shows as a later
   finishedAt and one more call, not as more attempts. */
async function photoRun(batchId, photoId) {
  const r = await apiOk('GET', '/rpc/admin_batch_photos?id=' + batchId, TOKEN_OPERATOR);
  const p = (r.photos || []).find((x) => x.id === photoId) || {};
  let calls = null;
  if (process.env.FAKE_AI_URL && photoId) {
    try {
      const res = await fetch(process.env.FAKE_AI_URL + '/stats/photo?id=' + encodeURIComponent(photoId),
                              { signal: AbortSignal.timeout(5000) });
      calls = (await res.json()).calls;
    } catch (e) { calls = null; }
  }
  return { status: p.status, attempts: p.attempts, finishedAt: p.finishedAt || null, errorCode: p.errorCode, calls };
}

/* reran: after is a new finished run of the photo of before (ERROR again). */
function reran(before, after) {
  return after.status === 'ERROR' && after.errorCode === 'NETWORK_ERROR' && after.attempts >= 1 &&
    after.finishedAt !== null && before.finishedAt !== null &&
    Date.parse(after.finishedAt) > Date.parse(before.finishedAt) &&
    (before.calls === null || after.calls > before.calls);
}

/* runText: "attempts 1, finished 22:17:45.367, 2 calls" of a photoRun. */
function runText(r) {
  return 'attempts ' + r.attempts + ', finished ' + String(r.finishedAt).slice(11, 23) +
    (r.calls === null ? '' : ', ' + r.calls + ' AI call(s)');
}

/* operatorTests: the operator dashboard. */
async function operatorTests(browser, ctx) {
  const bctx = await browser.createBrowserContext();
  const page = await bctx.newPage();
  watchPage(page, '/admin/');
  await page.setViewport({ width: 1400, height: 1000 });
  await page.goto(API + '/admin/#token=' + encodeURIComponent(TOKEN_OPERATOR), { waitUntil: 'load', timeout: WAIT_MS });
  const shown = await waitPage(page, () => !document.getElementById('dashboard').hidden && window.mbAdmin.refreshes >= 1 &&
                               document.getElementById('q-done').textContent !== '', WAIT_MS);
  ok(shown, '/admin/ with an operator token shows the dashboard');

  const view = await page.evaluate(() => ({
    done: document.getElementById('q-done').textContent,
    paused: document.getElementById('q-paused').textContent,
    bars: document.querySelectorAll('#throughput-chart rect.bar').length,
    workers: [...document.querySelectorAll('#workers tbody tr')].map((r) => r.cells[0].textContent),
    days: [...document.querySelectorAll('#costs-day tbody tr')].map((r) => r.cells[0].textContent),
  }));
  ok(/^\d+$/.test(view.done) && Number(view.done) > 0, 'queue overview: #q-done is a number > 0 (' + view.done + ')', view);
  is(view.paused, 'no', '#q-paused: no');
  is(view.bars, 30, 'the throughput chart has 30 bars');
  ok(view.workers.includes('photo') && view.workers.includes('inventory'),
     '#workers lists the photo and inventory workers (' + view.workers.join(', ') + ')', view.workers);
  const now = new Date();
  const today = [now.toISOString().slice(0, 10),
    now.getFullYear() + '-' + String(now.getMonth() + 1).padStart(2, '0') + '-' + String(now.getDate()).padStart(2, '0')];
  ok(view.days.some((d) => today.includes(d)), '#costs-day has a row for today', view.days);

  // The batch list, and the PARTIAL filter.
  const batchRow = '#batches tbody tr[data-batch-id="' + ctx.batchId + '"]';
  ok(await waitPage(page, (sel) => document.querySelector(sel) !== null, WAIT_MS, batchRow),
     '#batches lists the customer\'s batch');
  await page.select('#f-status', 'PARTIAL');
  await page.click('#f-apply');
  const partialIds = ((await apiOk('GET', '/rpc/admin_batches?status=PARTIAL&maxRows=100', TOKEN_OPERATOR)).batches || [])
    .map((b) => b.batchId);
  const filtered = await waitPage(page, (sel, n) => {
    const rows = [...document.querySelectorAll('#batches tbody tr')];
    return document.querySelector(sel) !== null && rows.length === n && rows.every((r) => r.dataset.status === 'PARTIAL');
  }, WAIT_MS, batchRow, partialIds.length);
  ok(filtered, 'filter status PARTIAL: the batch is shown, with only PARTIAL batches (' + partialIds.length + ')',
     await page.$$eval('#batches tbody tr', (rs) => rs.map((r) => r.dataset.status)));
  await page.select('#f-status', '');
  await page.click('#f-apply');
  await waitPage(page, () => [...document.querySelectorAll('#batches tbody tr')].some((r) => r.dataset.status !== 'PARTIAL'), WAIT_MS);

  // Retry the failed photo from #failed.
  const photoId = ctx.failedPhoto && ctx.failedPhoto.id;
  ok(photoId, 'the customer\'s batch has a failed photo', ctx.failedPhoto);
  if (photoId) {
    const before = await photoRun(ctx.batchId, photoId);
    const button = '#failed tbody tr[data-photo-id="' + photoId + '"] button.retry-photo';
    const listed = await waitPage(page, (sel) => document.querySelector(sel) !== null, WAIT_MS, button);
    ok(listed, '#failed lists ' + ctx.expected.failed[0] + ' with a Retry button');
    if (listed) {
      await page.click(button);
      let after = null;
      const again = await pollUntil(async () => reran(before, (after = await photoRun(ctx.batchId, photoId))), WAIT_MS);
      ok(again, 'retry from #failed: the photo ran again and ends ERROR again (' + runText(before) + ' -> ' +
         runText(after) + ', ' + after.errorCode + ')', { before, after });
      ok(await waitPage(page, () => /requeued/.test(document.getElementById('action-status').textContent), WAIT_MS),
         'the dashboard says the photo was requeued (' +
         (await page.$eval('#action-status', (e) => e.textContent)) + ')');
      const b = await pollUntil(async () => {
        const x = await getBatch(ctx.batchId);
        return x.status === 'PARTIAL' && x.inventorySummary ? x : null;
      }, WAIT_MS);
      is(b && [b.status, Number(b.inventorySummary.totalItems), String(toMicro(b.inventorySummary.totalVolume))],
         ['PARTIAL', ctx.expected.totalItems, String(ctx.expected.totalMicro)], 'the batch is PARTIAL again, same inventory');
    }
  }

  // Pause stops new claims; resume lets them go.
  try {
    await page.click('#pause');
    ok(await waitPage(page, () => document.getElementById('q-paused').textContent === 'yes' &&
                      !document.getElementById('resume').hidden, WAIT_MS), '#pause: #q-paused shows yes, #resume offered');
    const created = await apiOk('POST', '/api/batches', TOKEN_CUSTOMER, {
      projectId: ctx.projectId,
      imageUrls: [{ filename: 'p.jpg', url: 'https://photos.example.com/p.jpg?items=box:1:0.1' }],
    });
    await sleep(3000);
    const held = await getBatch(created.batchId);
    is([held.status, (held.photos || []).map((p) => p.status)], ['QUEUED', ['PENDING']],
       'paused: 3 s later the new batch\'s photo is still PENDING');
    const t0 = Date.now();
    await page.click('#resume');
    ok(await waitPage(page, () => document.getElementById('q-paused').textContent === 'no', WAIT_MS), '#resume: #q-paused shows no');
    const done = await pollUntil(async () => ((await getBatch(created.batchId)).status === 'COMPLETED'), 30000);
    ok(done, 'resumed: the batch completes within 30 s (' + ((Date.now() - t0) / 1000).toFixed(1) + ' s)');

    // Cancel a batch held by the pause.
    await page.click('#pause');
    ok(await waitPage(page, () => document.getElementById('q-paused').textContent === 'yes', WAIT_MS), 'paused again');
    const victim = await apiOk('POST', '/api/batches', TOKEN_CUSTOMER, {
      projectId: ctx.projectId,
      imageUrls: [{ filename: 'c.jpg', url: 'https://photos.example.com/c.jpg?items=box:2:0.1' }],
    });
    await page.click('#refresh');
    const cancelButton = '#batches tbody tr[data-batch-id="' + victim.batchId + '"] button.cancel-batch';
    const offered = await waitPage(page, (sel) => document.querySelector(sel) !== null, WAIT_MS, cancelButton);
    ok(offered, 'a queued batch has a Cancel button in #batches');
    if (offered) {
      await page.click(cancelButton);
      ok(await waitPage(page, (id) => {
        const row = document.querySelector('#batches tbody tr[data-batch-id="' + id + '"]');
        return row && row.dataset.status === 'CANCELLED' && row.cells[2].textContent === 'CANCELLED';
      }, WAIT_MS, victim.batchId), 'button.cancel-batch: the row shows CANCELLED');
      is((await getBatch(victim.batchId)).status, 'CANCELLED', 'GET /api/batches/:id: CANCELLED');
    }
    await page.click('#resume');
    ok(await waitPage(page, () => document.getElementById('q-paused').textContent === 'no', WAIT_MS), 'resumed');
  } finally {
    await resume();
  }
  ctx.dashboardShot = await shot(page, 'dashboard.png');
  ok(fs.statSync(ctx.dashboardShot).size > 0, 'dashboard screenshot taken');
  await bctx.close();

  // A customer token on /admin/.
  const denied = await api('GET', '/rpc/admin_overview', TOKEN_CUSTOMER);
  is(denied.status, 403, 'the operator API answers a customer token 403');
  const cctx = await browser.createBrowserContext();
  const cpage = await cctx.newPage();
  watchPage(cpage, '/admin/ (customer)');
  await cpage.goto(API + '/admin/#token=' + encodeURIComponent(TOKEN_CUSTOMER), { waitUntil: 'load', timeout: WAIT_MS });
  const forbidden = await waitPage(cpage, () => !document.getElementById('forbidden').hidden, WAIT_MS);
  const fview = await cpage.evaluate(() => ({
    text: document.getElementById('forbidden').textContent,
    dashboard: !document.getElementById('dashboard').hidden,
  }));
  ok(forbidden && !fview.dashboard, 'a customer token on /admin/: #forbidden shown, no dashboard', fview);
  ok(denied.body && typeof denied.body.message === 'string' && fview.text.includes(denied.body.message),
     '#forbidden says the API\'s words (' + JSON.stringify(fview.text) + ')', denied.body);
  await cctx.close();
}

/* runPart: one part of the tests (fn), unless missing names what it needs
   from an earlier part; its exception fails it, not the parts after it. */
async function runPart(title, missing, fn) {
  if (missing) {
    ok(false, 'the ' + title + ' tests need ' + missing + ' (none)');
    return;
  }
  try {
    await fn();
  } catch (e) {
    ok(false, 'the ' + title + ' tests ran to their end', e && e.stack ? e.stack : String(e));
  }
}

async function main() {
  for (const [name, value] of [['MB_API_URL', API], ['MB_TOKEN_CUSTOMER', TOKEN_CUSTOMER], ['MB_TOKEN_OPERATOR', TOKEN_OPERATOR]]) {
    if (!value) {
      console.log('Bail out! ' + name + ' is not set');
      process.exit(1);
    }
  }
  let browser = null;
  const ctx = {};
  const watchdog = setTimeout(async () => {
    ok(false, 'the browser test finished within ' + OVERALL_MS / 1000 + ' s');
    plan();
    try { await resume(); } catch (e) { /* reported below by the exit status */ }
    if (browser) browser.process() && browser.process().kill('SIGKILL');
    process.exit(1);
  }, OVERALL_MS);
  try {
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--no-first-run'],
      protocolTimeout: LONG_WAIT_MS,
    });
    diag('browser: ' + (await browser.version()));
    await runPart('customer page', null, () => customerTests(browser, ctx));
    await runPart('photo file', ctx.projectId ? null : 'the customer\'s project', () => uploadTests(browser, ctx));
    await runPart('operator dashboard', ctx.batchId ? null : 'the customer\'s batch', () => operatorTests(browser, ctx));
    ok(pageErrors.length === 0, 'no JavaScript error on the pages', pageErrors.join('\n'));
  } catch (e) {
    ok(false, 'the browser runs', e && e.stack ? e.stack : String(e));
  } finally {
    try {
      const r = await resume();
      ok(r && r.paused === false, 'processing is left resumed');
    } catch (e) {
      ok(false, 'processing is left resumed', String(e));
    }
    if (browser) {
      try { await browser.close(); } catch (e) { if (browser.process()) browser.process().kill('SIGKILL'); }
    }
    clearTimeout(watchdog);
    plan();
  }
  process.exit(failures() === 0 ? 0 : 1);
}

main();
