/*
 * test_images.js
 *		Real images for the self-test of the fakes: PNG files built here
 *		(any size in pixels, padded to any size in bytes with a tEXt chunk),
 *		and a small JPEG, GIF and WebP, with their SHA-256.
 */
'use strict';

const crypto = require('node:crypto');
const zlib = require('node:zlib');

/* JPEG: a 4x3 colour JPEG written by libjpeg (quality 50). */
const JPEG = Buffer.from(
	'/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1RV19iZ2hn' +
	'Pk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2Nj' +
	'Y2P/wAARCAADAAQDASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQID' +
	'AAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlq' +
	'c3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3' +
	'+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEI' +
	'FEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImK' +
	'kpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwB1' +
	'nYWn2df3CUUUVlKcrvU0oVJ+zjq9j//Z', 'base64');

/* GIF: a 1x1 GIF89a. */
const GIF = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64');

/* WEBP: a 1x1 lossless WebP (VP8L). */
const WEBP = Buffer.from('UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==', 'base64');

/* TEXT: bytes that are no image. */
const TEXT = Buffer.from('hello, world\n');

/* pngChunk: one PNG chunk: length, type, data, CRC-32 of type and data. */
function pngChunk(type, data) {
	const head = Buffer.alloc(8);
	const crc = Buffer.alloc(4);

	head.writeUInt32BE(data.length, 0);
	head.write(type, 4, 'latin1');
	crc.writeUInt32BE(zlib.crc32(Buffer.concat([head.subarray(4), data])), 0);
	return Buffer.concat([head, data, crc]);
}

/*
 * makePng: a valid 8-bit grey PNG of width x height pixels (a pattern that
 * seed varies); with bytes, padded to exactly that many bytes by a tEXt
 * chunk before the image data.
 */
function makePng(width, height, { seed = 0, bytes = 0 } = {}) {
	const ihdr = Buffer.alloc(13);
	const raw = Buffer.alloc((width + 1) * height);

	ihdr.writeUInt32BE(width, 0);
	ihdr.writeUInt32BE(height, 4);
	ihdr.set([8, 0, 0, 0, 0], 8);	/* depth 8, grey, deflate, no filter, no interlace */
	for (let y = 0; y < height; y++)
		for (let x = 0; x < width; x++)
			raw[y * (width + 1) + 1 + x] = (x * 7 + y * 13 + seed) & 0xff;
	const head = [Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), pngChunk('IHDR', ihdr)];
	const tail = [pngChunk('IDAT', zlib.deflateSync(raw)), pngChunk('IEND', Buffer.alloc(0))];
	const bare = Buffer.concat([...head, ...tail]);

	if (bytes === 0)
		return bare;
	const fill = bytes - bare.length - 12 - 'Comment\0'.length;

	if (fill < 0)
		throw new Error(`makePng: ${bytes} bytes is too small for ${width}x${height}`);
	return Buffer.concat([...head, pngChunk('tEXt', Buffer.from('Comment\0' + 'x'.repeat(fill), 'latin1')), ...tail]);
}

/* sha256: the SHA-256 of buf in hex. */
function sha256(buf) {
	return crypto.createHash('sha256').update(buf).digest('hex');
}

/* entry: the /stats/images entry of buf received calls times. */
function entry(buf, calls = 1) {
	return { sha256: sha256(buf), bytes: buf.length, calls };
}

module.exports = { JPEG, GIF, WEBP, TEXT, makePng, sha256, entry };
