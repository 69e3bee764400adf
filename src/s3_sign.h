/*-------------------------------------------------------------------------
 *
 * s3_sign.h
 *		Presigned S3 URLs (AWS Signature Version 4, query-string signing).
 *
 * Plain C with OpenSSL's libcrypto, no PostgreSQL headers and no palloc:
 * the extension links it, and so does the standalone test driver
 * test/s3/presign_cli.c.  Every function writes into a buffer that the
 * caller gives and allocates nothing.
 *
 * A presigned URL signs the host header only, with an UNSIGNED-PAYLOAD:
 * whoever holds the URL may GET (download) or PUT (upload) that one object
 * until it expires, with any body.  It works with any S3-compatible store
 * (AWS S3, MinIO, Ceph RGW, Cloudflare R2, s3rver).
 *
 *-------------------------------------------------------------------------
 */
#ifndef S3_SIGN_H
#define S3_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* Limits on the inputs (bytes). */
#define S3_SIGN_MAX_ENDPOINT	300
#define S3_SIGN_MAX_BUCKET		255
#define S3_SIGN_MAX_REGION		64
#define S3_SIGN_MAX_KEY			1024	/* S3's own limit on an object key */
#define S3_SIGN_MAX_ACCESS_KEY	128
#define S3_SIGN_MAX_SECRET		256
#define S3_SIGN_MAX_EXPIRES		604800	/* seven days, SigV4's limit */

/*
 * Room enough for any URL that s3_presign() can produce from inputs within
 * the limits above (each byte of the key may become three).
 */
#define S3_SIGN_URL_MAX			6144

/*
 * Where the store is and how to sign for it.
 *
 * endpoint: "http://" or "https://", a host (name, IPv4 address or [IPv6]
 * address), an optional ":port" and an optional final "/", nothing else,
 * e.g. "https://s3.eu-west-3.amazonaws.com" or "http://127.0.0.1:4569".  A
 * port that is the scheme's default (80, 443) is dropped.
 *
 * path_style: the bucket is the first segment of the path
 * (http://host/bucket/key); otherwise it is the first label of the host name
 * (virtual-hosted style, http://bucket.host/key), which needs a host name (not
 * an IP address) and a bucket name that is a valid DNS name, without dots
 * over https (a wildcard certificate covers one label).  The AWS SDKs fall
 * back to path style where virtual-hosted style cannot work; this module
 * returns S3_SIGN_EVHOST instead.
 */
typedef struct S3SignConfig
{
	const char *endpoint;
	const char *region;			/* e.g. "us-east-1"; R2 takes "auto" */
	const char *bucket;
	bool		path_style;
	const char *access_key_id;
	const char *secret_access_key;
} S3SignConfig;

/* Results: 0, or one of these (s3_sign_strerror() tells which). */
#define S3_SIGN_OK				0
#define S3_SIGN_EARG			(-1)	/* a NULL argument */
#define S3_SIGN_EMETHOD			(-2)	/* not GET, HEAD, PUT or DELETE */
#define S3_SIGN_EENDPOINT		(-3)	/* not http(s)://host[:port][/] */
#define S3_SIGN_EREGION			(-4)
#define S3_SIGN_EBUCKET			(-5)
#define S3_SIGN_EVHOST			(-6)	/* virtual-hosted style impossible */
#define S3_SIGN_EKEY			(-7)	/* empty, too long or not UTF-8 */
#define S3_SIGN_ECREDENTIALS	(-8)	/* empty or bad access key/secret */
#define S3_SIGN_EEXPIRES		(-9)	/* not in 1..604800 */
#define S3_SIGN_ETIME			(-10)	/* now is before 1970 or after 9999 */
#define S3_SIGN_ENOSPACE		(-11)	/* the output buffer is too small */
#define S3_SIGN_ECRYPTO			(-12)	/* an OpenSSL call failed */

extern const char *s3_sign_strerror(int code);

extern int	s3_object_url(const S3SignConfig *cfg, const char *key,
						  char *out, size_t outlen);

extern int	s3_presign(const S3SignConfig *cfg, const char *method,
					   const char *key, int expires_s, time_t now,
					   char *out, size_t outlen);

#endif							/* S3_SIGN_H */
