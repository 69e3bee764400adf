/*
 * uploads.js: the photo files of the customer page (/app/), sent by direct
 * upload (issue #21). Files are picked with the file picker (#files, opened
 * by the drop zone, which is a button) or dropped on the drop zone, and
 * checked here at once: an image of a type the API takes (JPEG, PNG, WebP,
 * GIF, read from the bytes as the server reads them) of at most the largest
 * size. On submit, send(): POST /api/uploads asks for one signed URL per
 * file, each file's bytes are PUT to its URL (fetch, a few at a time), and
 * the uploads are handed back for POST /api/batches (app.js).
 *
 * Each file has a row in #files-table: name, size, an optional room type,
 * its status (data-status: checking, waiting, uploading, done, refused,
 * with the reason: this page's check or the API's own message) and a
 * Remove button; #files-status sums them up (aria-live). A file refused by
 * this page or by POST /api/uploads is never sent: the batch waits until it
 * is removed. A file whose PUT failed is sent again with a new URL on the
 * next submit; an uploaded one is not (while its URL is valid).
 * Exposed as window.MB.files.
 */
(function () {
  'use strict';

  const { api, readJson, responseError, el, fmtBytes } = window.MB;

  const TYPES = ['image/jpeg', 'image/png', 'image/webp', 'image/gif'];
  const PARALLEL_PUTS = 3;
  const REUSE_MARGIN_MS = 60000;  // an upload whose URL expires sooner is asked for again
  const STATUS_TEXT = {
    checking: 'checking', waiting: 'waiting', uploading: 'uploading…', done: 'done', refused: 'refused',
  };

  /* The largest photo, in bytes. The server decides (moverz_batch.max_upload_bytes,
     5MB by default, less with some AI providers) and refuses a larger file
     anyway; this is its default, until a 413 of POST /api/uploads tells the
     server's own in its message. */
  let maxBytes = 5 * 1024 * 1024;

  const entries = [];   // {file, key, type, status, reason, blocked, upload, projectId, uploaded, checked, row}
  let sent = [];        // the entries of the last send(), in the order of its uploads
  let busy = false;
  let ui = null;        // {zone, input, help, summary, wrap, body}

  /* ---------------------------------------------------------------- checks */

  /* sniffType: the image type of a file from its first bytes (the magic
     numbers the server checks), or null. */
  async function sniffType(file) {
    const b = new Uint8Array(await file.slice(0, 12).arrayBuffer());
    const ascii = (from, to) => String.fromCharCode(...b.subarray(from, to));
    if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'image/jpeg';
    if (b[0] === 0x89 && ascii(1, 8) === 'PNG\r\n\x1a\n') return 'image/png';
    if (ascii(0, 6) === 'GIF87a' || ascii(0, 6) === 'GIF89a') return 'image/gif';
    if (ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return 'image/webp';
    return null;
  }

  /* sizeProblem: why a file is too large or empty ('' when it is not). */
  function sizeProblem(file) {
    if (file.size === 0) return 'the file is empty';
    if (file.size > maxBytes) {
      return 'too large: ' + file.size + ' bytes, more than the ' + maxBytes + ' bytes (' + fmtBytes(maxBytes) +
        ') a photo may have; resize it';
    }
    return '';
  }

  /* checkEntry: why the file cannot be sent ('' when it can); sets
     entry.type, the Content-Type it is announced with. */
  async function checkEntry(entry) {
    const tooLarge = sizeProblem(entry.file);
    if (tooLarge) return tooLarge;
    try {
      entry.type = await sniffType(entry.file);
    } catch (e) {
      return 'the file could not be read';
    }
    if (TYPES.includes(entry.type)) return '';
    return 'not a JPEG, PNG, WebP or GIF image' + (entry.file.type ? ' (' + entry.file.type + ')' : '');
  }

  /* setMaxBytes: the server's limit, learnt from its answer; files over it
     are refused at once. */
  function setMaxBytes(n) {
    if (!(n > 0) || n === maxBytes) return;
    maxBytes = n;
    ui.help.textContent = helpText();
    for (const entry of entries) {
      const tooLarge = sizeProblem(entry.file);
      if (tooLarge) refuse(entry, tooLarge, true);
    }
  }

  /* helpText: the types and the largest size, beside "Photo files". */
  function helpText() {
    return 'JPEG, PNG, WebP or GIF, at most ' + fmtBytes(maxBytes) + ' each';
  }

  /* ------------------------------------------------------------- rendering */

  /* buildRow: the table row of a new entry. */
  function buildRow(entry) {
    const name = entry.file.name;
    const room = el('input', { type: 'text', class: 'room-type', maxlength: 64, placeholder: 'optional',
                               list: 'room-types', spellcheck: 'false', 'aria-label': 'Room type of ' + name });
    const remove = el('button', { type: 'button', class: 'small remove-file', text: 'Remove',
                                  'aria-label': 'Remove ' + name });
    remove.addEventListener('click', () => removeEntry(entry));
    const badge = el('span', { class: 'badge' });
    const reason = el('span', { class: 'file-reason' });
    const tr = el('tr', {}, el('td', { class: 'file-name', text: name }),
      el('td', { class: 'num', text: fmtBytes(entry.file.size) }), el('td', {}, room),
      el('td', { class: 'file-status' }, badge, ' ', reason), el('td', {}, remove));
    entry.row = { tr, room, remove, badge, reason };
    return tr;
  }

  /* setStatus: an entry's status (and reason) on its row and in the summary. */
  function setStatus(entry, status, reason = '') {
    entry.status = status;
    entry.reason = reason;
    const { tr, badge } = entry.row;
    tr.dataset.status = status;
    badge.className = 'badge ' + status;
    badge.textContent = STATUS_TEXT[status];
    entry.row.reason.textContent = reason;
    renderSummary();
  }

  /* refuse: an entry that cannot be sent; blocked: not until it is removed. */
  function refuse(entry, reason, blocked) {
    entry.blocked = blocked;
    entry.upload = null;
    entry.uploaded = false;
    setStatus(entry, 'refused', reason);
  }

  /* renderSummary: "3 files: 1 done, 2 waiting" in #files-status. */
  function renderSummary() {
    ui.wrap.hidden = entries.length === 0;
    const counts = new Map();
    for (const e of entries) counts.set(e.status, (counts.get(e.status) || 0) + 1);
    const parts = Object.keys(STATUS_TEXT).filter((s) => counts.has(s))
      .map((s) => counts.get(s) + ' ' + STATUS_TEXT[s].replace('…', ''));
    ui.summary.textContent = entries.length === 0 ? ''
      : entries.length + (entries.length === 1 ? ' file: ' : ' files: ') + parts.join(', ');
  }

  /* ------------------------------------------------------------ the list */

  /* addFiles: files picked or dropped join the list (a file already in it
     is not added twice), each checked at once. */
  function addFiles(files) {
    if (busy) return;
    for (const file of files) {
      const key = [file.name, file.size, file.lastModified].join('|');
      if (entries.some((e) => e.key === key)) continue;
      const entry = { file, key, type: null, blocked: false, upload: null, uploaded: false };
      entries.push(entry);
      ui.body.append(buildRow(entry));
      setStatus(entry, 'checking');
      entry.checked = checkEntry(entry).then((reason) => {
        if (reason) refuse(entry, reason, true);
        else if (entry.status === 'checking') setStatus(entry, 'waiting');
      });
    }
  }

  /* removeEntry: a file off the list; the keyboard focus, if it was on its
     row, goes to the drop zone. */
  function removeEntry(entry) {
    if (busy) return;
    const i = entries.indexOf(entry);
    if (i >= 0) entries.splice(i, 1);
    const hadFocus = entry.row.tr.contains(document.activeElement);
    entry.row.tr.remove();
    renderSummary();
    if (hadFocus) ui.zone.focus();
  }

  /* clear: empties the list (its uploads became photos of a batch, or the
     user signed out). */
  function clear() {
    entries.length = 0;
    sent = [];
    ui.body.replaceChildren();
    renderSummary();
  }

  /* setBusy: while files are sent, the list cannot change. */
  function setBusy(value) {
    busy = value;
    ui.zone.disabled = value;
    for (const e of entries) {
      e.row.remove.disabled = value;
      e.row.room.disabled = value;
    }
  }

  /* --------------------------------------------------------------- sending */

  /* reusable: the file was uploaded for this project and its URL is still
     valid for a while. */
  function reusable(entry, projectId) {
    return entry.uploaded && entry.upload && entry.projectId === projectId &&
      Date.parse(entry.upload.expiresAt) - Date.now() > REUSE_MARGIN_MS;
  }

  /* requestUrls: POST /api/uploads for the entries; a refusal naming
     files[i] refuses that file for good, and its error names the file (a
     413 also tells the server's limit). */
  async function requestUrls(projectId, todo) {
    const files = todo.map((e) => ({ filename: e.file.name, contentType: e.type, size: e.file.size }));
    let data;
    try {
      data = await api('POST', '/api/uploads', { projectId, files });
    } catch (err) {
      const limit = /more than the (\d+) bytes/.exec(err.message);
      if (err.status === 413 && limit) setMaxBytes(Number(limit[1]));
      const named = /^files\[(\d+)\]/.exec(err.message);
      const entry = named ? todo[Number(named[1])] : null;
      if (entry) {
        refuse(entry, err.message, true);
        err.message = entry.file.name + ': ' + err.message;
      }
      throw err;
    }
    (data.uploads || []).forEach((upload, i) => {
      todo[i].upload = upload;
      todo[i].projectId = projectId;
    });
  }

  /* putFile: the bytes of one file to its upload URL (relative to this
     origin, the API's) with the upload's method and headers. */
  async function putFile(entry) {
    const { url, method, headers } = entry.upload;
    setStatus(entry, 'uploading');
    let res;
    let data;
    try {
      res = await fetch(url, { method: method || 'PUT', headers: headers || {}, body: entry.file, cache: 'no-store' });
      data = await readJson(res);
    } catch (e) {
      refuse(entry, 'the API could not be reached (' + e.message + ')', false);
      return;
    }
    if (!res.ok) {
      refuse(entry, responseError(res, data).message, false);
      return;
    }
    entry.uploaded = true;
    setStatus(entry, 'done');
  }

  /* putAll: every file of todo, PARALLEL_PUTS at a time. */
  async function putAll(todo) {
    const queue = todo.slice();
    const worker = async () => {
      for (let e = queue.shift(); e; e = queue.shift()) await putFile(e);
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_PUTS, queue.length) }, worker));
  }

  /* namesOf: "a.png, b.png" of entries. */
  const namesOf = (list) => list.map((e) => e.file.name).join(', ');

  /* send: uploads the files of the list not uploaded yet; resolves to the
     uploads of the whole list for POST /api/batches ([{uploadId,
     roomType?}], in list order), or rejects without creating anything
     when a file is refused or could not be uploaded. */
  async function send(projectId) {
    await Promise.all(entries.map((e) => e.checked));
    const blocked = entries.filter((e) => e.blocked);
    if (blocked.length) {
      throw new Error('These files cannot be sent: ' + namesOf(blocked) +
                      ' (see why in the list). Remove them, then analyse the photos again.');
    }
    const todo = entries.filter((e) => !reusable(e, projectId));
    for (const e of todo) setStatus(e, 'waiting');
    if (todo.length) {
      await requestUrls(projectId, todo);
      await putAll(todo);
    }
    const failed = entries.filter((e) => e.status !== 'done');
    if (failed.length) {
      throw new Error('Not uploaded: ' + namesOf(failed) + ' (see why in the list). No batch was created: ' +
                      'analyse the photos again to retry, or remove these files.');
    }
    sent = entries.slice();
    return sent.map((e) => {
      const roomType = e.row.room.value.trim();
      return roomType ? { uploadId: e.upload.uploadId, roomType } : { uploadId: e.upload.uploadId };
    });
  }

  /* explain: an error of POST /api/batches naming uploads[k] names its file
     too; when it is about the upload itself (expired, used, unknown), that
     file is uploaded again next time. */
  function explain(err) {
    const m = /^uploads\[(\d+)\](\.uploadId)?/.exec(err && err.message ? err.message : '');
    const entry = m ? sent[Number(m[1])] : null;
    if (!entry || !entries.includes(entry)) return err;
    err.message = entry.file.name + ': ' + err.message;
    if (m[2]) {
      entry.uploaded = false;
      entry.upload = null;
      setStatus(entry, 'waiting');
    }
    return err;
  }

  /* ------------------------------------------------------------ drop zone */

  const hasFiles = (event) => Boolean(event.dataTransfer) && [...event.dataTransfer.types].includes('Files');

  /* onDragOver: the zone takes the files being dragged over it. */
  function onDragOver(event) {
    if (!hasFiles(event) || busy) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = 'copy';
    ui.zone.classList.add('dragging');
  }

  /* onDrop: the files dropped on the zone join the list. */
  function onDrop(event) {
    event.preventDefault();
    ui.zone.classList.remove('dragging');
    if (event.dataTransfer) addFiles([...event.dataTransfer.files]);
  }

  /* outsideZone: files dropped elsewhere on the page (or on the zone while
     it is disabled) are not opened by the browser in place of the page. */
  function outsideZone(event) {
    if (!hasFiles(event) || event.defaultPrevented) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = 'none';
  }

  /* setup: wires the drop zone, the file input and the list (ids of
     /app/index.html). */
  function setup() {
    const $ = (id) => document.getElementById(id);
    ui = { zone: $('drop-zone'), input: $('files'), help: $('files-help'), summary: $('files-status'),
           wrap: $('files-wrap'), body: $('files-table').tBodies[0] };
    ui.help.textContent = helpText();
    ui.zone.addEventListener('click', () => ui.input.click());
    ui.input.addEventListener('change', () => {
      addFiles([...ui.input.files]);
      ui.input.value = '';   // the same file can be picked again after a Remove
    });
    ui.zone.addEventListener('dragenter', onDragOver);
    ui.zone.addEventListener('dragover', onDragOver);
    ui.zone.addEventListener('dragleave', () => ui.zone.classList.remove('dragging'));
    ui.zone.addEventListener('drop', onDrop);
    document.addEventListener('dragover', outsideZone);
    document.addEventListener('drop', outsideZone);
  }

  window.MB.files = { setup, count: () => entries.length, send, explain, clear, setBusy };
})();
