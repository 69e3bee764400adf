/*-------------------------------------------------------------------------
 *
 * s3_sign.c
 *		Presigned S3 URLs (AWS Signature Version 4, query-string signing).
 *
 * The signature follows AWS's "Authenticating Requests: Using Query
 * Parameters (AWS Signature Version 4)":
 *
 *	canonical request = METHOD \n path \n query \n "host:" host \n \n
 *						"host" \n "UNSIGNED-PAYLOAD"
 *	string to sign	  = "AWS4-HMAC-SHA256" \n date-time \n scope \n
 *						hex(SHA-256(canonical request))
 *	signing key		  = HMAC chain of "AWS4" secret, date, region, "s3",
 *						"aws4_request"
 *	signature		  = hex(HMAC-SHA256(signing key, string to sign))
 *
 * The path is the object key URI-encoded once (S3 does not double-encode):
 * every byte but the unreserved A-Z a-z 0-9 - _ . ~ and the "/" between
 * segments becomes %XX.  The query parameters are X-Amz-Algorithm,
 * X-Amz-Credential, X-Amz-Date, X-Amz-Expires and X-Amz-SignedHeaders,
 * sorted, and the URL carries them with X-Amz-Signature in sorted place:
 * the form that the AWS SDK for JavaScript v3 produces (test/s3/ checks
 * that byte for byte).  The host header carries the port when it is not
 * the scheme's default.
 *
 * SHA-256 and HMAC-SHA256 are OpenSSL's (EVP_Digest, HMAC); the secret and
 * the keys derived from it are wiped from the stack before returning.
 *
 *-------------------------------------------------------------------------
 */
#include "s3_sign.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define S3_SHA256_LEN	32

/* Room for a canonical request or a string to sign within the limits. */
#define S3_WORK_LEN		8192

/*
 * An output buffer that remembers whether anything did not fit.
 */
typedef struct S3Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;			/* bytes of data, the final NUL included */
	bool		overflow;
} S3Buf;

/*
 * The parts of the endpoint setting that a URL is made of.
 */
typedef struct S3Endpoint
{
	bool		https;
	bool		ip_literal;		/* an IPv4 or [IPv6] address, not a name */
	char		host[S3_SIGN_MAX_ENDPOINT + 1]; /* lower case, no port */
	char		port[6];		/* empty when it is the scheme's default */
} S3Endpoint;

/*
 * What one request signs: built by s3_prepare() for both public functions.
 */
typedef struct S3Request
{
	S3Endpoint	ep;
	char		host[S3_SIGN_MAX_ENDPOINT + S3_SIGN_MAX_BUCKET + 8];
	char		path[2 + S3_SIGN_MAX_BUCKET + 3 * S3_SIGN_MAX_KEY + 1];
} S3Request;

static const char hexdigits[] = "0123456789ABCDEF";

/*
 * s3_sign_strerror
 *		A message for a result of this module's functions.
 */
const char *
s3_sign_strerror(int code)
{
	switch (code)
	{
		case S3_SIGN_OK:
			return "success";
		case S3_SIGN_EARG:
			return "missing argument";
		case S3_SIGN_EMETHOD:
			return "method must be GET, HEAD, PUT or DELETE";
		case S3_SIGN_EENDPOINT:
			return "endpoint must be http(s)://host[:port][/]";
		case S3_SIGN_EREGION:
			return "region must be 1 to 64 characters of A-Z a-z 0-9 . _ -";
		case S3_SIGN_EBUCKET:
			return "bucket must be 1 to 255 characters of A-Z a-z 0-9 . _ -";
		case S3_SIGN_EVHOST:
			return "virtual-hosted style needs a host name endpoint and a bucket name that is a DNS name (3 to 63 characters of a-z 0-9 . -, no dot over https): use path style";
		case S3_SIGN_EKEY:
			return "object key must be 1 to 1024 bytes of valid UTF-8";
		case S3_SIGN_ECREDENTIALS:
			return "access key id (1 to 128 printable ASCII characters) and secret access key (1 to 256 bytes) are required";
		case S3_SIGN_EEXPIRES:
			return "expiry must be from 1 to 604800 seconds";
		case S3_SIGN_ETIME:
			return "signing time out of range";
		case S3_SIGN_ENOSPACE:
			return "output buffer too small";
		case S3_SIGN_ECRYPTO:
			return "OpenSSL failure";
	}
	return "unknown error";
}

/*
 * buf_init
 *		Make an empty buffer of data[0..cap-1].
 */
static void
buf_init(S3Buf *buf, char *data, size_t cap)
{
	buf->data = data;
	buf->len = 0;
	buf->cap = cap;
	buf->overflow = (cap == 0);
	if (cap > 0)
		data[0] = '\0';
}

/*
 * buf_putn
 *		Append n bytes, or mark the buffer overflowed if they do not fit.
 */
static void
buf_putn(S3Buf *buf, const char *s, size_t n)
{
	if (buf->overflow || n >= buf->cap - buf->len)
	{
		buf->overflow = true;
		return;
	}
	memcpy(buf->data + buf->len, s, n);
	buf->len += n;
	buf->data[buf->len] = '\0';
}

/*
 * buf_puts
 *		Append a NUL-terminated string.
 */
static void
buf_puts(S3Buf *buf, const char *s)
{
	buf_putn(buf, s, strlen(s));
}

/*
 * buf_finish
 *		S3_SIGN_OK if everything fitted; else S3_SIGN_ENOSPACE, and the buffer
 *		is left empty rather than holding a truncated URL.
 */
static int
buf_finish(S3Buf *buf)
{
	if (!buf->overflow)
		return S3_SIGN_OK;
	if (buf->cap > 0)
		buf->data[0] = '\0';
	return S3_SIGN_ENOSPACE;
}

/*
 * is_unreserved
 *		Is this byte kept as it is by SigV4's URI encoding?
 */
static bool
is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		(c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~';
}

/*
 * buf_encode
 *		Append s URI-encoded as SigV4 wants it: unreserved bytes as they are,
 *		"/" as it is if keep_slash (an object key), every other byte as %XX
 *		with upper-case hex digits.
 */
static void
buf_encode(S3Buf *buf, const char *s, bool keep_slash)
{
	const unsigned char *p;

	for (p = (const unsigned char *) s; *p; p++)
	{
		if (is_unreserved(*p) || (keep_slash && *p == '/'))
			buf_putn(buf, (const char *) p, 1);
		else
		{
			char		esc[3];

			esc[0] = '%';
			esc[1] = hexdigits[*p >> 4];
			esc[2] = hexdigits[*p & 0x0f];
			buf_putn(buf, esc, 3);
		}
	}
}

/*
 * utf8_valid
 *		Is s well-formed UTF-8: no stray continuation byte, no overlong form,
 *		no surrogate, nothing above U+10FFFF?
 */
static bool
utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *) s;

	while (*p)
	{
		unsigned char c = *p;
		int			n;
		unsigned char lo = 0x80,
					hi = 0xbf;

		if (c < 0x80)
		{
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1;
		else if (c >= 0xe0 && c <= 0xef)
		{
			n = 2;
			if (c == 0xe0)
				lo = 0xa0;		/* overlong */
			else if (c == 0xed)
				hi = 0x9f;		/* surrogates */
		}
		else if (c >= 0xf0 && c <= 0xf4)
		{
			n = 3;
			if (c == 0xf0)
				lo = 0x90;		/* overlong */
			else if (c == 0xf4)
				hi = 0x8f;		/* above U+10FFFF */
		}
		else
			return false;
		p++;
		if (*p < lo || *p > hi)
			return false;
		for (p++, n--; n > 0; p++, n--)
			if (*p < 0x80 || *p > 0xbf)
				return false;
	}
	return true;
}

/*
 * chars_in
 *		Is s made of 1 to maxlen bytes, each of them alphanumeric or in extra?
 */
static bool
chars_in(const char *s, size_t maxlen, const char *extra)
{
	size_t		len = strlen(s);
	size_t		i;

	if (len == 0 || len > maxlen)
		return false;
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			  (c >= '0' && c <= '9') || strchr(extra, c) != NULL))
			return false;
	}
	return true;
}

/*
 * printable_ascii
 *		Is s made of 1 to maxlen printable ASCII characters, space excluded?
 */
static bool
printable_ascii(const char *s, size_t maxlen)
{
	size_t		len = strlen(s);
	size_t		i;

	if (len == 0 || len > maxlen)
		return false;
	for (i = 0; i < len; i++)
		if ((unsigned char) s[i] <= 0x20 || (unsigned char) s[i] >= 0x7f)
			return false;
	return true;
}

/*
 * parse_port
 *		Read a port number (1 to 65535) from s[0..len-1] into ep->port,
 *		left empty when it is the scheme's default.
 */
static bool
parse_port(const char *s, size_t len, S3Endpoint *ep)
{
	long		port = 0;
	size_t		i;

	if (len == 0 || len > 5)
		return false;
	for (i = 0; i < len; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		port = port * 10 + (s[i] - '0');
	}
	if (port < 1 || port > 65535)
		return false;
	if (port != (ep->https ? 443 : 80))
		snprintf(ep->port, sizeof(ep->port), "%ld", port);
	return true;
}

/*
 * host_char_ok
 *		May this byte be in a host: a DNS name or an IPv4 address (letters,
 *		digits, "-" and "."), or inside the brackets of an IPv6 address (hex
 *		digits, ":" and ".")?
 */
static bool
host_char_ok(unsigned char c, bool ipv6)
{
	unsigned char lc = c | 0x20;	/* lower case of a letter */

	if ((c >= '0' && c <= '9') || c == '.')
		return true;
	if (ipv6)
		return c == ':' || (lc >= 'a' && lc <= 'f');
	return c == '-' || (lc >= 'a' && lc <= 'z');
}

/*
 * parse_host
 *		Copy the host s[0..len-1] to ep->host in lower case, and tell whether
 *		it is an IP address.
 */
static bool
parse_host(const char *s, size_t len, S3Endpoint *ep)
{
	bool		ipv6 = (len > 0 && s[0] == '[');
	bool		ipv4 = true;
	size_t		i;

	if (len == 0 || len > S3_SIGN_MAX_ENDPOINT ||
		(ipv6 && (len < 4 || s[len - 1] != ']')))
		return false;
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];
		bool		bracket = ipv6 && (i == 0 || i == len - 1);

		if (!bracket && !host_char_ok(c, ipv6))
			return false;
		if ((c < '0' || c > '9') && c != '.')
			ipv4 = false;
		ep->host[i] = (char) ((c >= 'A' && c <= 'Z') ? (c | 0x20) : c);
	}
	ep->host[len] = '\0';
	if (!ipv6 && (s[0] == '.' || s[0] == '-' || strstr(ep->host, "..")))
		return false;
	ep->ip_literal = ipv6 || ipv4;
	return true;
}

/*
 * parse_endpoint
 *		Split "http(s)://host[:port][/]" into ep.
 */
static bool
parse_endpoint(const char *endpoint, S3Endpoint *ep)
{
	const char *p;
	const char *bracket;
	const char *colon;
	size_t		len;

	memset(ep, 0, sizeof(*ep));
	if (strlen(endpoint) > S3_SIGN_MAX_ENDPOINT)
		return false;
	if (strncmp(endpoint, "https://", 8) == 0)
	{
		ep->https = true;
		p = endpoint + 8;
	}
	else if (strncmp(endpoint, "http://", 7) == 0)
		p = endpoint + 7;
	else
		return false;

	len = strlen(p);
	if (len > 0 && p[len - 1] == '/')
		len--;
	/* the port's colon is the first one after the "]" of an IPv6 address */
	bracket = memchr(p, ']', len);
	if (bracket == NULL)
		bracket = p;
	colon = memchr(bracket, ':', len - (size_t) (bracket - p));
	if (colon == NULL)
		return parse_host(p, len, ep);
	return parse_host(p, (size_t) (colon - p), ep) &&
		parse_port(colon + 1, len - (size_t) (colon - p) - 1, ep);
}

/*
 * bucket_is_dns_name
 *		Can this bucket be the first label of a host name: 3 to 63 characters
 *		of a-z 0-9 . -, beginning and ending with a letter or digit, with no
 *		empty label?
 */
static bool
bucket_is_dns_name(const char *bucket)
{
	size_t		len = strlen(bucket);

	return chars_in(bucket, 63, ".-") && len >= 3 &&
		strpbrk(bucket, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == NULL &&
		bucket[0] != '.' && bucket[0] != '-' &&
		bucket[len - 1] != '.' && bucket[len - 1] != '-' &&
		strstr(bucket, "..") == NULL && strstr(bucket, ".-") == NULL &&
		strstr(bucket, "-.") == NULL;
}

/*
 * s3_prepare
 *		Check the configuration and the key, and build the host header and the
 *		URI-encoded path of the object into req.
 */
static int
s3_prepare(const S3SignConfig *cfg, const char *key, S3Request *req)
{
	S3Buf		host;
	S3Buf		path;

	if (cfg == NULL || key == NULL || cfg->endpoint == NULL ||
		cfg->region == NULL || cfg->bucket == NULL)
		return S3_SIGN_EARG;
	if (!parse_endpoint(cfg->endpoint, &req->ep))
		return S3_SIGN_EENDPOINT;
	if (!chars_in(cfg->region, S3_SIGN_MAX_REGION, "._-"))
		return S3_SIGN_EREGION;
	if (!chars_in(cfg->bucket, S3_SIGN_MAX_BUCKET, "._-"))
		return S3_SIGN_EBUCKET;
	/*
	 * A bucket in the host name must be a DNS label or labels; over https,
	 * one label only, as a wildcard certificate (*.s3.amazonaws.com) covers
	 * no more.  The AWS SDKs fall back to path style then: we say so.
	 */
	if (!cfg->path_style &&
		(req->ep.ip_literal || !bucket_is_dns_name(cfg->bucket) ||
		 (req->ep.https && strchr(cfg->bucket, '.') != NULL)))
		return S3_SIGN_EVHOST;
	if (key[0] == '\0' || strlen(key) > S3_SIGN_MAX_KEY || !utf8_valid(key))
		return S3_SIGN_EKEY;

	buf_init(&host, req->host, sizeof(req->host));
	if (!cfg->path_style)
	{
		buf_puts(&host, cfg->bucket);
		buf_puts(&host, ".");
	}
	buf_puts(&host, req->ep.host);
	if (req->ep.port[0] != '\0')
	{
		buf_puts(&host, ":");
		buf_puts(&host, req->ep.port);
	}

	buf_init(&path, req->path, sizeof(req->path));
	if (cfg->path_style)
	{
		buf_puts(&path, "/");
		buf_puts(&path, cfg->bucket);
	}
	buf_puts(&path, "/");
	buf_encode(&path, key, true);
	/* the limits on the inputs leave room enough: cannot happen */
	return (host.overflow || path.overflow) ? S3_SIGN_ENOSPACE : S3_SIGN_OK;
}

/*
 * s3_object_url
 *		Write the URL of an object, without any signature, to out: what a
 *		public bucket serves, or what to show in a log.
 */
int
s3_object_url(const S3SignConfig *cfg, const char *key, char *out,
			  size_t outlen)
{
	S3Request	req;
	S3Buf		buf;
	int			rc;

	if (out == NULL)
		return S3_SIGN_EARG;
	rc = s3_prepare(cfg, key, &req);
	if (rc != S3_SIGN_OK)
		return rc;
	buf_init(&buf, out, outlen);
	buf_puts(&buf, req.ep.https ? "https://" : "http://");
	buf_puts(&buf, req.host);
	buf_puts(&buf, req.path);
	return buf_finish(&buf);
}

/*
 * hmac_sha256
 *		out = HMAC-SHA256(key, data), checking what OpenSSL returns.
 */
static bool
hmac_sha256(const unsigned char *key, size_t keylen, const char *data,
			unsigned char out[S3_SHA256_LEN])
{
	unsigned int outlen = 0;

	if (keylen > (size_t) 0x7fffffff)
		return false;
	if (HMAC(EVP_sha256(), key, (int) keylen, (const unsigned char *) data,
			 strlen(data), out, &outlen) == NULL)
		return false;
	return outlen == S3_SHA256_LEN;
}

/*
 * to_hex
 *		Write n bytes as 2n lower-case hex digits and a NUL.
 */
static void
to_hex(const unsigned char *bytes, size_t n, char *out)
{
	static const char lower[] = "0123456789abcdef";
	size_t		i;

	for (i = 0; i < n; i++)
	{
		out[2 * i] = lower[bytes[i] >> 4];
		out[2 * i + 1] = lower[bytes[i] & 0x0f];
	}
	out[2 * n] = '\0';
}

/*
 * sha256_hex
 *		out = hex(SHA-256(data)), 64 digits and a NUL.
 */
static bool
sha256_hex(const char *data, char out[2 * S3_SHA256_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_Digest(data, strlen(data), md, &mdlen, EVP_sha256(), NULL) != 1 ||
		mdlen != S3_SHA256_LEN)
		return false;
	to_hex(md, S3_SHA256_LEN, out);
	return true;
}

/*
 * sign
 *		out = hex(HMAC-SHA256(signing key, string_to_sign)), where the signing
 *		key is derived from the secret for this day, region and service "s3".
 */
static bool
sign(const char *secret, const char *datestamp, const char *region,
	 const char *string_to_sign, char out[2 * S3_SHA256_LEN + 1])
{
	char		ksecret[4 + S3_SIGN_MAX_SECRET + 1];
	unsigned char k1[S3_SHA256_LEN];
	unsigned char k2[S3_SHA256_LEN];
	bool		ok;

	memcpy(ksecret, "AWS4", 4);
	memcpy(ksecret + 4, secret, strlen(secret) + 1);
	ok = hmac_sha256((unsigned char *) ksecret, strlen(ksecret), datestamp, k1) &&
		hmac_sha256(k1, S3_SHA256_LEN, region, k2) &&
		hmac_sha256(k2, S3_SHA256_LEN, "s3", k1) &&
		hmac_sha256(k1, S3_SHA256_LEN, "aws4_request", k2) &&
		hmac_sha256(k2, S3_SHA256_LEN, string_to_sign, k1);
	if (ok)
		to_hex(k1, S3_SHA256_LEN, out);
	OPENSSL_cleanse(ksecret, sizeof(ksecret));
	OPENSSL_cleanse(k1, sizeof(k1));
	OPENSSL_cleanse(k2, sizeof(k2));
	return ok;
}

/*
 * check_presign_args
 *		Check what s3_presign() takes besides the bucket and the key, and
 *		write the date (yyyymmdd) and date-time (yyyymmddThhmmssZ) of now.
 */
static int
check_presign_args(const S3SignConfig *cfg, const char *method, int expires_s,
				   time_t now, char datestamp[9], char amzdate[17])
{
	struct tm	tm;
	size_t		secret_len;

	if (cfg == NULL || method == NULL || cfg->access_key_id == NULL ||
		cfg->secret_access_key == NULL)
		return S3_SIGN_EARG;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 &&
		strcmp(method, "PUT") != 0 && strcmp(method, "DELETE") != 0)
		return S3_SIGN_EMETHOD;
	secret_len = strlen(cfg->secret_access_key);
	if (!printable_ascii(cfg->access_key_id, S3_SIGN_MAX_ACCESS_KEY) ||
		secret_len == 0 || secret_len > S3_SIGN_MAX_SECRET)
		return S3_SIGN_ECREDENTIALS;
	if (expires_s < 1 || expires_s > S3_SIGN_MAX_EXPIRES)
		return S3_SIGN_EEXPIRES;
	if (now < 0 || gmtime_r(&now, &tm) == NULL || tm.tm_year + 1900 > 9999)
		return S3_SIGN_ETIME;
	if (strftime(datestamp, 9, "%Y%m%d", &tm) != 8 ||
		strftime(amzdate, 17, "%Y%m%dT%H%M%SZ", &tm) != 16)
		return S3_SIGN_ETIME;
	return S3_SIGN_OK;
}

/*
 * build_query
 *		The canonical query string of a presigned request, the signature
 *		apart: its parameters sorted by name, names and values URI-encoded.
 */
static void
build_query(S3Buf *buf, const S3SignConfig *cfg, const char *datestamp,
			const char *amzdate, int expires_s)
{
	char		expires[16];
	char		credential[S3_SIGN_MAX_ACCESS_KEY + S3_SIGN_MAX_REGION + 32];

	snprintf(expires, sizeof(expires), "%d", expires_s);
	snprintf(credential, sizeof(credential), "%s/%s/%s/s3/aws4_request",
			 cfg->access_key_id, datestamp, cfg->region);

	buf_puts(buf, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=");
	buf_encode(buf, credential, false);
	buf_puts(buf, "&X-Amz-Date=");
	buf_puts(buf, amzdate);
	buf_puts(buf, "&X-Amz-Expires=");
	buf_puts(buf, expires);
}

/*
 * s3_presign
 *		Write to out a URL that allows method (GET, HEAD, PUT or DELETE) on
 *		the object key for expires_s seconds from now, signed with the
 *		configuration's credentials.  Returns 0 or an S3_SIGN_E* code (out is
 *		then not a URL).
 */
int
s3_presign(const S3SignConfig *cfg, const char *method, const char *key,
		   int expires_s, time_t now, char *out, size_t outlen)
{
	S3Request	req;
	char		datestamp[9];
	char		amzdate[17];
	char		query[S3_WORK_LEN];
	char		work[S3_WORK_LEN];
	char		hash[2 * S3_SHA256_LEN + 1];
	char		signature[2 * S3_SHA256_LEN + 1];
	S3Buf		qbuf;
	S3Buf		buf;
	int			rc;

	if (out == NULL)
		return S3_SIGN_EARG;
	rc = check_presign_args(cfg, method, expires_s, now, datestamp, amzdate);
	if (rc == S3_SIGN_OK)
		rc = s3_prepare(cfg, key, &req);
	if (rc != S3_SIGN_OK)
		return rc;

	buf_init(&qbuf, query, sizeof(query));
	build_query(&qbuf, cfg, datestamp, amzdate, expires_s);

	/* the canonical request, then its hash */
	buf_init(&buf, work, sizeof(work));
	buf_puts(&buf, method);
	buf_puts(&buf, "\n");
	buf_puts(&buf, req.path);
	buf_puts(&buf, "\n");
	buf_puts(&buf, query);
	buf_puts(&buf, "&X-Amz-SignedHeaders=host\nhost:");
	buf_puts(&buf, req.host);
	buf_puts(&buf, "\n\nhost\nUNSIGNED-PAYLOAD");
	if (qbuf.overflow || buf.overflow)
		return S3_SIGN_ENOSPACE;	/* not within the limits: cannot happen */
	if (!sha256_hex(work, hash))
		return S3_SIGN_ECRYPTO;

	/* the string to sign, then the signature */
	buf_init(&buf, work, sizeof(work));
	buf_puts(&buf, "AWS4-HMAC-SHA256\n");
	buf_puts(&buf, amzdate);
	buf_puts(&buf, "\n");
	buf_puts(&buf, datestamp);
	buf_puts(&buf, "/");
	buf_puts(&buf, cfg->region);
	buf_puts(&buf, "/s3/aws4_request\n");
	buf_puts(&buf, hash);
	if (buf.overflow)
		return S3_SIGN_ENOSPACE;
	if (!sign(cfg->secret_access_key, datestamp, cfg->region, work, signature))
		return S3_SIGN_ECRYPTO;

	buf_init(&buf, out, outlen);
	buf_puts(&buf, req.ep.https ? "https://" : "http://");
	buf_puts(&buf, req.host);
	buf_puts(&buf, req.path);
	buf_puts(&buf, "?");
	buf_puts(&buf, query);
	buf_puts(&buf, "&X-Amz-Signature=");
	buf_puts(&buf, signature);
	buf_puts(&buf, "&X-Amz-SignedHeaders=host");
	return buf_finish(&buf);
}
