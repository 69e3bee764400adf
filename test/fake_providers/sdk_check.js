#!/usr/bin/env node
/*
 * sdk_check.js
 *		Self-test of the fake providers (TAP): starts a fake Anthropic and a
 *		fake OpenAI server, drives them with the official SDKs
 *		(@anthropic-ai/sdk, openai) and with raw fetch for malformed
 *		requests, and checks the answers, faults, inline (base64) images
 *		(inline_check.js), counters and shutdown.
 *
 *	cd test/fake_providers && npm ci --no-audit --no-fund && node sdk_check.js
 *	prove --exec node test/fake_providers/sdk_check.js	(from the repo root)
 *
 * Exit 0 when every test point passes, 1 otherwise.  The fakes are always
 * killed at exit.
 */
'use strict';

const { diag, ok, is, rejects, attempt, finish, startFake, waitExit, http } = require('./check_lib');
const { inlineChecks } = require('./inline_check');

let Anthropic;
let OpenAI;

try {
	Anthropic = require('@anthropic-ai/sdk');
	OpenAI = require('openai');
} catch (e) {
	console.log(`Bail out! the SDKs are not installed: run "npm ci" in ${__dirname} (${e.message})`);
	process.exit(1);
}

const KEY = 'sk-fake-test-key-0123456789';
const IMG = 'https://img.example.com';
/* a 1x1 PNG */
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==';
const SOFA = { room_type: 'living_room', items: [{ label: 'sofa', quantity: 1, volume_m3: 2.5 }] };
/* what the C fake (test/fake_ai) answers for this URL: same hash rules */
const CHAMBRE = { room_type: 'bedroom', items: [{ label: 'washing_machine', quantity: 3, volume_m3: 0.6 }] };

/* ITEMS_SCHEMA: the analysis schema, valid for OpenAI strict mode. */
const ITEMS_SCHEMA = {
	type: 'object',
	additionalProperties: false,
	required: ['room_type', 'items'],
	properties: {
		room_type: { type: 'string' },
		items: {
			type: 'array',
			items: {
				type: 'object',
				additionalProperties: false,
				required: ['label', 'quantity', 'volume_m3'],
				properties: {
					label: { type: 'string' },
					quantity: { type: 'integer' },
					volume_m3: { type: 'number' },
				},
			},
		},
	},
};

/* TOOL: the Anthropic tool the answers fill in. */
const TOOL = { name: 'report_items', description: 'Report the room and its furniture.', input_schema: ITEMS_SCHEMA };

/* claudeParams: messages.create params for one image block (url or base64). */
function claudeParams(source, extra = {}) {
	return {
		model: 'claude-test-1',
		max_tokens: 1024,
		messages: [{
			role: 'user',
			content: [{ type: 'image', source }, { type: 'text', text: 'List the furniture.' }],
		}],
		tools: [TOOL],
		tool_choice: { type: 'tool', name: 'report_items' },
		...extra,
	};
}

/* urlSource: an Anthropic url image source. */
function urlSource(url) {
	return { type: 'url', url };
}

/* gptParams: chat.completions.create params for one image URL. */
function gptParams(url, extra = {}) {
	return {
		model: 'gpt-test-1',
		messages: [
			{ role: 'system', content: 'You list furniture.' },
			{ role: 'user', content: [{ type: 'text', text: 'List the furniture.' }, { type: 'image_url', image_url: { url, detail: 'low' } }] },
		],
		response_format: { type: 'json_schema', json_schema: { name: 'room_analysis', schema: ITEMS_SCHEMA, strict: true } },
		max_completion_tokens: 1000,
		...extra,
	};
}

/* errIs: an error check: class, status and optional predicate. */
function errIs(cls, status, pred = () => true) {
	return (e) => {
		if (!(e instanceof cls))
			return `not a ${cls.name}`;
		if (e.status !== status)
			return `status ${e.status}, not ${status}`;
		return pred(e) || 'predicate failed';
	};
}

/* anthropicSdk: drive the Anthropic fake with @anthropic-ai/sdk. */
async function anthropicSdk(fake) {
	const client = new Anthropic({ apiKey: KEY, baseURL: fake.base, maxRetries: 0, timeout: 5000 });
	/* create: messages.create with params p. */
	const create = (p) => client.messages.create(p);

	await attempt('anthropic: tool_use answer', async () => {
		const msg = await create(claudeParams(urlSource(`${IMG}/salon.jpg?items=sofa:1:2.5`)));
		const block = msg.content[0];

		is([msg.type, msg.role, msg.model, msg.stop_reason], ['message', 'assistant', 'claude-test-1', 'tool_use'],
			'anthropic sdk: url image + text + forced tool -> a tool_use Message');
		is([block.type, block.name, block.input], ['tool_use', 'report_items', SOFA],
			'anthropic sdk: tool input is the analysis of salon.jpg?items=sofa:1:2.5');
		ok(/^msg_/.test(msg.id) && /^toolu_/.test(block.id) && /^req_/.test(msg._request_id),
			'anthropic sdk: msg_, toolu_ ids and a req_ request id');
		is(msg.usage.output_tokens, 65, 'anthropic sdk: output_tokens = 40 + 25 x 1 item');
	});
	await attempt('anthropic: sdk headers', async () => {
		const last = (await http('GET', `${fake.base}/last_request`)).json;

		ok(typeof last.headers['anthropic-version'] === 'string' && last.headers.authorization === `Bearer ${KEY}`,
			`anthropic sdk: its headers are accepted (anthropic-version ${last.headers['anthropic-version']}, ` +
			'Authorization: Bearer)');
		is(last.body.tool_choice, { type: 'tool', name: 'report_items' }, 'anthropic: /last_request has the parsed body');
	});
	await attempt('anthropic: hash answer', async () => {
		const msg = await create(claudeParams(urlSource(`${IMG}/chambre.jpg`)));

		is(msg.content[0].input, CHAMBRE, 'anthropic sdk: chambre.jpg answers as the C fake does');
	});
	await attempt('anthropic: base64', async () => {
		const src = { type: 'base64', media_type: 'image/png', data: PNG };
		const a = await create(claudeParams(src));
		const b = await create(claudeParams(src));

		ok(a.content[0].input.room_type === 'other' && a.content[0].input.items.length >= 1,
			'anthropic sdk: base64 PNG accepted (room other, hashed items)');
		is(b.content[0].input, a.content[0].input, 'anthropic sdk: same bytes, same analysis');
	});
	await attempt('anthropic: text answer', async () => {
		const msg = await create({ ...claudeParams(urlSource(`${IMG}/salon.jpg?items=sofa:1:2.5`)), tools: undefined, tool_choice: undefined });

		is([msg.stop_reason, msg.content[0].type, JSON.parse(msg.content[0].text)], ['end_turn', 'text', SOFA],
			'anthropic sdk: no tools -> the analysis as JSON text, end_turn');
	});
	await rejects(create(claudeParams(urlSource(`${IMG}/a.jpg?fault=429&retry_after=3`))),
		errIs(Anthropic.RateLimitError, 429, (e) => e.headers.get('retry-after') === '3' && e.error.error.type === 'rate_limit_error'),
		'anthropic sdk: fault=429 -> RateLimitError, retry-after: 3');
	await rejects(create(claudeParams(urlSource(`${IMG}/a.jpg?fault=529`))),
		errIs(Anthropic.APIError, 529, (e) => e.error.error.type === 'overloaded_error'),
		'anthropic sdk: fault=529 -> status 529 overloaded_error');
	await rejects(create(claudeParams(urlSource('https://photos.invalid/a.jpg'))),
		errIs(Anthropic.BadRequestError, 400, (e) => /Unable to download the file/.test(e.message)),
		'anthropic sdk: host .invalid -> BadRequestError "Unable to download the file..."');
	await rejects(create(claudeParams(urlSource(`${IMG}/a.jpg?fault=badimage`))),
		errIs(Anthropic.BadRequestError, 400, (e) => /Could not process image/.test(e.message)),
		'anthropic sdk: fault=badimage -> BadRequestError "Could not process image"');
	await rejects(create(claudeParams(urlSource(`${IMG}/a.jpg?fault=500`))),
		errIs(Anthropic.InternalServerError, 500, (e) => e.error.error.type === 'api_error' && e.requestID === e.error.request_id),
		'anthropic sdk: fault=500 -> InternalServerError api_error, request-id header = body request_id');
	await rejects(create(claudeParams(urlSource(`${IMG}/a.jpg?fault=504`))),
		errIs(Anthropic.APIError, 504, (e) => e.error.error.type === 'timeout_error'),
		'anthropic sdk: fault=504 -> 504 timeout_error');
	await rejects(create(claudeParams(urlSource(`${IMG}/a.jpg?fault=nosuch`))),
		errIs(Anthropic.BadRequestError, 400, (e) => /unknown fault/.test(e.message)),
		'anthropic sdk: fault=<typo> -> 400 unknown fault');
	await attempt('anthropic: odd answers', async () => {
		const r = await create(claudeParams(urlSource(`${IMG}/a.jpg?fault=refusal`)));
		const m = await create(claudeParams(urlSource(`${IMG}/a.jpg?fault=max_tokens`)));
		const n = await create(claudeParams(urlSource(`${IMG}/a.jpg?fault=notool`)));
		const b = await create(claudeParams(urlSource(`${IMG}/cuisine.jpg?fault=badschema`)));

		is([r.stop_reason, r.content], ['refusal', []], 'anthropic sdk: fault=refusal -> stop_reason refusal');
		is([m.stop_reason, m.content[0].input], ['max_tokens', {}], 'anthropic sdk: fault=max_tokens -> stop_reason max_tokens, input {}');
		is([n.stop_reason, n.content], ['end_turn', [{ type: 'text', text: 'I can see a sofa.', citations: null }]],
			'anthropic sdk: fault=notool -> a text block only');
		is(b.content[0].input, { room_type: 'kitchen', items: 'lots' }, 'anthropic sdk: fault=badschema -> items "lots"');
	});
	await attempt('anthropic: fail_first', async () => {
		const url = `${IMG}/ff.jpg?fail_first=1&items=box`;

		await rejects(create(claudeParams(urlSource(url))), errIs(Anthropic.InternalServerError, 500),
			'anthropic sdk: fail_first=1 -> call 1 fails with 500');
		const msg = await create(claudeParams(urlSource(url)));

		is(msg.content[0].input.items, [{ label: 'box', quantity: 1, volume_m3: 0 }], 'anthropic sdk: fail_first=1 -> call 2 succeeds');
		is((await http('GET', `${fake.base}/stats/url?url=${encodeURIComponent(url)}`)).json, { url, calls: 2 },
			'anthropic: /stats/url counts both calls');
	});
	await attempt('anthropic: hang', async () => {
		const t0 = Date.now();
		const msg = await create(claudeParams(urlSource(`${IMG}/a.jpg?fault=hang&hang_ms=300&items=`)));

		ok(Date.now() - t0 >= 290 && msg.content[0].input.items.length === 0, 'anthropic sdk: fault=hang&hang_ms=300 answers after 300 ms');
		const quick = new Anthropic({ apiKey: KEY, baseURL: fake.base, maxRetries: 0, timeout: 300 });

		await rejects(quick.messages.create(claudeParams(urlSource(`${IMG}/a.jpg?fault=hang`))),
			(e) => e instanceof Anthropic.APIConnectionTimeoutError || 'not a timeout', 'anthropic sdk: fault=hang -> client timeout');
	});
	const wrong = new Anthropic({ apiKey: 'sk-wrong', baseURL: fake.base, maxRetries: 0, timeout: 5000 });

	await rejects(wrong.messages.create(claudeParams(urlSource(`${IMG}/a.jpg`))),
		errIs(Anthropic.AuthenticationError, 401, (e) => e.error.error.type === 'authentication_error'),
		'anthropic sdk: wrong api key -> AuthenticationError');
}

/* openaiSdk: drive the OpenAI fake with the openai SDK. */
async function openaiSdk(fake) {
	const client = new OpenAI({ apiKey: KEY, baseURL: `${fake.base}/v1`, maxRetries: 0, timeout: 5000 });
	/* create: chat.completions.create with params p. */
	const create = (p) => client.chat.completions.create(p);

	await attempt('openai: json_schema answer', async () => {
		const c = await create(gptParams(`${IMG}/salon.jpg?items=sofa:1:2.5`));
		const ch = c.choices[0];

		is([c.object, c.model, ch.index, ch.finish_reason, ch.message.role, ch.message.refusal],
			['chat.completion', 'gpt-test-1', 0, 'stop', 'assistant', null], 'openai sdk: a chat.completion');
		is(JSON.parse(ch.message.content), SOFA, 'openai sdk: system + user [text, image_url] + strict json_schema -> the analysis');
		ok(/^chatcmpl-/.test(c.id) && c.usage.total_tokens === c.usage.prompt_tokens + c.usage.completion_tokens &&
			c.usage.completion_tokens === 65 && /^req_/.test(c._request_id), 'openai sdk: ids and usage');
	});
	await attempt('openai: hash and data url', async () => {
		const h = await create(gptParams(`${IMG}/chambre.jpg`));
		const d = await create(gptParams(`data:image/png;base64,${PNG}`));

		is(JSON.parse(h.choices[0].message.content), CHAMBRE, 'openai sdk: chambre.jpg answers as the C fake does');
		ok(JSON.parse(d.choices[0].message.content).room_type === 'other', 'openai sdk: data: URL accepted (room other)');
	});
	await rejects(create(gptParams(`${IMG}/a.jpg?fault=429`)),
		errIs(OpenAI.RateLimitError, 429, (e) => e.code === 'rate_limit_exceeded' && e.type === 'requests' && e.headers.get('retry-after') === '1'),
		'openai sdk: fault=429 -> RateLimitError rate_limit_exceeded, retry-after: 1');
	await rejects(create(gptParams(`${IMG}/a.jpg?fault=unreachable`)),
		errIs(OpenAI.BadRequestError, 400, (e) => e.code === 'invalid_image_url' && e.param === null &&
			e.message.includes(`Error while downloading ${IMG}/a.jpg?fault=unreachable.`)),
		'openai sdk: fault=unreachable -> BadRequestError invalid_image_url');
	await rejects(create(gptParams(`${IMG}/a.jpg?fault=badimage`)),
		errIs(OpenAI.BadRequestError, 400, (e) => e.code === 'invalid_image_format'), 'openai sdk: fault=badimage -> invalid_image_format');
	await rejects(create(gptParams(`${IMG}/a.jpg?fault=529`)),
		errIs(OpenAI.InternalServerError, 503, (e) => e.code === 'server_is_overloaded'), 'openai sdk: fault=529 -> 503 server_is_overloaded');
	await rejects(create(gptParams(`${IMG}/a.jpg?fault=500`)),
		errIs(OpenAI.InternalServerError, 500, (e) => e.type === 'server_error'), 'openai sdk: fault=500 -> 500 server_error');
	await attempt('openai: odd answers', async () => {
		const r = await create(gptParams(`${IMG}/a.jpg?fault=refusal`));
		const l = await create(gptParams(`${IMG}/cuisine.jpg?fault=max_tokens&items=table:1:0.9`));
		const n = await create(gptParams(`${IMG}/a.jpg?fault=notool`));

		is([r.choices[0].message.content, r.choices[0].message.refusal, r.choices[0].finish_reason],
			[null, "I'm sorry, I can't help with that.", 'stop'], 'openai sdk: fault=refusal -> message.refusal');
		is([l.choices[0].finish_reason, l.choices[0].message.content], ['length', '{"room_type":"kitchen","items":[{"la'],
			'openai sdk: fault=max_tokens -> finish_reason length, truncated JSON');
		is(n.choices[0].message.content, 'I can see a sofa.', 'openai sdk: fault=notool -> prose content');
	});
	const wrong = new OpenAI({ apiKey: 'sk-wrong-key-123456', baseURL: `${fake.base}/v1`, maxRetries: 0, timeout: 5000 });

	await rejects(wrong.chat.completions.create(gptParams(`${IMG}/a.jpg`)),
		errIs(OpenAI.AuthenticationError, 401, (e) => e.code === 'invalid_api_key'), 'openai sdk: wrong api key -> invalid_api_key');
}

/* anthropicRaw: malformed requests to the Anthropic fake, with fetch. */
async function anthropicRaw(fake) {
	const url = `${fake.base}/v1/messages`;
	const h = { 'x-api-key': KEY, 'anthropic-version': '2023-06-01' };
	const good = claudeParams(urlSource(`${IMG}/a.jpg`));
	/* post: a raw request; bad: a test point expecting a 400 whose message matches re. */
	const post = (body, headers = h) => http('POST', url, headers, body);
	const bad = async (body, re, desc, headers = h) => {
		const r = await post(body, headers);
		const e = r.json && r.json.error;

		ok(r.status === 400 && r.json.type === 'error' && e.type === 'invalid_request_error' && re.test(e.message) &&
			r.headers.get('request-id') === r.json.request_id, `anthropic raw: ${desc}`, `${r.status} ${r.text}`);
	};
	/* image: the good request with one image block of source. */
	const image = (source) => ({ ...good, messages: [{ role: 'user', content: [{ type: 'image', source }] }] });

	is((await post(good)).status, 200, 'anthropic raw: x-api-key + anthropic-version 2023-06-01 -> 200');
	await bad(good, /^anthropic-version: header is required$/, 'no anthropic-version -> 400', { 'x-api-key': KEY });
	await bad(good, /is not a valid version/, 'anthropic-version 2024-01-01 -> 400', { ...h, 'anthropic-version': '2024-01-01' });
	await bad({ ...good, max_tokens: undefined }, /^max_tokens: Field required$/, 'no max_tokens -> "max_tokens: Field required"');
	await bad({ ...good, max_tokens: 'ten' }, /^max_tokens: Input should be a valid integer$/, 'max_tokens "ten" -> 400');
	await bad({ ...good, model: undefined }, /^model: Field required$/, 'no model -> 400');
	await bad({ ...good, messages: [] }, /^messages: /, 'empty messages -> 400');
	await bad(image({ type: 'file_path', path: '/tmp/a.jpg' }), /^messages\.0\.content\.0\.image\.source: Input tag 'file_path'/,
		'image source type file_path -> 400 naming the path');
	await bad(image({ type: 'base64', media_type: 'image/png', data: 'not base64!' }), /base64/, 'invalid base64 data -> 400');
	await bad(image({ type: 'base64', media_type: 'image/bmp', data: PNG }), /media_type: Input should be/, 'media_type image/bmp -> 400');
	await bad(image({ type: 'base64', media_type: 'image/jpeg', data: PNG }), /media type image\/jpeg/, 'PNG bytes sent as image/jpeg -> 400');
	await bad(image({ type: 'url' }), /source\.url\.url: Field required/, 'url source without url -> 400');
	await bad({ ...good, messages: [{ role: 'user', content: [{ type: 'video', url: 'x' }] }] },
		/^messages\.0\.content\.0\.type: Input tag 'video'/, 'block type video -> 400');
	await bad({ ...good, messages: [{ role: 'robot', content: 'hi' }] }, /^messages\.0\.role: /, 'role robot -> 400');
	await bad({ ...good, messages: [{ role: 'assistant', content: 'hi' }] }, /first message must use the "user" role/, 'first message from assistant -> 400');
	await bad({ ...good, messages: [{ role: 'user', content: 42 }] }, /^messages\.0\.content: /, 'content 42 -> 400');
	await bad({ ...good, foo: 1 }, /^foo: Extra inputs are not permitted$/, 'unknown top-level field -> 400');
	await bad({ ...good, temperature: 0.2 }, /^temperature: Extra inputs are not permitted$/, 'temperature with 2026-10-21 -> 400',
		{ ...h, 'anthropic-version': '2026-10-21' });
	is((await post({ ...good, temperature: 0.2 })).status, 200, 'anthropic raw: temperature with 2023-06-01 -> 200');
	await bad({ ...good, stream: true }, /does not stream/, 'stream: true -> 400 (the fake does not stream)');
	await bad({ ...good, tools: [{ ...TOOL, name: 'bad name!' }], tool_choice: undefined }, /^tools\.0\.custom\.name: String should match pattern/,
		'tool name "bad name!" -> 400');
	await bad({ ...good, tools: [{ name: 't', input_schema: { type: 'array' } }], tool_choice: undefined },
		/input_schema\.type: Input should be 'object'/, 'input_schema type array -> 400');
	await bad({ ...good, tool_choice: { type: 'tool', name: 'other' } }, /Tool 'other' not found/, 'tool_choice names an unknown tool -> 400');
	await bad({ ...good, tool_choice: { type: 'sometimes' } }, /^tool_choice: Input tag 'sometimes'/, 'tool_choice type sometimes -> 400');
	await bad({ ...good, system: [{ type: 'image' }] }, /^system\.0\.type/, 'system with an image block -> 400');
	await bad('{"model": ', /parsing the body/, 'body not JSON -> 400');
	await bad('[1, 2]', /valid dictionary/, 'body a JSON array -> 400');
	const noKey = await post(good, { 'anthropic-version': '2023-06-01' });

	is([noKey.status, noKey.json.error.type], [401, 'authentication_error'], 'anthropic raw: no key -> 401 authentication_error');
	const nf = await http('GET', `${fake.base}/v1/nothing`);
	const na = await http('GET', url);

	is([nf.status, nf.json.error.type, na.status, na.json.type], [404, 'not_found_error', 405, 'error'],
		'anthropic raw: unknown path -> 404, GET /v1/messages -> 405, provider error bodies');
}

/* openaiRaw: malformed requests to the OpenAI fake, with fetch. */
async function openaiRaw(fake) {
	const url = `${fake.base}/v1/chat/completions`;
	const h = { authorization: `Bearer ${KEY}` };
	const good = gptParams(`${IMG}/a.jpg`);
	/* post: a raw request; bad: a test point expecting a 400 (message re, param, code). */
	const post = (body, headers = h) => http('POST', url, headers, body);
	const bad = async (body, re, desc, param, code) => {
		const r = await post(body);
		const e = r.json && r.json.error;

		ok(r.status === 400 && e.type === 'invalid_request_error' && re.test(e.message) &&
			(param === undefined || e.param === param) && (code === undefined || e.code === code) &&
			/^req_/.test(r.headers.get('x-request-id')), `openai raw: ${desc}`, `${r.status} ${r.text}`);
	};
	/* rf: the good request with a json_schema response format; user: with one user message. */
	const rf = (jsonSchema) => ({ ...good, response_format: { type: 'json_schema', json_schema: jsonSchema } });
	const user = (content) => ({ ...good, messages: [{ role: 'user', content }] });

	is((await post(good)).status, 200, 'openai raw: well-formed request -> 200');
	await bad(rf({ name: 'room', strict: true }), /^Invalid schema for response_format 'room': schema must be a JSON Schema of 'type: "object"'/,
		'strict json_schema without schema -> 400', 'response_format');
	await bad(rf({ schema: ITEMS_SCHEMA }), /'response_format\.json_schema\.name'/, 'json_schema without name -> 400',
		'response_format.json_schema.name', 'missing_required_parameter');
	await bad(rf({ name: 'bad name', schema: ITEMS_SCHEMA }), /does not match pattern/, 'json_schema name "bad name" -> 400');
	const loose = JSON.parse(JSON.stringify(ITEMS_SCHEMA));

	loose.properties.items.items.required = ['label', 'volume_m3'];
	await bad(rf({ name: 'room', schema: loose, strict: true }),
		/^Invalid schema for response_format 'room': In context=\('properties', 'items', 'items'\), 'required' is required .* Missing 'quantity'\.$/,
		'strict schema with a property missing from required -> 400', 'response_format');
	is((await post(rf({ name: 'room', schema: loose }))).status, 200, 'openai raw: the same schema without strict -> 200');
	const open = { ...ITEMS_SCHEMA, additionalProperties: undefined };

	await bad(rf({ name: 'room', schema: open, strict: true }), /In context=\(\), 'additionalProperties' is required to be supplied and to be false/,
		'strict schema without additionalProperties: false -> 400');
	await bad({ ...good, response_format: { type: 'json_object' }, messages: [{ role: 'user', content: 'hi' }] },
		/must contain the word 'json'/, 'json_object without "json" in the messages -> 400');
	await bad({ ...good, foo: 1 }, /^Unrecognized request argument supplied: foo$/, 'unknown argument -> 400');
	await bad({ ...good, model: undefined }, /^you must provide a model parameter$/, 'no model -> 400');
	await bad({ ...good, messages: [] }, /empty array/, 'empty messages -> 400', 'messages', 'empty_array');
	await bad({ ...good, messages: [{ role: 'robot', content: 'x' }] }, /^Invalid value: 'robot'/, 'role robot -> 400', 'messages[0].role', 'invalid_value');
	await bad(user([{ type: 'image', url: 'x' }]), /^Invalid value: 'image'/, 'part type image -> 400', 'messages[0].content[0].type');
	await bad(user([{ type: 'image_url', image_url: {} }]), /messages\[0\]\.content\[0\]\.image_url\.url/, 'image_url without url -> 400');
	await bad(user([{ type: 'image_url', image_url: { url: `${IMG}/a.jpg`, detail: 'max' } }]), /^Invalid value: 'max'/, 'detail max -> 400');
	await bad(user([{ type: 'image_url', image_url: { url: 'data:text/plain;base64,aGk=' } }]), /MIME type/, 'data:text/plain -> 400');
	await bad(user([{ type: 'image_url', image_url: { url: 'data:image/png;base64,@@@' } }]), /base64/, 'data: URL with bad base64 -> 400');
	await bad(user([{ type: 'image_url', image_url: { url: 'not a url' } }]), /Expected a valid URL/, 'image_url "not a url" -> 400');
	await bad({ ...good, max_tokens: 0 }, /integer below minimum value/, 'max_tokens 0 -> 400', 'max_tokens', 'integer_below_min_value');
	await bad({ ...good, max_completion_tokens: 'x' }, /Invalid type for 'max_completion_tokens'/, 'max_completion_tokens "x" -> 400');
	await bad({ ...good, tool_choice: 'auto' }, /only allowed when 'tools' are specified/, 'tool_choice without tools -> 400');
	await bad({ ...good, tools: [{ type: 'function', function: { name: 'bad name' } }] }, /does not match pattern/, 'function name "bad name" -> 400');
	await bad({ ...good, stream: true }, /does not stream/, 'stream: true -> 400 (the fake does not stream)');
	await bad('{"model": ', /could not parse the JSON body/, 'body not JSON -> 400');
	const tools = { ...good, tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }], tool_choice: 'required' };

	is((await post(tools)).status, 200, 'openai raw: function tools + tool_choice accepted');
	const noKey = await post(good, {});

	ok(noKey.status === 401 && /^You didn't provide an API key/.test(noKey.json.error.message),
		"openai raw: no Authorization -> 401 \"You didn't provide an API key...\"", noKey.text);
	const nf = await http('GET', `${fake.base}/v1/nothing`);
	const na = await http('GET', url);

	is([nf.status, nf.json.error.message, na.status], [404, 'Invalid URL (GET /v1/nothing)', 405],
		'openai raw: unknown path -> 404, GET on the API -> 405');
}

/* counters: /reset, /stats, /stats/url, /last_request, /health. */
async function counters(fake, api) {
	const isClaude = api === 'anthropic';
	const url = isClaude ? `${fake.base}/v1/messages` : `${fake.base}/v1/chat/completions`;
	const h = isClaude ? { 'x-api-key': KEY, 'anthropic-version': '2023-06-01' } : { authorization: `Bearer ${KEY}` };
	/* body: a request body for image URL u. */
	const body = (u) => (isClaude ? claudeParams(urlSource(u)) : gptParams(u));
	const img = `${IMG}/garage.jpg?items=box:2:0.1,bed`;

	is((await http('POST', `${fake.base}/reset`)).json, { ok: true }, `${api}: POST /reset -> {"ok":true}`);
	const r1 = await http('POST', url, h, body(img));
	const r2 = await http('POST', url, h, body(`${img}&fault=429`));
	const r3 = await http('POST', url, {}, body(img));
	const r4 = await http('POST', url, h, body(`${IMG}/a.jpg?fault=refusal`));
	const u1 = isClaude ? r1.json.usage : { input_tokens: r1.json.usage.prompt_tokens, output_tokens: r1.json.usage.completion_tokens };
	const u4 = isClaude ? r4.json.usage : { input_tokens: r4.json.usage.prompt_tokens, output_tokens: r4.json.usage.completion_tokens };
	const bytes = Buffer.byteLength(JSON.stringify(body(img)));

	is([r1.status, r2.status, r3.status, r4.status], [200, 429, 401, 200], `${api}: ok, 429, 401, refusal`);
	is(u1, { ...u1, input_tokens: 1000 + Math.floor(bytes / 100), output_tokens: 40 + 25 * 2 },
		`${api}: usage = 1000 + bytes/100 in, 40 + 25 x items out`);
	is((await http('GET', `${fake.base}/stats`)).json, {
		total: 4, ok: 2, errors: 2, rejected: 1,
		input_tokens: u1.input_tokens + u4.input_tokens, output_tokens: u1.output_tokens + u4.output_tokens,
	}, `${api}: /stats counts total, ok, errors, rejected and the usage of 200 answers`);
	is((await http('GET', `${fake.base}/stats/url?url=${encodeURIComponent(img)}`)).json, { url: img, calls: 1 },
		`${api}: /stats/url counts the calls of a valid request's image (not the 401)`);
	const last = (await http('GET', `${fake.base}/last_request`)).json;

	ok(last.headers['content-type'] === 'application/json' && last.body.model === body(img).model,
		`${api}: /last_request has the lowercased headers and the parsed body`);
	is((await http('GET', `${fake.base}/health`)).text, 'ok', `${api}: GET /health -> ok`);
	await http('POST', `${fake.base}/reset`);
	is((await http('GET', `${fake.base}/stats`)).json.total, 0, `${api}: /reset zeroes the counters`);
}

/* lifecycle: --latency-ms, and SIGTERM ends a fake at once despite a hang. */
async function lifecycle() {
	const fake = await startFake('openai', ['--latency-ms', '250']);
	const h = { authorization: 'Bearer any-key' };
	const url = `${fake.base}/v1/chat/completions`;
	const t0 = Date.now();
	const r = await http('POST', url, h, gptParams(`${IMG}/a.jpg`));

	ok(r.status === 200 && Date.now() - t0 >= 240, 'lifecycle: --latency-ms 250 delays the answer; without --api-key any key is accepted');
	http('POST', url, h, gptParams(`${IMG}/a.jpg?fault=hang`)).catch(() => {});
	await new Promise((res) => setTimeout(res, 300));
	fake.child.kill('SIGTERM');
	const ex = await waitExit(fake.child, 3000);

	ok(ex !== null && ex.code === 0 && ex.ms < 1000, 'lifecycle: SIGTERM with a hanging request -> exit 0 at once',
		JSON.stringify(ex));
}

/* main: start both fakes, run every group, print the plan. */
async function main() {
	let claude;
	let gpt;

	try {
		[claude, gpt] = await Promise.all([startFake('anthropic', ['--api-key', KEY]), startFake('openai', ['--api-key', KEY])]);
	} catch (e) {
		console.log(`Bail out! ${e.message}`);
		process.exit(1);
	}
	diag(`anthropic fake on ${claude.port}, openai fake on ${gpt.port}`);
	await attempt('anthropic sdk', () => anthropicSdk(claude));
	await attempt('openai sdk', () => openaiSdk(gpt));
	await attempt('anthropic raw', () => anthropicRaw(claude));
	await attempt('openai raw', () => openaiRaw(gpt));
	await attempt('inline images', () => inlineChecks(claude, gpt,
		{ KEY, IMG, Anthropic, OpenAI, claudeParams, gptParams, errIs }));
	await attempt('anthropic counters', () => counters(claude, 'anthropic'));
	await attempt('openai counters', () => counters(gpt, 'openai'));
	await attempt('lifecycle', lifecycle);
	for (const f of [claude, gpt])
		if (f.stderr())
			diag(`fake stderr: ${f.stderr()}`);
	finish();
}

main();
