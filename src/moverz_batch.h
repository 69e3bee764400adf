/*-------------------------------------------------------------------------
 *
 * moverz_batch.h
 *		Declarations shared by the files of the moverz_batch extension.
 *
 * Data flows one way: the SQL API inserts photos (sql/src), triggers keep
 * the batch counters, a photo worker (photo_worker.c) claims PENDING photos
 * (claim.c), sends them to the AI service (ai_client.c), writes the results
 * back (claim.c), and the inventory worker (inventory_worker.c) aggregates
 * each finished batch.  Shared state and wake-ups live in shmem.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MOVERZ_BATCH_H
#define MOVERZ_BATCH_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "storage/latch.h"
#include "storage/spin.h"

/* Upper bound of moverz_batch.workers. */
#define MOVERZ_MAX_PHOTO_WORKERS	64

/* Length of the last error message kept per worker in shared memory. */
#define MOVERZ_LAST_ERROR_LEN		160

/* GUC variables (moverz_batch.c). */
extern char *moverz_database;
extern int	moverz_workers;
extern char *moverz_ai_service_url;
extern char *moverz_ai_api_key;
extern char *moverz_ai_provider;
extern int	moverz_max_inflight;
extern int	moverz_request_timeout_ms;
extern int	moverz_connect_timeout_ms;
extern int	moverz_max_attempts;
extern int	moverz_retry_backoff_ms;
extern int	moverz_lease_timeout_ms;
extern int	moverz_poll_interval_ms;
extern int	moverz_max_batch_size;
extern int	moverz_writeback_batch;

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

/* The extension's shared memory. */
typedef struct MoverzShared
{
	slock_t		mutex;			/* protects everything below */
	MoverzWorkerSlot photo[MOVERZ_MAX_PHOTO_WORKERS];
	MoverzWorkerSlot inventory;
} MoverzShared;

extern MoverzShared *moverz_shared;

/* shmem.c */
extern void moverz_shmem_request(void);
extern void moverz_shmem_startup(void);
extern MoverzWorkerSlot *moverz_attach_slot(int index, bool inventory);
extern void moverz_slot_report(MoverzWorkerSlot *slot, int inflight,
							   int64 done_delta, int64 failed_delta,
							   const char *error);

/* Entry points of the background workers. */
extern PGDLLEXPORT void moverz_photo_worker_main(Datum main_arg);
extern PGDLLEXPORT void moverz_inventory_worker_main(Datum main_arg);

#endif							/* MOVERZ_BATCH_H */
