-- Registers pilake's lake in Unity Catalog: the collector's four Delta tables as
-- external tables over the lake, and the reference app's (plotly/dash-dbx-sql-realtime)
-- silver_sensors and gold_sensors as views over them, so its Dash app runs
-- unchanged on pilake's tables (point its DB_NAME at CATALOG.SCHEMA).
--
-- Placeholders ${catalog}, ${schema}, ${lake} are filled in by register_tables.py
-- (which checks them: identifiers of letters, digits and _; the lake an
-- abfss:// or s3:// or gs:// URL without quotes). Needs an external location
-- covering the lake (CREATE EXTERNAL LOCATION ... URL '<lake>' WITH (STORAGE
-- CREDENTIAL ...)), and CREATE TABLE on the schema. Cannot run outside Databricks.
--
-- The collector writes these tables; Databricks only reads them. Tables that
-- Databricks computes itself are dbx_* (pipeline_per_device_watermark.py) and
-- dbx_sql_* (silver_gold.sql).

CREATE SCHEMA IF NOT EXISTS ${catalog}.${schema}
COMMENT 'pilake: BME280 readings from Raspberry Pis (https://github.com/pilake/pilake)';

CREATE TABLE IF NOT EXISTS ${catalog}.${schema}.bronze
USING DELTA LOCATION '${lake}/bronze'
COMMENT 'pilake bronze: one row per reading, as the collector landed it';

CREATE TABLE IF NOT EXISTS ${catalog}.${schema}.silver
USING DELTA LOCATION '${lake}/silver'
COMMENT 'pilake silver: one row per device per final 1 s window';

CREATE TABLE IF NOT EXISTS ${catalog}.${schema}.silver_late
USING DELTA LOCATION '${lake}/silver_late'
COMMENT 'pilake silver_late: readings that arrived after their window was final';

CREATE TABLE IF NOT EXISTS ${catalog}.${schema}.gold
USING DELTA LOCATION '${lake}/gold'
COMMENT 'pilake gold: per-device moving averages over the last n = 8, 15, 60 windows';

-- The reference app's silver_sensors: DeviceName, EventWindow struct<start,end>,
-- TempReading and HumidityReading (FLOAT), EventTimestamp, EventDate,
-- ReceivedTimestamp, InputFileName. pilake's silver has no receive time per
-- window nor input file: those two are NULL (the app does not read them).
CREATE OR REPLACE VIEW ${catalog}.${schema}.silver_sensors
COMMENT 'plotly/dash-dbx-sql-realtime silver_sensors over pilake silver'
AS SELECT
  device AS DeviceName,
  named_struct('start', window_start, 'end', window_end) AS EventWindow,
  CAST(temp_avg AS FLOAT) AS TempReading,
  CAST(humidity_avg AS FLOAT) AS HumidityReading,
  window_start AS EventTimestamp,
  CAST(window_start AS DATE) AS EventDate,
  CAST(NULL AS TIMESTAMP) AS ReceivedTimestamp,
  CAST(NULL AS STRING) AS InputFileName
FROM ${catalog}.${schema}.silver;

-- The reference app's gold_sensors: TimestampSecond, Temperature_Moving_Average,
-- Humidity_Moving_Average (its 8-row moving average). pilake's gold n = 8 is that
-- average per device; DeviceName is added last (the app selects * and reads the
-- three columns by name; with one device, as the app's simulator, it is the same).
CREATE OR REPLACE VIEW ${catalog}.${schema}.gold_sensors
COMMENT 'plotly/dash-dbx-sql-realtime gold_sensors over pilake gold (n = 8)'
AS SELECT
  window_start AS TimestampSecond,
  temp_c AS Temperature_Moving_Average,
  humidity_rh AS Humidity_Moving_Average,
  device AS DeviceName
FROM ${catalog}.${schema}.gold
WHERE n = 8;
