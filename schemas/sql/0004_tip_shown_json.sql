-- tip_shown's features and candidates as json, not jsonb: cheaper to insert.
--
-- jsonb parses every value and re-encodes it in its binary form on insert; json only checks
-- the text and stores it as sent. Nothing queries inside these columns: they are read back
-- whole (`tipstream evaluate --production`, streams/analysis/load.py, which decodes json and
-- jsonb alike). Measured on the dev PostgreSQL (2 cores shared with the worker and Kafka),
-- the worker's statement (unnest of 1,000 rows, ON CONFLICT (event_id) DO NOTHING, both
-- indexes), median µs per row:
--                          jsonb   json
--   8 candidates, empty     32.2   21.9   (-32%)
--   8 candidates, 1 M rows  34.0   21.6   (-36%)
--   no candidates, empty    21.3   17.9   (-16%)
--   no candidates, 1 M rows 18.9   16.7   (-12%)
-- and a 1 M-row table took 1004 MB instead of 1252.
--
-- Safe on a table with rows: every jsonb value casts to json (its canonical text, the same
-- value once decoded). The change rewrites the table under an exclusive lock, at the first
-- start of a worker that has this file: other workers' writes wait for it (19 s for 1 M rows
-- of 8 candidates, here); nothing is lost. Either column type takes either cast on insert
-- (assignment casts both ways), so workers from before this migration still write after it.
ALTER TABLE tip_shown
    ALTER COLUMN features TYPE json USING features::json,
    ALTER COLUMN candidates TYPE json USING candidates::json;
