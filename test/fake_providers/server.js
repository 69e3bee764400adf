/*
 * server.js
 *		The HTTP side shared by the fake providers: routing, the API request
 *		flow (authenticate, validate, count, decide the fault, wait, answer),
 *		the counters and their endpoints, and a prompt shutdown.
 *
 * A provider module (anthropic.js, openai.js) supplies what differs: the
 * API path, the request id header, validation, and the bodies of answers
 * and errors.  Its interface:
 *
 *	name, apiPath, maxBodyBytes, requestIdHeader, newRequestId()
 *	authenticate(headers, apiKey)		-> reply | null
 *	validate(body, rawText, headers)	-> {reply} | {ctx: {image, inline, ...}}
 *	  (body: the parsed JSON, undefined when the text is not JSON; image:
 *	  the first image or null; inline: every base64 image, see image_info.js)
 *	answer(ctx, analysis, variant, usage)	-> reply (200; variant null or
 *	  refusal | max_tokens | notool | badschema)
 *	faultReply(fault, ctx, decision)	-> reply (an error answer)
 *	notFound(method, path), methodNotAllowed(method, path), tooLarge()
 *
 * A reply is {status, body (string), headers?, contentType?, requestId?}
 * (requestId: the id the body names, sent in the request id header too).
 */
'use strict';

const http = require('node:http');
const { Waits } = require('./common');
const scenario = require('./scenario');

/* newStats: zeroed counters. */
function newStats() {
	return {
		total: 0, ok: 0, errors: 0, rejected: 0,
		input_tokens: 0, output_tokens: 0,
		urlCalls: new Map(),
		images: new Map(),
	};
}

/* readBody: the request body as a Buffer, or null if over limit bytes. */
function readBody(req, limit) {
	return new Promise((resolve, reject) => {
		const chunks = [];
		let size = 0;

		req.on('data', (c) => {
			size += c.length;
			if (size <= limit)
				chunks.push(c);
		});
		req.on('end', () => resolve(size > limit ? null : Buffer.concat(chunks)));
		req.on('error', reject);
	});
}

/* parseJson: the value of JSON text, or undefined if it is not JSON. */
function parseJson(text) {
	try {
		return JSON.parse(text);
	} catch (e) {
		return undefined;
	}
}

/* jsonReply: a reply whose body is value as JSON. */
function jsonReply(status, value) {
	return { status, body: JSON.stringify(value) };
}

/*
 * FakeServer: one fake provider listening on one port.  opts: provider,
 * host, port, apiKey (null: any non-empty key), latencyMs.
 */
class FakeServer {
	/* constructor: an idle server (call listen). */
	constructor(opts) {
		this.provider = opts.provider;
		this.host = opts.host;
		this.port = opts.port;
		this.apiKey = opts.apiKey;
		this.latencyMs = opts.latencyMs;
		this.stats = newStats();
		this.lastRequest = null;
		this.waits = new Waits();
		this.sockets = new Set();
		this.http = http.createServer((req, res) => {
			this.route(req, res).catch((err) => {
				process.stderr.write(`fake_provider: ${err.stack || err}\n`);
				if (!res.headersSent)
					this.send(res, this.provider.faultReply('500', null, {}));
			});
		});
		this.http.keepAliveTimeout = 65000;
		this.http.on('connection', (s) => {
			this.sockets.add(s);
			s.on('close', () => this.sockets.delete(s));
		});
	}

	/* listen: start listening; resolves with the port actually bound. */
	listen() {
		return new Promise((resolve, reject) => {
			this.http.once('error', reject);
			this.http.listen(this.port, this.host, () => resolve(this.http.address().port));
		});
	}

	/* shutdown: end every wait, drop every connection, stop listening. */
	shutdown() {
		this.waits.cancelAll();
		for (const s of this.sockets)
			s.destroy();
		this.http.close();
	}

	/* send: write reply on res, with its type (JSON) and request id. */
	send(res, reply) {
		if (res.destroyed || res.headersSent)
			return;
		const headers = {
			'content-type': reply.contentType || 'application/json',
			[this.provider.requestIdHeader]: reply.requestId || this.provider.newRequestId(),
			...(reply.headers || {}),
		};

		res.writeHead(reply.status, headers);
		res.end(reply.body);
	}

	/* route: dispatch one request by path and method. */
	async route(req, res) {
		const url = new URL(req.url, 'http://fake');
		const path = url.pathname;
		const p = this.provider;
		/* want: is the method the one expected? Else answer 405. */
		const want = (method) => {
			if (req.method === method)
				return true;
			req.resume();
			this.send(res, p.methodNotAllowed(req.method, path));
			return false;
		};

		if (path === p.apiPath) {
			if (want('POST'))
				await this.handleApi(req, res);
		} else if (path === '/health') {
			if (want('GET'))
				this.send(res, { status: 200, body: 'ok', contentType: 'text/plain' });
		} else if (path === '/stats') {
			if (want('GET'))
				this.send(res, jsonReply(200, this.statsView()));
		} else if (path === '/stats/url') {
			if (want('GET')) {
				const u = url.searchParams.get('url') || '';

				this.send(res, jsonReply(200, { url: u, calls: this.stats.urlCalls.get(u) || 0 }));
			}
		} else if (path === '/stats/images') {
			if (want('GET'))
				this.send(res, jsonReply(200, { images: [...this.stats.images.values()] }));
		} else if (path === '/last_request') {
			if (want('GET'))
				this.send(res, jsonReply(200, this.lastRequest || { headers: {}, body: null }));
		} else if (path === '/reset') {
			if (want('POST')) {
				this.stats = newStats();
				this.send(res, jsonReply(200, { ok: true }));
			}
		} else {
			req.resume();
			this.send(res, p.notFound(req.method, path));
		}
	}

	/* statsView: the public counters (GET /stats). */
	statsView() {
		const s = this.stats;

		return {
			total: s.total, ok: s.ok, errors: s.errors, rejected: s.rejected,
			input_tokens: s.input_tokens, output_tokens: s.output_tokens,
		};
	}

	/*
	 * handleApi: one API request: authenticate, validate, count the call
	 * of its image, decide the fault, wait for the latency (and hang), then
	 * answer and count the answer.
	 */
	async handleApi(req, res) {
		const p = this.provider;
		const stats = this.stats;
		const raw = await readBody(req, p.maxBodyBytes);
		const text = raw === null ? '' : raw.toString('utf8');
		const body = raw === null ? undefined : parseJson(text);
		let reply = null;
		let rejected = true;
		let usage = null;
		let waitMs = this.latencyMs;

		stats.total++;
		this.lastRequest = { headers: { ...req.headers }, body: body === undefined ? null : body };
		if (body === undefined && raw !== null)
			this.lastRequest.raw = text;
		if (raw === null)
			reply = p.tooLarge();
		else
			reply = p.authenticate(req.headers, this.apiKey);
		if (reply === null) {
			const v = p.validate(body, text, req.headers);

			reply = v.reply || null;
			if (reply === null) {
				const a = this.decideAnswer(v.ctx, raw.length);

				rejected = false;
				({ reply, usage } = a);
				waitMs += a.decision.extraMs + a.decision.hangMs;
			}
		}
		await this.waits.sleep(waitMs);
		if (this.stats !== stats)
			return this.send(res, reply);	/* counters were reset meanwhile */
		if (reply.status === 200) {
			stats.ok++;
			stats.input_tokens += usage.input;
			stats.output_tokens += usage.output;
		} else {
			stats.errors++;
			if (rejected)
				stats.rejected++;
		}
		this.send(res, reply);
	}

	/*
	 * recordImages: count a valid request's inline images in /stats/images
	 * (in the order first received: {sha256, bytes, calls}).
	 */
	recordImages(inline) {
		for (const img of inline) {
			const entry = this.stats.images.get(img.sha256) || { sha256: img.sha256, bytes: img.bytes.length, calls: 0 };

			entry.calls++;
			this.stats.images.set(img.sha256, entry);
		}
	}

	/*
	 * decideAnswer: {reply, usage, decision} for a valid request of n bytes
	 * whose context is ctx (usage: null for error answers).
	 */
	decideAnswer(ctx, n) {
		const key = scenario.imageKey(ctx.image);
		const calls = (this.stats.urlCalls.get(key) || 0) + 1;
		const d = scenario.decide(ctx.image, calls);

		this.stats.urlCalls.set(key, calls);
		this.recordImages(ctx.inline);
		if (d.fault !== null && !scenario.VARIANT_FAULTS.has(d.fault))
			return { reply: this.provider.faultReply(d.fault, ctx, d), usage: null, decision: d };
		const analysis = scenario.analyze(ctx.image);
		const usage = {
			input: scenario.inputTokens(n),
			output: scenario.outputTokens(d.fault === null ? analysis.items.length : 0),
		};

		return { reply: this.provider.answer(ctx, analysis, d.fault, usage), usage, decision: d };
	}
}

module.exports = { FakeServer, jsonReply };
