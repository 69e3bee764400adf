#!/usr/bin/env bash
# Outcomes of the AI contract: all succeed -> COMPLETED; all fail -> FAILED;
# 429 then success (Retry-After honoured); hang -> TIMEOUT after max attempts
# with the backoff observed; malformed JSON / wrong shape -> AI_ERROR; plain
# 5xx retried; plain 4xx not retried; error objects taken at their word.
source "$(dirname "$0")/common.sh"
u=https://img.example.com

project=$(new_project outcomes-user)
ok_batch=$(submit "$project" outcomes-user "[
  {\"filename\": \"a.jpg\", \"url\": \"$u/a.jpg?items=sofa:1:1.5\"},
  {\"filename\": \"b.jpg\", \"url\": \"$u/b.jpg?items=bed:2:1.25\"},
  {\"filename\": \"c.jpg\", \"url\": \"$u/c.jpg?items=\"}]")
fail_batch=$(submit "$project" outcomes-user "[
  {\"filename\": \"a.jpg\", \"url\": \"$u/a.jpg?fault=400\"},
  {\"filename\": \"b.jpg\", \"url\": \"https://nowhere.invalid/b.jpg\"}]")
mixed=$(submit "$project" outcomes-user "[
  {\"filename\": \"r429.jpg\",  \"url\": \"$u/r.jpg?fault=429&retry_after=1&fail_first=1&items=box:3:0.1\"},
  {\"filename\": \"hang.jpg\",  \"url\": \"$u/h.jpg?fault=hang\"},
  {\"filename\": \"bad.jpg\",   \"url\": \"$u/m.jpg?fault=malformed\"},
  {\"filename\": \"shape.jpg\", \"url\": \"$u/s.jpg?fault=badshape\"},
  {\"filename\": \"e500.jpg\",  \"url\": \"$u/e.jpg?fault=500\"},
  {\"filename\": \"f2.jpg\",    \"url\": \"$u/f.jpg?fail_first=2&items=lamp:1:0.05\"},
  {\"filename\": \"e504.jpg\",  \"url\": \"$u/t.jpg?fault=504\"},
  {\"filename\": \"e503.jpg\",  \"url\": \"$u/o.jpg?fault=503json\"},
  {\"filename\": \"e42.jpg\",   \"url\": \"$u/x.jpg?fault=badjson_error\"}]")

wait_finished "$ok_batch" 30; ok $? "all-success batch finishes"
is "$(progress "$ok_batch" '{status}')" COMPLETED "all DONE -> COMPLETED"
is "$(progress "$ok_batch" '{inventorySummary,totalItems}')" 3 "empty items count nothing"
is "$(progress "$ok_batch" '{inventorySummary,totalVolume}')" 4 "1x1.5 + 2x1.25"

wait_finished "$fail_batch" 30; ok $? "all-failure batch finishes"
is "$(progress "$fail_batch" '{status}')" FAILED "all ERROR -> FAILED"
is "$(progress "$fail_batch" '{inventorySummary,totalItems}')" 0 "a FAILED batch has an empty inventory"
is "$(photo_field "$fail_batch" 0 "error_code || '/' || attempts")" "AI_ERROR/1" "plain 4xx: AI_ERROR, not retried"

wait_finished "$mixed" 60; ok $? "mixed batch finishes"
is "$(progress "$mixed" '{status}')" PARTIAL "mixed -> PARTIAL"
is "$(photo_field "$mixed" 0 "status || '/' || attempts")" "DONE/2" "429 then success"
is "$(q "SELECT extract(epoch FROM max(created_at) - min(created_at)) >= 0.95
           FROM moverz_batch.ai_metrics
          WHERE meta->>'photoId' = (SELECT id::text FROM moverz_batch.photos
                                     WHERE batch_id = '$mixed' AND position = 0)")" t \
   "the retry after a 429 waited for Retry-After (1 s), not only the 200 ms backoff"
is "$(photo_field "$mixed" 1 "status || '/' || error_code || '/' || attempts")" "ERROR/TIMEOUT/3" \
   "hang: TIMEOUT after max_attempts"
is "$(q "WITH m AS (SELECT created_at, lag(created_at) OVER (ORDER BY created_at) AS prev
                      FROM moverz_batch.ai_metrics
                     WHERE meta->>'photoId' = (SELECT id::text FROM moverz_batch.photos
                                                WHERE batch_id = '$mixed' AND position = 1))
         SELECT string_agg((extract(epoch FROM created_at - prev) >= 2.1)::text, ',' ORDER BY created_at)
           FROM m WHERE prev IS NOT NULL")" "true,true" \
   "hang: each retry came after the 2 s timeout plus a backoff"
is "$(photo_field "$mixed" 2 "error_code || '/' || attempts")" "AI_ERROR/3" "malformed JSON: AI_ERROR, retried"
is "$(photo_field "$mixed" 2 "error_message")" "invalid AI response: response is not valid JSON" \
   "malformed JSON: message"
is "$(photo_field "$mixed" 3 "error_message")" "invalid AI response: analysis.items must be an array" \
   "wrong shape: message names the rule"
is "$(photo_field "$mixed" 4 "error_code || '/' || attempts")" "AI_ERROR/3" "plain 500 retried, then AI_ERROR"
is "$(photo_field "$mixed" 5 "status || '/' || attempts")" "DONE/3" "fail twice then succeed"
is "$(photo_field "$mixed" 6 "error_code")" TIMEOUT "504 -> TIMEOUT"
is "$(photo_field "$mixed" 7 "error_code || '/' || attempts || '/' || error_message")" \
   "AI_ERROR/3/model overloaded" "error object taken at its word, retryable"
is "$(photo_field "$mixed" 8 "error_code || '/' || attempts")" "AI_ERROR/3" \
   "an error object of the wrong shape falls back to the HTTP status"
is "$(progress "$mixed" '{inventorySummary,totalItems}')" 4 "inventory of the two DONE photos"
is "$(q "SELECT count(*) FROM moverz_batch.ai_metrics WHERE meta->>'batchId' = '$mixed'")" \
   "$(q "SELECT sum(attempts) FROM moverz_batch.photos WHERE batch_id = '$mixed'")" \
   "one metrics row per call"
is "$(q "SELECT count(*) FROM moverz_batch.inventory_sync_jobs WHERE batch_id IN ('$ok_batch', '$fail_batch', '$mixed')")" \
   3 "one inventory job per batch"
done_testing
