/*
 * inline_check.js
 *		The inline-image part of the self-test (sdk_check.js): each SDK sends
 *		base64 images (real PNG, JPEG, GIF, WebP built or kept in
 *		test_images.js) and gets an analysis, /stats/images lists their
 *		SHA-256 and size, and every malformed image is refused with the
 *		provider's status, error type and message.
 *
 * t, the context sdk_check.js passes: {KEY, IMG, Anthropic, OpenAI,
 * claudeParams(source), gptParams(url), errIs(cls, status, pred)}.
 */
'use strict';

const { ok, is, rejects, attempt, http } = require('./check_lib');
const { JPEG, GIF, WEBP, TEXT, makePng, sha256, entry } = require('./test_images');

/* PNG: the PNG the SDK checks send (24x16 pixels). */
const PNG = makePng(24, 16);

/* ANTHROPIC_MAX: the longest base64 text of an image Anthropic takes (5 MiB). */
const ANTHROPIC_MAX = 5 * 1024 * 1024;

/* OPENAI_MAX: the largest image OpenAI takes, in bytes (20 MiB). */
const OPENAI_MAX = 20 * 1024 * 1024;

/* b64source: an Anthropic base64 image source of buf declared as type. */
function b64source(buf, type) {
	return { type: 'base64', media_type: type, data: buf.toString('base64') };
}

/* dataUrl: a data: URL of buf declared as type. */
function dataUrl(buf, type) {
	return `data:${type};base64,${buf.toString('base64')}`;
}

/* imagesOf: the /stats/images list of fake. */
async function imagesOf(fake) {
	return (await http('GET', `${fake.base}/stats/images`)).json.images;
}

/*
 * anthropicSdk: the Anthropic SDK sends each kind of base64 image; the
 * answers and /stats/images are checked.  Returns the PNG's analysis.
 */
async function anthropicSdk(fake, t) {
	const client = new t.Anthropic({ apiKey: t.KEY, baseURL: fake.base, maxRetries: 0, timeout: 30000 });
	let analysis = null;

	await http('POST', `${fake.base}/reset`);
	await attempt('anthropic inline: sdk', async () => {
		const msg = await client.messages.create(t.claudeParams(b64source(PNG, 'image/png')));

		analysis = msg.content[0].input;
		ok(msg.stop_reason === 'tool_use' && analysis.room_type === 'other' && analysis.items.length >= 1,
			'anthropic sdk inline: a generated PNG as a base64 source -> an analysis (room other, hashed items)');
		for (const [buf, type] of [[JPEG, 'image/jpeg'], [GIF, 'image/gif'], [WEBP, 'image/webp'], [PNG, 'image/png']]) {
			const m = await client.messages.create(t.claudeParams(b64source(buf, type)));

			ok(m.content[0].input.items.length >= 1, `anthropic sdk inline: ${type} (${buf.length} bytes) -> an analysis`);
		}
		is(await imagesOf(fake), [entry(PNG, 2), entry(JPEG), entry(GIF), entry(WEBP)],
			'anthropic /stats/images: sha256 and bytes of each image received, calls, in order');
		is((await http('GET', `${fake.base}/stats/url?url=sha256:${sha256(PNG)}`)).json.calls, 2,
			'anthropic /stats/url?url=sha256:<hex> counts the PNG too');
	});
	await rejects(client.messages.create(t.claudeParams({ type: 'base64', media_type: 'image/png', data: 'not base64!' })),
		t.errIs(t.Anthropic.BadRequestError, 400, (e) => e.error.error.type === 'invalid_request_error'),
		'anthropic sdk inline: invalid base64 -> BadRequestError invalid_request_error');
	return analysis;
}

/*
 * anthropicRaw: malformed base64 images, and the size limits, with fetch:
 * each refusal must be a 400 invalid_request_error with the API's message
 * (the field path, then what is wrong).
 */
async function anthropicRaw(fake, t) {
	const h = { 'x-api-key': t.KEY, 'anthropic-version': '2023-06-01' };
	/* post: a request whose user message has these image sources. */
	const post = (sources) => http('POST', `${fake.base}/v1/messages`, h, {
		...t.claudeParams(sources[0]),
		messages: [{ role: 'user', content: sources.map((source) => ({ type: 'image', source })) }],
	});
	/* refused: one source must be refused with message. */
	const refused = async (sources, message, desc) => {
		const r = await post(sources);
		const want = { type: 'error', error: { type: 'invalid_request_error', message } };

		is([r.status, r.json && { ...r.json, request_id: undefined }, r.headers.get('request-id') === r.json.request_id],
			[400, { ...want, request_id: undefined }, true], `anthropic raw inline: ${desc}`);
	};
	const p = 'messages.0.content.0.image.source.base64';
	const before = await imagesOf(fake);

	await refused([{ type: 'base64', media_type: 'image/png', data: 'not base64!' }], `${p}: invalid base64 data`, 'invalid base64');
	await refused([{ type: 'base64', media_type: 'image/png', data: PNG.toString('base64').replace(/=+$/, '') }],
		`${p}: invalid base64 data`, 'unpadded base64');
	await refused([{ type: 'base64', media_type: 'image/png', data: '' }], `${p}: image cannot be empty`, 'empty data');
	await refused([b64source(PNG, 'image/bmp')],
		`${p}.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'`, 'media_type image/bmp');
	await refused([b64source(PNG, 'image/jpeg')], `${p}.data: Image does not match the provided media type image/jpeg`,
		'PNG bytes declared image/jpeg');
	await refused([b64source(JPEG, 'image/webp')], `${p}.data: Image does not match the provided media type image/webp`,
		'JPEG bytes declared image/webp');
	await refused([b64source(TEXT, 'image/png')], `${p}.data: Image does not match the provided media type image/png`,
		'text bytes declared image/png');
	await refused([b64source(PNG.subarray(0, 12), 'image/png')], 'Could not process image', 'a PNG cut before its header');
	const edge = makePng(8, 8, { bytes: ANTHROPIC_MAX / 4 * 3 });

	is((await post([b64source(edge, 'image/png')])).status, 200,
		`anthropic raw inline: ${edge.length} bytes, 5 MiB of base64 exactly -> 200 (the limit is on the base64 text)`);
	await refused([b64source(makePng(8, 8, { bytes: edge.length + 1 }), 'image/png')],
		`${p}: image exceeds 5 MB maximum: ${ANTHROPIC_MAX + 4} bytes > ${ANTHROPIC_MAX} bytes`,
		`${edge.length + 1} bytes (base64 over 5 MiB) -> image exceeds 5 MB maximum`);
	await refused([b64source(makePng(8, 8, { bytes: ANTHROPIC_MAX + 1 }), 'image/png')],
		`${p}: image exceeds 5 MB maximum: ${Math.ceil((ANTHROPIC_MAX + 1) / 3) * 4} bytes > ${ANTHROPIC_MAX} bytes`,
		'an image of 5 MiB + 1 byte -> image exceeds 5 MB maximum');
	is((await post([b64source(makePng(8000, 2), 'image/png')])).status, 200, 'anthropic raw inline: 8000x2 px -> 200');
	await refused([b64source(makePng(8001, 2), 'image/png')],
		`${p}.data: At least one of the image dimensions exceed max allowed size: 8000 pixels`, '8001x2 px');
	const small = b64source(makePng(2, 2), 'image/png');
	const wide = b64source(makePng(2001, 1), 'image/png');

	is((await post([...Array(19).fill(small), wide])).status, 200, 'anthropic raw inline: 20 images, one 2001 px wide -> 200');
	await refused([...Array(20).fill(small), wide],
		'messages.0.content.20.image.source.base64.data: At least one of the image dimensions exceed max allowed ' +
		'size for many-image requests: 2000 pixels', '21 images, one 2001 px wide -> the many-image limit');
	is(await imagesOf(fake), [...before, entry(edge), entry(makePng(8000, 2)), entry(makePng(2, 2), 19), entry(makePng(2001, 1))],
		'anthropic /stats/images: refused requests record nothing; each accepted image, each copy counted');
}

/*
 * openaiSdk: the OpenAI SDK sends each kind of data: URL; the answers and
 * /stats/images are checked.  Returns the PNG's analysis.
 */
async function openaiSdk(fake, t) {
	const client = new t.OpenAI({ apiKey: t.KEY, baseURL: `${fake.base}/v1`, maxRetries: 0, timeout: 60000 });
	/* analysis: the analysis answered for the image at url. */
	const analysis = async (url) => JSON.parse((await client.chat.completions.create(t.gptParams(url))).choices[0].message.content);
	let png = null;

	await http('POST', `${fake.base}/reset`);
	await attempt('openai inline: sdk', async () => {
		png = await analysis(dataUrl(PNG, 'image/png'));
		ok(png.room_type === 'other' && png.items.length >= 1,
			'openai sdk inline: a generated PNG as a data: URL -> an analysis (room other, hashed items)');
		for (const [buf, type] of [[JPEG, 'image/jpeg'], [GIF, 'image/gif'], [WEBP, 'image/webp']])
			ok((await analysis(dataUrl(buf, type))).items.length >= 1, `openai sdk inline: ${type} (${buf.length} bytes) -> an analysis`);
		is(await analysis(dataUrl(PNG, 'image/jpeg')), png,
			'openai sdk inline: PNG bytes declared image/jpeg -> the same analysis (the bytes are read)');
		const big = makePng(8, 8, { bytes: OPENAI_MAX });

		ok((await analysis(dataUrl(big, 'image/png'))).items.length >= 1, 'openai sdk inline: an image of 20 MiB exactly -> an analysis');
		is(await imagesOf(fake), [entry(PNG, 2), entry(JPEG), entry(GIF), entry(WEBP), entry(big)],
			'openai /stats/images: sha256 and bytes of each image received, calls, in order');
	});
	await rejects(client.chat.completions.create(t.gptParams('data:image/png;base64,@@@')),
		t.errIs(t.OpenAI.BadRequestError, 400, (e) => e.type === 'invalid_request_error'),
		'openai sdk inline: invalid base64 -> BadRequestError invalid_request_error');
	return png;
}

/*
 * openaiRaw: malformed data: URLs and the image limits, with fetch: each
 * refusal must be a 400 {"error": {message, type, param, code}}.
 */
async function openaiRaw(fake, t) {
	const h = { authorization: `Bearer ${t.KEY}` };
	/* post: a request whose user message has these image URLs. */
	const post = (urls) => http('POST', `${fake.base}/v1/chat/completions`, h, {
		...t.gptParams(urls[0]),
		messages: [{ role: 'user', content: urls.map((url) => ({ type: 'image_url', image_url: { url } })) }],
	});
	/* refused: a request with urls must be refused with this error. */
	const refused = async (urls, message, param, code, desc) => {
		const r = await post(urls);

		is([r.status, r.json], [400, { error: { message, type: 'invalid_request_error', param, code } }], `openai raw inline: ${desc}`);
	};
	const p = 'messages[0].content[0].image_url.url';
	const unsupported = 'You uploaded an unsupported image. Please make sure your image has of one the following ' +
		"formats: ['png', 'jpeg', 'gif', 'webp'].";
	const before = await imagesOf(fake);

	await refused(['data:text/plain;base64,aGk='], 'Invalid MIME type. Only image types are supported.', null,
		'invalid_image_format', 'data:text/plain');
	await refused([`data:image/png,${PNG.toString('latin1')}`], 'Invalid base64 image_url.', null, 'invalid_image_url',
		'a data: URL that is not base64');
	await refused(['data:image/png;base64,@@@'], 'Invalid base64 image_url.', null, 'invalid_image_url', 'invalid base64');
	await refused(['data:image/png;base64,'], `Invalid '${p}'. Expected a base64-encoded data URL with an image MIME type ` +
		"(e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU='), but got empty base64-encoded bytes.", p, 'invalid_value',
	'empty base64');
	await refused([dataUrl(TEXT, 'image/png')], unsupported, null, 'invalid_image_format', 'text bytes as image/png');
	await refused([dataUrl(makePng(8, 8, { bytes: OPENAI_MAX + 1 }), 'image/png')],
		`Invalid '${p}': the image is ${OPENAI_MAX + 1} bytes, over the limit of 20 MB (${OPENAI_MAX} bytes) per image.`,
		p, 'image_too_large', 'an image of 20 MiB + 1 byte');
	const tiny = dataUrl(makePng(1, 1), 'image/png');

	is((await post(Array(500).fill(tiny))).status, 200, 'openai raw inline: 500 images -> 200');
	await refused(Array(501).fill(tiny), "Invalid 'messages': too many images: 501 > 500. A request can have at most 500 images.",
		'messages', 'too_many_images', '501 images');
	is(await imagesOf(fake), [...before, entry(makePng(1, 1), 500)],
		'openai /stats/images: refused requests record nothing; 500 copies count 500 calls');
}

/*
 * inlineChecks: every inline-image check of both fakes; both must answer
 * a given PNG with the same analysis.
 */
async function inlineChecks(claude, gpt, t) {
	const a = await anthropicSdk(claude, t);
	const o = await openaiSdk(gpt, t);

	is(a, o, 'anthropic and openai fakes: the same PNG, the same analysis (FNV-1a of the bytes)');
	await attempt('anthropic raw inline', () => anthropicRaw(claude, t));
	await attempt('openai raw inline', () => openaiRaw(gpt, t));
}

module.exports = { inlineChecks, PNG };
