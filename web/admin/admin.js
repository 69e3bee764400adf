/*
 * admin.js: the operator dashboard (/admin/). Reads the /rpc/admin_* API
 * with a moverz_operator token and shows the queue, a throughput chart,
 * batches (filterable) and their photos, failed photos, workers and costs.
 * Every panel is refreshed every 5 s, right after each action and on
 * "Refresh now". A 403 (e.g. a customer token) hides the dashboard and shows
 * the API's message. Tests read window.mbAdmin.
 */
(function () {
  'use strict';

  const {
    api, el, showError, clearError, errorText, getToken,
    fmtNumber, fmtUsd, fmtDate, fmtTime, fmtDuration, shortId,
  } = window.MB;

  const REFRESH_MS = 5000;
  const CANCELLABLE = new Set(['QUEUED', 'PROCESSING']);
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);
  const errorBox = $('error');

  /* What the automated tests read and call. */
  const admin = { refreshes: 0, refresh };
  window.mbAdmin = admin;

  let timer = null;              // the 5 s interval
  let running = null;            // Promise of the refresh round under way
  let queued = null;             // Promise of the round queued after it
  let errorFromRefresh = false;  // #error holds a refresh error (not an action's)
  let filters = { status: '', userId: '', maxAgeHours: '' };
  let selectedBatch = null;      // batch whose photos are shown
  const signatures = new WeakMap(); // tbody -> JSON of the rows drawn

  /* ------------------------------------------------------------- helpers */

  /* td: a table cell holding text (never HTML). */
  function td(value, cls) {
    return el('td', { class: cls, text: value === null || value === undefined ? '' : value });
  }

  /* badgeCell: a cell with a status badge. */
  function badgeCell(status) {
    return el('td', {}, el('span', { class: 'badge ' + (status ?? ''), text: status ?? '' }));
  }

  /* setText: textContent of an element by id ("" for null). */
  function setText(id, value) {
    $(id).textContent = value === null || value === undefined ? '' : String(value);
  }

  /* fillTable: replaces a table's rows, only when the data changed (keeps
     focus and hover stable between refreshes); toggles its "empty" note. */
  function fillTable(tableId, items, makeRow, emptyId) {
    const tbody = $(tableId).tBodies[0];
    const signature = JSON.stringify(items);
    if (signatures.get(tbody) !== signature) {
      signatures.set(tbody, signature);
      tbody.replaceChildren(...items.map(makeRow));
    }
    if (emptyId) $(emptyId).hidden = items.length > 0;
  }

  /* setStatus: the action status line. */
  function setStatus(text) {
    $('action-status').textContent = text || '';
  }

  /* ---------------------------------------------------------- overview */

  /* loadOverview: queue counters, pause state, AI status, throughput chart. */
  async function loadOverview() {
    const data = (await api('GET', '/rpc/admin_overview')) || {};
    const q = data.queue || {};
    setText('q-pending', q.pending);
    setText('q-in-flight', q.inFlight);
    setText('q-waiting-retry', q.waitingRetry);
    setText('q-done', q.done);
    setText('q-failed', q.failed);
    setText('q-cancelled', q.cancelled);
    setText('q-paused', q.paused ? 'yes' : 'no');
    setText('q-oldest', fmtDuration(q.oldestPendingAgeSeconds));
    const ai = $('q-ai');
    ai.textContent = q.aiUnreachableSince
      ? 'unreachable since ' + fmtDate(q.aiUnreachableSince) + ', ' + (q.aiProbes ?? 0) + ' probes'
      : 'reachable';
    ai.className = q.aiUnreachableSince ? 'warning' : '';
    $('pause').hidden = Boolean(q.paused);
    $('resume').hidden = !q.paused;
    drawChart(data.throughput || []);
  }

  /* svgEl: an SVG element with attributes and optional text. */
  function svgEl(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /* niceMax: the smallest of 2, 4, 6, 8, 10, 20, 40... at least max (an even
     integer, so the middle grid line is a whole number). */
  function niceMax(max) {
    for (let scale = 1; ; scale *= 10) {
      for (const m of [2, 4, 6, 8, 10]) if (m * scale >= max) return m * scale;
    }
  }

  /* drawChart: the photos-per-minute bar chart, one bar per minute (each
     with a tooltip), y axis with 0 / middle / top, x axis with times. */
  function drawChart(points) {
    const W = 600, H = 200, left = 40, right = 10, top = 12, bottom = 40;
    const plotW = W - left - right, plotH = H - top - bottom;
    const values = points.map((p) => Math.max(0, Number(p.photos) || 0));
    const peak = Math.max(0, ...values);
    const yMax = niceMax(Math.max(1, peak));
    const slot = plotW / Math.max(1, points.length);
    const yOf = (v) => top + plotH - (v / yMax) * plotH;
    const total = values.reduce((a, b) => a + b, 0);

    const nodes = [svgEl('title', {}, 'Photos analysed per minute over the last ' + points.length +
                                      ' minutes: ' + total + ' in all, at most ' + peak + ' in one minute')];
    for (const v of [0, yMax / 2, yMax]) {
      nodes.push(svgEl('line', { class: v === 0 ? 'axis-line' : 'grid-line',
                                 x1: left, x2: W - right, y1: yOf(v), y2: yOf(v) }));
      nodes.push(svgEl('text', { x: left - 6, y: yOf(v) + 4, 'text-anchor': 'end' }, String(v)));
    }
    points.forEach((p, i) => {
      const v = values[i];
      const h = Math.max(1, (v / yMax) * plotH);  // 1 px stub so empty minutes show a tooltip
      const bar = svgEl('rect', {
        class: v > 0 ? 'bar' : 'bar zero',
        x: (left + i * slot + slot * 0.15).toFixed(1), y: (top + plotH - h).toFixed(1),
        width: (slot * 0.7).toFixed(1), height: h.toFixed(1),
      });
      bar.append(svgEl('title', {}, fmtTime(p.minute) + ': ' + v + (v === 1 ? ' photo' : ' photos')));
      nodes.push(bar);
      if (i % 5 === 0 || i === points.length - 1) {
        nodes.push(svgEl('text', { x: (left + (i + 0.5) * slot).toFixed(1), y: top + plotH + 14,
                                   'text-anchor': 'middle' }, fmtTime(p.minute)));
      }
    });
    if (points.length === 0) {
      nodes.push(svgEl('text', { x: left + plotW / 2, y: top + plotH / 2, 'text-anchor': 'middle' }, 'no data'));
    }
    nodes.push(svgEl('text', { x: 12, y: top + plotH / 2, 'text-anchor': 'middle',
                               transform: 'rotate(-90 12 ' + (top + plotH / 2) + ')' }, 'photos / min'));
    nodes.push(svgEl('text', { x: left + plotW / 2, y: H - 6, 'text-anchor': 'middle' }, 'time (minute)'));
    $('throughput-chart').replaceChildren(...nodes);
  }

  /* ----------------------------------------------------------- batches */

  /* countsText: "5/7 done, 1 failed, 1 processing" of a batch row. */
  function countsText(b) {
    const parts = [(b.completed ?? 0) + '/' + (b.total ?? 0) + ' done'];
    for (const key of ['failed', 'processing', 'queued', 'cancelled']) {
      if (b[key]) parts.push(b[key] + ' ' + key);
    }
    return parts.join(', ');
  }

  /* batchRow: one row of table#batches. */
  function batchRow(b) {
    const short = shortId(b.batchId);
    const actions = el('td', {},
      el('button', { type: 'button', class: 'small show-photos', dataset: { batchId: b.batchId },
                     'aria-label': 'Show the photos of batch ' + short, text: 'Photos' }),
      ' ',
      CANCELLABLE.has(b.status)
        ? el('button', { type: 'button', class: 'small danger cancel-batch', dataset: { batchId: b.batchId },
                         'aria-label': 'Cancel batch ' + short, text: 'Cancel' })
        : null);
    const inventory = b.totalItems === null || b.totalItems === undefined
      ? '' : b.totalItems + ' items / ' + fmtNumber(b.totalVolume, 2) + ' m³';
    return el('tr', { dataset: { batchId: b.batchId ?? '', status: b.status ?? '' } },
      el('td', { class: 'mono', title: b.batchId, text: short }),
      td(b.userId),
      badgeCell(b.status),
      td(b.progress === null || b.progress === undefined ? '' : b.progress + '%', 'num'),
      td(countsText(b)),
      td(inventory),
      td(b.calls, 'num'),
      td(fmtUsd(b.costUsd), 'num'),
      td(fmtDate(b.createdAt)),
      actions);
  }

  /* loadBatches: GET /rpc/admin_batches with the applied filters. */
  async function loadBatches() {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(filters)) {
      if (value !== '') params.set(key, value);
    }
    params.set('maxRows', '100');
    const data = (await api('GET', '/rpc/admin_batches?' + params.toString())) || {};
    fillTable('batches', data.batches || [], batchRow, 'batches-empty');
    markSelected();
  }

  /* markSelected: highlights the batch whose photos are shown. */
  function markSelected() {
    for (const row of $('batches').tBodies[0].rows) {
      row.classList.toggle('selected', row.dataset.batchId === selectedBatch);
    }
  }

  /* retryButton: button.retry-photo for a photo id. */
  function retryButton(photoId, label) {
    return el('button', { type: 'button', class: 'small retry-photo', dataset: { photoId },
                          'aria-label': 'Retry ' + label, text: 'Retry' });
  }

  /* loadBatchPhotos: the photos of the selected batch, if any. */
  async function loadBatchPhotos() {
    const id = selectedBatch;
    if (!id) return;
    const data = (await api('GET', '/rpc/admin_batch_photos?id=' + encodeURIComponent(id))) || {};
    if (id !== selectedBatch) return;
    const photos = data.photos || [];
    const names = new Map(photos.map((p) => [p.id, p.filename]));
    fillTable('batch-photos-table', photos, (p) => el('tr', { dataset: { photoId: p.id ?? '', status: p.status ?? '' } },
      td(p.position, 'num'),
      el('td', { title: p.url, text: p.filename ?? '' }),
      badgeCell(p.status),
      td(p.attempts, 'num'),
      td(p.errorCode, 'error-code'),
      td(p.errorMessage),
      td(p.roomType),
      td(p.duplicateOf ? names.get(p.duplicateOf) || shortId(p.duplicateOf) : ''),
      td(fmtDate(p.finishedAt)),
      el('td', {}, p.status === 'ERROR' ? retryButton(p.id, p.filename ?? 'photo') : null)));
  }

  /* loadFailed: the most recent failed photos of all batches. */
  async function loadFailed() {
    const data = (await api('GET', '/rpc/admin_failed_photos?maxRows=50')) || {};
    fillTable('failed', data.photos || [], (p) => el('tr', { dataset: { photoId: p.photoId ?? '' } },
      el('td', { class: 'mono', title: p.batchId, text: shortId(p.batchId) }),
      td(p.userId),
      el('td', { title: p.url, text: p.filename ?? '' }),
      td(p.errorCode, 'error-code'),
      td(p.errorMessage),
      td(p.attempts, 'num'),
      td(fmtDate(p.finishedAt)),
      el('td', {}, retryButton(p.photoId, p.filename ?? 'photo'))), 'failed-empty');
  }

  /* loadWorkers: one row per background worker. */
  async function loadWorkers() {
    const data = (await api('GET', '/rpc/admin_workers')) || {};
    fillTable('workers', data.workers || [], (w) => el('tr', {},
      td(w.kind), td(w.worker), td(w.pid, 'num'), td(w.inflight, 'num'),
      td(w.done, 'num'), td(w.failed, 'num'),
      td(w.lastError ? w.lastError + (w.lastErrorAt ? ' (' + fmtDate(w.lastErrorAt) + ')' : '') : ''),
      td(fmtDate(w.since))));
  }

  /* loadCosts: AI calls and costs per day and per batch. */
  async function loadCosts() {
    const data = (await api('GET', '/rpc/admin_costs')) || {};
    fillTable('costs-day', data.perDay || [], (d) => el('tr', {},
      td(d.day === null || d.day === undefined ? '' : String(d.day).slice(0, 10)),
      td(d.calls, 'num'), td(fmtUsd(d.costUsd), 'num')));
    fillTable('costs-batch', data.perBatch || [], (b) => el('tr', { dataset: { batchId: b.batchId ?? '' } },
      el('td', { class: 'mono', title: b.batchId, text: shortId(b.batchId) }),
      td(b.calls, 'num'), td(fmtUsd(b.costUsd), 'num'), td(fmtNumber(b.avgLatencyMs, 0), 'num')));
  }

  /* ----------------------------------------------------------- refresh */

  /* showForbidden: a 403: hide the dashboard, show the API's message. */
  function showForbidden(err) {
    const box = $('forbidden');
    box.textContent = 'This page is for operators.\n' + errorText(err);
    box.hidden = false;
    $('dashboard').hidden = true;
    stopTimer();
  }

  /* refreshRound: reloads every panel at once; reports the first error. */
  async function refreshRound() {
    if (!getToken()) return;
    const results = await Promise.allSettled([
      loadOverview(), loadBatches(), loadBatchPhotos(), loadFailed(), loadWorkers(), loadCosts(),
    ]);
    admin.refreshes += 1;
    if (!getToken()) return;  // signed out meanwhile
    const errors = results.filter((r) => r.status === 'rejected').map((r) => r.reason || {});
    const denied = errors.find((e) => e.status === 403);
    if (denied) {
      showForbidden(denied);
      return;
    }
    $('forbidden').hidden = true;
    $('dashboard').hidden = false;
    if (errors.length) {
      if (errorFromRefresh || !errorBox.textContent) {  // never hide an action's error
        showError(errorBox, errors[0]);
        errorFromRefresh = true;
      }
      if (errors.some((e) => e.status === 401)) stopTimer();
    } else if (errorFromRefresh) {
      clearError(errorBox);
      errorFromRefresh = false;
    }
    setText('last-refresh', fmtDate(new Date()).slice(11));
  }

  /* refresh: runs a refresh round; if one is under way, queues (at most)
     one more after it. Resolves once the data asked for is on screen. */
  function refresh() {
    if (!running) {
      running = refreshRound().finally(() => { running = null; });
      return running;
    }
    if (!queued) {
      queued = running.then(() => {
        queued = null;
        return refresh();
      });
    }
    return queued;
  }

  /* startTimer / stopTimer: the 5 s refresh (skipped while one is running). */
  function startTimer() {
    stopTimer();
    timer = setInterval(() => { if (!running) refresh(); }, REFRESH_MS);
  }
  function stopTimer() {
    if (timer !== null) clearInterval(timer);
    timer = null;
  }

  /* ----------------------------------------------------------- actions */

  /* runAction: runs one operator action, shows its result (or the API's
     error), then refreshes every panel. */
  async function runAction(button, pendingText, action) {
    clearError(errorBox);
    errorFromRefresh = false;
    setStatus(pendingText);
    if (button) button.disabled = true;
    try {
      setStatus(await action());
    } catch (err) {
      setStatus('');
      showError(errorBox, err);
      if (err.status === 403) showForbidden(err);
    } finally {
      if (button) button.disabled = false;
    }
    await refresh();
  }

  /* cancelBatch: POST /rpc/admin_cancel_batch. */
  function cancelBatch(batchId, button) {
    return runAction(button, 'Cancelling batch ' + shortId(batchId) + '…', async () => {
      const r = await api('POST', '/rpc/admin_cancel_batch', { batchId });
      return 'Batch ' + shortId(batchId) + ': ' + (r && r.photosCancelled) + ' photo(s) cancelled.';
    });
  }

  /* retryPhoto: POST /rpc/admin_retry_photo. */
  function retryPhoto(photoId, button) {
    return runAction(button, 'Retrying photo ' + shortId(photoId) + '…', async () => {
      const r = await api('POST', '/rpc/admin_retry_photo', { photoId });
      return 'Photo ' + shortId(photoId) + ': ' + (r && r.photosRequeued) + ' photo(s) requeued.';
    });
  }

  /* setPaused: POST /rpc/admin_pause or /rpc/admin_resume. */
  function setPaused(pause, button) {
    return runAction(button, pause ? 'Pausing…' : 'Resuming…', async () => {
      const r = (await api('POST', pause ? '/rpc/admin_pause' : '/rpc/admin_resume', {})) || {};
      $('pause').hidden = Boolean(r.paused);
      $('resume').hidden = !r.paused;
      setText('q-paused', r.paused ? 'yes' : 'no');
      return r.paused ? 'Processing paused.' : 'Processing resumed.';
    });
  }

  /* showPhotos: opens the photo panel of one batch and loads it. */
  function showPhotos(batchId) {
    selectedBatch = batchId;
    markSelected();
    setText('bp-batch-id', batchId);
    $('batch-photos-table').tBodies[0].replaceChildren();
    signatures.delete($('batch-photos-table').tBodies[0]);
    const section = $('batch-photos');
    section.hidden = false;
    section.scrollIntoView({ block: 'nearest' });
    loadBatchPhotos().catch((err) => {
      showError(errorBox, err);
      errorFromRefresh = false;
    });
  }

  /* onTableClick: the row buttons of every table (event delegation). */
  function onTableClick(event) {
    const button = event.target.closest('button');
    if (!button) return;
    if (button.classList.contains('cancel-batch')) cancelBatch(button.dataset.batchId, button);
    else if (button.classList.contains('show-photos')) showPhotos(button.dataset.batchId);
    else if (button.classList.contains('retry-photo')) retryPhoto(button.dataset.photoId, button);
  }

  /* ----------------------------------------------------------- sign-in */

  /* onSignIn: shows the dashboard once the first refresh allows it. */
  function onSignIn() {
    $('signed-out-note').hidden = true;
    $('forbidden').hidden = true;
    setStatus('');
    refresh();
    startTimer();
  }

  /* onSignOut: stops refreshing and hides everything. */
  function onSignOut() {
    stopTimer();
    selectedBatch = null;
    $('batch-photos').hidden = true;
    $('dashboard').hidden = true;
    $('forbidden').hidden = true;
    $('signed-out-note').hidden = false;
    setStatus('');
    errorFromRefresh = false;
  }

  /* init: wires the page, then signs in (fragment or stored token). */
  function init() {
    $('refresh').addEventListener('click', () => {
      clearError(errorBox);
      errorFromRefresh = false;
      refresh();
    });
    $('pause').addEventListener('click', (e) => setPaused(true, e.currentTarget));
    $('resume').addEventListener('click', (e) => setPaused(false, e.currentTarget));
    $('filters').addEventListener('submit', (event) => {
      event.preventDefault();
      filters = {
        status: $('f-status').value,
        userId: $('f-user').value.trim(),
        maxAgeHours: $('f-age').value.trim(),
      };
      refresh();
    });
    $('bp-close').addEventListener('click', () => {
      selectedBatch = null;
      $('batch-photos').hidden = true;
      markSelected();
    });
    $('dashboard').addEventListener('click', onTableClick);
    window.MB.setupSignIn({ errorBox, onSignIn, onSignOut });
  }

  init();
})();
