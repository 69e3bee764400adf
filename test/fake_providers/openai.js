/*
 * openai.js
 *		The fake OpenAI Chat Completions API (POST /v1/chat/completions):
 *		request validation as the real API answers it (including the
 *		Structured Outputs rules of strict json_schema), chat.completion
 *		answers, and the documented error bodies {"error": {message, type,
 *		param, code}} with an x-request-id header.
 *
 * Parameter paths in messages use the API's notation: messages[0].content
 * [1].image_url.url.  See README.md for what is checked.
 */
'use strict';

const { randomId, randomHex, toJson, Invalid, isObject, isInteger, jsonType } = require('./common');
const { IMAGE_MEDIA_TYPES, decodeBase64, sniffImage, inlineImage } = require('./image_info');
const { truncatedJson } = require('./scenario');

/* TOP_FIELDS: the body parameters of POST /v1/chat/completions. */
const TOP_FIELDS = new Set([
	'messages', 'model', 'audio', 'frequency_penalty', 'function_call',
	'functions', 'logit_bias', 'logprobs', 'max_completion_tokens',
	'max_tokens', 'metadata', 'modalities', 'moderation', 'n',
	'parallel_tool_calls', 'prediction', 'presence_penalty',
	'prompt_cache_key', 'prompt_cache_options', 'prompt_cache_retention',
	'reasoning_effort', 'response_format', 'safety_identifier', 'seed',
	'service_tier', 'stop', 'store', 'stream', 'stream_options',
	'temperature', 'tool_choice', 'tools', 'top_logprobs', 'top_p', 'user',
	'verbosity', 'web_search_options',
]);

/* ROLES: message roles, in the order the API lists them. */
const ROLES = ['system', 'assistant', 'user', 'function', 'tool', 'developer'];

/* MESSAGE_FIELDS: the members each role's message may have. */
const MESSAGE_FIELDS = {
	system: ['role', 'content', 'name'],
	developer: ['role', 'content', 'name'],
	user: ['role', 'content', 'name'],
	assistant: ['role', 'content', 'name', 'refusal', 'tool_calls', 'function_call', 'audio'],
	tool: ['role', 'content', 'tool_call_id'],
	function: ['role', 'content', 'name'],
};

/* USER_PARTS: the content part types of user messages. */
const USER_PARTS = ['text', 'image_url', 'input_audio', 'file'];

/* NAME_PATTERN: names of response formats and functions. */
const NAME_PATTERN = /^[a-zA-Z0-9_-]+$/;

/* UNSUPPORTED_IMAGE: the message of an image that cannot be processed. */
const UNSUPPORTED_IMAGE = 'You uploaded an unsupported image. Please make sure your image has of one ' +
	"the following formats: ['png', 'jpeg', 'gif', 'webp'].";

/* MAX_IMAGE_BYTES, MAX_IMAGES: the documented limits: 20 MB an image, 500 images a request. */
const MAX_IMAGE_BYTES = 20 * 1024 * 1024;
const MAX_IMAGES = 500;

/* FINGERPRINT: the system_fingerprint of this process's answers. */
const FINGERPRINT = randomHex('fp_', 10);

/* listValues: 'a', 'b', and 'c' (as "Supported values are" lists them). */
function listValues(values) {
	const q = values.map((v) => `'${v}'`);

	if (q.length === 2)
		return `${q[0]} and ${q[1]}`;
	return q.length > 1 ? q.slice(0, -1).join(', ') + ', and ' + q[q.length - 1] : q[0];
}

/* missing: the error of a required parameter left out. */
function missing(param) {
	return new Invalid(`Missing required parameter: '${param}'.`, param, 'missing_required_parameter');
}

/* badType: the error of a parameter of the wrong JSON type. */
function badType(param, expected, v) {
	return new Invalid(`Invalid type for '${param}': expected ${expected}, but got ${jsonType(v)} instead.`,
		param, 'invalid_type');
}

/* badValue: the error of a value outside a list of supported values. */
function badValue(param, v, supported) {
	return new Invalid(`Invalid value: '${v}'. Supported values are: ${listValues(supported)}.`,
		param, 'invalid_value');
}

/* noExtras: reject members of obj (at param) not in allowed. */
function noExtras(obj, allowed, param) {
	for (const k of Object.keys(obj))
		if (!allowed.includes(k))
			throw new Invalid(`Additional properties are not allowed ('${k}' was unexpected) - '${param}'`,
				param, null);
}

/* needString: obj[key] (at param.key) must be a string. */
function needString(obj, key, param) {
	if (obj[key] === undefined)
		throw missing(`${param}.${key}`);
	if (typeof obj[key] !== 'string')
		throw badType(`${param}.${key}`, 'a string', obj[key]);
}

/* checkName: a function or response format name: pattern, length <= 64. */
function checkName(name, param) {
	if (!NAME_PATTERN.test(name))
		throw new Invalid(`Invalid '${param}': string does not match pattern. Expected a string that ` +
			`matches the pattern '${NAME_PATTERN.source}'.`, param, 'invalid_value');
	if (name.length > 64)
		throw new Invalid(`Invalid '${param}': string too long. Expected a string with maximum length 64, ` +
			`but got a string with length ${name.length} instead.`, param, 'string_above_max_length');
}

/* errorReply: an error answer with the documented body. */
function errorReply(status, message, type, param = null, code = null, headers = undefined) {
	return { status, headers, body: JSON.stringify({ error: { message, type, param, code } }) };
}

/* pyTuple: a path as Python prints a tuple: (), ('a',), ('a', 0). */
function pyTuple(path) {
	const items = path.map((p) => (typeof p === 'number' ? String(p) : `'${p}'`));

	return items.length === 1 ? `(${items[0]},)` : `(${items.join(', ')})`;
}

/*
 * checkStrictSchema: enforce the Structured Outputs rules on schema:
 * the root is an object, every object has additionalProperties: false and
 * lists all its properties in required.  what names the schema in the
 * message ("response_format 'x'" or "function 'f'").
 */
function checkStrictSchema(schema, what, param) {
	/* fail: throw the schema error msg. */
	const fail = (msg) => { throw new Invalid(`Invalid schema for ${what}: ${msg}`, param, 'invalid_value'); };
	/* walk: check the (sub)schema s found at path, then its children. */
	const walk = (s, path) => {
		if (!isObject(s))
			return;
		const types = Array.isArray(s.type) ? s.type : [s.type];

		if (types.includes('object') || isObject(s.properties)) {
			if (s.additionalProperties !== false)
				fail(`In context=${pyTuple(path)}, 'additionalProperties' is required to be supplied and to be false.`);
			const props = Object.keys(isObject(s.properties) ? s.properties : {});
			const req = Array.isArray(s.required) ? s.required : [];
			const left = props.find((k) => !req.includes(k));

			if (!Array.isArray(s.required) || left !== undefined)
				fail(`In context=${pyTuple(path)}, 'required' is required to be supplied and to be an array ` +
					`including every key in properties.${left !== undefined ? ` Missing '${left}'.` : ''}`);
			for (const k of props)
				walk(s.properties[k], [...path, 'properties', k]);
		}
		if (s.items !== undefined)
			walk(s.items, [...path, 'items']);
		for (const key of ['anyOf', 'allOf'])
			if (Array.isArray(s[key]))
				s[key].forEach((sub, i) => walk(sub, [...path, key, i]));
		for (const key of ['$defs', 'definitions'])
			if (isObject(s[key]))
				for (const [name, sub] of Object.entries(s[key]))
					walk(sub, [...path, key, name]);
	};

	if (!isObject(schema) || schema.type !== 'object')
		fail(`schema must be a JSON Schema of 'type: "object"', got 'type: "${isObject(schema) && schema.type !== undefined ? schema.type : 'None'}"'.`);
	walk(schema, []);
}

/*
 * imageOf: validate an image_url URL (param: its path); returns the image
 * it names.  http(s) URLs are taken as they are (the fake downloads
 * nothing); data: URLs must be base64 images of a supported type, of at
 * most MAX_IMAGE_BYTES.  The declared type need not be the bytes' type:
 * the bytes are read.
 */
function imageOf(url, param) {
	if (/^https?:\/\/[^/?#\s]+/i.test(url))
		return { kind: 'url', url };
	const m = /^data:([^;,]*)((?:;[^;,]*)*),(.*)$/s.exec(url);

	if (m === null)
		throw new Invalid(`Invalid '${param}'. Expected a valid URL, but got a value with an invalid format.`,
			param, 'invalid_value');
	if (!IMAGE_MEDIA_TYPES.includes(m[1].toLowerCase()))
		throw new Invalid('Invalid MIME type. Only image types are supported.', null, 'invalid_image_format');
	const base64 = m[2].split(';').includes('base64');

	if (base64 && m[3] === '')
		throw new Invalid(`Invalid '${param}'. Expected a base64-encoded data URL with an image MIME type ` +
			"(e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU='), but got empty base64-encoded bytes.",
		param, 'invalid_value');
	const bytes = base64 ? decodeBase64(m[3]) : null;

	if (bytes === null)
		throw new Invalid('Invalid base64 image_url.', null, 'invalid_image_url');
	if (bytes.length > MAX_IMAGE_BYTES)
		throw new Invalid(`Invalid '${param}': the image is ${bytes.length} bytes, over the limit of 20 MB ` +
			`(${MAX_IMAGE_BYTES} bytes) per image.`, param, 'image_too_large');
	if (sniffImage(bytes) === null)
		throw new Invalid(UNSUPPORTED_IMAGE, null, 'invalid_image_format');
	return inlineImage(bytes);
}

/* checkPart: validate content part p (allowed: its types); its image or null. */
function checkPart(p, param, allowed) {
	if (!isObject(p))
		throw badType(param, 'an object', p);
	if (p.type === undefined)
		throw missing(`${param}.type`);
	if (!allowed.includes(p.type))
		throw badValue(`${param}.type`, p.type, allowed);
	if (p.type === 'text' || p.type === 'refusal')
		needString(p, p.type, param);
	if (p.type === 'input_audio') {
		if (!isObject(p.input_audio))
			throw missing(`${param}.input_audio`);
		needString(p.input_audio, 'data', `${param}.input_audio`);
		if (!['wav', 'mp3'].includes(p.input_audio.format))
			throw badValue(`${param}.input_audio.format`, p.input_audio.format, ['wav', 'mp3']);
	}
	if (p.type === 'file' && !isObject(p.file))
		throw missing(`${param}.file`);
	if (p.type !== 'image_url')
		return null;
	noExtras(p, ['type', 'image_url', 'prompt_cache_breakpoint'], param);
	if (p.image_url === undefined)
		throw missing(`${param}.image_url`);
	if (!isObject(p.image_url))
		throw badType(`${param}.image_url`, 'an object', p.image_url);
	noExtras(p.image_url, ['url', 'detail'], `${param}.image_url`);
	needString(p.image_url, 'url', `${param}.image_url`);
	if (p.image_url.detail !== undefined && !['auto', 'low', 'high', 'original'].includes(p.image_url.detail))
		throw badValue(`${param}.image_url.detail`, p.image_url.detail, ['auto', 'low', 'high', 'original']);
	return imageOf(p.image_url.url, `${param}.image_url.url`);
}

/*
 * checkMessages: validate body.messages; returns {images (those of the
 * conversation, in order), text (all text, for the json_object rule)}.
 */
function checkMessages(messages) {
	const images = [];
	let text = '';

	if (messages === undefined)
		throw missing('messages');
	if (!Array.isArray(messages))
		throw badType('messages', 'an array', messages);
	if (messages.length === 0)
		throw new Invalid("Invalid 'messages': empty array. Expected an array with minimum length 1, but got " +
			'an empty array instead.', 'messages', 'empty_array');
	messages.forEach((m, i) => {
		const param = `messages[${i}]`;

		if (!isObject(m))
			throw badType(param, 'an object', m);
		if (m.role === undefined)
			throw missing(`${param}.role`);
		if (!ROLES.includes(m.role))
			throw badValue(`${param}.role`, m.role, ROLES);
		noExtras(m, MESSAGE_FIELDS[m.role], param);
		const optional = m.role === 'function' ||
			(m.role === 'assistant' && (m.tool_calls !== undefined || m.function_call !== undefined));

		if (m.role === 'tool')
			needString(m, 'tool_call_id', param);
		if (m.role === 'function')
			needString(m, 'name', param);
		if ((m.content === undefined || m.content === null) && optional)
			return;
		if (m.content === undefined)
			throw missing(`${param}.content`);
		if (typeof m.content === 'string') {
			text += m.content + '\n';
			return;
		}
		if (!Array.isArray(m.content))
			throw badType(`${param}.content`, 'one of a string or array of objects', m.content);
		if (m.content.length === 0)
			throw new Invalid(`Invalid '${param}.content': empty array. Expected an array with minimum length 1, ` +
				'but got an empty array instead.', `${param}.content`, 'empty_array');
		const allowed = m.role === 'user' ? USER_PARTS : m.role === 'assistant' ? ['text', 'refusal'] : ['text'];

		m.content.forEach((p, j) => {
			const img = checkPart(p, `${param}.content[${j}]`, allowed);

			if (p.type === 'text')
				text += p.text + '\n';
			if (img !== null)
				images.push(img);
		});
	});
	if (images.length > MAX_IMAGES)
		throw new Invalid(`Invalid 'messages': too many images: ${images.length} > ${MAX_IMAGES}. ` +
			`A request can have at most ${MAX_IMAGES} images.`, 'messages', 'too_many_images');
	return { images, text };
}

/* checkResponseFormat: validate body.response_format (text: all message text). */
function checkResponseFormat(rf, text) {
	if (rf === undefined || rf === null)
		return;
	if (!isObject(rf))
		throw badType('response_format', 'an object', rf);
	if (!['text', 'json_object', 'json_schema'].includes(rf.type))
		throw badValue('response_format.type', rf.type, ['json_object', 'json_schema', 'text']);
	if (rf.type === 'json_object' && !/json/i.test(text))
		throw new Invalid("'messages' must contain the word 'json' in some form, to use 'response_format' of " +
			"type 'json_object'.", 'messages', null);
	if (rf.type !== 'json_schema')
		return;
	const js = rf.json_schema;

	if (js === undefined)
		throw missing('response_format.json_schema');
	if (!isObject(js))
		throw badType('response_format.json_schema', 'an object', js);
	noExtras(js, ['name', 'description', 'schema', 'strict'], 'response_format.json_schema');
	needString(js, 'name', 'response_format.json_schema');
	checkName(js.name, 'response_format.json_schema.name');
	if (js.schema !== undefined && !isObject(js.schema))
		throw badType('response_format.json_schema.schema', 'an object', js.schema);
	if (js.strict !== undefined && js.strict !== null && typeof js.strict !== 'boolean')
		throw badType('response_format.json_schema.strict', 'a boolean', js.strict);
	if (js.strict === true)
		checkStrictSchema(js.schema, `response_format '${js.name}'`, 'response_format');
}

/* checkTools: validate body.tools (function and custom tools) and tool_choice. */
function checkTools(tools, choice) {
	const names = [];

	if (tools !== undefined && !Array.isArray(tools))
		throw badType('tools', 'an array', tools);
	(tools || []).forEach((t, i) => {
		const param = `tools[${i}]`;

		if (!isObject(t))
			throw badType(param, 'an object', t);
		if (!['function', 'custom'].includes(t.type))
			throw badValue(`${param}.type`, t.type, ['function', 'custom']);
		const def = t[t.type];

		if (def === undefined)
			throw missing(`${param}.${t.type}`);
		if (!isObject(def))
			throw badType(`${param}.${t.type}`, 'an object', def);
		needString(def, 'name', `${param}.${t.type}`);
		checkName(def.name, `${param}.${t.type}.name`);
		if (t.type === 'function' && def.strict === true && def.parameters !== undefined)
			checkStrictSchema(def.parameters, `function '${def.name}'`, `${param}.function.parameters`);
		names.push(def.name);
	});
	if (choice === undefined || choice === null)
		return;
	if (names.length === 0)
		throw new Invalid("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
			'tool_choice', null);
	if (typeof choice === 'string') {
		if (!['none', 'auto', 'required'].includes(choice))
			throw badValue('tool_choice', choice, ['none', 'auto', 'required']);
		return;
	}
	if (!isObject(choice))
		throw badType('tool_choice', 'one of a string or object', choice);
	if (choice.type === 'function' || choice.type === 'custom') {
		const def = choice[choice.type];

		if (!isObject(def) || typeof def.name !== 'string')
			throw missing(`tool_choice.${choice.type}.name`);
		if (!names.includes(def.name))
			throw new Invalid(`Invalid value for 'tool_choice': tool '${def.name}' not found in 'tools'.`,
				'tool_choice', null);
	} else if (choice.type !== 'allowed_tools')
		throw badValue('tool_choice.type', choice.type, ['function', 'custom', 'allowed_tools']);
}

/* checkNumbers: validate token limits, n, sampling and streaming parameters. */
function checkNumbers(body) {
	for (const k of ['max_tokens', 'max_completion_tokens', 'n']) {
		const v = body[k];

		if (v === undefined || v === null)
			continue;
		if (!isInteger(v))
			throw badType(k, 'an integer', v);
		if (v < 1)
			throw new Invalid(`Invalid '${k}': integer below minimum value. Expected a value >= 1, but got ${v} ` +
				'instead.', k, 'integer_below_min_value');
	}
	for (const [k, max] of [['temperature', 2], ['top_p', 1]]) {
		const v = body[k];

		if (v === undefined || v === null)
			continue;
		if (typeof v !== 'number')
			throw badType(k, 'a decimal', v);
		if (v < 0 || v > max)
			throw new Invalid(`Invalid '${k}': decimal ${v < 0 ? 'below minimum' : 'above maximum'} value. ` +
				`Expected a value ${v < 0 ? '>= 0' : `<= ${max}`}, but got ${v} instead.`, k,
				v < 0 ? 'decimal_below_min_value' : 'decimal_above_max_value');
	}
	if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean')
		throw badType('stream', 'a boolean', body.stream);
	if (body.stream === true)
		throw new Invalid('This fake provider does not stream: send "stream": false or leave it out.', 'stream', null);
	if (body.stream_options !== undefined && body.stream_options !== null)
		throw new Invalid("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
			'stream_options', null);
}

/* maskKey: a key as the 401 message shows it: its ends, starred. */
function maskKey(key) {
	return key.length > 8 ? key.slice(0, 3) + '*'.repeat(Math.min(key.length - 7, 40)) + key.slice(-4)
		: '*'.repeat(key.length);
}

/* authenticate: the 401 answer for a missing or wrong key, else null. */
function authenticate(headers, apiKey) {
	const m = /^Bearer\s+(.+)$/i.exec(headers.authorization || '');
	const key = m ? m[1].trim() : '';

	if (!key)
		return errorReply(401, "You didn't provide an API key. You need to provide your API key in an " +
			'Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).',
		'invalid_request_error');
	if (apiKey !== null && key !== apiKey)
		return errorReply(401, `Incorrect API key provided: ${maskKey(key)}. You can find your API key at ` +
			'https://platform.openai.com/account/api-keys.', 'invalid_request_error', null, 'invalid_api_key');
	return null;
}

/* validate: check the body; {reply} or {ctx}. */
function validate(body) {
	try {
		if (body === undefined)
			throw new Invalid('We could not parse the JSON body of your request. (HINT: This likely means you ' +
				"aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was " +
				'sent was not valid JSON.)');
		if (!isObject(body))
			throw badType('body', 'an object', body);
		const extra = Object.keys(body).filter((k) => !TOP_FIELDS.has(k));

		if (extra.length > 0)
			throw new Invalid(`Unrecognized request argument${extra.length > 1 ? 's' : ''} supplied: ${extra.join(', ')}`);
		if (body.model === undefined)
			throw new Invalid('you must provide a model parameter');
		if (typeof body.model !== 'string')
			throw badType('model', 'a string', body.model);
		const { images, text } = checkMessages(body.messages);

		checkNumbers(body);
		checkResponseFormat(body.response_format, text);
		checkTools(body.tools, body.tool_choice);
		return {
			ctx: {
				image: images[0] || null, inline: images.filter((i) => i.kind === 'bytes'), model: body.model,
				n: body.n || 1,
			},
		};
	} catch (e) {
		if (!(e instanceof Invalid))
			throw e;
		return { reply: errorReply(400, e.message, 'invalid_request_error', e.param, e.code) };
	}
}

/*
 * answer: the 200 chat.completion for ctx: the analysis as JSON content;
 * variant shapes the odd answers (refusal, length, prose, wrong shape).
 */
function answer(ctx, analysis, variant, usage) {
	const message = { role: 'assistant', content: null, refusal: null, annotations: [] };
	let finish = 'stop';

	if (variant === 'refusal')
		message.refusal = "I'm sorry, I can't help with that.";
	else if (variant === 'notool')
		message.content = 'I can see a sofa.';
	else if (variant === 'max_tokens') {
		message.content = truncatedJson(analysis);
		finish = 'length';
	} else
		message.content = toJson(variant === 'badschema' ? { room_type: analysis.room_type, items: 'lots' } : analysis);
	const choices = [];

	for (let i = 0; i < ctx.n; i++)
		choices.push({ index: i, message, logprobs: null, finish_reason: finish });
	return {
		status: 200,
		body: JSON.stringify({
			id: randomId('chatcmpl-', 29),
			object: 'chat.completion',
			created: Math.floor(Date.now() / 1000),
			model: ctx.model,
			choices,
			usage: {
				prompt_tokens: usage.input,
				completion_tokens: usage.output,
				total_tokens: usage.input + usage.output,
				prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
				completion_tokens_details: {
					reasoning_tokens: 0, audio_tokens: 0,
					accepted_prediction_tokens: 0, rejected_prediction_tokens: 0,
				},
			},
			service_tier: 'default',
			system_fingerprint: FINGERPRINT,
		}),
	};
}

/* faultReply: the error answer of an injected fault. */
function faultReply(fault, ctx, d) {
	const model = ctx ? ctx.model : 'the model';

	switch (fault) {
		case 'unreachable':
			return errorReply(400, `Error while downloading ${ctx.image.url}.`, 'invalid_request_error', null,
				'invalid_image_url');
		case 'badimage':
			return errorReply(400, UNSUPPORTED_IMAGE, 'invalid_request_error', null, 'invalid_image_format');
		case '429':
			return errorReply(429, `Rate limit reached for ${model} in organization org-fake on requests per min ` +
				`(RPM): Limit 3, Used 3, Requested 1. Please try again in ${d.retryAfter}s.`, 'requests', null,
			'rate_limit_exceeded', {
				'retry-after': d.retryAfter,
				'x-ratelimit-limit-requests': '3',
				'x-ratelimit-remaining-requests': '0',
			});
		case '529':
			return errorReply(503, 'The server is overloaded. Please try again later.', 'service_unavailable_error',
				null, 'server_is_overloaded');
		case '504':
			return errorReply(504, 'Gateway timeout. The server did not answer in time.', 'server_error');
		case '408':
			return errorReply(408, 'Request timed out.', 'invalid_request_error');
		case 'plain500':
		case '500':
			return errorReply(500, 'The server had an error while processing your request. Sorry about that!',
				'server_error');
		default:
			return errorReply(400, 'unknown fault', 'invalid_request_error');
	}
}

module.exports = {
	name: 'openai',
	apiPath: '/v1/chat/completions',
	maxBodyBytes: 50 * 1024 * 1024,
	requestIdHeader: 'x-request-id',
	newRequestId: () => randomHex('req_', 32),
	authenticate,
	validate,
	answer,
	faultReply,
	notFound: (method, path) => errorReply(404, `Invalid URL (${method} ${path})`, 'invalid_request_error'),
	methodNotAllowed: (method, path) => errorReply(405, `Invalid method for URL (${method} ${path})`,
		'invalid_request_error'),
	tooLarge: () => errorReply(413, 'Request too large: the body exceeds 50 MB.', 'invalid_request_error'),
};
