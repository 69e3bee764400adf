#!/usr/bin/env bash
# Real AI providers (moverz_batch.ai_provider = anthropic, openai), against
# fakes of their APIs written from their references (test/fake_providers),
# which refuse a request of the wrong shape as the real APIs do.  For each:
# the seed's smoke scenario (3 photos, one the provider cannot fetch ->
# PARTIAL, exact inventory); the request as sent (key, version, prompt,
# schema, image); every error class reached through the provider's own
# answers; costs = tokens x model_prices; the key never in a log, a metric
# or an error message.
source "$(dirname "$0")/common.sh"
PROVIDER_OUT=$(mktemp /tmp/moverz_provider.XXXXXX)
KEY=sk-test-0123456789abcdef-secret
KEYFILE=$MB_DIR/provider.key
cleanup() {
    for s in ai_provider ai_service_url ai_api_key_file ai_model; do reset_conf "moverz_batch.$s"; done
    rm -f "$KEYFILE"
    [ -n "${PROVIDER_PID:-}" ] && kill "$PROVIDER_PID" 2>/dev/null
    q "DELETE FROM moverz_batch.model_prices WHERE model IN ('claude-test', 'gpt-test')" >/dev/null
    rm -f "$PROVIDER_OUT"
}
trap cleanup EXIT
u=https://img.example.com/prov
q "INSERT INTO moverz_batch.model_prices (model, input_usd_per_mtok, output_usd_per_mtok)
   VALUES ('claude-test', 3, 15), ('gpt-test', 0.4, 1.6)" >/dev/null

# set_key KEY: the API key, in a file only the server's user reads, and
# reload (as an operator does: the key is in no setting, hence in no log).
set_key() {
    ( umask 077; printf '%s\n' "$1" >"$KEYFILE" )
    [ "$(id -u)" = 0 ] && chown postgres: "$KEYFILE"
    set_conf moverz_batch.ai_api_key_file "$KEYFILE"
}

# fake_get PATH: a GET on the provider's fake (outside /v1).
fake_get() {
    curl -s "${PROVIDER_URL%/v1}$1"
}

# use_provider API MODEL: start its fake and point the workers at it.
use_provider() {
    [ -n "${PROVIDER_PID:-}" ] && kill "$PROVIDER_PID" 2>/dev/null
    mb_provider_start "$PROVIDER_OUT" "$1" --api-key "$KEY"
    ok $? "the $1 fake starts"
    set_conf moverz_batch.ai_provider "$1"
    set_conf moverz_batch.ai_service_url "$PROVIDER_URL"
    set_key "$KEY"
    set_conf moverz_batch.ai_model "$2"
}

# smoke API: the seed's smoke scenario through the provider API.
smoke() {
    local api=$1 project batch
    project=$(new_project "prov-$api")
    batch=$(submit "$project" "prov-$api" '[
      {"filename": "salon.jpg", "roomType": "living_room",
       "url": "https://img.example.com/salon.jpg?items=sofa:1:2.5,armchair:2:0.8,table:1:0.6"},
      {"filename": "chambre.jpg", "url": "https://img.example.com/chambre.jpg?items=bed:1:1.9,wardrobe:2:1.1"},
      {"filename": "cuisine.jpg", "roomType": "kitchen", "url": "https://unreachable.invalid/cuisine.jpg"}]')
    wait_finished "$batch" 30
    ok $? "$api: the smoke batch finishes and its inventory is synced"
    is "$(progress "$batch" '{status}')" PARTIAL "$api: status PARTIAL"
    is "$(progress "$batch" '{photos,1,roomType}')" bedroom "$api: the room type the model named"
    is "$(progress "$batch" '{inventorySummary,totalItems}')" 7 "$api: totalItems of the 2 DONE photos"
    is "$(progress "$batch" '{inventorySummary,totalVolume}')" 8.8 "$api: totalVolume"
    is "$(progress "$batch" '{inventorySummary,rooms}')" \
       '[{"roomType": "bedroom", "volume_m3": 4.1, "itemsCount": 3}, {"roomType": "living_room", "volume_m3": 4.7, "itemsCount": 4}]' \
       "$api: per-room totals"
    is "$(photo_field "$batch" 2 "error_code || '/' || attempts")" "AI_ERROR/1" \
       "$api: an image the provider cannot fetch: final AI_ERROR, not retried"
    is "$(photo_field "$batch" 2 "error_message LIKE '$api HTTP 400 %' AND error_message ILIKE '%download%'")" t \
       "$api: ... with the provider's own message"
    is "$(q "SELECT string_agg(DISTINCT provider || '/' || model, ',') FROM moverz_batch.ai_metrics
              WHERE meta->>'batchId' = '$batch' AND success")" "$api/$model" "$api: metrics name the provider and the model"
    is "$(q "SELECT count(*) FROM moverz_batch.ai_metrics WHERE meta->>'batchId' = '$batch' AND success
               AND tokens_in > 1000 AND tokens_out > 40 AND meta->>'promptVersion' = moverz_batch.ai_prompt_version()")" 2 \
       "$api: token counts and the prompt version of each analysed photo"
    is "$(q "SELECT bool_and(m.cost_usd = round((m.tokens_in * p.input_usd_per_mtok + m.tokens_out * p.output_usd_per_mtok) / 1e6, 6))
               FROM moverz_batch.ai_metrics m JOIN moverz_batch.model_prices p ON p.model = m.model
              WHERE m.meta->>'batchId' = '$batch' AND m.success")" t "$api: cost = tokens x model_prices"
    is "$(q "SELECT total_cost_usd = (SELECT sum(cost_usd) FROM moverz_batch.ai_metrics WHERE meta->>'batchId' = '$batch')
                    AND total_cost_usd > 0
               FROM moverz_batch.batch_ai_metrics WHERE batch_id = '$batch'")" t "$api: batch_ai_metrics shows the batch's cost"
    is "$(q "SELECT sum(tokens_in) || '/' || sum(tokens_out) FROM moverz_batch.ai_metrics
              WHERE meta->>'batchId' = '$batch' AND success")" \
       "$(fake_get /stats | jq -r '"\(.input_tokens)/\(.output_tokens)"')" "$api: the tokens the fake reported, all of them"
    is "$(fake_get /stats | jq -r .rejected)" 0 "$api: the fake refused none of our requests"
}

# request_shape API: what the last request carried.
request_shape() {
    local last
    last=$(fake_get /last_request)
    if [ "$1" = anthropic ]; then
        is "$(jq -r '.headers["x-api-key"] == "'$KEY'" and .headers["anthropic-version"] == "2023-06-01"
                     and (.headers.authorization == null)' <<<"$last")" true \
           "anthropic: x-api-key and anthropic-version headers, no Authorization"
        is "$(jq -c '[.body.model, .body.max_tokens, .body.tool_choice, .body.tools[0].name,
                      (.body.messages[0].content | map(.type))]' <<<"$last")" \
           '["claude-test",1024,{"type":"tool","name":"record_room_analysis"},"record_room_analysis",["image","text"]]' \
           "anthropic: model, max_tokens, the forced tool, an image block then the text"
        is "$(jq -r '.body.messages[0].content[0].source.type' <<<"$last")" url "anthropic: the image as a URL source"
        schema=$(jq -c '.body.tools[0].input_schema' <<<"$last")
        prompt=$(jq -r '.body.system' <<<"$last")
    else
        is "$(jq -r '.headers.authorization == "Bearer '$KEY'"' <<<"$last")" true "openai: Authorization: Bearer"
        is "$(jq -c '[.body.model, .body.max_completion_tokens, .body.response_format.type,
                      .body.response_format.json_schema.strict, (.body.messages | map(.role)),
                      (.body.messages[1].content | map(.type))]' <<<"$last")" \
           '["gpt-test",1024,"json_schema",true,["system","user"],["text","image_url"]]' \
           "openai: model, max_completion_tokens, a strict json_schema, system then user with text and image_url"
        schema=$(jq -c '.body.response_format.json_schema.schema' <<<"$last")
        prompt=$(jq -r '.body.messages[0].content' <<<"$last")
    fi
    is "$(jq -S -c . <<<"$schema")" "$(q "SELECT moverz_batch.ai_analysis_schema()" | jq -S -c .)" \
       "$1: the schema of ai_analysis_schema()"
    is "$(jq -c '.properties.room_type.enum | index("kitchen") != null' <<<"$schema")" true \
       "$1: the schema names the room types"
    is "$prompt" "$(q "SELECT moverz_batch.ai_system_prompt()")" "$1: the system prompt of ai_system_prompt()"
    is "$(grep -c 'living_room (living room' <<<"$prompt")" 1 "$1: the prompt names the room types"
}

# error_classes API: one photo per answer of the provider's.
error_classes() {
    local api=$1 project batch over
    project=$(new_project "prov-err-$api")
    over=529; [ "$api" = openai ] && over=429
    batch=$(submit "$project" "prov-err-$api" "[
      {\"filename\": \"r429.jpg\",    \"url\": \"$u/a.jpg?fault=429&retry_after=1&fail_first=1&items=box:3:0.1\"},
      {\"filename\": \"over.jpg\",    \"url\": \"$u/b.jpg?fault=$over&fail_first=1&items=lamp:1:0.05\"},
      {\"filename\": \"e500.jpg\",    \"url\": \"$u/c.jpg?fault=500\"},
      {\"filename\": \"e504.jpg\",    \"url\": \"$u/d.jpg?fault=504\"},
      {\"filename\": \"e408.jpg\",    \"url\": \"$u/e.jpg?fault=408\"},
      {\"filename\": \"hang.jpg\",    \"url\": \"$u/f.jpg?fault=hang\"},
      {\"filename\": \"badimg.jpg\",  \"url\": \"$u/g.jpg?fault=badimage\"},
      {\"filename\": \"refuse.jpg\",  \"url\": \"$u/h.jpg?fault=refusal\"},
      {\"filename\": \"cut.jpg\",     \"url\": \"$u/i.jpg?fault=max_tokens\"},
      {\"filename\": \"notool.jpg\",  \"url\": \"$u/j.jpg?fault=notool\"},
      {\"filename\": \"schema.jpg\",  \"url\": \"$u/k.jpg?fault=badschema\"},
      {\"filename\": \"later.jpg\",   \"url\": \"$u/l.jpg?fail_first=2&items=chair:4:0.2\"}]")
    wait_finished "$batch" 60
    ok $? "$api: the error batch finishes"
    is "$(photo_field "$batch" 0 "status || '/' || attempts")" "DONE/2" "$api: 429 then success"
    is "$(q "SELECT extract(epoch FROM max(created_at) - min(created_at)) >= 0.95 FROM moverz_batch.ai_metrics
              WHERE meta->>'photoId' = (SELECT id::text FROM moverz_batch.photos WHERE batch_id = '$batch' AND position = 0)")" t \
       "$api: the retry after a 429 waited for its retry-after (1 s)"
    is "$(q "SELECT string_agg(meta->>'errorCode', ',') FROM moverz_batch.ai_metrics
              WHERE NOT success AND meta->>'photoId' IN (SELECT id::text FROM moverz_batch.photos
                                                          WHERE batch_id = '$batch' AND position IN (0, 1))")" \
       "RATE_LIMIT,RATE_LIMIT" "$api: 429 and $over were RATE_LIMIT"
    is "$(photo_field "$batch" 1 "status || '/' || attempts")" "DONE/2" "$api: $over then success"
    is "$(photo_field "$batch" 2 "status || '/' || error_code || '/' || attempts")" "ERROR/AI_ERROR/3" "$api: 500 retried, then AI_ERROR"
    is "$(photo_field "$batch" 3 "error_code || '/' || attempts")" "TIMEOUT/3" "$api: 504 is TIMEOUT"
    is "$(photo_field "$batch" 4 "error_code || '/' || attempts")" "TIMEOUT/3" "$api: 408 is TIMEOUT"
    is "$(photo_field "$batch" 5 "error_code || '/' || attempts")" "TIMEOUT/3" "$api: the client's time-out is TIMEOUT"
    is "$(photo_field "$batch" 6 "error_code || '/' || attempts || '/' || (error_message LIKE '$api HTTP 400 %')")" "AI_ERROR/1/true" \
       "$api: an image it cannot read: final AI_ERROR with its message"
    is "$(photo_field "$batch" 7 "error_code || '/' || attempts || '/' || (error_message LIKE 'the model refused%')")" \
       "AI_ERROR/1/true" "$api: a refusal: final AI_ERROR that says so"
    is "$(photo_field "$batch" 8 "error_code || '/' || attempts || '/' || (error_message LIKE 'the answer was cut at max%')")" \
       "AI_ERROR/1/true" "$api: an answer cut at max tokens: final AI_ERROR that says so"
    is "$(photo_field "$batch" 9 "error_code || '/' || attempts || '/' || (error_message LIKE 'invalid AI response: %')")" \
       "AI_ERROR/3/true" "$api: no structured answer: AI_ERROR, retried"
    is "$(photo_field "$batch" 10 "error_code || '/' || attempts || '/' || error_message")" \
       "AI_ERROR/3/invalid AI response: analysis.items must be an array" "$api: an answer off the schema: AI_ERROR naming the rule"
    is "$(photo_field "$batch" 11 "status || '/' || attempts")" "DONE/3" "$api: fails twice, then succeeds"
    is "$(progress "$batch" '{inventorySummary,totalItems}')" 8 "$api: the inventory counts only the analyses (3 + 1 + 4)"
    is "$(q "SELECT count(*) FROM moverz_batch.photos WHERE batch_id = '$batch' AND status = 'ERROR' AND analysis IS NOT NULL")" 0 \
       "$api: no half analysis stored"

    # connection failures: NETWORK_ERROR, retried
    set_conf moverz_batch.ai_service_url "http://127.0.0.1:1"
    batch=$(submit "$project" "prov-err-$api" "[{\"filename\": \"n.jpg\", \"url\": \"$u/n.jpg\"}]")
    wait_finished "$batch" 20
    is "$(photo_field "$batch" 0 "error_code || '/' || attempts")" "NETWORK_ERROR/3" "$api: connection refused is NETWORK_ERROR, retried"
    set_conf moverz_batch.ai_service_url "$PROVIDER_URL"

    # a wrong key: the provider's 401, final, the key in no message
    set_key "wrong-$KEY"
    batch=$(submit "$project" "prov-err-$api" "[{\"filename\": \"w.jpg\", \"url\": \"$u/w.jpg\"}]")
    wait_finished "$batch" 20
    is "$(photo_field "$batch" 0 "error_code || '/' || attempts || '/' || (error_message LIKE '$api HTTP 401 %')")" \
       "AI_ERROR/1/true" "$api: a wrong key is the provider's 401, final"
    set_key "$KEY"
}

for api in anthropic openai; do
    model=claude-test; [ "$api" = openai ] && model=gpt-test
    use_provider "$api" "$model"
    curl -s -X POST "${PROVIDER_URL%/v1}/reset" >/dev/null
    smoke "$api"
    request_shape "$api"
    error_classes "$api"
done

# the key is in no log line, metric, error message or visible setting
is "$(grep -c -- "$KEY" "$MB_DIR/server.log")" 0 "the key is in no server log line"
is "$(q "SELECT count(*) FROM moverz_batch.ai_metrics WHERE meta::text LIKE '%$KEY%'")" 0 "the key is in no metric"
is "$(q "SELECT count(*) FROM moverz_batch.photos WHERE error_message LIKE '%$KEY%'")" 0 "the key is in no error message"
done_testing
