/*
 * s3_server.js
 *		A real S3-protocol server for the end-to-end tests of the s3 store:
 *		s3rver (pinned, test/s3/package.json) with bucket "photos" and the
 *		account S3RVER / S3RVER, behind s3_front.js, which verifies every
 *		presigned request's SigV4 signature as S3 does.
 *
 *		node test/s3/s3_server.js DIR: serves on 127.0.0.1 (a free port),
 *		prints "listening PORT" on stdout, runs until killed.
 *		GET /_objects (unsigned, this server's own) lists the bucket's keys as
 *		JSON, for the tests to count what is stored.
 */
'use strict';

process.removeAllListeners('warning');
const S3rver = require('s3rver');
const { S3Client, ListObjectsV2Command } = require('@aws-sdk/client-s3');
const { startFront } = require('./s3_front.js');

async function main() {
	const dir = process.argv[2];

	if (!dir) {
		process.stderr.write('usage: s3_server.js DIR\n');
		process.exit(2);
	}
	const s3rver = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: dir,
		serviceEndpoint: 'localhost', configureBuckets: [{ name: 'photos' }] });
	const { port: s3rverPort } = await s3rver.run();
	const direct = new S3Client({ endpoint: `http://127.0.0.1:${s3rverPort}`, region: 'us-east-1',
		forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
	const handler = s3rver.callback();
	const front = await startFront((req, res) => handler(req, res), async (req, res) => {
		if (req.url !== '/_objects')
			return false;
		const out = await direct.send(new ListObjectsV2Command({ Bucket: 'photos' }));
		res.writeHead(200, { 'Content-Type': 'application/json' });
		res.end(JSON.stringify((out.Contents || []).map((o) => ({ key: o.Key, size: o.Size }))));
		return true;
	});
	process.stdout.write(`listening ${front.address().port}\n`);
	const stop = () => front.close(() => s3rver.close().then(() => process.exit(0)));
	process.on('SIGTERM', stop);
	process.on('SIGINT', stop);
}

main().catch((e) => {
	process.stderr.write(`s3_server: ${e.stack}\n`);
	process.exit(1);
});
