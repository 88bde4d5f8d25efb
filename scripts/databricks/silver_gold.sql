-- pilake silver and gold as a Lakeflow Declarative Pipeline (Delta Live Tables), SQL.
-- Source: the collector's Delta bronze table (registered by unity_catalog.sql).
-- Same definitions as collector/stages: 1-second tumbling windows per device,
-- a PER-DEVICE watermark of 10 seconds (that device's newest reading minus 10 s),
-- gold = per-device moving averages over the last 8, 15 and 60 final windows.
--
-- Materialized views, not a streaming table: Spark's streaming watermark is one
-- per stream, so one device with a fast clock (anything within the collector's
-- 24 h skew bound passes) would drop every other device's windows. Here each
-- refresh computes every device's own watermark, and a window is in silver when
-- it starts before floor(watermark to the second), as in the collector.
-- Difference from the collector: a refresh sees all of bronze, so a late reading
-- is counted in its window instead of going to silver_late (there is no
-- silver_late here). For the collector's exact silver/silver_late, use the job
-- pipeline_per_device_watermark.py (pilake_fold.py). Cannot run outside Databricks.
--
-- Pipeline configuration (databricks.yml sets it):
--   pilake.bronze = CATALOG.SCHEMA.bronze
-- Tables are named dbx_sql_*: never the collector's silver/gold, nor the job's dbx_*.

CREATE OR REFRESH MATERIALIZED VIEW dbx_sql_silver
COMMENT 'pilake silver: per-device 1 s tumbling windows that are final under that device''s own 10 s watermark'
AS
WITH b AS (
  SELECT device, ts, fresh, temp_c, pressure_pa, humidity_rh FROM ${pilake.bronze}
),
wm AS (
  SELECT device, date_trunc('SECOND', max(ts) - INTERVAL 10 SECONDS) AS closed_before FROM b GROUP BY device
),
w AS (
  SELECT
    device,
    window(ts, '1 second') AS win,
    -- pressure_pa / humidity_rh are null for readings without them (the Azure simulator's,
    -- a BMP280's): AVG/MIN/MAX skip nulls and are null when all are, COUNT(*) counts every
    -- reading, as the collector's fold does; gold's AVG OVER skips null windows likewise.
    COUNT(*) AS count,
    COUNT_IF(fresh) AS fresh_count,
    AVG(temp_c) AS temp_avg, MIN(temp_c) AS temp_min, MAX(temp_c) AS temp_max,
    AVG(pressure_pa) AS pressure_avg, MIN(pressure_pa) AS pressure_min, MAX(pressure_pa) AS pressure_max,
    AVG(humidity_rh) AS humidity_avg, MIN(humidity_rh) AS humidity_min, MAX(humidity_rh) AS humidity_max
  FROM b
  GROUP BY device, window(ts, '1 second')
)
SELECT w.device, w.win.start AS window_start, w.win.end AS window_end, count, fresh_count,
  temp_avg, temp_min, temp_max, pressure_avg, pressure_min, pressure_max, humidity_avg, humidity_min, humidity_max
FROM w JOIN wm ON w.device = wm.device
WHERE w.win.start < wm.closed_before;

CREATE OR REFRESH MATERIALIZED VIEW dbx_sql_gold
COMMENT 'pilake gold: per-device moving averages of silver over the last N windows'
AS
WITH s AS (SELECT device, window_start, temp_avg, pressure_avg, humidity_avg FROM dbx_sql_silver)
SELECT device, window_start, 8 AS n,
  CAST(COUNT(*) OVER w AS INT) AS windows,
  AVG(temp_avg) OVER w AS temp_c, AVG(pressure_avg) OVER w AS pressure_pa, AVG(humidity_avg) OVER w AS humidity_rh
FROM s WINDOW w AS (PARTITION BY device ORDER BY window_start ROWS BETWEEN 7 PRECEDING AND CURRENT ROW)
UNION ALL
SELECT device, window_start, 15 AS n,
  CAST(COUNT(*) OVER w AS INT), AVG(temp_avg) OVER w, AVG(pressure_avg) OVER w, AVG(humidity_avg) OVER w
FROM s WINDOW w AS (PARTITION BY device ORDER BY window_start ROWS BETWEEN 14 PRECEDING AND CURRENT ROW)
UNION ALL
SELECT device, window_start, 60 AS n,
  CAST(COUNT(*) OVER w AS INT), AVG(temp_avg) OVER w, AVG(pressure_avg) OVER w, AVG(humidity_avg) OVER w
FROM s WINDOW w AS (PARTITION BY device ORDER BY window_start ROWS BETWEEN 59 PRECEDING AND CURRENT ROW);
