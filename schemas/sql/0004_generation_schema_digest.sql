-- Which version of its table definitions each generation was built with.
-- A generation whose digest differs from the running build's (or is unknown,
-- as for generations made before this column) is rebuilt by
-- `frameworks replay <projection> --if-outdated`.
ALTER TABLE projection_generations ADD COLUMN schema_digest text;
