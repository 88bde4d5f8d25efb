-- The dashboard's history query against gold (Databricks SQL or any SQL engine
-- over the Delta table). Parameters: device, from (timestamp), n (8, 15 or 60).
SELECT window_start, temp_c, pressure_pa, humidity_rh, windows
FROM gold
WHERE device = :device AND n = :n AND window_start >= :from
ORDER BY window_start;
