/*
 * s3_front.js
 *		A front for s3rver (which does not verify SigV4 signatures: "Signature
 *		version 4 calculation is unimplemented") that verifies each presigned
 *		request as S3 does, with the AWS SDK's own signer, and hands the good
 *		ones to s3rver.  Used by presign_check.js and s3_server.js.
 */
'use strict';

const http = require('node:http');
const { SignatureV4 } = require('@smithy/signature-v4');
const { Sha256 } = require('@smithy/core/checksum');
const { HttpRequest } = require('@smithy/core/protocols');

const S3RVER_KEYS = { akid: 'S3RVER', secret: 'S3RVER' };
const ACCOUNTS = new Map([[S3RVER_KEYS.akid, S3RVER_KEYS.secret]]);

function rfc3986(s) {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

// Verify a presigned request as S3 does: recompute its signature from the
// request as received (method, decoded path encoded again, query, signed
// headers) with the SDK's SigV4 signer.  null when it is good, else why.
async function verifyPresigned(req) {
  const qi = req.url.indexOf('?');
  const rawPath = qi < 0 ? req.url : req.url.slice(0, qi);
  const q = {};
  for (const part of (qi < 0 ? '' : req.url.slice(qi + 1)).split('&').filter(Boolean)) {
    const i = part.indexOf('=');
    q[decodeURIComponent(i < 0 ? part : part.slice(0, i))] = i < 0 ? '' : decodeURIComponent(part.slice(i + 1));
  }
  if (!('X-Amz-Signature' in q)) return [403, 'AccessDenied', 'this server takes presigned requests only'];
  for (const p of ['X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires', 'X-Amz-SignedHeaders']) {
    if (!(p in q)) return [400, 'AuthorizationQueryParametersError', `${p} missing`];
  }
  const [akid, day, region, service, terminator] = q['X-Amz-Credential'].split('/');
  const m = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/.exec(q['X-Amz-Date']);
  if (!m || q['X-Amz-Algorithm'] !== 'AWS4-HMAC-SHA256' || terminator !== 'aws4_request' || !day) {
    return [400, 'AuthorizationQueryParametersError', 'malformed'];
  }
  if (!ACCOUNTS.has(akid)) return [403, 'InvalidAccessKeyId', akid];
  const signingDate = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]));
  const headers = { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' };
  for (const h of q['X-Amz-SignedHeaders'].split(';')) headers[h] = req.headers[h] ?? '';
  const query = { ...q };
  delete query['X-Amz-Signature'];
  const signer = new SignatureV4({ service, region, sha256: Sha256, uriEscapePath: false, applyChecksum: false,
    credentials: { accessKeyId: akid, secretAccessKey: ACCOUNTS.get(akid) } });
  const signed = await signer.presign(new HttpRequest({
    method: req.method, protocol: 'http:', hostname: 'unused', headers, query,
    path: rawPath.split('/').map((seg) => rfc3986(decodeURIComponent(seg))).join('/'),
  }), { signingDate, expiresIn: Number(q['X-Amz-Expires']),
    unhoistableHeaders: new Set(['x-amz-content-sha256']), unsignableHeaders: new Set(['x-amz-content-sha256']) });
  for (const p of ['X-Amz-Credential', 'X-Amz-SignedHeaders', 'X-Amz-Signature']) {
    if (signed.query[p] !== q[p]) return [403, 'SignatureDoesNotMatch', `${p}: expected ${signed.query[p]}`];
  }
  return null;
}

const frontLog = [];


// startFront(s3rverHandler[, own]): own(req, res), when given, answers first
// the requests it takes (it resolves true), unsigned.
function startFront(s3rverHandler, own) {
  const server = http.createServer(async (req, res) => {
    if (own && await own(req, res).catch(() => false)) return;
    verifyPresigned(req).catch((e) => [400, 'InvalidRequest', e.message]).then((refusal) => {
      frontLog.push({ method: req.method, url: req.url, refusal });
      if (!refusal) return s3rverHandler(req, res);
      const [status, code, message] = refusal;
      res.writeHead(status, { 'Content-Type': 'application/xml' });
      res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`);
      return undefined;
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}


module.exports = { S3RVER_KEYS, ACCOUNTS, verifyPresigned, frontLog, startFront };
