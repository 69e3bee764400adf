/*
 * app.js: the customer page (/app/). Sign in, pick or create a project,
 * submit photo files (uploads.js: window.MB.files) and photo URLs as a
 * batch, follow its analysis and read the inventory.
 *
 * Progress: one EventSource per batch (/api/batches/<id>/stream). Each event
 * updates the status and progress at once and asks for one
 * GET /api/batches/<id> (photo list, inventory). At most one GET is in
 * flight; events arriving meanwhile cause exactly one more GET after it.
 * There is no timer polling. Tests read window.mbState.
 */
(function () {
  'use strict';

  const { api, el, showError, clearError, fmtNumber, fmtDate, getToken, storageGet, storageSet, files } = window.MB;

  const TERMINAL = new Set(['COMPLETED', 'PARTIAL', 'FAILED', 'CANCELLED']);
  const RETRYABLE = new Set(['PARTIAL', 'FAILED']);
  const LAST_BATCH_KEY = 'mbLastBatch';
  const MAX_RECONNECTS = 5;

  const $ = (id) => document.getElementById(id);
  const errorBox = $('error');

  /* What the automated tests read. */
  const state = { batchId: null, lastEvent: null, events: [], gets: 0 };
  window.mbState = state;

  let user = null;            // "sub" of the signed-in token
  let demo = null;            // {text, photos}: what #use-demo put in #urls
  let currentStatus = '';     // batch status on screen
  let stream = null;          // the open EventSource, if any
  let streamEvents = 0;       // events received on that EventSource
  let reconnects = 0;         // automatic reopenings since the last new txid
  let reconnectTimer = null;
  let maxTxid = -Infinity;
  let getInFlight = false;
  let getAgain = false;
  let checkReconnect = false; // after the next GET, decide on reopening the stream

  /* ------------------------------------------------------------- rendering */

  /* countsText: "6 / 7 photos, 1 failed" from a counts object. */
  function countsText(c) {
    const parts = [(c.completed ?? 0) + ' / ' + (c.total ?? 0) + ' photos'];
    if (c.failed) parts.push(c.failed + ' failed');
    if (c.cancelled) parts.push(c.cancelled + ' cancelled');
    if (c.processing) parts.push(c.processing + ' in progress');
    if (c.queued) parts.push(c.queued + ' queued');
    return parts.join(', ');
  }

  /* renderHeader: status, progress bar, counts and the retry button, from a
     stream event or a GET's batch (both have status, progress, counts). */
  function renderHeader(s) {
    currentStatus = s.status ?? '';
    const statusEl = $('batch-status');
    statusEl.textContent = currentStatus;
    statusEl.className = 'badge ' + currentStatus;

    const progress = Math.min(100, Math.max(0, Number(s.progress) || 0));
    const text = s.counts ? countsText(s.counts) : '';
    const bar = $('progress-bar');
    $('progress-fill').style.width = progress + '%';
    bar.setAttribute('aria-valuenow', String(progress));
    bar.setAttribute('aria-valuetext', progress + '%' + (text ? ', ' + text : ''));
    $('progress-text').textContent = text;

    $('retry').hidden = !RETRYABLE.has(currentStatus);
    if (TERMINAL.has(currentStatus)) renderAiWaiting(null);
    updateStreamUi();
  }

  /* renderAiWaiting: the "waiting for the AI service" notice (null hides it). */
  function renderAiWaiting(since) {
    const span = $('ai-waiting');
    span.textContent = since ? 'Waiting for the AI service since ' + fmtDate(since) : '';
    span.hidden = !since;
  }

  /* renderPhotos: one table row per photo of the batch. */
  function renderPhotos(photos) {
    const names = new Map(photos.map((p) => [p.id, p.filename]));
    const rows = photos.map((p) => el('tr', { dataset: { photoId: p.id ?? '', status: p.status ?? '' } },
      el('td', { text: p.filename ?? '' }),
      el('td', {}, el('span', { class: 'badge ' + (p.status ?? ''), text: p.status ?? '' })),
      el('td', { text: p.roomType ?? '' }),
      el('td', { class: 'error-code', text: p.errorCode ?? '' }),
      el('td', { text: p.duplicateOf ? 'duplicate of ' + (names.get(p.duplicateOf) || p.duplicateOf) : '' })));
    $('photos').tBodies[0].replaceChildren(...rows);
  }

  /* renderInventory: the per-room table and totals; hidden while absent. */
  function renderInventory(summary) {
    const section = $('inventory');
    if (!summary) {
      section.hidden = true;
      return;
    }
    const rows = (summary.rooms || []).map((r) => el('tr', {},
      el('td', { text: r.roomType ?? '' }),
      el('td', { class: 'num', text: r.itemsCount ?? '' }),
      el('td', { class: 'num', text: fmtNumber(r.volume_m3, 2) })));
    $('rooms').tBodies[0].replaceChildren(...rows);
    $('total-items').textContent = summary.totalItems ?? '';
    $('total-volume').textContent = fmtNumber(summary.totalVolume, 2);
    section.hidden = false;
  }

  /* renderBatch: a GET's batch. The header is taken from it only when no
     stream event arrived while the GET ran (otherwise the event is newer). */
  function renderBatch(batch, fresh) {
    if (fresh || state.events.length === 0) renderHeader(batch);
    renderPhotos(batch.photos || []);
    renderInventory(batch.inventorySummary);
  }

  /* updateStreamUi: the Reconnect button, offered when live updates stopped
     before the batch finished and no automatic reopening is planned. */
  function updateStreamUi() {
    $('reconnect').hidden = !(state.batchId && stream === null && reconnectTimer === null &&
                              !TERMINAL.has(currentStatus));
  }

  /* setStreamState: the short text saying how live updates are doing. */
  function setStreamState(text) {
    $('stream-state').textContent = text;
    updateStreamUi();
  }

  /* ------------------------------------------------------------ batch data */

  /* refreshBatch: GET /api/batches/<id>, coalesced (see the header). */
  function refreshBatch() {
    if (!state.batchId) return;
    if (getInFlight) {
      getAgain = true;
      return;
    }
    getInFlight = true;
    const id = state.batchId;
    const eventsAtStart = state.events.length;
    state.gets += 1;
    api('GET', '/api/batches/' + encodeURIComponent(id))
      .then((data) => {
        if (id !== state.batchId) return;
        const batch = (data && data.batch) || {};
        renderBatch(batch, state.events.length === eventsAtStart);
        if (checkReconnect && !getAgain) {
          checkReconnect = false;
          maybeReconnect(batch);
        }
      })
      .catch((err) => {
        if (id !== state.batchId) return;
        showError(errorBox, err);
        if (err.status === 404) {
          closeStream();
          storageSet(LAST_BATCH_KEY, null);
          setStreamState('closed');
        }
      })
      .finally(() => {
        getInFlight = false;
        if (getAgain) {
          getAgain = false;
          refreshBatch();
        }
      });
  }

  /* attachBatch: shows a batch (new or remembered), reads it once and opens
     its stream. */
  function attachBatch(batchId) {
    closeStream();
    state.batchId = batchId;
    state.lastEvent = null;
    state.events = [];
    state.gets = 0;
    streamEvents = 0;
    reconnects = 0;
    maxTxid = -Infinity;
    checkReconnect = false;
    if (user !== null) storageSet(LAST_BATCH_KEY, JSON.stringify({ user, batchId }));

    $('batch-id').textContent = batchId;
    renderHeader({ status: '', progress: 0, counts: null });
    $('events-received').textContent = '0';
    $('batch-note').textContent = '';
    renderAiWaiting(null);
    $('photos').tBodies[0].replaceChildren();
    renderInventory(null);
    $('batch').hidden = false;

    refreshBatch();
    openStream();
  }

  /* detachBatch: forgets the batch on screen (sign-out, other user). */
  function detachBatch() {
    closeStream();
    state.batchId = null;
    state.lastEvent = null;
    state.events = [];
    state.gets = 0;
    currentStatus = '';
    $('batch').hidden = true;
    renderInventory(null);
  }

  /* ---------------------------------------------------------- live updates */

  /* openStream: (re)opens the EventSource of the current batch. */
  function openStream() {
    closeStream();
    const token = getToken();
    if (!state.batchId || !token) return;
    const source = new EventSource('/api/batches/' + encodeURIComponent(state.batchId) +
                                   '/stream?access_token=' + encodeURIComponent(token));
    stream = source;
    streamEvents = 0;
    setStreamState('connecting');
    source.onopen = () => {
      if (source === stream) setStreamState('live');
    };
    source.onmessage = (message) => {
      if (source !== stream) return;
      let data;
      try {
        data = JSON.parse(message.data);
      } catch (e) {
        return;
      }
      onStreamEvent(data);
    };
    source.onerror = () => {
      if (source === stream) onStreamError();
    };
  }

  /* closeStream: closes the EventSource and cancels a planned reopening. */
  function closeStream() {
    if (stream) {
      stream.close();
      stream = null;
    }
    if (reconnectTimer !== null) {
      clearTimeout(reconnectTimer);
      reconnectTimer = null;
    }
  }

  /* onStreamEvent: one committed change of the batch. */
  function onStreamEvent(data) {
    streamEvents += 1;
    state.events.push(data);
    state.lastEvent = data;
    $('events-received').textContent = String(state.events.length);
    if (typeof data.txid === 'number' && data.txid > maxTxid) {
      maxTxid = data.txid;
      reconnects = 0;
    }
    renderHeader(data);
    renderAiWaiting(TERMINAL.has(data.status) ? null : data.waitingForAiServiceSince);
    if (data.inventoryReady === true && TERMINAL.has(data.status)) {
      closeStream();
      setStreamState('finished');
    }
    refreshBatch();
  }

  /* onStreamError: the stream failed (410 finished, 404, network): close it
     and fall back to one GET. If that GET shows the batch still running and
     this stream had worked, reopen it later (a few times, backing off). */
  function onStreamError() {
    const hadEvents = streamEvents > 0;
    closeStream();
    setStreamState('disconnected');
    checkReconnect = hadEvents;
    refreshBatch();
  }

  /* maybeReconnect: after the fallback GET, plans a reopening if needed. */
  function maybeReconnect(batch) {
    const finished = TERMINAL.has(batch.status) && batch.inventorySummary != null;
    if (finished) {
      setStreamState('finished');
      return;
    }
    if (stream || reconnects >= MAX_RECONNECTS) {
      updateStreamUi();
      return;
    }
    reconnects += 1;
    const delay = 1000 * 2 ** (reconnects - 1);
    reconnectTimer = setTimeout(() => {
      reconnectTimer = null;
      openStream();
    }, delay);
    setStreamState('reconnecting in ' + delay / 1000 + ' s');
  }

  /* ------------------------------------------------------- photos & batches */

  /* filenameFromUrl: the last path segment of a URL, or photo<n>.jpg. */
  function filenameFromUrl(url, n) {
    try {
      const last = new URL(url).pathname.split('/').filter(Boolean).pop();
      if (last) {
        try { return decodeURIComponent(last); } catch (e) { return last; }
      }
    } catch (e) { /* not a URL: the API will say what is wrong */ }
    return 'photo' + n + '.jpg';
  }

  /* parsePhotoLines: "URL [roomType]" lines to the API's imageUrls. A line
     whose URL is a demo photo's keeps that photo's filename and filePath. */
  function parsePhotoLines(text) {
    const demoByUrl = new Map((demo ? demo.photos : []).map((p) => [p.url, p]));
    return text.split(/\r?\n/).map((line) => line.trim()).filter(Boolean).map((line, i) => {
      const [url, ...rest] = line.split(/\s+/);
      const roomType = rest.join(' ');
      const known = demoByUrl.get(url);
      const photo = known ? { ...known } : { filename: filenameFromUrl(url, i + 1), url };
      if (roomType) photo.roomType = roomType;
      else delete photo.roomType;
      return photo;
    });
  }

  /* useDemo: fills #urls with the demo photos ("url roomType" lines). */
  async function useDemo() {
    clearError(errorBox);
    try {
      const res = await fetch('/app/demo-photos.json', { cache: 'no-store' });
      if (!res.ok) throw new Error('The demo photos could not be loaded (HTTP ' + res.status + ').');
      const photos = await res.json();
      const text = photos.map((p) => (p.roomType ? p.url + ' ' + p.roomType : p.url)).join('\n');
      demo = { text, photos };
      $('urls').value = text;
    } catch (err) {
      showError(errorBox, err);
    }
  }

  /* batchBody: the body of POST /api/batches: the photo URLs and the
     uploads (only the members that have photos). */
  function batchBody(projectId, imageUrls, uploads) {
    const body = { projectId };
    if (imageUrls.length > 0 || uploads.length === 0) body.imageUrls = imageUrls;
    if (uploads.length > 0) body.uploads = uploads;
    return body;
  }

  /* submitBatch: uploads the photo files (POST /api/uploads, a PUT per
     file), then POST /api/batches with them and the photo URLs, then
     follows the new batch. Nothing is created while a file is refused. */
  async function submitBatch() {
    clearError(errorBox);
    const text = $('urls').value;
    const imageUrls = demo && text === demo.text ? demo.photos : parsePhotoLines(text);
    if (imageUrls.length === 0 && files.count() === 0) {
      showError(errorBox, new Error('Add photo files or photo URLs first.'));
      return;
    }
    const projectId = $('project').value || null;
    const button = $('submit');
    button.disabled = true;
    files.setBusy(true);
    try {
      const uploads = files.count() > 0 ? await files.send(projectId) : [];
      const data = await api('POST', '/api/batches', batchBody(projectId, imageUrls, uploads));
      files.clear();
      attachBatch(data.batchId);
      $('batch-note').textContent = data.photosCount + ' photo(s) submitted, ' +
        data.jobsEnqueued + ' analysis job(s) queued.';
    } catch (err) {
      showError(errorBox, files.explain(err));
    } finally {
      files.setBusy(false);
      button.disabled = false;
    }
  }

  /* retryBatch: POST /api/batches/<id>/retry, then reopen the stream. */
  async function retryBatch() {
    const id = state.batchId;
    if (!id) return;
    clearError(errorBox);
    const button = $('retry');
    button.disabled = true;
    try {
      const data = await api('POST', '/api/batches/' + encodeURIComponent(id) + '/retry');
      if (id !== state.batchId) return;
      $('batch-note').textContent = data.photosRequeued + ' photo(s) sent back for analysis.';
      reconnects = 0;
      openStream();
    } catch (err) {
      showError(errorBox, err);
    } finally {
      button.disabled = false;
    }
  }

  /* -------------------------------------------------------------- projects */

  /* loadProjects: fills #project (newest first); selects selectId if given,
     else the first. Rejects with the API's error. */
  async function loadProjects(selectId) {
    const data = await api('GET', '/api/projects?perPage=100');
    const projects = (data && data.projects) || [];
    const select = $('project');
    select.replaceChildren(...projects.map((p) => el('option', { value: p.id, text: p.name })));
    if (projects.length === 0) {
      select.append(el('option', { value: '', text: 'No project yet: create one below' }));
    }
    if (selectId) select.value = selectId;
  }

  /* createProject: POST /api/projects, then select the new project. */
  async function createProject(event) {
    event.preventDefault();
    clearError(errorBox);
    const input = $('new-project');
    const button = $('create-project');
    button.disabled = true;
    try {
      const data = await api('POST', '/api/projects', { name: input.value.trim() });
      input.value = '';
      await loadProjects(data.project.id);
    } catch (err) {
      showError(errorBox, err);
    } finally {
      button.disabled = false;
    }
  }

  /* --------------------------------------------------------------- sign-in */

  /* onSignIn: shows the workspace, loads the projects and re-attaches the
     last batch of this user (remembered for the browser tab). */
  function onSignIn(token, claims) {
    const sub = claims.sub === undefined || claims.sub === null ? '' : String(claims.sub);
    if (user !== null && sub !== user) {
      detachBatch();
      files.clear();   // another user's uploads would be refused
    }
    user = sub;
    $('workspace').hidden = false;
    $('signed-out-note').hidden = true;
    loadProjects().catch((err) => showError(errorBox, err));

    if (state.batchId) {
      if (stream) openStream();  // same user, new token: reconnect with it
      return;
    }
    let saved = null;
    try { saved = JSON.parse(storageGet(LAST_BATCH_KEY) || 'null'); } catch (e) { saved = null; }
    if (saved && saved.user === sub && saved.batchId) attachBatch(saved.batchId);
  }

  /* onSignOut: hides everything that belongs to the signed-in user. */
  function onSignOut() {
    detachBatch();
    files.clear();
    user = null;
    storageSet(LAST_BATCH_KEY, null);
    $('project').replaceChildren();
    $('workspace').hidden = true;
    $('signed-out-note').hidden = false;
  }

  /* init: wires the page, then signs in (fragment or stored token). */
  function init() {
    files.setup();
    $('use-demo').addEventListener('click', useDemo);
    $('submit').addEventListener('click', submitBatch);
    $('create-project-form').addEventListener('submit', createProject);
    $('retry').addEventListener('click', retryBatch);
    $('reconnect').addEventListener('click', () => {
      reconnects = 0;
      openStream();
    });
    window.MB.setupSignIn({ errorBox, onSignIn, onSignOut });
  }

  init();
})();
