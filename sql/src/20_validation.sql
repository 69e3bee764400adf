-- Validation rules, shared by the SQL API and the workers' write-back.
-- Each returns NULL when the value is valid, or the rule it breaks.

-- asset_error: the first rule that one element of create_batch's "assets"
-- breaks, as ARRAY[sqlstate, message], or NULL.  idx is 0-based, as in
-- the message "assets[2].url must be ...".  (Whether a roomType is an
-- accepted one is checked for all elements at once, by check_assets.)
CREATE FUNCTION asset_error(elem jsonb, idx bigint) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE
    WHEN jsonb_typeof(elem) IS DISTINCT FROM 'object' THEN
        ARRAY['22023', format('assets[%s] must be a JSON object, not %s', idx, coalesce(jsonb_typeof(elem), 'null'))]
    WHEN jsonb_typeof(elem -> 'filename') IS DISTINCT FROM 'string' THEN
        ARRAY['22023', format('assets[%s].filename is required and must be a string', idx)]
    WHEN btrim(elem ->> 'filename') = '' THEN
        ARRAY['22023', format('assets[%s].filename must not be empty', idx)]
    WHEN octet_length(elem ->> 'filename') > 255 THEN
        ARRAY['22001', format('assets[%s].filename must be at most 255 bytes (got %s)', idx, octet_length(elem ->> 'filename'))]
    WHEN (elem ->> 'filename') ~ '[\x01-\x1f\x7f]' THEN
        ARRAY['22023', format('assets[%s].filename must not contain control characters', idx)]
    WHEN jsonb_typeof(elem -> 'url') IS DISTINCT FROM 'string' THEN
        ARRAY['22023', format('assets[%s].url is required and must be a string', idx)]
    WHEN octet_length(elem ->> 'url') > 2048 THEN
        ARRAY['22001', format('assets[%s].url must be at most 2048 bytes (got %s)', idx, octet_length(elem ->> 'url'))]
    WHEN (elem ->> 'url') !~* '^https?://[^/?#\s@]*[a-z0-9\]][^\s]*$'
         OR (elem ->> 'url') ~ '[\x01-\x1f\x7f]' THEN
        ARRAY['22023', format('assets[%s].url must be an absolute http or https URL', idx)]
    WHEN jsonb_typeof(elem -> 'filePath') NOT IN ('string', 'null') THEN
        ARRAY['22023', format('assets[%s].filePath must be a string', idx)]
    WHEN octet_length(elem ->> 'filePath') > 1024 THEN
        ARRAY['22001', format('assets[%s].filePath must be at most 1024 bytes', idx)]
    WHEN jsonb_typeof(elem -> 'roomType') NOT IN ('string', 'null') THEN
        ARRAY['22023', format('assets[%s].roomType must be a string', idx)]
END
$$;

-- analysis_error: why an AI analysis is not of the contract's shape
-- {room_type?, items: [{label, quantity, volume_m3}]}, or NULL.  In C
-- (src/ai_contract.c): it runs for every analysed photo.
CREATE FUNCTION analysis_error(a jsonb) RETURNS text
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'moverz_analysis_error';

-- raise_invalid: raise the error a *_error function described.
CREATE FUNCTION raise_invalid(err text[], hint text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF hint IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = err[1], MESSAGE = err[2];
    END IF;
    RAISE EXCEPTION USING ERRCODE = err[1], MESSAGE = err[2], HINT = hint;
END
$$;

-- raise_not_found: the error for an id that names nothing (P0002, which the
-- HTTP API turns into a 404), e.g. "batch_id 42...: no such batch".
CREATE FUNCTION raise_not_found(field text, id uuid, what text) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'P0002',
        MESSAGE = format('%s %s: no such %s', field, coalesce(id::text, 'NULL'), what);
END
$$;
