/*
 * upload_test.js: photo files on the customer page (/app/, direct upload,
 * issue #21), run by browser_test.js in its browser, on the customer's
 * project.  A text file and a PNG over 5 MB are refused on the page, and
 * submitting then makes no request at all.  Three PNG files (two of them
 * the same bytes under other names) picked with the file chooser, opened
 * from the keyboard on the drop zone, one more dropped on it (a synthetic
 * drop), and a photo URL: the first submit has one PUT's bytes spoilt on
 * the way (request interception), so that file shows the API's refusal
 * and no batch is created; the second sends that file alone again and
 * creates the batch, which ends COMPLETED with the duplicate counted once,
 * and the fake AI service received each distinct file's bytes once (its
 * /stats/images, when FAKE_AI_URL is set).  The PNG files are written by
 * test/tools/make_png.js.
 */
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');
const {
  TOKEN_CUSTOMER, WAIT_MS, LONG_WAIT_MS, diag, ok, is,
  apiOk, waitPage, pause, resume, getBatch, finishedOnPage, shot, openCustomer,
} = require('./lib.js');

const MAKE_PNG = path.join(__dirname, '..', 'tools', 'make_png.js');
const PICKED = ['salon.png', 'salon-copy.png', 'chambre.png'];
const DROPPED = 'cuisine.png';
const URL_LINE = 'https://photos.example.com/e2e-files/garage.jpg?items=bicycle:2:0.6,shelving_unit:1:0.7 garage';

/* ----------------------------------------------------------------- files */

/* makeFiles: the test's files in a new temporary folder; returns it. */
function makeFiles() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mb_upload_files.'));
  const seed = crypto.randomInt(200);   // other bytes at each run
  const png = (name, ...args) => execFileSync(process.execPath, [MAKE_PNG, path.join(dir, name), ...args.map(String)]);
  png('salon.png', 72, 54, seed);
  png('chambre.png', 88, 66, seed + 1);
  png('cuisine.png', 56, 56, seed + 2);
  fs.copyFileSync(path.join(dir, 'salon.png'), path.join(dir, 'salon-copy.png'));
  png('big.png', 16, 16, seed, 5 * 1024 * 1024 + 1);
  fs.writeFileSync(path.join(dir, 'notes.txt'), 'these are no photos\n');
  return dir;
}

const sha256 = (file) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/* fakeImages: the fake AI service's calls per image SHA-256 (null without
   FAKE_AI_URL). */
async function fakeImages() {
  if (!process.env.FAKE_AI_URL) return null;
  const res = await fetch(process.env.FAKE_AI_URL + '/stats/images', { signal: AbortSignal.timeout(5000) });
  return new Map(((await res.json()).images || []).map((i) => [i.sha256, i.calls]));
}

/* ------------------------------------------------------------ page reads */

/* fileRows: the list of files: [{name, status, reason}]. */
function fileRows(page) {
  return page.$$eval('#files-table tbody tr', (rows) => rows.map((r) => ({
    name: r.cells[0].textContent, status: r.dataset.status, reason: r.querySelector('.file-reason').textContent,
  })));
}

/* watchRequests: the page's requests to the upload and batch URLs, as
   {method, path, body} (body: the JSON of a POST). */
function watchRequests(page) {
  const seen = [];
  page.on('request', (r) => {
    const p = new URL(r.url()).pathname;
    if (!p.startsWith('/api/uploads') && p !== '/api/batches') return;
    let body = null;
    try { body = r.method() === 'POST' ? JSON.parse(r.postData()) : null; } catch (e) { body = null; }
    seen.push({ method: r.method(), path: p, body });
  });
  return seen;
}

/* requestKinds: "POST /api/uploads", "PUT /api/uploads/:id", ... of requests. */
const requestKinds = (list) => list.map((r) => r.method + ' ' + r.path.replace(/[0-9a-f-]{36}$/, ':id'));

/* recordStatuses: from now on, the statuses each file's row goes through
   (window.__fileStatuses: name -> [status...], no repeats). */
function recordStatuses(page) {
  return page.evaluate(() => {
    window.__fileStatuses = {};
    const push = (name, s) => {
      const list = (window.__fileStatuses[name] = window.__fileStatuses[name] || []);
      if (s && list[list.length - 1] !== s) list.push(s);
    };
    const observer = new MutationObserver((records) => {
      const rows = new Set();
      for (const r of records) {
        if (r.attributeName !== 'data-status') continue;
        push(r.target.cells[0].textContent, r.oldValue);
        rows.add(r.target);
      }
      for (const tr of rows) push(tr.cells[0].textContent, tr.dataset.status);
    });
    observer.observe(document.querySelector('#files-table tbody'),
                     { subtree: true, attributes: true, attributeFilter: ['data-status'], attributeOldValue: true });
  });
}

/* --------------------------------------------------------------- actions */

/* dropFile: a synthetic drop of the file on the drop zone (dragenter,
   dragover, drop with a DataTransfer holding it); says whether the zone
   took the drag (cancelled dragenter) and was highlighted meanwhile. */
function dropFile(page, file) {
  return page.evaluate((name, b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], name, { type: 'image/png' }));
    const zone = document.getElementById('drop-zone');
    const fire = (type) => zone.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
    const taken = !fire('dragenter');
    const highlighted = zone.classList.contains('dragging');
    fire('dragover');
    fire('drop');
    return { taken, highlighted, after: zone.classList.contains('dragging') };
  }, path.basename(file), fs.readFileSync(file).toString('base64'));
}

/* spoilOnePut: the next PUT of a file goes with other bytes (the server
   refuses them); every other request goes on as it is. */
async function spoilOnePut(page) {
  let spoilt = false;
  await page.setRequestInterception(true);
  const handler = (req) => {
    if (req.isInterceptResolutionHandled()) return;
    if (!spoilt && req.method() === 'PUT' && new URL(req.url()).pathname.startsWith('/api/uploads/')) {
      spoilt = true;
      req.continue({ postData: 'these bytes are no image' });
    } else {
      req.continue();
    }
  };
  page.on('request', handler);
  return async () => {
    page.off('request', handler);
    await page.setRequestInterception(false);
  };
}

/* ----------------------------------------------------------------- tests */

/* refusedOnPage: a wrong type and a size over the limit are refused as soon
   as the files are picked; submitting makes no request, creates nothing. */
async function refusedOnPage(page, dir, requests) {
  const input = await page.$('#files');
  await input.uploadFile(path.join(dir, 'notes.txt'), path.join(dir, 'big.png'));
  await waitPage(page, () => document.querySelectorAll('#files-table tbody tr[data-status="refused"]').length === 2);
  const rows = await fileRows(page);
  is(rows.map((r) => [r.name, r.status]), [['notes.txt', 'refused'], ['big.png', 'refused']],
     'a text file and a PNG of 5 MB + 1 byte (#files.uploadFile) are refused on the page at once');
  ok(/not a JPEG, PNG, WebP or GIF image \(text\/plain\)/.test(rows[0] && rows[0].reason),
     'notes.txt: "' + (rows[0] && rows[0].reason) + '"');
  ok(/^too large: 5242881 bytes, more than the 5242880 bytes \(5 MB\) a photo may have/.test(rows[1] && rows[1].reason), 'big.png: "' + (rows[1] && rows[1].reason) + '"');
  const total = async () => (await apiOk('GET', '/api/batches?perPage=1', TOKEN_CUSTOMER)).total;
  const before = await total();
  await page.click('#submit');
  const said = await waitPage(page, () => /cannot be sent: notes\.txt, big\.png/.test(document.getElementById('error').textContent));
  ok(said, '#submit: #error says why (' + JSON.stringify(await page.$eval('#error', (e) => e.textContent)) + ')');
  is(requests.length, 0, 'no request made: nothing uploaded, no batch');
  is(await total(), before, 'the customer has no new batch');
  for (const name of ['notes.txt', 'big.png']) await page.click('button[aria-label="Remove ' + name + '"]');
  ok(await waitPage(page, () => document.getElementById('files-wrap').hidden), 'Remove takes them off the list');
}

/* pickAndDrop: three files through the file chooser, opened with Enter on
   the drop zone, and one dropped on it. */
async function pickAndDrop(page, dir) {
  const zone = await page.$eval('#drop-zone', (b) => ({ tag: b.tagName, type: b.type, text: b.textContent.trim() }));
  is([zone.tag, zone.type, zone.text.replace(/\s+/g, ' ')], ['BUTTON', 'button', 'Choose photo files or drop them here'],
     'the drop zone is a button that says what it does');
  await page.focus('#drop-zone');
  const waiting = page.waitForFileChooser({ timeout: WAIT_MS });
  // (a round trip to the page first: the key press would otherwise race
  // the interception of the chooser that waitForFileChooser turns on)
  await page.evaluate(() => 0);
  await page.keyboard.press('Enter');
  const chooser = await waiting;
  ok(chooser.isMultiple(), 'Enter on the drop zone opens the file chooser, for several files');
  is(await page.$eval('#files', (e) => e.accept), 'image/jpeg,image/png,image/webp,image/gif', 'the chooser offers the four image types');
  await chooser.accept(PICKED.map((f) => path.join(dir, f)));
  const drop = await dropFile(page, path.join(dir, DROPPED));
  ok(drop.taken && drop.highlighted && !drop.after, 'a synthetic drop: the zone takes the drag, highlighted until the drop', drop);
  const listed = await waitPage(page, (n) => {
    const rows = [...document.querySelectorAll('#files-table tbody tr')];
    return rows.length === n && rows.every((r) => r.dataset.status === 'waiting');
  }, WAIT_MS, PICKED.length + 1);
  const rows = await fileRows(page);
  ok(listed, 'the 4 files are listed, each waiting', rows);
  is(rows.map((r) => r.name), [...PICKED, DROPPED], 'in the order they came');
}

/* firstSubmit: one PUT spoilt: that file shows the API's refusal, the
   others are uploaded, no batch is created. */
async function firstSubmit(page, requests) {
  await page.type('input[aria-label="Room type of chambre.png"]', 'kids_room');
  await page.type('#urls', URL_LINE);
  await recordStatuses(page);
  const restore = await spoilOnePut(page);
  try {
    await page.click('#submit');
    ok(await waitPage(page, () => /^Not uploaded: /.test(document.getElementById('error').textContent)),
       '#error: "' + (await page.$eval('#error', (e) => e.textContent)) + '"');
  } finally {
    await restore();
  }
  const rows = await fileRows(page);
  const refused = rows.filter((r) => r.status === 'refused');
  ok(refused.length === 1 && rows.filter((r) => r.status === 'done').length === 3, '3 files done, 1 refused', rows);
  ok(refused[0] && /^upload [0-9a-f-]{36}: the bytes are not an image\/png image/.test(refused[0].reason),
     'the refused file shows the API\'s message (' + (refused[0] && refused[0].reason) + ')');
  is(requestKinds(requests), ['POST /api/uploads', ...Array(4).fill('PUT /api/uploads/:id')],
     'one POST /api/uploads, a PUT per file, no POST /api/batches');
  const files = (requests[0].body || {}).files || [];
  is(files.map((f) => [f.filename, f.contentType]), [...PICKED, DROPPED].map((f) => [f, 'image/png']),
     'POST /api/uploads announces each file with its type');
  await shot(page, 'uploads.png');
  return refused[0] ? refused[0].name : null;
}

/* secondSubmit: the refused file alone is sent again, then the batch is
   created and followed live until COMPLETED. */
async function secondSubmit(page, requests, again) {
  requests.length = 0;
  await pause();
  try {
    await page.click('#submit');
    ok(await waitPage(page, () => window.mbState.batchId &&
                      document.getElementById('stream-state').textContent === 'live', WAIT_MS),
       'submitted again: a batch is created and followed live', await page.$eval('#error', (e) => e.textContent));
  } finally {
    await resume();
  }
  is(requestKinds(requests), ['POST /api/uploads', 'PUT /api/uploads/:id', 'POST /api/batches'],
     'only the refused file was asked for and uploaded again, then POST /api/batches');
  is(((requests[0].body || {}).files || []).map((f) => f.filename), [again], 'that file: ' + again);
  const body = (requests[2] || {}).body || {};
  is([(body.imageUrls || []).length, (body.uploads || []).length, (body.uploads || []).filter((u) => u.roomType === 'kids_room').length],
     [1, 4, 1], 'POST /api/batches: the photo URL and the 4 uploads, a room type given on the page kept');
  ok(await waitPage(page, () => document.getElementById('files-wrap').hidden &&
                    document.getElementById('files-status').textContent === ''), 'the list of files is emptied');
  const statuses = await page.evaluate(() => window.__fileStatuses);
  is([...PICKED, DROPPED].map((f) => (statuses[f] || []).join('>')),
     [...PICKED, DROPPED].map((f) => (f === again ? 'waiting>uploading>refused>waiting>uploading>done' : 'waiting>uploading>done')),
     'each file\'s status went waiting > uploading > done (the refused one twice)');
  return page.evaluate(() => window.mbState.batchId);
}

/* finished: the batch ends COMPLETED, the duplicate counted once, the
   fake AI service got each distinct file once. */
async function finished(page, batchId, dir, imagesBefore) {
  ok(await waitPage(page, finishedOnPage, LONG_WAIT_MS, 'COMPLETED', 1), 'the batch ends COMPLETED on the page');
  const rows = await page.$$eval('#photos tbody tr', (trs) => trs.map((r) => [...r.cells].map((c) => c.textContent)));
  is(rows.map((r) => [r[0], r[1], r[2]]), [['garage.jpg', 'DONE', 'garage'], ['salon.png', 'DONE', 'living_room'],
     ['salon-copy.png', 'DONE', 'living_room'], ['chambre.png', 'DONE', 'kids_room'], ['cuisine.png', 'DONE', 'kitchen']],
     'the photo table: the URL, then the 4 files, all DONE');
  is(rows.map((r) => r[4]), ['', '', 'duplicate of salon.png', '', ''], 'salon-copy.png is a duplicate of salon.png');
  const batch = await getBatch(batchId);
  is([batch.status, batch.counts.total, batch.counts.completed], ['COMPLETED', 5, 5], 'GET /api/batches/:id: COMPLETED, 5 photos');
  const after = await fakeImages();
  if (after === null) {
    diag('FAKE_AI_URL is not set: what the fake received is not checked');
    return;
  }
  const sums = ['salon.png', 'chambre.png', 'cuisine.png'].map((f) => sha256(path.join(dir, f)));
  is(sha256(path.join(dir, 'salon-copy.png')), sums[0], 'salon-copy.png: the same bytes as salon.png');
  is(sums.map((s) => (after.get(s) || 0) - (imagesBefore.get(s) || 0)), [1, 1, 1],
     'the fake AI service received each distinct file\'s bytes once (SHA-256 in /stats/images)');
}

/* uploadTests: the photo files of the customer page. */
async function uploadTests(browser, ctx) {
  const dir = makeFiles();
  const bctx = await browser.createBrowserContext();
  try {
    const page = await openCustomer(bctx, '/app/ (files)');
    ok(await waitPage(page, (id) => document.querySelector('#project option[value="' + id + '"]') !== null,
                      WAIT_MS, ctx.projectId), 'a fresh page lists the customer\'s project');
    await page.select('#project', ctx.projectId);
    const requests = watchRequests(page);
    await refusedOnPage(page, dir, requests);
    await pickAndDrop(page, dir);
    const imagesBefore = await fakeImages();
    const again = await firstSubmit(page, requests);
    const batchId = await secondSubmit(page, requests, again);
    ctx.uploadBatchId = batchId;
    await finished(page, batchId, dir, imagesBefore);
  } finally {
    await bctx.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

module.exports = { uploadTests };
