/*-------------------------------------------------------------------------
 *
 * moverz_batch.h
 *		Declarations shared by the files of the moverz_batch extension.
 *
 * Data flows one way: the SQL API inserts photos (sql/src), triggers keep
 * the batch counters, a photo worker (photo_worker.c) claims PENDING photos
 * (claim.c), sends them to the AI provider (ai_provider.c, ai_client.c),
 * writes the results back (claim.c; the answers are read by ai_contract.c
 * and ai_answer.c), and the inventory worker (inventory_worker.c)
 * aggregates each finished batch.  Shared state and wake-ups live in
 * shmem.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MOVERZ_BATCH_H
#define MOVERZ_BATCH_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "storage/latch.h"
#include "port.h"
#include "storage/spin.h"
#include "utils/guc.h"
#include "utils/jsonb.h"

/* Upper bound of moverz_batch.workers. */
#define MOVERZ_MAX_PHOTO_WORKERS	64

/* Length of the last error message kept per worker in shared memory. */
#define MOVERZ_LAST_ERROR_LEN		160

/* GUC variables (moverz_batch.c). */
extern char *moverz_database;
extern int	moverz_workers;
extern char *moverz_ai_service_url;
extern char *moverz_ai_api_key;
extern char *moverz_ai_api_key_file;
extern int	moverz_ai_provider;
extern char *moverz_ai_model;
extern int	moverz_ai_max_tokens;
extern char *moverz_anthropic_version;
extern int	moverz_openai_max_tokens_field;
extern char *moverz_ai_system_prompt;
extern int	moverz_max_inflight;
extern int	moverz_request_timeout_ms;
extern int	moverz_connect_timeout_ms;
extern int	moverz_max_attempts;
extern int	moverz_retry_backoff_ms;
extern int	moverz_lease_timeout_ms;
extern int	moverz_poll_interval_ms;
extern int	moverz_max_batch_size;
extern int	moverz_writeback_batch;
extern int	moverz_max_inflight_per_user;
extern int	moverz_max_requests_per_second;
extern int	moverz_claim_ahead;
extern int	moverz_max_retry_after_ms;
extern int	moverz_outage_max_wait_ms;
extern char *moverz_allowed_image_hosts;
extern int	moverz_max_photos_per_user_per_day;
extern char *moverz_publish_url;
extern int	moverz_publish_queue_size;
extern int	moverz_upload_url_ttl_s;
extern int	moverz_max_upload_bytes;
extern int	moverz_max_inflight_bytes;
extern char *moverz_upload_base_url;

/* Where uploaded photo files are kept (moverz_batch.object_store). */
typedef enum MoverzObjectStore
{
	MOVERZ_STORE_DATABASE,		/* moverz_batch_internal.upload_bytes */
	MOVERZ_STORE_S3				/* an S3-compatible store (object_store.c) */
} MoverzObjectStore;

extern int	moverz_object_store;
extern char *moverz_s3_endpoint;
extern char *moverz_s3_region;
extern char *moverz_s3_bucket;
extern bool moverz_s3_path_style;
extern char *moverz_s3_access_key_id;
extern char *moverz_s3_secret_access_key;

/* One background worker, as seen by the others and by SQL. */
typedef struct MoverzWorkerSlot
{
	pid_t		pid;			/* 0 when not running */
	Latch	   *latch;			/* set to wake the worker */
	int64		claim_token;	/* identifies this incarnation's claims */
	TimestampTz since;			/* start of this incarnation */
	int			inflight;		/* requests in flight now */
	int64		done;			/* photos finished DONE */
	int64		failed;			/* calls that failed */
	TimestampTz last_error_at;
	char		last_error[MOVERZ_LAST_ERROR_LEN];
} MoverzWorkerSlot;

/* The pool-wide circuit of outage.c. */
typedef struct MoverzOutage
{
	int			failures;		/* downs in a row, all workers together */
	TimestampTz since;			/* open since (0: closed) */
	TimestampTz next_probe;		/* the next probe may leave then */
	bool		probing;		/* a probe is in flight */
	TimestampTz probe_sent;		/* since then (a probe whose worker died ends) */
	int64		probes;			/* probes sent since it opened */
	char		last_error[MOVERZ_LAST_ERROR_LEN];
} MoverzOutage;

/* The extension's shared memory. */
typedef struct MoverzShared
{
	slock_t		mutex;			/* protects everything below */
	MoverzWorkerSlot photo[MOVERZ_MAX_PHOTO_WORKERS];
	MoverzWorkerSlot inventory;
	MoverzWorkerSlot publisher;
	/* the pool-wide request rate: a token bucket, and a hold after a 429 */
	double		tokens;
	TimestampTz tokens_at;
	TimestampTz hold_until;
	bool		hold_logged;	/* a hold began and its end is not logged yet */
	uint64		recall_epoch;	/* moves on at each committed recall */
	MoverzOutage outage;		/* is the AI service down? */
} MoverzShared;

extern MoverzShared *moverz_shared;

/* shmem.c */
extern void moverz_shmem_request(void);
extern void moverz_shmem_startup(void);
/* Which worker a slot is for. */
typedef enum MoverzSlotKind
{
	MOVERZ_SLOT_PHOTO,			/* photo worker "index" */
	MOVERZ_SLOT_INVENTORY,
	MOVERZ_SLOT_PUBLISHER
} MoverzSlotKind;

extern MoverzWorkerSlot *moverz_attach_slot(MoverzSlotKind kind, int index);
extern void moverz_slot_report(MoverzWorkerSlot *slot, int inflight,
							   int64 done_delta, int64 failed_delta,
							   const char *error);
extern int	moverz_rate_take(int want, long *wait_ms);
extern void moverz_rate_give_back(int n);
extern void moverz_rate_hold(long ms);
extern void moverz_rate_hold_ended(void);
extern long moverz_rate_held_ms(void);
extern uint64 moverz_recall_epoch(void);
extern void moverz_set_latches(bool photo, bool inventory);

/* outage.c: the pool-wide circuit. */
extern bool moverz_outage_report(bool down, const char *error);
extern bool moverz_outage_holding(void);
extern bool moverz_outage_take_probe(long *wait_ms);
extern void moverz_outage_probe_unsent(void);

/* worker_common.c: what both kinds of worker share. */
typedef void (*moverz_txn_fn) (void *arg);

/* Why a transaction of moverz_run_in_transaction() failed. */
typedef struct MoverzTxnError
{
	char	   *message;		/* NULL: the extension is not installed */
	int			sqlerrcode;
} MoverzTxnError;

extern void moverz_worker_setup(const char *activity);
extern bool moverz_run_in_transaction(moverz_txn_fn fn, void *arg,
									  const char *activity, MoverzTxnError *error);
extern bool moverz_error_is_transient(int sqlerrcode);
extern bool moverz_extension_present(void);
extern SPIPlanPtr moverz_saved_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types);
extern bool moverz_process_interrupts(void);
extern WaitEventSet *moverz_wait_set(pgsocket fd);

/* ai_provider.c: what is sent to which AI provider. */
typedef enum AiProviderKind
{
	AI_PROVIDER_MOVERZ,			/* moverz_batch's own contract */
	AI_PROVIDER_ANTHROPIC,		/* Anthropic Messages API */
	AI_PROVIDER_OPENAI			/* OpenAI-compatible Chat Completions API */
} AiProviderKind;

/* Header lines a provider adds: its key, its API version. */
#define AI_AUTH_LINES	2

/* Where and how the requests go, from the settings and ai_request_config(). */
typedef struct AiShape
{
	int			provider;		/* AiProviderKind */
	char	   *endpoint;		/* the URL requests are POSTed to */
	char	   *auth[AI_AUTH_LINES];	/* header lines, or NULL */
	bool		loaded;			/* head and tail built (model APIs) */
	char	   *prompt_version; /* of the prompt in head */
	char	   *head;			/* a model API body, up to the photo's part */
	char	   *tail;			/* and after it */
} AiShape;

extern const struct config_enum_entry moverz_ai_provider_options[];
extern const struct config_enum_entry moverz_max_tokens_field_options[];
extern const char *ai_provider_name(int provider);

typedef struct AiPhoto AiPhoto;
extern void ai_shape_configure(AiShape *shape, MemoryContext cxt);
extern bool ai_shape_needs_frame(const AiShape *shape);
extern bool ai_shape_load(AiShape *shape, MemoryContext cxt);
extern void ai_shape_body(const AiShape *shape, struct StringInfoData *buf, const AiPhoto *photo);

/* ai_client.c: the AI service contract over libcurl multi. */
typedef struct AiClient AiClient;

/* The end of a transfer of another kind (ai_client_add_transfer). */
typedef void (*AiTransferDone) (void *arg, void *easy, int curl_code);

/* One claimed photo, as the AI request needs it (strings are copied). */
struct AiPhoto
{
	const char *id;
	const char *batch_id;
	const char *project_id;
	const char *user_id;
	const char *url;
	const char *filename;
	const char *room_type;		/* NULL when the photo has none */
	int			attempt;
	bool		uploaded;		/* an uploaded file, not a URL (url NULL) */
	const char *media_type;		/* its type, image/jpeg...; NULL for a URL */
	const char *image_b64;		/* its bytes in base64; NULL when gone */
	const char *object_key;		/* in the s3 store: its key (not read yet) */
	int64		image_bytes;	/* how many bytes (0 for a URL) */
};

/*
 * A finished request: one JSON object for complete_photos().  Its first
 * head_len bytes name the call (id, batch_id, user_id, attempt, latency_ms)
 * without closing the object, so a result that cannot be stored can be
 * rewritten as a plain failure.
 */
typedef struct AiResult
{
	char	   *json;
	int			head_len;
} AiResult;

extern AiClient *ai_client_create(void);
extern void ai_client_configure(AiClient *client);
extern bool ai_client_needs_prompt(AiClient *client);
extern bool ai_client_load(AiClient *client);
extern int	ai_client_event_fd(AiClient *client);
extern void ai_client_start(AiClient *client, const AiPhoto *photo);
extern void ai_client_drive(AiClient *client, bool socket_ready);
extern long ai_client_timeout_ms(AiClient *client);
extern int	ai_client_inflight(AiClient *client);
extern int64 ai_client_image_bytes(AiClient *client);
extern void ai_client_fail_photo(AiClient *client, const AiPhoto *photo, const char *code,
								 const char *message);
extern bool ai_client_add_transfer(AiClient *client, void *easy, AiTransferDone done, void *arg);
extern int	ai_client_result_count(AiClient *client);
extern int	ai_client_take_results(AiClient *client, AiResult *results, int max);

/* object_store.c: presigned URLs of the s3 store, SHA-256. */
extern const char *moverz_s3_url(const char *method, const char *key, int expires_s, time_t now,
								 char *out);
extern bool moverz_sha256_hex(const char *data, size_t len, char *out);

/* object_fetch.c: a photo worker's downloads and deletions in the s3 store. */
typedef struct ObjectFetcher ObjectFetcher;
extern ObjectFetcher *object_fetcher_create(AiClient *client);
extern int64 object_fetch_bytes(ObjectFetcher *f);
extern void object_fetch_start(ObjectFetcher *f, AiPhoto *photo);
extern int	object_fetch_settle(ObjectFetcher *f, int64 claim_token, MemoryContext cxt,
								AiPhoto ***out);
extern int	object_fetch_abandon(ObjectFetcher *f, AiPhoto ***out);
extern void object_deletions_run(ObjectFetcher *f, int free_slots);

/* claim.c: the photo worker's transactions (SPI). */
#define AI_PHOTO_NFIELDS	7	/* the text fields of an AiPhoto (ai_photo_fields) */
extern void ai_photo_fields(AiPhoto *photo, const char **fields[AI_PHOTO_NFIELDS]);
typedef struct ClaimState ClaimState;
extern ClaimState *claim_state_create(MoverzWorkerSlot *slot, int worker_index,
									  int64 claim_token);
extern int	claim_fetch(ClaimState *state, int limit, int64 held_bytes, MemoryContext cxt,
						AiPhoto ***photos);
extern int	claim_unclaim(ClaimState *state, AiPhoto **photos, int n);
extern int	claim_write_back(ClaimState *state, AiResult *results, int n);
extern int	claim_release_stale(ClaimState *state);

/*
 * ai_contract.c: reading jsonb values, shared by the SQL-callable C
 * functions (ai_contract.c, ai_answer.c, assets.c), and the verdict on one
 * answer of an AI API (ai_contract.c for moverz-ai, ai_answer.c for the
 * model APIs).
 */
extern bool moverz_json_key(JsonbContainer *obj, const char *key, JsonbValue *out);
extern bool moverz_json_is_container(const JsonbValue *v, bool want_object);
extern bool moverz_json_parses(const char *data, int len, MemoryContext scratch);

typedef struct AiVerdict
{
	bool		ok;
	const char *code;			/* NULL when ok */
	char	   *message;		/* NULL when ok */
	bool		retryable;
	Jsonb	   *analysis;		/* the analysis, when ok */
	char	   *model;			/* the model that answered, or NULL */
	int64		tokens_in;		/* -1: unknown */
	int64		tokens_out;
} AiVerdict;

extern char *clip_chars(const char *s, int n);
extern void ai_status_verdict(int status, Jsonb *body, const char *body_text, AiVerdict *v);
extern void ai_analysis_verdict(Jsonb *analysis, AiVerdict *v);
extern int64 ai_json_count(JsonbContainer *obj, const char *key);
extern char *ai_json_string(JsonbContainer *obj, const char *key, int n);
extern JsonbContainer *ai_json_object(JsonbContainer *obj, const char *key);

/* url_policy.c: which image URLs may be sent to a provider. */
extern const char *url_host_refused(const char *url, int len);

/* ai_answer.c */
extern void ai_read_anthropic(int status, Jsonb *body, const char *body_text, AiVerdict *v);
extern void ai_read_openai(int status, Jsonb *body, const char *body_text, AiVerdict *v);

/* publish_queue.c: progress events queued at commit for the publisher. */
#define MOVERZ_PUBLISH_STATE_MAX	1024

typedef struct MoverzPublishEvent
{
	char		batch_id[40];
	bool		final;			/* finished, inventory ready: close the channel */
	char		state[MOVERZ_PUBLISH_STATE_MAX];	/* JSON, NUL-terminated */
} MoverzPublishEvent;

extern void moverz_publish_shmem_request(void);
extern void moverz_publish_shmem_startup(void);
extern void moverz_publish_attach(void);
extern bool moverz_publish_next(MoverzPublishEvent *out, uint64 *dropped);
extern void moverz_publish_report(bool delivered, const char *failure);

/* Entry points of the background workers. */
extern PGDLLEXPORT void moverz_photo_worker_main(Datum main_arg);
extern PGDLLEXPORT void moverz_inventory_worker_main(Datum main_arg);
extern PGDLLEXPORT void moverz_publisher_main(Datum main_arg);

#endif							/* MOVERZ_BATCH_H */
