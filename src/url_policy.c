/*-------------------------------------------------------------------------
 *
 * url_policy.c
 *		Which image URLs may be sent to an AI provider.
 *
 * The provider fetches the image: a self-hosted model server (vLLM,
 * llama.cpp) fetches it from inside the operator's network.  So
 * create_batch refuses, by default, the URLs that name what is not on the
 * public internet or hides what it names:
 *	- a user name or password (user:pass@host);
 *	- localhost, and IP literals of loopback, private (RFC 1918), shared
 *	  (100.64/10), link-local (169.254/16, the cloud metadata address),
 *	  "this network", benchmarking, multicast and reserved ranges; IPv6
 *	  loopback, unspecified, link-local, unique-local and multicast, and
 *	  IPv4 addresses embedded in IPv6 (::ffff:a.b.c.d, 64:ff9b::a.b.c.d);
 *	- an IPv4 address written in another form than a.b.c.d (2130706433,
 *	  0x7f000001, 0177.0.0.1, 127.1): the provider's resolver reads them
 *	  as addresses, a reader does not;
 *	- a host that URL parsers may read otherwise than this file does: with
 *	  percent-encoding or non-ASCII characters (%31%32%37.0.0.1, full-width
 *	  digits; write an international name in its xn-- form), or longer than
 *	  a DNS name can be.  A backslash ends the host, as WHATWG parsers
 *	  (browsers, Node) read it.
 * moverz_batch.allowed_image_hosts lists hosts (names or literals, as in
 * the URL, without port) allowed anyway, e.g. an image store on a private
 * network that the provider is meant to reach.  A host name is not
 * resolved here: a name that resolves to a private address is the
 * provider's to refuse (documented in README.md).
 *
 *-------------------------------------------------------------------------
 */
#include "moverz_batch.h"

#include <arpa/inet.h>

/* Longest host we look at (a DNS name is at most 253 bytes). */
#define URL_MAX_HOST	255

/*
 * ipv4_refused
 *		Is this IPv4 address (network order bytes) not a public one?
 */
static bool
ipv4_refused(const unsigned char *a)
{
	return a[0] == 0 ||			/* "this network" */
		a[0] == 10 ||			/* private */
		(a[0] == 100 && (a[1] & 0xc0) == 64) || /* shared, carrier-grade NAT */
		a[0] == 127 ||			/* loopback */
		(a[0] == 169 && a[1] == 254) || /* link-local, cloud metadata */
		(a[0] == 172 && (a[1] & 0xf0) == 16) || /* private */
		(a[0] == 192 && a[1] == 0 && a[2] == 0) ||	/* IETF protocol */
		(a[0] == 192 && a[1] == 168) || /* private */
		(a[0] == 198 && (a[1] & 0xfe) == 18) || /* benchmarking */
		a[0] >= 224;			/* multicast, reserved, broadcast */
}

/*
 * ipv6_refused
 *		Is this IPv6 address not a public one?
 */
static bool
ipv6_refused(const unsigned char *a)
{
	static const unsigned char zero[12] = {0};
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};

	if (memcmp(a, zero, 12) == 0)	/* ::, ::1, and the old ::a.b.c.d */
		return true;
	if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0)
		return ipv4_refused(a + 12);
	return (a[0] & 0xfe) == 0xfc ||	/* unique local */
		(a[0] == 0xfe && (a[1] & 0xc0) == 0x80) ||	/* link-local */
		a[0] == 0xff;			/* multicast */
}

/*
 * host_allowed
 *		Is host one of moverz_batch.allowed_image_hosts (comma-separated,
 *		compared without case)?
 */
static bool
host_allowed(const char *host)
{
	const char *p = moverz_allowed_image_hosts;
	size_t		len = strlen(host);

	while (p != NULL && *p != '\0')
	{
		const char *end = strchr(p, ',');
		size_t		n = end ? (size_t) (end - p) : strlen(p);
		const char *q = p;

		while (n > 0 && *q == ' ')
			q++, n--;
		while (n > 0 && q[n - 1] == ' ')
			n--;
		if (n == len && pg_strncasecmp(q, host, n) == 0)
			return true;
		p = end ? end + 1 : NULL;
	}
	return false;
}

/*
 * looks_numeric
 *		Could inet_aton() read this host as an IPv4 address (digits, dots,
 *		x and hex letters only)?
 */
static bool
looks_numeric(const char *host)
{
	for (const char *c = host; *c; c++)
		if (!((*c >= '0' && *c <= '9') || *c == '.' || *c == 'x' ||
			  (*c >= 'a' && *c <= 'f')))
			return false;
	return true;
}

/*
 * url_host_refused
 *		Why the image URL s (len bytes, already known to be http or https)
 *		may not be sent to a provider, as the end of "assets[i].url ...",
 *		or NULL when it may.
 */
const char *
url_host_refused(const char *s, int len)
{
	char		host[URL_MAX_HOST + 1];
	int			start = (len >= 8 && pg_strncasecmp(s, "https://", 8) == 0) ? 8 : 7;
	int			end = start;
	int			hlen;
	unsigned char addr[16];
	struct in_addr legacy;

	while (end < len && s[end] != '/' && s[end] != '?' && s[end] != '#' && s[end] != '\\')
		end++;
	if (memchr(s + start, '@', end - start) != NULL)
		return "must not carry a user name or password (user:password@)";
	if (s[start] == '[')
	{
		const char *close = memchr(s + start, ']', end - start);

		hlen = close ? (int) (close - (s + start)) - 1 : -1;
		start++;
	}
	else
	{
		const char *colon = memchr(s + start, ':', end - start);

		hlen = colon ? (int) (colon - (s + start)) : end - start;
	}
	if (hlen <= 0)
		return NULL;			/* url_ok() judged the rest */
	if (hlen > URL_MAX_HOST)
		return "must name a host of at most 255 bytes";
	for (int i = 0; i < hlen; i++)
		host[i] = pg_ascii_tolower((unsigned char) s[start + i]);
	host[hlen] = '\0';
	while (hlen > 1 && host[hlen - 1] == '.')
		host[--hlen] = '\0';
	if (host_allowed(host))
		return NULL;
	for (int i = 0; i < hlen; i++)
		if (host[i] == '%' || (unsigned char) host[i] >= 0x80)
			return "must name its host in plain ASCII (no percent-encoding; an international name in its xn-- form)";
	if (strcmp(host, "localhost") == 0 ||
		(hlen > 10 && strcmp(host + hlen - 10, ".localhost") == 0))
		return "must not name localhost";
	if (inet_pton(AF_INET6, host, addr) == 1)
		return ipv6_refused(addr) ?
			"must not name a loopback, private, link-local or reserved address" : NULL;
	if (!looks_numeric(host))
		return NULL;
	if (inet_pton(AF_INET, host, addr) == 1)
		return ipv4_refused(addr) ?
			"must not name a loopback, private, link-local or reserved address" : NULL;
	if (inet_aton(host, &legacy) != 0)
		return "must write an IPv4 address as a.b.c.d (not in hex, octal, decimal or short form)";
	return NULL;
}
