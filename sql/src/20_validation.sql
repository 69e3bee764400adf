-- Validation rules of the AI's answers, and the error for unknown ids.
-- (create_batch's input rules are in C: src/assets.c, 40_api.sql.)

-- analysis_error: why an AI analysis is not of the contract's shape
-- {room_type?, items: [{label, quantity, volume_m3}]}, or NULL.  In C
-- (src/ai_contract.c): it runs for every analysed photo.
CREATE FUNCTION analysis_error(a jsonb) RETURNS text
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'moverz_analysis_error';

-- echo_value: a rejected value as an error message quotes it: at most 64
-- characters, then "…"; a 1 MB value is not sent back whole (nor logged).
CREATE FUNCTION moverz_batch_internal.echo_value(v text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT quote_literal(left(v, 64)) || CASE WHEN length(v) > 64 THEN '…' ELSE '' END
$$;

-- raise_not_found: the error for an id that names nothing (P0002, which the
-- HTTP API turns into a 404), e.g. "batch_id 42...: no such batch".
CREATE FUNCTION moverz_batch_internal.raise_not_found(field text, id uuid, what text) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'P0002',
        MESSAGE = format('%s %s: no such %s', field, coalesce(id::text, 'NULL'), what);
END
$$;
