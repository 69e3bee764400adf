/*
 * sdk_presign.js
 *		The AWS SDK for JavaScript v3's presigned URL (pinned in
 *		package.json) in the plain form s3_sign.c makes: no x-id, no checksum
 *		parameters, X-Amz-Content-Sha256 neither hoisted nor signed.  A module
 *		for presign_check.js, and a command for the end-to-end tests:
 *		node sdk_presign.js METHOD ENDPOINT REGION BUCKET PATH_STYLE(0|1)
 *		     ACCESS_KEY_ID SECRET KEY EXPIRES_S UNIX_TIME  -> the URL
 */
'use strict';

process.removeAllListeners('warning');
const { S3Client, GetObjectCommand, PutObjectCommand, HeadObjectCommand,
  DeleteObjectCommand } = require('@aws-sdk/client-s3');
const { getSignedUrl } = require('@aws-sdk/s3-request-presigner');

const sdkClients = new Map();

// An S3 client that presigns the plain form: no x-id, no checksum parameters.
function sdkClient(o, plain = true) {
  const id = JSON.stringify([o.endpoint, o.region, o.pathStyle, o.akid, o.secret, plain]);
  if (!sdkClients.has(id)) {
    const c = new S3Client({
      endpoint: o.endpoint,
      region: o.region,
      forcePathStyle: o.pathStyle,
      credentials: { accessKeyId: o.akid, secretAccessKey: o.secret },
      ...(plain ? { requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED' } : {}),
    });
    if (plain) {
      c.middlewareStack.add((next) => async (args) => {
        delete args.request.query['x-id'];
        return next(args);
      }, { step: 'build', name: 'dropXIdQuery' });
    }
    sdkClients.set(id, c);
  }
  return sdkClients.get(id);
}

const COMMANDS = { GET: GetObjectCommand, PUT: PutObjectCommand,
  HEAD: HeadObjectCommand, DELETE: DeleteObjectCommand };

// The SDK's presigned URL.  plain: keep X-Amz-Content-Sha256 a header, not
// hoisted to the query and not signed (presigning options of the SDK).
async function sdk(o, plain = true) {
  const cmd = new COMMANDS[o.method]({ Bucket: o.bucket, Key: o.key });
  const opts = { expiresIn: o.expires, signingDate: new Date(o.now * 1000) };
  if (plain) {
    opts.unhoistableHeaders = new Set(['x-amz-content-sha256']);
    opts.unsignableHeaders = new Set(['x-amz-content-sha256']);
  }
  return getSignedUrl(sdkClient(o, plain), cmd, opts);
}

module.exports = { sdk };

if (require.main === module) {
  const [method, endpoint, region, bucket, pathStyle, akid, secret, key, expires, now] = process.argv.slice(2);
  sdk({ method, endpoint, region, bucket, pathStyle: pathStyle === '1', akid, secret, key,
    expires: Number(expires), now: Number(now) })
    .then((url) => process.stdout.write(url + '\n'))
    .catch((e) => { process.stderr.write(`sdk_presign: ${e.message}\n`); process.exit(1); });
}
