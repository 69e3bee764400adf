-- 11_comments: every object of the extension's schemas (moverz_batch and
-- moverz_api) has a comment (issue #18): the schemas, functions, views,
-- tables and types (not the array types, nor the row types of tables and
-- views).  The comments are in sql/src/99_comments.sql; a failure lists the
-- objects without one.
BEGIN;
SELECT plan(6);

CREATE TEMP VIEW mb_schemas AS
SELECT n.oid, n.nspname FROM pg_namespace n WHERE n.nspname IN ('moverz_batch', 'moverz_api');

-- not a pass for want of objects
SELECT ok((SELECT count(*) FROM mb_schemas) = 2
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

SELECT * FROM finish();
ROLLBACK;
