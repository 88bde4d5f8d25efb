-- pilake silver and gold as a Lakeflow Declarative Pipeline (Delta Live Tables), SQL.
-- Source: the collector's Delta bronze table. Same definitions as collector/stages:
--   1-second tumbling windows per device, 10-second allowed lateness,
--   gold = per-device moving averages over the last 8, 15 and 60 windows.
-- Difference: Spark's watermark is one per stream (max event time over all
-- devices minus 10 s), not per device; see pipeline_per_device_watermark.py
-- for the collector's per-device semantics. Cannot run outside Databricks.
--
-- Pipeline configuration: pilake.lake = abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/PREFIX

CREATE OR REFRESH STREAMING TABLE dbx_silver
COMMENT 'pilake silver: per-device 1 s tumbling windows (final rows)'
AS SELECT
  device,
  window.start AS window_start,
  window.end AS window_end,
  COUNT(*) AS count,
  COUNT_IF(fresh) AS fresh_count,
  AVG(temp_c) AS temp_avg, MIN(temp_c) AS temp_min, MAX(temp_c) AS temp_max,
  AVG(pressure_pa) AS pressure_avg, MIN(pressure_pa) AS pressure_min, MAX(pressure_pa) AS pressure_max,
  AVG(humidity_rh) AS humidity_avg, MIN(humidity_rh) AS humidity_min, MAX(humidity_rh) AS humidity_max
FROM STREAM(delta.`${pilake.lake}/bronze`)
  WATERMARK ts DELAY OF INTERVAL 10 SECONDS
GROUP BY device, window(ts, '1 second');

CREATE OR REFRESH MATERIALIZED VIEW dbx_gold
PARTITIONED BY (device)
COMMENT 'pilake gold: per-device moving averages of silver over the last N windows'
AS
WITH s AS (SELECT device, window_start, temp_avg, pressure_avg, humidity_avg FROM dbx_silver)
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
