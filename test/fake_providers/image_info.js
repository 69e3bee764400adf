/*
 * image_info.js
 *		What the fake providers read from an inline image: strict base64,
 *		the media type its signature shows, its pixel size from its header,
 *		and its SHA-256 (the key tests use to ask which images a fake got).
 *
 * Only headers are read; nothing is decoded past them.  Only Node's
 * standard library is used.
 */
'use strict';

const crypto = require('node:crypto');

/* IMAGE_MEDIA_TYPES: the image types both providers accept. */
const IMAGE_MEDIA_TYPES = ['image/jpeg', 'image/png', 'image/gif', 'image/webp'];

/*
 * BASE64_TEXT: the standard alphabet, then at most 2 '=' (with a length
 * that is a multiple of 4: strict, padded base64).  A plain loop: a regular
 * expression repeating a group overflows the stack on megabytes of text.
 */
const BASE64_TEXT = /^[A-Za-z0-9+/]*(?:[A-Za-z0-9+/]=|==)?$/;

/* PNG_SIGNATURE: the 8 bytes that open every PNG file. */
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/* decodeBase64: the bytes of strict base64 text s, or null if invalid. */
function decodeBase64(s) {
	if (typeof s !== 'string' || s.length === 0 || s.length % 4 !== 0 || !BASE64_TEXT.test(s))
		return null;
	return Buffer.from(s, 'base64');
}

/*
 * sniffImage: the media type the bytes' signature shows (image/png,
 * image/jpeg, image/gif, image/webp), or null.
 */
function sniffImage(buf) {
	if (buf.length >= 8 && buf.subarray(0, 8).equals(PNG_SIGNATURE))
		return 'image/png';
	if (buf.length >= 3 && buf[0] === 0xff && buf[1] === 0xd8 && buf[2] === 0xff)
		return 'image/jpeg';
	if (buf.length >= 6 && /^GIF8[79]a$/.test(buf.subarray(0, 6).toString('latin1')))
		return 'image/gif';
	if (buf.length >= 12 && buf.subarray(0, 4).toString('latin1') === 'RIFF' &&
		buf.subarray(8, 12).toString('latin1') === 'WEBP')
		return 'image/webp';
	return null;
}

/*
 * jpegSize: {width, height} from the first SOFn segment of a JPEG, or null
 * if there is none before the scan or the segments are cut short.
 */
function jpegSize(buf) {
	let i = 2;

	while (i + 4 <= buf.length) {
		if (buf[i] !== 0xff)
			return null;
		const m = buf[i + 1];

		if (m === 0xff) {		/* fill byte */
			i++;
			continue;
		}
		if (m === 0x01 || (m >= 0xd0 && m <= 0xd7)) {	/* no length */
			i += 2;
			continue;
		}
		if (m === 0xda || m === 0xd9)	/* scan or end before any frame */
			return null;
		if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc)
			return i + 9 <= buf.length ? { width: buf.readUInt16BE(i + 7), height: buf.readUInt16BE(i + 5) } : null;
		i += 2 + buf.readUInt16BE(i + 2);
	}
	return null;
}

/* webpSize: {width, height} from the first chunk of a WebP, or null. */
function webpSize(buf) {
	const chunk = buf.length >= 16 ? buf.subarray(12, 16).toString('latin1') : '';

	if (chunk === 'VP8 ' && buf.length >= 30 && buf[23] === 0x9d && buf[24] === 0x01 && buf[25] === 0x2a)
		return { width: buf.readUInt16LE(26) & 0x3fff, height: buf.readUInt16LE(28) & 0x3fff };
	if (chunk === 'VP8L' && buf.length >= 25 && buf[20] === 0x2f) {
		const bits = buf.readUInt32LE(21);

		return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
	}
	if (chunk === 'VP8X' && buf.length >= 30)
		return { width: buf.readUIntLE(24, 3) + 1, height: buf.readUIntLE(27, 3) + 1 };
	return null;
}

/*
 * imageSize: {width, height} in pixels read from the header of an image
 * of media type type, or null if the header cannot be read.
 */
function imageSize(buf, type) {
	if (type === 'image/png')
		return buf.length >= 24 && buf.subarray(12, 16).toString('latin1') === 'IHDR' ?
			{ width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) } : null;
	if (type === 'image/gif')
		return buf.length >= 10 ? { width: buf.readUInt16LE(6), height: buf.readUInt16LE(8) } : null;
	if (type === 'image/jpeg')
		return jpegSize(buf);
	return type === 'image/webp' ? webpSize(buf) : null;
}

/*
 * inlineImage: the image of decoded inline bytes, as the fakes pass it on:
 * {kind: 'bytes', bytes, sha256 (hex)}.
 */
function inlineImage(bytes) {
	return { kind: 'bytes', bytes, sha256: crypto.createHash('sha256').update(bytes).digest('hex') };
}

module.exports = { IMAGE_MEDIA_TYPES, decodeBase64, sniffImage, imageSize, inlineImage };
