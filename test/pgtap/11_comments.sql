-- 11_comments: every object of the extension's schemas (moverz_batch,
-- moverz_batch_internal and moverz_api) has a comment (issue #18): the schemas, functions, views,
-- tables and types (not the array types, nor the row types of tables and
-- views).  The comments are in sql/src/99_comments.sql; a failure lists the
-- objects without one.  Those of moverz_batch_internal, and only those, say
-- "Internal:".
BEGIN;
SELECT plan(8);

CREATE TEMP VIEW mb_schemas AS
SELECT n.oid, n.nspname FROM pg_namespace n WHERE n.nspname IN ('moverz_batch', 'moverz_batch_internal', 'moverz_api');

-- not a pass for want of objects
SELECT ok((SELECT count(*) FROM mb_schemas) = 3
          AND EXISTS (SELECT 1 FROM pg_proc p JOIN mb_schemas s ON s.oid = p.pronamespace)
          AND EXISTS (SELECT 1 FROM pg_class c JOIN mb_schemas s ON s.oid = c.relnamespace WHERE c.relkind = 'v')
          AND EXISTS (SELECT 1 FROM pg_class c JOIN mb_schemas s ON s.oid = c.relnamespace WHERE c.relkind = 'r')
          AND EXISTS (SELECT 1 FROM pg_type t JOIN mb_schemas s ON s.oid = t.typnamespace WHERE t.typtype = 'e'),
          'the schemas, functions, views, tables and types of the extension exist');

SELECT is(array_agg(s.nspname::text ORDER BY s.nspname)
              FILTER (WHERE coalesce(btrim(obj_description(s.oid, 'pg_namespace')), '') = ''),
          NULL, 'every schema has a comment')
  FROM mb_schemas s;

SELECT is(array_agg(p.oid::regprocedure::text ORDER BY p.oid::regprocedure::text)
              FILTER (WHERE coalesce(btrim(obj_description(p.oid, 'pg_proc')), '') = ''),
          NULL, 'every function has a comment')
  FROM pg_proc p JOIN mb_schemas s ON s.oid = p.pronamespace;

SELECT is(array_agg(c.oid::regclass::text ORDER BY c.oid::regclass::text)
              FILTER (WHERE coalesce(btrim(obj_description(c.oid, 'pg_class')), '') = ''),
          NULL, 'every view has a comment')
  FROM pg_class c JOIN mb_schemas s ON s.oid = c.relnamespace
 WHERE c.relkind IN ('v', 'm');

SELECT is(array_agg(c.oid::regclass::text ORDER BY c.oid::regclass::text)
              FILTER (WHERE coalesce(btrim(obj_description(c.oid, 'pg_class')), '') = ''),
          NULL, 'every table has a comment')
  FROM pg_class c JOIN mb_schemas s ON s.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'f');

-- enums, domains, ranges and composite types of their own (CREATE TYPE ...
-- AS), not the row type of a table or view, nor an array type
SELECT is(array_agg(t.oid::regtype::text ORDER BY t.oid::regtype::text)
              FILTER (WHERE coalesce(btrim(obj_description(t.oid, 'pg_type')), '') = ''),
          NULL, 'every type has a comment')
  FROM pg_type t JOIN mb_schemas s ON s.oid = t.typnamespace
 WHERE NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)
   AND (t.typrelid = 0 OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c');

-- "Internal:" tells the internal schema's functions, and nothing else
SELECT is(array_agg(p.oid::regprocedure::text ORDER BY p.oid::regprocedure::text)
              FILTER (WHERE obj_description(p.oid, 'pg_proc') NOT LIKE 'Internal:%'),
          NULL, 'every function of moverz_batch_internal says "Internal:"')
  FROM pg_proc p WHERE p.pronamespace = 'moverz_batch_internal'::regnamespace;

SELECT is(array_agg(d.objoid ORDER BY d.objoid)
              FILTER (WHERE d.description LIKE 'Internal:%'),
          NULL, 'no object of moverz_batch or moverz_api says "Internal:"')
  FROM pg_description d
 WHERE (d.classoid = 'pg_proc'::regclass
        AND (SELECT p.pronamespace FROM pg_proc p WHERE p.oid = d.objoid)
            IN ('moverz_batch'::regnamespace, 'moverz_api'::regnamespace))
    OR (d.classoid = 'pg_class'::regclass
        AND (SELECT c.relnamespace FROM pg_class c WHERE c.oid = d.objoid)
            IN ('moverz_batch'::regnamespace, 'moverz_api'::regnamespace))
    OR (d.classoid = 'pg_type'::regclass
        AND (SELECT t.typnamespace FROM pg_type t WHERE t.oid = d.objoid)
            IN ('moverz_batch'::regnamespace, 'moverz_api'::regnamespace));

SELECT * FROM finish();
ROLLBACK;
