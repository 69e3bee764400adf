/*
 * common.js
 *		Small helpers shared by the fake Anthropic and OpenAI servers: ids,
 *		a JSON serializer that can emit number text verbatim, type tests and
 *		cancellable waits (image checks: image_info.js).
 *
 * Only Node's standard library is used.
 */
'use strict';

const crypto = require('node:crypto');

const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/* randomId: prefix followed by n random base62 characters. */
function randomId(prefix, n) {
	const bytes = crypto.randomBytes(n);
	let s = prefix;

	for (let i = 0; i < n; i++)
		s += BASE62[bytes[i] % BASE62.length];
	return s;
}

/* randomHex: prefix followed by n random lowercase hex digits. */
function randomHex(prefix, n) {
	return prefix + crypto.randomBytes(Math.ceil(n / 2)).toString('hex').slice(0, n);
}

/*
 * RawNumber: a number whose JSON text is emitted exactly as written (the
 * volumes of items=label:qty:vol, e.g. "2.50" stays "2.50").
 */
class RawNumber {
	/* constructor: text must be a valid JSON number. */
	constructor(text) {
		this.text = text;
	}
}

/* JSON_NUMBER: the JSON number grammar (RFC 8259), nothing else. */
const JSON_NUMBER = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/;

/* isJsonNumberText: is s the text of a JSON number? */
function isJsonNumberText(s) {
	return typeof s === 'string' && JSON_NUMBER.test(s);
}

/*
 * toJson: compact JSON text of value, like JSON.stringify, except that a
 * RawNumber is written as its text.  undefined members are left out.
 */
function toJson(value) {
	if (value instanceof RawNumber)
		return value.text;
	if (Array.isArray(value))
		return '[' + value.map((v) => (v === undefined ? 'null' : toJson(v))).join(',') + ']';
	if (value !== null && typeof value === 'object') {
		const parts = [];

		for (const [k, v] of Object.entries(value))
			if (v !== undefined)
				parts.push(JSON.stringify(k) + ':' + toJson(v));
		return '{' + parts.join(',') + '}';
	}
	return JSON.stringify(value);
}

/*
 * Invalid: thrown by a provider's request validation; message is the
 * provider's error message, param and code (OpenAI) where it has them.
 */
class Invalid extends Error {
	/* constructor: an invalid request error. */
	constructor(message, param = null, code = null) {
		super(message);
		this.param = param;
		this.code = code;
	}
}

/* isObject: is v a plain JSON object (not null, not an array)? */
function isObject(v) {
	return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/* isInteger: is v a JSON number with an integral value? */
function isInteger(v) {
	return typeof v === 'number' && Number.isInteger(v);
}

/* jsonType: the JSON type name of v, as error messages name it. */
function jsonType(v) {
	if (v === null)
		return 'null';
	if (Array.isArray(v))
		return 'array';
	if (typeof v === 'number')
		return Number.isInteger(v) ? 'integer' : 'number';
	return typeof v;			/* string, boolean, object */
}

/*
 * Waits: a set of pending timers that a shutdown can cancel at once, so
 * that requests waiting on latency or hangs never hold the process up.
 */
class Waits {
	/* constructor: no pending waits. */
	constructor() {
		this.pending = new Set();
	}

	/*
	 * sleep: a promise resolved after ms milliseconds (at most 2^31-1, the
	 * longest timer Node keeps); 0 resolves at once.
	 */
	sleep(ms) {
		if (!(ms > 0))
			return Promise.resolve();
		return new Promise((resolve) => {
			const t = setTimeout(() => {
				this.pending.delete(t);
				resolve();
			}, Math.min(ms, 2147483647));

			this.pending.add(t);
		});
	}

	/* cancelAll: clear every pending timer (their promises never resolve). */
	cancelAll() {
		for (const t of this.pending)
			clearTimeout(t);
		this.pending.clear();
	}
}

module.exports = {
	randomId,
	randomHex,
	RawNumber,
	isJsonNumberText,
	toJson,
	Invalid,
	isObject,
	isInteger,
	jsonType,
	Waits,
};
