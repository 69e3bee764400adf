/*
 * anthropic.js
 *		The fake Anthropic Messages API (POST /v1/messages): request
 *		validation as the real API answers it, Message answers, and the
 *		documented error bodies {"type":"error","error":{type,message},
 *		"request_id"} with a request-id header.
 *
 * Validation messages follow the real API's style, "<field path>: <what is
 * wrong>" (e.g. "max_tokens: Field required", "messages.0.content.1.image.
 * source: Input tag 'file_path' ...").  See README.md for what is checked.
 */
'use strict';

const { randomId, toJson, Invalid, isObject, isInteger } = require('./common');
const { IMAGE_MEDIA_TYPES, decodeBase64, sniffImage, imageSize, inlineImage } = require('./image_info');
const { truncatedJson } = require('./scenario');

/* VERSIONS: anthropic-version values the API knows. */
const VERSIONS = new Set(['2023-01-01', '2023-06-01', '2026-10-21']);

/* VERSION_2026: the version without sampling parameters (and stricter). */
const VERSION_2026 = '2026-10-21';

/* TOP_FIELDS: body fields of every version. */
const TOP_FIELDS = new Set([
	'model', 'messages', 'max_tokens', 'system', 'tools', 'tool_choice',
	'stream', 'metadata', 'stop_sequences', 'thinking', 'service_tier',
	'container', 'cache_control', 'diagnostics', 'inference_geo',
	'output_config', 'speed',
]);

/* SAMPLING_FIELDS: accepted by 2023-01-01 and 2023-06-01 only. */
const SAMPLING_FIELDS = new Set(['temperature', 'top_p', 'top_k']);

/* BETA_FIELDS: accepted only with an anthropic-beta header. */
const BETA_FIELDS = new Set([
	'mcp_servers', 'context_management', 'output_format', 'compaction',
	'fallbacks', 'fallback_credit_token', 'billing_policy', 'thread',
]);

/* BLOCK_TYPES: the content block types of input messages. */
const BLOCK_TYPES = [
	'text', 'image', 'document', 'search_result', 'thinking',
	'redacted_thinking', 'tool_use', 'tool_result', 'server_tool_use',
	'web_search_tool_result', 'web_fetch_tool_result',
	'code_execution_tool_result', 'bash_code_execution_tool_result',
	'text_editor_code_execution_tool_result', 'tool_search_tool_result',
	'container_upload',
];

/* CUSTOM_TOOL_FIELDS: the members of a user-defined tool. */
const CUSTOM_TOOL_FIELDS = new Set([
	'type', 'name', 'description', 'input_schema', 'cache_control', 'strict',
	'input_examples', 'allowed_callers', 'defer_loading',
	'eager_input_streaming',
]);

/*
 * MAX_IMAGE_BASE64: the per-image limit, 5 MB, which the API measures on
 * the base64 text (its errors give that length), not on the decoded bytes.
 */
const MAX_IMAGE_BASE64 = 5 * 1024 * 1024;

/* MAX_SIDE, MAX_SIDE_MANY: longest image side; with over MANY_IMAGES images. */
const MAX_SIDE = 8000;
const MAX_SIDE_MANY = 2000;
const MANY_IMAGES = 20;

/* TOOL_NAME: the documented rule for user-defined tool names. */
const TOOL_NAME = /^[a-zA-Z0-9_-]{1,128}$/;

/* SERVER_TOOL_TYPE: Anthropic-defined tools, e.g. web_search_20250305. */
const SERVER_TOOL_TYPE = /^([a-z_]+_[0-9]{8}|mcp_toolset)$/;

/* quoteList: 'a', 'b' or 'c' (as the validation messages list values). */
function quoteList(values) {
	const q = values.map((v) => `'${v}'`);

	return q.length > 1 ? q.slice(0, -1).join(', ') + ' or ' + q[q.length - 1] : q[0];
}

/* tagError: the error of a union member whose tag matches no variant. */
function tagError(path, tag, field, expected) {
	return new Invalid(`${path}: Input tag '${tag}' found using '${field}' does not match ` +
		`any of the expected tags: ${expected.map((v) => `'${v}'`).join(', ')}`);
}

/* noExtras: reject members of obj (at path) that are not in allowed. */
function noExtras(obj, allowed, path) {
	for (const k of Object.keys(obj))
		if (!allowed.has(k))
			throw new Invalid(`${path ? path + '.' : ''}${k}: Extra inputs are not permitted`);
}

/* needString: obj[key] must be a string. */
function needString(obj, key, path) {
	if (!(key in obj))
		throw new Invalid(`${path}.${key}: Field required`);
	if (typeof obj[key] !== 'string')
		throw new Invalid(`${path}.${key}: Input should be a valid string`);
}

/* needObject: v (at path) must be a JSON object. */
function needObject(v, path) {
	if (!isObject(v))
		throw new Invalid(`${path}: Input should be a valid dictionary`);
}

/* errorReply: an error answer with the documented body. */
function errorReply(status, type, message, headers) {
	const requestId = randomId('req_', 24);

	return {
		status,
		requestId,
		headers,
		body: JSON.stringify({ type: 'error', error: { type, message }, request_id: requestId }),
	};
}

/*
 * checkImageSource: validate the source of an image block (path: the
 * block's path plus ".image") and return the image it names.
 */
function checkImageSource(block, path) {
	const src = block.source;
	const sp = `${path}.source`;

	if (!('source' in block))
		throw new Invalid(`${sp}: Field required`);
	needObject(src, sp);
	if (!['base64', 'url', 'file'].includes(src.type))
		throw tagError(sp, String(src.type), 'type', ['base64', 'url', 'file']);
	const vp = `${sp}.${src.type}`;

	if (src.type === 'url') {
		noExtras(src, new Set(['type', 'url']), vp);
		needString(src, 'url', vp);
		return { kind: 'url', url: src.url };
	}
	if (src.type === 'file') {
		noExtras(src, new Set(['type', 'file_id']), vp);
		needString(src, 'file_id', vp);
		return { kind: 'file', fileId: src.file_id };
	}
	noExtras(src, new Set(['type', 'media_type', 'data']), vp);
	needString(src, 'media_type', vp);
	if (!IMAGE_MEDIA_TYPES.includes(src.media_type))
		throw new Invalid(`${vp}.media_type: Input should be ${quoteList(IMAGE_MEDIA_TYPES)}`);
	needString(src, 'data', vp);
	return checkBase64Image(src.data, src.media_type, vp);
}

/*
 * checkBase64Image: validate the data of a base64 image source (vp: the
 * source's path) of declared media type mt, in the real API's order and
 * words; returns the image with its size and the path of its data.
 */
function checkBase64Image(data, mt, vp) {
	if (data.length === 0)
		throw new Invalid(`${vp}: image cannot be empty`);
	if (data.length > MAX_IMAGE_BASE64)
		throw new Invalid(`${vp}: image exceeds 5 MB maximum: ${data.length} bytes > ${MAX_IMAGE_BASE64} bytes`);
	const bytes = decodeBase64(data);

	if (bytes === null)
		throw new Invalid(`${vp}: invalid base64 data`);
	if (sniffImage(bytes) !== mt)
		throw new Invalid(`${vp}.data: Image does not match the provided media type ${mt}`);
	const size = imageSize(bytes, mt);

	if (size === null)
		throw new Invalid('Could not process image');
	return { ...inlineImage(bytes), size, path: `${vp}.data` };
}

/*
 * checkImageSizes: the documented pixel limits of the base64 images of a
 * request (images: every image of it): no side over 8000 px, or over
 * 2000 px when the request has more than 20 images.
 */
function checkImageSizes(images) {
	const many = images.length > MANY_IMAGES;
	const max = many ? MAX_SIDE_MANY : MAX_SIDE;

	for (const img of images)
		if (img.size && (img.size.width > max || img.size.height > max))
			throw new Invalid(`${img.path}: At least one of the image dimensions exceed max allowed size` +
				`${many ? ' for many-image requests' : ''}: ${max} pixels`);
}

/*
 * checkBlock: validate content block b of a message (role, version) at
 * path; returns the image it holds, or null.
 */
function checkBlock(b, path, role, version) {
	needObject(b, path);
	if (!('type' in b))
		throw new Invalid(`${path}.type: Field required`);
	if (role === 'system' && b.type !== 'text')
		throw new Invalid(`${path}.type: Input should be 'text'`);
	if (!BLOCK_TYPES.includes(b.type))
		throw tagError(`${path}.type`, String(b.type), 'type', BLOCK_TYPES);
	const tp = `${path}.${b.type}`;

	switch (b.type) {
		case 'text':
			noExtras(b, new Set(['type', 'text', 'cache_control', 'citations']), tp);
			needString(b, 'text', tp);
			if (version === VERSION_2026 && role === 'user' && Array.isArray(b.citations) && b.citations.length > 0)
				throw new Invalid(`${tp}.citations: citations are not accepted on text blocks in user messages`);
			return null;
		case 'image':
			noExtras(b, new Set(['type', 'source', 'cache_control', 'transformations']), tp);
			return checkImageSource(b, tp);
		case 'document':
			if (version === VERSION_2026 && role === 'assistant')
				throw new Invalid(`${path}: document blocks are not accepted in assistant messages`);
			if (!('source' in b))
				throw new Invalid(`${tp}.source: Field required`);
			needObject(b.source, `${tp}.source`);
			return null;
		case 'tool_use':
			needString(b, 'id', tp);
			needString(b, 'name', tp);
			if (!('input' in b))
				throw new Invalid(`${tp}.input: Field required`);
			needObject(b.input, `${tp}.input`);
			return null;
		case 'tool_result':
			needString(b, 'tool_use_id', tp);
			return null;
		default:
			return null;
	}
}

/*
 * checkMessages: validate body.messages (version: the API version);
 * returns the images of the image blocks of the conversation, in order.
 */
function checkMessages(messages, version) {
	const images = [];

	if (messages === undefined)
		throw new Invalid('messages: Field required');
	if (!Array.isArray(messages))
		throw new Invalid('messages: Input should be a valid list');
	if (messages.length === 0)
		throw new Invalid('messages: at least one message is required');
	messages.forEach((m, i) => {
		const mp = `messages.${i}`;

		needObject(m, mp);
		noExtras(m, new Set(['role', 'content']), mp);
		if (!('role' in m))
			throw new Invalid(`${mp}.role: Field required`);
		if (!['user', 'assistant', 'system'].includes(m.role))
			throw new Invalid(`${mp}.role: Input should be ${quoteList(['user', 'assistant', 'system'])}`);
		if (!('content' in m))
			throw new Invalid(`${mp}.content: Field required`);
		if (typeof m.content === 'string')
			return;
		if (!Array.isArray(m.content))
			throw new Invalid(`${mp}.content: Input should be a valid string or a list of content blocks`);
		m.content.forEach((b, j) => {
			const img = checkBlock(b, `${mp}.content.${j}`, m.role, version);

			if (img !== null)
				images.push(img);
		});
	});
	if (messages[0].role !== 'user')
		throw new Invalid('messages: first message must use the "user" role');
	checkImageSizes(images);
	return images;
}

/* checkSystem: validate body.system: a string or a list of text blocks. */
function checkSystem(system) {
	if (system === undefined || typeof system === 'string')
		return;
	if (!Array.isArray(system))
		throw new Invalid('system: Input should be a valid string or a list of text blocks');
	system.forEach((b, j) => checkBlock(b, `system.${j}`, 'system', null));
}

/*
 * checkTools: validate body.tools and body.tool_choice; returns the name
 * of the tool the answer uses (forced, else the first user-defined tool)
 * or null for a text answer.
 */
function checkTools(tools, choice) {
	const names = [];
	let firstCustom = null;

	if (tools !== undefined && !Array.isArray(tools))
		throw new Invalid('tools: Input should be a valid list');
	(tools || []).forEach((t, i) => {
		const path = `tools.${i}`;

		needObject(t, path);
		if (t.type === undefined || t.type === null || t.type === 'custom') {
			const cp = `${path}.custom`;

			noExtras(t, CUSTOM_TOOL_FIELDS, cp);
			needString(t, 'name', cp);
			if (!TOOL_NAME.test(t.name))
				throw new Invalid(`${cp}.name: String should match pattern '${TOOL_NAME.source}'`);
			if (t.description !== undefined && typeof t.description !== 'string')
				throw new Invalid(`${cp}.description: Input should be a valid string`);
			if (!('input_schema' in t))
				throw new Invalid(`${cp}.input_schema: Field required`);
			needObject(t.input_schema, `${cp}.input_schema`);
			if (t.input_schema.type !== 'object')
				throw new Invalid(`${cp}.input_schema.type: Input should be 'object'`);
			firstCustom = firstCustom || t.name;
		} else if (typeof t.type !== 'string' || !SERVER_TOOL_TYPE.test(t.type))
			throw tagError(path, String(t.type), 'type', ['custom', 'web_search_20250305', 'web_fetch_20250910', '...']);
		if (typeof t.name === 'string') {
			if (names.includes(t.name))
				throw new Invalid('tools: Tool names must be unique.');
			names.push(t.name);
		}
	});
	if (choice === undefined)
		return firstCustom;
	needObject(choice, 'tool_choice');
	if (!['auto', 'any', 'tool', 'none'].includes(choice.type))
		throw tagError('tool_choice', String(choice.type), 'type', ['auto', 'any', 'tool', 'none']);
	if (choice.type === 'none')
		return null;
	if (choice.type !== 'tool')
		return firstCustom;
	needString(choice, 'name', 'tool_choice.tool');
	if (!names.includes(choice.name))
		throw new Invalid(`tool_choice.tool.name: Tool '${choice.name}' not found in provided tools`);
	return choice.name;
}

/*
 * checkScalars: validate the simple top-level fields (max_tokens, stream,
 * sampling, metadata, stop_sequences, thinking, service_tier).
 */
function checkScalars(body) {
	if (!('max_tokens' in body))
		throw new Invalid('max_tokens: Field required');
	if (!isInteger(body.max_tokens))
		throw new Invalid('max_tokens: Input should be a valid integer');
	if (body.max_tokens < 0)
		throw new Invalid('max_tokens: Input should be greater than or equal to 0');
	if (body.stream !== undefined && typeof body.stream !== 'boolean')
		throw new Invalid('stream: Input should be a valid boolean');
	if (body.stream === true)
		throw new Invalid('stream: this fake provider does not stream; send "stream": false or leave it out');
	for (const k of ['temperature', 'top_p'])
		if (body[k] !== undefined && (typeof body[k] !== 'number' || body[k] < 0 || body[k] > 1))
			throw new Invalid(`${k}: Input should be a number between 0 and 1`);
	if (body.top_k !== undefined && (!isInteger(body.top_k) || body.top_k < 0))
		throw new Invalid('top_k: Input should be a non-negative integer');
	if (body.metadata !== undefined) {
		needObject(body.metadata, 'metadata');
		noExtras(body.metadata, new Set(['user_id']), 'metadata');
	}
	if (body.stop_sequences !== undefined &&
		(!Array.isArray(body.stop_sequences) || body.stop_sequences.some((s) => typeof s !== 'string')))
		throw new Invalid('stop_sequences: Input should be a valid list of strings');
	if (body.thinking !== undefined) {
		needObject(body.thinking, 'thinking');
		if (!['enabled', 'disabled', 'adaptive'].includes(body.thinking.type))
			throw tagError('thinking', String(body.thinking.type), 'type', ['enabled', 'disabled', 'adaptive']);
		if (body.thinking.type === 'enabled') {
			if (!isInteger(body.thinking.budget_tokens) || body.thinking.budget_tokens < 1024)
				throw new Invalid('thinking.enabled.budget_tokens: Input should be greater than or equal to 1024');
			if (body.thinking.budget_tokens >= body.max_tokens)
				throw new Invalid('max_tokens: must be greater than thinking.budget_tokens');
		}
	}
	if (body.service_tier !== undefined && !['auto', 'standard_only'].includes(body.service_tier))
		throw new Invalid(`service_tier: Input should be ${quoteList(['auto', 'standard_only'])}`);
}

/* authenticate: the 401 answer for a missing or wrong key, else null. */
function authenticate(headers, apiKey) {
	const bearer = /^Bearer\s+(.+)$/i.exec(headers.authorization || '');
	const key = headers['x-api-key'] || (bearer ? bearer[1].trim() : '');

	if (!key)
		return errorReply(401, 'authentication_error', 'x-api-key header is required');
	if (apiKey !== null && key !== apiKey)
		return errorReply(401, 'authentication_error', 'invalid x-api-key');
	return null;
}

/* validate: check the version header and the body; {reply} or {ctx}. */
function validate(body, text, headers) {
	const version = headers['anthropic-version'];

	try {
		if (version === undefined)
			throw new Invalid('anthropic-version: header is required');
		if (!VERSIONS.has(version))
			throw new Invalid(`anthropic-version: "${version}" is not a valid version`);
		if (body === undefined)
			throw new Invalid('There was an error parsing the body of your request: it is not valid JSON');
		if (!isObject(body))
			throw new Invalid('Input should be a valid dictionary or object to extract fields from');
		for (const k of Object.keys(body))
			if (!TOP_FIELDS.has(k) &&
				!(SAMPLING_FIELDS.has(k) && version !== VERSION_2026) &&
				!(BETA_FIELDS.has(k) && headers['anthropic-beta']))
				throw new Invalid(`${k}: Extra inputs are not permitted`);
		if (!('model' in body))
			throw new Invalid('model: Field required');
		if (typeof body.model !== 'string')
			throw new Invalid('model: Input should be a valid string');
		const images = checkMessages(body.messages, version);

		checkScalars(body);
		checkSystem(body.system);
		const toolName = checkTools(body.tools, body.tool_choice);

		return {
			ctx: {
				image: images[0] || null, inline: images.filter((i) => i.kind === 'bytes'), model: body.model, toolName,
			},
		};
	} catch (e) {
		if (!(e instanceof Invalid))
			throw e;
		return { reply: errorReply(400, 'invalid_request_error', e.message) };
	}
}

/* textBlock: an output text block. */
function textBlock(text) {
	return { type: 'text', text, citations: null };
}

/*
 * answer: the 200 Message for ctx: the analysis as the forced (or first)
 * tool's input, else as JSON text; variant shapes the odd answers.
 */
function answer(ctx, analysis, variant, usage) {
	let content;
	let stop = ctx.toolName ? 'tool_use' : 'end_turn';
	let stopDetails = null;
	/* toolUse: the tool_use block of the answer's tool with input. */
	const toolUse = (input) => ({ type: 'tool_use', id: randomId('toolu_', 24), name: ctx.toolName, input });

	if (variant === 'badschema')
		analysis = { room_type: analysis.room_type, items: 'lots' };
	if (variant === 'refusal') {
		content = [];
		stop = 'refusal';
		stopDetails = { type: 'refusal', category: null, explanation: null };
	} else if (variant === 'notool') {
		content = [textBlock('I can see a sofa.')];
		stop = 'end_turn';
	} else if (variant === 'max_tokens') {
		content = [ctx.toolName ? toolUse({}) : textBlock(truncatedJson(analysis))];
		stop = 'max_tokens';
	} else
		content = [ctx.toolName ? toolUse(analysis) : textBlock(toJson(analysis))];
	return {
		status: 200,
		body: toJson({
			id: randomId('msg_', 24),
			type: 'message',
			role: 'assistant',
			model: ctx.model,
			content,
			stop_reason: stop,
			stop_sequence: null,
			stop_details: stopDetails,
			container: null,
			usage: {
				input_tokens: usage.input,
				cache_creation_input_tokens: 0,
				cache_read_input_tokens: 0,
				cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 0 },
				output_tokens: usage.output,
				server_tool_use: null,
				service_tier: 'standard',
			},
		}),
	};
}

/* FAULT_REPLIES: fault -> [status, error type, message]. */
const FAULT_REPLIES = {
	plain500: [500, 'api_error', 'Internal server error'],
	500: [500, 'api_error', 'Internal server error'],
	unreachable: [400, 'invalid_request_error', 'Unable to download the file. Please verify the URL and try again.'],
	badimage: [400, 'invalid_request_error', 'Could not process image'],
	429: [429, 'rate_limit_error', 'This request would exceed the rate limit for your organization. ' +
		'Please reduce the request rate or try again later.'],
	529: [529, 'overloaded_error', 'Overloaded'],
	504: [504, 'timeout_error', 'Request timed out before the model answered'],
	408: [408, 'invalid_request_error', 'Request timeout'],
	unknown: [400, 'invalid_request_error', 'unknown fault'],
};

/* faultReply: the error answer of an injected fault. */
function faultReply(fault, ctx, d) {
	const [status, type, message] = FAULT_REPLIES[fault] || FAULT_REPLIES.unknown;

	return errorReply(status, type, message, status === 429 ? { 'retry-after': d.retryAfter } : undefined);
}

module.exports = {
	name: 'anthropic',
	apiPath: '/v1/messages',
	maxBodyBytes: 32 * 1024 * 1024,
	requestIdHeader: 'request-id',
	newRequestId: () => randomId('req_', 24),
	authenticate,
	validate,
	answer,
	faultReply,
	notFound: () => errorReply(404, 'not_found_error', 'Not Found'),
	methodNotAllowed: () => errorReply(405, 'invalid_request_error', 'Method Not Allowed'),
	tooLarge: () => errorReply(413, 'request_too_large', 'Request exceeds the maximum size'),
};
