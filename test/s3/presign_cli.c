/*-------------------------------------------------------------------------
 *
 * presign_cli.c
 *		Command-line driver of src/s3_sign.c for the tests of test/s3/.
 *
 *	presign_cli -e ENDPOINT -r REGION -b BUCKET [-P] -a ACCESS_KEY_ID
 *				-s SECRET -m METHOD -k KEY -x EXPIRES -t UNIX_TIME [-l OUTLEN]
 *	presign_cli -u -e ENDPOINT -r REGION -b BUCKET [-P] -k KEY [-l OUTLEN]
 *
 * prints the presigned URL (or with -u the unsigned object URL) and a
 * newline.  -l gives the module an output buffer of OUTLEN bytes instead of
 * S3_SIGN_URL_MAX.  -P is path style; without it, virtual-hosted style.  On an
 * error of the module, prints "error CODE: message" to stderr and exits 1;
 * on a usage error, exits 2.
 *
 * Built by test/s3/presign_check.js:
 *	cc -Wall -Wextra -Werror -I src -o presign_cli test/s3/presign_cli.c \
 *		src/s3_sign.c -lcrypto
 *
 *-------------------------------------------------------------------------
 */
#include "s3_sign.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/*
 * usage
 *		Tell how to call this program, and exit 2.
 */
static void
usage(void)
{
	fprintf(stderr,
			"usage: presign_cli -e ENDPOINT -r REGION -b BUCKET [-P] -a ACCESS_KEY_ID\n"
			"                   -s SECRET -m METHOD -k KEY -x EXPIRES -t UNIX_TIME [-l OUTLEN]\n"
			"       presign_cli -u -e ENDPOINT -r REGION -b BUCKET [-P] -k KEY [-l OUTLEN]\n");
	exit(2);
}

/*
 * parse_long
 *		A whole decimal number from an argument, or usage().
 */
static long long
parse_long(const char *s)
{
	char	   *end;
	long long	v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0')
		usage();
	return v;
}

int
main(int argc, char **argv)
{
	S3SignConfig cfg = {0};
	const char *method = NULL;
	const char *key = NULL;
	long long	expires = 0;
	long long	now = 0;
	int			unsigned_url = 0;
	char		url[S3_SIGN_URL_MAX];
	long long	outlen = sizeof(url);
	int			opt;
	int			rc;

	while ((opt = getopt(argc, argv, "e:r:b:Pa:s:m:k:x:t:ul:")) != -1)
	{
		switch (opt)
		{
			case 'e': cfg.endpoint = optarg; break;
			case 'r': cfg.region = optarg; break;
			case 'b': cfg.bucket = optarg; break;
			case 'P': cfg.path_style = true; break;
			case 'a': cfg.access_key_id = optarg; break;
			case 's': cfg.secret_access_key = optarg; break;
			case 'm': method = optarg; break;
			case 'k': key = optarg; break;
			case 'x': expires = parse_long(optarg); break;
			case 't': now = parse_long(optarg); break;
			case 'u': unsigned_url = 1; break;
			case 'l': outlen = parse_long(optarg); break;
			default: usage();
		}
	}
	if (optind != argc || outlen < 0 || outlen > (long long) sizeof(url))
		usage();
	if (expires < -1 || expires > 0x7fffffff)
		expires = -1;			/* out of range for the module as well */

	if (unsigned_url)
		rc = s3_object_url(&cfg, key, url, (size_t) outlen);
	else
		rc = s3_presign(&cfg, method, key, (int) expires, (time_t) now,
						url, (size_t) outlen);
	if (rc != S3_SIGN_OK)
	{
		fprintf(stderr, "error %d: %s\n", rc, s3_sign_strerror(rc));
		return 1;
	}
	printf("%s\n", url);
	return 0;
}
