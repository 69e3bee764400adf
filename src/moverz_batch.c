/*-------------------------------------------------------------------------
 *
 * moverz_batch.c
 *		Module entry point: configuration (GUCs), shared memory hooks and
 *		registration of the background workers.
 *
 * The extension must be loaded through shared_preload_libraries: its
 * workers are static background workers and its wake-up state lives in
 * shared memory.
 *
 *-------------------------------------------------------------------------
 */
#include "moverz_batch.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

/* GUC variables, documented in README.md. */
char	   *moverz_database = NULL;
int			moverz_workers = 1;
char	   *moverz_ai_service_url = NULL;
char	   *moverz_ai_api_key = NULL;
char	   *moverz_ai_api_key_file = NULL;
int			moverz_ai_provider = AI_PROVIDER_MOVERZ;
char	   *moverz_ai_model = NULL;
int			moverz_ai_max_tokens = 1024;
char	   *moverz_anthropic_version = NULL;
int			moverz_openai_max_tokens_field = 0;
char	   *moverz_ai_system_prompt = NULL;
int			moverz_max_inflight = 64;
int			moverz_request_timeout_ms = 60000;
int			moverz_connect_timeout_ms = 10000;
int			moverz_max_attempts = 3;
int			moverz_retry_backoff_ms = 5000;
int			moverz_lease_timeout_ms = 300000;
int			moverz_poll_interval_ms = 1000;
int			moverz_max_batch_size = 1000;
int			moverz_writeback_batch = 64;
int			moverz_max_inflight_per_user = 0;
int			moverz_max_requests_per_second = 0;
int			moverz_claim_ahead = -1;
int			moverz_max_retry_after_ms = 60000;
int			moverz_outage_max_wait_ms = 3600000;
char	   *moverz_allowed_image_hosts = NULL;
int			moverz_max_photos_per_user_per_day = 0;
char	   *moverz_publish_url = NULL;
int			moverz_publish_queue_size = 1024;
int			moverz_upload_url_ttl_s = 900;
int			moverz_max_upload_bytes = 5 * 1024 * 1024;
int			moverz_max_inflight_bytes = 128 * 1024 * 1024;
char	   *moverz_upload_base_url = NULL;
int			moverz_object_store = MOVERZ_STORE_DATABASE;
char	   *moverz_s3_endpoint = NULL;
char	   *moverz_s3_region = NULL;
char	   *moverz_s3_bucket = NULL;
bool		moverz_s3_path_style = false;
char	   *moverz_s3_access_key_id = NULL;
char	   *moverz_s3_secret_access_key = NULL;

static const struct config_enum_entry object_store_options[] = {
	{"database", MOVERZ_STORE_DATABASE, false},
	{"s3", MOVERZ_STORE_S3, false},
	{NULL, 0, false}
};

#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void		_PG_init(void);

static void define_worker_settings(void);
static void define_guard_settings(void);

/*
 * define_upload_settings
 *		Declare the settings of direct uploads (sql/src/45_uploads.sql).
 */
static void
define_upload_settings(void)
{
	DefineCustomIntVariable("moverz_batch.upload_url_ttl",
							"How long an upload URL of request_uploads stays valid.",
							"An upload not attached to a batch by then is deleted.",
							&moverz_upload_url_ttl_s, 900, 10, 7 * 24 * 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("moverz_batch.max_upload_bytes",
							"Largest photo file that may be uploaded.",
							"Anthropic takes at most 5 MB of base64 per image (3.75 MB of file), OpenAI 20 MB.",
							&moverz_max_upload_bytes, 5 * 1024 * 1024, 1024, 20 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("moverz_batch.max_inflight_bytes",
							"Bytes of uploaded photos one photo worker holds in flight at most.",
							"A worker claims fewer uploaded photos rather than exceed it; "
							"one photo larger than it still goes, alone.",
							&moverz_max_inflight_bytes, 128 * 1024 * 1024, 1024 * 1024, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomEnumVariable("moverz_batch.object_store",
							 "Where uploaded photo files are kept: database or s3.",
							 "database: in PostgreSQL, sent through the HTTP API; s3: in an S3-compatible "
							 "store (moverz_batch.s3_*), sent there by the client with a presigned URL.",
							 &moverz_object_store, MOVERZ_STORE_DATABASE, object_store_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("moverz_batch.s3_endpoint",
							   "Endpoint of the S3-compatible store, http(s)://host[:port].",
							   "e.g. https://s3.eu-west-3.amazonaws.com, http://127.0.0.1:9000 (MinIO).",
							   &moverz_s3_endpoint, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("moverz_batch.s3_region", "Region of the S3 store (R2: auto).", NULL,
							   &moverz_s3_region, "us-east-1", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("moverz_batch.s3_bucket", "Bucket of the uploaded photos.", NULL,
							   &moverz_s3_bucket, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomBoolVariable("moverz_batch.s3_path_style",
							 "Name the bucket in the URL path (MinIO, Ceph), not in the host name (AWS).",
							 NULL, &moverz_s3_path_style, false, PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							 NULL, NULL, NULL);
	DefineCustomStringVariable("moverz_batch.s3_access_key_id", "Access key id of the S3 store.",
							   "Visible to superusers only.", &moverz_s3_access_key_id, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL, NULL, NULL, NULL);
	DefineCustomStringVariable("moverz_batch.s3_secret_access_key", "Secret access key of the S3 store.",
							   "Visible to superusers only.", &moverz_s3_secret_access_key, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL, NULL, NULL, NULL);
	DefineCustomStringVariable("moverz_batch.upload_base_url",
							   "Where clients reach the HTTP API, for the upload URLs (empty: they are paths).",
							   "e.g. https://api.example.com: request_uploads answers "
							   "https://api.example.com/api/uploads/<id>?token=...",
							   &moverz_upload_base_url, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
}

/*
 * define_guc_settings
 *		Declare the moverz_batch.* settings: the database, the workers and
 *		the AI service here, the rest in define_worker_settings and
 *		define_upload_settings.
 */
static void
define_guc_settings(void)
{
	DefineCustomStringVariable("moverz_batch.database",
							   "Database the background workers connect to.",
							   NULL, &moverz_database, "postgres",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("moverz_batch.workers",
							"Number of photo workers (0 disables all background processing).",
							NULL, &moverz_workers, 1, 0, MOVERZ_MAX_PHOTO_WORKERS,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("moverz_batch.ai_provider",
							 "The AI API the photos are sent to.",
							 "moverz-ai: POST <url>/v1/analyze-photo; anthropic: POST <url>/v1/messages; "
							 "openai: POST <url>/chat/completions (OpenAI-compatible).",
							 &moverz_ai_provider, AI_PROVIDER_MOVERZ, moverz_ai_provider_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("moverz_batch.ai_service_url",
							   "Base URL of the AI API (empty: the provider's own).",
							   "Empty: http://127.0.0.1:8000 (moverz-ai), https://api.anthropic.com "
							   "(anthropic), https://api.openai.com/v1 (openai).",
							   &moverz_ai_service_url, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("moverz_batch.ai_api_key",
							   "API key of the AI API (x-api-key for anthropic, else Authorization: Bearer).",
							   "Visible to superusers only.", &moverz_ai_api_key, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("moverz_batch.ai_api_key_file",
							   "File whose first line is the API key of the AI API (replaces ai_api_key).",
							   "Visible to superusers only.  Preferred to ai_api_key: PostgreSQL logs "
							   "the new value of a setting changed by a reload, never a file's content.",
							   &moverz_ai_api_key_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("moverz_batch.ai_model",
							   "Model asked for by the anthropic and openai providers (empty: a default).",
							   "Empty: claude-sonnet-4-5 (anthropic), gpt-4.1-mini (openai).",
							   &moverz_ai_model, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("moverz_batch.ai_max_tokens",
							"Most output tokens of one answer (anthropic and openai providers).",
							NULL, &moverz_ai_max_tokens, 1024, 16, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("moverz_batch.anthropic_version",
							   "The anthropic-version header of the anthropic provider.",
							   NULL, &moverz_anthropic_version, "2023-06-01",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("moverz_batch.openai_max_tokens_field",
							 "The field the openai provider sends ai_max_tokens in.",
							 "max_completion_tokens (OpenAI, Azure OpenAI, vLLM) or max_tokens "
							 "(older OpenAI-compatible servers).",
							 &moverz_openai_max_tokens_field, 0, moverz_max_tokens_field_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("moverz_batch.ai_system_prompt",
							   "System prompt of the anthropic and openai providers (empty: the built-in one).",
							   "{room_types} in it is replaced by the accepted room types.  The workers "
							   "read it at start and on reload; a superuser may SET it to preview "
							   "ai_system_prompt().",
							   &moverz_ai_system_prompt, "", PGC_SUSET, 0, NULL, NULL, NULL);
	define_worker_settings();
	define_guard_settings();
	define_upload_settings();
#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("moverz_batch");
#else
	EmitWarningsOnPlaceholders("moverz_batch");
#endif
}

/*
 * define_worker_settings
 *		Declare the settings of the photo workers' pace and retries.
 */
static void
define_worker_settings(void)
{
	DefineCustomIntVariable("moverz_batch.max_inflight",
							"Maximum AI requests in flight per photo worker.",
							NULL, &moverz_max_inflight, 64, 1, 10000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("moverz_batch.request_timeout",
							"Timeout of one AI request.",
							NULL, &moverz_request_timeout_ms, 60000, 100, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("moverz_batch.connect_timeout",
							"Timeout of a connection to the AI service.",
							NULL, &moverz_connect_timeout_ms, 10000, 100, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("moverz_batch.max_attempts",
							"Attempts per photo before it ends in ERROR.",
							NULL, &moverz_max_attempts, 3, 1, 100,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("moverz_batch.retry_backoff",
							"Delay before the first retry; multiplied by 4 per attempt, with jitter.",
							NULL, &moverz_retry_backoff_ms, 5000, 0, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("moverz_batch.lease_timeout",
							"Age after which a claim of a vanished worker is taken back (last resort).",
							NULL, &moverz_lease_timeout_ms, 300000, 1000, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("moverz_batch.poll_interval",
							"Fallback poll of the workers when nothing wakes them.",
							NULL, &moverz_poll_interval_ms, 1000, 10, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("moverz_batch.max_batch_size",
							"Maximum number of photos in one batch.",
							NULL, &moverz_max_batch_size, 1000, 1, 1000000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("moverz_batch.writeback_batch",
							"Maximum results written back in one transaction.",
							NULL, &moverz_writeback_batch, 64, 1, 10000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("moverz_batch.max_inflight_per_user",
							"Maximum AI requests in flight for one user, all workers together (0: no limit).",
							NULL, &moverz_max_inflight_per_user, 0, 0, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("moverz_batch.max_requests_per_second",
							"Ceiling of AI requests per second, all workers together (0: no limit).",
							NULL, &moverz_max_requests_per_second, 0, 0, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("moverz_batch.claim_ahead",
							"Photos a photo worker claims ahead of its free request slots (-1: automatic).",
							"They are sent as soon as slots free up, without a claim in between. "
							"Automatic: a quarter of max_inflight when it is 64 or more, else none. "
							"None while max_inflight_per_user or max_requests_per_second is set.",
							&moverz_claim_ahead, -1, -1, 10000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("moverz_batch.max_retry_after",
							"Longest Retry-After of a RATE_LIMIT answer the pool waits for.",
							"A longer one is cut to this: one answer must not hold every photo for a day.",
							&moverz_max_retry_after_ms, 60000, 0, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("moverz_batch.outage_max_wait",
							"How long the photos wait for an AI service that is down before they fail as usual.",
							"While the service is down (5 failures in a row, all workers together) no photo is "
							"claimed and the failed ones keep their attempts; after this, attempts count again. "
							"0 turns the circuit off.",
							&moverz_outage_max_wait_ms, 3600000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
}

/*
 * define_guard_settings
 *		Declare the guards on the way in and the progress publisher's settings.
 */
static void
define_guard_settings(void)
{
	DefineCustomStringVariable("moverz_batch.allowed_image_hosts",
							   "Hosts of a private network that image URLs may name anyway (comma-separated).",
							   "create_batch refuses URLs of localhost, private, link-local and reserved "
							   "addresses, user:password@ and IPv4 in odd forms, except these hosts.",
							   &moverz_allowed_image_hosts, "", PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("moverz_batch.max_photos_per_user_per_day",
							"Photos one user may submit in 24 hours (0: no quota).",
							"create_batch refuses a batch over it (SQLSTATE 53400; HTTP 429 with Retry-After).",
							&moverz_max_photos_per_user_per_day, 0, 0, INT_MAX,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("moverz_batch.publish_url",
							   "Nchan publisher location that each committed change of a batch is POSTed to "
							   "(<url><batch id>; empty: off).",
							   "For web clients' live progress (GET /api/batches/:id/stream, http/nginx.conf), "
							   "e.g. http://127.0.0.1:8091/pub/batch/ on loopback.",
							   &moverz_publish_url, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("moverz_batch.publish_queue_size",
							"Progress events waiting for the publisher at most (more are dropped and counted).",
							NULL, &moverz_publish_queue_size, 1024, 16, 65536,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
}

/*
 * register_worker
 *		Register one static background worker running function "main",
 *		connected to moverz_batch.database or not.
 */
static void
register_worker(const char *main, const char *type, int index, bool database)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | (database ? BGWORKER_BACKEND_DATABASE_CONNECTION : 0);
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "moverz_batch");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", main);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", type);
	if (index >= 0)
		snprintf(worker.bgw_name, BGW_MAXLEN, "%s %d", type, index);
	else
		snprintf(worker.bgw_name, BGW_MAXLEN, "%s", type);
	worker.bgw_main_arg = Int32GetDatum(index);
	RegisterBackgroundWorker(&worker);
}

#if PG_VERSION_NUM >= 150000
/*
 * moverz_shmem_request_hook
 *		Ask for our shared memory (PostgreSQL 15 and later).
 */
static void
moverz_shmem_request_hook(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	moverz_shmem_request();
}
#endif

/*
 * moverz_shmem_startup_hook
 *		Create or attach our shared memory.
 */
static void
moverz_shmem_startup_hook(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	moverz_shmem_startup();
}

/*
 * _PG_init
 *		Module load: settings, shared memory and workers.  Refuses to load
 *		outside shared_preload_libraries.
 */
void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("moverz_batch must be loaded via shared_preload_libraries"),
				 errhint("Add moverz_batch to shared_preload_libraries in postgresql.conf and restart the server.")));

	define_guc_settings();

#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = moverz_shmem_request_hook;
#else
	moverz_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = moverz_shmem_startup_hook;

	if (moverz_workers > 0)
	{
		for (int i = 0; i < moverz_workers; i++)
			register_worker("moverz_photo_worker_main", "moverz_batch photo worker", i, true);
		register_worker("moverz_inventory_worker_main", "moverz_batch inventory worker", -1, true);
		register_worker("moverz_publisher_main", "moverz_batch progress publisher", -1, false);
	}
}
