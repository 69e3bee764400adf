#!/usr/bin/env node
/*
 * fake_provider.js
 *		Entry point of the fake AI providers used by the end-to-end tests:
 *		a fake Anthropic Messages API or a fake OpenAI Chat Completions API
 *		on one port, with deterministic answers, fault injection and
 *		counters (see README.md).
 *
 *	node fake_provider.js --api anthropic|openai --port P [--host 127.0.0.1]
 *		[--api-key KEY] [--latency-ms N]
 *
 * Prints "fake_provider listening on HOST:P" once listening; SIGTERM and
 * SIGINT stop it at once (exit 0), even with requests waiting.
 */
'use strict';

const { FakeServer } = require('./server');

const USAGE = 'usage: fake_provider.js --api anthropic|openai --port P [--host 127.0.0.1] ' +
	'[--api-key KEY] [--latency-ms N]\n';

/* die: print msg and the usage on stderr, exit 2. */
function die(msg) {
	process.stderr.write(`fake_provider: ${msg}\n${USAGE}`);
	process.exit(2);
}

/*
 * parseArgs: the options of argv (--name value or --name=value): {api,
 * port, host, apiKey, latencyMs}.
 */
function parseArgs(argv) {
	const opts = { api: null, port: null, host: '127.0.0.1', apiKey: null, latencyMs: 0 };
	const names = { '--api': 'api', '--port': 'port', '--host': 'host', '--api-key': 'apiKey', '--latency-ms': 'latencyMs' };

	for (let i = 0; i < argv.length; i++) {
		let [flag, value] = argv[i].split(/=(.*)/s, 2);

		if (flag === '--help' || flag === '-h') {
			process.stdout.write(USAGE);
			process.exit(0);
		}
		if (!(flag in names))
			die(`unknown option ${flag}`);
		if (value === undefined) {
			if (i + 1 >= argv.length)
				die(`${flag} needs a value`);
			value = argv[++i];
		}
		opts[names[flag]] = value;
	}
	if (opts.api !== 'anthropic' && opts.api !== 'openai')
		die('--api must be anthropic or openai');
	if (opts.port === null || !/^[0-9]+$/.test(opts.port) || Number(opts.port) > 65535)
		die('--port must be a port number (0: any free port)');
	if (!/^[0-9]+$/.test(String(opts.latencyMs)))
		die('--latency-ms must be a non-negative integer');
	if (opts.apiKey === '')
		die('--api-key must not be empty');
	opts.port = Number(opts.port);
	opts.latencyMs = Number(opts.latencyMs);
	return opts;
}

/* main: start the server, print the ready line, stop on a signal. */
async function main() {
	const opts = parseArgs(process.argv.slice(2));
	const server = new FakeServer({
		provider: require(opts.api === 'anthropic' ? './anthropic' : './openai'),
		host: opts.host,
		port: opts.port,
		apiKey: opts.apiKey,
		latencyMs: opts.latencyMs,
	});
	/* stop: the signal handler: end at once, exit 0. */
	const stop = () => {
		server.shutdown();
		process.exit(0);
	};

	process.on('SIGTERM', stop);
	process.on('SIGINT', stop);
	process.stdout.on('error', () => {});	/* a closed pipe must not kill us */
	let port;

	try {
		port = await server.listen();
	} catch (e) {
		process.stderr.write(`fake_provider: cannot listen on ${opts.host}:${opts.port}: ${e.message}\n`);
		process.exit(1);
	}
	process.stdout.write(`fake_provider listening on ${opts.host}:${port}\n`);
}

main();
