'use strict';
// presign_check.js: TAP test of src/s3_sign.c, the SigV4 presigned URLs.
//
//   cd test/s3 && npm ci && cd ../.. && prove --exec node test/s3/presign_check.js
//
// Builds test/s3/presign_cli.c with src/s3_sign.c (cc, -lcrypto) into a
// temporary directory, then checks its URLs
//   a) against the example of AWS's documentation ("Authenticating Requests:
//      Using Query Parameters (AWS Signature Version 4)");
//   b) byte for byte against @aws-sdk/s3-request-presigner, for path and
//      virtual-hosted styles, custom endpoints with ports, awkward keys, GET,
//      PUT, HEAD and DELETE, at fixed clocks; and the module's refusals;
//   c) against a real S3-protocol server, s3rver, on 127.0.0.1, with curl:
//      upload, download of the same bytes, and refusal (403) of a tampered
//      signature, key, method or secret and of an expired URL.
// s3rver 3.7.1 does not verify SigV4 signatures (its authentication
// middleware says "Signature version 4 calculation is unimplemeneted"): it
// checks the access key id, the form of the parameters and the expiry only.
// So curl talks to a front on another port that verifies each presigned
// request as it arrives with the AWS SDK's own SigV4 signer
// (@smithy/signature-v4) and hands the verified ones to s3rver's request
// handler in this process.  A test shows s3rver alone accepting a tampered
// signature.
//
// Installs nothing: everything it uses is in test/s3/node_modules (npm ci).
// Env: CC (default cc), PRESIGN_CLI_CFLAGS (added, e.g. sanitizers).

const { execFile, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { promisify } = require('node:util');

// The SDK warns on stderr that its releases after January 2027 will need
// Node 22: not this test's business.
process.removeAllListeners('warning');
process.on('warning', (w) => {
  if (!String(w.message).startsWith('NodeVersionSupportWarning')) console.error(String(w));
});

let S3Client, GetObjectCommand, S3rver;
try {
  ({ S3Client, GetObjectCommand } = require('@aws-sdk/client-s3'));
  S3rver = require('s3rver');
} catch (e) {
  console.log(`Bail out! test/s3/node_modules incomplete (run "npm ci" in test/s3): ${e.message}`);
  process.exit(1);
}

const execFileP = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..');

// ---- TAP ---------------------------------------------------------------

let count = 0;
let failures = 0;

function ok(cond, name, detail) {
  count++;
  console.log(`${cond ? 'ok' : 'not ok'} ${count} - ${name}`);
  if (!cond) {
    failures++;
    if (detail) for (const l of String(detail).split('\n')) console.log(`#   ${l}`);
  }
  return cond;
}

function is(got, want, name) {
  return ok(got === want, name, `got:  ${got}\nwant: ${want}`);
}

function note(msg) {
  console.log(`# ${msg}`);
}

// ---- the C driver ------------------------------------------------------

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'moverz-s3-'));
const CLI = path.join(TMP, 'presign_cli');

function buildCli() {
  const cc = process.env.CC || 'cc';
  const extra = (process.env.PRESIGN_CLI_CFLAGS || '').split(/\s+/).filter(Boolean);
  const args = ['-O2', '-g', '-Wall', '-Wextra', '-Werror', '-Wmissing-prototypes',
    '-Wpointer-arith', '-Wdeclaration-after-statement', '-Werror=vla', ...extra,
    '-I', path.join(ROOT, 'src'), '-o', CLI,
    path.join(__dirname, 'presign_cli.c'), path.join(ROOT, 'src', 's3_sign.c'), '-lcrypto'];
  const r = spawnSync(cc, args, { encoding: 'utf8' });
  if (!ok(r.status === 0, `presign_cli builds (${cc} ... -lcrypto)`, `${r.error || ''}${r.stderr}`)) {
    console.log('Bail out! cannot build the driver: needs a C compiler and libssl-dev');
    process.exit(1);
  }
}

// Flags of presign_cli for a case; o: {endpoint, region, bucket, pathStyle,
// akid, secret, method, key, expires, now, unsigned, outlen}
function cliArgs(o) {
  const a = [];
  const put = (flag, v) => { if (v !== undefined && v !== null) a.push(flag, String(v)); };
  put('-e', o.endpoint); put('-r', o.region); put('-b', o.bucket);
  if (o.pathStyle) a.push('-P');
  if (o.unsigned) a.push('-u');
  put('-a', o.akid); put('-s', o.secret); put('-m', o.method); put('-k', o.key);
  put('-x', o.expires); put('-t', o.now); put('-l', o.outlen);
  return a;
}

function cliRun(o) {
  const r = spawnSync(CLI, cliArgs(o), { encoding: 'utf8' });
  return { status: r.status, url: r.stdout.replace(/\n$/, ''), err: r.stderr.trim() };
}

function cli(o) {
  const r = cliRun(o);
  if (r.status !== 0) return `(exit ${r.status}: ${r.err})`;
  return r.url;
}

// ---- the SDK -----------------------------------------------------------

const { sdk } = require('./sdk_presign.js');

function queryMap(url) {
  const q = new Map();
  const s = url.indexOf('?') < 0 ? '' : url.slice(url.indexOf('?') + 1);
  for (const part of s.split('&').filter(Boolean)) {
    const i = part.indexOf('=');
    q.set(part.slice(0, i < 0 ? part.length : i), i < 0 ? '' : part.slice(i + 1));
  }
  return q;
}

// ---- a) AWS's documented example ---------------------------------------

const AWS_DOC = {
  endpoint: 'https://s3.amazonaws.com', region: 'us-east-1', bucket: 'examplebucket',
  pathStyle: false, akid: 'AKIAIOSFODNN7EXAMPLE',
  secret: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', method: 'GET', key: 'test.txt',
  expires: 86400, now: Date.UTC(2013, 4, 24, 0, 0, 0) / 1000,
};
const AWS_DOC_SIGNATURE = 'aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404';
// As the documentation prints it, X-Amz-Signature last.
const AWS_DOC_URL = 'https://examplebucket.s3.amazonaws.com/test.txt' +
  '?X-Amz-Algorithm=AWS4-HMAC-SHA256' +
  '&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request' +
  '&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host' +
  `&X-Amz-Signature=${AWS_DOC_SIGNATURE}`;

async function checkAwsExample() {
  note('a) the example of AWS\'s "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)"');
  const url = cli(AWS_DOC);
  is(queryMap(url).get('X-Amz-Signature'), AWS_DOC_SIGNATURE, 'AWS example: the documented signature');
  const sorted = (u) => u.slice(0, u.indexOf('?') + 1) + [...queryMap(u)].map(([k, v]) => `${k}=${v}`).sort().join('&');
  is(url, sorted(AWS_DOC_URL), 'AWS example: the documented URL, parameters in sorted order');
  is(await sdk(AWS_DOC), url, 'AWS example: the SDK gives the same URL');
  is(cli({ ...AWS_DOC, unsigned: true }), 'https://examplebucket.s3.amazonaws.com/test.txt',
    'AWS example: s3_object_url() gives the object URL without signature');
  is(cli({ ...AWS_DOC, pathStyle: true }).split('?')[0], 'https://s3.amazonaws.com/examplebucket/test.txt',
    'AWS example in path style: bucket in the path');
}

// ---- b) the AWS SDK for JavaScript v3, byte for byte -------------------

const KEYS = [
  'test.txt',
  'photos/2024/IMG 0001.jpg',
  'déménagement/carton n°1 – cuisine.jpg',
  '日本語/写真.png',
  'a+b/c~d_e-f.g',
  '📦 box.jpeg',
  '/leading//double//slash',
  "!*()'$&,;=:@?#[]% end",
  'trailing space ',
  `${'k'.repeat(1000)}/${'é'.repeat(10)}`, // 1021 bytes
];

const CLOCKS = [
  { now: Date.UTC(2013, 4, 24, 0, 0, 0) / 1000, expires: 86400 },
  { now: Date.UTC(2026, 1, 28, 23, 59, 59) / 1000, expires: 1 },
  { now: Date.UTC(2024, 11, 31, 12, 0, 0) / 1000, expires: 604800 },
  { now: Date.UTC(2030, 6, 1, 6, 7, 8) / 1000, expires: 3600 },
];

const AWS_KEYS = { akid: 'AKIAIOSFODNN7EXAMPLE', secret: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' };
const MINIO_KEYS = { akid: 'minio-user', secret: 'minio+secret/with=signs' };

const STORES = [
  { name: 'AWS global', endpoint: 'https://s3.amazonaws.com', region: 'us-east-1', bucket: 'examplebucket', styles: [true, false], ...AWS_KEYS },
  { name: 'AWS eu-west-3', endpoint: 'https://s3.eu-west-3.amazonaws.com', region: 'eu-west-3', bucket: 'moverz-photos', styles: [true, false], ...AWS_KEYS },
  { name: 'default port :443 and final /', endpoint: 'https://s3.eu-west-3.amazonaws.com:443/', region: 'eu-west-3', bucket: 'moverz-photos', styles: [true, false], ...AWS_KEYS },
  { name: 'bucket with dots over https', endpoint: 'https://s3.eu-west-3.amazonaws.com', region: 'eu-west-3', bucket: 'moverz.photos', styles: [true], ...AWS_KEYS },
  { name: 'MinIO on 127.0.0.1:4569', endpoint: 'http://127.0.0.1:4569', region: 'us-east-1', bucket: 'photos', styles: [true], ...MINIO_KEYS },
  { name: 'localhost:9000', endpoint: 'http://localhost:9000', region: 'us-east-1', bucket: 'photos', styles: [true, false], ...MINIO_KEYS },
  { name: 'Ceph RGW on [::1]:7480', endpoint: 'http://[::1]:7480', region: 'default', bucket: 'photos', styles: [true], ...MINIO_KEYS },
  { name: 'default port :80, bucket with dots', endpoint: 'http://rgw.internal:80', region: 'default', bucket: 'moverz.photos', styles: [true, false], ...MINIO_KEYS },
  { name: 'R2', endpoint: 'https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com', region: 'auto', bucket: 'moverz', styles: [true, false], ...AWS_KEYS },
];

async function checkSdk() {
  note('b) @aws-sdk/s3-request-presigner, byte for byte');
  let compared = 0;
  let ci = 0;
  for (const store of STORES) {
    for (const pathStyle of store.styles) {
      for (const method of ['GET', 'PUT', 'HEAD', 'DELETE']) {
        let mismatch = null;
        for (const key of KEYS) {
          const o = { ...store, pathStyle, method, key, ...CLOCKS[ci++ % CLOCKS.length] };
          const [mine, theirs] = [cli(o), await sdk(o)];
          compared++;
          if (mine !== theirs && !mismatch) mismatch = `key:  ${JSON.stringify(key)}\nC:    ${mine}\nSDK:  ${theirs}`;
        }
        ok(!mismatch, `SDK: ${store.name}, ${pathStyle ? 'path' : 'virtual-hosted'} style, ${method}, ${KEYS.length} keys`, mismatch);
      }
    }
  }
  note(`${compared} URLs compared with the SDK's`);

  // What the SDK presigns when left to its defaults: the same request plus
  // parameters that it adds to the query and signs.
  for (const method of ['GET', 'PUT']) {
    const o = { ...STORES[3], pathStyle: true, method, key: 'photos/a b.jpg', ...CLOCKS[0] };
    const mine = queryMap(cli(o));
    const raw = await sdk(o, false);
    const theirs = queryMap(raw);
    const extra = [...theirs.keys()].filter((k) => !mine.has(k)).sort();
    const want = method === 'GET'
      ? ['X-Amz-Content-Sha256', 'x-amz-checksum-mode', 'x-id']
      : ['X-Amz-Content-Sha256', 'x-amz-checksum-crc32', 'x-amz-sdk-checksum-algorithm', 'x-id'];
    const same = [...mine.keys()].every((k) => k === 'X-Amz-Signature' || mine.get(k) === theirs.get(k));
    ok(same && raw.split('?')[0] === cli(o).split('?')[0] && JSON.stringify(extra) === JSON.stringify(want),
      `SDK defaults, ${method}: same URL plus ${want.join(', ')} (signed, so another signature)`,
      `SDK: ${raw}\nC:   ${cli(o)}`);
  }
}

// The module's refusals, through the driver's exit status and message.
function checkErrors() {
  note('the module refuses bad arguments');
  const good = { ...STORES[3], pathStyle: true, method: 'PUT', key: 'a.jpg', ...CLOCKS[1] };
  const cases = [
    [{ endpoint: undefined }, -1, 'no endpoint'],
    [{ method: 'POST' }, -2, 'method POST'],
    [{ method: 'get' }, -2, 'method in lower case'],
    [{ endpoint: 'ftp://127.0.0.1' }, -3, 'endpoint ftp://'],
    [{ endpoint: 'http://' }, -3, 'endpoint without host'],
    [{ endpoint: 'http://127.0.0.1:4569/prefix' }, -3, 'endpoint with a path'],
    [{ endpoint: 'http://user@127.0.0.1' }, -3, 'endpoint with a user'],
    [{ endpoint: 'http://127.0.0.1:0' }, -3, 'endpoint port 0'],
    [{ endpoint: 'http://127.0.0.1:65536' }, -3, 'endpoint port 65536'],
    [{ endpoint: 'http://127.0.0.1:' }, -3, 'endpoint empty port'],
    [{ endpoint: 'http://[::1' }, -3, 'endpoint unclosed IPv6'],
    [{ endpoint: 'http://a..b' }, -3, 'endpoint empty label'],
    [{ endpoint: 'http://127.0.0.1?x=1' }, -3, 'endpoint with a query'],
    [{ region: '' }, -4, 'empty region'],
    [{ region: 'us/east' }, -4, 'region with /'],
    [{ bucket: '' }, -5, 'empty bucket'],
    [{ bucket: 'a/b' }, -5, 'bucket with /'],
    [{ pathStyle: false }, -6, 'virtual-hosted style on an IP address'],
    [{ pathStyle: false, endpoint: 'http://localhost:9000', bucket: 'Photos' }, -6, 'virtual-hosted style, upper-case bucket'],
    [{ pathStyle: false, endpoint: 'http://localhost:9000', bucket: 'my_photos' }, -6, 'virtual-hosted style, bucket with _'],
    [{ pathStyle: false, endpoint: 'http://localhost:9000', bucket: 'ab' }, -6, 'virtual-hosted style, 2-character bucket'],
    [{ pathStyle: false, endpoint: 'https://s3.amazonaws.com', bucket: 'moverz.photos' }, -6, 'virtual-hosted style over https, bucket with a dot'],
    [{ key: '' }, -7, 'empty key'],
    [{ key: 'k'.repeat(1025) }, -7, 'key of 1025 bytes'],
    [{ akid: '' }, -8, 'empty access key id'],
    [{ akid: 'a b' }, -8, 'access key id with a space'],
    [{ secret: '' }, -8, 'empty secret'],
    [{ secret: 's'.repeat(257) }, -8, 'secret of 257 bytes'],
    [{ expires: 0 }, -9, 'expires 0'],
    [{ expires: 604801 }, -9, 'expires 604801'],
    [{ expires: -5 }, -9, 'expires -5'],
    [{ now: -1 }, -10, 'time before 1970'],
    [{ now: 253402300800 }, -10, 'time in year 10000'],
    [{ outlen: 0 }, -11, 'output buffer of 0 bytes'],
  ];
  for (const [change, code, name] of cases) {
    const r = cliRun({ ...good, ...change });
    ok(r.status === 1 && r.err.startsWith(`error ${code}:`), `refused (${code}): ${name}`, `exit ${r.status}, ${r.err} ${r.url}`);
  }
  ok(cliRun({ ...good, key: 'k'.repeat(1024) }).status === 0, 'accepted: key of 1024 bytes');
  ok(cliRun({ ...good, expires: 604800 }).status === 0, 'accepted: expires 604800');
  ok(cliRun({ ...good, now: 253402300799 }).status === 0, 'accepted: 9999-12-31T23:59:59Z');

  // invalid UTF-8 cannot be in a JavaScript string: the shell makes the bytes
  for (const [bytes, what] of [['\\377', 'byte 0xff'], ['\\300\\257', 'overlong /'],
    ['\\355\\240\\200', 'surrogate U+D800'], ['\\364\\220\\200\\200', 'above U+10FFFF'], ['a\\303', 'truncated sequence']]) {
    const r = spawnSync('/bin/sh', ['-c', `exec "$0" "$@" -k "$(printf '${bytes}')"`, CLI,
      ...cliArgs({ ...good, key: undefined })], { encoding: 'utf8' });
    ok(r.status === 1 && r.stderr.startsWith('error -7:'), `refused (-7): key not UTF-8, ${what}`, r.stderr);
  }

  // the output buffer: exactly the URL and its NUL, or too small by one
  const url = cli(good);
  ok(cliRun({ ...good, outlen: url.length + 1 }).url === url, `a buffer of strlen(url) + 1 = ${url.length + 1} bytes is enough`);
  const short = cliRun({ ...good, outlen: url.length });
  ok(short.status === 1 && short.err.startsWith('error -11:'), 'a buffer of strlen(url) bytes is refused (-11)', short.err);
  const longest = cli({ ...good, key: '\u{1F4E6}'.repeat(256), bucket: 'b'.repeat(255),
    akid: '%'.repeat(128), region: 'r'.repeat(64) });
  ok(longest.length < 6144, `the longest URL within the limits (${longest.length} bytes) fits S3_SIGN_URL_MAX`, longest.slice(0, 200));
}

// ---- c) s3rver with a verifying front ----------------------------------

// s3rver's built-in account (lib/models/account.js); no other can be added
// through its options.
const { S3RVER_KEYS, frontLog, startFront } = require('./s3_front.js');

async function curl(method, url, { upload, out, resolve } = {}) {
  const args = ['-sS', '-g', '--path-as-is', '-o', out || '/dev/null', '-w', '%{http_code}', '-X', method];
  if (upload) args.push('-T', upload);
  if (resolve) args.push('--resolve', resolve);
  args.push(url);
  try {
    const { stdout } = await execFileP('curl', args);
    return Number(stdout);
  } catch (e) {
    return `curl failed: ${e.message}`;
  }
}

async function checkS3rver() {
  note('c) s3rver on 127.0.0.1, behind a front that verifies SigV4');
  const dir = path.join(TMP, 's3rver');
  const s3rver = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: dir,
    serviceEndpoint: 'localhost', configureBuckets: [{ name: 'photos' }] });
  const { port: s3rverPort } = await s3rver.run();
  const front = await startFront(s3rver.callback());
  const port = front.address().port;
  note(`s3rver ${require('s3rver/package.json').version} on 127.0.0.1:${s3rverPort}, front on 127.0.0.1:${port}`);
  try {
    await s3rverChecks(port, s3rverPort);
  } finally {
    await new Promise((r) => front.close(r));
    await s3rver.close();
  }
}

async function s3rverChecks(port, s3rverPort) {
  const now = () => Math.floor(Date.now() / 1000);
  const base = { endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', bucket: 'photos',
    pathStyle: true, ...S3RVER_KEYS, expires: 300 };
  const body = path.join(TMP, 'body.bin');
  const got = path.join(TMP, 'got.bin');
  const data = Buffer.concat([Buffer.from([...Array(256).keys()]), crypto.randomBytes(200000)]);
  fs.writeFileSync(body, data);
  const sdkDirect = new S3Client({ endpoint: `http://127.0.0.1:${s3rverPort}`, region: 'us-east-1',
    forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });

  const roundTrip = async (o, label, resolve) => {
    const put = await curl('PUT', cli({ ...o, method: 'PUT', now: now() }), { upload: body, resolve });
    is(put, 200, `s3rver: PUT ${label} with the presigned PUT URL`);
    fs.rmSync(got, { force: true });
    const get = await curl('GET', cli({ ...o, method: 'GET', now: now() }), { out: got, resolve });
    ok(get === 200 && fs.existsSync(got) && fs.readFileSync(got).equals(data),
      `s3rver: GET ${label} with the presigned GET URL returns the same ${data.length} bytes`, `HTTP ${get}`);
    const res = await sdkDirect.send(new GetObjectCommand({ Bucket: 'photos', Key: o.key }))
      .then(async (r) => Buffer.from(await r.Body.transformToByteArray())).catch((e) => e);
    ok(Buffer.isBuffer(res) && res.equals(data), `s3rver: the object is stored under the exact key ${JSON.stringify(o.key)}`, String(res));
  };

  for (const key of ['upload/photo 1.jpg', 'déménagement/carton n°1 – cuisine.jpg', 'a+b/c~d.jpeg', '📦 box.jpeg']) {
    await roundTrip({ ...base, key }, JSON.stringify(key));
  }
  const vhost = { ...base, endpoint: `http://s3.localhost:${port}`, pathStyle: false, key: 'vhost/日本語.png' };
  await roundTrip(vhost, 'in virtual-hosted style (photos.s3.localhost)', `photos.s3.localhost:${port}:127.0.0.1`);

  const key = 'upload/photo 1.jpg';
  const good = cli({ ...base, method: 'GET', key, now: now() });
  const tampered = good.replace(/X-Amz-Signature=([0-9a-f]{63})([0-9a-f])/, (_, a, b) => `X-Amz-Signature=${a}${b === '0' ? '1' : '0'}`);
  ok(tampered !== good, 'a tampered URL differs from the good one in the last digit of its signature');
  is(await curl('GET', tampered), 403, 'refused (403): tampered signature');
  is(await curl('GET', good.replace('photo%201.jpg', 'photo%202.jpg')), 403, 'refused (403): another key with the same signature');
  is(await curl('PUT', good, { upload: body }), 403, 'refused (403): PUT with a GET URL');
  is(await curl('GET', cli({ ...base, method: 'GET', key, now: now(), secret: 'not-the-secret' })), 403, 'refused (403): signed with another secret');
  is(await curl('GET', cli({ ...base, method: 'GET', key, now: now(), akid: 'NOSUCHKEY' })), 403, 'refused (403): unknown access key id');
  is(await curl('GET', good.split('?')[0]), 403, 'refused (403): no signature at all');

  const expired = cli({ ...base, method: 'GET', key, now: now() - 120, expires: 60 });
  is(await curl('GET', expired, { out: got }), 403, 'refused (403): expired URL (signed 120 s ago for 60 s)');
  const why = fs.existsSync(got) ? fs.readFileSync(got, 'utf8') : '';
  ok(/Request has expired/.test(why) && !frontLog.at(-1).refusal,
    'the expired URL has a good signature: s3rver refused it for its expiry', why);
  is(await curl('GET', cli({ ...base, method: 'GET', key, now: now() - 30, expires: 60 })), 200,
    'accepted: signed 30 s ago for 60 s');

  const served = frontLog.filter((e) => !e.refusal).length;
  note(`the front verified ${served} signatures and refused ${frontLog.length - served} requests:`);
  for (const e of frontLog.filter((x) => x.refusal)) note(`  ${e.method} ${e.url.split('?')[0]}: ${e.refusal[1]}`);

  // s3rver alone, without the front
  const direct = tampered.replace(`:${port}/`, `:${s3rverPort}/`);
  is(await curl('GET', direct), 200,
    's3rver by itself does not verify SigV4: it serves a GET with a tampered signature (hence the front)');
  const directExpired = expired.replace(`:${port}/`, `:${s3rverPort}/`);
  is(await curl('GET', directExpired), 403, 's3rver by itself does refuse an expired URL');
}

// ---- main --------------------------------------------------------------

(async () => {
  try {
    buildCli();
    await checkAwsExample();
    await checkSdk();
    checkErrors();
    await checkS3rver();
  } catch (e) {
    ok(false, 'no exception', e.stack);
  } finally {
    fs.rmSync(TMP, { recursive: true, force: true });
  }
  console.log(`1..${count}`);
  process.exitCode = failures ? 1 : 0;
})();
