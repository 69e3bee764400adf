/*
 * check_lib.js
 *		The harness of sdk_check.js: TAP output, starting the fakes as child
 *		processes (and always killing them at exit), and raw HTTP calls.
 */
'use strict';

const path = require('node:path');
const assert = require('node:assert');
const { spawn } = require('node:child_process');

const FAKE = path.join(__dirname, 'fake_provider.js');
const READY = /^fake_provider listening on 127\.0\.0\.1:([0-9]+)$/m;

const children = new Set();
let count = 0;
let failures = 0;

/* diag: print text as TAP diagnostics (# lines). */
function diag(text) {
	for (const line of String(text).split('\n'))
		console.log(`# ${line}`);
}

/* ok: one TAP test point; why is printed as diagnostics on failure. */
function ok(cond, desc, why) {
	count++;
	console.log(`${cond ? 'ok' : 'not ok'} ${count} - ${desc}`);
	if (!cond) {
		failures++;
		if (why !== undefined)
			diag(why);
	}
	return cond;
}

/* is: a test point passing if got deep-equals want. */
function is(got, want, desc) {
	try {
		assert.deepStrictEqual(got, want);
		return ok(true, desc);
	} catch (e) {
		return ok(false, desc, `got:  ${JSON.stringify(got)}\nwant: ${JSON.stringify(want)}`);
	}
}

/*
 * rejects: a test point passing if promise rejects with an error that
 * check accepts (check returns true, or a string saying what is wrong).
 */
async function rejects(promise, check, desc) {
	try {
		const v = await promise;

		return ok(false, desc, `no error; answer: ${JSON.stringify(v).slice(0, 500)}`);
	} catch (e) {
		let verdict;

		try {
			verdict = check(e);
		} catch (inner) {
			verdict = String(inner);
		}
		return ok(verdict === true, desc, verdict === true ? undefined :
			`${verdict || 'unexpected error'}: ${e && e.constructor && e.constructor.name} ` +
			`status=${e && e.status} ${e && e.message}`);
	}
}

/* attempt: run fn; a thrown error becomes a failed test point named desc. */
async function attempt(desc, fn) {
	try {
		await fn();
	} catch (e) {
		ok(false, desc, e && e.stack ? e.stack : String(e));
	}
}

/* finish: print the plan and exit 0, or 1 if any test point failed. */
function finish() {
	console.log(`1..${count}`);
	process.exit(failures > 0 || count === 0 ? 1 : 0);
}

/* killAll: SIGKILL every child still running (exit handler: synchronous). */
function killAll() {
	for (const c of children)
		if (c.exitCode === null && c.signalCode === null)
			c.kill('SIGKILL');
}

process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'])
	process.on(sig, () => {
		killAll();
		process.exit(1);
	});

/*
 * startFake: start a fake provider (args: extra CLI arguments) on a port
 * the kernel picks; resolves {child, port, base} once it prints its ready
 * line.
 */
function startFake(api, args = []) {
	return new Promise((resolve, reject) => {
		const child = spawn(process.execPath, [FAKE, '--api', api, '--port', '0', ...args],
			{ stdio: ['ignore', 'pipe', 'pipe'] });
		let out = '';
		let err = '';
		const timer = setTimeout(() => reject(new Error(`${api} fake not ready in 10 s: ${out}${err}`)), 10000);

		children.add(child);
		child.stderr.on('data', (d) => { err += d; });
		child.stdout.on('data', (d) => {
			out += d;
			const m = READY.exec(out);

			if (m) {
				clearTimeout(timer);
				resolve({ child, port: Number(m[1]), base: `http://127.0.0.1:${m[1]}`, stderr: () => err });
			}
		});
		child.on('exit', (code) => {
			clearTimeout(timer);
			reject(new Error(`${api} fake exited (${code}) before it was ready: ${out}${err}`));
		});
	});
}

/*
 * waitExit: resolves {code, signal, ms} when child exits (ms: since the
 * call), or null after timeoutMs.
 */
function waitExit(child, timeoutMs) {
	const t0 = Date.now();

	return new Promise((resolve) => {
		if (child.exitCode !== null || child.signalCode !== null)
			return resolve({ code: child.exitCode, signal: child.signalCode, ms: 0 });
		const timer = setTimeout(() => resolve(null), timeoutMs);

		child.once('exit', (code, signal) => {
			clearTimeout(timer);
			resolve({ code, signal, ms: Date.now() - t0 });
		});
	});
}

/*
 * http: a raw request with fetch; resolves {status, headers, text, json}
 * (json: the parsed body, or undefined).  body: a string or a value sent
 * as JSON.
 */
async function http(method, url, headers = {}, body = undefined) {
	const res = await fetch(url, {
		method,
		headers: { 'content-type': 'application/json', ...headers },
		body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
	});
	const text = await res.text();
	let json;

	try {
		json = JSON.parse(text);
	} catch (e) {
		json = undefined;
	}
	return { status: res.status, headers: res.headers, text, json };
}

module.exports = { diag, ok, is, rejects, attempt, finish, startFake, waitExit, http };
