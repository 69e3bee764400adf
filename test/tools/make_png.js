/*
 * make_png.js
 *		Write a real PNG image for the tests and the demo (no image library
 *		needed): node test/tools/make_png.js OUT WIDTH HEIGHT [SEED] [BYTES].
 *		SEED varies the pixels (another seed, other bytes); BYTES pads the
 *		file to exactly that size.  Built by test/fake_providers/test_images.js.
 */
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { makePng } = require(path.join(__dirname, '..', 'fake_providers', 'test_images.js'));

const [out, width, height, seed = '0', bytes = '0'] = process.argv.slice(2);

if (!out || !(Number(width) > 0) || !(Number(height) > 0)) {
	process.stderr.write('usage: make_png.js OUT WIDTH HEIGHT [SEED] [BYTES]\n');
	process.exit(2);
}
fs.writeFileSync(out, makePng(Number(width), Number(height), { seed: Number(seed), bytes: Number(bytes) }));
