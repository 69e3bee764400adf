#!/usr/bin/env bash
# The seed's smoke scenario (scripts/smoke-lot11.js): a project, a batch of
# 3 photos of which one has an unreachable URL -> PARTIAL, 2 DONE, 1 ERROR
# NETWORK_ERROR, the inventory of exactly the 2 DONE photos, one sync job.
source "$(dirname "$0")/common.sh"

project=$(new_project smoke-user)
batch=$(submit "$project" smoke-user '[
  {"filename": "salon.jpg", "filePath": "/p/salon.jpg", "roomType": "living_room",
   "url": "https://img.example.com/salon.jpg?items=sofa:1:2.5,armchair:2:0.8,table:1:0.6"},
  {"filename": "chambre.jpg", "filePath": "/p/chambre.jpg",
   "url": "https://img.example.com/chambre.jpg?items=bed:1:1.9,wardrobe:2:1.1"},
  {"filename": "cuisine.jpg", "filePath": "/p/cuisine.jpg", "roomType": "kitchen",
   "url": "https://unreachable.invalid/cuisine.jpg"}]')

wait_finished "$batch" 30
ok $? "the batch finishes and its inventory is synced"
is "$(progress "$batch" '{status}')" PARTIAL "status PARTIAL"
is "$(progress "$batch" '{progress}')" 100 "progress 100"
is "$(progress "$batch" '{counts}')" \
   '{"total": 3, "failed": 1, "queued": 0, "completed": 2, "processing": 0}' "counts"
is "$(progress "$batch" '{photos,2,errorCode}')" NETWORK_ERROR "the bad URL photo is NETWORK_ERROR"
is "$(progress "$batch" '{photos,1,roomType}')" bedroom "room type filled in by the AI"
is "$(progress "$batch" '{inventorySummary,totalItems}')" 7 "totalItems of the 2 DONE photos"
is "$(progress "$batch" '{inventorySummary,totalVolume}')" 8.8 "totalVolume = sum of quantity x volume"
is "$(progress "$batch" '{inventorySummary,rooms}')" \
   '[{"roomType": "bedroom", "volume_m3": 4.1, "itemsCount": 3}, {"roomType": "living_room", "volume_m3": 4.7, "itemsCount": 4}]' \
   "per-room totals"
is "$(q "SELECT count(*) FROM moverz_batch.inventory_sync_jobs WHERE batch_id = '$batch'")" 1 \
   "exactly one inventory-sync job"
is "$(q "SELECT count(*) FROM moverz_batch.ai_metrics WHERE meta->>'batchId' = '$batch'")" 3 \
   "one ai_metrics row per call"
is "$(q "SELECT string_agg(DISTINCT provider || '/' || operation, ',') FROM moverz_batch.ai_metrics
          WHERE meta->>'batchId' = '$batch'")" "moverz-ai/analyze_photo" "metrics provider and operation"
is "$(q "SELECT count(*) FROM moverz_batch.ai_metrics WHERE meta->>'batchId' = '$batch' AND success
           AND cost_usd > 0 AND tokens_in > 0 AND (meta->>'itemsCount')::int > 0")" 2 \
   "successful calls carry cost, tokens and itemsCount"
bad=$(q "SELECT id FROM moverz_batch.photos WHERE batch_id = '$batch' AND position = 2")
is "$(fake_calls "$bad")" 1 "the non-retryable failure was not retried"
done_testing
