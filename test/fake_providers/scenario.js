/*
 * scenario.js
 *		What the fake providers "see" in an image, and which fault to inject:
 *		both come from the image URL's query string, with the same rules as
 *		the C fake in test/fake_ai (room keywords, items=, fail_first, fault,
 *		hang_ms, latency_ms, retry_after), so that a test scenario written for
 *		one fake reads the same with the others.
 *
 * An image is {kind: 'url', url}, {kind: 'bytes', bytes, sha256} (base64 or
 * data: URL, decoded; see image_info.js) or {kind: 'file', fileId}
 * (Anthropic Files API); null when the request has none.
 */
'use strict';

const { RawNumber, isJsonNumberText, toJson } = require('./common');

/* CATALOGUE: furniture of the hash-derived answers: label, volume text. */
const CATALOGUE = [
	['sofa', '1.5'], ['armchair', '0.6'], ['bed', '1.8'], ['wardrobe', '2.2'],
	['table', '0.9'], ['chair', '0.25'], ['bookcase', '1.1'],
	['dresser', '0.8'], ['tv_stand', '0.4'], ['box', '0.1'],
	['fridge', '0.9'], ['washing_machine', '0.6'],
];

/* ROOM_RULES: file name substring -> room type; the first match wins. */
const ROOM_RULES = [
	['salon', 'living_room'], ['living', 'living_room'],
	['lounge', 'living_room'], ['chambre', 'bedroom'], ['bedroom', 'bedroom'],
	['cuisine', 'kitchen'], ['kitchen', 'kitchen'], ['sdb', 'bathroom'],
	['bath', 'bathroom'], ['bureau', 'office'], ['office', 'office'],
	['garage', 'garage'], ['entree', 'hallway'], ['hall', 'hallway'],
	['salle_a_manger', 'dining_room'], ['dining', 'dining_room'],
];

/* FAULTS: the fault= values understood (anything else: "unknown fault"). */
const FAULTS = new Set([
	'unreachable', 'badimage', '429', '529', '500', '504', '408', 'hang',
	'refusal', 'max_tokens', 'notool', 'badschema',
]);

/* VARIANT_FAULTS: faults answered 200 with an odd but well-formed body. */
const VARIANT_FAULTS = new Set(['refusal', 'max_tokens', 'notool', 'badschema']);

/* LONG_CAP: integer query values are capped, as in the C fake. */
const LONG_CAP = 1000000000;

/* hexVal: value of a hex digit character, or -1. */
function hexVal(ch) {
	const v = parseInt(ch, 16);

	return /^[0-9a-fA-F]$/.test(ch) ? v : -1;
}

/*
 * urlDecode: percent-decode s ('+' is a space); an invalid escape is kept
 * as is.  Bytes are decoded as UTF-8.
 */
function urlDecode(s) {
	const out = [];

	for (let i = 0; i < s.length; i++) {
		if (s[i] === '%' && i + 2 < s.length && hexVal(s[i + 1]) >= 0 && hexVal(s[i + 2]) >= 0) {
			out.push(hexVal(s[i + 1]) * 16 + hexVal(s[i + 2]));
			i += 2;
		} else
			for (const b of Buffer.from(s[i] === '+' ? ' ' : s[i], 'utf8'))
				out.push(b);
	}
	return Buffer.from(out).toString('utf8');
}

/*
 * queryRaw: the raw (still encoded) value of parameter name in the query
 * string of url, or null.  The first occurrence wins; "name" alone has the
 * empty value; the fragment is not searched.
 */
function queryRaw(url, name) {
	let q = url.indexOf('?');

	while (q >= 0 && q < url.length && url[q] !== '#') {
		const seg = q + 1;
		let end = seg;

		while (end < url.length && url[end] !== '&' && url[end] !== '#')
			end++;
		const text = url.slice(seg, end);
		const eq = text.indexOf('=');

		if ((eq >= 0 ? text.slice(0, eq) : text) === name)
			return eq >= 0 ? text.slice(eq + 1) : '';
		if (end >= url.length || url[end] === '#')
			break;
		q = end;
	}
	return null;
}

/* queryStr: the decoded value of parameter name of url, or null. */
function queryStr(url, name) {
	const raw = queryRaw(url, name);

	return raw === null ? null : urlDecode(raw);
}

/*
 * queryLong: non-negative integer parameter name of url, capped at 10^9;
 * dflt when absent, empty or not such an integer.
 */
function queryLong(url, name, dflt) {
	const s = queryStr(url, name);

	if (s === null || !/^\s*\+?[0-9]+$/.test(s))
		return dflt;
	return Math.min(Number(s.trim()), LONG_CAP);
}

/* hostIsInvalid: does the host of url end in ".invalid" (RFC 2606)? */
function hostIsInvalid(url) {
	const sep = url.indexOf('://');
	let h = sep >= 0 ? url.slice(sep + 3) : url;
	const at = h.search(/[/?#]/);

	h = at >= 0 ? h.slice(0, at) : h;
	if (h.includes('@'))
		h = h.slice(h.lastIndexOf('@') + 1);
	if (!h.startsWith('[') && h.includes(':'))
		h = h.slice(0, h.indexOf(':'));
	if (h.endsWith('.'))
		h = h.slice(0, -1);
	h = h.toLowerCase();
	return h === 'invalid' || (h.length > 8 && h.endsWith('.invalid'));
}

/* fileName: the last segment of the path of url, URL-decoded. */
function fileName(url) {
	const sep = url.indexOf('://');
	let rest = sep >= 0 ? url.slice(sep + 3) : url;
	const end = rest.search(/[?#]/);

	rest = end >= 0 ? rest.slice(0, end) : rest;
	const slash = rest.indexOf('/');
	const path = slash >= 0 ? rest.slice(slash) : '';

	return urlDecode(path.slice(path.lastIndexOf('/') + 1));
}

/* roomFromName: the room type the file name's keywords give, or "other". */
function roomFromName(name) {
	const lower = name.toLowerCase();

	for (const [word, room] of ROOM_RULES)
		if (lower.includes(word))
			return room;
	return 'other';
}

/* fnv1a: 64-bit FNV-1a hash (BigInt) of the bytes of buf. */
function fnv1a(buf) {
	let h = 14695981039346656037n;

	for (const b of buf)
		h = ((h ^ BigInt(b)) * 1099511628211n) & 0xffffffffffffffffn;
	return h;
}

/* makeItem: one item; vol is echoed verbatim if it is a JSON number, else 0. */
function makeItem(label, qty, vol) {
	return {
		label,
		quantity: qty,
		volume_m3: new RawNumber(isJsonNumberText(vol) ? vol : '0'),
	};
}

/*
 * itemsFromParam: the items of an items=label:qty:vol,... value (raw, URL-
 * decoded as a whole first).  A missing or non-integer quantity is 1, a
 * missing or non-numeric volume 0; empty entries and labels are skipped.
 */
function itemsFromParam(raw) {
	const items = [];

	for (const entry of urlDecode(raw).split(',')) {
		if (entry === '')
			continue;
		const a = entry.indexOf(':');
		const b = a >= 0 ? entry.indexOf(':', a + 1) : -1;
		const label = a >= 0 ? entry.slice(0, a) : entry;
		const qtyText = a < 0 ? '1' : (b >= 0 ? entry.slice(a + 1, b) : entry.slice(a + 1));
		const vol = b >= 0 ? entry.slice(b + 1) : '0';
		const qty = /^\s*[+-]?[0-9]+$/.test(qtyText) ? Number(qtyText.trim()) : 1;

		if (label !== '')
			items.push(makeItem(label, qty, vol));
	}
	return items;
}

/* itemsFromHash: 1 to 4 consecutive catalogue items chosen by hash of buf. */
function itemsFromHash(buf) {
	const h = fnv1a(buf);
	const n = 1 + Number(h % 4n);
	const start = Number((h >> 8n) % BigInt(CATALOGUE.length));
	const items = [];

	for (let i = 0; i < n; i++) {
		const [label, vol] = CATALOGUE[(start + i) % CATALOGUE.length];
		const qty = 1 + Number((h >> BigInt(16 + 4 * i)) % 3n);

		items.push(makeItem(label, qty, vol));
	}
	return items;
}

/* imageKey: the /stats/url key of an image ("" for none). */
function imageKey(image) {
	if (image === null)
		return '';
	if (image.kind === 'url')
		return image.url;
	if (image.kind === 'file')
		return 'file:' + image.fileId;
	return 'sha256:' + image.sha256;
}

/*
 * analyze: the analysis of an image: {room_type, items}.  For a URL: room=
 * or the file name's keywords, items= or the URL's hash; otherwise room
 * "other" and items hashed from the bytes (or the file id; none: "").
 */
function analyze(image) {
	if (image !== null && image.kind === 'url') {
		const url = image.url;
		const room = queryStr(url, 'room');
		const raw = queryRaw(url, 'items');

		return {
			room_type: room ? room : roomFromName(fileName(url)),
			items: raw !== null ? itemsFromParam(raw) : itemsFromHash(Buffer.from(url, 'utf8')),
		};
	}
	const seed = image === null ? Buffer.alloc(0)
		: image.kind === 'file' ? Buffer.from(image.fileId, 'utf8') : image.bytes;

	return { room_type: 'other', items: itemsFromHash(seed) };
}

/*
 * decide: the fate of call number calls (1-based) for image: {fault,
 * hangMs, extraMs, retryAfter}.  fault is null (answer normally), one of
 * FAULTS but 'hang', 'plain500' (fail_first without fault) or 'unknown'.
 * Order: fail_first, then unreachable, then fault.  Only URL images carry
 * faults.
 */
function decide(image, calls) {
	const out = { fault: null, hangMs: 0, extraMs: 0, retryAfter: '1' };

	if (image === null || image.kind !== 'url')
		return out;
	const url = image.url;
	let fault = queryStr(url, 'fault') || '';
	const failFirst = queryLong(url, 'fail_first', 0);
	const ra = queryStr(url, 'retry_after');

	out.extraMs = queryLong(url, 'latency_ms', 0);
	if (ra)
		out.retryAfter = ra.replace(/[\x00-\x1f\x7f]/g, ' ');	/* no header injection */
	if (failFirst > 0 && calls > failFirst)
		fault = '';				/* the failures are over: succeed */
	else if (failFirst > 0 && fault === '') {
		out.fault = 'plain500';
		return out;
	}
	if (fault === 'unreachable' || hostIsInvalid(url)) {
		out.fault = 'unreachable';
		return out;
	}
	if (fault === 'hang')
		out.hangMs = queryLong(url, 'hang_ms', 600000);
	else if (fault !== '')
		out.fault = FAULTS.has(fault) ? fault : 'unknown';
	return out;
}

/*
 * truncatedJson: the JSON text of analysis cut short a few characters into
 * its items, as an answer that ran out of tokens looks.
 */
function truncatedJson(analysis) {
	const text = toJson(analysis);
	const at = text.indexOf('"items":[');

	return text.slice(0, Math.min(text.length - 1, at + '"items":['.length + 4));
}

/* inputTokens: the usage input tokens of a request body of n bytes. */
function inputTokens(n) {
	return 1000 + Math.floor(n / 100);
}

/* outputTokens: the usage output tokens of an answer listing n items. */
function outputTokens(n) {
	return 40 + 25 * n;
}

module.exports = {
	VARIANT_FAULTS,
	urlDecode,
	queryRaw,
	queryStr,
	hostIsInvalid,
	imageKey,
	analyze,
	decide,
	truncatedJson,
	inputTokens,
	outputTokens,
};
