-- 03_worker_sql: the SQL side of the background workers, called as the
-- workers call it, without HTTP and without workers: claim_photos,
-- classify_result (the AI contract), complete_photos, release_claims and
-- run_next_inventory_job.
--
-- One rolled-back transaction: now() is fixed, so a photo is due when its
-- next_attempt_at is <= the transaction's start.  claim_photos takes the
-- photos of every user: the file starts from an empty queue (every project
-- deleted, processing resumed), which the final ROLLBACK restores.
BEGIN;
SELECT plan(123);
SET LOCAL client_min_messages = warning;

DELETE FROM moverz_batch.projects;
UPDATE moverz_batch.control SET paused = false, paused_at = NULL;

-- Batches are named by a label (their ids are random).
CREATE TEMP TABLE lbl (id uuid PRIMARY KEY, label text UNIQUE) ON COMMIT DROP;
-- mk(user, label, assets[, priority, age]): a batch of user's (in a
-- project of its own), created with its photos "age" ago.
CREATE FUNCTION pg_temp.mk(u text, label text, assets jsonb, prio text DEFAULT 'NORMAL',
                           age interval DEFAULT '0') RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    b uuid := moverz_batch.create_batch(moverz_batch.create_project(u, label), u, assets, prio);
BEGIN
    UPDATE moverz_batch.photos SET created_at = now() - age WHERE batch_id = b;
    UPDATE moverz_batch.batches SET created_at = now() - age WHERE id = b;
    INSERT INTO lbl VALUES (b, label);
    RETURN b;
END
$$;
-- a(n[, room]): n assets with URLs of their own.
CREATE SEQUENCE pg_temp.asset_no;
CREATE FUNCTION pg_temp.a(n int, room text DEFAULT NULL) RETURNS jsonb LANGUAGE sql AS $$
SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object('filename', format('p%s.jpg', k), 'url', format('https://x.example/p%s.jpg', k),
                                                      'roomType', room)))
  FROM (SELECT nextval('pg_temp.asset_no') AS k FROM generate_series(1, n)) AS s
$$;
CREATE FUNCTION pg_temp.pid(label text, pos int) RETURNS uuid LANGUAGE sql AS $$
SELECT p.id FROM moverz_batch.photos p JOIN lbl l ON l.id = p.batch_id WHERE l.label = $1 AND p.position = $2
$$;
CREATE FUNCTION pg_temp.bid(label text) RETURNS uuid LANGUAGE sql AS $$
SELECT id FROM lbl WHERE label = $1
$$;
-- name(photo): label#position.
CREATE FUNCTION pg_temp.name(ph uuid) RETURNS text LANGUAGE sql AS $$
SELECT l.label || '#' || p.position FROM moverz_batch.photos p JOIN lbl l ON l.id = p.batch_id WHERE p.id = ph
$$;
-- claim(worker, token, limit[, per_user]): claim_photos (lease 60 s); the
-- rows it returned are kept in table "got"; returns the photos' names.
CREATE TEMP TABLE got (id uuid, batch_id uuid, project_id uuid, user_id text, url text, filename text, room_type text, attempt int)
    ON COMMIT DROP;
CREATE FUNCTION pg_temp.claim(w int, tok bigint, lim int, per_user int DEFAULT 0) RETURNS text[] LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM got;
    INSERT INTO got SELECT c.id, c.batch_id, c.project_id, c.user_id, c.url, c.filename, c.room_type, c.attempt
      FROM moverz_batch_internal.claim_photos(w, tok, lim, 60000, per_user) c;
    RETURN coalesce((SELECT array_agg(pg_temp.name(id) ORDER BY pg_temp.name(id)) FROM got), '{}');
END
$$;
-- r(label, position, http_status, body[, extra]): the worker's result for
-- the photo's current attempt (extra overrides or adds keys).
CREATE FUNCTION pg_temp.r(label text, pos int, http int, body jsonb, extra jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $$
SELECT jsonb_strip_nulls(jsonb_build_object('id', p.id, 'batch_id', p.batch_id, 'user_id', p.user_id, 'attempt', p.attempts,
                                            'http_status', http, 'latency_ms', 100 + p.position, 'body', body)) || extra
  FROM moverz_batch.photos p WHERE p.id = pg_temp.pid(label, pos)
$$;
-- complete(token, results...): complete_photos (3 attempts, backoff 1 s)
-- as "done=N rate_limit_ms=M".
CREATE FUNCTION pg_temp.complete(tok bigint, VARIADIC results jsonb[]) RETURNS text LANGUAGE sql AS $$
SELECT format('done=%s rate_limit_ms=%s', c.done, c.rate_limit_ms)
  FROM moverz_batch_internal.complete_photos(tok, to_jsonb(results), 3, 1000, 'test-ai') AS c
$$;
-- ph(label, position): status attempts error_code claimed_by/claim_token.
CREATE FUNCTION pg_temp.ph(label text, pos int) RETURNS text LANGUAGE sql AS $$
SELECT format('%s %s %s %s/%s', status, attempts, coalesce(error_code, '-'), coalesce(claimed_by::text, '-'), coalesce(claim_token::text, '-'))
  FROM moverz_batch.photos WHERE id = pg_temp.pid(label, pos)
$$;
-- st(label): status and queued/processing/completed/failed counts.
CREATE FUNCTION pg_temp.st(label text) RETURNS text LANGUAGE sql AS $$
SELECT format('%s %s/%s/%s/%s', status, count_queued, count_processing, count_completed, count_failed)
  FROM moverz_batch.batches WHERE id = pg_temp.bid(label)
$$;
-- due_in(label, position): seconds until the photo's next attempt.
CREATE FUNCTION pg_temp.due_in(label text, pos int) RETURNS numeric LANGUAGE sql AS $$
SELECT extract(epoch FROM next_attempt_at - now()) FROM moverz_batch.photos WHERE id = pg_temp.pid(label, pos)
$$;
-- make_due(label, position...): the photos' next attempt is now.
CREATE FUNCTION pg_temp.make_due(label text, VARIADIC pos int[]) RETURNS void LANGUAGE sql AS $$
UPDATE moverz_batch.photos SET next_attempt_at = now() WHERE batch_id = pg_temp.bid(label) AND position = ANY (pos)
$$;

------------------------------------------------------------------------
-- The functions, reserved to the owner (the workers run as superuser).
SELECT has_function('moverz_batch_internal', 'claim_photos', ARRAY['integer', 'bigint', 'integer', 'integer', 'integer', 'bigint', 'boolean'], 'claim_photos(int, bigint, int, int, int, bigint, boolean)');
SELECT has_function('moverz_batch_internal', 'complete_photos', ARRAY['bigint', 'jsonb', 'integer', 'integer', 'text'], 'complete_photos(bigint, jsonb, int, int, text)');
SELECT has_function('moverz_batch_internal', 'release_claims', ARRAY['integer', 'bigint', 'integer', 'integer'], 'release_claims(int, bigint, int, int)');
SELECT has_function('moverz_batch_internal', 'run_next_inventory_job', '{}'::name[], 'run_next_inventory_job()');
SELECT volatility_is('moverz_batch', 'classify_result', ARRAY['text', 'integer', 'text', 'text', 'jsonb', 'text'], 'immutable', 'classify_result is IMMUTABLE');
SELECT is(array(SELECT f || ' by ' || r
                  FROM unnest(ARRAY['moverz_batch_internal.claim_photos(int, bigint, int, int, int, bigint, boolean)', 'moverz_batch_internal.complete_photos(bigint, jsonb, int, int, text)',
                                    'moverz_batch_internal.release_claims(int, bigint, int, int)', 'moverz_batch_internal.run_next_inventory_job()']) AS f,
                       unnest(ARRAY['public', 'moverz_app', 'moverz_user', 'moverz_anon']) AS r
                 WHERE has_function_privilege(r, f, 'EXECUTE')),
          '{}'::text[], 'the worker functions: no EXECUTE for PUBLIC, moverz_app, moverz_user, moverz_anon');

------------------------------------------------------------------------
-- classify_result: the AI contract of the README, one answer at a time.
CREATE TEMP TABLE cases (what text, http int, tcode text, tmsg text, body jsonb, body_text text, expected text) ON COMMIT DROP;
INSERT INTO cases VALUES
  ('200 with an analysis', 200, NULL, NULL, '{"room_type": "kitchen", "items": [{"label": "chair", "quantity": 2, "volume_m3": 0.3}], "model": "m", "cost_usd": 0.01}', NULL, '(t,,,f)'),
  ('201 with no items', 201, NULL, NULL, '{"items": []}', NULL, '(t,,,f)'),
  ('200 not JSON', 200, NULL, NULL, NULL, '<html>oops</html>', '(f,AI_ERROR,"invalid AI response: response is not valid JSON",t)'),
  ('200 items not an array', 200, NULL, NULL, '{"items": "sofa"}', NULL, '(f,AI_ERROR,"invalid AI response: analysis.items must be an array",t)'),
  ('200 fractional quantity', 200, NULL, NULL, '{"items": [{"label": "a", "quantity": 1, "volume_m3": 1}, {"label": "b", "quantity": 1.5, "volume_m3": 1}]}', NULL,
   '(f,AI_ERROR,"invalid AI response: analysis.items[1].quantity must be an integer between 0 and 100000",t)'),
  ('200 empty label', 200, NULL, NULL, '{"items": [{"label": " ", "quantity": 1, "volume_m3": 1}]}', NULL,
   '(f,AI_ERROR,"invalid AI response: analysis.items[0].label must be a non-empty string of at most 200 bytes",t)'),
  ('200 volume too big', 200, NULL, NULL, '{"items": [{"label": "a", "quantity": 1, "volume_m3": 1001}]}', NULL,
   '(f,AI_ERROR,"invalid AI response: analysis.items[0].volume_m3 must be between 0 and 1000",t)'),
  ('200 a JSON array', 200, NULL, NULL, '[]', NULL, '(f,AI_ERROR,"invalid AI response: analysis must be a JSON object",t)'),
  ('408', 408, NULL, NULL, NULL, '', '(f,TIMEOUT,"HTTP 408",t)'),
  ('504 with a text body', 504, NULL, NULL, NULL, 'gateway timeout', '(f,TIMEOUT,"HTTP 504: gateway timeout",t)'),
  ('429', 429, NULL, NULL, NULL, NULL, '(f,RATE_LIMIT,"HTTP 429",t)'),
  ('500', 500, NULL, NULL, NULL, 'boom', '(f,AI_ERROR,"HTTP 500: boom",t)'),
  ('503 with JSON but no error object', 503, NULL, NULL, '{"detail": "down"}', NULL, '(f,AI_ERROR,"HTTP 503: {""detail"": ""down""}",t)'),
  ('400', 400, NULL, NULL, NULL, 'bad request', '(f,AI_ERROR,"HTTP 400: bad request",f)'),
  ('404', 404, NULL, NULL, NULL, NULL, '(f,AI_ERROR,"HTTP 404",f)'),
  ('error object taken at its word (retryable)', 400, NULL, NULL, '{"error": {"code": "RATE_LIMIT", "message": "slow down", "retryable": true}}', NULL,
   '(f,RATE_LIMIT,"slow down",t)'),
  ('error object taken at its word (final)', 500, NULL, NULL, '{"error": {"code": "AI_ERROR", "message": "model refused", "retryable": false}}', NULL,
   '(f,AI_ERROR,"model refused",f)'),
  ('error object without retryable: by status', 503, NULL, NULL, '{"error": {"code": "NETWORK_ERROR", "message": "upstream reset"}}', NULL,
   '(f,NETWORK_ERROR,"upstream reset",t)'),
  ('error object without retryable nor message', 422, NULL, NULL, '{"error": {"code": "TIMEOUT"}}', NULL, '(f,TIMEOUT,"HTTP 422",f)'),
  ('error object with an unknown code', 502, NULL, NULL, '{"error": {"code": "OVERLOADED", "message": "x"}}', NULL,
   '(f,AI_ERROR,"HTTP 502: {""error"": {""code"": ""OVERLOADED"", ""message"": ""x""}}",t)'),
  ('error object, retryable not a boolean', 400, NULL, NULL, '{"error": {"code": "AI_ERROR", "message": "m", "retryable": "yes"}}', NULL,
   '(f,AI_ERROR,m,f)'),
  ('client timeout', NULL, 'TIMEOUT', 'Operation timed out after 2000 ms', NULL, NULL, '(f,TIMEOUT,"Operation timed out after 2000 ms",t)'),
  ('connection refused', NULL, 'NETWORK_ERROR', 'Connection refused', NULL, NULL, '(f,NETWORK_ERROR,"Connection refused",t)'),
  ('answer over 1 MB', NULL, 'AI_ERROR', 'answer larger than 1 MB', NULL, NULL, '(f,AI_ERROR,"answer larger than 1 MB",f)'),
  ('unknown transport code', NULL, 'SSL', NULL, NULL, NULL, '(f,NETWORK_ERROR,network_error,t)'),
  ('transport failure wins over a status', 200, 'TIMEOUT', 'late', '{"items": []}', NULL, '(f,TIMEOUT,late,t)');
SELECT is((SELECT (c.ok, c.code, c.message, c.retryable)::text
             FROM moverz_batch.classify_result('moverz-ai', http, tcode, tmsg, body, body_text) c),
          expected, 'classify_result: ' || what)
  FROM cases ORDER BY what;
SELECT is(length((moverz_batch.classify_result('moverz-ai', 500, NULL, NULL, NULL, repeat('x', 1000))).message), 210,
          'classify_result: a text body is cut to 200 characters in the message');
SELECT is(length((moverz_batch.classify_result('moverz-ai', 500, NULL, NULL, jsonb_build_object('error', jsonb_build_object('code', 'AI_ERROR', 'message', repeat('m', 900))), NULL)).message),
          500, 'classify_result: an error message is cut to 500 characters');

------------------------------------------------------------------------
-- claim_photos.  User A: a1 NORMAL, 4 photos, the last a duplicate of the
-- first, 3 minutes old.  User B: b1 NORMAL, 2 photos (room bedroom), 2
-- minutes old, the second not due yet.  User C: c1 HIGH, 1 photo, 1 minute
-- old; c2 LOW, 1 photo, 10 minutes old.
SELECT pg_temp.mk('tw_a', 'a1', (SELECT a || jsonb_build_array(a -> 0) FROM pg_temp.a(3) AS a), age => '3 minutes') IS NOT NULL AS a1 \gset
SELECT pg_temp.mk('tw_b', 'b1', pg_temp.a(2, 'bedroom'), age => '2 minutes') IS NOT NULL AS b1 \gset
UPDATE moverz_batch.photos SET next_attempt_at = now() + interval '1 minute' WHERE id = pg_temp.pid('b1', 1);
SELECT pg_temp.mk('tw_c', 'c1', pg_temp.a(1), 'HIGH', '1 minute') IS NOT NULL AS c1 \gset
SELECT pg_temp.mk('tw_c', 'c2', pg_temp.a(1), 'LOW', '10 minutes') IS NOT NULL AS c2 \gset
SELECT is(pg_temp.name((SELECT duplicate_of FROM moverz_batch.photos WHERE id = pg_temp.pid('a1', 3))), 'a1#0', 'setup: a1#3 duplicates a1#0');

SELECT is(pg_temp.claim(0, 100, 3), ARRAY['a1#0', 'b1#0', 'c1#0'],
          'claim 3: HIGH first, then users take turns (b1#0 before the older a1#1)');
SELECT results_eq($$SELECT g.batch_id = p.batch_id AND g.project_id = p.project_id AND g.user_id = p.user_id AND g.url = p.url
                           AND g.filename = p.filename AND g.room_type IS NOT DISTINCT FROM p.room_type, g.attempt
                      FROM got g JOIN moverz_batch.photos p ON p.id = g.id ORDER BY pg_temp.name(g.id)$$,
                  $$VALUES (true, 1), (true, 1), (true, 1)$$, 'claim: returns each photo''s batch, project, user, url, filename, room, attempt 1');
SELECT is((SELECT array_agg(format('%s %s %s/%s lease=%s started=%s', status, attempts, claimed_by, claim_token,
                                   lease_until = now() + interval '60 seconds', started_at = now()) ORDER BY position)
             FROM moverz_batch.photos WHERE batch_id = pg_temp.bid('a1')),
          ARRAY['PROCESSING 1 0/100 lease=t started=t', 'PENDING 0 / lease= started=', 'PENDING 0 / lease= started=', 'PENDING 0 / lease= started='],
          'claim: PROCESSING, attempt counted, worker slot, token, lease, start time');
SELECT is(pg_temp.st('a1'), 'PROCESSING 3/1/0/0', 'claim: the batch counts the photo in flight');
SELECT is(pg_temp.claim(0, 100, 1), ARRAY['a1#1'], 'claim 1: NORMAL before LOW, even an older LOW');
SELECT is(pg_temp.claim(0, 100, 10), ARRAY['a1#2', 'c2#0'], 'claim 10: the rest; neither the duplicate nor the photo not due');
SELECT is(pg_temp.claim(0, 100, 10), '{}'::text[], 'claim: nothing left');
SELECT is(pg_temp.ph('a1', 3), 'PENDING 0 - -/-', 'the duplicate was never claimed');

-- Per-user cap: A has 3 photos in flight, B 1, D none; with at most 2 per
-- user, A gets nothing, B one more, D two.
SELECT pg_temp.mk('tw_a', 'a3', pg_temp.a(2)) IS NOT NULL AS a3 \gset
SELECT pg_temp.mk('tw_b', 'b2', pg_temp.a(2)) IS NOT NULL AS b2 \gset
SELECT pg_temp.mk('tw_d', 'd1', pg_temp.a(3)) IS NOT NULL AS d1 \gset
SELECT is(pg_temp.claim(1, 200, 10, 2), ARRAY['b2#0', 'd1#0', 'd1#1'], 'per-user cap 2: counts each user''s photos in flight');
SELECT is(pg_temp.claim(1, 200, 10, 2), '{}'::text[], 'per-user cap 2: every user at the cap');
SELECT is(pg_temp.claim(1, 200, 10, 3), ARRAY['b2#1', 'd1#2'], 'per-user cap 3: one more for B, D''s last; A still at the cap');
SELECT is(pg_temp.claim(1, 200, 10), ARRAY['a3#0', 'a3#1'], 'no cap: A''s too');

-- Paused: nothing is claimed, nothing changes; resumed: claimed.
SELECT pg_temp.mk('tw_e', 'e1', pg_temp.a(2)) IS NOT NULL AS e1 \gset
SELECT ok(moverz_batch.pause_processing(), 'pause_processing');
SELECT is(pg_temp.claim(1, 200, 10), '{}'::text[], 'paused: nothing claimed');
SELECT is(pg_temp.st('e1'), 'QUEUED 2/0/0/0', 'paused: the photos still wait');
SELECT ok(moverz_batch.resume_processing(), 'resume_processing returns true: processing runs');
SELECT is(pg_temp.claim(1, 200, 10), ARRAY['e1#0', 'e1#1'], 'resumed: claimed');

-- Turns count the photos each user has in flight: claiming one photo at a
-- time, F (older) and G take turns.
SELECT pg_temp.mk('tw_f', 'f1', pg_temp.a(3), age => '5 minutes') IS NOT NULL AS f1 \gset
SELECT pg_temp.mk('tw_g', 'g1', pg_temp.a(2)) IS NOT NULL AS g1 \gset
SELECT is(array[(pg_temp.claim(1, 200, 1))[1], (pg_temp.claim(1, 200, 1))[1], (pg_temp.claim(1, 200, 1))[1],
                (pg_temp.claim(1, 200, 1))[1], (pg_temp.claim(1, 200, 1))[1]],
          ARRAY['f1#0', 'g1#0', 'f1#1', 'g1#1', 'f1#2'], 'one photo per claim: users alternate, by photos in flight');

------------------------------------------------------------------------
-- complete_photos: one statement writes back a mix of results.
SELECT is(pg_temp.complete(100,
    pg_temp.r('a1', 0, 200, '{"room_type": "kitchen", "items": [{"label": "chair", "quantity": 4, "volume_m3": 0.3}, {"label": "table", "quantity": 1, "volume_m3": 1.2}],
                             "model": "vision-2", "usage": {"input_tokens": 1200, "output_tokens": 85}, "cost_usd": 0.0125}'),
    pg_temp.r('b1', 0, 200, '{"room_type": "kitchen", "items": [{"label": "bed", "quantity": 1, "volume_m3": 2}]}'),
    pg_temp.r('a1', 1, 500, NULL, '{"body_text": "internal error"}'),
    pg_temp.r('a1', 2, 400, '{"error": {"code": "AI_ERROR", "message": "not a photo of a room", "retryable": false}}'),
    pg_temp.r('c1', 0, NULL, NULL, '{"transport_code": "TIMEOUT", "transport_message": "Operation timed out"}'),
    pg_temp.r('c2', 0, 429, NULL, '{"retry_after_ms": 7000}')),
    'done=2 rate_limit_ms=7000', 'complete: 2 DONE; a RATE_LIMIT answer holds the pool back for its Retry-After');
-- DONE: the analysis stored, the AI's room for a photo without one (and
-- for its duplicate), never over the photo's own; the claim released.
SELECT is((SELECT format('%s %s %s %s %s', status, room_type, analysis ->> 'model', jsonb_array_length(analysis -> 'items'), finished_at = now())
             FROM moverz_batch.photos WHERE id = pg_temp.pid('a1', 0)), 'DONE kitchen vision-2 2 t', 'DONE: analysis, AI room, finished');
SELECT is(pg_temp.ph('a1', 0), 'DONE 1 - -/-', 'DONE: the claim is released');
SELECT is((SELECT format('%s %s %s', status, room_type, analysis = (SELECT analysis FROM moverz_batch.photos WHERE id = pg_temp.pid('a1', 0)))
             FROM moverz_batch.photos WHERE id = pg_temp.pid('a1', 3)), 'DONE kitchen t', 'DONE: the waiting duplicate takes the outcome');
SELECT is((SELECT room_type FROM moverz_batch.photos WHERE id = pg_temp.pid('b1', 0)), 'bedroom', 'DONE: the photo''s own room is kept');
-- Retryable: back to PENDING with the backoff (1 s +/- 25 % for attempt 1).
SELECT is(pg_temp.ph('a1', 1), 'PENDING 1 AI_ERROR -/-', '500: PENDING again, attempt 1 counted');
SELECT is((SELECT error_message FROM moverz_batch.photos WHERE id = pg_temp.pid('a1', 1)), 'HTTP 500: internal error', '500: its message kept');
SELECT ok(pg_temp.due_in('a1', 1) BETWEEN 0.75 AND 1.25, '500: next attempt in 1 s +/- 25 %');
SELECT ok((SELECT finished_at IS NULL FROM moverz_batch.photos WHERE id = pg_temp.pid('a1', 1)), '500: not finished');
SELECT is(pg_temp.ph('c1', 0), 'PENDING 1 TIMEOUT -/-', 'client timeout: PENDING again');
SELECT is(pg_temp.ph('c2', 0), 'PENDING 1 RATE_LIMIT -/-', '429: PENDING again');
SELECT ok(pg_temp.due_in('c2', 0) >= 7, '429: next attempt not before Retry-After');
-- Final: ERROR at once.
SELECT is(pg_temp.ph('a1', 2), 'ERROR 1 AI_ERROR -/-', '400: ERROR at the first attempt');
SELECT is((SELECT error_message || ' ' || (finished_at = now()) FROM moverz_batch.photos WHERE id = pg_temp.pid('a1', 2)),
          'not a photo of a room true', '400: the service''s message, finished');
-- Waiting photos are not claimed before their time.
SELECT is(pg_temp.claim(2, 300, 10), '{}'::text[], 'retries wait for their backoff');
-- ai_metrics: one row per call, with its meta.
SELECT is((SELECT count(*) FROM moverz_batch.ai_metrics), 6::bigint, 'ai_metrics: one row per result');
SELECT is((SELECT format('%s %s %s %s %s %s %s', provider, operation, latency_ms, success, cost_usd, tokens_in, tokens_out)
             FROM moverz_batch.ai_metrics WHERE meta ->> 'photoId' = pg_temp.pid('a1', 0)::text),
          'test-ai analyze_photo 100 t 0.012500 1200 85', 'ai_metrics: provider, latency, success, cost, tokens');
SELECT is((SELECT meta FROM moverz_batch.ai_metrics WHERE meta ->> 'photoId' = pg_temp.pid('a1', 0)::text),
          jsonb_build_object('photoId', pg_temp.pid('a1', 0), 'userId', 'tw_a', 'batchId', pg_temp.bid('a1'), 'itemsCount', 2,
                             'attempt', 1, 'httpStatus', 200, 'model', 'vision-2'), 'ai_metrics: meta of a success');
SELECT is((SELECT meta FROM moverz_batch.ai_metrics WHERE meta ->> 'photoId' = pg_temp.pid('a1', 1)::text),
          jsonb_build_object('photoId', pg_temp.pid('a1', 1), 'userId', 'tw_a', 'batchId', pg_temp.bid('a1'),
                             'attempt', 1, 'errorCode', 'AI_ERROR', 'httpStatus', 500), 'ai_metrics: meta of a failure');
SELECT is((SELECT format('%s %s %s', success, cost_usd IS NULL, meta - 'photoId' - 'userId' - 'batchId')
             FROM moverz_batch.ai_metrics WHERE meta ->> 'photoId' = pg_temp.pid('c1', 0)::text),
          'f t {"attempt": 1, "errorCode": "TIMEOUT"}', 'ai_metrics: a transport failure has no HTTP status');

-- a1#1 again: attempt 2 waits 4 s +/- 25 %, attempt 3 is the last: ERROR.
SELECT pg_temp.make_due('a1', 1);
SELECT is(pg_temp.claim(2, 300, 10), ARRAY['a1#1'], 'due again: claimed');
SELECT is((SELECT attempt FROM got), 2, 'second attempt');
SELECT is(pg_temp.complete(300, pg_temp.r('a1', 1, 503, NULL)), 'done=0 rate_limit_ms=0', 'attempt 2: 503');
SELECT ok(pg_temp.due_in('a1', 1) BETWEEN 3 AND 5, 'attempt 2 failed: next attempt in 4 s +/- 25 %');
SELECT pg_temp.make_due('a1', 1);
SELECT is(pg_temp.claim(2, 300, 10), ARRAY['a1#1'], 'due again: claimed a third time');
SELECT is(pg_temp.complete(300, pg_temp.r('a1', 1, 503, NULL)), 'done=0 rate_limit_ms=0', 'attempt 3: 503');
SELECT is(pg_temp.ph('a1', 1), 'ERROR 3 AI_ERROR -/-', 'max_attempts reached: ERROR');
SELECT ok((SELECT finished_at = now() FROM moverz_batch.photos WHERE id = pg_temp.pid('a1', 1)), 'max_attempts reached: finished');
SELECT is(pg_temp.st('a1'), 'PARTIAL 0/0/2/2', 'a1 finished: PARTIAL (the duplicate counts as DONE)');
SELECT is((SELECT count(*) FROM moverz_batch.inventory_sync_jobs WHERE batch_id = pg_temp.bid('a1')), 1::bigint, 'a1 finished: one inventory job');

-- Stale results change nothing (another incarnation's token, an older
-- attempt), but are logged.
SELECT pg_temp.make_due('c1', 0);
SELECT is(pg_temp.claim(2, 301, 10), ARRAY['c1#0'], 'c1#0 claimed again (attempt 2)');
SELECT is(pg_temp.complete(999, pg_temp.r('c1', 0, 200, '{"items": []}')), 'done=0 rate_limit_ms=0', 'another token: ignored');
SELECT is(pg_temp.complete(301, pg_temp.r('c1', 0, 200, '{"items": []}', '{"attempt": 1}')), 'done=0 rate_limit_ms=0', 'an older attempt: ignored');
SELECT is(pg_temp.ph('c1', 0), 'PROCESSING 2 TIMEOUT 2/301', 'stale results: the claim is untouched');
SELECT is((SELECT count(*) FROM moverz_batch.ai_metrics WHERE meta ->> 'photoId' = pg_temp.pid('c1', 0)::text), 3::bigint,
          'stale results: still one ai_metrics row each');
SELECT is(pg_temp.complete(301, pg_temp.r('c1', 0, 200, '{"items": []}')), 'done=1 rate_limit_ms=0', 'the current attempt: applied');
SELECT is(pg_temp.ph('c1', 0), 'DONE 2 - -/-', 'DONE; the previous error cleared');
-- RATE_LIMIT without Retry-After: the backoff; several: the longest.
SELECT is(pg_temp.complete(999, pg_temp.r('e1', 0, 429, NULL)), 'done=0 rate_limit_ms=1000', 'RATE_LIMIT without Retry-After: the backoff');
SELECT is(pg_temp.complete(999, pg_temp.r('e1', 0, 429, NULL),
                           pg_temp.r('e1', 1, 503, '{"error": {"code": "RATE_LIMIT", "message": "quota", "retryable": true}}', '{"retry_after_ms": 2500}')),
          'done=0 rate_limit_ms=2500', 'several RATE_LIMIT answers: the longest wait');
SELECT is(pg_temp.complete(100, VARIADIC '{}'::jsonb[]), 'done=0 rate_limit_ms=0', 'no results: nothing');

------------------------------------------------------------------------
-- release_claims(worker 3, token 11, 4 workers, 3 attempts): photos held
-- by an older incarnation of worker 3, by a slot that no longer exists, or
-- whose lease expired go back to PENDING (ERROR after the last attempt).
SELECT pg_temp.mk('tw_r', 'r1', pg_temp.a(7)) IS NOT NULL AS r1 \gset
UPDATE moverz_batch.photos p
   SET status = 'PROCESSING', attempts = c.attempts, claimed_by = c.w, claim_token = c.tok,
       lease_until = now() + c.lease, started_at = now()
  FROM (VALUES (0, 3, 10::bigint, interval '1 minute', 1),     -- older incarnation of worker 3
               (1, 3, 11, interval '1 minute', 1),             -- worker 3 now: kept
               (2, 7, 70, interval '1 minute', 1),             -- slot 7 >= 4 workers
               (3, 2, 20, interval '-1 second', 1),            -- lease expired
               (4, 2, 20, interval '1 minute', 1),             -- another worker, valid lease: kept
               (5, 3, 10, interval '1 minute', 3)) AS c(pos, w, tok, lease, attempts)
 WHERE p.batch_id = pg_temp.bid('r1') AND p.position = c.pos;
SELECT count(*) AS inflight_elsewhere FROM moverz_batch.photos WHERE status = 'PROCESSING' AND batch_id <> pg_temp.bid('r1') \gset
SELECT is(moverz_batch_internal.release_claims(3, 11, 4, 3), 4, 'release_claims: 4 photos released');
SELECT is(array(SELECT pg_temp.ph('r1', pos) FROM generate_series(0, 6) AS pos),
          ARRAY['PENDING 1 - -/-', 'PROCESSING 1 - 3/11', 'PENDING 1 - -/-', 'PENDING 1 - -/-', 'PROCESSING 1 - 2/20', 'ERROR 3 AI_ERROR -/-', 'PENDING 0 - -/-'],
          'release_claims: back to PENDING with the attempt counted, ERROR after the last one, the live claims kept');
SELECT is((SELECT error_message || ' ' || (finished_at = now()) FROM moverz_batch.photos WHERE id = pg_temp.pid('r1', 5)),
          'the worker stopped while the request was in flight true', 'release_claims: the message of the photo given up');
SELECT ok((SELECT bool_and(next_attempt_at = now() AND lease_until IS NULL) FROM moverz_batch.photos
            WHERE batch_id = pg_temp.bid('r1') AND position IN (0, 2, 3)), 'release_claims: released photos are due at once');
SELECT is(pg_temp.st('r1'), 'PROCESSING 4/2/0/1', 'release_claims: the counters follow');
SELECT is((SELECT count(*) FROM moverz_batch.photos WHERE status = 'PROCESSING' AND batch_id <> pg_temp.bid('r1')),
          :inflight_elsewhere::bigint, 'release_claims: the other workers'' valid claims kept');
SELECT is(moverz_batch_internal.release_claims(3, 11, 4, 3), 0, 'release_claims again: nothing');
-- The late answer of the older incarnation changes nothing.
SELECT is(pg_temp.complete(10, pg_temp.r('r1', 0, 200, '{"items": []}')), 'done=0 rate_limit_ms=0', 'late answer to a released claim: ignored');
SELECT is(pg_temp.ph('r1', 0), 'PENDING 1 - -/-', 'late answer: the photo still waits');
-- Claimed again by a worker reusing token 20: the answer to attempt 1
-- (lease expired) is not taken for attempt 2.
SELECT is(pg_temp.claim(2, 20, 10), ARRAY['r1#0', 'r1#2', 'r1#3', 'r1#6'], 'released photos claimed again');
SELECT is(pg_temp.complete(20, pg_temp.r('r1', 3, 200, '{"items": []}', '{"attempt": 1}')), 'done=0 rate_limit_ms=0',
          'same token, older attempt: ignored');
SELECT is(pg_temp.ph('r1', 3), 'PROCESSING 2 - 2/20', 'the second attempt is still in flight');

------------------------------------------------------------------------
-- run_next_inventory_job: the due jobs, oldest first, each once.
SELECT is((SELECT array_agg(l.label ORDER BY j.id) FROM moverz_batch.inventory_sync_jobs j JOIN lbl l ON l.id = j.batch_id
            WHERE j.status = 'PENDING'), ARRAY['a1', 'c1'], 'two jobs pending: a1 (PARTIAL), c1 (COMPLETED)');
SELECT is(array[moverz_batch_internal.run_next_inventory_job(), moverz_batch_internal.run_next_inventory_job()],
          array[(SELECT id FROM moverz_batch.inventory_sync_jobs WHERE batch_id = pg_temp.bid('a1')),
                (SELECT id FROM moverz_batch.inventory_sync_jobs WHERE batch_id = pg_temp.bid('c1'))], 'runs a1''s job, then c1''s');
SELECT is((SELECT status || ' ' || attempts FROM moverz_batch.inventory_sync_jobs WHERE batch_id = pg_temp.bid('a1')), 'DONE 1', 'the job is DONE');
SELECT is(moverz_batch.batch_progress(pg_temp.bid('a1')) -> 'inventorySummary' -> 'totalItems', '5'::jsonb, 'a1''s inventory: the duplicate counted once');
SELECT is(moverz_batch_internal.run_next_inventory_job(), NULL, 'no job due: NULL');
-- Order: next_attempt_at, then id.
SELECT pg_temp.mk('tw_i', 'i1', pg_temp.a(1)) IS NOT NULL AS i1 \gset
SELECT pg_temp.mk('tw_i', 'i2', pg_temp.a(1)) IS NOT NULL AS i2 \gset
UPDATE moverz_batch.photos SET status = 'DONE', analysis = '{"items": [{"label": "box", "quantity": 3, "volume_m3": 0.1}]}'
 WHERE batch_id IN (pg_temp.bid('i1'), pg_temp.bid('i2'));
UPDATE moverz_batch.inventory_sync_jobs SET next_attempt_at = now() - interval '1 second' WHERE batch_id = pg_temp.bid('i2');
SELECT is(array[moverz_batch_internal.run_next_inventory_job(), moverz_batch_internal.run_next_inventory_job(), moverz_batch_internal.run_next_inventory_job()],
          array[(SELECT id FROM moverz_batch.inventory_sync_jobs WHERE batch_id = pg_temp.bid('i2')),
                (SELECT id FROM moverz_batch.inventory_sync_jobs WHERE batch_id = pg_temp.bid('i1')), NULL],
          'the job due first runs first');
-- A failing sync: recorded on the job, retried later with a backoff.
CREATE FUNCTION public.mb_tap_fail_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'disk full (test)';
END
$$;
CREATE TRIGGER mb_tap_fail_sync BEFORE INSERT ON moverz_batch.inventory_summaries FOR EACH ROW EXECUTE FUNCTION public.mb_tap_fail_sync();
SELECT pg_temp.mk('tw_i', 'i3', pg_temp.a(1)) IS NOT NULL AS i3 \gset
UPDATE moverz_batch.photos SET status = 'DONE', analysis = '{"items": [{"label": "lamp", "quantity": 1, "volume_m3": 0.2}]}'
 WHERE batch_id = pg_temp.bid('i3');
SELECT id AS i3_job FROM moverz_batch.inventory_sync_jobs WHERE batch_id = pg_temp.bid('i3') \gset
SET LOCAL client_min_messages = error;
SELECT is(moverz_batch_internal.run_next_inventory_job(), :i3_job::bigint, 'failing job: run, its id returned');
SET LOCAL client_min_messages = warning;
SELECT is((SELECT format('%s %s %s %s', status, attempts, last_error, extract(epoch FROM next_attempt_at - now()))
             FROM moverz_batch.inventory_sync_jobs WHERE id = :i3_job), 'PENDING 1 disk full (test) 1.000000',
          'failing job: still PENDING, the error recorded, retried in 1 s');
SELECT is((SELECT count(*) FROM moverz_batch.inventory_summaries WHERE batch_id = pg_temp.bid('i3')), 0::bigint, 'failing job: nothing half-written');
SELECT is(moverz_batch_internal.run_next_inventory_job(), NULL, 'failing job: not due again yet');
UPDATE moverz_batch.inventory_sync_jobs SET next_attempt_at = now() WHERE id = :i3_job;
SET LOCAL client_min_messages = error;
SELECT is(moverz_batch_internal.run_next_inventory_job(), :i3_job::bigint, 'failing job: second failure');
SET LOCAL client_min_messages = warning;
SELECT is((SELECT format('%s %s %s', status, attempts, extract(epoch FROM next_attempt_at - now())) FROM moverz_batch.inventory_sync_jobs WHERE id = :i3_job),
          'PENDING 2 2.000000', 'failing job: the backoff doubles');
DROP TRIGGER mb_tap_fail_sync ON moverz_batch.inventory_summaries;
UPDATE moverz_batch.inventory_sync_jobs SET next_attempt_at = now() WHERE id = :i3_job;
SELECT is(moverz_batch_internal.run_next_inventory_job(), :i3_job::bigint, 'repaired: the job runs again');
SELECT is((SELECT format('%s %s %s', status, attempts, last_error IS NULL) FROM moverz_batch.inventory_sync_jobs WHERE id = :i3_job),
          'DONE 3 t', 'repaired: DONE, the error cleared');
SELECT is(moverz_batch.batch_progress(pg_temp.bid('i3')) -> 'inventorySummary' -> 'totalItems', '1'::jsonb, 'repaired: the inventory is there');
-- A job superseded by a retry_batch ends SUPERSEDED.
SELECT pg_temp.mk('tw_i', 'i4', pg_temp.a(1)) IS NOT NULL AS i4 \gset
UPDATE moverz_batch.photos SET status = 'ERROR', error_code = 'TIMEOUT' WHERE batch_id = pg_temp.bid('i4');
SELECT is(moverz_batch.retry_batch(pg_temp.bid('i4')), 1, 'i4 retried');
SELECT is(moverz_batch_internal.run_next_inventory_job(), (SELECT id FROM moverz_batch.inventory_sync_jobs WHERE batch_id = pg_temp.bid('i4')), 'the stale job is run');
SELECT is((SELECT status FROM moverz_batch.inventory_sync_jobs WHERE batch_id = pg_temp.bid('i4')), 'SUPERSEDED', 'the stale job ends SUPERSEDED');

SELECT * FROM finish();
ROLLBACK;
